"""What a session's shell leaves behind when it ends or a call is refused: a `!get` upload
under way, a post the server refused for good. Real supervisor, the in-memory front end
(tests/memory_front.py) and real fake-agent processes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.chat import ChatError
from supervisor.core.events import Post
from supervisor.runtime import session_files
from supervisor.runtime.registry import STOP_BUDGET_S
from tests.memory_front import MemoryLink
from tests.test_memory_front import Run, running

UPLOAD_S = 1.5


def _slow_uploads(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """Uploads that take `seconds` (the memory front end keeps no files); the names begun."""
    begun: list[str] = []

    async def upload_file(self: MemoryLink, channel_id: str, name: str, data: bytes) -> str:
        begun.append(name)
        await trio.sleep(seconds)
        return f"file-{name}"

    monkeypatch.setattr(MemoryLink, "upload_file", upload_file)
    return begun


def _session(run: Run, root: str) -> Any:
    assert run.supervisor is not None
    return run.supervisor.registry.tasks.get(root)


async def _get_under_way(run: Run, begun: list[str]) -> str:
    """A session whose `!get report.txt` has begun uploading; its root."""
    root = await run.new_session("alpha")
    (Path(_session(run, root).core.record.cwd) / "report.txt").write_text("data")
    run.chat.say("!get report.txt", root)
    await run.wait_for(lambda: begun)
    return root


async def test_an_end_during_a_get_upload_waits_for_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`!end` while `!get`'s file uploads: the session's end cancelled the upload, silently,
    its `!get` handled already (nothing tries it again)."""
    begun = _slow_uploads(monkeypatch, UPLOAD_S)
    async with running(tmp_path) as run:
        root = await _get_under_way(run, begun)
        end = run.chat.say("!end", root)
        await run.wait_for(lambda: run.find(root, "📎 `report.txt`"), timeout=10)
        await run.wait_for(lambda: end.id in run.chat.handled and _session(run, root) is None, timeout=10)


async def test_a_stop_during_a_get_upload_waits_for_it_within_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop lets an upload under way finish, as it does a turn's last words; one that never
    does is cut at the stop's deadline, never hanging it."""
    begun = _slow_uploads(monkeypatch, UPLOAD_S)
    async with running(tmp_path) as run:
        root = await _get_under_way(run, begun)
        await run.stop()
        assert run.find(root, "📎 `report.txt`")

        begun = _slow_uploads(monkeypatch, 3600)
        await run.start()
        run.chat.say("!get report.txt", root)
        await run.wait_for(lambda: begun)
        with trio.fail_after(STOP_BUDGET_S + 1):
            await run.stop()
        assert not run.find(root, "📎 `report.txt`", "2")  # (the first one alone)


@pytest.mark.parametrize("refused", ["create", "edit"])
async def test_an_answer_refused_for_good_settles_its_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: str
) -> None:
    """The person deleted the thread's answer post (or the server refused it for good): the
    post was given up, but the core never heard, so the prompt stayed unsettled and the next
    start posted the whole answer again ("…restarted while the answer … was being posted").
    "create": the whole answer's one create is refused after its turn ended. "edit": the
    post is deleted while the answer streams, so its final text needs no call at all."""
    create_post, edit_post = MemoryLink.create_post, MemoryLink.edit_post

    async def refusing_create(self: MemoryLink, channel_id: str, message: str, **kwargs: Any) -> Post:
        if "echo #" in message:
            raise ChatError(404, "deleted", "the thread was deleted")
        return await create_post(self, channel_id, message, **kwargs)

    async def refusing_edit(self: MemoryLink, post_id: str, message: str) -> Post:
        if "echo #" in message:
            raise ChatError(404, "deleted", "the post was deleted")
        return await edit_post(self, post_id, message)

    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        if refused == "create":
            monkeypatch.setattr(MemoryLink, "create_post", refusing_create)
            hello = run.chat.say("hello", root)
        else:
            monkeypatch.setattr(MemoryLink, "edit_post", refusing_edit)
            hello = run.chat.say("[slow 2] hello", root)
        await run.wait_for(lambda: hello.id in run.chat.handled)
        session = _session(run, root)
        await run.wait_for(lambda: session.core.turn is None and session.outbox.is_settled(), timeout=10)
        await run.wait_for(lambda: not session.core.settling, timeout=5)
        assert run.supervisor is not None
        records = run.supervisor.store.state.sessions
        await run.wait_for(lambda: not records[session.core.record.id].unsettled, timeout=5)
        record = records[session.core.record.id]
        assert not record.answer_texts and not record.answered

        monkeypatch.setattr(MemoryLink, "create_post", create_post)
        monkeypatch.setattr(MemoryLink, "edit_post", edit_post)
        await run.stop()
        await run.start()
        run.chat.say("again", root)
        await run.wait_for(lambda: run.find(root, "echo #2: again") or run.find(root, "echo #1: again"))
        assert not run.find(root, "restarted while the answer")
        if refused == "create":  # (an edit's: its first words showed)
            assert not run.find(root, "echo #1: hello")


async def test_a_get_on_a_disk_that_hangs_is_given_up_and_the_end_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`!get` in a directory on a network mount that hangs: its worker thread never came
    back, and the session's end, which lets a `!get` under way finish, waited for ever."""
    hung = threading.Event()

    def hangs(*args: object) -> str:
        hung.wait(30)
        return "not reached"

    monkeypatch.setattr(session_files, "_check_get_path", hangs)
    monkeypatch.setattr(session_files, "DISK_PATIENCE_S", 0.5, raising=False)
    try:
        async with running(tmp_path) as run:
            root = await run.new_session("alpha")
            run.chat.say("!get report.txt", root)
            end = run.chat.say("!end", root)
            await run.wait_for(lambda: run.find(root, "Could not send `report.txt`", "did not answer"), timeout=10)
            await run.wait_for(lambda: end.id in run.chat.handled and _session(run, root) is None, timeout=10)
    finally:
        hung.set()
