"""The chat port over the Bot API: what the core asks of a chat, done in Telegram.

Owns the translation of the port's operations into Bot API calls: a session's thread is
a forum topic in the person's private chat (topic mode), or, without topic mode, a header
message whose session's messages all start with `[NAME]`; a post is one message, or
several when its rendered text passes 4,096 characters (`messages` keeps the parts and
edits them together); choices are inline buttons; keyed creations are looked up in the
front end's memory before anything is sent. Every text goes out as Telegram HTML
(`render`), every id in and out is the port's (`ids`).

A growing post (a streaming answer: the texts the poster sends through `create_growing`
and `edit_growing`) shows as a draft with a Stop button in its topic (`drafts`), and
becomes real messages with its last text, or as soon as it needs a real message (its
buttons, a later message of its session in the same place). Where a draft call fails, that
chat gets today's way instead: one message, edited in place at most once a second.

It must never let a Bot API word reach the core (the core sees `Post`s and port ids only),
never send a keyed message again once Telegram's answer to it was read (an answer lost
on the way back is a try that failed: the Bot API has no idempotency key), and never put the token
anywhere (the client keeps it out of every error it raises).
"""

from __future__ import annotations

import logging
import mimetypes
import time
from collections.abc import Callable, Iterable
from typing import Final

import attrs
import trio

from supervisor.chat import NO_LIMIT, ChatError, ChatUser
from supervisor.chat.telegram import choices, ids
from supervisor.chat.telegram.calls import BadRequest
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.drafts import GrowingPosts
from supervisor.chat.telegram.limits import LIMITS
from supervisor.chat.telegram.memory import Memory, OpenedTopic, ThreadInfo, keep_newest
from supervisor.chat.telegram.messages import Messages
from supervisor.core.events import Choice, ChoiceKind, FileRef, Post
from supervisor.core.words import Words

log = logging.getLogger("supervisor.telegram")

OPENED_TOPICS_KEPT: Final = 100  # topics opened and not (yet) a session's thread
# A post written right after a `/new` (in the topic it stands for; without topics, in its
# chat) waits for that `/new` (`news_settled`): at most this long for the core to take it,
# and, once taken, this long for its thread's opening to begin (the desk begins it at
# once; one that never begins was a `/new` turned away as handled before a crash).
NEW_PATIENCE_S: Final = 60.0
ACCEPTED_GRACE_S: Final = 5.0
FILES_KEPT: Final = 1000  # what the updates said of the files people sent, newest

# Telegram's commands start with "/" (its clients offer them in a menu; the front end reads
# them as the core's "!" forms, which work too). With topics a session is a topic, started
# from the chat's main view; without, plain text goes to the active session.
TOPIC_WORDS = Words(
    command="/",
    main="the chat's main view",
    thread="topic",
    help_notes=choices.HELP,
    where_prompts_go="Prompts go into a session's topic: open it and write there.",
)
CHAT_WORDS = Words(
    command="/",
    main="this chat",
    thread="conversation",
    where_prompts_go="Plain text goes to the active session, and none is active now: `/session NAME` chooses one.",
    help_notes=(
        f"{choices.HELP}\n**The active session:** plain text goes to it (the newest, or the one "
        "`/session NAME` chose); a reply to a session's message goes to that session."
    ),
)


