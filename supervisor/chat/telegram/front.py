"""Telegram as one of the supervisor's front ends: the bot's updates in, the link out.

Owns the update loop: `UpdateSource` long-polls `getUpdates`; each update is read
(`incoming`) and becomes at most one port event (`Posted`, `ChoiceMade`), or is dealt
with here (a stranger's message or button, a message in a group, `/session NAME` without
topics) and confirmed. The parts of an album (one update per photo) wait for each other
and become one `Posted`, whose handled mark confirms them all.

Exactly once (PRODUCT.md, Telegram): an update that reaches the core as a `Posted` is
confirmed only when the core's store says that post's handled mark is durable
(`handled(channel_id, post_id)` on the link); that includes a redelivery after a crash
between the store's write and our confirmation: the core turns it away as handled and
says so the same way. Anything that never reaches the core is confirmed at once. A button press is confirmed
once it is handed to the core: a press that a crash cut is pressed again.
The confirmed offset is written to the front end's memory, so a start asks for exactly
what was written while we were down; Telegram keeps it, in order.

`backlog` keeps that bookkeeping, and holds the updates in our memory when 100 wait for
the core (Telegram would hand out nothing newer). Without topics, `active` says which
session plain text goes to.

The loop makes no Bot API call itself: what it owes and need not wait for (a refusal, a
button's answer) goes through a lane of its own (`replies`), so a call Telegram holds up
holds no other chat's updates.

It must never let an update past the offset before its post is handled, never let a
stranger reach the core (one short refusal per chat per hour instead), and never compete
with a second poller of the same token (the update source says so and holds off).
"""

from __future__ import annotations

import functools
import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import trio

from supervisor.chat import CannotStart, ChatLink, ChatUser, identity
from supervisor.chat.fronts import People
from supervisor.chat.telegram import ids, incoming
from supervisor.chat.telegram.active import ActiveSession
from supervisor.chat.telegram.backlog import Backlog
from supervisor.chat.telegram.calls import CALL_FAILURES, Pacing, Unauthorized
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import Update
from supervisor.chat.telegram.config import TelegramConfig
from supervisor.chat.telegram.doctor import TOKEN_FIX
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.telegram.memory import Memory, keep_newest
from supervisor.chat.telegram.messages import PORT_KINDS
from supervisor.chat.telegram.replies import Replies
from supervisor.chat.telegram.runs import escape
from supervisor.chat.telegram.updates import AHEAD_POLL_S, ALLOWED_UPDATES, UpdateSource
from supervisor.config import Config
from supervisor.core.commands import NEW_FORM, NewSession, parse_main_command
from supervisor.core.events import (
    ChatEvent,
    Choice,
    ChoiceKind,
    ChoiceMade,
    FileRef,
    Post,
    Posted,
    TurnedTo,
)

if TYPE_CHECKING:
    from supervisor.chat.fronts import FrontEnd

log = logging.getLogger("supervisor.telegram")

