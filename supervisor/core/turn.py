"""One turn in the agent, and its clocks: typing, the time limit, the stall, the grace.

A `Turn` is the prompt the agent is working on, with the times the session's watchdog
keeps for it: the "typing" signal it repeats, the turn's time limit, how long the agent
may stay silent (not while a person is asked for a permission), and, once the turn was
interrupted, how long a result may take before the agent is killed. The turn loop
(`core.turn_loop`) owns the turn and acts on what its clocks say.

It must never read a clock (`now` is passed in) or decide what the session does.
"""

from __future__ import annotations

import attrs

from supervisor.core.session_effects import QueuedPrompt, SessionSettings


@attrs.define
class Turn:
    prompt: QueuedPrompt
    started_at: float
    last_output_at: float
    next_typing_at: float
    interrupted_at: float | None = None
    watchdog: str = ""  # "" | "timeout" | "stall": why the watchdog interrupted
    cut_by_stop: bool = False  # interrupted because the supervisor stops (a restart?)
    terminating: bool = False  # the agent is being stopped: nothing more to decide
    begun: bool = False  # the agent said it began the turn (Claude Code's `system/init`)
    keys: set[str] = attrs.Factory(set)  # the posts the turn put: its answer is complete once they show
    # Tools whose permission request the turn's interrupt withdrew (or a 🛑 answered): the
    # agent's words for their refusal ("the user doesn't want to proceed") are not true.
    withdrawn_tools: set[str] = attrs.Factory(set)

    def deadlines(self, settings: SessionSettings, *, asking: bool) -> list[float]:
        """When its clocks next need a look; `asking`: a person is asked for a permission."""
        times = [self.next_typing_at]
        if self.interrupted_at is not None:
            times.append(self.interrupted_at + settings.interrupt_grace_s)
        else:
            times.append(self.started_at + settings.turn_timeout_s)
            if not asking:
                times.append(self.last_output_at + settings.stall_timeout_s)
        return times

    def typing_due(self, now: float, settings: SessionSettings) -> bool:
        """The typing signal is due again (the turn's first went with its prompt)."""
        if now < self.next_typing_at:
            return False
        self.next_typing_at = now + settings.typing_every_s
        return True

    def watchdog_due(self, now: float, settings: SessionSettings, *, asking: bool) -> str:
        """"kill" once an interrupt went unanswered too long; "timeout" or "stall" when the
        turn should be interrupted; "" while all is well."""
        if self.interrupted_at is not None:
            return "kill" if now >= self.interrupted_at + settings.interrupt_grace_s else ""
        if now >= self.started_at + settings.turn_timeout_s:
            return "timeout"
        if not asking and now >= self.last_output_at + settings.stall_timeout_s:
            return "stall"
        return ""

