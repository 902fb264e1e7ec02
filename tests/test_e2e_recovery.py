"""Issue 9, defects 1 and 11: a crash during `!new` is recovered on the next start, and the
command is handled once: one thread root, one "Started session" answer, never "already called".
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import attrs
import pytest
import trio

from supervisor.chat import ChatError
from supervisor.chat.mattermost import link as mattermost_link
from supervisor.chat.mattermost.codec import CREATE_MARK
from supervisor.core import texts
from supervisor.core.state import SessionRecord, State, encode
from supervisor.runtime import desk as desk_module
from supervisor.runtime.store import Store, read_state, write_atomically
from tests.harness import World, world


def _roots(w: World, name: str) -> list[dict[str, object]]:
    return [p for p in w.bot_posts() if not p["root_id"] and f"Session `{name}`" in str(p["message"])]


def _started(w: World, name: str) -> list[dict[str, object]]:
    return [p for p in w.bot_posts() if not p["root_id"] and f"Started session **{name}**" in str(p["message"])]


def _refusals(w: World) -> list[str]:
    return [str(p["message"]) for p in w.bot_posts() if "already called" in str(p["message"])]


async def _serving(w: World) -> None:
    """The spawned supervisor is connected; fails at once, with its log, if it exited."""
    with trio.fail_after(30):
        while not w.server.websockets(w.server.bot.id):
            assert w.process is not None and w.process.poll() is None, f"the supervisor exited:\n{w.log_text()}"
            await trio.sleep(0.02)


async def _desk_idle(w: World) -> None:
    """Everything posted in the main DM before now has been handled: the desk answers in
    order, so once a fresh `!help` is answered, any duplicate answer would be visible."""
    before = sum(1 for p in w.bot_posts() if "**Commands**" in str(p["message"]))
    await w.say("!help")
    await w.wait_for(lambda: sum(1 for p in w.bot_posts() if "**Commands**" in str(p["message"])) > before, 30)


def _pending_record(w: World, name: str) -> SessionRecord:
    """A record as `!new` saves it before its thread root is posted."""
    directory = w.work / name
    directory.mkdir(exist_ok=True)
    return SessionRecord(
        id="0b7c4c8e-1d0e-4c1a-9d8e-2f5a6b7c8d9e",
        name=name,
        channel_id=w.dm,
        user_id=w.alice.id,
        cwd=str(directory),
        root_pending_id=f"{w.alice.id}:feedfacefeedfacefeedfacefeedface",
        created_at=texts.utc_iso(time.time()),
    )


async def test_a_record_saved_before_its_thread_root_is_recovered_on_the_first_start(tmp_path: Path) -> None:
    """Defect 1: the next start used to die (AssertionError: no sessions nursery yet)."""
    async with world(tmp_path) as w:
        record = _pending_record(w, "halfway")
        write_atomically(tmp_path / "state", encode(State(sessions={record.id: record})))
        process = w.spawn()
        await _serving(w)
        root = await w.wait_for(lambda: _roots(w, "halfway"), 20)
        assert process.poll() is None, w.log_text()
        assert "AssertionError" not in w.log_text()
        state = read_state(tmp_path / "state").state
        assert state.sessions[record.id].root_id == root[0]["id"]
        # the recovered session serves its thread
        await w.say("are you there?", str(root[0]["id"]))
        await w.answered(str(root[0]["id"]), "echo #1: are you there?", timeout=30)
        assert len(_roots(w, "halfway")) == 1


async def test_a_thread_root_posted_before_the_crash_is_found_not_posted_again(tmp_path: Path) -> None:
    """The root reached the server, the record did not learn its id: the next start finds
    it (pending post ids are not stored by the server, so by its text), and does not post
    a second root."""
    async with world(tmp_path) as w:
        record = _pending_record(w, "posted")
        write_atomically(tmp_path / "state", encode(State(sessions={record.id: record})))
        bot = w.server.bot.username
        root = await w.server.user_post_in(w.dm, bot, texts.thread_root(record, mattermost_link.WORDS, "claude"))
        await w.start()
        assert w.supervisor is not None
        await w.wait_for(lambda: str(root["id"]) in w.supervisor.tasks if w.supervisor else False, 20)
        assert len(_roots(w, "posted")) == 1
        await w.say("still one thread?", str(root["id"]))
        await w.answered(str(root["id"]), "echo #1: still one thread?", timeout=30)
        assert w.supervisor.store.state.sessions[record.id].root_id == root["id"]


async def test_a_thread_root_whose_text_changed_since_is_found_by_its_mark(tmp_path: Path) -> None:
    """The root reached the server and the crash came before the record learnt its id;
    the text a start would post now differs (another default agent, a newer header): the
    root is still found, by the idempotency mark our posts carry in their props."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            record = _pending_record(w, "renamed")
            write_atomically(tmp_path / "state", encode(State(sessions={record.id: record})))
            bot = w.server.bot.username
            old_text = texts.thread_root(record, mattermost_link.WORDS, "an agent since renamed")
            root = await w.server.user_post_in(w.dm, bot, old_text, props={CREATE_MARK: record.root_pending_id})
            await w.start()
            assert w.supervisor is not None
            await w.wait_for(lambda: str(root["id"]) in w.supervisor.tasks if w.supervisor else False, 20)
            assert len(_roots(w, "renamed")) == 1
            assert w.supervisor.store.state.sessions[record.id].root_id == root["id"]


