"""One running agent process: launch, line framing, teardown. The trio shell only.

Owns the child: its pipes, its process group, its exit, and the backend's sans-IO
conversation for it (`agent.AgentConversation`), which it feeds every line and whose bytes
it writes. The caller reads events from `events()` (one task), sends commands with
`send()` (serialised by a lock, with whatever the conversation answers by itself), runs
`watch_exit()` beside them, and leaves the `async with` (or calls `end()` once the output
ended: an agent with its stdout closed answers nothing, even if it lives on; it is given
the grace to exit by itself first, so its own exit status is the one reported) to tear the
process down: close stdin, SIGTERM the group, grace, SIGKILL, wait (for `KILLED_EXIT_S`
at most: one stuck in the kernel must not hold a stop for good); then SIGKILL what it
spawned that left its group, found by the marker of its own in their environment
(`reaper.end_marked`).
Decides nothing about what the events mean. Every agent process, a session's or a probe's
(the ACP driver's too, and a `--version`, `run_to_end`), is started and ended by `spawned`,
so each has all of that.

The grace is an `AgentGrace`, shared by every agent: the configured one, until the
supervisor stops; from then on cut to what is left before the stop's deadline, so that all
agents (each ended by its own session task, so in parallel) are gone in time, whatever
`shutdown_grace_s` says and however many there are.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import math
import os
import signal
import struct
import subprocess
import termios
import uuid
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager, contextmanager

import trio

from supervisor.agent import AgentBackend, AgentConversation, AgentLaunch, StartGuard
from supervisor.core.agent_events import AgentCommand, AgentEvent, ConversationOpened
from supervisor.logs import ThrottledLog
from supervisor.runtime.reaper import end_marked

log = logging.getLogger("supervisor.agent")

MAX_LINE = 64 * 1024 * 1024  # a line longer than this is not a frame we can use
KEPT_OUTPUT = 64 * 1024  # of a command run to its end (`--version`): one short line is wanted
CLOSE_STDIN_S = 1.0  # at most this long to close an agent's stdin
VOLUNTARY_EXIT_S = 1.0  # an idle CLI exits by itself ~50 ms after its stdin closes
# One whose stdout ended is most likely exiting (flushing, saving): a few seconds of the
# grace are its own before the SIGTERM, so the status reported is its own, not ours.
EXITING_S = 5.0
# A SIGKILLed process is gone within milliseconds, unless it is stuck in the kernel
# (uninterruptible sleep: a hung NFS or FUSE mount), which may last for good.
KILLED_EXIT_S = 1.0
# Once the agent is gone and its descendants are ended, its stdout closes at once; one that
# escaped them (it dropped its environment) and holds the pipe has it closed this much later.
OUTPUT_AFTER_EXIT_S = 5.0
AGENT_ID_VAR = "SUPERVISOR_AGENT"  # an id of each agent's own, inherited by all it spawns
STDERR_LINE_BYTES = 4096  # of each stderr line, kept and logged
STDERR_LOGGED_PER_WINDOW = 50  # an agent's stderr lines logged in each window, the rest counted
STDERR_WINDOW_S = 10.0


class AgentGrace:
    """How long an ending agent may take before its group is SIGKILLed.

    Invariant: every teardown in progress runs in one of `_scopes`, whose deadline is never
    later than `deadline`; so `stop_by` also cuts the teardowns that began before it.
    """

    def __init__(self, configured_s: float) -> None:
        self.configured_s = configured_s  # between SIGTERM and SIGKILL, while not stopping
        self.deadline = math.inf  # trio time by which every agent must be gone
        self._scopes: set[trio.CancelScope] = set()

    def stop_by(self, deadline: float) -> None:
        """The supervisor stops: every agent, ending now or later, is gone by `deadline`."""
        self.deadline = min(self.deadline, deadline)
        for scope in self._scopes:
            scope.deadline = min(scope.deadline, self.deadline)

    @contextmanager
    def bounded(self) -> Iterator[None]:
        """The polite part of one teardown: cut short at the deadline (SIGKILL follows)."""
        scope = trio.CancelScope(deadline=self.deadline)
        self._scopes.add(scope)
        try:
            with scope:
                yield
        finally:
            self._scopes.discard(scope)


class AgentProcess:
    """Invariant: the conversation's bytes are written in the order it produced them (all
    writes hold `_send_lock` from producing them to writing them)."""

    def __init__(self, backend: AgentBackend, child: AgentChild, conversation: AgentConversation) -> None:
        self.backend = backend
        self.child = child  # its start gate is held until the conversation is open
        self.proc = child.proc
        self.pid = child.proc.pid
        self.conversation = conversation
        self.opened = False  # the conversation said ConversationOpened: it takes prompts
        # When a line was last read from its stdout, whether or not it meant an event: the
        # stall clock's (one timestamp a read, so the hot path pays nothing more).
        self.last_line_at = trio.current_time()
        self.output_ended = trio.Event()  # its stdout reached its end (or was closed)
        self.stderr_tail: deque[str] = deque(maxlen=20)
        # What the agent said on stderr that means something (the caller hands it on at exit).
        self.stderr_events: list[AgentEvent] = []
        # A flood (a debug mode, a warning in a loop) is logged in part, and counted.
        self._stderr_log = ThrottledLog(log, logging.INFO, f"agent {self.pid}", "stderr lines",
                                        per_window=STDERR_LOGGED_PER_WINDOW, window_s=STDERR_WINDOW_S)
        self._send_lock = trio.StrictFIFOLock()

    async def send(self, command: AgentCommand) -> list[AgentEvent]:
        """Send a command; returns the events it causes at once (e.g. withdrawn requests)."""
        async with self._sending():
            events = self.conversation.send(command)
            await self._write(self.conversation.data_to_send())
        return events

    @asynccontextmanager
    async def _sending(self) -> AsyncIterator[None]:
        """The right to write to the agent, taken without a pass of the event loop when
        nobody holds it (trio's `Lock.acquire` yields first even then)."""
        try:
            self._send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self._send_lock.acquire()
        try:
            yield
        finally:
            self._send_lock.release()

    async def _write(self, data: bytes) -> None:
        """Straight into the pipe while it has room (a prompt nearly always fits), so the
        prompt reaches its agent before the event loop runs anything else (`send_all`
        yields first); what does not fit goes through `send_all`. The lock keeps every
        other writer out meanwhile."""
        if not data:
            return
        stdin = self.proc.stdin
        assert isinstance(stdin, trio.lowlevel.FdStream)  # a pipe's end, on every POSIX system
        try:
            sent = os.write(stdin.fileno(), data)
        except BlockingIOError:
            sent = 0
        except BrokenPipeError:
            raise trio.BrokenResourceError("the agent closed its stdin") from None
        except OSError:  # closed by us (EBADF) or the like: send_all says which
            sent = 0
        if sent < len(data):
            await stdin.send_all(data[sent:])

    async def _answer(self, step: Callable[[], list[AgentEvent]]) -> list[AgentEvent]:
        async with self._sending():
            events = step()
            try:
                await self._write(self.conversation.data_to_send())
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.info("agent %s: stdin closed; its exit will be reported", self.pid)
        if any(isinstance(e, ConversationOpened) for e in events):
            self.opened = True
            self.leave_gate(ok=True)
        return events

    def leave_gate(self, *, ok: bool) -> None:
        self.child.leave_gate(ok=ok)

    async def events(self) -> AsyncGenerator[list[AgentEvent], None]:
        """The events of the conversation's start, then those the agent prints, a batch
        per read, until its stdout closes. A batch keeps what arrived together together:
        an instant answer is shown whole, not as a first fragment plus an edit."""
        assert self.proc.stdout is not None
        first = await self._answer(self.conversation.start)
        if first:
            yield first
        # Closed at once when the reader stops early (cancelled while writing an answer).
        try:
            async with aclosing(line_batches(self.proc.stdout)) as batches:
                async for lines in batches:
                    self.last_line_at = trio.current_time()
                    batch = await self._answer(functools.partial(self._receive, lines))
                    if batch:
                        yield batch
        finally:
            self.conversation.close()
            self.output_ended.set()

    def _receive(self, lines: list[bytes]) -> list[AgentEvent]:
        return [event for line in lines for event in self.conversation.receive_line(line)]

    async def drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        try:
            async for line in lines_of(self.proc.stderr):
                text = line[:STDERR_LINE_BYTES].decode(errors="replace").rstrip()
                if len(line) > STDERR_LINE_BYTES:  # a minified bundle's source, say: not for a log
                    text += f" … ({len(line) - STDERR_LINE_BYTES} more bytes)"
                if text:
                    self.stderr_tail.append(text)
                    self.stderr_events += self.conversation.receive_stderr(text)
                    self._stderr_log.record(text, trio.current_time())
        finally:
            self._stderr_log.flush()

    async def watch_exit(self) -> None:
        """The agent's exit ends its output even when a descendant still holds its stdout
        (whose end would otherwise wait for that descendant's): what is left of its group
        and its descendants is ended, which closes the pipe; if something else still holds
        it, it is closed here once its reader has read all that waits in it (a reader only
        behind is waited for), and the reader sees its end."""
        await self.proc.wait()
        await end_descendants(self.child)
        while self.proc.stdout is not None:
            with trio.move_on_after(OUTPUT_AFTER_EXIT_S):
                await self.output_ended.wait()
            if self.output_ended.is_set():
                return
            if not _unread_bytes(self.proc.stdout):  # else its reader is behind, not stuck
                log.warning("agent %s exited; closing its stdout, which something else still holds", self.pid)
                await self.proc.stdout.aclose()
                return

    async def close_stdin(self) -> None:
        await close_stdin(self.proc)

    async def wait(self) -> int:
        return await self.proc.wait()

    async def end(self) -> int | None:
        """End it now that its output ended, as leaving `open_agent` would; its exit status
        (None: it outlived its SIGKILL, see `terminate`).
        It is most likely exiting (flushing, saving): the whole grace is its to exit by
        itself, so the status reported is its own, not that of our SIGTERM."""
        return await self.child.end(exiting=True)


class AgentChild:
    """An agent process as `spawned` started it: in a process group of its own, with a
    marker of its own in its environment, holding its start gate until it is ready.

    Invariant: `gate` is left exactly once, by the task that entered it; `_ended` once the
    teardown ran to its end (the process, its group and what carries its marker are gone,
    but for a process stuck in the kernel past its SIGKILL: named in the log, left behind).
    """

    def __init__(self, proc: trio.Process, marker: bytes, gate: StartGuard | None, grace: AgentGrace) -> None:
        self.proc = proc
        self.marker = marker  # `NAME=value` in the environment of this agent and all it spawns
        self.gate = gate
        self.grace = grace
        self._ended = False

    def leave_gate(self, *, ok: bool) -> None:
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.leave(ok=ok)

    async def end(self, *, exiting: bool = False) -> int | None:
        """End it, as on any teardown (once, however often asked); its exit status, None
        if it outlived its SIGKILL. `exiting`: it is likely on its way out, and may take the
        grace to exit by itself."""
        if not self._ended:
            await terminate(self, self.grace, exiting=exiting)
            self._ended = True
        return self.proc.returncode


def _unread_bytes(stream: trio.abc.ReceiveStream) -> int:
    """What waits in the pipe behind `stream`, not yet read (0 when that cannot be told)."""
    try:
        fd = stream.fileno()  # type: ignore[attr-defined]
        return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]  # type: ignore[no-any-return]
    except (AttributeError, OSError, ValueError):
        return 0


