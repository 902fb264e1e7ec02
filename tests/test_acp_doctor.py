"""`check` and `!agents` for ACP agents, with the fake ACP agent as a real child process:
one that answers `initialize` passes with its version; one that speaks another protocol
version, one that never answers and one that is not installed fail, each with one line
that says why; no process is left behind (the conftest fixture checks)."""

from __future__ import annotations

from pathlib import Path

import trio

from supervisor.agent.doctor import agent_side_checks
from supervisor.config import Config
from tests.harness import World, world
from tests.test_e2e_acp import add_acp_agent, new_acp_session


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
