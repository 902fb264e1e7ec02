"""Live updates: a tab that stops reading is dropped; the publisher never waits for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from supervisor.chat.web import http_server
from supervisor.chat.web.hub import TAB_QUEUE, Hub
from tests.web_served import serve


async def test_a_stuck_tab_is_dropped_and_a_reading_one_gets_everything() -> None:
    hub = Hub()
    got: list[int] = []
    with hub.tab() as stuck, hub.tab() as reading:
        for n in range(TAB_QUEUE * 2):
            hub.publish({"n": n})  # never blocks
            while True:
                try:
                    got.append(reading.receive_nowait()["n"])
                except trio.WouldBlock:
                    break
        assert hub.tabs == 1
        drained = []
        async for update in stuck:  # what it had queued, then the end: reconnect and catch up
            drained.append(update["n"])

    assert got == list(range(TAB_QUEUE * 2))
    assert drained == list(range(TAB_QUEUE))
    assert hub.tabs == 0


async def test_a_tab_whose_peer_takes_nothing_more_is_ended_by_the_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sleeping phone keeps its connection but reads nothing: hypercorn's send waits on
    it, shielded, so the tab (its task, its queue of whole messages) lived on as long as
    the phone kept the connection. The kernel now ends it once nothing was taken for
    `UNACKED_LIMIT_S`."""
    monkeypatch.setattr(http_server, "UNACKED_LIMIT_S", 1.0)
    with trio.fail_after(30):
        async with serve(tmp_path) as served:
            hub = served.chat.front.hub
            stream = await trio.open_tcp_stream("127.0.0.1", served.chat.port)
            ws = WSConnection(ConnectionType.CLIENT)
            name, value = served.cookie()
            await stream.send_all(ws.send(Request(host=f"127.0.0.1:{served.chat.port}", target="/ws", extra_headers=[
                (b"origin", served.origin.encode()), (name, value)])))  # fmt: skip
            ws.receive_data(await stream.receive_some(65536))
            assert any(isinstance(event, AcceptConnection) for event in ws.events())
            await wait_until(lambda: hub.tabs == 1)
            big = "x" * 200_000
            for n in range(100):  # far more than the sockets' buffers hold
                hub.publish({"type": "notice", "n": n, "text": big})
                await trio.sleep(0.01)
            await wait_until(lambda: hub.tabs == 0, timeout=15)
            await stream.aclose()


async def wait_until(holds: Callable[[], bool], timeout: float = 5) -> None:
    with trio.fail_after(timeout):
        while not holds():
            await trio.sleep(0.05)
