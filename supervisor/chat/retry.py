"""Retrying a request to a chat server: the pause between tries, cut short once the
server is known to answer again.

This module owns the trio side of a REST client's retry loop: `ServerAnswers`, the signal
a client raises whenever its server answers (a response that is not a 5xx or a 429, a
WebSocket that connected again), and `RetryPauses`, one call's count of failures and its
pauses. The delays themselves are `core.backoff`'s (pure); the request budget still paces
every try that follows a pause, so many retries woken together go one by one.

Why wake at all: after an outage of a minute a pause may be up to 30 s long, so an answer
being posted meanwhile would appear long after the server is back, and every post queued
behind it in that thread later still.

It must never cut a server's own hold short (a 429's Retry-After is the budget's pause,
not one of these), nor let a server that answers others but fails one call keep that call
trying at the pace of the others' answers: a try that was woken and failed again waits
its next pause out in full.
"""

from __future__ import annotations

import random

import trio

from supervisor.core.backoff import Backoff


def server_is_up(status: int) -> bool:
    """An HTTP status that the server itself is there to give: neither a 5xx (it, or the
    proxy before it, failed) nor a 429 (it holds us off)."""
    return status < 500 and status != 429


class ServerAnswers:
    """Raised by everything that hears one server answer; awaited by its sleeping retries.
    Owned by that server's REST client; the WebSocket beside it is handed it."""

    def __init__(self) -> None:
        self._next = trio.Event()  # set, and replaced, on each answer

    def answered(self) -> None:
        self._next.set()
        self._next = trio.Event()

    async def sleep(self, seconds: float) -> bool:
        """Sleep `seconds`, or until the server answers; True when it answered first."""
        answered = self._next
        with trio.move_on_after(seconds):
            await answered.wait()
            return True
        return False


class RetryPauses:
    """One call's retries: how many tries failed in a row, and the pause after each."""

    def __init__(self, backoff: Backoff, rng: random.Random, answers: ServerAnswers) -> None:
        self._backoff = backoff
        self._rng = rng
        self._answers = answers
        self._failures = 0
        self._woken = False  # the last pause ended because the server answered

    def next_delay(self) -> float:
        """The backoff's delay after one more failure (for a pause someone else keeps)."""
        delay = self._backoff.delay(self._failures, self._rng)
        self._failures += 1
        return delay

    async def pause(self) -> None:
        """After a failed try: wait the backoff's delay, or less once the server answers."""
        delay = self.next_delay()
        if self._woken:  # woken, and failed again: not a server that was away
            self._woken = False
            await trio.sleep(delay)
            return
        self._woken = await self._answers.sleep(delay)
