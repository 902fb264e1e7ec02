"""The Mattermost REST client goes through the proxy the environment names (http_proxy,
no_proxy...), as httpx's client did with trust_env: a supervisor behind a corporate proxy
must still reach its server."""

from __future__ import annotations

import json
from functools import partial

import pytest
import trio

from supervisor.chat.mattermost.rest import MattermostRest

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
