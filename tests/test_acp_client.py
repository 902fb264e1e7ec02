"""AcpClient rules that the captures do not show, and the OpenCode launch data."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from supervisor.agent.acp.backend import (
    OFFLINE_NPM_REGISTRY,
    StartGate,
    merged_inline_config,
    opencode_backend,
)
from supervisor.agent.acp.client import AcpClient, LocalProtocolError, Phase
from supervisor.agent.acp.events import HandshakeFailed, ProtocolError, SessionOpenFailed
from supervisor.core.agent_events import (
    AllowTool,
    ControlAsked,
    DenyTool,
    Image,
    Interrupt,
    PermissionAsked,
    PermissionCancelled,
    SendPrompt,
    TurnEnded,
)

INIT = {
    "protocolVersion": 1,
    "agentCapabilities": {"loadSession": True, "promptCapabilities": {"image": False}},
    "agentInfo": {"name": "Other", "version": "0.1"},
}
ASK = {
    "sessionId": "s1",
    "toolCall": {
        "toolCallId": "t1",
        "title": "rm -rf x",
        "kind": "execute",
        "rawInput": {"command": "rm -rf x"},
    },
    "options": [
        {"optionId": "yes", "kind": "allow_once", "name": "Yes"},
        {"optionId": "no", "kind": "reject_once", "name": "No"},
    ],
}


def line(**frame: Any) -> bytes:
    return json.dumps({"jsonrpc": "2.0", **frame}).encode()


def sent(c: AcpClient) -> list[dict[str, Any]]:
    return [json.loads(x) for x in c.data_to_send().splitlines()]


def prompting_client() -> AcpClient:
    c = AcpClient()
    c.initialize()
    c.receive_line(line(id=1, result=INIT))
    c.new_session("/w")
    c.receive_line(line(id=2, result={"sessionId": "s1"}))
    c.prompt("hi")
    c.data_to_send()
    return c


def test_advertises_no_fs_or_terminal() -> None:
    c = AcpClient()
    c.initialize()
    caps = sent(c)[0]["params"]["clientCapabilities"]
    assert caps == {"fs": {"readTextFile": False, "writeTextFile": False}, "terminal": False}


def test_unsupported_version_fails_the_handshake() -> None:
    c = AcpClient()
    c.initialize()
    events = c.receive_line(line(id=1, result={**INIT, "protocolVersion": 2}))
    assert isinstance(events[0], HandshakeFailed) and "version 2" in events[0].reason
    assert c.phase is Phase.FAILED


def test_load_only_agent_is_loaded_and_no_images_are_sent() -> None:
    c = AcpClient()
    c.initialize()
    c.receive_line(line(id=1, result=INIT))
    c.open_session("old", "/w")
    assert sent(c)[-1]["method"] == "session/load"
    c.receive_line(
        line(
            method="session/update",
            params={
                "sessionId": "old",
                "update": {
                    "sessionUpdate": "agent_message_chunk",
                    "content": {"type": "text", "text": "replayed"},
                },
            },
        )
    )
    opened = c.receive_line(line(id=2, result={}))
    assert opened[0].replayed == 1  # type: ignore[union-attr]
    c.send(SendPrompt("look", images=(Image("image/png", "AA=="),)))
    blocks = sent(c)[-1]["params"]["prompt"]
    assert [b["type"] for b in blocks] == ["text"] and "not sent" in blocks[0]["text"]


def test_agent_without_resume_or_load_cannot_continue() -> None:
    c = AcpClient()
    c.initialize()
    c.receive_line(line(id=1, result={**INIT, "agentCapabilities": {}}))
    assert isinstance(c.open_session("old", "/w")[0], SessionOpenFailed)


def test_one_turn_at_a_time() -> None:
    c = prompting_client()
    with pytest.raises(LocalProtocolError):
        c.prompt("again")


def test_allow_answers_always_only_when_the_person_chose_always() -> None:
    """What the option is, is the person's choice: rules carried beside it (Claude Code's
    `updated_permissions`) never turn "allow once" into the agent's own "always"."""
    both = {**ASK, "options": [{"optionId": "always", "kind": "allow_always", "name": "Always"}, *ASK["options"]]}
    c = prompting_client()
    c.receive_line(line(id=0, method="session/request_permission", params=both))
    c.send(AllowTool("0", {}, ({"rule": 1},)))
    assert sent(c)[0]["result"]["outcome"] == {"outcome": "selected", "optionId": "yes"}
    c.receive_line(line(id=1, method="session/request_permission", params=both))
    c.send(AllowTool("1", {}, always=True))
    assert sent(c)[0]["result"]["outcome"] == {"outcome": "selected", "optionId": "always"}


