"""The router's shell: the one task that reads every front end's events, in order.

Owns: the reading of the chat events, the admission of each post once (the store's
ledger: the router alone asks it), the index of recent posts a choice is matched by,
and the catch-up after a new connection. It asks the pure router (`core.router`) what
each event means and hands the decision on: a thread's mail to its session (the
registry), main-place commands and every answer to the desk. It never decides what a
post means itself, and never waits on a session, the desk or a server.

A catch-up's fetching runs in a task of its own per front end (its REST calls are retried
for as long as its server fails them, and a refusal for a minute or two, `_patiently`),
so one front end's outage holds up no other's
events. Meanwhile that front end's new posts wait behind it, so each place's posts still
reach their sessions in the order they were written. The fetching task touches nothing of
the router's: the router hands it what to ask, and it sends what it found (`CaughtUp`)
back through the router's own event channel, where the router task alone applies it.
"""

from __future__ import annotations

import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import TypeVar

import attrs
import trio

from supervisor.chat import ChatError
from supervisor.chat.fronts import FrontEnd, Fronts
from supervisor.core import commands, texts
from supervisor.core.backoff import Backoff
from supervisor.core.events import (
    ChatEvent,
    Choice,
    ChoiceMade,
    Hello,
    Post,
    PostDeleted,
    Posted,
    PostEdited,
)
from supervisor.core.router import (
    AnswerEnded,
    Choose,
    Decision,
    Guide,
    Prompt,
    Resync,
    RouterView,
    RunMainCommand,
    RunThreadCommand,
    Wake,
    acts_after_catch_up,
    route,
    route_post,
)
from supervisor.core.session import QueuedPrompt
from supervisor.logs import in_a_row_level
from supervisor.runtime.desk import Desk
from supervisor.runtime.registry import Offer, SessionRegistry
from supervisor.runtime.session_inbox import ChoiceIn, CommandIn, PromptIn, SessionInput, WakeIn
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")

# Recent posts remembered for a stop made on any of them; older ones fall out. Posts that
# offer a choice (permission requests, rerun offers) are found through their session.
POST_INDEX_SIZE = 5_000
# A catch-up the server refuses (not an outage: the client waits those out) is tried again
# for a minute or two: what it would find is otherwise never answered.
# A catch-up refused so this many times in a row has nothing to fetch (a 403 also comes
# while a server restarts: the first ones are tried again, as any other refusal).
PLACE_GONE = frozenset({403, 404})
GONE_AFTER_TRIES = 8
CATCH_UP_BACKOFF = Backoff(base=1.0, cap=30.0, floor=0.5)
_jitter = random.Random()
T = TypeVar("T")


class PostIndex:
    """Which thread a recent post belongs to: the posts we saw or made, newest kept."""

    def __init__(self) -> None:
        self._thread: OrderedDict[str, str] = OrderedDict()  # post id -> thread root id

    def __contains__(self, post_id: object) -> bool:
        return post_id in self._thread

    def get(self, post_id: str) -> str | None:
        return self._thread.get(post_id)

    def remember(self, post_id: str, root_id: str) -> None:
        self._thread[post_id] = root_id
        if len(self._thread) > POST_INDEX_SIZE:
            self._thread.popitem(last=False)


@attrs.frozen
class CaughtUp:
    """What one round of a front end's catch-up found: a runtime event, sent back to the
    router by the task that fetched it."""

    front: FrontEnd
    posts: tuple[Post, ...]  # new in its places while we were away, in the order written
    choices: tuple[Choice, ...]  # made meanwhile on the requests still waiting for one


# What the router reads: every front end's events, and its own catch-ups' findings.
RouterEvent = ChatEvent | CaughtUp


