"""The Bot API wire format: the JSON shapes the supervisor reads and writes, as attrs values.

Owns the one cattrs converter for Telegram (`converter`), the subset of Bot API types we
use (schema: ../shared/reference/telegram/bot-api.v10.1.json) and the answer envelope
`{ok, result}` / `{ok: false, error_code, description, parameters}`. It is sans-IO: parsed
JSON in, values out. It must never do I/O, log, or let any exception other than
`MalformedReply` escape while decoding what a server sent.

Tolerance (a Bot API upgrade must not take the supervisor down): unknown fields are
ignored; an update of a kind we do not use decodes to an `Update` with only its id; an
update whose known part is malformed also keeps its id (`Update.malformed` says so), so
the update source can still step past it. Primitive types are checked strictly: cattrs
would otherwise turn 5 into "5" and "5" into 5.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from supervisor.chat.strict import DECODE_ERRORS, decode_reason, strict_converter

T = TypeVar("T")
JSONObject = dict[str, Any]

_REASON_LIMIT = 200  # a reason is for a log line, not a dump of the payload


class MalformedReply(Exception):
    """A body we cannot use (not the shape we rely on)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason[:_REASON_LIMIT])
        self.reason = reason[:_REASON_LIMIT]


# --- the types we read -------------------------------------------------------------


@attrs.frozen
class User:
    id: int
    is_bot: bool = False
    first_name: str = ""
    username: str = ""
    # getMe only (9.3, 9.4): the bot's topic mode, and whether people may open topics.
    has_topics_enabled: bool = False
    allows_users_to_create_topics: bool = False


@attrs.frozen
class Chat:
    id: int
    type: str  # "private", "group", "supergroup", "channel"
    title: str = ""
    username: str = ""
    first_name: str = ""
    is_forum: bool = False


@attrs.frozen
class MessageEntity:
    type: str
    offset: int  # in UTF-16 code units
    length: int
    url: str = ""
    language: str = ""


@attrs.frozen
class PhotoSize:
    file_id: str
    file_unique_id: str
    width: int
    height: int
    file_size: int | None = None


@attrs.frozen
class Document:
    file_id: str
    file_unique_id: str
    file_name: str = ""
    mime_type: str = ""
    file_size: int | None = None


@attrs.frozen
class MediaFile:
    """A voice note, an audio file, a video, an animation or a round video note: the
    fields of the schema's `Voice`, `Audio`, `Video`, `Animation` and `VideoNote` we use."""

    file_id: str
    file_unique_id: str
    file_name: str = ""  # none for a voice or a video note
    mime_type: str = ""
    file_size: int | None = None


@attrs.frozen
class ForumTopicCreated:
    """The service message that opens a topic (also one a person made themselves)."""

    name: str
    icon_color: int = 0
    is_name_implicit: bool = False


@attrs.frozen
class Message:
    """A message, or (as `callback_query.message`) an inaccessible one: `date` 0."""

    message_id: int
    date: int
    chat: Chat
    sender: User | None = None  # "from" on the wire
    message_thread_id: int | None = None
    is_topic_message: bool = False
    reply_to_message: Message | None = None
    text: str = ""
    entities: tuple[MessageEntity, ...] = ()
    caption: str = ""
    caption_entities: tuple[MessageEntity, ...] = ()
    document: Document | None = None
    photo: tuple[PhotoSize, ...] = ()  # sizes, smallest first
    voice: MediaFile | None = None
    audio: MediaFile | None = None
    video: MediaFile | None = None
    animation: MediaFile | None = None  # Telegram sends its `document` too
    video_note: MediaFile | None = None
    media_group_id: str = ""
    edit_date: int | None = None
    forum_topic_created: ForumTopicCreated | None = None

    @property
    def accessible(self) -> bool:
        return self.date != 0

    @property
    def topic_id(self) -> int | None:
        """The topic this message belongs to (None: the chat's main view).

        In a chat with topics every message of a topic carries `message_thread_id`; a
        reply outside topics carries it too (the replied-to message's id), which is why
        `is_topic_message` decides.
        """
        return self.message_thread_id if self.is_topic_message else None


@attrs.frozen
class CallbackQuery:
    id: str
    sender: User  # "from" on the wire
    chat_instance: str = ""
    message: Message | None = None
    data: str = ""


@attrs.frozen
class StoppedGeneration:
    """Bot API 10.3: the person pressed Stop on a draft sent with `can_stop`."""

    chat: Chat
    draft_id: int
    message_thread_id: int | None = None


