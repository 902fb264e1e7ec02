"""One session's decisions: prompts, queue, turns, permissions, watchdog, restarts.

`SessionCore` is a sans-IO state machine. The trio shell (`runtime.session`) feeds it
what happened — a prompt, an agent event, a reaction, a command, the agent's exit, the
passing of time — and carries out the effects it returns, in order. It never performs
I/O and never reads a clock; `now` is always passed in.

Rules it keeps:
- At most one prompt is in the agent at a time; the others wait in `queue`, in order.
  A post counts as handled once its prompt was written to the agent (`MarkHandled`).
- Every permission request ends: by a reaction, a cancel, an interrupt, the turn's end,
  or the approval timeout (after one reminder that mentions the person).
- A turn ends: by its result, or by the watchdog (interrupt, then terminate).
- An agent that dies unexpectedly is restarted under the restart policy; past it the
  session fails. ENDED and FAILED are final.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

import attrs

from supervisor.core import commands
from supervisor.core.agent_events import (
    AgentCommand,
    AgentEvent,
    AllowTool,
    ControlAsked,
    DenyTool,
    Image,
    Interrupt,
    PermissionAsked,
    PermissionCancelled,
    RefuseControl,
    SendPrompt,
    TurnEnded,
    TurnStarted,
)
from supervisor.core.lifecycle import SessionState, transition
from supervisor.core.permissions import Answer, permission_text, reaction_answer
from supervisor.core.render import TurnRenderer
from supervisor.core.restart import GiveUp, RestartPolicy, RestartTracker
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost

S = SessionState
TYPING_EVERY_S = 4.0  # Mattermost shows "typing" for ~5 s per event


@attrs.frozen
class SessionSettings:
    turn_timeout_s: float = 1800
    stall_timeout_s: float = 300
    approval_timeout_s: float = 600
    idle_suspend_s: float = 0
    notify_after_s: float = 60
    interrupt_grace_s: float = 10  # after an interrupt, how long a result may take before we kill
    show_thinking: bool = True
    username: str = ""  # the person, for mentions
    permalink: Callable[[str], str] = str  # post id -> a link to it (pure: no I/O)
    restart: RestartPolicy = attrs.Factory(RestartPolicy)


# --- effects ---------------------------------------------------------------------


@attrs.frozen
class ToAgent:
    command: AgentCommand


@attrs.frozen
class Show:
    op: PutPost


@attrs.frozen
class AddReactions:
    key: str
    emojis: tuple[str, ...]


@attrs.frozen
class MarkQueued:
    """Show (or stop showing) on the person's post that its prompt waits in the queue."""

    post_id: str
    queued: bool


@attrs.frozen
class MarkHandled:
    channel_id: str
    post_id: str


@attrs.frozen
class SaveRecord:
    record: SessionRecord
    durable: bool = False  # on disk before the next effect is carried out


@attrs.frozen
class LaunchAgent:
    resume: bool
    delay_s: float = 0.0


@attrs.frozen
class StopAgent:
    reason: str  # "end", "suspend", "hung", "shutdown"


@attrs.frozen
class Typing:
    pass


@attrs.frozen
class SendFile:
    path: str  # as typed after `!get`; the shell checks it stays inside the cwd


@attrs.frozen
class Finished:
    """The session is over (ended or failed): the shell may end its task."""


Effect = (
    ToAgent
    | Show
    | AddReactions
    | MarkQueued
    | MarkHandled
    | SaveRecord
    | LaunchAgent
    | StopAgent
    | Typing
    | SendFile
    | Finished
)

# --- inner state -----------------------------------------------------------------


@attrs.frozen
class QueuedPrompt:
    post_id: str
    channel_id: str
    text: str
    images: tuple[Image, ...] = ()


