"""One ACP agent process as the agent port sees it: `AcpClient` in the port's words.

Owns what the port needs on top of the protocol client (sans-IO, like it): the opening
(after `initialize`, `session/resume` or `session/load` of the id the agent chose before,
else `session/new`; a conversation that cannot be continued is said and a new one opened,
unless the agent still lists it: then the session fails and keeps its id),
the calls the person allowed "always" (kept here, each exactly as approved, and answered
here: the agent is told "once", since its own "always" may cover more, and OpenCode forgets
it when its process ends anyway), and tool
calls held until the agent names what they do (OpenCode's first `tool_call` says only
"Bash"; the update after it carries the command).

Never does I/O; never raises on what the agent sends. What the port has no word for
(usage per update, protocol trouble, errors of other requests) is logged here and dropped;
protocol trouble in part (`trouble_log`, timed by the clock it is given: a test's, or the
machine's), since an agent may print it line after line; what was left out is counted, and
said at `close`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import attrs

from supervisor.agent import AgentLaunch
from supervisor.agent.acp.client import AcpClient, LocalProtocolError
from supervisor.agent.acp.events import (
    AcpEvent,
    AgentReady,
    HandshakeFailed,
    PlanUpdated,
    ProtocolError,
    RequestFailed,
    SessionOpened,
    SessionOpenFailed,
    SessionsListed,
    ToolCallUpdated,
    UsageUpdated,
)
from supervisor.core.agent_events import (
    AgentCommand,
    AgentEvent,
    AgentNotReady,
    AgentUnusable,
    AllowTool,
    AlwaysAllow,
    ControlAsked,
    ConversationMissing,
    ConversationOpened,
    DenyTool,
    Interrupt,
    PermissionAsked,
    RefuseControl,
    SendPrompt,
    ToolCall,
    ToolOutcome,
    TurnEnded,
)
from supervisor.logs import ThrottledLog

log = logging.getLogger("supervisor.agent.acp")
PLAN_MARKS = {"completed": "☑", "in_progress": "▸"}
# How many pages of session/list are read to find a conversation that would not open.
LIST_PAGES = 20
# The plan's line in a turn: every update is the whole plan (ACP), so it replaces the line.
PLAN_ID = "plan"
# Protocol trouble logged in each window of TROUBLE_WINDOW_S, the rest counted; what is
# quoted of each is cut to QUOTED_CHARS.
TROUBLE_LOGGED_PER_WINDOW = 50
TROUBLE_WINDOW_S = 10.0
QUOTED_CHARS = 300


def trouble_log(who: str) -> ThrottledLog:
    """Where protocol trouble (a line that is no frame, a frame that breaks the rules) is
    said: an agent may print plain text on stdout in a loop."""
    return ThrottledLog(log, logging.WARNING, who, "lines of protocol trouble",
                        per_window=TROUBLE_LOGGED_PER_WINDOW, window_s=TROUBLE_WINDOW_S)


def trouble_text(reason: str, line: str) -> str:
    return f"{_cut(reason)}: {_cut(repr(line))}"


def _cut(text: str) -> str:
    return text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 1] + "…"


def always_rule(request: PermissionAsked) -> str:
    """What "always" covers, in our notation: exactly this call, a command as typed, else
    the tool with its whole input. Never a pattern: what the person approved is what the
    post showed (OpenCode's own "always" would cover every command with the same first
    word, `echo *`: PROTOCOL.md §5). Not the tool's name for commands: it depends on
    whether the agent said `tool_call` before asking ("Bash") or not (the kind, "execute").
    The prefixes differ from the broad rules of before (`run:echo *`), so a record that
    still holds one never matches."""
    command = request.input.get("command")
    if isinstance(command, str) and command.strip():
        return f"command:{command}"
    exact = json.dumps(request.input, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"tool:{request.tool_name}:{exact}"


def options_note(kinds: set[str]) -> str:
    """What the post must say when the agent's options do not match the choices shown."""
    if not kinds & {"allow_once", "allow_always"}:
        return '⚠️ The agent offers no way to allow this call: allowing it answers "cancelled".'
    if "allow_once" not in kinds:
        return (
            '⚠️ The agent offers no "allow once" here, only its own "always allow": allowing'
            " this call lets the agent run the like of it without asking, until it restarts."
        )
    return ""


