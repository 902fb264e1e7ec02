"""A web chat served from a background thread, for tests that drive a real browser.

Selenium is blocking, so the browser tests are plain functions; the server and the
stand-in core run in their own `trio.run` in a thread, and the test talks to them through
`trio.from_thread`. `restart()` stops the whole web chat (store closed, connections cut)
and starts it again on the same port and state directory, as a supervisor restart would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from supervisor.chat.web.front import PageConfig
from supervisor.chat.web.server import RunningWebChat, WebSettings, serve_web_chat
from tests.web_core import StandInCore


class WebWorld:
    """Invariant: between `up()` and `down()`, `chat` and `core` belong to the live web chat."""

    def __init__(
        self,
        state_dir: Path,
        *,
        word_delay: float = 0.05,
        max_upload_bytes: int = 1 << 20,
        notice: str = "",
    ) -> None:
        self.state_dir = state_dir
        self.notice = notice
        self.word_delay = word_delay
        self.max_upload_bytes = max_upload_bytes
        self.port = 0
        self.chat: RunningWebChat | None = None
        self.core: StandInCore | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._outer: trio.CancelScope | None = None
        self._nursery: trio.Nursery
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._error: BaseException | None = None
        self._down = trio.Event()

    # lifetime ------------------------------------------------------------------------

    def start(self) -> WebWorld:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("the web chat did not start")
        if self._error is not None:
            raise self._error
        self.up()
        return self

    def close(self) -> None:
        if self._token is not None and self._outer is not None:
            trio.from_thread.run_sync(self._outer.cancel, trio_token=self._token)
        self._thread.join(20)
        if self._error is not None:  # the web chat or the stand-in core failed
            raise self._error

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as error:  # reported to the test thread
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._outer = nursery.cancel_scope
            self._ready.set()
            await trio.sleep_forever()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._token is not None
        return trio.from_thread.run(fn, *args, trio_token=self._token)

    def up(self) -> None:
        """Start the web chat (and a fresh stand-in core) on the world's port."""
        self.call(self._start_chat)

    def down(self) -> None:
        """Stop the web chat: every connection cut, the store closed."""
        self.call(self._stop_chat)

    def restart(self) -> None:
        self.down()
        self.up()

    async def _start_chat(self) -> None:
        done = trio.Event()
        self._down = trio.Event()

        async def run() -> None:
            settings = WebSettings(
                state_dir=self.state_dir,
                listen=f"127.0.0.1:{self.port}",
                max_upload_bytes=self.max_upload_bytes,
                page=PageConfig(
                    agents=("claude", "opencode"),
                    personas=("reviewer", "porter"),
                    persona_agents={"porter": "opencode"},
                    default_cwd="~",
                    notice=self.notice,
                ),
            )
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    chat: RunningWebChat = await nursery.start(serve_web_chat, settings)
                    self.chat, self.port = chat, chat.port
                    self.core = StandInCore(chat.front, word_delay=self.word_delay)
                    nursery.start_soon(self.core.run)
                    done.set()
            self._down.set()

        self._nursery.start_soon(run)
        await done.wait()

    async def _stop_chat(self) -> None:
        assert self._scope is not None
        self._scope.cancel()
        await self._down.wait()
        self.chat = None

    # conveniences for tests ----------------------------------------------------------

    @property
    def url(self) -> str:
        assert self.chat is not None
        return self.chat.url

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def token(self) -> str:
        return self.url.partition("token=")[2]
