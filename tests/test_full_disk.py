"""A state disk that refuses writes (full, over quota, failing): prompts wait, none is lost.

The handled mark of a prompt must be durable before the prompt goes to its agent, so while
the disk refuses it the prompt waits; the store tries the same write again until the disk
takes it, and the prompt is then answered, once. A start on such a disk says so in one
sentence. The last test fills a real file system (a tmpfs: it needs root, as `.ci/run`
has); the others make the disk refuse from inside, so they run anywhere.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from supervisor.chat.telegram import memory as telegram_memory
from supervisor.chat.telegram.memory import Memory
from supervisor.chat.web.db import WebDb
from supervisor.chat.web.store import open_web_store
from supervisor.core.state import SessionRecord
from supervisor.runtime import store as store_module
from supervisor.runtime.store import JOURNAL_NAME, Store, read_state
from tests.harness import REPO, World, world


class _Refusing:
    """`module.name` (a write) refuses with ENOSPC while `on`, then writes as it would."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module: object, name: str) -> None:
        self.on = True
        real = getattr(module, name)

        def write(*args: object) -> None:
            if self.on:
                raise OSError(errno.ENOSPC, "No space left on device")
            real(*args)

        monkeypatch.setattr(module, name, write)


def _record(name: str) -> SessionRecord:
    return SessionRecord(id=f"id-{name}", name=name, channel_id="dm", user_id="alice", cwd="/tmp")


def test_a_journal_line_the_disk_cut_short_is_taken_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk may take part of a line: nothing may follow a cut line (a replay stops
    there), so the journal is cut back to where it ended, and the retried line is whole."""
    store = Store.open(tmp_path)
    journal = store._journal
    assert journal is not None
    store_module.append_line(journal, b'{"first": "line"}\n')
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:7]))
    with pytest.raises(OSError, match="No space left on device: 7 of 24 bytes written"):
        store_module.append_line(journal, b'{"second": "line, cut"}\n')
    monkeypatch.undo()
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b'{"first": "line"}\n'
    store_module.append_line(journal, b'{"second": "line"}\n')
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b'{"first": "line"}\n{"second": "line"}\n'
    store.close()


async def test_a_cut_line_that_cannot_be_taken_back_is_left_behind_by_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk cut a line, then refused to truncate it away (EIO): nothing may be appended
    after it, so the batch goes into a whole snapshot and a fresh journal instead."""
    store = Store.open(tmp_path)
    journal = store._journal
    assert journal is not None
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        return real_write(fd, data[:5] if fd == journal.fd else data)

    def ftruncate(fd: int, size: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "ftruncate", ftruncate)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        with trio.fail_after(15):
            await store.save(_record("one"))
        nursery.cancel_scope.cancel()
    store.close()
    monkeypatch.undo()
    assert store.refusals == 1 and journal.torn
    on_disk = store_module.read_state(tmp_path)
    assert "id-one" in on_disk.state.sessions and not on_disk.problems
    assert (tmp_path / JOURNAL_NAME).read_bytes() == b""  # the cut line went with the old journal


async def test_a_refused_commit_is_tried_again_and_acknowledged_only_once_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    store = Store.open(tmp_path)
    disk = _Refusing(monkeypatch, store_module, "append_line")
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        saved = trio.Event()

        async def save() -> None:
            await store.save(_record("one"))
            saved.set()

        nursery.start_soon(save)
        with trio.move_on_after(1.5):
            await saved.wait()
        assert not saved.is_set() and store.refusals >= 2  # waiting, and asking again
        assert "id-one" not in read_state(tmp_path).state.sessions
        disk.on = False
        with trio.fail_after(15):
            await saved.wait()
        assert "id-one" in read_state(tmp_path).state.sessions
        nursery.cancel_scope.cancel()
    store.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [f"cannot write the state to {tmp_path} (No space left on device): trying again; "
                      "prompts wait for it, and nothing is lost"]  # once, not once per attempt
    assert any(f"the state is written to {tmp_path} again" in r.getMessage() for r in caplog.records)


async def test_a_failed_snapshot_leaves_no_temp_file_and_the_journal_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(tmp_path)
    store.journal_bound, store.journal_per_snapshot = 1, 0  # every batch ends with a snapshot
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".sessions.json.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run)
        await store.save(_record("one"))
        await store.save(_record("two"))  # its line goes to the same journal
        nursery.cancel_scope.cancel()
    store.close()
    monkeypatch.undo()
    assert not (tmp_path / ".sessions.json.tmp").exists()
    assert set(read_state(tmp_path).state.sessions) == {"id-one", "id-two"}


