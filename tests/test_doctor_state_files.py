"""`check`'s state directory line fails for a state file `run` could not read (one another
user left there, after a `sudo -E` run), instead of saying the directory is fine.

Root reads every file whatever its owner: `os.open` refuses the one file, as the
kernel does another user's 0600 file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from supervisor.doctor import state_dir_check
from supervisor.runtime.store import FILE_NAME, JOURNAL_NAME


@pytest.mark.parametrize("name", [FILE_NAME, f"{FILE_NAME}.prev", JOURNAL_NAME])
def test_a_state_file_that_cannot_be_read_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    (tmp_path / name).write_bytes(b"")
    real_open = os.open

    def refusing_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        if Path(path).name == name:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, flags, *args, **kwargs)

    assert state_dir_check(tmp_path).ok
    monkeypatch.setattr(os, "open", refusing_open)
    result = state_dir_check(tmp_path)
    assert not result.ok
    assert result.detail == f"cannot read {tmp_path / name}: Permission denied"
    assert result.fix == f"run check as the service's user, or give {tmp_path / name} back to that user (chown)"

