"""Issue 9 end to end: what a session keeps across agent and supervisor restarts (allow for
this session, pending requests), and queued prompts that never run at `!end`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.core.state import StateFileError
from supervisor.runtime.store import read_state
from tests.harness import World, world


async def _permission_post(w: World, root: str, command: str) -> dict[str, Any]:
    post: dict[str, Any] = await w.wait_for(
        lambda: next((p for p in w.bot_posts(root) if command in p["message"] and "👍" in p["message"]), None)
    )
    return post


def _asked(w: World, root: str, command: str) -> int:
    return len([p for p in w.bot_posts(root) if command in p["message"] and "Permission needed" in p["message"]])


async def test_allow_for_this_session_holds_after_an_agent_crash_and_a_supervisor_restart(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[tool touch one.txt] first", root)
        asked = await _permission_post(w, root, "touch one.txt")
        await w.react(asked["id"], "repeat")
        await w.answered(root, "tool ran: touch one.txt")
        await w.say("[crash-once] fall over", root)
        await w.answered(root, "exited unexpectedly", timeout=30)
        await w.wait_for(lambda: len(w.agent_starts()) == 2, 20)
        await w.say("[tool touch one.txt] after the crash", root)
        await w.wait_for(lambda: w.thread_text(root).count("tool ran: touch one.txt") == 2, 20)
        await w.stop()
        await w.start()
        await w.say("[tool touch one.txt] after the restart", root)
        await w.wait_for(lambda: w.thread_text(root).count("tool ran: touch one.txt") == 3, 30)
        assert _asked(w, root, "touch one.txt") == 1, "the thread was asked again for what it allowed"
        starts = w.agent_starts()
        assert len(starts) == 3
        for start in starts[1:]:
            argv = start["argv"]
            assert argv[argv.index("--allowedTools") + 1] == "Bash(touch:*)"  # the rule the agent offered


async def test_a_request_pending_when_the_supervisor_is_killed_says_it_lapsed(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        w.spawn()
        with trio.fail_after(20):
            await w.server.wait_for_websocket(count=1)
        root = await w.new_session("alpha")
        await w.say("[tool touch late.txt] wait for me", root)
        asked = await _permission_post(w, root, "touch late.txt")
        await w.wait_for(lambda: _lapsed_saved(w, asked["id"]))
        w.kill()
        assert "React 👍" in w.post(asked["id"])["message"]
        w.spawn()
        await w.wait_for(lambda: "Lapsed" in w.post(asked["id"])["message"], 30)
        text = w.post(asked["id"])["message"]
        assert "React 👍" not in text and "touch late.txt" in text


def _lapsed_saved(w: World, post_id: str) -> bool:
    try:
        state = read_state(w.tmp / "state").state
    except (OSError, StateFileError):
        return False
    return any(post_id in r.lapsed_requests for r in state.sessions.values())


async def test_end_says_the_queued_prompts_were_not_run_and_a_restart_does_not_handle_them_again(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        running = await w.say("[slow 20] a long story", root)
        await w.wait_for(lambda: "a long story" in w.thread_text(root), 15)
        queued = [await w.say(f"queued {n}", root) for n in range(3)]
        # The running answer says they wait.
        await w.wait_for(lambda: "⏳ 3 more prompts queued" in w.thread_text(root))
        await w.say("!end", root)
        await w.answered(root, "Session **alpha** ended")
        not_run = await w.answered(root, "Not run")
        assert all(p["id"] in not_run for p in queued)
        await w.wait_for(lambda: "more prompts queued" not in w.thread_text(root))  # they never will run
        stopped = await w.answered(root, "stopped: the session ended")
        assert running["id"] in stopped
        await w.stop()
        before = len(w.bot_posts(root))
        await w.start()
        # The sentinel: a post made after the restart is answered once the catch-up (which
        # would hand the queued prompts over again) is through.
        await w.say("anyone?", root)
        await w.answered(root, "This session has ended")
        assert len(w.bot_posts(root)) == before + 1, [p["message"] for p in w.bot_posts(root)[before:]]
        assert not [p for ps in w.prompts_by_process().values() for p in ps if p.startswith("queued")]


@pytest.mark.parametrize("exit_after", ["[exit-after]", "[exit-after 0.5]"])
async def test_a_prompt_queued_behind_a_turn_whose_agent_then_exits_runs_on_the_next_agent(
    tmp_path: Path, exit_after: str
) -> None:
    """The agent answers and exits (it crashed, or was killed, right after): the prompt
    that waited behind its turn found it gone, or was written to a pipe it never read
    (`[exit-after 0.5]` always: it lingers, deaf), and the thread called it cut, to be run
    again by hand. No agent acted on it: the next one runs it."""
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            await w.start()
            root = await w.new_session("brief")
            await w.say(f"[slow 1.5] {exit_after} first", root)
            await w.answered(root, "echo #1")  # it streams: the next prompt waits behind it
            await w.say("second one", root)
            await w.answered(root, "second one (earlier: 'first", timeout=30)
            assert "cut" not in w.thread_text(root), w.thread_text(root)
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            assert prompts.count("second one") == 1, w.prompts_by_process()
            if exit_after != "[exit-after]":  # it did take the path it is here for: the pipe took it
                assert any(line.get("event") == "unread" and "second one" in line.get("raw", "") for line in w.agent_lines())
