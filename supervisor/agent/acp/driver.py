"""The trio shell around `AcpClient`: owns one ACP agent process and its stdio.

One task reads stdout and feeds the client; one drains stderr into a short tail; every
write goes through one FIFO lock, in the order the client produced it. Events (from the
agent's lines and from our own commands) come out of one channel, in order. The process is
started and ended as a session's agent is (`runtime.agent_process.spawned`: the backend's
start gate, a process group and a marker of its own; leaving the `async with` closes
stdin, SIGTERMs its group, grace, SIGKILL, and ends what carries its marker).
Decides nothing about what the events mean.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import attrs
import trio

from supervisor.agent.acp.backend import AcpBackend
from supervisor.agent.acp.client import AcpClient
from supervisor.agent.acp.conversation import trouble_log, trouble_text
from supervisor.agent.acp.events import (
    AcpCommand,
    AcpEvent,
    AgentReady,
    HandshakeFailed,
    ProtocolError,
    SessionOpened,
    SessionOpenFailed,
)
from supervisor.runtime.agent_process import AgentChild, lines_of, spawned

log = logging.getLogger("supervisor.agent.acp")

MAX_LINE = 64 * 1024 * 1024


@attrs.frozen
class AgentExited:
    """The agent's stdout closed (it exited or crashed); `stderr_tail` says why, if it can."""

    returncode: int | None
    stderr_tail: tuple[str, ...] = ()


DriverEvent = AcpEvent | AgentExited


class AcpAgent:
    def __init__(
        self, child: AgentChild, client: AcpClient, send: trio.MemorySendChannel[DriverEvent]
    ) -> None:
        self.child = child  # its start gate is held until the caller says it is ready
        self.proc = child.proc
        self.pid = child.proc.pid
        self.client = client
        self.stderr_tail: deque[str] = deque(maxlen=20)
        self._send_events = send
        self._write_lock = trio.StrictFIFOLock()
        self._trouble = trouble_log(f"agent {self.pid}")

    async def do(self, step: Callable[[AcpClient], list[AcpEvent]]) -> list[AcpEvent]:
        """Apply one client command (e.g. `lambda c: c.prompt("hi")`) and write its bytes."""
        events = step(self.client)
        await self._flush(events)
        return events

    async def send(self, command: AcpCommand) -> list[AcpEvent]:
        return await self.do(lambda c: c.send(command))

    async def _flush(self, events: list[AcpEvent]) -> None:
        data = self.client.data_to_send()
        for event in events:
            await self._send_events.send(event)
        if not data:
            return
        async with self._write_lock:
            assert self.proc.stdin is not None
            try:
                await self.proc.stdin.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.warning("agent %s: stdin closed; %d bytes not sent", self.pid, len(data))

    async def read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            async for line in lines_of(self.proc.stdout):
                events = self.client.receive_line(line)
                for event in events:
                    if isinstance(event, ProtocolError):
                        self._trouble.record(trouble_text(event.reason, event.line), trio.current_time())
                await self._flush(events)
        finally:
            self._trouble.flush()  # the last window's count, else never said
        with trio.move_on_after(5):
            await self.proc.wait()
        await self._send_events.send(AgentExited(self.proc.returncode, tuple(self.stderr_tail)))

    async def drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in lines_of(self.proc.stderr):
            text = line.decode(errors="replace").rstrip()
            if text:
                self.stderr_tail.append(text)
                log.debug("agent %s: %s", self.pid, text)


@asynccontextmanager
async def open_acp_agent(
    backend: AcpBackend,
    cwd: str,
    base_env: Mapping[str, str],
    *,
    permission_mode: str = "default",
    grace_s: float = 3.0,
) -> AsyncIterator[tuple[AcpAgent, trio.MemoryReceiveChannel[DriverEvent]]]:
    """Start the agent (through the backend's start gate, which the caller leaves with
    `agent.child.leave_gate(ok=True)` once it is ready; else it is left at the end) and
    send `initialize`.

    Yields the agent and its event channel; the first event is AgentReady or
    HandshakeFailed (or AgentExited, or nothing: bound the wait with a cancel scope).
    """
    send, receive = trio.open_memory_channel[DriverEvent](1000)
    env = backend.env(base_env, permission_mode)
    async with spawned(backend.argv(), env, cwd, backend.gate, grace_s) as child:
        agent = AcpAgent(child, AcpClient(), send)
        log.info("acp agent %s started pid=%s", backend.name, agent.pid)
        try:
            async with send, receive, trio.open_nursery() as nursery:
                nursery.start_soon(agent.read_stdout)
                nursery.start_soon(agent.drain_stderr)
                await agent.do(lambda c: c.initialize())
                try:
                    yield agent, receive
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The caller's own error passed through our nursery: hand it back as itself.
            if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
                raise group.exceptions[0] from None
            raise


class AcpStartError(Exception):
    """The agent could not be brought to an open session; the message says why plainly."""


@asynccontextmanager
async def open_acp_session(
    backend: AcpBackend,
    cwd: str,
    base_env: Mapping[str, str],
    *,
    resume: str = "",
    permission_mode: str = "default",
    grace_s: float = 3.0,
) -> AsyncIterator[tuple[AcpAgent, trio.MemoryReceiveChannel[DriverEvent], SessionOpened]]:
    """Start the agent and open a conversation (new, or `resume` an existing id).

    The backend's start gate is held from spawn until the session is open, so concurrent
    first starts do not trip over OpenCode's database set-up. Raises AcpStartError.
    Bound the wait with a cancel scope: an agent that never answers waits forever.
    """
    agent_started = open_acp_agent(backend, cwd, base_env, permission_mode=permission_mode, grace_s=grace_s)
    async with agent_started as (agent, events):
        opened = await _handshake_and_open(agent, events, cwd, resume)
        agent.child.leave_gate(ok=True)
        yield agent, events, opened


async def _handshake_and_open(
    agent: AcpAgent, events: trio.MemoryReceiveChannel[DriverEvent], cwd: str, resume: str
) -> SessionOpened:
    async for event in events:
        match event:
            case AgentReady():
                break
            case HandshakeFailed(reason=reason):
                raise AcpStartError(reason)
            case AgentExited():
                raise AcpStartError(_exit_message(event))
    if resume:
        await agent.do(lambda c: c.open_session(resume, cwd))
    else:
        await agent.do(lambda c: c.new_session(cwd))
    async for event in events:
        match event:
            case SessionOpened():
                return event
            case SessionOpenFailed(how=how, session_id=sid, message=message):
                if how == "new":
                    raise AcpStartError(f"the agent could not start a conversation: {message}")
                raise AcpStartError(f"no conversation {sid!r} to continue ({message})")
            case AgentExited():
                raise AcpStartError(_exit_message(event))
    raise AcpStartError("the agent's output ended")


def _exit_message(event: AgentExited) -> str:
    last = event.stderr_tail[-1] if event.stderr_tail else "no message"
    return f"the agent exited (code {event.returncode}) before it was ready: {last}"
