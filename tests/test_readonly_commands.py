"""Issue 9, defect 6: `sessions` and `check` only read. With a damaged state file, even
while a daemon may be running, they must change nothing on disk: no rename, no probe file,
no directory created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trio

from supervisor.core.state import SessionRecord, State, encode
from supervisor.runtime.store import FILE_NAME, write_atomically
from tests.harness import REPO, world

DAMAGED = b'{"version": 1, "sessions": {"a": {"na'


def _snapshot(directory: Path) -> dict[str, object]:
    """Every name, its bytes and its times, and the directory's own times."""
    if not directory.exists():
        return {"missing": True}
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}
    return {"files": files, "dir_mtime": directory.stat().st_mtime_ns}


def _damaged_state_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    record = SessionRecord(id="a", name="kept", channel_id="c", user_id="u", cwd="/", root_id="r" * 26)
    write_atomically(directory, encode(State(sessions={"a": record})))
    write_atomically(directory, encode(State(sessions={"a": record})))  # a .prev exists too
    (directory / FILE_NAME).write_bytes(DAMAGED)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supervisor", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def test_sessions_with_a_damaged_state_file_changes_nothing_on_disk(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        state = tmp_path / "state"
        _damaged_state_dir(state)
        before = _snapshot(state)
        table = await trio.to_thread.run_sync(_run, "sessions", "--config", str(w.config_path))
        as_json = await trio.to_thread.run_sync(_run, "sessions", "--json", "--config", str(w.config_path))
        assert _snapshot(state) == before, "a read-only command changed the state directory"
        # it still shows what it can: the previous good copy, and says the file is damaged
        assert table.returncode == 0 and "kept" in table.stdout, table
        assert "damaged" in table.stderr
        assert as_json.returncode == 0 and '"kept"' in as_json.stdout


async def test_check_changes_nothing_on_disk(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        state = tmp_path / "state"
        _damaged_state_dir(state)
        before = _snapshot(state)
        report = await trio.to_thread.run_sync(_run, "check", "--config", str(w.config_path))
        assert "state directory" in report.stdout, report
        assert _snapshot(state) == before, "check changed the state directory"


async def test_check_does_not_create_a_missing_state_dir(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        missing = tmp_path / "new" / "state"
        w.configure(agent={}, mattermost={})
        text = w.config_path.read_text().replace(str(tmp_path / "state"), str(missing))
        w.config_path.write_text(text)
        report = await trio.to_thread.run_sync(_run, "check", "--config", str(w.config_path))
        assert report.returncode == 0, report.stdout
        assert not (tmp_path / "new").exists(), "check created the state directory"
        assert "`run` will create it" in report.stdout
