"""The web chat in front of the real core and a fake agent (tests/harness.py's world, with
`[web]` beside its Mattermost): what the page sends reaches the agent as it should, and
what the core says of a session shows in the page."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import httpx
import trio

from supervisor.chat.fronts import Fronts
from supervisor.chat.web import security
from supervisor.chat.web.front_end import WebFrontEnd
from supervisor.runtime.supervisor import Supervisor
from tests.harness import FAKE_AGENT, World, world
from tests.test_web_beside_mattermost import _answer_in, _new_thread, _page, _start_beside
from tests.web_served import receive_until, send

LIMIT = 40
PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)


def _web(supervisor: Supervisor) -> WebFrontEnd:
    assert isinstance(supervisor.chat, Fronts)
    web = next(f for f in supervisor.chat.fronts if f.name == "web")
    assert isinstance(web, WebFrontEnd) and web.running is not None
    return web


async def _upload(supervisor: Supervisor, name: str, data: bytes, content_type: str | None) -> str:
    """Upload as the page does (fetch with the File as body: the browser declares its type)."""
    running = _web(supervisor).running
    assert running is not None
    base = f"http://127.0.0.1:{running.port}"
    cookies = {security.cookie_name(running.port): running.url.partition("token=")[2]}
    headers = {"origin": base, **({"content-type": content_type} if content_type else {})}
    async with httpx.AsyncClient(base_url=base, cookies=cookies, headers=headers) as client:
        response = await client.post("/api/files", params={"name": name}, content=data)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def _images(w: World) -> list[tuple[str, bytes]]:
    """The image content blocks of every prompt the fake agents were given."""
    found = []
    for line in w.agent_lines():
        message = line.get("line", {}) if line.get("event") == "stdin" else {}
        content = message.get("message", {}).get("content") if message.get("type") == "user" else None
        for block in content if isinstance(content, list) else []:
            if block.get("type") == "image":
                found.append((block["source"]["media_type"], base64.b64decode(block["source"]["data"])))
    return found


async def test_an_image_attached_in_the_page_reaches_the_agent_as_an_image(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            supervisor = await _start_beside(w)
            async with _page(supervisor) as ws:
                thread: dict[str, Any] = await _new_thread(ws, "new-pics-0001", w.work / "pics")
                declared = await _upload(supervisor, "shot.png", PNG, "image/png")
                # No type declared (a browser that does not know it): the name says it.
                guessed = await _upload(supervisor, "photo.jpg", b"\xff\xd8\xff\xd9", None)
                await send(ws, type="post", id="web-pics-0001", thread=thread["id"], text="look",
                           files=[declared, guessed])  # fmt: skip
                await _answer_in(ws, thread["id"], "echo #1")

    assert _images(w) == [("image/png", PNG), ("image/jpeg", b"\xff\xd8\xff\xd9")]


async def test_the_sidebar_names_each_sessions_agent(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with world(tmp_path) as w:
            with w.config_path.open("a") as config:
                config.write(f'\n[agents.reviewer]\ncommand = ["{sys.executable}", "{FAKE_AGENT}"]\n')
            supervisor = await _start_beside(w)
            async with _page(supervisor) as ws:
                default = await _new_thread(ws, "new-plain-0001", w.work / "plain")
                (w.work / "reviewed").mkdir()
                await send(ws, type="new", id="new-named-0001", name="reviewed",
                           cwd=str(w.work / "reviewed"), agent="reviewer")  # fmt: skip
                named = (await receive_until(ws, "thread"))["thread"]
                while named["title"] != "reviewed":
                    named = (await receive_until(ws, "thread"))["thread"]

    assert default["agent"] == "claude"  # the default agent, by its protocol's name
    assert named["agent"] == "reviewer"
