"""What one person's message can do to the supervisor: at most end its own session, and
never lose or double-answer another's. Real supervisor, the in-memory front end
(tests/memory_front.py) and real fake-agent processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from supervisor.chat import ChatError
from supervisor.core import thread_texts
from supervisor.core.events import Post, Posted
from supervisor.runtime import store as store_module
from supervisor.runtime.session import SessionTask
from supervisor.runtime.session_inbox import EndIn
from tests.memory_front import BOT, MemoryChat, MemoryLink
from tests.test_memory_front import Run, running

LONG_NAME = "a" * 300  # over the 255 bytes a file name may have: the disk refuses to look


def bot_texts(run: Run, root: str) -> list[str]:
    return [m.post.message for m in run.chat.thread(root) if m.post.user_id == BOT.id]


async def test_a_directory_the_disk_cannot_look_at_is_refused_not_a_crash(tmp_path: Path) -> None:
    """`!new` of a name too long (or `~` of nobody here): said not to be a directory,
    and the supervisor goes on (the check once ended it, and the unanswered `!new` came
    back with the next start to end it again)."""
    async with running(tmp_path) as run:
        too_long = run.chat.say(f"!new alpha {LONG_NAME}")
        nobody = run.chat.say("!new beta ~nobody-by-this-name/x")
        await run.wait_for(lambda: sum("is not an existing directory" in t for t in run.chat.texts()) == 2)
        await run.wait_for(lambda: too_long.id in run.chat.handled and nobody.id in run.chat.handled)
        root = await run.new_session("gamma")
        run.chat.say("still here?", root)
        await run.wait_for(lambda: run.find(root, "echo #1: still here?"))


async def test_a_get_the_disk_cannot_look_at_is_answered_and_the_session_goes_on(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say(f"!get {LONG_NAME}", root)
        await run.wait_for(lambda: run.find(root, "cannot be read here: File name too long"))
        run.chat.say("still here?", root)
        await run.wait_for(lambda: run.find(root, "echo #1: still here?"))


async def test_a_defect_met_in_one_session_ends_that_session_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session says so in its thread and is failed (durably: a restart does not run it
    again); the other sessions and the main place go on."""

    def broken(*args: object) -> str:
        raise RuntimeError("a defect for the test")

    async with running(tmp_path) as run:
        alpha, beta = await run.new_session("alpha"), await run.new_session("beta")
        monkeypatch.setattr(thread_texts, "status_text", broken)
        run.chat.say("!status", alpha)
        await run.wait_for(lambda: run.find(alpha, "❌ This session stopped on a defect of the supervisor"))
        assert run.find(alpha, "(RuntimeError: a defect for the test; see its log)")
        run.chat.say("hello", beta)
        await run.wait_for(lambda: run.find(beta, "echo #1: hello"))
        later = run.chat.say("anyone?", alpha)
        await run.wait_for(lambda: run.find(alpha, "This session has ended") and later.id in run.chat.handled)
        assert run.supervisor is not None
        (record,) = [r for r in run.supervisor.store.state.sessions.values() if r.name == "alpha"]
        assert record.status == "failed"


async def test_a_defect_met_in_a_main_place_command_is_answered_and_handled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(tmp_path) as run:
        assert run.supervisor is not None

        def broken(channel_id: str) -> str:
            raise RuntimeError("a defect for the test")

        monkeypatch.setattr(run.supervisor.desk, "sessions_text", broken)
        asked = run.chat.say("!sessions")
        await run.wait_for(lambda: any("That failed on a defect of the supervisor" in t for t in run.chat.texts()))
        await run.wait_for(lambda: asked.id in run.chat.handled)  # not asked again by the next start
        await run.new_session("alpha")


