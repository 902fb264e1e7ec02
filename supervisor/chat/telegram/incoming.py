"""Updates, read as the chat port's incoming events (sans-IO).

Owns the translation of one `Update` into what the core needs to know: a message posted
(where: the private chat and, with topic mode, its topic; who; the text, with a command's
`@botname` dropped; files; the message it replies to; a topic the person just opened), a
button pressed (with our `Choice`, or None for data that is not ours), or Stop pressed on
a draft; and a message written in a group (`InGroup`), which the core never sees.
Everything else reads as None: the caller confirms such an update and moves on.
It must never do I/O or decide anything about sessions: routing is the core's job.

Event ids are `tg:<update_id>`, for the log. The core's durable handled marks key on the
message's post id (`tg:<chat>:<message>`, `ids.post`), so a redelivery after a crash is
recognised.
"""

from __future__ import annotations

import re
from typing import Final

import attrs

from supervisor.chat.telegram import choices
from supervisor.chat.telegram.codec import MediaFile, Message, PhotoSize, Update

_COMMAND_AT: Final = re.compile(r"^([/!][A-Za-z0-9_]+)@([A-Za-z0-9_]+)(?=\s|$)")


@attrs.frozen
class Attachment:
    file_id: str  # for BotApi.download
    name: str  # as the person's client named it (not yet made safe: the core does that)
    size: int | None  # bytes, when Telegram says
    kind: str  # "document" (any file, voice notes and videos too) or "photo"
    mime_type: str = ""  # as the person's client said ("": unknown)


@attrs.frozen
class Posted:
    event_id: str
    chat_id: int  # the private chat: the port's Place
    topic_id: int | None  # the port's thread (None: the chat's main view)
    author_id: int
    message_id: int
    text: str
    attachments: tuple[Attachment, ...] = ()
    reply_to: int | None = None  # the message id this one replies to
    reply_text: str = ""  # that message's text (a session's starts with "[NAME] ")
    topic_opened: str | None = None  # the person opened a topic with this name
    sent_at_s: int = 0  # Telegram's date of it: whole seconds, by its servers' clock
    album: str = ""  # the media group it is a part of (an album sent at once), if any


@attrs.frozen
class Pressed:
    event_id: str
    query_id: str  # answer it (answerCallbackQuery) whatever happens
    author_id: int
    chat_id: int | None  # None when the message is gone (too old)
    message_id: int | None
    choice: choices.Choice | None  # None: not data of ours


@attrs.frozen
class StopPressed:
    event_id: str
    chat_id: int
    topic_id: int | None
    draft_id: int


@attrs.frozen
class InGroup:
    """A person's message in a group: the bot serves private chats only."""

    event_id: str
    chat_id: int
    topic_id: int | None
    author_id: int


Incoming = Posted | Pressed | StopPressed | InGroup


def read_update(update: Update, bot_username: str = "") -> Incoming | None:
    """What `update` means for the core, or None when it means nothing (an edit, a
    message from a bot, a kind we do not use); a person's message in a group is
    `InGroup`, for the front end to say where the bot works."""
    event_id = f"tg:{update.update_id}"
    if update.message is not None:
        return _posted(event_id, update.message, bot_username)
    if update.callback_query is not None:
        query = update.callback_query
        message = query.message
        return Pressed(
            event_id,
            query.id,
            query.sender.id,
            message.chat.id if message is not None else None,
            message.message_id if message is not None else None,
            choices.decode(query.data),
        )
    stopped = update.stopped_message_generation
    if stopped is not None:
        return StopPressed(event_id, stopped.chat.id, stopped.message_thread_id, stopped.draft_id)
    return None


def _posted(event_id: str, message: Message, bot_username: str) -> Posted | InGroup | None:
    sender = message.sender
    if sender is None or sender.is_bot:
        return None
    if message.chat.type != "private":
        return InGroup(event_id, message.chat.id, message.topic_id, sender.id)
    opened = message.forum_topic_created.name if message.forum_topic_created else None
    reply = message.reply_to_message
    # In a topic, Telegram shows every message as a reply to the topic's first message;
    # only a reply to another message is one.
    reply_to = reply.message_id if reply is not None and reply.forum_topic_created is None else None
    return Posted(
        event_id=event_id,
        chat_id=message.chat.id,
        topic_id=message.topic_id,
        author_id=sender.id,
        message_id=message.message_id,
        text=command_text(message.text or message.caption, bot_username),
        attachments=_attachments(message),
        reply_to=reply_to,
        reply_text=(reply.text or reply.caption) if reply_to is not None and reply else "",
        topic_opened=opened,
        sent_at_s=message.date,
        album=message.media_group_id,
    )


def one_album(parts: list[Posted]) -> Posted:
    """An album's messages (each part one photo or file, the caption on any of them) as
    the one message the person sent: the first's, with every part's files and captions."""
    first = parts[0]
    captions = [part.text for part in parts if part.text.strip()]
    return attrs.evolve(
        first, text="\n\n".join(captions), attachments=tuple(a for part in parts for a in part.attachments)
    )


def command_text(text: str, bot_username: str = "") -> str:
    """`/new@our_bot alpha` -> `/new alpha` (clients add the bot's name when a command is
    picked from a menu); a command addressed to another bot is left as it is."""
    match = _COMMAND_AT.match(text)
    if match is None or match.group(2).lower() != bot_username.lower():
        return text
    return match.group(1) + text[match.end() :]


def _attachments(message: Message) -> tuple[Attachment, ...]:
    found: list[Attachment] = []
    if message.document is not None:
        doc = message.document
        name = doc.file_name or f"document-{message.message_id}"
        found.append(Attachment(doc.file_id, name, doc.file_size, "document", doc.mime_type))
    if message.photo:
        largest = max(message.photo, key=_pixels)
        name = f"photo-{message.message_id}.jpg"  # Telegram re-encodes photos as JPEG
        found.append(Attachment(largest.file_id, name, largest.file_size, "photo", "image/jpeg"))
    for field, stem, mime_type, suffix in _MEDIA:
        media: MediaFile | None = getattr(message, field)
        if media is None or any(a.file_id == media.file_id for a in found):
            continue  # an animation comes as a document too
        name = media.file_name or f"{stem}-{message.message_id}{suffix}"
        found.append(Attachment(media.file_id, name, media.file_size, "document", media.mime_type or mime_type))
    return tuple(found)


# The media a phone sends besides photos and documents, saved as files like them: the
# message's field, the name's stem and the type when the client says none, the suffix of
# a name for those that come without one.
_MEDIA = (
    ("voice", "voice", "audio/ogg", ".ogg"),
    ("audio", "audio", "audio/mpeg", ".mp3"),
    ("video", "video", "video/mp4", ".mp4"),
    ("animation", "animation", "video/mp4", ".mp4"),
    ("video_note", "video-note", "video/mp4", ".mp4"),
)


def _pixels(photo: PhotoSize) -> int:
    return photo.width * photo.height
