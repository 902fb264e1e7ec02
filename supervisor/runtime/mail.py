"""Handing work to a task without ever blocking or failing the one that hands it over.

The router is one task reading every chat event in order: if it waited for one busy
session, every other thread would wait too; if handing over could raise, one flooded
thread would take the whole app down; if it dropped what does not fit, a prompt or a 🛑
would be lost. So producers only ever `put`, which neither blocks nor raises:

- `Mailbox`: a FIFO for a consumer task of our own (the desk, the store). It is unbounded
  on purpose: what goes in is what the chat server delivers (or the changes to record)
  at the rate people post, and every item is something a person must get an answer to;
  a bound would mean dropping one. Memory grows only while the consumer is behind.
- `Feed`: the same promise in front of a bounded memory channel someone else reads (a
  session's inbox). What does not fit waits here, in order, and one feeder task moves it
  into the channel as the reader takes from it: backpressure on that thread only. A stop
  (urgent) goes ahead of whatever waits, since it is about the turn running now. A little
  room (`headroom`) is always left in the channel for the reader's own tasks, which
  report into the same inbox without waiting.

Never decides what an item means.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

import trio

log = logging.getLogger("supervisor.mail")

T = TypeVar("T")

# How often a feeder looks whether its channel has room again. Memory channels announce
# no "room again" event; a feeder only exists while its thread is flooded, so a short
# poll there costs nothing the rest of the time.
FEED_POLL_S = 0.005
BACKLOG_WARNING = 10_000  # a backlog this long is worth a line in the log, once


class TaskStarter(Protocol):
    def start_soon(self, fn: Callable[[], Awaitable[object]], /) -> None: ...


class Mailbox(Generic[T]):
    """Unbounded FIFO; any number of producers (`put`), one consumer (`get`/`get_all`)."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._arrived = trio.Event()

    def put(self, item: T) -> None:
        self._items.append(item)
        self._arrived.set()

    def __len__(self) -> int:
        return len(self._items)

    async def wait(self) -> None:
        """Until at least one item is waiting (it stays there)."""
        while not self._items:
            self._arrived = trio.Event()
            await self._arrived.wait()

    async def get(self) -> T:
        await self.wait()
        return self._items.popleft()

    async def get_all(self) -> list[T]:
        """Everything waiting (at least one item), oldest first."""
        await self.wait()
        return self.take_all()

    def take_all(self) -> list[T]:
        """Everything waiting now (perhaps nothing), oldest first."""
        items = list(self._items)
        self._items.clear()
        return items


class Feed(Generic[T]):
    """Ordered, never-blocking delivery into `channel` (see the module docstring).

    Invariants: while `_feeding`, every new item waits in `_urgent`/`_waiting` (so nothing
    overtakes what already waits, except an urgent item); once the channel's reader is
    gone, every item goes to `on_undelivered`, exactly once.
    """

    def __init__(
        self,
        channel: trio.MemorySendChannel[T],
        tasks: TaskStarter,
        *,
        headroom: int = 0,
        on_undelivered: Callable[[T], None] = lambda _item: None,
    ) -> None:
        self._channel = channel
        self._tasks = tasks
        self._headroom = headroom
        self._on_undelivered = on_undelivered
        self._urgent: deque[T] = deque()
        self._waiting: deque[T] = deque()
        self._feeding = False
        self._closed = False
        self._warned = False

    @property
    def backlog(self) -> int:
        return len(self._urgent) + len(self._waiting)

    def put(self, item: T, *, urgent: bool = False) -> None:
        if self._closed:
            self._on_undelivered(item)
            return
        if not self._feeding and self._has_room() and self._try_send(item):
            return
        (self._urgent if urgent else self._waiting).append(item)
        if self.backlog >= BACKLOG_WARNING and not self._warned:
            self._warned = True
            log.warning("%d items wait for a busy reader; none is dropped", self.backlog)
        if not self._feeding:
            self._feeding = True
            self._tasks.start_soon(self._feed)

    def _has_room(self) -> bool:
        stats = self._channel.statistics()
        return stats.current_buffer_used < stats.max_buffer_size - self._headroom or stats.tasks_waiting_receive > 0

    def _try_send(self, item: T) -> bool:
        """True when the item is handled (sent, or handed to `on_undelivered`)."""
        try:
            self._channel.send_nowait(item)
        except trio.WouldBlock:
            return False
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = True
            self._on_undelivered(item)
            self._hand_back_the_rest()
        return True

    def _hand_back_the_rest(self) -> None:
        left = [*self._urgent, *self._waiting]
        self._urgent.clear()
        self._waiting.clear()
        for item in left:
            self._on_undelivered(item)

    async def _feed(self) -> None:
        try:
            while self._urgent or self._waiting:
                if not self._has_room():
                    await trio.sleep(FEED_POLL_S)
                    continue
                queue = self._urgent or self._waiting
                item = queue.popleft()
                if not self._try_send(item):
                    queue.appendleft(item)
                    await trio.sleep(FEED_POLL_S)
        finally:
            self._feeding = False
