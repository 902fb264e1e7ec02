"""`supervisor check` for the default Claude Code agent: `<agent.command> --version` runs.

The `agent_*` result functions are pure and say plainly what is wrong: a missing
`default_cwd`, a program not on PATH or not executable, a non-zero exit, a hang.
`agent_check` runs the program; its caller bounds it (`checks.within`).

It must never leave a child process behind: the program runs in its own process group,
which is killed whole, and is always waited for, whether it answered, failed or hung.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

import trio

from supervisor.checks import CheckResult, clipped
from supervisor.runtime.agent_process import kill_group

if TYPE_CHECKING:
    from supervisor.config import AgentConfig

__all__ = ["agent_check", "agent_hung_result", "agent_result", "agent_start_failed", "agent_version_argv"]

_MAX_OUTPUT: Final = 64 * 1024  # of `--version` output kept; a version is one short line


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
    version = _first_line(stdout) or "no version printed"
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


async def _collect(stream: trio.abc.ReceiveStream, sink: bytearray) -> None:
    # Read to the end (a full pipe would block the program), keep only the start.
    while chunk := await stream.receive_some(65536):
        if len(sink) < _MAX_OUTPUT:
            sink += chunk[: _MAX_OUTPUT - len(sink)]


async def agent_check(agent: AgentConfig, env: Mapping[str, str]) -> CheckResult:
    """`<agent.command> --version` in its own process group. Cancelling this (the caller's
    time limit) kills the whole group; so does a normal end, for anything it left behind."""
    argv = agent_version_argv(agent)
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=agent.default_cwd,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as error:
        return agent_start_failed(agent, error, env.get("PATH", ""))
    stdout, stderr = bytearray(), bytearray()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, proc.stdout, stdout)
            nursery.start_soon(_collect, proc.stderr, stderr)
        code = await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            kill_group(proc.pid, signal.SIGKILL)
            if proc.returncode is None:
                proc.kill()  # it left our group (setsid): the group signal missed it
            await proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()
    return agent_result(argv, code, bytes(stdout), bytes(stderr))
