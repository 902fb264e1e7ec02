"""Our ACP frames, and the real OpenCode's frames we parse, against the ACP v1 JSON schema
(../shared/reference/opencode-acp/schema.v1.json; OpenCode's own frames against the
unstable one, since it uses `sessionCapabilities.fork` and `PromptResponse.usage`)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.agent.acp.client import AcpClient
from supervisor.core.agent_events import Image
from tests.test_acp_captures import (
    REPLAYABLE,
    SCHEMA_DIR,
    TRANSCRIPTS,
    capture_names,
    json_lines,
    replay,
)

# method -> (the params' definition, the result's definition)
METHODS = {
    "initialize": ("InitializeRequest", "InitializeResponse"),
    "session/new": ("NewSessionRequest", "NewSessionResponse"),
    "session/resume": ("ResumeSessionRequest", "ResumeSessionResponse"),
    "session/load": ("LoadSessionRequest", "LoadSessionResponse"),
    "session/prompt": ("PromptRequest", "PromptResponse"),
    "session/list": ("ListSessionsRequest", "ListSessionsResponse"),
    "session/close": ("CloseSessionRequest", "CloseSessionResponse"),
    "session/set_config_option": (
        "SetSessionConfigOptionRequest",
        "SetSessionConfigOptionResponse",
    ),
    "session/cancel": ("CancelNotification", ""),
    "session/update": ("SessionNotification", ""),
    "session/request_permission": ("RequestPermissionRequest", "RequestPermissionResponse"),
}


@cache
def _schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text())
    return loaded


@cache
def _validator(definition: str, schema: str) -> jsonschema.protocols.Validator:
    """One compiled validator per definition (jsonschema.validate re-checks the whole
    schema on every call, which takes seconds here)."""
    root = _schema(schema)
    target = root if not definition else {"$ref": f"#/$defs/{definition}", "$defs": root["$defs"]}
    return jsonschema.Draft202012Validator(target)


def validate(value: Any, definition: str, schema: str = "schema.v1.json") -> None:
    _validator(definition, schema).validate(value)


def validate_frame(
    frame: dict[str, Any], methods_by_id: dict[Any, str], schema: str, envelope: bool = True
) -> None:
    """The envelope against the whole schema (slow: only for our small frames), the body
    against its method's definition."""
    if envelope:
        _validator("", schema).validate(frame)
    if "method" in frame:
        validate(frame.get("params", {}), METHODS[frame["method"]][0], schema)
    elif "error" in frame:
        validate(frame["error"], "Error", schema)
    else:
        validate(frame["result"], METHODS[methods_by_id[frame["id"]]][1], schema)


@pytest.mark.parametrize("name", REPLAYABLE)
def test_frames_we_send_are_valid_v1(name: str) -> None:
    r = replay(name)
    ours: dict[Any, str] = {}  # the agent's requests we answer, by id
    for line in (TRANSCRIPTS / f"{name}.stdout.jsonl").read_text().splitlines():
        frame = json.loads(line)
        if "method" in frame and "id" in frame:
            ours[frame["id"]] = frame["method"]
    assert r.sent
    for frame in r.sent:
        if frame.get("method") in ("session/bogus_method",) or frame.get("params") == {}:
            continue  # the recorder's deliberate protocol errors (09), sent raw
        validate_frame(frame, ours, "schema.v1.json")


@pytest.mark.parametrize("name", capture_names())
def test_captured_agent_frames_are_valid(name: str) -> None:
    sent = json_lines(TRANSCRIPTS / f"{name}.stdin.jsonl")
    methods = {f["id"]: f["method"] for f in sent if "method" in f and "id" in f}
    for frame in json_lines(TRANSCRIPTS / f"{name}.stdout.jsonl"):
        assert frame["jsonrpc"] == "2.0"
        validate_frame(frame, methods, "schema.v1.unstable.json", envelope=False)


def _ready_client() -> AcpClient:
    c = AcpClient()
    lines = (TRANSCRIPTS / "01_two_turns_plain.stdout.jsonl").read_text().splitlines()
    c.initialize()
    c.receive_line(lines[0].encode())
    c.new_session("/home/user/workspace")
    c.receive_line(lines[1].encode())
    c.data_to_send()
    return c


@given(
    text=st.text(),
    images=st.lists(
        st.tuples(st.sampled_from(["image/png", "image/jpeg"]), st.binary(max_size=20)), max_size=2
    ),
    paths=st.lists(st.text(min_size=1).filter(lambda p: "\0" not in p), max_size=2),
)
def test_any_prompt_is_a_valid_prompt_request(
    text: str, images: list[tuple[str, bytes]], paths: list[str]
) -> None:
    import base64

    c = _ready_client()
    c.prompt(text, [Image(m, base64.b64encode(b).decode()) for m, b in images], paths)
    frame = json.loads(c.data_to_send())
    validate_frame(frame, {}, "schema.v1.json")


@given(st.binary(max_size=300))
def test_no_line_can_break_the_client(line: bytes) -> None:
    c = _ready_client()
    c.receive_line(line)  # never raises: a bad line is a ProtocolError event at most
    c.receive_line(b'{"jsonrpc":"2.0","id":99,"result":{}}' if line else b"")
