"""`supervisor check` for the default Claude Code agent: `<agent.command> --version` runs.

The `agent_*` result functions are pure and say plainly what is wrong: a missing
`default_cwd`, a program not on PATH or not executable, a non-zero exit, a hang.
`agent_check` runs the program; its caller bounds it (`checks.within`).

It must never leave a child process behind: the program is started and ended as every
agent process is (`run_to_end`: its own process group, ended whole, and what it spawned
outside it, found by its marker), whether it answered, failed or hung.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from supervisor.checks import CheckResult, clipped
from supervisor.runtime.agent_process import run_to_end

if TYPE_CHECKING:
    from supervisor.config import AgentConfig

__all__ = ["agent_check", "agent_hung_result", "agent_result", "agent_start_failed", "agent_version_argv"]

def agent_version_argv(agent: AgentConfig) -> list[str]:
    return [*agent.command, "--version"]


def _shown_argv(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def agent_start_failed(agent: AgentConfig, error: OSError, path: str) -> CheckResult:
    program = agent.command[0]
    if isinstance(error, FileNotFoundError) and error.filename == str(agent.default_cwd):
        return CheckResult(
            "agent",
            False,
            f"agent.default_cwd {agent.default_cwd} does not exist",
            "create it or set agent.default_cwd to an existing directory",
        )
    if isinstance(error, FileNotFoundError):
        if "/" in program:
            return CheckResult(
                "agent",
                False,
                f"agent.command: {program} does not exist",
                "install Claude Code or correct the path in agent.command",
            )
        return CheckResult(
            "agent",
            False,
            f"agent.command: {program} was not found on PATH",
            "install Claude Code (npm install -g @anthropic-ai/claude-code) or set "
            f"agent.command to its full path; PATH is {path or '(empty)'}",
        )
    if isinstance(error, PermissionError):
        return CheckResult(
            "agent",
            False,
            f"agent.command: {program} cannot be run: {error.strerror}",
            f"make {program} executable (chmod +x) or point agent.command at the real program",
        )
    return CheckResult(
        "agent",
        False,
        f"agent.command: {program} cannot be started: {error.strerror or error}",
        "check agent.command",
    )


def agent_result(argv: Sequence[str], code: int, stdout: bytes, stderr: bytes) -> CheckResult:
    shown = _shown_argv(argv)
    if code != 0:
        said = _last_line(stderr) or _last_line(stdout)
        why = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return CheckResult(
            "agent",
            False,
            f"`{shown}` {why}" + (f": {said}" if said else ""),
            f"run `{shown}` by hand to see what is wrong",
        )
    version = _first_line(stdout) or _first_line(stderr) or "no version printed"  # some print it there
    return CheckResult("agent", True, f"{version}, from `{shown}`")


def agent_hung_result(argv: Sequence[str], seconds: float) -> CheckResult:
    shown = _shown_argv(argv)
    return CheckResult(
        "agent",
        False,
        f"`{shown}` gave no answer within {seconds:g} s and was killed",
        f"run `{shown}` by hand to see what it waits for (a prompt, a login, the network?)",
    )


def _first_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return clipped(lines[0]) if lines else ""


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return clipped(lines[-1]) if lines else ""


async def agent_check(agent: AgentConfig, env: Mapping[str, str]) -> CheckResult:
    """`<agent.command> --version`, started and ended as every agent process is. Cancelling
    this (the caller's time limit) ends it and all it spawned; so does a normal end."""
    argv = agent_version_argv(agent)
    try:
        code, stdout, stderr = await run_to_end(argv, env, str(agent.default_cwd))
    except OSError as error:
        return agent_start_failed(agent, error, env.get("PATH", ""))
    return agent_result(argv, code, stdout, stderr)