async def test_what_waits_behind_an_end_is_answered_and_handled(tmp_path: Path) -> None:
    """Posts already in the session's inbox when it ends (written right after `!end`)
    once vanished with it: never answered, never marked handled."""
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        await run.wait_for(lambda: any("Started session **alpha**" in t for t in run.chat.texts()))
        run.chat.say("!end", root)
        after = [run.chat.say(f"after the end {i}", root) for i in range(3)]
        await run.wait_for(lambda: all(p.id in run.chat.handled for p in after))
        assert sum("This session has ended" in t for t in bot_texts(run, root)) == 3


async def test_a_post_written_while_the_supervisor_stops_is_answered_by_the_next_start(tmp_path: Path) -> None:
    """During a graceful stop the sessions end first; a post in a live thread then was
    answered "this session has ended" and marked handled, and never ran."""
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("hello", root)
        await run.wait_for(lambda: run.find(root, "echo #1: hello"))
        supervisor, running_ = run.supervisor, run.running
        assert supervisor is not None and running_ is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervisor.shutdown)
            with trio.fail_after(10):
                while root in supervisor.registry.tasks:
                    await trio.sleep(0.01)
            late = run.chat.say("written during the stop", root)
            await trio.sleep(0.5)
        assert late.id not in run.chat.handled
        assert not any("has ended" in t for t in bot_texts(run, root))
        await run.stop()
        await run.start()
        await run.wait_for(lambda: run.find(root, "echo #2: written during the stop"))
        assert not any("has ended" in t for t in bot_texts(run, root))


async def test_a_thread_commands_reply_shows_only_once_its_post_is_marked_handled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a slow disk too: a kill between the reply and the mark would answer it twice."""
    marked_at_reply: list[bool] = []
    asked_ids: list[str] = []
    add = MemoryChat._add

    def watched(self: MemoryChat, user_id: str, text: str, root_id: str, key: str = "", title: str = "") -> object:
        if user_id == BOT.id and text.startswith("**alpha**") and asked_ids:
            marked_at_reply.append(asked_ids[0] in self.handled)
        return add(self, user_id, text, root_id, key, title)

    append = store_module._timed_append

    def slow(*args: object) -> object:
        time.sleep(0.05)  # a slow disk: the store's writes go to its worker thread
        return append(*args)  # type: ignore[arg-type]

    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        monkeypatch.setattr(MemoryChat, "_add", watched)
        monkeypatch.setattr(store_module, "_timed_append", slow)
        asked_ids.append(run.chat.say("!status", root).id)
        await run.wait_for(lambda: marked_at_reply)
        assert marked_at_reply == [True]


async def test_a_thread_root_that_came_in_though_posting_it_failed_serves_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root's post reached the server and came back on the event stream (the router
    made its session routable), but its own answer was lost: the session once stayed
    registered and never started, its thread's posts waiting in an inbox nobody read."""
    open_thread = MemoryLink.open_thread

    async def lost_answer(self: MemoryLink, channel_id: str, header: str, *, key: str, title: str) -> Post:
        post = await open_thread(self, channel_id, header, key=key, title=title)
        assert self.chat.events is not None
        self.chat.events.send_nowait(Posted(attrs.evolve(post, idempotency_key=key)))
        await trio.sleep(0.2)  # the router hears it
        raise ChatError(502, "bad_gateway", "the answer was lost on its way")

    async with running(tmp_path) as run:
        monkeypatch.setattr(MemoryLink, "open_thread", lost_answer)
        root = await run.new_session("alpha")
        await run.wait_for(lambda: any("Started session **alpha**" in t for t in run.chat.texts()))
        run.chat.say("hello", root)
        await run.wait_for(lambda: run.find(root, "echo #1: hello"))


