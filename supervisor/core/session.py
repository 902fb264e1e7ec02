"""One session's decisions: prompts, queue, turns, permissions, watchdog, restarts.

`SessionCore` is a sans-IO state machine. The trio shell (`runtime.session`) feeds it
what happened — a prompt, an agent event, a reaction, a command, the agent's exit, the
passing of time — and carries out the effects it returns, in order. It never performs
I/O and never reads a clock; `now` is always passed in.

Rules it keeps:
- At most one prompt is in the agent at a time; the others wait in `queue`, in order.
  A prompt is marked handled (durably) before it is written to the agent, so it reaches
  an agent at most once: a turn cut by a crash is said in the thread, never run again
  unasked (🔁 on the notice runs it again).
- Every prompt ends visibly: answered, or a reply that links it and says it was cut or
  not run (at `!end`, when the session fails).
- Every permission request ends: by a reaction, a cancel, an interrupt, the turn's end,
  or the approval timeout (after one reminder that mentions the person).
- A turn ends: by its result, or by the watchdog (interrupt, then terminate).
- An agent that dies unexpectedly is restarted under the restart policy; past it the
  session fails. ENDED and FAILED are final.

It owns its parts and keeps the rules that span them (the state, the record): the
pending permission requests (`core.approvals`), how each handed prompt visibly ends
(`core.prompt_endings`), the turn and its clocks (`core.turn`). Its inputs and effects
are plain values (`core.session_effects`, re-exported here); its words are in
`core.thread_texts`.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

import attrs

from supervisor.core import commands, thread_texts
from supervisor.core.agent_events import (
    AgentCommand,
    AgentEvent,
    AgentUnusable,
    ControlAsked,
    ConversationMissing,
    ConversationOpened,
    DenyTool,
    Interrupt,
    PermissionAsked,
    PermissionCancelled,
    RefuseControl,
    SendPrompt,
    TurnEnded,
    TurnStarted,
)
from supervisor.core.approvals import Approvals, PendingPermission, remember_always, say_lapsed
from supervisor.core.events import ChoiceKind
from supervisor.core.lifecycle import SessionState, transition
from supervisor.core.permissions import Answer, choice_answer
from supervisor.core.prompt_endings import PromptEndings, rerun
from supervisor.core.render import TurnRenderer
from supervisor.core.restart import GiveUp, RestartTracker
from supervisor.core.session_effects import (
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
    SessionSettings,
    SettleChoices,
    Show,
    StopAgent,
    ToAgent,
    Typing,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.core.thread_texts import (
    THREAD_HELP,
    duration,
    failed_text,
    not_run_text,
    watchdog_text,
)
from supervisor.core.turn import TYPING_EVERY_S, Turn

# The effects and inputs live in `session_effects`; the shell takes them from here too.
__all__ = [
    "EditPost", "Effect", "Finished", "LaunchAgent", "MarkHandled", "MarkQueued",
    "OfferChoices", "QueuedPrompt", "SaveRecord", "SendFile", "SessionCore", "SessionSettings",
    "SettleChoices", "Show", "StopAgent", "ToAgent", "Typing",
]

S = SessionState
PROMPT_KEEP_CHARS = 16_000  # prompts up to this long are kept with the record, for a rerun


@attrs.define
class SessionCore:
    """Invariants: `turn` is set exactly when the state is BUSY or AWAITING_APPROVAL;
    `pending` is non-empty only in AWAITING_APPROVAL; queued prompts are not yet handled."""

    record: SessionRecord
    settings: SessionSettings
    state: SessionState = S.SUSPENDED
    queue: deque[QueuedPrompt] = attrs.field(factory=deque)
    turn: Turn | None = None
    approvals: Approvals = attrs.field(init=False)
    endings: PromptEndings = attrs.field(init=False)
    renderer: TurnRenderer = attrs.field(init=False)
    restarts: RestartTracker = attrs.field(init=False)
    expected_exit: str = ""  # why we stopped the agent ourselves; "" if it was not us
    resuming: bool = False  # the running agent was started to continue the conversation
    conversation_missing: bool = False  # the agent said the conversation to continue is not there
    model: str = ""
    turns: int = 0
    last_active_at: float = 0.0
    _marked_queued: set[str] = attrs.field(factory=set)  # prompts showing the queued mark
    _keys: itertools.count[int] = attrs.field(factory=itertools.count)
    _requests: itertools.count[int] = attrs.field(factory=itertools.count)

    def __attrs_post_init__(self) -> None:
        self.renderer = TurnRenderer(show_thinking=self.settings.show_thinking)
        self.renderer.cost_baseline = self.record.total_cost_usd
        self.restarts = RestartTracker(self.settings.restart)
        self.approvals = Approvals(self.settings, self._note)
        self.endings = PromptEndings(self.settings, self._note)

    @property
    def pending(self) -> dict[str, PendingPermission]:
        """The permission requests the agent waits on, by request id."""
        return self.approvals.pending

    @property
    def permission_posts(self) -> dict[str, str]:
        """The posts of pending permission requests: post id -> request id."""
        return self.approvals.posts

    # --- helpers ---------------------------------------------------------------

    def _note(self, text: str) -> Show:
        return Show(PutPost.last(f"note.{next(self._keys)}", text))

    def _set(self, state: SessionState) -> None:
        self.state = transition(self.state, state)

    def _save(self, *, durable: bool = False, **changes: object) -> SaveRecord:
        self.record = attrs.evolve(self.record, **changes)  # type: ignore[arg-type]
        return SaveRecord(self.record, durable)

    def _adopt(self, effects: list[Effect]) -> list[Effect]:
        """Effects of a part (`approvals`, `endings`): the record it saved is the session's now."""
        for effect in effects:
            if isinstance(effect, SaveRecord):
                self.record = effect.record
        return effects

    def _mention(self) -> str:
        return f"@{self.settings.username} " if self.settings.username else ""

    # --- inputs ----------------------------------------------------------------

    def start(self, now: float, *, launch_now: bool) -> list[Effect]:
        """The session task begins: a new session (launch_now) or one restored from disk."""
        self.last_active_at = now
        effects = self._adopt(say_lapsed(self.record))
        effects += self.endings.restored(self.record)
        if self.record.status == "suspended" or not launch_now:
            return effects  # stays SUSPENDED: the agent starts with the next prompt
        return effects + self._launch(now)

    def _not_run(self, why: str) -> list[Effect]:
        """The queued prompts will never run: each is handled, with a reply that says so."""
        if not self.queue:
            return []
        prompts, self.queue = list(self.queue), deque()
        text = not_run_text(why, [f"[this message]({self.settings.permalink(p.post_id)})" for p in prompts])
        unmark = [MarkQueued(p.post_id, False) for p in prompts if p.post_id in self._marked_queued]
        self._marked_queued.difference_update(p.post_id for p in prompts)
        return [self._note(text), *(MarkHandled(p.channel_id, p.post_id) for p in prompts), *unmark]

    def _launch(self, now: float, delay_s: float = 0.0) -> list[Effect]:
        self._set(S.STARTING)
        self.expected_exit = ""
        self.resuming = self.record.has_history
        return [LaunchAgent(resume=self.record.has_history, delay_s=delay_s)]

    def turned_to(self, now: float) -> list[Effect]:
        """The person turned to this thread: a suspended agent starts now, ready for them
        (the seed: switching to a session starts its agent at once)."""
        if self.state is not S.SUSPENDED:
            return []
        self.last_active_at = now
        return self._launch(now)

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
        texts = self.record.prompt_texts
        if len(prompt.text) <= PROMPT_KEEP_CHARS:
            texts = {**texts, prompt.post_id: prompt.text}
        return [
            # The record and the handled mark become durable in one write before the prompt
            # is written: a crash in between gives a "cut" notice, never a second delivery.
            self._save(has_history=True, unsettled=unsettled, prompt_texts=texts),
            MarkHandled(prompt.channel_id, prompt.post_id),
            ToAgent(SendPrompt(prompt.text, prompt.images)),
            Typing(),
            *unmark,
        ]

    def agent_event(self, event: AgentEvent, now: float) -> list[Effect]:
        if self.state.is_final:
            return []  # the agent is being stopped: nothing it says matters any more
        if self.turn is not None:
            self.turn.last_output_at = now
        self.last_active_at = now
        if isinstance(event, TurnStarted):
            self.model = event.model or self.model
            return []
        if isinstance(event, ConversationOpened | ConversationMissing | AgentUnusable):
            return self._conversation_news(event, now)
        if isinstance(event, PermissionAsked):
            return self._ask_permission(event, now)
        if isinstance(event, PermissionCancelled):
            return self._settle(event.request_id, "cancelled", None, now)
        if isinstance(event, ControlAsked):
            return [ToAgent(RefuseControl(event.request_id, f"unsupported request {event.subtype}"))]
        if isinstance(event, TurnEnded):
            return self._turn_ended(event, now)
        shown = self.renderer.feed(event, now)
        if self.turn is not None:
            self.turn.keys.update(op.key for op in shown)
        return [Show(op) for op in shown]

    def _turn_ended(self, event: TurnEnded, now: float) -> list[Effect]:
        ops = self.renderer.feed(event, now)  # moves the cost baseline
        shown = [Show(op) for op in ops]
        # The new baseline is on disk before the completion line shows: after a crash the
        # next turn's cost must not include this one's. So is the fact that the turn ended:
        # a restart before its posts show must not call it cut.
        answered = self.record.answered
        if self.turn is not None:
            answered = (*answered, self.turn.prompt.post_id)
        save = self._save(durable=True, total_cost_usd=self.renderer.cost_baseline, answered=answered)
        effects: list[Effect] = [save, *shown]
        for request_id in list(self.pending):
            effects += self._settle(request_id, "cancelled", None, now)
        turn, self.turn = self.turn, None
        self.turns += 1
        if turn is not None:
            if turn.watchdog:
                effects.append(self._note(watchdog_text(turn.watchdog, "interrupted")))
            if now - turn.started_at >= self.settings.notify_after_s and self.settings.username:
                effects.append(self._note(f"{self._mention()}the turn finished after {duration(now - turn.started_at)}."))
        if self.state.in_turn:
            self._set(S.IDLE)
        if turn is not None:
            self.endings.answered(turn.prompt.post_id, frozenset({*turn.keys, *(op.key for op in ops)}))
        return effects + self._next_prompt(now)

    def _conversation_news(
        self, event: ConversationOpened | ConversationMissing | AgentUnusable, now: float
    ) -> list[Effect]:
        if isinstance(event, ConversationMissing):
            # Resuming again would only fail again: the next conversation starts anew.
            self.conversation_missing = True
            return [self._save(has_history=False, agent_session_id="")]
        if isinstance(event, AgentUnusable):
            return self._fail(f"❌ The agent cannot be used: {event.reason}.", "", now=now)
        self.model = event.model or self.model
        effects: list[Effect] = []
        if self.conversation_missing and not event.resumed:
            self.conversation_missing = False
            effects.append(self._note("⚠️ The conversation could not be continued, so a new one starts."))
        if event.session_id and event.session_id != (self.record.agent_session_id or self.record.id):
            # The agent chose it: on disk before the first prompt is written, so a restart
            # continues this conversation.
            effects.append(self._save(durable=True, agent_session_id=event.session_id))
        return effects

    # --- permissions -------------------------------------------------------------

    def _ask_permission(self, request: PermissionAsked, now: float) -> list[Effect]:
        if self.turn is None:  # cannot happen with a well-behaved agent: never leave it waiting
            return [ToAgent(DenyTool(request.request_id, "No turn is running."))]
        asked = self.approvals.ask(request, now)
        if self.state is S.BUSY:
            self._set(S.AWAITING_APPROVAL)
        # The answer so far stays above the request; what follows continues below it.
        return [*(Show(op) for op in self.renderer.break_flow()), *asked]

    @property
    def settling(self) -> bool:
        """Some ended turn waits for its answer (or the notice that it was cut) to show."""
        return self.endings.settling

    def outbox_progress(self, shows: Callable[[str], bool]) -> list[Effect]:
        """Posts reached the server; `shows(key)` says whether a post shows what it should.
        A turn whose posts all show is settled at once (not when the whole thread is), so
        a restart never calls a complete answer cut while a later turn streams."""
        return self._adopt(self.endings.progress(shows, self.record))

    def outbox_settled(self) -> list[Effect]:
        """Everything the thread should show is on the server."""
        return self.outbox_progress(lambda key: True)

    def post_created(self, key: str, post_id: str) -> list[Effect]:
        offered = self.endings.post_created(key, post_id, self.record)
        if offered is not None:
            return self._adopt(offered)
        return self._adopt(self.approvals.post_created(key, post_id, self.record))

    def _settle(
        self, request_id: str, outcome: str, command: AgentCommand | None, now: float, by: str = ""
    ) -> list[Effect]:
        effects = self._adopt(self.approvals.settle(request_id, outcome, command, self.record, by))
        if not effects:
            return []  # it had ended already
        if not self.pending and self.state is S.AWAITING_APPROVAL:
            self._set(S.BUSY)
        if self.turn is not None:
            self.turn.last_output_at = now  # waiting for a person is not a stall
        return effects

    def choose(self, kind: ChoiceKind, post_id: str, now: float) -> list[Effect]:
        """A person's choice on one of the thread's posts."""
        if self.state.is_final:
            return []
        # Where one reaction offers both (🔁 on Mattermost), the post says which is meant.
        if kind in ("rerun", "allow_always") and post_id in self.record.rerun_offers:
            again, save = rerun(post_id, self.record)
            return [*self._adopt([save]), SettleChoices(post_id), *self.prompt(again, now)]
        answer = choice_answer(kind)
        if answer is None:
            return []
        request_id = self.permission_posts.get(post_id)
        if answer is Answer.STOP:
            # On a pending request the stop is its answer; the interrupt withdraws it.
            stopped = self._settle(request_id, "stopped", None, now) if request_id and request_id in self.pending else []
            return [*stopped, *self.interrupt(now)]
        verdict = None if request_id is None else self.approvals.verdict(request_id, answer)
        if request_id is None or verdict is None:
            return []
        by = f"@{self.settings.username}" if self.settings.username else ""
        effects = self._settle(request_id, verdict.outcome, verdict.command, now, by)
        if verdict.always is not None:
            effects += self._adopt(remember_always(verdict.always, self.record))
        return effects

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
        times = self.approvals.deadlines()
        if self.turn is not None and not self.turn.terminating:
            times += self.turn.deadlines(self.settings, asking=bool(self.pending))
        elif self.state is S.IDLE and self.settings.idle_suspend_s > 0 and not self.expected_exit:
            times.append(self.last_active_at + self.settings.idle_suspend_s)
        return min(times) if times else None

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for request_id in list(self.pending):
            due = self.approvals.due(request_id, now)
            if isinstance(due, DenyTool):
                effects += self._settle(request_id, "timed out", due, now)
            elif due is not None:
                effects.append(due)  # the reminder
        turn = self.turn
        if turn is not None and not turn.terminating:
            if turn.typing_due(now):
                effects.append(Typing())
            watchdog = turn.watchdog_due(now, self.settings, asking=bool(self.pending))
            if watchdog == "kill":
                effects += self._kill_hung_turn(turn)
            elif watchdog:
                effects += self.interrupt(now, watchdog=watchdog)
        elif (
            self.state is S.IDLE
            and self.settings.idle_suspend_s > 0
            and not self.expected_exit
            and now >= self.last_active_at + self.settings.idle_suspend_s
        ):
            self.expected_exit = "suspend"
            effects.append(StopAgent("suspend"))
        return effects

    def _kill_hung_turn(self, turn: Turn) -> list[Effect]:
        turn.terminating = True
        self.expected_exit = "hung"
        why = turn.watchdog or "stop"
        return [self._note(watchdog_text(why, "terminated")), StopAgent("hung")]  # its exit says the turn was cut

    # --- the agent's exit ---------------------------------------------------------

    def agent_exited(self, code: int | None, stderr_tail: str, now: float) -> list[Effect]:
        """The agent process is gone, whoever ended it."""
        reason, self.expected_exit = self.expected_exit, ""
        effects: list[Effect] = self._drop_turn(now)
        if self.state.is_final:
            return effects
        if reason == "suspend":
            self._set(S.SUSPENDED)
            effects += [self._save(pgid=0, status="suspended")]
            # A prompt that came while the agent was being suspended wakes it right up.
            return effects + (self._launch(now) if self.queue else [])
        if reason == "hung":
            effects += self.endings.say_cut("The turn for {link} was cut.")
            effects.append(self._save(pgid=0))
            return effects + self._launch(now)
        if self.resuming and self.conversation_missing:
            # The conversation was never written (a kill came before the agent saved its
            # first turn): start it anew, whether the agent died at once or at its first
            # prompt. Resuming again would only fail again, until the session is failed.
            self.conversation_missing = False
            effects.append(self._save(has_history=False))
            effects += self.endings.say_cut("The conversation was never saved, so it starts anew; the turn for {link} was cut.")
            return effects + self._launch(now)
        decision = self.restarts.on_exit(now)
        detail = f" (exit status {code})" if code is not None else ""
        if isinstance(decision, GiveUp):
            why = f"❌ The agent keeps exiting{detail}: {decision.exits_in_window} times recently."
            return [*effects, *self._fail(why, stderr_tail)]
        effects.append(self._note(f"⚠️ The agent exited unexpectedly{detail}; restarting it with the conversation."))
        effects += self.endings.say_cut("The turn for {link} was cut.")
        effects.append(self._save(pgid=0))
        return effects + self._launch(now, decision.delay_s)

    def _fail(self, why: str, stderr_tail: str, *, now: float | None = None) -> list[Effect]:
        """The session is over for good: said in the thread, with its cut and queued prompts.
        With `now`, its agent still runs (it is unusable): its turn ends and it is stopped."""
        effects: list[Effect] = []
        if now is not None:
            effects += self._drop_turn(now)
            self.expected_exit = "failed"
            effects.append(StopAgent("failed"))
        self._set(S.FAILED)
        effects.append(self._note(failed_text(why, stderr_tail)))
        effects += self.endings.say_cut("The turn for {link} was cut.", rerun=False)
        effects += self._not_run("the session failed")
        return [*effects, self._save(pgid=0, status="failed"), Finished()]

    def _drop_turn(self, now: float) -> list[Effect]:
        """The agent is gone: its turn and permission requests end with it. The caller
        says so in a notice (`endings.say_cut`), which settles the cut prompt once it shows."""
        effects: list[Effect] = []
        self.endings.cut = self.turn.prompt if self.turn else None
        for request_id in list(self.pending):
            effects += self._settle(request_id, "cancelled", None, now)
        if self.turn is not None:
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
            return [handled, *self.end(now)]  # Finished comes last
        return [handled]

    def end(self, now: float) -> list[Effect]:
        if self.state.is_final:
            return []
        effects = self._drop_turn(now)
        effects += self.endings.say_cut("The turn for {link} was stopped: the session ended.", rerun=False)
        effects += self._not_run("the session ended")
        running = self.state is not S.SUSPENDED
        self._set(S.ENDED)
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
        return thread_texts.status_text(self.record, self.state.value, self.model, self.turns, len(self.queue))

