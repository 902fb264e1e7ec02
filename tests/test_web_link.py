"""The web chat's side of the chat port: `WebLink` (outgoing) and `to_core` (incoming).

In process, against a real store in a temporary state dir (no HTTP: the link works from
`open_web_chat` on, before anything listens).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from supervisor.chat.web import codec
from supervisor.chat.web import db as db_module
from supervisor.chat.web import store as store_module
from supervisor.chat.web.config import WebConfig
from supervisor.chat.web.db import WebDb
from supervisor.chat.web.front import EVENT_QUEUE
from supervisor.chat.web.front_end import missing_agent_notice, web_settings
from supervisor.chat.web.link import (
    CHANNEL,
    PERSON,
    Clock,
    WebLink,
    to_core,
)
from supervisor.chat.web.port import (
    WEB_AUTHOR,
    WEB_PLACE,
    AttachmentRef,
    MessagePosted,
    StopAsked,
    ThreadOpened,
    ThreadRef,
)
from supervisor.chat.web.port import (
    ChoiceMade as WebChoice,
)
from supervisor.chat.web.server import OpenedWebChat, WebSettings, open_web_chat
from supervisor.config import config_from_dict
from supervisor.core.events import Choice, ChoiceMade, Posted, TurnedTo
from supervisor.core.state import Ledger
from tests.web_served import receive_until, send, serve

LIMIT = 10


@asynccontextmanager
async def opened(tmp_path: Path) -> AsyncIterator[tuple[OpenedWebChat, WebLink]]:
    chat = await open_web_chat(WebSettings(state_dir=tmp_path, listen="127.0.0.1:0"))
    try:
        yield chat, WebLink(chat.front)
    finally:
        await chat.aclose()


async def test_threads_and_posts_are_idempotent_by_key_and_ids_say_web(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, link):
            header = "🧵 **Session `alpha`** · `/srv/alpha`\nstarted now"
            root = await link.open_thread(CHANNEL, header, key="k-alpha", title="alpha")
            again = await link.open_thread(CHANNEL, header, key="k-alpha", title="alpha")
            reply = await link.create_post(CHANNEL, "hello", root_id=root.id, idempotency_key="p1")
            resent = await link.create_post(CHANNEL, "hello", root_id=root.id, idempotency_key="p1")
            main = await link.create_post(CHANNEL, "a command's answer")
            threads = await chat.front.store.call(WebDb.threads)

    assert root.id == again.id and root.id.startswith("web")
    assert reply.id == resent.id and reply.id.startswith("web") and reply.root_id == root.id
    assert main.root_id == "" and main.channel_id == CHANNEL == "web"
    sidebar = next(t for t in threads if t.id == root.id)
    assert (sidebar.title, sidebar.cwd) == ("alpha", "/srv/alpha")
    assert link.permalink(root.id) == f"#thread/{root.id}"


async def test_editing_a_thread_root_edits_its_header(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, link):
            root = await link.open_thread(CHANNEL, "first words", key="k", title="t")
            edited = await link.edit_post(root.id, "🧵 ended")
            rows = await chat.front.store.call(WebDb.thread_messages, root.id)

    assert edited.id == root.id
    assert [row.text for row in rows] == ["🧵 ended"]


async def test_the_sidebar_shows_the_sessions_state(tmp_path: Path) -> None:
    """Active while it may run (the page tells busy from idle), else the core's word."""
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, link):
            root = await link.open_thread(CHANNEL, "header", key="k", title="t")
            states, versions = [], []
            for status in ("suspended", "live", "live", "ended"):
                await link.show_session_state(root.id, status)
                row = await chat.front.store.call(WebDb.thread, root.id)
                assert row is not None
                states.append(row.state)
                versions.append(row.version)
    assert states == ["suspended", "active", "active", "ended"]
    assert versions[1] == versions[2] < versions[3]  # the same word again: nothing for the pages


