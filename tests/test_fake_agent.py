"""The fake agent (tests/fakes/fake_agent.py) behaves like Claude Code 2.1.330 on stream-json.

Every test runs the fake as a real child process (`python -I`, so only the standard
library is available to it), talks to it over pipes and checks what it writes. Frame
shapes -- key names and order at the top level, the keys of the nested message, content
block, stream event, delta and control payloads -- are compared with the captures of the
real CLI in `../shared/reference/claude-code/transcripts/`; those tests skip when the
captures are not there.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import trio

FAKE = Path(__file__).parent / "fakes" / "fake_agent.py"
TRANSCRIPTS = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "reference"
    / "claude-code"
    / "transcripts"
)
BASE = ("--output-format", "stream-json", "--input-format", "stream-json", "--verbose")
SUPERVISOR_FLAGS = (*BASE, "--permission-prompt-tool", "stdio", "--include-partial-messages")
TIMEOUT = 15  # seconds per test, everything included

Frame = dict[str, Any]


# --- driving the fake ------------------------------------------------------------------


def user_message(text: str | list[Frame], **extra: Any) -> Frame:
    return {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": "",
        **extra,
    }


def control_request(subtype: str, **fields: Any) -> Frame:
    request_id = f"req_{uuid.uuid4().hex[:8]}"
    return {
        "type": "control_request",
        "request_id": request_id,
        "request": {"subtype": subtype, **fields},
    }


def allow(request: Frame, **body: Any) -> Frame:
    response = {"behavior": "allow", "updatedInput": request["request"]["input"], **body}
    return {
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request["request_id"],
            "response": response,
        },
    }


def deny(request: Frame, message: str, **body: Any) -> Frame:
    response = {"behavior": "deny", "message": message, **body}
    return {
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": request["request_id"],
            "response": response,
        },
    }


def is_result(frame: Frame) -> bool:
    return frame.get("type") == "result"


def of_type(frames: Iterable[Frame], kind: str, subtype: str | None = None) -> list[Frame]:
    return [
        f
        for f in frames
        if f.get("type") == kind and (subtype is None or f.get("subtype") == subtype)
    ]


def text_deltas(frames: Iterable[Frame]) -> list[str]:
    return [
        f["event"]["delta"]["text"]
        for f in of_type(frames, "stream_event")
        if f["event"]["type"] == "content_block_delta"
        and f["event"]["delta"]["type"] == "text_delta"
    ]


def assistant_blocks(frames: Iterable[Frame], block_type: str) -> list[Frame]:
    return [
        block
        for f in of_type(frames, "assistant")
        for block in f["message"]["content"]
        if block["type"] == block_type
    ]


def exists(path: Path) -> bool:
    return path.exists()


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Agent:
    """One running fake agent: write frames to its stdin, read frames from its stdout."""

    def __init__(self, proc: trio.Process, stderr: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr
        self.buffer = b""
        self.seen: list[Frame] = []  # every frame read so far, in order

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def send(self, frame: Frame) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all((json.dumps(frame) + "\n").encode())

    async def say(self, text: str | list[Frame], **extra: Any) -> None:
        await self.send(user_message(text, **extra))

    async def frame(self) -> Frame:
        assert self.proc.stdout is not None
        while b"\n" not in self.buffer:
            data = await self.proc.stdout.receive_some(1 << 16)
            if not data:
                raise EOFError(f"stdout closed; pending {self.buffer[:200]!r}")
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        frame: Frame = json.loads(line)
        self.seen.append(frame)
        return frame

    async def until(self, done: Callable[[Frame], bool]) -> list[Frame]:
        frames = []
        while True:
            frames.append(await self.frame())
            if done(frames[-1]):
                return frames

    async def turn(self, text: str | list[Frame], **extra: Any) -> list[Frame]:
        await self.say(text, **extra)
        return await self.until(is_result)

    async def assert_silent(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            frame = await self.frame()
            pytest.fail(f"unexpected frame: {frame}")

    async def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.aclose()

    async def rest(self) -> list[Frame]:
        """Everything up to the end of stdout."""
        frames = []
        with suppress(EOFError):
            while True:
                frames.append(await self.frame())
        return frames

    async def exit_code(self) -> int:
        code = await self.proc.wait()
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()


class Sandbox:
    """A HOME, a working directory and a log directory for fake agents of one test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.cwd = root / "work"
        self.logs = root / "logs"
        for path in (self.home, self.cwd):
            path.mkdir()
        self.count = 0

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_AGENT_")}
        return {**env, "HOME": str(self.home), "FAKE_AGENT_LOG": str(self.logs), **extra}

    def conversation(self, session_id: str) -> Frame:
        data: Frame = json.loads((self.home / ".fake-agent" / f"{session_id}.json").read_text())
        return data

    def log_of(self, pid: int) -> list[Frame]:
        path = self.logs / f"{pid}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    @asynccontextmanager
    async def agent(self, *args: str, env: dict[str, str] | None = None) -> AsyncIterator[Agent]:
        self.count += 1
        stderr_path = self.root / f"stderr-{self.count}.txt"
        with stderr_path.open("wb") as stderr:
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-I", str(FAKE), *args],
                stdin=-1,  # subprocess.PIPE
                stdout=-1,
                stderr=stderr,
                cwd=self.cwd,
                env=env or self.env(),
                start_new_session=True,
            )
        try:
            with trio.fail_after(TIMEOUT):
                yield Agent(proc, stderr_path)
        finally:
            with trio.CancelScope(shield=True):
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the fake and anything it spawned
                await proc.wait()
                for stream in (proc.stdin, proc.stdout):
                    if stream is not None:
                        await stream.aclose()

    async def run(self, *args: str) -> tuple[int, str]:
        """Run a fake that is expected to exit by itself; (exit status, stderr)."""
        with trio.fail_after(TIMEOUT):
            result = await trio.run_process(
                [sys.executable, "-I", str(FAKE), *args],
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
                cwd=self.cwd,
                env=self.env(),
            )
        return result.returncode, (result.stdout + result.stderr).decode()


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


