"""The state file survives a SIGKILL at any moment; a damaged file is kept, never lost."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from supervisor.core.state import SessionRecord, State, encode
from supervisor.runtime.store import (
    FILE_NAME,
    StateDirUnwritable,
    Store,
    held,
    load_state,
    read_state,
    write_atomically,
)

WRITER = """
import sys, itertools
from pathlib import Path
from supervisor.core.state import SessionRecord, State, encode
from supervisor.runtime.store import write_atomically
directory = Path(sys.argv[1])
print("ready", flush=True)
for n in itertools.count(int(sys.argv[2])):
    # two records that must always agree: a half-written state would show it
    records = {k: SessionRecord(id=k, name=f"gen{n}", channel_id="c", user_id="u", cwd="/" * (n % 50 + 1))
               for k in ("a", "b")}
    write_atomically(directory, encode(State(sessions=records)))
    print(n, flush=True)
"""


def _generation(state: State) -> int:
    names = {r.name for r in state.sessions.values()}
    assert len(names) == 1, f"records disagree: {names}"
    return int(names.pop().removeprefix("gen"))


def test_state_file_survives_sigkill_of_its_writer_200_times(tmp_path: Path) -> None:
    rng = random.Random(7)
    last = 0
    write_atomically(tmp_path, encode(State(sessions={
        k: SessionRecord(id=k, name="gen0", channel_id="c", user_id="u", cwd="/") for k in ("a", "b")
    })))
    for _ in range(200):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(last + 1)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0, 0.02))  # a write takes ~1 ms: the kill lands anywhere in one
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        # read(), not communicate(timeout=...): the latter reads the pipe's fd directly and
        # misses what readline() above already buffered (a fast writer's first lines)
        printed = writer.stdout.read().split()
        writer.stdout.close()
        state = load_state(tmp_path)  # never raises, never falls back to empty
        generation = _generation(state)
        completed = int(printed[-1]) if printed else last
        # the old one or the new one: at least every write that returned, at most one more
        assert completed <= generation <= completed + 1
        assert not list(tmp_path.glob("*.damaged-*"))
        last = generation


def _state(name: str) -> State:
    return State(sessions={"a": SessionRecord(id="a", name=name, channel_id="c", user_id="u", cwd="/")})


def test_damaged_file_is_kept_aside_and_the_previous_copy_used(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_atomically(tmp_path, encode(_state("old")))
    write_atomically(tmp_path, encode(_state("new")))
    (tmp_path / FILE_NAME).write_bytes(b'{"version": 1, "sessions": {"a": {"na')
    with caplog.at_level(logging.ERROR):
        state = load_state(tmp_path)
    assert state.sessions["a"].name == "old"
    aside = list(tmp_path.glob(f"{FILE_NAME}.damaged-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b'{"version": 1')
    assert any("damaged" in r.message for r in caplog.records)
    assert any("previous good state" in r.message for r in caplog.records)


def test_damaged_file_without_a_good_copy_says_so_loudly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"\x00garbage")
    with caplog.at_level(logging.ERROR):
        state = load_state(tmp_path)
    assert state == State()
    assert list(tmp_path.glob(f"{FILE_NAME}.damaged-*"))
    assert any("EMPTY STATE" in r.message for r in caplog.records)


def test_a_cut_between_the_renames_uses_the_previous_copy(tmp_path: Path) -> None:
    write_atomically(tmp_path, encode(_state("old")))
    os.replace(tmp_path / FILE_NAME, tmp_path / f"{FILE_NAME}.prev")
    assert load_state(tmp_path).sessions["a"].name == "old"


async def test_store_acknowledges_only_durable_changes_and_commits_in_groups(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            record = _state("x").sessions["a"]
            await store.save(record)
            assert read_state(tmp_path).state.sessions["a"] == record
            for n in range(50):
                assert store.admit("c", f"p{n}", 1000 + n)
                store.handled("c", f"p{n}")
            await store.flush()
            assert store.writes < 50  # grouped, not one fsync per change
            on_disk = read_state(tmp_path).state
            assert on_disk.channels["c"].cursor == 1049
            # one line per session and per channel: readable, and valid JSON
            assert encode(read_state(tmp_path).state).decode().count("\n") == 8
            nursery.cancel_scope.cancel()


def test_a_state_directory_the_supervisor_makes_is_its_users_alone(tmp_path: Path) -> None:
    """It holds the prompts, the web chat's history and its tokens: 0700, not the umask's
    0755. One that exists already is left as its owner made it."""
    made, existing = tmp_path / "new" / "state", tmp_path / "existing"
    existing.mkdir(0o755)
    os.chmod(existing, 0o755)
    with held(made), held(existing):
        pass
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert stat.S_IMODE(existing.stat().st_mode) == 0o755
    Store.open(tmp_path / "opened")
    assert stat.S_IMODE((tmp_path / "opened").stat().st_mode) == 0o700


@pytest.mark.parametrize(("code", "fix"), [
    (errno.ENOSPC, "make room there"),
    (errno.EACCES, "let the supervisor's user write there"),
    (errno.EROFS, "mount it writable"),
    (errno.EIO, "mend its disk or permissions"),
])
def test_a_state_dir_refused_at_start_is_one_sentence_with_the_fix_for_its_cause(
    tmp_path: Path, code: int, fix: str
) -> None:
    said = str(StateDirUnwritable.because(tmp_path, OSError(code, os.strerror(code))))
    assert said == (f"cannot write the state to {tmp_path} ({os.strerror(code)}): {fix}, "
                    "or set state.dir elsewhere, and start again")