async def test_choices_become_buttons_and_settling_removes_them(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, link):
            root = await link.open_thread(CHANNEL, "h", key="k", title="t")
            asked = await link.create_post(CHANNEL, "🔐 Bash wants to run", root_id=root.id)
            await link.offer_choices(asked.id, ("allow_once", "allow_always", "reject", "stop"))
            offered = await chat.front.store.call(WebDb.message, asked.id)
            await link.settle_choices(asked.id)
            settled = await chat.front.store.call(WebDb.message, asked.id)
            cut = await link.create_post(CHANNEL, "✂️ cut", root_id=root.id)
            await link.offer_choices(cut.id, ("rerun",))
            rerun = await chat.front.store.call(WebDb.message, cut.id)

    assert offered is not None and offered.kind == "choice" and offered.outcome is None
    assert offered.options == (
        ("allow_once", "Allow"), ("allow_always", "Allow for this session"), ("reject", "Deny"),
    )  # fmt: skip
    assert settled is not None and settled.outcome == ""  # no buttons; the text says what
    assert rerun is not None and rerun.options == (("rerun", "Run again"),)
    assert link.choice_legend(("allow_once", "reject")) == ""


async def test_files_go_up_and_come_back(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (_, link):
            file_id = await link.upload_file(CHANNEL, "report.txt", b"all good\n")
            post = await link.create_post(CHANNEL, "", root_id="", file_ids=(file_id,))
            info = await link.file_info(file_id)
            data = await link.download_file(file_id)

    assert file_id.startswith("web") and post.file_ids == (file_id,)
    assert (info.name, info.size) == ("report.txt", 9) and data == b"all good\n"


async def test_handled_marks_the_inbox_row_so_it_is_not_replayed(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, link):
            post = codec.Post("client-0001", None, "!help")
            await chat.front.replay_unhandled()
            await chat.front.accept(post)
            event = await chat.front.events.receive()
            core = to_core(event, Clock())
            assert isinstance(core, Posted)
            link.handled(core.post.channel_id, core.post.id)
            link.handled(CHANNEL, "webm-not-a-person's-message")  # ignored
            await chat.front.handled(await link.handled_marks.receive())
            left = await chat.front.store.call(WebDb.unhandled)

    assert core.post.id == "webuclient-0001"  # the page's message, named after its client id
    assert left == []


async def test_a_message_whose_handing_on_was_stopped_is_handed_on_by_its_resend_once(tmp_path: Path) -> None:
    """Its tab closed after the store took it and before the core did (the page had no
    acknowledgement, so it sends it again): the resend hands it on, where it once found it
    recorded and said nothing, leaving the prompt for the next start. A resend while it
    waits in the core, or once handled, is not handed on again."""
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, _):
            front = chat.front
            await front.replay_unhandled()
            for _ in range(EVENT_QUEUE):
                front.opened("webt-busy")  # the core is busy: its queue is full
            post = codec.Post("client-0007", None, "!help")
            with trio.move_on_after(0.3) as stopped:
                await front.accept(post)  # recorded, then stopped waiting for room
            assert stopped.cancelled_caught
            assert await front.store.call(WebDb.unhandled)  # recorded, not handed on
            for _ in range(EVENT_QUEUE):
                assert isinstance(front.events.receive_nowait(), ThreadOpened)
            await front.accept(post)
            await front.accept(post)  # while it waits in the core
            handed = front.events.receive_nowait()
            assert isinstance(handed, MessagePosted) and handed.id == "client-0007"
            with pytest.raises(trio.WouldBlock):
                front.events.receive_nowait()
            await front.handled("client-0007")
            await front.accept(post)
            with pytest.raises(trio.WouldBlock):
                front.events.receive_nowait()