async def line_batches(stream: trio.abc.ReceiveStream) -> AsyncGenerator[list[bytes], None]:
    """The complete lines of each read (a last unterminated line at EOF included)."""
    buffer = bytearray()
    while True:
        try:
            chunk = await stream.receive_some(65536)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            chunk = b""
        if not chunk:
            if buffer:
                yield [bytes(buffer)]
            return
        buffer += chunk
        lines = []
        while (end := buffer.find(b"\n")) >= 0:
            lines.append(bytes(buffer[:end]))
            del buffer[: end + 1]
        if len(buffer) > MAX_LINE:
            log.warning("dropping an agent line longer than %d bytes", MAX_LINE)
            buffer.clear()
        if lines:
            yield lines


async def lines_of(stream: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
    async for lines in line_batches(stream):
        for line in lines:
            yield line


def kill_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a whole process group; False when it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # pgid reused by someone else's process: not ours to kill
        return False


@asynccontextmanager
async def spawned(
    argv: list[str], env: Mapping[str, str], cwd: str, gate: StartGuard | None, grace: float | AgentGrace
) -> AsyncIterator[AgentChild]:
    """How every agent process is started and ended, a session's or a probe's. Started
    once its start gate lets it (the caller leaves the gate once it is ready; else it is
    left here), in its own process group, with a marker of its own in its environment; on
    exit, the whole group is ended, and whatever carries the marker."""
    if gate is not None:
        await gate.enter()
    # Inherited by all it spawns, even by what leaves its group: its teardown finds them.
    marker_id = uuid.uuid4().hex
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**env, AGENT_ID_VAR: marker_id},
            start_new_session=True,  # its own group, so we can end it and all it spawned
        )
    except BaseException:
        if gate is not None:
            gate.leave(ok=False)
        raise
    child = AgentChild(
        proc, f"{AGENT_ID_VAR}={marker_id}".encode(), gate, grace if isinstance(grace, AgentGrace) else AgentGrace(grace)
    )
    try:
        yield child
    finally:
        child.leave_gate(ok=False)
        with trio.CancelScope(shield=True):
            await child.end()


