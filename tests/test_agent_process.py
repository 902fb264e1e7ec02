"""`AgentProcess` writes a command straight into the agent's stdin while the pipe has room
(so a prompt reaches its agent before the event loop runs anything else), and hands what
does not fit to trio's `send_all`. Both paths, against the fake agent (a real process)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from supervisor.agent import AgentLaunch, LineConversation
from supervisor.agent.claude import ClaudeBackend
from supervisor.core.agent_events import SendPrompt, TextDelta, TurnEnded, TurnStarted
from supervisor.runtime.agent_process import (
    AGENT_ID_VAR,
    KILLED_EXIT_S,
    OUTPUT_AFTER_EXIT_S,
    STDERR_LINE_BYTES,
    STDERR_LOGGED_PER_WINDOW,
    AgentProcess,
    MarkedSweep,
    open_agent,
)

FAKE = Path(__file__).parent / "fakes" / "fake_agent.py"


def _backend() -> ClaudeBackend:
    return ClaudeBackend([sys.executable, "-I", str(FAKE)])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_AGENT_")}
    (tmp_path / "home").mkdir(exist_ok=True)
    return {**env, "HOME": str(tmp_path / "home"), **extra}


async def _answer(agent: AgentProcess) -> list[object]:
    got: list[object] = []
    async with aclosing(agent.events()) as batches:
        async for batch in batches:
            got += batch
            if any(isinstance(e, TurnEnded) for e in batch):
                break
    return got


async def test_a_prompt_larger_than_the_pipe_reaches_a_slow_reader_whole(tmp_path: Path) -> None:
    # 1 MiB: sixteen times a Linux pipe's buffer, to an agent that starts reading late.
    text = "".join(f"{n:07d} " for n in range(1 << 17))
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-000000000001", cwd=str(tmp_path), resume=False)
    with trio.fail_after(30):
        env = _env(tmp_path, FAKE_AGENT_SLOW_START="0.5")
        answer: list[list[object]] = []
        async with open_agent(_backend(), launch, env, 1.0) as agent, trio.open_nursery() as nursery:

            async def read() -> None:
                answer.append(await _answer(agent))

            nursery.start_soon(read)
            await agent.send(SendPrompt(text))
    said = "".join(getattr(e, "text", "") for e in answer[0])
    assert f"echo #1: {text}" in said


async def test_a_write_to_an_agent_that_is_gone_says_its_stdin_is_broken(tmp_path: Path) -> None:
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-000000000002", cwd=str(tmp_path), resume=False)
    with trio.fail_after(30):
        async with open_agent(_backend(), launch, _env(tmp_path), 1.0) as agent:
            os.killpg(agent.proc.pid, 9)
            await agent.proc.wait()
            for _ in range(2):  # the first may still fit the pipe before the kernel says so
                try:
                    await agent.send(SendPrompt("anyone there?"))
                except trio.BrokenResourceError:
                    break
            else:
                raise AssertionError("a write to a dead agent did not fail")
            await agent.close_stdin()
            with pytest.raises(trio.ClosedResourceError):
                await agent.send(SendPrompt("and now?"))


async def test_a_flood_on_stderr_is_logged_in_part_and_counted_and_its_tail_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-000000000003", cwd=str(tmp_path), resume=False)
    caplog.set_level(logging.INFO, logger="supervisor.agent")
    with trio.fail_after(30):
        async with open_agent(_backend(), launch, _env(tmp_path), 1.0) as agent, trio.open_nursery() as nursery:
            nursery.start_soon(agent.drain_stderr)
            await agent.send(SendPrompt("[stderr 330000] loud"))  # 10,000 lines
            await _answer(agent)
            await agent.close_stdin()
            await agent.wait()  # drain_stderr ends with the pipe, after the last line
    messages = [r.getMessage() for r in caplog.records]
    logged = sum("some noise on stderr" in m for m in messages)
    left_out = [int(m.split()[2]) for m in messages if m.endswith("more stderr lines not logged")]
    # A window is STDERR_WINDOW_S long: the flood takes a few of them at most.
    assert STDERR_LOGGED_PER_WINDOW <= logged <= 5 * STDERR_LOGGED_PER_WINDOW
    assert logged + sum(left_out) == 10_000
    assert list(agent.stderr_tail)[-1] == "fake_agent: some noise on stderr"


async def test_an_agent_that_outlives_its_sigkill_holds_its_teardown_a_moment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """One stuck in the kernel (uninterruptible sleep: a hung mount) outlives its SIGKILL,
    perhaps for good: its teardown waits KILLED_EXIT_S for it, says so naming it, and goes
    on, so neither its session's stop nor the supervisor's is held for ever. Such a process
    cannot be made at will: the kernel's part is played by dropping the SIGKILLs aimed at
    it; SIGTERM it ignores by itself ([stubborn])."""
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-000000000004", cwd=str(tmp_path), resume=False)
    caplog.set_level(logging.INFO, logger="supervisor.agent")
    stuck: list[int] = []
    kill, killpg = os.kill, os.killpg

    def unkillable(real: Callable[[int, int], None]) -> Callable[[int, int], None]:
        def send(pid: int, sig: int) -> None:
            if not (pid in stuck and sig == signal.SIGKILL):
                real(pid, sig)
        return send

    monkeypatch.setattr(os, "kill", unkillable(kill))
    monkeypatch.setattr(os, "killpg", unkillable(killpg))
    with trio.fail_after(30):
        async with open_agent(_backend(), launch, _env(tmp_path), 0.2) as agent:
            stuck.append(agent.pid)
            await agent.send(SendPrompt("[stubborn] never done"))
            async with aclosing(agent.events()) as batches:
                async for batch in batches:
                    if any(isinstance(e, TurnStarted) for e in batch):
                        break  # it took the prompt: SIGTERM is ignored from now on
    try:
        assert agent.proc.returncode is None, "not waited for any more"
        assert f"agent {agent.pid} is still there {KILLED_EXIT_S:g} s after its SIGKILL" in caplog.text
    finally:
        monkeypatch.undo()
        os.kill(agent.pid, signal.SIGKILL)
        with trio.fail_after(10):
            await agent.proc.wait()


async def test_teardowns_at_once_each_end_the_processes_of_their_own_marker_and_no_other() -> None:
    """At a stop every agent ends at once, and one scan of /proc serves them all: each
    still ends what carries its own marker, and nothing that carries another's."""

    async def sleeper(marker: str) -> trio.Process:
        return await trio.lowlevel.open_process(["sleep", "4242.125"], env={**os.environ, AGENT_ID_VAR: marker})

    with trio.fail_after(30):
        doomed = [await sleeper(f"doomed{n}") for n in range(4)]
        spared = await sleeper("spared")
        sweep = MarkedSweep()
        try:
            async with trio.open_nursery() as nursery:
                for n in range(4):
                    nursery.start_soon(sweep.end, f"{AGENT_ID_VAR}=doomed{n}".encode())
            for process in doomed:
                assert await process.wait() == -signal.SIGKILL
            assert spared.poll() is None
        finally:
            spared.kill()
            await spared.wait()


