"""One session's task: the trio shell around `core.session.SessionCore`.

Owns, for one thread: its agent process (in a cancel scope of its own, so it can be
stopped and restarted), the poster task that turns the thread's outbox into REST calls
(`runtime.poster`), and one inbox through which everything reaches the core, one message
at a time. Decides nothing: every decision is the core's; this module only moves data and
owns lifetimes. The thread's files (attachments in, `!get` files out) are moved by
`runtime.session_files`, each in a task of its own (`FetchFiles`: the core holds that
prompt, and those written after it, meanwhile), so a slow download never stands between
the core and its agent's events.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import logging
import math
import uuid
from collections.abc import Callable, Mapping

import attrs
import trio

from supervisor.agent import AgentBackend, AgentLaunch
from supervisor.chat import ChatError, ChatLink, ShowsSessionState
from supervisor.core.agent_events import AgentUnusable, SendPrompt
from supervisor.core.events import ChoiceKind
from supervisor.core.outbox import Create, Edit, Outbox
from supervisor.core.session import (
    EditPost,
    Effect,
    FetchFiles,
    Finished,
    LaunchAgent,
    MarkHandled,
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
from supervisor.core.session_effects import saves_a_mark_carries
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.logs import one_line
from supervisor.runtime import session_files
from supervisor.runtime.agent_process import AgentGrace, AgentProcess, open_agent
from supervisor.runtime.poster import Poster
from supervisor.runtime.session_inbox import (
    AGENT_OUTPUT_ROOM,
    INBOX_SIZE,
    AgentDown,
    AgentUp,
    ChoiceIn,
    CommandIn,
    EndIn,
    FilesSaved,
    FromAgent,
    PostMade,
    PromptIn,
    SessionMessage,
    Settled,
    StoppingIn,
    WakeIn,
)
from supervisor.runtime.store import Store

log = logging.getLogger("supervisor.session")

# How long the session waits for its state to show beside the thread (cosmetic: given up
# after this, tried again with the next change).
SHOW_STATE_S = 5.0

# With `stall_timeout_s` off (0), an agent that takes no input at all (frozen, its stdin
# pipe full) is still ended after this long: the session waits on that write, hearing
# neither 🛑 nor `!end`, and its turn's clocks do not tick.
TAKES_INPUT_WITHIN_S = 300.0

# Starting an agent that failed with these would fail again: no such command or directory,
# not executable, not allowed. Others (no memory, too many processes) may pass: restarted.
_SPAWN_FAILS_FOR_GOOD = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.EPERM, errno.ENOEXEC})


class Sent(enum.Enum):
    """What became of a command for the agent."""

    TAKEN = enum.auto()
    NOT_TAKEN = enum.auto()  # its stdin stayed full: the agent is frozen, or deaf
    NO_AGENT = enum.auto()  # it is gone: none of the command reached it


def _spawn_failure(exc: OSError, launch: AgentLaunch) -> str:
    """Why the agent could not be started, for the thread: a directory deleted or moved
    since the session began reads differently from a missing command."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and str(exc.filename) == str(launch.cwd):
        return f"its directory `{launch.cwd}` is gone (moved or deleted?)"
    if exc.filename is not None:
        return f"it could not be started ({exc.strerror}: `{exc.filename}`)"
    return f"it could not be started ({exc})"


@attrs.frozen
class SessionDeps:
    """What every session shares: the chat link, the store, the agent backend."""

    chat: ChatLink
    store: Store
    backend: AgentBackend  # the default agent's
    base_env: Mapping[str, str]
    shutdown_grace_s: AgentGrace  # the configured grace, cut short while the supervisor stops
    edit_interval_s: float
    max_get_bytes: int
    max_upload_bytes: int
    max_image_bytes: int
    launch_for: Callable[[SessionRecord, bool], AgentLaunch]  # (record, resume) -> how to start it
    on_post_made: Callable[[str, str], None]  # (post id, thread root id): for the router
    # The backend of a session's agent (its record names it); the default one if unset.
    agent_backend: Callable[[SessionRecord], AgentBackend] | None = None

    def backend_for(self, record: SessionRecord) -> AgentBackend:
        return self.agent_backend(record) if self.agent_backend is not None else self.backend


def _drain(inbox: trio.MemoryReceiveChannel[SessionMessage]) -> list[SessionMessage]:
    left: list[SessionMessage] = []
    with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
        while True:
            left.append(inbox.receive_nowait())
    return left


