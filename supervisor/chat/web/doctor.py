"""The web chat's lines for `check`: can it listen, keep its token, and serve its page?

Each check returns one `WebCheck`: the doctor's `CheckResult` (name, ok, detail, fix),
from `supervisor.checks`. Never prints the token.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

from supervisor.chat.web import security
from supervisor.chat.web.assets import BUNDLE, load_assets
from supervisor.checks import CheckResult, lock_holder
from supervisor.runtime.store import LOCK_NAME

WebCheck = CheckResult


def listen_check(listen: str, allow_remote: bool, state_dir: Path | None = None) -> WebCheck:
    """Can the web chat listen? A port held while a supervisor runs on `state_dir` is that
    supervisor's own (`check` beside the running service), not a failure."""
    problem = security.listen_problem(listen, allow_remote)
    if problem is not None:
        return WebCheck("web listen", False, problem, "fix web.listen (or web.allow_remote)")
    address = security.parse_listen(listen)
    assert not isinstance(address, str)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((address.host, address.port))
    except OSError as error:
        running = _running_supervisor(state_dir) if error.errno == errno.EADDRINUSE else None
        if running is not None:
            return WebCheck(
                "web listen", True, f"{listen} is in use by the running supervisor (pid {running})"
            )
        return WebCheck(
            "web listen",
            False,
            f"cannot listen on {listen}: {error.strerror or error}",
            "stop what uses that port (another supervisor?) or set web.listen"
            " (with no configuration file: $SUPERVISOR_WEB_LISTEN) to a free one",
        )
    return WebCheck("web listen", True, f"{listen} is free")


def _running_supervisor(state_dir: Path | None) -> int | None:
    """The pid of the supervisor running on `state_dir`, from its lock."""
    return None if state_dir is None else lock_holder(state_dir / LOCK_NAME)


def token_check(state_dir: Path) -> WebCheck:
    path = state_dir / security.TOKEN_FILE
    try:
        return _token_check(state_dir, path)
    except OSError as error:
        # Most often `check` run by another user than the service's (state.dir is 0700).
        denied = isinstance(error, PermissionError)
        return WebCheck(
            "web token",
            False,
            f"cannot read {error.filename or path}: {error.strerror or error}",
            f"run check as the service's user, who can read {state_dir}"
            if denied else "fix state.dir or the disk under it",
        )


def _token_check(state_dir: Path, path: Path) -> WebCheck:
    if not path.exists():
        # The first start creates the missing directories too (the default state.dir,
        # ~/.local/state/supervisor, on a new account): the nearest existing one decides.
        existing = state_dir
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if os.access(existing, os.W_OK | os.X_OK):
            return WebCheck("web token", True, f"created on first start in {path}")
        return WebCheck(
            "web token", False, f"{existing} is not writable", "fix state.dir or its permissions"
        )
    try:
        security.stored_token(path)
    except UnicodeDecodeError:
        return WebCheck(
            "web token", True, f"{path} is damaged (not ASCII text): the next start replaces it"
            " with a new token, and prints the web chat's new address",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return WebCheck(
            "web token",
            False,
            f"{path} is readable by others (mode {mode:o})",
            f"chmod 600 {path}",
        )
    return WebCheck("web token", True, f"{path} (mode 600)")


def page_check() -> WebCheck:
    try:
        assets = load_assets()
    except OSError as error:
        return WebCheck("web page", False, f"the page's files cannot be read: {error}", "reinstall")
    missing = [name for name in ("index.html", "app.css", *BUNDLE) if name not in assets]
    if missing:
        return WebCheck("web page", False, f"missing {', '.join(missing)}", "reinstall")
    size = sum(len(asset.body) for asset in assets.values())
    return WebCheck("web page", True, f"{len(assets)} files, {size // 1024} KiB")


def checks(listen: str, allow_remote: bool, state_dir: Path) -> list[WebCheck]:
    """The web chat's lines, in report order."""
    return [listen_check(listen, allow_remote, state_dir), token_check(state_dir), page_check()]
