"""The Mattermost wire format: WebSocket frames and REST bodies <-> supervisor types.

This module owns the one cattrs converter that knows Mattermost's JSON shapes, and the
frames it turns into chat-neutral events (`supervisor.core.events`). It is sans-IO: text
or parsed JSON goes in, values come out. It must never do I/O, log, or let any exception
other than `MalformedFrame` escape while decoding what a server sent.

Tolerance rules (a server upgrade must not take the supervisor down):
- unknown fields are ignored, unknown event types decode to an `EventFrame` without an
  event (its `seq` still counts, so the reader's sequence tracking stays right);
- anything that is not the shape we rely on (bad JSON, a missing required field, a value
  of the wrong type) raises `MalformedFrame` with a short reason; the reader logs and
  drops it. Primitive types are checked strictly: cattrs would otherwise turn 5 into "5".

Quirk: in `posted`, `post_edited`, `post_deleted` and `reaction_*` events, `data.post` and
`data.reaction` are JSON *strings* holding the object, not objects.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import cattrs

from supervisor.chat import ChatUser
from supervisor.chat.mattermost.choices import Reaction, choice_made
from supervisor.chat.strict import DECODE_ERRORS, decode_reason, strict_converter
from supervisor.core.events import (
    ChatEvent,
    FileRef,
    Hello,
    Post,
    PostDeleted,
    Posted,
    PostEdited,
)

T = TypeVar("T")
JSONObject = dict[str, Any]

_REASON_LIMIT = 200  # a reason is for a log line, not a dump of the frame


class MalformedFrame(Exception):
    """A frame or body we cannot use. `seq` is set when the envelope itself was readable,
    so the reader can count the frame even though it drops its content."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason[:_REASON_LIMIT])
        self.reason = reason[:_REASON_LIMIT]
        self.seq = seq


# --- what comes out --------------------------------------------------------------


@attrs.frozen
class EventFrame:
    """A server event. `event` is None for event types the supervisor does not use."""

    seq: int
    name: str
    event: ChatEvent | None


@attrs.frozen
class Reply:
    """The server's answer to one of our actions (`seq_reply` is the action's `seq`)."""

    seq_reply: int
    status: str  # "OK" or "FAIL"
    error_id: str = ""


Frame = EventFrame | Reply


# Our own posts carry their idempotency key in their props too: the server does not keep
# `pending_post_id` with a post, so a post read back later is known by this mark.
CREATE_MARK = "supervisor_pending_post_id"


@attrs.frozen
class WirePost:
    """A post as Mattermost sends it; `to_post` gives the core's `Post`."""

    id: str
    channel_id: str
    user_id: str
    message: str
    root_id: str = ""
    create_at: int = 0  # ms since epoch
    update_at: int = 0
    delete_at: int = 0
    type: str = ""  # "" for a person's post; "system_*" for server-made posts
    file_ids: tuple[str, ...] = ()
    pending_post_id: str = ""
    props: JSONObject = attrs.field(factory=dict, eq=False)

    @property
    def acts(self) -> bool:
        """A person's live post: system posts and deleted ones never act."""
        return not self.type and not self.delete_at

    def to_post(self) -> Post:
        mark = self.props.get(CREATE_MARK)
        key = self.pending_post_id or (mark if isinstance(mark, str) else "")
        return Post(
            self.id, self.channel_id, self.user_id, self.message, self.root_id, self.create_at,
            self.file_ids, key,
        )  # fmt: skip


@attrs.frozen
class PostList:
    """`GET /channels/{id}/posts` and friends; `order` is newest first."""

    order: tuple[str, ...] = ()
    posts: dict[str, WirePost] = attrs.Factory(dict)
    next_post_id: str = ""
    prev_post_id: str = ""
    has_next: bool = False


@attrs.frozen
class AppError:
    """Mattermost's error body for any failed REST call."""

    id: str = ""
    message: str = ""
    status_code: int = 0
    request_id: str = ""


@attrs.frozen
class Channel:
    id: str
    type: str = ""
    name: str = ""


@attrs.frozen
class NewPost:
    """The body of `POST /posts`."""

    channel_id: str
    message: str
    root_id: str = ""
    file_ids: list[str] = attrs.Factory(list)
    props: JSONObject = attrs.Factory(dict)
    pending_post_id: str = ""


@attrs.frozen
class UploadResult:
    """The body of `POST /files`."""

    file_infos: tuple[FileRef, ...] = ()


# --- the wire shapes we only pass through ---------------------------------------


@attrs.frozen
class _Broadcast:
    channel_id: str = ""
    user_id: str = ""


@attrs.frozen
class _Envelope:
    event: str
    seq: int
    data: JSONObject | None = None  # the server sends {} but a null is harmless
    broadcast: _Broadcast | None = None


@attrs.frozen
class _ReplyWire:
    seq_reply: int
    status: str = ""
    error: JSONObject | None = None


@attrs.frozen
class _HelloData:
    # Servers before reliable websockets send no connection id: such a hello is always a
    # fresh connection (`websocket.StreamPosition`).
    connection_id: str = ""
    server_version: str = ""


@attrs.frozen
class _PostData:
    post: str  # a JSON string holding the Post
    channel_type: str = ""


@attrs.frozen
class _ReactionData:
    reaction: str  # a JSON string holding the Reaction


@attrs.frozen
class _Action:
    seq: int
    action: str
    data: JSONObject | None = None


# --- the converter ---------------------------------------------------------------


def _id_tuple(value: Any, _: Any) -> tuple[str, ...]:
    if value is None:  # Go marshals an empty slice as null
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _json_object(value: Any, _: Any) -> JSONObject:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _make_converter() -> cattrs.Converter:
    converter = strict_converter()
    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _id_tuple)
    converter.register_structure_hook_func(lambda t: t == JSONObject, _json_object)
    return converter


