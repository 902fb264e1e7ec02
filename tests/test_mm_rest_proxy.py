"""The Mattermost REST client goes through the proxy the environment names (http_proxy,
no_proxy...), as httpx's client did with trust_env: a supervisor behind a corporate proxy
must still reach its server."""

from __future__ import annotations

import json
import logging
from functools import partial

import pytest
import trio

from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.chat.proxy import proxy_for
from supervisor.core.backoff import Backoff

ME = {"id": "bot0000000000000000000000a", "username": "claude", "roles": "system_user"}


async def _proxy(seen: list[bytes], stream: trio.SocketStream) -> None:
    """A forward proxy that answers every request itself: enough to see the request line."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive_some(65536)
    seen.append(data.split(b"\r\n", 1)[0])
    body = json.dumps(ME).encode()
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    await stream.send_all(head.encode() + body)
    await stream.aclose()


async def test_requests_go_through_the_environment_s_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, partial(_proxy, seen), 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
                monkeypatch.delenv(name, raising=False)
            monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
            rest = MattermostRest("http://mm.example", "token")
            me = await rest.get_me()
            await rest.aclose()
            nursery.cancel_scope.cancel()
    assert me.id == ME["id"]
    assert seen == [b"GET http://mm.example/api/v4/users/me HTTP/1.1"]


def _use_proxy(monkeypatch: pytest.MonkeyPatch, scheme: str, url: str) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv(f"{scheme}_proxy", url)


@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_a_proxy_that_refuses_the_way_is_named_once_and_the_calls_keep_trying(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    """A misconfigured proxy (its password wrong) answers every CONNECT with 407: one
    line says which proxy answered what and what to check, without its credentials;
    the call keeps trying, as through an outage (it once said only "GET /users/me
    failed: ProxyError", at every try). A plain-http server's calls go to the proxy
    itself, whose 407 is an answer, not a failed tunnel: it was taken for the server's
    refusal of the call, so a post was dropped as refused for good."""
    caplog.set_level(logging.DEBUG)
    secret = "wr0ng-s3cret"
    tries = 0
    enough = trio.Event()

    async def refusing_proxy(stream: trio.SocketStream) -> None:
        nonlocal tries
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        assert data.startswith(b"CONNECT mm.example:443 " if scheme == "https" else b"GET http://mm.example/api/v4/")
        tries += 1
        if tries == 4:
            enough.set()
        await stream.send_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await stream.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, refusing_proxy, 0, host="127.0.0.1"))
            port = listeners[0].socket.getsockname()[1]
            _use_proxy(monkeypatch, scheme, f"http://ops:{secret}@127.0.0.1:{port}")
            rest = MattermostRest(f"{scheme}://mm.example", "token", backoff=Backoff(base=0.01, cap=0.05))
            nursery.start_soon(rest.get_me)
            await enough.wait()
            nursery.cancel_scope.cancel()
        await rest.aclose()
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [
        f"Mattermost at {scheme}://mm.example cannot be reached through the proxy http://127.0.0.1:{port}, which"
        f" answered 407 Proxy Authentication Required: the user and password in the proxy's URL ({scheme}_proxy,"
        " all_proxy) are missing or wrong; tried again until it lets us through"
    ]
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == ["ERROR"]
    assert secret not in caplog.text


async def test_a_socks_proxy_in_all_proxy_is_not_used_and_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Proxy tools set `all_proxy=socks5://...`; httpx cannot take it without a package we
    do not ship: the start ended in an ImportError traceback (a service restarting in a
    loop), and the WebSocket would have been refused for ever."""
    caplog.set_level(logging.WARNING)
    _use_proxy(monkeypatch, "all", "socks5://ops:s3cret@127.0.0.1:7890")
    for _ in range(2):
        rest = MattermostRest("https://mm.example", "token")
        await rest.aclose()
    assert proxy_for("wss://mm.example/api/v4/websocket") is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "socks5://127.0.0.1:7890" in said[0] and "not an HTTP proxy" in said[0]
    assert "s3cret" not in caplog.text
