"""The turn renderer: what a session's thread should show, given the agent's events.

Owns the look of a turn in its thread: the answer text as it streams, one compact line
per tool call, thinking as a short quote, the completion line, and where a long answer
continues in a new post. It speaks only in `PutPost` ops with local keys.

Must never do I/O, read a clock (time comes in as `now`), know server post ids, or render
permission requests (the session owns those; see `permissions.py`).

Layout of a turn: everything the agent says in a turn flows into one document (text,
tool lines, thinking quotes) that fills posts "t<n>.0", "t<n>.1", ... in order. Tool
lines stay inside that flow, one per line, rather than in posts of their own: a thread is
read as a transcript, each new post notifies every follower of the thread, and a busy turn
with dozens of tool calls would otherwise bury the answer under dozens of tiny posts and
spend the server's rate limit on them. A permission request (a post of the session's)
breaks the flow: what the agent says after it continues in a new flow ("t<n>.f1.0", ...),
below the request, so the thread reads in the order things happened. The completion line
is the footer of the turn's last post (one request fewer per answer); it gets a post of
its own only where it would not fit, or below a request that ended the turn's text.

Prompts queued behind the turn are said in the same place while it runs: "⏳ 2 more
prompts queued" is the footer of the flow being written (`queue_grew`, `feed`), so a queued
prompt costs at most one request (an edit of the answer: at once for the first one, with
the answer's next edit for a changed count; none when the answer's first words carry it),
where a mark on the person's message would cost two (on, then off). The line comes with
the turn's first words, never in a post of its own, and the turn's final text drops it:
the next turn is then running. While a permission request waits with nothing written
below it yet, the line shows above the request (a person who answers it by writing sees
their words were taken), and moves below with the words that follow.

Urgency (see `thread_ops.PutPost`): the first words of a flow are urgent (the answer shows
at once), later streaming puts are deferrable, a post the text has moved past is urgent,
and everything put at the turn's end is final.

Streaming is stable: a post is frozen once the text has moved on to the next post, and
only the last post is edited as text grows. Only if something already frozen changes (a
final text block that differs from its deltas, a failure mark on a tool line far up) are
earlier posts put again.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import attrs

from supervisor.core.agent_events import (
    AgentEvent,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    ToolOutcome,
    TurnEnded,
    TurnStarted,
)
from supervisor.core.markdown import (
    NO_LIMIT,
    Fence,
    Part,
    closing_fence,
    iter_cuts,
    open_fence,
    split_message,
)
from supervisor.core.thread_ops import PutPost
from supervisor.core.thread_texts import queued_line

__all__ = [
    "PutPost",
    "TurnRenderer",
    "code_span",
    "split_message",
]

TOOL_ARGUMENT_CHARS = 120
THINKING_LINES = 3
THINKING_LINE_CHARS = 160

def shorten(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def code_span(text: str) -> str:
    """`text` as inline code, whatever backticks it holds."""
    run = longest = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or text[:1] == text[-1:] == " " else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _input_line(tool_input: dict[str, Any]) -> str:
    """A call's input in one line, where the agent side gave no summary of it."""
    return json.dumps(tool_input, ensure_ascii=False, separators=(", ", ": "), default=str) if tool_input else ""


def tool_line(call: ToolCall, error: str | None = None) -> str:
    """🔧 `Bash` `ls -la`; with an error: ❌ and the error's first line."""
    argument = call.summary or _input_line(call.input)
    line = f"{'❌' if error is not None else '🔧'} {code_span(call.name or 'tool')}"
    if argument:
        line += " " + code_span(shorten(argument, TOOL_ARGUMENT_CHARS))
    first = (error or "").strip().split("\n", 1)[0].strip()
    return f"{line} — {code_span(shorten(first, TOOL_ARGUMENT_CHARS))}" if first else line


