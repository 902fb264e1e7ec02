"""A stop asked for while `supervisor run` is still starting, before it listens for signals
(its imports, its configuration, the web chat's token), is a clean stop: exit 0 and a log
line, not a death by the signal (-15) that systemd and scripts would see.

The start is paused just before its event loop begins (`trio.run` waits for a line on its
stdin, the test's go-ahead), so the signal lands in that window every time, not by luck.
No configuration file: the embedded default (the web chat alone), on a port of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.harness import REPO

PAUSED_RUN = """
import sys
import trio
from supervisor import cli

def paused(step):
    def step_after_a_pause(*args, **kwargs):
        print("starting", flush=True)
        sys.stdin.readline()
        return step(*args, **kwargs)
    return step_after_a_pause

# Paused before its event loop begins, or before it reads its configuration.
if sys.argv[1] == "loop":
    trio.run = paused(trio.run)
else:
    cli._load = paused(cli._load)
sys.exit(cli.main(sys.argv[2:]))
"""


def _sigterm_while_paused(tmp_path: Path, pause_before: str, *run_args: str) -> tuple[int, str]:
    """`supervisor run` paused (`PAUSED_RUN`), a SIGTERM sent meanwhile: its exit status
    and what it said on stderr."""
    env = {k: v for k, v in os.environ.items() if k != "SUPERVISOR_CONFIG"}
    env |= {"HOME": str(tmp_path), "SUPERVISOR_WEB_LISTEN": "127.0.0.1:0", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, pause_before, "run", *run_args], cwd=tmp_path, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"starting\n"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(b"go\n", timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, err.decode(errors="replace")


def test_a_sigterm_while_starting_is_a_clean_stop(tmp_path: Path) -> None:
    code, said = _sigterm_while_paused(tmp_path, "loop")
    assert code == 0, said
    assert "received SIGTERM: stopping" in said
    assert said.rstrip().endswith("stopped")


def test_a_sigterm_while_a_refused_start_says_why_leaves_its_answer_whole(tmp_path: Path) -> None:
    """A start refused before it listens (a named configuration that does not exist): the
    stop asked for meanwhile is dropped, and the refusal is the answer (exit 2, its one
    sentence), not a death by the signal once the hold ends."""
    code, said = _sigterm_while_paused(tmp_path, "config", "--config", str(tmp_path / "missing.toml"))
    assert code == 2, said
    assert "missing.toml" in said and "Traceback" not in said


def test_a_run_that_ends_before_it_listens_leaves_the_stop_signals_unblocked(tmp_path: Path) -> None:
    """`main(["run"])` called in a process that goes on (a test, an embedding): a run
    refused before it listens (here: a named config that does not exist) must not leave
    the stop signals blocked, or every child started later would inherit the block."""
    from supervisor import stop_signals
    from supervisor.cli import main

    assert main(["run", "--config", str(tmp_path / "missing.toml")]) == 2
    assert not set(stop_signals.STOP_SIGNALS) & signal.pthread_sigmask(signal.SIG_BLOCK, [])