@pytest.mark.parametrize(
    ("root_known", "stuck_beside"), [(False, False), (True, False), (True, True)],
    ids=["root-unknown", "root-known", "beside-one-stuck"],
)
async def test_a_reply_under_a_cut_announcement_the_start_could_not_finish_reaches_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_known: bool, stuck_beside: bool
) -> None:
    """The crash cut `!new` after its root was posted (its record knowing the root's id, or
    not); at the next start the server refused the look for what was announced. The reply
    written under that root meanwhile got the "start a session" hint and was handled: lost.
    Now the session is routable at once (or once the catch-up brings its root), and the
    announcement is finished in the background: the reply reaches the agent, also when
    another cut announcement, queued before it, can never be finished."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            record = _pending_record(w, "refused")
            bot = w.server.bot.username
            text = texts.thread_root(record, mattermost_link.WORDS, "claude")
            root = await w.server.user_post_in(w.dm, bot, text, props={CREATE_MARK: record.root_pending_id})
            record = attrs.evolve(record, answer_pending=True, root_id=str(root["id"]) if root_known else "")
            sessions = {record.id: record}
            if stuck_beside:  # first in the state (by id): its retries were first in the one queue
                stuck_root = await w.server.user_post_in(w.dm, bot, "the stuck session's root")
                stuck = attrs.evolve(record, id="00000000-stuck", name="stuck", root_pending_id=f"{w.alice.id}:stuck",
                                     root_id=str(stuck_root["id"]))  # fmt: skip
                sessions = {stuck.id: stuck, **sessions}
                real_announce = desk_module.Desk._announce

                async def announce(desk: desk_module.Desk, cut: SessionRecord, *, recovering: bool) -> None:
                    if cut.name == "stuck":
                        raise ChatError(403, "api.context.permissions.app_error", "its place refuses for good")
                    await real_announce(desk, cut, recovering=recovering)

                monkeypatch.setattr(desk_module.Desk, "_announce", announce)
            write_atomically(tmp_path / "state", encode(State(sessions=sessions)))
            await w.say("are you there?", str(root["id"]))
            # The start's look for what was announced is refused; the catch-up's is not.
            w.server.fail_requests(404, path_prefix=f"/api/v4/channels/{w.dm}/posts", method="GET", count=1)
            await w.start()
            await w.answered(str(root["id"]), "echo #1: are you there?", timeout=30)
            await w.wait_for(lambda: _started(w, "refused"), 20)
            assert len(_roots(w, "refused")) == 1 and len(_started(w, "refused")) == 1
            hints = [p for p in w.bot_posts(str(root["id"])) if "echo" not in str(p["message"])]
            assert not hints, hints
            assert w.supervisor is not None
            saved = w.supervisor.store.state.sessions[record.id]
            assert saved.root_id == root["id"] and not saved.answer_pending


@pytest.mark.slow
async def test_kills_0_to_60ms_after_new_handle_it_once_and_answer_once(tmp_path: Path) -> None:
    """Defects 1 and 11: SIGKILL a few ms after `!new`, start again. Every start serves, and
    each `!new` ends with exactly one thread root and exactly one answer linking it."""
    rng = random.Random(int(os.environ.get("CRASH_SEED", "9011")))
    kills = int(os.environ.get("NEW_KILLS", "10"))
    async with world(tmp_path) as w:
        w.spawn()
        await _serving(w)
        for n in range(kills):
            name = f"k{n}"
            (w.work / name).mkdir()
            await w.say(f"!new {name} {w.work / name}")
            await trio.sleep(rng.uniform(0, 0.06))
            w.kill()
            w.spawn()
            await _serving(w)
            assert w.process is not None and w.process.poll() is None, w.log_text()

            def announced(name: str = name) -> bool:
                return bool(_roots(w, name) and _started(w, name))

            await w.wait_for(announced, 30)
        await _desk_idle(w)
        assert "AssertionError" not in w.log_text()
        assert not _refusals(w), _refusals(w)
        for n in range(kills):
            roots, answers = _roots(w, f"k{n}"), _started(w, f"k{n}")
            assert len(roots) == 1, f"k{n}: {len(roots)} thread roots"
            assert len(answers) == 1, f"k{n}: {len(answers)} answers"
            assert re.search(rf"/pl/{roots[0]['id']}\b", str(answers[0]["message"])), "the answer links its thread"
        last = str(_roots(w, f"k{kills - 1}")[0]["id"])
        await w.say("hello after the kills", last)
        await w.answered(last, "echo #1: hello after the kills", timeout=30)


@pytest.mark.parametrize("server_forgot_the_key", [False, True])
async def test_a_command_answered_but_not_marked_before_a_crash_is_answered_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server_forgot_the_key: bool
) -> None:
    """The desk posts its answer, then marks the command handled (marked first, a crash
    between would leave it unanswered). A crash between the two: the next start answers
    it again with the same idempotency key, which the server dedupes within 30 s; a start
    later than that (the server forgot the key) finds the answer by it first."""
    crashed = trio.Event()
    mark_handled = Store.mark_handled

    async def crash_before_the_mark(store: Store, channel_id: str, post_id: str) -> None:
        if post_id == asked["id"]:
            crashed.set()
            await trio.sleep_forever()
        await mark_handled(store, channel_id, post_id)

    def answers(w: World) -> list[dict[str, object]]:
        return [p for p in w.bot_posts() if "**Commands**" in str(p["message"])]

    with trio.fail_after(60):
        async with world(tmp_path) as w:
            asked: dict[str, object] = {"id": None}
            with monkeypatch.context() as patch:
                patch.setattr(Store, "mark_handled", crash_before_the_mark)
                await w.start()
                asked = await w.say("!help")
                with trio.fail_after(20):
                    await crashed.wait()
                assert len(answers(w)) == 1
                await w.stop()
            if server_forgot_the_key:
                w.server.store.pending.clear()
                monkeypatch.setattr(desk_module, "KEYS_REMEMBERED_S", 0.0)
            await w.start()
            await _desk_idle(w)
            assert len(answers(w)) == 2  # the one asked above and `_desk_idle`'s own: not three
