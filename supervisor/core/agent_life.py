"""The agent's life in a session: launched, ready, stopped on purpose, or gone unasked.

`AgentLife` is the part of `core.session.SessionCore` that launches the agent (continuing
the conversation when there is one), takes it as ready, stops it on purpose (idle for too
long, a hung turn, the session's end or failure) and says what each exit means:
- a suspend is kept (SUSPENDED) until the next prompt launches the agent again;
- a hung agent is launched again, and its turn said to be cut;
- a conversation that was never saved starts anew (resuming it would only fail again);
- any other exit is unexpected: the agent is restarted under the restart policy
  (`core.restart`), with a backoff, until the policy gives up and the session fails;
- an agent that says this start failed (`AgentNotReady`) is stopped, and counts as such
  an exit.
It keeps what the agent said about its conversation (opened, missing, which model).

It never touches the queue or the turn: the core ends the turn before it tells this part
of an exit. It never performs I/O or reads a clock (`now` is passed in).
"""

from __future__ import annotations

import attrs

from supervisor.core.agent_events import (
    AgentNotReady,
    AgentUnusable,
    ConversationMissing,
    ConversationOpened,
    TurnStarted,
)
from supervisor.core.lifecycle import SessionState
from supervisor.core.restart import GiveUp, RestartTracker
from supervisor.core.session_effects import Effect, LaunchAgent, StopAgent
from supervisor.core.session_shared import SessionShared

S = SessionState
AgentNews = TurnStarted | ConversationOpened | ConversationMissing | AgentUnusable | AgentNotReady
"""What the agent says about itself rather than about a turn."""


@attrs.define
class AgentLife:
    """Invariant: `expected_exit` is set exactly while the agent is being stopped on purpose."""

    session: SessionShared
    restarts: RestartTracker
    expected_exit: str = ""  # why we stop the agent ourselves; "" if it was not us
    resuming: bool = False  # the running agent was started to continue the conversation
    conversation_missing: bool = False  # the agent said the conversation to continue is not there
    model: str = ""
    not_ready: str = ""  # why the agent being stopped could not get ready (`AgentNotReady`)
    last_active_at: float = 0.0  # the last prompt or word of the agent: idle time counts from it

    @property
    def stopping(self) -> bool:
        return bool(self.expected_exit)

    def launch(self, delay_s: float = 0.0) -> list[Effect]:
        self.session.move(S.STARTING)
        self.expected_exit = ""
        self.resuming = self.session.record.has_history
        return [LaunchAgent(resume=self.session.record.has_history, delay_s=delay_s)]

    def ready(self, pid: int) -> list[Effect]:
        self.session.move(S.IDLE)
        return [self.session.save(pgid=pid, status="live")]

    def stop(self, reason: str) -> StopAgent:
        self.expected_exit = reason
        return StopAgent(reason)

    def news(self, event: AgentNews, now: float) -> list[Effect]:
        session = self.session
        if isinstance(event, TurnStarted):
            self.model = event.model or self.model
            return []
        if isinstance(event, ConversationMissing):
            # Resuming again would only fail again: the next conversation starts anew.
            self.conversation_missing = True
            # The next one counts its cost from zero; what this one cost stays the session's.
            spent = session.record.earlier_cost_usd + session.record.total_cost_usd
            return [session.save(has_history=False, agent_session_id="", total_cost_usd=0.0, earlier_cost_usd=spent)]
        if isinstance(event, AgentUnusable):
            return session.fail(f"❌ The agent cannot be used: {event.reason}.", "", now=now)
        if isinstance(event, AgentNotReady):
            if self.expected_exit:
                return []  # being stopped already
            self.not_ready = event.reason
            return [self.stop("not ready")]
        self.model = event.model or self.model
        effects: list[Effect] = []
        if self.conversation_missing and not event.resumed:
            self.conversation_missing = False
            effects.append(session.note("⚠️ The conversation could not be continued, so a new one starts."))
        if event.session_id and event.session_id != (session.record.agent_session_id or session.record.id):
            # The agent chose it: on disk before the first prompt is written, so a restart
            # continues this conversation.
            effects.append(session.save(durable=True, agent_session_id=event.session_id))
        return effects

    # --- idle time -----------------------------------------------------------------

    def _idle_until(self) -> float | None:
        """When an idle agent is suspended; None while it is not idle or never is."""
        idle_s = self.session.settings.idle_suspend_s
        if self.session.state is not S.IDLE or idle_s <= 0 or self.expected_exit:
            return None
        return self.last_active_at + idle_s

    def deadlines(self) -> list[float]:
        until = self._idle_until()
        return [] if until is None else [until]

    def tick(self, now: float) -> list[Effect]:
        until = self._idle_until()
        return [self.stop("suspend")] if until is not None and now >= until else []

    # --- the agent's exit ----------------------------------------------------------

    def exited(self, code: int | None, stderr_tail: str, now: float, *, queued: bool) -> list[Effect]:
        """The agent process is gone, whoever ended it (its turn has ended already);
        `queued`: prompts wait for it."""
        session = self.session
        reason, self.expected_exit = self.expected_exit, ""
        if session.state.is_final:
            return []
        if reason == "suspend":
            session.move(S.SUSPENDED)
            # A prompt that came while the agent was being suspended wakes it right up.
            return [session.save(pgid=0, status="suspended"), *(self.launch() if queued else [])]
        if reason == "hung":
            return [*session.endings.say_cut("The turn for {link} was cut."), session.save(pgid=0), *self.launch()]
        if self.resuming and self.conversation_missing:
            # The conversation was never written (a kill came before the agent saved its
            # first turn): start it anew, whether the agent died at once or at its first
            # prompt. Resuming again would only fail again, until the session is failed.
            self.conversation_missing = False
            anew = "The conversation was never saved, so it starts anew; the turn for {link} was cut."
            said = session.endings.say_cut(anew) or [session.note("The conversation was never saved, so it starts anew.")]
            return [session.save(has_history=False), *said, *self.launch()]
        decision = self.restarts.on_exit(now)
        if reason == "not ready":
            why, self.not_ready = self.not_ready, ""
            if isinstance(decision, GiveUp):
                n = decision.exits_in_window
                return session.fail(f"❌ The agent could not get ready: {why}; {n} failed starts or exits recently.", stderr_tail)
            return [
                session.note(f"⚠️ The agent could not get ready: {why}; starting it again."),
                session.save(pgid=0),
                *self.launch(decision.delay_s),
            ]
        detail = f" (exit status {code})" if code is not None else ""
        if isinstance(decision, GiveUp):
            return session.fail(f"❌ The agent keeps exiting{detail}: {decision.exits_in_window} times recently.", stderr_tail)
        return [
            session.note(f"⚠️ The agent exited unexpectedly{detail}; restarting it with the conversation."),
            *session.endings.say_cut("The turn for {link} was cut."),
            session.save(pgid=0),
            *self.launch(decision.delay_s),
        ]
