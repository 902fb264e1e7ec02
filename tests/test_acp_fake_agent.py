"""The fake ACP agent (tests/fakes/fake_acp_agent.py) against the real captures, frame by
frame, and our driver against the faults only the fake can produce on demand."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.agent.acp import conversation
from supervisor.agent.acp.backend import AcpBackend
from supervisor.agent.acp.driver import (
    AcpStartError,
    AgentExited,
    DriverEvent,
    open_acp_agent,
    open_acp_session,
)
from supervisor.agent.acp.events import (
    AgentReady,
    PlanUpdated,
    ProtocolError,
)
from supervisor.core.agent_events import (
    PermissionAsked,
    TextBlock,
    ThinkingBlock,
    ToolOutcome,
    TurnEnded,
)
from tests.test_acp_captures import TRANSCRIPTS, timeline

FAKE = Path(__file__).resolve().parent / "fakes" / "fake_acp_agent.py"
TIMEOUT = 10


def fake_backend(**env: str) -> AcpBackend:
    return AcpBackend("fake-acp", (sys.executable, str(FAKE), "acp"), extra_env=env)


def base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "SUPERVISOR_TEST_RUN")}
    return {**env, "HOME": str(home), "XDG_DATA_HOME": str(home / "data")}


# --------------------------------------------------------------------------- shapes


def shape(value: Any) -> Any:
    """Keys (in order) and value kinds, with lists reduced to their first element."""
    if isinstance(value, dict):
        return tuple((k, shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("list", shape(value[0])) if value else ("list",)
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, int | float):
        return "number"
    return "str"


def skeleton(frame: dict[str, Any]) -> Any:
    if "method" in frame and "id" in frame:
        return ("request", frame["id"], frame["method"], shape(frame["params"]))
    if "method" in frame:
        return ("notification", shape(frame["params"]))
    if "error" in frame:
        return ("error", frame["id"], frame["error"]["code"])
    return ("response", frame["id"], shape(frame["result"]))


def skeletons(lines: list[str]) -> list[Any]:
    """Frame shapes in order; repeated shapes (streamed chunks) collapsed into one; the
    asynchronous available_commands_update left out of the order; non-JSON lines kept."""
    out: list[Any] = []
    for line in lines:
        try:
            frame = json.loads(line)
        except ValueError:
            item: Any = ("not json",)
        else:
            update = frame.get("params", {}).get("update", {}) if "method" in frame else {}
            if update.get("sessionUpdate") == "available_commands_update":
                continue
            item = skeleton(frame)
        if not out or out[-1] != item:
            out.append(item)
    return out


async def run_like_capture(name: str, home: Path) -> list[str]:
    """Feed the fake what the recorder fed OpenCode, each line once the fake has said as
    much as OpenCode had said by then; return the fake's stdout lines."""
    entries = timeline(name)
    proc = await trio.lowlevel.open_process(
        [sys.executable, str(FAKE), "acp"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=base_env(home),
        cwd=str(home),
    )
    out: list[str] = []
    changed = trio.Event()

    async def read() -> None:
        nonlocal changed
        assert proc.stdout is not None
        buffer = b""
        while chunk := await proc.stdout.receive_some(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            out.extend(line.decode() for line in lines)
            changed.set()
            changed = trio.Event()

    said: list[str] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            assert proc.stdin is not None
            for entry in entries:
                if entry["dir"] == "out":
                    said.append(entry["line"])
                elif entry["dir"] == "in":
                    with trio.move_on_after(TIMEOUT) as waited:
                        while len(skeletons(out)) < len(skeletons(said)):
                            await changed.wait()
                    assert not waited.cancelled_caught, (skeletons(out), skeletons(said))
                    line = entry["line"].replace("/home/user/workspace", str(home))
                    for theirs, ours in _new_session_ids(said, out):
                        line = line.replace(theirs, ours)
                    await proc.stdin.send_all(line.encode() + b"\n")
            with trio.move_on_after(TIMEOUT):  # as the recorder did: all said, then EOF
                while len(skeletons(out)) < len(skeletons(said)):
                    await changed.wait()
            await proc.stdin.aclose()
            with trio.fail_after(TIMEOUT):
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out


def _new_session_ids(said: list[str], out: list[str]) -> list[tuple[str, str]]:
    """(captured id, the fake's id) for each session/new answered by both."""

    def ids(lines: list[str]) -> dict[Any, str]:
        found = {}
        for line in lines:
            if '"sessionId"' in line and '"result"' in line:
                frame = json.loads(line)
                if "sessionId" in frame.get("result", {}):
                    found[frame["id"]] = frame["result"]["sessionId"]
        return found

    ours = ids(out)
    return [(theirs, ours[rid]) for rid, theirs in ids(said).items() if rid in ours]


COMPARED = [
    "01_two_turns_plain",
    "02_permission_allow_reject",
    "03_permission_always",
    "04_cancel",
    "05_cancel_pending_permission",
    "07_api_error",
    "09_unknown_session",
    "10_image_prompt",
]


def _captured(name: str) -> list[str]:
    return (TRANSCRIPTS / f"{name}.stdout.jsonl").read_text().splitlines()


@pytest.mark.parametrize("name", COMPARED)
async def test_fake_speaks_like_the_capture(name: str, tmp_path: Path) -> None:
    out = await run_like_capture(name, tmp_path)
    assert skeletons(out) == skeletons(_captured(name))
    commands = sum("available_commands_update" in line for line in _captured(name))
    assert sum("available_commands_update" in line for line in out) == commands


async def test_fake_resumes_and_loads_like_the_capture(tmp_path: Path) -> None:
    """06: three processes on one home (prompts; session/resume; session/load)."""
    for part in ("p1", "p2_resume", "p3_load"):
        name = f"06_resume_new_process.{part}"
        if part != "p1":  # the capture's session id must be the one the fake stored
            _adopt_session_id(tmp_path, name)
        out = await run_like_capture(name, tmp_path)
        assert skeletons(out) == skeletons(_captured(name)), part
        if part == "p1":
            _rename_session(tmp_path, out, name)


def _capture_session_id(name: str) -> str:
    for line in (TRANSCRIPTS / f"{name}.stdin.jsonl").read_text().splitlines():
        sid = json.loads(line).get("params", {}).get("sessionId")
        if sid:
            return str(sid)
    raise AssertionError("no session id")


def _rename_session(home: Path, out: list[str], name: str) -> None:
    """The fake chose its own id; store the conversation under the capture's."""
    ours = json.loads(out[1])["result"]["sessionId"]
    store = home / "data" / "fake-acp"
    theirs = _capture_session_id("06_resume_new_process.p2_resume")
    (store / f"{ours}.json").rename(store / f"{theirs}.json")


def _adopt_session_id(home: Path, name: str) -> None:
    assert (home / "data" / "fake-acp" / f"{_capture_session_id(name)}.json").exists()


# --------------------------------------------------------------------------- faults


async def _next(events: trio.MemoryReceiveChannel[DriverEvent], kind: type) -> Any:
    async for event in events:
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__}")


async def _turn(
    agent: Any, events: trio.MemoryReceiveChannel[DriverEvent], prompt: str
) -> list[DriverEvent]:
    seen: list[DriverEvent] = list(await agent.do(lambda c: c.prompt(prompt)))
    async for event in events:
        seen.append(event)
        if isinstance(event, TurnEnded | AgentExited):
            return seen
    raise AssertionError("events ended")


async def test_driver_full_turn_with_plan_thought_and_garbage(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), base_env(tmp_path)) as (
            agent,
            events,
            opened,
        ):
            assert opened.how == "new"
            seen = await _turn(agent, events, "[plan] [think] [garbage] hello")
    kinds = {type(e) for e in seen}
    assert {PlanUpdated, ThinkingBlock, ProtocolError, TextBlock, TurnEnded} <= kinds
    assert isinstance(seen[-1], TurnEnded) and not seen[-1].is_error