def test_answers_by_kind_and_falls_back_to_the_same_sense() -> None:
    c = prompting_client()
    events = c.receive_line(line(id=0, method="session/request_permission", params=ASK))
    assert isinstance(events[0], PermissionAsked) and events[0].description == "rm -rf x"
    c.send(AllowTool("0", {}, always=True))  # allow_always was not offered: the narrower allow
    assert sent(c) == [
        {
            "jsonrpc": "2.0",
            "id": 0,
            "result": {"outcome": {"outcome": "selected", "optionId": "yes"}},
        }
    ]
    c.receive_line(line(id="k", method="session/request_permission", params=ASK))
    c.send(DenyTool("k", "no"))
    assert sent(c)[0]["result"]["outcome"]["optionId"] == "no"
    assert c.answer_permission("k", "allow_once") == []  # a late click changes nothing
    assert sent(c) == []


def test_a_subagents_request_in_its_child_session_is_asked_in_the_turn() -> None:
    """OpenCode's `task` tool runs a subagent in a session of its own, whose permission
    requests name that session: refused unseen, the subagent's tool failed and nobody
    knew why. They are the running turn's, asked and answered like its own."""
    c = prompting_client()
    events = c.receive_line(line(id=0, method="session/request_permission", params={**ASK, "sessionId": "ses_child"}))
    assert [type(e) for e in events] == [PermissionAsked] and events[0].description == "rm -rf x"
    assert sent(c) == []  # waiting for the person
    c.send(AllowTool("0", {}))
    assert sent(c)[0] == {"jsonrpc": "2.0", "id": 0, "result": {"outcome": {"outcome": "selected", "optionId": "yes"}}}


def test_cancel_answers_pending_requests_and_later_ones() -> None:
    c = prompting_client()
    c.receive_line(line(id=0, method="session/request_permission", params=ASK))
    events = c.send(Interrupt("x"))
    assert events == [PermissionCancelled("0")]
    frames = sent(c)
    assert frames[0]["method"] == "session/cancel"
    assert frames[1] == {"jsonrpc": "2.0", "id": 0, "result": {"outcome": {"outcome": "cancelled"}}}
    assert c.receive_line(line(id=1, method="session/request_permission", params=ASK)) == []
    assert sent(c)[0]["result"]["outcome"] == {"outcome": "cancelled"}
    end = c.receive_line(line(id=3, result={"stopReason": "cancelled"}))
    assert isinstance(end[-1], TurnEnded) and end[-1].terminal_reason == "aborted_cancelled"
    assert c.phase is Phase.IDLE


def test_a_request_the_agent_withdraws_is_answered_cancelled_and_said_withdrawn() -> None:
    """`$/cancel_request`: the receiver must still answer the request (a valid answer or
    -32800); a withdrawal of one answered already, or unknown, changes nothing."""
    c = prompting_client()
    c.receive_line(line(id=0, method="session/request_permission", params=ASK))
    c.receive_line(line(id="k", method="session/request_permission", params=ASK))
    assert c.receive_line(line(method="$/cancel_request", params={"requestId": "k"})) == [PermissionCancelled("k")]
    assert sent(c) == [{"jsonrpc": "2.0", "id": "k", "result": {"outcome": {"outcome": "cancelled"}}}]
    assert c.receive_line(line(method="$/cancel_request", params={"requestId": "k"})) == []
    assert c.receive_line(line(method="$/cancel_request", params={"requestId": 7})) == []
    assert sent(c) == []
    c.send(AllowTool("0", {}))  # the other one is still the person's to answer
    assert sent(c)[0]["result"]["outcome"] == {"outcome": "selected", "optionId": "yes"}


