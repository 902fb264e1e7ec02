"""The real supervisor as a child process with no configuration file: the embedded default.

For the browser tests that drive the whole product: `python -m supervisor run` started in
an empty directory with an empty `$HOME` (so no `supervisor.toml` is found anywhere), a
fake `claude` first on `PATH` (tests/fakes/fake_agent.py behind a two-line script), and
`SUPERVISOR_WEB_LISTEN=127.0.0.1:0` so parallel runs never fight over port 8765 (the
announcement says which port was bound). The state lands in the default state dir under
that `$HOME`. `stop()` is SIGTERM, `kill()` is SIGKILL; both wait for the process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FAKE_AGENT = REPO / "tests" / "fakes" / "fake_agent.py"
ANNOUNCEMENT = re.compile(r"Web chat: open (http://127\.0\.0\.1:(\d+)/\?token=(\S+)) ")


class SupervisorProcess:
    """Invariant: `process` is the live child between `start()` and `stop()`/`kill()`."""

    def __init__(self, tmp: Path, *, with_claude: bool = True) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.work = tmp / "work"
        self.bin = tmp / "bin"
        self.agent_log = tmp / "agent-log"
        self.cwd = tmp / "empty"
        for folder in (self.home, self.work, self.bin, self.agent_log, self.cwd):
            folder.mkdir(parents=True, exist_ok=True)
        if with_claude:
            claude = self.bin / "claude"
            claude.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_AGENT} "$@"\n')
            claude.chmod(0o755)
        self.stderr_path = tmp / "supervisor.stderr"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0  # 0: any free port the first time; the same one on a restart
        self.url = ""

    @property
    def state_dir(self) -> Path:
        return self.home / ".local" / "state" / "supervisor"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if k not in ("SUPERVISOR_CONFIG", "HOME")}
        # Only our bin and the interpreter's folder: no real `claude` can be found.
        path = os.pathsep.join([str(self.bin), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
        return {
            **keep,
            "HOME": str(self.home),
            "PATH": path,
            "PYTHONPATH": str(REPO),
            "FAKE_AGENT_LOG": str(self.agent_log),
            "SUPERVISOR_WEB_LISTEN": f"127.0.0.1:{self.port}",
        }

    def start(self, timeout: float = 20, *options: str) -> str:
        """Start it (`run` with `options`); the URL it printed (with the token) once it serves."""
        offset = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
        with self.stderr_path.open("ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "supervisor", "run", *options],
                cwd=self.cwd,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = ANNOUNCEMENT.search(self.stderr()[offset:])
            if found:
                self.url, self.port = found[1], int(found[2])
                return self.url
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no web chat URL on stderr:\n{self.stderr()[offset:]}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def token(self) -> str:
        return self.url.partition("token=")[2]

    def stop(self, timeout: float = 12) -> int:
        """SIGTERM, as systemd does; the exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        self.process = None
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.stop()
            except subprocess.TimeoutExpired:
                self.kill()
        # Agents live in their own process groups; a SIGKILLed supervisor leaves them to
        # the next start's reaper, and this test's last start has none: end them here.
        for start in self.agent_events("start"):
            pgid = int(start["pgid"])
            if self._ours(pgid):  # never a group that reused the number since
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)

    def _ours(self, pid: int) -> bool:
        """Is `pid` still one of this test's agents (its environment names our agent log)?"""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"FAKE_AGENT_LOG={self.agent_log}".encode() in environ.split(b"\0")

    # what the agents saw ---------------------------------------------------------------

    def agent_events(self, kind: str) -> list[dict[str, Any]]:
        found = []
        for log in sorted(self.agent_log.glob("*.jsonl")):
            for raw in log.read_text().splitlines():
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue  # a line being written right now
                if line.get("event") == kind:
                    found.append(line)
        return found

    def prompts(self) -> list[str]:
        """Every prompt text any agent read on its stdin, in order of the logs."""
        texts = []
        for line in self.agent_events("stdin"):
            message = line.get("line", {})
            if message.get("type") != "user":
                continue
            content = message["message"]["content"]
            if isinstance(content, str):
                texts.append(content)
            else:
                texts.append(" ".join(part.get("text", "") for part in content if part.get("type") == "text"))
        return texts
