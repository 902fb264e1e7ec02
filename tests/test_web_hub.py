"""Live updates: a tab that stops reading is dropped; the publisher never waits for it."""

from __future__ import annotations

import trio

from supervisor.chat.web.hub import TAB_QUEUE, Hub


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