def thinking_quote(text: str) -> str:
    """The first lines of a thinking block as a short quote."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    shown = [shorten(line, THINKING_LINE_CHARS) for line in lines[:THINKING_LINES]]
    if len(lines) > THINKING_LINES and not shown[-1].endswith("…"):
        shown[-1] += " …"
    return "\n".join(["> 💭 " + shown[0], *("> " + line for line in shown[1:])])


@attrs.define
class _Segment:
    """A piece of a turn's document. Text being streamed stays `streaming` until its
    TextBlock arrives; `closing` caches the fence that must close it when it is not last."""

    kind: Literal["text", "tool", "thinking"]
    text: str
    streaming: bool = False
    closing: str | None = None
    # The fence open after the text's first `_scanned` characters (whole lines): a text
    # that grows is scanned once, not again on every delta (a long answer streamed while
    # a prompt is queued was quadratic in its length).
    _scanned: int = 0
    _fence: Fence | None = None

    def set_text(self, text: str) -> None:
        self.text, self.closing, self._scanned, self._fence = text, None, 0, None

    def append(self, text: str) -> None:
        self.text, self.closing = self.text + text, None

    def sealed(self) -> str:
        """The text with any fence it left open closed, so what follows is not code."""
        if self.closing is None:
            fence = None
            if self.kind == "text":
                lines_end = self.text.rfind("\n", self._scanned) + 1
                if lines_end > self._scanned:
                    self._fence = open_fence(self.text[self._scanned : lines_end], self._fence)
                    self._scanned = lines_end
                fence = open_fence(self.text[self._scanned :], self._fence)  # its unfinished line
            self.closing = closing_fence(self.text, fence)
        return self.text + self.closing


@attrs.define
class _Posts:
    """The posts of one document. Invariant: `frozen` are the texts of full parts made
    from `source` (a prefix of every later document, unless something frozen changed), and
    `carry` is the fence open where `source` ends; `shown` is what each key was last put.
    A part with nothing but whitespace gets no post: there would be nothing to see."""

    prefix: str
    limit: int
    frozen: list[Part] = attrs.Factory(list)
    source: str = ""
    carry: Fence | None = None
    shown: dict[int, str] = attrs.Factory(dict)

    def update(self, document: str, *, final: bool = False) -> list[PutPost]:
        if not document.startswith(self.source):
            self.frozen, self.source, self.carry = [], "", None
        cuts = list(iter_cuts(document, len(self.source), self.carry, self.limit))
        self.frozen.extend(cut.part for cut in cuts[:-1])
        if len(cuts) > 1:
            self.source, self.carry = document[: cuts[-2].end], cuts[-2].carry
        parts = [*self.frozen, cuts[-1].part]
        texts = {i: part.text for i, part in enumerate(parts) if part.body.strip()}
        # A post that exists but has nothing left to show says so, briefly.
        texts |= {i: "…" for i in self.shown if i not in texts}
        last = max(texts, default=-1)
        ops = [
            self._op(i, text, final=final, moved_past=i < last)
            for i, text in sorted(texts.items())
            if final or self.shown.get(i) != text
        ]
        self.shown = texts
        return ops

    def _op(self, i: int, text: str, *, final: bool, moved_past: bool) -> PutPost:
        key = f"{self.prefix}{i}"
        if final:
            return PutPost.last(key, text)
        if moved_past or (i == 0 and i not in self.shown):
            return PutPost.urgent(key, text)  # frozen, or the flow's first words
        return PutPost(key, text)

    def close(self) -> list[PutPost]:
        """The flow is over: every post it shows gets its final text."""
        return [PutPost.last(f"{self.prefix}{i}", text) for i, text in sorted(self.shown.items())]


@attrs.define
class _Flow:
    """A run of the turn's document between permission requests, and its posts."""

    posts: _Posts
    segments: list[_Segment] = attrs.Factory(list)

    def document(self, footer: str = "") -> str:
        pieces: list[str] = []
        segments = self.segments
        for i, seg in enumerate(segments):
            if i:
                tools = seg.kind == segments[i - 1].kind == "tool"
                pieces.append("\n" if tools else "\n\n")
            last = i == len(segments) - 1 and not footer
            pieces.append(seg.text if last else seg.sealed())
        if footer:
            pieces.append(("\n\n" if segments else "") + footer)
        return "".join(pieces)

    def update(self, *, final: bool = False, footer: str = "") -> list[PutPost]:
        return self.posts.update(self.document(footer), final=final)

    def live(self, waiting: str) -> list[PutPost]:
        """While the turn runs: what it said so far, with the queue's line under it (only
        once something was said: the line never takes a post of its own)."""
        return self.update(footer=waiting if self.segments else "")


