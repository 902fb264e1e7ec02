"""Can a configured agent be started, and which version is it? (`!agents`, `check`)

Claude Code: `<command> --version`. An ACP agent: started as a session would start it
(through its start gate, so as not to trip over a session's agent starting; with a
marker of its own, so what it spawns is ended with it), it must answer `initialize` with a
protocol version we speak; its `agentInfo` gives the version. Each probe runs in its own
process group, is bounded by `limit_s`, and leaves no process behind. Never raises for an
agent that fails: the answer says why, in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from contextlib import aclosing

import attrs
import trio

from supervisor.agent import AgentBackend, AgentLaunch
from supervisor.agent.acp.backend import AcpAgentBackend
from supervisor.agent.acp.driver import AgentExited, open_acp_agent
from supervisor.agent.acp.events import AgentReady, HandshakeFailed
from supervisor.agent.claude import SCRUBBED_ENV
from supervisor.core.agent_events import AgentUnusable, ConversationMissing, ConversationOpened
from supervisor.runtime.agent_process import AgentProcess, kill_group, open_agent

MAX_LINE = 200


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
            async with open_acp_agent(acp, cwd, {**env}, grace_s=1.0) as (_agent, events):
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


async def probe_command(argv: list[str], env: Mapping[str, str], cwd: str, limit_s: float) -> AgentProbe:
    """`argv` (a `--version`) runs and exits 0: its first line is the version."""
    try:
        proc = await trio.lowlevel.open_process(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=cwd, env=dict(env), start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        return AgentProbe(False, detail=f"{argv[0]} cannot be started: {exc.strerror or exc}")
    output = bytearray()
    try:
        assert proc.stdout is not None
        with trio.move_on_after(limit_s) as scope:
            while chunk := await proc.stdout.receive_some(65536):
                output += chunk[: 65536 - len(output)]
            await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            kill_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()
    text = output.decode(errors="replace")
    if scope.cancelled_caught:
        return AgentProbe(False, detail=f"`{' '.join(argv)}` gave no answer within {limit_s:g} s")
    if proc.returncode != 0:
        return AgentProbe(False, detail=f"`{' '.join(argv)}` exited with status {proc.returncode}: {_line(text)}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return AgentProbe(True, first[:MAX_LINE])


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
                    if isinstance(event, ConversationMissing | AgentUnusable):
                        self.problem = missing
                        return
                    if isinstance(event, ConversationOpened) and event.resumed:
                        # Open; it is trusted once it stayed so for a moment.
                        scope.deadline = min(scope.deadline, trio.current_time() + grace_s)
                        self.problem = ""
        self.problem = "exited"
