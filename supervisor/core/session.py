"""One session's decisions: prompts, turns, permissions, the agent's life, the session's ends.

`SessionCore` is a sans-IO state machine. The trio shell (`runtime.session`) feeds it
what happened — a prompt, an agent event, a choice, a command, the agent's exit, the
passing of time — and carries out the effects it returns, in order. It never performs
I/O and never reads a clock; `now` is always passed in.

It is made of two parts and keeps what spans them:
- the turn loop (`core.turn_loop`): the queue (and before it the prompts held while
  their attachments are saved), one prompt at a time in the agent, the
  turn's events, permission requests and choices, interrupts, the turn's clocks;
- the agent's life (`core.agent_life`): launch, ready, suspend, what an exit means and
  the restart policy.
It keeps the record and the state (`core.lifecycle`: every change goes through `move`),
how each handed prompt visibly ends (`core.prompt_endings`), the notices, and the
session's two ends, `end` and `fail`. Rules that span the parts:
- Every prompt ends visibly: answered, or a reply that links it and says it was cut or
  not run (at `!end`, when the session fails). A turn cut by a crash is said in the
  thread, never run again unasked (🔁 on the notice runs it again); only a prompt its
  agent never acted on goes to the next agent (`TurnLoop.exited_unheard`), once.
- An agent that dies unexpectedly is restarted under the restart policy; past it the
  session fails. ENDED and FAILED are final.
Its inputs and effects are plain values (`core.session_effects`, re-exported here); its
words are in `core.thread_texts`. The parts see it only as `core.session_shared.SessionShared`.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable, Sequence

import attrs

from supervisor.core import commands, thread_texts
from supervisor.core.agent_events import AgentEvent, TurnStarted
from supervisor.core.agent_life import AgentLife, AgentNews
from supervisor.core.approvals import PendingPermission, say_lapsed
from supervisor.core.events import ChoiceKind
from supervisor.core.lifecycle import SessionState, transition
from supervisor.core.markdown import split_message
from supervisor.core.prompt_endings import PromptEndings, rerun, to_run_again
from supervisor.core.restart import RestartTracker
from supervisor.core.session_effects import (
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
    SessionSettings,
    SettleChoices,
    Show,
    StopAgent,
    ToAgent,
    Typing,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.core.thread_texts import deaf_text, ended_note, failed_text, thread_help
from supervisor.core.turn import Turn
from supervisor.core.turn_loop import HeldPrompt, HeldStop, TurnLoop

# The effects and inputs live in `session_effects`; the shell takes them from here too.
__all__ = [
    "EditPost", "Effect", "FetchFiles", "Finished", "LaunchAgent", "MarkHandled",
    "OfferChoices", "QueuedPrompt", "SaveRecord", "SendFile", "SessionCore", "SessionSettings",
    "SettleChoices", "Show", "StopAgent", "ToAgent", "Typing",
]

S = SessionState
NOTE_CUT = "\n… (cut to fit one post)"


@attrs.define
class SessionCore:
    """Invariants: the state changes only through `move`; the record the parts saved is
    `record` (`adopt`); ENDED and FAILED are final."""

    record: SessionRecord
    settings: SessionSettings
    state: SessionState = S.SUSPENDED
    endings: PromptEndings = attrs.field(init=False)
    loop: TurnLoop = attrs.field(init=False)
    agent: AgentLife = attrs.field(init=False)
    _keys: itertools.count[int] = attrs.field(factory=itertools.count)

    def __attrs_post_init__(self) -> None:
        self.loop = TurnLoop(self)
        self.agent = AgentLife(self, RestartTracker(self.settings.restart))
        self.endings = PromptEndings(self.settings, self.note)

    @property
    def queue(self) -> deque[QueuedPrompt]:
        """The prompts waiting for the agent, in order."""
        return self.loop.queue

    @property
    def turn(self) -> Turn | None:
        return self.loop.turn

    @property
    def pending(self) -> dict[str, PendingPermission]:
        """The permission requests the agent waits on, by request id."""
        return self.loop.approvals.pending

    @property
    def permission_posts(self) -> dict[str, str]:
        """The posts of pending permission requests: post id -> request id."""
        return self.loop.approvals.posts

    @property
    def settling(self) -> bool:
        """Some ended turn waits for its answer (or the notice that it was cut) to show."""
        return self.endings.settling

    # --- what the parts share (`core.session_shared`) ------------------------------

    @property
    def agent_stopping(self) -> bool:
        return self.agent.stopping

    def move(self, state: SessionState) -> None:
        self.state = transition(self.state, state)

    def note(self, text: str) -> Show:
        limit = self.settings.max_message_chars
        if len(text) > limit:  # one post: the server would refuse a longer one, and it be lost
            text = split_message(text, limit - len(NOTE_CUT))[0] + NOTE_CUT
        return Show(PutPost.last(f"note.{next(self._keys)}", text))

    def save(self, *, durable: bool = False, **changes: object) -> SaveRecord:
        self.record = attrs.evolve(self.record, **changes)  # type: ignore[arg-type]
        return SaveRecord(self.record, durable)

    def adopt(self, effects: list[Effect]) -> list[Effect]:
        for effect in effects:
            if isinstance(effect, SaveRecord):
                self.record = effect.record
        return effects

    def stop_agent(self, reason: str) -> StopAgent:
        return self.agent.stop(reason)

    # --- inputs ----------------------------------------------------------------

    def start(self, now: float, *, launch_now: bool) -> list[Effect]:
        """The session task begins: a new session (launch_now) or one restored from disk.
        A prompt its last agent died on unheard, and no agent took since, runs first (once
        more: a second such death calls it cut)."""
        self.agent.last_active_at = now
        effects = self.adopt(say_lapsed(self.record))
        effects += self.endings.restored(self.record)
        again = to_run_again(self.record) if self.record.is_live else []
        self.loop.queue.extend(again)
        self.loop.sent_again.update(p.post_id for p in again)
        if (self.record.status == "suspended" or not launch_now) and not again:
            return effects  # stays SUSPENDED: the agent starts with the next prompt
        return effects + self.agent.launch()

    def turned_to(self, now: float) -> list[Effect]:
        """The person turned to this thread: a suspended agent starts now, ready for them
        (the seed: switching to a session starts its agent at once)."""
        if self.state is not S.SUSPENDED:
            return []
        self.agent.last_active_at = now
        return self.agent.launch()

    def agent_ready(self, pid: int, now: float) -> list[Effect]:
        return [*self.agent.ready(pid), *self.loop.next_prompt(now)]

    def prompt(self, prompt: QueuedPrompt, now: float) -> list[Effect]:
        self.agent.last_active_at = now
        if self.state.is_final:
            return [self.note("This session has ended."), MarkHandled(prompt.channel_id, prompt.post_id)]
        if self.state is S.SUSPENDED:
            self.loop.queue.append(prompt)
            return self.agent.launch()
        return self.loop.prompt(prompt, now)

    def prompt_in(self, prompt: QueuedPrompt, file_ids: Sequence[str], now: float) -> list[Effect]:
        """A prompt written in the thread. With attachments it waits until they are saved
        (`FetchFiles`, then `files_saved`), beside the running turn, not in its way; the
        prompts written after it wait behind it, so the agent gets them in order."""
        if self.state.is_final or (not file_ids and not self.loop.held):
            return self.prompt(prompt, now)
        effects = self.loop.hold(HeldPrompt(prompt, tuple(file_ids)))
        if len(self.loop.held) == 1:  # else it waits behind a saving under way
            effects += self._let_held_go(now)
        return effects

    def files_saved(self, prompt: QueuedPrompt, now: float) -> list[Effect]:
        """The first held prompt's attachments are saved: `prompt` names them."""
        if not self.loop.held:
            return []  # the session ended meanwhile: that prompt was said not run
        self.loop.held[0] = HeldPrompt(prompt)
        return self._let_held_go(now)

    def _let_held_go(self, now: float) -> list[Effect]:
        """Hand the held in order to the queue, up to the first prompt with attachments
        still to save, whose saving starts now (one at a time, in the order written)."""
        effects: list[Effect] = []
        while self.loop.held:
            head = self.loop.held[0]
            if isinstance(head, HeldPrompt) and head.file_ids:
                return [*effects, FetchFiles(head.prompt, head.file_ids)]
            self.loop.held.popleft()
            if isinstance(head, HeldPrompt):
                effects += self.prompt(head.prompt, now)
            elif head.channel_id:  # not `command`: this stop has waited already
                effects += [*self.interrupt(now), MarkHandled(head.channel_id, head.post_id)]
            else:
                effects += self.loop.choose("stop", head.post_id, now)
        return effects

    def _stop_waits(self) -> bool:
        """A stop now is for the turn of the held prompt: no other turn runs."""
        return bool(self.loop.held) and self.loop.turn is None

    def agent_event(self, event: AgentEvent, now: float) -> list[Effect]:
        if self.state.is_final:
            return []  # the agent is being stopped: nothing it says matters any more
        self.loop.heard(now)
        self.agent.last_active_at = now
        if isinstance(event, AgentNews):
            began = self.loop.began(now) if isinstance(event, TurnStarted) else []
            return [*self.agent.news(event, now), *began]
        return self.loop.agent_event(event, now)

    def agent_printed(self, at: float) -> None:
        """The agent printed a line at `at`, whether or not it was an event here: its turn
        is not stalled (long thinking, a large tool input stream as frames we skip)."""
        self.loop.heard(at)

    def agent_deaf(self, waited_s: float) -> list[Effect]:
        """The agent took no input for `waited_s` (frozen: its stdin pipe stayed full, and
        part of a command may be in it). It is ended as a hung one: its exit says the turn
        was cut, and it starts again with the conversation."""
        if self.state.is_final or self.agent.stopping:
            return []
        if self.loop.turn is not None:
            self.loop.turn.terminating = True  # the watchdog has nothing more to do for it
        return [self.note(deaf_text(waited_s)), self.stop_agent("hung")]

    def prompt_not_delivered(self) -> list[Effect]:
        """The prompt just sent found no agent to take it: it runs on the next one."""
        return self.loop.not_delivered()

    def agent_exited(
        self, code: int | None, stderr_tail: str, now: float, *, last_line_at: float = math.inf
    ) -> list[Effect]:
        """The agent process is gone, whoever ended it: its turn ends with it, then what
        the exit means is the agent's life's to say. `last_line_at`: when it last printed a
        line (a turn it said nothing in since its prompt, ended at once, is not cut:
        `TurnLoop.exited_unheard`)."""
        effects: list[Effect] = []
        if not self.agent.stopping and not self.state.is_final:
            effects += self.loop.exited_unheard(last_line_at, now)
        effects += self.loop.drop_turn(now)
        return effects + self.agent.exited(code, stderr_tail, now, queued=bool(self.loop.queue))

    def choose(self, kind: ChoiceKind, post_id: str, now: float) -> list[Effect]:
        """A person's choice on one of the thread's posts."""
        if self.state.is_final:
            return []
        if kind == "stop" and self._stop_waits():
            return self.loop.hold(HeldStop(post_id))
        # Where one reaction offers both (🔁 on Mattermost), the post says which is meant.
        if kind in ("rerun", "allow_always") and post_id in self.record.rerun_offers:
            again, save = rerun(post_id, self.record)
            # The choice goes from the post once the rerun is on disk (with the prompt's
            # mark, when it goes in at once): no stop between loses the 🔁.
            return [*self.adopt([save]), *self.prompt(again, now), SettleChoices(post_id)]
        return self.loop.choose(kind, post_id, now)

    def interrupt(self, now: float) -> list[Effect]:
        return self.loop.interrupt(now)

    def stopping(self, now: float) -> list[Effect]:
        """The supervisor stops (SIGTERM, a restart): no prompt starts a turn any more,
        and a running turn is interrupted, for the next start to say it was cut."""
        return self.loop.stopping(now)

    def outbox_progress(self, shows: Callable[[str], bool]) -> list[Effect]:
        """Posts reached the server; `shows(key)` says whether a post shows what it should.
        A turn whose posts all show is settled at once (not when the whole thread is), so
        a restart never calls a complete answer cut while a later turn streams."""
        return self.adopt(self.endings.progress(shows, self.record))

    def outbox_settled(self) -> list[Effect]:
        """Everything the thread should show is on the server."""
        return self.outbox_progress(lambda key: True)

    def post_created(self, key: str, post_id: str) -> list[Effect]:
        self.loop.post_created(key, post_id)
        offered = self.endings.post_created(key, post_id, self.record)
        if offered is not None:
            return self.adopt(offered)
        return self.adopt(self.loop.approvals.post_created(key, post_id, self.record))

    # --- time ------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        times = [*self.loop.deadlines(), *self.agent.deadlines()]
        return min(times) if times else None

    def tick(self, now: float) -> list[Effect]:
        return [*self.loop.tick(now), *self.agent.tick(now)]

    # --- commands and the session's ends ----------------------------------------------

    def command(self, command: commands.ThreadCommand | commands.BadCommand, post_id: str, channel_id: str, now: float) -> list[Effect]:
        handled = MarkHandled(channel_id, post_id)
        if isinstance(command, commands.BadCommand):
            return [self.note(f"⚠️ {command.text(self.settings.words)}"), handled]
        if isinstance(command, commands.Stop):
            if self._stop_waits():
                return self.loop.hold(HeldStop(post_id, channel_id))
            return [*self.interrupt(now), handled]
        if isinstance(command, commands.Status):
            return [self.note(self.status_text(now)), handled]
        if isinstance(command, commands.Help):
            return [self.note(thread_help(self.settings.words)), handled]
        if isinstance(command, commands.GetFile):
            # The file is posted beside the outbox, where no hold of the poster keeps it
            # behind the mark: it starts once the mark is durable, or a restart before
            # that would post it again.
            return [handled, SendFile(command.path)]
        if isinstance(command, commands.EndSession):
            return self.end(now, mark=handled)  # Finished comes last
        return [handled]

    def end(self, now: float, *, mark: MarkHandled | None = None) -> list[Effect]:
        """End the session (`!end`, whose `mark` is written with the ended record: a crash
        between the two would leave the session live and its `!end` handled)."""
        marks: list[Effect] = [mark] if mark is not None else []
        if self.state.is_final:
            return marks
        effects = self.loop.drop_turn(now)
        effects += self.endings.say_cut("The turn for {link} was stopped: the session ended.", rerun=False)
        effects += self.loop.not_run("the session ended")
        running = self.state is not S.SUSPENDED
        self.move(S.ENDED)
        if running:
            effects.append(self.agent.stop("end"))
        return [
            *effects,
            # Durable before the thread says so: its name is free for `new` from then on.
            self.save(pgid=0, status="ended", durable=True, answer_texts={}),  # no start reads them
            *marks,
            self.note(ended_note(self.record.name, self.settings.words)),
            Finished(),
        ]

    def fail(self, why: str, stderr_tail: str, *, now: float | None = None) -> list[Effect]:
        """The session is over for good: said in the thread, with its cut and queued prompts.
        With `now`, its agent still runs (it is unusable): its turn ends and it is stopped."""
        effects: list[Effect] = []
        if now is not None:
            effects += self.loop.drop_turn(now)
            effects.append(self.agent.stop("failed"))
        self.move(S.FAILED)
        # Durable before the thread says so: the `new` it suggests may reuse the name.
        effects.append(self.save(pgid=0, status="failed", durable=True, answer_texts={}))  # no start reads them
        effects.append(self.note(failed_text(why, stderr_tail, self.settings.words, self.record)))
        effects += self.endings.say_cut("The turn for {link} was cut.", rerun=False)
        effects += self.loop.not_run("the session failed")
        return [*effects, Finished()]

    def failed_on_defect(self, why: str) -> tuple[SessionRecord, str, list[MarkHandled]]:
        """A defect of ours ended this session's task: its record failed, the text for its
        thread (the prompts still waiting said not run, as `fail` says them) and their marks.
        The shell carries them out itself, its task gone; this core's turn may be anything."""
        record = attrs.evolve(self.record, status="failed", pgid=0, answer_texts={})
        text = failed_text(why, "", self.settings.words, record)
        waiting = self.loop.waiting_prompts()
        if waiting:
            text += "\n\n" + self.loop.not_run_words("the session failed", waiting)
        return record, text, [MarkHandled(p.channel_id, p.post_id) for p in waiting]

    def status_text(self, now: float) -> str:
        return thread_texts.status_text(
            self.record, self.settings.agent_name, self.state.value, self.agent.model, self.loop.waiting
        )
