"""Log lines on stderr: human-readable by default, JSON lines with --log-format json.

Secrets never appear: a filter masks bearer tokens and known token values in every record.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Mapping

_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")


class ThrottledLog:
    """At most `per_window` records in each window of `window_s`: a flood (an agent's
    stderr in a debug mode, plain text on its stdout in a loop) must not fill the log or
    slow the supervisor down. Each record says `who`; those left out are counted and said
    ("N more `what` not logged") when the next window opens, and at `flush`."""

    def __init__(self, logger: logging.Logger, level: int, who: str, what: str, *,
                 per_window: int = 50, window_s: float = 10.0) -> None:
        self.logger, self.level, self.who, self.what = logger, level, who, what
        self.per_window, self.window_s = per_window, window_s
        self.window_ends = -math.inf
        self.logged = 0  # in the current window
        self.suppressed = 0  # in the current window

    def record(self, text: str, now: float) -> None:
        if now >= self.window_ends:
            self.flush()
            self.window_ends, self.logged = now + self.window_s, 0
        if self.logged < self.per_window:
            self.logged += 1
            self.logger.log(self.level, "%s: %s", self.who, text)
        else:
            self.suppressed += 1

    def flush(self) -> None:
        if self.suppressed:
            self.logger.log(self.level, "%s: %d more %s not logged", self.who, self.suppressed, self.what)
            self.suppressed = 0


def in_a_row_level(failures: int) -> int:
    """Through a long outage a try fails every few seconds: the 1st, 2nd, 4th, 8th...
    failure in a row is a warning, the others only debug lines."""
    return logging.DEBUG if failures & (failures - 1) else logging.WARNING


def first_leaf(exc: BaseException) -> BaseException:
    """The first failure an exception group holds (nurseries wrap what fails in them)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def one_line(exc: BaseException, limit: int = 300) -> str:
    """One short line for a log or a notice: the first failure's type and words."""
    exc = first_leaf(exc)
    return f"{type(exc).__name__}: {exc}"[:limit]


class RedactSecrets(logging.Filter):
    """Masks secrets in the message and in an attached traceback (an exception's words may
    quote a URL, and Telegram's token is in every one of its URLs)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        clean = _BEARER.sub(r"\1***", text)
        for secret in self.secrets:
            clean = clean.replace(secret, "***")
        return clean

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = self.redact(text)
        if clean != text:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            # Formatters use this cached text instead of formatting the traceback again.
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _json_entry(created: float, level: str, logger: str, msg: str) -> dict[str, str]:
    t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"
    return {"t": t, "level": level, "logger": logger, "msg": msg}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = _json_entry(record.created, record.levelname.lower(), record.name, record.getMessage())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # redacted by `RedactSecrets`
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


_json_lines = False  # the format `setup` chose, for `tell_person`


def tell_person(text: str) -> None:
    """A line on stderr for whoever started the supervisor, outside the log, so not masked
    (the web chat's address is meant to carry its token), but in the log's format: a
    reader of JSON lines reads it too."""
    if _json_lines:  # its own logger's name: a log shipper can tell it from the log, and drop it
        text = json.dumps(_json_entry(time.time(), "info", "supervisor.address", text), ensure_ascii=False)
    print(text, file=sys.stderr, flush=True)


def stderr_is_journal(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether stderr is systemd's journal: systemd names it in `JOURNAL_STREAM` (its
    device and inode), and it outlives the process for whoever may read logs."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        found = os.fstat(sys.stderr.fileno())
        return (found.st_dev, found.st_ino) == (int(device), int(inode))
    except (OSError, ValueError, AttributeError):  # no such stream, or no stderr file at all
        return False


def setup(fmt: str = "text", level: int = logging.INFO, secrets: list[str] | None = None) -> None:
    global _json_lines
    _json_lines = fmt == "json"
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets or []))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "trio-websocket"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
