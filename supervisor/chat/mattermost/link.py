"""`MattermostLink`: the `ChatLink` the rest of the supervisor talks to, for Mattermost.

This module only composes: REST calls go to `MattermostRest`, events and typing notices
go through `MattermostWebSocket`. It owns no logic of its own beyond the permalink format,
and must never hold state that the two parts would have to keep in step.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
import httpx
import trio

from supervisor.chat import ChatUser, tls
from supervisor.chat.mattermost import choices
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.chat.mattermost.websocket import MattermostWebSocket
from supervisor.core.backoff import RECONNECT_BACKOFF, REST_BACKOFF, Backoff
from supervisor.core.events import ChatEvent, Choice, ChoiceKind, FileRef, Post
from supervisor.core.words import Words

if TYPE_CHECKING:
    from supervisor.chat import ChatLink

WORDS = Words(help_notes=choices.HELP)  # the core's own notation: `!new`, the main DM, threads


class MattermostLink:
    """Start with `await MattermostLink.connect(...)`, then `await nursery.start(link.run)`
    to receive events; `aclose()` when done."""

    # The port's limits, Mattermost's (../shared/reference/mattermost/FACTS.md).
    max_message_chars = 16383  # PostMessageMaxRunesV2, in runes (Python characters)
    typing_every_s = 4.0  # the web app shows "typing" for about 5 s after each signal
    max_idempotency_key_chars = 64  # the server ignores a longer pending_post_id

    def __init__(self, rest: MattermostRest, websocket: MattermostWebSocket, me: ChatUser) -> None:
        self.me = me
        self.rest = rest
        self.websocket = websocket

    @classmethod
    async def connect(
        cls,
        base_url: str,
        token: str,
        events: trio.MemorySendChannel[ChatEvent],
        *,
        requests_per_second: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        rest_backoff: Backoff = REST_BACKOFF,
        reconnect_backoff: Backoff = RECONNECT_BACKOFF,
        ping_interval: float = 30.0,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
        me: ChatUser | None = None,
    ) -> MattermostLink:
        """Who are we? (retried until the server answers; a bad token raises ChatError.)
        Not asked when the caller says (`me`: who we were at an earlier start)."""
        # One context for both halves: building one parses the whole CA bundle (only
        # needed for https: over http each half does without, or makes its own for TLS).
        if ssl_context is None and base_url.startswith("https:"):
            ssl_context = tls.ssl_context()
        rest = MattermostRest(
            base_url,
            token,
            transport=transport,
            requests_per_second=requests_per_second,
            backoff=rest_backoff,
            rng=rng,
            ssl_context=ssl_context,
        )
        try:
            if me is None:
                me = await rest.get_me()
        except BaseException:
            with trio.CancelScope(shield=True):
                await rest.aclose()
            raise
        websocket = MattermostWebSocket(
            base_url,
            token,
            events,
            backoff=reconnect_backoff,
            ping_interval=ping_interval,
            rng=rng,
            ssl_context=ssl_context,
            answers=rest.answers,
            token_watch=rest.token,
        )
        rest.me = me
        return cls(rest, websocket, me)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The event stream, and the token's watch beside it; started once the server said
        hello. Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.rest.token.run, self.rest.get_me)
            await self.websocket.run(task_status=task_status)
            nursery.cancel_scope.cancel()

    async def aclose(self) -> None:
        await self.rest.aclose()

    def permalink(self, post_id: str) -> str:
        return f"{self.rest.base_url}/_redirect/pl/{post_id}"

    async def send_typing(self, channel_id: str, parent_id: str) -> None:
        # Over the socket, not REST: typing must never spend the request budget that
        # answers are waiting on, and it is fine to lose.
        self.websocket.send_typing(channel_id, parent_id)

    async def ping(self) -> str:
        return await self.rest.ping()

    # --- the REST part of ChatLink, as is ----------------------------------------------

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        idempotency_key: str = "",
        reply_to: str = "",  # answered where it was asked: in the same place or thread
    ) -> Post:
        created = await self.rest.create_post(
            channel_id, message, root_id=root_id, file_ids=file_ids, pending_post_id=idempotency_key
        )
        return created.to_post()

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        # A thread on Mattermost is a root post; replies name it as their root.
        return (await self.rest.create_post(channel_id, header, pending_post_id=key)).to_post()

    async def edit_post(self, post_id: str, message: str) -> Post:
        return (await self.rest.edit_post(post_id, message)).to_post()

    def request_room(self) -> float:
        return self.rest.request_room()

    # --- choices are reactions (`choices`) ------------------------------------------

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        for emoji in dict.fromkeys(choices.OFFERED_EMOJI[kind] for kind in kinds):
            await self.rest.add_reaction(post_id, emoji)

    async def settle_choices(self, post_id: str) -> None:
        pass  # the request's post is edited to say the outcome; the reactions stay as a record

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        return choices.legend(kinds)

    def words(self, channel_id: str) -> Words:
        return WORDS

    def handled(self, channel_id: str, post_id: str) -> None:
        pass  # the ledger's cursor and handled ids are the whole of Mattermost's exactly-once

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        made = (choices.choice_made(reaction) for reaction in await self.rest.reactions(post_id))
        return [attrs.evolve(event.choice, channel_id=channel_id) for event in made if event is not None]

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return [post.to_post() for post in await self.rest.posts_since(channel_id, since_ms) if post.acts]

    async def file_info(self, file_id: str) -> FileRef:
        return await self.rest.file_info(file_id)

    async def download_file(self, file_id: str) -> bytes:
        return await self.rest.download_file(file_id)

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        return await self.rest.upload_file(channel_id, name, data)

    async def user_by_username(self, username: str) -> ChatUser | None:
        return await self.rest.user_by_username(username)

    async def users_by_ids(self, user_ids: list[str]) -> list[ChatUser]:
        return await self.rest.users_by_ids(user_ids)

    async def direct_channel(self, user_id: str) -> str:
        return await self.rest.direct_channel(user_id)


if TYPE_CHECKING:
    # mypy proves the protocol is met; nothing runs.
    def _is_a_chat_link(link: MattermostLink) -> ChatLink:
        return link
