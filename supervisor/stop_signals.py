"""The signals that stop the supervisor, held from the start of `run` until it listens.

Until `app.run` listens for them (trio's signal receiver), their default action would kill
the process (-15 for SIGTERM: a death by signal, not a clean stop). So the `run` command
blocks them first thing (`hold`), and `app.run` unblocks them (`release`) once it listens:
one that came meanwhile was pending, and is received then as any other (a log line, a
clean stop, exit 0). Nothing runs at the signal's arrival, so nothing is cut half-done.
Only the interpreter's own start (before `cli.main`) is not covered.
"""

from __future__ import annotations

import signal

# Less those the process was started ignoring, as Python itself leaves SIGINT: `nohup`
# ignores SIGHUP so that closing the terminal leaves the job running, and a job started
# with `&` by a script ignores SIGINT. (Read at import, before anything listens.)
STOP_SIGNALS = tuple(
    signum
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    if signum == signal.SIGTERM or signal.getsignal(signum) is not signal.SIG_IGN
)


def hold() -> None:
    """Before any thread or child exists: they would inherit the block. Until `release`,
    and, however `run` ends, `end_hold`."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def end_hold() -> None:
    """`run` is over. A stop that came while it never listened (a start refused before
    `app.run`: its configuration, its state directory) is dropped, not acted on now: the
    refusal and its exit status (2, 1) are the answer, not a death by the signal."""
    while signal.sigtimedwait(STOP_SIGNALS, 0) is not None:
        pass
    release()


def release() -> None:
    """Once they are listened for (or to have them act again)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
