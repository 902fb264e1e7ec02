"""The store when the disk fails midway: a snapshot whose folder's fsync failed after its
rename, and journals not wholly used at a start (both snapshot copies damaged, a damaged
line). Nothing acknowledged is lost, and the last copy of a journal is never emptied."""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

import pytest
import trio

from supervisor import durable
from supervisor.core import journal
from supervisor.core.state import SessionRecord, State, encode
from supervisor.runtime import store as store_module
from supervisor.runtime.store import (
    FILE_NAME,
    JOURNAL_NAME,
    StateDirUnwritable,
    Store,
    read_state,
    write_atomically,
)
from tests.test_store_journal import _record


def _line(generation: int, *records: SessionRecord) -> bytes:
    return journal.encode_entry(journal.Entry(generation, {r.id: r for r in records}))


def _fail_folder_fsyncs(monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The next `times` fsyncs of a directory fail with EIO; returns the count left."""
    left = [times]
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if left[0] and stat.S_ISDIR(os.fstat(fd).st_mode):
            left[0] -= 1
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return left


def _aside(directory: Path, name: str) -> list[bytes]:
    return [p.read_bytes() for p in directory.glob(f"{name}.damaged-*")]


# --- a snapshot whose folder's fsync failed after its rename -------------------------------


def test_write_atomically_tells_a_failure_after_the_rename_from_one_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "file"
    durable.write_atomically(path, b"old")
    _fail_folder_fsyncs(monkeypatch, 1)
    with pytest.raises(durable.ReplacedNotDurable) as failed:
        durable.write_atomically(path, b"new")
    assert failed.value.errno == errno.EIO and durable.reason(failed.value) == "Input/output error"
    assert path.read_bytes() == b"new"  # what a reader, or the next start, finds

    real_fsync = os.fsync

    def refuse_the_temp_file(fd: int) -> None:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", refuse_the_temp_file)
    with pytest.raises(OSError) as refused:
        durable.write_atomically(path, b"newer")
    assert not isinstance(refused.value, durable.ReplacedNotDurable)
    assert path.read_bytes() == b"new"


async def test_after_a_snapshot_whose_folder_fsync_failed_no_acknowledged_change_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The new snapshot is in place though its fsync failed: a line of the old generation
    appended after it would be skipped by the next start (after a kill -9, say)."""
    store = Store.open(tmp_path)
    store.journal_bound, store.journal_per_snapshot = 1, 0  # every batch ends with a snapshot
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.save(_record("a", "one"))
            left = _fail_folder_fsyncs(monkeypatch, 1)
            await store.save(_record("b", "two"))  # the snapshot after its ack fails
            await store.save(_record("c", "three"))
            await store.save(_record("a", "one, again"))
            assert left == [0]  # the fault did happen
            nursery.cancel_scope.cancel()
    # no close(): as a kill -9 would leave it
    monkeypatch.undo()
    expected = {"a": _record("a", "one, again"), "b": _record("b", "two"), "c": _record("c", "three")}
    on_disk = read_state(tmp_path)
    assert on_disk.state.sessions == expected and on_disk.problems == ()
    assert any("Input/output error): the next write is a whole snapshot" in r.getMessage()
               for r in caplog.records if r.levelno == logging.ERROR)
    store.close()
    again = Store.open(tmp_path)
    again.close()
    assert again.state.sessions == expected


# --- journals not wholly used at a start -------------------------------------------------


def test_with_both_snapshot_copies_damaged_the_journal_is_kept_aside_whole(tmp_path: Path) -> None:
    write_atomically(tmp_path, encode(State(), 1))
    write_atomically(tmp_path, encode(State(), 1))  # and a .prev
    lines = _line(1, _record("a", "precious")) + _line(1, _record("b", "recent"))
    (tmp_path / JOURNAL_NAME).write_bytes(lines)
    (tmp_path / FILE_NAME).write_bytes(b"\0" * 10)
    (tmp_path / f"{FILE_NAME}.prev").write_bytes(b"\0" * 10)
    on_disk = read_state(tmp_path)
    assert not on_disk.found and JOURNAL_NAME in on_disk.damaged
    assert any("no good snapshot to apply its changes to" in problem for problem in on_disk.problems)
    Store.open(tmp_path).close()
    assert _aside(tmp_path, JOURNAL_NAME) == [lines]
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b""  # the new snapshot's journal


def test_a_journal_with_nothing_to_apply_to_never_meets_the_new_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It goes aside before the new snapshot is written: that snapshot starts at generation
    1 again, and a crash (here: a failure) right after its rename must not leave the old
    generation-1 lines to be applied to it."""
    lines = _line(1, _record("a", "of another state"))
    (tmp_path / FILE_NAME).write_bytes(b"\0" * 10)
    (tmp_path / JOURNAL_NAME).write_bytes(lines)
    real_write = store_module.write_atomically

    def write_then_fail(directory: Path, raw: bytes) -> None:
        real_write(directory, raw)
        raise durable.ReplacedNotDurable(errno.EIO, "Input/output error")

    monkeypatch.setattr(store_module, "write_atomically", write_then_fail)
    with pytest.raises(StateDirUnwritable):
        Store.open(tmp_path)
    monkeypatch.undo()
    assert _aside(tmp_path, JOURNAL_NAME) == [lines]
    on_disk = read_state(tmp_path)
    assert on_disk.found and on_disk.state == State() and on_disk.problems == ()


def test_a_damaged_journal_stays_until_a_snapshot_holds_the_lines_used_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set aside first, a snapshot the disk then refused would lose the changes before the
    damaged line: the next start would find neither them nor the journal."""
    write_atomically(tmp_path, encode(State(), 1))
    lines = _line(1, _record("a", "used")) + b'{"g": 1, "sess\n' + _line(1, _record("b", "after the gap"))
    (tmp_path / JOURNAL_NAME).write_bytes(lines)
    real_write = store_module.write_atomically
    refusing = [True]

    def write(directory: Path, raw: bytes) -> None:
        if refusing[0]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(directory, raw)

    monkeypatch.setattr(store_module, "write_atomically", write)
    with pytest.raises(StateDirUnwritable):
        Store.open(tmp_path)
    assert (tmp_path / JOURNAL_NAME).read_bytes() == lines and _aside(tmp_path, JOURNAL_NAME) == []
    refusing[0] = False
    store = Store.open(tmp_path)
    store.close()
    assert store.state.sessions == {"a": _record("a", "used")}
    assert _aside(tmp_path, JOURNAL_NAME) == [lines]
    on_disk = read_state(tmp_path)
    assert on_disk.state.sessions == {"a": _record("a", "used")} and on_disk.problems == ()