async def test_a_handled_mark_waits_for_a_database_another_program_keeps_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sqlite3 shell left in a transaction: the mark is tried again until it goes in
    (it once failed after the store's tries, ending the whole supervisor)."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_S", 0.1)
    monkeypatch.setattr(store_module, "BUSY_TRIES", 1)
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, _):
            await chat.front.replay_unhandled()
            await chat.front.accept(codec.Post("client-0009", None, "!help"))
            other = sqlite3.connect(tmp_path / "web.sqlite3", isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(chat.front.handled, "client-0009")
                await trio.sleep(1.5)  # its first tries refused
                other.execute("ROLLBACK")
                other.close()
            assert await chat.front.store.call(WebDb.unhandled) == []


def test_page_actions_in_the_core_words() -> None:
    clock = Clock()
    thread = ThreadRef(WEB_PLACE, "webt1")
    posted = to_core(
        MessagePosted("c1", WEB_PLACE, thread, WEB_AUTHOR, "hi", (AttachmentRef("webf1", "a", 1),)),
        clock,
    )
    main = to_core(MessagePosted("c2", WEB_PLACE, None, WEB_AUTHOR, "!help"), clock)
    chosen = to_core(WebChoice("c3", "webm9", "allow_always", WEB_AUTHOR), clock)
    stopped = to_core(StopAsked("c4", thread, WEB_AUTHOR), clock)
    opened = to_core(ThreadOpened(thread, WEB_AUTHOR), clock)

    assert isinstance(posted, Posted) and isinstance(main, Posted)
    assert (posted.post.root_id, posted.post.file_ids) == ("webt1", ("webf1",))
    assert main.post.root_id == "" and main.post.create_at > posted.post.create_at
    assert posted.post.user_id == PERSON.id
    assert chosen == ChoiceMade(Choice(PERSON.id, "webm9", "allow_always", CHANNEL))
    assert stopped == ChoiceMade(Choice(PERSON.id, "webt1", "stop", CHANNEL))
    assert opened == TurnedTo(PERSON.id, CHANNEL, "webt1")  # its agent is started if suspended


async def test_opening_a_thread_tells_the_core_and_scrolling_it_back_does_not(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await send(ws, type="open", thread="webt1")
            await receive_until(ws, "snapshot", thread="webt1")
            await send(ws, type="open", thread="webt1", before=5)  # an older page of it
            await receive_until(ws, "snapshot", thread="webt1", before=5)
            await send(ws, type="open", thread="main")  # commands only: no session there
            await receive_until(ws, "snapshot", thread="main")
            await send(ws, type="open", thread="webt2")
            await receive_until(ws, "snapshot", thread="webt2")
            await trio.testing.wait_all_tasks_blocked()
            assert served.core.opened == ["webt1", "webt2"]


async def test_a_thread_the_page_holds_opened_again_tells_the_core_each_time_without_a_snapshot(
    tmp_path: Path,
) -> None:
    """The page said "open" only for a thread it had not loaded: re-selecting one (or the
    one selected when it reconnects after a restart) never woke a suspended agent. It now
    says it each time; for a thread it holds, with `held`, and gets no page again."""
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await send(ws, type="open", thread="webt1")
            await receive_until(ws, "snapshot", thread="webt1")
            await send(ws, type="open", thread="webt1", held=True)
            await send(ws, type="open", thread="webt1", held=True)
            await send(ws, type="open", thread="webt2")  # answered after the two above
            while (update := json.loads(await ws.get_message()))["type"] != "snapshot":
                pass
            assert update["thread"] == "webt2"  # none for webt1 before it
            await trio.testing.wait_all_tasks_blocked()
            assert served.core.opened == ["webt1", "webt1", "webt1", "webt2"]


def test_the_clock_never_goes_back_even_within_one_millisecond() -> None:
    clock = Clock()
    stamps = [clock.next() for _ in range(1000)]
    assert stamps == sorted(set(stamps))


@pytest.mark.parametrize(
    ("listen", "allow_remote", "ok"),
    [
        ("127.0.0.1:8765", False, True),
        ("[::1]:8765", False, True),
        ("localhost:1", False, True),
        ("0.0.0.0:8765", False, False),
        ("192.168.1.5:8765", False, False),
        ("0.0.0.0:8765", True, True),
    ],
)
def test_web_listen_needs_allow_remote_beyond_loopback(listen: str, allow_remote: bool, ok: bool) -> None:
    if ok:
        assert WebConfig(listen, allow_remote).listen == listen
    else:
        with pytest.raises(ValueError, match=r"web\.allow_remote"):
            WebConfig(listen, allow_remote)


def test_settings_come_from_the_configuration(tmp_path: Path) -> None:
    config = config_from_dict(
        {
            "web": {"listen": "127.0.0.1:9999"},
            "state": {"dir": str(tmp_path)},
            "files": {"max_upload_mb": 2},
            "agent": {"command": ["no-such-agent-program"], "default_cwd": str(tmp_path)},
            "personas": {"reviewer": {}, "porter": {"agent": "oc"}},
            "agents": {"oc": {"protocol": "acp", "command": ["opencode", "acp"]}},
        },
        {"HOME": str(tmp_path)},
    )
    settings = web_settings(config)

    assert (settings.listen, settings.state_dir, settings.max_upload_bytes) == ("127.0.0.1:9999", tmp_path, 2_000_000)
    assert settings.page.personas == ("reviewer", "porter") and settings.page.default_cwd == str(tmp_path)
    assert settings.page.persona_agents == {"porter": "oc"}
    assert "`no-such-agent-program` was not found" in settings.page.notice
    assert missing_agent_notice(("sh",), "/bin:/usr/bin") == ""


async def test_a_replayed_message_keeps_the_time_it_was_sent(tmp_path: Path) -> None:
    """The core's ledger forgets handled ids older than its cursor's slack: a message it
    handled whose web mark was lost (kill -9 between the two writes) and that comes back
    after a long stop must look as old as it is, or it would run twice."""
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, _):
            await chat.front.replay_unhandled()
            await chat.front.accept(codec.Post("client-0002", None, "!help"))
            first = to_core(await chat.front.events.receive(), Clock())
        await trio.sleep(0.05)  # the restart takes a while
        async with opened(tmp_path) as (chat, _):
            await chat.front.replay_unhandled()
            again = to_core(await chat.front.events.receive(), Clock())  # a new process

    assert isinstance(first, Posted) and isinstance(again, Posted)
    assert again.post.id == first.post.id
    assert again.post.create_at == first.post.create_at


async def test_a_message_sent_after_a_start_with_the_clock_behind_still_reaches_the_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock ten minutes behind the last run's (a board with no clock of its own before
    time sync, a restored VM): messages were stamped older than those the core handled,
    and its ledger took every one for dealt with. Stamps now go on above the last run's."""
    ledger = Ledger()
    with trio.fail_after(LIMIT):
        async with opened(tmp_path) as (chat, _):
            await chat.front.replay_unhandled()
            await chat.front.accept(codec.Post("client-0001", None, "!help"))
            before = to_core(await chat.front.events.receive(), Clock())
        assert isinstance(before, Posted)
        ledger.begin(CHANNEL, before.post.create_at - 1000)
        assert ledger.admit(CHANNEL, before.post.id, before.post.create_at)
        ledger.done(CHANNEL, before.post.id)
        behind = time.time() - 600
        monkeypatch.setattr(time, "time", lambda: behind)
        async with opened(tmp_path) as (chat, _):
            await chat.front.replay_unhandled()  # the first, never marked handled
            assert (await chat.front.events.receive()).id == "client-0001"
            await chat.front.accept(codec.Post("client-0002", None, "!sessions"))
            after = to_core(await chat.front.events.receive(), Clock())

    assert isinstance(after, Posted) and after.post.create_at > before.post.create_at
    assert ledger.admit(CHANNEL, after.post.id, after.post.create_at)
