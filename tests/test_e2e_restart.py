"""Issue 3: kill the supervisor at any moment, start it again, lose and duplicate nothing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import trio

from supervisor.runtime.store import read_state
from tests.harness import World, world


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def _roots(w: World) -> list[dict[str, object]]:
    return [p for p in w.bot_posts() if not p["root_id"] and "Session `" in str(p["message"])]


async def _serving(w: World) -> None:
    """The spawned supervisor is connected (its WebSocket is open)."""
    with trio.fail_after(20):
        await w.server.wait_for_websocket(count=1)


async def test_kill_9_with_five_sessions_and_prompts_posted_while_down(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.spawn()
        await _serving(w)
        roots = {f"s{n}": await w.new_session(f"s{n}") for n in range(5)}
        for name, root in roots.items():
            await w.say(f"first {name}", root)
        for name, root in roots.items():
            await w.answered(root, f"first {name}")
        await w.wait_for(lambda: all("Done" in w.thread_text(r) for r in roots.values()))
        ids = {r.name: r.id for r in read_state(tmp_path / "state").state.sessions.values()}

        w.kill()
        await w.wait_for(lambda: w.server.websockets(w.server.bot.id) == 0, 10)
        for name, root in roots.items():
            await w.say(f"while down {name}", root)

        w.spawn()
        for name, root in roots.items():
            # The conversation continued: the answer knows the earlier prompt. (Waited for
            # whole: a needle cut at "(earlier: " can show while the rest still streams.)
            await w.answered(root, f"while down {name} (earlier: 'first {name}'", timeout=30)
        # The sentinel: a session answers in order, so once a later prompt is answered, a
        # duplicate of the earlier one would already show; #3 says none reached the agent.
        for name, root in roots.items():
            await w.say(f"sentinel {name}", root)
        for name, root in roots.items():
            await w.answered(root, f"echo #3: sentinel {name} (earlier: ", timeout=30)
        for name, root in roots.items():
            answers = [p for p in w.bot_posts(root) if f"while down {name} (earlier" in str(p["message"])]
            assert len(answers) == 1, f"{name} answered {len(answers)} times"
            others = [o for o in roots if o != name]
            assert not any(f"while down {o}" in w.thread_text(root) for o in others)
        assert len(_roots(w)) == 5, "a restart must not create new session threads"
        resumed = [s for s in w.agent_starts() if s.get("resumed")]
        assert len(resumed) == 5
        prefix = "--resume="
        conversations = [next(a[len(prefix) :] for a in s["argv"] if a.startswith(prefix)) for s in resumed]
        assert set(conversations) == set(ids.values())
        # The log says since when it fetched, in words a person reads (not epoch ms).
        assert re.search(r"catch-up: [1-9]\d* post\(s\) in \S+ since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", w.log_text())


async def test_agent_groups_left_by_a_killed_supervisor_are_gone_after_the_next_start(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.spawn()
        await _serving(w)
        root = await w.new_session("alpha")
        await w.say("[grandchild] [hang-hard] busy", root)
        await w.wait_for(lambda: any(line.get("event") == "child" for line in w.agent_lines()), 20)
        start = w.agent_starts()[0]
        pgid = start["pgid"]
        assert _group_alive(pgid)
        w.kill()
        # The sentinel: the agent saw its stdin close (its host is gone), and lives on.
        await w.wait_for(lambda: any(line.get("event") == "eof" for line in w.agent_lines()), 10)
        assert _group_alive(pgid), "the hung agent should outlive a SIGKILLed supervisor"
        w.spawn()
        await _serving(w)
        await w.wait_for(lambda: not _group_alive(pgid), 10)


async def test_restart_during_a_running_turn(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.spawn()
        await _serving(w)
        root = await w.new_session("alpha")
        await w.say("remember me", root)
        await w.answered(root, "remember me")
        await w.say("[slow 20] a long one", root)
        await w.wait_for(lambda: "a long one" in w.thread_text(root) or len(w.bot_posts(root)) >= 3, 20)
        await trio.sleep(0.5)
        w.kill()
        w.spawn()
        await w.answered(root, "restarted before the answer", timeout=30)
        await w.say("after the restart", root)
        await w.answered(root, "after the restart (earlier: 'remember me'", timeout=30)  # whole


async def test_a_graceful_stop_just_after_an_answer_leaves_no_needless_notice(tmp_path: Path) -> None:
    """The answer's last post reached the server, then SIGTERM: the session had not yet
    heard so from its poster (that news sat in its inbox), and the stop cancelled it, so
    the prompt stayed unsettled and the next start said the answer "may be incomplete"
    under a whole answer (seen in about half of such stops). A stop lets it hear first."""
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("one")
        for n in range(1, 7):
            await w.say(f"prompt {n}", root)
            await w.answered(root, f"echo #{n}: prompt {n}")
            await w.wait_for(lambda done=n: w.thread_text(root).count("✅ Done") == done)
            await w.stop()
            (record,) = read_state(tmp_path / "state").state.sessions.values()
            assert record.unsettled == (), f"stop {n} left {record.unsettled}"
            await w.start()
        assert "may be incomplete" not in w.thread_text(root) and "here it is, whole" not in w.thread_text(root)


async def test_a_turn_a_graceful_stop_cuts_is_said_cut_and_its_rerun_runs_after_the_restart(
    tmp_path: Path,
) -> None:
    """`systemctl restart` in the middle of an answer: the next start says that turn was
    cut, as after a crash, and offers 🔁, which runs the prompt again (before, the thread
    showed only "⏹️ Interrupted.", the words of the person's own 🛑, and nothing to rerun)."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("one")
            await w.say("[slow 4] a long answer", root)
            await w.answered(root, "echo #1", timeout=30)  # it streams
            await w.stop()
            assert "✅ Done" not in w.thread_text(root)
            await w.start()
            await w.answered(root, "that turn was cut", timeout=30)
            notice = next(p for p in w.bot_posts(root) if "that turn was cut" in str(p["message"]))
            await w.react(str(notice["id"]), "repeat")
            await w.answered(root, "✅ Done", timeout=30)
            assert len(w.agent_starts()) == 2


async def test_status_counts_the_turns_of_the_session_across_restarts_as_it_does_the_cost(tmp_path: Path) -> None:
    """`!status` said "turns: 1" after three turns when a restart came between them,
    beside a cost that counted all three."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("alpha")
            for n in (1, 2):
                await w.say(f"prompt {n}", root)
                await w.wait_for(lambda done=n: w.thread_text(root).count("✅ Done") == done)
            await w.stop()
            await w.start()
            await w.say("prompt 3", root)
            await w.wait_for(lambda: w.thread_text(root).count("✅ Done") == 3)
            await w.say("!status", root)
            status = await w.wait_for(lambda: next((p["message"] for p in w.bot_posts(root) if "- turns:" in p["message"]), None))
            assert "- turns: 3 · cost so far" in status, status


async def test_a_session_announced_during_a_graceful_stop_starts_its_agent_at_the_next_start(
    tmp_path: Path,
) -> None:
    """The router and the desk serve until the stop's end: a `!new` (or a new `[[sessions]]`
    entry) finished while the stop waits for the last words to reach the server started an
    agent only for the stop to end it. Now its thread waits for the next start, which
    serves it as any other."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            supervisor = await w.start()
            root = await w.new_session("one")
            await w.say("[slow 4] a long answer", root)
            await w.answered(root, "echo #1", timeout=30)
            w.server.fail_requests(503, method="PUT")  # its last edit keeps the stop waiting
            (w.work / "late").mkdir()
            async with trio.open_nursery() as stop:
                stop.start_soon(supervisor.shutdown)
                await trio.sleep(0.1)
                refused = await supervisor.desk.new_session(w.dm, w.alice.id, "late", str(w.work / "late"), None)
                assert refused is None and not supervisor.registry.sessions.closed  # announced within the stop
            w.server.fail_requests(None)
            await w.stop()
            assert len(w.agent_starts()) == 1, w.agent_starts()  # only "one"'s
            await w.start()
            late = str(w._root_of("late")["id"])
            await w.say("still there?", late)
            await w.answered(late, "✅ Done", timeout=30)