@attrs.define
class Turn:
    prompt: QueuedPrompt
    started_at: float
    last_output_at: float
    next_typing_at: float
    interrupted_at: float | None = None
    watchdog: str = ""  # "" | "timeout" | "stall": why the watchdog interrupted
    terminating: bool = False  # the agent is being stopped: nothing more to decide


@attrs.define
class PendingPermission:
    request: PermissionAsked
    asked_at: float
    reminded: bool = False


PERMISSION_EMOJIS = ("+1", "repeat", "-1")


@attrs.define
class SessionCore:
    """Invariants: `turn` is set exactly when the state is BUSY or AWAITING_APPROVAL;
    `pending` is non-empty only in AWAITING_APPROVAL; queued prompts are not yet handled."""

    record: SessionRecord
    settings: SessionSettings
    state: SessionState = S.SUSPENDED
    queue: deque[QueuedPrompt] = attrs.field(factory=deque)
    turn: Turn | None = None
    pending: dict[str, PendingPermission] = attrs.field(factory=dict)
    permission_posts: dict[str, str] = attrs.field(factory=dict)  # post id -> request id
    renderer: TurnRenderer = attrs.field(init=False)
    restarts: RestartTracker = attrs.field(init=False)
    expected_exit: str = ""  # why we stopped the agent ourselves; "" if it was not us
    resuming: bool = False  # the running agent was started with --resume
    model: str = ""
    turns: int = 0
    last_active_at: float = 0.0
    _cut_post: str = ""  # the prompt whose turn the agent's exit cut, for the notice
    _settling: list[str] = attrs.field(factory=list)  # ended turns whose answers are posting
    _marked_queued: set[str] = attrs.field(factory=set)  # prompts showing the queued mark
    _keys: itertools.count[int] = attrs.field(factory=itertools.count)
    _requests: itertools.count[int] = attrs.field(factory=itertools.count)

    def __attrs_post_init__(self) -> None:
        self.renderer = TurnRenderer(show_thinking=self.settings.show_thinking)
        self.renderer.cost_baseline = self.record.total_cost_usd
        self.restarts = RestartTracker(self.settings.restart)

    # --- helpers ---------------------------------------------------------------

    def _note(self, text: str) -> Show:
        return Show(PutPost.last(f"note.{next(self._keys)}", text))

    def _set(self, state: SessionState) -> None:
        self.state = transition(self.state, state)

    def _save(self, *, durable: bool = False, **changes: object) -> SaveRecord:
        self.record = attrs.evolve(self.record, **changes)  # type: ignore[arg-type]
        return SaveRecord(self.record, durable)

    def _mention(self) -> str:
        return f"@{self.settings.username} " if self.settings.username else ""

    # --- inputs ----------------------------------------------------------------

    def start(self, now: float, *, launch_now: bool) -> list[Effect]:
        """The session task begins: a new session (launch_now) or one restored from disk."""
        self.last_active_at = now
        effects: list[Effect] = []
        for post_id in self.record.unsettled:
            link = self.settings.permalink(post_id)
            effects.append(
                self._note(
                    f"⚠️ The supervisor restarted before the answer to [your message]({link}) was "
                    "complete; that turn was cut. The session is ready for your next message."
                )
            )
        self._settling = list(self.record.unsettled)  # cleared once those notices are posted
        if self.record.status == "suspended" or not launch_now:
            return effects  # stays SUSPENDED: the agent starts with the next prompt
        return effects + self._launch(now)

    def _launch(self, now: float, delay_s: float = 0.0) -> list[Effect]:
        self._set(S.STARTING)
        self.expected_exit = ""
        self.resuming = self.record.has_history
        return [LaunchAgent(resume=self.record.has_history, delay_s=delay_s)]

    def agent_ready(self, pid: int, now: float) -> list[Effect]:
        self._set(S.IDLE)
        effects: list[Effect] = [self._save(pgid=pid, status="live")]
        return effects + self._next_prompt(now)

    def prompt(self, prompt: QueuedPrompt, now: float) -> list[Effect]:
        self.last_active_at = now
        if self.state.is_final:
            return [self._note("This session has ended."), MarkHandled(prompt.channel_id, prompt.post_id)]
        self.queue.append(prompt)
        if self.state is S.SUSPENDED:
            return self._launch(now)
        if self.state is S.IDLE and not self.expected_exit:
            return self._next_prompt(now)
        if not self.state.in_turn:
            return []  # the agent is starting: the prompt goes in as soon as it is up
        # One request, not a post: a reaction on the prompt, taken off when its turn starts.
        self._marked_queued.add(prompt.post_id)
        return [MarkQueued(prompt.post_id, True)]

    def _next_prompt(self, now: float) -> list[Effect]:
        if self.state is not S.IDLE or not self.queue:
            return []
        prompt = self.queue.popleft()
        self.turn = Turn(prompt, started_at=now, last_output_at=now, next_typing_at=now + TYPING_EVERY_S)
        self._set(S.BUSY)
        self.renderer.start_turn(now)
        unsettled = (*self.record.unsettled, prompt.post_id)
        unmark: list[Effect] = []
        if prompt.post_id in self._marked_queued:
            self._marked_queued.discard(prompt.post_id)
            unmark.append(MarkQueued(prompt.post_id, False))
        return [
            ToAgent(SendPrompt(prompt.text, prompt.images)),
            # The record and the handled mark become durable in one write, before any of
            # the answer can show.
            self._save(has_history=True, unsettled=unsettled),
            MarkHandled(prompt.channel_id, prompt.post_id),
            Typing(),
            *unmark,
        ]

    def agent_event(self, event: AgentEvent, now: float) -> list[Effect]:
        if self.turn is not None:
            self.turn.last_output_at = now
        self.last_active_at = now
        if isinstance(event, TurnStarted):
            self.model = event.model or self.model
            return []
        if isinstance(event, PermissionAsked):
            return self._ask_permission(event, now)
        if isinstance(event, PermissionCancelled):
            return self._settle(event.request_id, "cancelled", None)
        if isinstance(event, ControlAsked):
            return [ToAgent(RefuseControl(event.request_id, f"unsupported request {event.subtype}"))]
        if isinstance(event, TurnEnded):
            return self._turn_ended(event, now)
        return [Show(op) for op in self.renderer.feed(event, now)]

    def _turn_ended(self, event: TurnEnded, now: float) -> list[Effect]:
        shown = [Show(op) for op in self.renderer.feed(event, now)]  # moves the cost baseline
        # The new baseline goes to the store before the completion line is put (it is in the
        # store's next write), but the answer does not wait for the disk: an fsync costs more
        # than the whole REST call, and the final words must show at once. A kill -9 in the
        # few milliseconds between can only make the next turn's cost include this one's.
        effects: list[Effect] = [self._save(total_cost_usd=self.renderer.cost_baseline), *shown]
        for request_id in list(self.pending):
            effects += self._settle(request_id, "cancelled", None)
        turn, self.turn = self.turn, None
        self.turns += 1
        if turn is not None:
            if turn.watchdog:
                effects.append(self._note(_watchdog_text(turn.watchdog, "interrupted")))
            if now - turn.started_at >= self.settings.notify_after_s and self.settings.username:
                effects.append(self._note(f"{self._mention()}the turn finished after {_duration(now - turn.started_at)}."))
        if self.state.in_turn:
            self._set(S.IDLE)
        if turn is not None:
            self._settling.append(turn.prompt.post_id)
        return effects + self._next_prompt(now)

    # --- permissions -------------------------------------------------------------

    def _ask_permission(self, request: PermissionAsked, now: float) -> list[Effect]:
        if self.turn is None:  # cannot happen with a well-behaved agent: never leave it waiting
            return [ToAgent(DenyTool(request.request_id, "No turn is running."))]
        self.pending[request.request_id] = PendingPermission(request, asked_at=now)
        if self.state is S.BUSY:
            self._set(S.AWAITING_APPROVAL)
        key = _permission_key(request.request_id)
        # The answer so far stays above the request; what follows continues below it.
        return [
            *(Show(op) for op in self.renderer.break_flow()),
            Show(PutPost.urgent(key, permission_text(request, "pending"))),
            AddReactions(key, PERMISSION_EMOJIS),
        ]

    def outbox_settled(self) -> list[Effect]:
        """Everything the thread should show is on the server: the answers of ended turns
        (or the notices that they were cut) are complete."""
        if not self._settling:
            return []
        done = set(self._settling)
        self._settling = []
        return [self._save(unsettled=tuple(p for p in self.record.unsettled if p not in done))]

    def post_created(self, key: str, post_id: str) -> None:
        request_id = key.removeprefix("perm.")
        if key.startswith("perm.") and request_id in self.pending:
            self.permission_posts[post_id] = request_id

    def _settle(self, request_id: str, outcome: str, command: AgentCommand | None, by: str = "") -> list[Effect]:
        pending = self.pending.pop(request_id, None)
        if pending is None:
            return []
        if not self.pending and self.state is S.AWAITING_APPROVAL:
            self._set(S.BUSY)
        effects: list[Effect] = [] if command is None else [ToAgent(command)]
        text = permission_text(pending.request, outcome, by)
        # Settled for good: its post no longer needs to be known (memory stays flat).
        for post_id in [p for p, r in self.permission_posts.items() if r == request_id]:
            del self.permission_posts[post_id]
        return [*effects, Show(PutPost.last(_permission_key(request_id), text))]

    def reaction(self, emoji: str, post_id: str, now: float) -> list[Effect]:
        answer = reaction_answer(emoji)
        if answer is None:
            return []
        request_id = self.permission_posts.get(post_id)
        if answer is Answer.STOP:
            # On a pending request the stop is its answer; the interrupt withdraws it.
            stopped = self._settle(request_id, "stopped", None) if request_id and request_id in self.pending else []
            return [*stopped, *self.interrupt(now)]
        pending = self.pending.get(request_id or "")
        if request_id is None or pending is None:
            return []
        request = pending.request
        by = f"@{self.settings.username}" if self.settings.username else ""
        if answer is Answer.ALLOW:
            return self._settle(request_id, "allowed", AllowTool(request_id, request.input), by)
        if answer is Answer.ALLOW_SESSION:
            command = AllowTool(request_id, request.input, _session_rules(request))
            return self._settle(request_id, "allowed for session", command, by)
        return self._settle(request_id, "denied", DenyTool(request_id, "The user denied this tool call."), by)

    # --- interrupts, time, the watchdog ------------------------------------------

    def interrupt(self, now: float, *, watchdog: str = "") -> list[Effect]:
        if self.turn is None:
            return [] if watchdog else [self._note("Nothing to stop: no turn is running.")]
        if self.turn.interrupted_at is not None:
            return []
        self.turn.interrupted_at = now
        self.turn.watchdog = watchdog
        return [ToAgent(Interrupt(f"stop_{next(self._requests)}"))]

    def next_deadline(self) -> float | None:
        times: list[float] = []
        for pending in self.pending.values():
            timeout = self.settings.approval_timeout_s
            times.append(pending.asked_at + (timeout if pending.reminded else timeout / 2))
        if self.turn is not None and not self.turn.terminating:
            times.append(self.turn.next_typing_at)
            if self.turn.interrupted_at is not None:
                times.append(self.turn.interrupted_at + self.settings.interrupt_grace_s)
            else:
                times.append(self.turn.started_at + self.settings.turn_timeout_s)
                if not self.pending:
                    times.append(self.turn.last_output_at + self.settings.stall_timeout_s)
        elif self.state is S.IDLE and self.settings.idle_suspend_s > 0 and not self.expected_exit:
            times.append(self.last_active_at + self.settings.idle_suspend_s)
        return min(times) if times else None

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for request_id, pending in list(self.pending.items()):
            effects += self._approval_clock(request_id, pending, now)
        turn = self.turn
        if turn is not None and not turn.terminating:
            if now >= turn.next_typing_at:
                turn.next_typing_at = now + TYPING_EVERY_S
                effects.append(Typing())
            if turn.interrupted_at is not None:
                if now >= turn.interrupted_at + self.settings.interrupt_grace_s:
                    effects += self._kill_hung_turn(turn)
            elif now >= turn.started_at + self.settings.turn_timeout_s:
                effects += self.interrupt(now, watchdog="timeout")
            elif not self.pending and now >= turn.last_output_at + self.settings.stall_timeout_s:
                effects += self.interrupt(now, watchdog="stall")
        elif (
            self.state is S.IDLE
            and self.settings.idle_suspend_s > 0
            and not self.expected_exit
            and now >= self.last_active_at + self.settings.idle_suspend_s
        ):
            self.expected_exit = "suspend"
            effects.append(StopAgent("suspend"))
        return effects

    def _approval_clock(self, request_id: str, pending: PendingPermission, now: float) -> list[Effect]:
        timeout = self.settings.approval_timeout_s
        if now >= pending.asked_at + timeout:
            message = f"No answer within {_duration(timeout)}: denied."
            return self._settle(request_id, "timed out", DenyTool(request_id, message))
        if not pending.reminded and now >= pending.asked_at + timeout / 2:
            pending.reminded = True
            left = _duration(pending.asked_at + timeout - now)
            return [self._note(f"{self._mention()}a permission request is waiting for you; it is denied in {left}.")]
        return []

    def _kill_hung_turn(self, turn: Turn) -> list[Effect]:
        turn.terminating = True
        self.expected_exit = "hung"
        why = turn.watchdog or "stop"
        return [self._note(_watchdog_text(why, "terminated")), StopAgent("hung")]

    # --- the agent's exit ---------------------------------------------------------

    def agent_exited(self, code: int | None, stderr_tail: str, now: float) -> list[Effect]:
        """The agent process is gone, whoever ended it."""
        reason, self.expected_exit = self.expected_exit, ""
        effects: list[Effect] = self._drop_turn()
        if self.state.is_final:
            return effects
        if reason == "suspend":
            self._set(S.SUSPENDED)
            effects += [self._save(pgid=0, status="suspended")]
            # A prompt that came while the agent was being suspended wakes it right up.
            return effects + (self._launch(now) if self.queue else [])
        if reason == "hung":
            effects.append(self._save(pgid=0))
            return effects + self._launch(now)
        if self.state is S.STARTING and self.resuming and "No conversation found" in stderr_tail:
            # The conversation was never written (cut before its first turn): start it anew.
            effects.append(self._save(has_history=False))
            return effects + self._launch(now)
        decision = self.restarts.on_exit(now)
        detail = f" (exit status {code})" if code is not None else ""
        if isinstance(decision, GiveUp):
            self._set(S.FAILED)
            text = (
                f"❌ The agent keeps exiting{detail}: {decision.exits_in_window} times recently. "
                "The session is marked failed; start a new one with `!new`."
            )
            tail = stderr_tail.strip().splitlines()[-3:]
            if tail:
                text += "\n```\n" + "\n".join(tail) + "\n```"
            return [*effects, self._note(text), self._save(pgid=0, status="failed"), Finished()]
        cut = ""
        if self._cut_post:
            cut = f" The turn for [your message]({self.settings.permalink(self._cut_post)}) was cut."
        effects.append(self._note(f"⚠️ The agent exited unexpectedly{detail}; restarting it with the conversation.{cut}"))
        effects.append(self._save(pgid=0))
        return effects + self._launch(now, decision.delay_s)

    def _drop_turn(self) -> list[Effect]:
        """The agent is gone: its turn and permission requests end with it."""
        effects: list[Effect] = []
        self._cut_post = self.turn.prompt.post_id if self.turn else ""
        for request_id in list(self.pending):
            effects += self._settle(request_id, "cancelled", None)
        if self.turn is not None:
            self._settling.append(self.turn.prompt.post_id)  # settled by the notice saying so
            self.turn = None
            if self.state.in_turn:
                self._set(S.IDLE)
        return effects

    # --- commands -----------------------------------------------------------------

    def command(self, command: commands.ThreadCommand | commands.BadCommand, post_id: str, channel_id: str, now: float) -> list[Effect]:
        handled = MarkHandled(channel_id, post_id)
        if isinstance(command, commands.BadCommand):
            return [self._note(f"⚠️ {command.reason}"), handled]
        if isinstance(command, commands.Stop):
            return [*self.interrupt(now), handled]
        if isinstance(command, commands.Status):
            return [self._note(self.status_text(now)), handled]
        if isinstance(command, commands.Help):
            return [self._note(THREAD_HELP), handled]
        if isinstance(command, commands.GetFile):
            return [SendFile(command.path), handled]
        if isinstance(command, commands.EndSession):
            return [*self.end(now), handled]
        return [handled]

    def end(self, now: float) -> list[Effect]:
        if self.state.is_final:
            return []
        effects = self._drop_turn()
        running = self.state is not S.SUSPENDED
        self._set(S.ENDED)
        self.queue.clear()
        if running:
            self.expected_exit = "end"
            effects.append(StopAgent("end"))
        return [
            *effects,
            self._save(pgid=0, status="ended"),
            self._note(f"🏁 Session **{self.record.name}** ended. Start another with `!new NAME` in the main DM."),
            Finished(),
        ]

    def status_text(self, now: float) -> str:
        r = self.record
        return "\n".join(
            [
                f"**{r.name}** · {self.state.value}",
                f"- directory: `{r.cwd}`",
                f"- agent session: `{r.id}`",
                f"- model: {self.model or 'not known yet'}",
                f"- turns: {self.turns} · cost so far: ${self.record.total_cost_usd:.4f}",
                f"- queued prompts: {len(self.queue)}",
            ]
        )


