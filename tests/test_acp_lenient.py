"""What an agent may send that OpenCode does not: fields the schema lets be null, values
it says to read as their default when they do not fit (`x-deserialize-default-on-error`,
`x-deserialize-skip-invalid-items`), half an emoji, and plain text printed on stdout in a
loop. Each must leave the conversation usable and the supervisor's log readable."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from supervisor.agent import AgentLaunch
from supervisor.agent.acp.client import AcpClient
from supervisor.agent.acp.conversation import (
    TROUBLE_LOGGED_PER_WINDOW,
    TROUBLE_WINDOW_S,
    AcpConversation,
    trouble_log,
    trouble_text,
)
from supervisor.agent.acp.events import AgentReady, ProtocolError, SessionsListed
from supervisor.agent.acp.wire import ConfigOption, SessionResult, structure
from supervisor.core.agent_events import (
    AgentEvent,
    AgentUnusable,
    AllowTool,
    ConversationMissing,
    ConversationOpened,
    SendPrompt,
    TextDelta,
    ToolCall,
    ToolOutcome,
    TurnEnded,
)

INIT = {
    "protocolVersion": 1,
    "agentCapabilities": {"loadSession": True, "sessionCapabilities": {"resume": {}}},
    "agentInfo": {"name": "Other", "version": "0.1"},
}


def frame(**body: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **body}).encode()


def update(**fields: Any) -> bytes:
    return frame(method="session/update", params={"sessionId": "ses_1", "update": fields})


def sent(c: AcpConversation | AcpClient) -> list[dict[str, Any]]:
    return [json.loads(x) for x in c.data_to_send().splitlines()]


class Clock:
    """A clock the test moves (the conversation's own would be trio's)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def conversation(clock: Callable[[], float] = lambda: 0.0, **launch: Any) -> AcpConversation:
    launched = AgentLaunch(**{"session_id": "ours", "cwd": "/work", "resume": False, **launch})
    return AcpConversation(launched, clock=clock)


def opened(clock: Callable[[], float] = lambda: 0.0) -> AcpConversation:
    c = conversation(clock)
    c.start()
    c.receive_line(frame(id=1, result=INIT))
    assert c.receive_line(frame(id=2, result={"sessionId": "ses_1"})) == [ConversationOpened("ses_1")]
    c.data_to_send()
    return c


def prompting(clock: Callable[[], float] = lambda: 0.0) -> AcpConversation:
    c = opened(clock)
    c.send(SendPrompt("hi"))
    c.data_to_send()
    return c


def ready(capabilities: Any, agent_info: Any = None) -> AgentReady:
    c = AcpClient()
    c.initialize()
    result = {"protocolVersion": 1, "agentCapabilities": capabilities, "agentInfo": agent_info}
    (event,) = c.receive_line(frame(id=1, result=result))
    assert isinstance(event, AgentReady)
    return event


# --- null is "not there" ---------------------------------------------------------------


def test_a_new_conversation_answered_with_null_config_options_is_opened() -> None:
    c = conversation()
    c.start()
    c.receive_line(frame(id=1, result=INIT))
    events = c.receive_line(frame(id=2, result={"sessionId": "ses_1", "configOptions": None, "modes": None}))
    assert events == [ConversationOpened("ses_1")]


def test_capabilities_said_null_are_not_offered_so_the_conversation_is_loaded() -> None:
    c = conversation(agent_session_id="ses_1", resume=True)
    c.start()
    c.data_to_send()
    caps = {"loadSession": True, "sessionCapabilities": {"resume": None, "list": None}}
    assert c.receive_line(frame(id=1, result={**INIT, "agentCapabilities": caps})) == []
    (load,) = sent(c)
    assert load["method"] == "session/load" and load["params"]["sessionId"] == "ses_1"
    # and no session/list either: a refused load is a missing conversation at once
    events = c.receive_line(frame(id=2, error={"code": -32603, "message": "Internal error"}))
    assert isinstance(events[0], ConversationMissing)
    assert [f["method"] for f in sent(c)] == ["session/new"]


def test_a_capability_offered_as_an_object_still_counts() -> None:
    agent = ready({"loadSession": True, "sessionCapabilities": {"resume": {}, "list": {}, "close": None}})
    assert (agent.can_resume, agent.can_list, agent.can_load) == (True, True, True)


def _texts(value: Any) -> list[str]:
    """Every string an event (or a frame we sent) holds."""
    if isinstance(value, str):
        return [value]
    if attrs.has(type(value)):
        return _texts(attrs.asdict(value, recurse=False))
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _texts(k) + _texts(v)]
    if isinstance(value, list | tuple | set | frozenset):
        return [t for v in value for t in _texts(v)]
    return []