# --- the real CLI's frame shapes --------------------------------------------------------


def kind_of(frame: Frame) -> tuple[str, ...]:
    kind = frame.get("type", "?")
    if kind == "stream_event":
        event = frame["event"]
        detail = event.get("content_block", event.get("delta", {})).get("type", "")
        return (kind, event["type"], detail)
    if kind == "control_request":
        return (kind, frame["request"]["subtype"])
    if kind == "control_response":
        inner = frame["response"].get("response") or {}
        return (kind, frame["response"]["subtype"], ",".join(sorted(inner))[:40])
    if kind in ("assistant", "user"):
        content = frame["message"]["content"]
        first = content[0]["type"] if isinstance(content, list) and content else "str"
        return (kind, first)
    return (kind, str(frame.get("subtype", "")))


def shape_of(frame: Frame) -> tuple[Any, ...]:
    """Key names (top level in order) and the key sets of the nested objects."""
    nested: list[tuple[str, frozenset[str]]] = []
    message = frame.get("message")
    if isinstance(message, dict):
        nested.append(("message", frozenset(message)))
        content = message.get("content")
        if isinstance(content, list) and content:
            nested.append(("block", frozenset(content[0])))
    event = frame.get("event")
    if isinstance(event, dict):
        nested.append(("event", frozenset(event)))
        for key in ("content_block", "delta", "message"):
            if isinstance(event.get(key), dict):
                nested.append((key, frozenset(event[key])))
    for key in ("request", "response"):
        if isinstance(frame.get(key), dict):
            nested.append((key, frozenset(frame[key])))
            inner = frame[key].get("response")
            if isinstance(inner, dict):
                nested.append((key + ".response", frozenset(inner)))
    return (tuple(frame), tuple(nested))


# What the fake emits that no capture shows (the fake API never streamed a tool call);
# their shapes follow the Messages API.
NOT_IN_CAPTURES = {
    ("stream_event", "content_block_start", "tool_use"),
    ("stream_event", "content_block_delta", "input_json_delta"),
}


@pytest.fixture(scope="module")
def real_shapes() -> dict[tuple[str, ...], set[tuple[Any, ...]]]:
    if not TRANSCRIPTS.is_dir():
        pytest.skip(f"real CLI transcripts not found at {TRANSCRIPTS} (../shared is missing)")
    shapes: dict[tuple[str, ...], set[tuple[Any, ...]]] = {}
    for path in sorted(TRANSCRIPTS.glob("[0-9][0-9]_*.stdout.jsonl")):  # 2.1.330 runs only
        for line in path.read_text().splitlines():
            frame = json.loads(line)
            shapes.setdefault(kind_of(frame), set()).add(shape_of(frame))
    return shapes


def assert_like_real(
    frames: Iterable[Frame], real: dict[tuple[str, ...], set[tuple[Any, ...]]]
) -> None:
    checked = 0
    for frame in frames:
        kind = kind_of(frame)
        if kind in NOT_IN_CAPTURES:
            continue
        assert kind in real, f"the real CLI never printed a frame like {frame}"
        assert shape_of(frame) in real[kind], (
            f"{kind} differs from the real CLI:\n fake {shape_of(frame)}\n real {sorted(real[kind], key=str)}"
        )
        checked += 1
    assert checked


