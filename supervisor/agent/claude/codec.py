"""The Claude Code stream-json codec: output lines -> agent events, commands -> input lines.

Shapes follow the real CLI's captures (shared/reference/claude-code). One cattrs
converter structures the frames we read; unknown frame types and unknown fields are
ignored, because the CLI adds new ones regularly. Never does I/O.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import attrs
import cattrs

from supervisor import json_text
from supervisor.agent.claude.permissions import permission_asked
from supervisor.agent.claude.tools import tool_argument
from supervisor.core.agent_events import (
    JSON,
    AgentCommand,
    AgentEvent,
    AllowTool,
    ControlAnswered,
    ControlAsked,
    DenyTool,
    Interrupt,
    PermissionCancelled,
    RefuseControl,
    SendPrompt,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    ToolOutcome,
    TurnEnded,
    TurnStarted,
)

_converter = cattrs.Converter(forbid_extra_keys=False)
T = TypeVar("T")


def _structure(frame: JSON, cls: type[T]) -> T:
    """`frame` as `cls`, a `null` taken as absent (its default): a frame the CLI sends with
    a null field is read rather than dropped, so its turn still ends, its request is still
    answered, and no "None" is shown as text."""
    return _converter.structure({k: v for k, v in frame.items() if v is not None}, cls)


@attrs.frozen
class _Init:
    session_id: str = ""
    model: str = ""
    cwd: str = ""


@attrs.frozen
class _Result:
    subtype: str = "success"
    is_error: bool = False
    result: str = ""
    errors: list[str] = attrs.field(factory=list)
    total_cost_usd: float = 0.0
    duration_ms: int = 0
    num_turns: int = 0
    terminal_reason: str = ""
    session_id: str = ""


@attrs.frozen
class _CanUseTool:
    tool_name: str
    input: dict[str, Any] = attrs.field(factory=dict)
    tool_use_id: str = ""
    description: str = ""
    permission_suggestions: list[dict[str, Any]] = attrs.field(factory=list)


def _text_of(content: Any) -> str:
    """Tool results carry a string or a list of text blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


