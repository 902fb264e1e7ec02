"""The web chat's doctor lines."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from supervisor.chat.web import doctor, security


def test_listen_check_names_the_key_for_remote_and_busy_addresses() -> None:
    remote = doctor.listen_check("0.0.0.0:8765", allow_remote=False)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        taken = doctor.listen_check(f"127.0.0.1:{port}", allow_remote=False)
    free = doctor.listen_check(f"127.0.0.1:{port}", allow_remote=False)

    assert not remote.ok and "web.listen" in remote.detail
    assert not taken.ok and "web.listen" in taken.fix
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