def _said(events: list[Any], c: AcpConversation | AcpClient, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the events, the frames sent back and the log say."""
    return _texts(events) + _texts(sent(c)) + [r.getMessage() for r in caplog.records]


def test_a_plan_entry_with_null_text_is_skipped_and_a_null_status_is_pending(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = prompting()
    entries = [{"content": None, "status": "pending", "priority": "low"}, {"content": "b", "status": None, "priority": None}]
    events = c.receive_line(update(sessionUpdate="plan", entries=entries))
    assert [e.summary for e in events if isinstance(e, ToolCall)] == ["☐ b"]
    assert not any("None" in t for t in _said(events, c, caplog))


def test_a_tool_call_with_a_null_id_is_refused_not_named_none(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.agent.acp")
    c = prompting()
    for kind in ("tool_call", "tool_call_update"):
        start = update(sessionUpdate=kind, toolCallId=None, title="ls", kind="execute", status="completed")
        assert c.receive_line(start) == []
    ask = {"toolCallId": None, "title": "ls"}
    refused = c.receive_line(frame(id=0, method="session/request_permission",
                                   params={"sessionId": "ses_1", "toolCall": ask, "options": []}))
    assert refused == []
    (answer,) = sent(c)
    assert answer["id"] == 0 and answer["error"]["code"] == -32602
    assert len(caplog.records) == 3  # each said as protocol trouble
    assert not any("None" in t for t in _said(refused, c, caplog))


def test_a_permission_option_with_a_null_id_is_never_answered_as_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = prompting()
    ask = {"toolCallId": "t1", "title": "ls", "rawInput": {"command": "ls"}}
    options = [{"optionId": None, "kind": "allow_once", "name": None}]
    events = c.receive_line(frame(id=0, method="session/request_permission",
                                  params={"sessionId": "ses_1", "toolCall": ask, "options": options}))
    events += c.send(AllowTool("0", {"command": "ls"}))
    assert not any("None" in t for t in _said(events, c, caplog))


def test_null_error_messages_are_no_text(caplog: pytest.LogCaptureFixture) -> None:
    c = conversation()
    c.start()
    c.receive_line(frame(id=1, result=INIT))
    (unusable,) = c.receive_line(frame(id=2, error={"code": -32603, "message": None}))
    assert isinstance(unusable, AgentUnusable) and "None" not in unusable.reason
    c = prompting()
    (end,) = c.receive_line(frame(id=3, error={"code": -32603, "message": None}))
    assert isinstance(end, TurnEnded) and end.is_error and end.errors == ("error -32603",)
    (trouble,) = AcpClient().receive_line(frame(id=None, error={"code": -32700, "message": None}))
    assert isinstance(trouble, ProtocolError) and "None" not in trouble.reason


def test_null_names_are_read_as_absent() -> None:
    assert ready({}, agent_info={"name": None, "version": None, "title": None}).name == "agent"
    option = structure({"id": "mode", "name": None, "currentValue": None}, ConfigOption)
    assert (option.name, option.current_value) == ("", None)
    result = structure({"sessionId": "ses_1", "configOptions": [{"id": None, "name": "Mode"}]}, SessionResult)
    assert result.config_options == []


def test_a_listed_session_with_a_null_id_is_left_out() -> None:
    c = AcpClient()
    c.initialize()
    c.receive_line(frame(id=1, result={**INIT, "agentCapabilities": {"sessionCapabilities": {"list": {}}}}))
    c.list_sessions("/work")
    sessions = [{"sessionId": None, "cwd": "/work"}, {"sessionId": "ses_2", "cwd": None}]
    (listed,) = c.receive_line(frame(id=2, result={"sessions": sessions, "nextCursor": None}))
    assert listed == SessionsListed(("ses_2",), None, ())


# --- half an emoji ---------------------------------------------------------------------


def test_half_an_emoji_in_a_chunk_is_read_as_a_replacement_character() -> None:
    c = prompting()
    # json.dumps escapes the lone surrogate, as JavaScript's JSON.stringify does
    chunk = update(sessionUpdate="agent_message_chunk", messageId="m1", content={"type": "text", "text": "a\ud83d"})
    assert b"\\ud83d" in chunk
    (delta,) = c.receive_line(chunk)
    assert isinstance(delta, TextDelta) and delta.text == "a\ufffd"
    delta.text.encode("utf-8")


def test_a_request_named_with_half_an_emoji_is_refused_not_raised() -> None:
    c = AcpClient()
    c.initialize()
    c.data_to_send()
    c.receive_line(b'{"jsonrpc":"2.0","id":1,"method":"x\\ud800"}')
    (refusal,) = sent(c)
    assert refusal["id"] == 1 and refusal["error"]["code"] == -32601


def test_our_frames_are_written_whatever_their_text_holds() -> None:
    c = opened()
    c.send(SendPrompt("à bientôt 🙂 \ud800"))  # a person's text may hold half an emoji too
    data = c.data_to_send()
    assert data.isascii()
    (prompt,) = [json.loads(x) for x in data.splitlines()]
    assert prompt["params"]["prompt"][0]["text"] == "à bientôt 🙂 \ud800"


# --- plain text on stdout --------------------------------------------------------------


def test_a_flood_of_lines_that_are_no_frames_is_logged_a_bounded_number_of_times(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.agent.acp")
    c = prompting()
    for n in range(10_000):
        assert c.receive_line(b"debug: " + b"x" * 2000 + str(n).encode()) == []
    records = [r for r in caplog.records if r.name == "supervisor.agent.acp"]
    assert 1 <= len(records) <= 60
    assert all(len(r.getMessage()) < 800 for r in records)
    # the conversation goes on
    (delta,) = c.receive_line(update(sessionUpdate="agent_message_chunk", content={"type": "text", "text": "ok"}))
    assert delta == TextDelta("ok")


def test_trouble_left_out_is_said_once_when_the_agent_ends(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.agent.acp")
    c = prompting()
    for _ in range(TROUBLE_LOGGED_PER_WINDOW + 7):
        c.receive_line(b"plain text")
    assert len(caplog.records) == TROUBLE_LOGGED_PER_WINDOW
    c.close()
    c.close()
    assert [r.getMessage() for r in caplog.records[TROUBLE_LOGGED_PER_WINDOW:]] == [
        "ACP agent of session ours: 7 more lines of protocol trouble not logged"
    ]


def test_the_conversation_times_its_trouble_by_the_clock_it_is_given(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.agent.acp")
    clock = Clock()
    c = prompting(clock)
    for _ in range(TROUBLE_LOGGED_PER_WINDOW + 3):
        c.receive_line(b"plain text")
    clock.now = TROUBLE_WINDOW_S - 0.1
    c.receive_line(b"plain text")  # the same window: counted
    assert len(caplog.records) == TROUBLE_LOGGED_PER_WINDOW
    clock.now = TROUBLE_WINDOW_S
    c.receive_line(b"more plain text")
    assert [r.getMessage() for r in caplog.records][-2:] == [
        "ACP agent of session ours: 4 more lines of protocol trouble not logged",
        "ACP agent of session ours: not JSON: Expecting value: line 1 column 1 (char 0): 'more plain text'",
    ]


def test_trouble_left_out_is_counted_and_said_when_the_next_window_opens(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="supervisor.agent.acp")
    trouble = trouble_log("agent 7")
    for _ in range(TROUBLE_LOGGED_PER_WINDOW + 30):
        trouble.record(trouble_text("not JSON", "garbage"), 100.0)
    assert len(caplog.records) == TROUBLE_LOGGED_PER_WINDOW
    trouble.record(trouble_text("not JSON", "garbage"), 100.0 + TROUBLE_WINDOW_S)
    assert [r.getMessage() for r in caplog.records][-2:] == [
        "agent 7: 30 more lines of protocol trouble not logged",
        "agent 7: not JSON: 'garbage'",
    ]


# --- default on error ------------------------------------------------------------------


@pytest.mark.parametrize(
    "capabilities",
    [
        {"loadSession": True, "promptCapabilities": "yes"},
        {"loadSession": True, "promptCapabilities": None},
        {"loadSession": True, "promptCapabilities": [1], "sessionCapabilities": None},
        {"loadSession": True, "promptCapabilities": {"image": "false"}, "sessionCapabilities": []},
    ],
)
def test_malformed_capabilities_are_read_as_their_defaults(capabilities: dict[str, Any]) -> None:
    agent = ready(capabilities, agent_info=["not", "an", "object"])
    assert (agent.images, agent.can_load, agent.can_resume, agent.name) == (False, True, False, "agent")


def test_malformed_agent_capabilities_give_a_ready_agent_that_offers_nothing() -> None:
    agent = ready(5)
    assert (agent.images, agent.can_load, agent.can_resume, agent.can_list) == (False, False, False, False)


def test_a_config_option_that_does_not_fit_is_skipped() -> None:
    c = conversation()
    c.start()
    c.receive_line(frame(id=1, result=INIT))
    options = [
        "junk",
        {"name": "no id", "category": "model", "currentValue": "wrong"},
        {"id": "model", "name": "Model", "category": "model", "currentValue": "anthropic/m1", "type": "select"},
    ]
    events = c.receive_line(frame(id=2, result={"sessionId": "ses_1", "configOptions": options}))
    assert events == [ConversationOpened("ses_1", model="anthropic/m1")]


def test_tool_content_that_does_not_fit_is_skipped() -> None:
    c = prompting()
    start = update(sessionUpdate="tool_call", toolCallId="t1", title="ls", kind="execute", rawInput={"command": "ls"})
    assert c.receive_line(start) == []  # held until named or finished
    content = [
        "junk",
        {"type": "content", "content": {"text": "a block without its type"}},
        {"type": "content", "content": {"type": "text", "text": "out\n"}},
    ]
    events: list[AgentEvent] = c.receive_line(
        update(sessionUpdate="tool_call_update", toolCallId="t1", status="completed", content=content)
    )
    assert [type(e) for e in events] == [ToolCall, ToolOutcome]
    assert events[1] == ToolOutcome("t1", False, "out\n")


def test_a_plan_entry_that_does_not_fit_is_skipped() -> None:
    c = prompting()
    entries = [{"status": "pending"}, {"content": "write the test", "status": "in_progress", "priority": "high"}]
    (plan,) = c.receive_line(update(sessionUpdate="plan", entries=entries))
    assert isinstance(plan, ToolCall) and plan.summary == "▸ write the test"
