"""The web chat's doctor lines."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from supervisor.chat.web import doctor, security
from supervisor.runtime.store import held


def test_listen_check_names_the_key_for_remote_and_busy_addresses() -> None:
    remote = doctor.listen_check("0.0.0.0:8765", allow_remote=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = doctor.listen_check(f"127.0.0.1:{port}", allow_remote=False)
    free = doctor.listen_check(f"127.0.0.1:{port}", allow_remote=False)

    assert not remote.ok and "web.listen" in remote.detail
    assert not taken.ok and "web.listen" in taken.fix and "$SUPERVISOR_WEB_LISTEN" in taken.fix
    assert free.ok


def test_token_check_wants_0600_and_never_shows_the_token(tmp_path: Path) -> None:
    assert doctor.token_check(tmp_path).ok  # created on first start
    token = security.load_or_create_token(tmp_path)
    good = doctor.token_check(tmp_path)
    os.chmod(tmp_path / "web-token", 0o644)
    loose = doctor.token_check(tmp_path)

    assert good.ok
    assert not loose.ok and loose.fix.startswith("chmod 600")
    assert token not in good.detail + loose.detail + loose.fix


def test_page_check_finds_every_file_of_the_page() -> None:
    check = doctor.page_check()
    assert check.ok, check.detail


def test_token_check_on_a_new_account_looks_at_the_nearest_existing_directory(tmp_path: Path) -> None:
    # `check` with no configuration on a new account: ~/.local/state/supervisor and its
    # parents do not exist yet; the first start creates them all.
    fresh = doctor.token_check(tmp_path / ".local" / "state" / "supervisor")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    refused = doctor.token_check(locked / "state" / "supervisor")

    assert fresh.ok, fresh.detail
    if os.geteuid() != 0:  # root writes anywhere
        assert not refused.ok and refused.detail == f"{locked} is not writable"


def test_a_port_held_while_a_supervisor_runs_on_the_state_directory_is_its_own(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        alone = doctor.listen_check(listen, allow_remote=False, state_dir=tmp_path)
        with held(tmp_path):  # what `run` holds while it serves
            running = doctor.listen_check(listen, allow_remote=False, state_dir=tmp_path)

    assert not alone.ok and "web.listen" in alone.fix  # another program's: a failure
    assert running.ok and f"running supervisor (pid {os.getpid()})" in running.detail
