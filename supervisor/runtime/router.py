"""The router's shell: the one task that reads every front end's events, in order.

Owns: the reading of the chat events, the admission of each post once (the store's
ledger: the router alone asks it), the index of recent posts a choice is matched by,
and the catch-up after a new connection. It asks the pure router (`core.router`) what
each event means and hands the decision on: a thread's mail to its session (the
registry), main-place commands and every answer to the desk. It never decides what a
post means itself, and never waits on a session, the desk or a server.

A catch-up runs in a task of its own per front end (its REST calls are retried for as
long as its server fails them), so one front end's outage holds up no other's events.
Meanwhile that front end's new posts wait behind it, so each place's posts still reach
their sessions in the order they were written. The catch-up hands what it found back
through the same synchronous `apply` the router uses, between two of its own awaits.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

import attrs
import trio

from supervisor.chat import ChatError
from supervisor.chat.fronts import FrontEnd, Fronts
from supervisor.core import commands, texts
from supervisor.core.events import (
    ChatEvent,
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
    route,
    route_post,
)
from supervisor.core.session import QueuedPrompt
from supervisor.runtime.desk import Desk
from supervisor.runtime.registry import SessionRegistry
from supervisor.runtime.session_inbox import ChoiceIn, CommandIn, PromptIn, SessionInput, WakeIn
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")

# Recent posts remembered for a stop made on any of them; older ones fall out. Posts that
# offer a choice (permission requests, rerun offers) are found through their session.
POST_INDEX_SIZE = 5_000


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
        self.view = RouterView(
            bot_user_id=chat.me.id,
            allowed_user_ids=frozenset(registry.allowed),
            sessions=registry.refs,
            thread_of=self._thread_of,
            places=frozenset(main_channels),
        )
        # Front ends being caught up (by name) -> their events that came meanwhile.
        self._waiting: dict[str, list[ChatEvent]] = {}
        self._catch_ups: trio.Nursery | None = None

    async def run(self, events: trio.MemoryReceiveChannel[ChatEvent]) -> None:
        async with events, trio.open_nursery() as catch_ups:
            self._catch_ups = catch_ups
            async for event in events:
                self.take(event)
            catch_ups.cancel_scope.cancel()  # no more events: we are stopping

    def take(self, event: ChatEvent) -> None:
        self._notice_announced_root(event)
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

    def _notice_announced_root(self, event: ChatEvent) -> None:
        """Our own new thread root, seen on the event stream: from here on replies to it
        may arrive, so its session must be known now, whichever of this event and the
        REST answer to its creation reaches us first. (It is launched once announced.)"""
        if isinstance(event, Posted) and event.post.idempotency_key in self.desk.announcing:
            record = self.desk.announcing.pop(event.post.idempotency_key)
            self.registry.register(attrs.evolve(record, root_id=event.post.id, answer_pending=False))

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
                    self.desk.reply(post.channel_id, post.id, listing, root_id=post.thread_id)
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
                self.desk.reply(post.channel_id, post.id, guidance, root_id=post.root_id)
            case AnswerEnded(session, post):
                self.desk.reply_ended(post.channel_id, post.id, session.root_id)
            case _:
                log.debug("ignored: %s", decision)

    def _to_session(self, root_id: str, message: SessionInput, post: Post, *, urgent: bool = False) -> None:
        if not self.registry.deliver(root_id, message, urgent=urgent):
            self.desk.reply_ended(post.channel_id, post.id, root_id)

    def _resync(self, connection_id: str) -> None:
        """A new connection: catch up the front end that owns it (every one, when none
        claims the id), each in a task of its own; one under way goes round once more."""
        claimed = self.chat.claiming(connection_id)
        for front in [claimed] if claimed is not None else self.chat.fronts:
            if front.name in self._waiting:
                self._waiting[front.name].append(Hello(connection_id))
                continue
            self._waiting[front.name] = []
            assert self._catch_ups is not None, "catch-ups start once the router runs"
            self._catch_ups.start_soon(self._catch_up, front)

    async def _catch_up(self, front: FrontEnd) -> None:
        """Handle, once and in order, what `front`'s places got while we were away, then
        the events that waited for it; a hello among those makes another round."""
        while True:
            await self._catch_up_posts(front)
            await self._catch_up_choices(front)
            waiting = self._waiting[front.name]
            for index, event in enumerate(waiting):
                if isinstance(event, Hello):
                    self._waiting[front.name] = waiting[index + 1 :]
                    break
                self.apply(route(event, self.view))
            else:
                del self._waiting[front.name]
                return

    async def _catch_up_posts(self, front: FrontEnd) -> None:
        for channel_id in self.main_channels:
            if self.chat.front_of(channel_id) is not front:
                continue
            self.store.ledger.begin(channel_id, int(time.time() * 1000), front.name)
            since = self.store.ledger.catch_up_since(channel_id)
            try:
                posts = await front.link.posts_since(channel_id, since)
            except ChatError as exc:
                log.error("catch-up of channel %s failed: %s", channel_id, exc)
                continue
            fresh = [p for p in posts if p.create_at > since]
            log.info("catch-up: %d post(s) in %s since %d", len(fresh), channel_id, since)
            for post in sorted(fresh, key=lambda p: (p.create_at, p.id)):
                self.apply(route_post(post, self.view))

    async def _catch_up_choices(self, front: FrontEnd) -> None:
        """Choices made while we were away, on the requests still waiting for one: without
        this a 👍 given during an outage would leave its turn waiting for the timeout.
        A choice seen before is harmless: its request is settled and ignores it."""
        for channel_id, post_id in self.registry.offering():
            if self.chat.front_of(channel_id) is not front:
                continue
            try:
                made = await front.link.choices_on(channel_id, post_id)
            except ChatError as exc:
                log.error("catch-up of the choices on %s failed: %s", post_id, exc)
                continue
            for choice in made:
                self.apply(route(ChoiceMade(choice), self.view))
