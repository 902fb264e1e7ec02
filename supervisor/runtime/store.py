"""The persistence actor: the only writer of `<state.dir>/sessions.json` and its journal.

Others send it changes; it applies every change waiting in its inbox and makes them
durable at once (group commit), and only then acknowledges the changes that asked for it.
Changes nobody waits for wait up to `SOON_S` for one somebody does, to share its write
(but for one marked `at_once`: a crash before it is written would cost the person).

Durable means one of two writes:
- A commit appends ONE line to `sessions.journal` (`core.journal`: the records and
  handled marks the batch wrote, and the ledger's cursors) with a single write on an
  O_APPEND | O_DSYNC descriptor, durable when it returns: a handled mark is on disk
  before its prompt goes to the agent for the price of a small append, not a rewrite of
  every session's record. A commit one task waits for (a person's prompt) is appended on
  the event loop itself while the disk is quick (see `SLOW_COMMIT_S`): a worker thread
  would add two thread hops, costlier than the write, to the prompt's way to its agent.
  A commit several wait for goes through a worker thread: the sessions are busy, and the
  loop goes on with them meanwhile (what they change shares the next write).
- `sessions.json` is a snapshot of the whole state, written atomically (temp file in the
  same directory, fsync, rename, fsync the directory) when `run` opens the store and
  whenever the journal passes its bound (`JOURNAL_PER_SNAPSHOT`), after the batch that
  passed it was acknowledged. The snapshot names the generation of the journal that follows it; the
  journal is then started afresh with that generation. Only lines of the snapshot's
  generation are replayed, so a crash at any point (even between the snapshot's rename
  and the journal's reset) neither loses a line nor applies one twice. Once a new
  snapshot is in place, no line of the old generation is acknowledged, even when the
  folder's fsync after its rename failed: the next write is a whole snapshot instead.
The previous good snapshot is kept as `sessions.json.prev`, so a damaged file (disk
trouble, a hand edit) falls back to it, loudly. A journal not wholly used (a damaged
line, no good snapshot to apply it to) is kept aside, never emptied.

Never decides what a session is or does; it only records. Changes reach it through a
`Mailbox`: handing one over never blocks and never fails, however many are waiting.

One supervisor per state directory: `run` holds `supervisor.lock` in it (`held`) for as
long as it serves, since a second one on the same state would answer every post again and
overwrite the first one's files.

`read_state` is for the read-only commands (`sessions`, `check`): it changes nothing on
disk, not even a damaged file, which only `run` (through `load_state`) sets aside.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import trio

from supervisor import durable
from supervisor.core import journal
from supervisor.core.state import (
    Encoder,
    Ledger,
    SessionRecord,
    State,
    StateFileError,
    decode_snapshot,
)
from supervisor.durable import reason, until_written
from supervisor.runtime.mail import Mailbox

log = logging.getLogger("supervisor.store")

FILE_NAME = "sessions.json"
JOURNAL_NAME = "sessions.journal"
LOCK_NAME = "supervisor.lock"  # held by the running supervisor; it holds its pid
# A state directory we make is its user's alone: it holds the conversations' prompts, the
# web chat's history and tokens (each file is 0600 too; one we did not make is left as is).
STATE_DIR_MODE = 0o700
# The journal's size that makes the next batch end with a snapshot: JOURNAL_BOUND, or
# JOURNAL_PER_SNAPSHOT times the last snapshot's size where that is more. A snapshot costs
# the whole state (200 sessions: 2-5 ms to encode and write 216 KB atomically, in a worker
# thread that holds the GIL for the encoding, and the next batch waits for it), a line
# only what its batch changed: ~0.8 KiB per record in it (more while a finished answer
# waits to show: up to 32,000 escaped characters, `core.turn_loop.ANSWER_KEEP_CHARS`) and
# ~0.15 KiB for a handled mark alone. A prompt and its turn write some 3 KiB. Bounded by
# a multiple of the snapshot, snapshots stay a small share of the writes however many
# sessions there are (at a fixed 512 KiB, 200 sessions snapshotted every ~160 prompts: a
# prompt in ~0.6% met one, the routing p99's tail), and a start's replay stays a small
# multiple of reading the snapshot itself (200 sessions: 18 ms for 1.1 MB of lines).
JOURNAL_BOUND = 512 * 1024
JOURNAL_PER_SNAPSHOT = 8
# How long changes nobody waits for (`save_soon`, `handled`; not `at_once`) may wait for company. A turn's
# end saves its record "soon" just as the next prompt's handled mark comes in: in one write
# the mark is durable after one fsync instead of two (the second waiting for the first).
SOON_S = 0.05
# A commit that took longer than this (one small synchronous write: 0.2-0.5 ms on a local
# disk) says the disk is slow or stalls (a network file system, a worn card): from then on
# commits are written from a worker thread, so that the event loop (the chat's connection,
# every other thread) does not wait for that disk again.
SLOW_COMMIT_S = 0.05
# ... until this many commits in a row were quick there: a disk can be slow for a moment
# only (200 agents starting at once on a 2-core machine made one write take 50-100 ms), and
# a worker thread costs every prompt two thread hops and a wait for the GIL. Each return
# doubles the count the next one needs, so a disk that keeps being slow stays in the thread.
QUICK_COMMITS_TO_RETURN = 100
# A write that took longer than this is a stall, not a busy moment: commits stay in the
# worker thread for good, since the next stall on the loop would freeze everything for as
# long (the chat connections, every session, a stop's 10 s).
STALL_S = 0.5
# A periodic snapshot the disk refused waits this long before the next try (the journal
# goes on meanwhile). A commit it refuses is tried again (`durable.until_written`): prompts
# wait for their handled marks and answers for the saves they carry; nothing is lost.
SNAPSHOT_RETRY_S = 10.0


@attrs.frozen
class _Change:
    record: SessionRecord | None = None
    handled: tuple[str, str] | None = None  # (channel id, post id)
    done: trio.Event | None = None  # set once the change is on disk
    at_once: bool = False  # its write waits for no company, though nobody waits for it


class Store:
    def __init__(self, directory: Path, state: State, generation: int = 0) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME
        self.state = state
        self.ledger = Ledger.from_state(state.channels)
        self._encoder = Encoder()
        # The generation of the journal being appended to; the snapshot on disk names it.
        self.generation = generation
        self._journal: Journal | None = None  # None until the first snapshot of this store
        self.journal_bound = JOURNAL_BOUND  # the least journal that ends in a snapshot
        self.journal_per_snapshot = JOURNAL_PER_SNAPSHOT
        self._snapshot_bytes = 0  # the last snapshot's size
        self._inbox: Mailbox[_Change] = Mailbox()
        self._awaited = trio.Event()  # set when the inbox holds a change someone waits for, or `at_once`
        self.writes = 0
        self.commits_in_thread = False  # set by a slow commit (SLOW_COMMIT_S)
        self.may_return_to_loop = True  # until a commit stalls (STALL_S)
        self._quick_in_a_row = 0  # commits in a worker thread since the last slow one
        self._quick_to_return = QUICK_COMMITS_TO_RETURN
        self.refusals = 0  # writes the disk refused, over this store's life
        self.refusing = False  # the disk refused the last try of the write under way
        # Told when the disk starts refusing the state (why, in a few words), and when it
        # takes it again (None): the desk tells the people, whose prompts wait meanwhile.
        self.on_refusing: Callable[[str | None], None] = lambda _why: None
        self._snapshot_after = 0.0  # trio time: no periodic snapshot before (one failed)
        # Told of each handled mark once it is on disk (a front end may confirm then).
        self.on_durable_handled: Callable[[str, str], None] = lambda _channel_id, _post_id: None

    @classmethod
    def open(cls, directory: Path) -> Store:
        """The store of `directory`, starting from a fresh snapshot and an empty journal:
        the file a person reads is whole again, and no append follows a torn line."""
        try:
            directory.mkdir(STATE_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateDirUnwritable.because(directory, exc) from exc
        try:
            # Files another user left there (a `sudo -E` run) refuse to be read: one sentence too.
            on_disk = load_state_on_disk(directory)
        except OSError as exc:
            raise StateDirUnwritable.because(directory, exc, reading=True) from exc
        store = cls(directory, on_disk.state, on_disk.generation)
        try:
            store.snapshot(journal_aside=on_disk.journal_left_damaged)
        except OSError as exc:
            raise StateDirUnwritable.because(directory, exc) from exc
        return store

    # --- what others call ------------------------------------------------------

    async def save(self, record: SessionRecord, *, handled: tuple[str, str] | None = None) -> None:
        """Record a session and wait until it is durable. With `handled` (channel id, post
        id), that post's handled mark is in the same write: both are on disk, or neither."""
        done = trio.Event()
        self._put(_Change(record=record, handled=handled, done=done))
        await done.wait()

    def save_soon(self, record: SessionRecord, *, at_once: bool = False) -> None:
        """Record a session; durable within `SOON_S` (`at_once`: with the next write, which
        starts now) and a write, nobody waits."""
        self._put(_Change(record=record, at_once=at_once))

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
        if change.done is not None or change.at_once:
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
            line = self._apply(batch)
            await self._until_durable(line, waiters=sum(change.done is not None for change in batch))
            self.writes += 1
            for change in batch:
                if change.handled is not None:
                    self.on_durable_handled(*change.handled)
                if change.done is not None:
                    change.done.set()
            if self._snapshot_due() and trio.current_time() >= self._snapshot_after:
                # After the acks: nobody waits for this write, only the next batch does.
                try:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(self.snapshot)
                except OSError as exc:  # see `snapshot`: the journal goes on, or a whole snapshot
                    self._snapshot_after = trio.current_time() + SNAPSHOT_RETRY_S
                    goes_on = ("the journal goes on, and a snapshot is tried again later"
                               if self._journal is not None else "the next write is a whole snapshot")
                    log.error("could not write a snapshot of the state to %s (%s): %s",
                              self.path, reason(exc), goes_on)

    def _snapshot_due(self) -> bool:
        """The journal is long enough to be folded into a snapshot (`JOURNAL_PER_SNAPSHOT`)."""
        if self._journal is None:
            return False
        return self._journal.size >= max(self.journal_bound, self.journal_per_snapshot * self._snapshot_bytes)

    async def _until_durable(self, line: bytes, *, waiters: int) -> None:
        """A batch on disk: its line appended to the journal, or (no journal: the store's
        first write, or a snapshot whose journal could not be started or whose folder's
        fsync failed; or a journal with a cut line it could not take back) a whole
        snapshot. Tried again while the disk refuses it."""

        async def write() -> None:
            # Shielded: a write that started must finish, or the acks would lie.
            with trio.CancelScope(shield=True):
                if self._journal is None or self._journal.torn:
                    await trio.to_thread.run_sync(self.snapshot)
                else:
                    await self._commit(self._journal, line, waiters)

        await until_written(write, self.directory, "prompts", on_refused=self._refused)
        if self.refusing:
            self.refusing = False
            self.on_refusing(None)

    def _refused(self, exc: OSError) -> None:
        self.refusals += 1
        if not self.refusing:
            self.refusing = True
            self.on_refusing(reason(exc))

    async def _commit(self, journal_: Journal, line: bytes, waiters: int) -> None:
        # See the module's docstring: one waiter, on the loop; several, in a worker thread.
        if self.commits_in_thread or waiters > 1:
            took = await trio.to_thread.run_sync(_timed_append, journal_, line)
            if self.commits_in_thread:
                self._judge_in_thread(took)
            elif took > STALL_S:  # the next commit one task waits for must not meet it on the loop
                self._to_thread(took)
            return
        took = _timed_append(journal_, line)  # on the loop: see SLOW_COMMIT_S
        if took > SLOW_COMMIT_S:
            self._to_thread(took)

    def _to_thread(self, took: float) -> None:
        self.commits_in_thread = True
        self._quick_in_a_row = 0
        self.may_return_to_loop = self.may_return_to_loop and took <= STALL_S
        until = f"until {self._quick_to_return} in a row are quick" if self.may_return_to_loop else "from now on"
        log.warning("a write to %s took %.0f ms: the disk is slow, so its writes go through a "
                    "worker thread %s", JOURNAL_NAME, took * 1000, until)

    def _judge_in_thread(self, took: float) -> None:
        self._quick_in_a_row = 0 if took > SLOW_COMMIT_S else self._quick_in_a_row + 1
        if took > STALL_S and self.may_return_to_loop:
            self.may_return_to_loop = False
            log.warning("a write to %s took %.0f ms: the disk stalls, so its writes stay in a worker "
                        "thread from now on", JOURNAL_NAME, took * 1000)
        if self.may_return_to_loop and self._quick_in_a_row >= self._quick_to_return:
            self.commits_in_thread = False
            log.info("the last %d writes to %s were quick: they are made on the event loop again",
                     self._quick_in_a_row, JOURNAL_NAME)
            self._quick_to_return *= 2

    def _apply(self, batch: list[_Change]) -> bytes:
        """Apply a batch in memory; returns its journal line."""
        sessions = dict(self.state.sessions)
        records: dict[str, SessionRecord] = {}
        handled: dict[str, dict[str, int]] = {}
        for change in batch:
            if change.record is not None:
                sessions[change.record.id] = records[change.record.id] = change.record
            if change.handled is not None:
                channel_id, post_id = change.handled
                created = self.ledger.done(channel_id, post_id)
                if created is not None:
                    handled.setdefault(channel_id, {})[post_id] = created
        self.state = State(sessions=sessions, channels=self.ledger.snapshot())
        entry = journal.entry_of(self.generation, records, handled, self.state.channels)
        return journal.encode_entry(entry, self._encoder)

    def close(self) -> None:
        """Let go of the journal (the actor is done; a later `open` starts afresh)."""
        if self._journal is not None:
            os.close(self._journal.fd)
            self._journal = None

    def snapshot(self, *, journal_aside: bool = False) -> None:
        """Write the whole state as the snapshot of a new generation, then start its
        journal (`journal_aside`: keep the old one as damaged, rather than empty it).
        Blocking: the actor runs it in a worker thread (or `open`, before any)."""
        generation = self.generation + 1
        raw = self._encoder.encode(self.state, generation)
        self._snapshot_bytes = len(raw)
        try:
            write_atomically(self.directory, raw)
        except durable.ReplacedNotDurable:
            # The new snapshot is in place: a start would skip the old journal's lines, so
            # none may be appended there; the next commit writes a whole snapshot instead.
            self.close()
            self.generation = generation
            raise
        # From here the old journal is stale (its lines are in the snapshot) until reset.
        self.close()
        if journal_aside:  # only now: the lines used from it are in the snapshot
            set_aside(self.directory, JOURNAL_NAME)
        self._journal = reset_journal(self.directory)
        self.generation = generation


