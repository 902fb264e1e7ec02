"""A client-side request budget: a token bucket that tells a caller how long to wait.

This module owns the arithmetic of "at most `rate` requests per second, `burst` at once",
plus server-imposed pauses (a 429, or `X-RateLimit-Remaining: 0`). It is sans-IO: the
caller passes `now` (any monotonic clock, in seconds) and sleeps for the answer itself.
It must never read a clock or sleep.

The bucket is kept in its GCRA form (one "theoretical arrival time"), which is the same
limiter Mattermost's server uses. `take` *reserves* a slot: each caller is told when its
own slot comes up, so concurrent callers are spread `1/rate` apart instead of all waking
together and racing for one token.

Guarantee: the start times `now + take(now)` of any sequence of calls put at most
`burst + rate * w` requests into any window of length `w`.
"""

from __future__ import annotations

import attrs


@attrs.define
class TokenBucket:
    """Mutable, owned by one client; every request calls `take` once before it starts.

    A caller whose slot comes up while `held(now) > 0` (the server paused us after the
    slot was promised) must `take` again rather than go: that keeps the requests queued
    behind a pause spread out after it, instead of all starting the moment it ends.
    """

    rate: float  # slots per second; > 0
    burst: float  # how many requests may start at once on a rested bucket; >= 1
    # Invariant: _tat - (burst - 1) / rate is the earliest start of the next slot; it only
    # moves forward. None until the first take.
    _tat: float | None = attrs.field(init=False, default=None)
    _not_before: float = attrs.field(init=False, default=float("-inf"))  # server pause

    def __attrs_post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {self.rate}, {self.burst}")

    @property
    def _interval(self) -> float:
        return 1.0 / self.rate

    @property
    def _tolerance(self) -> float:
        return (self.burst - 1.0) * self._interval

    def take(self, now: float) -> float:
        """Reserve one request; return the seconds to wait before sending it (>= 0)."""
        tat = now if self._tat is None else max(self._tat, now)
        start = max(now, tat - self._tolerance, self._not_before)
        self._tat = max(tat, start) + self._interval
        return start - now

    def pause(self, now: float, seconds: float) -> None:
        """The server asked us to hold off: no request may start before `now + seconds`.

        After the pause the bucket counts as empty, so requests resume at `rate`, not in a
        burst: the server has just told us we were near its limit.
        """
        until = now + max(0.0, seconds)
        self._not_before = max(self._not_before, until)
        tat = now if self._tat is None else self._tat
        self._tat = max(tat, until + self._tolerance)

    def held(self, now: float) -> float:
        """Seconds left of a server-imposed pause (0 when there is none)."""
        return max(0.0, self._not_before - now)
