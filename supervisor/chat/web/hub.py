"""Live updates to every open tab: one bounded queue per tab, never a blocked publisher.

A tab that cannot keep up loses its queue (its WebSocket is closed); the page reconnects
and asks for everything after the last version it applied, so nothing is lost, and a slow
phone never slows the agent's stream for anyone else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import trio

TAB_QUEUE = 1024

Update = dict[str, Any]


class Hub:
    """Invariant: `_tabs` holds the send side of every connected tab's queue."""

    def __init__(self) -> None:
        self._tabs: set[trio.MemorySendChannel[Update]] = set()

    @property
    def tabs(self) -> int:
        return len(self._tabs)

    @contextmanager
    def tab(self) -> Iterator[trio.MemoryReceiveChannel[Update]]:
        send, receive = trio.open_memory_channel[Update](TAB_QUEUE)
        self._tabs.add(send)
        try:
            yield receive
        finally:
            self._tabs.discard(send)
            send.close()
            receive.close()

    def publish(self, update: Update) -> None:
        for send in list(self._tabs):
            try:
                send.send_nowait(update)
            except (trio.WouldBlock, trio.ClosedResourceError):
                # Too slow: drop the tab; it catches up by version when it reconnects.
                self._tabs.discard(send)
                send.close()