REFUSAL: Final = "This bot answers only the people it was set up for."
PRIVATE_ONLY: Final = "I work only in a private chat: write to me there, @{bot}."
NOT_ALLOWED: Final = "not allowed"
REFUSE_EVERY_S: Final = 3600.0
REFUSED_KEPT: Final = 256  # chats refused within the hour, newest: a crowd past it may hear it again
# The lanes of replies the update loop does not wait for (`replies`). A stranger's refusal
# waits its turn at most this long; a button's answer no longer than Telegram takes one.
REFUSAL_PATIENCE_S: Final = 60.0
ANSWER_PATIENCE_S: Final = 15.0
# An album's parts come as updates of their own, one right after another: the album is
# handed on once none came for this long (a person's next message waits as long). While
# they wait unconfirmed, the next poll goes AHEAD_POLL_S after the last: longer than that.
ALBUM_WAIT_S: Final = AHEAD_POLL_S + 1.0
# The menu a Telegram client shows when "/" is typed (setMyCommands).
MENU: Final = (
    ("new", NEW_FORM.removeprefix("new ") + ": start a session"),  # the form !help gives
    ("sessions", "list the sessions"),
    ("agents", "the agents sessions can run, and whether they start"),
    ("session", "NAME: send plain text to that session (without topics)"),
    ("stop", "interrupt the running turn"),
    ("status", "the session's state, directory and cost"),
    ("get", "PATH: send a file from the session's directory"),
    ("end", "[NAME]: end a session"),
    ("help", "what the bot understands"),
)
DRAFT_REFRESH_S: Final = 20.0  # Telegram drops a draft after about 30 s without news
DRAFT_GIVE_UP_S: Final = 60.0  # a post that has not grown this long becomes a message
DRAFTS_AT_CLOSE_S: Final = 0.3  # at a stop, for the drafts still showing to become messages
PEOPLE_LOOKUP_S: Final = 5.0  # getChat per allowed person at start; a name is not worth more
_SLASH_COMMAND: Final = re.compile(r"^/([A-Za-z_]+)(?=\s|$)")
_NOT_IN_NAMES: Final = re.compile(r"[^A-Za-z0-9._-]+")
_VERBS: Final = frozenset(
    {"help", "sessions", "agents", "new", "session", "end", "stop", "status", "get"}
)


class TokenRefused(CannotStart):
    """Telegram refused the bot token at start: one sentence for the person, no traceback."""


