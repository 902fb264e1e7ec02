"""`supervisor check`: the doctor. One line per check, `ok` or `FAIL`, and how to fix it.

Checks, in this order: the configuration (already loaded by the CLI), each configured
front end's own lines (in the order of `chat.registry.FRONT_ENDS`), each agent's own
lines (`agent.doctor`), the state directory is writable (or can be created), its files
are readable, it has room, and whether a running supervisor holds it (with its pid).

This module only orchestrates: each part owns its checks and their texts (the shared
vocabulary, `CheckResult` and the report, is `supervisor.checks`; each front end is
registered with its checks in `chat.registry`); this module owns the order of the parts
and the state-directory check. The front ends, the agents and the state directory
run side by side, each bounded by `Limits`; none raises for a failed check.

It must never:
- change anything on disk: a daemon may be running on the same state directory, so the
  state check asks the file system (`os.access`, `statvfs`, opening the state's files
  for reading) instead of creating or writing anything, and reads the running one's hold
  from /proc/locks instead of trying it (a start at that moment would be refused);
- print a token, or any URL credentials (the report is meant to be pasted into a ticket);
- wait without bound, or leave a child process behind (each part's checks promise both).
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from pathlib import Path

import trio

from supervisor.agent import doctor as agent_doctor
from supervisor.chat import registry
from supervisor.checks import (
    LIMITS,
    CheckResult,
    Limits,
    exit_status,
    format_report,
    lock_holder,
    timed_out,
    until_stopped,
    within,
)
from supervisor.config import Config
from supervisor.runtime.store import FILE_NAME, JOURNAL_NAME, LOCK_NAME
from supervisor.stop_signals import STOP_SIGNALS

__all__ = ["check", "configuration_result", "run_checks", "state_dir_check"]

# Less room than this on the state's file system fails the check: a snapshot at 200
# sessions is ~0.2 MB, its journal up to 0.5 MB, the web chat keeps history and files.
# Without room, prompts wait (see README, "Restarts, crashes and outages").
MIN_FREE_BYTES = 16 * 1024 * 1024


def configuration_result(config_path: Path | None) -> CheckResult:
    where = str(config_path) if config_path is not None else "the configuration"
    return CheckResult("configuration", True, f"{where} is valid")


def state_dir_check(directory: Path) -> CheckResult:
    """Can `run` write in `directory` (or create it)? Asks only: creates and writes nothing.

    Blocking file system calls: run it in a thread.
    """
    fix = f"set state.dir to a directory this user can write, or fix the permissions of {directory}"
    if directory.exists():
        if not directory.is_dir():
            return CheckResult("state directory", False, f"{directory} is not a directory", fix)
        if not os.access(directory, os.W_OK | os.X_OK):
            return CheckResult("state directory", False, f"cannot write in {directory}: Permission denied", fix)
        unreadable = _unreadable_state_file(directory)
        if unreadable is not None:
            return unreadable
        vfs = os.statvfs(directory)
        free = vfs.f_bavail * vfs.f_frsize
        if free < MIN_FREE_BYTES:
            return CheckResult("state directory", False, f"only {free / 2**20:.1f} MiB free where {directory} is "
                               "(prompts wait while the state cannot be written)",
                               "make room on that file system, or set state.dir to one with room")
        holder = lock_holder(directory / LOCK_NAME)
        held = f"; in use by a running supervisor (pid {holder})" if holder else ""
        return CheckResult("state directory", True, f"{directory} is writable, {free / 2**30:.1f} GiB free{held}")
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return CheckResult("state directory", False, f"cannot create {directory}: Not a directory", fix)
    if not os.access(parent, os.W_OK | os.X_OK):
        return CheckResult("state directory", False, f"cannot create {directory}: Permission denied", fix)
    return CheckResult("state directory", True, f"{directory} does not exist yet; `run` will create it")


def _unreadable_state_file(directory: Path) -> CheckResult | None:
    """A FAIL for a state file `run` could not read (one another user left, after a
    `sudo -E` run); None when each one there opens. Opened for reading only, and without
    waiting (O_NONBLOCK: a FIFO put there does not hang the doctor)."""
    for name in (FILE_NAME, f"{FILE_NAME}.prev", JOURNAL_NAME):
        path = directory / name
        try:
            os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
        except FileNotFoundError:
            continue
        except OSError as exc:
            return CheckResult("state directory", False, f"cannot read {path}: {exc.strerror or exc}",
                               f"run check as the service's user, or give {path} back to that user (chown)")
    return None


async def state_checks(directory: Path, limits: Limits) -> list[CheckResult]:
    slow = timed_out("state directory", limits.disk_s, f"{directory} did not answer", "check the disk")
    # A hung mount must not hang the doctor: the thread is abandoned on timeout.
    work = functools.partial(trio.to_thread.run_sync, state_dir_check, directory, abandon_on_cancel=True)
    return [await within(limits.disk_s, slow, work)]


async def run_checks(
    config: Config, config_path: Path | None = None, *, limits: Limits = LIMITS
) -> list[CheckResult]:
    """Every check's result, in report order. The front ends (one after the other), the
    agents and the state directory run concurrently; none of them raises for a failed check."""
    found: dict[str, list[CheckResult]] = {}

    async def fronts() -> None:
        found["fronts"] = []
        for front_end in registry.configured(config):
            found["fronts"] += await front_end.checks(config, limits)

    async def agents() -> None:
        found["agents"] = await agent_doctor.checks(config, limits)

    async def state() -> None:
        found["state"] = await state_checks(config.state.dir, limits)

    async with trio.open_nursery() as nursery:
        for task in (fronts, agents, state):
            nursery.start_soon(task)
    return [configuration_result(config_path), *found["fronts"], *found["agents"], *found["state"]]


def check(config: Config, config_path: Path | None = None) -> int:
    """The `check` command: print the report on stdout, return the exit status. Stopped
    by a signal (Ctrl-C, a `timeout`), it ends its probes first and exits 128 + it."""
    results = trio.run(until_stopped, STOP_SIGNALS, functools.partial(run_checks, config, config_path))
    if isinstance(results, signal.Signals):
        print(f"supervisor check: stopped by {results.name}, so no report", file=sys.stderr)
        return 128 + results
    print(format_report(results), end="", flush=True)
    return exit_status(results)
