"""Can a configured agent be started, and which version is it? (`!agents`, `check`)

Claude Code: `<command> --version`. An ACP agent: started as a session would start it
(through its start gate, so as not to trip over a session's agent starting), it must
answer `initialize` with a protocol version we speak; its `agentInfo` gives the version.
Each probe is started and ended as every agent process is (`spawned`: its own process
group, a marker of its own, so what it spawns is ended with it), is bounded by `limit_s`,
and leaves no process behind. Never raises for an agent that fails: the answer says why,
in one line.

For `!new ... resume=ID`: can the agent continue that conversation here
(`conversation_problem`), and, for an ACP agent, in which directory does it keep it
(`conversation_directory`)?
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import aclosing

import attrs
import trio

from supervisor.agent import AgentBackend, AgentLaunch
from supervisor.agent.acp.backend import AcpAgentBackend
from supervisor.agent.acp.conversation import LIST_PAGES
from supervisor.agent.acp.driver import AgentExited, open_acp_agent
from supervisor.agent.acp.events import AgentReady, HandshakeFailed, RequestFailed, SessionsListed
from supervisor.agent.claude import SCRUBBED_ENV
from supervisor.core.agent_events import (
    AgentNotReady,
    AgentUnusable,
    ConversationMissing,
    ConversationOpened,
)
from supervisor.runtime.agent_process import AgentProcess, open_agent, run_to_end

MAX_LINE = 200
PROBE_GRACE_S = 1.0  # a probe's agent, once past its time: between SIGTERM and SIGKILL


@attrs.frozen
class AgentProbe:
    ok: bool
    version: str = ""
    detail: str = ""  # why it cannot be started, in one line


def _line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:MAX_LINE] if lines else ""


async def probe_acp(backend: AcpAgentBackend, env: Mapping[str, str], cwd: str, limit_s: float) -> AgentProbe:
    acp = backend.acp
    started = False  # past the start gate: another agent of this kind may hold it meanwhile
    try:
        with trio.move_on_after(limit_s):
            async with open_acp_agent(acp, cwd, {**env}, grace_s=PROBE_GRACE_S) as (_agent, events):
                started = True
                async for event in events:
                    match event:
                        case AgentReady(name=name, version=version):
                            return AgentProbe(True, f"{name} {version}".strip())
                        case HandshakeFailed(reason=reason):
                            return AgentProbe(False, detail=reason)
                        case AgentExited(returncode=code, stderr_tail=tail):
                            said = f": {_line(tail[-1])}" if tail else ""
                            return AgentProbe(False, detail=f"it exited (status {code}) before answering initialize{said}")
        if not started:
            return AgentProbe(False, detail=f"not tried: another start of this agent was still going after {limit_s:g} s")
        return AgentProbe(False, detail=f"it did not answer initialize within {limit_s:g} s")
    except OSError as exc:
        return AgentProbe(False, detail=f"{acp.command[0]} cannot be started: {exc.strerror or exc}")


async def conversation_directory(
    backend: AcpAgentBackend, conversation_id: str, cwd: str, env: Mapping[str, str], limit_s: float = 60.0
) -> str:
    """The directory the agent keeps conversation `conversation_id` in, as its
    `session/list` of every directory says; "" when it cannot tell (it lists none, or not
    that one, or not in time). OpenCode continues a conversation from another directory,
    but runs its tools in the old one, where the answers to its permission requests never
    arrive: the turn hangs."""
    with trio.move_on_after(limit_s):
        async with open_acp_agent(backend.acp, cwd, {**env}, grace_s=PROBE_GRACE_S) as (agent, events):
            pages = 0
            async for event in events:
                match event:
                    case AgentReady(can_list=True):
                        await agent.do(lambda c: c.list_sessions(None))
                    case SessionsListed(directories=directories, next_cursor=cursor):
                        pages += 1
                        found = dict(directories).get(conversation_id, "")
                        if found or not cursor or pages >= LIST_PAGES:
                            return found
                        await agent.do(lambda c: c.list_sessions(None, cursor))
                    case AgentReady() | HandshakeFailed() | AgentExited() | RequestFailed():
                        return ""
    return ""


def same_directory(one: str, other: str) -> bool:
    return os.path.realpath(one) == os.path.realpath(other)


async def probe_command(argv: list[str], env: Mapping[str, str], cwd: str, limit_s: float) -> AgentProbe:
    """`argv` (a `--version`) runs and exits 0: the first line it prints (on stdout, else
    on stderr, where some programs print it) is the version."""
    shown = " ".join(argv)
    try:
        with trio.move_on_after(limit_s):
            code, stdout, stderr = await run_to_end(argv, env, cwd)
            if code != 0:
                said = _line(stderr.decode(errors="replace")) or _line(stdout.decode(errors="replace"))
                return AgentProbe(False, detail=f"`{shown}` exited with status {code}: {said}")
            lines = (stdout + b"\n" + stderr).decode(errors="replace").splitlines()
            first = next((line.strip() for line in lines if line.strip()), "")
            return AgentProbe(True, first[:MAX_LINE])
    except OSError as exc:
        return AgentProbe(False, detail=f"{argv[0]} cannot be started: {exc.strerror or exc}")
    return AgentProbe(False, detail=f"`{shown}` gave no answer within {limit_s:g} s")


def claude_env(extra: Mapping[str, str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in SCRUBBED_ENV}
    env.update(extra)
    return env


async def conversation_problem(
    backend: AgentBackend, launch: AgentLaunch, base_env: Mapping[str, str], *, limit_s: float = 60.0, grace_s: float = 3.0
) -> str:
    """"" when the agent continues the conversation `launch` names; else why not, plainly.

    The agent is started as a session would start it. It continues the conversation once
    it says so (`ConversationOpened`, resumed) and neither says the conversation is missing
    nor exits within `grace_s` after that (Claude Code says "open" at once and complains
    only later); the agent is then ended, having been asked nothing.
    """
    wanted = launch.agent_session_id or launch.session_id
    verdict = _Verdict(f"the agent did not open conversation `{wanted}` within {limit_s:g} s")
    missing = f"the agent has no conversation `{wanted}` to continue"
    try:
        with trio.move_on_after(limit_s) as scope:
            async with open_agent(backend, launch, base_env, 1.0) as agent, trio.open_nursery() as nursery:
                nursery.start_soon(agent.drain_stderr)
                await verdict.watch(agent, scope, grace_s, missing)
                if verdict.problem != "exited":  # else its stderr ends by itself: read it all
                    nursery.cancel_scope.cancel()  # the agent's stderr ends with it
            if verdict.problem == "exited":
                if any(isinstance(e, ConversationMissing) for e in agent.stderr_events):
                    return missing
                said = _line(agent.stderr_tail[-1]) if agent.stderr_tail else ""
                return f"the agent exited (status {agent.proc.returncode})" + (f": {said}" if said else "")
    except OSError as exc:
        return f"the agent cannot be started: {exc.strerror or exc}"
    return verdict.problem


@attrs.define
class _Verdict:
    problem: str  # "" once the conversation is open; "exited" when the agent's output ended

    async def watch(self, agent: AgentProcess, scope: trio.CancelScope, grace_s: float, missing: str) -> None:
        async with aclosing(agent.events()) as batches:
            async for batch in batches:
                for event in batch:
                    if isinstance(event, ConversationMissing):
                        self.problem = missing
                        return
                    if isinstance(event, AgentUnusable | AgentNotReady):
                        self.problem = event.reason
                        return
                    if isinstance(event, ConversationOpened) and event.resumed:
                        # Open; it is trusted once it stayed so for a moment.
                        scope.deadline = min(scope.deadline, trio.current_time() + grace_s)
                        self.problem = ""
        self.problem = "exited"