async def run_to_end(argv: list[str], env: Mapping[str, str], cwd: str) -> tuple[int, bytes, bytes]:
    """A short command of an agent's (`--version`), started and ended as every agent
    process is (`spawned`; no start gate: it opens no conversation): its exit status and
    the start of its stdout and stderr. Unbounded: the caller's cancellation bounds it,
    and ends it at once (no grace: it has nothing to save)."""
    stdout, stderr = bytearray(), bytearray()
    async with spawned(argv, env, cwd, None, 0.0) as child:
        assert child.proc.stdin is not None
        await child.proc.stdin.aclose()  # it reads nothing: an end of input, as /dev/null gives
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_keep_start, child.proc.stdout, stdout)
            nursery.start_soon(_keep_start, child.proc.stderr, stderr)
        code = await child.proc.wait()
    return code, bytes(stdout), bytes(stderr)


async def _keep_start(stream: trio.abc.ReceiveStream | None, sink: bytearray) -> None:
    """Read to the end (a full pipe would block the command), keep only the start."""
    assert stream is not None
    while chunk := await stream.receive_some(65536):
        sink += chunk[: KEPT_OUTPUT - len(sink)]


@asynccontextmanager
async def open_agent(
    backend: AgentBackend, launch: AgentLaunch, base_env: Mapping[str, str], grace: float | AgentGrace
) -> AsyncIterator[AgentProcess]:
    """Start the agent of a session (`spawned`): its start gate is held until its
    conversation is open."""
    argv, env = backend.argv(launch), backend.env(launch, base_env)
    async with spawned(argv, env, launch.cwd, backend.start_gate, grace) as child:
        agent = AgentProcess(backend, child, backend.conversation(launch))
        log.info("agent started pid=%s session=%s resume=%s", agent.pid, launch.session_id, launch.resume)
        yield agent


