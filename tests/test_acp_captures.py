"""Replaying the real OpenCode captures (../shared/reference/opencode-acp/transcripts)
through `AcpClient`: each recorded stdin line becomes the client command that should
produce it, each stdout line is fed to the client, in the recorded order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from supervisor.agent.acp.client import AcpClient, LocalProtocolError
from supervisor.agent.acp.events import AcpEvent
from supervisor.core.agent_events import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = REPO_ROOT.parent / "shared" / "reference" / "opencode-acp" / "transcripts"
SCHEMA_DIR = TRANSCRIPTS.parent


def capture_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".timeline.jsonl") for p in TRANSCRIPTS.glob("*.timeline.jsonl")
    )


def timeline(name: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in (TRANSCRIPTS / f"{name}.timeline.jsonl").read_text().splitlines()
    ]


def json_lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text().splitlines():
        try:
            frame = json.loads(line)
        except ValueError:
            continue
        out.append(frame)
    return out


@attrs.define
class Replay:
    client: AcpClient = attrs.field(factory=AcpClient)
    sent: list[dict[str, Any]] = attrs.field(factory=list)
    events: list[AcpEvent] = attrs.field(factory=list)

    def _take(self, events: list[AcpEvent]) -> None:
        self.events += events
        data = self.client.data_to_send()
        self.sent += [json.loads(line) for line in data.splitlines() if line]

    def command(self, frame: dict[str, Any]) -> None:
        c = self.client
        method, params = frame.get("method"), frame.get("params") or {}
        if method is None:  # our answer to a permission request
            outcome = frame["result"]["outcome"]
            pending = c.permissions.get(str(frame["id"]))
            if pending is None:
                return self._take([])  # cancel answered it already
            if outcome["outcome"] == "cancelled":
                return self._take(c.answer_permission(str(frame["id"]), "cancelled"))
            kind = next(o.kind for o in pending.options if o.option_id == outcome["optionId"])
            return self._take(c.answer_permission(str(frame["id"]), kind))  # type: ignore[arg-type]
        try:
            if method == "initialize":
                return self._take(c.initialize())
            if method == "session/new":
                return self._take(c.new_session(params["cwd"]))
            if method in ("session/resume", "session/load"):
                how = method.split("/")[1]
                return self._take(c.open_session(params["sessionId"], params["cwd"], how))  # type: ignore[arg-type]
            if method == "session/prompt" and params.get("sessionId") == c.session_id:
                blocks = params["prompt"]
                text = "".join(b["text"] for b in blocks if b["type"] == "text")
                images = [Image(b["mimeType"], b["data"]) for b in blocks if b["type"] == "image"]
                return self._take(c.prompt(text, images))
            if method == "session/cancel":
                return self._take(c.cancel())
        except LocalProtocolError:
            pass
        return self._take(c.request(method, params))

    def output(self, line: str) -> None:
        self._take(self.client.receive_line(line.encode()))


def replay(name: str) -> Replay:
    r = Replay()
    for entry in timeline(name):
        if entry["dir"] == "in":
            try:
                frame = json.loads(entry["line"])
            except ValueError:
                continue  # the recorder's deliberate garbage line (09): we never send one
            r.command(frame)
        elif entry["dir"] == "out":
            r.output(entry["line"])
    return r


# --------------------------------------------------------------------------- tests

import pytest  # noqa: E402

from supervisor.agent.acp.events import (  # noqa: E402
    AgentReady,
    ProtocolError,
    RequestFailed,
    SessionOpened,
    SessionOpenFailed,
    ToolCallUpdated,
    UsageUpdated,
)
from supervisor.core.agent_events import (  # noqa: E402
    PermissionAsked,
    PermissionCancelled,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    ToolOutcome,
    TurnEnded,
    TurnStarted,
)

# 12 overlaps two prompts on purpose; our client allows one turn at a time (queueing is
# the session's), so its second prompt is sent raw and its answer cannot be a turn.
REPLAYABLE = [n for n in capture_names() if not n.startswith("12_")]


def _without_client_info(frame: dict[str, Any]) -> dict[str, Any]:
    if frame.get("method") == "initialize":
        frame = {**frame, "params": {k: v for k, v in frame["params"].items() if k != "clientInfo"}}
    return frame


@pytest.mark.parametrize("name", REPLAYABLE)
def test_client_sends_the_recorded_frames(name: str) -> None:
    """Driven like the recorder, the client writes the very frames OpenCode was sent
    (ids, methods, params), except that it answers a pending permission `cancelled` at
    the cancel itself rather than a second later."""
    r = replay(name)
    expected = [_without_client_info(f) for f in json_lines(TRANSCRIPTS / f"{name}.stdin.jsonl")]
    sent = [_without_client_info(f) for f in r.sent]
    assert sent == expected
    assert not [e for e in r.events if isinstance(e, ProtocolError)]


def _kinds(events: list[AcpEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


def test_two_turns_become_text_and_ends() -> None:
    r = replay("01_two_turns_plain")
    assert isinstance(r.events[0], AgentReady)
    assert r.events[0].name == "OpenCode" and r.events[0].version == "1.18.33"
    assert r.events[0].can_resume and r.events[0].can_load and r.events[0].images
    opened = r.events[1]
    assert isinstance(opened, SessionOpened) and opened.session_id.startswith("ses_")
    assert opened.how == "new" and opened.model == "anthropic/claude-sonnet-4-5"
    blocks = [e.text for e in r.events if isinstance(e, TextBlock)]
    assert blocks == [
        "Echo #1: hello there (first prompt in this conversation: 'hello there')",
        "Echo #2: second message, do you remember the first? (first prompt in this "
        "conversation: 'hello there')",
    ]
    deltas = "".join(e.text for e in r.events if isinstance(e, TextDelta))
    assert deltas == "".join(blocks)
    ends = [e for e in r.events if isinstance(e, TurnEnded)]
    assert [(e.subtype, e.is_error, e.total_cost_usd) for e in ends] == [
        ("success", False, 0.000174),
        ("success", False, 0.000603),
    ]
    usage = [e for e in r.events if isinstance(e, UsageUpdated)]
    assert [round(u.turn_cost_usd, 6) for u in usage] == [0.000174, 0.000429]
    assert _kinds(r.events).count("TurnStarted") == 2


def test_permission_allow_then_reject() -> None:
    r = replay("02_permission_allow_reject")
    asked = [e for e in r.events if isinstance(e, PermissionAsked)]
    assert [(a.request_id, a.tool_name, a.description) for a in asked] == [
        ("0", "Bash", "echo made-1"),
        ("1", "Bash", "echo made-2"),
    ]
    calls = [e for e in r.events if isinstance(e, ToolCall)]
    assert [c.name for c in calls] == ["Bash", "Bash"]
    updated = [e.summary for e in r.events if isinstance(e, ToolCallUpdated)]
    assert updated == ["echo made-1", "echo made-2"]
    outcomes = [e for e in r.events if isinstance(e, ToolOutcome)]
    assert [(o.is_error, o.text) for o in outcomes] == [
        (False, "made-1\n"),
        (True, "The user rejected permission to use this specific tool call."),
    ]
    assert r.client.permissions == {}


def test_cancel_with_a_pending_permission_answers_it_cancelled() -> None:
    r = replay("05_cancel_pending_permission")
    assert any(isinstance(e, PermissionCancelled) and e.request_id == "0" for e in r.events)
    cancel_at = next(i for i, f in enumerate(r.sent) if f.get("method") == "session/cancel")
    assert r.sent[cancel_at + 1] == {
        "jsonrpc": "2.0",
        "id": 0,
        "result": {"outcome": {"outcome": "cancelled"}},
    }
    ends = [e for e in r.events if isinstance(e, TurnEnded)]
    assert ends[0].terminal_reason == "aborted_cancelled" and ends[0].total_cost_usd == 0
    assert ends[1].subtype == "success" and ends[1].total_cost_usd > 0


def test_cancel_mid_answer_keeps_the_partial_text() -> None:
    r = replay("04_cancel")
    ends = [e for e in r.events if isinstance(e, TurnEnded)]
    assert [e.terminal_reason for e in ends] == ["aborted_cancelled", "completed"]
    first_end = r.events.index(ends[0])
    assert any(isinstance(e, TextBlock) for e in r.events[:first_end])


def test_load_swallows_the_replayed_history() -> None:
    r = replay("06_resume_new_process.p3_load")
    opened = next(e for e in r.events if isinstance(e, SessionOpened))
    assert opened.how == "load" and opened.replayed == 6
    texts = [e.text for e in r.events if isinstance(e, TextBlock)]
    assert len(texts) == 1 and texts[0].startswith("Echo #4: fourth prompt")


def test_resume_says_nothing_but_opened() -> None:
    r = replay("06_resume_new_process.p2_resume")
    opened = next(e for e in r.events if isinstance(e, SessionOpened))
    assert opened.how == "resume" and opened.replayed == 0


def test_unknown_session_and_errors() -> None:
    r = replay("09_unknown_session")
    failed = [e for e in r.events if isinstance(e, SessionOpenFailed)]
    assert [(f.how, f.code) for f in failed] == [("resume", -32603), ("load", -32603)]
    errors = [e for e in r.events if isinstance(e, RequestFailed)]
    assert [e.code for e in errors] == [-32602, -32602, -32601, -32602]
    assert isinstance(r.events[-1], SessionOpened)


def test_api_error_ends_the_turn_with_its_message() -> None:
    r = replay("07_api_error")
    ends = [e for e in r.events if isinstance(e, TurnEnded)]
    assert ends[0].is_error and "scripted failure for testing" in ends[0].errors[0]
    assert not ends[1].is_error


def test_thought_becomes_one_thinking_block() -> None:
    r = replay("11_think_config_close")
    thinking = [e for e in r.events if isinstance(e, ThinkingBlock)]
    assert len(thinking) == 1 and thinking[0].text.startswith("Let me think")
    ends = [e for e in r.events if isinstance(e, TurnEnded)]
    assert "session not found" in ends[-1].errors[0]


def test_turn_started_carries_the_session() -> None:
    r = replay("01_two_turns_plain")
    started = [e for e in r.events if isinstance(e, TurnStarted)]
    assert started[0].session_id == r.client.session_id
