"""The agent side, as sessions see it.

An `AgentBackend` knows how to launch one agent process for a session and how to speak
its wire format; sessions only exchange `core.agent_events` with it. Claude Code is the
first backend (`supervisor.agent.claude`); an OpenCode backend would be a second one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import attrs

from supervisor.core.agent_events import AgentCommand, AgentEvent


@attrs.frozen
class AgentLaunch:
    """Everything needed to start (or restart) the agent of one session."""

    session_id: str
    cwd: str
    resume: bool  # continue the stored conversation rather than start it
    model: str = ""
    append_system_prompt: str = ""
    permission_mode: str = "default"
    allowed_tools: tuple[str, ...] = ()  # permission rules allowed without asking (`Bash(npm test)`)
    extra_env: Mapping[str, str] = attrs.field(factory=dict)


class AgentCodec(Protocol):
    def decode(self, line: bytes) -> list[AgentEvent]:
        """Events in one output line; [] for lines that carry nothing we use.
        Raises ValueError for a line that is not a valid frame."""
        ...

    def encode(self, command: AgentCommand) -> bytes:
        """One input line, newline included."""
        ...


class AgentBackend(Protocol):
    name: str
    codec: AgentCodec

    def argv(self, launch: AgentLaunch) -> list[str]: ...

    def env(self, launch: AgentLaunch, base: Mapping[str, str]) -> dict[str, str]: ...
