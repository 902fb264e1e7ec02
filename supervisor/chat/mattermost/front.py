"""Mattermost as one front end: the link, its WebSocket task, and the allowed users found
on the server with their direct-message channels (each person's main place)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from supervisor.chat import ChatLink, ChatUser
from supervisor.chat.fronts import People
from supervisor.chat.mattermost.link import MattermostLink
from supervisor.config import Config
from supervisor.core.events import ChatEvent

if TYPE_CHECKING:
    from supervisor.chat.fronts import FrontEnd

log = logging.getLogger(__name__)


class MattermostFront:
    name = "mattermost"

    def __init__(self, link: MattermostLink, usernames: tuple[str, ...]) -> None:
        self.link: ChatLink = link
        self._link = link
        self._usernames = usernames

    def owns(self, id_: str) -> bool:
        # Mattermost's ids are 26 letters and digits; the other front ends prefix theirs.
        return len(id_) == 26 and id_.isalnum()

    async def people(self) -> People:
        allowed: dict[str, ChatUser] = {}
        for name in self._usernames:
            user = await self._link.user_by_username(name)
            if user is None:
                log.error("allowed user %r does not exist on the server; ignoring them", name)
                continue
            allowed[user.id] = user
        if not allowed:
            raise RuntimeError("none of mattermost.allowed_users exists on the server")
        return People(allowed, {await self._link.direct_channel(uid): uid for uid in allowed})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The first hello reaches the router as a Resync: it catches up over REST.
        await self._link.run(task_status=task_status)

    async def aclose(self) -> None:
        await self._link.aclose()


async def open_front(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> MattermostFront:
    assert config.mattermost is not None
    link = await MattermostLink.connect(
        config.mattermost.url, config.mattermost.token, events, requests_per_second=config.mattermost.requests_per_second
    )
    return MattermostFront(link, config.mattermost.allowed_users)


if TYPE_CHECKING:

    def _is_a_front_end(front: MattermostFront) -> FrontEnd:
        return front
