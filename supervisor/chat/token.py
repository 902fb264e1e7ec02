"""Whether a chat server still takes the bot's token, while the supervisor runs.

A token revoked while we run makes the server refuse every call with 401. This module
owns the one check of the token (the front end's "who am I": Mattermost's GET /users/me,
Telegram's getMe) and what the others do meanwhile:
- a call refused with 401 only suspects the token: the check, made at once, decides (a
  proxy's 401 while the server restarts is not a refusal). A call refused again after a
  check took the token asks once more: a token revoked again meanwhile holds it too, and
  only a 401 the checks take the token after twice in a row is the call's own
  (`OwnRefusal`);
- a refused token is said once, as an ERROR naming the cause, and checked again every
  `every_s`. The calls it refused wait for it to be taken again (`taken_again`): what
  the supervisor posts goes, in order, once it is;
- taken again, it says so once, and everything that waited goes on.

Each front end's client makes a call refused with 401 wait only while `run` runs; before
(the start's own check, the doctor's), a 401 stays the caller's error: at start it is a
one-sentence failure. It must never end the supervisor (the other front ends keep
serving), nor log the token.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from supervisor.chat import ChatError
from supervisor.logs import one_line

# How often a refused token is checked again; also the least time between two checks, so
# that a call refused for some other reason does not keep the check busy. Read when a
# watch is made (tests shorten it, for every front end at once).
CHECK_EVERY_S = 30.0


class TokenWatch:
    """Owned by a front end's client, which runs `run` beside its event stream.

    `server` names the server in the log ("Mattermost at https://…"), `check` the request
    that checks the token, `guess` says what likely happened, as a question."""

    def __init__(self, server: str, check: str, guess: str, log: logging.Logger) -> None:
        self._server = server
        self._check_name = check
        self._guess = guess
        self._log = log
        self.every_s = CHECK_EVERY_S
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
                await trio.sleep(self.every_s)
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
                    self._log.error(
                        "%s refuses the bot's token (%d on %s): %s What it should post waits, and goes once"
                        " the token is taken again (checked every %.0f s); `supervisor check` says more",
                        self._server, error.status, self._check_name, self._guess, self.every_s,
                    )  # fmt: skip
            except Exception as exc:  # no answer at all (a proxy's refusal...): neither way
                self._log.warning("%s: the token's check failed (%s); tried again in %.0f s",
                                  self._server, one_line(exc), self.every_s)  # fmt: skip
            await trio.sleep(self.every_s)
        if self.refused:
            self.refused = False
            self._log.warning("%s takes the bot's token again: what waited goes now", self._server)
        self._let_waiters_go()

    def _let_waiters_go(self) -> None:
        """Release every `taken_again` waiting now; the next ones wait for what comes next
        (left set, a watch run again would let each refused call retry at once, for ever)."""
        self._taken.set()
        self._taken = trio.Event()


class OwnRefusal:
    """Tells, for one call, a 401 of its own (a path a proxy guards) from the token's:
    its own once the checks took the token at once after two of its 401s in a row. (The
    second check comes after the watch's pause, `every_s`: such a call fails that much
    later, its thread's later posts waiting behind it meanwhile.)"""

    def __init__(self) -> None:
        self._passes = 0  # 401s in a row after which a check took the token at once

    async def after_check(self, watch: TokenWatch) -> bool:
        """Wait for a check of the token (the call was refused with 401); whether the 401
        is the call's own, to fail as any refusal, rather than one to send again."""
        self._passes = 0 if await watch.taken_again() else self._passes + 1
        return self._passes >= 2