class RouterTask:
    def __init__(
        self,
        chat: Fronts,
        store: Store,
        registry: SessionRegistry,
        desk: Desk,
        posts: PostIndex,
        main_channels: Mapping[str, str],  # DM channel id -> user id
    ) -> None:
        self.chat = chat
        self.store = store
        self.registry = registry
        self.desk = desk
        self.posts = posts
        self.main_channels = main_channels
        self.view = RouterView(bot_user_id="", allowed_user_ids=frozenset(), sessions=registry.refs,
                               thread_of=self._thread_of)  # fmt: skip
        self.people_changed()
        # A place never seen before has as history what came before this start, not before
        # its first hello: one that comes late (a server silent at start) misses nothing.
        self._started_ms = int(time.time() * 1000)
        # Front ends being caught up (by name) -> their events that came meanwhile.
        self._waiting: dict[str, list[ChatEvent]] = {}
        self._catch_ups: trio.Nursery | None = None
        self._found: trio.MemorySendChannel[RouterEvent] | None = None

    def people_changed(self) -> None:
        """Who and where counts: the open front ends' people and places (more once one
        joins late)."""
        self.view = attrs.evolve(
            self.view,
            bot_user_id=self.chat.me.id,
            allowed_user_ids=frozenset(self.registry.allowed),
            places=frozenset(self.main_channels),
        )

    async def run(
        self, events: trio.MemoryReceiveChannel[RouterEvent], found: trio.MemorySendChannel[RouterEvent]
    ) -> None:
        """Route until cancelled. `found` sends into `events`: each catch-up reports
        through a clone of it."""
        async with events, found, trio.open_nursery() as catch_ups:
            self._catch_ups, self._found = catch_ups, found
            async for event in events:
                self.take(event)

    def take(self, event: RouterEvent) -> None:
        if isinstance(event, CaughtUp):
            self._caught_up(event)
            return
        if isinstance(event, Posted):
            self._notice_announced_root(event.post)
        waiting = self._waiting_behind(event)
        if waiting is not None:
            waiting.append(event)
        else:
            self.apply(route(event, self.view))

    def _waiting_behind(self, event: ChatEvent) -> list[ChatEvent] | None:
        """Where a post (or a new hello) of a front end being caught up waits, if it must.
        Choices and turns to a thread go on: they are about what exists already."""
        if not self._waiting:  # nothing is being caught up: the common case
            return None
        if isinstance(event, Hello):
            id_ = event.connection_id
        elif isinstance(event, Posted | PostEdited | PostDeleted):
            id_ = event.post.channel_id
        else:
            return None
        front = self.chat.claiming(id_)
        return None if front is None else self._waiting.get(front.name)

    def _notice_announced_root(self, post: Post) -> None:
        """Our own new thread root, seen on the event stream (or in a catch-up, when the
        start could not finish announcing it): from here on replies to it may arrive, so
        its session must be known now, whichever of this post and the REST answer to its
        creation reaches us first. (It is launched once announced.)"""
        if post.idempotency_key in self.desk.announcing:
            record = self.desk.announcing.pop(post.idempotency_key)
            self.registry.register(attrs.evolve(record, root_id=post.id, answer_pending=False))

    def _thread_of(self, post_id: str) -> str | None:
        """The thread a post belongs to: a recent one from the index, an older one that
        still offers a choice from the session that offered it."""
        root = self.posts.get(post_id)
        return root if root is not None else self.registry.thread_offering(post_id)

    def apply(self, decision: Decision) -> None:
        if isinstance(decision, Resync):
            self._resync(decision.connection_id)
            return
        post = getattr(decision, "post", None)
        if post is not None:  # in a person's main place: the router checked that
            if not self.store.admit(post.channel_id, post.id, post.create_at):
                if post.id not in self.store.ledger.in_flight.get(post.channel_id, {}):
                    # Dealt with before (a redelivery after a crash cut the front end's
                    # confirmation): re-marked, so the front end is told `handled` once
                    # that is durable, and may confirm it to its server.
                    self.store.handled(post.channel_id, post.id)
                return  # seen before: a replay, a catch-up overlap, or a restart
            self.posts.remember(post.id, post.thread_id)
        match decision:
            case Prompt(session, post):
                prompt = QueuedPrompt(post.id, post.channel_id, post.message)
                self._to_session(session.root_id, PromptIn(prompt, post.file_ids), post)
            case RunThreadCommand(session, post, command):
                if isinstance(command, commands.ListSessions):
                    listing = self.desk.sessions_text(post.channel_id)
                    self.desk.reply(post.channel_id, post.id, listing, root_id=post.thread_id, asked_at_ms=post.create_at)
                else:
                    message = CommandIn(command, post.id, post.channel_id)
                    self._to_session(session.root_id, message, post, urgent=isinstance(command, commands.Stop))
            case Choose(session, choice):
                # Urgent: a 🛑 is about the turn running now, not after a flood's prompts.
                self.registry.deliver(session.root_id, ChoiceIn(choice.kind, choice.post_id), urgent=True)
            case Wake(session):
                self.registry.deliver(session.root_id, WakeIn())
            case RunMainCommand(post, command):
                self.desk.command(post, command)
            case Guide(post):
                guidance = texts.guidance(self.chat.words(post.channel_id))
                self.desk.reply(post.channel_id, post.id, guidance, root_id=post.root_id, asked_at_ms=post.create_at)
            case AnswerEnded(session, post):
                self.desk.reply_ended(post.channel_id, post.id, session.root_id, asked_at_ms=post.create_at)
            case _:
                log.debug("ignored: %s", decision)

    def _to_session(self, root_id: str, message: SessionInput, post: Post, *, urgent: bool = False) -> None:
        if self.registry.deliver(root_id, message, urgent=urgent):
            return
        if self.registry.stopping:  # its session may be live again at the next start
            log.info("a post in %s is left for the next start (stopping)", post.channel_id)
            return
        self.desk.reply_ended(post.channel_id, post.id, root_id, asked_at_ms=post.create_at)

    def _resync(self, connection_id: str) -> None:
        """A new connection: catch up the front end that owns it (every one, when none
        claims the id); one under way goes round once more after it."""
        claimed = self.chat.claiming(connection_id)
        for front in [claimed] if claimed is not None else self.chat.fronts:
            if front.name in self._waiting:
                self._waiting[front.name].append(Hello(connection_id))
            else:
                self._waiting[front.name] = []
                self._start_round(front)

    def _start_round(self, front: FrontEnd) -> None:
        """What `front` must be asked (each of its places since its cursor, the choices on
        its requests still waiting), handed to a task of its own that asks it."""
        since: dict[str, int] = {}
        for channel_id in self.main_channels:
            if self.chat.front_of(channel_id) is front:
                self.store.ledger.begin(channel_id, self._started_ms + front.clock_ahead_ms, front.name)
                since[channel_id] = self.store.ledger.catch_up_since(channel_id)
        offering = [offer for offer in self.registry.offering() if self.chat.front_of(offer[0]) is front]
        assert self._catch_ups is not None and self._found is not None, "catch-ups start once the router runs"
        self._catch_ups.start_soon(_catch_up, front, since, offering, self._found.clone())

    def _caught_up(self, found: CaughtUp) -> None:
        """Handle, once and in order, what `found.front`'s places got while we were away,
        then the events that waited for it; a hello among those starts another round."""
        for post in found.posts:
            self._notice_announced_root(post)
            self.apply(route_post(post, self.view))
        for choice in found.choices:  # one seen before is harmless: its request ignores it
            self.apply(route(ChoiceMade(choice), self.view))
        waiting = self._waiting.pop(found.front.name)
        for index, event in enumerate(waiting):
            if isinstance(event, Hello):
                self._waiting[found.front.name] = waiting[index + 1 :]
                self._start_round(found.front)
                return
            self.apply(route(event, self.view))