class SessionTask:
    def __init__(self, core: SessionCore, deps: SessionDeps) -> None:
        self.core = core
        self.deps = deps
        self.inbox_send, self._inbox = trio.open_memory_channel[SessionMessage](INBOX_SIZE)
        self.outbox = Outbox(edit_interval=deps.edit_interval_s, max_key_chars=deps.chat.max_idempotency_key_chars)
        self._poster = Poster(deps.chat, self.outbox, lambda: self.core.record, self._posted, self._progress)
        self._agent: AgentProcess | None = None
        self._agent_scope: trio.CancelScope | None = None
        self._generation = 0
        self._offers: dict[str, tuple[ChoiceKind, ...]] = {}  # post key -> choices, until it exists
        self._finished = False
        self._nursery: trio.Nursery | None = None
        self._files: trio.Nursery | None = None  # the `!get` files being sent
        self._status_shown = ""  # as the thread shows it (`_show_status`): not known yet
        # Asked once: a check against a Protocol walks its members (~17 µs), and records
        # are saved several times per prompt.
        self._state_shown_by = deps.chat if isinstance(deps.chat, ShowsSessionState) else None
        # "typing…" due: taken only while `_typing` waits for it (no buffer), so one due
        # while another is still on its way is dropped.
        self._typing_due, self._typing_wanted = trio.open_memory_channel[None](0)
        self._inbox_taken = trio.Event()  # set as the inbox gives a message: it has room again
        self.left_over: list[SessionMessage] = []  # in the inbox when the session ended, never taken

    @property
    def name(self) -> str:
        return self.core.record.name

    @property
    def _input_wait_s(self) -> float:
        """How long an agent may take no input (or not get ready) before it is ended as
        hung: `stall_timeout_s`, or `TAKES_INPUT_WITHIN_S` where that is off (infinite)."""
        stall = self.core.settings.stall_timeout_s
        return stall if math.isfinite(stall) else TAKES_INPUT_WITHIN_S

    async def run(self, *, launch_now: bool, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._poster.run)
            nursery.start_soon(self._typing)
            # `!get` files being sent: the session ends after them (their `!get` is handled
            # already: cut, a file would be lost, and the notice of one that failed).
            async with trio.open_nursery() as files:
                self._files = files
                await self._show_status(self.core.record)
                await self._apply(self.core.start(trio.current_time(), launch_now=launch_now))
                task_status.started()
                await self._take_inbox()
            await self._poster.drain()
            nursery.cancel_scope.cancel()

    async def _take_inbox(self) -> None:
        async with self._inbox:
            try:
                while not self._finished:
                    message = await self._next_message()
                    if message is None:
                        self._count_every_line()
                        await self._apply(self.core.tick(trio.current_time()))
                        continue
                    await self._take(message)
            finally:  # (a defect too:) the inbox's buffer ends with it
                self.left_over = _drain(self._inbox)

    @property
    def sending_files(self) -> bool:
        """A `!get` file is on its way (a stop gives it the moment it gives last words)."""
        return self._files is not None and bool(self._files.child_tasks)

    async def failed_on_defect(self, defect: Exception) -> None:
        """A defect of ours ended this session's task (its agent ended with it): its record
        says failed, durably, then its thread says why. The other sessions go on."""
        while isinstance(defect, ExceptionGroup) and defect.exceptions:  # a nursery's: the first
            defect = defect.exceptions[0]
        why = f"❌ This session stopped on a defect of the supervisor ({one_line(defect, 200)}; see its log)."
        record, text, marks = self.core.failed_on_defect(why)
        await self.deps.store.save(record)
        try:
            await self.deps.chat.create_post(record.channel_id, text, root_id=record.root_id)
        except Exception:  # said in the log instead
            log.exception("%s: could not say in its thread that it failed", record.name)
        for mark in marks:
            await self.deps.store.mark_handled(mark.channel_id, mark.post_id)

    async def _take(self, message: SessionMessage) -> None:
        self._inbox_taken.set()
        if isinstance(message, FilesSaved) and message.notice is not None:
            self._poster.show(message.notice)  # the files that could not be saved
        effects = self._dispatch(message)
        await self._apply(effects)
        if self.core.settling and any(isinstance(effect, Show) for effect in effects):
            # An ending whose posts need no call (given up already, or showing their last
            # text) is reported by no call: it settles here.
            await self._apply(self.core.outbox_progress(self.outbox.shows))

    async def _next_message(self) -> SessionMessage | None:
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

    def _count_every_line(self) -> None:
        """Every line the agent printed counts against the stall clock, also one that means
        nothing here (a thinking or tool-input delta, a progress note): its time is read
        when a clock is due, not sent with each line."""
        if self._agent is not None:
            self.core.agent_printed(self._agent.last_line_at)

    def stopping(self) -> None:
        """Shutdown: no new turn starts, and a running one is asked to stop, so the agent
        can leave cleanly (the core decides, in this task's turn; the next start says the
        turn was cut)."""
        try:
            self.inbox_send.send_nowait(StoppingIn())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the session is over already (ended, failed): nothing runs
        except trio.WouldBlock:
            log.info("%s: its inbox is full; its turn is not interrupted before the stop", self.core.record.name)

    def _dispatch(self, message: SessionMessage) -> list[Effect]:
        now = trio.current_time()
        core = self.core
        match message:
            case PromptIn(prompt, file_ids):
                return core.prompt_in(prompt, file_ids, now)
            case FilesSaved(prompt, _notice):
                return core.files_saved(prompt, now)
            case CommandIn(command, post_id, channel_id):
                return core.command(command, post_id, channel_id, now)
            case ChoiceIn(kind, post_id):
                return core.choose(kind, post_id, now)
            case EndIn(mark):
                return core.end(now, mark=None if mark is None else MarkHandled(*mark))
            case WakeIn():
                return core.turned_to(now)
            case StoppingIn():
                return core.stopping(now)
            case FromAgent(gen, events) if gen == self._generation:
                return [effect for event in events for effect in core.agent_event(event, now)]
            case AgentUp(gen, pid) if gen == self._generation:
                return core.agent_ready(pid, now)
            case AgentDown(gen, code, tail, last_line_at) if gen == self._generation:
                self._agent = None
                return core.agent_exited(code, tail, now, last_line_at=last_line_at)
            case PostMade(key, post_id):
                return [*core.post_created(key, post_id), *self._offer_on(key, post_id)]
            case Settled():
                return core.outbox_progress(self.outbox.shows)
        return []  # a message from an agent generation that is gone

    async def _apply(self, effects: list[Effect]) -> None:
        # The poster is woken once the posts of a run of effects are all put (before the
        # first effect that waits, and at the end): a short answer that ends within one
        # batch of agent events is then one create, not a create and an edit.
        try:
            await self._apply_each(effects)
        finally:
            self._poster.release()
            self._poster.wake()

    async def _apply_each(self, effects: list[Effect]) -> None:
        carried = saves_a_mark_carries(effects)
        unsaved = False  # a carried save is not durable yet: nothing may show
        for index, effect in enumerate(effects):
            # This may wait: what is put so far goes out meanwhile. Not a durable save: it
            # is a few ms, and the end of a turn saves before its final words are put, so
            # waking here would send the text and then the footer as two edits.
            if isinstance(effect, ToAgent) and not unsaved:
                self._poster.wake()
            match effect:
                case ToAgent(command):
                    sent = await self._send_to_agent(command)
                    if sent is Sent.NOT_TAKEN:
                        # Its pipe full and nothing read (a frozen agent): this session
                        # could neither tick its watchdog nor hear 🛑 meanwhile, and part
                        # of the command may be in the pipe: the core ends it as hung.
                        await self._apply_each(self.core.agent_deaf(self._input_wait_s))
                    elif sent is Sent.NO_AGENT and isinstance(command, SendPrompt):
                        await self._apply_each(self.core.prompt_not_delivered())
                case Show(op):
                    self.outbox.put(op, trio.current_time())
                case OfferChoices(key, kinds):
                    self._offers[key] = kinds
                    if post_id := self.outbox.post_id(key):
                        self._offer_on(key, post_id)
                case SettleChoices(post_id):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._settle_choices, post_id)
                case MarkHandled(channel_id, post_id):
                    # Durable before anything of its answer can be shown (a command's reply
                    # is put before it): a crash before this line re-delivers the post, a
                    # crash after it never answers twice.
                    self._poster.hold()
                    await self.deps.store.mark_handled(channel_id, post_id)
                    unsaved = False
                    self._poster.release()
                case SaveRecord(record, durable, at_once):
                    if index in carried:  # durable with the mark below, in its write
                        self.deps.store.save_soon(record)
                        unsaved = True
                        self._poster.hold()  # what it put so far waits for that write
                    elif durable:
                        await self.deps.store.save(record)
                    else:
                        self.deps.store.save_soon(record, at_once=at_once)
                    await self._show_status(record)
                case LaunchAgent(resume, delay_s):
                    self._launch(resume, delay_s)
                case StopAgent(reason):
                    log.info("stopping the agent of %s (%s)", self.name, reason)
                    if self._agent_scope is not None:
                        self._agent_scope.cancel()
                case Typing():
                    with contextlib.suppress(trio.WouldBlock):
                        self._typing_due.send_nowait(None)
                case SendFile(path):
                    # Its post is no outbox's, so no hold covers it: the core puts it after
                    # its command's mark, which is durable by now.
                    assert self._files is not None
                    self._files.start_soon(self._send_file, path)
                case FetchFiles(prompt, file_ids):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._fetch_files, prompt, file_ids)
                case EditPost(post_id, text):
                    assert self._nursery is not None
                    self._nursery.start_soon(self._poster.edit_old_post, post_id, text)
                case Finished():
                    self._finished = True

    async def _send_to_agent(self, command: object) -> Sent:
        """TAKEN, or NOT_TAKEN when the agent took none of it within `stall_timeout_s` (and
        is still there), or NO_AGENT when it is gone: none of it reached an agent (its exit
        is reported)."""
        agent = self._agent
        if agent is None:
            log.info("%s: no agent to send %s to", self.name, type(command).__name__)
            return Sent.NO_AGENT
        limit, events = self._input_wait_s, None
        try:
            with trio.move_on_after(limit):
                events = await agent.send(command)  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.info("%s: the agent's stdin is closed; its exit will be reported", self.name)
            return Sent.NO_AGENT
        if events is None:
            log.warning("%s: the agent took no input for %g s", self.name, limit)
            return Sent.NOT_TAKEN
        if events:  # what the command settled at once (e.g. requests a cancel withdrew)
            with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
                self.inbox_send.send_nowait(FromAgent(self._generation, events))
        return Sent.TAKEN

    async def _typing(self) -> None:
        """Says "typing…" when the core asks: in a task of its own, since it is cosmetic and
        a chat may be slow to take it (Telegram's calls are retried while they fail), which
        must never hold up the agent's events. One not through when the next is due is
        given up."""
        async for _ in self._typing_wanted:
            record = self.core.record
            try:
                with trio.move_on_after(self.core.settings.typing_every_s):
                    await self.deps.chat.send_typing(record.channel_id, record.root_id)
            except Exception as exc:  # cosmetic: never let it hurt a session
                log.debug("typing indicator failed: %s", exc)

    async def _show_status(self, record: SessionRecord) -> None:
        """The record's status shown beside the thread, where the link shows one: at the
        start (what an earlier run showed may be stale), and each change after its save.
        In line, so the changes show in order: they are rare (an agent started, suspended;
        the end). One that failed is tried again with the next save."""
        chat = self._state_shown_by
        if chat is None or record.status == self._status_shown or not record.root_id:
            return
        try:
            with trio.move_on_after(SHOW_STATE_S):
                await chat.show_session_state(record.root_id, record.status)
                self._status_shown = record.status
        except Exception as exc:  # cosmetic: never let it hurt a session
            log.warning("%s: its state (%s) is not shown: %s", self.name, record.status, exc)

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
        except Exception:  # an answer we cannot read: the request still lapses in time
            log.exception("could not offer %s on %s", "/".join(kinds), post_id)

    async def _settle_choices(self, post_id: str) -> None:
        try:
            await self.deps.chat.settle_choices(post_id)
        except ChatError as exc:  # the post says the outcome; the buttons are cosmetic
            log.info("%s: could not settle the choice on %s: %s", self.name, post_id, exc)
        except Exception:
            log.exception("%s: could not settle the choice on %s", self.name, post_id)

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
        last_line_at = math.inf
        up = False
        defect: Exception | None = None
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
                    self.deps.backend_for(record), launch, self.deps.base_env, self.deps.shutdown_grace_s
                ) as agent:
                    self._agent = agent
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(agent.drain_stderr)
                        nursery.start_soon(agent.watch_exit)  # its death is seen, even if its stdout is held
                        nursery.start_soon(self._bound_opening, generation, agent)
                        try:
                            async with contextlib.aclosing(agent.events()) as batches:
                                async for batch in batches:
                                    await self._from_agent(FromAgent(generation, batch))
                                    if agent.opened and not up:  # takes prompts from now on
                                        up = True
                                        await self._from_agent(AgentUp(generation, agent.pid))
                        except Exception as exc:  # a defect of ours, met on what this agent printed
                            # Caught here, where it surfaces, and not around the nursery:
                            # there a stop arriving at once would wrap it with a Cancelled.
                            defect = exc
                        else:
                            # Its stdout ended: it exited, or it lives on unable to answer (a
                            # prompt written to it would wait for the stall timeout). Gone
                            # either way: ended as at any teardown, its exit reported.
                            code = await agent.end()
                            if code is not None:  # else named by the teardown: left behind
                                log.info("%s: agent %s exited with status %s", self.name, agent.pid, code)
                        nursery.cancel_scope.cancel()
                    tail = "\n".join(agent.stderr_tail)
                    last_line_at = agent.last_line_at
                    if agent.stderr_events:
                        await self.inbox_send.send(FromAgent(generation, agent.stderr_events))
            except OSError as exc:  # the command, or the session's directory, is missing or unusable
                tail = f"could not start the agent: {exc}"
                log.error("%s: %s", self.name, tail)
                if exc.errno in _SPAWN_FAILS_FOR_GOOD:  # restarts would fail the same way, in a loop
                    await self._unusable(generation, _spawn_failure(exc, launch))
        if defect is not None:  # here: a stop meanwhile would skip what is inside `scope`
            # This session alone fails (its agent ended by the teardown above), said in its
            # thread with how to carry its conversation on; the others go on.
            log.error("%s: failed on what its agent printed", self.name, exc_info=defect)
            await self._unusable(generation, f"the supervisor failed on what it printed ({one_line(defect, 200)}; see its log)")
        if self._agent is not None and self._agent_scope is scope:
            self._agent = None
        # Reported whether it died or we stopped it: the core knows which it expected.
        with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError):
            await self.inbox_send.send(AgentDown(generation, code, tail, last_line_at))

    async def _from_agent(self, message: FromAgent | AgentUp) -> None:
        """What the agent printed, into the inbox once it has room beside the person's
        messages (`AGENT_OUTPUT_ROOM`): a flood waits for the session to take some."""
        while self.inbox_send.statistics().current_buffer_used >= AGENT_OUTPUT_ROOM:
            if self._inbox_taken.is_set():  # a take long ago: wait for the next
                self._inbox_taken = trio.Event()
            await self._inbox_taken.wait()
        await self.inbox_send.send(message)

    async def _unusable(self, generation: int, why: str) -> None:
        with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError):
            await self.inbox_send.send(FromAgent(generation, [AgentUnusable(why)]))

    async def _bound_opening(self, generation: int, agent: AgentProcess) -> None:
        """An agent whose conversation does not open (a handshake never answered) is
        unusable: the same bound as a stalled turn."""
        await trio.sleep(self._input_wait_s)
        if not agent.opened:
            why = f"it did not get ready within {self._input_wait_s:g} s"
            await self.inbox_send.send(FromAgent(generation, [AgentUnusable(why)]))

    # --- what the poster reports, and the files of the thread --------------------------

    def _posted(self, action: Create | Edit, post_id: str) -> None:
        if isinstance(action, Create):
            self.deps.on_post_made(post_id, self.core.record.root_id)
            # The session may be over already (its last words are being drained).
            with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                self.inbox_send.send_nowait(PostMade(action.key, post_id))
        self._progress()

    def _progress(self) -> None:
        """A post went out, or was given up (refused for good: it shows all it ever will)."""
        if self.core.settling:
            # A turn's answer may be whole now: the core settles it at once.
            with contextlib.suppress(trio.BrokenResourceError, trio.WouldBlock):
                self.inbox_send.send_nowait(Settled())

    async def _fetch_files(self, prompt: QueuedPrompt, file_ids: tuple[str, ...]) -> None:
        """Save a prompt's attachments in a task of its own: a slow download, or a file
        store the server keeps failing (its calls are retried), must not pause the running
        turn's answer, its watchdog or a 🛑 meanwhile."""
        prompt, notice = await session_files.save_attachments(
            self.deps.chat,
            self.core.record.cwd,
            prompt,
            file_ids,
            max_upload_bytes=self.deps.max_upload_bytes,
            max_image_bytes=self.deps.max_image_bytes,
        )
        with contextlib.suppress(trio.BrokenResourceError):  # the session ended meanwhile
            await self.inbox_send.send(FilesSaved(prompt, notice))

    async def _send_file(self, path: str) -> None:
        failure = await session_files.send_file(self.deps.chat, self.core.record, path, self.deps.max_get_bytes)
        if failure is not None:
            self._poster.show(PutPost.last(f"get.{uuid.uuid4().hex}", failure))
