"""The web chat as one service in the nursery tree: its store, its front, its HTTP server.

`open_web_chat` opens the store and reads the token (the front the core talks to works
from then on); `listen` binds the port and serves, reporting a `RunningWebChat` (with
the URL to print) once bound; `serve_web_chat` is both, as one service started with
`nursery.start`. hypercorn's trio connection handler does all HTTP/1.1 and WebSocket
work (`http_server`).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import attrs
import trio
from hypercorn.config import Config

from supervisor.chat import CannotStart
from supervisor.chat.web import security
from supervisor.chat.web.asgi import WebApp
from supervisor.chat.web.front import PageConfig, WebChat
from supervisor.chat.web.http_server import serve_http
from supervisor.chat.web.hub import Hub
from supervisor.chat.web.store import DB_FILE, WebStore

log = logging.getLogger(__name__)

DEFAULT_LISTEN = security.DEFAULT_LISTEN


@attrs.frozen
class WebSettings:
    """What `[web]` (and `[files]`, `[state]`) say; `listen` already validated."""

    state_dir: Path
    listen: str = DEFAULT_LISTEN
    max_upload_bytes: int = 50_000_000  # files.max_upload_mb's default (MB of 10^6 bytes)
    page: PageConfig = attrs.field(factory=PageConfig)


class CannotListen(CannotStart):
    """The address of `web.listen` cannot be bound (taken, not this machine's): one
    sentence for the person, no traceback."""


@attrs.frozen
class RunningWebChat:
    front: WebChat
    address: str  # the page's, `http://127.0.0.1:8765/`
    token: str = attrs.field(repr=False)  # print it once (`announcement`), never log it
    port: int
    token_file: Path

    @property
    def url(self) -> str:
        """The address with the access token: what a person opens."""
        return f"{self.address}?token={self.token}"

    def announcement(self, *, to_journal: bool = False) -> str:
        """The line for stderr (not the log): what to open, like a notebook server says.
        Where stderr is systemd's journal, which keeps it for whoever may read logs, the
        address goes without its token, and the line says where the token is."""
        if to_journal:
            return f"Web chat: open {self.address}?token=<the token in {self.token_file}> in a browser"
        return f"Web chat: open {self.url} in a browser (the address carries the access token)"


def _config(address: security.ListenAddress) -> Config:
    config = Config()
    host = f"[{address.host}]" if ":" in address.host else address.host
    config.bind = [f"{host}:{address.port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("supervisor.web.server")
    config.include_server_header = False
    config.graceful_timeout = 1.0
    config.websocket_ping_interval = 20.0
    # Uploads are bounded by the app (files.max_upload_mb) with a clear message; the
    # server's own HTTP/1 limits stay as they are.
    return config


@attrs.define
class OpenedWebChat:
    """The web chat with its store open and its token read, not listening yet: the core
    may already write to it (a thread, a message), and every tab will see that."""

    settings: WebSettings
    front: WebChat
    token: str

    async def aclose(self) -> None:
        await self.front.store.aclose()


async def open_web_chat(settings: WebSettings) -> OpenedWebChat:
    address = security.parse_listen(settings.listen)
    if isinstance(address, str):
        raise ValueError(address)
    try:
        token = await trio.to_thread.run_sync(security.load_or_create_token, settings.state_dir)
    except OSError as exc:
        raise _unusable(settings.state_dir, security.TOKEN_FILE, "its access token", exc) from exc
    try:
        store = await WebStore.open(settings.state_dir)
    except (OSError, sqlite3.Error) as exc:
        raise _unusable(settings.state_dir, DB_FILE, "its database", exc) from exc
    return OpenedWebChat(settings, WebChat(store, Hub(), settings.page), token)


def _unusable(state_dir: Path, name: str, what: str, exc: OSError | sqlite3.Error) -> CannotStart:
    """A file of the web chat's that cannot be read or written (most often one another user
    left, after a `sudo -E` run): one sentence naming it, not a traceback."""
    if isinstance(exc, OSError):
        why, path = exc.strerror or str(exc), exc.filename or state_dir / name
        fix = f"let the supervisor's user read and write {state_dir}"
    else:  # SQLite's own words: a -wal it may not make, a damaged file
        why, path = str(exc), state_dir / name
        fix = "mend its permissions or move it aside (the web chat's history goes with it)"
    return CannotStart(
        f"the web chat cannot use {what} in {path} ({why}): {fix}, or set state.dir elsewhere, and start again"
    )


async def listen(
    opened: OpenedWebChat,
    *,
    task_status: trio.TaskStatus[RunningWebChat] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the page until cancelled; `started()` once the port is bound."""
    settings, front = opened.settings, opened.front
    address = security.parse_listen(settings.listen)
    assert not isinstance(address, str)  # checked by open_web_chat
    async with trio.open_nursery() as nursery:
        app = WebApp(front, opened.token, address.port, settings.max_upload_bytes)
        try:
            binds: list[str] = await nursery.start(serve_http, app, _config(address))
        except OSError as error:
            raise CannotListen(
                f"the web chat cannot listen on {settings.listen}: "
                f"{error.strerror or error}; stop what uses it (another supervisor?) "
                "or set web.listen (with no configuration file: $SUPERVISOR_WEB_LISTEN) to a free address"
            ) from None
        base = binds[0]
        port = int(base.rpartition(":")[2])
        app.port = port  # port 0 asked: the cookie's name carries the port really bound
        nursery.start_soon(front.replay_unhandled)
        token_file = settings.state_dir / security.TOKEN_FILE
        task_status.started(RunningWebChat(front, f"{base}/", opened.token, port, token_file))


async def serve_web_chat(
    settings: WebSettings, *, task_status: trio.TaskStatus[RunningWebChat] = trio.TASK_STATUS_IGNORED
) -> None:
    """Open, then serve, until cancelled: the web chat as one service."""
    opened = await open_web_chat(settings)
    try:
        await listen(opened, task_status=task_status)
    finally:
        await opened.aclose()
