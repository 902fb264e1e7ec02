"""The fake Mattermost with a stopwatch: when each `posted` frame left, when each post appeared.

`BenchServer` is `tests.fakes.mattermost.FakeMattermost` (unchanged) plus two recorders:

- `frame_sent[post_id]`: epoch time (`time.time()`, comparable with the fake agent's log)
  at which the `posted` frame of that post was handed to the kernel for a bot's socket.
  On loopback that is when it arrives at the bot. It is taken by wrapping the socket's
  stream as it attaches, so the fake server's own code stays as it is.
- `posts`: every post created or edited, in order, with the epoch time it happened.
  `watch(root, pred)` + `await seen(w)` wake on the next one in a thread that matches.

It never changes what the fake server does or answers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from tests.fakes.mattermost import FakeMattermost
from tests.fakes.mattermost_rest import WEBSOCKET_ROUTE
from tests.fakes.mattermost_shapes import Broadcast
from tests.fakes.mattermost_ws import WebSocketSession

# The post inside a `posted` frame is a JSON string, so its keys are escaped: \"id\":\"...\"
_POSTED = b'"event":"posted"'
_POST_ID = re.compile(rb'\\"id\\":\\"([a-z0-9]{26})\\"')


@attrs.frozen
class SeenPost:
    t: float  # epoch seconds when the server created (or edited) it
    id: str
    user_id: str
    root_id: str
    message: str
    edit: bool = False  # a `post_edited`, not a new post


Watcher = tuple[Callable[[SeenPost], bool], trio.Event, list[SeenPost]]


class _TimedStream:
    """A trio stream that notes when each `posted` frame was written through it."""

    def __init__(self, inner: Any, sent: dict[str, float]) -> None:
        self._inner = inner
        self._sent = sent

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # Stamped just before: trio writes to the socket at once, then yields, and the
        # yield can last a while on a busy loop.
        t = time.time()
        await self._inner.send_all(data)
        raw = bytes(data)
        if _POSTED in raw:
            match = _POST_ID.search(raw)
            if match:
                self._sent.setdefault(match.group(1).decode(), t)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class BenchServer(FakeMattermost):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.frame_sent: dict[str, float] = {}
        self.posts: list[SeenPost] = []  # creates and edits, in order
        self._watchers: dict[str, list[Watcher]] = {}  # by thread root id

    # -- recording -----------------------------------------------------------------------

    def socket_attached(self, session: WebSocketSession, resumed: bool) -> None:
        if not isinstance(session.stream, _TimedStream):
            session.stream = _TimedStream(session.stream, self.frame_sent)  # type: ignore[assignment]
        super().socket_attached(session, resumed)

    def _publish(self, broadcast: Broadcast) -> None:
        if broadcast.event in ("posted", "post_edited"):
            self._note(broadcast)
        super()._publish(broadcast)

    def _note(self, broadcast: Broadcast) -> None:
        raw = broadcast.data.get("post")
        post = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(post, dict):
            return
        seen = SeenPost(
            time.time(),
            post["id"],
            post["user_id"],
            post.get("root_id", ""),
            post.get("message", ""),
            edit=broadcast.event == "post_edited",
        )
        self.posts.append(seen)
        watchers = self._watchers.get(seen.root_id or seen.id, [])
        for watcher in list(watchers):
            predicate, event, box = watcher
            if predicate(seen):
                box.append(seen)
                event.set()
                watchers.remove(watcher)

    # -- waiting ---------------------------------------------------------------------------

    def watch(self, root_id: str, predicate: Callable[[SeenPost], bool]) -> Watcher:
        """Start watching thread `root_id` for the next post or edit that matches; register
        before causing it, then `await seen(watcher)`."""
        watcher: Watcher = (predicate, trio.Event(), [])
        self._watchers.setdefault(root_id, []).append(watcher)
        return watcher

    async def seen(self, watcher: Watcher) -> SeenPost:
        """The post or edit the watcher waited for (the caller bounds the wait)."""
        _predicate, event, box = watcher
        try:
            await event.wait()
        finally:
            for watchers in self._watchers.values():
                if watcher in watchers:
                    watchers.remove(watcher)
        return box[0]

    def rest_requests(self) -> int:
        """REST requests served so far (WebSocket upgrades not counted)."""
        return sum(n for (_, route), n in self.stats.requests.items() if route != WEBSOCKET_ROUTE)

    def bot_posts_in(self, root_id: str) -> list[SeenPost]:
        return [p for p in self.posts if p.root_id == root_id and p.user_id == self.bot.id]
