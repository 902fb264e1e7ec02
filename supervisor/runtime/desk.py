"""The main-DM desk: commands answered in order, replies posted, new sessions made and
announced once.

Owns: the desk's mailboxes, one per place (the router hands it commands and replies
without waiting; each place's are answered in order, and one front end's outage, a reply
retried until its server takes it, holds up no other place), the
answers to `!help`, `!sessions`, `!new`, `!end NAME`, and the announcement of every new
session: its record and its `!new`'s handled mark in one durable write, then its thread
root, then the answer linking it; and, on the next start, finishing what a crash cut
(`recover_unannounced`). Starting a session is the registry's job (`runtime.registry`);
what a post means is the router's.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import attrs
import trio

from supervisor.agent.registry import (
    agents_text,
    resume_problem,
    terminal_hint,
)
from supervisor.chat import ChatError
from supervisor.chat.fronts import FrontEnd, Fronts
from supervisor.config import Config
from supervisor.core import commands, texts
from supervisor.core import desk as desk_rules
from supervisor.core.backoff import Backoff
from supervisor.core.events import Post
from supervisor.core.state import SessionRecord
from supervisor.core.words import Words
from supervisor.logs import in_a_row_level, one_line
from supervisor.runtime import announce
from supervisor.runtime.mail import Mailbox
from supervisor.runtime.registry import SessionRegistry
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")


@attrs.frozen
class Command:
    post: Post
    command: commands.MainCommand | commands.BadCommand


# The idempotency keys of answers: one per post answered, the same on every try.
_ANSWER_KEYS = uuid.UUID("0e5c8d2a-4f6b-4c1e-9a7d-3b2f1e0d9c8b")
# How long the most forgetful front end surely remembers a key (Mattermost's server: 30 s).
# An answer to an older post (asked before a crash, answered again after it) is looked for
# among the posts first, by that key.
KEYS_REMEMBERED_S = 25.0
# An announcement the start could not finish is tried again after these pauses.
UNFINISHED_BACKOFF = Backoff(base=1.0, cap=60.0, floor=0.5)
_jitter = random.Random()
# A `!new`'s directory is looked at in a worker thread for this long at most: a network
# mount that hangs would otherwise freeze the event loop (every session, and the stop).
DIRECTORY_LOOK_S = 5.0


@attrs.frozen
class Reply:
    channel_id: str
    message: str
    root_id: str = ""
    handled: tuple[str, str] | None = None  # (channel, post) to mark handled once posted
    asked_at_ms: int = 0  # when that post was made (the server's clock); 0: not known
    marks: bool = True  # False: another marks `handled` (a session, with its ended record)

    @property
    def idempotency_key(self) -> str:
        """An answer is posted before the post it answers is marked handled (marked first,
        a crash between would leave it unanswered for good); so a crash between the two
        answers it again after the start, with this key, which a front end posts once for
        as long as it remembers the key; past that (`KEYS_REMEMBERED_S`) the desk looks
        for the answer by its key first."""
        if self.handled is None:
            return ""
        return uuid.uuid5(_ANSWER_KEYS, "\0".join(self.handled)).hex


def _look_at(directory: Path) -> desk_rules.Directory:
    """Whether `directory` is one, and where it leads (blocking: run in a worker thread)."""
    try:
        is_dir = directory.is_dir()
        resolved = directory.resolve() if is_dir else directory
    except (OSError, RuntimeError, ValueError):  # a name too long, no permission, a link loop, a NUL
        is_dir, resolved = False, directory
    return desk_rules.Directory(str(directory), is_dir, str(resolved))


class Desk:
    def __init__(
        self,
        config: Config,
        chat: Fronts,  # every front end: the desk answers in each one's own words and limits
        store: Store,
        registry: SessionRegistry,
        main_channels: Mapping[str, str],  # DM channel id -> user id
    ) -> None:
        self.config = config
        self.main_channels = main_channels
        self.chat = chat
        self.store = store
        self.registry = registry
        self._lanes: dict[str, Mailbox[Reply | Command]] = {}  # place -> what it waits for
        self._new_lanes: Mailbox[str] = Mailbox()  # places whose lane has no worker yet
        # A session's name is checked free and its record saved as one step: `!new` of the
        # same name may come from two places at once.
        self._naming = trio.Lock()
        self.announcing: dict[str, SessionRecord] = {}  # root pending id -> record being announced
        self._refusal_notices = desk_rules.StateRefusalNotices()
        # Notices of a refusing disk have a lane of their own: a place's lane may be the one
        # waiting on that disk (a command's answer, before its handled mark).
        self._notices: Mailbox[Reply | Command] = Mailbox()
        # Ids of sessions whose announcement a crash cut short and the start could not
        # finish (its server refused): finished in the background, tried until it is.
        self._unfinished: Mailbox[str] = Mailbox()

    def command(self, post: Post, command: commands.MainCommand | commands.BadCommand) -> None:
        self._put(post.channel_id, Command(post, command))

    def reply(self, channel_id: str, post_id: str, message: str, *, root_id: str = "", asked_at_ms: int = 0) -> None:
        """Post `message` and then mark the post it answers handled."""
        self._put(channel_id, Reply(channel_id, message, root_id, handled=(channel_id, post_id), asked_at_ms=asked_at_ms))

    def reply_ended(self, channel_id: str, post_id: str, root_id: str, *, asked_at_ms: int = 0) -> None:
        """Answer a post in the thread of a session that has ended."""
        words = self.chat.words(channel_id)
        self.reply(channel_id, post_id, texts.ended(words), root_id=root_id, asked_at_ms=asked_at_ms)

    def state_refused(self, why: str | None) -> None:
        """The store's disk refuses the state (`why`), or takes it again (None): every main
        place is told, since the prompts posted meanwhile wait without a word."""
        text = self._refusal_notices.notice(str(self.store.directory), why, time.monotonic())
        if text is None:
            return
        for channel_id in self.main_channels:
            self._notices.put(Reply(channel_id, text))

    def _put(self, channel_id: str, item: Reply | Command) -> None:
        lane = self._lanes.get(channel_id)
        if lane is None:
            lane = self._lanes[channel_id] = Mailbox()
            self._new_lanes.put(channel_id)
        lane.put(item)

    async def run(self) -> None:
        """A worker for each place, started with the place's first item."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._serve, self._notices)
            nursery.start_soon(self._finish_unfinished)
            while True:
                channel_id = await self._new_lanes.get()
                nursery.start_soon(self._serve, self._lanes[channel_id])

    async def _serve(self, lane: Mailbox[Reply | Command]) -> None:
        while True:
            item = await lane.get()
            if isinstance(item, Reply):
                await self._post_reply(item)
                continue
            try:
                answer = await self._main_command(item.post, item.command)
            except Exception as exc:  # a defect of ours, met on this command: answered, not a crash
                # (Unanswered, its post would come again with the next start, and fail again.)
                log.exception("the command %s in %s failed", type(item.command).__name__, item.post.channel_id)
                answer = f"⚠️ That failed on a defect of the supervisor ({one_line(exc, 200)}); see its log."
            if answer is not None:
                handled = (item.post.channel_id, item.post.id)
                await self._post_reply(Reply(item.post.channel_id, answer, handled=handled, asked_at_ms=item.post.create_at))

    async def _post_reply(self, reply: Reply) -> None:
        try:
            if await self._answered_before(reply):
                log.info("the answer in %s was posted before a restart: not posted again", reply.channel_id)
            else:
                await self.chat.create_post(
                    reply.channel_id, reply.message, root_id=reply.root_id, idempotency_key=reply.idempotency_key,
                    reply_to=reply.handled[1] if reply.handled is not None else "",
                )  # fmt: skip
        except ChatError as exc:
            log.error("could not answer in %s: %s", reply.channel_id, exc)
        except Exception:  # an answer we cannot read (a proxy's?): one reply, not the supervisor
            log.exception("could not answer in %s", reply.channel_id)
        if reply.handled is not None and reply.marks:
            await self.store.mark_handled(*reply.handled)

    async def _answered_before(self, reply: Reply) -> bool:
        """An answer to a post asked longer ago than its front end surely remembers keys:
        is it there already, with its key? (Only a restart answers a post that old.)"""
        if not reply.idempotency_key or not reply.asked_at_ms:
            return False
        if time.time() * 1000 - reply.asked_at_ms < KEYS_REMEMBERED_S * 1000:
            return False
        try:
            posts = await self.chat.posts_since(reply.channel_id, reply.asked_at_ms - 1)
        except Exception as exc:  # not found then: answering twice beats not answering
            log.warning("could not look for an earlier answer in %s: %s", reply.channel_id, exc)
            return False
        me = self.chat.me.id
        return any(p.user_id == me and p.idempotency_key == reply.idempotency_key for p in posts)

    async def _main_command(self, post: Post, command: object) -> str | None:
        """The answer to post, or None when the command answered itself."""
        words = self.chat.words(post.channel_id)
        match command:
            case commands.BadCommand():
                return f"⚠️ {command.text(words)}"
            case commands.Help():
                return texts.main_help(words)
            case commands.ListSessions():
                return self.sessions_text(post.channel_id)
            case commands.NewSession(name, cwd, persona, agent, resume):
                return await self.new_session(
                    post.channel_id, post.user_id, name, cwd, persona, command=post, agent=agent, resume=resume
                )
            case commands.ListAgents():
                return await agents_text(self.registry.agents, self.registry.agent_env)
            case commands.EndSession(name):
                return await self._end_by_name(post, name or "", words)
        return texts.guidance(words)

    def sessions_text(self, channel_id: str) -> str:
        """`!sessions`, as said in `channel_id`."""
        states = {root: task.core.state.value for root, task in self.registry.tasks.items()}
        link = self.chat.for_channel(channel_id)
        return desk_rules.sessions_text(
            self.store.state.sessions.values(), states, self.chat.permalink, time.time(), link.words(channel_id),
            link.max_message_chars,
        )  # fmt: skip

    async def _end_by_name(self, post: Post, name: str, words: Words) -> str | None:
        """The refusal to post, or None: the session marks the post handled once it has
        ended (a stop before it takes the end leaves the `!end` to the next start)."""
        record = self.store.state.live_session_named(name)
        handled = (post.channel_id, post.id)
        if record is None or not self.registry.end(record.root_id, mark=handled):
            return f"⚠️ No live session is called `{name}`. {words.cmd('sessions')} lists them."
        answer = f"Ending session **{name}**: {self.chat.permalink(record.root_id)}"
        await self._post_reply(Reply(post.channel_id, answer, handled=handled, asked_at_ms=post.create_at, marks=False))
        return None

    # --- new sessions: created, announced once, finished after a crash ----------------

    async def new_session(
        self, channel_id: str, user_id: str, name: str, cwd: str | None, persona: str | None, *,
        command: Post | None = None, agent: str | None = None, resume: str | None = None,
    ) -> str | None:
        """Create a session for `command` (a `!new` post) or, without one, from the config.
        Returns the refusal to post, or None: the session answered its `!new` itself."""
        preset = self.config.personas.get(persona or "")
        agent = agent or (preset.agent if preset else "")  # a persona may name its agent
        request = desk_rules.NewSession(name, persona or "", agent or "", resume or "")
        if resume:  # the probe starts an agent: what is plainly wrong is refused before it
            directory = await self._directory(cwd)
            if isinstance(directory, str):
                return directory
            checked = desk_rules.check_new(request, directory, self._facts(channel_id))
            if isinstance(checked, desk_rules.Refused):
                return f"⚠️ {checked.reason}"
            problem = await resume_problem(self.registry.agents, agent or "", checked.cwd, resume, self.registry.agent_env)
            if problem:
                return f"⚠️ {problem}"
        async with self._naming:  # (checked again: another place may have taken the name or conversation)
            directory = await self._directory(cwd)
            if isinstance(directory, str):
                return directory
            checked = desk_rules.check_new(request, directory, self._facts(channel_id))
            if isinstance(checked, desk_rules.Refused):
                return f"⚠️ {checked.reason}"
            record = self._record(channel_id, user_id, name, checked.cwd, persona, command, agent, resume)
            # One durable write: the session exists and its `!new` is handled, together. A
            # crash before it did nothing (the `!new` is handled afresh by the next start);
            # a crash after it is finished by the next start (`recover_unannounced`). Either
            # way the command is handled once and answered once.
            await self.store.save(record, handled=(command.channel_id, command.id) if command else None)
        await self._announce(record, recovering=False)
        return None

    def _record(
        self, channel_id: str, user_id: str, name: str, directory: str, persona: str | None,
        command: Post | None, agent: str | None, resume: str | None,
    ) -> SessionRecord:
        return SessionRecord(
            id=str(uuid.uuid4()),
            name=name,
            channel_id=channel_id,
            user_id=user_id,
            cwd=directory,
            persona=persona or "",
            root_pending_id=f"{user_id}:{uuid.uuid4().hex}",
            answer_pending=command is not None,
            new_post_id=command.id if command else "",
            created_at=texts.utc_iso(time.time()),
            from_config=command is None,
            agent=self.registry.agents.record_name(agent or ""),
            agent_session_id=resume or "",
            has_history=bool(resume),
            terminal_hint=terminal_hint(self.registry.agents.named(agent or ""), resume or ""),
        )

    async def _directory(self, cwd: str | None) -> desk_rules.Directory | str:
        """What the disk says of the directory `cwd` names, or the refusal to post when it
        does not say in time: a hung network mount blocks a look in the kernel, and on the
        event loop that would freeze every session and the stop itself."""
        default = Path(self.config.agent.default_cwd)
        named = Path(cwd) if cwd else default
        with contextlib.suppress(RuntimeError):  # `~name` of nobody here: taken as written
            named = named.expanduser()
        directory = named if named.is_absolute() else default / named
        with trio.move_on_after(DIRECTORY_LOOK_S):
            return await trio.to_thread.run_sync(_look_at, directory, abandon_on_cancel=True)
        log.warning("the directory %s did not answer within %g s", directory, DIRECTORY_LOOK_S)
        return (f"⚠️ `{directory}` did not answer within {DIRECTORY_LOOK_S:g} s (a network mount that "
                "hangs?): no session was started.")

    def _facts(self, channel_id: str) -> desk_rules.DeskFacts:
        live = [record for record in self.store.state.sessions.values() if record.is_live]
        conversations = {record.agent_session_id or record.id: record.name for record in live}
        agents = tuple(self.registry.agents.agents)
        return desk_rules.DeskFacts(
            {record.name for record in live}, tuple(self.config.personas), agents, self.chat.words(channel_id),
            conversations, self.registry.agents.personas_not_taken(self.config.personas),
        )

    def unannounced(self, front: FrontEnd | None = None) -> list[SessionRecord]:
        """The live sessions of `front` (or of every open front end) whose announcement a
        crash cut short."""
        return [
            record
            for record in self.store.state.sessions.values()
            if record.is_live and (not record.root_id or record.answer_pending)
            and self.chat.serves(record.channel_id, front)
        ]

    async def recover_unannounced(self, front: FrontEnd | None = None) -> None:
        """Finish the announcements a crash cut short: a thread root that may not exist
        yet, an answer to `!new` that may not be posted. Runs before the catch-up, so that
        replies already written under such a root reach its session. Those of `front`
        (one that joins late), or of every open front end."""
        for record in self.unannounced(front):
            try:
                await self._announce(record, recovering=True)
            except Exception as exc:  # any one front end's answer must not stop the start
                log.error("could not finish announcing session %s (%s): tried again in the background",
                          record.name, one_line(exc))
                # Routable meanwhile (its thread's replies wait for it), or once its root, if
                # the catch-up brings it, is seen.
                if record.root_id:
                    self.registry.register(attrs.evolve(record, answer_pending=False))
                else:
                    self.announcing[record.root_pending_id] = record
                self._unfinished.put(record.id)

    async def _finish_unfinished(self) -> None:
        """The announcements the start could not finish, each in a task of its own: one
        whose place refuses for good must not hold up the others."""
        async with trio.open_nursery() as nursery:
            while True:
                nursery.start_soon(self._finish_one, await self._unfinished.get())

    async def _finish_one(self, session_id: str) -> None:
        """Tried until it is finished (or its session is no longer live): replies under its
        thread wait in its inbox meanwhile, rather than being taken for posts under no
        session's thread."""
        for tries in itertools.count(1):
            await trio.sleep(UNFINISHED_BACKOFF.delay(tries - 1, _jitter))
            record = self.store.state.sessions.get(session_id)
            if record is None or record not in self.unannounced():
                return
            try:
                await self._announce(record, recovering=True)
                return
            except Exception as exc:
                log.log(in_a_row_level(tries), "could not finish announcing session %s (%d tries): %s",
                        record.name, tries, one_line(exc))

    async def _announce(self, record: SessionRecord, *, recovering: bool) -> None:
        """Post the thread root, make the session routable, answer its `!new` (beside
        that post, where the front end places answers so, as it does a refusal: also
        after a crash), record that all of it is done, then launch it. Recovering, what
        already reached the server is found (`announce`), never posted twice."""
        me = self.chat.me.id
        seen: list[Post] = []
        if recovering:
            seen = await self.chat.posts_since(record.channel_id, announce.look_since_ms(record))
        root_id = record.root_id
        if not root_id:
            found = announce.find_root(seen, record, me, self._thread_root(record))
            root_id = found.id if found else await self._post_root(record)
            if not root_id:
                return
        task = self.registry.register(attrs.evolve(record, root_id=root_id, answer_pending=False))
        if record.answer_pending:
            answer = announce.started_text(task.core.record, self.chat.permalink)
            if not announce.has_answer(seen, record, me, answer):
                try:
                    await self.chat.create_post(
                        record.channel_id, answer, idempotency_key=announce.answer_pending_id(record),
                        reply_to=record.new_post_id,
                    )
                except Exception as exc:  # an answer we cannot read too: the thread is there
                    log.error("could not answer !new %s: %s", record.name, exc)
        await self.store.save(task.core.record)  # launched only now: it cannot save over this
        self.registry.launch(task, launch_now=not recovering)
        log.info("session %s %s in %s (thread %s)", record.name, "recovered" if recovering else "started", record.cwd, root_id)

    def _thread_root(self, record: SessionRecord) -> str:
        return texts.thread_root(record, self.chat.words(record.channel_id), self.registry.agents.of(record).name)

    async def _post_root(self, record: SessionRecord) -> str:
        """The new thread root's id; "" when the server refused it (the session failed)."""
        self.announcing[record.root_pending_id] = record
        try:
            root = await self.chat.open_thread(
                record.channel_id,
                self._thread_root(record),
                key=record.root_pending_id,
                title=record.name,
            )
            return root.id
        except Exception as exc:  # refused, or an answer we cannot read: failed, said so
            # Unless its post came in meanwhile (the router made its session routable):
            # the thread is there, and its session must serve it.
            if root_id := self.registry.root_of_pending(record.root_pending_id):
                log.warning("the thread root of %s is there, though posting it said: %s", record.name, exc)
                return root_id
            log.error("could not post the thread root of %s: %s", record.name, exc)
            await self.store.save(attrs.evolve(record, status="failed", answer_pending=False))
            if record.answer_pending:
                failed = f"⚠️ Could not start session **{record.name}**: {exc}"
                self._put(record.channel_id, Reply(record.channel_id, failed))
            return ""
        finally:
            self.announcing.pop(record.root_pending_id, None)

    async def create_configured_sessions(self) -> None:
        """`[[sessions]]` from the config exist from the first start on, one thread each."""
        first = self.chat.fronts[0]  # the first configured: the caller waits for it
        home = next(((c, u) for c, u in self.main_channels.items() if self.chat.serves(c, first)), None)
        if home is None:
            return
        channel_id, user_id = home
        known = {r.name for r in self.store.state.sessions.values() if r.from_config}
        for spec in self.config.sessions:
            if spec.name in known:
                continue
            refused = await self.new_session(
                channel_id, user_id, spec.name, str(spec.cwd), spec.persona or None, agent=spec.agent or None
            )
            if refused:
                log.error("configured session %s: %s", spec.name, refused)
