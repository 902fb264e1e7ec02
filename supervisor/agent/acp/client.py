"""A sans-IO Agent Client Protocol client: lines in, events out; commands in, bytes out.

Owns one connection's protocol state: our request ids and what each asked, the agent's
pending permission requests (with the options it offered), the open session, the turn in
progress; the agent's news of that turn (text, tool calls, cost, its end) is made into
events by `turn.TurnEvents`, and what its answers to `initialize` and to opening a
session say is read by `answers`. Like h11, it never touches a pipe: the caller feeds
each stdout line to `receive_line`, calls a command method, and writes whatever
`data_to_send()` returns. It must never raise on what the agent sends: a bad line becomes a
`ProtocolError` event and the connection goes on. It raises `LocalProtocolError` only when
its own caller breaks the rules (a prompt before a session, two prompts at once).

Rules it enforces (ACP v1, ../shared/reference/opencode-acp/schema.v1.json and PROTOCOL.md):
- `initialize` first; a protocol version other than 1 ends the connection (HandshakeFailed).
- We advertise no fs/terminal capability, so the agent runs its tools itself; any request
  we do not serve gets a JSON-RPC error answer at once, so the agent never waits.
- One turn at a time per connection (OpenCode merges overlapping prompts and answers both
  at the end, so responses could no longer be matched to turns: queueing is the caller's).
- `session/cancel` is followed by a `cancelled` answer to every pending permission request,
  and a request arriving after it is answered `cancelled` at once (the spec requires both).
- A request the agent withdraws (`$/cancel_request`: OpenCode sends none, the protocol lets
  any agent) is answered `cancelled` (the spec requires an answer) and said withdrawn.
- `session/load` replays the history as updates before its response: they are counted and
  swallowed, never shown as new output.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Sequence
from typing import Any

import attrs

from supervisor import __version__
from supervisor.agent.acp.answers import (
    handshake,
    permission_outcome,
    session_opened,
    sessions_listed,
)
from supervisor.agent.acp.events import (
    AcpCommand,
    AcpEvent,
    AgentReady,
    AnswerPermission,
    HandshakeFailed,
    OpenHow,
    OptionKind,
    ProtocolError,
    RequestFailed,
    SendPromptWithFiles,
    SessionOpened,
    SessionOpenFailed,
)
from supervisor.agent.acp.turn import TurnEvents, prompt_blocks
from supervisor.agent.acp.wire import (
    JSON,
    PROTOCOL_VERSION,
    FrameError,
    Notification,
    PermissionOption,
    PermissionParams,
    Request,
    RequestId,
    Response,
    RpcError,
    dump,
    parse_frame,
    structure,
)
from supervisor.core.agent_events import (
    AllowTool,
    ControlAsked,
    DenyTool,
    Image,
    Interrupt,
    PermissionCancelled,
    RefuseControl,
    SendPrompt,
    TurnStarted,
)

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


class LocalProtocolError(RuntimeError):
    """Our caller asked for something the protocol state does not allow."""


class Phase(enum.Enum):
    STARTING = "starting"  # nothing sent yet
    HANDSHAKING = "handshaking"  # initialize sent, not answered
    READY = "ready"  # initialized; no session open (or opening one failed)
    OPENING = "opening"  # session/new, resume or load sent, not answered
    IDLE = "idle"  # a session is open and no turn runs
    PROMPTING = "prompting"  # session/prompt sent, not answered
    CANCELLING = "cancelling"  # session/cancel sent, the prompt not yet answered
    FAILED = "failed"  # the handshake failed: nothing more can be done


@attrs.frozen
class _Pending:
    """One of our requests awaiting its response."""

    method: str
    how: OpenHow | None = None
    session_id: str = ""
    raw: bool = False  # sent through request(): its answer is not interpreted
    listing: bool = False  # session/list: its answer is a SessionsListed


@attrs.frozen
class PendingPermission:
    wire_id: RequestId
    tool_use_id: str
    options: tuple[PermissionOption, ...]


class AcpClient:
    def __init__(self, *, cost_baseline: float = 0.0, client_name: str = "supervisor") -> None:
        self.phase = Phase.STARTING
        self.session_id = ""
        self.cwd = ""
        self.model = ""
        self.agent: AgentReady | None = None
        # Invariant: every id here was sent by us and is not yet answered.
        self._pending: dict[RequestId, _Pending] = {}
        # Invariant: every entry is an agent request we have not answered; keyed by str(id).
        self.permissions: dict[str, PendingPermission] = {}
        self._ids = itertools.count(1)
        self._out = bytearray()
        self._client_name = client_name
        self._turn = TurnEvents(cost_baseline)
        self._replayed = 0

    # --- bytes out -----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        data, self._out = bytes(self._out), bytearray()
        return data

    def _request(self, method: str, params: JSON, pending: _Pending | None = None) -> None:
        rid = next(self._ids)
        self._pending[rid] = pending or _Pending(method)
        self._out += dump(Request(rid, method, params))

    def _notify(self, method: str, params: JSON) -> None:
        self._out += dump(Notification(method, params))

    def _answer(
        self, rid: RequestId, result: JSON | None = None, error: RpcError | None = None
    ) -> None:
        self._out += dump(Response(rid, result=result, error=error))

    def _require(self, *phases: Phase) -> None:
        if self.phase not in phases:
            raise LocalProtocolError(f"not allowed while {self.phase.value}")

    # --- commands ------------------------------------------------------------------

    def initialize(self) -> list[AcpEvent]:
        self._require(Phase.STARTING)
        self.phase = Phase.HANDSHAKING
        self._request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                # No fs, no terminal: the agent reads, writes and runs commands itself,
                # under its own permission rules, so every action goes through one gate.
                "clientCapabilities": {
                    "fs": {"readTextFile": False, "writeTextFile": False},
                    "terminal": False,
                },
                "clientInfo": {"name": self._client_name, "version": __version__},
            },
        )
        return []

    def new_session(self, cwd: str) -> list[AcpEvent]:
        self._require(Phase.READY, Phase.IDLE)
        self.phase, self.cwd = Phase.OPENING, cwd
        self._request("session/new", {"cwd": cwd, "mcpServers": []}, _Pending("session/new", "new"))
        return []

    def open_session(self, session_id: str, cwd: str, how: OpenHow | None = None) -> list[AcpEvent]:
        """Continue a stored conversation: `session/resume` where offered, else `load`."""
        self._require(Phase.READY, Phase.IDLE)
        assert self.agent is not None
        if how == "load" and self.agent.can_load:
            pass
        elif self.agent.can_resume:
            how = "resume"
        elif self.agent.can_load:
            how = "load"
        else:
            return [
                SessionOpenFailed(
                    session_id, "resume", f"{self.agent.name} cannot continue a conversation"
                )
            ]
        self.phase, self.cwd, self._replayed = Phase.OPENING, cwd, 0
        self.session_id = session_id
        params = {"sessionId": session_id, "cwd": cwd, "mcpServers": []}
        self._request(f"session/{how}", params, _Pending(f"session/{how}", how, session_id))
        return []

    def prompt(
        self, text: str, images: Sequence[Image] = (), file_paths: Sequence[str] = ()
    ) -> list[AcpEvent]:
        self._require(Phase.IDLE)
        assert self.agent is not None
        blocks = prompt_blocks(self.agent, text, images, file_paths)
        self.phase = Phase.PROMPTING
        self._turn.begin_turn()
        self._request("session/prompt", {"sessionId": self.session_id, "prompt": blocks})
        return [TurnStarted(session_id=self.session_id, model=self.model, cwd=self.cwd)]

    def list_sessions(self, cwd: str | None, cursor: str | None = None) -> list[AcpEvent]:
        """Ask for (a page of) the agent's stored conversations in `cwd` (None: in every
        directory): SessionsListed."""
        self._require(Phase.READY, Phase.IDLE)
        params: JSON = {**({"cwd": cwd} if cwd is not None else {}), **({"cursor": cursor} if cursor else {})}
        self._request("session/list", params, _Pending("session/list", listing=True))
        return []

    def request(self, method: str, params: JSON) -> list[AcpEvent]:
        """Any other request (session/close, set_config_option, ...); an error answer
        comes back as RequestFailed, a result is not interpreted."""
        self._require(Phase.READY, Phase.IDLE, Phase.PROMPTING, Phase.CANCELLING)
        self._request(method, params, _Pending(method, raw=True))
        return []

    def cancel(self) -> list[AcpEvent]:
        """Stop the turn; every pending permission request is answered `cancelled`."""
        if self.phase is not Phase.PROMPTING:
            return []
        self.phase = Phase.CANCELLING
        self._notify("session/cancel", {"sessionId": self.session_id})
        events: list[AcpEvent] = []
        for request_id in list(self.permissions):
            events += self._settle(request_id, "cancelled")
        return events

    def answer_permission(self, request_id: str, kind: OptionKind) -> list[AcpEvent]:
        """Answer with the offered option of that kind (reject falls back to any reject)."""
        if request_id not in self.permissions:
            return []  # already answered, or cancelled: a late click changes nothing
        return self._settle(request_id, kind)

    def send(self, command: AcpCommand) -> list[AcpEvent]:
        """Today's agent commands (and the ACP additions), in the agent port's words."""
        match command:
            case SendPrompt(text=text, images=images):
                return self.prompt(text, images)
            case SendPromptWithFiles(text=text, images=images, file_paths=paths):
                return self.prompt(text, images, paths)
            case Interrupt():
                return self.cancel()
            case AllowTool(request_id=rid, always=always):
                # The person's choice alone: rules carried beside it (Claude Code's) must
                # never turn "once" into the agent's own "always", which may cover more.
                return self.answer_permission(rid, "allow_always" if always else "allow_once")
            case DenyTool(request_id=rid):
                return self.answer_permission(rid, "reject_once")
            case AnswerPermission(request_id=rid, kind=kind):
                return self.answer_permission(rid, kind)
            case RefuseControl():
                return []  # requests we do not serve were refused when they arrived
        raise LocalProtocolError(f"unknown command {command!r}")

    def _settle(self, request_id: str, kind: OptionKind) -> list[AcpEvent]:
        pending = self.permissions.pop(request_id)
        outcome = permission_outcome(pending.options, kind)
        self._answer(pending.wire_id, {"outcome": outcome})
        return [PermissionCancelled(request_id)] if outcome["outcome"] == "cancelled" else []

    # --- lines in ------------------------------------------------------------------

    def receive_line(self, line: bytes) -> list[AcpEvent]:
        if not line.strip():
            return []
        try:
            frame = parse_frame(line)
            match frame:
                case Response():
                    return self._on_response(frame)
                case Request():
                    return self._on_request(frame)
                case Notification():
                    return self._on_notification(frame)
        except FrameError as exc:
            return [ProtocolError(str(exc), _excerpt(line))]
        return []

    def _on_response(self, frame: Response) -> list[AcpEvent]:
        pending = self._pending.pop(frame.id, None) if frame.id is not None else None
        if pending is None:
            said = "null" if frame.id is None else repr(frame.id)  # null: never the text "None"
            return [ProtocolError(f"a response to no request of ours (id {said})")]
        if pending.listing:
            return [sessions_listed(frame)]
        if pending.raw:
            if frame.error is None:
                return []
            e = frame.error
            return [RequestFailed(pending.method, e.code, e.message, _data(e.data))]
        if pending.method == "initialize":
            return self._on_initialized(frame)
        if pending.how is not None:
            return self._on_opened(pending, frame)
        return self._on_prompt_answered(frame)

    def _on_initialized(self, frame: Response) -> list[AcpEvent]:
        answer = handshake(frame)
        if isinstance(answer, HandshakeFailed):
            self.phase = Phase.FAILED
            return [answer]
        self.agent, self.phase = answer, Phase.READY
        return [answer]

    def _on_opened(self, pending: _Pending, frame: Response) -> list[AcpEvent]:
        assert pending.how is not None
        answer = session_opened(pending.session_id, pending.how, frame)
        if isinstance(answer, SessionOpenFailed):
            self.phase = Phase.READY
            if frame.error is not None:  # refused: no session is open, not even the asked one
                self.session_id = ""
            return [answer]
        self.session_id = answer.session_id
        if answer.model is not None:
            self.model = answer.model
        self.phase = Phase.IDLE
        replayed, self._replayed = self._replayed, 0
        return [SessionOpened(answer.session_id, pending.how, self.model, replayed)]

    def _on_prompt_answered(self, frame: Response) -> list[AcpEvent]:
        events = self._turn.flush()
        cancelled = self.phase is Phase.CANCELLING
        self.phase = Phase.IDLE
        # Requests still open belong to the finished turn; nobody will answer them now.
        for request_id in list(self.permissions):
            events += self._settle(request_id, "cancelled")
        return [*events, self._turn.ended(frame, cancelled, self.session_id)]

    def _on_request(self, frame: Request) -> list[AcpEvent]:
        if frame.method != "session/request_permission":
            error = RpcError(METHOD_NOT_FOUND, f"Method not found: {frame.method}")
            self._answer(frame.id, error=error)
            return [ControlAsked(str(frame.id), frame.method)]
        try:
            ask = structure(frame.params, PermissionParams)
        except FrameError as exc:
            self._answer(frame.id, error=RpcError(INVALID_PARAMS, str(exc)))
            return [ProtocolError(str(exc))]
        request_id = str(frame.id)
        self.permissions[request_id] = PendingPermission(
            frame.id, ask.tool_call.tool_call_id, tuple(ask.options)
        )
        # Asked while no turn of ours runs (or one being cancelled): nobody to ask. One for
        # another session during the turn is a subagent's (OpenCode's `task` tool runs one
        # in a child session): part of this turn, asked in its thread like the others.
        if self.phase is not Phase.PROMPTING:
            self._settle(request_id, "cancelled")
            return []
        return self._turn.permission_asked(request_id, ask.tool_call)

    def _on_notification(self, frame: Notification) -> list[AcpEvent]:
        if frame.method == "$/cancel_request":
            return self._on_cancel_request(frame.params.get("requestId"))
        if frame.method != "session/update":
            return []  # unknown notifications are tolerated
        update = frame.params.get("update")
        if not isinstance(update, dict) or not isinstance(update.get("sessionUpdate"), str):
            return [ProtocolError("session/update without an update kind")]
        if frame.params.get("sessionId") != self.session_id:
            return []  # another session's (or a closed one's) news
        if self.phase is Phase.OPENING:
            self._replayed += 1  # session/load replays the history before it answers
            return []
        return self._turn.update(update["sessionUpdate"], update)

    def _on_cancel_request(self, wire_id: Any) -> list[AcpEvent]:
        """The agent withdraws a request it made: a pending permission request is
        answered `cancelled` and said withdrawn (PermissionCancelled)."""
        withdrawn = [rid for rid, pending in self.permissions.items() if pending.wire_id == wire_id]
        return self._settle(withdrawn[0], "cancelled") if withdrawn else []  # else answered already

def _data(data: Any) -> JSON | None:
    return data if isinstance(data, dict) else None


def _excerpt(line: bytes) -> str:
    return line[:200].decode("utf-8", "replace")
