"""The ACP events and commands that today's `core.agent_events` has no word for.

Everything that fits today's vocabulary is emitted as those types (TextDelta, TextBlock,
ThinkingBlock, ToolCall, ToolOutcome, PermissionAsked, PermissionCancelled, ControlAsked,
TurnStarted, TurnEnded). What is here is the list that shapes the agent port (issue 10);
see the package docstring for why each one does not fit.
"""

from __future__ import annotations

from typing import Literal

import attrs

from supervisor.core.agent_events import JSON, AgentCommand, AgentEvent, Image

OpenHow = Literal["new", "resume", "load"]
# What the person can answer to a permission request; "cancelled" is the client's own.
OptionKind = Literal["allow_once", "allow_always", "reject_once", "reject_always", "cancelled"]


@attrs.frozen
class AgentReady:
    """`initialize` answered with a protocol version we speak."""

    protocol_version: int
    name: str
    version: str
    can_resume: bool  # sessionCapabilities.resume
    can_load: bool  # agentCapabilities.loadSession
    images: bool  # promptCapabilities.image
    can_list: bool = False  # sessionCapabilities.list


@attrs.frozen
class HandshakeFailed:
    """The agent cannot be used: `initialize` failed or offered a version we do not speak."""

    reason: str


@attrs.frozen
class SessionOpened:
    """The conversation is there. For `new` the id is the agent's choice: persist it before
    announcing the thread. `replayed` counts the history updates `session/load` re-sent
    (swallowed, never shown as new output)."""

    session_id: str
    how: OpenHow
    model: str = ""
    replayed: int = 0


@attrs.frozen
class SessionOpenFailed:
    """session/new, resume or load was refused (for resume/load: usually an unknown id)."""

    session_id: str
    how: OpenHow
    message: str
    code: int = 0


@attrs.frozen
class SessionsListed:
    """One page of the agent's stored conversations (session/list); `next_cursor` asks
    for the next page, None after the last."""

    session_ids: tuple[str, ...]
    next_cursor: str | None = None
    directories: tuple[tuple[str, str], ...] = ()  # (id, cwd) of those that say their cwd


@attrs.frozen
class ToolCallUpdated:
    """A tool call's one-line summary or status changed (OpenCode names the command only
    in the update after `tool_call`)."""

    tool_use_id: str
    summary: str
    status: str = ""


@attrs.frozen
class PlanStep:
    content: str
    status: str = "pending"
    priority: str = "medium"


@attrs.frozen
class PlanUpdated:
    """The agent's whole current plan (each update replaces the last)."""

    steps: tuple[PlanStep, ...]


@attrs.frozen
class UsageUpdated:
    """Context use and cost. `total_cost_usd` is cumulative for the conversation (OpenCode:
    the session, across processes); `turn_cost_usd` is what this update added."""

    used: int
    size: int
    total_cost_usd: float
    turn_cost_usd: float


@attrs.frozen
class RequestFailed:
    """An error answer to one of our requests other than prompt/open (e.g. set_config)."""

    method: str
    code: int
    message: str
    data: JSON | None = None


@attrs.frozen
class ProtocolError:
    """A line we could not read, or a frame that breaks the protocol. Logged and survived."""

    reason: str
    line: str = ""


AcpOnlyEvent = (
    AgentReady
    | HandshakeFailed
    | SessionOpened
    | SessionOpenFailed
    | SessionsListed
    | ToolCallUpdated
    | PlanUpdated
    | UsageUpdated
    | RequestFailed
    | ProtocolError
)
AcpEvent = AgentEvent | AcpOnlyEvent


@attrs.frozen
class AnswerPermission:
    """Answer a permission request by the kind of option the person chose."""

    request_id: str
    kind: OptionKind


@attrs.frozen
class SendPromptWithFiles:
    """`SendPrompt` plus attachments that stay files on disk (sent as resource links)."""

    text: str
    images: tuple[Image, ...] = ()
    file_paths: tuple[str, ...] = ()


AcpCommand = AgentCommand | AnswerPermission | SendPromptWithFiles
