"""The poster of one session: the one task that turns the thread's outbox into REST calls.

The session's loop puts posts into the (sans-IO) outbox and wakes the poster; the poster
asks the outbox what to call next, makes the call, and tells the outbox how it went. It
reports each call made through `posted`, and each post given up through `given_up`, so the
session can feed the outcome to its core.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from supervisor.chat import ChatError, ChatLink, ShowsGrowingPosts
from supervisor.core.outbox import Create, Edit, Idle, Outbox, Wait
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost

log = logging.getLogger("supervisor.session")
DRAIN_SAID_AFTER_S = 10.0  # an ended session's last posts waiting this long: said in the log


class Poster:
    def __init__(
        self,
        chat: ChatLink,
        outbox: Outbox,
        record: Callable[[], SessionRecord],  # the session's record as it is now
        posted: Callable[[Create | Edit, str], None],  # (action, post id): a call went through
        given_up: Callable[[], None],  # a post was refused for good: it shows all it will
    ) -> None:
        self.chat = chat
        # Asked once: a check against a Protocol walks its members (~17 µs a call).
        self._growing = chat if isinstance(chat, ShowsGrowingPosts) else None
        self.outbox = outbox
        self._record = record
        self._posted = posted
        self._given_up = given_up
        self._changed = trio.Event()
        self._held = False

    @property
    def name(self) -> str:
        return self._record().name

    def wake(self) -> None:
        """Call after putting posts: the poster sends what is due."""
        if not self.outbox.is_settled():
            self._changed.set()

    def hold(self) -> None:
        """Send nothing until `release`, not even what falls due on its own (a streaming
        edit's timer): what was put depends on a save that is not durable yet."""
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._changed.set()

    def show(self, op: PutPost) -> None:
        """Put one post and wake the poster at once."""
        self.outbox.put(op, trio.current_time())
        self._changed.set()

    async def run(self) -> None:
        backoff = 0.25
        while True:
            if self._held:
                self._changed = trio.Event()
                await self._changed.wait()
                continue
            now = trio.current_time()
            action = self.outbox.next_action(now, room_at=now + self.chat.request_room())
            if isinstance(action, Idle | Wait):
                self._changed = trio.Event()
                until = action.until if isinstance(action, Wait) else math.inf
                with trio.move_on_at(until):
                    await self._changed.wait()
                continue
            try:
                post_id = await self._perform(action)
            except Exception as exc:
                if isinstance(exc, ChatError) and exc.for_good:
                    # Thread deleted, post too long...: drop it, keep going. Anything else
                    # (an answer it could not read, say) is sent again: the link finds a
                    # post it made already by its idempotency key, as far as it can, and
                    # a post twice beats an answer lost.
                    log.error("%s: the server refused a post: %s", self.name, exc)
                    self.outbox.dropped(action, trio.current_time())
                    self._given_up()  # else its turn stays unsettled: a restart posts it again
                    continue
                log.warning("%s: posting failed (%r); retrying", self.name, exc)
                self.outbox.failed(action, trio.current_time())
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.25
            self.outbox.done(action, post_id, trio.current_time())
            self._posted(action, post_id)

    async def _perform(self, action: Create | Edit) -> str:
        """One REST call for the outbox; the id of the post it made or changed."""
        record = self._record()
        growing = None if action.final else self._growing
        if isinstance(action, Create):
            if growing is not None:
                post = await growing.create_growing(
                    record.channel_id, action.text, root_id=record.root_id, idempotency_key=action.idempotency_key
                )
                return post.id
            post = await self.chat.create_post(
                record.channel_id, action.text, root_id=record.root_id, idempotency_key=action.idempotency_key,
                reply_to=action.reply_to,
            )  # fmt: skip
            return post.id
        if growing is not None:
            await growing.edit_growing(action.post_id, action.text)
            return action.post_id
        await self.chat.edit_post(action.post_id, action.text)
        return action.post_id

    async def drain(self) -> None:
        """Before the session ends (`!end`, or failed), let what the thread should show reach
        the server: its last notes are saved nowhere else, so a server away or holding us
        off is waited for. (A stop of the supervisor cancels this, as it does the poster.)"""
        said = trio.current_time() + DRAIN_SAID_AFTER_S
        # Polls: the poster owns the outbox and signals nobody; it ends once all went out.
        while not self.outbox.is_settled():
            if trio.current_time() >= said:
                said = math.inf
                log.warning("%s: ended; its last posts wait for the server", self.name)
            await trio.sleep(0.05)

    async def edit_old_post(self, post_id: str, text: str) -> None:
        """Edit a post of an earlier run (a request that lapsed); a few tries, then let go.
        Runs as a task of its own beside the poster: that post is not in the outbox."""
        for attempt in range(5):
            try:
                await self.chat.edit_post(post_id, text)
                return
            except Exception as exc:
                if isinstance(exc, ChatError) and exc.for_good:  # deleted...: nothing to correct
                    log.info("%s: could not edit %s: %s", self.name, post_id, exc)
                    return
                log.warning("%s: editing %s failed (%r); retrying", self.name, post_id, exc)
                await trio.sleep(0.5 * 2**attempt)

