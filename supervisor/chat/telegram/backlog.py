"""The updates handed to the core and not yet confirmed: when the offset may pass one.

Owns the front end's side of exactly once: an update whose post went to the core as a
`Posted` waits (`handed`) until the core's store says that post's handled mark is durable
(`handled`); only then is it confirmed to the update source. Anything that never reaches
the core is confirmed at once (`confirm`). `keep_offset` writes the confirmed offset to
the front end's memory, one write at a time.

Updates that wait: `getUpdates` gives at most 100 updates from the offset, and at once
while any is there. So one post waiting for the core (a prompt queued behind a running
turn) makes every poll answer at once with what we have seen (polling in a loop), and
with 100 updates from it on, handled or not, nothing newer is fetched: not a `/stop`, not
a button, not the draft's Stop. When the update source says a poll would bring nothing
new (`UpdateSource.stuck`), we hold the updates that wait for the core ourselves (the
memory's `held`, durable before anything else happens) and let Telegram forget them; a
start hands the held ones out first (`held_before`), and each leaves the memory once the
core has handled it, as its update would have been confirmed.

It must never let the offset pass an update whose post is not handled, unless that update
is durably held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import trio

from supervisor.chat.telegram import codec
from supervisor.chat.telegram.codec import Update
from supervisor.chat.telegram.memory import Memory
from supervisor.chat.telegram.updates import UpdateSource

log = logging.getLogger("supervisor.telegram")


class Backlog:
    """The updates of one bot between the update source and the core's handled marks."""

    def __init__(self, source: UpdateSource, memory: Memory) -> None:
        self.source = source
        self.memory = memory
        self._pending: dict[str, list[int]] = {}  # post id handed to the core -> its updates (an album's: several)
        self._waiting: dict[int, object] = {}  # update id -> the update as it came, of those
        self._held: set[int] = set()  # updates in the memory's `held`
        self._hold_wanted = False
        # Holds since the last time nothing was held: a long turn makes many (each poll
        # that brings a new update and nothing else is one), the log says one and a count.
        self._holds = 0
        self._held_in_stretch = 0
        self._offset_moved = trio.Event()  # or a hold wanted: `keep_offset` has work
        source.on_stuck = self._want_hold

    def held_before(self) -> Iterator[Update]:
        """The updates held before a stop (older than any still on the server), to hand
        out first."""
        for raw in list(self.memory.held):
            held = codec.decode_update(raw)
            if held is None:
                continue
            self._held.add(held.update_id)
            yield held

    def handed(self, post_id: str, update: Update) -> None:
        """The update's post goes to the core: the update waits for its handled mark."""
        self._pending.setdefault(post_id, []).append(update.update_id)
        if update.update_id in self._held:
            # Held before a kill that came before Telegram let it go, so it came again:
            # durably ours already, the offset may pass it (else it would hold it up).
            self.source.confirm(update.update_id)
        else:
            self._waiting[update.update_id] = update.raw

    async def hold_if_stuck(self) -> None:
        """After `handed`: an update that came to wait while the source is stuck is held
        too (the source asked before it waited)."""
        if self.source.stuck and self._waiting:
            self._want_hold()

    def _want_hold(self) -> None:
        """`getUpdates` would give nothing newer: hold the waiting updates (`keep_offset`
        does, one write at a time)."""
        self._hold_wanted = True
        self._offset_moved.set()

    def handled(self, post_id: str) -> None:
        """The post's handled mark is durable: its update (if it came as one) is done."""
        for update_id in self._pending.pop(post_id, ()):
            self.confirm(update_id)

    def confirm(self, update_id: int) -> None:
        self.source.confirm(update_id)
        self._waiting.pop(update_id, None)
        if update_id in self._held:
            self._held.discard(update_id)
            self.memory.held = [raw for raw in self.memory.held if _update_id(raw) != update_id]
            self.memory.changed()
            self._end_stretch_if_done()
        self._offset_moved.set()

    async def _hold(self) -> None:
        """Keep the updates that wait for the core in our memory, durably, then let the
        offset pass them (see the module docstring)."""
        waiting = list(self._waiting.items())  # in the order they were handed out
        if not waiting:
            return
        memory = self.memory
        memory.held.extend(raw for _update_id, raw in waiting)
        memory.changed()
        await memory.commit()
        self._holds += 1
        self._held_in_stretch += len(waiting)
        log.log(logging.INFO if self._holds == 1 else logging.DEBUG,
                "%d updates wait for the core: held here, so that newer ones come", len(waiting))  # fmt: skip
        for update_id, _raw in waiting:
            if self._waiting.pop(update_id, None) is None:  # handled meanwhile
                memory.held = [raw for raw in memory.held if _update_id(raw) != update_id]
                memory.changed()
                continue
            self._held.add(update_id)
            self.source.confirm(update_id)
        self._end_stretch_if_done()
        self._offset_moved.set()

    def _end_stretch_if_done(self) -> None:
        """Nothing is held any more: the stretch of holds ends (said once, if there
        were more holds than its first line told of)."""
        if self._held or not self._holds:
            return
        if self._holds > 1:
            log.info("the core took the updates held here: %d in %d holds", self._held_in_stretch, self._holds)
        self._holds = self._held_in_stretch = 0

    async def keep_offset(self) -> None:
        """Write the confirmed offset to memory, and hold the waiting updates when the
        source asks, at most one write at a time."""
        memory = self.memory
        while True:
            await self._offset_moved.wait()
            self._offset_moved = trio.Event()
            if self._hold_wanted:
                self._hold_wanted = False
                await self._hold()
            if self.source.offset != memory.offset:
                memory.offset = self.source.offset
                memory.changed()
            await memory.commit()  # the offset, and updates no longer held


def _update_id(raw: object) -> object:
    return raw.get("update_id") if isinstance(raw, dict) else None
