"""The chat port's ids for Telegram things, and back (pure).

Every id the core sees from this front end starts with "tg", so a supervisor running
several front ends can tell whose an id is (`owns`), and no id can collide with another
front end's:
- a private chat (the port's channel): `tg:<chat_id>`;
- a message (the port's post), and a topic by its root (the service message that opened
  it, whose id is the topic's `message_thread_id`): `tg:<chat_id>:<message_id>`;
- a person: `tgu:<user_id>`; a file a person sent or we are about to send: `tgf:<...>`.
It must never do I/O; a malformed id raises ValueError.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "tg"


def owns(any_id: str) -> bool:
    return any_id.startswith(PREFIX)


def channel(chat_id: int) -> str:
    return f"tg:{chat_id}"


def chat_of(channel_id: str) -> int:
    kind, _, chat = channel_id.partition(":")
    if kind != "tg" or ":" in chat:
        raise ValueError(f"not a Telegram chat id: {channel_id!r}")
    return int(chat)


def post(chat_id: int, message_id: int) -> str:
    return f"tg:{chat_id}:{message_id}"


def parse_post(post_id: str) -> tuple[int, int]:
    """(chat id, message id) of a post id made by `post`."""
    parts = post_id.split(":")
    if len(parts) != 3 or parts[0] != "tg":
        raise ValueError(f"not a Telegram message id: {post_id!r}")
    return int(parts[1]), int(parts[2])


def user(user_id: int) -> str:
    return f"tgu:{user_id}"


def parse_user(user_id: str) -> int:
    kind, _, number = user_id.partition(":")
    if kind != "tgu":
        raise ValueError(f"not a Telegram user id: {user_id!r}")
    return int(number)


def file(file_id: str) -> str:
    return f"tgf:{file_id}"


def parse_file(file_id: str) -> str:
    kind, _, inner = file_id.partition(":")
    if kind != "tgf" or not inner:
        raise ValueError(f"not a Telegram file id: {file_id!r}")
    return inner