class MarkedSweep:
    """Ends the processes carrying the markers of agents being torn down, one /proc scan
    for all those waiting: when the supervisor stops, every agent ends at once, and a scan
    each (a read of every process's environment) would not fit the stop's budget.

    Invariant: while `_sweeping`, one task scans, again until `_waiting` is empty; every
    marker in `_waiting` has its event set by that task once a scan after it came is done.
    """

    def __init__(self) -> None:
        self._waiting: dict[bytes, trio.Event] = {}
        self._sweeping = False

    async def end(self, marker: bytes) -> None:
        done = self._waiting.setdefault(marker, trio.Event())
        if self._sweeping:
            await done.wait()
            return
        self._sweeping = True
        try:
            # Shielded: the teardowns waiting for it must not lose their scan to this task's
            # cancellation (a scan takes milliseconds).
            with trio.CancelScope(shield=True):
                while self._waiting:
                    batch, self._waiting = self._waiting, {}
                    try:
                        killed = await trio.to_thread.run_sync(end_marked, batch.keys())
                    finally:
                        for event in batch.values():
                            event.set()
                    if killed:
                        log.info("killed %d process(es) agents left outside their groups", len(killed))
        finally:
            self._sweeping = False
            for event in self._waiting.values():  # left only if a scan failed: none waits forever
                event.set()
            self._waiting = {}


_sweep = MarkedSweep()


async def end_descendants(child: AgentChild) -> None:
    """SIGKILL what is left of the agent's group, and every process that carries its
    marker: those that left the group (`setsid`, a detached child, a daemon) too."""
    kill_group(child.proc.pid, signal.SIGKILL)
    await _sweep.end(child.marker)


async def close_stdin(proc: trio.Process) -> None:
    if proc.stdin is not None:
        with trio.move_on_after(CLOSE_STDIN_S):
            await proc.stdin.aclose()


async def terminate(child: AgentChild, grace: AgentGrace, *, exiting: bool = False) -> None:
    """close stdin -> SIGTERM the group -> grace -> SIGKILL the group -> wait, for
    `KILLED_EXIT_S` at most. `exiting`: it may take the grace to exit by itself before the
    SIGTERM (at most one grace more than any teardown; a stop's deadline cuts it as the
    rest)."""
    proc = child.proc
    with grace.bounded():
        await close_stdin(proc)
        # An idle CLI exits by itself soon after its stdin closes: give it that chance first.
        own_exit_s = min(grace.configured_s, EXITING_S if exiting else VOLUNTARY_EXIT_S)
        with trio.move_on_after(own_exit_s):
            await proc.wait()
        if proc.returncode is None:
            kill_group(proc.pid, signal.SIGTERM)
            with trio.move_on_after(grace.configured_s):
                await proc.wait()
    kill_group(proc.pid, signal.SIGKILL)
    with trio.move_on_after(KILLED_EXIT_S):
        await proc.wait()
    if proc.returncode is None:
        log.warning("agent %s is still there %g s after its SIGKILL (stuck in the kernel?); going on without it",
                    proc.pid, KILLED_EXIT_S)
    # Even when the leader is gone, children it spawned may linger, in its group or not.
    await end_descendants(child)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            await stream.aclose()
