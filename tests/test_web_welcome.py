"""A reconnecting page's welcome: the messages of the threads it holds, the rest named.

A tab asleep through a day of busy sessions was sent every message changed in every
thread, most of which it threw away (it keeps only the unread mark of a thread it has
not loaded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from supervisor.chat.web import asgi
from supervisor.chat.web.db import WebDb
from supervisor.chat.web.port import WEB_PLACE
from tests.web_served import receive_until, send, serve

LIMIT = 20
WORDS = "a long answer, streamed and edited many times " * 20


def _busy_day(db: WebDb) -> tuple[str, str, int]:
    """Threads `held` (a few changes) and `other` (many), and the version seen before them."""
    held = db.open_thread("k-held", "held", "claude", "/tmp").id
    other = db.open_thread("k-other", "other", "claude", "/tmp").id
    seen = db.version()
    for n in range(300):
        db.create(other, "bot", "text", WORDS, key=f"o{n}")
    for n in range(3):
        db.create(held, "bot", "text", f"held {n}", key=f"h{n}")
    return held, other, seen


def test_the_welcome_carries_the_held_threads_messages_and_names_the_others(tmp_path: Path) -> None:
    db = WebDb(tmp_path / "web.sqlite3")
    held, other, seen = _busy_day(db)

    changes = db.changes_since(seen, {held}, 2000)

    assert [m.text for m in changes.messages] == ["held 0", "held 1", "held 2"]
    assert changes.changed == (other,) and changes.reload == ()
    everything = db.changes_since(seen)  # a page that does not say what it holds
    assert len(everything.messages) == 303 and everything.changed == ()


def test_held_threads_too_changed_are_to_be_fetched_anew(tmp_path: Path) -> None:
    db = WebDb(tmp_path / "web.sqlite3")
    held, other, seen = _busy_day(db)

    changes = db.changes_since(seen, {held, other}, 100)

    assert changes.messages == () and set(changes.reload) == {held, other}
    assert changes.changed == ()
    assert db.changes_since(seen, {held, other}, 303).messages != ()  # at the cap: sent


async def test_a_reconnecting_page_gets_a_small_welcome_that_still_marks_the_busy_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(asgi, "WELCOME_MESSAGES", 50)
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            front = served.chat.front
            held = await front.open_thread(WEB_PLACE, "held", "held's header", "k-held")
            other = await front.open_thread(WEB_PLACE, "other", "other's header", "k-other")
            async with served.page() as ws:
                await send(ws, type="hello", since=0)
                seen = (await receive_until(ws, "welcome"))["version"]
            for n in range(300):  # a day of another session's answers
                await front.create(other, WORDS, f"o{n}")
            await front.create(held, "held's news", "h0")
            async with served.page() as ws:
                await send(ws, type="hello", since=seen, held=[held.thread_id])
                raw = await ws.get_message()
                await send(ws, type="hello", since=seen, held=[held.thread_id, other.thread_id])
                over = await receive_until(ws, "welcome")

    welcome = json.loads(raw)
    assert welcome["type"] == "welcome" and len(raw) < 10_000
    assert [m["text"] for m in welcome["messages"]] == ["held's news"]
    assert welcome["changed"] == [other.thread_id] and welcome["reload"] == []
    assert over["messages"] == [] and set(over["reload"]) == {held.thread_id, other.thread_id}


async def test_a_page_that_says_nothing_of_what_it_holds_gets_every_change(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            front = served.chat.front
            async with served.page() as ws:
                await send(ws, type="hello", since=0)
                seen = (await receive_until(ws, "welcome"))["version"]
            thread = await front.open_thread(WEB_PLACE, "alpha", "header", "k-alpha")
            await front.create(thread, "news", "n0")
            async with served.page() as ws:
                await send(ws, type="hello", since=seen)
                welcome = await receive_until(ws, "welcome")

    assert [m["text"] for m in welcome["messages"]] == ["header", "news"]
    assert welcome["changed"] == [] and welcome["reload"] == []
