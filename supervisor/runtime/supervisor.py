"""The supervisor: the registry of sessions, and the shell that applies the router.

Owns: the map of thread roots to session tasks (which run in the sessions nursery, one
task per thread, each in its own cancel scope), the post -> thread index reactions need,
and the main-DM desk that answers commands one at a time. It reads chat events in order,
asks the pure router what each means, admits each post once (the store's ledger), and
hands the result to the right session. It never decides what a post means itself.

A `Supervisor` is built with the sessions nursery it starts sessions in (`open_sessions`
hands it out once open): no code path can start a session before that nursery exists.
Handing a post to a session or to the desk never blocks the router and never raises
(`runtime.mail`): a flooded thread waits on its own, and a stop goes ahead of its flood.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import attrs
import trio

from supervisor.agent import AgentBackend, AgentLaunch
from supervisor.chat import ChatError, ChatLink, ChatUser
from supervisor.config import Config
from supervisor.core import commands, texts
from supervisor.core.events import ChatEvent, Post, Posted
from supervisor.core.restart import RestartPolicy
from supervisor.core.router import (
    AnswerEnded,
    Decision,
    Guide,
    Prompt,
    React,
    Resync,
    RouterView,
    RunMainCommand,
    RunThreadCommand,
    SessionRef,
    route,
    route_post,
)
from supervisor.core.session import QueuedPrompt, SessionCore, SessionSettings
from supervisor.core.state import SessionRecord
from supervisor.runtime import announce
from supervisor.runtime.agent_process import AgentGrace
from supervisor.runtime.mail import Feed, Mailbox
from supervisor.runtime.session import (
    CommandIn,
    EndIn,
    PromptIn,
    ReactionIn,
    SessionDeps,
    SessionTask,
)
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")

POST_INDEX_SIZE = 100_000  # posts remembered for reactions; older ones fall out
AGENT_MARKER = "SUPERVISOR_STATE_DIR"  # set on every agent, so leftovers can be found
# Slots of a session's inbox the router leaves free: the session's own tasks (its poster)
# report there without waiting, and must find room even while the thread is flooded.
INBOX_HEADROOM = 100
# SIGTERM -> exit must fit in 10 s (PRODUCT). `shutdown` is done within STOP_BUDGET_S; the
# agents are gone AGENTS_BEFORE_END_S before that (the state is flushed after them); the
# rest is for closing the connection and leaving the interpreter.
STOP_BUDGET_S = 8.5
AGENTS_BEFORE_END_S = 0.7


@attrs.frozen
class _Command:
    post: Post
    command: commands.MainCommand | commands.BadCommand


@attrs.frozen
class _Reply:
    channel_id: str
    message: str
    root_id: str = ""
    handled: tuple[str, str] | None = None  # (channel, post) to mark handled once posted


class SessionsNursery:
    """The nursery every session task runs in (see `open_sessions`)."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self._nursery = nursery
        self.closed = False  # set once the nursery is gone: nothing can start in it any more
        self.done = trio.Event()

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        if self.closed:  # the supervisor is stopping: what is not handled now is next time
            log.debug("not started while stopping: %s", getattr(fn, "__name__", fn))
            return
        self._nursery.start_soon(fn, *args)

    def cancel(self) -> None:
        self._nursery.cancel_scope.cancel()


async def open_sessions(*, task_status: trio.TaskStatus[SessionsNursery] = trio.TASK_STATUS_IGNORED) -> None:
    """The sessions nursery, as a service: `started()` hands it out once it is open."""
    sessions: SessionsNursery | None = None
    try:
        async with trio.open_nursery() as nursery:
            sessions = SessionsNursery(nursery)
            task_status.started(sessions)
            await trio.sleep_forever()
    finally:
        if sessions is not None:
            sessions.closed = True
            sessions.done.set()


