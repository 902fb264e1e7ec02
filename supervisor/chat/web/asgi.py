"""The web chat's ASGI application: the page, its assets, uploads, downloads, the WebSocket.

Every request and WebSocket upgrade is checked here before anything else is read: the
access token (the printed URL's `?token=` once, then the HttpOnly SameSite=Strict cookie)
and, for the WebSocket and every state-changing request, a same-origin `Origin`. Without
them the answer is a bare 401/403 that holds no page data. HTTP and WebSocket framing are
the server's (hypercorn); this module speaks ASGI only.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from supervisor.chat.web import codec, security
from supervisor.chat.web.assets import Asset, load_assets
from supervisor.chat.web.db import WebDb
from supervisor.chat.web.front import WebChat
from supervisor.chat.web.port import MAIN_THREAD
from supervisor.chat.web.store import is_busy

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]
STALLED_SEND_S = 30.0
# A tab's socket that carried nothing for this long gets `KEEPALIVE`: the server's
# WebSocket pings are frames a page never sees, and a page that hears nothing for a while
# (static/app.js SILENCE_MS) takes its connection for dead and makes a new one.
KEEPALIVE_S = 20.0
KEEPALIVE = {"type": "alive"}  # the page ignores it but for its timing
PAGE = 100  # messages per page of a thread: a long thread opens on its newest ones
# A welcome carries at most this many messages: past it, the page fetches its threads anew
# (a page at a time) rather than take a day's changes in one message.
WELCOME_MESSAGES = 2000
BUSY_DATABASE = "the supervisor's database stayed locked by another program"
UNAUTHORIZED = (
    b"401 Unauthorized: open the address the supervisor printed (it carries the access token)."
)


def _headers(scope: Scope, name: bytes) -> list[str]:
    return [v.decode("latin-1") for k, v in scope["headers"] if k == name]


def _header(scope: Scope, name: bytes) -> str | None:
    found = _headers(scope, name)
    return found[0] if found else None


class WebApp:
    """Invariant: `token` never appears in a response body or a log line."""

    def __init__(self, front: WebChat, token: str, port: int, max_upload_bytes: int) -> None:
        self.front = front
        self.token = token
        self.port = port
        self.max_upload_bytes = max_upload_bytes
        self.assets: dict[str, Asset] = load_assets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif not self._authorised(scope):
            await self._refuse(scope, send, 401, UNAUTHORIZED)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self._http(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        given = security.cookie_token(_headers(scope, b"cookie"), self.port)
        if security.token_matches(given, self.token):
            return True
        return scope["path"] == "/" and security.token_matches(
            security.query_token(scope.get("query_string", b"")), self.token
        )

    def _same_origin(self, scope: Scope) -> bool:
        return security.same_origin(
            _header(scope, b"origin"), _header(scope, b"host"), _header(scope, b"x-forwarded-proto")
        )

    async def _refuse(self, scope: Scope, send: Send, status: int, body: bytes) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting makes the server answer the upgrade with 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        await _respond(send, status, body, b"text/plain; charset=utf-8")

    # HTTP ----------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"]
        if method not in ("GET", "HEAD") and not self._same_origin(scope):
            await _respond(send, 403, b"403 Forbidden: cross-origin request", b"text/plain")
        elif path == "/" and method in ("GET", "HEAD"):
            await self._page(scope, send)
        elif path.startswith("/static/") and method in ("GET", "HEAD"):
            await self._asset(scope, send, path.removeprefix("/static/"))
        elif path == "/api/files" and method == "POST":
            await self._stored(send, self._upload(scope, receive, send), "an upload")
        elif path.startswith("/files/") and method == "GET":
            await self._stored(send, self._download(send, path.removeprefix("/files/")), "a download")
        else:
            await _respond(send, 404, b"404 Not Found", b"text/plain")

    async def _stored(self, send: Send, answer: Awaitable[None], what: str) -> None:
        """`answer`, whose response waits for the database; a database another program
        kept locked through the store's tries is a 503 the page tries again after, not a
        traceback (the response has not begun: the store is asked first)."""
        try:
            await answer
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
            log.warning("the web chat could not serve %s: its database stayed locked (%s)", what, exc)
            await _respond(send, 503, BUSY_DATABASE.encode(), b"text/plain; charset=utf-8")

    def _cookie(self) -> tuple[bytes, bytes]:
        return (b"set-cookie", security.session_cookie(self.port, self.token).encode())

    async def _page(self, scope: Scope, send: Send) -> None:
        cookie = self._cookie()
        if security.query_token(scope.get("query_string", b"")):
            # First visit: keep the token in a cookie and drop it from the address bar
            # (and from the history, bookmarks and screenshots).
            await _respond(send, 303, b"", b"text/plain", [(b"location", b"/"), cookie])
            return
        await self._asset(scope, send, "index.html", [cookie])  # renewed at each load

    async def _asset(self, scope: Scope, send: Send, name: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        asset = self.assets.get(name)
        headers = [(b"etag", asset.etag.encode()), *(extra or [])] if asset is not None else []
        if asset is None:
            await _respond(send, 404, b"404 Not Found", b"text/plain")
        elif _header(scope, b"if-none-match") == asset.etag:
            await _respond(send, 304, b"", asset.content_type.encode(), headers)
        else:
            await _respond(send, 200, asset.body, asset.content_type.encode(), headers)

    async def _upload(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        name = (query.get("name") or ["file"])[0][:255] or "file"
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_upload_bytes:
            await _respond(send, 413, self._too_large(), b"text/plain; charset=utf-8")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_upload_bytes:
                await _respond(send, 413, self._too_large(), b"text/plain; charset=utf-8")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        # The browser declares an attached file's type (an image is given to the agent as one).
        declared = _header(scope, b"content-type") or ""
        ref = await self.front.store.call(WebDb.add_file, name, b"".join(chunks), declared)
        await _respond(send, 200, json.dumps(ref).encode(), b"application/json")

    def _too_large(self) -> bytes:
        limit = self.max_upload_bytes / 1_000_000  # files.max_upload_mb counts MB of 10^6 bytes
        return f"413 the file is larger than files.max_upload_mb ({limit:g} MB)".encode()

    async def _download(self, send: Send, file_id: str) -> None:
        found = await self.front.store.call(WebDb.file, file_id)
        if found is None:
            await _respond(send, 404, b"404 Not Found", b"text/plain")
            return
        name, data = found
        disposition = "attachment; filename*=UTF-8''" + urllib.parse.quote(name, safe="")
        await _respond(
            send, 200, data, b"application/octet-stream",
            [(b"content-disposition", disposition.encode("latin-1"))],
        )  # fmt: skip

    # WebSocket -----------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != "/ws" or not self._same_origin(scope):
            await self._refuse(scope, send, 403, b"")
            return
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        # Renewed here too: a tab left open for weeks reconnects (after each restart)
        # but never loads the page again, and its cookie would lapse.
        await send({"type": "websocket.accept", "headers": [self._cookie()]})
        tab = _Tab(self.front, send, self.max_upload_bytes)
        with self.front.hub.tab() as updates:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tab.forward, updates, nursery.cancel_scope)
                await tab.read(receive)
                nursery.cancel_scope.cancel()


class Refusal(Exception):
    """The page asked for something that cannot be done; the message is its reason."""


class _Tab:
    """One open page. Invariant: every `send` goes through `_lock`, in the order asked."""

    def __init__(self, front: WebChat, send: Send, max_upload_bytes: int) -> None:
        self.front = front
        self._send = send
        self._max_upload_bytes = max_upload_bytes
        self._lock = trio.StrictFIFOLock()
        self._sent_at = trio.current_time()  # the last send's, for `KEEPALIVE`

    async def send(self, update: dict[str, Any]) -> None:
        async with self._lock:
            await self._send({"type": "websocket.send", "text": json.dumps(update)})
            self._sent_at = trio.current_time()

    async def forward(
        self, updates: trio.MemoryReceiveChannel[dict[str, Any]], scope: trio.CancelScope
    ) -> None:
        while True:
            update = KEEPALIVE  # unless an update comes before the socket was quiet for long
            with trio.move_on_at(self._sent_at + KEEPALIVE_S):
                try:
                    update = await updates.receive()
                except trio.EndOfChannel:
                    break
            with trio.move_on_after(STALLED_SEND_S) as stalled:
                await self.send(update)
            if stalled.cancelled_caught:
                # A tab that stopped reading (a sleeping phone): end it rather than hold its
                # connection and queue; the page reconnects and catches up by version. A send
                # that waits on the peer cannot be cancelled (hypercorn shields it): the
                # kernel ends such a connection (`http_server.UNACKED_LIMIT_S`).
                scope.cancel()
                return
        # The hub dropped this tab (too slow): close, so the page reconnects and catches up.
        async with self._lock:
            await self._send({"type": "websocket.close", "code": 1013})
        scope.cancel()

    async def read(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            raw = message.get("text") or (message.get("bytes") or b"").decode("utf-8", "replace")
            page = codec.decode_page(raw)
            if isinstance(page, codec.Refused):
                await self.refuse(page)
                continue
            try:
                await self._handle(page)
            except Refusal as refusal:
                await self.refuse(codec.Refused(getattr(page, "id", None), str(refusal), codec.uploads(page)))
            except Exception as exc:
                # One action the server cannot take must not end the connection: the
                # page would resend it on reconnecting and never get past it.
                log.exception("the web chat could not take a %s from the page", type(page).__name__)
                if is_busy(exc):
                    # Its uploads stay (the weekly clean-up takes them): deleting them would
                    # wait for the same lock, and the page keeps its files to send again.
                    reason = BUSY_DATABASE + "; send it again"
                    await self.refuse(codec.Refused(getattr(page, "id", None), reason))
                    continue
                reason = "the supervisor could not take this message (its log says why)"
                await self.refuse(codec.Refused(getattr(page, "id", None), reason, codec.uploads(page)))

    async def refuse(self, refused: codec.Refused) -> None:
        """Tell the page; with an id, it shows that action refused and stops resending it.
        A refused message's uploads go first: nothing will ever carry them."""
        if refused.files:
            try:
                await self.front.store.call(WebDb.forget_files, refused.files)
            except Exception:
                log.exception("a refused message's uploads stay until the weekly clean-up")
        await self.send({"type": "error", "id": refused.id, "text": refused.reason})

    async def _handle(self, page: codec.PageMessage) -> None:
        store = self.front.store
        match page:
            case codec.Hello(since=since, held=held):
                changes = await store.call(WebDb.changes_since, since, held, WELCOME_MESSAGES)
                await self.send({
                    "type": "welcome",
                    "version": changes.version,
                    "threads": [codec.thread_json(t) for t in changes.threads],
                    "messages": [codec.message_json(m) for m in changes.messages],
                    "changed": list(changes.changed),  # unread, not sent: the page holds none
                    "reload": list(changes.reload),  # too changed: the page fetches them anew
                    "typing": self.front.typing_now(),
                    "page": _page_config(self.front, self._max_upload_bytes),
                })  # fmt: skip
            case codec.Open(thread=thread_id, before=before, held=held):
                if before is None:  # the thread was opened, not scrolled back
                    self.front.opened(thread_id)
                if held:
                    return  # the page keeps it current from the updates: a wake is all it asks
                # One page more than shown tells whether older messages exist.
                rows = await store.call(WebDb.thread_messages, thread_id, before, PAGE + 1)
                await self.send({
                    "type": "snapshot", "thread": thread_id, "before": before,
                    "more": len(rows) > PAGE,
                    "messages": [codec.message_json(m) for m in rows[-PAGE:]],
                })  # fmt: skip
            case codec.NewSession():
                command = codec.new_session_command(page)
                await self.front.accept(codec.Post(page.id, None, command))
                await self.send({"type": "ack", "id": page.id})
            case codec.Post() | codec.Choose() | codec.Stop():
                # The core would answer in a thread no page can show.
                if isinstance(page, codec.Post | codec.Stop) and not await self._exists(page.thread):
                    raise Refusal(f"there is no thread {page.thread}")
                await self.front.accept(page)
                await self.send({"type": "ack", "id": page.id})

    async def _exists(self, thread_id: str | None) -> bool:
        if thread_id in (None, MAIN_THREAD):
            return True
        return await self.front.store.call(WebDb.thread, thread_id) is not None


def _page_config(front: WebChat, max_upload_bytes: int) -> dict[str, Any]:
    page = front.page
    return {
        "agents": list(page.agents),
        "default_agent": page.default_agent,
        "personas": list(page.personas),
        "persona_agents": dict(page.persona_agents),
        "default_cwd": page.default_cwd,
        "notice": page.notice,
        "max_text": codec.MAX_TEXT,  # the page checks before sending
        "max_files": codec.MAX_FILES,
        "max_file_bytes": max_upload_bytes,
    }


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
