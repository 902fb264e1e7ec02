"""The turn loop: the prompts, one at a time in the agent, and what happens in each turn.

`TurnLoop` is the part of `core.session.SessionCore` that keeps the prompts waiting in
the queue (the running answer says how many wait), hands the next one to the agent
once it is idle, feeds what the agent says to the turn's renderer, asks a person about
each permission request and carries out their choice, interrupts the turn (`!stop`, 🛑,
the watchdog) and watches the turn's clocks (typing, time limit, stall, the interrupt's
grace).

Rules it keeps:
- At most one prompt is in the agent at a time; the others wait in `queue`, in order.
  A prompt is marked handled (durably) before it is written to the agent, so it reaches
  an agent at most once; the one exception is a prompt the agent never acted on (it
  exited at once without a word, `exited_unheard`): it goes to the next agent, once.
- Every permission request ends: by a choice, a cancel, an interrupt, the turn's end, the
  agent's end, or the approval timeout (after one reminder that mentions the person).
- A turn ends: by its result, or by the watchdog (an interrupt, then the agent is stopped).
- A 🛑 on a post of a turn that ended before the running one began stops nothing: it
  was meant for that turn (given while it ran, it may come after its end).

It moves the state only between IDLE, BUSY and AWAITING_APPROVAL: launching, stopping
and restarting the agent are the agent's life (`core.agent_life`); a hung turn asks the
core to stop the agent. It never performs I/O or reads a clock (`now` is passed in).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections import deque

import attrs

from supervisor.core.agent_events import (
    AgentCommand,
    AgentEvent,
    ControlAsked,
    DenyTool,
    Interrupt,
    PermissionAsked,
    PermissionCancelled,
    RefuseControl,
    SendPrompt,
    ToolOutcome,
    TurnEnded,
)
from supervisor.core.approvals import Approvals, remember_always
from supervisor.core.events import ChoiceKind
from supervisor.core.lifecycle import SessionState
from supervisor.core.permissions import Answer, PermissionState, choice_answer, permission_text
from supervisor.core.prompt_endings import PROMPT_KEEP_CHARS
from supervisor.core.render import PutPost, TurnRenderer
from supervisor.core.session_effects import (
    Effect,
    MarkHandled,
    QueuedPrompt,
    Show,
    ToAgent,
    Typing,
)
from supervisor.core.session_shared import SessionShared
from supervisor.core.thread_texts import (
    duration,
    ended_turn_stop_text,
    not_run_text,
    queued_note,
    watchdog_text,
)
from supervisor.core.turn import Turn

S = SessionState
WITHDRAWN_TOOL_TEXT = "not run: the turn was stopped"
# Answers up to this long (as the state file writes them) are kept until they show, to be
# posted after a crash: every save of the record carries them meanwhile.
ANSWER_KEEP_CHARS = 32_000
# Prompts still waiting this long after the first was written while the agent starts are
# said queued (a quick start, the common case, says nothing).
STARTING_NOTE_AFTER_S = 5.0
# An agent that exits this soon after its prompt went in, without a word since, was ending
# as its last turn did: it is taken not to have acted on the prompt (`exited_unheard`).
UNHEARD_EXIT_S = 2.0
# The posts whose turn is known (`TurnLoop.turn_posts`): the newest this many. A 🛑 on an
# older one acts as on a post of no turn.
TURN_POSTS_KEPT = 256
# A turn's posts: "t<n>.0", "t<n>.f1.0", "t<n>.done" (`core.render`), n the turn's number.
TURN_POST_KEY = re.compile(r"t(\d+)\.")


@attrs.frozen
class HeldPrompt:
    """A prompt that waits for its attachments (`file_ids`: none left once saved), or
    behind one that does."""

    prompt: QueuedPrompt
    file_ids: tuple[str, ...] = ()


@attrs.frozen
class HeldStop:
    """A stop that came while no turn ran but a held prompt would start one: it is for
    that prompt's turn, so it waits with it."""

    post_id: str
    channel_id: str = ""  # a `!stop` post, handled when it is taken; "" for a 🛑 reaction


