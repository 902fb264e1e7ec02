"""One session's task: the trio shell around `core.session.SessionCore`.

Owns, for one thread: its agent process (in a cancel scope of its own, so it can be
stopped and restarted), the poster task that turns the thread's outbox into REST calls,
and one inbox through which everything reaches the core, one message at a time. Decides
nothing: every decision is the core's; this module only moves data and owns lifetimes.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs
import trio

from supervisor.agent import AgentBackend, AgentLaunch
from supervisor.chat import ChatError, ChatLink
from supervisor.core import commands, uploads
from supervisor.core.agent_events import AgentEvent, Image, Interrupt
from supervisor.core.events import ChoiceKind
from supervisor.core.outbox import Create, Edit, Idle, Outbox, Wait
from supervisor.core.session import (
    EditPost,
    Effect,
    Finished,
    LaunchAgent,
    MarkHandled,
    MarkQueued,
    OfferChoices,
    QueuedPrompt,
    SaveRecord,
    SendFile,
    SessionCore,
    SettleChoices,
    Show,
    StopAgent,
    ToAgent,
    Typing,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.runtime.agent_process import AgentGrace, AgentProcess, open_agent
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor.session")

# --- what reaches a session's inbox ----------------------------------------------


@attrs.frozen
class PromptIn:
    prompt: QueuedPrompt
    file_ids: tuple[str, ...] = ()  # attachments, saved before the prompt reaches the core


@attrs.frozen
class CommandIn:
    command: commands.ThreadCommand | commands.BadCommand
    post_id: str
    channel_id: str


@attrs.frozen
class ChoiceIn:
    kind: ChoiceKind
    post_id: str


@attrs.frozen
class EndIn:
    pass


@attrs.frozen
class _FromAgent:
    generation: int
    events: list[AgentEvent]


@attrs.frozen
class _AgentUp:
    generation: int
    pid: int


@attrs.frozen
class _AgentDown:
    generation: int
    code: int | None
    stderr_tail: str


@attrs.frozen
class _Settled:
    pass


@attrs.frozen
class _PostMade:
    key: str
    post_id: str


SessionInput = PromptIn | CommandIn | ChoiceIn | EndIn


@attrs.frozen
class SessionDeps:
    """What every session shares: the chat link, the store, the agent backend."""

    chat: ChatLink
    store: Store
    backend: AgentBackend
    base_env: Mapping[str, str]
    shutdown_grace_s: AgentGrace  # the configured grace, cut short while the supervisor stops
    edit_interval_s: float
    max_get_bytes: int
    max_upload_bytes: int
    max_image_bytes: int
    launch_for: Callable[[SessionRecord, bool], AgentLaunch]  # (record, resume) -> how to start it
    on_post_made: Callable[[str, str], None]  # (post id, thread root id): for the router


class SessionTask:
    def __init__(self, core: SessionCore, deps: SessionDeps) -> None:
        self.core = core
        self.deps = deps
        self.inbox_send, self._inbox = trio.open_memory_channel[object](1000)
        self.outbox = Outbox(edit_interval=deps.edit_interval_s)
        self._marks_send, self._marks = trio.open_memory_channel[MarkQueued](1000)
        self._outbox_changed = trio.Event()
        self._agent: AgentProcess | None = None
        self._agent_scope: trio.CancelScope | None = None
        self._generation = 0
        self._offers: dict[str, tuple[ChoiceKind, ...]] = {}  # post key -> choices, until it exists
        self._finished = False
        self._nursery: trio.Nursery | None = None

    @property
    def name(self) -> str:
        return self.core.record.name

    async def run(self, *, launch_now: bool, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._poster)
            nursery.start_soon(self._marker)
            await self._apply(self.core.start(trio.current_time(), launch_now=launch_now))
            task_status.started()
            async with self._inbox:
                while not self._finished:
                    message = await self._next_message()
                    if message is None:
                        await self._apply(self.core.tick(trio.current_time()))
                        continue
                    if isinstance(message, PromptIn) and message.file_ids:
                        message = await self._with_files(message)
                    await self._apply(self._dispatch(message))
            await self._drain_outbox()
            nursery.cancel_scope.cancel()

    async def _next_message(self) -> object | None:
        """The next inbox message, or None when the core's next deadline has come. A due
        deadline never starves the inbox, and a busy inbox never starves the clock."""
        deadline = self.core.next_deadline()
        if deadline is not None and trio.current_time() >= deadline:
            return None
        try:
            return self._inbox.receive_nowait()
        except trio.WouldBlock:
            pass
        with trio.move_on_at(math.inf if deadline is None else deadline):
            return await self._inbox.receive()
        return None

    async def interrupt_for_shutdown(self) -> None:
        """Shutdown: ask a running turn to stop, so the agent can leave cleanly."""
        if self._agent is not None and self.core.turn is not None:
            with trio.move_on_after(0.5):
                await self._send_to_agent(Interrupt("shutdown"))

    def _dispatch(self, message: object) -> list[Effect]:
        now = trio.current_time()
        core = self.core
        match message:
            case PromptIn(prompt, _files):
                return core.prompt(prompt, now)
            case CommandIn(command, post_id, channel_id):
                return core.command(command, post_id, channel_id, now)
            case ChoiceIn(kind, post_id):
                return core.choose(kind, post_id, now)
            case EndIn():
                return core.end(now)
            case _FromAgent(gen, events) if gen == self._generation:
                return [effect for event in events for effect in core.agent_event(event, now)]
            case _AgentUp(gen, pid) if gen == self._generation:
                return core.agent_ready(pid, now)
            case _AgentDown(gen, code, tail) if gen == self._generation:
                self._agent = None
                return core.agent_exited(code, tail, now)
            case _PostMade(key, post_id):
                return [*core.post_created(key, post_id), *self._offer_on(key, post_id)]
            case _Settled():
                return core.outbox_progress(self.outbox.shows)
        return []  # a message from an agent generation that is gone

    async def _apply(self, effects: list[Effect]) -> None:
        # The poster is woken once the posts of a run of effects are all put (before the
        # first effect that waits, and at the end): a short answer that ends within one
        # batch of agent events is then one create, not a create and an edit.
        try:
            await self._apply_each(effects)
        finally:
            self._wake_poster()

    def _wake_poster(self) -> None:
        if not self.outbox.is_settled():
            self._outbox_changed.set()

    async def _apply_each(self, effects: list[Effect]) -> None:
        for effect in effects:
            # These may wait: what is put so far goes out meanwhile. Not a durable save: it
            # is a few ms, and the end of a turn saves before its final words are put, so
            # waking here would send the text and then the footer as two edits.
            if isinstance(effect, ToAgent | MarkHandled | Typing):
                self._wake_poster()
            match effect:
                case ToAgent(command):
                    await self._send_to_agent(command)
                case Show(op):
                    self.outbox.put(op, trio.current_time())
                case MarkQueued():
                    # In order (a mark is never taken off before it was put on); cosmetic,
                    # so a full channel drops it rather than hold the session up.
                    with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                        self._marks_send.send_nowait(effect)
                case OfferChoices(key, kinds):
                    self._offers[key] = kinds
                    if post_id := self.outbox.post_id(key):
                        self._offer_on(key, post_id)
                case SettleChoices(post_id):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._settle_choices, post_id)
                case MarkHandled(channel_id, post_id):
                    # Durable before anything of its answer can be shown: a crash before
                    # this line re-delivers the prompt, a crash after it never answers twice.
                    await self.deps.store.mark_handled(channel_id, post_id)
                case SaveRecord(record, durable):
                    if durable:
                        await self.deps.store.save(record)
                    else:
                        self.deps.store.save_soon(record)
                case LaunchAgent(resume, delay_s):
                    self._launch(resume, delay_s)
                case StopAgent(reason):
                    log.info("stopping the agent of %s (%s)", self.name, reason)
                    if self._agent_scope is not None:
                        self._agent_scope.cancel()
                case Typing():
                    await self._typing()
                case SendFile(path):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._send_file, path)
                case EditPost(post_id, text):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._edit_old_post, post_id, text)
                case Finished():
                    self._finished = True

    async def _marker(self) -> None:
        """Puts the queued marks on and takes them off, one at a time, in order."""
        async for mark in self._marks:
            try:
                await self.deps.chat.mark_queued(mark.post_id, mark.queued)
            except ChatError as exc:  # the mark is cosmetic: the prompt runs either way
                log.info("%s: could not change the queued mark on %s: %s", self.name, mark.post_id, exc)

    def _show(self, op: PutPost) -> None:
        self.outbox.put(op, trio.current_time())
        self._outbox_changed.set()

    async def _send_to_agent(self, command: object) -> None:
        agent = self._agent
        if agent is None:
            log.info("%s: no agent to send %s to", self.name, type(command).__name__)
            return
        try:
            await agent.send(command)  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("%s: the agent's stdin is closed; its exit will be reported", self.name)

    async def _typing(self) -> None:
        record = self.core.record
        try:
            await self.deps.chat.send_typing(record.channel_id, record.root_id)
        except Exception as exc:  # typing is cosmetic: never let it hurt a session
            log.debug("typing indicator failed: %s", exc)

    def _offer_on(self, key: str, post_id: str) -> list[Effect]:
        kinds = self._offers.pop(key, ())
        if kinds and self._nursery is not None:
            self._nursery.start_soon(self._offer_choices, post_id, kinds)
        return []

    async def _offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        try:
            await self.deps.chat.offer_choices(post_id, kinds)
        except ChatError as exc:
            log.warning("could not offer %s on %s: %s", "/".join(kinds), post_id, exc)

    async def _settle_choices(self, post_id: str) -> None:
        try:
            await self.deps.chat.settle_choices(post_id)
        except ChatError as exc:  # the post says the outcome; the buttons are cosmetic
            log.info("%s: could not settle the choice on %s: %s", self.name, post_id, exc)

    # --- the agent process ---------------------------------------------------------

    def _launch(self, resume: bool, delay_s: float) -> None:
        assert self._nursery is not None
        if self._agent_scope is not None:
            self._agent_scope.cancel()
        self._generation += 1
        self._agent_scope = trio.CancelScope()
        self._nursery.start_soon(self._run_agent, self._generation, self._agent_scope, resume, delay_s)

    async def _run_agent(self, generation: int, scope: trio.CancelScope, resume: bool, delay_s: float) -> None:
        code: int | None = None
        tail = ""
        with scope:
            await trio.sleep(delay_s)
            record = self.core.record
            launch = self.deps.launch_for(record, resume)
            # What the person allowed for this session holds for every agent it runs.
            launch = attrs.evolve(
                launch,
                allowed_tools=record.allowed_rules,
                permission_mode=record.session_mode or launch.permission_mode,
            )
            try:
                async with open_agent(
                    self.deps.backend, launch, self.deps.base_env, self.deps.shutdown_grace_s
                ) as agent:
                    self._agent = agent
                    await self.inbox_send.send(_AgentUp(generation, agent.pid))
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(agent.drain_stderr)
                        async for batch in agent.events():
                            await self.inbox_send.send(_FromAgent(generation, batch))
                        code = await agent.wait()
                    tail = "\n".join(agent.stderr_tail)
            except OSError as exc:  # the command is missing or not executable
                tail = f"could not start the agent: {exc}"
                log.error("%s: %s", self.name, tail)
        if self._agent is not None and self._agent_scope is scope:
            self._agent = None
        # Reported whether it died or we stopped it: the core knows which it expected.
        with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError):
            await self.inbox_send.send(_AgentDown(generation, code, tail))

    # --- the poster: outbox -> REST ---------------------------------------------------

    async def _poster(self) -> None:
        backoff = 0.25
        while True:
            now = trio.current_time()
            action = self.outbox.next_action(now, room_at=now + self.deps.chat.request_room())
            if isinstance(action, Idle | Wait):
                self._outbox_changed = trio.Event()
                until = action.until if isinstance(action, Wait) else math.inf
                with trio.move_on_at(until):
                    await self._outbox_changed.wait()
                continue
            try:
                post_id = await self._perform(action)
            except ChatError as exc:
                # Refused for good (thread deleted, post too long...): drop it, keep going.
                log.error("%s: the server refused a post: %s", self.name, exc)
                self.outbox.dropped(action, trio.current_time())
                continue
            except Exception as exc:
                log.warning("%s: posting failed (%r); retrying", self.name, exc)
                self.outbox.failed(action, trio.current_time())
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.25
            self.outbox.done(action, post_id, trio.current_time())
            if isinstance(action, Create):
                self.deps.on_post_made(post_id, self.core.record.root_id)
                # The session may be over already (its last words are being drained).
                with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                    self.inbox_send.send_nowait(_PostMade(action.key, post_id))
            if self.core.settling:
                # A turn's answer may be whole now: the core settles it at once.
                with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                    self.inbox_send.send_nowait(_Settled())

    async def _edit_old_post(self, post_id: str, text: str) -> None:
        """Edit a post of an earlier run (a request that lapsed); a few tries, then let go."""
        for attempt in range(5):
            try:
                await self.deps.chat.edit_post(post_id, text)
                return
            except ChatError as exc:  # refused for good (deleted...): nothing to correct
                log.info("%s: could not edit %s: %s", self.name, post_id, exc)
                return
            except Exception as exc:
                log.warning("%s: editing %s failed (%r); retrying", self.name, post_id, exc)
                await trio.sleep(0.5 * 2**attempt)

    async def _perform(self, action: Create | Edit) -> str:
        """One REST call for the outbox; the id of the post it made or changed."""
        record = self.core.record
        if isinstance(action, Create):
            post = await self.deps.chat.create_post(
                record.channel_id, action.text, root_id=record.root_id, idempotency_key=action.idempotency_key
            )
            return post.id
        await self.deps.chat.edit_post(action.post_id, action.text)
        return action.post_id

    async def _drain_outbox(self) -> None:
        """Before the task ends, let what the thread should show reach the server."""
        with trio.move_on_after(10):
            # Polls: the poster owns the outbox and signals nobody; bounded by the scope.
            while not self.outbox.is_settled():  # noqa: ASYNC110
                await trio.sleep(0.05)

    async def _with_files(self, message: PromptIn) -> PromptIn:
        """Save a prompt's attachments under the session's upload folder; the prompt then
        names them (and carries the small images as image content)."""
        prompt = message.prompt
        folder = Path(self.core.record.cwd) / uploads.upload_folder(prompt.post_id)
        saved: list[uploads.Saved] = []
        refused: list[str] = []
        images: list[Image] = []
        for file_id in message.file_ids:
            try:
                info = await self.deps.chat.file_info(file_id)
                if info.size > self.deps.max_upload_bytes:
                    refused.append(f"{info.name} ({info.size / 1e6:.1f} MB, over the {self.deps.max_upload_bytes / 1e6:.0f} MB limit)")
                    continue
                data = await self.deps.chat.download_file(file_id)
                name = await trio.to_thread.run_sync(_save_new_file, folder, info.name, data)
            except (ChatError, OSError) as exc:
                refused.append(f"{file_id} ({exc})")
                continue
            is_image = info.mime_type.startswith("image/") and len(data) <= self.deps.max_image_bytes
            saved.append(uploads.Saved(str(folder.relative_to(self.core.record.cwd) / name), len(data), is_image))
            if is_image:
                images.append(Image(info.mime_type, base64.b64encode(data).decode()))
        if refused:
            self._show(PutPost.last(f"files.{prompt.post_id}", "⚠️ Not saved: " + "; ".join(refused)))
        text = uploads.prompt_with_files(prompt.text, saved, refused)
        return PromptIn(attrs.evolve(prompt, text=text, images=tuple(images)))

    async def _send_file(self, path: str) -> None:
        text = await trio.to_thread.run_sync(_check_get_path, self.core.record.cwd, path, self.deps.max_get_bytes)
        record = self.core.record
        if isinstance(text, Path):
            try:
                data = await trio.to_thread.run_sync(text.read_bytes)
                file_id = await self.deps.chat.upload_file(record.channel_id, text.name, data)
                await self.deps.chat.create_post(
                    record.channel_id, f"📎 `{path}`", root_id=record.root_id, file_ids=(file_id,)
                )
                return
            except (OSError, ChatError) as exc:
                text = f"⚠️ Could not send `{path}`: {exc}"
        self._show(PutPost.last(f"get.{uuid.uuid4().hex}", text))


def _save_new_file(folder: Path, name: str, data: bytes) -> str:
    """Write `data` under a safe, new name in `folder`; never overwrites. Returns the name."""
    folder.mkdir(parents=True, exist_ok=True)
    taken = {p.name for p in folder.iterdir()}
    while True:
        safe = uploads.safe_name(name, taken)
        try:
            with open(folder / safe, "xb") as f:  # x: fail rather than overwrite
                f.write(data)
            return safe
        except FileExistsError:
            taken.add(safe)


def _check_get_path(cwd: str, path: str, max_bytes: int) -> Path | str:
    """The file `!get` may send, or the reason it may not."""
    base = Path(cwd).resolve()
    target = (base / os.path.expanduser(path)).resolve()
    if not target.is_relative_to(base):
        return f"⚠️ `{path}` is outside this session's directory; `!get` only sends files inside it."
    if not target.is_file():
        return f"⚠️ `{path}` is not a file in this session's directory."
    size = target.stat().st_size
    if size > max_bytes:
        return f"⚠️ `{path}` is {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.0f} MB for `!get`."
    return target