@attrs.frozen
class Update:
    """One update. At most one of the payload fields is set; none for kinds we do not use."""

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    callback_query: CallbackQuery | None = None
    stopped_message_generation: StoppedGeneration | None = None
    malformed: str = ""  # why the payload could not be read ("" when it could)
    # The update as it came (parsed JSON), for keeping it ourselves (the front end's memory).
    raw: Any = attrs.field(default=None, eq=False, repr=False)

    @property
    def empty(self) -> bool:
        """Nothing here for us: a kind we do not use, or a payload we could not read."""
        return (
            self.message is None
            and self.edited_message is None
            and self.callback_query is None
            and self.stopped_message_generation is None
        )


@attrs.frozen
class File:
    file_id: str
    file_unique_id: str = ""
    file_size: int | None = None
    file_path: str = ""  # for GET /file/bot<token>/<file_path>; valid for an hour


@attrs.frozen
class ForumTopic:
    message_thread_id: int
    name: str
    icon_color: int = 0
    is_name_implicit: bool = False


@attrs.frozen
class WebhookInfo:
    url: str = ""
    has_custom_certificate: bool = False
    pending_update_count: int = 0
    last_error_message: str = ""


@attrs.frozen
class ResponseParameters:
    retry_after: int | None = None
    migrate_to_chat_id: int | None = None


@attrs.frozen
class Failure:
    """`{ok: false, ...}`: the Bot API refused the request."""

    error_code: int
    description: str = ""
    parameters: ResponseParameters = ResponseParameters()


# --- what we send --------------------------------------------------------------------


@attrs.frozen
class InlineButton:
    text: str
    callback_data: str


@attrs.frozen
class InlineKeyboard:
    inline_keyboard: tuple[tuple[InlineButton, ...], ...]


# --- the converter -------------------------------------------------------------------


def _make_converter() -> cattrs.Converter:
    converter = strict_converter()
    for cls in (Message, CallbackQuery):
        converter.register_structure_hook(
            cls, make_dict_structure_fn(cls, converter, sender=override(rename="from"))
        )
    # `malformed` is ours, never read from the wire.
    converter.register_structure_hook(
        Update,
        make_dict_structure_fn(
            Update, converter, malformed=override(omit=True), raw=override(omit=True)
        ),
    )
    return converter


converter = _make_converter()
"""The one converter for every Telegram shape."""


def structure(value: Any, cls: type[T]) -> T:
    """`value` (parsed JSON) as `cls`; MalformedReply if it is not that shape."""
    try:
        return converter.structure(value, cls)
    except DECODE_ERRORS as exc:
        raise MalformedReply(f"{cls.__name__}: {decode_reason(exc)}") from None


def unstructure(value: Any) -> Any:
    return converter.unstructure(value)


# --- the envelope and the updates ------------------------------------------------------


def parse_reply(body: Any) -> Any:
    """The `result` of a successful answer, or the `Failure` of a refused one.

    Raises MalformedReply for a body that is neither (a proxy's page, a bare JSON value).
    """
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        raise MalformedReply("not a Bot API answer (no boolean 'ok')")
    if body["ok"]:
        if "result" not in body:
            raise MalformedReply("ok answer without 'result'")
        return body["result"]
    return structure(body, Failure)


def decode_update(value: Any) -> Update | None:
    """One update; None only when it has no usable `update_id` (it cannot be confirmed)."""
    if unusable_update(value) is not None:
        return None
    update_id = value["update_id"]
    try:
        return attrs.evolve(structure(value, Update), raw=value)
    except MalformedReply as exc:
        return Update(update_id=update_id, malformed=exc.reason, raw=value)


def unusable_update(value: Any) -> str | None:
    """Why `value` is no update we could confirm (no usable `update_id`), in a few words
    for a log line (never the payload: the names of at most 5 of its fields); None when
    it is one."""
    if not isinstance(value, dict):
        return f"not an object but {type(value).__name__}"
    update_id = value.get("update_id")
    if isinstance(update_id, int) and not isinstance(update_id, bool):
        return None
    fields = ", ".join(str(name)[:40] for name in list(value)[:5])
    what = "no update_id" if update_id is None else f"an update_id of type {type(update_id).__name__}"
    return f"{what} (fields: {fields})"[:_REASON_LIMIT]


def decode_updates(value: Any) -> list[Update]:
    """The result of getUpdates, in the server's order; unusable entries left out."""
    if not isinstance(value, list):
        raise MalformedReply("getUpdates result is not a list")
    return [update for update in map(decode_update, value) if update is not None]


@attrs.frozen
class UpdateBatch:
    """A getUpdates answer: its updates we can confirm, in the server's order, and why
    each of the others cannot be (`unusable_update`: passed over; never the payload)."""

    updates: list[Update]
    passed_over: tuple[str, ...] = ()


def keyboard(rows: list[list[InlineButton]]) -> JSONObject:
    """An `InlineKeyboardMarkup` as JSON."""
    value = unstructure(InlineKeyboard(tuple(tuple(row) for row in rows)))
    assert isinstance(value, dict)
    return value
