"""The Mattermost WebSocket reader: one long-lived service that turns the server's event
stream into chat events on a memory channel, reconnecting and resuming for ever.

This module owns the socket, its one reader and its one writer, the resume position
(connection id + next expected seq) and the keepalive. The position logic is the sans-IO
`StreamPosition`; the trio part only moves frames.

Rules it enforces:
- events reach the consumer in server order, each at most once per connection id; a seq
  gap closes the socket (code 4001, as the web client does) and resumes from the gap;
- a `Hello` is delivered for the first connection and whenever the server hands out a new
  connection id (or none: older servers cannot resume), because that means events may
  have been lost: the consumer catches up over REST;
- a bounded channel carries the events: when the consumer is slow we stop reading (the
  server queues), we never drop an event.

It must never crash the app: a failure of any kind (refused handshake, dropped socket,
malformed frame, silence) is logged and leads to a reconnect with backoff. A connection
that may have been turned away for its token (refused with 401, or let in and never
greeted) has the REST client check the token (`token.TokenWatch`); while the token is
refused, the next try waits until it is taken again. It must never log the token.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
import random
import ssl
from typing import cast
from urllib.parse import urlencode, urlsplit, urlunsplit

import attrs
import trio
import trio_websocket

from supervisor.chat import tls
from supervisor.chat.mattermost import codec
from supervisor.chat.mattermost.codec import EventFrame, MalformedFrame
from supervisor.chat.mattermost.token import TokenWatch
from supervisor.chat.proxy import described, open_tunnel, proxy_for
from supervisor.chat.retry import ServerAnswers
from supervisor.core.backoff import RECONNECT_BACKOFF, Backoff
from supervisor.core.events import ChatEvent, Hello
from supervisor.logs import first_leaf, in_a_row_level, one_line

log = logging.getLogger("supervisor.mattermost")

_TYPING_QUEUE = 8  # typing is a hint; more than a few queued means they are stale anyway
# Posts may hold 16k runes and props up to 800k, escaped twice (a JSON string in JSON).
# trio-websocket's default 1 MiB would close the socket on such a frame, and the server
# would replay that same frame on every resume.
_MAX_FRAME = 32 * 1024 * 1024
_CONNECT_TIMEOUT = 30.0  # library handshake limits, not an API of ours
_DISCONNECT_TIMEOUT = 5.0
_GAP_CLOSE_CODE = 4001  # Mattermost's "client sequence mismatch"


# --- the resume position (sans-IO) -------------------------------------------------


class Verdict(enum.Enum):
    DELIVER = "deliver"  # next in order (or a hello of a new connection): hand it on
    SKIP = "skip"  # already handled (a replay), or a hello that changes nothing
    GAP = "gap"  # events are missing: close and resume from `next_seq`


@attrs.define
class StreamPosition:
    """Where we are in the server's event stream; survives reconnects."""

    connection_id: str | None = None  # from the last hello; None before the first
    next_seq: int = 0  # the seq the next event must carry
    # Gaps in a row without progress. A server that keeps replaying from the wrong place
    # would otherwise keep us reconnecting for ever; after two we start afresh instead.
    gaps: int = 0
    resuming: bool = False  # the current connection asked to resume `connection_id`

    def resume_query(self) -> str:
        """The query string that asks the server to resume (or "" to start afresh)."""
        if not self.connection_id or self.gaps >= 2:
            return ""
        return "?" + urlencode(
            {"connection_id": self.connection_id, "sequence_number": self.next_seq}
        )

    def connecting(self) -> str:
        """A new connection opens: its query string (`resume_query`), remembered."""
        query = self.resume_query()
        self.resuming = bool(query)
        return query

    def observe(self, seq: int, event: ChatEvent | None) -> Verdict:
        """Account for one event frame (`event` None: unknown or unreadable content)."""
        if isinstance(event, Hello):
            # Nothing was lost only if we resumed and the server kept the id: an old
            # server's hello has no id, and one on a connection opened afresh is new.
            fresh = not (self.resuming and event.connection_id == self.connection_id)
            self.connection_id = event.connection_id
            self.next_seq, self.gaps = seq + 1, 0
            return Verdict.DELIVER if fresh else Verdict.SKIP
        if seq < self.next_seq:
            return Verdict.SKIP
        if seq > self.next_seq:
            self.gaps += 1
            return Verdict.GAP
        self.next_seq, self.gaps = seq + 1, 0
        return Verdict.DELIVER


class _End(enum.Enum):
    """Why a connection ended without an exception."""

    GAP = "sequence gap"
    SILENT = "server silent"
    CONSUMER_GONE = "consumer closed its channel"


