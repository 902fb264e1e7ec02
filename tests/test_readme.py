"""The README's quick start, followed literally on a fresh clone: two commands, both work.

The commands are read out of README.md (never copied here), run with `bash -c` in a fresh
`git clone` of this repository's HEAD (what CI sees: uncommitted files are not there), with
nothing of this test run's Python environment on PATH or PYTHONPATH. They use pip (and npm,
for the pinned Claude Code CLI) as a fresh machine would; the package caches keep that to
a minute or so.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.harness import world

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
# What the test command runs in the clone instead of the whole suite (which would include
# this very test): one quick module, as `scripts/test` passes extra arguments to pytest.
SMALL_SUITE = "-q tests/test_core_small.py"
# Environment of this test run that a fresh machine would not have.
SCRUBBED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "VIRTUAL_ENV",
    "PYTEST_ADDOPTS",
    "PYTEST_PLUGINS",
    "SUPERVISOR_CONFIG",
)


def strip_comment(line: str) -> str:
    """`line` without its shell comment: a `#` that starts a word outside quotes (bash's rule)."""
    quote = ""
    escaped = False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def quick_start_block() -> list[tuple[str, str]]:
    """(command, comment) for each line of the first code block under `## Quick start`."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Quick start' section"
    block = re.search(r"^```[a-z]*\n(.*?)^```", section.group(1), re.S | re.M)
    assert block, "the Quick start section has no code block"
    lines = []
    for line in block.group(1).splitlines():
        if line.strip():
            command = strip_comment(line)
            lines.append((command, line[len(command) :].strip().lstrip("#").strip()))
    return lines


def quick_start() -> dict[str, str]:
    """{"main": the main job's command, "test": the test suite's command}."""
    lines = quick_start_block()
    found: dict[str, str] = {}
    for command, comment in lines:
        kind = "main" if "main job" in comment else "test" if "test" in comment else comment
        found[kind] = command
    return found


def shell_commands(script: Path) -> list[str]:
    """The command lines of a shell script: comments, the shebang and blank lines dropped."""
    return [
        c for c in (strip_comment(line).strip() for line in script.read_text().splitlines()) if c
    ]


def fresh_clone(where: Path) -> Path:
    if (
        subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, check=False
        ).returncode
        != 0
    ):
        pytest.skip(f"{ROOT} is not a git checkout with a commit: nothing to clone")
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(where)], check=True, timeout=120)
    return where


def fresh_machine_env() -> dict[str, str]:
    """This process's environment without its Python environment (a venv on PATH and such).

    HOME stays: pip's and npm's caches live there, and the leak guard's marker variable
    stays so the conftest still sees every process these commands start.
    """
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    venvs = {str(Path(sys.prefix) / "bin"), str(ROOT / ".venv" / "bin")}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if p not in venvs
    )
    return env


def kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def argv_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def start_in_own_group(command: str, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    """`bash -c COMMAND` in its own process group (a terminal's job), output to `log`."""
    with open(log, "ab") as stream:
        return subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=fresh_machine_env(),
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=stream,
            start_new_session=True,
        )


def test_quick_start_is_two_commands_a_main_job_and_the_tests() -> None:
    lines = quick_start_block()
    assert len(lines) == 2, lines
    commands = quick_start()
    assert set(commands) == {"main", "test"}, lines
    assert "dist/supervisor.pyz run" in commands["main"]
    assert commands["test"].split()[0] == "scripts/test"


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = shell_commands(CI_RUN)
    test_command = quick_start()["test"]
    assert "set -euo pipefail" in commands  # a failing set-up step fails CI too
    # The last command: its exit status is CI's, and nothing runs after it.
    assert commands[-1] == test_command, commands
    assert commands.count(test_command) == 1
    assert not [c for c in commands[:-1] if "pytest" in c], commands
    assert os.access(CI_RUN, os.X_OK)


@pytest.mark.slow  # a clone and a zipapp build
async def test_main_job_command_builds_and_serves_from_a_fresh_clone(tmp_path: Path) -> None:
    command = quick_start()["main"]
    clone = fresh_clone(tmp_path / "clone")
    async with world(tmp_path) as w:
        # The configuration the command names, in the clone: the fake server, the clone's
        # own fake agent, state in the test's directory.
        w.configure(
            agent_command=[sys.executable, str(clone / "tests" / "fakes" / "fake_agent.py")]
        )
        shutil.copy(w.config_path, clone / "supervisor.toml")
        process = start_in_own_group(command, clone, tmp_path / "supervisor.log")
        try:
            with trio.fail_after(150):  # a pip install from its cache, then the start
                while not w.server.websockets(w.server.bot.id):
                    assert process.poll() is None, f"exit {process.returncode}:\n{w.log_text()}"
                    await trio.sleep(0.1)
            assert (clone / "dist" / "supervisor.pyz").is_file()
            with trio.fail_after(30):
                root_id = await w.new_session("readme")
                await w.say("hello from the quick start", root_id)
                await w.answered(root_id, "echo #1: hello from the quick start")

            # bash runs the last command of a `-c` list in its own place (exec, bash >= 5.1),
            # so the job's leader is the supervisor and its exit status is the command's.
            assert "dist/supervisor.pyz" in argv_of(process.pid), argv_of(process.pid)
            os.killpg(process.pid, signal.SIGTERM)  # as systemd stops a service
            with trio.fail_after(10):
                await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
            assert process.returncode == 0, w.log_text()
        finally:
            kill_group(process)


@pytest.mark.slow  # sets up a fresh .venv (and the pinned CLI) in the clone: about a minute
def test_test_command_sets_up_and_runs_pytest_in_a_fresh_clone(tmp_path: Path) -> None:
    command = quick_start()["test"]
    clone = fresh_clone(tmp_path / "clone")
    assert not (clone / ".venv").exists()
    process = subprocess.Popen(
        ["bash", "-c", f"{command} {SMALL_SUITE}"],
        cwd=clone,
        env=fresh_machine_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        kill_group(process)
        output, _ = process.communicate()
        pytest.fail(f"`{command}` took over 200 s:\n{output.decode(errors='replace')[-4000:]}")
    finally:
        kill_group(process)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text[-4000:]
    assert re.search(r"^\d+ passed", text, re.M), text[-4000:]
    assert (clone / ".venv" / "bin" / "python").exists()
