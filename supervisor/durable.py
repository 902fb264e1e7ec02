"""Durable files in `state.dir`: written atomically, and tried again while the disk refuses.

Shared by the owners of the files there that a person's messages wait on: the store
(`sessions.json` and its journal), Telegram's memory (`telegram.json`) and the web chat's
database (`web.sqlite3`: SQLite writes it, and only `until_written` is used there); and by
the front ends' identities (`<front end>-identity.json`, `chat/identity.py`) and a
session's saved attachments, which use `write_atomically` alone.

- `write_atomically`: temp file, fsync, rename, fsync the directory. A crash at any point
  leaves the old file or the new one, whole; a failed write takes its temp file back (on
  a full disk, that space is wanted). A failure after the rename is `ReplacedNotDurable`:
  the new file is already the one a reader (or the next start) finds.
- `until_written`: a write the disk refuses (full, over quota, failing) is tried again.
  What it carries is acknowledged only once it is on disk, so meanwhile the work that
  waits for it waits, and nothing is lost or done twice; a stop still stops (the waits
  between attempts are where it cancels). The log says so at once, then once a minute,
  and says when the disk takes the write again.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from supervisor.core.backoff import Backoff

log = logging.getLogger("supervisor.store")

WRITE_RETRY = Backoff(base=0.5, cap=10.0, floor=0.25)
REFUSED_LOG_EVERY_S = 60.0

_rng = random.Random()


def reason(exc: OSError) -> str:
    """An OSError in a few words, e.g. "No space left on device"."""
    return exc.strerror or str(exc)


async def until_written(write: Callable[[], Awaitable[None]], directory: Path, waiting: str,
                        on_refused: Callable[[OSError], None] = lambda _exc: None, *,
                        what: str = "the state", log: logging.Logger = log) -> None:
    """Await `write` until it does not raise OSError. The log (the writer's own) says `what`
    is written ("the state") and what waits for it (`waiting`: "prompts"). `write` is
    shielded by the caller if it must not be cut."""
    refused_since = logged = 0.0
    for attempt in itertools.count():
        try:
            await write()
        except OSError as exc:
            on_refused(exc)
            now = trio.current_time()
            if attempt == 0:
                refused_since = now
            if attempt == 0 or now - logged >= REFUSED_LOG_EVERY_S:
                logged = now
                log.error("cannot write %s to %s (%s): trying again; %s wait for it, and "
                          "nothing is lost", what, directory, reason(exc), waiting)
            await trio.sleep(WRITE_RETRY.delay(attempt, _rng))
            continue
        if attempt:
            log.warning("%s is written to %s again, after %.0f s and %d refused attempt(s)",
                        what, directory, trio.current_time() - refused_since, attempt)
        return


class ReplacedNotDurable(OSError):
    """The new file replaced the old one, but the folder's fsync failed: readers, and a start
    after this process is killed, find the new file; a power cut may still bring back the old."""


def write_atomically(path: Path, raw: bytes, *, keep_previous: bool = False,
                     folder_may_be_link: bool = True) -> None:
    """Replace `path` with `raw`, durable on return (`ReplacedNotDurable`: replaced, but
    the folder's fsync failed). With `keep_previous`, the old copy stays as `<name>.prev`,
    and readers never find `path` missing (.prev is made a second name of the old file
    before the new one replaces it). A temp file a crash left is replaced; a link put in
    its place is removed, never written through.

    Every step names its file relative to one descriptor of the folder, opened first, so
    the folder cannot be swapped midway; without `folder_may_be_link`, a folder that is a
    link is refused (ENOTDIR on Linux, ELOOP elsewhere) rather than written through."""
    name, tmp = path.name, f".{path.name}.tmp"
    no_link = 0 if folder_may_be_link else os.O_NOFOLLOW
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | no_link)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=folder)
        try:
            if os.write(fd, raw) != len(raw):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
            os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)  # on a full disk, the space it took is wanted back
            raise
        finally:
            os.close(fd)
        if keep_previous and _exists(name, folder):
            prev_tmp = f".{name}.prev.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prev_tmp, dir_fd=folder)
            os.link(name, prev_tmp, src_dir_fd=folder, dst_dir_fd=folder)
            os.replace(prev_tmp, f"{name}.prev", src_dir_fd=folder, dst_dir_fd=folder)
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        try:
            os.fsync(folder)
        except OSError as exc:  # unlike any failure before it: the old file is gone from view
            raise ReplacedNotDurable(exc.errno, exc.strerror, str(path)) from exc
    finally:
        os.close(folder)


def _exists(name: str, folder: int) -> bool:
    try:
        os.stat(name, dir_fd=folder)
    except FileNotFoundError:
        return False
    return True


def fsync_directory(directory: Path) -> None:
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