@attrs.define
class NewAsked:
    """A `/new` handed to the core whose session's thread is not there yet: the posts
    written after it, where it decides where they go, wait for it (`news_settled`)."""

    chat_id: int
    name: str
    topic_id: int | None  # the topic the person opened for it (topic mode); None: typed
    accepted_at: float | None = None  # trio time of its handled mark without an answer first
    opening: bool = False  # its thread is being opened


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
        self.messages = Messages(api, me, memory, topics=topics)
        self.growing = GrowingPosts(self.messages)
        self.drafts = self.growing.drafts
        self._files: dict[str, FileRef] = {}  # files people sent: what the update said
        self._last_ms = memory.last_stamp_ms  # stamps go on from the last run's (`now_ms`)
        # Chat -> threads being opened: each one's key, and its end.
        self._opening: dict[int, list[tuple[str, trio.Event]]] = {}
        # The `!new NAME`s of the main view (topic mode), in the order they went to the
        # core, each with the topic the person opened for it (`topic_opened`) or none
        # (typed, `new_asked`); kept by post id, never by name alone: two topics may share
        # a name; kept in `memory.opened` too, until a thread takes it or it is refused.
        # The core handles the `!new`s of a chat in order, and answers a refusal before
        # marking it handled; an accepted one's thread is opened right after its mark.
        # Not handled yet: post id -> its `!new`.
        self.topics_waiting: dict[str, OpenedTopic] = {}
        # Of each name, the accepted `!new` whose thread is opened next: its post id.
        # At start, the oldest `!new` of each name the last run kept: the one a crash may
        # have cut from its thread (those behind it were not handled yet), until the
        # front end runs (`forget_kept_topics`).
        self.topics_accepted: dict[tuple[int, str], str] = {}
        for post_id, kept in memory.opened.items():  # the oldest first
            self.topics_accepted.setdefault((kept.chat_id, kept.name), post_id)
        # A `!new`'s post id -> its topic: its answer goes there, started or refused.
        self._topic_of_new: dict[str, int] = {}
        # The `/new`s the posts behind them wait for (`news_settled`), by post id; and the
        # event set (and replaced) whenever one of them moves on.
        self._news: dict[str, NewAsked] = {}
        self._news_moved = trio.Event()

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
        opening = (key, trio.Event())
        self._opening.setdefault(chat_id, []).append(opening)
        news = [post_id for post_id, asked in self._news.items()
                if asked.accepted_at is not None and (asked.chat_id, asked.name) == (chat_id, title)]  # fmt: skip
        for post_id in news:
            self._news[post_id].opening = True
        try:
            return await self._open_thread(channel_id, chat_id, header, key, title)
        finally:
            self._opening[chat_id].remove(opening)
            opening[1].set()
            for post_id in news:  # opened, or failed (said by the desk): either way, settled
                self._new_settled(post_id)

    async def _new_topic(self, chat_id: int, title: str, key: str) -> str:
        """A topic for the thread: the one the person opened for its `!new`, or a new one;
        its key is durable before anything goes into it: one topic per key, even across
        a crash."""
        accepted = self.topics_accepted.pop((chat_id, title), None)
        asked = self.memory.opened.pop(accepted, None) if accepted is not None else None
        topic_id = asked.topic_id if asked is not None else None
        if topic_id is None:
            name = title[: LIMITS.max_topic_name_chars] or "session"
            topic_id = (await self.api.create_forum_topic(chat_id, name)).message_thread_id
        root = ids.post(chat_id, topic_id)
        self.memory.threads[root] = ThreadInfo(chat_id, title, topic_id, 0, key)
        self.memory.changed()
        await self.memory.commit()
        return root

    async def topic_opened(self, chat_id: int, name: str, topic_id: int, post_id: str) -> None:
        """A person opened a topic, and `post_id` is the `!new name` it stands for: if the
        core accepts that `!new`, the session's thread is this topic. Durable before the
        `!new` reaches the core: a crash after the core accepted it and before its thread
        was kept leaves the start to open that thread (`topics_accepted`)."""
        if ids.post(chat_id, topic_id) in self.memory.threads:
            return  # a session's already: its `!new` came again, its confirmation cut by a crash
        self._waits(post_id, OpenedTopic(chat_id, name, topic_id))
        self._news[post_id] = NewAsked(chat_id, name, topic_id)
        self._topic_of_new[post_id] = topic_id
        keep_newest(self._topic_of_new, OPENED_TOPICS_KEPT)
        await self.memory.commit()

    def new_asked(self, chat_id: int, name: str, post_id: str) -> None:
        """A person typed `!new name` in the main view (`post_id`): kept in order among the
        `!new`s of topics opened, so that a start after a crash knows whether the session
        it finishes is of this one (a topic of its own) or of a topic opened before it.
        Written with the next write: it matters only when a topic of its name is opened
        after it, and that one's write carries it."""
        if self.topics:
            self._waits(post_id, OpenedTopic(chat_id, name, None))
        else:  # where plain text goes next is this `/new`'s to say (its thread becomes active)
            self._news[post_id] = NewAsked(chat_id, name, None)

    def _waits(self, post_id: str, asked: OpenedTopic) -> None:
        self.topics_waiting[post_id] = self.memory.opened[post_id] = asked
        for kept in (self.topics_waiting, self.memory.opened):
            keep_newest(kept, OPENED_TOPICS_KEPT)
        self.memory.changed()

    def new_handled(self, post_id: str) -> None:
        """The core has handled a post. If it was a `!new` waiting here, and not refused
        (`_refused`), it was accepted: its session's thread is opened next (the handled
        mark is durable before that), and takes its topic. One it replaces was not: a
        `!new` that came again after a crash cut its confirmation, which the core turned
        away as handled (no thread followed it before this one)."""
        if post_id in self._news:  # not answered first: accepted, its thread is opened next
            self._news[post_id].accepted_at = trio.current_time()
            self._news_moved_on()
        waiting = self.topics_waiting.pop(post_id, None)
        if waiting is None:
            return
        turned_away = self.topics_accepted.get((waiting.chat_id, waiting.name))
        if turned_away is not None:  # forgotten with the next write (the thread's)
            self.memory.opened.pop(turned_away, None)
        self.topics_accepted[(waiting.chat_id, waiting.name)] = post_id

    async def _refused(self, post_id: str) -> None:
        """The core answers the waiting `!new` `post_id` before marking it handled: it was
        refused, and no thread will take its topic. Forgotten durably before that mark,
        so that a start after a crash never gives its topic to a later `!new` of its name."""
        del self.topics_waiting[post_id]
        self.memory.opened.pop(post_id, None)
        self.memory.changed()
        await self.memory.commit()

    def forget_kept_topics(self) -> None:
        """The front end is about to hand out its first update: the `!new`s the last run
        kept have served. The start has finished the announcements a crash cut short
        (`Desk.recover_unannounced` runs before the front ends), so an accepted `!new`'s
        thread has taken its topic; one the core has not handled comes again from
        Telegram, and is kept again."""
        self.topics_accepted.clear()
        if self.memory.opened:
            self.memory.opened.clear()
            self.memory.changed()

    async def news_settled(self, chat_id: int, topic_id: int | None) -> None:
        """Wait until no `/new` that decides where a post written now goes is in the core's
        hands: with topics, the `!new` of the topic the person opened and writes in (else
        the post would find no session there); without, any `/new` of the chat (its
        session becomes the active one). Settled once refused (answered before its
        handled mark), or its thread opened (or failed); bounded (`NEW_PATIENCE_S`)."""
        if self.topics and topic_id is None:
            return
        deadline = trio.current_time() + NEW_PATIENCE_S
        while True:
            now = trio.current_time()
            wakes = []
            for post_id, asked in list(self._news.items()):
                if asked.chat_id != chat_id or (self.topics and asked.topic_id != topic_id):
                    continue
                if now >= deadline:  # waited for once: the posts behind it wait no more
                    log.warning("a post in chat %s waited %.0f s for the /new %s before it: routed "
                                "without it", chat_id, NEW_PATIENCE_S, asked.name)  # fmt: skip
                    self._new_settled(post_id)
                elif asked.accepted_at is None or asked.opening:
                    wakes.append(deadline)
                elif now - asked.accepted_at < ACCEPTED_GRACE_S:
                    wakes.append(min(deadline, asked.accepted_at + ACCEPTED_GRACE_S))
                else:  # taken, and no thread follows: it was handled before (a redelivery)
                    self._new_settled(post_id)
            if not wakes:
                return
            with trio.move_on_at(min(wakes)):
                await self._news_moved.wait()

    def _new_settled(self, post_id: str) -> None:
        if self._news.pop(post_id, None) is not None:
            self._news_moved_on()

    def _news_moved_on(self) -> None:
        self._news_moved.set()
        self._news_moved = trio.Event()

    async def opened(self, chat_id: int, root_id: str = "") -> None:
        """Wait until no thread of this chat that a post under `root_id` may be written
        in is being opened (see `open_thread`). With topics, a post in the topic of a
        thread not being opened waits for none: a topic being opened for another session
        (Telegram holding up its createForumTopic, say) must not hold it up."""
        thread = self.memory.threads.get(root_id) if self.topics and root_id else None
        while waiting := [done for key, done in self._opening.get(chat_id, ()) if thread is None or key == thread.key]:
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
            header_post = await self.messages.send(chat_id, None, header, "")
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
        reply_to: str = "",
    ) -> Post:
        """A message in the main view (`root_id` ""), or in the thread of `root_id`; an
        answer to the `!new` a topic the person opened stands for (refused: no session
        took the topic; or the session started there) in that topic, where the person is."""
        if reply_to in self.topics_waiting:  # answered before it is handled: refused
            await self._refused(reply_to)
        self._new_settled(reply_to)  # refused, or answered: no thread is on its way
        if idempotency_key and (known := self.memory.keys.get(idempotency_key)) is not None:
            return self._post(known, channel_id, message, root_id)
        chat_id = ids.chat_of(channel_id)
        thread = self.memory.threads.get(root_id) if root_id else None
        topic_id = thread.topic_id if thread is not None else self._topic_of(root_id)
        opened = self._opened_topic(reply_to)
        if not root_id and opened is not None:
            topic_id = opened
        prefix = f"[{thread.title}] " if thread is not None and not self.topics else ""
        holder = self.drafts.holder(chat_id, topic_id)
        if holder is not None and holder.root_id == root_id:
            await self.growing.make_real(holder.post_id)  # its words come before this message
        sent: Post | None = None
        for file_id in file_ids:
            sent = await self.messages.send_file(chat_id, topic_id, file_id, message if not sent else "", prefix)
        if sent is None or (message.strip() and len(file_ids) > 1):
            try:
                sent = await self.messages.send(chat_id, topic_id, message, prefix, key=idempotency_key,
                                                reply_to=self._quoted(chat_id, root_id, reply_to))  # fmt: skip
            except BadRequest:
                if root_id or opened is None:
                    raise
                # The topic the person opened is gone meanwhile (deleted, closed): the main view.
                sent = await self.messages.send(chat_id, None, message, prefix, key=idempotency_key)
        if root_id:  # a later run's edit keeps it in its topic, or its prefix; a reply goes to its session
            self.messages.belongs_to(sent.id, root_id)
        if idempotency_key:
            self.memory.remember_key(idempotency_key, sent.id)
        await self.memory.commit()  # both, also for a post with no key (`/get`'s file)
        return attrs.evolve(sent, root_id=root_id, idempotency_key=idempotency_key)

    async def edit_post(self, post_id: str, message: str) -> Post:
        last = await self.growing.finish(post_id, message)  # its last text: the draft
        if last is not None:  # becomes messages
            return last
        real = self.growing.real(post_id)
        thread = self.memory.threads.get(real)
        if thread is not None and thread.header_id:  # the root: its header is what shows
            target = ids.post(thread.chat_id, thread.header_id)
        else:
            target = real
        async with self.messages.holding(target), self.growing.paced(target):
            edited = await self.messages.edit(real, target, message)
        return attrs.evolve(edited, id=post_id)

    # --- growing posts: drafts ------------------------------------------------------

    async def create_growing(
        self, channel_id: str, message: str, *, root_id: str, idempotency_key: str
    ) -> Post:
        """A post whose text will grow: a draft in the session's place, or (drafts failed
        in this chat, or another session's draft shows there) a message."""
        shown = await self.growing.start(channel_id, message, root_id)
        if shown is not None:
            return attrs.evolve(shown, idempotency_key=idempotency_key)
        sent = await self.create_post(channel_id, message, root_id=root_id, idempotency_key=idempotency_key)
        self.growing.started(sent.id)  # edited in place from now on, paced
        return sent

    async def edit_growing(self, post_id: str, message: str) -> Post:
        """A growing text: the draft shows it; a message showing it (no drafts here) is
        edited, at most once a second."""
        shown = await self.growing.grow(post_id, message)
        if shown is not None:
            return shown
        return await self.edit_post(post_id, message)

    async def keep_all_drafts(self) -> None:
        """At a stop: what the drafts show becomes messages, so that an answer cut by the
        stop stays readable above the notice that it was cut (as it would on Mattermost)."""
        await self.growing.keep_all()

    async def keep_drafts(self, older_than_s: float, give_up_s: float) -> None:
        """Show again the drafts not sent for `older_than_s`: Telegram drops a draft after
        about 30 s, and an answer may pause longer than that (a long tool call). A post
        that has not grown for `give_up_s` becomes a message (edited in place if it grows
        again): a text must never live on in a draft alone."""
        await self.growing.keep(older_than_s, give_up_s)

    def root_of_draft(self, chat_id: int, topic_id: int | None, draft_id: int) -> str | None:
        """The session thread whose draft that was (for its Stop button)."""
        return self.growing.root_of_draft(chat_id, topic_id, draft_id)

    def core_id(self, post_id: str) -> str:
        """The id the core knows a message of ours by (a growing post's provisional id)."""
        return self.growing.core_id(post_id)

    def request_room(self) -> float:
        # The client paces every chat itself (a request waits for its slot), so the
        # core's edits are never refused for speed; they queue, and the outbox coalesces.
        return 0.0

    # --- choices ------------------------------------------------------------------------

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        post_id = await self.growing.make_real(post_id)  # buttons need a message
        await self.messages.offer_choices(post_id, kinds)

    async def settle_choices(self, post_id: str) -> None:
        post_id = await self.growing.make_real(post_id)
        await self.messages.settle_choices(post_id)

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        return ""  # the buttons say what they do

    def words(self, channel_id: str) -> Words:
        return TOPIC_WORDS if self.topics else CHAT_WORDS

    # --- catch-up, files, people --------------------------------------------------------

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return []  # the update offset replays what was missed, exactly once

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        return []  # a button press is an update: replayed by the offset like any other

    def handled(self, channel_id: str, post_id: str) -> None:
        self.on_handled(channel_id, post_id)

    def remember_file(self, file_id: str, ref: FileRef) -> None:
        self._files[file_id] = ref
        keep_newest(self._files, FILES_KEPT)  # else asked of Telegram again (`file_info`)

    async def file_info(self, file_id: str) -> FileRef:
        known = self._files.get(file_id)
        if known is not None:
            return known
        info = await self.api.get_file(ids.parse_file(file_id))
        name = info.file_path.rsplit("/", 1)[-1] or "file"
        # getFile says no type: the name's (a photo's is .jpg), so an image stays one.
        mime_type = mimetypes.guess_type(name)[0] or ""
        return FileRef(file_id, name, info.file_size or 0, mime_type)

    async def download_file(self, file_id: str) -> bytes:
        """The file's content. One over Telegram's 20 MB for bots is refused before getFile,
        by its name and size as its update told them (getFile's refusal names nothing)."""
        known = self._files.get(file_id)
        limit = LIMITS.max_download_bytes
        if known is not None and known.size > limit:
            raise ChatError(413, "file_too_large", _too_big(known.size, limit))
        try:
            return await self.api.download(ids.parse_file(file_id), max_bytes=limit)
        except BadRequest as exc:
            if "too big" not in exc.description and "larger than" not in exc.description:
                raise
            raise ChatError(413, "file_too_large", _too_big(None, limit)) from None

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        """Kept here until `create_post(file_ids=...)` sends it: Telegram has no upload
        without a message."""
        if len(data) > LIMITS.max_upload_bytes:
            raise ChatError(413, "file_too_large", f"{len(data)} bytes is over Telegram's 50 MB")
        return self.messages.upload(name, data)

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
        found = self.messages.root_of(post_id)
        if found is not None:
            return found
        return next((root for root, t in self.memory.threads.items()
                     if t.chat_id == chat_id and t.header_id == message_id), None)  # fmt: skip

    @staticmethod
    def _quoted(chat_id: int, root_id: str, reply_to: str) -> int | None:
        """In a session's thread, a message that answers a person's message (a cut turn's
        notice) quotes it: a private chat has no links to messages."""
        if not root_id or not reply_to:
            return None
        try:
            chat, message_id = ids.parse_post(reply_to)
        except ValueError:  # not a message of ours to quote
            return None
        return message_id if chat == chat_id else None

    def _opened_topic(self, post_id: str) -> int | None:
        """The topic the person opened that the `!new` `post_id` stands for: told with its
        update, or, after a restart, the topic a session took (the `!new` of a topic is
        the message that opened it, and a topic's root has that message's id)."""
        opened = self._topic_of_new.get(post_id) if post_id else None
        thread = self.memory.threads.get(post_id) if post_id and self.topics else None
        return opened if opened is not None or thread is None else thread.topic_id

    def _topic_of(self, root_id: str) -> int | None:
        """With topics, the topic a thread of no session is (a topic the person opened
        that became none): an answer to a post there goes there, not to the main view."""
        if not root_id or not self.topics:
            return None
        try:
            return ids.parse_post(root_id)[1]
        except ValueError:
            return None

    def now_ms(self, *, not_before_s: int = 0) -> int:
        """A creation time for an incoming message: wall clock, strictly increasing (the
        core's ledger uses it as a cursor; Telegram's own dates are whole seconds), and
        never before Telegram's date of it, `not_before_s`. A clock behind at a start (a
        board with no clock of its own, before time sync) would else stamp new messages
        older than those handled before, which the ledger takes for dealt with; so does
        a clock stepped back between two runs: the last run's newest stamp is kept in the
        memory, and stamps go on above it."""
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000), not_before_s * 1000)
        self.memory.last_stamp_ms = self._last_ms
        self.memory.changed()  # written with the next write: the offset's, once it is handled
        return self._last_ms

    def _post(self, post_id: str, channel_id: str, message: str, root_id: str = "") -> Post:
        return Post(post_id, channel_id, self.me.id, message, root_id=root_id)


def _too_big(size: int | None, limit: int) -> str:
    """Why a file a person sent is not fetched, in their words (its name goes before them)."""
    what = f"{size / 1e6:.1f} MB, over" if size else "over"
    return f"{what} the {limit // (1024 * 1024)} MB a bot may fetch from Telegram: send it in parts, or compressed"
