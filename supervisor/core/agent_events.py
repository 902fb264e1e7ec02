"""What an agent tells us, and what we tell it, in backend-neutral words (the agent port).

Each agent side (`supervisor.agent.claude`, `supervisor.agent.acp`) turns its wire format
into these events and these commands into its wire format. The renderer and the session
logic see only these types: no stream-json keys, no JSON-RPC ids, no agent's stderr text.
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
class ConversationOpened:
    """The agent's conversation is open and takes prompts. `session_id` is the agent's id
    for it: chosen by us (Claude Code) or by the agent (ACP `session/new`); a new one is
    recorded durably before the first prompt is written."""

    session_id: str
    resumed: bool = False
    model: str = ""


@attrs.frozen
class ConversationMissing:
    """The conversation asked to be continued does not exist at the agent (it was never
    saved, or the id is unknown): the session continues with a new one."""

    detail: str = ""


@attrs.frozen
class AgentUnusable:
    """The agent cannot serve this session (its handshake failed, it speaks a protocol
    version we do not, it never answered): restarting it would not help."""

    reason: str


@attrs.frozen
class AgentNotReady:
    """This start of the agent failed where another may not (it refused to continue a
    conversation it still has, with an error it gives for passing trouble too): it is
    ended and started again under the restart policy, like an agent that exited."""

    reason: str


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
    summary: str = ""  # the key argument in one line, where the agent side knows it best


@attrs.frozen
class ToolOutcome:
    tool_use_id: str
    is_error: bool = False
    text: str = ""


@attrs.frozen
class AlwaysAllow:
    """What "allow for this session" covers, as the agent side computed it."""

    updates: tuple[JSON, ...] = ()  # handed back to the agent with the allow
    rules: tuple[str, ...] = ()  # kept with the session: every agent it runs is given them
    mode: str = ""  # a permission mode so allowed, kept likewise ("" = unchanged)


@attrs.frozen
class PermissionAsked:
    """The agent wants to run a tool and asks us. `always` is None where the agent offers
    no "allow for this session"."""

    request_id: str
    tool_name: str
    input: JSON = attrs.field(factory=dict)
    tool_use_id: str = ""
    description: str = ""
    suggestions: tuple[JSON, ...] = ()  # the agent's own offer, as it sent it (opaque here)
    always: AlwaysAllow | None = None
    # The input that says what the call does (a command, a path), shown first; with
    # `key_language`, shown whole as a code block in that language (a shell command).
    key_argument: str = ""
    key_language: str = ""


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
    """The end of a turn (Claude Code: `result`). Cost is cumulative for the conversation
    (across the processes that continue it)."""

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
    ConversationOpened
    | ConversationMissing
    | AgentUnusable
    | AgentNotReady
    | TurnStarted
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
    always: bool = False  # allowed for the rest of the session, not only this call


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
