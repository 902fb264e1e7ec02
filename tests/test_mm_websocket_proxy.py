"""The WebSocket goes through the proxy the environment names, as REST does: behind a
proxy-only egress, REST alone reaching the server would leave the supervisor waiting for
a hello that never comes. A real CONNECT proxy on 127.0.0.1 tunnels to a scripted server."""

from __future__ import annotations

import base64
import logging
import random
import ssl
from functools import partial

import pytest
import trio
import trio_websocket

from supervisor.chat import tls
from supervisor.chat.mattermost.websocket import MattermostWebSocket
from supervisor.chat.proxy import ProxyRefused, open_tunnel
from supervisor.core.events import ChatEvent, Hello
from tests.test_mm_codec import hello_frame
from tests.test_mm_websocket import FAST, TOKEN, ScriptedServer, script

SECRET = "pr0xy-s3cret"


class ConnectProxy:
    """A forward proxy that opens CONNECT tunnels for the right credentials (407 else)."""

    def __init__(self) -> None:
        self.connects: list[str] = []

    async def handle(self, client: trio.SocketStream) -> None:
        async with client:
            await self._serve(client)

    async def _serve(self, client: trio.SocketStream) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            data = await client.receive_some(65536)
            if not data:
                return
            head += data
        lines = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = dict(line.split(": ", 1) for line in lines[1:])
        self.connects.append(f"{method} {target}")
        wanted = "Basic " + base64.b64encode(f"ops:{SECRET}".encode()).decode()
        if method != "CONNECT" or headers.get("Proxy-Authorization") != wanted:
            await client.send_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        host, port = target.rsplit(":", 1)
        upstream = await trio.open_tcp_stream(host, int(port))
        await client.send_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(_pipe, client, upstream, nursery.cancel_scope)
            nursery.start_soon(_pipe, upstream, client, nursery.cancel_scope)


async def _pipe(source: trio.abc.Stream, sink: trio.abc.Stream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except trio.BrokenResourceError:
        pass
    done.cancel()


def _use_proxy(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", url)


async def test_the_websocket_reaches_the_server_through_the_environment_s_proxy(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy, server = ConnectProxy(), ScriptedServer(script(hello_frame("c1")))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
            ws = await nursery.start(trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None)
            _use_proxy(monkeypatch, f"http://ops:{SECRET}@127.0.0.1:{listener.socket.getsockname()[1]}")
            send, receive = trio.open_memory_channel[ChatEvent](16)
            port = ws.port
            reader = MattermostWebSocket(f"http://127.0.0.1:{port}", TOKEN, send, backoff=FAST, rng=random.Random(0))
            await nursery.start(reader.run)
            first = await receive.receive()
            nursery.cancel_scope.cancel()
    assert isinstance(first, Hello) and first.connection_id == "c1"
    assert proxy.connects == [f"CONNECT 127.0.0.1:{port}"]
    assert server.connections[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert SECRET not in caplog.text and "through the proxy http://127.0.0.1:" in caplog.text


async def test_a_proxy_that_refuses_the_tunnel_is_a_clear_error_without_its_credentials() -> None:
    proxy = ConnectProxy()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            [listener] = await nursery.start(partial(trio.serve_tcp, proxy.handle, 0, host="127.0.0.1"))
            port = listener.socket.getsockname()[1]
            with pytest.raises(ProxyRefused) as refused:
                await open_tunnel(f"http://ops:wrong-{SECRET}@127.0.0.1:{port}", "mm.example", 443)
            nursery.cancel_scope.cancel()
    assert str(refused.value) == f"the proxy http://127.0.0.1:{port} answered 407 Proxy Authentication Required"



class ProxyTrust:
    """`tls.ssl_context` made recognisable and counted, and the context each TLS
    connection to a proxy is opened with (none gets further: no TLS proxy runs here)."""

    def __init__(self) -> None:
        self.ours = ssl.create_default_context()
        self.built = 0
        self.used: list[ssl.SSLContext] = []

    def ssl_context(self) -> ssl.SSLContext:
        self.built += 1
        return self.ours

    async def open_ssl_over_tcp_stream(
        self, host: str, port: int, *, ssl_context: ssl.SSLContext, https_compatible: bool
    ) -> trio.SSLStream[trio.SocketStream]:
        self.used.append(ssl_context)
        raise OSError("no TLS proxy here")


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch) -> ProxyTrust:
    trust = ProxyTrust()
    monkeypatch.setattr(tls, "ssl_context", trust.ssl_context)
    monkeypatch.setattr(trio, "open_ssl_over_tcp_stream", trust.open_ssl_over_tcp_stream)
    return trust


async def test_an_https_proxy_is_trusted_as_rest_trusts_it(trust: ProxyTrust) -> None:
    """REST checks an https:// proxy with `tls.ssl_context` (the system store and certifi);
    the tunnel must too, or behind a proxy REST reaches the WebSocket does not."""
    with pytest.raises(OSError), trio.fail_after(10):
        await open_tunnel("https://proxy.example:3128", "mm.example", 80)
    assert trust.used == [trust.ours]


async def test_the_websocket_of_an_http_server_trusts_its_https_proxy_with_one_context(
    trust: ProxyTrust, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Building the context parses the CA bundles: once per reader, not per reconnect."""
    _use_proxy(monkeypatch, "https://proxy.example:3128")
    send, _ = trio.open_memory_channel[ChatEvent](1)
    reader = MattermostWebSocket("http://mm.internal:8065", TOKEN, send, backoff=FAST, rng=random.Random(0))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader.run)
            while len(trust.used) < 3:
                await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert trust.used == [trust.ours] * 3
    assert trust.built == 1