def test_requests_we_do_not_serve_are_refused_at_once() -> None:
    c = prompting_client()
    events = c.receive_line(line(id=5, method="fs/read_text_file", params={"path": "/etc/passwd"}))
    assert events == [ControlAsked("5", "fs/read_text_file")]
    assert sent(c)[0]["error"]["code"] == -32601


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b"[1,2]",
        b'{"jsonrpc":"1.0","id":1}',
        b'{"jsonrpc":"2.0","id":77,"result":{}}',
        b'{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1"}}',
        b'{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"tool_call"}}}',
        b'{"jsonrpc":"2.0","id":0,"method":"session/request_permission","params":{"sessionId":"s1"}}',
        # an id no request has (unhashable, once taken down the whole supervisor), nesting
        # deeper than the interpreter's stack
        b'{"jsonrpc":"2.0","id":{},"result":{}}',
        b'{"jsonrpc":"2.0","id":[3],"result":{}}',
        b'{"jsonrpc":"2.0","id":true,"result":{}}',
        b'{"jsonrpc":"2.0","id":3,"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_bad_lines_are_survived(bad: bytes) -> None:
    c = prompting_client()
    events = c.receive_line(bad)
    assert [type(e) for e in events] == [ProtocolError]
    c.receive_line(
        line(
            method="session/update",
            params={"sessionId": "s1", "update": {"sessionUpdate": "something_new", "x": 1}},
        )
    )
    end = c.receive_line(line(id=3, result={"stopReason": "max_tokens"}))
    assert (
        isinstance(end[-1], TurnEnded)
        and end[-1].is_error
        and end[-1].subtype == "error_max_tokens"
    )


def test_opencode_env_is_offline_and_asks_without_clobbering() -> None:
    backend = opencode_backend(("opencode",))
    assert backend.argv() == ["opencode", "acp"]
    env = backend.env({"PATH": "/bin"})
    assert env["npm_config_registry"] == OFFLINE_NPM_REGISTRY
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"]) == {"permission": {"*": "ask"}}
    mine = json.dumps({"model": "x/y", "permission": {"bash": "allow"}})
    env = backend.env({"npm_config_registry": "http://mirror/", "OPENCODE_CONFIG_CONTENT": mine})
    assert env["npm_config_registry"] == "http://mirror/"
    assert json.loads(env["OPENCODE_CONFIG_CONTENT"]) == {
        "model": "x/y",
        "permission": {"bash": "allow"},
    }
    assert "OPENCODE_CONFIG_CONTENT" not in backend.env({}, permission_mode="bypassPermissions")
    assert merged_inline_config("{broken", {"a": 1}) == "{broken"


async def test_start_gate_serialises_until_the_first_success() -> None:
    gate = StartGate()
    inside = 0
    most = 0

    async def start(fail: bool) -> None:
        nonlocal inside, most
        try:
            async with gate:
                inside += 1
                most = max(most, inside)
                await trio.sleep(0.01)
                inside -= 1
                if fail:
                    raise RuntimeError
        except RuntimeError:
            pass

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start, True)
        nursery.start_soon(start, False)
        nursery.start_soon(start, False)
    assert most == 1 and gate.warm
    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(start, False)
    assert most == 3


async def test_a_start_that_entered_once_warm_never_releases_a_lock_another_start_holds() -> None:
    """A warm start leaving while a start that waited from before holds the lock: it must
    not release that lock (trio raises "can't release a Lock you don't own")."""
    gate = StartGate()
    first_in, second_in, second_may_leave = trio.Event(), trio.Event(), trio.Event()

    async def first() -> None:
        await gate.enter()
        first_in.set()
        await trio.sleep(0.01)
        gate.leave(ok=True)

    async def second() -> None:
        await first_in.wait()
        await gate.enter()  # waits for the first, then holds the lock
        second_in.set()
        await second_may_leave.wait()
        gate.leave(ok=True)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            nursery.start_soon(second)
            await second_in.wait()
            await gate.enter()  # warm: takes nothing
            gate.leave(ok=True)  # must not touch the second's lock
            second_may_leave.set()
    assert not gate._lock.locked()


@pytest.mark.parametrize(
    ("mode", "rules"),
    [
        ("default", {"*": "ask"}),
        ("plan", {"*": "ask"}),
        ("acceptEdits", {"*": "ask", "edit": "allow"}),
        ("dontAsk", {"*": "deny"}),
        ("bypassPermissions", None),
        ("auto", None),
    ],
)
def test_each_permission_mode_means_to_opencode_what_it_means_to_claude(
    mode: str, rules: dict[str, str] | None
) -> None:
    """OpenCode allows everything unless told otherwise: "acceptEdits" or "plan" once let it
    run every command unasked, "dontAsk" let it run them all instead of refusing."""
    content = opencode_backend(("opencode",)).env({}, permission_mode=mode).get("OPENCODE_CONFIG_CONTENT")
    assert (json.loads(content)["permission"] if content else None) == rules
