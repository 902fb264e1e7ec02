"""The web chat as the core sees it: outgoing ops in, incoming events out.

Outgoing (core -> page), each idempotent by the key the core gives: `open_thread`,
`create`, `edit`, `show_choice`, `settle_choice`, `typing`, `send_file`, plus
`update_thread` (the sidebar's state, agent and directory). Each writes the store first,
then tells every open tab. Incoming (page -> core): `events` yields `MessagePosted`,
`ChoiceMade` and `StopAsked`, each recorded durably before the page hears its ack; the
core calls `handled(event_id)` once it acted, and events not marked handled are handed
to the core again after a restart (so the page's resend and the restart together give
exactly once). Opening a thread yields `ThreadOpened`, a hint that is never recorded.

Never decides what a message means: `!`-commands, prompts and choices go to the core as
they are.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import random
import sqlite3
import time
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from supervisor.chat.web import codec
from supervisor.chat.web.db import MessageRow, ThreadRow, WebDb
from supervisor.chat.web.hub import Hub
from supervisor.chat.web.port import (
    MAIN_THREAD,
    WEB_AUTHOR,
    WEB_PLACE,
    AttachmentRef,
    ChoiceMade,
    Incoming,
    MessagePosted,
    OptionKind,
    PageEvent,
    StopAsked,
    ThreadOpened,
    ThreadRef,
)
from supervisor.chat.web.store import WebStore, is_busy
from supervisor.core.backoff import Backoff

log = logging.getLogger(__name__)

EVENT_QUEUE = 64
# A handled mark waiting for a database another program keeps locked: at least a second
# between tries, at most thirty.
HANDLED_RETRY = Backoff(base=1.0, cap=30.0, floor=1.0)
# How long a page shows a typing signal (static/app.js TYPING_MS); the core repeats it
# sooner while a turn runs.
TYPING_SHOWN_S = 4.5


@attrs.frozen
class PageConfig:
    """What the new-session form offers, and a notice for the top of the page."""

    agents: tuple[str, ...] = ()  # named agents; the form offers the default one first
    default_agent: str = ""  # what the sidebar calls the default agent (as `!agents` does)
    personas: tuple[str, ...] = ()
    persona_agents: Mapping[str, str] = attrs.field(factory=dict)  # a persona -> the agent it names
    default_cwd: str = ""
    notice: str = ""


class WebChat:
    """Invariant: every change is in the store before any tab hears of it."""

    def __init__(self, store: WebStore, hub: Hub, page: PageConfig) -> None:
        self.store = store
        self.hub = hub
        self.page = page
        send, receive = trio.open_memory_channel[PageEvent](EVENT_QUEUE)
        self._send_event = send
        self.events: trio.MemoryReceiveChannel[PageEvent] = receive
        self._replayed = trio.Event()
        # The events handed to the core (or on their way) and not yet handled: a resend of
        # one is not handed twice; one whose handing was stopped (its tab closed between
        # the store's write and the core) is handed by its resend.
        self._handed: set[str] = set()
        self._typing_at: dict[str, float] = {}  # thread id -> its last typing signal
        # The newest stamp given to a person's message (ms), seeded from the store's mark
        # before any is accepted (`replay_unhandled`): stamps go on above the last run's.
        self._last_stamp_ms = 0

    # outgoing ------------------------------------------------------------------------

    async def open_thread(
        self, place: str, title: str, header_text: str, key: str, *, agent: str = "",
        cwd: str = "",
    ) -> ThreadRef:  # fmt: skip
        row = await self.store.call(WebDb.open_thread, key, title, agent, cwd)
        self._thread_changed(row)
        await self.create(ThreadRef(place, row.id), header_text, f"{key}:header")
        return ThreadRef(place, row.id)

    async def update_thread(self, thread: ThreadRef, **fields: str) -> None:
        row = await self.store.call(WebDb.update_thread, thread.thread_id, **fields)
        if row is not None:
            self._thread_changed(row)

    async def create(
        self, thread: ThreadRef, text: str, key: str | None, files: tuple[str, ...] = ()
    ) -> MessageRow:
        """A bot message (idempotent by `key` when given), with uploaded files attached."""
        refs = tuple(attrs.asdict(ref) for ref in await self.store.call(_file_refs, files))
        row = await self.store.call(
            WebDb.create, thread.thread_id, "bot", "text", text, key=key, files=refs
        )
        self._message_changed(row)
        return row

    async def edit(self, message_id: str, text: str) -> MessageRow | None:
        row = await self.store.call(WebDb.edit, message_id, text)
        self._message_changed(row)
        return row

    async def header(self, thread_id: str) -> MessageRow | None:
        return await self.store.call(WebDb.first_message, thread_id)

    async def offer_choice(
        self, message_id: str, options: tuple[tuple[OptionKind, str], ...]
    ) -> None:
        """Buttons on a message the core already wrote (a permission request)."""
        self._message_changed(await self.store.call(WebDb.offer, message_id, options))

    async def show_choice(
        self, thread: ThreadRef, text: str, options: tuple[tuple[OptionKind, str], ...], key: str
    ) -> str:
        row = await self.store.call(
            WebDb.create, thread.thread_id, "bot", "choice", text, key=key, options=options
        )
        self._message_changed(row)
        return row.id

    async def settle_choice(self, message_id: str, outcome_text: str) -> None:
        self._message_changed(await self.store.call(WebDb.settle, message_id, outcome_text))

    async def typing(self, thread: ThreadRef) -> None:
        self._typing_at[thread.thread_id] = trio.current_time()
        self.hub.publish({"type": "typing", "thread": thread.thread_id})

    def typing_now(self) -> list[str]:
        """The threads whose turn signalled lately: a page (re)loaded mid-turn shows them
        busy at once, not only at their next signal."""
        now = trio.current_time()
        for thread_id, at in list(self._typing_at.items()):
            if now - at >= TYPING_SHOWN_S:
                del self._typing_at[thread_id]
        return list(self._typing_at)

    async def send_file(self, thread: ThreadRef, name: str, data: bytes, key: str) -> str:
        ref = await self.store.call(WebDb.add_file, name, data)
        row = await self.store.call(
            WebDb.create, thread.thread_id, "bot", "file", "", key=key, files=(ref,)
        )
        self._message_changed(row)
        return row.id

    async def fetch_attachment(self, ref: AttachmentRef) -> bytes:
        found = await self.store.call(WebDb.file, ref.id)
        if found is None:
            raise LookupError(f"no uploaded file {ref.id}")
        return found[1]

    async def handled(self, event_id: str) -> None:
        """Mark the page's event handled. A database another program keeps locked (a
        sqlite3 shell left in a transaction) is waited for, however long: the mark is the
        same each try, and failing it would end the supervisor."""
        rng = random.Random()
        for attempt in itertools.count():
            try:
                await self.store.call(WebDb.handled, event_id)
                break
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                pause = HANDLED_RETRY.delay(attempt, rng)
                log.warning("a handled mark waits for the web chat's database, still locked: trying in %.0f s", pause)
                await trio.sleep(pause)
        self._handed.discard(event_id)

    def _thread_changed(self, row: ThreadRow) -> None:
        self.hub.publish({"type": "thread", "thread": codec.thread_json(row)})

    def _message_changed(self, row: MessageRow | None) -> None:
        if row is not None:
            self.hub.publish({"type": "message", "message": codec.message_json(row)})

    # incoming ------------------------------------------------------------------------

    async def replay_unhandled(self) -> None:
        """Hand the core what was accepted but not handled before the last stop."""
        self._last_stamp_ms = await self.store.call(WebDb.last_stamp_ms)
        for raw in await self.store.call(WebDb.unhandled):
            await self._hand_on(codec.decode_event(raw))
        self._replayed.set()

    def _stamp_ms(self) -> int:
        """A message's time for the core: the wall clock, but never at or below a stamp
        given before, in this run or the last. A clock behind the last run's (a board with
        no clock of its own before time sync, a restored VM) would else stamp new messages
        older than those handled, which the core's ledger takes for dealt with."""
        self._last_stamp_ms = max(self._last_stamp_ms + 1, round(time.time() * 1000))
        return self._last_stamp_ms

    def opened(self, thread_id: str) -> None:
        """The page opened a session's thread: said to the core if it can take it now (a
        hint: never waits, and a full queue drops it)."""
        if thread_id != MAIN_THREAD:
            with contextlib.suppress(trio.WouldBlock):
                self._send_event.send_nowait(ThreadOpened(ThreadRef(WEB_PLACE, thread_id), WEB_AUTHOR))

    async def accept(self, message: codec.Post | codec.Choose | codec.Stop) -> None:
        """Record the page's action (once per client id) and pass it on if it is new."""
        await self._replayed.wait()  # older events reach the core first
        text_message: dict[str, Any] | None = None
        stamp = 0
        event: Incoming
        match message:
            case codec.Post(id=cid, thread=thread_id, text=text, files=file_ids):
                refs = await self.store.call(_file_refs, file_ids)
                thread = None if thread_id in (None, MAIN_THREAD) else ThreadRef(WEB_PLACE, thread_id)
                stamp = self._stamp_ms()
                event = MessagePosted(
                    cid, WEB_PLACE, thread, WEB_AUTHOR, text, refs, sent_at=stamp / 1000
                )
                files = tuple(attrs.asdict(ref) for ref in refs)
                text_message = {"thread_id": codec.thread_of(thread_id), "text": text, "files": files}
            case codec.Choose(id=cid, message=message_id, option=option):
                event = ChoiceMade(cid, message_id, option, WEB_AUTHOR)  # type: ignore[arg-type]
            case codec.Stop(id=cid, thread=thread_id):
                event = StopAsked(cid, ThreadRef(WEB_PLACE, thread_id), WEB_AUTHOR)
        waiting, row = await self.store.call(
            WebDb.accept, event.id, codec.encode_event(event), text_message, stamp
        )
        self._message_changed(row)
        if waiting:
            await self._hand_on(event)

    async def _hand_on(self, event: Incoming) -> None:
        """To the core, once per event while it waits there."""
        if event.id in self._handed:
            return
        self._handed.add(event.id)
        try:
            await self._send_event.send(event)
        except BaseException:
            self._handed.discard(event.id)  # not handed: its resend will be
            raise


def _file_refs(db: WebDb, file_ids: tuple[str, ...]) -> tuple[AttachmentRef, ...]:
    # Names and sizes come from what was uploaded, never from what the page claims.
    refs = []
    for file_id in file_ids:
        found = db.file_ref(file_id)
        if found is not None:
            name, size, _ = found
            refs.append(AttachmentRef(file_id, name, size))
    return tuple(refs)
