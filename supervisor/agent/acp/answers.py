"""What the agent's answers mean (sans-IO, part of `AcpClient`): its answer to
`initialize`, to opening a session, and which of the options it offered answers a
person's choice on a permission request.

Plain functions of one frame (or one list of options): no protocol state, no I/O. The
client keeps the state (its phase, the open session) and decides what happens next.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from supervisor.agent.acp.events import (
    AgentReady,
    HandshakeFailed,
    OpenHow,
    OptionKind,
    RequestFailed,
    SessionOpenFailed,
    SessionsListed,
)
from supervisor.agent.acp.wire import (
    JSON,
    PROTOCOL_VERSION,
    FrameError,
    InitializeResult,
    ListSessionsResult,
    PermissionOption,
    Response,
    SessionResult,
    structure,
)


def handshake(frame: Response) -> AgentReady | HandshakeFailed:
    """The agent, as its `initialize` answer describes it, or why we cannot talk to it."""
    if frame.error is not None:
        return HandshakeFailed(f"initialize failed: {frame.error.message} ({frame.error.code})")
    try:
        result = structure(frame.result, InitializeResult)
    except FrameError as exc:
        return HandshakeFailed(f"unreadable initialize answer: {exc}")
    if result.protocol_version != PROTOCOL_VERSION:
        return HandshakeFailed(
            f"the agent speaks ACP version {result.protocol_version}; we speak version {PROTOCOL_VERSION}"
        )
    caps = result.agent_capabilities
    info = result.agent_info
    return AgentReady(
        protocol_version=result.protocol_version,
        name=((info.title or info.name) if info else "") or "agent",
        version=info.version if info else "",
        can_resume=caps.offers("resume"),
        can_load=caps.load_session,
        images=caps.prompt_capabilities.image,
        can_list=caps.offers("list"),
    )


@attrs.frozen
class Opened:
    session_id: str
    model: str | None  # None when the agent names none


def session_opened(asked_id: str, how: OpenHow, frame: Response) -> Opened | SessionOpenFailed:
    """The session a `session/new`, `resume` or `load` answer opened (`asked_id`: the one
    we asked to continue, "" for a new one), or why none is open."""
    if frame.error is not None:
        return SessionOpenFailed(asked_id, how, frame.error.message, frame.error.code)
    try:
        result = structure(frame.result, SessionResult)
    except FrameError as exc:
        return SessionOpenFailed(asked_id, how, str(exc))
    session_id = result.session_id or asked_id
    if not session_id:
        return SessionOpenFailed("", how, "the agent chose no session id")
    model: str | None = None
    for option in result.config_options or ():
        if option.category == "model" and isinstance(option.current_value, str):
            model = option.current_value
    return Opened(session_id, model)


def sessions_listed(frame: Response) -> SessionsListed | RequestFailed:
    """The page of conversations a `session/list` answer names, or why there is none."""
    if frame.error is not None:
        return RequestFailed("session/list", frame.error.code, frame.error.message)
    try:
        result = structure(frame.result, ListSessionsResult)
    except FrameError as exc:
        return RequestFailed("session/list", 0, f"unreadable answer: {exc}")
    directories = tuple((s.session_id, s.cwd) for s in result.sessions if s.cwd)
    return SessionsListed(tuple(s.session_id for s in result.sessions), result.next_cursor, directories)


def permission_outcome(options: Sequence[PermissionOption], kind: OptionKind) -> JSON:
    """The answer to a permission request: the offered option of that kind, else one of
    the same sense (an allow for an allow, a reject for a reject), else `cancelled`. Never
    the opposite sense: a person's "allow" answered as a reject (or the reverse) would make
    the thread say one thing while the agent was told another."""
    if kind != "cancelled":
        option = _pick(options, kind)
        if option is not None:
            return {"outcome": "selected", "optionId": option.option_id}
    return {"outcome": "cancelled"}


def _pick(options: Sequence[PermissionOption], kind: str) -> PermissionOption | None:
    exact = [o for o in options if o.kind == kind]
    if exact:
        return exact[0]
    sense = kind.split("_")[0]  # "allow" or "reject"
    return next((o for o in options if o.kind.split("_")[0] == sense), None)
