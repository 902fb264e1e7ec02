"""The client-side request budget: follow the limits the server announces, keep clear of them.

This module owns the arithmetic of "how long must this request wait". It is sans-IO: the
caller passes `now` (any monotonic clock, in seconds) and sleeps for the answer itself.
It must never read a clock or sleep.

Three sources, the strictest wins:
- a generous default (`DEFAULT_RATE`, `DEFAULT_BURST`) that only guards the server against
  a runaway flood: a Mattermost server limits nothing unless its administrator turns the
  limiter on, and throttling below what it allows only makes answers late;
- what the server announces (`X-RateLimit-Limit/-Remaining/-Reset`, sent on every response
  once its limiter is on): its burst (minus a margin) becomes ours, the rate is inferred from
  how the remaining count and the reset time move, and every response's `Remaining` caps
  what we believe is left, so we never spend a token the server no longer has;
- an explicit cap (`requests_per_second` in the configuration).

Priorities: `take` serves every caller (creates, final edits: what a person waits for)
in order, reserving a slot each. Calls that can be merged into a later one (the
intermediate edits of a streaming answer) ask `room` first and go only while the bucket is
at least `DEFERRABLE_LEVEL` full: under pressure they wait, and the edit that finally goes
carries everything put meanwhile, so the final words are never queued behind them.
"""

from __future__ import annotations

import math

import attrs

DEFAULT_RATE = 2000.0  # req/s without announced limits: a flood guard, not a throttle
DEFAULT_BURST = 500.0
# What we keep clear of an announced burst: this much of it, at least MIN_MARGIN requests
# (our own in-flight requests are not yet counted in the server's `Remaining`).
MARGIN_FRACTION = 0.05
MIN_MARGIN = 3.0
# Until the server's rate can be inferred (its bucket is nearly full, so it does not
# matter yet), assume this one: Mattermost's default quota is 10 per second.
ASSUMED_RATE = 10.0
RATE_SAFETY = 0.95  # of the inferred rate that we use
DEFERRABLE_LEVEL = 0.75  # a deferrable call goes only while the bucket is this full


@attrs.define
class TokenBucket:
    """Mutable, owned by one client. Every request calls `take` once before it starts.

    Kept as a level of tokens that refills at `rate` up to `burst`; a `take` that finds no
    token reserves the next one (the level goes below zero), so concurrent callers are
    spread `1/rate` apart instead of all waking together. A caller whose slot comes up while
    `held(now) > 0` (the server paused us after the slot was promised) must `take` again.

    Guarantee: the start times `now + take(now)` of any sequence of calls put at most
    `burst + rate * w` requests into any window of length `w` (for fixed rate and burst).
    """

    rate: float  # tokens per second; > 0
    burst: float  # how many requests may start at once on a rested bucket; >= 1
    # Invariant: `_level` (<= burst; below 0 when future slots are promised) is the number
    # of tokens at time `_at`, which only moves forward.
    _level: float = attrs.field(init=False)
    _at: float = attrs.field(init=False, default=-math.inf)
    _not_before: float = attrs.field(init=False, default=-math.inf)  # server pause

    def __attrs_post_init__(self) -> None:
        self._check(self.rate, self.burst)
        self._level = self.burst

    @staticmethod
    def _check(rate: float, burst: float) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {rate}, {burst}")

    def level(self, now: float) -> float:
        """Tokens available at `now` (negative: slots already promised to waiting callers)."""
        if now > self._at:
            if self._at > -math.inf:
                self._level = min(self.burst, self._level + (now - self._at) * self.rate)
            self._at = now
        return self._level

    def take(self, now: float) -> float:
        """Reserve one request; return the seconds to wait before sending it (>= 0)."""
        level = self.level(now)
        self._level = level - 1.0
        wait = 0.0 if level >= 1.0 else (1.0 - level) / self.rate
        return max(wait, self._not_before - now)

    def room(self, now: float, fraction: float = DEFERRABLE_LEVEL) -> float:
        """Seconds until the bucket is `fraction` full (and one token more), and no pause
        holds: when a deferrable call may go. Reserves nothing. A small bucket (a cap under
        4/s) asks no more than full: it never holds more than `burst`."""
        need = min(self.burst, max(1.0, fraction * self.burst + 1.0))
        missing = need - self.level(now)
        refill = 0.0 if missing <= 0 else missing / self.rate
        return max(refill, self._not_before - now)

    def retune(self, now: float, rate: float, burst: float) -> None:
        """New limits from now on; the tokens already spent stay spent."""
        self._check(rate, burst)
        level = self.level(now)
        self.rate, self.burst = rate, burst
        self._level = min(level, burst)

    def cap_level(self, now: float, tokens: float) -> None:
        """No more than `tokens` are left at `now` (the server said so)."""
        self._level = min(self.level(now), tokens)

    def pause(self, now: float, seconds: float) -> None:
        """The server asked us to hold off: no request may start before `now + seconds`.

        After the pause the bucket counts as empty, so requests resume at `rate`, not in a
        burst: the server has just told us we were at its limit.
        """
        until = now + max(0.0, seconds)
        self._not_before = max(self._not_before, until)
        self._level = min(self.level(now), 1.0 - (until - now) * self.rate)

    def held(self, now: float) -> float:
        """Seconds left of a server-imposed pause (0 when there is none)."""
        return max(0.0, self._not_before - now)