async def test_a_finished_answer_a_kill_kept_from_the_thread_is_posted_whole_by_the_next_start(
    tmp_path: Path,
) -> None:
    """The agent had finished, but the server refused the answer's posts (an outage) when
    the kill came. The answer was on disk with the turn's end, so the next start posts it
    whole, below a line that says why: before, the thread got "its answer above may be
    incomplete, or missing" over nothing, and only a 🔁 (running the tools again) got it."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            w.spawn()
            await _serving(w)
            root = await w.new_session("alpha")
            # The session takes prompts once its `!new` is answered: that post must get through.
            await w.wait_for(lambda: any("Started session" in p["message"] for p in w.bot_posts()))
            w.server.fail_requests(503, method="POST", path_prefix="/api/v4/posts")
            await w.say("hello", root)
            await w.wait_for(lambda: any(r.answered for r in read_state(tmp_path / "state").state.sessions.values()), 30)
            w.kill()
            await trio.sleep(0.5)  # a post the kill caught in flight is refused, as the server would
            w.server.fail_requests(None)
            w.spawn()
            text = await w.answered(root, "echo #1: hello", timeout=30)
            assert text.count("echo #1: hello") == 1 and "cut" not in text and "incomplete" not in text, text
            assert text.index("here it is, whole") < text.index("echo #1: hello"), text
