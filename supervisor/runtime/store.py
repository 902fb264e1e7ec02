"""The persistence actor: the only writer of `<state.dir>/sessions.json`.

Others send it changes; it applies every change waiting in its inbox, writes the file once
(group commit), and only then acknowledges the changes that asked for it. Changes nobody
waits for wait up to `SOON_S` for one somebody does, to share its write. Every write is
atomic and durable: temp file in the same directory, fsync, rename, fsync the directory.
The previous good copy is kept as `sessions.json.prev`, so a damaged file (disk trouble,
a hand edit) falls back to it, loudly.

Never decides what a session is or does; it only records. Changes reach it through a
`Mailbox`: handing one over never blocks and never fails, however many are waiting.

`read_state` is for the read-only commands (`sessions`, `check`): it changes nothing on
disk, not even a damaged file, which only `run` (through `load_state`) sets aside.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from supervisor.core.state import Encoder, Ledger, SessionRecord, State, StateFileError, decode
from supervisor.runtime.mail import Mailbox

log = logging.getLogger("supervisor.store")

FILE_NAME = "sessions.json"
# How long changes nobody waits for (`save_soon`, `handled`) may wait for company. A turn's
# end saves its record "soon" just as the next prompt's handled mark comes in: in one write
# the mark is durable after one fsync instead of two (the second waiting for the first).
SOON_S = 0.05


@attrs.frozen
class _Change:
    record: SessionRecord | None = None
    handled: tuple[str, str] | None = None  # (channel id, post id)
    done: trio.Event | None = None  # set once the change is on disk


class Store:
    def __init__(self, directory: Path, state: State) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.state = state
        self.ledger = Ledger.from_state(state.channels)
        self._encoder = Encoder()
        self._inbox: Mailbox[_Change] = Mailbox()
        self._awaited = trio.Event()  # set when the inbox holds a change someone waits for
        self.writes = 0
        # Told of each handled mark once it is on disk (a front end may confirm then).
        self.on_durable_handled: Callable[[str, str], None] = lambda _channel_id, _post_id: None

    @classmethod
    def open(cls, directory: Path) -> Store:
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, load_state(directory))

    # --- what others call ------------------------------------------------------

    async def save(self, record: SessionRecord, *, handled: tuple[str, str] | None = None) -> None:
        """Record a session and wait until it is durable. With `handled` (channel id, post
        id), that post's handled mark is in the same write: both are on disk, or neither."""
        done = trio.Event()
        self._put(_Change(record=record, handled=handled, done=done))
        await done.wait()

    def save_soon(self, record: SessionRecord) -> None:
        """Record a session; durable within `SOON_S` and a write, nobody waits."""
        self._put(_Change(record=record))

    def admit(self, channel_id: str, post_id: str, create_at: int) -> bool:
        """In memory only: True the first time a post is seen and not yet dealt with."""
        return self.ledger.admit(channel_id, post_id, create_at)

    def handled(self, channel_id: str, post_id: str) -> None:
        self._put(_Change(handled=(channel_id, post_id)))

    async def mark_handled(self, channel_id: str, post_id: str) -> None:
        """Record a post as dealt with and wait until that is durable."""
        done = trio.Event()
        self._put(_Change(handled=(channel_id, post_id), done=done))
        await done.wait()

    async def flush(self) -> None:
        done = trio.Event()
        self._put(_Change(done=done))
        await done.wait()

    def _put(self, change: _Change) -> None:
        self._inbox.put(change)
        if change.done is not None:
            self._awaited.set()

    # --- the actor -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._inbox.wait()
            # Nobody waits for what is there yet: let the changes that follow at once
            # share its write (SOON_S). Cancelled meanwhile, it stays in the inbox, like
            # anything put after the last write.
            with trio.move_on_after(SOON_S):
                await self._awaited.wait()
            self._awaited = trio.Event()
            batch = self._inbox.take_all()  # group commit: one write for all waiting
            self._apply(batch)
            raw = self._encoder.encode(self.state)
            # Shielded: a write that started must finish, or the acks would lie.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(write_atomically, self.directory, raw)
            self.writes += 1
            for change in batch:
                if change.handled is not None:
                    self.on_durable_handled(*change.handled)
                if change.done is not None:
                    change.done.set()

    def _apply(self, batch: list[_Change]) -> None:
        sessions = dict(self.state.sessions)
        for change in batch:
            if change.record is not None:
                sessions[change.record.id] = change.record
            if change.handled is not None:
                self.ledger.done(*change.handled)
        self.state = State(sessions=sessions, channels=self.ledger.snapshot())


def write_atomically(directory: Path, raw: bytes) -> None:
    """Replace sessions.json with `raw`, keeping the old copy as .prev; durable on return.

    A crash at any point leaves sessions.json whole (old or new); readers never find it
    missing (.prev is made a second name of the old file before the new one replaces it).
    """
    path = directory / FILE_NAME
    tmp = directory / f".{FILE_NAME}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
    if path.exists():
        prev_tmp = directory / f".{FILE_NAME}.prev.tmp"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(prev_tmp)
        os.link(path, prev_tmp)
        os.replace(prev_tmp, directory / f"{FILE_NAME}.prev")
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@attrs.frozen
class StateOnDisk:
    """What the state directory holds: the state to use, and what is wrong there."""

    state: State
    found: bool  # a good copy was found (else `state` is empty)
    damaged: tuple[str, ...]  # names of the files that do not decode
    problems: tuple[str, ...]  # one sentence each, for the log or the terminal


def read_state(directory: Path) -> StateOnDisk:
    """The last good state (sessions.json, else its .prev copy). Reads only: nothing on disk
    changes, whatever it finds."""
    damaged: list[str] = []
    problems: list[str] = []
    for name in (FILE_NAME, f"{FILE_NAME}.prev"):
        path = directory / name
        try:
            state = decode(path.read_bytes())
        except FileNotFoundError:
            if name == FILE_NAME and (directory / f"{FILE_NAME}.prev").exists():
                problems.append(f"state file {path} is missing (a write was cut)")
            continue
        except StateFileError as exc:
            damaged.append(name)
            problems.append(f"state file {path} is damaged ({exc})")
            continue
        if problems:
            problems.append(f"using the previous good state from {name}")
        return StateOnDisk(state, True, tuple(damaged), tuple(problems))
    return StateOnDisk(State(), False, tuple(damaged), tuple(problems))


def load_state(directory: Path) -> State:
    """The last good state, for `run`. A damaged file is kept aside under a new name, never
    lost: the next write would otherwise replace the evidence."""
    on_disk = read_state(directory)
    for problem in on_disk.problems:
        log.error("%s", problem)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for name in on_disk.damaged:
        aside = directory / f"{name}.damaged-{stamp}"
        os.replace(directory / name, aside)
        log.error("kept the damaged %s as %s", name, aside.name)
    if not on_disk.found and any(directory.glob(f"{FILE_NAME}*.damaged-*")):
        log.error(
            "STARTING WITH AN EMPTY STATE: no good copy of %s exists; the damaged files are "
            "kept in %s for inspection",
            FILE_NAME,
            directory,
        )
    return on_disk.state
