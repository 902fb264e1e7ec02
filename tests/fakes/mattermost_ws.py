"""The fake Mattermost's WebSocket side: the hub of reliable connections and one socket's loop.

`Hub` (sans-IO) owns the reliable-websocket rules of FACTS.md §1: a `WebConn` outlives its
socket, numbers events 0, 1, 2... (hello is 0), keeps the last 128 sent in a dead queue,
and on `?connection_id=X&sequence_number=N` either replays from N (no hello), continues
losslessly, or, when N is gone, restarts with a new connection id and a new hello.
Events for a disconnected WebConn wait in its send queue (256, as MM's `send` channel);
overflow kills the WebConn, so the client's next resume gets a fresh hello.

`WebSocketSession` is the trio shell for one upgraded socket: a reader (client actions,
pings), a writer (the WebConn's events), and a keepalive pinger. All its writes go
through one lock. It must never decide resume semantics itself.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio
from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)

from tests.fakes.mattermost_shapes import (
    SERVER_VERSION_STRING,
    ApiError,
    Broadcast,
    hello_prefix,
    new_id,
    ws_reply,
)

DEAD_QUEUE_SIZE = 128
SEND_QUEUE_SIZE = 256
MAX_FRAME_BYTES = 8 * 1024  # SocketMaxMessageSizeKb


@attrs.define(eq=False)
class WebConn:
    """One reliable connection (a connection_id), alive across socket drops.

    Invariants: `next_seq` is the seq the next written event gets; `dead_queue` holds the
    newest written events as (seq, frame) with consecutive seqs ending at next_seq - 1;
    `pending` holds envelope prefixes (no seq yet) not written to any socket.
    """

    id: str
    user_id: str
    next_seq: int = 0
    dead_queue: collections.deque[tuple[int, str]] = attrs.Factory(
        lambda: collections.deque(maxlen=DEAD_QUEUE_SIZE)
    )
    pending: collections.deque[str] = attrs.Factory(collections.deque)
    wake: trio.Event = attrs.Factory(trio.Event)
    socket: WebSocketSession | None = None
    detached_at: float | None = None

    def enqueue(self, prefix: str) -> bool:
        """Queue an event; False when the send queue is full (the caller kills the conn)."""
        if len(self.pending) >= SEND_QUEUE_SIZE:
            return False
        self.pending.append(prefix)
        self.wake.set()
        return True

    def take(self) -> str:
        """The next queued event as a frame, numbered and remembered for replay."""
        frame = f'{self.pending.popleft()},"seq":{self.next_seq}}}'
        self.dead_queue.append((self.next_seq, frame))
        self.next_seq += 1
        return frame

    def replay_from(self, sequence: int) -> list[str] | None:
        """Frames to resend for a client expecting `sequence`; None when some are lost."""
        if sequence == self.next_seq:
            return []
        if self.dead_queue and self.dead_queue[0][0] <= sequence < self.next_seq:
            return [frame for seq, frame in self.dead_queue if seq >= sequence]
        return None

    def restart(self, new_connection_id: str) -> None:
        """After message loss: new id, seq from 0, a new hello before what is still queued."""
        self.id = new_connection_id
        self.next_seq = 0
        self.dead_queue.clear()
        self.pending.appendleft(hello_prefix(self.user_id, new_connection_id))
        self.wake.set()


class ResumeRefused(Exception):
    """A resume attempt without sequence_number: the real server closes the socket."""


@attrs.define
class Hub:
    """Every WebConn by id and by user.

    Invariants: `conns` holds the resumable WebConns; `by_user` holds every WebConn that
    still gets events: those in `conns` plus forgotten ones whose socket is still open.
    """

    reap_after: float = 300.0  # inactiveConnReaperInterval
    clock: Callable[[], float] = trio.current_time
    conns: dict[str, WebConn] = attrs.Factory(dict)
    by_user: dict[str, set[WebConn]] = attrs.Factory(dict)

    def fresh(self, user_id: str) -> WebConn:
        conn = WebConn(new_id(), user_id)
        conn.enqueue(hello_prefix(user_id, conn.id))
        self.conns[conn.id] = conn
        self.by_user.setdefault(user_id, set()).add(conn)
        return conn

    def connect(
        self, user_id: str, connection_id: str, sequence: int | None
    ) -> tuple[WebConn, list[str], bool]:
        """Attach an upgrade authenticated by header: (conn, frames to replay, resumed?)."""
        old = self._resumable(connection_id, user_id)
        if old is None:
            return self.fresh(user_id), [], False
        if sequence is None:
            raise ResumeRefused(connection_id)
        replay = old.replay_from(sequence)
        if replay is None:
            del self.conns[old.id]
            old.restart(new_id())
            self.conns[old.id] = old
            return old, [], False
        return old, replay, True

    def _resumable(self, connection_id: str, user_id: str) -> WebConn | None:
        conn = self.conns.get(connection_id) if connection_id else None
        if conn is None or conn.user_id != user_id:
            return None
        if conn.detached_at is not None and self.clock() - conn.detached_at > self.reap_after:
            self.kill(conn)
            return None
        return conn

    def publish(self, broadcast: Broadcast) -> None:
        for user_id in broadcast.recipients:
            conns = self.by_user.get(user_id)
            if not conns:
                continue
            prefix = broadcast.envelope_prefix(user_id)
            for conn in list(conns):
                if not conn.enqueue(prefix):
                    self.kill(conn)  # a slow or long-gone client: MM drops the conn

    def kill(self, conn: WebConn) -> None:
        """Forget `conn` for good and close its socket, if any."""
        if self.conns.get(conn.id) is conn:
            del self.conns[conn.id]
        self.by_user.get(conn.user_id, set()).discard(conn)
        if conn.socket is not None:
            conn.socket.abort()

    def forget(self) -> None:
        """Make every connection id unknown: the next resume of any of them gets a hello.

        Live sockets keep working with the events they were getting.
        """
        for conn in list(self.conns.values()):
            if conn.socket is None:
                self.kill(conn)
            else:
                del self.conns[conn.id]

    def detached(self, conn: WebConn) -> None:
        """`conn` lost its socket: keep it for a resume, unless it was forgotten."""
        conn.socket = None
        conn.detached_at = self.clock()
        if self.conns.get(conn.id) is not conn:
            self.by_user.get(conn.user_id, set()).discard(conn)

    def active_sockets(self, user_id: str) -> int:
        return sum(1 for c in self.by_user.get(user_id, ()) if c.socket is not None)


class WsBackend(Protocol):
    """What a socket needs from the server: tokens, typing, statuses."""

    hub: Hub

    def user_for_token(self, token: str) -> str | None: ...

    def publish_typing(self, user_id: str, channel_id: str, parent_id: str) -> None:
        """Publish `typing`; raises ApiError when the user may not."""

    def statuses(self, user_ids: list[str] | None) -> dict[str, str]: ...

    def socket_attached(self, session: WebSocketSession, resumed: bool) -> None: ...

    def socket_detached(self, session: WebSocketSession) -> None: ...


@attrs.define(eq=False)
class WebSocketSession:
    """One upgraded socket. Owns the stream's writes (through `_send_lock`)."""

    stream: trio.SocketStream
    ws: WsConnection
    backend: WsBackend
    auth_timeout: float = 5.0
    ping_interval: float = 60.0
    pong_wait: float = 100.0
    conn: WebConn | None = None
    cancel_scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    _send_lock: trio.StrictFIFOLock = attrs.Factory(trio.StrictFIFOLock)
    _last_pong: float = 0.0
    _nursery: trio.Nursery | None = None

    async def run(self, user_id: str | None, connection_id: str, sequence: int | None) -> None:
        """Serve the socket until either side closes it or `abort()` is called."""
        with self.cancel_scope:
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self._last_pong = trio.current_time()
                    if user_id is None:
                        nursery.start_soon(self._close_unless_authenticated)
                    else:
                        self._attach_from_upgrade(user_id, connection_id, sequence)
                    nursery.start_soon(self._keepalive)
                    await self._read_frames()
                    nursery.cancel_scope.cancel()
            except* (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the peer vanished (reset, broken pipe): the same as a dropped socket
            finally:
                self._detach()

    def abort(self) -> None:
        """Drop the socket without a close frame, as a network failure would."""
        self.cancel_scope.cancel()

    # -- attaching to a WebConn ----------------------------------------------------------

    def _attach_from_upgrade(self, user_id: str, connection_id: str, sequence: int | None) -> None:
        try:
            conn, replay, resumed = self.backend.hub.connect(user_id, connection_id, sequence)
        except ResumeRefused:
            self.abort()
            return
        self._attach(conn, replay, resumed)

    def _attach(self, conn: WebConn, replay: list[str], resumed: bool) -> None:
        if conn.socket is not None and conn.socket is not self:
            conn.socket.abort()  # a resume while the old socket still looks alive
        conn.socket = self
        conn.detached_at = None
        self.conn = conn
        self.backend.socket_attached(self, resumed)
        assert self._nursery is not None
        self._nursery.start_soon(self._write_events, conn, replay)

    def _detach(self) -> None:
        conn = self.conn
        if conn is not None and conn.socket is self:
            self.backend.hub.detached(conn)
        self.backend.socket_detached(self)

    # -- writing -------------------------------------------------------------------------

    async def _send(self, event: Message[Any] | Ping | Pong | CloseConnection) -> None:
        async with self._send_lock:
            if self.ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                await self.stream.send_all(self.ws.send(event))

    async def send_text(self, text: str) -> None:
        await self._send(TextMessage(data=text))

    async def _write_events(self, conn: WebConn, replay: list[str]) -> None:
        for frame in replay:
            await self.send_text(frame)
        while True:
            while conn.pending:
                await self.send_text(conn.take())
            # No checkpoint since the queue was seen empty, so no wake-up can be lost.
            conn.wake = trio.Event()
            await conn.wake.wait()

    async def _keepalive(self) -> None:
        """MM pings every 60 s and gives up when no pong came for 100 s."""
        while True:
            await trio.sleep(self.ping_interval)
            if trio.current_time() - self._last_pong > self.pong_wait:
                self.abort()
                return
            await self._send(Ping(payload=b"fake"))

    async def _close_unless_authenticated(self) -> None:
        await trio.sleep(self.auth_timeout)
        if self.conn is None:
            self.abort()

    # -- reading -------------------------------------------------------------------------

    async def _read_frames(self) -> None:
        text = ""
        while True:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    text += event.data
                    if len(text.encode()) > MAX_FRAME_BYTES:
                        self.abort()  # read limit exceeded: the server drops the socket
                        return
                    if event.message_finished:
                        await self._handle_action(text)
                        text = ""
                elif isinstance(event, BytesMessage):
                    pass  # msgpack actions: not supported by the fake
                elif isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, Pong):
                    self._last_pong = trio.current_time()
                elif isinstance(event, CloseConnection):
                    await self._send(event.response())
                    return
            if not data:
                return

    async def _handle_action(self, text: str) -> None:
        try:
            request = json.loads(text)
            action, seq = request["action"], request.get("seq", 0)
            data = request.get("data") or {}
        except (ValueError, KeyError, TypeError, AttributeError):
            return  # the real router logs undecodable frames and goes on
        if not isinstance(seq, int) or seq <= 0:
            await self.send_text(
                ws_reply(
                    0,
                    error=ApiError(
                        400, "api.web_socket_router.bad_seq.app_error", "Invalid sequence."
                    ),
                )
            )
            return
        if action == "authentication_challenge":
            await self._authenticate(seq, data)
            return
        if self.conn is None:
            await self.send_text(
                ws_reply(
                    seq,
                    error=ApiError(
                        401,
                        "api.web_socket_router.not_authenticated.app_error",
                        "Not authenticated. Please log in and try again.",
                    ),
                )
            )
            return
        await self.send_text(self._answer(seq, action, data))

    async def _authenticate(self, seq: int, data: dict[str, Any]) -> None:
        if self.conn is not None:
            return  # already authenticated: the router ignores the challenge
        token = data.get("token")
        user_id = self.backend.user_for_token(token) if isinstance(token, str) else None
        if user_id is None:
            self.abort()
            return
        # Authenticated by challenge: always a fresh connection (resume needs the header).
        await self.send_text(ws_reply(seq))
        self._attach(self.backend.hub.fresh(user_id), [], False)

    def _answer(self, seq: int, action: str, data: dict[str, Any]) -> str:
        assert self.conn is not None
        try:
            if action == "user_typing":
                self.backend.publish_typing(
                    self.conn.user_id,
                    str(data.get("channel_id", "")),
                    str(data.get("parent_id", "")),
                )
                return ws_reply(seq)
            if action == "ping":
                pong = {
                    "text": "pong",
                    "version": SERVER_VERSION_STRING,
                    "server_time": time.time_ns() // 1_000_000,
                    "node_id": "",
                }
                return ws_reply(seq, pong)
            if action == "get_statuses":
                return ws_reply(seq, dict(self.backend.statuses(None)))
            if action == "get_statuses_by_ids":
                ids = data.get("user_ids")
                return ws_reply(
                    seq, dict(self.backend.statuses(ids if isinstance(ids, list) else []))
                )
            if action in ("presence", "user_update_active_status", "posted_notify_ack"):
                return ws_reply(seq)
        except ApiError as error:
            return ws_reply(seq, error=error)
        return ws_reply(
            seq,
            error=ApiError(
                501, "api.web_socket_router.bad_action.app_error", "Unknown WebSocket action."
            ),
        )
