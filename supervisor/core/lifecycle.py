"""A session's lifecycle: its states and the only transitions allowed between them.

Rules:
- A session starts in STARTING and is IDLE once its agent runs and no turn is in flight.
- A prompt moves IDLE to BUSY; prompts that arrive while BUSY wait in the session's queue.
- A permission request moves BUSY to AWAITING_APPROVAL; the answer (or timeout, cancel,
  interrupt) moves it back to BUSY; the turn's end moves either to IDLE.
- An agent that exits is restarted (back to STARTING) unless the restart policy gives up:
  then FAILED. SUSPENDED means the agent was stopped on purpose while idle; the next
  prompt starts it again.
- ENDED and FAILED are final: nothing leaves them (a person starts a new session).
"""

from __future__ import annotations

import enum


class SessionState(enum.Enum):
    STARTING = "starting"  # agent process being launched (or relaunched)
    IDLE = "idle"  # agent runs, no turn in flight
    BUSY = "busy"  # a turn is running
    AWAITING_APPROVAL = "awaiting approval"  # a turn waits for a person's reaction
    SUSPENDED = "suspended"  # agent stopped while idle; resumes on the next prompt
    ENDED = "ended"  # ended by a person: final
    FAILED = "failed"  # the agent kept dying: final

    @property
    def is_final(self) -> bool:
        return self in (SessionState.ENDED, SessionState.FAILED)

    @property
    def in_turn(self) -> bool:
        return self in (SessionState.BUSY, SessionState.AWAITING_APPROVAL)


S = SessionState
ALLOWED: dict[SessionState, frozenset[SessionState]] = {
    S.STARTING: frozenset({S.IDLE, S.BUSY, S.STARTING, S.FAILED, S.ENDED}),
    S.IDLE: frozenset({S.BUSY, S.SUSPENDED, S.STARTING, S.ENDED, S.FAILED}),
    S.BUSY: frozenset({S.IDLE, S.AWAITING_APPROVAL, S.STARTING, S.ENDED, S.FAILED}),
    S.AWAITING_APPROVAL: frozenset({S.BUSY, S.IDLE, S.STARTING, S.ENDED, S.FAILED}),
    S.SUSPENDED: frozenset({S.STARTING, S.ENDED}),
    S.ENDED: frozenset(),
    S.FAILED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def transition(current: SessionState, new: SessionState) -> SessionState:
    """The new state, if the lifecycle allows moving there; raises otherwise."""
    if new is current and not current.is_final:
        return new
    if new not in ALLOWED[current]:
        raise IllegalTransition(f"{current.value} -> {new.value}")
    return new