@attrs.define
class TurnLoop:
    """Invariants: `turn` is set exactly when the state is BUSY or AWAITING_APPROVAL;
    `approvals.pending` is non-empty only in AWAITING_APPROVAL; queued prompts are not yet
    handled, but for one no agent acted on (`not_delivered`), which stays unsettled until
    its turn, or a reply that it did not run, shows."""

    session: SessionShared
    queue: deque[QueuedPrompt] = attrs.field(factory=deque)
    turn: Turn | None = None
    # Before the queue: a prompt whose attachments are being saved, and what was written
    # after it (`SessionCore.prompt_in`). Its prompts count as queued, and are said not run
    # with the queue if the session ends first.
    held: deque[HeldPrompt | HeldStop] = attrs.field(factory=deque)
    # A turn the agent began with no prompt of ours (Claude Code's background tasks wake
    # it, PROTOCOL §5): when it was last heard in it; None while none runs. A prompt sent
    # meanwhile would wait in the agent and take that turn's result for its own, so the
    # queue waits for its end here instead, or for the stall timeout of silence: a start
    # that never ends must not hold the prompts for good.
    own_turn_heard_at: float | None = None
    # The supervisor stops: no prompt starts a turn any more. Queued ones are not handled
    # yet, so the next start fetches them again and runs them; one handed on after its
    # agent died on it (`exited_unheard`) is handled: the next start runs it from the
    # record (`SessionRecord.handed_on`).
    stopping_supervisor: bool = False
    # The prompts run again on the next agent after one exited without a word on them: a
    # second such exit calls the turn cut, so a prompt that kills every agent cannot loop.
    sent_again: set[str] = attrs.field(factory=set)
    # When to say that prompts wait for the agent to start, if it is still starting then;
    # None: nothing to say.
    start_note_at: float | None = None
    # Post id -> the number of the turn that made it (the renderer's), the newest
    # `TURN_POSTS_KEPT`: a 🛑 on a post of a turn that is over is not for the running one.
    turn_posts: dict[str, int] = attrs.field(factory=dict)
    approvals: Approvals = attrs.field(init=False)
    renderer: TurnRenderer = attrs.field(init=False)
    _requests: itertools.count[int] = attrs.field(factory=itertools.count)

    def __attrs_post_init__(self) -> None:
        settings = self.session.settings
        self.renderer = TurnRenderer(show_thinking=settings.show_thinking, limit=settings.max_message_chars)
        self.approvals = Approvals(settings, self.session.note)

    # --- prompts -------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """The prompts that wait behind the turn: queued here, or held for their files."""
        return len(self.queue) + sum(isinstance(held, HeldPrompt) for held in self.held)

    def hold(self, held: HeldPrompt | HeldStop) -> list[Effect]:
        """Waits behind the prompt whose files are being saved; a prompt is counted in the
        running answer's footer at once (and keeps its place when it is let go)."""
        self.held.append(held)
        if isinstance(held, HeldStop) or not self.session.state.in_turn:
            return []
        return self._show(self.renderer.queue_grew(self.waiting))

    def prompt(self, prompt: QueuedPrompt, now: float) -> list[Effect]:
        """A prompt for a running (or starting) agent: in now, or queued behind the turn."""
        self.queue.append(prompt)
        state = self.session.state
        if state is S.IDLE:
            effects = self.next_prompt(now)
            if effects or self._own_turn_until() <= now or not self._agent_takes():
                return effects
            # The agent's own turn runs: its answer so far says the queue, as ours does.
            shown = self._show(self.renderer.queue_grew(self.waiting))
            if shown or self.waiting > 1:  # a burst is one note, not one each
                return shown
            return [self.session.note(queued_note(1, starting=False))]  # no words of that turn yet
        if not state.in_turn:  # it goes in as soon as the agent is up, said if that is slow
            if self.start_note_at is None:
                self.start_note_at = now + STARTING_NOTE_AFTER_S
            return []
        # No request of its own: the running answer's footer counts the queue.
        return self._show(self.renderer.queue_grew(self.waiting))

    def next_prompt(self, now: float) -> list[Effect]:
        """The first queued prompt, in the agent now if it can take it. An agent being
        stopped (suspended, hung) may still end a turn or fall silent in one of its own:
        the prompt then waits for the next agent, or it would be lost with this one."""
        session = self.session
        if session.state is S.IDLE:
            self.start_note_at = None  # the agent is up
        if session.state is not S.IDLE or not self.queue or self._own_turn_until() > now or not self._agent_takes():
            return []
        self.own_turn_heard_at = None  # over, or silent for too long: prompts go in again
        prompt = self.queue.popleft()
        typing_at = now + session.settings.typing_every_s
        self.turn = Turn(prompt, started_at=now, last_output_at=now, next_typing_at=typing_at)
        session.move(S.BUSY)
        self.renderer.start_turn(now)  # the queue behind it is said with its first words
        # Its own cost is what the conversation's total grows by; the record has the total
        # (zero again where a new conversation started).
        self.renderer.cost_baseline = session.record.total_cost_usd
        unsettled = tuple(dict.fromkeys((*session.record.unsettled, prompt.post_id)))  # once, if tried before
        handed_on = session.record.handed_on_but({prompt.post_id})  # given now
        texts = session.record.prompt_texts
        if len(prompt.text) <= PROMPT_KEEP_CHARS:
            texts = {**texts, prompt.post_id: prompt.text}
        return [
            # The record and the handled mark become durable in one write before the prompt
            # is written: a crash in between gives a "cut" notice, never a second delivery.
            session.save(has_history=True, unsettled=unsettled, prompt_texts=texts, handed_on=handed_on),
            MarkHandled(prompt.channel_id, prompt.post_id),
            ToAgent(SendPrompt(prompt.text, prompt.images)),
            Typing(),
        ]

    def waiting_prompts(self) -> list[QueuedPrompt]:
        """The prompts queued, then those held for their files (written after them)."""
        return [*self.queue, *(h.prompt for h in self.held if isinstance(h, HeldPrompt))]

    def not_run(self, why: str) -> list[Effect]:
        """The queued prompts (and those held for their files, written after them) will
        never run: each is handled, with a reply that says so. A `!stop` held with them
        is handled too: the reply says its prompt did not run."""
        prompts = self.waiting_prompts()
        stops: list[Effect] = [
            MarkHandled(h.channel_id, h.post_id) for h in self.held if isinstance(h, HeldStop) and h.channel_id
        ]
        self.queue, self.held = deque(), deque()
        if not prompts:
            return stops
        return [*self._show(self.renderer.drop_queue_line()), *self._said_not_run(why, prompts), *stops]

    def not_run_words(self, why: str, prompts: list[QueuedPrompt]) -> str:
        """The reply that says `prompts` will never run, each linked."""
        permalink = self.session.settings.permalink
        return not_run_text(why, [f"[this message]({permalink(p.post_id)})" for p in prompts])

    def _said_not_run(self, why: str, prompts: list[QueuedPrompt]) -> list[Effect]:
        note = self.session.note(self.not_run_words(why, prompts))
        for p in prompts:
            if p.post_id in self.session.record.unsettled:  # handed before (`not_delivered`)
                self.session.endings.said_by(p.post_id, frozenset({note.op.key}))
        effects: list[Effect] = [note, *(MarkHandled(p.channel_id, p.post_id) for p in prompts)]
        not_run = {p.post_id for p in prompts}
        if any(p in not_run for p in self.session.record.handed_on):
            # On disk before the reply can show: no start may run what was said not run.
            effects.insert(0, self.session.save(durable=True, handed_on=self.session.record.handed_on_but(not_run)))
        return effects

    # --- what the agent says in a turn ----------------------------------------------

    def heard(self, at: float) -> None:
        """The agent said something at `at`: the turn is not stalled (a time from before
        the turn began, or before what was heard last, changes nothing)."""
        if self.turn is not None:
            self.turn.last_output_at = max(self.turn.last_output_at, at)
        elif self.own_turn_heard_at is not None:
            self.own_turn_heard_at = max(self.own_turn_heard_at, at)

    def agent_event(self, event: AgentEvent, now: float) -> list[Effect]:
        if isinstance(event, PermissionAsked):
            return self._ask_permission(event, now)
        if isinstance(event, PermissionCancelled):
            return self._settle(event.request_id, "cancelled", None, now)
        if isinstance(event, ControlAsked):
            return [ToAgent(RefuseControl(event.request_id, f"unsupported request {event.subtype}"))]
        if isinstance(event, TurnEnded):
            return self._turn_ended(event, now)
        if isinstance(event, ToolOutcome) and self.turn is not None and event.tool_use_id in self.turn.withdrawn_tools:
            event = attrs.evolve(event, text=WITHDRAWN_TOOL_TEXT)
        return self._show(self.renderer.feed(event, now, waiting=self.waiting))

    def _show(self, ops: list[PutPost]) -> list[Effect]:
        if self.turn is not None:
            self.turn.keys.update(op.key for op in ops)
        return [Show(op) for op in ops]

    def _turn_ended(self, event: TurnEnded, now: float) -> list[Effect]:
        session = self.session
        ops = self.renderer.feed(event, now)  # moves the cost baseline
        shown = [Show(op) for op in ops]
        # The new baseline is on disk before the completion line shows: after a crash the
        # next turn's cost must not include this one's. So is the fact that the turn ended:
        # a restart before its posts show must not call it cut. One the supervisor's stop
        # cut stays unsettled: the next start says it was cut, with 🔁 (in no hurry, unlike
        # a notice posted in the stop's last seconds), not the bare footer of a 🛑.
        answered, answer_texts = session.record.answered, session.record.answer_texts
        finished = event.subtype == "success" and not event.is_error and not event.terminal_reason.startswith("aborted")
        cut_by_stop = self.turn is not None and self.turn.cut_by_stop and not finished
        if self.turn is not None and not cut_by_stop:
            answered = (*answered, self.turn.prompt.post_id)
            parts = tuple(op.text for op in ops)  # the turn's posts, every one put whole at its end
            if len(json.dumps(parts)) <= ANSWER_KEEP_CHARS:  # escaped as the state file has it
                answer_texts = {**answer_texts, self.turn.prompt.post_id: parts}
        save = session.save(
            durable=True,
            total_cost_usd=self.renderer.cost_baseline,
            answered=answered,
            answer_texts=answer_texts,
            turns=session.record.turns + 1,
        )
        effects: list[Effect] = [save, *shown]
        for request_id in list(self.approvals.pending):
            effects += self._settle(request_id, "cancelled", None, now)
        turn, self.turn = self.turn, None
        if turn is None:
            self.own_turn_heard_at = None
        if turn is not None and not cut_by_stop:
            if turn.watchdog:
                effects.append(session.note(watchdog_text(turn.watchdog, "interrupted")))
            username = session.settings.username
            if now - turn.started_at >= session.settings.notify_after_s and username:
                effects.append(session.note(f"@{username} the turn finished after {duration(now - turn.started_at)}."))
        if session.state.in_turn:
            session.move(S.IDLE)
        if turn is not None and not cut_by_stop:
            session.endings.said_by(turn.prompt.post_id, frozenset({*turn.keys, *(op.key for op in ops)}))
        return effects + self.next_prompt(now)

    # --- permissions ---------------------------------------------------------------

    def _ask_permission(self, request: PermissionAsked, now: float) -> list[Effect]:
        if self.turn is None:
            # A turn the agent began by itself (a background task woke it): nobody sent it
            # work to approve, and a request here would have no turn to time out or end it.
            # Denied at once, never left waiting, and said where the person sees it.
            settings = self.session.settings
            return [
                ToAgent(DenyTool(request.request_id, "No turn of the user's is running: ask them in a message.")),
                self.session.note(permission_text(request, PermissionState.OUTSIDE_TURN, max_chars=settings.max_message_chars)),
            ]
        asked = self.approvals.ask(request, now)
        if self.session.state is S.BUSY:
            self.session.move(S.AWAITING_APPROVAL)
        # The answer so far stays above the request; what follows continues below it.
        return [*(Show(op) for op in self.renderer.break_flow(self.waiting)), *asked]

    def _settle(
        self, request_id: str, outcome: str, command: AgentCommand | None, now: float, by: str = ""
    ) -> list[Effect]:
        session = self.session
        pending = self.approvals.pending.get(request_id)
        if pending and outcome in ("cancelled", "stopped") and self.turn and self.turn.interrupted_at is not None:
            self.turn.withdrawn_tools.add(pending.request.tool_use_id)
        effects = session.adopt(self.approvals.settle(request_id, outcome, command, session.record, by))
        if not effects:
            return []  # it had ended already
        if not self.approvals.pending and session.state is S.AWAITING_APPROVAL:
            session.move(S.BUSY)
        if self.turn is not None:
            self.turn.last_output_at = now  # waiting for a person is not a stall
        return effects

    def choose(self, kind: ChoiceKind, post_id: str, now: float) -> list[Effect]:
        """A person's choice on a post of the turn's: an answer to a request, or 🛑."""
        answer = choice_answer(kind)
        if answer is None:
            return []
        if answer is Answer.STOP and self._of_ended_turn(post_id):
            return [self.session.note(ended_turn_stop_text(self.session.settings.words))]
        request_id = self.approvals.posts.get(post_id)
        if answer is Answer.STOP:
            # On a pending request the stop is its answer; the interrupt withdraws it.
            interrupt = self.interrupt(now)  # first: the request is then withdrawn by it
            pending = self.approvals.pending
            stopped = self._settle(request_id, "stopped", None, now) if request_id and request_id in pending else []
            return [*stopped, *interrupt]
        verdict = None if request_id is None else self.approvals.verdict(request_id, answer)
        if request_id is None or verdict is None:
            return []
        username = self.session.settings.username
        effects = self._settle(request_id, verdict.outcome, verdict.command, now, f"@{username}" if username else "")
        if verdict.always is not None:
            effects += self.session.adopt(remember_always(verdict.always, self.session.record))
        return effects

    def post_created(self, key: str, post_id: str) -> None:
        """The post `key` now exists as `post_id`: the turn it belongs to is kept, if any."""
        found = TURN_POST_KEY.match(key)
        if found is not None:
            number = int(found[1])
        elif any(pending.key == key for pending in self.approvals.pending.values()):
            number = self.renderer.turns  # a request waits only in the running turn
        else:
            return  # the root, a note: 🛑 there stops whatever runs
        self.turn_posts[post_id] = number
        if len(self.turn_posts) > TURN_POSTS_KEPT:
            del self.turn_posts[next(iter(self.turn_posts))]

    def _of_ended_turn(self, post_id: str) -> bool:
        """`post_id` is a post of a turn that ended before the one running now began (the
        renderer numbers every turn, ours or the agent's own, as it starts it)."""
        number = self.turn_posts.get(post_id)
        runs = self.turn is not None or self.own_turn_heard_at is not None
        return runs and number is not None and number < self.renderer.turns

    # --- interrupts, the turn's clocks, the agent's end ------------------------------

    def interrupt(self, now: float, *, watchdog: str = "") -> list[Effect]:
        if self.turn is None:
            if watchdog:
                return []
            if self.own_turn_heard_at is not None and self.session.state is S.IDLE:
                # A turn the agent began by itself runs: it is what a stop stops; the
                # prompts waiting for its end stay queued.
                return [ToAgent(Interrupt(f"stop_{next(self._requests)}"))]
            if self.queue:
                # Its agent is not up yet (starting, or waking from a suspend): the prompt
                # that would run first never reaches it. Sending it and then an interrupt
                # would race the agent, which may take the interrupt before the turn.
                return self._said_not_run("stopped before it started", [self.queue.popleft()])
            return [self.session.note("Nothing to stop: no turn is running.")]
        if self.turn.interrupted_at is not None:
            return []
        self.turn.interrupted_at = now
        self.turn.watchdog = watchdog
        return [ToAgent(Interrupt(f"stop_{next(self._requests)}"))]

    def stopping(self, now: float) -> list[Effect]:
        """The supervisor stops: no prompt starts a turn any more, and a running turn is
        interrupted, to be said cut by the next start (see `_turn_ended`)."""
        self.stopping_supervisor = True
        if self.turn is None:
            return []
        self.turn.cut_by_stop = True
        return [] if self.turn.interrupted_at is not None else self.interrupt(now)

    def began(self, now: float) -> list[Effect]:
        """The agent says it began the turn. An interrupt sent before that may have reached
        an agent that took it before the prompt's turn and would then run the turn whole
        (the fake agent does; Claude Code 2.1.330 does not): it is sent again, once. An
        agent that honoured the first finds no turn for the second. With no turn of ours,
        the agent began one of its own: the queue waits for it."""
        turn = self.turn
        if turn is None and self.session.state is S.IDLE:
            self.own_turn_heard_at = now
        if turn is None or turn.begun:
            return []
        turn.begun = True
        if turn.interrupted_at is None or turn.terminating:
            return []
        return [ToAgent(Interrupt(f"stop_{next(self._requests)}"))]

    def _agent_takes(self) -> bool:
        """The running agent may be given a prompt: neither it nor the supervisor stops."""
        return not (self.stopping_supervisor or self.session.agent_stopping)

    def _own_turn_until(self) -> float:
        """Until when the queue waits for the agent's own turn (-inf: it does not)."""
        if self.own_turn_heard_at is None:
            return -math.inf
        return self.own_turn_heard_at + self.session.settings.stall_timeout_s

    def deadlines(self) -> list[float]:
        times = self.approvals.deadlines()
        if self.start_note_at is not None:
            times.append(self.start_note_at)
        if self.queue and self.own_turn_heard_at is not None and self._agent_takes():
            times.append(self._own_turn_until())  # not while no prompt can go: it would stay due
        if self.turn is not None and not self.turn.terminating:
            times += self.turn.deadlines(self.session.settings, asking=bool(self.approvals.pending))
        return times

    def tick(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        for request_id in list(self.approvals.pending):
            due = self.approvals.due(request_id, now)
            if isinstance(due, DenyTool):
                effects += self._settle(request_id, "timed out", due, now)
            elif due is not None:
                effects.append(due)  # the reminder
        effects += self._say_start_is_slow(now)
        turn = self.turn
        if turn is None and self.own_turn_heard_at is not None:
            effects += self.next_prompt(now)  # once the agent's own turn fell silent
        if turn is None or turn.terminating:
            return effects
        if turn.typing_due(now, self.session.settings):
            effects.append(Typing())
        watchdog = turn.watchdog_due(now, self.session.settings, asking=bool(self.approvals.pending))
        if watchdog == "kill":
            effects += self._kill_hung_turn(turn)
        elif watchdog:
            effects += self.interrupt(now, watchdog=watchdog)
        return effects

    def _say_start_is_slow(self, now: float) -> list[Effect]:
        """Prompts written while the agent starts still wait for it: said, once."""
        if self.start_note_at is None or now < self.start_note_at:
            return []
        self.start_note_at = None
        if self.session.state is not S.STARTING or not self.queue or self.stopping_supervisor:
            return []
        return [self.session.note(queued_note(len(self.queue), starting=True))]

    def _kill_hung_turn(self, turn: Turn) -> list[Effect]:
        """The agent did not answer the interrupt: it is stopped (through the core: its
        life is not this part's), and its exit says the turn was cut."""
        turn.terminating = True
        why = turn.watchdog or "stop"
        return [self.session.note(watchdog_text(why, "terminated")), self.session.stop_agent("hung")]

    def not_delivered(self) -> list[Effect]:
        """The prompt of the turn that just began never reached the agent: it was gone before
        its pipe took the prompt (its exit is on the way). The prompt waits at the head of
        the queue for the next agent instead of being called cut: running it then is its
        first delivery, not a second. It is handled already: if the supervisor stops before
        the next agent takes it, the next start runs it (`SessionRecord.handed_on`), but for
        one with images, which are not kept (the start says its turn was cut, with 🔁)."""
        turn = self.turn
        if turn is None:
            return []
        self.turn = None
        self.queue.appendleft(turn.prompt)
        if self.session.state.in_turn:
            self.session.move(S.IDLE)
        record, prompt = self.session.record, turn.prompt
        if prompt.images or prompt.post_id not in record.prompt_texts or prompt.post_id in record.handed_on:
            return []
        return [self.session.save(handed_on=(*record.handed_on, prompt.post_id))]

    def exited_unheard(self, last_line_at: float, now: float) -> list[Effect]:
        """The agent exited on its own within `UNHEARD_EXIT_S` of the turn's prompt going in,
        without printing a line since: its pipe took the prompt, but it was ending as its
        last turn did, and died before reading it or acting on it (an agent that lives on
        says something at once, Claude Code its `system/init`; an ACP agent announces a
        tool call before it runs it, so silence means none ran, though it may have kept
        the prompt in its conversation, which then has it twice). So
        the prompt runs on the next agent (`not_delivered`), once, rather than being called
        cut. Not a turn that was interrupted: the person, or the watchdog, wanted it over."""
        turn = self.turn
        if turn is None or turn.interrupted_at is not None or last_line_at >= turn.started_at:
            return []
        if now - turn.started_at > UNHEARD_EXIT_S:
            return []
        prompt = turn.prompt
        if prompt.post_id in self.sent_again:
            return []
        self.sent_again.add(prompt.post_id)
        return self.not_delivered()

    def drop_turn(self, now: float) -> list[Effect]:
        """The agent is gone: its turn and permission requests end with it. The caller
        says so in a notice (`endings.say_cut`), which settles the cut prompt once it shows."""
        effects = self._show(self.renderer.cut_turn())
        self.session.endings.cut = self.turn.prompt if self.turn else None
        for request_id in list(self.approvals.pending):
            effects += self._settle(request_id, "cancelled", None, now)
        self.own_turn_heard_at = None
        if self.turn is not None:
            self.turn = None
            if self.session.state.in_turn:
                self.session.move(S.IDLE)
        return effects
