"""`[agents.NAME]`: the agents a person may pick per session, beside the default `[agent]`.

Each takes the keys of `[agent]` that say how to run and watch an agent; a key left out is
the `[agent]` value (so timeouts are set once). `protocol` says which wire format it
speaks: "claude" (Claude Code's stream-json) or "acp" (the Agent Client Protocol).

This module owns the section's shape and rules; `supervisor.config` only places it in the
whole configuration, and `supervisor.agent.registry` turns it into backends. It must never
start anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from supervisor.config_codec import FrozenMap, Problem, describe, frozen_map

if TYPE_CHECKING:
    from supervisor.config import AgentConfig

PROTOCOLS: Final = ("claude", "acp")
# The protocols whose agents get a persona's system prompt and model (Claude Code's flags):
# ACP has no word for a system prompt, and a model is the agent's own configuration.
PERSONA_PROTOCOLS: Final = frozenset({"claude"})
PERSONA_REFUSED: Final = ("an ACP agent takes no system prompt or model from the supervisor: use this persona "
                          "with a Claude Code agent, or set the model in the ACP agent's own configuration")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def check_protocol(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in PROTOCOLS:
        raise Problem((attribute.name,), f'must be "claude" or "acp", not {describe(value)}')


def _command(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value or not all(value):
        raise Problem((attribute.name,), 'must name the program to run, like ["opencode", "acp"]')


def _environment(_: Any, attribute: attrs.Attribute[Any], value: Mapping[str, str]) -> None:
    for name in value:
        if not name or "=" in name or "\0" in name:
            raise Problem((attribute.name, name), "is not a valid environment variable name")


@attrs.frozen
class NamedAgent:
    """One `[agents.NAME]` table. `None`: the value of `[agent]`."""

    command: tuple[str, ...] = attrs.field(validator=_command)
    protocol: str = attrs.field(default="claude", validator=check_protocol)
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=FrozenMap, converter=frozen_map, validator=_environment)
    permission_mode: str | None = None
    # The types of `[agent]`'s keys; their ranges are `[agent]`'s too (`check_agents`).
    turn_timeout_s: int | None = None
    approval_timeout_s: int | None = None
    idle_suspend_s: int | None = None
    stall_timeout_s: int | None = None
    notify_after_s: int | None = None
    shutdown_grace_s: float | None = None
    interrupt_grace_s: float | None = None
    restart_max: int | None = None
    restart_window_s: int | None = None

    def over(self, default: AgentConfig) -> AgentConfig:
        """`[agent]` with this agent's own keys put over it (Problem: one breaks its rule)."""
        own = {
            field.name: value
            for field in attrs.fields(NamedAgent)
            if (value := getattr(self, field.name)) is not None
        }
        return attrs.evolve(default, **own)


def check_agents(config: Any, attribute: attrs.Attribute[Any], value: Mapping[str, NamedAgent]) -> None:
    protocol = config.agent.protocol
    if protocol in value and "default" in value:
        # `[agent]` is then called "default" (`Config.default_agent_name`): two agents, one name.
        raise Problem(
            (attribute.name, "default"),
            f'cannot be used beside [agents.{protocol}]: [agent] is then called "default"; rename one of them',
        )
    for name, agent in value.items():
        if not _NAME.fullmatch(name):
            raise Problem((attribute.name, name), 'is not a valid agent name (1–64 of letters, digits, "-", "_", ".")')
        try:  # [agent]'s rules (ranges, permission modes): a value they refuse would fail at start
            agent.over(config.agent)
        except Problem as exc:
            raise Problem((attribute.name, name, *exc.path), exc.problem) from None
