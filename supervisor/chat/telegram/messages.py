"""The bot's messages: sending and editing them in Telegram, as the port's posts.

Owns what we keep of each message the bot sent: the message ids that show a post (a
post whose rendered text passes 4,096 characters continues in further messages, kept here
and edited with it) and its topic (both kept in `Memory` too, for an edit after a
restart), the session thread it belongs to (kept in `Memory`: its topic, and without
topics its `[NAME]` prefix and the session a person's reply to it goes to), the buttons
on it, the parts a cut send got out (its next try goes on from there: Telegram has no
idempotency key), and the files waiting for the message that sends them (Telegram has no
upload without a message). Every text goes out as Telegram HTML
(`render`); one change at a time per message (`holding`).

It must never let an edit put back buttons that a settle took away meanwhile, and never
grow without bound (each map keeps the newest 2,000 posts).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Final

import attrs
import trio

from supervisor.chat import ChatError, ChatUser
from supervisor.chat.telegram import choices, codec, ids, render, runs
from supervisor.chat.telegram.calls import BadRequest, BotApiError
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import JSONObject
from supervisor.chat.telegram.limits import LIMITS
from supervisor.chat.telegram.memory import Memory, keep_newest
from supervisor.core.events import ChoiceKind, Post

log = logging.getLogger("supervisor.telegram")

# The port's choice kinds, as the buttons' kinds.
KINDS: Final[Mapping[ChoiceKind, choices.ChoiceKind]] = {
    "allow_once": choices.ChoiceKind.ALLOW_ONCE,
    "allow_always": choices.ChoiceKind.ALLOW_ALWAYS,
    "reject": choices.ChoiceKind.REJECT,
    "rerun": choices.ChoiceKind.RERUN,
    "stop": choices.ChoiceKind.STOP,
}
PORT_KINDS: Final[Mapping[choices.ChoiceKind, ChoiceKind]] = {
    kind: name for name, kind in KINDS.items()
}
_EMPTY: Final = "…"  # Telegram refuses an empty message; a post can be empty for a moment
PARTS_KEPT: Final = 2000  # posts whose continuation parts we remember (edits come soon)
UNFINISHED_KEPT: Final = 100  # cut sends whose parts we remember (their next try comes soon)
_REPLY_REFUSED: Final = "message to be replied not found"  # Telegram's words, after "Bad Request: "


@attrs.frozen
class _Upload:
    name: str
    data: bytes


def topic_gone(exc: BotApiError) -> bool:
    """The topic was deleted or closed (or the chat is gone): nothing goes there, a draft
    or a message; not a refusal of one kind of call."""
    said = exc.description.lower()
    return any(words in said for words in ("thread not found", "topic_deleted", "topic_closed", "chat not found"))


def refused_entities(exc: BadRequest) -> bool:
    """Telegram refused the formatting ("can't parse entities" and the like): the same
    text goes again as plain text."""
    if "entit" not in exc.description.lower():
        return False
    log.warning("Telegram refused our HTML (%s): sent as plain text", exc.description)
    return True


class Messages:
    """The messages of one bot. `topics`: the bot's topic mode."""

    def __init__(self, api: BotApi, me: ChatUser, memory: Memory, *, topics: bool) -> None:
        self.api = api
        self.me = me
        self.memory = memory
        self.topics = topics
        # post id -> the message ids showing it (first = the post itself), and its topic
        self._parts: dict[str, tuple[list[int], int | None]] = {}
        self._choices: dict[str, tuple[ChoiceKind, ...]] = {}  # post id -> kinds on its buttons
        self._uploads: dict[str, _Upload] = {}
        # key -> the parts (message id, a hash of its html) a cut `send` of that post got
        # out: its next try goes on from there (see `send`); a try comes within seconds
        self._unfinished: dict[str, list[tuple[int, int]]] = {}
        self._upload_ids = itertools.count(1)
        self._locks: dict[str, trio.StrictFIFOLock] = {}  # message post id -> its changes

    async def send(
        self, chat_id: int, topic_id: int | None, message: str, prefix: str, *, key: str = "",
        reply_to: int | None = None,
    ) -> Post:  # fmt: skip
        """The post as messages, one per part, the first a reply to the message `reply_to`
        if given. `key` names the post across tries: a try cut after some of its parts
        went out (by an answer we could not read, a stop) is continued by the next one, the
        parts sent edited if their text changed, never sent again (Telegram has no
        idempotency key)."""
        htmls = self.render(message, prefix)
        done = self._unfinished.pop(key, []) if key else []
        emptied = [runs.escape(_EMPTY)] * (len(done) - len(htmls))  # parts the new text does not need
        try:
            for index, html in enumerate(htmls + emptied):
                if index >= len(done):
                    sent = await self.send_html(chat_id, html, thread_id=topic_id, reply_to=None if index else reply_to)
                    done.append((sent.message_id, hash(html)))
                elif done[index][1] != hash(html):  # the text changed since that try
                    await self._edit(chat_id, done[index][0], html, None)
                    done[index] = (done[index][0], hash(html))
            parts = [message_id for message_id, _html in done]
            post_id = ids.post(chat_id, parts[0])
            if self._keep_parts(post_id, parts, topic_id):
                await self.memory.commit()  # a post of several messages: see `edit`
        except BaseException:  # (a commit cut too: the next try sends nothing again)
            if key and done:
                self._unfinished[key] = done
                keep_newest(self._unfinished, UNFINISHED_KEPT)
            raise
        return Post(post_id, ids.channel(chat_id), self.me.id, message,
                    create_at=int(time.time() * 1000))  # fmt: skip

    async def send_file(self, chat_id: int, topic_id: int | None, file_id: str, caption: str, prefix: str) -> Post:
        """The file, its caption starting with `prefix` (without topics, its session's
        `[NAME]`: a file with no caption shows it too). A caption over Telegram's limit,
        or whose formatting Telegram refuses, follows as a message of its own."""
        # Sent once, or not at all: no caller tries a file's post again (`/get` says it
        # failed), and one kept for a retry that never comes would hold tens of MB for good.
        upload = self._uploads.pop(file_id, None)
        if upload is None:
            raise ChatError(404, "file_not_found", "the file to send is gone (was it sent already?)")
        alone = runs.escape(prefix.rstrip())  # the caption when the text goes on its own
        parts = render.render_parts(caption, limit=LIMITS.max_caption_chars, prefix=prefix) if caption.strip() else []
        in_caption = len(parts) == 1
        try:
            sent = await self.api.send_document(chat_id, upload.name, upload.data, thread_id=topic_id,
                                                caption_html=parts[0] if in_caption else alone)  # fmt: skip
        except BadRequest as exc:
            if not in_caption or not refused_entities(exc):
                raise
            in_caption = False  # the text in a message of its own, as plain text if need be
            sent = await self.api.send_document(chat_id, upload.name, upload.data, thread_id=topic_id,
                                                caption_html=alone)  # fmt: skip
        post_id = ids.post(chat_id, sent.message_id)
        self._keep_parts(post_id, [sent.message_id], topic_id)
        if caption.strip() and not in_caption:
            await self.send(chat_id, topic_id, caption, prefix)
        return Post(post_id, ids.channel(chat_id), self.me.id, caption)

    def upload(self, name: str, data: bytes) -> str:
        """Keep a file until a message sends it; its port file id."""
        file_id = f"tgf:up{next(self._upload_ids)}"
        self._uploads[file_id] = _Upload(name, data)
        return file_id

    async def edit(self, post_id: str, target: str, message: str) -> Post:
        """Show `message` in the messages of `target` (more of them if it grew, the extra
        ones emptied if it shrank), with the buttons of `target`. Call holding its lock."""
        chat_id, _message_id = ids.parse_post(target)
        parts, topic_id = self._known_parts(target)
        htmls = self.render(message, self._prefix_for(target))
        markup = self._markup(post_id)
        added = False
        for index, html in enumerate(htmls):
            last = index == len(htmls) - 1
            if index < len(parts):
                edited = await self._edit(chat_id, parts[index], html, markup if last else None)
                if index == 0 and topic_id is None and edited is not None:
                    # A post of an earlier run that `Memory` does not hold: the parts to
                    # come go where its first one is.
                    topic_id = edited.topic_id
            else:
                new = await self.send_html(chat_id, html, thread_id=topic_id, reply_markup=markup if last else None)
                parts.append(new.message_id)
                added = True
            # Kept as each part is done: an edit cut after adding parts is tried again from there.
            self._keep_parts(target, parts, topic_id)
        if added:  # durable now: a later run's edit must reach (and settle buttons on) all of them
            await self.memory.commit()
        for surplus in parts[len(htmls) :]:
            await self._edit(chat_id, surplus, runs.escape(_EMPTY), None)
        root = ids.post(chat_id, topic_id) if topic_id is not None else ""
        return Post(post_id, ids.channel(chat_id), self.me.id, message, root_id=root)

    def belongs_to(self, post_id: str, root_id: str) -> None:
        """The message is of that session's thread (durable with the next write)."""
        self.memory.remember_root(post_id, root_id)

    def root_of(self, post_id: str) -> str | None:
        """The session thread a message was sent in, if still known: a later message of a
        long post is of its post's (kept by its first message)."""
        return self.memory.roots.get(post_id) or self.memory.roots.get(self._post_of(post_id))

    def _post_of(self, message_post_id: str) -> str:
        """The post a message shows part of (itself, unless a later part of a long post)."""
        chat_id, message_id = ids.parse_post(message_post_id)
        return next((post_id for post_id, kept in self.memory.posts.items()
                     if message_id in kept.parts[1:] and ids.parse_post(post_id)[0] == chat_id),
                    message_post_id)  # fmt: skip

    # --- buttons ------------------------------------------------------------------------

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        async with self.holding(post_id):
            self._choices[post_id] = tuple(kind for kind in kinds if kind in KINDS)
            chat_id, _message_id = ids.parse_post(post_id)
            parts, _topic = self._known_parts(post_id)
            await self._set_markup(chat_id, parts[-1], self._markup(post_id))

    async def settle_choices(self, post_id: str) -> None:
        async with self.holding(post_id):
            # Also when this process never offered them: buttons a previous run put there
            # (a cut turn's "Run it again") must go too.
            self._choices.pop(post_id, None)
            chat_id, _message_id = ids.parse_post(post_id)
            parts, _topic = self._known_parts(post_id)
            await self._set_markup(chat_id, parts[-1], None)

    @contextlib.asynccontextmanager
    async def holding(self, post_id: str) -> AsyncIterator[None]:
        """One change at a time per message: an edit computes the buttons to keep, so a
        settle made meanwhile must not be overtaken by it (the buttons would come back)."""
        lock = self._locks.setdefault(post_id, trio.StrictFIFOLock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(post_id, None)

    def render(self, message: str, prefix: str) -> list[str]:
        """The message as Telegram HTML, in parts of Telegram's size."""
        text = message if message.strip() else _EMPTY
        parts = render.render_parts(text, limit=LIMITS.max_message_chars, prefix=prefix)
        # Markdown with nothing visible (only link definitions, a lone `&nbsp;`) renders
        # to no part at all: it shows as the empty post does.
        return parts or render.render_parts(_EMPTY, limit=LIMITS.max_message_chars, prefix=prefix)

    # --- helpers ------------------------------------------------------------------------

    async def send_html(
        self, chat_id: int, html: str, *, thread_id: int | None, reply_markup: JSONObject | None = None,
        reply_to: int | None = None,
    ) -> codec.Message:  # fmt: skip
        """One message; as plain text if Telegram refuses our HTML (the answer is never
        lost to a formatting rule we got wrong), and as no reply if Telegram will not
        take it as one: the message matters more than the quote. (A reply to a message
        that is gone is sent anyway, `BotApi.send_message` asks so; one to a message in
        another topic is refused all the same.)"""
        try:
            return await self._send_html(chat_id, html, thread_id, reply_markup, reply_to)
        except BadRequest as exc:
            if reply_to is None or _REPLY_REFUSED not in exc.description:
                raise
            log.info("message %s could not be quoted (%s): sent without it", reply_to, exc.description)
        return await self._send_html(chat_id, html, thread_id, reply_markup, None)

    async def _send_html(
        self, chat_id: int, html: str, thread_id: int | None, reply_markup: JSONObject | None, reply_to: int | None
    ) -> codec.Message:
        try:
            return await self.api.send_message(chat_id, html, thread_id=thread_id, reply_markup=reply_markup,
                                               reply_to=reply_to)  # fmt: skip
        except BadRequest as exc:
            if not refused_entities(exc):
                raise
        return await self.api.send_message(chat_id, runs.plain_text(html), thread_id=thread_id,
                                           reply_markup=reply_markup, plain=True, reply_to=reply_to)  # fmt: skip

    async def _edit(self, chat_id: int, message_id: int, html: str, markup: JSONObject | None) -> codec.Message | None:
        """The edited message, if Telegram said it (see `BotApi.edit_message_text`)."""
        try:
            try:
                return await self.api.edit_message_text(chat_id, message_id, html, reply_markup=markup)
            except BadRequest as exc:
                if not refused_entities(exc):
                    raise
                return await self.api.edit_message_text(chat_id, message_id, runs.plain_text(html),
                                                        reply_markup=markup, plain=True)  # fmt: skip
        except BadRequest as exc:
            if "not found" not in exc.description:
                raise
            log.info("message %s to edit is gone", message_id)  # deleted by the person
            return None

    async def _set_markup(self, chat_id: int, message_id: int, markup: JSONObject | None) -> None:
        try:
            await self.api.edit_message_reply_markup(chat_id, message_id, markup)
        except BadRequest as exc:
            log.info("buttons of message %s not changed: %s", message_id, exc.description)

    def _markup(self, post_id: str) -> JSONObject | None:
        kinds = self._choices.get(post_id)
        if not kinds:
            return None
        _chat, message_id = ids.parse_post(post_id)
        return choices.buttons(str(message_id), tuple(KINDS[kind] for kind in kinds))

    def _prefix_for(self, post_id: str) -> str:
        if self.topics:
            return ""
        root = self.root_of(post_id)
        thread = self.memory.threads.get(root) if root else None
        return f"[{thread.title}] " if thread is not None else ""

    def _known_parts(self, post_id: str) -> tuple[list[int], int | None]:
        """The messages showing a post, and its topic: of this run, else of an earlier one
        (`Memory`), else its own message alone, in the topic of its session's thread if
        that is known (a session made before topic mode was on has none)."""
        known = self._parts.get(post_id)
        if known is not None:
            return known
        remembered = self.memory.posts.get(post_id)
        if remembered is not None:
            return list(remembered.parts), remembered.topic_id
        root = self.root_of(post_id)
        thread = self.memory.threads.get(root) if root and self.topics else None
        return [ids.parse_post(post_id)[1]], thread.topic_id if thread is not None else None

    def _keep_parts(self, post_id: str, parts: list[int], topic_id: int | None) -> bool:
        """Whether `Memory` keeps something new of it (a post of several messages)."""
        self._parts[post_id] = (parts, topic_id)
        keep_newest(self._parts, PARTS_KEPT)
        return self.memory.remember_parts(post_id, parts, topic_id)