@attrs.frozen
class Announced:
    """One response's `X-RateLimit-*` headers: `limit` requests may pass at once, `remaining`
    are left, the bucket is full again in `reset` seconds (whole, rounded up)."""

    limit: float
    remaining: float
    reset: float


@attrs.define
class RequestBudget:
    """The budget of one REST client: a token bucket tuned to the strictest of the default,
    the server's announced limits and the configured cap."""

    cap: float | None = None  # requests_per_second from the configuration; None: no cap
    bucket: TokenBucket = attrs.field(init=False)
    # The server's rate lies above `_rate_floor` (the best lower bound its headers gave).
    _rate_floor: float = attrs.field(init=False, default=0.0)
    _announced: Announced | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.cap is not None and not self.cap > 0:
            raise ValueError(f"the cap must be > 0, got {self.cap}")
        self.bucket = TokenBucket(*self._limits())

    def _limits(self) -> tuple[float, float]:
        rate, burst = DEFAULT_RATE, DEFAULT_BURST
        if self._announced is not None:
            limit = self._announced.limit
            burst = max(1.0, limit - max(MIN_MARGIN, MARGIN_FRACTION * limit))
            rate = RATE_SAFETY * (self._rate_floor or ASSUMED_RATE)
        if self.cap is not None:
            rate, burst = min(rate, self.cap), min(burst, max(1.0, self.cap))
        return rate, burst

    @property
    def rate(self) -> float:
        return self.bucket.rate

    @property
    def burst(self) -> float:
        return self.bucket.burst

    def take(self, now: float) -> float:
        return self.bucket.take(now)

    def room(self, now: float) -> float:
        return self.bucket.room(now)

    def held(self, now: float) -> float:
        return self.bucket.held(now)

    def pause(self, now: float, seconds: float) -> None:
        self.bucket.pause(now, seconds)

    def observe(self, now: float, announced: Announced) -> None:
        """A response carried the server's limits: adopt them, and what it says is left."""
        self._announced = announced
        used = announced.limit - announced.remaining  # tokens the server misses
        # The server's bucket is full again `ttl` seconds from now, reset-1 < ttl <= reset,
        # and used - 1 < ttl * rate <= used: so rate > (used - 1) / reset.
        if announced.reset > 0 and used > 1:
            self._rate_floor = max(self._rate_floor, (used - 1) / announced.reset)
        rate, burst = self._limits()
        if (rate, burst) != (self.bucket.rate, self.bucket.burst):
            self.bucket.retune(now, rate, burst)
        margin = announced.limit - burst  # keep as clear of its remaining as of its burst
        self.bucket.cap_level(now, announced.remaining - margin)


def announced_limits(limit: str | None, remaining: str | None, reset: str | None) -> Announced | None:
    """The three headers as numbers; None unless all three are there and make sense."""
    values: list[float] = []
    for text in (limit, remaining, reset):
        try:
            value = float((text or "").strip())
        except ValueError:
            return None
        if not math.isfinite(value) or value < 0:
            return None
        values.append(value)
    if values[0] < 1:
        return None
    return Announced(values[0], min(values[1], values[0]), values[2])
