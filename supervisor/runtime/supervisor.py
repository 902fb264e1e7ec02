"""The supervisor: the registry of sessions, and the shell that applies the router.

Owns: the sessions nursery (one task per thread, each in its own cancel scope), the map
of thread roots to session tasks, the post -> thread index reactions need, and the main-DM
desk that answers commands one at a time. It reads chat events in order, asks the pure
router what each means, admits each post once (the store's ledger), and hands the result
to the right session. It never decides what a post means itself.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
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


@attrs.frozen
class _Command:
    post: Post
    command: commands.MainCommand | commands.BadCommand


@attrs.frozen
class _Reply:
    channel_id: str
    message: str
    root_id: str = ""
    handled: Post | None = None  # mark this post handled once the reply is posted


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
    ) -> None:
        self.config = config
        self.chat = chat
        self.store = store
        self.backend = backend
        self.allowed = allowed
        self.main_channels = main_channels
        self.tasks: dict[str, SessionTask] = {}  # thread root id -> live session task
        self.refs: dict[str, SessionRef] = {}
        self._post_thread: OrderedDict[str, str] = OrderedDict()
        self._desk_send, self._desk_inbox = trio.open_memory_channel[object](10_000)
        self._sessions_nursery: trio.Nursery | None = None
        self._sessions_done = trio.Event()
        self._announcing: dict[str, SessionRecord] = {}  # root pending id -> record being announced
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
            shutdown_grace_s=config.agent.shutdown_grace_s,
            edit_interval_s=config.render.edit_interval_ms / 1000,
            max_get_bytes=config.files.max_get_mb * 1_000_000,
            max_upload_bytes=config.files.max_upload_mb * 1_000_000,
            max_image_bytes=config.files.max_image_mb * 1_000_000,
            launch_for=self._launch_for,
            on_post_made=self._remember_post,
        )

    # --- the sessions nursery ------------------------------------------------------

    async def run_sessions(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._sessions_nursery = nursery
                for record in self.store.state.sessions.values():
                    if record.is_live and record.root_id:
                        self._start_session(record, launch_now=False)
                    elif record.root_id:  # its thread answers "this session has ended"
                        self.refs[record.root_id] = SessionRef(record.root_id, record.channel_id, ended=True)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._sessions_done.set()

    def _start_session(self, record: SessionRecord, *, launch_now: bool) -> None:
        assert self._sessions_nursery is not None
        if record.root_id in self.tasks:
            return
        user = self.allowed.get(record.user_id)
        core = SessionCore(record, self._settings(user.username if user else ""))
        task = SessionTask(core, self.deps)
        self.tasks[record.root_id] = task
        self.refs[record.root_id] = SessionRef(record.root_id, record.channel_id)
        self._remember_post(record.root_id, record.root_id)
        self._sessions_nursery.start_soon(self._session_lifetime, task, launch_now)

    async def _session_lifetime(self, task: SessionTask, launch_now: bool) -> None:
        root = task.core.record.root_id
        try:
            await task.run(launch_now=launch_now)
        finally:
            # Ended or failed: later posts in its thread are answered by the router.
            self.tasks.pop(root, None)
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

    async def shutdown(self) -> None:
        """Interrupt running turns, then end every session's agent; the state is flushed."""
        with trio.move_on_after(1):
            async with trio.open_nursery() as nursery:
                for task in list(self.tasks.values()):
                    nursery.start_soon(task.interrupt_for_shutdown)
        # Give interrupted turns a moment to end and their last words to reach the server.
        with trio.move_on_after(2):
            # Polls state the session tasks own; once, at shutdown, bounded by the scope.
            while any(t.core.turn or not t.outbox.is_settled() for t in self.tasks.values()):  # noqa: ASYNC110
                await trio.sleep(0.05)
        if self._sessions_nursery is not None:
            self._sessions_nursery.cancel_scope.cancel()
        await self._sessions_done.wait()
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
        REST answer to its creation reaches us first."""
        if isinstance(event, Posted) and event.post.pending_post_id in self._announcing:
            record = self._announcing.pop(event.post.pending_post_id)
            self._start_session(attrs.evolve(record, root_id=event.post.id), launch_now=True)

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
                    self._reply(post, self._sessions_text(), root_id=post.thread_id)
                else:
                    self._to_session(session.root_id, CommandIn(command, post.id, post.channel_id), post)
            case React(session, reaction):
                task = self.tasks.get(session.root_id)
                if task is not None and not task.core.state.is_final:
                    with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                        task.inbox_send.send_nowait(ReactionIn(reaction.emoji_name, reaction.post_id))
            case RunMainCommand(post, command):
                self._desk_send.send_nowait(_Command(post, command))
            case Guide(post):
                self._reply(post, texts.GUIDANCE, root_id=post.root_id)
            case AnswerEnded(session, post):
                self._reply(post, texts.ENDED, root_id=session.root_id)
            case _:
                log.debug("ignored: %s", decision)

    def _to_session(self, root_id: str, message: object, post: Post) -> None:
        task = self.tasks.get(root_id)
        if task is None or task.core.state.is_final:
            self._reply(post, texts.ENDED, root_id=root_id)
            return
        try:
            task.inbox_send.send_nowait(message)
        except trio.BrokenResourceError:  # it ended a moment ago
            self._reply(post, texts.ENDED, root_id=root_id)
        except trio.WouldBlock:
            log.error("session %s is overwhelmed; dropped post %s", task.name, post.id)

    def _reply(self, post: Post, message: str, *, root_id: str = "") -> None:
        self._desk_send.send_nowait(_Reply(post.channel_id, message, root_id, handled=post))

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
        async with self._desk_inbox:
            async for item in self._desk_inbox:
                if isinstance(item, _Reply):
                    await self._post_reply(item)
                elif isinstance(item, _Command):
                    answer = await self._main_command(item.post, item.command)
                    await self._post_reply(_Reply(item.post.channel_id, answer, handled=item.post))

    async def _post_reply(self, reply: _Reply) -> None:
        try:
            await self.chat.create_post(reply.channel_id, reply.message, root_id=reply.root_id)
        except ChatError as exc:
            log.error("could not answer in %s: %s", reply.channel_id, exc)
        if reply.handled is not None:
            await self.store.mark_handled(reply.handled.channel_id, reply.handled.id)

    async def _main_command(self, post: Post, command: object) -> str:
        match command:
            case commands.BadCommand(reason):
                return f"⚠️ {reason}"
            case commands.Help():
                return texts.HELP
            case commands.ListSessions():
                return self._sessions_text()
            case commands.NewSession(name, cwd, persona):
                return await self.new_session(post.channel_id, post.user_id, name, cwd, persona)
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
        task = self.tasks.get(record.root_id) if record else None
        if record is None or task is None:
            return f"⚠️ No live session is called `{name}`. `!sessions` lists them."
        task.inbox_send.send_nowait(EndIn())
        return f"Ending session **{name}**: {self.chat.permalink(record.root_id)}"

    async def new_session(
        self, channel_id: str, user_id: str, name: str, cwd: str | None, persona: str | None, *, from_config: bool = False
    ) -> str:
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
            created_at=texts.utc_iso(time.time()),
            from_config=from_config,
        )
        # Durable before announced: a crash after this line finds the record and the
        # root post (by its pending id) on the next start.
        await self.store.save(record)
        self._announcing[record.root_pending_id] = record
        root = await self.chat.create_post(channel_id, texts.thread_root(record), pending_post_id=record.root_pending_id)
        self._announcing.pop(record.root_pending_id, None)
        record = attrs.evolve(record, root_id=root.id)
        self._start_session(record, launch_now=True)
        await self.store.save(record)
        log.info("session %s started in %s (thread %s)", name, record.cwd, root.id)
        return f"Started session **{name}** in `{record.cwd}`: {self.chat.permalink(root.id)}"

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
        """Finish sessions whose record was saved but whose thread root may not exist."""
        for record in list(self.store.state.sessions.values()):
            if record.root_id or not record.is_live:
                continue
            since = int(time.time() * 1000) - 86_400_000
            posts = await self.chat.posts_since(record.channel_id, since)
            root = next((p for p in posts if p.pending_post_id == record.root_pending_id), None)
            if root is None:
                root = await self.chat.create_post(
                    record.channel_id, texts.thread_root(record), pending_post_id=record.root_pending_id
                )
            record = attrs.evolve(record, root_id=root.id)
            await self.store.save(record)
            self._start_session(record, launch_now=False)

    async def create_configured_sessions(self) -> None:
        """`[[sessions]]` from the config exist from the first start on, one thread each."""
        if not self.main_channels:
            return
        channel_id, user_id = next(iter(self.main_channels.items()))
        known = {r.name for r in self.store.state.sessions.values() if r.from_config}
        for spec in self.config.sessions:
            if spec.name in known:
                continue
            answer = await self.new_session(
                channel_id, user_id, spec.name, str(spec.cwd), spec.persona or None, from_config=True
            )
            log.info("configured session %s: %s", spec.name, answer)