# --- tests -------------------------------------------------------------------------------


async def test_version(sandbox: Sandbox) -> None:
    code, output = await sandbox.run("--version")
    assert (code, output) == (0, "2.1.330 (Claude Code)\n")


async def test_two_turns_match_the_real_cli(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*BASE) as agent:
        await agent.assert_silent(0.2)  # like the CLI: nothing before the first prompt
        first = await agent.turn("hello there")
        second = await agent.turn("second message")
        await agent.close_stdin()
        assert await agent.exit_code() == 0
    assert [f["type"] for f in first] == ["system", "assistant", "result"]
    assert [f["type"] for f in second] == ["system", "assistant", "result"]
    assert_like_real(first + second, real_shapes)
    init = first[0]
    assert init["subtype"] == "init" and init["claude_code_version"] == "2.1.330"
    assert init["cwd"] == str(sandbox.cwd) and init["model"] == "claude-opus-5-5"
    assert init["permissionMode"] == "default" and "Bash" in init["tools"]
    session = init["session_id"]
    assert all(f["session_id"] == session for f in first + second)
    assert first[1]["message"]["content"] == [
        {"type": "text", "text": "echo #1: hello there (earlier: none)"}
    ]
    r1, r2 = first[-1], second[-1]
    assert r2["result"] == "echo #2: second message (earlier: 'hello there')"
    assert (r1["subtype"], r1["is_error"], r1["terminal_reason"]) == ("success", False, "completed")
    assert (r1["total_cost_usd"], r2["total_cost_usd"]) == (0.0105, 0.021)  # cumulative
    assert (r1["result_index"], r2["result_index"]) == (0, 1)
    assert r1["permission_denials"] == [] and r1["num_turns"] == 1


