"""The agents' lines for `check`, in report order: the default Claude Code agent runs
`--version` (with the detailed messages of `agent.claude.doctor`), then every other agent:
an ACP agent must start and answer `initialize` with a protocol version we speak; every
other `[agents.NAME]` must run `--version`.

`agent_side_checks` returns plain tuples (name, ok, detail, fix); `checks` returns the
doctor's `CheckResult`s. Never raises for a failing agent; every probe is bounded and
leaves no process behind, and carries the state directory's mark as a session's agent
does: what a `check` killed mid-probe left is ended at the next start.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio

from supervisor.agent.claude import doctor as claude_doctor
from supervisor.agent.probe import claude_env
from supervisor.agent.registry import Agent, AgentRegistry, probe
from supervisor.checks import CheckResult, Limits, within
from supervisor.runtime.reaper import agent_environment

if TYPE_CHECKING:
    from supervisor.config import Config

ACP_START_S = 30.0  # OpenCode takes ~1.5 s to answer initialize, far more on a loaded machine


def marked_env(config: Config) -> dict[str, str]:
    """The probes' environment: ours, with the state directory's mark of its agents."""
    return agent_environment(os.environ, config.state.dir)


async def agent_side_checks(
    config: Config, limit_s: float, acp_limit_s: float = ACP_START_S
) -> list[tuple[str, bool, str, str]]:
    registry = AgentRegistry(config)
    base_env = marked_env(config)
    agents = [
        agent
        for agent in registry.agents.values()
        if not (agent is registry.default and agent.protocol == "claude")
    ]
    found: dict[str, tuple[str, bool, str, str]] = {}

    async def one(agent: Agent) -> None:
        limit = max(limit_s, acp_limit_s) if agent.protocol == "acp" else limit_s
        result = await probe(agent, limit, base_env)
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


async def checks(config: Config, limits: Limits) -> list[CheckResult]:
    """The default Claude Code agent's line (if that is the default), then the others'."""
    found: list[CheckResult] = []
    if config.agent.protocol == "claude":
        argv = claude_doctor.agent_version_argv(config.agent)
        env = claude_env(config.agent.env, marked_env(config))
        found.append(
            await within(
                limits.agent_s,
                claude_doctor.agent_hung_result(argv, limits.agent_s),
                lambda: claude_doctor.agent_check(config.agent, env),
            )
        )
    # ACP agents and `[agents.NAME]`: each agent side's own check (starts, answers).
    for name, ok, detail, fix in await agent_side_checks(config, limits.agent_s):
        found.append(CheckResult(name, ok, detail, fix))
    return found
