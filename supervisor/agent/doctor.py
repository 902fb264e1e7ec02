"""`check` for the agents beyond the default Claude Code one (which `supervisor.doctor`
checks with its detailed messages): every ACP agent must start and answer `initialize`
with a protocol version we speak; every other `[agents.NAME]` must run `--version`.

Returns plain tuples (name, ok, detail, fix) for the doctor to print; never raises for a
failing agent; every probe is bounded and leaves no process behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from supervisor.agent.registry import Agent, AgentRegistry, probe

if TYPE_CHECKING:
    from supervisor.config import Config

ACP_START_S = 30.0  # OpenCode takes ~1.5 s to answer initialize, far more on a loaded machine


async def agent_side_checks(
    config: Config, limit_s: float, acp_limit_s: float = ACP_START_S
) -> list[tuple[str, bool, str, str]]:
    registry = AgentRegistry(config)
    agents = [
        agent
        for agent in registry.agents.values()
        if not (agent is registry.default and agent.protocol == "claude")
    ]
    found: dict[str, tuple[str, bool, str, str]] = {}

    async def one(agent: Agent) -> None:
        limit = max(limit_s, acp_limit_s) if agent.protocol == "acp" else limit_s
        result = await probe(agent, limit)
        key = "agent" if agent is registry.default else f"agents.{agent.name}"
        shown = " ".join(agent.settings.command)
        if result.ok:
            what = "answers initialize" if agent.protocol == "acp" else "runs"
            found[agent.name] = (key, True, f"{result.version or 'no version said'} ({agent.protocol}), `{shown}` {what}", "")
        else:
            fix = f"run `{shown}` by hand to see what is wrong, or correct {key}.command"
            found[agent.name] = (key, False, f"`{shown}`: {result.detail}", fix)

    async with trio.open_nursery() as nursery:
        for agent in agents:
            nursery.start_soon(one, agent)
    return [found[agent.name] for agent in agents]