async def test_partial_messages_and_thinking(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        init_request = control_request("initialize", hooks=None)
        await agent.send(init_request)
        answer = await agent.frame()
        frames = await agent.turn("ponder [think] this")
        assert_like_real([answer, *frames], real_shapes)
    assert answer["response"]["request_id"] == init_request["request_id"]
    assert answer["response"]["response"]["claude_code_version"] == "2.1.330"
    events = [f["event"]["type"] if f["type"] == "stream_event" else f["type"] for f in frames]
    assert events[:4] == ["system", "system", "message_start", "content_block_start"]
    assert events[-3:] == ["message_delta", "message_stop", "result"]
    thinking = assistant_blocks(frames, "thinking")
    assert len(thinking) == 1 and thinking[0]["signature"]
    texts = assistant_blocks(frames, "text")
    assert len(texts) == 1
    assert "".join(text_deltas(frames)) == texts[0]["text"] == frames[-1]["result"]
    assert texts[0]["text"] == "echo #1: ponder this (earlier: none)"
    # one assistant line per block, both from the same API message
    assert len({f["message"]["id"] for f in of_type(frames, "assistant")}) == 1
    assert frames[-1]["begun_message_ids"] == [of_type(frames, "assistant")[0]["message"]["id"]]


async def test_resume_continues_the_conversation_and_the_bill(sandbox: Sandbox) -> None:
    async with sandbox.agent(*BASE) as agent:
        first = await agent.turn("first")
        await agent.turn("second")
        await agent.close_stdin()
        assert await agent.exit_code() == 0
    session = first[0]["session_id"]
    stored = sandbox.conversation(session)
    assert [t["prompt"] for t in stored["turns"]] == ["first", "second"]
    async with sandbox.agent(*BASE, "--resume", session) as agent:
        frames = await agent.turn("third")
    assert frames[0]["session_id"] == frames[-1]["session_id"] == session
    assert frames[-1]["result"] == "echo #3: third (earlier: 'first', 'second')"
    # like the real CLI (transcripts 05, 13): the cost keeps counting across --resume
    assert frames[-1]["total_cost_usd"] == 0.0315
    assert frames[-1]["result_index"] == 0
    async with sandbox.agent(*BASE, f"--resume={session}") as agent:
        frames = await agent.turn("fourth")
    assert frames[-1]["result"].startswith("echo #4: fourth (earlier: 'first', 'second', 'third')")


async def test_session_id_flag_and_its_errors(sandbox: Sandbox) -> None:
    session = str(uuid.uuid4())
    async with sandbox.agent(*BASE, "--session-id", session, "--model", "claude-fake-x") as agent:
        frames = await agent.turn("hello with my own session id")
    assert {f["session_id"] for f in frames} == {session}
    assert frames[0]["model"] == "claude-fake-x"
    assert of_type(frames, "assistant")[0]["message"]["model"] == "claude-fake-x"
    for form in (("--session-id", session), (f"--session-id={session}",)):
        code, output = await sandbox.run(*BASE, *form)
        assert (code, output) == (1, f"Error: Session ID {session} is already in use.\n")
    unknown = str(uuid.uuid4())
    for form in (("--resume", unknown), (f"--resume={unknown}",)):
        code, output = await sandbox.run(*BASE, *form)
        assert (code, output) == (1, f"No conversation found with session ID: {unknown}\n")
    code, output = await sandbox.run(*BASE, "--session-id", "not-a-uuid")
    assert code == 1 and "valid UUID" in output
    code, output = await sandbox.run(
        "--output-format", "stream-json", "--input-format", "stream-json"
    )
    assert code == 1 and "requires --verbose" in output


async def test_can_use_tool_allow_runs_the_updated_input(
    sandbox: Sandbox, real_shapes: Any
) -> None:
    async with sandbox.agent(*BASE, "--permission-prompt-tool", "stdio") as agent:
        await agent.say("go [tool touch /tmp/never.txt]")
        before = await agent.until(lambda f: f["type"] == "control_request")
        request = before[-1]
        updated = {"command": "echo rewritten", "description": "Run a scripted command"}
        await agent.send(allow(request, updatedInput=updated))
        after = await agent.until(is_result)
        assert_like_real(before + after, real_shapes)
    assert [f["type"] for f in before] == ["system", "assistant", "assistant", "control_request"]
    tool_use = before[2]["message"]["content"][0]
    assert tool_use["name"] == "Bash"
    assert tool_use["input"] == {
        "command": "touch /tmp/never.txt",
        "description": "Run a scripted command",
    }
    req = request["request"]
    assert (
        req["subtype"] == "can_use_tool"
        and req["tool_name"] == "Bash"
        and req["display_name"] == "Bash"
    )
    assert req["input"] == tool_use["input"] and req["tool_use_id"] == tool_use["id"]
    assert req["permission_suggestions"] == [
        {
            "type": "addRules",
            "rules": [{"toolName": "Bash", "ruleContent": "touch:*"}],
            "behavior": "allow",
            "destination": "localSettings",
        }
    ]
    tool_result = after[0]["message"]["content"][0]
    assert tool_result == {
        "tool_use_id": tool_use["id"],
        "type": "tool_result",
        "content": "ran: echo rewritten",
        "is_error": False,
    }
    assert after[0]["tool_use_result"]["stdout"] == "ran: echo rewritten"
    assert after[-1]["result"] == "tool ran: echo rewritten"
    assert after[-1]["num_turns"] == 2 and after[-1]["permission_denials"] == []
    assert not exists(sandbox.cwd / "never.txt") and not exists(Path("/tmp/never.txt"))


async def test_can_use_tool_deny(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*BASE, "--permission-prompt-tool", "stdio") as agent:
        await agent.say("[write /tmp/denied.txt]")
        before = await agent.until(lambda f: f["type"] == "control_request")
        await agent.send(deny(before[-1], "Writes are not allowed in this test"))
        after = await agent.until(is_result)
        assert_like_real(before + after, real_shapes)
        await agent.close_stdin()
        assert await agent.exit_code() == 0  # a refused tool is not a failed turn
    request = before[-1]["request"]
    assert request["tool_name"] == "Write" and request["input"]["file_path"] == "/tmp/denied.txt"
    result_block = after[0]["message"]["content"][0]
    assert result_block["is_error"] is True
    assert result_block["content"] == "Writes are not allowed in this test"
    assert after[-1]["result"] == "tool denied: Writes are not allowed in this test"
    assert after[-1]["is_error"] is False
    assert after[-1]["permission_denials"] == [
        {
            "tool_name": "Write",
            "tool_use_id": request["tool_use_id"],
            "tool_input": request["input"],
        }
    ]


async def test_allow_for_session_rule_is_kept_and_survives_resume(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[tool touch a.txt]")
        request = (await agent.until(lambda f: f["type"] == "control_request"))[-1]
        rules = request["request"]["permission_suggestions"]
        await agent.send(allow(request, updatedPermissions=rules))
        await agent.until(is_result)
        unasked = await agent.turn("[tool touch b.txt]")
        assert of_type(unasked, "control_request") == []
        assert unasked[-1]["result"] == "tool ran: touch b.txt"
        await agent.say("[tool rm b.txt]")  # another command still asks
        request = (await agent.until(lambda f: f["type"] == "control_request"))[-1]
        await agent.send(deny(request, "no"))
        await agent.until(is_result)
        session = unasked[0]["session_id"]
    assert sandbox.conversation(session)["rules"] == [
        {"toolName": "Bash", "ruleContent": "touch:*"}
    ]
    async with sandbox.agent(*SUPERVISOR_FLAGS, "--resume", session) as agent:
        frames = await agent.turn("[tool touch c.txt]")
    assert of_type(frames, "control_request") == []
    assert frames[-1]["result"] == "tool ran: touch c.txt"


async def test_parallel_tool_requests_answered_in_any_order(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[tools 3]")
        frames = await agent.until(lambda f: len(of_type(agent.seen, "control_request")) == 3)
        requests = of_type(frames, "control_request")
        await agent.assert_silent(0.1)  # all three wait for us
        first, second, third = requests
        await agent.send(allow(third))
        got = await agent.frame()
        assert got["type"] == "user"
        assert got["message"]["content"][0]["tool_use_id"] == third["request"]["tool_use_id"]
        await agent.send(deny(first, "not this one"))
        await agent.send(allow(second))
        rest = await agent.until(is_result)
    order = [f["message"]["content"][0]["tool_use_id"] for f in [got, *of_type(rest, "user")]]
    assert order == [r["request"]["tool_use_id"] for r in (third, first, second)]
    assert (
        rest[-1]["result"]
        == "tool denied: not this one\ntool ran: touch tools-2.txt\ntool ran: touch tools-3.txt"
    )
    assert [d["tool_use_id"] for d in rest[-1]["permission_denials"]] == [
        first["request"]["tool_use_id"]
    ]


async def test_interrupt_while_streaming(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("tell me slowly [slow 5]")
        await agent.until(
            lambda f: f["type"] == "stream_event" and f["event"]["type"] == "content_block_delta"
        )
        interrupt = control_request("interrupt")
        started = time.monotonic()
        await agent.send(interrupt)
        frames = await agent.until(is_result)
        assert time.monotonic() - started < 1
        after = await agent.turn("are you still there?")
        await agent.close_stdin()
        assert await agent.exit_code() == 0
        assert_like_real(agent.seen, real_shapes)
    assert frames[0] == {
        "type": "control_response",
        "response": {
            "subtype": "success",
            "request_id": interrupt["request_id"],
            "response": {"still_queued": []},
        },
    }
    aborted = of_type(frames, "assistant")
    assert len(aborted) == 1 and aborted[0]["aborted"] is True
    streamed = "".join(text_deltas(agent.seen[: agent.seen.index(aborted[0])]))
    assert aborted[0]["message"]["content"][0]["text"] == streamed
    assert of_type(frames, "user")[0]["message"]["content"] == [
        {"type": "text", "text": "[Request interrupted by user]"}
    ]
    result = frames[-1]
    assert (result["subtype"], result["is_error"], result["terminal_reason"]) == (
        "error_during_execution",
        True,
        "aborted_streaming",
    )
    assert "result" not in result and result["errors"]
    assert after[-1]["result"] == "echo #2: are you still there? (earlier: 'tell me slowly')"


async def test_interrupt_while_permission_pending(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*BASE, "--permission-prompt-tool", "stdio") as agent:
        await agent.say("[tool touch never.txt]")
        request = (await agent.until(lambda f: f["type"] == "control_request"))[-1]
        interrupt = control_request("interrupt")
        await agent.send(interrupt)
        frames = await agent.until(is_result)
        await agent.send(allow(request))  # too late: must be ignored
        await agent.close_stdin()
        assert await agent.exit_code() == 1  # the last result was an error
        assert await agent.rest() == []
        assert_like_real(agent.seen, real_shapes)
    kinds = [f["type"] for f in frames]
    assert kinds == ["control_cancel_request", "control_response", "user", "user", "result"]
    assert frames[0] == {"type": "control_cancel_request", "request_id": request["request_id"]}
    assert frames[1]["response"]["request_id"] == interrupt["request_id"]
    rejected = frames[2]["message"]["content"][0]
    assert (
        rejected["is_error"] is True
        and rejected["tool_use_id"] == request["request"]["tool_use_id"]
    )
    assert (
        frames[3]["message"]["content"][0]["text"] == "[Request interrupted by user for tool use]"
    )
    result = frames[-1]
    assert (result["subtype"], result["terminal_reason"], result["stop_reason"]) == (
        "error_during_execution",
        "aborted_tools",
        "tool_use",
    )
    assert result["permission_denials"][0]["tool_use_id"] == request["request"]["tool_use_id"]


async def test_control_requests_when_idle(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        interrupt = control_request("interrupt")
        await agent.send(interrupt)
        answer = await agent.frame()
        await agent.assert_silent(0.2)
        bogus = control_request("no_such_subtype_for_testing")
        await agent.send(bogus)
        error = await agent.frame()
        mode = control_request("set_permission_mode", mode="acceptEdits")
        await agent.send(mode)
        mode_answer, status = await agent.frame(), await agent.frame()
        frames = await agent.turn("[write notes.txt]")  # acceptEdits: Write needs no question
        assert_like_real(agent.seen, real_shapes)
    assert answer["response"] == {
        "subtype": "success",
        "request_id": interrupt["request_id"],
        "response": {"still_queued": []},
    }
    assert error["response"] == {
        "subtype": "error",
        "request_id": bogus["request_id"],
        "error": "Unsupported control request subtype: no_such_subtype_for_testing",
        "error_code": "unsupported_request",
    }
    assert mode_answer["response"]["response"] == {"mode": "acceptEdits"}
    assert status["permissionMode"] == "acceptEdits"
    assert frames[0]["permissionMode"] == "acceptEdits"
    assert of_type(frames, "control_request") == []
    assert frames[-1]["result"] == "tool ran: Write notes.txt"


async def test_queued_prompt_runs_as_its_own_turn(sandbox: Sandbox, real_shapes: Any) -> None:
    first_id, second_id = str(uuid.uuid4()), str(uuid.uuid4())
    async with sandbox.agent(*SUPERVISOR_FLAGS, "--replay-user-messages") as agent:
        await agent.say("slow first [slow 0.5]", uuid=first_id)
        await agent.until(lambda f: f["type"] == "stream_event")
        await agent.say("queued while busy", uuid=second_id)
        await agent.until(
            lambda f: f.get("command_uuid") == second_id and f["state"] == "completed"
        )
        assert_like_real(agent.seen, real_shapes)
    results = of_type(agent.seen, "result")
    assert results[1]["result"] == "echo #2: queued while busy (earlier: 'slow first')"
    inits = [i for i, f in enumerate(agent.seen) if f.get("subtype") == "init"]
    assert inits[1] > agent.seen.index(results[0])  # the second turn starts after the first ends
    lifecycle = [(f["command_uuid"], f["state"]) for f in of_type(agent.seen, "command_lifecycle")]
    queued = lifecycle.index((second_id, "queued"))
    assert (
        lifecycle.index((first_id, "started")) < queued < lifecycle.index((first_id, "completed"))
    )
    del lifecycle[queued]
    assert lifecycle == [
        (first_id, "queued"),
        (first_id, "started"),
        (first_id, "completed"),
        (second_id, "started"),
        (second_id, "completed"),
    ]
    replays = [f["message"]["content"] for f in of_type(agent.seen, "user") if f.get("isReplay")]
    assert replays == ["slow first [slow 0.5]", "queued while busy"]


async def test_stdin_eof_finishes_running_and_queued_turns(sandbox: Sandbox) -> None:
    async with sandbox.agent(*BASE) as agent:
        await agent.say("slow and then EOF [slow 0.3]")
        await agent.say("and one more")
        await agent.close_stdin()
        frames = await agent.rest()
        assert await agent.exit_code() == 0
    assert [r["result"][:7] for r in of_type(frames, "result")] == ["echo #1", "echo #2"]
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[tool touch x]")
        await agent.close_stdin()  # nobody will answer the permission request
        frames = await agent.rest()
        assert await agent.exit_code() == 0
    assert len(of_type(frames, "control_request")) == 1
    assert of_type(frames, "result")[0]["result"] == "tool denied: stdin was closed"


async def test_stderr_noise_and_no_persistence(sandbox: Sandbox) -> None:
    async with sandbox.agent(*BASE, "--no-session-persistence") as agent:
        frames = await agent.turn("[stderr 200000] noisy")
        await agent.close_stdin()
        assert await agent.exit_code() == 0
        assert len(agent.stderr()) == 200000
    assert frames[-1]["result"] == "echo #1: noisy (earlier: none)"
    assert not exists(sandbox.home / ".fake-agent" / f"{frames[0]['session_id']}.json")


async def test_crash_and_crash_once(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("boom [crash]")
        frames = await agent.rest()
        assert await agent.exit_code() == 1
    assert of_type(frames, "result") == [] and frames[0]["subtype"] == "init"
    assert len(text_deltas(frames)) == 1
    assert "crash" in agent.stderr()
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[crash-once] fragile")
        frames = await agent.rest()
        assert await agent.exit_code() == 1
    session = frames[0]["session_id"]
    async with sandbox.agent(*SUPERVISOR_FLAGS, "--resume", session) as agent:
        frames = await agent.turn("[crash-once] fragile")
        assert frames[-1]["result"] == "echo #2: fragile (earlier: 'fragile')"
        await agent.close_stdin()
        assert await agent.exit_code() == 0


async def test_api_error(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*BASE) as agent:
        failed = await agent.turn("[api-error] please")
        await agent.close_stdin()
        assert await agent.exit_code() == 1  # the last result was an error
        assert_like_real(failed, real_shapes)
    synthetic = of_type(failed, "assistant")[0]
    assert synthetic["message"]["model"] == "<synthetic>" and synthetic["error"] == "unknown"
    assert synthetic["message"]["content"][0]["text"].startswith("API Error: 500")
    result = failed[-1]
    assert (
        result["subtype"],
        result["is_error"],
        result["api_error_status"],
        result["terminal_reason"],
    ) == (
        "success",
        True,
        500,
        "api_error",
    )
    assert result["total_cost_usd"] == 0


async def test_signals_and_hangs(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[hang]")
        await agent.frame()  # system/init
        await agent.assert_silent(0.2)
        interrupt = control_request("interrupt")
        await agent.send(interrupt)
        frames = await agent.until(is_result)
        assert frames[-1]["terminal_reason"] == "aborted_streaming"
        assert of_type(frames, "assistant") == []
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[hang]")
        await agent.frame()
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.exit_code() == 143
        assert of_type(await agent.rest(), "result") == []
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[hang-hard]")
        await agent.frame()
        await agent.send(control_request("interrupt"))
        await agent.assert_silent(0.3)  # no answer, no result
        agent.proc.send_signal(signal.SIGTERM)
        assert await agent.exit_code() == 143
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[stubborn]")
        await agent.frame()  # system/init: signals are already ignored
        agent.proc.send_signal(signal.SIGTERM)
        with trio.move_on_after(0.3):
            await agent.exit_code()
        assert agent.proc.returncode is None  # SIGTERM ignored
        agent.proc.kill()
        assert await agent.exit_code() == -signal.SIGKILL


async def test_exit_after(sandbox: Sandbox) -> None:
    async with sandbox.agent(*BASE) as agent:
        frames = await agent.turn("bye [exit-after]")
        assert await agent.exit_code() == 0  # stdin still open
    assert frames[-1]["result"] == "echo #1: bye (earlier: none)"


async def test_answer_sizes_and_delta_counts(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        long = (await agent.turn("[long 5000]"))[-1]["result"]
        fence = (await agent.turn("[fence 3000]"))[-1]["result"]
        deltas = await agent.turn("[deltas 7] hi")
        many = await agent.turn("[deltas 50] hi")
    assert len(long) == 5000 and long.count("\n") > 50 and long.startswith("echo #1:")
    assert abs(len(fence) - 3000) < 100
    opening, closing = fence.index("```"), fence.rindex("```")
    assert fence.count("```") == 2 and closing - opening > 0.8 * len(fence)
    assert len(text_deltas(deltas)) == 7 and "".join(text_deltas(deltas)) == deltas[-1]["result"]
    assert len(text_deltas(many)) == 50 and "".join(text_deltas(many)) == many[-1]["result"]


async def test_slow_spreads_the_deltas(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        await agent.say("[slow 0.6] [deltas 6] abcdefgh")
        stamps = []
        while True:
            frame = await agent.frame()
            if frame["type"] == "stream_event" and frame["event"]["type"] == "content_block_delta":
                stamps.append(time.monotonic())
            if is_result(frame):
                break
    assert len(stamps) == 6 and stamps[-1] - stamps[0] >= 0.4


async def test_two_text_blocks_around_a_tool(sandbox: Sandbox, real_shapes: Any) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        frames = await agent.turn("split [text2]")
        assert_like_real(frames, real_shapes)
    assistants = of_type(frames, "assistant")
    blocks = [a["message"]["content"][0]["type"] for a in assistants]
    assert blocks == ["text", "tool_use", "text"]
    assert assistants[0]["message"]["id"] != assistants[2]["message"]["id"]
    assert of_type(frames, "control_request") == []
    # like the real CLI, `result` holds only the last text block
    assert frames[-1]["result"] == assistants[2]["message"]["content"][0]["text"]


async def test_without_permission_prompt_tool_tools_are_refused(
    sandbox: Sandbox, real_shapes: Any
) -> None:
    async with sandbox.agent(*BASE) as agent:
        frames = await agent.turn("[tool touch x]")
        assert_like_real(frames, real_shapes)
    assert of_type(frames, "control_request") == []
    assert len(of_type(frames, "system", "permission_denied")) == 1
    assert frames[-1]["permission_denials"][0]["tool_name"] == "Bash"
    async with sandbox.agent(*BASE, "--permission-mode", "bypassPermissions") as agent:
        frames = await agent.turn("[tool touch x]")
    assert frames[-1]["result"] == "tool ran: touch x"


async def test_images_whoami_env_and_unknown_args(sandbox: Sandbox) -> None:
    args = (*SUPERVISOR_FLAGS, "--append-system-prompt", "be terse", "--frobnicate", "--x=1")
    env = sandbox.env(PERSONA_HINT="pirate")
    async with sandbox.agent(*args, env=env) as agent:
        image = {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        }
        pictured = await agent.turn([{"type": "text", "text": "look"}, image])
        who = await agent.turn("[whoami]")
        hint = await agent.turn("[env PERSONA_HINT]")
    assert pictured[-1]["result"] == "echo #1: look (with 1 image(s): image/png) (earlier: none)"
    info = json.loads(who[-1]["result"].removeprefix("whoami "))
    assert info["append_system_prompt"] == "be terse"
    assert info["unknown_args"] == ["--frobnicate", "--x=1"]
    assert info["cwd"] == str(sandbox.cwd) and info["pid"] == agent.pid
    assert hint[-1]["result"] == "env PERSONA_HINT=pirate"


async def test_log_file(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        frames = await agent.turn("logged")
        live = sandbox.log_of(agent.pid)  # readable while the process runs
        await agent.close_stdin()
        assert await agent.exit_code() == 0
    start = live[0]
    assert start["event"] == "start" and start["pid"] == agent.pid
    assert start["pgid"] == agent.pid  # start_new_session=True
    assert start["argv"][1:] == list(SUPERVISOR_FLAGS)
    assert start["cwd"] == str(sandbox.cwd)
    assert start["session_id"] == frames[0]["session_id"] and start["resumed"] is False
    assert [e["line"] for e in live if e["event"] == "stdin"] == [user_message("logged")]
    assert [e["line"] for e in live if e["event"] == "stdout"] == frames
    final = sandbox.log_of(agent.pid)[-1]
    assert (final["event"], final["code"]) == ("exit", 0)
    assert all(isinstance(e["t"], float) for e in live)


async def test_slow_start(sandbox: Sandbox) -> None:
    env = sandbox.env(FAKE_AGENT_SLOW_START="0.5")
    started = time.monotonic()
    async with sandbox.agent(*SUPERVISOR_FLAGS, env=env) as agent:
        await agent.send(control_request("initialize", hooks=None))
        await agent.frame()
    assert time.monotonic() - started >= 0.5


async def test_grandchild_shares_the_process_group(sandbox: Sandbox) -> None:
    async with sandbox.agent(*SUPERVISOR_FLAGS) as agent:
        frames = await agent.turn("[grandchild]")
        child = int(frames[-1]["result"].rsplit(" ", 1)[1])
        assert os.getpgid(child) == agent.pid
        os.killpg(agent.pid, signal.SIGTERM)
        assert await agent.exit_code() == 143
    for _ in range(150):  # the group kill reached the grandchild too
        if not alive(child):
            break
        await trio.sleep(0.02)
    assert not alive(child)


async def test_continue_and_fork(sandbox: Sandbox) -> None:
    async with sandbox.agent(*BASE) as agent:
        original = (await agent.turn("one"))[0]["session_id"]
    async with sandbox.agent(*BASE, "--continue") as agent:
        frames = await agent.turn("two")
    assert frames[0]["session_id"] == original
    assert frames[-1]["result"] == "echo #2: two (earlier: 'one')"
    async with sandbox.agent(*BASE, "--resume", original, "--fork-session") as agent:
        frames = await agent.turn("three")
    assert frames[0]["session_id"] != original
    assert frames[-1]["result"] == "echo #3: three (earlier: 'one', 'two')"
    assert len(sandbox.conversation(original)["turns"]) == 2