async def test_while_the_disk_refuses_the_state_a_prompt_waits_then_is_answered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with world(tmp_path) as w:
        supervisor = await w.start()
        root = await w.new_session("one")
        await w.say("hello", root)
        await w.answered(root, "echo #1: hello")
        disk = _Refusing(monkeypatch, store_module, "append_line")
        await w.say("while the disk is full", root)
        await w.wait_for(lambda: supervisor.store.refusals >= 2)
        assert "echo #2" not in w.thread_text(root)  # not before its mark is on disk
        # ... and the person is told why, in the main DM, once.
        told = await w.wait_for(lambda: _main_posts(w, "cannot write its state"))
        assert told == [f"⚠️ The supervisor cannot write its state to `{tmp_path / 'state'}` (No space left on "
                        "device). Prompts wait until it can, and none is lost: make room there and they go on."]
        disk.on = False
        await w.answered(root, "echo #2: while the disk is full")
        await w.wait_for(lambda: _main_posts(w, "writes its state again"))
        assert len(_main_posts(w, "cannot write its state")) == 1
        await w.say("and after", root)
        await w.answered(root, "echo #3: and after")
        assert w.thread_text(root).count("echo #2: while the disk is full") == 1


async def test_the_person_is_told_of_a_refusing_disk_though_a_command_waits_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first thing written while the disk refuses is a main-place command: its answer
    waits for its handled mark, and the notice waited behind it, in the same lane, until
    the disk had room again (the notice is said once per 10 minutes)."""
    async with world(tmp_path) as w:
        supervisor = await w.start()
        await w.new_session("one")
        disk = _Refusing(monkeypatch, store_module, "append_line")
        await w.say("!help")
        await w.wait_for(lambda: supervisor.store.refusals >= 2)
        await w.wait_for(lambda: _main_posts(w, "cannot write its state"))
        disk.on = False
        await w.wait_for(lambda: _main_posts(w, "writes its state again"))


def _main_posts(w: World, needle: str) -> list[str]:
    return [p["message"] for p in w.bot_posts() if not p["root_id"] and needle in p["message"]]


@contextlib.contextmanager
def _tiny_disk(at: Path, kib: int) -> Iterator[None]:
    """A real file system of `kib` KiB at `at` (a tmpfs), or a skip where none can be mounted."""
    at.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=700", "tmpfs", str(at)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False)


def _fill(directory: Path) -> Path:
    """Fill the file system `directory` is on, to the last byte."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0")
    return filler


async def _prompt_until_one_waits(w: World, root: str, first: int, text: str) -> int:
    """Prompt `text N` for N = first, first + 1, ... until one is not answered (the
    journal's last page may have room for a line or a few on a full disk): that N."""
    for n in range(first, first + 40):
        await w.say(f"{text} {n}", root)
        with trio.move_on_after(5):
            await w.answered(root, f"echo #{n}: {text} {n}")
            continue
        return n
    raise AssertionError("the disk never refused a write")