converter = _make_converter()
"""The one converter for every Mattermost shape (frames, REST bodies, actions)."""


def structure(value: Any, kind: type[T]) -> T:
    """Structure parsed JSON as `kind`; raise `MalformedFrame` if it does not fit."""
    try:
        return converter.structure(value, kind)
    except DECODE_ERRORS as exc:
        raise MalformedFrame(f"{kind.__name__}: {decode_reason(exc)}") from None


def loads(text: str | bytes, kind: type[T]) -> T:
    """Parse JSON text and structure it as `kind`; raise `MalformedFrame` if either fails."""
    try:
        value = json.loads(text)
    except DECODE_ERRORS as exc:
        raise MalformedFrame(f"not JSON: {decode_reason(exc)}") from None
    return structure(value, kind)


# --- WebSocket frames ------------------------------------------------------------


def decode_frame(text: str | bytes) -> Frame:
    """One WebSocket text frame -> an event (with its seq) or a reply to our action."""
    try:
        value = json.loads(text)
    except DECODE_ERRORS as exc:
        raise MalformedFrame(f"not JSON: {decode_reason(exc)}") from None
    if not isinstance(value, dict):
        raise MalformedFrame(f"frame is a {type(value).__name__}, not an object")
    if "event" not in value and "seq_reply" in value:
        wire = structure(value, _ReplyWire)
        error_id = wire.error.get("id", "") if wire.error else ""
        return Reply(wire.seq_reply, wire.status, error_id if isinstance(error_id, str) else "")
    try:
        envelope = structure(value, _Envelope)
    except MalformedFrame as exc:
        # A usable seq still lets the reader count the frame instead of seeing a gap and
        # reconnecting, only to be replayed the same frame.
        seq = value.get("seq")
        raise MalformedFrame(exc.reason, seq if type(seq) is int else None) from None
    decode = _EVENT_DECODERS.get(envelope.event)
    if decode is None:
        return EventFrame(envelope.seq, envelope.event, None)
    try:
        event = decode(envelope)
    except MalformedFrame as exc:
        # The envelope was fine, so its seq is trustworthy: the reader can count it.
        raise MalformedFrame(f"{envelope.event}: {exc.reason}", envelope.seq) from None
    return EventFrame(envelope.seq, envelope.event, event)


def _data(envelope: _Envelope, kind: type[T]) -> T:
    return structure(envelope.data or {}, kind)


def _post(envelope: _Envelope) -> tuple[WirePost, _PostData]:
    data = _data(envelope, _PostData)
    return loads(data.post, WirePost), data


def _reaction(envelope: _Envelope) -> Reaction:
    reaction = loads(_data(envelope, _ReactionData).reaction, Reaction)
    # Older servers leave channel_id out of the reaction; the broadcast always has it.
    if not reaction.channel_id and envelope.broadcast is not None:
        reaction = attrs.evolve(reaction, channel_id=envelope.broadcast.channel_id)
    return reaction


def _posted(envelope: _Envelope) -> ChatEvent | None:
    post, data = _post(envelope)
    # Only a person's live post in a direct-message channel may act: a post in a team
    # channel the bot was added to, or a system post, is not the core's business.
    if data.channel_type not in ("D", "") or not post.acts:
        return None
    return Posted(post.to_post())


def _hello(envelope: _Envelope) -> ChatEvent:
    data = _data(envelope, _HelloData)
    return Hello(data.connection_id, data.server_version)


# An event that decodes to None is one we do not use (a reaction that chooses nothing).
_EVENT_DECODERS: dict[str, Callable[[_Envelope], ChatEvent | None]] = {
    "hello": _hello,
    "posted": _posted,
    "post_edited": lambda envelope: PostEdited(_post(envelope)[0].to_post()),
    "post_deleted": lambda envelope: PostDeleted(_post(envelope)[0].to_post()),
    "reaction_added": lambda envelope: choice_made(_reaction(envelope)),
}


# --- client actions --------------------------------------------------------------


def encode_action(seq: int, action: str, data: JSONObject | None = None) -> str:
    """A client action frame. Mattermost refuses actions with `seq <= 0`."""
    if seq <= 0:
        raise ValueError(f"action seq must be > 0, got {seq}")
    wire = converter.unstructure(_Action(seq, action, data))
    if data is None:
        del wire["data"]
    return json.dumps(wire, separators=(",", ":"))


def encode_typing(seq: int, channel_id: str, parent_id: str = "") -> str:
    return encode_action(seq, "user_typing", {"channel_id": channel_id, "parent_id": parent_id})


def encode_ping(seq: int) -> str:
    return encode_action(seq, "ping")


# --- REST bodies -----------------------------------------------------------------


def decode_user(value: Any) -> ChatUser:
    return structure(value, ChatUser)


def decode_users(value: Any) -> list[ChatUser]:
    if not isinstance(value, list):
        raise MalformedFrame(f"expected a list of users, got {type(value).__name__}")
    return [decode_user(item) for item in value]


def decode_reactions(value: Any) -> list[Reaction]:
    if value is None:  # an empty list can come back as null (no reactions yet)
        return []
    if not isinstance(value, list):
        raise MalformedFrame(f"expected a list of reactions, got {type(value).__name__}")
    return [structure(item, Reaction) for item in value]


def decode_post(value: Any) -> WirePost:
    return structure(value, WirePost)


def decode_post_list(value: Any) -> PostList:
    return structure(value, PostList)


def decode_file_info(value: Any) -> FileRef:
    return structure(value, FileRef)


def unstructure(value: Any) -> Any:
    """A request body as plain JSON values."""
    return converter.unstructure(value)
