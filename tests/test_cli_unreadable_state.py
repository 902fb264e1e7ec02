"""`check` and `sessions` run by a user who cannot read the state directory (by hand,
beside a service whose `state.dir` is 0700): a FAIL line or one sentence that names the
directory and why, never a traceback.

The commands run as child processes, the directory's mode denying them. Root ignores file
modes: as root the child first gives up the capabilities that let it (`setpriv`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import FAKE_AGENT, REPO, write_toml

NO_OVERRIDE = "-dac_override,-dac_read_search"


@pytest.fixture
def as_denied() -> list[str]:
    """The prefix that makes a command obey file modes."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    prefix = [setpriv or "setpriv", f"--inh-caps={NO_OVERRIDE}", f"--bounding-set={NO_OVERRIDE}"]
    if setpriv is None or subprocess.run([*prefix, "true"], check=False).returncode != 0:
        pytest.skip("root ignores file modes, and cannot give that up here (setpriv)")
    return prefix


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    """A state directory no one but root with its capabilities may look into."""
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "sessions.json").write_text("{}")
    directory.chmod(0)
    yield directory
    directory.chmod(0o700)  # for the clean-up


def web_config(tmp_path: Path) -> Path:
    """A configuration of the web chat alone, its state in `tmp_path/state`."""
    config = tmp_path / "supervisor.toml"
    write_toml(config, {
        "web": {"listen": "127.0.0.1:0"},
        "agent": {"command": [sys.executable, str(FAKE_AGENT)]},
        "state": {"dir": str(tmp_path / "state")},
    })  # fmt: skip
    return config


def _supervisor(tmp_path: Path, prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    config = web_config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "supervisor", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


def test_sessions_says_it_cannot_read_the_state_in_one_sentence(
    tmp_path: Path, state: Path, as_denied: list[str]
) -> None:
    done = _supervisor(tmp_path, as_denied, "sessions")
    assert (done.returncode, done.stdout) == (1, ""), done.stderr
    assert done.stderr == (
        f"supervisor: cannot read the state in {state} (Permission denied): run sessions as the service's user\n"
    )


def test_checks_web_token_line_fails_naming_the_directory(
    tmp_path: Path, state: Path, as_denied: list[str]
) -> None:
    done = _supervisor(tmp_path, as_denied, "check")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    token = next(i for i, line in enumerate(lines) if line.startswith("web token"))
    assert lines[token].split()[2:] == ["FAIL", "cannot", "read", f"{state}/web-token:", "Permission", "denied"]
    assert lines[token + 1].split() == ["fix:", "run", "check", "as", "the", "service's", "user,", "who",
                                        "can", "read", f"{state}"]  # fmt: skip
