"""`AcpConversation` (sans-IO): the real OpenCode's frames in the agent port's words.

The first test replays the capture of OpenCode 1.18.33 allowing one Bash call and
rejecting the next (../shared/reference/opencode-acp/transcripts/02_*): the conversation
opens with the agent's id, names each tool call by its command (OpenCode says only
"Bash" first), offers "always" with the rule it covers, and answers by the option kind.
The others drive the opening (resume, a missing conversation, an unusable agent) and the
rules remembered across agent processes with hand-made frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor.agent import AgentLaunch
from supervisor.agent.acp.conversation import AcpConversation
from supervisor.core.agent_events import (
    AgentEvent,
    AgentNotReady,
    AgentUnusable,
    AllowTool,
    ConversationMissing,
    ConversationOpened,
    DenyTool,
    PermissionAsked,
    SendPrompt,
    ToolCall,
    ToolOutcome,
    TurnEnded,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "opencode-acp" / "transcripts"
INIT = {
    "protocolVersion": 1,
    "agentCapabilities": {"loadSession": True, "sessionCapabilities": {"resume": {}}},
    "agentInfo": {"name": "OpenCode", "version": "1.18.33"},
}
OPTIONS = [
    {"optionId": "once", "kind": "allow_once", "name": "Allow once"},
    {"optionId": "always", "kind": "allow_always", "name": "Always allow"},
    {"optionId": "reject", "kind": "reject_once", "name": "Reject"},
]


def frame(**body: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **body}).encode()


def sent(c: AcpConversation) -> list[dict[str, Any]]:
    return [json.loads(x) for x in c.data_to_send().splitlines()]


def launch(**changes: Any) -> AgentLaunch:
    return AgentLaunch(**{"session_id": "ours", "cwd": "/work", "resume": False, **changes})


def ask(rid: int, command: str, tool: str = "t1") -> bytes:
    call = {"toolCallId": tool, "title": command, "kind": "execute", "rawInput": {"command": command}}
    return frame(id=rid, method="session/request_permission", params={"sessionId": "ses_1", "toolCall": call, "options": OPTIONS})


def opened(c: AcpConversation) -> list[AgentEvent]:
    c.start()
    events = c.receive_line(frame(id=1, result=INIT))
    return events + c.receive_line(frame(id=2, result={"sessionId": "ses_1"}))


def test_the_real_capture_of_allow_then_reject() -> None:
    c = AcpConversation(launch())
    events: list[AgentEvent] = c.start()
    prompts = ["RUN_BASH: echo made-1", "RUN_BASH: echo made-2"]
    answers: list[dict[str, Any]] = []
    lines = (TRANSCRIPTS / "02_permission_allow_reject.stdout.jsonl").read_bytes().splitlines()
    for line in lines:
        new = c.receive_line(line)
        events += new
        for event in new:
            if isinstance(event, PermissionAsked):
                first = not answers
                command = AllowTool(event.request_id, event.input) if first else DenyTool(event.request_id, "no")
                c.send(command)
                answers += [f for f in sent(c) if "result" in f]
        if c.client.phase.value == "idle" and prompts:
            events += c.send(SendPrompt(prompts.pop(0)))
        c.data_to_send()
    assert isinstance(events[0], ConversationOpened) and events[0].session_id.startswith("ses_")
    assert not events[0].resumed
    tools = [e for e in events if isinstance(e, ToolCall)]
    assert [t.summary for t in tools] == ["echo made-1", "echo made-2"]
    asked = [e for e in events if isinstance(e, PermissionAsked)]
    assert [a.always.rules if a.always else None for a in asked] == [("command:echo made-1",), ("command:echo made-2",)]
    assert [a["result"]["outcome"]["optionId"] for a in answers] == ["once", "reject"]
    outcomes = [e.is_error for e in events if isinstance(e, ToolOutcome)]
    assert outcomes == [False, True]
    # every tool line comes before its request and its outcome
    order = [type(e).__name__ for e in events if isinstance(e, ToolCall | PermissionAsked | ToolOutcome)]
    assert order == ["ToolCall", "PermissionAsked", "ToolOutcome"] * 2
    assert sum(isinstance(e, TurnEnded) for e in events) == 2


def test_a_known_conversation_is_resumed_and_a_missing_one_replaced() -> None:
    c = AcpConversation(launch(agent_session_id="ses_old", resume=True))
    c.start()
    c.data_to_send()
    assert c.receive_line(frame(id=1, result=INIT)) == []
    (resume,) = sent(c)
    assert resume["method"] == "session/resume" and resume["params"]["sessionId"] == "ses_old"
    events = c.receive_line(frame(id=2, error={"code": -32603, "message": "Internal error"}))
    assert isinstance(events[0], ConversationMissing)
    (new,) = sent(c)
    assert new["method"] == "session/new" and new["params"]["cwd"] == "/work"
    assert c.receive_line(frame(id=3, result={"sessionId": "ses_new"})) == [ConversationOpened("ses_new")]


def test_a_resumed_conversation_says_so() -> None:
    c = AcpConversation(launch(agent_session_id="ses_old", resume=True))
    c.start()
    c.receive_line(frame(id=1, result=INIT))
    assert c.receive_line(frame(id=2, result={})) == [ConversationOpened("ses_old", resumed=True)]


def test_an_agent_that_cannot_serve_is_unusable() -> None:
    c = AcpConversation(launch())
    c.start()
    (event,) = c.receive_line(frame(id=1, result={**INIT, "protocolVersion": 2}))
    assert isinstance(event, AgentUnusable) and "version 2" in event.reason
    c = AcpConversation(launch())
    c.start()
    c.receive_line(frame(id=1, result=INIT))
    (event,) = c.receive_line(frame(id=2, error={"code": -32000, "message": "no model"}))
    assert isinstance(event, AgentUnusable) and "no model" in event.reason


def test_rules_allowed_always_are_answered_here_by_a_new_process() -> None:
    c = AcpConversation(launch(allowed_tools=("command:echo again",)))
    opened(c)
    c.send(SendPrompt("go"))
    c.data_to_send()
    events = c.receive_line(ask(0, "echo again"))
    assert not [e for e in events if isinstance(e, PermissionAsked)]
    (answer,) = sent(c)
    # "once": the agent's own "always" would cover every `echo` command (OpenCode's `echo *`)
    assert answer == {"jsonrpc": "2.0", "id": 0, "result": {"outcome": {"outcome": "selected", "optionId": "once"}}}
    asked = [e for e in c.receive_line(ask(1, "rm -rf x", "t2")) if isinstance(e, PermissionAsked)]
    assert len(asked) == 1 and asked[0].always is not None and asked[0].always.rules == ("command:rm -rf x",)


def test_allow_always_covers_exactly_the_command_allowed() -> None:
    """"Always" for `git status` must never answer `git push --force` unseen: not here (the
    rule was the first word, `run:git *`), and not in the agent (answered "once", so
    OpenCode does not learn its own `git *`). A broad rule of an older record matches nothing."""
    c = AcpConversation(launch(allowed_tools=("run:git *",)))
    opened(c)
    c.send(SendPrompt("go"))
    (request,) = [e for e in c.receive_line(ask(0, "git status")) if isinstance(e, PermissionAsked)]
    assert request.always is not None and request.always.rules == ("command:git status",)
    c.data_to_send()
    c.send(AllowTool(request.request_id, request.input, always=True))
    assert sent(c)[-1]["result"]["outcome"]["optionId"] == "once"
    assert "command:git status" in c.rules
    for rid, command in enumerate(["git push --force", "git status --porcelain", "git  status"], start=1):
        asked = [e for e in c.receive_line(ask(rid, command, f"t{rid}")) if isinstance(e, PermissionAsked)]
        assert [a.input["command"] for a in asked] == [command]  # asked, not answered
        assert sent(c) == []
    c.receive_line(ask(9, "git status", "t9"))
    assert sent(c)[-1]["result"]["outcome"]["optionId"] == "once"  # the very command: answered here


def test_other_tools_are_allowed_always_for_their_exact_input_only() -> None:
    c = AcpConversation(launch())
    opened(c)
    c.send(SendPrompt("go"))
    c.data_to_send()

    def edit(rid: int, new: str) -> bytes:
        call = {"toolCallId": f"e{rid}", "title": "edit", "kind": "edit", "rawInput": {"filePath": "/w/a.py", "newString": new}}
        return frame(id=rid, method="session/request_permission", params={"sessionId": "ses_1", "toolCall": call, "options": OPTIONS})

    (request,) = [e for e in c.receive_line(edit(0, "x = 1")) if isinstance(e, PermissionAsked)]
    c.send(AllowTool(request.request_id, request.input, always=True))
    c.data_to_send()
    assert [e for e in c.receive_line(edit(1, "import os; os.system('rm -rf /')")) if isinstance(e, PermissionAsked)]
    assert sent(c) == []
    assert not [e for e in c.receive_line(edit(2, "x = 1")) if isinstance(e, PermissionAsked)]
    assert sent(c)[-1]["result"]["outcome"]["optionId"] == "once"


def test_a_tool_call_shown_before_the_agent_named_it_is_shown_again_named() -> None:
    """Two calls begin at once (OpenCode's first word names only the tool, "Bash"); the
    first one's request comes before the second is named, and shows it as it stands. The
    second's naming, after that, must reach its line, else it says raw JSON for good."""
    c = AcpConversation(launch())
    opened(c)
    c.send(SendPrompt("go"))
    c.data_to_send()

    def update(kind: str, tool: str, **fields: Any) -> bytes:
        body = {"sessionUpdate": kind, "toolCallId": tool, "kind": "execute", **fields}
        return frame(method="session/update", params={"sessionId": "ses_1", "update": body})

    for tool in ("tA", "tB"):
        c.receive_line(update("tool_call", tool, title="Bash", status="pending", rawInput={"cwd": "/work"}))
    shown = [e for e in c.receive_line(ask(0, "ls", "tA")) if isinstance(e, ToolCall)]
    assert [e.tool_use_id for e in shown] == ["tB", "tA"]  # tB as it stood
    named = c.receive_line(update("tool_call_update", "tB", title="rm -rf build", status="in_progress",
                                  rawInput={"command": "rm -rf build"}))  # fmt: skip
    assert [(e.tool_use_id, e.summary) for e in named if isinstance(e, ToolCall)] == [("tB", "rm -rf build")]


def ask_with(rid: int, command: str, kinds: list[str]) -> bytes:
    options = [{"optionId": k, "kind": k, "name": k} for k in kinds]
    call = {"toolCallId": f"t{rid}", "title": command, "kind": "execute", "rawInput": {"command": command}}
    return frame(id=rid, method="session/request_permission", params={"sessionId": "ses_1", "toolCall": call, "options": options})


def test_an_allow_is_never_answered_with_a_reject_and_a_missing_option_is_said() -> None:
    c = AcpConversation(launch(allowed_tools=("command:ls",)))
    opened(c)
    c.send(SendPrompt("go"))
    c.data_to_send()
    # No "allow once": 👍 is answered with the agent's "always allow", and the post says so
    # before anyone chooses; a rule kept here is not answered with it unseen.
    (request,) = [e for e in c.receive_line(ask_with(0, "ls", ["allow_always", "reject_once"])) if isinstance(e, PermissionAsked)]
    assert 'no "allow once"' in request.description and request.description.startswith("ls\n")
    c.send(AllowTool(request.request_id, request.input))
    assert sent(c)[-1]["result"]["outcome"] == {"outcome": "selected", "optionId": "allow_always"}
    # No allow at all: the post says so, and 👍 answers "cancelled", never the reject.
    (request,) = [e for e in c.receive_line(ask_with(1, "pwd", ["reject_once"])) if isinstance(e, PermissionAsked)]
    assert "no way to allow" in request.description
    c.send(AllowTool(request.request_id, request.input))
    assert sent(c)[-1]["result"]["outcome"] == {"outcome": "cancelled"}
    # All offered: nothing more is said.
    (request,) = [e for e in c.receive_line(ask_with(2, "id", ["allow_once", "allow_always", "reject_once"])) if isinstance(e, PermissionAsked)]
    assert request.description == "id"


def test_each_plan_update_replaces_the_plan() -> None:
    c = AcpConversation(launch())
    opened(c)
    c.send(SendPrompt("go"))
    plans = []
    for statuses in (("in_progress", "pending"), ("completed", "in_progress")):
        entries = [{"content": "Look", "status": statuses[0]}, {"content": "Fix", "status": statuses[1]}]
        update = {"sessionUpdate": "plan", "entries": entries}
        plans += c.receive_line(frame(method="session/update", params={"sessionId": "ses_1", "update": update}))
    # One id for the turn's plan: the thread changes its one line rather than adding another.
    assert plans == [ToolCall("plan", "Plan", summary="▸ Look · ☐ Fix"), ToolCall("plan", "Plan", summary="☑ Look · ▸ Fix")]


INIT_LISTS = {**INIT, "agentCapabilities": {"loadSession": True, "sessionCapabilities": {"resume": {}, "list": {}}}}
UNKNOWN = {"code": -32603, "message": "Internal error: OpenCode service failure", "data": {"service": "session"}}


def refused_resume(c: AcpConversation) -> list[AgentEvent]:
    c.start()
    c.receive_line(frame(id=1, result=INIT_LISTS))
    c.data_to_send()
    return c.receive_line(frame(id=2, error=UNKNOWN))


def test_a_conversation_the_agent_lists_is_never_given_up_for_a_failed_resume() -> None:
    """OpenCode answers an unknown id and any other failure alike (-32603, PROTOCOL §7):
    before the id is dropped for good, session/list says whether the conversation exists.
    If it does, this start failed (it may pass: another agent is started under the restart
    policy) and the id is kept."""
    c = AcpConversation(launch(agent_session_id="ses_old", resume=True))
    assert refused_resume(c) == []
    (listing,) = sent(c)
    assert listing["method"] == "session/list" and listing["params"] == {"cwd": "/work"}
    listed = {"sessions": [{"sessionId": "ses_old", "cwd": "/work"}]}
    (event,) = c.receive_line(frame(id=3, result=listed))
    assert isinstance(event, AgentNotReady) and "has conversation `ses_old`" in event.reason
    assert sent(c) == []  # no new conversation replaces it


def test_a_conversation_on_no_page_of_the_list_is_missing() -> None:
    c = AcpConversation(launch(agent_session_id="ses_old", resume=True))
    refused_resume(c)
    sent(c)
    first = {"sessions": [{"sessionId": "ses_a", "cwd": "/work"}], "nextCursor": "page2"}
    assert c.receive_line(frame(id=3, result=first)) == []
    (listing,) = sent(c)
    assert listing["params"] == {"cwd": "/work", "cursor": "page2"}
    events = c.receive_line(frame(id=4, result={"sessions": [{"sessionId": "ses_b", "cwd": "/work"}]}))
    assert isinstance(events[0], ConversationMissing) and "ses_old" in events[0].detail
    assert sent(c)[0]["method"] == "session/new"


def test_a_list_that_fails_leaves_the_conversation_missing_as_before() -> None:
    c = AcpConversation(launch(agent_session_id="ses_old", resume=True))
    refused_resume(c)
    sent(c)
    events = c.receive_line(frame(id=3, error={"code": -32601, "message": "Method not found"}))
    assert isinstance(events[0], ConversationMissing)
    assert sent(c)[0]["method"] == "session/new"