async def test_the_drivers_trouble_left_out_is_said_when_the_agent_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.agent.acp")
    monkeypatch.setattr(conversation, "TROUBLE_LOGGED_PER_WINDOW", 0)  # every line counted
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), base_env(tmp_path)) as (
            agent,
            events,
            _,
        ):
            seen = await _turn(agent, events, "[garbage] hello")
            assert any(isinstance(e, ProtocolError) for e in seen)
            said = [r.getMessage() for r in caplog.records]
            assert not any("protocol trouble" in m for m in said)
    said = [r.getMessage() for r in caplog.records]
    assert said.count(f"agent {agent.pid}: 1 more lines of protocol trouble not logged") == 1


async def test_crash_mid_turn_is_an_exit_not_a_hang(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), base_env(tmp_path)) as (
            agent,
            events,
            _,
        ):
            seen = await _turn(agent, events, "[crash] hello")
    assert isinstance(seen[-1], AgentExited) and seen[-1].returncode == 1


async def test_hang_hard_is_bounded_by_the_caller_and_torn_down(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), base_env(tmp_path)) as (
            agent,
            events,
            _,
        ):
            await agent.do(lambda c: c.prompt("[hang-hard]"))
            with trio.move_on_after(0.5) as scope:
                await _next(events, TurnEnded)
            assert scope.cancelled_caught
            await agent.do(lambda c: c.cancel())
            with trio.move_on_after(0.5) as scope:
                await _next(events, TurnEnded)
            assert scope.cancelled_caught  # the watchdog's case: only teardown ends it