class Supervisor:
    def __init__(
        self,
        config: Config,
        chat: ChatLink,
        store: Store,
        backend: AgentBackend,
        allowed: Mapping[str, ChatUser],  # user id -> user
        main_channels: Mapping[str, str],  # DM channel id -> user id
        base_env: Mapping[str, str],
        sessions: SessionsNursery,
    ) -> None:
        self.config = config
        self.chat = chat
        self.store = store
        self.backend = backend
        self.allowed = allowed
        self.main_channels = main_channels
        self.sessions = sessions
        self.tasks: dict[str, SessionTask] = {}  # thread root id -> live session task
        self.refs: dict[str, SessionRef] = {}
        self._mail: dict[str, Feed[object]] = {}  # thread root id -> the way into its inbox
        self._post_thread: OrderedDict[str, str] = OrderedDict()
        self._desk: Mailbox[_Reply | _Command] = Mailbox()
        self._announcing: dict[str, SessionRecord] = {}  # root pending id -> record being announced
        self.agent_grace = AgentGrace(config.agent.shutdown_grace_s)
        self.view = RouterView(
            bot_user_id=chat.me.id,
            allowed_user_ids=frozenset(allowed),
            sessions=self.refs,
            thread_of=self._post_thread.get,
        )
        self.deps = SessionDeps(
            chat=chat,
            store=store,
            backend=backend,
            base_env={**base_env, AGENT_MARKER: str(config.state.dir)},
            shutdown_grace_s=self.agent_grace,
            edit_interval_s=config.render.edit_interval_ms / 1000,
            max_get_bytes=config.files.max_get_mb * 1_000_000,
            max_upload_bytes=config.files.max_upload_mb * 1_000_000,
            max_image_bytes=config.files.max_image_mb * 1_000_000,
            launch_for=self._launch_for,
            on_post_made=self._remember_post,
        )

    # --- sessions: registered (routable), then launched (running) ------------------

    def restore_sessions(self) -> None:
        """Every live session whose announcement is complete serves its thread again; its
        agent starts on the next message."""
        for record in self.store.state.sessions.values():
            if record.is_live and record.root_id and not record.answer_pending:
                self._launch(self._register(record), launch_now=False)

    def _register(self, record: SessionRecord) -> SessionTask:
        """Make the session routable: posts in its thread wait in its inbox from now on."""
        task = self.tasks.get(record.root_id)
        if task is not None:
            return task
        user = self.allowed.get(record.user_id)
        core = SessionCore(record, self._settings(user.username if user else ""))
        task = SessionTask(core, self.deps)
        root = record.root_id
        self.tasks[root] = task
        self.refs[root] = SessionRef(root, record.channel_id)
        self._mail[root] = Feed(
            task.inbox_send, self.sessions, headroom=INBOX_HEADROOM, on_undelivered=self._undelivered(root)
        )
        self._remember_post(root, root)
        return task

    def _launch(self, task: SessionTask, *, launch_now: bool) -> None:
        self.sessions.start_soon(self._session_lifetime, task, launch_now)

    async def _session_lifetime(self, task: SessionTask, launch_now: bool) -> None:
        root = task.core.record.root_id
        try:
            await task.run(launch_now=launch_now)
        finally:
            # Ended or failed: later posts in its thread are answered by the router.
            self.tasks.pop(root, None)
            self._mail.pop(root, None)
            self.refs[root] = SessionRef(root, task.core.record.channel_id, ended=True)

    def _settings(self, username: str) -> SessionSettings:
        agent = self.config.agent
        return SessionSettings(
            turn_timeout_s=agent.turn_timeout_s or float("inf"),
            stall_timeout_s=agent.stall_timeout_s or float("inf"),
            approval_timeout_s=agent.approval_timeout_s or float("inf"),
            idle_suspend_s=agent.idle_suspend_s,
            notify_after_s=agent.notify_after_s or float("inf"),
            interrupt_grace_s=agent.interrupt_grace_s,
            show_thinking=self.config.render.show_thinking,
            username=username,
            permalink=self.chat.permalink,
            restart=RestartPolicy(max_restarts=agent.restart_max, window_s=agent.restart_window_s),
        )

    def _launch_for(self, record: SessionRecord, resume: bool) -> AgentLaunch:
        persona = self.config.personas.get(record.persona) if record.persona else None
        return AgentLaunch(
            session_id=record.id,
            cwd=record.cwd,
            resume=resume,
            model=persona.model if persona else "",
            append_system_prompt=persona.append_system_prompt if persona else "",
            permission_mode=self.config.agent.permission_mode,
            extra_env=dict(self.config.agent.env),
        )

    def _remember_post(self, post_id: str, root_id: str) -> None:
        self._post_thread[post_id] = root_id
        if len(self._post_thread) > POST_INDEX_SIZE:
            self._post_thread.popitem(last=False)

    async def shutdown(self, deadline: float | None = None) -> None:
        """Interrupt running turns, then end every session's agent (in parallel: each session
        ends its own); the state is flushed. Done by `deadline` (trio time) whatever the
        configured grace, so that SIGTERM -> exit fits in 10 s."""
        if deadline is None:
            deadline = trio.current_time() + STOP_BUDGET_S
        self.agent_grace.stop_by(deadline - AGENTS_BEFORE_END_S)
        with trio.move_on_at(min(deadline, trio.current_time() + 1)):
            async with trio.open_nursery() as nursery:
                for task in list(self.tasks.values()):
                    nursery.start_soon(task.interrupt_for_shutdown)
        # Give interrupted turns a moment to end and their last words to reach the server.
        with trio.move_on_at(min(deadline - 2 * AGENTS_BEFORE_END_S, trio.current_time() + 2)):
            # Polls state the session tasks own; once, at shutdown, bounded by the scope.
            while any(t.core.turn or not t.outbox.is_settled() for t in self.tasks.values()):  # noqa: ASYNC110
                await trio.sleep(0.05)
        self.sessions.cancel()
        await self.sessions.done.wait()  # bounded: every agent's teardown ends by the grace's deadline
        for record in self.store.state.sessions.values():
            if record.pgid:
                self.store.save_soon(attrs.evolve(record, pgid=0))
        await self.store.flush()

    # --- routing -------------------------------------------------------------------

    async def route_events(self, events: trio.MemoryReceiveChannel[ChatEvent]) -> None:
        async with events:
            async for event in events:
                self._notice_announced_root(event)
                await self.apply(route(event, self.view))

    def _notice_announced_root(self, event: ChatEvent) -> None:
        """Our own new thread root, seen on the event stream: from here on replies to it
        may arrive, so its session must be known now, whichever of this event and the
        REST answer to its creation reaches us first. (It is launched once announced.)"""
        if isinstance(event, Posted) and event.post.pending_post_id in self._announcing:
            record = self._announcing.pop(event.post.pending_post_id)
            self._register(attrs.evolve(record, root_id=event.post.id, answer_pending=False))

    async def apply(self, decision: Decision) -> None:
        if isinstance(decision, Resync):
            await self.catch_up()
            return
        post = getattr(decision, "post", None)
        if post is not None:
            if post.channel_id not in self.main_channels:
                return
            if not self.store.admit(post.channel_id, post.id, post.create_at):
                return  # seen before: a replay, a catch-up overlap, or a restart
            self._remember_post(post.id, post.thread_id)
        match decision:
            case Prompt(session, post):
                prompt = QueuedPrompt(post.id, post.channel_id, post.message)
                self._to_session(session.root_id, PromptIn(prompt, post.file_ids), post)
            case RunThreadCommand(session, post, command):
                if isinstance(command, commands.ListSessions):
                    self._reply(post.channel_id, post.id, self._sessions_text(), root_id=post.thread_id)
                else:
                    message = CommandIn(command, post.id, post.channel_id)
                    self._to_session(session.root_id, message, post, urgent=isinstance(command, commands.Stop))
            case React(session, reaction):
                task, mail = self.tasks.get(session.root_id), self._mail.get(session.root_id)
                if task is not None and mail is not None and not task.core.state.is_final:
                    # Urgent: a 🛑 is about the turn running now, not after a flood's prompts.
                    mail.put(ReactionIn(reaction.emoji_name, reaction.post_id), urgent=True)
            case RunMainCommand(post, command):
                self._desk.put(_Command(post, command))
            case Guide(post):
                self._reply(post.channel_id, post.id, texts.GUIDANCE, root_id=post.root_id)
            case AnswerEnded(session, post):
                self._reply(post.channel_id, post.id, texts.ENDED, root_id=session.root_id)
            case _:
                log.debug("ignored: %s", decision)

    def _to_session(self, root_id: str, message: object, post: Post, *, urgent: bool = False) -> None:
        task, mail = self.tasks.get(root_id), self._mail.get(root_id)
        if task is None or mail is None or task.core.state.is_final:
            self._reply(post.channel_id, post.id, texts.ENDED, root_id=root_id)
            return
        mail.put(message, urgent=urgent)

    def _undelivered(self, root_id: str) -> Callable[[object], None]:
        """What becomes of mail for a session that ended before taking it."""

        def answer(message: object) -> None:
            match message:
                case PromptIn(prompt):
                    self._reply(prompt.channel_id, prompt.post_id, texts.ENDED, root_id=root_id)
                case CommandIn(_, post_id, channel_id):
                    self._reply(channel_id, post_id, texts.ENDED, root_id=root_id)
                case _:
                    pass  # a reaction, or an end, for a session that is over: nothing to do

        return answer

    def _reply(self, channel_id: str, post_id: str, message: str, *, root_id: str = "") -> None:
        self._desk.put(_Reply(channel_id, message, root_id, handled=(channel_id, post_id)))

    async def catch_up(self) -> None:
        """Fetch what was posted while we were away, and handle it in order, once."""
        for channel_id in self.main_channels:
            self.store.ledger.begin(channel_id, int(time.time() * 1000))
            since = self.store.ledger.catch_up_since(channel_id)
            try:
                posts = await self.chat.posts_since(channel_id, since)
            except ChatError as exc:
                log.error("catch-up of channel %s failed: %s", channel_id, exc)
                continue
            fresh = [p for p in posts if p.create_at > since and not p.delete_at]
            log.info("catch-up: %d post(s) in %s since %d", len(fresh), channel_id, since)
            for post in sorted(fresh, key=lambda p: (p.create_at, p.id)):
                await self.apply(route_post(post, self.view))

    # --- the main-DM desk: commands and replies, one at a time ----------------------

    async def desk(self) -> None:
        while True:
            item = await self._desk.get()
            if isinstance(item, _Reply):
                await self._post_reply(item)
                continue
            answer = await self._main_command(item.post, item.command)
            if answer is not None:
                handled = (item.post.channel_id, item.post.id)
                await self._post_reply(_Reply(item.post.channel_id, answer, handled=handled))

    async def _post_reply(self, reply: _Reply) -> None:
        try:
            await self.chat.create_post(reply.channel_id, reply.message, root_id=reply.root_id)
        except ChatError as exc:
            log.error("could not answer in %s: %s", reply.channel_id, exc)
        if reply.handled is not None:
            await self.store.mark_handled(*reply.handled)

    async def _main_command(self, post: Post, command: object) -> str | None:
        """The answer to post, or None when the command answered itself."""
        match command:
            case commands.BadCommand(reason):
                return f"⚠️ {reason}"
            case commands.Help():
                return texts.HELP
            case commands.ListSessions():
                return self._sessions_text()
            case commands.NewSession(name, cwd, persona):
                return await self.new_session(post.channel_id, post.user_id, name, cwd, persona, command=post)
            case commands.EndSession(name):
                return self._end_by_name(name or "")
        return texts.GUIDANCE

    def _sessions_text(self) -> str:
        rows = []
        for record in sorted(self.store.state.sessions.values(), key=lambda r: r.created_at):
            if not record.root_id:
                continue
            task = self.tasks.get(record.root_id)
            state = task.core.state.value if task else record.status
            rows.append(
                texts.SessionRow(record.name, state, record.cwd, record.created_at, self.chat.permalink(record.root_id))
            )
        return texts.sessions_table(rows, texts.utc_iso(time.time()))

    def _end_by_name(self, name: str) -> str:
        record = self.store.state.live_session_named(name)
        mail = self._mail.get(record.root_id) if record else None
        if record is None or mail is None:
            return f"⚠️ No live session is called `{name}`. `!sessions` lists them."
        mail.put(EndIn())
        return f"Ending session **{name}**: {self.chat.permalink(record.root_id)}"

    # --- new sessions: created, announced once, finished after a crash ----------------

    async def new_session(
        self, channel_id: str, user_id: str, name: str, cwd: str | None, persona: str | None, *, command: Post | None = None
    ) -> str | None:
        """Create a session for `command` (a `!new` post) or, without one, from the config.
        Returns the refusal to post, or None: the session answered its `!new` itself."""
        problem, directory = self._check_new(name, cwd, persona)
        if problem:
            return f"⚠️ {problem}"
        record = SessionRecord(
            id=str(uuid.uuid4()),
            name=name,
            channel_id=channel_id,
            user_id=user_id,
            cwd=str(directory),
            persona=persona or "",
            root_pending_id=f"{user_id}:{uuid.uuid4().hex}",
            answer_pending=command is not None,
            created_at=texts.utc_iso(time.time()),
            from_config=command is None,
        )
        # One durable write: the session exists and its `!new` is handled, together. A crash
        # before it did nothing (the `!new` is handled afresh by the next start); a crash
        # after it is finished by the next start (`recover_unannounced`). Either way the
        # command is handled once and answered once.
        await self.store.save(record, handled=(command.channel_id, command.id) if command else None)
        await self._announce(record, recovering=False)
        return None

    def _check_new(self, name: str, cwd: str | None, persona: str | None) -> tuple[str, Path]:
        directory = Path(cwd).expanduser() if cwd else Path(self.config.agent.default_cwd)
        if self.store.state.live_session_named(name):
            return f"A live session is already called `{name}`; pick another name or `!end {name}` first.", directory
        if persona and persona not in self.config.personas:
            known = ", ".join(f"`{p}`" for p in self.config.personas) or "none are configured"
            return f"There is no persona `{persona}` ({known}).", directory
        if not directory.is_absolute():
            directory = Path(self.config.agent.default_cwd) / directory
        if not directory.is_dir():
            return f"`{directory}` is not an existing directory.", directory
        return "", directory.resolve()

    async def recover_unannounced(self) -> None:
        """Finish the announcements a crash cut short: a thread root that may not exist
        yet, an answer to `!new` that may not be posted. Runs before the catch-up, so that
        replies already written under such a root reach its session."""
        for record in list(self.store.state.sessions.values()):
            if not record.is_live or (record.root_id and not record.answer_pending):
                continue
            try:
                await self._announce(record, recovering=True)
            except ChatError as exc:
                log.error("could not finish announcing session %s (%s); the next start tries again", record.name, exc)

    async def _announce(self, record: SessionRecord, *, recovering: bool) -> None:
        """Post the thread root, make the session routable, answer its `!new`, record that
        all of it is done, then launch it. Recovering, what already reached the server is
        found (`announce`), never posted twice."""
        me = self.chat.me.id
        seen: list[Post] = []
        if recovering:
            seen = await self.chat.posts_since(record.channel_id, announce.look_since_ms(record))
        root_id = record.root_id
        if not root_id:
            found = announce.find_root(seen, record, me)
            root_id = found.id if found else await self._post_root(record)
            if not root_id:
                return
        task = self._register(attrs.evolve(record, root_id=root_id, answer_pending=False))
        if record.answer_pending:
            answer = announce.started_text(task.core.record, self.chat.permalink)
            if not announce.has_answer(seen, record, me, answer):
                try:
                    await self.chat.create_post(
                        record.channel_id, answer, pending_post_id=announce.answer_pending_id(record)
                    )
                except ChatError as exc:
                    log.error("could not answer !new %s: %s", record.name, exc)
        await self.store.save(task.core.record)  # launched only now: it cannot save over this
        self._launch(task, launch_now=not recovering)
        log.info("session %s %s in %s (thread %s)", record.name, "recovered" if recovering else "started", record.cwd, root_id)

    async def _post_root(self, record: SessionRecord) -> str:
        """The new thread root's id; "" when the server refused it (the session failed)."""
        self._announcing[record.root_pending_id] = record
        try:
            root = await self.chat.create_post(
                record.channel_id, texts.thread_root(record), pending_post_id=record.root_pending_id
            )
            return root.id
        except ChatError as exc:
            log.error("could not post the thread root of %s: %s", record.name, exc)
            await self.store.save(attrs.evolve(record, status="failed", answer_pending=False))
            if record.answer_pending:
                self._desk.put(_Reply(record.channel_id, f"⚠️ Could not start session **{record.name}**: {exc}"))
            return ""
        finally:
            self._announcing.pop(record.root_pending_id, None)

    async def create_configured_sessions(self) -> None:
        """`[[sessions]]` from the config exist from the first start on, one thread each."""
        if not self.main_channels:
            return
        channel_id, user_id = next(iter(self.main_channels.items()))
        known = {r.name for r in self.store.state.sessions.values() if r.from_config}
        for spec in self.config.sessions:
            if spec.name in known:
                continue
            refused = await self.new_session(channel_id, user_id, spec.name, str(spec.cwd), spec.persona or None)
            if refused:
                log.error("configured session %s: %s", spec.name, refused)
