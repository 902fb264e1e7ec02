"""An agent's life as a process, end to end: what it leaves behind, how its death is seen,
and what counts as output for the stall watchdog. Real supervisor, fake Mattermost, fake
agents (the ACP one runs its tools in a real shell)."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import trio

from tests.harness import World, world
from tests.test_e2e_acp import add_acp_agent, new_acp_session, permission_post, record_of


def _running(tag: str) -> list[int]:
    """The live processes whose command line holds `tag` (zombies are dead already)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            alive = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if alive and tag.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def _run_tool(w: World, root: str, command: str, nth: int = 0) -> None:
    """The fake ACP agent runs `command` in a shell, once allowed."""
    await w.say(f"[tool {command}]", root_id=root)
    ask = await w.wait_for(lambda: permission_post(w, root, nth), 30)
    await w.react(ask["id"], "+1")
    await w.answered(root, "Result was")
    await w.settled(root)


async def test_end_also_ends_what_the_agent_started_outside_its_process_group(tmp_path: Path) -> None:
    """A `setsid` child has left the agent's process group (so would a detached Node
    child or a daemon): killing the group misses it; its marker, inherited from the
    agent, finds it."""
    tag = "4242.25"
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "bg")
            await _run_tool(w, root, f"setsid sleep {tag} >/dev/null 2>&1 </dev/null &")
            assert _running(tag), "the background sleeper should be running"
            await w.say("!end", root_id=root)
            await w.answered(root, "ended")
            await w.wait_for(lambda: not _running(tag), 10)


async def test_an_agent_that_crashes_while_a_child_holds_its_stdout_is_said_to_have_exited(tmp_path: Path) -> None:
    """Its stdout does not close with its exit (a background child holds it): its exit is
    watched too, so the crash is said at once as one, not after the stall timeout as a
    turn that produced nothing."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            add_acp_agent(w, settings={"stall_timeout_s": 300, "interrupt_grace_s": 1})
            await w.start()
            root = await new_acp_session(w, "held")
            await _run_tool(w, root, "(sleep 4242.5 > /proc/$PPID/fd/1 2>/dev/null &) ; echo ok")
            assert _running("4242.5")
            await w.say("[crash] now", root_id=root)
            text = await w.answered(root, "was cut", timeout=30)
            assert "The agent exited unexpectedly (exit status 1)" in text
            assert "no output" not in text
            await w.wait_for(lambda: not _running("4242.5"), 10)  # the holder went with it
            await w.say("still there?", root_id=root)
            await w.answered(root, "still there?", timeout=30)  # a new agent answers


async def test_an_idle_agent_that_dies_while_a_child_holds_its_stdout_is_seen_at_once(tmp_path: Path) -> None:
    """No prompt is needed to see that an idle agent died: the thread says so."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            await w.start()
            root = await new_acp_session(w, "idle")
            await _run_tool(w, root, "(sleep 4242.75 > /proc/$PPID/fd/1 2>/dev/null &) ; echo ok")
            os.kill(record_of(w, "idle").pgid, signal.SIGKILL)
            await w.answered(root, "The agent exited unexpectedly", timeout=30)
            await w.wait_for(lambda: not _running("4242.75"), 10)


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_an_idle_agent_that_closes_its_stdout_is_ended_and_a_new_one_answers(tmp_path: Path) -> None:
    """An agent whose stdout is closed can never answer, even while it lives on: it is
    ended (as at any teardown) and said to have exited, so the next prompt goes to a new
    one instead of waiting for the stall timeout, and within seconds, however long the
    configured grace (most of which is the agent's own only when it is exiting)."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent={"stall_timeout_s": 300, "shutdown_grace_s": 120})
            await w.start()
            root = await w.new_session("mute")
            await w.say("[mute-after] hello", root)
            await w.answered(root, "echo #1: hello")
            [first] = [start["pid"] for start in w.agent_starts()]
            await w.answered(root, "The agent exited unexpectedly", timeout=30)
            await w.wait_for(lambda: not _alive(first), 10)
            await w.say("still there?", root)
            await w.answered(root, "echo #2: still there?", timeout=30)
            assert len(w.agent_starts()) == 2


async def test_an_agent_that_only_thinks_for_longer_than_the_stall_timeout_is_not_stalled(tmp_path: Path) -> None:
    """Thinking deltas mean nothing to the thread (they are not shown as they stream), but
    they are output: the watchdog counts every line the agent prints."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent={"stall_timeout_s": 1, "interrupt_grace_s": 1})
            await w.start()
            root = await w.new_session("ponder")
            await w.say("[ponder 4] deep question", root)
            await w.answered(root, "echo #1: deep question", timeout=30)
            await w.settled(root)
            assert "watchdog" not in w.thread_text(root)


async def test_an_agent_that_closes_its_stdout_and_takes_a_while_to_exit_is_reported_with_its_own_status(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent exiting (its stdout closed first) may take a moment to flush: the exit
    status said in the thread and the log is its own (3), not that of the SIGTERM of a
    teardown."""
    caplog.set_level(logging.INFO, logger="supervisor")
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent={"stall_timeout_s": 300, "shutdown_grace_s": 10})
            await w.start()
            root = await w.new_session("flush")
            await w.say("[slow-exit 1.5 3] hello", root)
            await w.answered(root, "echo #1: hello")
            [first] = [start["pid"] for start in w.agent_starts()]
            text = await w.answered(root, "The agent exited unexpectedly", timeout=30)
            assert "The agent exited unexpectedly (exit status 3)" in text
            assert not _alive(first)
            assert [line["code"] for line in w.agent_lines() if line.get("event") == "exit"] == [3]
    assert f"agent {first} exited with status 3" in caplog.text
