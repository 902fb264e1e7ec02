"""Find and end agent processes by the marker in their environment (Linux /proc).

Every agent carries `SUPERVISOR_STATE_DIR=<state dir>` in its environment, so the next
start can tell our leftovers from anyone else's processes, even if a recorded process
group id was reused (`reap`). Each agent also carries a marker of its own
(`SUPERVISOR_AGENT=<id>`), inherited by all it spawns, so its teardown can end the
descendants that left its process group (`setsid`, a detached Node child, a daemon)
(`end_marked`). Elsewhere than Linux it finds nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Set
from pathlib import Path

log = logging.getLogger("supervisor.reaper")

AGENT_MARKER = "SUPERVISOR_STATE_DIR"  # set on every agent, so leftovers can be found
OWN_VARIABLES = "SUPERVISOR_"  # the supervisor's settings and secrets: no agent inherits them
ENDED_IN_ROUNDS = 5  # scans of /proc by `end_marked`: what was forked meanwhile is found next


def agent_environment(env: Mapping[str, str], state_dir: Path) -> dict[str, str]:
    """What every agent process a supervisor using `state_dir` starts (a session's, a
    probe's, `check`'s) inherits: `env` less the supervisor's own variables (`SUPERVISOR_*`:
    its chat tokens, its config), which an agent running `env` for the person would post in
    the thread and send to its model, plus the mark of `state_dir`, so that `reap` finds
    what a killed one left."""
    inherited = {name: value for name, value in env.items() if not name.startswith(OWN_VARIABLES)}
    return {**inherited, AGENT_MARKER: str(state_dir)}


def marked_processes(markers: Set[bytes], proc: Path = Path("/proc")) -> set[int]:
    """The processes whose environment carries one of `markers` (whole `NAME=value` entries)."""
    found: set[int] = set()
    for entry in proc.iterdir() if proc.is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if not markers.isdisjoint((entry / "environ").read_bytes().split(b"\0")):
                found.add(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return found


def leftover_groups(marker: bytes, proc: Path = Path("/proc")) -> set[int]:
    """Process groups holding a process whose environment carries `marker`."""
    groups: set[int] = set()
    for pid in marked_processes({marker}, proc):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    return groups


def end_marked(markers: Set[bytes]) -> set[int]:
    """SIGKILL every process carrying one of `markers`, again until none is found (one may
    fork while the first are killed); returns those killed. Blocking: run it in a thread."""
    killed: set[int] = set()
    for _ in range(ENDED_IN_ROUNDS):
        pids = marked_processes(markers)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
    return killed


def reap(state_dir: Path, recorded: set[int]) -> set[int]:
    """SIGKILL every leftover agent group of this state dir; returns the groups ended."""
    marker = f"{AGENT_MARKER}={state_dir}".encode()
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
