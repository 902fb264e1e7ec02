"""The store's write-ahead journal: a commit is one appended line, and a crash at any point
(mid-append, mid-snapshot, between the snapshot and the journal's reset) reloads to exactly
what the acknowledged commits describe; `read_state` still changes nothing on disk."""

from __future__ import annotations

import copy
import fcntl
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core import journal
from supervisor.core.state import ChannelLedger, SessionRecord, State, encode
from supervisor.runtime import store as store_module
from supervisor.runtime.store import (
    FILE_NAME,
    JOURNAL_NAME,
    Store,
    load_state,
    read_state,
    write_atomically,
)
from tests.strategies import JOURNAL_BATCHES


def _record(key: str, name: str) -> SessionRecord:
    return SessionRecord(id=key, name=name, channel_id="c1", user_id="u", cwd="/")


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _line(generation: int, *records: SessionRecord, handled: dict[str, dict[str, int]] | None = None,
          places: dict[str, tuple[int, str]] | None = None) -> bytes:
    entry = journal.Entry(generation, {r.id: r for r in records}, handled or {}, places or {})
    return journal.encode_entry(entry)


async def test_a_save_is_on_disk_in_the_journal_before_it_is_acknowledged(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            assert store.admit("c1", "p1", 5000)
            await store.save(_record("a", "saved"), handled=("c1", "p1"))
            # the crash: the actor stops here, nothing more is written
            nursery.cancel_scope.cancel()
    store.close()
    assert "saved" not in (tmp_path / FILE_NAME).read_text()  # only the journal holds it
    assert (tmp_path / JOURNAL_NAME).read_bytes().count(b"\n") == 1  # one line for the commit
    for state in (read_state(tmp_path).state, load_state(tmp_path)):
        assert state.sessions["a"].name == "saved"
        assert state.channels["c1"] == ChannelLedger(cursor=5000, handled={"p1": 5000})
    reopened = Store.open(tmp_path)  # the start writes it all into a fresh snapshot
    reopened.close()
    assert "saved" in (tmp_path / FILE_NAME).read_text()
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b""


async def test_a_commit_is_a_synchronous_write_so_its_ack_means_on_disk(tmp_path: Path) -> None:
    """No fsync follows the append: the journal's descriptor itself is O_DSYNC, also after
    a snapshot starts a new journal. (The crash points below cannot see a page cache: this
    is what keeps their "written" meaning "on disk".)"""
    store = Store.open(tmp_path)
    store.journal_bound, store.journal_per_snapshot = 1, 0  # a snapshot, and a new journal, after every commit
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for n in range(3):
                await store.save(_record("a", str(n)))
                assert store._journal is not None
                assert fcntl.fcntl(store._journal.fd, fcntl.F_GETFL) & os.O_DSYNC
            nursery.cancel_scope.cancel()
    store.close()
    assert read_state(tmp_path).state.sessions["a"].name == "2"


def _watch_appends(monkeypatch: pytest.MonkeyPatch, slow: Mapping[int, Callable[[], float]]) -> list[bool]:
    """Each journal append in order: whether it ran on the event loop. The `n`th (0-based)
    takes `slow[n]()` seconds more, read when it runs (tests patch the thresholds)."""
    on_loop: list[bool] = []
    real_append = store_module.append_line

    def watched_append(journal_: store_module.Journal, line: bytes) -> None:
        if len(on_loop) in slow:
            time.sleep(slow[len(on_loop)]())
        on_loop.append(threading.current_thread() is threading.main_thread())
        real_append(journal_, line)

    monkeypatch.setattr(store_module, "append_line", watched_append)
    return on_loop


def _quick_thresholds(monkeypatch: pytest.MonkeyPatch, stall_s: float) -> None:
    """Thresholds no real write on a busy machine reaches; three quick commits to return."""
    monkeypatch.setattr(store_module, "SLOW_COMMIT_S", 0.3)
    monkeypatch.setattr(store_module, "STALL_S", stall_s)
    monkeypatch.setattr(store_module, "QUICK_COMMITS_TO_RETURN", 3)


async def _save_one_at_a_time(tmp_path: Path, count: int) -> Store:
    """A store that saved record `a` `count` times, each once the last was durable; closed."""
    store = Store.open(tmp_path)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for n in range(count):
                await store.save(_record("a", str(n)))
            nursery.cancel_scope.cancel()
    store.close()
    return store


def _slow() -> float:
    return store_module.SLOW_COMMIT_S * 1.5


def _stall() -> float:
    return store_module.STALL_S * 1.2


async def test_a_commit_one_task_waits_for_runs_on_the_loop_until_the_disk_is_slow_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A quick disk's commit that one task waits for is written on the loop (a worker
    thread's two hops cost more than the write); one that several wait for goes through a
    thread (the loop goes on with them); the first slow one moves every later commit to a
    thread, so a disk that stalls cannot stop the loop again. Each is durable at its ack."""
    on_loop = _watch_appends(monkeypatch, {2: _slow})  # the disk is slow once
    store = Store.open(tmp_path)
    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="supervisor.store"):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.save(_record("a", "1"))
            async with trio.open_nursery() as both:  # two waiting on one write
                both.start_soon(store.save, _record("b", "1"))
                both.start_soon(store.save, _record("c", "1"))
            for n in (2, 3):  # the first of them is slow
                await store.save(_record("a", str(n)))
                assert read_state(tmp_path).state.sessions["a"].name == str(n)  # durable at the ack
            nursery.cancel_scope.cancel()
    store.close()
    assert sorted(read_state(tmp_path).state.sessions) == ["a", "b", "c"]
    assert on_loop == [True, False, True, False]
    assert store.commits_in_thread
    assert any("worker thread" in r.getMessage() for r in caplog.records)  # said once, loudly


async def test_commits_go_back_to_the_loop_after_enough_quick_ones_in_the_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A disk slow for a moment (many agents starting at once) does not cost every later
    prompt two thread hops: after QUICK_COMMITS_TO_RETURN quick commits in a row in the
    worker thread they are made on the loop again; slow once more, twice as many are
    needed; a slow one in the thread starts the count afresh."""
    # Slow: the first commit, then one back on the loop, then one in the thread.
    on_loop = _watch_appends(monkeypatch, {1: _slow, 5: _slow, 7: _slow})
    _quick_thresholds(monkeypatch, stall_s=5.0)
    caplog.set_level(logging.INFO, logger="supervisor.store")
    await _save_one_at_a_time(tmp_path, 15)
    assert read_state(tmp_path).state.sessions["a"].name == "14"
    # 0: quick, on the loop; 1: slow, on the loop; 2-4: three quick in the thread; 5: slow,
    # on the loop again; 6-7: in the thread, 7 slow; 8-13: six quick; 14: on the loop.
    assert on_loop == [True, True, False, False, False, True, False, False, *[False] * 6, True]
    assert sum("made on the event loop again" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.parametrize("in_thread", [False, True], ids=["on-the-loop", "in-the-thread"])
async def test_commits_stay_in_the_thread_for_good_once_one_stalled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, in_thread: bool
) -> None:
    """A write of over STALL_S is a stall, not a busy moment: the next stall on the loop
    would freeze everything as long, so no number of quick commits brings them back;
    whether it stalled on the loop, or in the thread after a merely slow one moved it."""
    on_loop = _watch_appends(monkeypatch, {1: _slow, 2: _stall} if in_thread else {1: _stall})
    _quick_thresholds(monkeypatch, stall_s=0.6)
    caplog.set_level(logging.WARNING, logger="supervisor.store")
    store = await _save_one_at_a_time(tmp_path, 10)
    assert on_loop == [True, True, *[False] * 8]
    assert not store.may_return_to_loop
    assert any("worker thread" in r.getMessage() and "from now on" in r.getMessage() for r in caplog.records)


async def test_a_stall_on_a_write_several_waited_for_keeps_the_next_ones_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write several sessions wait for goes through the thread anyway; when it stalls,
    the next one a lone prompt waits for must not meet that disk on the loop."""
    on_loop = _watch_appends(monkeypatch, {1: _stall})
    _quick_thresholds(monkeypatch, stall_s=0.6)
    store = Store.open(tmp_path)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.save(_record("a", "0"))
            async with trio.open_nursery() as both:  # two waiting on one write: in the thread
                both.start_soon(store.save, _record("b", "1"))
                both.start_soon(store.save, _record("c", "1"))
            for n in range(1, 6):
                await store.save(_record("a", str(n)))
            nursery.cancel_scope.cancel()
    store.close()
    assert on_loop == [True, False, *[False] * 5]
    assert not store.may_return_to_loop


def _seed(directory: Path, generation: int, state: State, *lines: bytes) -> None:
    write_atomically(directory, encode(state, generation))
    (directory / JOURNAL_NAME).write_bytes(b"".join(lines))


def test_a_torn_last_line_is_ignored_quietly_and_the_lines_before_it_apply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cut = _line(1, _record("c", "never acknowledged"))
    _seed(tmp_path, 1, State(), _line(1, _record("a", "one")), _line(1, _record("b", "two")), cut[: len(cut) // 2])
    with caplog.at_level(logging.DEBUG):
        on_disk = read_state(tmp_path)
        loaded = load_state(tmp_path)
    assert on_disk.state == loaded == State(sessions={"a": _record("a", "one"), "b": _record("b", "two")})
    assert on_disk.problems == () and on_disk.damaged == ()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("cut short" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("last", [b"\x00" * 40, b"\x00" * 40 + b"\n"])
def test_a_last_line_of_zeros_is_a_torn_line_too(tmp_path: Path, last: bytes) -> None:
    # A crash can leave the file longer with its new block never written: zeros.
    _seed(tmp_path, 1, State(), _line(1, _record("a", "one")), last)
    assert read_state(tmp_path).state.sessions == {"a": _record("a", "one")}
    assert read_state(tmp_path).problems == ()


def test_a_damaged_line_before_the_last_stops_the_replay_there_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _seed(tmp_path, 1, State(), _line(1, _record("a", "one")), b'{"g": 1, "sessions": {"b"\n',
          _line(1, _record("c", "after the gap")))
    on_disk = read_state(tmp_path)
    assert on_disk.state.sessions == {"a": _record("a", "one")}  # nothing after the gap
    assert on_disk.damaged == (JOURNAL_NAME,) and "line 2" in on_disk.problems[0]
    journal_bytes = (tmp_path / JOURNAL_NAME).read_bytes()
    with caplog.at_level(logging.INFO):
        store = Store.open(tmp_path)
    store.close()
    assert store.state.sessions == {"a": _record("a", "one")}
    assert any(r.levelno == logging.ERROR and "damaged at line 2" in r.getMessage() for r in caplog.records)
    aside = list(tmp_path.glob(f"{JOURNAL_NAME}.damaged-*"))  # kept for a person to look at
    assert len(aside) == 1 and aside[0].read_bytes() == journal_bytes
    assert read_state(tmp_path).state.sessions == {"a": _record("a", "one")}  # now in the snapshot


def test_a_crash_between_the_snapshot_and_the_journal_reset_replays_nothing_stale(tmp_path: Path) -> None:
    """The snapshot of generation 2 holds everything the generation-1 journal said, and
    more: replaying those lines again would put an old record back."""
    old, new = _record("a", "old"), _record("a", "new")
    snapshot = State(sessions={"a": new, "b": _record("b", "b")},
                     channels={"c1": ChannelLedger(cursor=9000, handled={"p2": 9000}, front="telegram")})
    _seed(tmp_path, 2, snapshot,
          _line(1, old, handled={"c1": {"p1": 1000}}, places={"c1": (1000, "telegram")}),
          _line(1, new, handled={"c1": {"p2": 9000}}, places={"c1": (9000, "telegram")}))
    assert read_state(tmp_path).state == snapshot
    assert read_state(tmp_path).problems == ()
    store = Store.open(tmp_path)  # and the next start carries on from there
    store.close()
    assert load_state(tmp_path) == snapshot


def test_a_version_2_file_has_no_journal_to_apply(tmp_path: Path) -> None:
    v2 = b'{"version": 2, "sessions": {}, "fronts": {"": {"c1": {"cursor": 7, "handled": {}}}}}\n'
    (tmp_path / FILE_NAME).write_bytes(v2)
    (tmp_path / JOURNAL_NAME).write_bytes(_line(1, _record("a", "not for this file")))
    assert read_state(tmp_path).state == State(channels={"c1": ChannelLedger(cursor=7)})


def test_read_state_changes_nothing_on_disk_even_with_a_journal(tmp_path: Path) -> None:
    cut = _line(1, _record("z", "cut"))
    _seed(tmp_path, 1, State(sessions={"a": _record("a", "snap")}), _line(1, _record("a", "one")),
          b"garbage\n", _line(1, _record("b", "two")), cut[:10])
    write_atomically(tmp_path, encode(State(sessions={"a": _record("a", "snap")}), 1))  # a .prev too
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    on_disk = read_state(tmp_path)
    assert on_disk.state.sessions == {"a": _record("a", "one")} and on_disk.damaged == (JOURNAL_NAME,)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


async def test_a_journal_past_its_bound_becomes_a_snapshot_after_the_ack(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.journal_bound, store.journal_per_snapshot = 2000, 0
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            generation = store.generation
            for n in range(10):
                await store.save(_record("a", f"save {n} " + "x" * 200))
            await store.flush()
            nursery.cancel_scope.cancel()
    store.close()
    assert store.generation > generation  # it compacted
    assert len((tmp_path / JOURNAL_NAME).read_bytes()) < 2000 + 1000
    assert f'"journal": {store.generation}' in (tmp_path / FILE_NAME).read_text()
    assert read_state(tmp_path).state == store.state


async def test_the_journal_grows_to_a_multiple_of_the_snapshot_before_the_next_one(tmp_path: Path) -> None:
    """A big state is not rewritten every few prompts: the bound follows the snapshot's
    size (the last one's), so snapshots stay a small share of the writes."""
    write_atomically(tmp_path, encode(State(sessions={f"s{n}": _record(f"s{n}", "x" * 100) for n in range(20)})))
    store = Store.open(tmp_path)
    store.journal_bound, store.journal_per_snapshot = 2000, 3
    snapshot_bytes = len((tmp_path / FILE_NAME).read_bytes())
    assert snapshot_bytes > 2000  # the multiple, not the least bound, decides here
    first = store.generation
    longest = 0  # the journal of the first generation, at its longest
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for n in range(60):
                await store.save(_record("a", f"save {n} " + "x" * 200))
                if store.generation == first:
                    longest = len((tmp_path / JOURNAL_NAME).read_bytes())
            nursery.cancel_scope.cancel()
    store.close()
    assert store.generation > first, "no snapshot in 60 commits"
    line = len(journal.encode_entry(journal.entry_of(first, {"a": _record("a", "save 10 " + "x" * 200)}, {}, {})))
    assert 3 * snapshot_bytes <= longest < 3 * snapshot_bytes + line
    assert read_state(tmp_path).state == store.state


# --- a crash after any write -------------------------------------------------------------


class CrashPoints:
    """Stands in for `os` in the store module. After each call that changes a file, keeps
    the directory as a crash right then would leave it (and, after a write, also with that
    write cut in half: a torn append), with how many commits were acknowledged by then."""

    CHANGING = frozenset({"open", "write", "link", "replace", "unlink"})

    def __init__(self, directory: Path, acked: Callable[[], int]) -> None:
        self.directory = directory
        self.acked = acked
        self.copies: list[tuple[int, dict[str, bytes]]] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in self.CHANGING:
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            before = _files(self.directory)
            result = real(*args, **kwargs)
            after = _files(self.directory)
            acked = self.acked()
            if name == "write":
                for file, raw in after.items():
                    old = before.get(file, b"")
                    if len(raw) > len(old) + 1 and raw.startswith(old):
                        self.copies.append((acked, {**after, file: raw[: len(old) + (len(raw) - len(old)) // 2]}))
            self.copies.append((acked, after))
            return result

        return call


def _apply_change(store: Store, change: tuple[Any, ...]) -> None:
    match change:
        case ("save", key, name):
            store.save_soon(_record(key, name))
        case ("post", channel, post, create_at, handled):
            if store.admit(channel, post, create_at) and handled:
                store.handled(channel, post)
        case ("begin", channel, now_ms, front):
            store.ledger.begin(channel, now_ms, front)


async def _commit_batches(directory: Path, batches: list[list[tuple[Any, ...]]], bound: int,
                          acked: list[int]) -> list[State]:
    """The states after each commit, the first being the one before any."""
    store = Store.open(directory)
    store.journal_bound, store.journal_per_snapshot = bound, 0
    states = [copy.deepcopy(store.state)]
    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                for n, batch in enumerate(batches, start=1):
                    for change in batch:
                        _apply_change(store, change)
                    await store.flush()  # everything put since the last flush: one commit
                    states.append(copy.deepcopy(store.state))
                    acked[0] = n
                nursery.cancel_scope.cancel()
    finally:
        store.close()
    return states


@given(JOURNAL_BATCHES, st.sampled_from([1, 700, 3000, 1 << 30]))
def test_a_crash_after_any_write_reloads_to_what_the_acknowledged_commits_describe(
    batches: list[list[tuple[Any, ...]]], bound: int
) -> None:
    """At every crash point the state on disk is that of the commits acknowledged by then,
    or of one more (its line was written, the crash came before its ack): never less,
    never a mix, whatever the bound makes of snapshots (1: one after every commit)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "state"
        directory.mkdir()
        acked = [0]
        points = CrashPoints(directory, lambda: acked[0])
        real_os = store_module.os
        store_module.os = points  # type: ignore[assignment]
        try:
            states = trio.run(_commit_batches, directory, batches, bound, acked)
        finally:
            store_module.os = real_os
        assert points.copies
        for n, files in points.copies:
            crashed = Path(tmp) / "crashed"
            crashed.mkdir()
            for name, raw in files.items():
                (crashed / name).write_bytes(raw)
            on_disk = read_state(crashed)
            assert on_disk.problems == ()
            assert on_disk.state in states[n : n + 2], (n, sorted(files))
            for path in crashed.iterdir():
                path.unlink()
            crashed.rmdir()


async def test_a_reader_while_the_store_snapshots_never_sees_less_than_was_acknowledged(tmp_path: Path) -> None:
    """`sessions` while `run` writes: a snapshot (and the journal's reset) between reading
    the snapshot and reading the journal must not hide the lines the old journal held."""
    store = Store.open(tmp_path)
    store.journal_bound, store.journal_per_snapshot = 1, 0  # a snapshot after every commit
    acked = [0]
    seen_too_old: list[tuple[int, int]] = []
    stop = False

    def read_repeatedly() -> None:
        while not stop:
            before = acked[0]
            record = read_state(tmp_path).state.sessions.get("a")
            got = int(record.name) if record else 0
            if got < before:
                seen_too_old.append((got, before))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            nursery.start_soon(trio.to_thread.run_sync, read_repeatedly)
            for n in range(1, 150):
                await store.save(_record("a", str(n)))
                acked[0] = n
            stop = True
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
    store.close()
    assert not seen_too_old


def test_with_a_damaged_snapshot_the_journal_that_followed_it_is_kept_aside_not_applied(tmp_path: Path) -> None:
    """The previous copy is older than the journal's lines: applying them to it would make
    up a state that never was; they are kept for a person, loudly."""
    write_atomically(tmp_path, encode(State(sessions={"a": _record("a", "older")}), 1))
    write_atomically(tmp_path, encode(State(sessions={"a": _record("a", "newer")}), 2))  # .prev: older
    (tmp_path / JOURNAL_NAME).write_bytes(_line(2, _record("b", "after the newer snapshot")))
    (tmp_path / FILE_NAME).write_bytes(b'{"version": 3, "journal": 2, "sess')
    on_disk = read_state(tmp_path)
    assert on_disk.state.sessions == {"a": _record("a", "older")}
    assert on_disk.damaged == (FILE_NAME, JOURNAL_NAME)
    assert any("1 changes made after the damaged copy" in problem for problem in on_disk.problems)
    assert load_state(tmp_path).sessions == {"a": _record("a", "older")}
    assert len(list(tmp_path.glob(f"{JOURNAL_NAME}.damaged-*"))) == 1
    assert not (tmp_path / JOURNAL_NAME).exists()


def test_lines_of_a_newer_state_than_the_snapshot_are_kept_aside_not_emptied(tmp_path: Path) -> None:
    """A good snapshot older than the journal's lines (an older copy of sessions.json put
    back by hand): its lines were skipped without a word, and the next write emptied the
    journal, the only copy of them. They are kept aside now, loudly."""
    write_atomically(tmp_path, encode(State(sessions={"a": _record("a", "older")}), 1))
    (tmp_path / JOURNAL_NAME).write_bytes(_line(1, _record("a", "used")) + _line(2, _record("b", "after a newer one")))
    on_disk = read_state(tmp_path)
    assert on_disk.state.sessions == {"a": _record("a", "used")}
    assert on_disk.damaged == (JOURNAL_NAME,)
    assert any("1 changes made after a newer state" in problem for problem in on_disk.problems)
    store = Store.open(tmp_path)
    store.close()
    [aside] = tmp_path.glob(f"{JOURNAL_NAME}.damaged-*")
    assert b"after a newer one" in aside.read_bytes()
    assert load_state(tmp_path).sessions == {"a": _record("a", "used")}
