"""The web chat and Mattermost in one supervisor: each front end keeps its own sessions.

In process (tests/harness.py's fake Mattermost and fake agent), with `[web]` added to the
configuration; the page is driven over its WebSocket, as the browser would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from trio_websocket import open_websocket_url

from supervisor.chat.fronts import Fronts
from supervisor.chat.web import security
from supervisor.chat.web.front_end import WebFrontEnd
from tests.harness import world
from tests.web_served import receive_until, send

LIMIT = 40


def _web(fronts: Any) -> WebFrontEnd:
    assert isinstance(fronts, Fronts)
    found = next(f for f in fronts.fronts if f.name == "web")
    assert isinstance(found, WebFrontEnd)
    return found


async def _answer_in(ws: Any, thread: str, needle: str) -> str:
    while True:
        update: dict[str, Any] = json.loads(await ws.get_message())
        message = update.get("message") or {}
        if message.get("thread_id") == thread and needle in message.get("text", ""):
            return str(message["text"])


async def test_a_web_session_and_a_mattermost_session_side_by_side(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            with w.config_path.open("a") as config:
                config.write('\n[web]\nlisten = "127.0.0.1:0"\n')
            supervisor = await w.start()
            web = _web(supervisor.chat)
            assert web.running is not None
            port, token = web.running.port, web.running.url.partition("token=")[2]
            root = await w.new_session("on-mattermost")
            (w.work / "on-web").mkdir()
            headers = [
                (b"origin", f"http://127.0.0.1:{port}".encode()),
                (b"cookie", f"{security.cookie_name(port)}={token}".encode()),
            ]
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=headers) as ws:
                await send(ws, type="hello", since=0)
                await receive_until(ws, "welcome")
                await send(ws, type="new", id="new-on-web-1", name="on-web", cwd=str(w.work / "on-web"))
                thread = (await receive_until(ws, "thread"))["thread"]
                # At once, as a quick person would: the core knows the thread already.
                await send(ws, type="post", id="web-prompt-1", thread=thread["id"], text="from the page")
                answer = await _answer_in(ws, thread["id"], "echo #1: from the page")
            await w.say("from mattermost", root)
            await w.answered(root, "echo #1: from mattermost")

    assert thread["title"] == "on-web" and thread["id"].startswith("web")
    assert "from mattermost" not in answer
    assert "from the page" not in w.thread_text(root)
    by_name = {r.name: r for r in supervisor.store.state.sessions.values()}
    assert by_name["on-web"].channel_id == "web" and by_name["on-web"].root_id == thread["id"]
    assert by_name["on-mattermost"].channel_id == w.dm


async def test_a_web_permission_card_has_no_reaction_legend_beside_mattermost(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            with w.config_path.open("a") as config:
                config.write('\n[web]\nlisten = "127.0.0.1:0"\n')
            supervisor = await w.start()
            web = _web(supervisor.chat)
            assert web.running is not None
            port, token = web.running.port, web.running.url.partition("token=")[2]
            (w.work / "cards").mkdir()
            headers = [
                (b"origin", f"http://127.0.0.1:{port}".encode()),
                (b"cookie", f"{security.cookie_name(port)}={token}".encode()),
            ]
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=headers) as ws:
                await send(ws, type="hello", since=0)
                await receive_until(ws, "welcome")
                await send(ws, type="new", id="new-cards-001", name="cards", cwd=str(w.work / "cards"))
                thread = (await receive_until(ws, "thread"))["thread"]
                await send(ws, type="post", id="web-prompt-2", thread=thread["id"], text="[tool ls] go")
                card = await _answer_in(ws, thread["id"], "Permission needed")

    assert "React" not in card and "👍" not in card


async def test_help_says_how_to_choose_in_each_front_ends_own_terms(tmp_path: Path) -> None:
    """Mattermost's choices are reactions; the page's are buttons: `!help` in each place
    says its own, in the main place and in a session's thread alike."""
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            with w.config_path.open("a") as config:
                config.write('\n[web]\nlisten = "127.0.0.1:0"\n')
            supervisor = await w.start()
            web = _web(supervisor.chat)
            assert web.running is not None
            port, token = web.running.port, web.running.url.partition("token=")[2]
            root = await w.new_session("on-mattermost")
            await w.say("!help")
            main_mm = await w.wait_for(lambda: [p["message"] for p in w.bot_posts("") if "**Commands**" in p["message"]])
            await w.say("!help", root)
            thread_mm = await w.answered(root, "Write here to talk")
            (w.work / "on-web").mkdir()
            headers = [
                (b"origin", f"http://127.0.0.1:{port}".encode()),
                (b"cookie", f"{security.cookie_name(port)}={token}".encode()),
            ]
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws", extra_headers=headers) as ws:
                await send(ws, type="hello", since=0)
                await receive_until(ws, "welcome")
                await send(ws, type="post", id="web-help-main", thread=None, text="!help")
                main_web = await _answer_in(ws, "main", "**Commands**")
                await send(ws, type="new", id="new-on-web-2", name="on-web", cwd=str(w.work / "on-web"))
                thread = (await receive_until(ws, "thread"))["thread"]
                await send(ws, type="post", id="web-help-thread", thread=thread["id"], text="!help")
                thread_web = await _answer_in(ws, thread["id"], "Write here to talk")

    for reactions in (main_mm[0], thread_mm):
        assert "**Reactions:**" in reactions and "👍" in reactions and "Buttons" not in reactions
    for buttons in (main_web, thread_web):
        assert "**Buttons:**" in buttons and "Allow for this session" in buttons
        assert "React" not in buttons and "👍" not in buttons and "🛑" not in buttons