class _PrintsAndExits(ClaudeBackend):
    """An agent that prints `lines` text deltas and a result (and one huge stderr line),
    then exits at once: what it printed waits in the pipe (keep it under its 64 KiB)."""

    def __init__(self, lines: int) -> None:
        super().__init__([sys.executable, "-I", "-c", ""])
        self.lines = lines

    def argv(self, launch: AgentLaunch) -> list[str]:
        delta = '{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"text_delta","text":"x"}}}'
        result = '{"type":"result","subtype":"success","is_error":false,"result":"","session_id":"s"}'
        script = (
            "import sys\n"
            f"sys.stderr.write('E' * 10_000_000 + '\\n')\n"
            f"for _ in range({self.lines}): print({delta!r})\n"
            f"print({result!r})\n"
        )
        return [sys.executable, "-I", "-c", script]


async def test_what_an_agent_printed_before_exiting_reaches_a_reader_that_comes_late(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Its stdout was closed 5 s after its exit when its reader had not seen the end, as if
    something else held the pipe: a reader only behind (the session busy) lost the answer's
    end. And a stderr line of 10 MB is kept and logged as its first 4 KiB."""
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-000000000009", cwd=str(tmp_path), resume=False)
    caplog.set_level(logging.INFO, logger="supervisor.agent")
    with trio.fail_after(30):
        async with open_agent(_PrintsAndExits(500), launch, _env(tmp_path), 1.0) as agent, trio.open_nursery() as nursery:
            nursery.start_soon(agent.watch_exit)
            nursery.start_soon(agent.drain_stderr)
            await agent.wait()
            await trio.sleep(OUTPUT_AFTER_EXIT_S + 1)  # the session is busy elsewhere
            got = await _answer(agent)
    assert sum(isinstance(e, TextDelta) for e in got) == 500 and isinstance(got[-1], TurnEnded)
    [kept] = agent.stderr_tail
    assert kept.startswith("E" * STDERR_LINE_BYTES) and kept.endswith(f"({10_000_000 - STDERR_LINE_BYTES} more bytes)")
    assert max(len(r.getMessage()) for r in caplog.records) < 2 * STDERR_LINE_BYTES


async def test_the_conversation_is_told_once_when_the_agents_output_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a conversation still counts (an ACP agent's protocol trouble left out of the
    log) was never said: nothing told it the output had ended."""
    closed: list[object] = []
    monkeypatch.setattr(LineConversation, "close", lambda self: closed.append(self))
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-00000000000a", cwd=str(tmp_path), resume=False)
    with trio.fail_after(30):
        async with open_agent(_PrintsAndExits(3), launch, _env(tmp_path), 1.0) as agent, trio.open_nursery() as nursery:
            nursery.start_soon(agent.drain_stderr)
            async with aclosing(agent.events()) as batches:
                async for _batch in batches:
                    assert not closed  # not before the output ends
            nursery.cancel_scope.cancel()
    assert closed == [agent.conversation]
