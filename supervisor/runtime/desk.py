"""The main-DM desk: commands answered one at a time, replies posted, new sessions made
and announced once.

Owns: the desk's mailbox (the router hands it commands and replies without waiting), the
answers to `!help`, `!sessions`, `!new`, `!end NAME`, and the announcement of every new
session: its record and its `!new`'s handled mark in one durable write, then its thread
root, then the answer linking it; and, on the next start, finishing what a crash cut
(`recover_unannounced`). Starting a session is the registry's job (`SessionRegistry`,
the supervisor); what a post means is the router's.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import attrs

from supervisor.chat import ChatError, ChatLink
from supervisor.config import Config
from supervisor.core import commands, texts
from supervisor.core.events import Post
from supervisor.core.state import SessionRecord
from supervisor.runtime import announce
from supervisor.runtime.mail import Mailbox
from supervisor.runtime.session import SessionTask
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor")


@attrs.frozen
class Command:
    post: Post
    command: commands.MainCommand | commands.BadCommand


@attrs.frozen
class Reply:
    channel_id: str
    message: str
    root_id: str = ""
    handled: tuple[str, str] | None = None  # (channel, post) to mark handled once posted


class SessionRegistry(Protocol):
    """What the desk needs from the supervisor, which owns the sessions."""

    @property
    def tasks(self) -> dict[str, SessionTask]: ...  # thread root id -> live session task

    def register(self, record: SessionRecord) -> SessionTask:
        """Make a session routable (its thread's posts wait for it); idempotent."""

    def launch(self, task: SessionTask, *, launch_now: bool) -> None:
        """Run a registered session in the sessions nursery."""

    def end(self, root_id: str) -> bool:
        """Ask a live session to end; False when there is none."""


class Desk:
    def __init__(
        self,
        config: Config,
        chat: ChatLink,
        store: Store,
        registry: SessionRegistry,
        main_channels: Mapping[str, str],  # DM channel id -> user id
    ) -> None:
        self.config = config
        self.main_channels = main_channels
        self.chat = chat
        self.store = store
        self.registry = registry
        self._inbox: Mailbox[Reply | Command] = Mailbox()
        self.announcing: dict[str, SessionRecord] = {}  # root pending id -> record being announced

    def command(self, post: Post, command: commands.MainCommand | commands.BadCommand) -> None:
        self._inbox.put(Command(post, command))

    def reply(self, channel_id: str, post_id: str, message: str, *, root_id: str = "") -> None:
        """Post `message` and then mark the post it answers handled."""
        self._inbox.put(Reply(channel_id, message, root_id, handled=(channel_id, post_id)))

    async def run(self) -> None:
        while True:
            item = await self._inbox.get()
            if isinstance(item, Reply):
                await self._post_reply(item)
                continue
            answer = await self._main_command(item.post, item.command)
            if answer is not None:
                handled = (item.post.channel_id, item.post.id)
                await self._post_reply(Reply(item.post.channel_id, answer, handled=handled))

    async def _post_reply(self, reply: Reply) -> None:
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
                return self.sessions_text()
            case commands.NewSession(name, cwd, persona):
                return await self.new_session(post.channel_id, post.user_id, name, cwd, persona, command=post)
            case commands.EndSession(name):
                return self._end_by_name(name or "")
        return texts.GUIDANCE

    def sessions_text(self) -> str:
        rows = []
        for record in sorted(self.store.state.sessions.values(), key=lambda r: r.created_at):
            if not record.root_id:
                continue
            task = self.registry.tasks.get(record.root_id)
            state = task.core.state.value if task else record.status
            rows.append(
                texts.SessionRow(record.name, state, record.cwd, record.created_at, self.chat.permalink(record.root_id))
            )
        return texts.sessions_table(rows, texts.utc_iso(time.time()))

    def _end_by_name(self, name: str) -> str:
        record = self.store.state.live_session_named(name)
        if record is None or not self.registry.end(record.root_id):
            return f"⚠️ No live session is called `{name}`. `!sessions` lists them."
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
        task = self.registry.register(attrs.evolve(record, root_id=root_id, answer_pending=False))
        if record.answer_pending:
            answer = announce.started_text(task.core.record, self.chat.permalink)
            if not announce.has_answer(seen, record, me, answer):
                try:
                    await self.chat.create_post(
                        record.channel_id, answer, idempotency_key=announce.answer_pending_id(record)
                    )
                except ChatError as exc:
                    log.error("could not answer !new %s: %s", record.name, exc)
        await self.store.save(task.core.record)  # launched only now: it cannot save over this
        self.registry.launch(task, launch_now=not recovering)
        log.info("session %s %s in %s (thread %s)", record.name, "recovered" if recovering else "started", record.cwd, root_id)

    async def _post_root(self, record: SessionRecord) -> str:
        """The new thread root's id; "" when the server refused it (the session failed)."""
        self.announcing[record.root_pending_id] = record
        try:
            root = await self.chat.open_thread(
                record.channel_id, texts.thread_root(record), key=record.root_pending_id, title=record.name
            )
            return root.id
        except ChatError as exc:
            log.error("could not post the thread root of %s: %s", record.name, exc)
            await self.store.save(attrs.evolve(record, status="failed", answer_pending=False))
            if record.answer_pending:
                self._inbox.put(Reply(record.channel_id, f"⚠️ Could not start session **{record.name}**: {exc}"))
            return ""
        finally:
            self.announcing.pop(record.root_pending_id, None)

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
