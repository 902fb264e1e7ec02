"""Whether Mattermost still takes the bot's token, while the supervisor runs.

A token revoked (or the bot deactivated) while we run: every REST call is refused with
401, and the WebSocket is let in but never greeted. This module owns the one check of
the token (GET /users/me) and what the others do meanwhile:
- a REST call refused with 401, or a WebSocket connection that got past its handshake
  (or was refused it with 401) and heard nothing, only suspects the token: the check,
  made at once, decides (a proxy's 401 while the server restarts is not a refusal). A
  call refused again after a check took the token asks once more: a token revoked again
  meanwhile holds it too, and only a 401 the checks take the token after twice in a row
  is the call's own;
- a refused token is said once, as an ERROR naming the cause, and checked again every
  `CHECK_EVERY_S`. The REST calls it refused wait for it to be taken again, and so does
  the WebSocket's next try: answers are posted, in order, once it is, and the posts
  written meanwhile are caught up on the WebSocket's new hello;
- taken again, it says so once, and everything that waited goes on.

Before `run` starts (the start's own GET /users/me, the doctor's), a 401 stays the
caller's `ChatError`: at start it is a one-sentence failure. It must never end the
supervisor (the other front ends keep serving), nor log the token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from supervisor.chat import ChatError
from supervisor.logs import one_line

log = logging.getLogger("supervisor.mattermost")

# How often a refused token is checked again; also the least time between two checks, so
# that a call refused for some other reason does not keep the check busy.
CHECK_EVERY_S = 30.0


class TokenWatch:
    """Owned by the REST client (`MattermostRest.token`); the WebSocket is handed it, and
    the link runs `run` beside the WebSocket."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self.watching = False  # `run` runs: a refused call may wait for the token
        self.refused = False  # the last check was refused
        self._suspicion = trio.Event()  # set when someone saw a sign of refusal
        self._taken = trio.Event()  # set, and replaced, by each check that passed
        self._refusals = 0  # checks that found the token refused, ever

    def suspect(self) -> None:
        self._suspicion.set()

    async def taken_again(self) -> bool:
        """Return once a check finds the token taken (or the watch ends: the caller's next
        401 is then its own). True when the token was refused meanwhile, or already: the
        caller's 401 was the token's. (A check already on its way may be the one: a caller
        that is refused again asks once more.)"""
        taken, refused, refusals = self._taken, self.refused, self._refusals
        self.suspect()
        await taken.wait()
        return refused or self._refusals > refusals

    async def run(self, check: Callable[[], Awaitable[object]]) -> None:
        """Check the token whenever it is suspected (`check` raises `ChatError` on a
        refusal and retries what is transient). Runs until cancelled."""
        self.watching = True
        try:
            while True:
                await self._suspicion.wait()
                self._suspicion = trio.Event()
                await self._until_taken(check)
                await trio.sleep(CHECK_EVERY_S)
        finally:
            self.watching = False
            self._let_waiters_go()  # nobody would release them any more

    async def _until_taken(self, check: Callable[[], Awaitable[object]]) -> None:
        while True:
            try:
                await check()
                break
            except ChatError as error:
                self._refusals += 1
                if not self.refused:
                    self.refused = True
                    log.error(
                        "Mattermost at %s refuses the bot's token (%d on GET /users/me): revoked, or the bot"
                        " deactivated? What it should post waits, and goes once the token is taken again"
                        " (checked every %.0f s); `supervisor check` says more",
                        self._base_url, error.status, CHECK_EVERY_S,
                    )  # fmt: skip
            except Exception as exc:  # no answer at all (a proxy's refusal...): neither way
                log.warning("Mattermost at %s: the token's check failed (%s); tried again in %.0f s",
                            self._base_url, one_line(exc), CHECK_EVERY_S)  # fmt: skip
            await trio.sleep(CHECK_EVERY_S)
        if self.refused:
            self.refused = False
            log.warning("Mattermost at %s takes the bot's token again: what waited goes now", self._base_url)
        self._let_waiters_go()

    def _let_waiters_go(self) -> None:
        """Release every `taken_again` waiting now; the next ones wait for what comes next
        (left set, a watch run again would let each refused call retry at once, for ever)."""
        self._taken.set()
        self._taken = trio.Event()
