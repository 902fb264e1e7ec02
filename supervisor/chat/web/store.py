"""The owner of `web.sqlite3`: one task, one connection, every call in a worker thread.

Others never touch the database: they `await store.call(WebDb.method, *args)`, which
queues the call for the owner task and waits for its result. The owner runs one call at a
time, in order, off the event loop (`trio.to_thread.run_sync`), so SQLite sees a single
writer and the event loop never blocks on a disk write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import outcome
import trio

from supervisor.chat.web.db import WebDb

T = TypeVar("T")

DB_FILE = "web.sqlite3"
QUEUE = 256


@attrs.define
class _Call:
    function: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    done: trio.Event = attrs.field(factory=trio.Event)
    result: outcome.Outcome[Any] | None = None


class WebStore:
    """A handle to the owner task. Invariant: only the owner task uses `_db`."""

    def __init__(self, send: trio.MemorySendChannel[_Call]) -> None:
        self._send = send

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function(db, *args, **kwargs)` in the owner, return (or raise) its result."""
        request = _Call(function, args, kwargs)
        await self._send.send(request)
        await request.done.wait()
        assert request.result is not None
        value: T = request.result.unwrap()
        return value


async def _own(db: WebDb, receive: trio.MemoryReceiveChannel[_Call]) -> None:
    async with receive:
        async for request in receive:

            def run(request: _Call = request) -> outcome.Outcome[Any]:
                result: outcome.Outcome[Any] = outcome.capture(
                    request.function, db, *request.args, **request.kwargs
                )
                return result

            # Shielded: once a write started in its thread it finishes anyway; the caller
            # must hear how it ended, or a cancelled caller's neighbour would wait forever.
            with trio.CancelScope(shield=True):
                request.result = await trio.to_thread.run_sync(run)
            request.done.set()


@asynccontextmanager
async def open_web_store(state_dir: Path) -> AsyncIterator[WebStore]:
    """Open (or create) the database and run its owner task for the block's duration."""
    db = await trio.to_thread.run_sync(WebDb, state_dir / DB_FILE)
    try:
        send, receive = trio.open_memory_channel[_Call](QUEUE)
        async with trio.open_nursery() as nursery, send:
            nursery.start_soon(_own, db, receive)
            yield WebStore(send)
            nursery.cancel_scope.cancel()
    finally:
        db.close()
