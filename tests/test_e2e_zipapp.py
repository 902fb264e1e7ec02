"""The built zipapp, run as a user runs it, serving a session end to end.

`python3 -I supervisor.pyz run` on `bare_python` (trio, httpx, attrs, cattrs not
importable), from an empty working directory, with an empty HOME and TMPDIR and no
PYTHONPATH: only what travels inside the archive can make it pass. While it serves, every
file under the test's directory is watched: the supervisor may write only in `state.dir`
and in the session's working directory (plus what the harness itself owns: the fake
agent's home and log, and the supervisor's stderr log).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import trio

from tests.harness import FAKE_AGENT, World, world

pytest_plugins = ["tests.zipapp_fixture"]  # zipapp_path, bare_python

# Environment that could make the repository (or anything else) importable, or point
# caches somewhere other than HOME.
SCRUBBED = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "VIRTUAL_ENV",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
)

Snapshot = dict[str, tuple[str, int, str]]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root`: kind, size and content digest (files) - what changed shows."""
    found: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            path = Path(dirpath, name)
            found[path.relative_to(root).as_posix() + "/"] = ("dir", 0, "")
        for name in filenames:
            path = Path(dirpath, name)
            try:
                data = path.read_bytes() if path.is_file() else b""
            except OSError:
                continue  # vanished between listing and reading
            kind = "file" if path.is_file() else "other"
            found[path.relative_to(root).as_posix()] = (
                kind,
                len(data),
                hashlib.sha256(data).hexdigest(),
            )
    return found


def changed(before: Snapshot, after: Snapshot) -> list[str]:
    """Paths created, changed or removed."""
    return sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


def spawn_zipapp(
    w: World, python: Path, pyz: Path, *, cwd: Path, home: Path, tmpdir: Path
) -> subprocess.Popen[bytes]:
    """`python -I supervisor.pyz run --config ...`, as a user starts it; stderr to supervisor.log.

    Not `World.spawn`: that puts the repository on PYTHONPATH and runs in the test's
    directory, either of which could hide a missing piece of the archive.
    """
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED}
    env.update(HOME=str(home), TMPDIR=str(tmpdir))
    with open(w.tmp / "supervisor.log", "ab") as log:
        w.process = subprocess.Popen(
            [str(python), "-I", str(pyz), "run", "--config", str(w.config_path)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    return w.process


async def test_zipapp_on_a_bare_python_serves_a_session_and_writes_only_its_state_and_the_session_dir(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            # The supervisor's own HOME, TMPDIR and cwd: empty, and they must stay so.
            home, tmpdir, cwd, bin_dir = (
                tmp_path / n for n in ("sup-home", "sup-tmp", "sup-cwd", "bin")
            )
            for directory in (home, tmpdir, cwd, bin_dir):
                directory.mkdir()
            pyz = bin_dir / "supervisor.pyz"
            shutil.copy2(zipapp_path, pyz)
            session_dir = w.work / "zip"
            session_dir.mkdir()
            # The fake agent (a test stand-in, not the product) keeps its temporary files
            # in its own home, so whatever lands in the supervisor's TMPDIR is the
            # supervisor's.
            w.configure(
                agent={
                    "env": {
                        "HOME": str(w.home),
                        "TMPDIR": str(w.home),
                        "FAKE_AGENT_LOG": str(w.agent_log),
                    }
                },
                agent_command=[sys.executable, str(FAKE_AGENT)],
            )
            (tmp_path / "supervisor.log").touch()
            before = snapshot(tmp_path)

            process = spawn_zipapp(w, bare_python, pyz, cwd=cwd, home=home, tmpdir=tmpdir)
            with trio.fail_after(20):
                await w.server.wait_for_websocket()
            root_id = await w.new_session("zip", session_dir)
            await w.say("hello from the zipapp", root_id)
            text = await w.answered(root_id, "echo #1: hello from the zipapp")
            answers = [p for p in w.bot_posts() if "hello from the zipapp" in p["message"]]
            assert answers and all(p["root_id"] == root_id for p in answers), text
            starts = w.agent_starts()
            assert len(starts) == 1 and starts[0]["cwd"] == str(session_dir)

            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with trio.fail_after(10):
                await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
            log = w.log_text()
            assert process.returncode == 0, log
            assert time.monotonic() - started < 10
            assert "Traceback" not in log, log
            assert w.server.bot_token not in log

            after = snapshot(tmp_path)
            assert list(home.iterdir()) == []
            assert list(tmpdir.iterdir()) == []
            assert list(cwd.iterdir()) == []
            assert list(bin_dir.iterdir()) == [pyz]  # no __pycache__, no unpacked files
            assert before["bin/supervisor.pyz"] == after["bin/supervisor.pyz"]
            allowed = ("state/", "work/zip/", "home/", "agent-log/", "supervisor.log")
            outside = [p for p in changed(before, after) if not p.startswith(allowed)]
            assert outside == []
            # and it did write where it should: the mapping file
            assert "state/sessions.json" in after
