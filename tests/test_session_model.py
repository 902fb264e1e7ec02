"""The session machine, model-tested: Hypothesis drives `SessionCore` in memory.

A `RuleBasedStateMachine` plays the thread (prompts, commands, reactions), the agent
process (ready, text, tool calls, permission requests, turn ends, crashes, exits we asked
for), the outbox (posts created, everything on the server) and the clock (a fake `now`),
and keeps its own account of what must happen. After every step it checks:

- the lifecycle only takes the transitions `core.lifecycle` allows;
- at most one prompt is in the agent, and only while the agent runs;
- every admitted prompt is handled once, and ends answered or with one notice that links
  it (cut, or not run) — never both, never neither (checked when the session is over);
- every permission request ends (answer, cancel, interrupt, turn end, timeout), and the
  agent gets at most one answer to it;
- nothing is emitted after `Finished`;
- the watchdog (turn timeout, stall, interrupt grace), the approval clock (reminder at
  half, deny at timeout) and idle suspend fire exactly when due: never before, and the
  core's next deadline is never later than any of them, so the shell's next tick catches
  each one.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from supervisor.agent.claude.permissions import permission_asked
from supervisor.chat.mattermost import choices
from supervisor.chat.mattermost.choices import PERMISSION_LEGEND as LEGEND
from supervisor.core import commands
from supervisor.core.agent_events import (
    AllowTool,
    ControlAsked,
    DenyTool,
    Interrupt,
    PermissionCancelled,
    RefuseControl,
    SendPrompt,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    ToolOutcome,
    TurnEnded,
    TurnStarted,
)
from supervisor.core.events import ChoiceKind
from supervisor.core.lifecycle import ALLOWED, SessionState
from supervisor.core.restart import RestartPolicy
from supervisor.core.session import SessionCore
from supervisor.core.session_effects import (
    EditPost,
    Effect,
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
from tests import strategies as sst

S = SessionState
CHANNEL = "chan"


def link(post_id: str) -> str:
    return f"https://chat.test/pl/{post_id}"


@attrs.define
class ObservedCore(SessionCore):
    """The core, with every state change it makes written down."""

    moves: list[tuple[SessionState, SessionState]] = attrs.field(factory=list)

    def move(self, state: SessionState) -> None:
        self.moves.append((self.state, state))
        super().move(state)


@attrs.define
class PromptLog:
    text: str
    handled: int = 0
    sent: int = 0  # written to the agent
    answered: bool = False  # its turn ended with a result
    notices: set[str] = attrs.Factory(set)  # keys of posts that link it


@attrs.define
class RequestLog:
    asked_at: float
    answers: int = 0  # AllowTool / DenyTool sent to the agent
    reminded: bool = False
    ended: bool = False
    key: str = ""  # its post's key, given by the core


class SessionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.finished = False
        self.agent = "down"  # down | launching | up
        self.stopping = ""  # why we asked the agent to stop; "" if we did not
        self.in_agent: str | None = None  # the prompt the agent works on
        self.prompts: dict[str, PromptLog] = {}
        self.requests: dict[str, RequestLog] = {}
        self.shown: dict[str, str] = {}  # key -> the text last put
        self.unposted: list[str] = []  # keys whose posts are not created yet
        self.posts: dict[str, str] = {}  # key -> post id
        self.serial = 0
        # the model's own clocks of the turn in the agent
        self.turn_started_at = 0.0
        self.last_output_at = 0.0
        self.interrupted_at: float | None = None
        self.terminating = False
        self.last_active_at = self.now
        self.commands_handled: dict[str, int] = {}
        self.record: SessionRecord | None = None

    # --- setting up -----------------------------------------------------------------

    @initialize(
        turn_timeout=sst.TURN_TIMEOUTS,
        stall=sst.STALL_TIMEOUTS,
        approval=sst.APPROVAL_TIMEOUTS,
        idle=sst.IDLE_SUSPENDS,
        grace=sst.INTERRUPT_GRACES,
        history=st.booleans(),
        suspended=st.booleans(),
        launch_now=st.booleans(),
        cut_before=st.integers(0, 2),
    )
    def start(
        self, turn_timeout: float, stall: float, approval: float, idle: float, grace: float,
        history: bool, suspended: bool, launch_now: bool, cut_before: int,
    ) -> None:
        self.settings = SessionSettings(
            turn_timeout_s=turn_timeout,
            stall_timeout_s=stall,
            approval_timeout_s=approval,
            idle_suspend_s=idle,
            notify_after_s=50,
            interrupt_grace_s=grace,
            username="alice",
            permalink=link,
            legend=choices.legend,
            restart=RestartPolicy(max_restarts=3, window_s=100, backoff_base_s=1, backoff_cap_s=4),
        )
        # Prompts a previous run of the supervisor wrote to its agent but never saw answered.
        for n in range(cut_before):
            self.prompts[f"old{n}"] = PromptLog("from before", handled=1, sent=1)
        record = SessionRecord(
            id="0c4d0a6e-0000-4000-8000-000000000000", name="alpha", channel_id=CHANNEL, user_id="u1",
            cwd="/tmp", root_id="root", has_history=history, status="suspended" if suspended else "live",
            unsettled=tuple(self.prompts),
        )
        self.core = ObservedCore(record, self.settings)
        self.last_active_at = self.now
        self._step(self.core.start(self.now, launch_now=launch_now))

    # --- carrying out what the core asks for, and checking it as it goes --------------

    def _step(self, effects: list[Effect]) -> list[Effect]:
        before = self.core.state
        self.core.moves.clear()
        sent_prompt = False
        marked: list[str] = []
        for effect in effects:
            assert not self.finished, f"{effect} emitted after Finished"
            match effect:
                case ToAgent(command):
                    assert self.agent == "up", f"{command} sent while the agent is {self.agent}"
                    if isinstance(command, SendPrompt):
                        assert self.in_agent is None, "a second prompt went into the agent"
                        assert not sent_prompt
                        sent_prompt = True
                        # durably handled before it is written: at most once in any agent
                        assert self.core.turn is not None and self.core.turn.prompt.post_id in marked
                        self.in_agent = "?"  # known once the step is over: the core's turn
                        self.turn_started_at = self.last_output_at = self.now
                        self.interrupted_at = None
                        self.terminating = False
                    elif isinstance(command, AllowTool | DenyTool):
                        request = self.requests[command.request_id]
                        request.answers += 1
                        assert request.answers == 1, f"request {command.request_id} answered twice"
                    elif isinstance(command, Interrupt):
                        assert self.in_agent is not None, "an interrupt with no turn"
                        if self.interrupted_at is None:
                            self.interrupted_at = self.now
                    else:
                        assert isinstance(command, RefuseControl)
                case Show(op):
                    self.shown[op.key] = op.text
                    if op.key not in self.posts and op.key not in self.unposted:
                        self.unposted.append(op.key)
                    if op.key.startswith("perm.") and LEGEND not in op.text and self.in_agent is not None:
                        self.last_output_at = self.now  # answered: waiting for a person is no stall
                    for post_id, prompt in self.prompts.items():
                        if f"({link(post_id)})" in op.text:
                            prompt.notices.add(op.key)
                case MarkHandled(channel_id, post_id):
                    assert channel_id == CHANNEL
                    marked.append(post_id)
                    if post_id in self.prompts:
                        self.prompts[post_id].handled += 1
                        assert self.prompts[post_id].handled == 1, f"{post_id} handled twice"
                    else:
                        self.commands_handled[post_id] = self.commands_handled.get(post_id, 0) + 1
                        assert self.commands_handled[post_id] == 1, f"command {post_id} handled twice"
                case LaunchAgent():
                    assert self.agent == "down", "launched while an agent runs"
                    self.agent = "launching"
                case StopAgent(reason):
                    assert self.agent != "down", "stopping an agent that is not there"
                    self.stopping = reason
                    if reason == "hung":
                        self.terminating = True
                case Finished():
                    self.finished = True
                    self.in_agent = None  # the agent is being stopped: its turn is over
                case SaveRecord(record):
                    self.record = record
                case OfferChoices() | SettleChoices() | Typing() | SendFile() | EditPost():
                    pass
        # The transitions the core took in this step, one by one.
        for old, new in self.core.moves:
            assert (new is old and not old.is_final) or new in ALLOWED[old], f"{old} -> {new}"
        assert before is self.core.state or self.core.moves
        if sent_prompt:
            assert self.core.turn is not None
            post_id = self.core.turn.prompt.post_id
            self.in_agent = post_id
            self.prompts[post_id].sent += 1
            assert self.prompts[post_id].sent == 1, f"{post_id} reached the agent twice"
        return effects

    # --- the thread -----------------------------------------------------------------

    @precondition(lambda self: not self.finished)
    @rule(text=sst.PROMPT_TEXTS)
    def prompt(self, text: str) -> None:
        self.serial += 1
        post_id = f"p{self.serial}"
        self.prompts[post_id] = PromptLog(text)
        self.last_active_at = self.now
        self._step(self.core.prompt(QueuedPrompt(post_id, CHANNEL, text), self.now))

    @precondition(lambda self: not self.finished)
    @rule(text=sst.THREAD_COMMANDS)
    def command(self, text: str) -> None:
        parsed = commands.parse_thread_command(text)
        assert parsed is not None
        self.serial += 1
        self._step(self.core.command(parsed, f"c{self.serial}", CHANNEL, self.now))

    @rule(kind=sst.SESSION_CHOICES, data=st.data())
    def choice(self, kind: ChoiceKind, data: st.DataObject) -> None:
        targets = [*sorted(self.posts.values()), "elsewhere"]
        post_id = data.draw(st.sampled_from(targets))
        was_finished = self.finished
        effects = self.core.choose(kind, post_id, self.now)
        # 🔁 on a cut turn's notice runs its prompt again: a new prompt, the notice its post.
        queued = [*self.core.queue, *([self.core.turn.prompt] if self.core.turn else [])]
        for prompt in queued:
            if prompt.post_id not in self.prompts:
                assert kind in ("rerun", "allow_always") and prompt.post_id == post_id
                self.prompts[prompt.post_id] = PromptLog(prompt.text)
                self.last_active_at = self.now
        self._step(effects)
        if was_finished:
            assert not effects

    # --- the outbox -----------------------------------------------------------------

    @precondition(lambda self: bool(self.unposted))
    @rule(count=st.integers(1, 4))
    def posts_created(self, count: int) -> None:
        """The outbox made the next posts (in order); what they show is on the server."""
        keys, self.unposted = self.unposted[:count], self.unposted[count:]
        for key in keys:
            self.posts[key] = f"post-{key}"
            effects = self.core.post_created(key, f"post-{key}")
            assert all(isinstance(e, SaveRecord) for e in effects)
            self._record(effects)
        effects = self.core.outbox_progress(lambda key: key in self.posts)
        assert all(isinstance(e, SaveRecord) for e in effects)
        self._record(effects)

    def _record(self, effects: list[Effect]) -> None:
        """Saves may come after Finished: the thread's last words are still posting."""
        for effect in effects:
            if isinstance(effect, SaveRecord):
                self.record = effect.record

    # --- the agent ------------------------------------------------------------------

    @precondition(lambda self: self.agent == "launching" and not self.stopping and not self.finished)
    @rule()
    def agent_ready(self) -> None:
        self.agent = "up"
        self._step(self.core.agent_ready(4242, self.now))

    def _agent_says(self, event: Any) -> list[Effect]:
        self.last_active_at = self.now
        if self.in_agent is not None:
            self.last_output_at = self.now
        return self._step(self.core.agent_event(event, self.now))

    @precondition(lambda self: self.agent == "up" and self.in_agent is not None)
    @rule(text=sst.AGENT_TEXTS, kind=st.sampled_from(["delta", "block", "thinking", "tool", "outcome", "init"]))
    def agent_output(self, text: str, kind: str) -> None:
        event = {
            "delta": TextDelta(text),
            "block": TextBlock(text),
            "thinking": ThinkingBlock(text),
            "tool": ToolCall("tu1", "Bash", {"command": "ls"}),
            "outcome": ToolOutcome("tu1", is_error=True, text="no"),
            "init": TurnStarted("sid", "claude-test"),
        }[kind]
        self._agent_says(event)

    @precondition(lambda self: self.agent == "up" and self.in_agent is not None)
    @rule(tool=sst.TOOL_NAMES)
    def permission_asked(self, tool: str) -> None:
        self.serial += 1
        request_id = f"r{self.serial}"
        self.requests[request_id] = RequestLog(asked_at=self.now)
        suggestion = {"type": "addRules", "rules": [{"toolName": tool, "ruleContent": "ls"}], "behavior": "allow",
                      "destination": "localSettings"}
        self._agent_says(permission_asked(request_id, tool, {"command": "ls"}, suggestions=(suggestion,)))
        if request_id in self.core.pending:
            self.requests[request_id].key = self.core.pending[request_id].key

    @precondition(lambda self: self.agent == "up" and bool(self.core.pending))
    @rule(data=st.data())
    def permission_cancelled(self, data: st.DataObject) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.core.pending)))
        self._agent_says(PermissionCancelled(request_id))

    @precondition(lambda self: self.agent == "up")
    @rule()
    def control_asked(self) -> None:
        self._agent_says(ControlAsked("ctl", "mcp_message"))

    @precondition(lambda self: self.agent == "up" and self.in_agent is not None)
    @rule(is_error=st.booleans())
    def turn_ended(self, is_error: bool) -> None:
        post_id = self.in_agent
        assert post_id is not None
        self.in_agent = None
        self.prompts[post_id].answered = True
        self._agent_says(TurnEnded(is_error=is_error, total_cost_usd=0.01 * self.serial, duration_ms=5))

    @precondition(lambda self: self.agent == "up" and not self.stopping)
    @rule()
    def agent_takes_no_input(self) -> None:
        """A command the runtime could not write within `stall_timeout_s` (a frozen agent):
        ended as a hung one, once."""
        effects = self._step(self.core.agent_deaf(self.settings.stall_timeout_s))
        assert self.finished or StopAgent("hung") in effects
        assert self.core.agent_deaf(self.settings.stall_timeout_s) == []

    @precondition(lambda self: self.agent != "down" and bool(self.stopping))
    @rule()
    def agent_exits_as_asked(self) -> None:
        self._agent_gone(0, "")

    @precondition(lambda self: self.agent != "down" and not self.stopping)
    @rule(tail=st.sampled_from(["", "boom", "No conversation found with session ID: x"]))
    def agent_crashes(self, tail: str) -> None:
        self._agent_gone(1, tail)

    def _agent_gone(self, code: int, tail: str) -> None:
        was_finished = self.finished
        self.agent, self.stopping, self.in_agent = "down", "", None
        self.interrupted_at, self.terminating = None, False
        effects = self._step(self.core.agent_exited(code, tail, self.now))
        if was_finished:
            assert not effects

    # --- the clock ------------------------------------------------------------------

    def _dues(self) -> dict[str, float]:
        """When each timer the model knows of is due."""
        dues: dict[str, float] = {}
        approval = self.settings.approval_timeout_s
        for request_id in self.core.pending:
            log = self.requests[request_id]
            dues[f"deny {request_id}"] = log.asked_at + approval
            if not log.reminded:
                dues[f"remind {request_id}"] = log.asked_at + approval / 2
        if self.in_agent is not None and not self.terminating:
            if self.interrupted_at is not None:
                dues["hung"] = self.interrupted_at + self.settings.interrupt_grace_s
            else:
                dues["timeout"] = self.turn_started_at + self.settings.turn_timeout_s
                if not self.core.pending:
                    dues["stall"] = self.last_output_at + self.settings.stall_timeout_s
        elif (self.core.state is S.IDLE and self.settings.idle_suspend_s > 0 and not self.stopping
              and self.in_agent is None):
            dues["suspend"] = self.last_active_at + self.settings.idle_suspend_s
        return dues

    @rule(step=sst.CLOCK_STEPS)
    def clock_advances(self, step: float) -> None:
        self._tick(self.now + step)

    @precondition(lambda self: math.isfinite(self.core.next_deadline() or math.inf))
    @rule()
    def clock_reaches_the_next_deadline(self) -> None:
        deadline = self.core.next_deadline()
        assert deadline is not None
        self._tick(max(self.now, deadline))

    def _tick(self, now: float) -> None:
        self.now = now
        dues = self._dues()
        due = {name for name, at in dues.items() if at <= now}
        was_finished = self.finished
        effects = self._step(self.core.tick(now))
        if was_finished:
            assert not effects
            return
        denied = {e.command.request_id for e in effects if isinstance(e, ToAgent) and isinstance(e.command, DenyTool)}
        reminders = [e for e in effects if isinstance(e, Show) and "is waiting for you" in e.op.text]
        interrupts = [e for e in effects if isinstance(e, ToAgent) and isinstance(e.command, Interrupt)]
        stops = [e.reason for e in effects if isinstance(e, StopAgent)]
        assert denied == {name.split()[1] for name in due if name.startswith("deny")}, (due, effects)
        expected_reminders = {name.split()[1] for name in due if name.startswith("remind")} - denied
        assert len(reminders) == len(expected_reminders), (due, effects)
        for request_id in expected_reminders:
            self.requests[request_id].reminded = True
        for request_id in denied:
            self.requests[request_id].ended = True
        watchdog = "timeout" in due or ("stall" in due and not denied)
        assert bool(interrupts) == watchdog, (due, dues, effects)
        assert ("hung" in stops) == ("hung" in due), (due, effects)
        assert ("suspend" in stops) == ("suspend" in due), (due, effects)

    # --- after every step -------------------------------------------------------------

    @invariant()
    def checks(self) -> None:
        if not hasattr(self, "core"):
            return
        self._turn_and_requests_match_the_state()
        self._every_request_that_is_not_pending_has_ended()
        if not self.finished:
            self._the_next_deadline_is_never_late()

    def _the_next_deadline_is_never_late(self) -> None:
        dues = self._dues()
        if dues:
            deadline = self.core.next_deadline()
            assert deadline is not None and deadline <= min(dues.values()), (deadline, dues)

    def _turn_and_requests_match_the_state(self) -> None:
        core = self.core
        assert (core.turn is not None) == core.state.in_turn, (core.state, core.turn)
        assert bool(core.pending) == (core.state is S.AWAITING_APPROVAL), (core.state, core.pending)
        in_core = core.turn.prompt.post_id if core.turn else None
        assert in_core == self.in_agent or (self.in_agent is None and in_core is None), (in_core, self.in_agent)

    def _every_request_that_is_not_pending_has_ended(self) -> None:
        for request_id in self.requests:
            if request_id not in self.core.pending:
                text = self.shown.get(self.requests[request_id].key)
                assert text is None or LEGEND not in text, f"{request_id} still looks pending"

    def teardown(self) -> None:
        if not hasattr(self, "core"):
            return
        if not self.finished:
            self._step(self.core.end(self.now))
            if self.agent != "down":
                self._agent_gone(0, "")
        assert self.finished
        assert not self.core.pending
        for request_id in self.requests:
            text = self.shown.get(self.requests[request_id].key)
            assert text is not None and LEGEND not in text, f"{request_id} never ended"
        for post_id, log in self.prompts.items():
            assert log.handled == 1, f"{post_id} handled {log.handled} times"
            noticed = len(log.notices)
            assert log.answered != (noticed == 1) and noticed <= 1, (post_id, log)
        # Once everything shows, no prompt is left unsettled: a restart would notice none.
        self.posts.update((key, f"post-{key}") for key in self.unposted)
        self._record(self.core.outbox_progress(lambda key: True))
        assert self.record is not None
        assert self.record.unsettled == () and self.record.prompt_texts == {} and self.record.answered == (), self.record


TestSessionModel = SessionModel.TestCase
# Examples come from the profile (conftest.py: 500 under CI=true).
TestSessionModel.settings = settings(stateful_step_count=40)
