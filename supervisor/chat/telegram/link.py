"""The chat port over the Bot API: what the core asks of a chat, done in Telegram.

Owns the translation of the port's operations into Bot API calls: a session's thread is
a forum topic in the person's private chat (topic mode), or, without topic mode, a header
message whose session's messages all start with `[NAME]`; a post is one message, or
several when its rendered text passes 4,096 characters (the continuation parts are kept
here and edited with it); choices are inline buttons; keyed creations are looked up in the
front end's memory before anything is sent. Every text goes out as Telegram HTML
(`render`), every id in and out is the port's (`ids`).

A growing post (a streaming answer: the texts the poster sends through `create_growing`
and `edit_growing`) shows as a draft with a Stop button in its topic (`drafts`), and
becomes real messages with its last text, or as soon as it needs a real message (its
buttons, a later message of its session in the same place). Where a draft call fails, that
chat gets today's way instead: one message, edited in place at most once a second.

It must never let a Bot API word reach the core (the core sees `Post`s and port ids only),
never send a keyed message twice while its key is remembered, and never put the token
anywhere (the client keeps it out of every error it raises).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Final

import attrs
import trio

from supervisor.chat import NO_LIMIT, ChatError, ChatUser
from supervisor.chat.telegram import choices, ids, render, runs
from supervisor.chat.telegram.calls import BadRequest, BotApiError
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import JSONObject, MalformedReply
from supervisor.chat.telegram.drafts import Drafts, Growing, is_provisional
from supervisor.chat.telegram.limits import LIMITS
from supervisor.chat.telegram.memory import Memory, ThreadInfo
from supervisor.core.events import Choice, ChoiceKind, FileRef, Post

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
QUEUED_EMOJI: Final = "👀"
_EMPTY: Final = "…"  # Telegram refuses an empty message; a post can be empty for a moment
_PARTS_KEPT: Final = 2000  # posts whose continuation parts we remember (edits come soon)
# A growing post made real, kept in memory's keys under this prefix: the core may name its
# provisional id after a restart (a lapsed permission request is edited then).
DRAFT_KEY: Final = "draft:"


@attrs.frozen
class _Upload:
    name: str
    data: bytes


class TelegramLink:
    """One per bot. `topics`: the bot's topic mode (getMe's `has_topics_enabled`)."""

    # The port's limits. Without topics a message starts with "[name] " (names have at
    # most 64 characters): room is left for it. A key is kept whole (`Memory.keys`).
    max_message_chars = LIMITS.max_message_chars - 96
    typing_every_s = LIMITS.typing_every_s
    max_idempotency_key_chars = NO_LIMIT

    def __init__(self, api: BotApi, me: ChatUser, memory: Memory, *, topics: bool) -> None:
        self.api = api
        self.me = me
        self.memory = memory
        self.topics = topics
        # Set by the front end: told of each durable handled mark.
        self.on_handled: Callable[[str, str], None] = lambda _channel_id, _post_id: None
        # post id -> the message ids showing it (first = the post itself), and its topic
        self._parts: dict[str, tuple[list[int], int | None]] = {}
        self._choices: dict[str, tuple[ChoiceKind, ...]] = {}  # post id -> kinds on its buttons
        self._thread_root_of: dict[str, str] = {}  # post id -> its thread's root (no topics)
        self._uploads: dict[str, _Upload] = {}
        self._upload_ids = itertools.count(1)
        self._files: dict[str, FileRef] = {}  # files people sent: what the update said
        self._last_ms = 0
        self._opening: dict[int, list[trio.Event]] = {}  # chat -> threads being opened
        self._locks: dict[str, trio.StrictFIFOLock] = {}  # message post id -> its changes
        # A topic a person opened, waiting for the `!new` it stands for: (chat, name) -> id.
        self.opened_topics: dict[tuple[int, str], int] = {}
        self.drafts = Drafts()
        self._grown_at: dict[str, float] = {}  # message -> when a growing text last edited it

    # --- threads and posts ----------------------------------------------------------

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        """The session's thread: a topic named `title` opened by `header` (topic mode), or
        the header as a message of its own; once per `key`.

        The person may write there as soon as the header shows, before the core has the
        thread's id: `opened` holds their messages until this returns."""
        chat_id = ids.chat_of(channel_id)
        known = self.memory.thread_of_key(key)
        if known is not None and self.memory.threads[known].header_id:
            return self._post(known, channel_id, header)
        done = trio.Event()
        self._opening.setdefault(chat_id, []).append(done)
        try:
            return await self._open_thread(channel_id, chat_id, header, key, title)
        finally:
            self._opening[chat_id].remove(done)
            done.set()

    async def _new_topic(self, chat_id: int, title: str, key: str) -> str:
        """A topic for the thread (or the one the person opened under that name); its
        key is durable before anything goes into it: one topic per key, even across a
        crash."""
        topic_id = self.opened_topics.pop((chat_id, title), None)
        if topic_id is None:
            name = title[: LIMITS.max_topic_name_chars] or "session"
            topic_id = (await self.api.create_forum_topic(chat_id, name)).message_thread_id
        root = ids.post(chat_id, topic_id)
        self.memory.threads[root] = ThreadInfo(chat_id, title, topic_id, 0, key)
        self.memory.changed()
        await self.memory.commit()
        return root

    async def opened(self, chat_id: int) -> None:
        """Wait until no thread of this chat is being opened (see `open_thread`)."""
        while waiting := self._opening.get(chat_id):
            await waiting[0].wait()

    async def _open_thread(self, channel_id: str, chat_id: int, header: str, key: str, title: str) -> Post:
        if self.topics:
            # A topic made before a crash cut the header short is used, not made again.
            root = self.memory.thread_of_key(key) or await self._new_topic(chat_id, title, key)
            topic_id = self.memory.threads[root].topic_id
            header_post = await self.create_post(
                channel_id, header, root_id=root, idempotency_key=f"{key}:header"
            )
            _chat, header_id = ids.parse_post(header_post.id)
            self.memory.threads[root] = ThreadInfo(chat_id, title, topic_id, header_id, key)
        else:
            header_post = await self._send(chat_id, None, header, "")
            root = header_post.id
            _chat, header_id = ids.parse_post(root)
            self.memory.threads[root] = ThreadInfo(chat_id, title, None, header_id, key)
            self.memory.active[channel_id] = root
        self.memory.changed()
        await self.memory.commit()
        return self._post(root, channel_id, header)

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        idempotency_key: str = "",
    ) -> Post:
        """A message in the main view (`root_id` ""), or in the thread of `root_id`."""
        if idempotency_key and (known := self.memory.keys.get(idempotency_key)) is not None:
            return self._post(known, channel_id, message, root_id)
        chat_id = ids.chat_of(channel_id)
        thread = self.memory.threads.get(root_id) if root_id else None
        topic_id = thread.topic_id if thread is not None else None
        prefix = f"[{thread.title}] " if thread is not None and not self.topics else ""
        holder = self.drafts.holder(chat_id, topic_id)
        if holder is not None and holder.root_id == root_id:
            await self._make_real(holder.post_id)  # its words come before this message
        sent: Post | None = None
        for file_id in file_ids:
            sent = await self._send_file(chat_id, topic_id, file_id, message if not sent else "")
        if sent is None or (message.strip() and len(file_ids) > 1):
            sent = await self._send(chat_id, topic_id, message, prefix)
        if root_id and not self.topics:
            self._thread_root_of[sent.id] = root_id
            while len(self._thread_root_of) > _PARTS_KEPT:
                del self._thread_root_of[next(iter(self._thread_root_of))]
        if idempotency_key:
            self.memory.remember_key(idempotency_key, sent.id)
            await self.memory.commit()
        return attrs.evolve(sent, root_id=root_id, idempotency_key=idempotency_key)

    async def edit_post(self, post_id: str, message: str) -> Post:
        if post_id in self.drafts.growing:  # its last text: the draft becomes messages
            async with self._holding(post_id):
                growing = self.drafts.growing.get(post_id)
                if growing is not None:
                    growing.text = message
                    await self._commit(growing)
                    return self._growing_post(growing)
        real = self._real(post_id)
        thread = self.memory.threads.get(real)
        if thread is not None and thread.header_id:  # the root: its header is what shows
            target = ids.post(thread.chat_id, thread.header_id)
        else:
            target = real
        async with self._holding(target):
            # A message that shows a growing text (no drafts here) is edited at most once
            # a second, its last text included.
            await trio.sleep_until(self._grown_at.get(target, -math.inf) + LIMITS.min_edit_interval_s)
            edited = await self._edit_post(real, target, message)
            if target in self._grown_at:
                self._grown_at[target] = trio.current_time()
        return attrs.evolve(edited, id=post_id)

    # --- growing posts: drafts ------------------------------------------------------

    async def create_growing(
        self, channel_id: str, message: str, *, root_id: str, idempotency_key: str
    ) -> Post:
        """A post whose text will grow: a draft in the session's place, or (drafts failed
        in this chat, or another session's draft shows there) a message."""
        chat_id = ids.chat_of(channel_id)
        thread = self.memory.threads.get(root_id) if root_id else None
        if thread is not None and chat_id not in self.drafts.off:
            holder = self.drafts.holder(chat_id, thread.topic_id)
            if holder is not None and holder.root_id == root_id:
                await self._make_real(holder.post_id)  # the answer moved on to a new post
                holder = self.drafts.holder(chat_id, thread.topic_id)
            if holder is None:
                prefix = f"[{thread.title}] " if not self.topics else ""
                growing = self.drafts.start(chat_id, thread.topic_id, root_id, message, prefix)
                growing.changed_at = trio.current_time()
                if await self._show_draft(growing):
                    return attrs.evolve(self._growing_post(growing), idempotency_key=idempotency_key)
                self.drafts.finish(growing.post_id)
        sent = await self.create_post(channel_id, message, root_id=root_id, idempotency_key=idempotency_key)
        self._grown_at[sent.id] = trio.current_time()  # edited in place from now on, paced
        return sent

    async def edit_growing(self, post_id: str, message: str) -> Post:
        """A growing text: the draft shows it; a message showing it (no drafts here) is
        edited, at most once a second."""
        async with self._holding(post_id):
            growing = self.drafts.growing.get(post_id)
            if growing is not None:
                if message != growing.text:
                    growing.text, growing.changed_at = message, trio.current_time()
                if not await self._show_draft(growing):
                    await self._commit(growing)  # drafts failed: this message from now on
                return self._growing_post(growing)
        real = self._real(post_id)
        self._grown_at.setdefault(real, -math.inf)  # paced from now on: see edit_post
        while len(self._grown_at) > _PARTS_KEPT:
            del self._grown_at[next(iter(self._grown_at))]
        return await self.edit_post(post_id, message)

    async def keep_all_drafts(self) -> None:
        """At a stop: what the drafts show becomes messages, so that an answer cut by the
        stop stays readable above the notice that it was cut (as it would on Mattermost)."""
        for post_id in list(self.drafts.growing):
            try:
                await self._make_real(post_id)
            except (ChatError, MalformedReply) as exc:
                log.info("a draft was lost at the stop: %s", exc)

    def root_of_draft(self, chat_id: int, topic_id: int | None, draft_id: int) -> str | None:
        """The session thread whose draft that was (for its Stop button)."""
        root = self.drafts.root_of_draft(chat_id, draft_id)
        if root is None and topic_id is not None:
            root = ids.post(chat_id, topic_id)  # a draft of an earlier run: its topic says
        return root if root in self.memory.threads else None

    def core_id(self, post_id: str) -> str:
        """The id the core knows a message of ours by (a growing post's provisional id)."""
        known = self.drafts.core_of.get(post_id)
        if known is not None:
            return known
        if any(value == post_id for value in self.memory.keys.values()):
            key = next(k for k, v in self.memory.keys.items() if v == post_id)
            if key.startswith(DRAFT_KEY):
                return key.removeprefix(DRAFT_KEY)
        return post_id

    def _real(self, post_id: str) -> str:
        """The message a provisional id stands for (the id itself for any other)."""
        if not is_provisional(post_id):
            return post_id
        return self.drafts.real.get(post_id) or self.memory.keys.get(DRAFT_KEY + post_id) or post_id

    async def _make_real(self, post_id: str) -> str:
        """The post as a real message (sent now if it still grows); its real id."""
        if post_id in self.drafts.growing:
            async with self._holding(post_id):
                growing = self.drafts.growing.get(post_id)
                if growing is not None:
                    await self._commit(growing)
        return self._real(post_id)

    async def keep_drafts(self, older_than_s: float, give_up_s: float) -> None:
        """Show again the drafts not sent for `older_than_s`: Telegram drops a draft after
        about 30 s, and an answer may pause longer than that (a long tool call). A post
        that has not grown for `give_up_s` becomes a message (edited in place if it grows
        again): a text must never live on in a draft alone."""
        now = trio.current_time()
        for post_id in [p for p, g in self.drafts.growing.items() if g.shown_at < now - older_than_s]:
            async with self._holding(post_id):
                growing = self.drafts.growing.get(post_id)
                if growing is None or growing.shown_at >= now - older_than_s:
                    continue
                if growing.changed_at < now - give_up_s or not await self._show_draft(growing):
                    await self._commit(growing)
                    self._grown_at[self._real(post_id)] = trio.current_time()

    async def _show_draft(self, growing: Growing) -> bool:
        """False when this chat refuses drafts (then it never gets one again)."""
        html = self._render(growing.text, growing.prefix)[-1]  # a long one: its newest part
        try:
            await self.api.send_message_draft(growing.chat_id, growing.draft_id, html,
                                              thread_id=growing.topic_id, can_stop=True)  # fmt: skip
        except BotApiError as exc:
            log.info("drafts refused in chat %s (%s): editing a message instead",
                     growing.chat_id, exc.description)  # fmt: skip
            self.drafts.off.add(growing.chat_id)
            return False
        growing.shown_at = trio.current_time()
        return True

    async def _commit(self, growing: Growing) -> None:
        """Send the growing post's text as real messages (ending its draft). Call holding
        its lock."""
        self.drafts.finish(growing.post_id)
        sent = await self._send(growing.chat_id, growing.topic_id, growing.text, growing.prefix)
        self.drafts.made_real(growing.post_id, sent.id)
        if not self.topics:
            self._thread_root_of[sent.id] = growing.root_id
        self.memory.remember_key(DRAFT_KEY + growing.post_id, sent.id)
        await self.memory.commit()

    def _growing_post(self, growing: Growing) -> Post:
        return Post(growing.post_id, ids.channel(growing.chat_id), self.me.id, growing.text,
                    root_id=growing.root_id)  # fmt: skip

    async def _edit_post(self, post_id: str, target: str, message: str) -> Post:
        chat_id, message_id = ids.parse_post(target)
        parts, topic_id = self._parts.get(target, ([message_id], None))
        root = self._root_of_topic(chat_id, topic_id)
        htmls = self._render(message, self._prefix_for(target))
        markup = self._markup(post_id)
        for index, html in enumerate(htmls):
            last = index == len(htmls) - 1
            if index < len(parts):
                await self._edit(chat_id, parts[index], html, markup if last else None)
            else:
                new = await self.api.send_message(
                    chat_id, html, thread_id=topic_id, reply_markup=markup if last else None
                )
                parts.append(new.message_id)
        for surplus in parts[len(htmls) :]:
            await self._edit(chat_id, surplus, runs.escape(_EMPTY), None)
        self._keep_parts(target, parts, topic_id)
        return Post(post_id, ids.channel(chat_id), self.me.id, message, root_id=root)

    @contextlib.asynccontextmanager
    async def _holding(self, post_id: str) -> AsyncIterator[None]:
        """One change at a time per message: an edit computes the buttons to keep, so a
        settle made meanwhile must not be overtaken by it (the buttons would come back)."""
        lock = self._locks.setdefault(post_id, trio.StrictFIFOLock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(post_id, None)

    def request_room(self) -> float:
        # The client paces every chat itself (a request waits for its slot), so the
        # core's edits are never refused for speed; they queue, and the outbox coalesces.
        return 0.0

    # --- choices ------------------------------------------------------------------------

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        post_id = await self._make_real(post_id)  # buttons need a message
        async with self._holding(post_id):
            self._choices[post_id] = tuple(kind for kind in kinds if kind in KINDS)
            chat_id, message_id = ids.parse_post(post_id)
            parts, _topic = self._parts.get(post_id, ([message_id], None))
            await self._set_markup(chat_id, parts[-1], self._markup(post_id))

    async def settle_choices(self, post_id: str) -> None:
        post_id = await self._make_real(post_id)
        async with self._holding(post_id):
            # Also when this process never offered them: buttons a previous run put there
            # (a cut turn's "Run it again") must go too.
            self._choices.pop(post_id, None)
            chat_id, message_id = ids.parse_post(post_id)
            parts, _topic = self._parts.get(post_id, ([message_id], None))
            await self._set_markup(chat_id, parts[-1], None)

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        return ""  # the buttons say what they do

    async def mark_queued(self, post_id: str, queued: bool) -> None:
        """👀 on a person's message while its prompt waits its turn (⏳ is not among the
        emoji a bot may react with). Cosmetic: a server that refuses it changes nothing."""
        chat_id, message_id = ids.parse_post(post_id)
        try:
            await self.api.set_message_reaction(chat_id, message_id, QUEUED_EMOJI if queued else None)
        except BotApiError as exc:
            log.info("queued mark on message %s not changed: %s", message_id, exc.description)

    # --- catch-up, files, people --------------------------------------------------------

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return []  # the update offset replays what was missed, exactly once

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        return []  # a button press is an update: replayed by the offset like any other

    def handled(self, channel_id: str, post_id: str) -> None:
        self.on_handled(channel_id, post_id)

    def remember_file(self, file_id: str, ref: FileRef) -> None:
        self._files[file_id] = ref

    async def file_info(self, file_id: str) -> FileRef:
        known = self._files.get(file_id)
        if known is not None:
            return known
        info = await self.api.get_file(ids.parse_file(file_id))
        return FileRef(file_id, info.file_path.rsplit("/", 1)[-1] or "file", info.file_size or 0)

    async def download_file(self, file_id: str) -> bytes:
        return await self.api.download(ids.parse_file(file_id))

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        """Kept here until `create_post(file_ids=...)` sends it: Telegram has no upload
        without a message."""
        if len(data) > LIMITS.max_upload_bytes:
            raise ChatError(413, "file_too_large", f"{len(data)} bytes is over Telegram's 50 MB")
        file_id = f"tgf:up{next(self._upload_ids)}"
        self._uploads[file_id] = _Upload(name, data)
        return file_id

    async def user_by_username(self, username: str) -> ChatUser | None:
        return None  # Telegram has no lookup by username for bots

    async def direct_channel(self, user_id: str) -> str:
        return ids.channel(ids.parse_user(user_id))  # a private chat's id is the user's

    async def send_typing(self, channel_id: str, parent_id: str) -> None:
        thread = self.memory.threads.get(parent_id) if parent_id else None
        topic_id = thread.topic_id if thread is not None else None
        await self.api.send_chat_action(ids.chat_of(channel_id), thread_id=topic_id)

    def permalink(self, post_id: str) -> str:
        thread = self.memory.threads.get(post_id)
        return f"“{thread.title}”" if thread is not None else ""

    def root_of_message(self, chat_id: int, message_id: int) -> str | None:
        """The session thread a message of ours belongs to (no topics), if known."""
        post_id = ids.post(chat_id, message_id)
        if post_id in self.memory.threads:
            return post_id
        found = self._thread_root_of.get(post_id)
        if found is not None:
            return found
        return next((root for root, t in self.memory.threads.items()
                     if t.chat_id == chat_id and t.header_id == message_id), None)  # fmt: skip

    def now_ms(self) -> int:
        """A creation time for an incoming message: wall clock, strictly increasing (the
        core's ledger uses it as a cursor; Telegram's own dates are whole seconds)."""
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000))
        return self._last_ms

    # --- helpers ------------------------------------------------------------------------

    async def _send(self, chat_id: int, topic_id: int | None, message: str, prefix: str) -> Post:
        htmls = self._render(message, prefix)
        parts: list[int] = []
        for html in htmls:
            sent = await self.api.send_message(chat_id, html, thread_id=topic_id)
            parts.append(sent.message_id)
        post_id = ids.post(chat_id, parts[0])
        self._keep_parts(post_id, parts, topic_id)
        return Post(post_id, ids.channel(chat_id), self.me.id, message,
                    create_at=int(time.time() * 1000))  # fmt: skip

    async def _send_file(self, chat_id: int, topic_id: int | None, file_id: str, caption: str) -> Post:
        upload = self._uploads.pop(file_id, None)
        if upload is None:
            raise ChatError(404, "file_not_found", "the file to send is gone (was it sent already?)")
        html = render.render(caption) if caption.strip() else ""
        if runs.units(html) > 1024:  # a caption's limit: say it in a message of its own
            html = ""
        sent = await self.api.send_document(chat_id, upload.name, upload.data, thread_id=topic_id,
                                            caption_html=html)  # fmt: skip
        post_id = ids.post(chat_id, sent.message_id)
        self._keep_parts(post_id, [sent.message_id], topic_id)
        if caption.strip() and not html:
            await self._send(chat_id, topic_id, caption, "")
        return Post(post_id, ids.channel(chat_id), self.me.id, caption)

    async def _edit(self, chat_id: int, message_id: int, html: str, markup: JSONObject | None) -> None:
        try:
            await self.api.edit_message_text(chat_id, message_id, html, reply_markup=markup)
        except BadRequest as exc:
            if "not found" not in exc.description:
                raise
            log.info("message %s to edit is gone", message_id)  # deleted by the person

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

    def _render(self, message: str, prefix: str) -> list[str]:
        text = message if message.strip() else _EMPTY
        return render.render_parts(text, limit=LIMITS.max_message_chars, prefix=prefix)

    def _prefix_for(self, post_id: str) -> str:
        if self.topics:
            return ""
        root = self._thread_root_of.get(post_id)
        thread = self.memory.threads.get(root) if root else None
        return f"[{thread.title}] " if thread is not None else ""

    def _root_of_topic(self, chat_id: int, topic_id: int | None) -> str:
        return ids.post(chat_id, topic_id) if topic_id is not None else ""

    def _keep_parts(self, post_id: str, parts: list[int], topic_id: int | None) -> None:
        self._parts[post_id] = (parts, topic_id)
        while len(self._parts) > _PARTS_KEPT:
            del self._parts[next(iter(self._parts))]

    def _post(self, post_id: str, channel_id: str, message: str, root_id: str = "") -> Post:
        return Post(post_id, channel_id, self.me.id, message, root_id=root_id)
