"""The web chat served inside the test's own trio loop, with the stand-in core beside it.

For tests without a browser: httpx for HTTP, trio-websocket for the page's WebSocket.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from supervisor.chat.web import security
from supervisor.chat.web.front import PageConfig
from supervisor.chat.web.server import RunningWebChat, WebSettings, serve_web_chat
from tests.web_core import StandInCore


@attrs.define
class Served:
    chat: RunningWebChat
    core: StandInCore
    state_dir: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.chat.port}"

    @property
    def token(self) -> str:
        return self.chat.url.partition("token=")[2]

    @property
    def origin(self) -> str:
        return self.base

    def cookie(self) -> tuple[bytes, bytes]:
        return (b"cookie", f"{security.cookie_name(self.chat.port)}={self.token}".encode())

    def client(self, *, authorised: bool = True, origin: str | None = None) -> httpx.AsyncClient:
        headers = {"origin": origin or self.origin}
        cookies = {security.cookie_name(self.chat.port): self.token} if authorised else {}
        return httpx.AsyncClient(base_url=self.base, headers=headers, cookies=cookies)

    @asynccontextmanager
    async def page(
        self, *, origin: str | None = None, authorised: bool = True
    ) -> AsyncIterator[WebSocketConnection]:
        headers = [(b"origin", (origin or self.origin).encode())]
        if authorised:
            headers.append(self.cookie())
        async with open_websocket_url(
            f"ws://127.0.0.1:{self.chat.port}/ws", extra_headers=headers, max_message_size=1 << 26
        ) as ws:
            yield ws


@asynccontextmanager
async def serve(
    state_dir: Path, *, port: int = 0, max_upload_bytes: int = 1 << 20, word_delay: float = 0.01
) -> AsyncIterator[Served]:
    settings = WebSettings(
        state_dir=state_dir,
        listen=f"127.0.0.1:{port}",
        max_upload_bytes=max_upload_bytes,
        page=PageConfig(agents=("claude",), default_cwd="~"),
    )
    async with trio.open_nursery() as nursery:
        chat: RunningWebChat = await nursery.start(serve_web_chat, settings)
        core = StandInCore(chat.front, word_delay=word_delay)
        nursery.start_soon(core.run)
        yield Served(chat, core, state_dir)
        nursery.cancel_scope.cancel()


async def send(ws: WebSocketConnection, **message: Any) -> None:
    await ws.send_message(json.dumps(message))


async def receive_until(ws: WebSocketConnection, kind: str, **fields: Any) -> dict[str, Any]:
    """The next update of `kind` whose fields match (others are skipped)."""
    while True:
        update: dict[str, Any] = json.loads(await ws.get_message())
        if update["type"] == kind and all(update.get(k) == v for k, v in fields.items()):
            return update
