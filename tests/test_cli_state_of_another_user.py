"""`run` on a state directory where a file belongs to another user (left by a `sudo -E`
run): one sentence that names the file, exit 1, never a traceback. And any command run
from a current directory that was deleted, with the configuration named in full.

Root reads every file whatever its owner and mode: the child process refuses to read
the one file itself (`REFUSING_RUN` patches the calls that read it), as another user's
0600 file would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import REPO
from tests.test_cli_unreadable_state import web_config

REFUSING_RUN = """
import errno, os, pathlib, sys
from supervisor import cli

refused = sys.argv[1]

def denied(path):
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

def refusing(read):
    def read_unless_refused(self, *args, **kwargs):
        if self.name == refused:
            raise denied(self)
        return read(self, *args, **kwargs)
    return read_unless_refused

pathlib.Path.read_bytes = refusing(pathlib.Path.read_bytes)
pathlib.Path.read_text = refusing(pathlib.Path.read_text)
real_open = os.open

def os_open(path, *args, **kwargs):
    if os.path.basename(path) == refused:
        raise denied(path)
    return real_open(path, *args, **kwargs)

os.open = os_open
sys.exit(cli.main(sys.argv[2:]))
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_") and k != "JOURNAL_STREAM"}
    return {**env, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize(("refused", "said"), [
    ("sessions.json", "cannot read the state in {state}/sessions.json (Permission denied): let the supervisor's "
                      "user read and write there, or set state.dir elsewhere, and start again"),
    ("web-token", "the web chat cannot use its access token in {state}/web-token (Permission denied): let the "
                  "supervisor's user read and write {state}, or set state.dir elsewhere, and start again"),
    ("web.sqlite3", "the web chat cannot use its database in {state}/web.sqlite3 (Permission denied): let the "
                    "supervisor's user read and write {state}, or set state.dir elsewhere, and start again"),
])  # fmt: skip
def test_run_says_a_state_file_it_cannot_read_in_one_sentence(tmp_path: Path, refused: str, said: str) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / refused).write_bytes(b"")
    (state / refused).chmod(0o600)
    command = [sys.executable, "-c", REFUSING_RUN, refused, "run", "--config", str(web_config(tmp_path)),
               "--log-format", "json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=_env())
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(e["level"], e["msg"]) for e in lines if e["level"] == "error"] == [
        ("error", said.format(state=state))
    ], lines
    assert not any("exc" in entry for entry in lines)


DELETED_CWD = """
import os, sys
from supervisor import cli

os.chdir(sys.argv[1])
os.rmdir(sys.argv[1])
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("command", ["sessions", "check"])
def test_a_command_from_a_deleted_directory_works_with_a_config_named_in_full(
    tmp_path: Path, command: str
) -> None:
    config = web_config(tmp_path)
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run([sys.executable, "-c", DELETED_CWD, str(gone), command, "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=_env())  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] in ("no sessions", "all 6 checks passed")


def test_a_relative_config_from_a_deleted_directory_is_one_sentence(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    gone.mkdir()
    done = subprocess.run([sys.executable, "-c", DELETED_CWD, str(gone), "sessions", "--config", "c.toml"],
                          capture_output=True, text=True, timeout=60, env=_env())  # fmt: skip
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == (
        "supervisor: the configuration file c.toml (from --config) is relative to the current directory, "
        "which no longer exists: cd to one that does, or name the file in full\n"
    )
