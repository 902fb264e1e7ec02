"""`run` with a damaged `<state.dir>/web-token` (bytes that are not ASCII): no traceback;
a new token replaces it, and the log says so in its own format before the new address."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.harness import FAKE_AGENT, REPO, write_toml

DAMAGED = b"\xff\xfe\x00garbage\xe9\n"


def test_run_replaces_a_damaged_web_token_and_says_so_in_the_log(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "web-token").write_bytes(DAMAGED)
    (state / "web-token").chmod(0o600)
    config = tmp_path / "supervisor.toml"
    write_toml(config, {
        "web": {"listen": "127.0.0.1:0"},
        "agent": {"command": [sys.executable, str(FAKE_AGENT)]},
        "state": {"dir": str(state)},
    })  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_") and k != "JOURNAL_STREAM"}
    command = [sys.executable, "-m", "supervisor", "run", "--config", str(config), "--log-format", "json"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}) as process:  # fmt: skip
        assert process.stderr is not None
        watchdog = threading.Timer(60, process.kill)
        watchdog.start()
        try:
            lines = []
            for line in process.stderr:
                lines.append(json.loads(line))  # every line in the log's format
                if lines[-1]["logger"] == "supervisor.address":
                    break
            process.send_signal(signal.SIGTERM)
            lines += [json.loads(line) for line in process.stderr]
            assert process.wait() == 0, lines
        finally:
            watchdog.cancel()

    said = [(entry["level"], entry["msg"]) for entry in lines if entry["logger"] == "supervisor.chat.web.security"]
    assert said == [("warning", f"{state / 'web-token'} is damaged (not ASCII text): a new token replaces it, and "
                                "the web chat's address changes with it (the new one is printed once it listens)")]
    token = (state / "web-token").read_text(encoding="ascii").strip()
    assert any(f"?token={token}" in entry["msg"] for entry in lines if entry["logger"] == "supervisor.address")
    assert not any("exc" in entry for entry in lines)
