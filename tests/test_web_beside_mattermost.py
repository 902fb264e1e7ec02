"""The web chat and Mattermost in one supervisor: each front end keeps its own sessions.

In process (tests/harness.py's fake Mattermost and fake agent), with `[web]` added to the
configuration; the page is driven over its WebSocket, as the browser would.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from supervisor.chat.fronts import Fronts
from supervisor.chat.web import security
from supervisor.chat.web.front_end import WebFrontEnd
from supervisor.runtime import router as router_task
from supervisor.runtime.store import Store
from supervisor.runtime.supervisor import Supervisor
from tests.harness import World, world
from tests.web_served import receive_until, send

LIMIT = 40


async def _start_beside(w: World) -> Supervisor:
    """The supervisor with `[web]` beside the world's Mattermost."""
    with w.config_path.open("a") as config:
        config.write('\n[web]\nlisten = "127.0.0.1:0"\n')
    return await w.start()


@asynccontextmanager
async def _page(supervisor: Supervisor) -> AsyncIterator[WebSocketConnection]:
    """The page's WebSocket, said hello to and welcomed."""
    assert isinstance(supervisor.chat, Fronts)
    web = next(f for f in supervisor.chat.fronts if f.name == "web")
    assert isinstance(web, WebFrontEnd) and web.running is not None
    port, token = web.running.port, web.running.url.partition("token=")[2]
    headers = [
        (b"origin", f"http://127.0.0.1:{port}".encode()),
        (b"cookie", f"{security.cookie_name(port)}={token}".encode()),
    ]
    async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=headers) as ws:
        await send(ws, type="hello", since=0)
        await receive_until(ws, "welcome")
        yield ws


async def _new_thread(ws: WebSocketConnection, cid: str, cwd: Path) -> dict[str, Any]:
    """A session opened from the page, named after its directory: its thread."""
    cwd.mkdir()
    await send(ws, type="new", id=cid, name=cwd.name, cwd=str(cwd))
    thread: dict[str, Any] = (await receive_until(ws, "thread"))["thread"]
    return thread


@asynccontextmanager
async def _side_by_side(
    tmp_path: Path, web_key: str
) -> AsyncIterator[tuple[World, str, WebSocketConnection, dict[str, Any]]]:
    """A session on Mattermost and one opened from the page, in one supervisor: the world,
    the Mattermost thread's root, the page's WebSocket and the web thread."""
    async with world(tmp_path) as w:
        supervisor = await _start_beside(w)
        root = await w.new_session("on-mattermost")
        async with _page(supervisor) as ws:
            thread = await _new_thread(ws, web_key, w.work / "on-web")
            yield w, root, ws, thread


async def _answer_in(ws: Any, thread: str, needle: str) -> str:
    while True:
        update: dict[str, Any] = json.loads(await ws.get_message())
        message = update.get("message") or {}
        if message.get("thread_id") == thread and needle in message.get("text", ""):
            return str(message["text"])


def _mattermost_silent(w: World, silent: bool = True) -> None:
    """As while it is down: every request answered 503, every WebSocket refused."""
    w.server.fail_requests(503 if silent else None)
    w.server.refuse_websockets(silent)


async def _page_answers(supervisor: Supervisor, cid: str, cwd: Path, text: str) -> None:
    """A new thread on the page, a prompt in it, and its answer."""
    async with _page(supervisor) as ws:
        thread = await _new_thread(ws, cid, cwd)
        await send(ws, type="post", id=f"{cid}-prompt", thread=thread["id"], text=text)
        await _answer_in(ws, thread["id"], f"echo #1: {text}")


