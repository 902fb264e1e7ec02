"""A page hears from the server at least every `KEEPALIVE_S`: its silence means a dead path.

The server's WebSocket pings are frames a page's script never sees; a page over a path
that died without a close (Wi-Fi gone) would show "connected" for minutes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.chat.web import asgi
from tests.web_served import receive_until, send, serve


@asynccontextmanager
async def _welcomed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, Any]]:
    """A page past its welcome, keepalives every 0.5 s; (the served chat, the page's socket)."""
    monkeypatch.setattr(asgi, "KEEPALIVE_S", 0.5)
    async with serve(tmp_path) as served, served.page() as ws:
        await send(ws, type="hello", since=0)
        await receive_until(ws, "welcome")
        yield served, ws


async def test_a_quiet_connection_hears_the_keepalive_within_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(20):
        async with _welcomed(tmp_path, monkeypatch) as (_served, ws):
            for _ in range(2):  # again and again while the connection is quiet
                started = trio.current_time()
                with trio.fail_after(2):
                    update = json.loads(await ws.get_message())
                assert update == {"type": "alive"}
                assert trio.current_time() - started >= 0.3  # after the quiet, not at once


async def test_a_connection_that_carries_updates_gets_no_keepalive_between_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(20):
        async with _welcomed(tmp_path, monkeypatch) as (served, ws):
            kinds = []
            for n in range(10):  # an update every 0.2 s for 2 s
                served.chat.front.hub.publish({"type": "notice", "n": n})
                kinds.append(json.loads(await ws.get_message())["type"])
                await trio.sleep(0.2)
    assert kinds == ["notice"] * 10
