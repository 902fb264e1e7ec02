"""`check` and `!agents` for ACP agents, with the fake ACP agent as a real child process:
one that answers `initialize` passes with its version; one that speaks another protocol
version, one that never answers and one that is not installed fail, each with one line
that says why; no process is left behind (the conftest fixture checks). A probe's agent is
started as a session's is: through the start gate, with a marker of its own, and with the
supervisor's, so that nothing it spawned outlives it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import trio
import trio.testing

from supervisor.agent import AgentLaunch
from supervisor.agent.acp.backend import AcpAgentBackend, AcpBackend
from supervisor.agent.doctor import agent_side_checks
from supervisor.agent.probe import AgentProbe, probe_acp
from supervisor.config import Config
from supervisor.runtime.agent_process import open_agent
from tests.harness import REPO, World, world
from tests.test_e2e_acp import FAKE_ACP, add_acp_agent, new_acp_session
from tests.test_e2e_agent_lifecycle import _running


def config_with_agents(w: World) -> Config:
    add_acp_agent(w)
    add_acp_agent(w, "future", FAKE_ACP_FAULT="version=2")
    add_acp_agent(w, "mute", FAKE_ACP_FAULT="no-initialize")
    with w.config_path.open("a") as f:
        f.write('\n[agents.missing]\nprotocol = "acp"\ncommand = ["no-such-acp-agent-9d2e", "acp"]\n')
    return w.config


async def test_check_says_which_acp_agents_start(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            config = config_with_agents(w)
            results = {name: (ok, detail) for name, ok, detail, _ in await agent_side_checks(config, 2.0, 2.0)}
    assert results["agents.fake"][0] and "OpenCode 1.18.33" in results["agents.fake"][1]
    assert not results["agents.future"][0] and "version 2" in results["agents.future"][1]
    assert not results["agents.mute"][0] and "did not answer initialize within 2 s" in results["agents.mute"][1]
    assert not results["agents.missing"][0] and "cannot be started" in results["agents.missing"][1]
    assert "agent" not in results  # the default Claude Code agent keeps its own check


async def test_agents_command_lists_every_agent(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w)
            add_acp_agent(w, "future", FAKE_ACP_FAULT="version=2")
            await w.start()
            await w.say("!agents")
            answer = await w.wait_for(lambda: next((p for p in w.bot_posts() if "| agent |" in p["message"]), None), 60)
            text = answer["message"]
            assert "| claude (default) | claude |" in text
            assert "| fake | acp | OpenCode 1.18.33 | yes |" in text
            assert "| future | acp | ? | no: " in text and "version 2" in text
            # and the agents serve sessions side by side
            root = await new_acp_session(w, "side")
            await w.say("hi", root_id=root)
            await w.answered(root, "Echo #1: hi")


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "XDG_DATA_HOME": str(tmp_path / "acp-data")}


def _leaving_a_sleeper(tag: str) -> list[str]:
    """The fake ACP agent, once it started a sleeper outside its process group (`setsid`,
    as a detached child or a daemon would be)."""
    script = f'setsid sleep {tag} </dev/null >/dev/null 2>&1 & exec "$0" "$1" acp'
    return ["sh", "-c", script, sys.executable, str(FAKE_ACP)]


async def _gone(tag: str) -> None:
    while _running(tag):
        await trio.sleep(0.05)


async def test_a_probe_ends_what_its_agent_started_outside_its_process_group(tmp_path: Path) -> None:
    """Ending the probe's group misses the sleeper; the marker the agent passed on finds it."""
    tag = "4242.3125"
    backend = AcpAgentBackend(AcpBackend("fake", _leaving_a_sleeper(tag)))
    with trio.fail_after(30):
        found = await probe_acp(backend, _env(tmp_path), str(tmp_path), 20)
        assert found.ok, found.detail
        await _gone(tag)