async def test_a_web_session_and_a_mattermost_session_side_by_side(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with _side_by_side(tmp_path, "new-on-web-1") as (w, root, ws, thread):
            # At once, as a quick person would: the core knows the thread already.
            await send(ws, type="post", id="web-prompt-1", thread=thread["id"], text="from the page")
            answer = await _answer_in(ws, thread["id"], "echo #1: from the page")
            await w.say("from mattermost", root)
            await w.answered(root, "echo #1: from mattermost")
            supervisor = w.supervisor
            assert supervisor is not None

    assert thread["title"] == "on-web" and thread["id"].startswith("web")
    assert "from mattermost" not in answer
    assert "from the page" not in w.thread_text(root)
    by_name = {r.name: r for r in supervisor.store.state.sessions.values()}
    assert by_name["on-web"].channel_id == "web" and by_name["on-web"].root_id == thread["id"]
    assert by_name["on-mattermost"].channel_id == w.dm


async def test_a_web_permission_card_has_no_reaction_legend_beside_mattermost(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            supervisor = await _start_beside(w)
            async with _page(supervisor) as ws:
                thread = await _new_thread(ws, "new-cards-001", w.work / "cards")
                await send(ws, type="post", id="web-prompt-2", thread=thread["id"], text="[tool ls] go")
                card = await _answer_in(ws, thread["id"], "Permission needed")

    assert "React" not in card and "👍" not in card


async def test_help_says_how_to_choose_in_each_front_ends_own_terms(tmp_path: Path) -> None:
    """Mattermost's choices are reactions; the page's are buttons: `!help` in each place
    says its own, in the main place and in a session's thread alike, and names each one's
    main place as its people know it (the DM; the sidebar's Commands thread)."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            supervisor = await _start_beside(w)
            root = await w.new_session("on-mattermost")
            await w.say("!help")
            main_mm = await w.wait_for(lambda: [p["message"] for p in w.bot_posts("") if "**Commands**" in p["message"]])
            await w.say("!help", root)
            thread_mm = await w.answered(root, "Write here to talk")
            async with _page(supervisor) as ws:
                await send(ws, type="post", id="web-help-main", thread=None, text="!help")
                main_web = await _answer_in(ws, "main", "**Commands**")
                thread = await _new_thread(ws, "new-on-web-2", w.work / "on-web")
                await send(ws, type="post", id="web-help-thread", thread=thread["id"], text="!help")
                thread_web = await _answer_in(ws, thread["id"], "Write here to talk")

    for reactions in (main_mm[0], thread_mm):
        assert "**Reactions:**" in reactions and "👍" in reactions and "Buttons" not in reactions
    for buttons in (main_web, thread_web):
        assert "**Buttons:**" in buttons and "Allow for this session" in buttons
        assert "React" not in buttons and "👍" not in buttons and "🛑" not in buttons
    assert "(here, in the main DM)" in main_mm[0] and "(here, in the Commands thread)" in main_web


async def test_while_mattermost_refuses_every_request_the_web_chat_still_answers(tmp_path: Path) -> None:
    """One front end's outage is its own: a reply Mattermost keeps refusing (retried until
    it takes it) must not hold up the web chat's `!new`, nor the other way round."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            supervisor = await _start_beside(w)
            async with _page(supervisor) as ws:
                w.server.fail_requests(503, method="POST", path_prefix="/api/v4/posts")
                await w.say("!sessions")  # its answer waits for Mattermost
                await trio.sleep(0.5)
                with trio.fail_after(5):
                    thread = await _new_thread(ws, "new-on-web-2", w.work / "during-outage")
                    await send(ws, type="post", id="web-prompt-2", thread=thread["id"], text="still here?")
                    await _answer_in(ws, thread["id"], "echo #1: still here?")
                w.server.fail_requests(None)  # and Mattermost's answer, taken at last, shows once
                await w.wait_for(lambda: [p for p in w.bot_posts("") if "No sessions yet" in p["message"]])
                await trio.sleep(0.5)
                assert len([p for p in w.bot_posts("") if "No sessions yet" in p["message"]]) == 1


async def test_the_same_new_name_from_two_places_at_once_makes_one_session(tmp_path: Path) -> None:
    """Each place's commands are answered on their own (`Desk`'s lanes), so a name is
    checked free and taken in one step (`Desk._naming`): of two `!new twin` at once, one
    makes the session and the other is refused."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            supervisor = await _start_beside(w)
            (w.work / "twin").mkdir()
            async with _page(supervisor) as ws:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(w.say, f"!new twin {w.work / 'twin'}")
                    nursery.start_soon(functools.partial(send, ws, type="new", id="twin-web", name="twin",
                                                         cwd=str(w.work / "twin")))
                await w.wait_for(lambda: [p for p in w.bot_posts("") if "twin" in p["message"]])
                await trio.sleep(1)
            twins = [r for r in supervisor.store.state.sessions.values() if r.name == "twin"]
            assert len(twins) == 1
            if twins[0].channel_id != w.dm:  # Mattermost's was the one refused: it says so
                assert [p for p in w.bot_posts("") if "already called `twin`" in p["message"]]


async def test_while_mattermost_cannot_be_caught_up_the_web_chat_still_answers(tmp_path: Path) -> None:
    """After a new Mattermost connection the router catches Mattermost up over REST, which
    is retried for as long as the server fails it. That runs beside the routing of the
    other front ends' events: the page is answered meanwhile. Mattermost's own new posts
    wait behind its catch-up, so the thread's prompts still reach its agent in order."""
    with trio.fail_after(LIMIT):
        async with _side_by_side(tmp_path, "new-on-web-4") as (w, root, ws, thread):
            catch_up = ("GET", "/api/v4/channels/{channel_id}/posts")
            w.server.fail_requests(503, method="GET", path_prefix=f"/api/v4/channels/{w.dm}/posts")
            w.server.cut_off()
            await w.say("missed while away", root)
            fetched = w.server.stats.count(*catch_up)
            w.server.refuse_websockets(False)
            await w.wait_for(lambda: w.server.stats.count(*catch_up) >= fetched + 2, timeout=20)
            await w.say("written after it", root)  # live, but behind the catch-up
            with trio.fail_after(5):
                await send(ws, type="post", id="web-prompt-4", thread=thread["id"], text="still here?")
                await _answer_in(ws, thread["id"], "echo #1: still here?")
            assert "written after it" not in str(w.prompts_by_process())
            w.server.fail_requests(None)
            await w.answered(root, "written after it (earlier: 'missed while away')", timeout=20)
    for prompt in ("missed while away", "written after it"):
        assert w.thread_text(root).count(f": {prompt} (") == 1


async def test_a_mattermost_that_does_not_answer_at_start_holds_up_neither_the_web_chat_nor_its_own_threads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A start while Mattermost is down (still booting beside us, say): after a few seconds
    the supervisor serves as who it was at its last start, instead of waiting for the
    server. The page is answered meanwhile, and a prompt written in a Mattermost thread
    while the server was away is answered, once, when it is back."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            await _start_beside(w)
            root = await w.new_session("on-mattermost")
            await w.stop()
            _mattermost_silent(w)
            supervisor = await w.start()
            assert "does not answer yet: serving alice as at the last start" in caplog.text
            await _page_answers(supervisor, "new-while-down", w.work / "while-down", "here without Mattermost?")
            await w.say("written while it was down", root)
            _mattermost_silent(w, False)
            await w.answered(root, "written while it was down", timeout=20)
            await w.settled(root)
    assert w.thread_text(root).count(": written while it was down (") == 1


async def test_an_announcement_to_finish_on_a_silent_mattermost_holds_up_neither_the_page_nor_the_start(
    tmp_path: Path,
) -> None:
    """A `!new` whose thread root a crash left unposted is finished at the next start by
    asking Mattermost what reached it; while Mattermost keeps silent that once held up the
    whole start (the page included). It is finished once Mattermost answers."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            await _start_beside(w)
            await w.new_session("on-mattermost")
            await w.stop()
            store = Store.open(w.tmp / "state")
            record = next(iter(store.state.sessions.values()))
            pending = attrs.evolve(
                record, id="0f1e2d3c-pending", name="pending", root_id="", root_pending_id=f"{record.user_id}:k1",
                answer_pending=True, new_post_id="",
            )  # fmt: skip
            store.state = attrs.evolve(store.state, sessions={**store.state.sessions, pending.id: pending})
            store.snapshot()
            store.close()
            _mattermost_silent(w)
            supervisor = await w.start()
            await _page_answers(supervisor, "new-while-down", w.work / "while-down", "served?")
            _mattermost_silent(w, False)
            root = await w.wait_for(lambda: w._root_of("pending"), 20)
            assert root is not None


async def test_a_mattermost_whose_websocket_never_opens_holds_up_neither_the_page_nor_the_start(
    tmp_path: Path,
) -> None:
    """Its REST calls answered, its WebSocket refused every time (a proxy that drops the
    Upgrade header): the start waited for its hello for ever, and the page never listened.
    Once the WebSocket opens, what was written meanwhile is caught up."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            await _start_beside(w)
            root = await w.new_session("on-mattermost")
            await w.stop()
            w.server.refuse_websockets(True)
            supervisor = await w.start()
            await _page_answers(supervisor, "new-no-socket", w.work / "no-socket", "served?")
            await w.say("written while the socket was refused", root)
            w.server.refuse_websockets(False)
            await w.answered(root, "echo #1: written while the socket was refused", timeout=30)


async def test_a_token_revoked_while_mattermost_was_down_ends_the_supervisor_in_one_sentence(tmp_path: Path) -> None:
    """Started as who it was (the server kept silent), a token the server refuses once it
    answers is said as at a start (one sentence, exit 1), rather than every post of every
    thread being refused, one by one, meanwhile."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            await w.start()
            await w.stop()
            _mattermost_silent(w)
            process = w.spawn()
            await w.wait_for(lambda: "does not answer yet" in w.log_text(), timeout=30)
            w.server.fail_requests(None)
            w.server.fail_requests(401, path_prefix="/api/v4/users/me")
            await w.wait_for(lambda: process.poll() is not None, timeout=30)
    assert process.returncode == 1
    assert "refused mattermost.token (401)" in w.log_text() and "Traceback" not in w.log_text()


async def test_a_place_first_seen_after_a_silent_start_is_caught_up_from_the_start_not_from_its_hello(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no position kept for a place (state lost, the identity file kept), what came
    before this start is history, but what came after it is not: a Mattermost that keeps
    silent at start says hello later (here, as if two minutes later: more than the minute
    of slack a catch-up looks back), and a command written in between is answered."""

    class TwoMinutesOn:
        @staticmethod
        def time() -> float:
            return time.time() + 120

    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            await _start_beside(w)
            await w.stop()
            for lost in (w.tmp / "state").glob("sessions.*"):
                lost.unlink()
            _mattermost_silent(w)
            await w.start()
            monkeypatch.setattr(router_task, "time", TwoMinutesOn)
            await w.say("!sessions")
            _mattermost_silent(w, False)
            await w.wait_for(lambda: [p for p in w.bot_posts("") if "No sessions yet" in p["message"]])


async def test_a_configured_session_new_while_mattermost_keeps_silent_does_not_hold_up_the_start(
    tmp_path: Path,
) -> None:
    """A `[[sessions]]` entry added to the configuration is announced in Mattermost: while
    the server keeps silent at start, the supervisor serves already (the page answers, a
    stop is a graceful one), and the session's thread comes once the server answers."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            await w.start()
            await w.stop()
            (w.work / "homelab").mkdir()
            w.configure(sessions=[{"name": "homelab", "cwd": str(w.work / "homelab")}])
            _mattermost_silent(w)
            with trio.fail_after(15):
                supervisor = await _start_beside(w)
            await _page_answers(supervisor, "new-while-down-6", w.work / "beside", "serving?")
            _mattermost_silent(w, False)
            await w.wait_for(lambda: w._root_of("homelab"))


async def test_a_first_start_with_mattermost_silent_serves_the_page_and_mattermost_joins_when_it_answers(
    tmp_path: Path,
) -> None:
    """A first start (nothing remembered of Mattermost to start from) while Mattermost
    still boots: the page serves already, instead of waiting for it; once it answers it
    joins, its `[[sessions]]` thread is made there (not on the page) and its DM serves."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            (w.work / "homelab").mkdir()
            w.configure(sessions=[{"name": "homelab", "cwd": str(w.work / "homelab")}])
            _mattermost_silent(w)
            supervisor = await _start_beside(w)
            assert [f.name for f in supervisor.chat.fronts] == ["web"]
            await _page_answers(supervisor, "new-first-start", w.work / "first-start", "serving?")
            _mattermost_silent(w, False)
            homelab = await w.wait_for(lambda: w._root_of("homelab"))
            assert [f.name for f in supervisor.chat.fronts] == ["mattermost", "web"]
            await w.say("hello, homelab", str(homelab["id"]))
            await w.answered(str(homelab["id"]), "echo #1: hello, homelab")
            root = await w.new_session("joined")
            await w.say("and you?", root)
            await w.answered(root, "echo #1: and you?")
            records = {r.name: r.channel_id for r in supervisor.store.state.sessions.values()}
            assert records == {"homelab": w.dm, "first-start": "web", "joined": w.dm}


async def test_a_late_mattermosts_sessions_wait_for_it_and_serve_once_it_joins(tmp_path: Path) -> None:
    """A start with nothing remembered of Mattermost (its token changed, say) while it is
    silent: its sessions are not handed to the page's front end meanwhile, and serve as
    soon as it answers, with what was written to them while it was silent."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            await _start_beside(w)
            root = await w.new_session("waits")
            await w.stop()
            for remembered in (w.tmp / "state").glob("mattermost-identity.json"):
                remembered.unlink()
            _mattermost_silent(w)
            supervisor = await w.start()
            assert root not in supervisor.tasks
            await w.say("written while it was silent", root)
            _mattermost_silent(w, False)
            await w.answered(root, "echo #1: written while it was silent")


async def test_a_late_mattermost_that_refuses_the_token_is_left_out_and_the_page_serves_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its server answers only after the page serves, and refuses the token: at a start
    that would be the supervisor's end, in one sentence; once serving, that sentence is
    logged and the others go on (it once ended everything, with no graceful stop)."""
    with trio.fail_after(40):
        async with world(tmp_path) as w:
            w.server.revoke_token()
            w.server.latency(7)  # answers after the others serve (JOIN_LATE_AFTER_S)
            supervisor = await _start_beside(w)
            w.server.latency(0)
            await w.wait_for(lambda: "could not be opened" in caplog.text)
            assert "refused mattermost.token (401)" in caplog.text
            await _page_answers(supervisor, "new-after-refusal", w.work / "after-refusal", "still serving?")
            assert [f.name for f in supervisor.chat.fronts] == ["web"]


async def test_a_mattermost_that_answers_after_the_stop_began_does_not_join(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The stop has begun: a late front end is left for the next start, which serves its
    `[[sessions]]` (announcing them during the stop would start nothing)."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(40):
        async with world(tmp_path) as w:
            (w.work / "homelab").mkdir()
            w.configure(sessions=[{"name": "homelab", "cwd": str(w.work / "homelab")}])
            w.server.latency(7)
            supervisor = await _start_beside(w)
            await supervisor.shutdown()
            w.server.latency(0)
            await w.wait_for(lambda: "mattermost answered during the stop" in caplog.text)
            assert [f.name for f in supervisor.chat.fronts] == ["web"]
            assert not w._root_of("homelab")
            assert w.server.stats.count_path("POST", "/api/v4/channels/direct") == 0  # its people not asked


async def test_a_mattermost_whose_join_ends_after_the_stop_began_is_not_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its people were still being asked when the stop began: once they are known it is
    still left for the next start (it was started, its WebSocket opened and its
    `[[sessions]]` thread made, during the stop)."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            (w.work / "homelab").mkdir()
            w.configure(sessions=[{"name": "homelab", "cwd": str(w.work / "homelab")}])
            w.server.fail_requests(503)
            supervisor = await _start_beside(w)
            assert [f.name for f in supervisor.chat.fronts] == ["web"]
            w.server.fail_requests(None)
            w.server.fail_requests(503, method="POST", path_prefix="/api/v4/channels/direct")  # its people, held
            await w.wait_for(lambda: w.server.stats.count_path("POST", "/api/v4/channels/direct") >= 1)
            await supervisor.shutdown()
            w.server.fail_requests(None)
            await w.wait_for(lambda: "mattermost answered during the stop" in caplog.text)
            assert w.server.stats.ws_upgrades == 0
            assert not w._root_of("homelab")
