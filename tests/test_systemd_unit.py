"""`contrib/supervisor.service` read against the program: its set-up lines work as written
(run in a scratch root), and every setting it relies on is what the supervisor does."""

from __future__ import annotations

import configparser
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from supervisor import stop_signals
from supervisor.cli import _parser
from supervisor.config import ENV_OVERRIDES

UNIT = Path(__file__).resolve().parent.parent / "contrib" / "supervisor.service"
PRODUCT_STOP_S = 10  # PRODUCT: SIGTERM -> exit 0 within 10 s
CONFIG_EXIT_STATUS = 2  # the CLI's status for an unusable configuration


def _service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    unit.read_string(UNIT.read_text())
    return unit["Service"]


def _set_up_lines() -> list[list[str]]:
    """The header's `install` commands, as argv."""
    lines = [line.removeprefix("#").strip() for line in UNIT.read_text().splitlines() if line.startswith("#   ")]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("install ")]


def test_the_install_lines_put_every_file_where_the_unit_looks_for_it(tmp_path: Path) -> None:
    """Run as written into a scratch root, on a machine without /opt/supervisor or
    /etc/supervisor yet (a group named in -g is the only thing left out)."""
    root, repo = tmp_path / "root", tmp_path / "repo"
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    for name in ("dist/supervisor.pyz", "supervisor.toml", "contrib/supervisor.service"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    for argv in _set_up_lines():
        if "-g" in argv:
            del argv[argv.index("-g") : argv.index("-g") + 2]
        argv = [str(root) + arg if arg.startswith("/") and arg != "/dev/null" else arg for arg in argv]
        done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{shlex.join(argv)}: {done.stderr}"
    service = _service()
    exec_start = shlex.split(service["ExecStart"])
    zipapp, config = exec_start[1], exec_start[exec_start.index("--config") + 1]
    env_file = service["EnvironmentFile"].removeprefix("-")
    for path in (zipapp, config, env_file, "/etc/systemd/system/supervisor.service"):
        assert (root / path.lstrip("/")).is_file(), path
    assert (root / env_file.lstrip("/")).stat().st_mode & 0o077 == 0  # the token's file: root's alone


def test_every_setting_is_true_of_the_program() -> None:
    service = _service()
    args = _parser().parse_args(shlex.split(service["ExecStart"])[2:])
    assert (args.command, args.log_format) == ("run", "json")
    assert getattr(signal, service["KillSignal"]) in stop_signals.STOP_SIGNALS
    assert int(service["TimeoutStopSec"]) > PRODUCT_STOP_S  # systemd's SIGKILL never cuts a clean stop
    assert service["KillMode"] == "mixed"  # SIGTERM to the supervisor only: it ends its agents' groups
    assert service["Restart"] == "on-failure" and int(service["RestartPreventExitStatus"]) == CONFIG_EXIT_STATUS
    named = {word.split("=")[0] for word in UNIT.read_text().split() if word.startswith("SUPERVISOR_")}
    assert named and named <= {override.variable for override in ENV_OVERRIDES}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_finds_nothing_wrong_with_the_unit(tmp_path: Path) -> None:
    shutil.copy(UNIT, tmp_path / "supervisor.service")
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "supervisor.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
