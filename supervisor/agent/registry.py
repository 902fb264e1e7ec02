"""The configured agents, in one place: name -> settings and backend.

The default agent is `[agent]`, known by its protocol's name ("claude", or "acp" for an
ACP default) unless an `[agents.NAME]` takes that name; the others are `[agents.NAME]`. A
session's record names its agent ("" = the default). The session factory asks here for a
session's backend, its settings and how to launch it; `!agents` and `check` list them.
Builds objects only; never starts a process. A protocol's modules are imported only when
an agent speaks it (and the probes only when asked for): start-up pays for what is used.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import trio

from supervisor.agent import AgentBackend, AgentLaunch
from supervisor.agent.config import PERSONA_REFUSED
from supervisor.core.state import SessionRecord

if TYPE_CHECKING:
    from supervisor.agent.probe import AgentProbe
    from supervisor.config import AgentConfig, Config, Persona


@attrs.frozen
class Agent:
    name: str
    settings: AgentConfig
    backend: AgentBackend

    @property
    def protocol(self) -> str:
        return self.settings.protocol


def make_backend(name: str, settings: AgentConfig) -> AgentBackend:
    if settings.protocol == "acp":
        from supervisor.agent.acp.backend import AcpAgentBackend, AcpBackend

        command = tuple(settings.command)
        return AcpAgentBackend(AcpBackend(name, command, opencode=runs_opencode(command)), tuple(settings.args))
    from supervisor.agent.claude import ClaudeBackend

    return ClaudeBackend(settings.command, settings.args)


# OpenCode however it is started: `opencode`, a path to it (its npm package's
# `opencode.exe` too), `npx opencode-ai[@VERSION] acp`, `bunx`...
_OPENCODE_WORD = re.compile(r"opencode(-ai)?(@[\w.+-]+)?(\.exe)?")
_CLAUDE_ACP_WORD = re.compile(r"claude-(agent|code)-acp(@[\w.+-]+)?")


def runs_opencode(command: Sequence[str]) -> bool:
    """Does `command` start OpenCode? Then it gets OpenCode's settings: above all, its
    permission to ask before each tool (unasked, OpenCode runs every tool without a word)."""
    return any(_OPENCODE_WORD.fullmatch(Path(word).name) for word in command)


class AgentRegistry:
    def __init__(self, config: Config) -> None:
        self.config = config
        default_name = config.default_agent_name
        self.default = Agent(default_name, config.agent, make_backend(default_name, config.agent))
        self.agents: dict[str, Agent] = {default_name: self.default}
        for name, named in config.agents.items():
            settings = named.over(config.agent)
            self.agents[name] = Agent(name, settings, make_backend(name, settings))

    def named(self, name: str) -> Agent | None:
        """The agent `!new ... agent=NAME` picks ("" = the default); None if unknown."""
        return self.default if not name else self.agents.get(name)

    def personas_not_taken(self, personas: Mapping[str, Persona]) -> dict[str, tuple[tuple[str, ...], str]]:
        """Persona -> the agents that would not get all it says, and why (`DeskFacts`)."""
        return {
            name: (tuple(a.name for a in self.agents.values() if not persona.takes_protocol(a.protocol)), PERSONA_REFUSED)
            for name, persona in personas.items()
        }

    def record_name(self, name: str) -> str:
        """What a record keeps for the agent called `name` ("" for the default)."""
        return "" if not name or self.agents.get(name) is self.default else name

    def of(self, record: SessionRecord) -> Agent:
        """A session's agent; the default one for an agent no longer configured."""
        return self.named(record.agent) or self.default

    def backend_of(self, record: SessionRecord) -> AgentBackend:
        return self.of(record).backend

    def launch_for(self, record: SessionRecord, resume: bool) -> AgentLaunch:
        settings = self.of(record).settings
        persona = self.config.personas.get(record.persona) if record.persona else None
        return AgentLaunch(
            session_id=record.id,
            cwd=record.cwd,
            resume=resume,
            model=persona.model if persona else "",
            append_system_prompt=persona.append_system_prompt if persona else "",
            permission_mode=settings.permission_mode,
            extra_env=dict(settings.env),
            agent_session_id=record.agent_session_id,
        )