def websocket_url(base_url: str) -> str:
    """http(s)://host[/prefix] -> ws(s)://host[/prefix]/api/v4/websocket"""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, f"{parts.path}/api/v4/websocket", "", ""))


# --- the service -------------------------------------------------------------------


class MattermostWebSocket:
    """Run with `await nursery.start(socket.run)`; started once the first hello arrived."""

    def __init__(
        self,
        base_url: str,
        token: str,
        events: trio.MemorySendChannel[ChatEvent],
        *,
        backoff: Backoff = RECONNECT_BACKOFF,
        ping_interval: float = 30.0,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
        answers: ServerAnswers | None = None,
        token_watch: TokenWatch | None = None,
    ) -> None:
        self.position = StreamPosition()
        # The REST client's: a connection that hears the server wakes its sleeping retries.
        self._answers = answers or ServerAnswers()
        self._token = token_watch or TokenWatch(base_url)
        self._endpoint = urlsplit(websocket_url(base_url))
        self._headers = [(b"Authorization", f"Bearer {token}".encode())]
        self._events = events  # ours: closed when run() ends
        self._backoff = backoff
        self._ping_interval = ping_interval
        self._rng = rng or random.Random()
        self._ssl_context = ssl_context
        typing = trio.open_memory_channel[tuple[str, str]](_TYPING_QUEUE)
        self._typing_send, self._typing_receive = typing
        # Only run() touches these five.
        self._connected = False
        self._upgraded = False  # the current connection got past its handshake
        self._heard = False  # a frame arrived on the current connection
        self._failures = 0  # connections in a row that heard nothing: the backoff's count
        self._task_status: trio.TaskStatus[None] | None = None

    def send_typing(self, channel_id: str, parent_id: str = "") -> None:
        """Best effort, never blocks: dropped when disconnected or already backed up."""
        if not self._connected:
            return
        try:
            self._typing_send.send_nowait((channel_id, parent_id))
        except trio.WouldBlock:
            log.debug("websocket: typing queue full, dropped one")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, read and reconnect until cancelled (or until the consumer goes away)."""
        self._task_status = task_status
        async with self._events:
            while True:
                self._heard = self._upgraded = False
                turned_away = False
                try:
                    end = await self._connect_once()
                except Exception as exc:  # any failure at all means: reconnect
                    why = f"connection lost: {one_line(exc)}"
                    turned_away = _refused_for_the_token(exc)
                else:
                    if end is _End.CONSUMER_GONE:
                        log.info("websocket: %s, stopping", end.value)
                        return
                    why = f"{end.value}, reconnecting"
                # Back off from the floor again once a connection really worked.
                self._failures = 0 if self._heard else self._failures + 1
                _log_failure(why, self._failures)
                if not self._heard and (turned_away or self._upgraded):
                    self._token.suspect()
                if self._token.refused:  # said once by the watch; it checks at its own pace
                    await self._token.taken_again()
                    continue
                await trio.sleep(self._backoff.delay(self._failures, self._rng))

    async def _connect_once(self) -> _End:
        query = self.position.connecting()
        # Failing in a row, only `_log_failure`'s lines are worth reading.
        level = logging.DEBUG if self._failures else logging.INFO
        log.log(level, "websocket: connecting%s", " (resuming)" if query else "")
        # We open and close the TCP stream ourselves: trio-websocket's open_websocket_url
        # leaves the socket open when the server refuses the handshake (a 502 while the
        # server restarts), and this loop may see many of those.
        with trio.fail_after(_CONNECT_TIMEOUT):
            stream = await self._open_stream()
        try:
            async with trio.open_nursery() as library:  # trio-websocket's reader task
                with trio.fail_after(_CONNECT_TIMEOUT):
                    socket = await trio_websocket.wrap_client_stream(
                        library,
                        # Any trio stream does (a proxy's tunnel too); the hint is narrower.
                        cast(trio.SocketStream, stream),
                        self._endpoint.netloc,
                        self._endpoint.path + query,
                        extra_headers=self._headers,
                        max_message_size=_MAX_FRAME,
                    )
                end = await self._converse(socket)
                if end is not _End.SILENT:  # a silent server would not answer a close
                    code = _GAP_CLOSE_CODE if end is _End.GAP else 1000
                    with trio.move_on_after(_DISCONNECT_TIMEOUT):
                        await socket.aclose(code, end.value)
                library.cancel_scope.cancel()
            return end
        finally:
            await trio.aclose_forcefully(stream)

    async def _open_stream(self) -> trio.abc.Stream:
        """TCP (and TLS for wss) to the server, through the environment's proxy if it
        names one for it, as REST goes (`proxy.proxy_for`)."""
        host, port = self._endpoint.hostname or "", self._endpoint.port
        secure = self._endpoint.scheme == "wss"
        port = port or (443 if secure else 80)
        proxy = proxy_for(self._endpoint.geturl())
        # REST's trust (system store and certifi), for the server and an https proxy alike.
        if self._ssl_context is None and (secure or (proxy or "").startswith("https:")):
            self._ssl_context = tls.ssl_context()
        if proxy is None:
            if secure:
                return await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=self._ssl_context, https_compatible=True
                )
            return await trio.open_tcp_stream(host, port)
        log.info("websocket: through the proxy %s", described(proxy))
        tunnel = await open_tunnel(proxy, host, port, proxy_tls=self._ssl_context)
        if not secure:
            return tunnel
        stream = trio.SSLStream(tunnel, self._ssl_context or tls.ssl_context(), server_hostname=host, https_compatible=True)
        try:
            await stream.do_handshake()
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    async def _converse(self, socket: trio_websocket.WebSocketConnection) -> _End:
        """One connection's life: the reader here, the writer beside it."""
        if self._failures:
            log.info("websocket: connected after %d failed tries", self._failures)
        self._upgraded = self._connected = True
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, socket)
                end = await self._read(socket)
                nursery.cancel_scope.cancel()
        finally:
            self._connected = False
        return end

    async def _read(self, socket: trio_websocket.WebSocketConnection) -> _End:
        """Read until the connection must end. Owns delivery to the consumer."""
        with trio.CancelScope() as silence:
            while True:
                # Our pings get answers, so two intervals of nothing means a dead link.
                silence.deadline = trio.current_time() + 2 * self._ping_interval
                message = await socket.get_message()
                if not self._heard:  # the hello, or a resumed connection's first frame
                    self._heard = True
                    self._answers.answered()
                # A slow consumer is not a silent server: no deadline while we deliver.
                silence.deadline = math.inf
                try:
                    frame = codec.decode_frame(message)
                except MalformedFrame as exc:
                    log.warning("websocket: dropped a malformed frame: %s", exc.reason)
                    if exc.seq is None:
                        continue
                    frame = EventFrame(exc.seq, "", None)  # still counts in the sequence
                if not isinstance(frame, EventFrame):
                    if frame.status != "OK":
                        log.debug(
                            "websocket: action %d failed: %s", frame.seq_reply, frame.error_id
                        )
                    continue
                verdict = self.position.observe(frame.seq, frame.event)
                if verdict is Verdict.GAP:
                    log.warning(
                        "websocket: got seq %d, expected %d", frame.seq, self.position.next_seq
                    )
                    return _End.GAP
                if verdict is not Verdict.DELIVER or frame.event is None:
                    continue
                if not await self._deliver(frame.event):
                    return _End.CONSUMER_GONE
        return _End.SILENT

    async def _deliver(self, event: ChatEvent) -> bool:
        if self._task_status is not None and isinstance(event, Hello):
            # Before the send: the consumer may only start reading once we have started.
            self._task_status.started()
            self._task_status = None
        try:
            await self._events.send(event)
        except trio.BrokenResourceError:
            return False
        return True

    async def _write(self, socket: trio_websocket.WebSocketConnection) -> None:
        """The one writer: keepalive pings and typing notices. Actions count from 1."""
        seq = itertools.count(1)
        _drain(self._typing_receive)  # queued while disconnected: stale by now
        next_ping = trio.current_time() + self._ping_interval
        while True:
            typing: tuple[str, str] | None = None
            # Only the wait is bounded: cancelling a half-sent frame would break the socket.
            with trio.move_on_at(next_ping):
                typing = await self._typing_receive.receive()
            if typing is None:
                await socket.send_message(codec.encode_ping(next(seq)))
                next_ping = trio.current_time() + self._ping_interval
            else:
                await socket.send_message(codec.encode_typing(next(seq), *typing))


def _drain(channel: trio.MemoryReceiveChannel[tuple[str, str]]) -> None:
    while True:
        try:
            channel.receive_nowait()
        except trio.WouldBlock:
            return


def _log_failure(why: str, failures: int) -> None:
    """A failed try, said as `in_a_row_level` says."""
    log.log(in_a_row_level(failures), "websocket: %s%s", why, f" ({failures} tries in a row)" if failures > 1 else "")


def _refused_for_the_token(exc: BaseException) -> bool:
    exc = first_leaf(exc)
    return isinstance(exc, trio_websocket.ConnectionRejected) and exc.status_code == 401
