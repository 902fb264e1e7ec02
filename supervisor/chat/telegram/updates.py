"""Where Telegram updates come from: long-polling `getUpdates`, confirmed only on request.

Telegram forgets an update as soon as `getUpdates` is called with an offset above its id.
So the offset is the promise "everything before this is handled, durably": it moves past
an update only when the caller says so (`UpdateSource.confirm`), which the caller does
after its own handled mark is durable. What was written while the supervisor was down is
still on the server at start (we delete a webhook WITHOUT `drop_pending_updates`) and comes
first, in order.

`Ledger` (sans-IO) owns the bookkeeping; `UpdateSource` (trio) owns the polling loop. The
ledger's rules:
- an update is handed out at most once per process: one still unconfirmed, or confirmed
  after the request that fetched it again was sent, is skipped when it comes again;
- the offset passes an update only when it and every update handed out before it are
  confirmed (confirmations may arrive in any order);
- update ids are compared for equality only: ids can jump (to a random value after a
  week without updates), so "bigger" means nothing across such a gap. Order is the
  server's order, counted locally (`seq`);
- updates with nothing for us (kinds we did not ask for, payloads we cannot read) are
  confirmed on arrival; they never reach the caller;
- while an update is unconfirmed, Telegram answers a poll at once (it is at the offset):
  one quick poll for newer updates after `AHEAD_POLL_S`, and when a poll brings nothing
  new, or the window from the offset fills an answer (100: nothing newer would come), the
  source is `stuck`: it tells `on_stuck` (the backlog then holds the waiting updates
  durably and confirms them) and polls again only after a confirmation. So a queued
  prompt costs no stream of polls, and a `/stop` behind it is fetched;
- an answer of only updates with no usable `update_id` (a garbling proxy's: they cannot
  be confirmed, so the same offset brings them again at once) moves nothing: the next
  poll waits as after a failed call, a little longer while it lasts (at most seconds).
  Nothing is lost: an update that comes behind them is fetched with them, and its
  confirmation passes them too.

After a crash, updates that were handled but not yet confirmed to Telegram come again:
the caller's durable handled marks (keyed by each message's post id) skip them, and it
confirms them.

It must never confirm an update the caller has not confirmed, and never fight another
poller of the same token (409): it says so once, backs off, and tries again later.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio

from supervisor.chat.telegram.calls import BotApiError, Conflict, Unauthorized
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import MalformedReply, Update, UpdateBatch
from supervisor.core.backoff import Backoff
from supervisor.logs import in_a_row_level

log = logging.getLogger("supervisor.telegram")

# Name every kind we use: an omitted list keeps whatever the last caller set, an empty
# one means "all but reactions and chat_member" (FACTS.md). "stopped_message_generation"
# (Bot API 10.3: the draft's Stop button) is asked for always: a server older than 10.3
# has no such update to send, and Telegram ignores names it does not know.
ALLOWED_UPDATES: Final = ("message", "edited_message", "callback_query", "stopped_message_generation")
POLL_S: Final = 30  # long-poll time; Telegram allows up to 50
LIMIT: Final = 100  # the most updates one getUpdates answer holds (Telegram's most)
# While some handed-out updates await confirmation, a poll from the old offset returns
# them again at once: after this long, one such poll for newer ones (see `run`).
AHEAD_POLL_S: Final = 1.0
# A second poller on our token: give it room rather than alternate 409s with it.
CONFLICT_BACKOFF: Final = Backoff(base=10.0, cap=300.0, floor=10.0)
# An answer of only updates we cannot confirm comes again at once: wait as after a failed
# call, but not long (an update behind them waits as long).
PASSED_OVER_BACKOFF: Final = Backoff(base=0.5, cap=5.0, floor=0.5)
# An answer that is not Telegram's (a captive portal's page, a proxy's) or a refusal we do
# not expect: polled again, slowly, rather than ending the front end (and the supervisor).
NOT_TAKEN_BACKOFF: Final = Backoff(base=1.0, cap=60.0, floor=1.0)


@attrs.frozen
class Poll:
    """One getUpdates request to send: its offset, and the `mark` to hand back with its
    answer (every update confirmed up to then is forgotten by the server once answered)."""

    offset: int | None
    mark: int


@attrs.define
class Ledger:
    """Handed-out updates and their confirmations (see the module docstring).

    Invariants: `_out` is in hand-out order, its first entry unconfirmed (a confirmed
    prefix is moved behind the offset at once); every id is in at most one of `_out`
    and `_behind`; `offset` is one past the last id moved behind it.
    """

    offset: int | None = None
    _seq: int = 0  # hand-out counter
    _out: list[tuple[int, int]] = attrs.Factory(list)  # (seq, update_id), ahead of the offset
    _confirmed: set[int] = attrs.Factory(set)  # ids in _out confirmed out of order
    _behind: dict[int, int] = attrs.Factory(
        dict
    )  # id -> seq, behind the offset, maybe not forgotten
    _last_behind: int = 0  # seq of the last entry moved behind the offset

    def poll(self) -> Poll:
        return Poll(self.offset, self._last_behind)

    @property
    def window_full(self) -> bool:
        """A poll from the offset would return only updates handed out already: as many
        of them lie ahead of the offset as one answer holds."""
        return len(self._out) >= LIMIT

    def accept(self, updates: Sequence[Update], mark: int) -> list[Update]:
        """The fresh updates in an answer to `Poll(…, mark)`, in order, to hand out."""
        self._behind = {uid: seq for uid, seq in self._behind.items() if seq > mark}
        out = {uid for _, uid in self._out}
        fresh = []
        for update in updates:
            uid = update.update_id
            if uid in out or uid in self._behind:
                continue
            self._seq += 1
            self._out.append((self._seq, uid))
            out.add(uid)
            if update.empty:
                if update.malformed:  # a person's message, perhaps: confirmed here, so said here
                    log.warning("update %s is not in the Bot API's shape (%s): passed over", uid, update.malformed)
                self._confirmed.add(uid)
            else:
                fresh.append(update)
        self._advance()
        return fresh

    def confirm(self, update_id: int) -> bool:
        """The caller's handled mark for `update_id` is durable. True when that was news:
        False for an id already confirmed, or one this ledger does not hold (never handed
        out, or long forgotten by the server), which changes nothing."""
        if update_id in self._confirmed or all(uid != update_id for _, uid in self._out):
            return False
        self._confirmed.add(update_id)
        self._advance()
        return True

    @property
    def unconfirmed(self) -> int:
        """How many handed-out updates still wait for `confirm`."""
        return len(self._out) - len(self._confirmed)

    def _advance(self) -> None:
        while self._out and self._out[0][1] in self._confirmed:
            seq, uid = self._out.pop(0)
            self._confirmed.discard(uid)
            self._behind[uid] = seq
            self._last_behind = seq
            self.offset = uid + 1


class UpdateSource:
    """Polls updates into a channel; the caller confirms each one when it is handled.

    Usage (the caller owns the channel's receiving end):
        source = UpdateSource(api, start_offset=stored_offset)
        await nursery.start(source.run, send_channel)
        async for update in receive_channel:
            ... handle, make the handled mark durable ...
            source.confirm(update.update_id)
            store(source.offset)   # optional: a shortcut past confirmed updates at start
    """

    def __init__(
        self,
        api: BotApi,
        *,
        start_offset: int | None = None,
        allowed_updates: Sequence[str] = ALLOWED_UPDATES,
        poll_s: int = POLL_S,
        ahead_poll_s: float = AHEAD_POLL_S,
        conflict_backoff: Backoff = CONFLICT_BACKOFF,
        passed_over_backoff: Backoff = PASSED_OVER_BACKOFF,
        not_taken_backoff: Backoff = NOT_TAKEN_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self._api = api
        self._ledger = Ledger(offset=start_offset)
        self._allowed = tuple(allowed_updates)
        self._poll_s = poll_s
        self._ahead_poll_s = ahead_poll_s
        self._conflict_backoff = conflict_backoff
        self._passed_over_backoff = passed_over_backoff
        self._not_taken_backoff = not_taken_backoff
        self._not_taken = 0  # calls in a row whose answer we could not take
        self._rng = rng or random.Random()
        self._confirmed = trio.Event()
        self.conflict = False  # another poller holds the token (409) right now
        # Polling again would bring nothing new (see `run`) while updates wait for
        # confirmation: `on_stuck` is told, so that its holder may take the waiting ones
        # out of Telegram's hands (`backlog`), and we wait for a confirmation.
        self.stuck = False
        self.on_stuck: Callable[[], None] = lambda: None
        self.answered = trio.Event()  # Telegram answered this source's first call

    @property
    def offset(self) -> int | None:
        """The offset that the next poll confirms up to: store it to skip ahead at start."""
        return self._ledger.offset

    @property
    def unconfirmed(self) -> int:
        return self._ledger.unconfirmed

    def confirm(self, update_id: int) -> None:
        """`update_id` is handled and its mark durable: the offset may pass it.
        Idempotent; an id this source did not hand out changes nothing."""
        if self._ledger.confirm(update_id):
            self._confirmed.set()

    async def run(
        self,
        updates: trio.MemorySendChannel[Update],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Switch any webhook off (keeping the backlog), then poll until cancelled. Started
        at once: a Telegram out of reach at start is waited for here, as any outage."""
        async with updates:
            task_status.started()
            while True:
                try:
                    await self._api.delete_webhook()
                    break
                except Unauthorized:
                    raise  # at a start: the token's (the front end says so)
                except (BotApiError, MalformedReply) as error:
                    await self._not_taken_pause("deleteWebhook", error)
            self._taken_again()
            self.answered.set()
            conflicts = passed_over_answers = refusals = 0
            said: tuple[str, ...] = ()  # the unusable updates of the last answer, logged
            while True:
                await self._wait_for_turn()
                self.stuck = False  # until this poll's answer says so again
                poll = self._ledger.poll()
                # An unconfirmed update at the offset makes Telegram answer at once: a long
                # poll only once everything handed out is confirmed.
                wait_s = self._poll_s if self._ledger.unconfirmed == 0 else 0
                try:
                    fetched = await self._api.get_updates(
                        poll.offset, poll_s=wait_s, allowed_updates=self._allowed
                    )
                except Conflict as error:
                    await self._hold_off(error, conflicts)
                    conflicts += 1
                    continue
                except Unauthorized:
                    if not self._api.token.watching:  # at a start (Telegram silent before): the token's
                        raise
                    await self._refused_own(refusals)
                    refusals += 1
                    continue
                except (BotApiError, MalformedReply) as error:
                    await self._not_taken_pause("getUpdates", error)
                    continue
                self._taken_again()
                if refusals:
                    log.warning("Telegram takes getUpdates again: updates flow")
                    refusals = 0
                if conflicts:
                    log.warning("Telegram updates flow again: the other poller has stopped")
                    conflicts, self.conflict = 0, False
                for why in fetched.passed_over:  # said once while the same ones come again
                    log.log(logging.DEBUG if why in said else logging.WARNING,
                            "getUpdates gave an update we cannot confirm (%s): passed over", why)  # fmt: skip
                said = fetched.passed_over
                fresh = self._ledger.accept(fetched.updates, poll.mark)
                for update in fresh:
                    await updates.send(update)
                if self._only_passed_over(fetched, fresh, poll):
                    # The same poll would bring them again at once: not a stream of polls.
                    await trio.sleep(self._passed_over_backoff.delay(passed_over_answers, self._rng))
                    passed_over_answers += 1
                    continue
                passed_over_answers = 0
                # The same offset would give the same answer: nothing came since the last
                # one, or the answer was all updates handed out already (a full window:
                # nothing newer would ever come, not a /stop, not a button).
                self.stuck = self._ledger.unconfirmed > 0 and (not fresh or self._ledger.window_full)
                if self.stuck:
                    self.on_stuck()

    def _only_passed_over(self, fetched: UpdateBatch, fresh: list[Update], poll: Poll) -> bool:
        """The answer held updates we cannot confirm and nothing else that moved: nothing
        handed out, nothing confirmed on arrival, nothing awaiting confirmation (then the
        source is stuck, and waits for that instead)."""
        return bool(fetched.passed_over) and not fresh and self._ledger.unconfirmed == 0 and (
            self._ledger.offset == poll.offset
        )

    async def _wait_for_turn(self) -> None:
        """Poll at once when nothing awaits confirmation; else when everything is
        confirmed, or after `ahead_poll_s` to fetch what came meanwhile; when stuck, after
        the next confirmation (at the latest after a long poll's time)."""
        if self._ledger.unconfirmed == 0:
            return
        if self.stuck:
            with trio.move_on_after(self._poll_s):
                self._confirmed = trio.Event()
                await self._confirmed.wait()
            return
        with trio.move_on_after(self._ahead_poll_s):
            while self._ledger.unconfirmed:
                self._confirmed = trio.Event()
                await self._confirmed.wait()

    async def _refused_own(self, attempt: int) -> None:
        """getUpdates refused with 401 while the token's checks (getMe) take the token: not
        the token (`token` holds the calls it refuses), so the poll goes on, slowly, rather
        than end the front end and the supervisor with it. (Each round is the two checks
        `OwnRefusal` waits for, then this pause: about three of the watch's pauses.)"""
        pause_s = self._api.token.every_s
        if attempt == 0:
            log.error("Telegram refuses getUpdates (401) though it takes the bot's token (getMe): a proxy "
                      "in front of the Bot API? Tried again about every %.0f s", 3 * pause_s)  # fmt: skip
        await trio.sleep(pause_s)

    async def _not_taken_pause(self, method: str, error: BotApiError | MalformedReply) -> None:
        """An answer we cannot take (not the Bot API's, or a refusal we do not expect): said
        at the 1st, 2nd, 4th, 8th... in a row, then tried again after a pause that grows.
        (The error's words are scrubbed of the token by the client.)"""
        self._not_taken += 1
        log.log(in_a_row_level(self._not_taken),
                "%s: an answer we cannot take (%s; %d in a row): a proxy or a captive portal between "
                "us and Telegram? Polled again, slowly", method, error, self._not_taken)  # fmt: skip
        await trio.sleep(self._not_taken_backoff.delay(self._not_taken - 1, self._rng))

    def _taken_again(self) -> None:
        if self._not_taken:
            log.warning("Telegram's answers can be read again after %d that could not: updates flow",
                        self._not_taken)  # fmt: skip
            self._not_taken = 0

    async def _hold_off(self, error: Conflict, attempt: int) -> None:
        delay = self._conflict_backoff.delay(attempt, self._rng)
        if attempt == 0:
            self.conflict = True
            what = (
                "a webhook is set for this bot token"
                if "webhook" in error.description.lower()
                else "another program is polling this bot token"
            )
            log.error(
                "Telegram says %s (409 Conflict): not competing for the updates; trying "
                "again now and then. Stop the other program, or give this supervisor a "
                "bot token of its own.",
                what,
            )
        await trio.sleep(delay)
