"""The Claude Code side of the agent port on its own: the stream-json codec's reading of
frames the CLI prints (shared/reference/claude-code/PROTOCOL.md §4) and the CLI's argv."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from supervisor.agent import AgentLaunch, LineConversation
from supervisor.agent.claude.codec import ClaudeCodec
from supervisor.core.agent_events import (
    ControlAsked,
    PermissionAsked,
    TextBlock,
    TextDelta,
    TurnEnded,
)


def line(**frame: Any) -> bytes:
    return json.dumps(frame).encode()


def text_delta(text: str, parent: str | None) -> bytes:
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}
    return line(type="stream_event", event=event, parent_tool_use_id=parent, session_id="s", uuid="u")


def test_a_subagents_streamed_text_is_not_the_answer() -> None:
    """Messages made inside a subagent (Task/Agent tool) carry its tool use id in
    `parent_tool_use_id`, on `stream_event` lines as on `assistant` lines (§4.2, §4.4):
    only the main agent's deltas stream into the answer."""
    codec = ClaudeCodec()
    assert codec.decode(text_delta("the answer ", None)) == [TextDelta("the answer ")]
    assert codec.decode(text_delta("subagent notes", "toolu_task1")) == []
    inner = {"role": "assistant", "content": [{"type": "text", "text": "subagent notes"}]}
    assert codec.decode(line(type="assistant", message=inner, parent_tool_use_id="toolu_task1")) == []
    outer = {"role": "assistant", "content": [{"type": "text", "text": "the answer"}]}
    assert codec.decode(line(type="assistant", message=outer, parent_tool_use_id=None)) == [TextBlock("the answer")]


def test_a_line_nested_deeper_than_the_stack_is_a_malformed_line() -> None:
    """`json.loads` raises RecursionError there, which once left the session task and took
    down every session; the conversation skips a malformed line (ValueError)."""
    nested = b'{"type":"assistant","message":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(ValueError, match="undecodable"):
        ClaudeCodec().decode(nested)


def test_frames_with_null_fields_are_read_not_dropped() -> None:
    """A dropped `result` left its turn running until the stall watchdog (5 minutes), a
    dropped `can_use_tool` its request unanswered as long; a null string showed as "None"."""
    codec = ClaudeCodec()
    (ended,) = codec.decode(line(type="result", subtype="success", result=None, errors=None, total_cost_usd=None))
    assert isinstance(ended, TurnEnded) and ended.result == "" and ended.errors == () and ended.total_cost_usd == 0.0
    ask = {"subtype": "can_use_tool", "tool_name": "Bash", "input": {"command": "ls"}, "description": None,
           "permission_suggestions": None, "tool_use_id": "tu1"}  # fmt: skip
    (asked,) = codec.decode(line(type="control_request", request_id="r1", request=ask))
    assert isinstance(asked, PermissionAsked) and asked.description == "" and asked.input == {"command": "ls"}


def test_a_permission_request_that_cannot_be_read_is_refused_not_left_unanswered() -> None:
    codec = ClaudeCodec()
    (asked,) = codec.decode(line(type="control_request", request_id="r2", request={"subtype": "can_use_tool"}))
    assert asked == ControlAsked(request_id="r2", subtype="can_use_tool")  # the core refuses it


def test_an_api_error_is_said_by_the_turns_end_alone() -> None:
    """A failed API call prints a synthetic assistant message ("API Error: 400 …", model
    `<synthetic>`, top-level `error`) and then an error `result` with the same text
    (capture 07): the result is what the thread shows, so the message is not answer text."""
    codec = ClaudeCodec()
    text = "API Error: 400 scripted failure for testing"
    synthetic = {"role": "assistant", "model": "<synthetic>", "content": [{"type": "text", "text": text}]}
    assert codec.decode(line(type="assistant", message=synthetic, error="unknown", parent_tool_use_id=None)) == []
    [ended] = codec.decode(line(type="result", subtype="success", is_error=True, result=text, session_id="s"))
    assert isinstance(ended, TurnEnded) and ended.is_error and ended.result == text
    # A model's own words are answer text, whatever they say.
    own = {"role": "assistant", "model": "claude-opus-5-5", "content": [{"type": "text", "text": text}]}
    assert codec.decode(line(type="assistant", message=own, parent_tool_use_id=None)) == [TextBlock(text)]


def test_half_an_emoji_from_the_cli_is_read_as_a_replacement_character() -> None:
    """Node writes a string cut inside an emoji as an escaped lone surrogate: read as is, no
    encoder took the text, and its post was retried for ever, holding up the thread."""
    codec = ClaudeCodec()
    cut = b'{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"text_delta","text":"ok \\ud83d"}}}'
    assert codec.decode(cut) == [TextDelta("ok \ufffd")]
    whole = b'{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"text_delta","text":"\\ud83d\\ude00"}}}'
    assert codec.decode(whole) == [TextDelta("\U0001f600")]


def test_a_flood_of_malformed_lines_is_logged_in_part_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    """Each line the CLI printed that looked like a frame and was none was one warning: an
    agent printing such lines in a loop filled the log (and slowed the supervisor down)."""
    launch = AgentLaunch(session_id="3f6b1c2e-0000-4000-8000-00000000000b", cwd="/", resume=False)
    conversation = LineConversation(ClaudeCodec(), launch)
    caplog.set_level(logging.WARNING, logger="supervisor.agent")
    for n in range(10_000):
        assert conversation.receive_line(f"{{not a frame {n}\n".encode()) == []
    conversation.close()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) <= 60 and "undecodable line" in said[0]
    assert said[-1].endswith(f"{10_000 - (len(said) - 1)} more malformed lines not logged")
