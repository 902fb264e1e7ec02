"""One turn of an ACP connection (sans-IO, part of `AcpClient`): the prompt's content
blocks going out, and the agent's news of the turn coming in as events.

Text and thought chunks are joined into one block per message (a block ends when another
message, a tool call, a plan or a permission request comes between); tool calls are
followed by id, so a call is announced once and its outcome reported once; the cost the
agent reports is a running total over the connection, of which each turn gets its part.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import attrs

from supervisor.agent.acp.events import (
    AcpEvent,
    AgentReady,
    PlanStep,
    PlanUpdated,
    ToolCallUpdated,
    UsageUpdated,
)
from supervisor.agent.acp.summary import tool_summary, tool_text, turn_ended
from supervisor.agent.acp.wire import (
    JSON,
    ChunkFields,
    FrameError,
    PlanFields,
    PromptResult,
    Response,
    ToolCallFields,
    UsageFields,
    structure,
)
from supervisor.core.agent_events import (
    Image,
    PermissionAsked,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    ToolOutcome,
    TurnEnded,
)


@attrs.define
class _Tool:
    name: str  # the first title (OpenCode: "Bash"), kept as the tool's name
    summary: str
    status: str = "pending"
    finished: bool = False


@attrs.define
class _Stream:
    """Text or thought chunks of one message being accumulated into a block."""

    message_id: str | None = None
    text: str = ""


def prompt_blocks(
    agent: AgentReady, text: str, images: Sequence[Image], file_paths: Sequence[str]
) -> list[JSON]:
    """A prompt's content: its text, its images (if the agent takes images: else the text
    says they were not sent), and a link to each file."""
    blocks: list[JSON] = []
    if images and not agent.images:
        text += f"\n\n({len(images)} image(s) not sent: {agent.name} does not take images.)"
    if text:
        blocks.append({"type": "text", "text": text})
    if agent.images:
        blocks += [
            {"type": "image", "mimeType": i.media_type, "data": i.data_base64} for i in images
        ]
    for path in file_paths:
        absolute = Path(os.path.abspath(path))
        blocks.append({"type": "resource_link", "uri": absolute.as_uri(), "name": absolute.name})
    return blocks


class TurnEvents:
    """The agent's news (`session/update` notifications, permission requests, the prompt's
    answer), made into events."""

    def __init__(self, cost_baseline: float = 0.0) -> None:
        self._tools: dict[str, _Tool] = {}
        self._text = _Stream()
        self._thought = _Stream()
        self.cost_total = cost_baseline
        self._turn_has_cost = False

    def begin_turn(self) -> None:
        self._tools.clear()
        self._turn_has_cost = False

    @property
    def turn_cost(self) -> float:
        """The running total, once the turn reported a cost; else 0."""
        return self.cost_total if self._turn_has_cost else 0.0

    def permission_asked(self, request_id: str, call: ToolCallFields) -> list[AcpEvent]:
        """A permission request of the running turn: what was said so far comes first."""
        events = self.flush()
        tool = self._tools.get(call.tool_call_id)
        summary = tool_summary(call.title, call.kind, call.raw_input)
        name = tool.name if tool else (call.kind or "tool")
        raw = call.raw_input if isinstance(call.raw_input, dict) else {}
        events.append(PermissionAsked(request_id, name, raw, call.tool_call_id, summary))
        return events

    def ended(self, frame: Response, cancelled: bool, session_id: str) -> AcpEvent:
        """The prompt's answer: the end of the turn."""
        cost = self.turn_cost
        if frame.error is not None:
            message = frame.error.message or f"error {frame.error.code}"
            return TurnEnded(
                subtype="error_during_execution",
                is_error=True,
                errors=(message,),
                total_cost_usd=cost,
                session_id=session_id,
            )
        try:
            reason = structure(frame.result, PromptResult).stop_reason
        except FrameError as exc:
            reason = "cancelled" if cancelled else f"unreadable answer: {exc}"
        return turn_ended(reason, cost, session_id)

    def update(self, kind: str, update: JSON) -> list[AcpEvent]:
        if kind in ("agent_message_chunk", "agent_thought_chunk"):
            chunk = structure(update, ChunkFields)
            text = (chunk.content.text or "") if chunk.content.type == "text" else ""
            if kind == "agent_thought_chunk":
                events = self._flush_text()
                if self._thought.message_id != chunk.message_id:
                    events += self._flush_thought()
                self._thought.message_id = chunk.message_id
                self._thought.text += text
                return events
            events = self._flush_thought()
            if self._text.message_id != chunk.message_id:
                events += self._flush_text()
            self._text.message_id = chunk.message_id
            self._text.text += text
            return [*events, TextDelta(text)] if text else events
        if kind in ("tool_call", "tool_call_update"):
            return [*self.flush(), *self._on_tool(structure(update, ToolCallFields))]
        if kind == "plan":
            entries = structure(update, PlanFields).entries
            steps = tuple(PlanStep(e.content, e.status, e.priority) for e in entries)
            return [*self.flush(), PlanUpdated(steps)]
        if kind == "usage_update":
            return [self._on_usage(structure(update, UsageFields))]
        return []  # user_message_chunk, available_commands_update, mode/config news, ...

    def _on_tool(self, call: ToolCallFields) -> list[AcpEvent]:
        summary = tool_summary(call.title, call.kind, call.raw_input)
        tool = self._tools.get(call.tool_call_id)
        events: list[AcpEvent] = []
        if tool is None:
            tool = _Tool(call.title or call.kind or "tool", summary)
            self._tools[call.tool_call_id] = tool
            raw = call.raw_input if isinstance(call.raw_input, dict) else {}
            events.append(ToolCall(call.tool_call_id, tool.name, raw))
        elif (call.title or call.raw_input) and summary != tool.summary:
            tool.summary = summary
            events.append(ToolCallUpdated(call.tool_call_id, summary, call.status or tool.status))
        tool.status = call.status or tool.status
        if tool.status in ("completed", "failed") and not tool.finished:
            tool.finished = True
            text = tool_text(call)
            events.append(ToolOutcome(call.tool_call_id, tool.status == "failed", text))
        return events

    def _on_usage(self, usage: UsageFields) -> AcpEvent:
        amount = usage.cost.amount if usage.cost else 0.0
        # A cancelled OpenCode turn reports cost 0: that is no figure, not a new total.
        added = amount - self.cost_total if amount >= self.cost_total else 0.0
        if amount > 0:
            self.cost_total = max(self.cost_total, amount)
            self._turn_has_cost = True
        return UsageUpdated(usage.used, usage.size, self.cost_total, added)

    def flush(self) -> list[AcpEvent]:
        return [*self._flush_thought(), *self._flush_text()]

    def _flush_text(self) -> list[AcpEvent]:
        text, self._text = self._text.text, _Stream()
        return [TextBlock(text)] if text else []

    def _flush_thought(self) -> list[AcpEvent]:
        text, self._thought = self._thought.text, _Stream()
        return [ThinkingBlock(text)] if text else []
