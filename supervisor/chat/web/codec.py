"""The page's JSON, both ways, and the inbox's record of an event: sans-IO, one converter.

What the page may send (each action carries `id`, the page's client id, which becomes the
event id: a resend of the same id is recognised by the store):
  {"type": "hello", "since": N}                        catch up after version N
  {"type": "open", "thread": T, "before": SEQ?}         thread T's newest page (of older)
  {"type": "post", "id": C, "thread": T|null, "text": S, "files": [F, ...]}
  {"type": "choose", "id": C, "message": M, "option": allow_once|allow_always|reject}
  {"type": "stop", "id": C, "thread": T}
  {"type": "new", "id": C, "name": S, "cwd": S, "agent": S, "persona": S}
Unknown types and malformed fields decode to `None` (the page is told, nothing runs).
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import attrs
import cattrs

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
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
SESSION_WORD = re.compile(r"[^\s=]+")


@attrs.frozen
class Hello:
    since: int


@attrs.frozen
class Open:
    thread: str
    before: int | None = None  # an older page: messages before this seq


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


def decode_page(raw: str) -> PageMessage | None:
    try:
        data = json.loads(raw)
        kind = _TYPES[data.pop("type")]
        message = converter.structure(data, kind)
    except (ValueError, KeyError, TypeError, AttributeError, cattrs.BaseValidationError):
        return None
    return message if _valid(message) else None


def _valid(message: PageMessage) -> bool:
    if isinstance(message, Hello | Open):
        return True
    if not CLIENT_ID.fullmatch(message.id):
        return False
    match message:
        case Post(text=text, files=files):
            return len(text) <= MAX_TEXT and len(files) <= MAX_FILES and bool(text or files)
        case Choose(option=option):
            return option in OPTION_KINDS
        case NewSession(name=name, cwd=cwd, agent=agent, persona=persona):
            words = [w for w in (name, agent, persona) if w]
            return bool(name) and all(SESSION_WORD.fullmatch(w) for w in words) and (
                "\n" not in cwd
            )
    return True


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
