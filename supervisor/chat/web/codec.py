"""The page's JSON, both ways, and the inbox's record of an event: sans-IO, one converter.

What the page may send (each action carries `id`, the page's client id, which becomes the
event id: a resend of the same id is recognised by the store):
  {"type": "hello", "since": N, "held": [T, ...]?}     catch up after version N (messages
                                                        of the threads it holds, if it says)
  {"type": "open", "thread": T, "before": SEQ?}         thread T's newest page (of older)
  {"type": "open", "thread": T, "held": true}           T opened again: no page, a wake
  {"type": "post", "id": C, "thread": T|null, "text": S, "files": [F, ...]}
  {"type": "choose", "id": C, "message": M, "option": allow_once|allow_always|reject}
  {"type": "stop", "id": C, "thread": T}
  {"type": "new", "id": C, "name": S, "cwd": S, "agent": S, "persona": S}
What the page is refused decodes to `Refused`, with the action's client id when it has a
valid one and a reason the page shows (it then drops the action from its queue). A lone
UTF-16 surrogate (half an emoji cut by the page) becomes U+FFFD: it is text, and nothing
below the codec can store it.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import attrs
import cattrs

from supervisor import json_text
from supervisor.chat.web.db import MessageRow, ThreadRow
from supervisor.chat.web.port import (
    MAIN_THREAD,
    OPTION_KINDS,
    ChoiceMade,
    Incoming,
    MessagePosted,
    StopAsked,
)

MAX_TEXT = 200_000
MAX_FILES = 20
MAX_VERSION = 2**62  # a version or seq beyond this is no row's: SQLite holds 64-bit integers
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
SESSION_WORD = re.compile(r"[^\s=]+")


@attrs.frozen
class Hello:
    since: int
    held: tuple[str, ...] | None = None  # the threads whose messages the page keeps


@attrs.frozen
class Open:
    thread: str
    before: int | None = None  # an older page: messages before this seq
    held: bool = False  # the page holds the thread already: it wants no snapshot


@attrs.frozen
class Post:
    id: str
    thread: str | None
    text: str
    files: tuple[str, ...] = ()


@attrs.frozen
class Choose:
    id: str
    message: str
    option: str


@attrs.frozen
class Stop:
    id: str
    thread: str


@attrs.frozen
class NewSession:
    id: str
    name: str
    cwd: str = ""
    agent: str = ""
    persona: str = ""


@attrs.frozen
class Refused:
    """An action the server does not take: `id` names it (None when it has no valid one);
    `files`: a refused message's uploads, dropped with it."""

    id: str | None
    reason: str
    files: tuple[str, ...] = ()


PageMessage = Hello | Open | Post | Choose | Stop | NewSession
_TYPES: dict[str, type[PageMessage]] = {
    "hello": Hello,
    "open": Open,
    "post": Post,
    "choose": Choose,
    "stop": Stop,
    "new": NewSession,
}

converter = cattrs.Converter(forbid_extra_keys=False)


def decode_page(raw: str) -> PageMessage | Refused:
    try:
        data = json_text.loads(raw)
    except (ValueError, RecursionError):
        return Refused(None, "malformed message")
    if not isinstance(data, dict):
        return Refused(None, "malformed message")
    client_id = data.get("id")
    client_id = client_id if isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id) else None
    kind_name = data.pop("type", None)
    kind = _TYPES.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        return Refused(client_id, f"unknown action {kind_name!r}")
    try:
        message = converter.structure(data, kind)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, cattrs.BaseValidationError):
        return Refused(client_id, "malformed message")
    reason = _problem(message)
    if reason is not None:
        return Refused(client_id, reason, uploads(message))
    return message


def uploads(message: PageMessage) -> tuple[str, ...]:
    """The files the page uploaded for `message` (a post's; other actions carry none)."""
    return message.files if isinstance(message, Post) else ()


def _problem(message: PageMessage) -> str | None:
    """Why the server refuses `message`, in the words the page shows; None if it does not."""
    match message:
        case Hello(since=since) if not 0 <= since <= MAX_VERSION:
            return f"since must be a version from 0 to {MAX_VERSION}"
        case Open(before=before) if before is not None and not 0 <= before <= MAX_VERSION:
            return f"before must be a message number from 0 to {MAX_VERSION}"
        case Hello() | Open():
            return None
    if not CLIENT_ID.fullmatch(message.id):
        return "malformed message: no valid client id"
    match message:
        case Post(text=text, files=files):
            if len(text) > MAX_TEXT:
                return f"the message is {len(text):,} characters long; the limit is {MAX_TEXT:,}"
            if len(files) > MAX_FILES:
                return f"{len(files)} files attached; the limit is {MAX_FILES} per message"
            if not (text or files):
                return "the message is empty"
        case Choose(option=option) if option not in OPTION_KINDS:
            return f"unknown option {option!r}"
        case NewSession(name=name, agent=agent, persona=persona) if not name or not all(
            SESSION_WORD.fullmatch(w) for w in (name, agent, persona) if w
        ):
            return "a session's name, agent and persona are single words without '='"
        case NewSession(cwd=cwd) if "\n" in cwd:
            return "a directory cannot contain a line break"
    return None


def new_session_command(message: NewSession) -> str:
    """The form says what `!new` says in a Mattermost main DM: the core parses it."""
    # shlex.quote: the core splits commands with shlex.split, its exact inverse.
    parts = ["!new", shlex.quote(message.name)]
    if message.cwd.strip():
        parts.append(shlex.quote(message.cwd.strip()))
    parts += [
        shlex.quote(f"{k}={v}")
        for k, v in (("agent", message.agent), ("persona", message.persona))
        if v
    ]
    return " ".join(parts)


def thread_of(thread_id: str | None) -> str:
    return thread_id or MAIN_THREAD


# The inbox keeps each event as JSON so a restart can hand unhandled ones to the core.
_EVENT_TYPES: dict[str, type[Incoming]] = {
    "message": MessagePosted,
    "choice": ChoiceMade,
    "stop": StopAsked,
}


def encode_event(event: Incoming) -> str:
    tag = next(k for k, v in _EVENT_TYPES.items() if isinstance(event, v))
    return json.dumps({"type": tag, **converter.unstructure(event)})


def decode_event(raw: str) -> Incoming:
    data = json.loads(raw)
    event: Incoming = converter.structure(data, _EVENT_TYPES[data.pop("type")])
    return event


def thread_json(row: ThreadRow) -> dict[str, Any]:
    return attrs.asdict(row)


def message_json(row: MessageRow) -> dict[str, Any]:
    # By hand, not attrs.asdict: a page of a long thread is hundreds of rows.
    return {
        "id": row.id,
        "seq": row.seq,
        "thread_id": row.thread_id,
        "author": row.author,
        "kind": row.kind,
        "text": row.text,
        "options": [list(option) for option in row.options],
        "outcome": row.outcome,
        "files": list(row.files),
        "client_id": row.client_id,
        "created": row.created,
        "version": row.version,
    }