@pytest.mark.slow  # ~16 s: the outage must outlast the 10 s the last posts were once given
async def test_an_ended_sessions_last_words_wait_out_an_outage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`!end` while the server is away: the "ended" note, saved nowhere else, was given up
    after 10 s, silently, and never shown."""
    create_post = MemoryLink.create_post
    away = True

    async def outage(self: MemoryLink, channel_id: str, message: str, **kwargs: Any) -> Post:
        if away and kwargs.get("root_id"):
            raise ChatError(503, "unavailable", "the server is away")
        return await create_post(self, channel_id, message, **kwargs)

    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        await run.wait_for(lambda: any("Started session **alpha**" in t for t in run.chat.texts()))
        monkeypatch.setattr(MemoryLink, "create_post", outage)
        end = run.chat.say("!end", root)
        await run.wait_for(lambda: end.id in run.chat.handled)
        await trio.sleep(12)
        away = False
        await run.wait_for(lambda: any("Session **alpha** ended" in t for t in bot_texts(run, root)), timeout=30)


async def test_a_new_sessions_directory_on_a_hung_mount_freezes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its look at the disk blocked the event loop (a stale NFS mount blocks in the kernel):
    every session, and the stop, froze with it. Now it is refused after a while, and the
    other sessions go on meanwhile."""
    from supervisor.runtime import desk as desk_module

    is_dir = Path.is_dir

    def hung(self: Path, *args: Any, **kwargs: Any) -> bool:
        if "hung-mount" in str(self):
            time.sleep(3)
        return is_dir(self, *args, **kwargs)

    monkeypatch.setattr(desk_module, "DIRECTORY_LOOK_S", 1.0)
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        monkeypatch.setattr(Path, "is_dir", hung)
        run.chat.say("!new beta /hung-mount/project")
        await trio.sleep(0.2)
        started = trio.current_time()
        run.chat.say("still here?", root)
        await run.wait_for(lambda: run.find(root, "echo #1: still here?"))
        assert trio.current_time() - started < 2  # not behind the 3 s look
        await run.wait_for(lambda: any("did not answer within 1 s" in t for t in run.chat.texts()))


async def test_a_session_failed_on_a_defect_says_its_queued_prompts_did_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompts queued behind the running turn, and those still in its inbox, were
    never answered nor marked handled: in flight for the rest of the run (holding their
    place's cursor), answered only after a restart."""

    def broken(*args: object) -> str:
        raise RuntimeError("a defect for the test")

    async with running(tmp_path) as run:
        alpha = await run.new_session("alpha")
        run.chat.say("[slow 20] a long one", alpha)
        await run.wait_for(lambda: run.supervisor is not None and any(
            t.core.turn for t in run.supervisor.registry.tasks.values()))  # fmt: skip
        queued = run.chat.say("queued behind it", alpha)
        await run.wait_for(lambda: any(t.core.queue for t in run.supervisor.registry.tasks.values()))
        monkeypatch.setattr(thread_texts, "status_text", broken)
        run.chat.say("!status", alpha)
        await run.wait_for(lambda: run.find(alpha, "❌ This session stopped on a defect of the supervisor"))
        assert run.find(alpha, "Not run", queued.id)
        await run.wait_for(lambda: queued.id in run.chat.handled)


async def test_an_end_by_name_the_session_had_not_taken_before_a_stop_is_done_by_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`!end NAME` in the main place, said "Ending session", but its session busy (a frozen
    agent's pipe, a backlog) until the supervisor stopped: its mark once came with the
    reply, so the session came back live and the `!end` was never done."""
    take = SessionTask._take

    async def deaf_to_ends(self: SessionTask, message: object) -> None:
        if isinstance(message, EndIn):
            await trio.sleep_forever()
        await take(self, message)  # type: ignore[arg-type]

    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        monkeypatch.setattr(SessionTask, "_take", deaf_to_ends)
        asked = run.chat.say("!end alpha")
        await run.wait_for(lambda: any("Ending session **alpha**" in t for t in run.chat.texts()))
        await trio.sleep(0.3)
        assert asked.id not in run.chat.handled  # the session has not ended yet
        await run.stop()
        monkeypatch.setattr(SessionTask, "_take", take)
        await run.start()
        await run.wait_for(lambda: run.find(root, "🏁 Session **alpha** ended") is not None and asked.id in run.chat.handled)
        assert run.supervisor is not None
        (record,) = [r for r in run.supervisor.store.state.sessions.values() if r.name == "alpha"]
        assert record.status == "ended"
