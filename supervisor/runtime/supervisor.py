"""The supervisor: the registry of sessions, and the shell that applies the router.

Owns: the map of thread roots to session tasks (which run in the sessions nursery, one
task per thread, each in its own cancel scope), the way into each session's inbox, the
post -> thread index reactions need, and the stop. The main DM's commands and every reply
go to the desk (`runtime.desk`), which answers one at a time. It reads chat events in order,
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
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping

import attrs
import trio

from supervisor.agent import AgentBackend
from supervisor.agent.registry import AgentRegistry
from supervisor.chat import ChatError, ChatLink, ChatUser
from supervisor.chat.fronts import Fronts
from supervisor.config import AgentConfig, Config
from supervisor.core import commands, texts
from supervisor.core.events import ChatEvent, Post, Posted
from supervisor.core.restart import RestartPolicy
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
    SessionRef,
    Wake,
    route,
    route_post,
)
from supervisor.core.session import QueuedPrompt, SessionCore, SessionSettings
from supervisor.core.state import SessionRecord
from supervisor.runtime.agent_process import AgentGrace
from supervisor.runtime.desk import Desk
from supervisor.runtime.mail import Feed
from supervisor.runtime.session import SessionDeps, SessionTask
from supervisor.runtime.session_inbox import ChoiceIn, CommandIn, EndIn, PromptIn, WakeIn
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")

# Recent posts remembered for a stop made on any of them; older ones fall out. Posts that
# offer a choice (permission requests, rerun offers) are found through their session.
POST_INDEX_SIZE = 5_000
AGENT_MARKER = "SUPERVISOR_STATE_DIR"  # set on every agent, so leftovers can be found
# Slots of a session's inbox the router leaves free: the session's own tasks (its poster)
# report there without waiting, and must find room even while the thread is flooded.
INBOX_HEADROOM = 100
# SIGTERM -> exit must fit in 10 s (PRODUCT). `shutdown` is done within STOP_BUDGET_S; the
# agents are gone AGENTS_BEFORE_END_S before that (the state is flushed after them); the
# rest is for closing the connection and leaving the interpreter.
STOP_BUDGET_S = 8.5
AGENTS_BEFORE_END_S = 0.7


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
        chat: Fronts,
        store: Store,
        backend: AgentBackend,
        allowed: Mapping[str, ChatUser],  # user id -> user
        main_channels: Mapping[str, str],  # DM channel id -> user id
        base_env: Mapping[str, str],
        sessions: SessionsNursery,
        agents: AgentRegistry | None = None,
    ) -> None:
        self.config = config
        self.agents = agents or AgentRegistry(config)
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
        self.desk = Desk(config, chat, store, self, main_channels)
        self.agent_grace = AgentGrace(config.agent.shutdown_grace_s)
        self.view = RouterView(
            bot_user_id=chat.me.id,
            allowed_user_ids=frozenset(allowed),
            sessions=self.refs,
            thread_of=self._thread_of,
            places=frozenset(main_channels),
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
            launch_for=self.agents.launch_for,
            on_post_made=self._remember_post,
            agent_backend=self.agents.backend_of,
        )

    @property
    def agent_env(self) -> Mapping[str, str]:
        return self.deps.base_env

    # --- sessions: registered (routable), then launched (running) ------------------

    def restore_sessions(self) -> None:
        """Every live session whose announcement is complete serves its thread again; its
        agent starts on the next message. An ended session's thread answers "this session
        has ended"."""
        for record in self.store.state.sessions.values():
            if record.is_live and record.root_id and not record.answer_pending:
                self.launch(self.register(record), launch_now=False)
            elif record.root_id and not record.is_live:
                self.refs[record.root_id] = SessionRef(record.root_id, record.channel_id, ended=True)

    def register(self, record: SessionRecord) -> SessionTask:
        """Make the session routable: posts in its thread wait in its inbox from now on."""
        task = self.tasks.get(record.root_id)
        if task is not None:
            return task
        user = self.allowed.get(record.user_id)
        # The session talks to its own front end: its legend, links and request budget.
        link = self.chat.for_channel(record.channel_id)
        core = SessionCore(record, self._settings(user.username if user else "", self.agents.of(record).settings, link))
        task = SessionTask(core, attrs.evolve(self.deps, chat=link))
        root = record.root_id
        self.tasks[root] = task
        self.refs[root] = SessionRef(root, record.channel_id)
        self._mail[root] = Feed(
            task.inbox_send, self.sessions, headroom=INBOX_HEADROOM, on_undelivered=self._undelivered(root)
        )
        self._remember_post(root, root)
        return task

    def launch(self, task: SessionTask, *, launch_now: bool) -> None:
        self.sessions.start_soon(self._session_lifetime, task, launch_now)

    def end(self, root_id: str) -> bool:
        mail = self._mail.get(root_id)
        if mail is not None:
            mail.put(EndIn())
        return mail is not None

    async def _session_lifetime(self, task: SessionTask, launch_now: bool) -> None:
        root = task.core.record.root_id
        try:
            await task.run(launch_now=launch_now)
        finally:
            # Ended or failed: later posts in its thread are answered by the router.
            self.tasks.pop(root, None)
            self._mail.pop(root, None)
            self.refs[root] = SessionRef(root, task.core.record.channel_id, ended=True)

    def _settings(self, username: str, agent: AgentConfig, link: ChatLink) -> SessionSettings:
        return SessionSettings(
            turn_timeout_s=agent.turn_timeout_s or float("inf"),
            stall_timeout_s=agent.stall_timeout_s or float("inf"),
            approval_timeout_s=agent.approval_timeout_s or float("inf"),
            idle_suspend_s=agent.idle_suspend_s,
            notify_after_s=agent.notify_after_s or float("inf"),
            interrupt_grace_s=agent.interrupt_grace_s,
            show_thinking=self.config.render.show_thinking,
            username=username,
            permalink=link.permalink,
            legend=link.choice_legend,
            restart=RestartPolicy(max_restarts=agent.restart_max, window_s=agent.restart_window_s),
        )

    def _thread_of(self, post_id: str) -> str | None:
        """The thread a post belongs to: a recent one from the index, an older one that
        still offers a choice from the session that offered it."""
        root = self._post_thread.get(post_id)
        if root is not None:
            return root
        for root, task in self.tasks.items():
            if post_id in task.core.permission_posts or post_id in task.core.record.rerun_offers:
                return root
        return None

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
        if isinstance(event, Posted) and event.post.idempotency_key in self.desk.announcing:
            record = self.desk.announcing.pop(event.post.idempotency_key)
            self.register(attrs.evolve(record, root_id=event.post.id, answer_pending=False))

    async def apply(self, decision: Decision) -> None:
        if isinstance(decision, Resync):
            await self.catch_up()
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
            self._remember_post(post.id, post.thread_id)
        match decision:
            case Prompt(session, post):
                prompt = QueuedPrompt(post.id, post.channel_id, post.message)
                self._to_session(session.root_id, PromptIn(prompt, post.file_ids), post)
            case RunThreadCommand(session, post, command):
                if isinstance(command, commands.ListSessions):
                    self.desk.reply(post.channel_id, post.id, self.desk.sessions_text(), root_id=post.thread_id)
                else:
                    message = CommandIn(command, post.id, post.channel_id)
                    self._to_session(session.root_id, message, post, urgent=isinstance(command, commands.Stop))
            case Choose(session, choice):
                task, mail = self.tasks.get(session.root_id), self._mail.get(session.root_id)
                if task is not None and mail is not None and not task.core.state.is_final:
                    # Urgent: a 🛑 is about the turn running now, not after a flood's prompts.
                    mail.put(ChoiceIn(choice.kind, choice.post_id), urgent=True)
            case Wake(session):
                if (mail := self._mail.get(session.root_id)) is not None:
                    mail.put(WakeIn())
            case RunMainCommand(post, command):
                self.desk.command(post, command)
            case Guide(post):
                self.desk.reply(post.channel_id, post.id, texts.GUIDANCE, root_id=post.root_id)
            case AnswerEnded(session, post):
                self.desk.reply(post.channel_id, post.id, texts.ENDED, root_id=session.root_id)
            case _:
                log.debug("ignored: %s", decision)

    def _to_session(self, root_id: str, message: object, post: Post, *, urgent: bool = False) -> None:
        task, mail = self.tasks.get(root_id), self._mail.get(root_id)
        if task is None or mail is None or task.core.state.is_final:
            self.desk.reply(post.channel_id, post.id, texts.ENDED, root_id=root_id)
            return
        mail.put(message, urgent=urgent)

    def _undelivered(self, root_id: str) -> Callable[[object], None]:
        """What becomes of mail for a session that ended before taking it."""

        def answer(message: object) -> None:
            match message:
                case PromptIn(prompt):
                    self.desk.reply(prompt.channel_id, prompt.post_id, texts.ENDED, root_id=root_id)
                case CommandIn(_, post_id, channel_id):
                    self.desk.reply(channel_id, post_id, texts.ENDED, root_id=root_id)
                case _:
                    pass  # a reaction, or an end, for a session that is over: nothing to do

        return answer

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
            fresh = [p for p in posts if p.create_at > since]
            log.info("catch-up: %d post(s) in %s since %d", len(fresh), channel_id, since)
            for post in sorted(fresh, key=lambda p: (p.create_at, p.id)):
                await self.apply(route_post(post, self.view))

