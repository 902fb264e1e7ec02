"""What an agent tells us, and what we tell it, in backend-neutral words.

The Claude Code codec turns stream-json lines into these (and these commands into lines);
an OpenCode backend would do the same with its own wire format. The renderer and the
session logic see only these types.
"""

from __future__ import annotations

from typing import Any

import attrs

JSON = dict[str, Any]

# --- agent -> supervisor ---------------------------------------------------------


@attrs.frozen
class TurnStarted:
    """The agent began a turn (Claude Code: `system/init`, printed once per turn)."""

    session_id: str
    model: str = ""
    cwd: str = ""


@attrs.frozen
class TextDelta:
    """A piece of answer text as it streams (partial messages)."""

    text: str


@attrs.frozen
class TextBlock:
    """A complete text block; authoritative over the deltas that preceded it."""

    text: str
    aborted: bool = False


@attrs.frozen
class ThinkingBlock:
    text: str


@attrs.frozen
class ToolCall:
    tool_use_id: str
    name: str
    input: JSON = attrs.field(factory=dict)


@attrs.frozen
class ToolOutcome:
    tool_use_id: str
    is_error: bool = False
    text: str = ""


@attrs.frozen
class PermissionAsked:
    """The agent wants to run a tool and asks us (Claude Code: control_request can_use_tool)."""

    request_id: str
    tool_name: str
    input: JSON = attrs.field(factory=dict)
    tool_use_id: str = ""
    description: str = ""
    suggestions: tuple[JSON, ...] = ()


@attrs.frozen
class PermissionCancelled:
    """The agent no longer wants the answer to an earlier request."""

    request_id: str


@attrs.frozen
class ControlAnswered:
    """The agent's answer to a control request we sent (e.g. interrupt)."""

    request_id: str
    ok: bool = True
    body: JSON = attrs.field(factory=dict)
    error: str = ""


@attrs.frozen
class ControlAsked:
    """Any other request from the agent; it gets an error answer so it never waits."""

    request_id: str
    subtype: str


@attrs.frozen
class TurnEnded:
    """The end of a turn (Claude Code: `result`). Cost is cumulative for the process."""

    subtype: str = "success"
    is_error: bool = False
    result: str = ""
    errors: tuple[str, ...] = ()
    total_cost_usd: float = 0.0
    duration_ms: int = 0
    num_turns: int = 0
    terminal_reason: str = ""
    session_id: str = ""


AgentEvent = (
    TurnStarted
    | TextDelta
    | TextBlock
    | ThinkingBlock
    | ToolCall
    | ToolOutcome
    | PermissionAsked
    | PermissionCancelled
    | ControlAnswered
    | ControlAsked
    | TurnEnded
)

# --- supervisor -> agent ---------------------------------------------------------


@attrs.frozen
class Image:
    media_type: str
    data_base64: str


@attrs.frozen
class SendPrompt:
    text: str
    images: tuple[Image, ...] = ()


@attrs.frozen
class Interrupt:
    request_id: str


@attrs.frozen
class AllowTool:
    request_id: str
    updated_input: JSON
    updated_permissions: tuple[JSON, ...] = ()


@attrs.frozen
class DenyTool:
    request_id: str
    message: str
    interrupt: bool = False


@attrs.frozen
class RefuseControl:
    request_id: str
    error: str


AgentCommand = SendPrompt | Interrupt | AllowTool | DenyTool | RefuseControl