def conversation_id(agent: Agent, record: SessionRecord) -> str:
    """The agent's own id of the session's conversation, the one its terminal takes
    (`claude --resume ID`, `opencode --session ID`); "" while there is none yet."""
    if record.agent_session_id:  # the agent chose it, or `resume=` named it
        return record.agent_session_id
    # Claude Code takes ours (`--session-id`), and has a conversation once prompted; an
    # ACP agent's id is not known before its `session/new` answered.
    return record.id if agent.protocol == "claude" and record.has_history else ""


def terminal_hint(agent: Agent | None, conversation_id: str) -> str:
    """How to carry on the same conversation in a terminal ("" without an id)."""
    if agent is None or not conversation_id:
        return ""
    command = agent.settings.command
    # Named by the program it is, not the first word of its command (`npx opencode-ai acp`
    # is OpenCode; Claude Code's ACP adapter keeps Claude Code's own conversation ids).
    if agent.protocol == "claude" or any(_CLAUDE_ACP_WORD.fullmatch(Path(word).name) for word in command):
        return f"`claude --resume {conversation_id}`"
    if runs_opencode(command):
        return f"`opencode --session {conversation_id}`"
    return f"`{conversation_id}`, with the agent's own way to resume a conversation"


def names_and_protocols(registry: AgentRegistry) -> Mapping[str, str]:
    return {name: agent.protocol for name, agent in registry.agents.items()}


async def probe(agent: Agent, limit_s: float = 20.0, base_env: Mapping[str, str] | None = None) -> AgentProbe:
    """Whether the agent starts, and its version (bounded by `limit_s`)."""
    from supervisor.agent.acp.backend import AcpAgentBackend
    from supervisor.agent.probe import claude_env, probe_acp, probe_command

    base = os.environ if base_env is None else base_env
    settings = agent.settings
    cwd = str(settings.default_cwd)
    if isinstance(agent.backend, AcpAgentBackend):
        return await probe_acp(agent.backend, {**base, **settings.env}, cwd, limit_s)
    argv = [*settings.command, "--version"]
    return await probe_command(argv, claude_env(settings.env, base), cwd, limit_s)


async def agents_text(registry: AgentRegistry, base_env: Mapping[str, str]) -> str:
    """`!agents`: each configured agent, its protocol, version, and whether it starts.
    `base_env` is the sessions' agents' (it marks them as this supervisor's, so what a
    probe leaves when the supervisor is killed is ended at its next start)."""
    found: dict[str, AgentProbe] = {}

    async def one(agent: Agent) -> None:
        found[agent.name] = await probe(agent, base_env=base_env)

    async with trio.open_nursery() as nursery:
        for agent in registry.agents.values():
            nursery.start_soon(one, agent)
    lines = ["| agent | protocol | version | can start |", "|---|---|---|---|"]
    for name, agent in registry.agents.items():
        result = found[name]
        default = " (default)" if agent is registry.default else ""
        status = "yes" if result.ok else f"no: {result.detail}"
        lines.append(f"| {name}{default} | {agent.protocol} | {result.version or '?'} | {status} |")
    return "\n".join(lines)


async def resume_problem(
    registry: AgentRegistry, name: str, cwd: str, conversation_id: str, base_env: Mapping[str, str]
) -> str:
    """"" when agent `name` can continue `conversation_id` in `cwd`; else why not. The agent
    is started to ask it (and ended, asked nothing). An ACP agent is asked first where the
    conversation lives: one kept in another directory is refused (OpenCode would run its
    tools there, and its permission requests would never get their answers)."""
    from supervisor.agent.acp.backend import AcpAgentBackend
    from supervisor.agent.probe import conversation_directory, conversation_problem, same_directory

    agent = registry.named(name) or registry.default
    if isinstance(agent.backend, AcpAgentBackend):
        env = {**base_env, **agent.settings.env}
        where = await conversation_directory(agent.backend, conversation_id, cwd, env)
        if where and not same_directory(where, cwd):
            return (
                f"Cannot continue `{conversation_id}` with {agent.name} in `{cwd}`: it belongs to `{where}`, "
                f"where {agent.name} would run its tools. Name that directory in `!new`."
            )
    record = SessionRecord(
        id=str(uuid.uuid4()), name="resume-check", channel_id="", user_id="", cwd=cwd,
        agent=registry.record_name(name), agent_session_id=conversation_id, has_history=True,
    )  # fmt: skip
    launch = registry.launch_for(record, resume=True)
    problem = await conversation_problem(agent.backend, launch, base_env)
    if problem:
        return f"Cannot continue `{conversation_id}` with {agent.name}: {problem}."
    return ""
