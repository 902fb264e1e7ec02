"""The one way to `web.sqlite3`: one connection, one call at a time, in a worker thread.

Others never touch the database: they `await store.call(WebDb.method, *args)`. Calls take
turns through a `StrictFIFOLock` (so in the order they were made) and run off the event
loop (`trio.to_thread.run_sync`), so SQLite sees a single writer and the event loop never
blocks on a disk write. No task of its own: the store is usable as soon as it is open,
before any nursery exists (the supervisor opens its front ends first, then its tasks).

A call the disk refuses (full, failing: SQLite rolled its transaction back) is made again
until the disk takes it (`durable.until_written`): what waits for it (a page's post, a
reply) waits, and nothing is lost or stored twice, since each call is one transaction.
A call that finds the database locked by another program (a sqlite3 shell, a backup) has
waited SQLite's busy timeout; it is made again a few times before it fails, so a lock
held for a moment costs a wait, not a refused message.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from supervisor.chat.web.db import WebDb
from supervisor.durable import until_written

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_FILE = "web.sqlite3"
# Tries of a call that finds the database locked, each after SQLite's own wait
# (`db.BUSY_TIMEOUT_S`): about 15 s in all before the call fails.
BUSY_TRIES = 3


def _primary_code(exc: BaseException) -> int:
    """SQLite's primary result code of an error (its extended code's low byte)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the database: worth trying again, unlike a broken one."""
    return isinstance(exc, sqlite3.OperationalError) and _primary_code(exc) in (
        sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED
    )


class WebStore:
    """Invariant: `_db` is used only while `_turn` is held, and not after `close`."""

    def __init__(self, db: WebDb, directory: Path) -> None:
        self._db = db
        self._directory = directory
        self._turn = trio.StrictFIFOLock()
        self._closed = False

    @classmethod
    async def open(cls, state_dir: Path) -> WebStore:
        """Open (or create) the database."""
        return cls(await trio.to_thread.run_sync(WebDb, state_dir / DB_FILE), state_dir)

    async def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `function(db, *args, **kwargs)` on its turn, return (or raise) its result."""
        results: list[T] = []

        def run() -> None:
            try:
                results.append(function(self._db, *args, **kwargs))
            except sqlite3.OperationalError as exc:
                code = _primary_code(exc)
                if code in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):
                    raise OSError(errno.ENOSPC if code == sqlite3.SQLITE_FULL else errno.EIO, str(exc)) from exc
                raise

        async def attempt() -> None:
            # Shielded: once a write started in its thread it finishes anyway, and the
            # next call must not start before it has.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(run)

        async with self._turn:
            if self._closed:
                raise trio.ClosedResourceError("the web chat's store is closed")
            for tries_left in reversed(range(BUSY_TRIES)):
                try:
                    await until_written(attempt, self._directory, "web chat messages", what="the web chat's messages", log=log)
                    break
                except sqlite3.OperationalError as exc:
                    if not tries_left or not is_busy(exc):
                        raise
                    log.warning("the web chat's database is busy (%s): trying again", exc)
                    # Each try is shielded (SQLite's own wait): a cancel (a caller's limit,
                    # the stop's deadline) takes effect between them, not after all of them.
                    await trio.lowlevel.checkpoint_if_cancelled()
        return results[0]

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
