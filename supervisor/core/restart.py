"""Restart policy as data, decided sans-IO (think OTP child specs).

An agent that exits unexpectedly is restarted after a backoff, as long as it has not
exited more than `max_restarts` times within `window_s`. Past that the session fails.
"""

from __future__ import annotations

from collections import deque

import attrs


@attrs.frozen
class RestartPolicy:
    max_restarts: int = 3
    window_s: float = 300.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0


@attrs.frozen
class Restart:
    delay_s: float


@attrs.frozen
class GiveUp:
    exits_in_window: int


@attrs.define
class RestartTracker:
    """Remembers recent unexpected exits of one agent. Invariant: `exits` holds only
    times within the policy window, oldest first."""

    policy: RestartPolicy
    exits: deque[float] = attrs.field(factory=deque)

    def on_exit(self, now: float) -> Restart | GiveUp:
        while self.exits and now - self.exits[0] > self.policy.window_s:
            self.exits.popleft()
        self.exits.append(now)
        if len(self.exits) > self.policy.max_restarts:
            return GiveUp(len(self.exits))
        delay = self.policy.backoff_base_s * 2 ** (len(self.exits) - 1)
        return Restart(min(delay, self.policy.backoff_cap_s))
