"""The agent port: what a session needs from an agent, whatever protocol it speaks.

An `AgentBackend` knows how to launch one agent process for a session (argv,
environment) and makes, per process, an `AgentConversation`: the sans-IO protocol state of
that process. The trio shell (`runtime.agent_process`) only moves bytes: it feeds the
conversation the agent's stdout and stderr lines, hands it the session's commands, and
writes whatever bytes it produces. Sessions exchange only `core.agent_events` with it.

A conversation may need a handshake before its first prompt (ACP: `initialize`, then
`session/new` or `session/resume`), may answer the agent's own requests itself, and says
when it takes prompts with `ConversationOpened` (carrying the agent's id for the
conversation, which the session records before its first prompt). Claude Code is open at
once: its id is ours, given on argv.

Backends: `supervisor.agent.claude` (stream-json), `supervisor.agent.acp` (the Agent
Client Protocol: OpenCode, Gemini CLI, ...). `supervisor.agent.registry` builds them from
the configuration.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol

import attrs

from supervisor.core.agent_events import AgentCommand, AgentEvent, ConversationOpened
from supervisor.logs import ThrottledLog

log = logging.getLogger("supervisor.agent")


@attrs.frozen
class AgentLaunch:
    """Everything needed to start (or restart) the agent of one session."""

    session_id: str  # the supervisor's id of the session (Claude Code: its conversation id too)
    cwd: str
    resume: bool  # continue the stored conversation rather than start it
    model: str = ""
    append_system_prompt: str = ""
    permission_mode: str = "default"
    allowed_tools: tuple[str, ...] = ()  # rules allowed without asking, in the agent side's notation
    extra_env: Mapping[str, str] = attrs.field(factory=dict)
    agent_session_id: str = ""  # the conversation id the agent chose, once known ("" = none yet)


class AgentCodec(Protocol):
    def decode(self, line: bytes) -> list[AgentEvent]:
        """Events in one output line; [] for lines that carry nothing we use.
        Raises ValueError for a line that is not a valid frame."""
        ...

    def encode(self, command: AgentCommand) -> bytes:
        """One input line, newline included."""
        ...


class AgentConversation(Protocol):
    """One agent process's protocol state (sans-IO). Never raises on what the agent sends."""

    def start(self) -> list[AgentEvent]:
        """The process is up: the first events (and bytes, for a handshake)."""
        ...

    def receive_line(self, line: bytes) -> list[AgentEvent]: ...

    def receive_stderr(self, line: str) -> list[AgentEvent]: ...

    def send(self, command: AgentCommand) -> list[AgentEvent]:
        """A session's command; the events it causes at once (e.g. requests it withdraws)."""
        ...

    def data_to_send(self) -> bytes: ...

    def close(self) -> None:
        """The agent's output ended (what it still counts, e.g. log lines left out, is said)."""
        ...


class StartGuard(Protocol):
    """Lets agents start one at a time where concurrent first starts fail (OpenCode's
    database set-up): entered before the spawn, left once the conversation is open (or
    the start failed), by the same task."""

    async def enter(self) -> None: ...

    def leave(self, *, ok: bool) -> None: ...


class AgentBackend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def start_gate(self) -> StartGuard | None: ...

    def argv(self, launch: AgentLaunch) -> list[str]: ...

    def env(self, launch: AgentLaunch, base: Mapping[str, str]) -> dict[str, str]: ...

    def conversation(self, launch: AgentLaunch) -> AgentConversation: ...


class LineConversation:
    """A conversation over a stateless line codec: open at once, one line per command."""

    def __init__(self, codec: AgentCodec, launch: AgentLaunch) -> None:
        self.codec = codec
        self.launch = launch
        self._out = bytearray()
        # An agent may print plain text on stdout in a loop: a flood must not fill the log.
        self._malformed = ThrottledLog(log, logging.WARNING, f"the agent of session {launch.session_id}", "malformed lines")

    def start(self) -> list[AgentEvent]:
        conversation = self.launch.agent_session_id or self.launch.session_id
        return [ConversationOpened(conversation, resumed=self.launch.resume)]

    def receive_line(self, line: bytes) -> list[AgentEvent]:
        try:
            return self.codec.decode(line)
        except ValueError as exc:
            self._malformed.record(f"a malformed line: {exc}", time.monotonic())
            return []

    def receive_stderr(self, line: str) -> list[AgentEvent]:
        return []

    def send(self, command: AgentCommand) -> list[AgentEvent]:
        self._out += self.codec.encode(command)
        return []

    def data_to_send(self) -> bytes:
        data, self._out = bytes(self._out), bytearray()
        return data

    def close(self) -> None:
        self._malformed.flush()
