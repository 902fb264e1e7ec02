"""The replies the update loop owes and need not wait for: a lane of their own.

Owns a bounded queue of Bot API calls and the few tasks that make them: a stranger's
refusal, the answer to a button press (it only stops the person's spinner), the note that
says which session is active. Made in the update loop, one that Telegram holds up (a 429
with retry_after 30, a connection that hangs until the client's timeout, retried) would
hold every later update of every chat and topic; here it holds only the replies behind
it. Each call gets `patience_s`; past it, or with the queue full (a crowd of strangers
pressing buttons), a reply is dropped and said in the log: they are courtesies.

It must never carry what has to stay in order with the updates: a post or a choice for
the core, a handled mark, a confirmation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from supervisor.chat.telegram.calls import CALL_FAILURES

log = logging.getLogger("supervisor.telegram")

Reply = tuple[str, Callable[[], Awaitable[object]]]  # what it is (for the log), the call


class Replies:
    """One lane. `run` is its task; `senders` 1 keeps the replies in order."""

    def __init__(self, name: str, *, senders: int, queued: int, patience_s: float) -> None:
        self.name = name
        self._senders = senders
        self._patience_s = patience_s
        self._send, self._receive = trio.open_memory_channel[Reply](queued)

    def put(self, what: str, call: Callable[[], Awaitable[object]]) -> bool:
        """Queue `call`; False (said in the log) when the queue is full."""
        try:
            self._send.send_nowait((what, call))
        except trio.WouldBlock:
            log.info("too many %s waiting: %s is not sent", self.name, what)
            return False
        return True

    async def run(self) -> None:
        async with self._receive, trio.open_nursery() as nursery:
            for _ in range(self._senders):
                nursery.start_soon(self._sender)

    async def _sender(self) -> None:
        async for what, call in self._receive:
            with trio.move_on_after(self._patience_s) as scope:
                try:
                    await call()
                except CALL_FAILURES as exc:
                    log.info("could not send %s: %s", what, exc)
            if scope.cancelled_caught:
                log.info("%s is not sent: Telegram did not take it within %.0f s", what, self._patience_s)