THREAD_HELP = (
    "Write here to talk to this session's agent. Commands: `!stop` (interrupt the turn), "
    "`!status`, `!get PATH` (send a file from the session's directory), `!end`.\n"
    "Reactions: 🛑 on any post stops the turn; on a permission request 👍 allows once, "
    "🔁 allows for this session, 👎 denies."
)


def _permission_key(request_id: str) -> str:
    return f"perm.{request_id}"


def _session_rules(request: PermissionAsked) -> tuple[dict[str, object], ...]:
    """The CLI's own suggestions, applied to this session only (never written to disk).

    Where the CLI offers exact rules (addRules: a Bash command, a fetched domain...) only
    those are sent: the mode change it offers next to them for a Bash call (setMode
    acceptEdits) would let every file-changing command in the directory through unasked,
    `rm` included. A mode change is sent when it is the whole offer (Write, Edit: "allow
    all edits during this session")."""
    offered = [s for s in request.suggestions if s.get("type") == "addRules"]
    if not offered:
        offered = [s for s in request.suggestions if s.get("type") == "setMode"]
    return tuple({**s, "destination": "session"} for s in offered)


def _watchdog_text(why: str, action: str) -> str:
    cause = {
        "timeout": "the turn ran past its time limit",
        "stall": "the agent produced no output for too long",
        "stop": "the agent did not stop when asked",
    }.get(why, why)
    if action == "interrupted":
        return f"⏱️ The watchdog interrupted the turn: {cause}."
    return f"⏱️ The agent was terminated: {cause} and it did not answer the interrupt. It restarts with the conversation."


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"
