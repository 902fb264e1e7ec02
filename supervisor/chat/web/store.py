"""The one way to `web.sqlite3`: one connection, one call at a time, in a worker thread.

Others never touch the database: they `await store.call(WebDb.method, *args)`. Calls take
turns through a `StrictFIFOLock` (so in the order they were made) and run off the event
loop (`trio.to_thread.run_sync`), so SQLite sees a single writer and the event loop never
blocks on a disk write. No task of its own: the store is usable as soon as it is open,
before any nursery exists (the supervisor opens its front ends first, then its tasks).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from supervisor.chat.web.db import WebDb

T = TypeVar("T")

DB_FILE = "web.sqlite3"


class WebStore:
    """Invariant: `_db` is used only while `_turn` is held, and not after `close`."""

    def __init__(self, db: WebDb) -> None:
        self._db = db
        self._turn = trio.StrictFIFOLock()
        self._closed = False

    @classmethod
    async def open(cls, state_dir: Path) -> WebStore:
        """Open (or create) the database."""
        return cls(await trio.to_thread.run_sync(WebDb, state_dir / DB_FILE))

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function(db, *args, **kwargs)` on its turn, return (or raise) its result."""
        async with self._turn:
            if self._closed:
                raise trio.ClosedResourceError("the web chat's store is closed")
            # Shielded: once a write started in its thread it finishes anyway, and the
            # next call must not start before it has.
            with trio.CancelScope(shield=True):
                result = await trio.to_thread.run_sync(lambda: function(self._db, *args, **kwargs))
        return result

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            async with self._turn:
                if not self._closed:
                    self._closed = True
                    self._db.close()


@asynccontextmanager
async def open_web_store(state_dir: Path) -> AsyncIterator[WebStore]:
    """The store for the block's duration."""
    store = await WebStore.open(state_dir)
    try:
        yield store
    finally:
        await store.aclose()