@attrs.define
class _Turn:
    number: int
    started_at: float
    clock_known: bool  # started by start_turn or TurnStarted, not by a stray event
    limit: int
    flows: list[_Flow] = attrs.Factory(list)
    tools: dict[str, tuple[_Flow, int, ToolCall]] = attrs.Factory(dict)
    # The flow whose last post shows the queue's line: the one being written, or, while
    # that is still empty (a request was just asked), the one above the request.
    line_on: _Flow | None = None

    def live(self, waiting: str) -> list[PutPost]:
        """The queue's line where it belongs now (the current flow once it has words, else
        the flow above the request), and off the flow that showed it before."""
        flow = self.flow
        if not flow.segments and len(self.flows) > 1:
            flow = self.flows[-2]
        ops = flow.live(waiting)
        return [*self._line_leaves(flow if waiting and flow.segments else None, flow), *ops]

    def drop_line(self) -> list[PutPost]:
        """No line anywhere: the current flow's last post and the one that showed it."""
        return [*self._line_leaves(None, self.flow), *self.flow.update()]

    def _line_leaves(self, to: _Flow | None, updated: _Flow) -> list[PutPost]:
        """The line shows on `to` from now on: the flow that showed it, unless it is
        `updated` (put by the caller anyway), is put without it."""
        before, self.line_on = self.line_on, to
        return before.update() if before is not None and before is not updated else []

    def __attrs_post_init__(self) -> None:
        self.new_flow()

    @property
    def flow(self) -> _Flow:
        return self.flows[-1]

    def new_flow(self) -> None:
        flow = f"f{len(self.flows)}." if self.flows else ""
        self.flows.append(_Flow(_Posts(f"t{self.number}.{flow}", self.limit)))


@attrs.define
class TurnRenderer:
    """Turns agent events into PutPost ops for the session's thread.

    `cost_baseline` is the conversation's cumulative cost at the end of the last turn (the
    agent keeps counting across restarts that continue it); the session sets it from its
    record at each turn's start, zero where a new conversation started.
    """

    show_thinking: bool = True
    limit: int = NO_LIMIT  # the longest post the front end shows (`SessionSettings.max_message_chars`)
    cost_baseline: float = 0.0
    spent_usd: float = 0.0  # the sum of the turns' own costs
    turns: int = 0
    _turn: _Turn | None = None

    def start_turn(self, now: float) -> None:
        """A prompt was sent: the turn's clock starts now."""
        self.turns += 1
        self._turn = _Turn(self.turns, now, clock_known=True, limit=self.limit)

    def queue_grew(self, waiting: int) -> list[PutPost]:
        """A prompt was queued: `waiting` now wait behind the running turn, and its live
        post says so. At once for the first one (the person looks for a sign it was
        taken); a changed count rides on the answer's next edit, so a burst of prompts
        costs one edit, not one each."""
        turn = self._turn
        ops = [] if turn is None else turn.live(_waiting_line(waiting))
        return [PutPost.urgent(op.key, op.text) for op in ops] if waiting == 1 else ops

    def drop_queue_line(self) -> list[PutPost]:
        """The turn was cut (its agent is gone), or the queue will never run: its last post
        stops promising a queue it no longer leads, at once; the text it shows stays (no
        op at all where no line showed)."""
        turn = self._turn
        return [] if turn is None else [PutPost.urgent(op.key, op.text) for op in turn.drop_line()]

    def cut_turn(self) -> list[PutPost]:
        """The turn ends without the agent's word on it (the agent is gone): its posts keep
        what they show, the queue's line dropped, put final (the outbox need not keep
        them), and what the agent says next begins a turn of its own."""
        turn, self._turn = self._turn, None
        return [] if turn is None else [op for flow in turn.flows for op in flow.update(final=True)]

    def break_flow(self, waiting: int = 0) -> list[PutPost]:
        """A post of the session's (a permission request) comes next: what the turn has
        shown so far goes out at once, and what follows continues below that post."""
        turn = self._turn
        if turn is None or not turn.flow.segments:
            return []
        # Urgent but not final: the turn's end puts these posts' last words (a tool line
        # above the request may still change), so the outbox must still know them. The
        # queue's line stays above the request until words follow it, and moves with them.
        ops = [PutPost.urgent(op.key, op.text) for op in turn.flow.update(final=True, footer=_waiting_line(waiting))]
        turn.line_on = turn.flow if waiting else None
        turn.new_flow()
        return ops

    def feed(self, event: AgentEvent, now: float, *, waiting: int = 0) -> list[PutPost]:
        """What the thread should show after `event`, with `waiting` prompts queued."""
        if isinstance(event, TurnStarted):
            if self._turn is None:
                self.start_turn(now)
            return []
        if isinstance(event, TurnEnded):
            return self._end(event, now)
        if isinstance(event, TextDelta | TextBlock | ThinkingBlock | ToolCall | ToolOutcome):
            turn = self._current(now)
            flow = self._apply(turn, event)
            if flow is not None:
                if flow is turn.flow:
                    return turn.live(_waiting_line(waiting))
                return flow.update(footer=_waiting_line(waiting) if flow is turn.line_on else "")
        return []  # permission and control traffic belongs to the session

    def _current(self, now: float) -> _Turn:
        if self._turn is None:
            self.start_turn(now)
            assert self._turn is not None
            self._turn.clock_known = False
        return self._turn

    def _apply(self, turn: _Turn, event: AgentEvent) -> _Flow | None:
        """Change the turn's document; the flow that changed, None when nothing did."""
        flow = turn.flow
        segments = flow.segments
        match event:
            case TextDelta(text=text) if text:
                if segments and segments[-1].kind == "text" and segments[-1].streaming:
                    segments[-1].append(text)
                else:
                    segments.append(_Segment("text", text, streaming=True))
            case TextBlock(text=text):
                streamed = [s for s in segments if s.kind == "text" and s.streaming]
                if streamed:
                    streamed[-1].set_text(text)
                    streamed[-1].streaming = False
                elif text.strip():
                    segments.append(_Segment("text", text))
                else:
                    return None
            case ThinkingBlock(text=text) if self.show_thinking and text.strip():
                segments.append(_Segment("thinking", thinking_quote(text)))
            case ToolCall() if event.tool_use_id in turn.tools:
                # Said again (an ACP agent's whole plan, each time it changes): the line
                # changes where it stands, perhaps above a request, rather than repeating.
                flow, index, _ = turn.tools[event.tool_use_id]
                turn.tools[event.tool_use_id] = (flow, index, event)
                flow.segments[index].set_text(tool_line(event))
            case ToolCall():
                turn.tools[event.tool_use_id] = (flow, len(segments), event)
                segments.append(_Segment("tool", tool_line(event)))
            case ToolOutcome(is_error=True) if event.tool_use_id in turn.tools:
                flow, index, call = turn.tools[event.tool_use_id]  # perhaps above a request
                flow.segments[index].set_text(tool_line(call, error=event.text))
            case _:
                return None
        return flow

    def _end(self, event: TurnEnded, now: float) -> list[PutPost]:
        turn = self._current(now)
        self._turn = None
        seconds = now - turn.started_at
        if not turn.clock_known and event.duration_ms:
            seconds = event.duration_ms / 1000
        line = shorten(completion_line(event, seconds, self._turn_cost(event.total_cost_usd)), self.limit)
        ops = [op for flow in turn.flows[:-1] for op in flow.update(final=True)]
        last = turn.flow
        if not last.segments:  # nothing said (or nothing since the last request)
            return [*ops, PutPost.last(f"t{turn.number}.done", line)]
        # Where the footer does not fit, the split gives it a post of its own.
        return ops + last.update(final=True, footer=line)

    def _turn_cost(self, total: float) -> float:
        """This turn's own cost, from the process's cumulative total."""
        if total <= 0:
            return 0.0  # no figure: keep the baseline for the next turn
        baseline = self.cost_baseline if total >= self.cost_baseline else 0.0
        self.cost_baseline = total
        self.spent_usd += total - baseline
        return total - baseline