async def test_a_probe_waits_while_a_sessions_agent_is_starting(tmp_path: Path) -> None:
    """Concurrent first starts of OpenCode trip over its database set-up: the start gate
    lets one through at a time (until one succeeds), a probe's as well as a session's."""
    backend = AcpAgentBackend(AcpBackend("fake", [sys.executable, str(FAKE_ACP), "acp"]))
    never_ready = AgentLaunch(
        session_id=str(uuid.uuid4()), cwd=str(tmp_path), resume=False, extra_env={"FAKE_ACP_FAULT": "no-initialize"}
    )
    found: list[AgentProbe] = []

    async def probe() -> None:
        found.append(await probe_acp(backend, _env(tmp_path), str(tmp_path), 20))

    with trio.fail_after(30):
        # The session's start ends (failed) first; then the probe has its turn.
        async with trio.open_nursery() as nursery, open_agent(backend, never_ready, _env(tmp_path), 1.0):
            nursery.start_soon(probe)
            await trio.testing.wait_all_tasks_blocked()
            # The gate's lock is the one observable of a start waiting for its turn.
            assert backend.start_gate._lock.statistics().tasks_waiting == 1
            assert not found
    assert found[0].ok, found[0].detail


async def test_a_probe_that_waited_its_whole_time_at_the_gate_says_so(tmp_path: Path) -> None:
    """Not "did not answer initialize": it was never started."""
    backend = AcpAgentBackend(AcpBackend("fake", [sys.executable, str(FAKE_ACP), "acp"]))
    never_ready = AgentLaunch(
        session_id=str(uuid.uuid4()), cwd=str(tmp_path), resume=False, extra_env={"FAKE_ACP_FAULT": "no-initialize"}
    )
    found: list[AgentProbe] = []

    async def probe() -> None:  # a task of its own, as `!agents` runs beside the sessions
        found.append(await probe_acp(backend, _env(tmp_path), str(tmp_path), 0.5))

    with trio.fail_after(30):
        async with open_agent(backend, never_ready, _env(tmp_path), 1.0), trio.open_nursery() as nursery:
            nursery.start_soon(probe)
    assert not found[0].ok and "another start of this agent was still going" in found[0].detail, found[0].detail


async def test_what_a_probe_left_when_the_supervisor_was_killed_is_ended_at_the_next_start(tmp_path: Path) -> None:
    """The probe's agent carries the supervisor's mark like a session's agent: what it
    left when the supervisor was killed mid-probe is found and ended at the next start."""
    tag = "4242.4375"
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w, "mute", settings={"command": _leaving_a_sleeper(tag)}, FAKE_ACP_FAULT="no-initialize")
            w.spawn()
            await w.server.wait_for_websocket(count=1)
            await w.say("!agents")
            await w.wait_for(lambda: _running(tag), 30)
            w.kill()
            w.spawn()
            await w.wait_for(lambda: not _running(tag), 30)


def _start_check(w: World) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "supervisor", "check", "--config", str(w.config_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(argv, cwd=w.tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("protocol", ["acp", "claude"])
async def test_what_a_killed_check_left_is_ended_at_the_next_start(tmp_path: Path, protocol: str) -> None:
    """`supervisor check` starts its probes' agents (an ACP agent's `initialize`, Claude
    Code's `--version`) with the state directory's mark, as the sessions' agents: a check
    killed mid-probe leaves a hung agent (here with a sleeper) that the next start ends."""
    tag = "4242.5625"
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            if protocol == "acp":
                add_acp_agent(w, "mute", settings={"command": _leaving_a_sleeper(tag)}, FAKE_ACP_FAULT="no-initialize")
            else:
                w.configure(agent_command=["sh", "-c", f"setsid sleep {tag} </dev/null >/dev/null 2>&1 & sleep 60", "sh"])
            check = _start_check(w)
            try:
                await w.wait_for(lambda: _running(tag), 30)
            finally:
                check.kill()
                check.communicate()
            w.spawn()
            await w.wait_for(lambda: not _running(tag), 30)


async def test_a_check_stopped_by_a_signal_ends_its_probes_first(tmp_path: Path) -> None:
    """SIGTERM (a `timeout`, a service manager) or Ctrl-C mid-probe: the hung agent and
    what it spawned are ended before the check exits (128 + the signal), not left for the
    next start."""
    tag = "4242.6875"
    with trio.fail_after(90):
        async with world(tmp_path) as w:
            add_acp_agent(w, "mute", settings={"command": _leaving_a_sleeper(tag)}, FAKE_ACP_FAULT="no-initialize")
            check = _start_check(w)
            try:
                await w.wait_for(lambda: _running(tag), 30)
                check.send_signal(signal.SIGTERM)
                await w.wait_for(lambda: check.poll() is not None, 30)
            finally:
                check.kill()
                _, stderr = check.communicate()
            assert check.returncode == 128 + signal.SIGTERM, stderr
            assert "stopped by SIGTERM" in stderr.decode()
            assert not _running(tag)
