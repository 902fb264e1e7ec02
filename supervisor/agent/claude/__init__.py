"""Claude Code as an agent backend: the CLI's argv and environment, and its codec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from supervisor.agent import AgentCodec, AgentLaunch
from supervisor.agent.claude.codec import ClaudeCodec

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


class ClaudeBackend:
    name = "claude"

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
        argv += ["--resume" if launch.resume else "--session-id", launch.session_id]
        if launch.model:
            argv += ["--model", launch.model]
        if launch.append_system_prompt:
            argv += ["--append-system-prompt", launch.append_system_prompt]
        return argv

    def env(self, launch: AgentLaunch, base: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in base.items() if k not in SCRUBBED_ENV}
        env.update(launch.extra_env)
        env["PWD"] = launch.cwd
        return env