def _waiting_line(waiting: int) -> str:
    return queued_line(waiting) if waiting else ""


def completion_line(event: TurnEnded, seconds: float, cost: float) -> str:
    """The end of a turn, said plainly: how it ended, how long it took, what it cost."""
    stats = f"{format_duration(seconds)} · {format_cost(cost)}"
    if event.terminal_reason.startswith("aborted"):
        return f"⏹️ Interrupted. · {stats}"
    if event.subtype == "error_max_turns":
        return f"⚠️ Stopped: the turn limit was reached ({event.num_turns} turns). · {stats}"
    if event.subtype.startswith("error_max_budget"):
        return f"⚠️ Stopped: the cost budget was reached. · {stats}"
    if not event.is_error and event.subtype == "success":
        return f"✅ Done · {stats}"
    errors = [e.strip() for e in event.errors if e.strip()]
    message = "\n".join(errors) or (event.result.strip() if event.is_error else "")
    message = message or event.subtype.replace("_", " ")
    first, _, more = message.partition("\n")
    line = f"⚠️ {shorten(first, 300)} · {stats}"
    if more.strip():
        line += "\n" + "\n".join("> " + ln for ln in shorten(more.strip(), 1000).splitlines())
    return line


def format_duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def format_cost(usd: float) -> str:
    return f"${usd:.2f}" if usd >= 1 else f"${usd:.4f}"