async def _catch_up(
    front: FrontEnd,
    since: Mapping[str, int],
    offering: list[Offer],
    found: trio.MemorySendChannel[RouterEvent],
) -> None:
    """Fetch what `front`'s places got since `since`, and the choices made on the posts in
    `offering` (without those, a 👍 given during an outage would leave its turn waiting
    for the timeout), then send it all to the router as one `CaughtUp`."""
    async with found:
        posts: list[Post] = []
        for channel_id, since_ms in since.items():
            what = f"the catch-up of channel {channel_id}"
            fetched = await _patiently(what, partial(front.link.posts_since, channel_id, since_ms))
            fresh = sorted((p for p in fetched or () if p.create_at > since_ms), key=lambda p: (p.create_at, p.id))
            log.info("catch-up: %d post(s) in %s since %s", len(fresh), channel_id, texts.utc_iso(since_ms / 1000))
            posts += fresh
        choices: list[Choice] = []
        for channel_id, post_id, asks in offering:
            what = f"the catch-up of the choices on {post_id}"
            made = await _patiently(what, partial(front.link.choices_on, channel_id, post_id))
            choices += [choice for choice in made or () if acts_after_catch_up(choice, asks=asks)]
        await found.send(CaughtUp(front, tuple(posts), tuple(choices)))


async def _patiently(what: str, fetch: Callable[[], Awaitable[T]]) -> T | None:
    """`fetch`, tried again while its server refuses it (the front end's client retries
    what is transient, an outage, by itself: a refusal here is a 401 while the server
    restarts, a proxy's login page...), until it answers: the posts it misses would
    never be answered (the cursor moves past them). None only once the place says it is
    gone or closed to us (403, 404) `GONE_AFTER_TRIES` times in a row: the front end's
    other posts wait behind it. The log warns of the 1st, 2nd, 4th, 8th... refusal."""
    refused = gone = 0  # in a row
    while True:
        try:
            return await fetch()
        except ChatError as exc:
            refused += 1
            gone = gone + 1 if exc.status in PLACE_GONE else 0
            if gone >= GONE_AFTER_TRIES:
                log.error("%s was refused %d times (%s): the place is gone or closed to us, given up "
                          "(what it missed may stay unanswered)", what, gone, exc)  # fmt: skip
                return None
            delay = CATCH_UP_BACKOFF.delay(refused - 1, _jitter)
            log.log(in_a_row_level(refused), "%s was refused (%d in a row), tried again in %.1f s: %s",
                    what, refused, delay, exc)  # fmt: skip
            await trio.sleep(delay)
