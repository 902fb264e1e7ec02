"""What the parts of one session see of it: its record, its state, its notices, its ends.

`core.session.SessionCore` is made of two parts, the agent's life (`core.agent_life`) and
the turn loop (`core.turn_loop`), and keeps what spans them. Each part sees the core only
as `SessionShared`, never the other part: where one part's decision needs the other (a
hung turn stops the agent; an agent that keeps dying fails the session, which ends the
queued prompts), it goes through the core.

Nothing here decides; it names the seam.
"""

from __future__ import annotations

from typing import Protocol

from supervisor.core.lifecycle import SessionState
from supervisor.core.prompt_endings import PromptEndings
from supervisor.core.session_effects import Effect, SaveRecord, SessionSettings, Show, StopAgent
from supervisor.core.state import SessionRecord


class SessionShared(Protocol):
    @property
    def record(self) -> SessionRecord: ...

    @property
    def settings(self) -> SessionSettings: ...

    @property
    def state(self) -> SessionState: ...

    @property
    def agent_stopping(self) -> bool:
        """The agent is being stopped on purpose (a suspend, a hung one): no prompt goes to
        it, the next agent takes it."""
        ...

    @property
    def endings(self) -> PromptEndings:
        """How each handed prompt visibly ends: both parts end prompts (a turn's result,
        the agent's exit)."""
        ...

    def move(self, state: SessionState) -> None:
        """Every change of the state, by the lifecycle's rules (`core.lifecycle`)."""
        ...

    def note(self, text: str) -> Show:
        """A notice at the thread's end (the core numbers them)."""
        ...

    def save(self, *, durable: bool = False, **changes: object) -> SaveRecord:
        """The record with `changes` is the session's now, and is saved."""
        ...

    def adopt(self, effects: list[Effect]) -> list[Effect]:
        """Effects of a part's part (approvals, endings): a record they saved is the session's now."""
        ...

    def stop_agent(self, reason: str) -> StopAgent:
        """Stop the agent on purpose; its exit is then expected (`reason`)."""
        ...

    def fail(self, why: str, stderr_tail: str, *, now: float | None = None) -> list[Effect]:
        """The session is over for good (`core.session.SessionCore.fail`)."""
        ...
