"""Mattermost as one front end: the link, its WebSocket task, and the allowed users found
on the server with their direct-message channels (each person's main place)."""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import trio

from supervisor.chat import CannotStart, ChatError, ChatLink, ChatUser, identity
from supervisor.chat.fronts import People
from supervisor.chat.mattermost.link import MattermostLink
from supervisor.config import Config
from supervisor.core.events import ChatEvent

if TYPE_CHECKING:
    from supervisor.chat.fronts import FrontEnd

log = logging.getLogger(__name__)

CHECK_HINT = "`supervisor check` says more"


class CannotConnect(CannotStart):
    """The server refused this configuration for good at start (a refused token, an
    address that is not Mattermost, no allowed user): one sentence for the person, not a
    traceback; waiting would not mend it."""


class MattermostFront:
    name = "mattermost"

    def __init__(
        self, link: MattermostLink, usernames: tuple[str, ...], kept: identity.Kept,
        known: identity.Identity | None = None, *, silent: bool = False,
    ) -> None:  # fmt: skip
        self.link: ChatLink = link
        self._link = link
        self._usernames = usernames
        self._kept = kept
        self._known = known  # who we were at the last start that found the server
        self._silent = silent  # the server kept silent at this start: we are `known`

    def owns(self, id_: str) -> bool:
        # Mattermost's ids are 26 letters and digits; the other front ends prefix theirs.
        return len(id_) == 26 and id_.isalnum()

    @property
    def clock_ahead_ms(self) -> int:
        return self._link.rest.clock_ahead_ms  # the server stamps posts with its clock

    async def people(self) -> People:
        if self._silent and self._known is not None:
            people = self._known.people
            log.warning(
                "%s does not answer yet: serving %s as at the last start, and catching up once it answers",
                self._link.rest.base_url, ", ".join(user.username for user in people.allowed.values()),
            )
            return people
        people = await self._people_on_the_server()
        if (learned := identity.Identity(self._link.me, people)) != self._known:
            await self._kept.remember(learned)
        return people

    async def _people_on_the_server(self) -> People:
        allowed: dict[str, ChatUser] = {}
        for name in self._usernames:
            user = await self._link.user_by_username(name)
            if user is None:
                log.error("allowed user %r does not exist on the server; ignoring them", name)
                continue
            allowed[user.id] = user
        if not allowed:
            names = ", ".join(self._usernames)
            raise CannotConnect(
                f"none of mattermost.allowed_users ({names}) is a user on {self._link.rest.base_url}"
                f" (usernames, not display names); {CHECK_HINT}"
            )
        return People(allowed, {await self._link.direct_channel(uid): uid for uid in allowed})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serving once the WebSocket said hello, or after `START_PATIENCE_S` without it:
        a WebSocket that never opens (a proxy that drops the Upgrade header, a server gone
        down since its REST answers) must not hold up the other front ends and the start.
        The first hello, whenever it comes, reaches the router as a Resync: it catches up."""
        hello = _Said()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(self._link.run, task_status=hello))
            if self._silent:
                nursery.start_soon(self._token_still_taken)
            else:
                with trio.move_on_after(identity.START_PATIENCE_S):
                    await hello.said.wait()
                if not hello.said.is_set():
                    log.warning("%s: no WebSocket after %g s; serving meanwhile, and catching up once it opens",
                                self._link.rest.base_url, identity.START_PATIENCE_S)
            task_status.started()

    async def _token_still_taken(self) -> None:
        """Started as who we were (the server kept silent): once it answers, a token it
        refuses ends the supervisor with the same sentence as at a start, rather than
        every post being refused one by one."""
        try:
            await self._link.rest.get_me()
        except ChatError as error:
            raise CannotConnect(_refusal(self._link.rest.base_url, error)) from None
        log.info("%s answers now, and takes the token", self._link.rest.base_url)

    async def aclose(self) -> None:
        await self._link.aclose()


async def open_front(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> MattermostFront:
    assert config.mattermost is not None
    url, token, usernames = config.mattermost.url, config.mattermost.token, config.mattermost.allowed_users
    rate = config.mattermost.requests_per_second
    kept = identity.Kept(config.state.dir, MattermostFront.name, identity.key(url, token, *sorted(usernames)))
    known = kept.recall()

    async def connect(me: ChatUser | None = None) -> MattermostLink:
        try:
            return await MattermostLink.connect(url, token, events, requests_per_second=rate, me=me)
        except ChatError as error:
            raise CannotConnect(_refusal(url, error)) from None

    if known is None:  # nothing to go on: the server is waited for
        return MattermostFront(await connect(), usernames, kept)
    with trio.move_on_after(identity.START_PATIENCE_S):
        return MattermostFront(await connect(), usernames, kept, known)
    # Silent so far: serve as who we were; the server is asked again once it answers.
    return MattermostFront(await connect(me=known.me), usernames, kept, known, silent=True)


class _Said:
    """The task status the link is started with: its hello, said as an event."""

    def __init__(self) -> None:
        self.said = trio.Event()

    def started(self, value: None = None) -> None:
        self.said.set()


def _refusal(url: str, error: ChatError) -> str:
    """Why the server would not say who we are (GET /users/me), for the person."""
    if error.status == 401:
        return f"{url} refused mattermost.token (401): it is not a valid access token of a bot or user; {CHECK_HINT}"
    if error.status == 404:
        return (
            f"{url} answered 404 to /api/v4/users/me: it does not look like Mattermost (mattermost.url is"
            f" the address you open Mattermost at in a browser); {CHECK_HINT}"
        )
    return f"{url} refused the bot's account: {error}; {CHECK_HINT}"


if TYPE_CHECKING:

    def _is_a_front_end(front: MattermostFront) -> FrontEnd:
        return front
