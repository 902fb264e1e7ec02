"""How to launch an ACP agent: its argv and environment (OpenCode's quirks included).

Owns the launch data only: which command, which variables. Never starts a process (the
driver does) and never writes the user's configuration files: OpenCode is told what we
need through its inline configuration variable, merged with whatever is already there.

OpenCode facts behind each variable (../shared/reference/opencode-acp/PROTOCOL.md §1, §5):
- At every start it npm-installs `@opencode-ai/plugin` into its config dir, in the
  background, from the npm registry. On an air-gapped machine that waits on the network;
  pointing `npm_config_registry` at a closed local port makes it fail at once (it logs a
  warning and carries on). A registry the user set is kept (a local mirror works).
- It asks for nothing unless its `permission` setting says "ask". Each `permission_mode`
  becomes the `permission` rules that mean the same to OpenCode (`OPENCODE_PERMISSION`),
  added to `OPENCODE_CONFIG_CONTENT`, the inline layer that OpenCode deep-merges over the
  user's global and project files (so their other settings, and rules for single tools,
  stay). When the user's own inline content already sets `permission`, theirs is kept.
- Eight processes starting at once on a fresh data dir failed with "database is locked"
  (SQLite migrations on first start). `StartGate` lets one start finish before the others
  begin; the driver passes through it for spawn -> initialize.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from supervisor.agent import AgentConversation, AgentLaunch

# A port nothing listens on (TCP "discard"): connection refused at once, never a hang.
OFFLINE_NPM_REGISTRY = "http://127.0.0.1:9/"
OPENCODE_OFFLINE_ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
}
# `permission_mode` (Claude Code's words, for every agent) -> OpenCode's `permission` rules;
# None: add none (OpenCode allows what the user's own rules do not forbid). "edit" covers
# every tool that changes a file; "*" every tool.
OPENCODE_PERMISSION: dict[str, dict[str, str] | None] = {
    "default": {"*": "ask"},
    "manual": {"*": "ask"},
    "plan": {"*": "ask"},  # OpenCode has no read-only mode: everything is asked instead
    "acceptEdits": {"*": "ask", "edit": "allow"},  # commands are still asked
    "dontAsk": {"*": "deny"},  # nothing asked: what the user's rules do not allow is refused
    "auto": None,
    "bypassPermissions": None,
}


def merged_inline_config(existing: str | None, ours: Mapping[str, Any]) -> str:
    """OPENCODE_CONFIG_CONTENT with our top-level keys added where the user set none."""
    config: dict[str, Any] = {}
    if existing:
        try:
            parsed = json.loads(existing)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return existing  # not ours to repair: OpenCode will report it
        config = parsed
    for key, value in ours.items():
        config.setdefault(key, value)
    return json.dumps(config, separators=(",", ":"))


class StartGate:
    """Lets one agent start at a time until one start has succeeded; then all at once.

    The lock guards OpenCode's first-start work on a shared data dir (creating the SQLite
    database and running its migrations), which concurrent starts trip over.
    """

    def __init__(self, serial_until_first_success: bool = True) -> None:
        self._lock = trio.Lock()
        self.warm = not serial_until_first_success

    async def __aenter__(self) -> None:
        await self.enter()

    async def __aexit__(self, *exc: object) -> None:
        self.leave(ok=exc[0] is None)

    async def enter(self) -> None:
        """Wait for our turn to start (at once, once warm). The task that enters leaves."""
        if not self.warm:
            await self._lock.acquire()

    def leave(self, *, ok: bool) -> None:
        """Our start is over: `ok` when the agent got ready (then everyone may start)."""
        if ok:
            self.warm = True
        # Only the start that holds the lock releases it: one that entered once warm never
        # took it, while a start still waiting from before may hold it by now.
        if self._lock.statistics().owner is trio.lowlevel.current_task():
            self._lock.release()


@attrs.define
class AcpBackend:
    """One configured ACP agent (`[agents.NAME] protocol = "acp"`)."""

    name: str
    command: Sequence[str]  # e.g. ("opencode", "acp")
    opencode: bool = False  # apply OpenCode's environment
    offline: bool = True
    extra_env: Mapping[str, str] = attrs.field(factory=dict)
    gate: StartGate = attrs.field(factory=StartGate)

    def argv(self) -> list[str]:
        return list(self.command)

    def env(self, base: Mapping[str, str], permission_mode: str = "default") -> dict[str, str]:
        env = dict(base)
        env.update(self.extra_env)
        if not self.opencode:
            return env
        if self.offline:
            for key, value in OPENCODE_OFFLINE_ENV.items():
                env.setdefault(key, value)
            if not (env.get("npm_config_registry") or env.get("NPM_CONFIG_REGISTRY")):
                env["npm_config_registry"] = OFFLINE_NPM_REGISTRY
        rules = OPENCODE_PERMISSION.get(permission_mode, OPENCODE_PERMISSION["default"])
        if rules is not None:
            env["OPENCODE_CONFIG_CONTENT"] = merged_inline_config(
                env.get("OPENCODE_CONFIG_CONTENT"), {"permission": rules}
            )
        return env


@attrs.define
class AcpAgentBackend:
    """One ACP agent behind sessions (the agent port): the launch data of `AcpBackend`,
    and an `AcpConversation` per process."""

    acp: AcpBackend
    args: Sequence[str] = ()

    @property
    def name(self) -> str:
        return self.acp.name

    @property
    def start_gate(self) -> StartGate:
        return self.acp.gate

    def argv(self, launch: AgentLaunch) -> list[str]:
        return [*self.acp.argv(), *self.args]

    def env(self, launch: AgentLaunch, base: Mapping[str, str]) -> dict[str, str]:
        env = self.acp.env({**base, **launch.extra_env}, launch.permission_mode)
        env["PWD"] = launch.cwd
        return env

    def conversation(self, launch: AgentLaunch) -> AgentConversation:
        from supervisor.agent.acp.conversation import AcpConversation

        return AcpConversation(launch)


def opencode_backend(command: Sequence[str] = ("opencode",), **kwargs: Any) -> AcpBackend:
    return AcpBackend("opencode", (*command, "acp"), opencode=True, **kwargs)
