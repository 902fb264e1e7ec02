"""Find and end agent process groups that a previous run left behind (after a SIGKILL).

Every agent carries `SUPERVISOR_STATE_DIR=<state dir>` in its environment, so the next
start can tell our leftovers from anyone else's processes, even if a recorded process
group id was reused. Linux only (/proc); elsewhere it finds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("supervisor.reaper")


def leftover_groups(marker: bytes, proc: Path = Path("/proc")) -> set[int]:
    """Process groups holding a process whose environment carries `marker`."""
    groups: set[int] = set()
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if marker in environ.split(b"\0"):
                groups.add(os.getpgid(int(entry.name)))
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile, or not ours to read
    return groups


def reap(state_dir: Path, recorded: set[int]) -> set[int]:
    """SIGKILL every leftover agent group of this state dir; returns the groups ended."""
    marker = f"SUPERVISOR_STATE_DIR={state_dir}".encode()
    groups = leftover_groups(marker)
    for pgid in groups:
        log.warning("ending process group %d left by a previous run%s", pgid,
                    "" if pgid in recorded else " (not in the state file)")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while groups and time.monotonic() < deadline and leftover_groups(marker):
        time.sleep(0.02)
    return groups
