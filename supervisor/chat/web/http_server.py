"""hypercorn's trio connection handler behind our own accept loop: one broken connection
never stops the server.

`hypercorn.trio.serve` runs every connection in one nursery with the listener, so a
protocol error it does not catch (hypercorn issue 225: bytes after a WebSocket upgrade
request raise h11's LocalProtocolError) ends the whole server, and with it our nursery
tree: one request from any local process, token or not, would stop the supervisor. Here
each connection is hypercorn's own `TCPServer` (all HTTP/1.1 and WebSocket work stays
hypercorn's, h11's and wsproto's), and an error escaping it closes that connection only.

A peer that takes none of what we send for `UNACKED_LIMIT_S` (a sleeping phone's tab) has
its connection ended by the kernel (`TCP_USER_TIMEOUT`): hypercorn shields its writes, so
no cancel scope of ours could end a send that waits for it, and the tab's queue and task
would live as long as the peer keeps the connection open.

At most `MAX_CONNECTIONS` are served at once; more are closed as soon as they are
accepted: idle connections from any local process (or any peer, with `allow_remote`)
would otherwise take the file descriptors the supervisor shares with its agents, its
state file and its chat links.

No lifespan: the app has nothing to start or stop. Uses hypercorn's trio worker pieces
(`TCPServer`, `WorkerContext`, `ASGIWrapper`); tests/test_web_security.py sends the
requests that used to crash, so a hypercorn upgrade that moves them fails a test.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import Any, cast

import attrs
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState
from hypercorn.utils import repr_socket_addr

log = logging.getLogger(__name__)

UNACKED_LIMIT_S = 30.0
# Far above what a person's tabs need (one WebSocket each, a few requests beside it).
MAX_CONNECTIONS = 256


@attrs.define
class ConnectionCap:
    """How many connections are served. Invariant: `open <= limit`. `refusing` holds from
    the first refused connection until half the limit is free again, so a flood of them
    is one log line, not one per connection."""

    limit: int
    open: int = 0
    refusing: bool = False

    def take(self) -> bool:
        """Whether one more may be served (`release` it when it ends)."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open -= 1
        if self.open <= self.limit // 2:
            self.refusing = False

    def refused(self) -> bool:
        """Count one refused; whether it begins a burst (worth saying)."""
        first = not self.refusing
        self.refusing = True
        return first


async def serve_http(
    app: ASGIFramework,
    config: Config,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `config.bind` until cancelled; reports the bound URLs once listening."""
    sockets = config.create_sockets()
    listeners = []
    binds = []
    for sock in sockets.insecure_sockets:
        sock.listen(config.backlog)
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        binds.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
    wrapped = ASGIWrapper(app)
    context = WorkerContext(None)

    cap = ConnectionCap(MAX_CONNECTIONS)

    async def connection(stream: trio.SocketStream) -> None:
        if not cap.take():
            if cap.refused():
                log.warning("the web chat already serves %d connections, its most: more are closed "
                            "at once (said again once half of those have ended)", cap.limit)  # fmt: skip
            await _close(stream)
            return
        try:
            await serve_one(stream)
        finally:
            cap.release()

    async def serve_one(stream: trio.SocketStream) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux's; elsewhere TCP's own limits
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(UNACKED_LIMIT_S * 1000))
        try:
            # TCPServer is typed for TLS streams; it handles plain ones too (it probes).
            await TCPServer(wrapped, config, context, ConnectionState({}), cast(Any, stream))
        except Exception as error:  # one connection's fault, not the server's
            # The type and message only: a traceback could quote request bytes.
            log.warning("closed a connection that broke HTTP: %s", type(error).__name__)
            await _close(stream)

    async with trio.open_nursery() as connections:
        task_status.started(binds)
        await trio.serve_listeners(connection, listeners, handler_nursery=connections)


async def _close(stream: Any) -> None:
    with trio.move_on_after(1):
        await stream.aclose()
