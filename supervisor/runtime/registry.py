"""The registry of live sessions: which thread has a running session, and the way into it.

Owns: the map of thread roots to session tasks (which run in the sessions nursery, one
task per thread, each in its own cancel scope), the way into each session's inbox, the
settings each session gets from the config, and the stop of them all. Sessions are first
registered (routable: their thread's posts wait in their inbox), then launched (running).

It never decides what a post means (the router does) nor answers anyone itself: mail for a
session that ended before taking it goes to `answer_ended`. Handing a session its mail
never blocks and never raises (`runtime.mail`): a flooded thread waits on its own, and a
stop goes ahead of its flood.

A registry is built with the sessions nursery it starts sessions in (`open_sessions`
hands it out once open): no code path can start a session before that nursery exists.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import attrs
import trio

from supervisor.agent import AgentBackend
from supervisor.agent.registry import Agent, AgentRegistry
from supervisor.chat import ChatLink, ChatUser
from supervisor.chat.fronts import FrontEnd, Fronts
from supervisor.config import Config
from supervisor.core.restart import RestartPolicy
from supervisor.core.router import SessionRef
from supervisor.core.session import SessionCore, SessionSettings
from supervisor.core.state import SessionRecord
from supervisor.runtime.agent_process import AgentGrace
from supervisor.runtime.mail import Feed
from supervisor.runtime.reaper import agent_environment
from supervisor.runtime.session import SessionDeps, SessionTask
from supervisor.runtime.session_inbox import (
    INBOX_HEADROOM,
    CommandIn,
    EndIn,
    PromptIn,
    SessionInput,
    SessionMessage,
)
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")

# SIGTERM -> exit must fit in 10 s (PRODUCT). `shutdown` is done within STOP_BUDGET_S; the
# agents are gone AGENTS_BEFORE_END_S before that (the state is flushed after them); the
# rest is for closing the connection and leaving the interpreter.
STOP_BUDGET_S = 8.5
AGENTS_BEFORE_END_S = 0.7
Offer = tuple[str, str, bool]  # a post offering a choice: place, post id, a permission request?

# (channel id, post id, thread root id) of a post whose session ended before taking it
AnswerEnded = Callable[[str, str, str], None]


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


class SessionRegistry:
    """Invariant: a root is in `tasks` exactly while it is in `_mail`, and then its
    `refs` entry is not ended; a root whose session is over keeps an ended `refs` entry."""

    def __init__(
        self,
        config: Config,
        chat: Fronts,
        store: Store,
        backend: AgentBackend,
        allowed: Mapping[str, ChatUser],  # user id -> user
        base_env: Mapping[str, str],
        sessions: SessionsNursery,
        agents: AgentRegistry,
        *,
        on_post_made: Callable[[str, str], None],  # (post id, thread root id): the router's index
        answer_ended: AnswerEnded,
    ) -> None:
        self.config = config
        self.agents = agents
        self.chat = chat
        self.store = store
        self.allowed = allowed
        self.sessions = sessions
        self.tasks: dict[str, SessionTask] = {}  # thread root id -> live session task
        self.stopping = False  # `shutdown` began: no session launches any more
        self.refs: dict[str, SessionRef] = {}  # thread root id -> what the router knows of it
        self._mail: dict[str, Feed[SessionMessage]] = {}  # thread root id -> the way into its inbox
        self._on_post_made = on_post_made
        self._answer_ended = answer_ended
        self.agent_grace = AgentGrace(config.agent.shutdown_grace_s)
        self.deps = SessionDeps(
            chat=chat,
            store=store,
            backend=backend,
            base_env=agent_environment(base_env, config.state.dir),
            shutdown_grace_s=self.agent_grace,
            edit_interval_s=config.render.edit_interval_ms / 1000,
            max_get_bytes=config.files.max_get_mb * 1_000_000,
            max_upload_bytes=config.files.max_upload_mb * 1_000_000,
            max_image_bytes=config.files.max_image_mb * 1_000_000,
            launch_for=agents.launch_for,
            on_post_made=on_post_made,
            agent_backend=agents.backend_of,
        )

    @property
    def agent_env(self) -> Mapping[str, str]:
        return self.deps.base_env

    # --- sessions: registered (routable), then launched (running) ------------------

    def restore_sessions(self, front: FrontEnd | None = None) -> None:
        """Every live session whose announcement is complete serves its thread again; its
        agent starts on the next message. An ended session's thread answers "this session
        has ended". Those of `front` (one that joins late), or of every open front end."""
        for record in self.store.state.sessions.values():
            if not self.chat.serves(record.channel_id, front):
                continue
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
        settings = self._settings(user.username if user else "", self.agents.of(record), link, record.channel_id)
        core = SessionCore(record, settings)
        task = SessionTask(core, attrs.evolve(self.deps, chat=link))
        root = record.root_id
        self.tasks[root] = task
        self.refs[root] = SessionRef(root, record.channel_id)
        self._mail[root] = Feed(
            task.inbox_send, self.sessions, headroom=INBOX_HEADROOM, on_undelivered=self._undelivered(root)
        )
        self._on_post_made(root, root)
        return task

    def root_of_pending(self, root_pending_id: str) -> str:
        """The thread root under which a session being announced was registered, once its
        post came in (`root_pending_id`: the key it was posted with); "" before."""
        return next((root for root, t in self.tasks.items() if t.core.record.root_pending_id == root_pending_id), "")

    def launch(self, task: SessionTask, *, launch_now: bool) -> None:
        if self.stopping:  # its record is saved: the next start serves it, as a restored one
            log.info("session %s: launched at the next start (stopping)", task.core.record.name)
            return
        self.sessions.start_soon(self._session_lifetime, task, launch_now)

    def end(self, root_id: str, *, mark: tuple[str, str] | None = None) -> bool:
        """Ask a live session to end; False when there is none. `mark`: the post that
        asked (channel id, post id), marked handled once the session has ended."""
        mail = self._mail.get(root_id)
        if mail is not None:
            mail.put(EndIn(mark))
        return mail is not None

    def deliver(self, root_id: str, message: SessionInput, *, urgent: bool = False) -> bool:
        """Hand a live session its mail; False (and nothing sent) when its session is over."""
        task, mail = self.tasks.get(root_id), self._mail.get(root_id)
        if task is None or mail is None or task.core.state.is_final:
            return False
        mail.put(message, urgent=urgent)
        return True

    def offering(self) -> list[Offer]:
        """Every post the live sessions offer a choice on and wait for: its place, its id,
        and whether it is a pending permission request (else a rerun offer)."""
        return [
            (task.core.record.channel_id, post_id, post_id in task.core.permission_posts)
            for task in self.tasks.values()
            if not task.core.state.is_final
            for post_id in (*task.core.permission_posts, *task.core.record.rerun_offers)
        ]

    def thread_offering(self, post_id: str) -> str | None:
        """The thread whose live session offered a choice on `post_id`, if any."""
        for root, task in self.tasks.items():
            if post_id in task.core.permission_posts or post_id in task.core.record.rerun_offers:
                return root
        return None

    async def _session_lifetime(self, task: SessionTask, launch_now: bool) -> None:
        root = task.core.record.root_id
        try:
            await task.run(launch_now=launch_now)
        except Exception as exc:  # a defect of ours in this session: it alone ends
            log.exception("session %s failed on a defect", task.name)
            await task.failed_on_defect(exc)
        finally:
            self.tasks.pop(root, None)
            self._mail.pop(root, None)
            if not self.stopping or task.core.state.is_final:
                # Ended or failed: later posts in its thread are answered by the router, and
                # what waited in its inbox is answered here. (Ended by the stop, it serves
                # its thread again at the next start, which catches up what it never took.)
                self.refs[root] = SessionRef(root, task.core.record.channel_id, ended=True)
                for message in task.left_over:
                    self._undelivered(root)(message)

    def _settings(self, username: str, of: Agent, link: ChatLink, channel_id: str) -> SessionSettings:
        agent = of.settings
        return SessionSettings(
            agent_name=of.name,
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
            words=link.words(channel_id),
            max_message_chars=link.max_message_chars,
            typing_every_s=link.typing_every_s,
            restart=RestartPolicy(max_restarts=agent.restart_max, window_s=agent.restart_window_s),
        )

    def _undelivered(self, root_id: str) -> Callable[[object], None]:
        """What becomes of mail for a session that ended before taking it."""

        def answer(message: object) -> None:
            if self.stopping:
                return  # neither answered nor marked handled: the next start catches it up
            match message:
                case PromptIn(prompt):
                    self._answer_ended(prompt.channel_id, prompt.post_id, root_id)
                case CommandIn(_, post_id, channel_id):
                    self._answer_ended(channel_id, post_id, root_id)
                case EndIn(mark) if mark is not None:
                    self.store.handled(*mark)  # ended already: nothing more to do for it
                case _:
                    pass  # a reaction, or an end, for a session that is over: nothing to do

        return answer

    # --- the stop ------------------------------------------------------------------

    async def shutdown(self, deadline: float | None = None) -> None:
        """Interrupt running turns, then end every session's agent (in parallel: each session
        ends its own); the state is flushed. Done by `deadline` (trio time) whatever the
        configured grace, so that SIGTERM -> exit fits in 10 s."""
        if deadline is None:
            deadline = trio.current_time() + STOP_BUDGET_S
        # A session announced from now on (a `!new`, a new `[[sessions]]` entry, while the
        # router and the desk still run) would start an agent only to end it.
        self.stopping = True
        self.agent_grace.stop_by(deadline - AGENTS_BEFORE_END_S)
        for task in list(self.tasks.values()):
            task.stopping()
        # Give interrupted turns a moment to end and their last words to reach the server,
        # and each session the moment to hear so (`settling`): its poster's news waits in
        # its inbox, and unheard, its prompt stays unsettled, so the next start would post a
        # whole answer again. A `!get` file on its way too: its `!get` is handled already.
        with trio.move_on_at(min(deadline - 2 * AGENTS_BEFORE_END_S, trio.current_time() + 2)):
            # Polls state the session tasks own; once, at shutdown, bounded by the scope.
            while any(t.core.turn or t.core.settling or t.sending_files or not t.outbox.is_settled()  # noqa: ASYNC110
                      for t in self.tasks.values()):
                await trio.sleep(0.05)
        self.sessions.cancel()
        await self.sessions.done.wait()  # bounded: every agent's teardown ends by the grace's deadline
        if self.store.refusing:  # a full disk: nothing waits for this flush, so no waiting
            log.warning("stopping without writing the state: the disk refuses it (nothing that "
                        "was acknowledged is lost)")
            return
        # What the sessions saved last is applied first: the records below must be those,
        # or their older copies would overwrite them in the same write (a settled prompt
        # unsettled again).
        await self.store.flush()
        for record in self.store.state.sessions.values():
            if record.pgid:
                self.store.save_soon(attrs.evolve(record, pgid=0))
        await self.store.flush()
