"""Growing posts shown as drafts: which post holds the draft of each place, what became
of it, and the Bot API calls that show it and make it real.

While an answer streams, Telegram can show it as a draft (`sendMessageDraft`): an
ephemeral preview in a chat or topic that a real message ends. The core knows nothing of
it: it creates a post and edits it. So a growing post gets a provisional id here (a
negative message id, never one Telegram gives) and its texts go to a draft; its last text
(or anything that needs a real message: buttons) makes it a real message, and from then on
the provisional id stands for that message (`real`, and `core_of` the other way, for a
button pressed on it).

Rules kept here:
- one draft per place (chat, topic): a draft never shows another session's text; a second
  session growing a post in the same place (without topics, the chat's main view) gets a
  real message instead;
- a place's draft has one draft id, and a Stop pressed on it names the session's thread
  (`root_of_draft`), for this run (a draft lasts seconds);
- drafts that failed in a chat (an older Bot API server, a chat that refuses them) are not
  tried again there (`off`): that chat gets one message edited in place. A person who
  blocked the bot (403) is no such chat: the post fails as a message would, and drafts
  show again once they unblock it.

`Drafts` (sans-IO: no I/O, no clock) keeps that bookkeeping; `GrowingPosts` (trio) shows
the drafts, sends again the ones Telegram would drop (about 30 s without news), and makes
a post real: with its last text, when it needs buttons, when a later message of its
session comes in the same place, after 60 s without growing, at a stop. A made-real post
is kept in the memory's keys (`DRAFT_KEY`), so its provisional id still names it after a
restart. Where a draft call fails, the post is a message edited in place at most once a
second (`paced`).

It must never let a text live on in a draft alone (a draft is ephemeral), nor show one
session's text in another's draft.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Final

import attrs
import trio

from supervisor.chat import ChatError
from supervisor.chat.telegram import ids, runs
from supervisor.chat.telegram.calls import BadRequest, BotApiError, Forbidden
from supervisor.chat.telegram.codec import MalformedReply
from supervisor.chat.telegram.limits import LIMITS
from supervisor.chat.telegram.memory import keep_newest
from supervisor.chat.telegram.messages import PARTS_KEPT, Messages, refused_entities, topic_gone
from supervisor.core.events import Post

log = logging.getLogger("supervisor.telegram")

_DRAFT_ID_SPAN: Final = 2**31 - 1  # draft ids: non-zero, and within 31 bits to be safe
_KEPT: Final = 2000  # provisional ids (and draft ids) remembered once made real
# A growing post made real, kept in memory's keys under this prefix: the core may name its
# provisional id after a restart (a lapsed permission request is edited then).
DRAFT_KEY: Final = "draft:"


@attrs.define
class Growing:
    """A post shown as a draft. Invariant: `text` is what the core last put."""

    post_id: str  # provisional: tg:<chat>:-<n>
    chat_id: int
    topic_id: int | None
    root_id: str  # the session's thread
    draft_id: int
    text: str
    prefix: str  # "[NAME] " without topics
    shown_at: float = 0.0  # when the draft was last sent (trio time)
    changed_at: float = 0.0  # when the core last changed its text (trio time)
    # The person blocked the bot (403) when it was shown again: not shown again by `keep`
    # (every refresh would be refused) until the core's next text gets through.
    parked: bool = False


class Drafts:
    def __init__(self) -> None:
        self.growing: dict[str, Growing] = {}
        self.off: set[int] = set()  # chats where a draft call failed
        self.real: OrderedDict[str, str] = OrderedDict()  # provisional id -> real post id
        self.core_of: dict[str, str] = {}  # real post id -> provisional id
        self._places: dict[tuple[int, int | None], str] = {}  # place -> provisional id
        self._roots: OrderedDict[tuple[int, int], str] = OrderedDict()  # (chat, draft id) -> root
        # Draft ids of one run must not be taken for another's (a Stop pressed on a draft
        # shown before a restart): each run starts at its own point, from the clock.
        self._draft_ids = (1 + n % _DRAFT_ID_SPAN for n in itertools.count(time.time_ns() // 1_000_000))
        # Provisional ids must not repeat across runs (the core keeps them): microseconds.
        self._last = 0

    def holder(self, chat_id: int, topic_id: int | None) -> Growing | None:
        """The growing post whose draft shows in that place now."""
        post_id = self._places.get((chat_id, topic_id))
        return self.growing[post_id] if post_id is not None else None

    def start(self, chat_id: int, topic_id: int | None, root_id: str, text: str, prefix: str) -> Growing:
        """A new growing post in a free place (see `holder`)."""
        if (chat_id, topic_id) in self._places:
            raise ValueError("that place shows another post's draft")
        self._last = max(self._last + 1, time.time_ns() // 1000)
        post_id = ids.post(chat_id, -self._last)
        growing = Growing(post_id, chat_id, topic_id, root_id, next(self._draft_ids), text, prefix)
        self.growing[post_id] = growing
        self._places[(chat_id, topic_id)] = post_id
        self._roots[(chat_id, growing.draft_id)] = root_id
        while len(self._roots) > _KEPT:
            self._roots.popitem(last=False)
        return growing

    def finish(self, post_id: str) -> Growing:
        """The post stops growing (it is about to become a real message): its place is free."""
        growing = self.growing.pop(post_id)
        del self._places[(growing.chat_id, growing.topic_id)]
        return growing

    def made_real(self, post_id: str, real_id: str) -> None:
        self.real[post_id] = real_id
        self.core_of[real_id] = post_id
        while len(self.real) > _KEPT:
            _old, real = self.real.popitem(last=False)
            self.core_of.pop(real, None)

    def root_of_draft(self, chat_id: int, draft_id: int) -> str | None:
        return self._roots.get((chat_id, draft_id))


def is_provisional(post_id: str) -> bool:
    try:
        return ids.parse_post(post_id)[1] < 0
    except ValueError:
        return False


class GrowingPosts:
    """The growing posts of one bot, over its `Messages`."""

    def __init__(self, messages: Messages) -> None:
        self.messages = messages
        self.memory = messages.memory
        self.drafts = Drafts()
        self._grown_at: dict[str, float] = {}  # message -> when a growing text last edited it

    async def start(self, channel_id: str, message: str, root_id: str) -> Post | None:
        """A new growing post as a draft in the session's place; None where it must be a
        message (drafts failed in this chat, another session's draft shows there)."""
        chat_id = ids.chat_of(channel_id)
        thread = self.memory.threads.get(root_id) if root_id else None
        if thread is None or chat_id in self.drafts.off:
            return None
        holder = self.drafts.holder(chat_id, thread.topic_id)
        if holder is not None and holder.root_id == root_id:
            await self.make_real(holder.post_id)  # the answer moved on to a new post
            holder = self.drafts.holder(chat_id, thread.topic_id)
        if holder is not None:
            return None
        prefix = f"[{thread.title}] " if not self.messages.topics else ""
        growing = self.drafts.start(chat_id, thread.topic_id, root_id, message, prefix)
        growing.changed_at = trio.current_time()
        try:
            if await self._show(growing):
                return self._post(growing)
        except BaseException:
            self.drafts.finish(growing.post_id)  # the core never had it: its place is free
            raise
        self.drafts.finish(growing.post_id)
        return None

    async def grow(self, post_id: str, message: str) -> Post | None:
        """The post's new text in its draft; None when a message shows it (edit that,
        `paced`)."""
        async with self.messages.holding(post_id):
            growing = self.drafts.growing.get(post_id)
            if growing is not None:
                if message != growing.text:
                    growing.text, growing.changed_at = message, trio.current_time()
                if not await self._show(growing):
                    await self._commit(growing)  # drafts failed: this message from now on
                growing.parked = False  # it got through: the bot is unblocked
                return self._post(growing)
        self._grown_at.setdefault(self.real(post_id), -math.inf)  # paced from now on
        keep_newest(self._grown_at, PARTS_KEPT)
        return None

    async def finish(self, post_id: str, message: str) -> Post | None:
        """The post's last text, as real messages (its draft ends); None when it no
        longer grows as a draft."""
        if post_id not in self.drafts.growing:
            return None
        async with self.messages.holding(post_id):
            growing = self.drafts.growing.get(post_id)
            if growing is not None:
                growing.text = message
                await self._commit(growing)
                return self._post(growing)
        return None

    def started(self, message_id: str) -> None:
        """A growing post sent as a message: edited in place from now on, paced."""
        self._grown_at[message_id] = trio.current_time()

    @contextlib.asynccontextmanager
    async def paced(self, message_id: str) -> AsyncIterator[None]:
        """Around an edit: a message that shows a growing text (no drafts here) is edited
        at most once a second, its last text included."""
        await trio.sleep_until(self._grown_at.get(message_id, -math.inf) + LIMITS.min_edit_interval_s)
        yield
        if message_id in self._grown_at:
            self._grown_at[message_id] = trio.current_time()

    async def keep_all(self) -> None:
        """At a stop: what the drafts show becomes messages."""
        for post_id in list(self.drafts.growing):
            try:
                await self.make_real(post_id)
            except (ChatError, MalformedReply) as exc:
                log.info("a draft was lost at the stop: %s", exc)

    async def keep(self, older_than_s: float, give_up_s: float) -> None:
        """Show again the drafts not sent for `older_than_s`; a post that has not grown
        for `give_up_s` becomes a message (edited in place if it grows again)."""
        now = trio.current_time()
        for post_id in [p for p, g in self.drafts.growing.items() if g.shown_at < now - older_than_s and not g.parked]:
            try:
                async with self.messages.holding(post_id):
                    growing = self.drafts.growing.get(post_id)
                    if growing is None or growing.shown_at >= now - older_than_s:
                        continue
                    if growing.changed_at < now - give_up_s or not await self._show(growing):
                        await self._commit(growing)
                        self._grown_at[self.real(post_id)] = trio.current_time()
            except (BotApiError, MalformedReply) as exc:  # one draft's failure keeps no other unshown
                if isinstance(exc, BotApiError) and topic_gone(exc) and post_id in self.drafts.growing:
                    self.drafts.finish(post_id)  # nothing will ever show there again
                    log.info("a draft's topic is gone (%s): dropped", exc.description)
                elif isinstance(exc, Forbidden) and (growing := self.drafts.growing.get(post_id)) is not None:
                    # Blocked: said once, then left alone (its next text, or its end, is the
                    # core's to send, and fails or gets through as a message would).
                    growing.parked = True
                    log.warning("chat %s refuses the bot (%s): its draft is not shown again until "
                                "the answer goes on", growing.chat_id, exc.description)  # fmt: skip
                else:
                    log.warning("a draft could not be shown again: %s", exc)

    def root_of_draft(self, chat_id: int, topic_id: int | None, draft_id: int) -> str | None:
        """The session thread whose draft that was (for its Stop button)."""
        # A topic is one session's: it says whose draft that was, whichever run showed it.
        root = ids.post(chat_id, topic_id) if topic_id is not None else self.drafts.root_of_draft(chat_id, draft_id)
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

    def real(self, post_id: str) -> str:
        """The message a provisional id stands for (the id itself for any other)."""
        if not is_provisional(post_id):
            return post_id
        return self.drafts.real.get(post_id) or self.memory.keys.get(DRAFT_KEY + post_id) or post_id

    async def make_real(self, post_id: str) -> str:
        """The post as a real message (sent now if it still grows); its real id."""
        if post_id in self.drafts.growing:
            async with self.messages.holding(post_id):
                growing = self.drafts.growing.get(post_id)
                if growing is not None:
                    await self._commit(growing)
        return self.real(post_id)

    async def _show(self, growing: Growing) -> bool:
        """False when this chat refuses drafts (then it never gets one again)."""
        html = self.messages.render(growing.text, growing.prefix)[-1]  # a long one: its newest part
        api = self.messages.api
        try:
            try:
                await api.send_message_draft(growing.chat_id, growing.draft_id, html,
                                             thread_id=growing.topic_id, can_stop=True)  # fmt: skip
            except BadRequest as exc:
                if not refused_entities(exc):
                    raise
                await api.send_message_draft(growing.chat_id, growing.draft_id, runs.plain_text(html),
                                             thread_id=growing.topic_id, can_stop=True, plain=True)  # fmt: skip
        except Forbidden:
            raise  # the person blocked the bot: no message gets there either, and drafts come back with it
        except BotApiError as exc:
            if topic_gone(exc):
                raise  # that topic's posts fail as messages would; the chat's other topics keep drafts
            log.info("drafts refused in chat %s (%s): editing a message instead",
                     growing.chat_id, exc.description)  # fmt: skip
            self.drafts.off.add(growing.chat_id)
            return False
        growing.shown_at = trio.current_time()
        return True

    async def _commit(self, growing: Growing) -> None:
        """Send the growing post's text as real messages (ending its draft). Call holding
        its lock. A send that fails leaves it growing: its text is tried again, not lost."""
        sent = await self.messages.send(growing.chat_id, growing.topic_id, growing.text, growing.prefix,
                                        key=DRAFT_KEY + growing.post_id)  # fmt: skip
        self.drafts.finish(growing.post_id)
        self.drafts.made_real(growing.post_id, sent.id)
        self.messages.belongs_to(sent.id, growing.root_id)
        self.memory.remember_key(DRAFT_KEY + growing.post_id, sent.id)
        await self.memory.commit()

    def _post(self, growing: Growing) -> Post:
        return Post(growing.post_id, ids.channel(growing.chat_id), self.messages.me.id,
                    growing.text, root_id=growing.root_id)  # fmt: skip