async def test_a_really_full_disk_delays_prompts_loses_none_and_a_start_on_it_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with _tiny_disk(state, 1024):
        async with world(tmp_path) as w:
            process = w.spawn()
            root = await w.new_session("one")
            await w.say("hello", root)
            await w.answered(root, "echo #1: hello")
            # Full while serving: the prompt waits, then is answered once there is room.
            filler = _fill(state)
            n = await _prompt_until_one_waits(w, root, 2, "while the disk is full")
            await trio.sleep(1)
            assert f"echo #{n}" not in w.thread_text(root) and process.poll() is None
            assert f"cannot write the state to {state} (No space left on device" in w.log_text()
            filler.unlink()
            await w.answered(root, f"echo #{n}: while the disk is full {n}", timeout=30)
            assert w.thread_text(root).count(f"echo #{n}: while the disk is full {n}") == 1
            assert f"the state is written to {state} again" in w.log_text()
            assert len(_main_posts(w, "cannot write its state")) == 1  # the person was told
            await w.wait_for(lambda: _main_posts(w, "writes its state again"))
            # Full again, and a stop meanwhile: it does not wait for the disk.
            filler = _fill(state)
            m = await _prompt_until_one_waits(w, root, n + 1, "full again")
            process.terminate()
            assert await trio.to_thread.run_sync(functools.partial(process.wait, 10)) == 0
            assert "stopping without writing the state: the disk refuses it" in w.log_text()
            # A start on the full disk: one sentence, exit 1.
            run = [sys.executable, "-m", "supervisor", "run", "--config", str(w.config_path)]
            refused = await trio.to_thread.run_sync(functools.partial(
                subprocess.run, run, capture_output=True, text=True, timeout=30, cwd=tmp_path,
                env={**os.environ, "PYTHONPATH": str(REPO)}))
            assert refused.returncode == 1, refused.stderr
            (said,) = refused.stderr.strip().splitlines()
            assert f"cannot write the state to {state} (No space left on device): make room there" in said
            # With room again, the next start answers the prompt that waited, once. (Or, if
            # its handled mark still fitted in the disk's last block and the turn's end did
            # not, it reached the agent: then the start says its turn was cut, with 🔁.)
            filler.unlink()
            w.spawn()
            answer, cut = f"echo #{m}: full again {m}", "that turn was cut"
            await w.wait_for(lambda: answer in w.thread_text(root) or cut in w.thread_text(root), 30)
            await w.say("and after", root)
            await w.answered(root, ": and after (earlier: ", timeout=30)
            assert w.thread_text(root).count(answer) <= 1 and (answer in w.thread_text(root)) != (cut in w.thread_text(root))
            assert "Traceback" not in w.log_text()


async def test_telegrams_memory_waits_for_a_refusing_disk_and_then_holds_the_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The update offset is confirmed to Telegram only once it is in telegram.json: while
    the disk refuses that file, the commit waits (and Telegram keeps the updates)."""
    memory = Memory.open(tmp_path)
    disk = _Refusing(monkeypatch, telegram_memory, "write_atomically")
    memory.offset = 42
    memory.changed()
    committed = trio.Event()

    async def commit() -> None:
        await memory.commit()
        committed.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit)
        with trio.move_on_after(1):
            await committed.wait()
        assert not committed.is_set() and not (tmp_path / telegram_memory.FILE_NAME).exists()
        disk.on = False
        with trio.fail_after(15):
            await committed.wait()
    assert Memory.open(tmp_path).offset == 42
    said = [(r.name, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert said[0][0] == "supervisor.telegram" and said[0][1].startswith(f"cannot write `telegram.json` to {tmp_path} (")
    assert said[-1][1].startswith(f"`telegram.json` is written to {tmp_path} again")


async def test_a_web_chat_call_the_disk_refuses_is_made_again_once_it_has_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite said "database or disk is full" and rolled the call's transaction back: the
    call is made again (the page's post, a reply, waits), and other errors still raise."""
    async with open_web_store(tmp_path) as store:
        refusals = 3

        def add(db: WebDb, name: str, data: bytes) -> dict[str, object]:
            nonlocal refusals
            if refusals:
                refusals -= 1
                full = sqlite3.OperationalError("database or disk is full")
                full.sqlite_errorcode = sqlite3.SQLITE_FULL
                raise full
            return db.add_file(name, data)

        with trio.fail_after(20):
            ref = await store.call(add, "notes.txt", b"kept")
        assert refusals == 0 and await store.call(WebDb.file, ref["id"]) == ("notes.txt", b"kept")
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors == [f"cannot write the web chat's messages to {tmp_path} (database or disk is full): "
                          "trying again; web chat messages wait for it, and nothing is lost"]

        def broken(db: WebDb) -> None:
            raise sqlite3.OperationalError("no such table: nowhere")

        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await store.call(broken)


async def test_the_web_chats_database_on_a_really_full_disk_waits_then_keeps_the_message(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with _tiny_disk(state, 1024):
        async with open_web_store(state) as store:
            thread = await store.call(WebDb.open_thread, "k1", "one", "claude", "/tmp")
            filler = _fill(state)
            done = trio.Event()

            async def post() -> None:
                await store.call(WebDb.create, thread.id, "alice", "text", "x" * 100_000, client_id="c1")
                done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(post)
                with trio.move_on_after(1.5):
                    await done.wait()
                assert not done.is_set()
                filler.unlink()
                with trio.fail_after(20):
                    await done.wait()
            messages = await store.call(WebDb.thread_messages, thread.id, None, 10)
            assert [m.text for m in messages] == ["x" * 100_000]