class StateDirInUse(Exception):
    """Another supervisor is running on this state directory: one sentence for the person."""


class StateDirUnwritable(Exception):
    """The state directory refuses to be read or written at start (full, read-only, not ours):
    one sentence for the person. (Once serving, a refused write is tried again instead.)"""

    @classmethod
    def because(cls, directory: Path, exc: OSError, *, reading: bool = False) -> StateDirUnwritable:
        """`reading`: the state on disk could not be read (or a damaged file set aside)."""
        access = "read and write" if reading else "write"
        fix = {errno.ENOSPC: "make room there", errno.EDQUOT: "make room there",
               errno.EACCES: f"let the supervisor's user {access} there",
               errno.EPERM: f"let the supervisor's user {access} there",
               errno.EROFS: "mount it writable"}.get(exc.errno or 0, "mend its disk or permissions")
        what = f"read the state in {exc.filename or directory}" if reading else f"write the state to {directory}"
        return cls(f"cannot {what} ({reason(exc)}): {fix}, or set state.dir elsewhere, and start again")


@contextlib.contextmanager
def held(directory: Path) -> Iterator[None]:
    """This process's hold on `directory` while it serves; StateDirInUse if another has it.
    An flock: the kernel lets go when the holder ends, even by SIGKILL, so it never goes
    stale."""
    try:
        directory.mkdir(STATE_DIR_MODE, parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateDirUnwritable.because(directory, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            raise StateDirInUse(
                f"{directory} is in use by another running supervisor (pid {holder}): stop it "
                "first, or give this one a state.dir of its own"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            raise StateDirUnwritable.because(directory, exc) from exc
        yield
    finally:
        os.close(fd)  # and with it the hold


@attrs.define
class Journal:
    """The open journal: appended to by one thread at a time (the actor's write)."""

    fd: int
    size: int = 0  # bytes appended since the reset
    torn: bool = False  # a cut line could not be taken back: append nothing more to it


def reset_journal(directory: Path) -> Journal:
    """An empty journal, durably so: a crash after this never finds the old lines."""
    path = directory / JOURNAL_NAME
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_DSYNC, 0o600)
    try:
        os.fsync(fd)
        if created:  # its name is durable too (once: later resets keep the same file)
            durable.fsync_directory(directory)
    except BaseException:
        os.close(fd)
        raise
    return Journal(fd)


def append_line(journal_: Journal, line: bytes) -> None:
    """One journal line, durable on return: one write (O_APPEND: never interleaved, never
    over an earlier line; O_DSYNC: it returns once the line is on disk, as a write and an
    fdatasync would). One system call, not two: one wait for the disk, and (when it runs
    in a worker thread) one wait for the GIL after it, before the mark is acknowledged."""
    try:
        written = os.write(journal_.fd, line)
        if written != len(line):  # a full disk: the line is cut
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {written} of {len(line)} bytes written")
    except OSError:
        # Nothing may follow a cut line (a replay stops at a damaged line before the last):
        # take back whatever part of it got in, so the journal ends where it did.
        try:
            os.ftruncate(journal_.fd, journal_.size)
        except OSError:
            journal_.torn = True  # the store writes a snapshot instead, and a new journal
        raise
    journal_.size += written


def _timed_append(journal_: Journal, line: bytes) -> float:
    """`append_line`; how long it took, in seconds."""
    started = time.perf_counter()
    append_line(journal_, line)
    return time.perf_counter() - started


def write_atomically(directory: Path, raw: bytes) -> None:
    """Replace sessions.json with `raw`, keeping the old copy as .prev; durable on return.
    A crash at any point leaves sessions.json whole (old or new), never missing."""
    durable.write_atomically(directory / FILE_NAME, raw, keep_previous=True)


@attrs.frozen
class StateOnDisk:
    """What the state directory holds: the state to use, and what is wrong there."""

    state: State
    found: bool  # a good copy was found (else `state` is empty)
    damaged: tuple[str, ...]  # names of the files that do not decode (or hold lines not applied)
    problems: tuple[str, ...]  # one sentence each, for the log or the terminal
    generation: int = 0  # of the snapshot used: the journal lines that applied on top of it
    journal_used: bool = False  # some of the journal's lines are in `state`

    @property
    def journal_left_damaged(self) -> bool:
        """A damaged journal that `load_state_on_disk` leaves in place: lines of it are in
        `state`, so it goes aside only once a new snapshot holds them (`Store.open`)."""
        return JOURNAL_NAME in self.damaged and self.journal_used


def read_state(directory: Path) -> StateOnDisk:
    """The last good state: sessions.json (else its .prev copy) with the lines of the
    journal that follow it. Reads only: nothing on disk changes, whatever it finds."""
    damaged: list[str] = []
    problems: list[str] = []
    # The journal first: while `run` writes, a snapshot read after it is of the journal's
    # generation or newer (holding its lines), never older than its lines.
    try:
        lines: bytes | None = (directory / JOURNAL_NAME).read_bytes()
    except FileNotFoundError:
        lines = None
    for name in (FILE_NAME, f"{FILE_NAME}.prev"):
        path = directory / name
        try:
            state, generation = decode_snapshot(path.read_bytes())
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
        replayed = None
        if lines is not None:
            replayed = _replay_journal(directory / JOURNAL_NAME, lines, state, generation,
                                       fallback=bool(problems), damaged=damaged, problems=problems)
            state = replayed.state
        return StateOnDisk(state, True, tuple(damaged), tuple(problems), generation,
                           journal_used=bool(replayed and replayed.applied))
    if lines:  # its lines have nothing to apply to: the last copy of them, kept
        damaged.append(JOURNAL_NAME)
        problems.append(f"journal {directory / JOURNAL_NAME}: no good snapshot to apply its "
                        "changes to, so they are not used")
    return StateOnDisk(State(), False, tuple(damaged), tuple(problems))


def _replay_journal(path: Path, raw: bytes, state: State, generation: int, *, fallback: bool,
                    damaged: list[str], problems: list[str]) -> journal.Replay:
    replayed = journal.replay(state, generation, raw)
    if replayed.torn:  # a crash mid-append: that batch was never acknowledged
        log.info("ignored the last line of %s, cut short by a crash while it was written", path)
    if replayed.damaged_line:
        damaged.append(JOURNAL_NAME)
        problems.append(
            f"journal {path} is damaged at line {replayed.damaged_line} ({replayed.problem}): "
            f"only the {replayed.applied} changes before it are used"
        )
    elif fallback and replayed.other:
        # Written after the damaged snapshot: they cannot apply to an older one.
        damaged.append(JOURNAL_NAME)
        problems.append(f"journal {path}: {replayed.other} changes made after the damaged copy are not used")
    elif replayed.newer:
        # Written after a snapshot newer than this one (an older copy put back by hand?):
        # no start would ever apply them, and the next write would empty the journal.
        damaged.append(JOURNAL_NAME)
        problems.append(f"journal {path}: {replayed.newer} changes made after a newer state than "
                        f"{path.with_name(FILE_NAME).name} (an older copy put back?) are not used")
    return replayed


def load_state_on_disk(directory: Path) -> StateOnDisk:
    """The last good state, for `run`. A damaged file is kept aside under a new name, never
    lost: the next write would otherwise replace the evidence. A damaged journal whose
    lines are partly used stays until a snapshot holds them (`journal_left_damaged`); one
    with none used goes now, so that its lines can never meet a new snapshot of their
    generation."""
    on_disk = read_state(directory)
    for problem in on_disk.problems:
        log.error("%s", problem)
    for name in on_disk.damaged:
        if not (name == JOURNAL_NAME and on_disk.journal_left_damaged):
            set_aside(directory, name)
    if not on_disk.found and (on_disk.damaged or any(directory.glob(f"{FILE_NAME}*.damaged-*"))):
        log.error(
            "STARTING WITH AN EMPTY STATE: no good copy of %s exists; the damaged files are "
            "kept in %s for inspection",
            FILE_NAME,
            directory,
        )
    return on_disk


def set_aside(directory: Path, name: str) -> None:
    """Keep a damaged file under a new name, for a person to look at."""
    aside = directory / f"{name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}"
    os.replace(directory / name, aside)
    log.error("kept the damaged %s as %s", name, aside.name)


def load_state(directory: Path) -> State:
    """The last good state, for `run` (see `load_state_on_disk`)."""
    return load_state_on_disk(directory).state