class ClaudeCodec:
    """Stateless codec for `--output-format stream-json --input-format stream-json`."""

    def decode(self, line: bytes) -> list[AgentEvent]:
        text = line.strip()
        # Some builds print debug text on stdout; like the SDKs, skip non-JSON lines.
        if not text.startswith(b"{"):
            return []
        try:
            frame = json_text.loads(text)
            if not isinstance(frame, dict):
                raise ValueError("frame is not an object")
            return self._decode_frame(frame)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:  # nested past the stack
            raise ValueError(f"undecodable line: {exc}") from exc
        except (cattrs.BaseValidationError, TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed {text[:60]!r}: {exc}") from exc

    def _decode_frame(self, frame: JSON) -> list[AgentEvent]:
        kind = frame.get("type")
        if kind == "system" and frame.get("subtype") == "init":
            init = _structure(frame, _Init)
            return [TurnStarted(session_id=init.session_id, model=init.model, cwd=init.cwd)]
        if kind == "assistant":
            return self._assistant(frame)
        if kind == "user":
            return self._user(frame)
        if kind == "stream_event":
            if frame.get("parent_tool_use_id"):
                return []  # a subagent's text as it streams: not the answer (PROTOCOL §4.4)
            return self._stream_event(frame.get("event") or {})
        if kind == "result":
            r = _structure(frame, _Result)
            return [
                TurnEnded(
                    subtype=r.subtype,
                    is_error=r.is_error,
                    result=r.result,
                    errors=tuple(r.errors),
                    total_cost_usd=r.total_cost_usd,
                    duration_ms=r.duration_ms,
                    num_turns=r.num_turns,
                    terminal_reason=r.terminal_reason,
                    session_id=r.session_id,
                )
            ]
        if kind == "control_request":
            return [self._control_request(frame["request_id"], frame["request"])]
        if kind == "control_cancel_request":
            return [PermissionCancelled(str(frame["request_id"]))]
        if kind == "control_response":
            resp = frame["response"]
            return [
                ControlAnswered(
                    request_id=str(resp.get("request_id", "")),
                    ok=resp.get("subtype") == "success",
                    body=resp.get("response") or {},
                    error=str(resp.get("error", "")),
                )
            ]
        return []

    def _assistant(self, frame: JSON) -> list[AgentEvent]:
        if frame.get("parent_tool_use_id"):
            return []  # a subagent's inner messages: the outer tool line stands for them
        if frame.get("error") and frame["message"].get("model") == "<synthetic>":
            # The CLI's own "API Error: …" (PROTOCOL §4.2): the `result` after it says the
            # same, and the turn's end shows that; as answer text it was read twice.
            return []
        events: list[AgentEvent] = []
        for block in frame["message"].get("content") or []:
            kind = block.get("type")
            if kind == "text":
                events.append(TextBlock(str(block["text"]), aborted=bool(frame.get("aborted"))))
            elif kind == "thinking":
                events.append(ThinkingBlock(str(block.get("thinking", ""))))
            elif kind in ("tool_use", "server_tool_use"):
                name, tool_input = str(block["name"]), block.get("input") or {}
                events.append(ToolCall(str(block["id"]), name, tool_input, tool_argument(name, tool_input)))
        return events

    def _user(self, frame: JSON) -> list[AgentEvent]:
        content = frame.get("message", {}).get("content")
        if not isinstance(content, list) or frame.get("parent_tool_use_id"):
            return []
        return [
            ToolOutcome(
                tool_use_id=str(block.get("tool_use_id", "")),
                is_error=bool(block.get("is_error")),
                text=_text_of(block.get("content")),
            )
            for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"
        ]

    def _stream_event(self, event: JSON) -> list[AgentEvent]:
        delta = event.get("delta") or {}
        if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
            return [TextDelta(str(delta["text"]))]
        return []

    def _control_request(self, request_id: str, request: JSON) -> AgentEvent:
        if request.get("subtype") == "can_use_tool":
            try:
                ask = _structure(request, _CanUseTool)
            except (cattrs.BaseValidationError, TypeError, KeyError, AttributeError):
                # Unreadable (no tool name): refused, as the CLI waits for an answer to each.
                return ControlAsked(request_id=str(request_id), subtype="can_use_tool")
            return permission_asked(
                str(request_id),
                ask.tool_name,
                ask.input,
                tool_use_id=ask.tool_use_id,
                description=ask.description,
                suggestions=ask.permission_suggestions,
            )
        return ControlAsked(request_id=str(request_id), subtype=str(request.get("subtype")))

    def encode(self, command: AgentCommand) -> bytes:
        return (json.dumps(self._frame(command), ensure_ascii=False) + "\n").encode()

    def _frame(self, command: AgentCommand) -> JSON:
        if isinstance(command, SendPrompt):
            content: Any = command.text
            if command.images:
                content = [{"type": "text", "text": command.text}] + [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": i.media_type, "data": i.data_base64},
                    }
                    for i in command.images
                ]
            return {
                "type": "user",
                "message": {"role": "user", "content": content},
                "parent_tool_use_id": None,
                "session_id": "",
            }
        if isinstance(command, Interrupt):
            return {
                "type": "control_request",
                "request_id": command.request_id,
                "request": {"subtype": "interrupt"},
            }
        if isinstance(command, AllowTool):
            body: JSON = {"behavior": "allow", "updatedInput": command.updated_input}
            if command.updated_permissions:
                body["updatedPermissions"] = list(command.updated_permissions)
            return _success(command.request_id, body)
        if isinstance(command, DenyTool):
            body = {"behavior": "deny", "message": command.message}
            if command.interrupt:
                body["interrupt"] = True
            return _success(command.request_id, body)
        assert isinstance(command, RefuseControl)
        return {
            "type": "control_response",
            "response": {"subtype": "error", "request_id": command.request_id, "error": command.error},
        }


def _success(request_id: str, body: JSON) -> JSON:
    return {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": body},
    }
