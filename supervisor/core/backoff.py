"""How long to wait before trying again: exponential backoff with full jitter.

This module owns the retry-delay policy for everything that talks to a remote server (the
chat REST client, the WebSocket reconnect loop). It is pure: the caller counts attempts,
passes its own `random.Random`, and does the sleeping. It must never sleep, read a clock
or keep state, so a test can check every delay it will ever produce.

Full jitter (a uniform draw between zero and the exponential ceiling) spreads out clients
that failed together, so a restarted server is not hit by all of them at the same instant.
"""

from __future__ import annotations

import random

import attrs

# 2**64 times any sane base is far beyond any cap; stopping the exponent here keeps the
# float arithmetic finite however many attempts a caller has counted.
_MAX_EXPONENT = 64


@attrs.frozen
class Backoff:
    """Delay before attempt `attempt + 1`, after `attempt + 1` failures in a row.

    delay = floor + uniform(0, min(cap, base * 2**attempt)), never more than `cap`.
    """

    base: float = 0.25  # ceiling of the first delay, seconds
    cap: float = 30.0  # no delay is ever longer than this
    floor: float = 0.0  # no delay is ever shorter than this (the WebSocket uses 1 s)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.floor <= self.cap or self.base <= 0:
            raise ValueError(f"need 0 <= floor <= cap and base > 0, got {self!r}")

    def ceiling(self, attempt: int) -> float:
        """The largest delay `delay(attempt, ...)` can return."""
        exponent = min(max(attempt, 0), _MAX_EXPONENT)
        return min(self.cap, self.floor + min(self.cap, self.base * 2.0**exponent))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after failure number `attempt` (counting from 0)."""
        exponent = min(max(attempt, 0), _MAX_EXPONENT)
        jitter = rng.uniform(0.0, min(self.cap, self.base * 2.0**exponent))
        return min(self.cap, self.floor + jitter)


REST_BACKOFF = Backoff(base=0.25, cap=30.0)
"""REST calls: retry fast at first; a request the caller still wants is worth retrying.
The chat clients end such a pause early once their server answers again (`chat.retry`),
so the 30 s cap spreads retries out without holding an answer back after an outage."""

RECONNECT_BACKOFF = Backoff(base=1.0, cap=5.0, floor=1.0)
"""WebSocket reconnects: at least a second apart, so a flapping server is not hammered; at
most five, so a server back from an outage is heard within seconds (the posts written
meanwhile are fetched on the new hello, and nothing else tells us it is back). This is the
pace of the web app's first tries (3 s plus up to 2 s of jitter), kept for good: the web
app slows to minutes because a server has thousands of them; it has one supervisor."""


LISTENING_CAP_S = 5.0
"""The longest pause of a call that is how we hear the server is back (`listening_pace`)."""


def listening_pace(backoff: Backoff) -> Backoff:
    """`backoff` for a call nothing else wakes when its server is back: the start's check
    of who we are (no WebSocket listens yet), Telegram's long poll (its only ear). Its
    pauses stay within the WebSocket's reconnect pace, so a server back from an outage is
    heard within seconds rather than after the rest's 30 s."""
    return attrs.evolve(backoff, cap=min(backoff.cap, max(backoff.floor, LISTENING_CAP_S)))