class AcpConversation:
    """Invariant: `_held` holds tool calls of the running turn not yet shown; every one is
    shown before any later event of the turn (so the thread reads in order)."""

    def __init__(
        self,
        launch: AgentLaunch,
        client: AcpClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.launch = launch
        self.client = client or AcpClient()
        self.rules: set[str] = set(launch.allowed_tools)
        self._asked: dict[str, str] = {}  # request id -> the rule "always" would add
        self._held: dict[str, ToolCall] = {}
        # The running turn's tool calls shown already: one named only after it was shown
        # (another call's request, text or outcome came first) is shown again, named.
        self._shown: dict[str, ToolCall] = {}
        # A conversation that would not open, while session/list is asked whether it exists:
        # (its id, the agent's refusal, pages read).
        self._checking: tuple[str, str, int] | None = None
        self._trouble = trouble_log(f"ACP agent of session {launch.session_id}")
        self._clock = clock

    # --- the port ------------------------------------------------------------------

    def start(self) -> list[AgentEvent]:
        return self._port(self.client.initialize())

    def receive_line(self, line: bytes) -> list[AgentEvent]:
        return self._port(self.client.receive_line(line))

    def receive_stderr(self, line: str) -> list[AgentEvent]:
        return []

    def send(self, command: AgentCommand) -> list[AgentEvent]:
        match command:
            case AllowTool(request_id=rid, always=always):
                if always and rid in self._asked:
                    self.rules.add(self._asked[rid])
                self._asked.pop(rid, None)
                # "once" even for "always": the agent's own "always" may cover more than
                # this call (OpenCode's, every command with its first word), and it would
                # then answer those itself, unseen. "Always" is kept here, exactly.
                return self._port(self.client.answer_permission(rid, "allow_once"))
            case DenyTool(request_id=rid):
                self._asked.pop(rid, None)
                return self._port(self.client.answer_permission(rid, "reject_once"))
            case SendPrompt(text=text, images=images):
                try:
                    return self._port(self.client.prompt(text, images))
                except LocalProtocolError as exc:  # not open, or a turn still runs
                    reason = f"the agent cannot take a prompt now ({exc})"
                    return [TurnEnded(subtype="error_during_execution", is_error=True, errors=(reason,))]
            case Interrupt():
                return self._port(self.client.cancel())
            case RefuseControl():
                return []  # the client refused requests it does not serve when they came
        return self._port(self.client.send(command))

    def data_to_send(self) -> bytes:
        return self.client.data_to_send()

    def close(self) -> None:
        """The agent's output ended: the protocol trouble counted and not yet said is said."""
        self._trouble.flush()

    # --- ACP -> the port's words -----------------------------------------------------

    def _port(self, events: list[AcpEvent]) -> list[AgentEvent]:
        out: list[AgentEvent] = []
        for event in events:
            out += self._one(event)
        return out

    def _one(self, event: AcpEvent) -> list[AgentEvent]:
        match event:
            case AgentReady():
                return self._open()
            case HandshakeFailed(reason=reason):
                return [AgentUnusable(reason)]
            case SessionOpened(session_id=sid, how=how, model=model):
                return [ConversationOpened(sid, resumed=how != "new", model=model)]
            case SessionOpenFailed(how="new", message=message):
                return [AgentUnusable(f"it could not start a conversation ({message})")]
            case SessionOpenFailed(session_id=sid, message=message):
                # OpenCode refuses an unknown id and any other trouble alike (-32603,
                # PROTOCOL §7): where it lists its conversations, the id is looked for
                # before it is given up for good.
                if sid and self.client.agent is not None and self.client.agent.can_list:
                    self._checking = (sid, message, 1)
                    return self._port(self.client.list_sessions(self.launch.cwd))
                return self._missing(sid, message)
            case SessionsListed(session_ids=ids, next_cursor=cursor) if self._checking:
                sid, message, pages = self._checking
                if sid in ids:
                    self._checking = None
                    # The same error comes for passing trouble: tried again, as an exit would be.
                    return [AgentNotReady(f"it has conversation `{sid}` but would not continue it ({message})")]
                if cursor and pages < LIST_PAGES:
                    self._checking = (sid, message, pages + 1)
                    return self._port(self.client.list_sessions(self.launch.cwd, cursor))
                return self._missing(sid, message)
            case RequestFailed(method="session/list", message=listing) if self._checking:
                sid, message, _ = self._checking
                log.info("the agent could not list its conversations: %s", listing)
                return self._missing(sid, message)  # cannot tell: as before, a new one
            case SessionsListed():
                return []  # a listing nobody waits for any more
            case ToolCall(tool_use_id=tid):
                self._held[tid] = event
                return []
            case ToolCallUpdated(tool_use_id=tid, summary=summary):
                held = self._held.pop(tid, None)
                if held is not None:
                    return self._showing([attrs.evolve(held, summary=summary)])
                shown = self._shown.get(tid)
                if shown is None or shown.summary == summary:
                    return []
                return self._showing([attrs.evolve(shown, summary=summary)])  # its line, named now
            case ToolOutcome(tool_use_id=tid):
                held = self._held.pop(tid, None)
                return [*self._release(), *self._showing([held] if held else []), event]
            case TurnEnded():
                released, self._shown = self._release(), {}
                return [*released, event]
            case PermissionAsked():
                return self._ask(event)
            case PlanUpdated(steps=steps):
                line = " · ".join(f"{PLAN_MARKS.get(s.status, '☐')} {s.content}" for s in steps)
                return [*self._release(), ToolCall(PLAN_ID, "Plan", summary=line)]
            case UsageUpdated() | ControlAsked():
                return []
            case RequestFailed(method=method, message=message):
                log.info("the agent refused %s: %s", method, message)
                return []
            case ProtocolError(reason=reason, line=line):
                self._trouble.record(trouble_text(reason, line), self._clock())
                return []
        return [*self._release(), event]

    def _open(self) -> list[AgentEvent]:
        cwd = self.launch.cwd
        if self.launch.agent_session_id:
            return self._port(self.client.open_session(self.launch.agent_session_id, cwd))
        return self._port(self.client.new_session(cwd))

    def _missing(self, sid: str, message: str) -> list[AgentEvent]:
        """The conversation is not there: said, and a new one opened."""
        self._checking = None
        return [ConversationMissing(f"{sid}: {message}"), *self._port(self.client.new_session(self.launch.cwd))]

    def _release(self) -> list[AgentEvent]:
        held, self._held = list(self._held.values()), {}
        return self._showing(held)

    def _showing(self, calls: list[ToolCall]) -> list[AgentEvent]:
        for call in calls:
            self._shown[call.tool_use_id] = call
        return list(calls)

    def _ask(self, request: PermissionAsked) -> list[AgentEvent]:
        held = self._held.pop(request.tool_use_id, None)
        shown: list[AgentEvent] = [*self._release()]
        if held is not None:
            shown += self._showing([attrs.evolve(held, summary=held.summary or request.description)])
        pending = self.client.permissions.get(request.request_id)
        kinds = {o.kind for o in pending.options} if pending else set()
        rule = always_rule(request)
        if rule in self.rules and {"allow_once", "allow_always"} <= kinds:
            # Allowed "always" before, perhaps by an agent process that is gone: answered
            # here, as the person said, and only for this call (never the agent's own
            # "always", which may cover more). Where the agent offers no "allow once" or
            # no "always" for it, the person is asked.
            return [*shown, *self._port(self.client.answer_permission(request.request_id, "allow_once"))]
        self._asked[request.request_id] = rule
        always = AlwaysAllow(rules=(rule,)) if "allow_always" in kinds else None
        description = "\n".join(filter(None, [request.description, options_note(kinds)]))
        return [*shown, attrs.evolve(request, always=always, description=description)]
