"""Claude Code as an agent backend: the CLI's argv and environment, and its codec.

The conversation id is ours (`--session-id`, then `--resume`), so a process is open at
once. What only Claude Code says is read here, never in the core: a `--resume` of a
conversation the CLI never saved ends with "No conversation found" (on stderr, or in the
error result), which becomes the port's `ConversationMissing`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from supervisor.agent import AgentCodec, AgentConversation, AgentLaunch, LineConversation
from supervisor.agent.claude.codec import ClaudeCodec
from supervisor.core.agent_events import AgentEvent, ConversationMissing, TurnEnded

# The CLI speaks stream-json both ways, asks permissions over stdio and streams text as
# partial messages, so answers can be shown while they are written.
PROTOCOL_FLAGS = (
    "--output-format",
    "stream-json",
    "--input-format",
    "stream-json",
    "--verbose",
    "--permission-prompt-tool",
    "stdio",
    "--include-partial-messages",
)
# Variables that would make a child think it runs nested inside another Claude Code.
SCRUBBED_ENV = ("CLAUDECODE",)
# What the CLI says when `--resume` names a conversation it never saved.
NO_CONVERSATION = "No conversation found"


class ClaudeConversation(LineConversation):
    """Open at once; reports a missing conversation when a resume finds none."""

    def __init__(self, codec: AgentCodec, launch: AgentLaunch) -> None:
        super().__init__(codec, launch)
        self._missing_said = False

    def receive_line(self, line: bytes) -> list[AgentEvent]:
        events = super().receive_line(line)
        for event in events:
            if isinstance(event, TurnEnded) and any(NO_CONVERSATION in e for e in event.errors):
                return [*self._missing(event.errors[0]), *events]
        return events

    def receive_stderr(self, line: str) -> list[AgentEvent]:
        return self._missing(line) if NO_CONVERSATION in line else []

    def _missing(self, detail: str) -> list[AgentEvent]:
        if not self.launch.resume or self._missing_said:
            return []
        self._missing_said = True
        return [ConversationMissing(detail.strip())]


class ClaudeBackend:
    name = "claude"
    start_gate = None  # the CLI's starts do not trip over each other

    def __init__(self, command: Sequence[str], args: Sequence[str] = ()) -> None:
        self.command = list(command)
        self.args = list(args)
        self.codec: AgentCodec = ClaudeCodec()

    def argv(self, launch: AgentLaunch) -> list[str]:
        argv = [*self.command, *self.args, *PROTOCOL_FLAGS]
        argv += ["--permission-mode", launch.permission_mode]
        if launch.allowed_tools:
            # One value, comma-joined, as the SDKs send it; the CLI splits it outside parentheses.
            argv += ["--allowedTools", ",".join(launch.allowed_tools)]
        # A conversation started elsewhere (`!new ... resume=ID`) keeps its own id. One word
        # with `=`, so an id cannot be read as a flag of its own (PROTOCOL §1).
        flag = "--resume" if launch.resume else "--session-id"
        argv.append(f"{flag}={launch.agent_session_id or launch.session_id}")
        if launch.model:
            argv += ["--model", launch.model]
        if launch.append_system_prompt:
            argv += ["--append-system-prompt", launch.append_system_prompt]
        return argv

    def conversation(self, launch: AgentLaunch) -> AgentConversation:
        return ClaudeConversation(self.codec, launch)

    def env(self, launch: AgentLaunch, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k not in SCRUBBED_ENV}
        env.update(launch.extra_env)
        env["PWD"] = launch.cwd
        return env
