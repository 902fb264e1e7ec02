"""Announcing a new session: what its thread root and its `!new` answer look like, and how
to find them on the server after a crash cut the announcement short.

`!new` is handled in one durable write (the session's record with `answer_pending`, and
the command's handled mark). What follows (the thread root, the answer linking it) may be
cut by a crash at any point; the next start finishes it, and must find what already
reached the server rather than post it twice. A front end may not keep the idempotency
key (Mattermost's `pending_post_id` comes back only in the create answer and the `posted`
event, and dedupes a repeat only for 30 s: ../shared/reference/mattermost/FACTS.md), so a
post is found by its author and place, and by the key when the front end gives it back
with the posts it reads (Mattermost's front end keeps it in the post's props), else by
its exact text, which the record (and the name of its agent) determines.

Pure: no I/O. The supervisor fetches the posts and posts what is missing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from supervisor.core.events import Post
from supervisor.core.state import SessionRecord

# Look this far before the record's creation time for what it announced (clock skew
# between us and the server, and the time the first write took).
LOOK_BEHIND_MS = 60_000
_ANSWER_KEYS = uuid.UUID("5c1d1b1e-5e55-4c0d-8a11-a2d3b0a0c0de")


def started_text(record: SessionRecord, permalink: Callable[[str], str]) -> str:
    """The answer to `!new`, linking the thread."""
    return f"Started session **{record.name}** in `{record.cwd}`: {permalink(record.root_id)}"


def answer_pending_id(record: SessionRecord) -> str:
    """The answer's idempotency key: the same on every try, derived from the root's."""
    user, _, _ = record.root_pending_id.partition(":")
    return f"{user}:{uuid.uuid5(_ANSWER_KEYS, record.root_pending_id).hex}"


def look_since_ms(record: SessionRecord, now_s: float | None = None) -> int:
    """Where to start reading the channel to see everything the record announced."""
    try:
        created = datetime.fromisoformat(record.created_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        created = (time.time() if now_s is None else now_s) - 86_400
    return max(1, int(created * 1000) - LOOK_BEHIND_MS)


def find_root(posts: Sequence[Post], record: SessionRecord, bot_user_id: str, text: str) -> Post | None:
    """The thread root this record's announcement already posted, if any (the first):
    `text` is the root's text."""
    found = [
        p
        for p in posts
        if _ours(p, record, bot_user_id) and (p.idempotency_key == record.root_pending_id or p.message == text)
    ]
    return min(found, key=lambda p: (p.create_at, p.id), default=None)


def has_answer(posts: Sequence[Post], record: SessionRecord, bot_user_id: str, text: str) -> bool:
    key = answer_pending_id(record)
    return any(_ours(p, record, bot_user_id) and (p.idempotency_key == key or p.message == text) for p in posts)


def _ours(post: Post, record: SessionRecord, bot_user_id: str) -> bool:
    return (
        post.user_id == bot_user_id
        and post.channel_id == record.channel_id
        and not post.root_id
    )
