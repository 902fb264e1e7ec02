"""The doctor's shared vocabulary: one `CheckResult` per report line, the time `Limits`,
the report's text and exit status, and the bounded `within` helper.

Every part that contributes lines to `supervisor check` (a front end, an agent, the
state directory) builds them from this module, which imports nothing of the product, so
any part may import it without a cycle. Everything here is pure except `within`, which
only bounds an awaitable by a cancel scope, `until_stopped`, which ends one at a stop
signal, and `lock_holder`, which reads /proc/locks.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import attrs
import trio

__all__ = [
    "LIMITS",
    "CheckResult",
    "Limits",
    "clipped",
    "exit_status",
    "format_report",
    "one_line",
    "skipped",
    "timed_out",
    "until_stopped",
    "within",
]

T = TypeVar("T")

MAX_DETAIL: Final = 200  # characters of server- or agent-supplied text shown in one line


@attrs.frozen
class CheckResult:
    """One line of the report. `fix` is "" when there is nothing to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@attrs.frozen
class Limits:
    """How long each kind of check may take, in seconds."""

    network_s: float = 5.0  # one REST request
    agent_s: float = 10.0  # `<agent.command> --version`, start to exit
    disk_s: float = 10.0  # ask the file system whether the state directory is writable


LIMITS: Final = Limits()


def format_report(results: Sequence[CheckResult]) -> str:
    """The aligned text the doctor prints: name, ok/FAIL, detail, then `fix:` below."""
    width = max((len(result.name) for result in results), default=0)
    lines = []
    for result in results:
        label = "ok" if result.ok else "FAIL"
        lines.append(f"{result.name:<{width}}  {label:<4}  {one_line(result.detail)}".rstrip())
        if result.fix:
            lines.append(f"{'':<{width}}        fix: {one_line(result.fix)}")
    failed = sum(not result.ok for result in results)
    if failed:
        lines.append(f"{failed} of {len(results)} checks failed")
    else:
        lines.append(f"all {len(results)} checks passed")
    return "\n".join(lines) + "\n"


def exit_status(results: Sequence[CheckResult]) -> int:
    return 0 if all(result.ok for result in results) else 1


def one_line(text: str) -> str:
    """Details may quote a server's or a program's own words: keep each check on one line
    and keep terminal escapes out."""
    flat = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(flat.split())


def clipped(text: str) -> str:
    """`text` on one line, at most `MAX_DETAIL` characters."""
    text = one_line(text)
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def timed_out(name: str, seconds: float, what: str, fix: str) -> CheckResult:
    return CheckResult(name, False, f"{what} within {seconds:g} s", fix)


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, False, f"skipped: {reason}")


async def within(seconds: float, fallback: T, work: Callable[[], Awaitable[T]]) -> T:
    """`await work()`, or `fallback` once `seconds` have passed (the work is cancelled)."""
    with trio.move_on_after(seconds):
        return await work()
    return fallback


async def until_stopped(signals: Sequence[signal.Signals], work: Callable[[], Awaitable[T]]) -> T | signal.Signals:
    """`await work()`, or the first of `signals` to come, once the work is cancelled: its
    agents ended (a death by the signal would leave a hung one running)."""
    found: list[T] = []
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                found.append(await work())
                nursery.cancel_scope.cancel()

            nursery.start_soon(run)
            async for signum in received:
                nursery.cancel_scope.cancel()
                return signal.Signals(signum)
    return found[0]


def lock_holder(lock_file: Path) -> int | None:
    """The pid that holds `lock_file` (a running `run` holds the state directory's), from
    /proc/locks: lines like "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF" (device in
    hex, inode). Read, never taken. Blocking (a stat): the doctor runs it in a thread."""
    try:
        lock = lock_file.stat()
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    where = f"{os.major(lock.st_dev):02x}:{os.minor(lock.st_dev):02x}:{lock.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if "->" in fields or "FLOCK" not in fields:  # "->": a waiter, not the holder
            continue
        at = fields.index("FLOCK")
        if len(fields) > at + 4 and fields[at + 4] == where and fields[at + 3].isdigit():
            return int(fields[at + 3])
    return None