async def test_hang_then_cancel_ends_the_turn(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), base_env(tmp_path)) as (
            agent,
            events,
            _,
        ):
            await agent.do(lambda c: c.prompt("[hang]"))
            await agent.do(lambda c: c.cancel())
            end = await _next(events, TurnEnded)
            assert end.terminal_reason == "aborted_cancelled"
            after = await _turn(agent, events, "next")
            assert isinstance(after[-1], TurnEnded) and not after[-1].is_error


async def test_never_answering_initialize(tmp_path: Path) -> None:
    with trio.move_on_after(1) as scope:
        async with open_acp_session(
            fake_backend(FAKE_ACP_FAULT="no-initialize"), str(tmp_path), base_env(tmp_path)
        ):
            raise AssertionError("it answered")
    assert scope.cancelled_caught


@pytest.mark.parametrize(
    ("fault", "message"),
    [("version=2", "speaks ACP version 2"), ("exit-at-start", r"exited \(code 3\)")],
)
async def test_start_faults_are_plain_errors(tmp_path: Path, fault: str, message: str) -> None:
    with trio.fail_after(TIMEOUT), pytest.raises(AcpStartError, match=message):
        async with open_acp_session(
            fake_backend(FAKE_ACP_FAULT=fault), str(tmp_path), base_env(tmp_path)
        ):
            pass


async def test_load_only_agent_continues_without_reposting_history(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), env) as (agent, events, opened):
            await _turn(agent, events, "remember pineapple")
        backend = fake_backend(FAKE_ACP_FAULT="load-only")
        async with open_acp_session(backend, str(tmp_path), env, resume=opened.session_id) as (
            agent,
            events,
            again,
        ):
            assert again.how == "load" and again.replayed == 2
            seen = await _turn(agent, events, "what was it?")
    texts = [e.text for e in seen if isinstance(e, TextBlock)]
    assert texts == [
        "Echo #2: what was it? (first prompt in this conversation: 'remember pineapple')"
    ]


async def test_permission_round_trip_through_the_driver(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_acp_session(fake_backend(), str(tmp_path), base_env(tmp_path)) as (
            agent,
            events,
            _,
        ):
            await agent.do(lambda c: c.prompt("[tool touch made]"))
            ask = await _next(events, PermissionAsked)
            assert ask.description == "touch made"
            await agent.do(lambda c: c.answer_permission(ask.request_id, "allow_once"))
            outcome = await _next(events, ToolOutcome)
            await _next(events, TurnEnded)
    assert not outcome.is_error and (tmp_path / "made").exists()


async def test_agent_ready_first(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_acp_agent(fake_backend(), str(tmp_path), base_env(tmp_path)) as (_, events):
            ready = await events.receive()
    assert isinstance(ready, AgentReady) and ready.name == "OpenCode"