class TelegramFrontEnd:
    """One bot. Built by `connect`; `run` is its event task (start it with nursery.start)."""

    name = "telegram"

    def __init__(
        self,
        config: TelegramConfig,
        api: BotApi,
        link: TelegramLink,
        events: trio.MemorySendChannel[ChatEvent],
        *,
        bot_username: str,
        personas: frozenset[str] = frozenset(),
        kept: identity.Kept | None = None,
        known: identity.Identity | None = None,
        answered: bool = True,
    ) -> None:
        self.config = config
        self.kept = kept  # where who we are is kept for the next start
        self.known = known  # who we were at the last start
        self.answered = answered  # whether Telegram said who we are at this start
        self.api = api
        self.link: ChatLink = link  # the port, for the core
        self.tg = link  # the same, with what only this front end uses
        self._events = events
        self._album: list[tuple[Update, incoming.Posted]] = []  # the parts of one, so far
        self.bot_username = bot_username
        self.personas = personas  # for the seed's `/new NAME PERSONA`
        self.source = UpdateSource(api, start_offset=link.memory.offset, poll_s=config.poll_s,
                                   allowed_updates=ALLOWED_UPDATES)  # fmt: skip
        self._allowed = frozenset(config.allowed_user_ids)
        self.backlog = Backlog(self.source, link.memory)
        self.active = ActiveSession(api, link)  # without topics
        # Chat id -> when it was last refused, oldest first; none older than the hour.
        self._refused: dict[int, float] = {}
        self.refusals = Replies("refusals", senders=4, queued=16, patience_s=REFUSAL_PATIENCE_S)
        self.answers = Replies("button answers", senders=2, queued=64, patience_s=ANSWER_PATIENCE_S)
        link.on_handled = self._handled

    @classmethod
    async def connect(
        cls,
        config: TelegramConfig,
        state_dir: Path,
        events: trio.MemorySendChannel[ChatEvent],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> TelegramFrontEnd:
        """Ask Telegram who we are (retried until it answers; a refused token raises).
        When an earlier start with this configuration learned it (`identity`), only for a
        few seconds: a Telegram still out of reach (the network not up yet) holds up no
        other front end, and its updates wait for us there, in order."""
        pacing = Pacing(per_chat_rate=config.per_chat_rate, per_chat_burst=config.per_chat_burst)
        api = BotApi(config.token, api_url=config.api_url, pacing=pacing, transport=transport)
        kept = identity.Kept(state_dir, cls.name, identity.key(config.api_url, config.token,
                                                                *map(str, sorted(config.allowed_user_ids))))  # fmt: skip
        known = kept.recall()
        learned = None
        try:
            with trio.move_on_after(identity.START_PATIENCE_S if known else math.inf):
                learned = await api.get_me()
        except BaseException as exc:
            with trio.CancelScope(shield=True):  # a stop while Telegram does not answer yet
                await api.aclose()
            if isinstance(exc, Unauthorized):
                raise TokenRefused(f"Telegram refused the bot token (401 on getMe): {TOKEN_FIX}") from exc
            raise
        if learned is not None:
            bot = ChatUser(ids.user(learned.id), learned.username, is_bot=True)
            topics = learned.has_topics_enabled
        else:
            assert known is not None
            bot, topics = known.me, "topics" in known.modes
            log.warning("telegram does not answer yet: serving as @%s, as at the last start", bot.username)
        memory = Memory.open(state_dir)
        memory.for_bot(ids.parse_user(bot.id))
        link = TelegramLink(api, bot, memory, topics=topics)
        log.info("telegram: @%s, topic mode %s", bot.username, "on" if link.topics else "off")
        return cls(config, api, link, events, bot_username=bot.username, kept=kept, known=known,
                   answered=learned is not None)  # fmt: skip

    async def offer_menu(self) -> None:
        """Tell Telegram our commands, for the clients' menu; a refusal changes nothing."""
        commands = [{"command": name, "description": about} for name, about in MENU]
        with trio.move_on_after(PEOPLE_LOOKUP_S):
            try:
                await self.api.call("setMyCommands", {"commands": commands}, retry=False)
            except CALL_FAILURES as exc:
                log.info("the command menu was not set: %s", exc)

    async def people(self) -> People:
        """The allowed people, and their private chats with the bot (a private chat's id
        is its person's id). Each is named by their @username where Telegram tells it
        (`getChat`: only once they started the bot), else by their number; as at the last
        start while Telegram does not answer."""
        if not self.answered and self.known is not None:
            return self.known.people
        names: dict[int, str] = {}
        async with trio.open_nursery() as nursery:  # at once: a slow answer is one wait, not one per person
            for user_id in self.config.allowed_user_ids:
                nursery.start_soon(self._name_of, user_id, names)
        # A lookup that timed out keeps the name an earlier start found.
        before = {user.id: user.username for user in self.known.people.allowed.values()} if self.known else {}
        allowed = {
            ids.user(u): ChatUser(ids.user(u), names.get(u) or before.get(ids.user(u)) or str(u))
            for u in self.config.allowed_user_ids
        }
        people = People(allowed, {ids.channel(u): ids.user(u) for u in self.config.allowed_user_ids})
        learned = identity.Identity(self.tg.me, people, ("topics",) if self.tg.topics else ())
        if self.kept is not None and learned != self.known:
            await self.kept.remember(learned)
        return people

    async def _name_of(self, user_id: int, names: dict[int, str]) -> None:
        with trio.move_on_after(PEOPLE_LOOKUP_S):
            try:
                chat = await self.api.get_chat(user_id)
            except CALL_FAILURES as exc:
                log.info("user %s: no chat with the bot yet (%s)", user_id, exc)
            else:
                if chat.username:
                    names[user_id] = chat.username

    clock_ahead_ms = 0  # its messages are stamped with our clock (never before Telegram's date)

    def owns(self, any_id: str) -> bool:
        return ids.owns(any_id)

    async def aclose(self) -> None:
        with trio.move_on_after(DRAFTS_AT_CLOSE_S):
            await self.tg.keep_all_drafts()
        await self.api.aclose()

    # --- the event task ----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll, and hand each update's event to the core, in order, until cancelled.
        No `Hello`: there is nothing to catch up over REST (the offset replays)."""
        updates_send, updates_recv = trio.open_memory_channel[Update](0)
        self.tg.forget_kept_topics()  # the start's announcements have taken theirs
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.source.run, updates_send)
                nursery.start_soon(self.backlog.keep_offset)
                nursery.start_soon(self.active.notes.run)
                nursery.start_soon(self.refusals.run)
                nursery.start_soon(self.answers.run)
                nursery.start_soon(self._keep_drafts)
                nursery.start_soon(self._watch_token)
                if not self.answered:  # `open_front` could not offer the menu
                    nursery.start_soon(self._offer_menu_once_answered)
                task_status.started()
                for held in self.backlog.held_before():  # held before a stop: older than the rest
                    await self._take(held)
                async with updates_recv:
                    while True:
                        update = None
                        # An album's parts come one update each, together: its last waits.
                        with trio.move_on_after(ALBUM_WAIT_S if self._album else math.inf):
                            try:
                                update = await updates_recv.receive()
                            except trio.EndOfChannel:
                                return
                        if update is None:
                            await self._album_ends()
                        else:
                            await self._take(update)
        except* Unauthorized:
            # Refused once Telegram answers, after it kept silent at start (`identity`): the
            # same one sentence as a refusal at start, not a traceback.
            raise TokenRefused(f"Telegram refused the bot token (401): {TOKEN_FIX}") from None

    async def _take(self, update: Update) -> None:
        """Hand `update` on, in order; a part of an album waits for the album's other parts
        (Telegram sends one message per photo), to go on as one message with them."""
        try:
            item = incoming.read_update(update, self.bot_username)
        except Exception:
            # An update we cannot read must not stop the front end, nor (unconfirmed)
            # stop it again at every start: said in the log, confirmed, passed over.
            log.exception("update %s could not be read: passed over", update.update_id)
            item = None
        part = item if isinstance(item, incoming.Posted) and item.album and item.author_id in self._allowed else None
        if self._album and (part is None or part.album != self._album[0][1].album):
            await self._album_ends()
        if part is not None:
            self._album.append((update, part))
            return
        await self._handle([update], item)

    async def _album_ends(self) -> None:
        parts, self._album = self._album, []
        album = incoming.one_album([part for _update, part in parts])
        await self._handle([update for update, _part in parts], album)

    async def _handle(self, updates: list[Update], item: incoming.Incoming | None) -> None:
        """The event `item` (read from `updates`) makes goes to the core; they are
        confirmed once its post is handled (or at once, when it is not a post)."""
        try:
            event = await self._event_of(item)
        except Exception:  # as for an update we cannot read (`_take`)
            log.exception("update %s could not be read: passed over", updates[0].update_id)
            event = None
        if isinstance(event, Posted):
            post = event.post
            for update in updates:
                self.backlog.handed(post.id, update)
            # Written under a header whose thread the core does not know yet: wait for it.
            await self.tg.opened(ids.chat_of(post.channel_id), post.root_id)
            await self._events.send(event)
            await self.backlog.hold_if_stuck()
            return
        if event is not None:
            await self._events.send(event)
        for update in updates:
            self.backlog.confirm(update.update_id)

    async def _event_of(self, item: incoming.Incoming | None) -> ChatEvent | None:
        if isinstance(item, incoming.Posted):
            return await self._posted(item)
        if isinstance(item, incoming.Pressed):
            return self._pressed(item)
        if isinstance(item, incoming.StopPressed):
            return self._stop_pressed(item)
        if isinstance(item, incoming.InGroup):
            self._in_group(item)
        return None  # an edit, a kind we do not use

    async def _watch_token(self) -> None:
        """A token Telegram took at this start and refuses later makes what we send wait
        for it (`token`), and is said once; nothing ends. One it refuses as soon as it
        answers, after it kept silent at start, is refused as at a start (`run`)."""
        if not self.answered:
            await self.api.get_me()  # no watch yet: a refusal raises
        await self.api.watch_token()

    def _handled(self, channel_id: str, post_id: str) -> None:
        self.backlog.handled(post_id)
        self.tg.new_handled(post_id)
        self.active.handled(channel_id, post_id)

    async def _offer_menu_once_answered(self) -> None:
        """Telegram kept silent at start: the menu is offered when it answers, beside the
        updates (the one the last start gave may be stale, or cleared meanwhile)."""
        await self.source.answered.wait()
        await self.offer_menu()

    async def _keep_drafts(self) -> None:
        """A growing answer's draft outlives a pause in it (see `TelegramLink.keep_drafts`)."""
        while True:
            await trio.sleep(DRAFT_REFRESH_S / 2)
            try:
                await self.tg.keep_drafts(DRAFT_REFRESH_S, DRAFT_GIVE_UP_S)
            except CALL_FAILURES as exc:  # a proxy's page too: the front end goes on
                log.info("a draft was not shown again: %s", exc)

    # --- messages ----------------------------------------------------------------------

    async def _posted(self, item: incoming.Posted) -> Posted | TurnedTo | None:
        if item.author_id not in self._allowed:
            if self._refuse(item.chat_id, item.topic_id):
                log.info("refused a message from a stranger (chat %s)", item.chat_id)
            return None
        if not item.text.strip() and not item.attachments and item.topic_opened is None:
            # A sticker, a contact, a topic renamed: nothing an agent could take.
            log.info("message %s has no text or file: not passed on", item.message_id)
            return None
        channel = ids.channel(item.chat_id)
        text = as_command(item.text, self.personas)
        asked = parse_main_command(text)
        if item.topic_opened is None:
            # Written right after a `/new` that decides where it goes (in the topic that
            # `!new` stands for; without topics, the session it makes active): it waits
            # for that, and where it goes is decided only then.
            await self.tg.news_settled(item.chat_id, item.topic_id)
        if isinstance(asked, NewSession) and item.topic_id is None:  # the main view's, the core's to take
            self.tg.new_asked(item.chat_id, asked.name, ids.post(item.chat_id, item.message_id))
        file_ids = []
        for attachment in item.attachments:
            file_id = ids.file(attachment.file_id)
            ref = FileRef(file_id, attachment.name, attachment.size or 0, attachment.mime_type)
            self.tg.remember_file(file_id, ref)  # with its type: an image goes to the agent as one
            file_ids.append(file_id)
        if item.topic_opened is not None and self.tg.topics:
            # A topic the person opened: a session named after it, as `/new NAME` would.
            name = session_name(item.topic_opened, item.topic_id or item.message_id)
            await self.tg.topic_opened(item.chat_id, name, item.topic_id or 0, ids.post(item.chat_id, item.message_id))
            text, root = f"!new {name}", ""
        elif self.tg.topics:
            root = ids.post(item.chat_id, item.topic_id) if item.topic_id is not None else ""
        else:
            verb = next(iter(text.split()), "").lower()  # "": a file without a caption
            await self.tg.opened(item.chat_id)  # a header on its way makes its session the active one
            if verb == "!session":
                return await self.active.switch(item, channel, text)
            root = self.active.root_of(item, channel, text)
            if not root and verb == "!sessions":
                self.active.listing(ids.post(item.chat_id, item.message_id), item.chat_id)
        post = Post(
            ids.post(item.chat_id, item.message_id),
            channel,
            ids.user(item.author_id),
            text,
            root_id=root,
            create_at=self.tg.now_ms(not_before_s=item.sent_at_s),
            file_ids=tuple(file_ids),
        )
        return Posted(post)

    def _in_group(self, item: incoming.InGroup) -> None:
        """An allowed person wrote to the bot in a group (added it there, say): told once
        an hour per group where it works. Anyone else's group talk is none of ours."""
        if item.author_id not in self._allowed:
            return
        if self._refuse(item.chat_id, item.topic_id, PRIVATE_ONLY.format(bot=self.bot_username)):
            log.warning("a message in group chat %s was not taken: the bot works in private chats only "
                        "(the person must open the bot's private chat and press Start)", item.chat_id)  # fmt: skip

    def _refuse(self, chat_id: int, topic_id: int | None, text: str = REFUSAL) -> bool:
        """Say `text` there, unless it was said there within the hour; whether it goes now
        (through `refusals`: a stranger Telegram holds up holds up no update)."""
        now = trio.current_time()
        while self._refused and now - next(iter(self._refused.values())) >= REFUSE_EVERY_S:
            del self._refused[next(iter(self._refused))]  # past the hour: it would be said again
        if chat_id in self._refused:
            return False
        call = functools.partial(self.api.send_message, chat_id, escape(text), thread_id=topic_id)
        if not self.refusals.put(f"the refusal to chat {chat_id}", call):
            return False
        self._refused[chat_id] = now
        keep_newest(self._refused, REFUSED_KEPT)
        return True

    # --- buttons ------------------------------------------------------------------------

    def _pressed(self, item: incoming.Pressed) -> ChatEvent | None:
        allowed = item.author_id in self._allowed
        # Always (the person's client shows a spinner until this), beside the loop: a
        # stranger's in their lane. Its 429 holds that person's chat, not every call.
        answer = functools.partial(self.api.answer_callback_query, item.query_id,
                                   "" if allowed else NOT_ALLOWED, chat_id=item.author_id)  # fmt: skip
        (self.answers if allowed else self.refusals).put("a button press's answer", answer)
        if not allowed or item.choice is None or item.chat_id is None:
            return None
        try:
            post_id = self.tg.core_id(ids.post(item.chat_id, int(item.choice.ref)))
        except ValueError:
            return None
        kind: ChoiceKind = PORT_KINDS[item.choice.kind]
        return choice_event(ids.user(item.author_id), post_id, kind, ids.channel(item.chat_id))

    def _stop_pressed(self, item: incoming.StopPressed) -> ChatEvent | None:
        """Stop on a draft: the core's stop on that session's thread, as `/stop` there.
        A private chat's id is its person's."""
        if item.chat_id not in self._allowed:
            return None
        root = self.tg.root_of_draft(item.chat_id, item.topic_id, item.draft_id)
        if root is None:
            log.info("Stop pressed on a draft of no known session (draft %s)", item.draft_id)
            return None
        return choice_event(ids.user(item.chat_id), root, "stop", ids.channel(item.chat_id))


def choice_event(user_id: str, post_id: str, kind: ChoiceKind, channel_id: str) -> ChatEvent:
    """A button press, in the core's words."""
    return ChoiceMade(Choice(user_id, post_id, kind, channel_id))


def session_name(topic_name: str, topic_id: int) -> str:
    """A valid session name (the core's: 1-64 of letters, digits, `-`, `_`, `.`) for a
    topic the person named: "Bug fix" is "Bug-fix", not `/new Bug` in directory `fix`;
    a name with none of those characters is "topic-ID"."""
    name = _NOT_IN_NAMES.sub("-", topic_name).strip("-.")[:64].rstrip("-.")
    return name or f"topic-{topic_id}"


def as_command(text: str, personas: frozenset[str] = frozenset()) -> str:
    """Telegram's `/new alpha` as the core's `!new alpha` (our verbs only); `/start` (the
    first thing a Telegram client sends) asks for help; the seed's `/new NAME PERSONA`
    (a second word that names a persona) as `!new NAME persona=PERSONA` (a directory of
    that name is still reachable as `./NAME`)."""
    match = _SLASH_COMMAND.match(text)
    verb = match[1].lower() if match is not None else ""
    if match is None or verb not in _VERBS | {"start"}:
        return text  # e.g. "/tmp is full": a prompt that starts with a path
    rest = text[match.end() :]
    words = rest.split()
    if verb == "new" and len(words) == 2 and words[1] in personas:
        return f"!new {words[0]} persona={words[1]}"
    return ("!help" if verb == "start" else f"!{verb}") + rest


async def open_front(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> TelegramFrontEnd:
    """The registry's opener: `[telegram]` connected (getMe answered, or who we were at
    the last start while Telegram keeps silent)."""
    assert config.telegram is not None
    front = await TelegramFrontEnd.connect(config.telegram, config.state.dir, events)
    front.personas = frozenset(config.personas)
    try:
        if front.answered:  # else `run` offers it once Telegram answers
            await front.offer_menu()
    except BaseException:
        with trio.CancelScope(shield=True):
            await front.aclose()
        raise
    return front


if TYPE_CHECKING:

    def _is_a_front_end(front: TelegramFrontEnd) -> FrontEnd:
        return front
