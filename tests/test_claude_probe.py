"""The Claude Code probe (`<command> --version`, for `!agents` and `check`) is started and
ended as every agent process is (`spawned`): with a marker of its own, so what it spawned
outside its process group is ended with it; and with the supervisor's, so what it left
when the supervisor was killed is ended at the next start. The fake "CLI" is a shell that
leaves a sleeper (`setsid`, as a detached child or a daemon would be)."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from supervisor.agent.claude.doctor import agent_result
from supervisor.agent.probe import AgentProbe, probe_command
from supervisor.doctor import run_checks
from tests.harness import world
from tests.test_doctor import FAST, by_name
from tests.test_e2e_agent_lifecycle import _running


def _leaving_a_sleeper(tag: str, then: str) -> list[str]:
    """`then` runs once the sleeper has left the shell's process group (`$$`'s)."""
    script = (
        f"setsid sleep {tag} </dev/null >/dev/null 2>&1 &"
        ' while [ "$(cut -d" " -f5 /proc/$!/stat)" = $$ ]; do sleep 0.01; done;'
        f" {then}"
    )
    return ["sh", "-c", script, "sh"]


async def test_agents_ends_what_the_version_probe_started_outside_its_process_group(tmp_path: Path) -> None:
    tag = "4242.5625"
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent_command=_leaving_a_sleeper(tag, "echo 9.9.9"))
            await w.start()
            await w.say("!agents")
            answer = await w.wait_for(lambda: next((p for p in w.bot_posts() if "| agent |" in p["message"]), None), 60)
            assert "| claude (default) | claude | 9.9.9 | yes |" in answer["message"]
            await w.wait_for(lambda: not _running(tag), 10)


async def test_check_ends_what_the_version_probe_started_outside_its_process_group(tmp_path: Path) -> None:
    tag = "4242.6875"
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.configure(agent_command=_leaving_a_sleeper(tag, "echo 9.9.9"))
            results = await run_checks(w.config, limits=FAST)
            assert by_name(results)["agent"].ok, by_name(results)["agent"].detail
            await w.wait_for(lambda: not _running(tag), 10)


async def test_what_the_version_probe_left_when_the_supervisor_was_killed_is_ended_at_the_next_start(
    tmp_path: Path,
) -> None:
    tag = "4242.8125"
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            w.configure(agent_command=_leaving_a_sleeper(tag, "exec sleep 4242.9375"))
            w.spawn()
            await w.server.wait_for_websocket(count=1)
            await w.say("!agents")
            await w.wait_for(lambda: _running(tag) and _running("4242.9375"), 30)
            w.kill()
            w.spawn()
            await w.wait_for(lambda: not _running(tag) and not _running("4242.9375"), 30)


async def test_a_version_printed_on_stderr_is_the_version(tmp_path: Path) -> None:
    """Some programs print their version on stderr: `!agents` and `check` show it."""
    prints_on_stderr = ["sh", "-c", "echo 'claude 9.8.7' >&2", "sh", "--version"]
    with trio.fail_after(20):
        probe = await probe_command(prints_on_stderr, dict(os.environ), str(tmp_path), 10)
    assert probe == AgentProbe(True, "claude 9.8.7")
    assert agent_result(prints_on_stderr, 0, b"", b"claude 9.8.7\n").detail.startswith("claude 9.8.7, from")
