"""Several front ends in one supervisor: each owns its places and messages, one link
serves them all.

A `FrontEnd` is one configured chat (Mattermost, Telegram, the web page): its link, its
event task, the people it serves. `Fronts` is the `ChatLink` the router and the desk talk
to: each call goes to the front end that owns the channel or message id it names (ids
carry their front end's prefix; Mattermost's own ids have none, so it takes the rest).
A session talks to its own front end's link directly (`for_channel`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import attrs
import trio

from supervisor.chat import ChatLink, ChatUser
from supervisor.core.events import Choice, ChoiceKind, FileRef, Post
from supervisor.core.words import Words


@attrs.frozen
class People:
    """Who a front end serves: allowed users by id, and each one's main place."""

    allowed: dict[str, ChatUser]
    main_channels: dict[str, str]  # main place (channel id) -> user id


class FrontEnd(Protocol):
    name: str
    link: ChatLink

    def owns(self, id_: str) -> bool:
        """Whether a channel, message or connection id (a `Hello`'s) is one of this
        front end's."""
        ...

    @property
    def clock_ahead_ms(self) -> int:
        """How far ahead of ours the clock is that stamps this front end's posts (0 where
        ours does): a place seen for the first time has as history what came before this
        start by that clock."""
        ...

    async def people(self) -> People: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver the front end's events (to the channel it was opened with) in order,
        until cancelled; `started()` once connected. A (re)connection is a `Hello`: the
        router catches this front end up (the one that owns its connection id; all of
        them when none does)."""
        ...

    async def aclose(self) -> None: ...


class Fronts:
    """The `ChatLink` over every configured front end that is open, in the configuration's
    order (one may join late: `join`). The first one is the fallback for ids no front end
    claims."""

    def __init__(self, fronts: Sequence[FrontEnd], places: Sequence[int] | None = None) -> None:
        if not fronts:
            raise ValueError("no front end is configured")
        self._placed = sorted(zip(places or range(len(fronts)), fronts, strict=True), key=lambda placed: placed[0])
        self._take_limits()

    def join(self, front: FrontEnd, place: int) -> None:
        """A front end open only now takes its `place` (its index in the configuration)."""
        self._placed = sorted([*self._placed, (place, front)], key=lambda placed: placed[0])
        self._take_limits()

    def has(self, place: int) -> bool:
        return any(index == place for index, _front in self._placed)

    def _take_limits(self) -> None:
        self.fronts = tuple(front for _place, front in self._placed)
        self.me = self.fronts[0].link.me
        # Sessions take their own front end's limits (`for_channel`); over all, the strictest.
        self.max_message_chars = min(f.link.max_message_chars for f in self.fronts)
        self.typing_every_s = min(f.link.typing_every_s for f in self.fronts)
        self.max_idempotency_key_chars = min(f.link.max_idempotency_key_chars for f in self.fronts)

    def front_of(self, id_: str) -> FrontEnd:
        return self.claiming(id_) or self.fronts[0]

    def claiming(self, id_: str) -> FrontEnd | None:
        """The front end an id is one of, if any claims it."""
        return next((f for f in self.fronts if f.owns(id_)), None)

    def serves(self, channel_id: str, front: FrontEnd | None = None) -> bool:
        """Whether a place is `front`'s (with None: any open front end's). One whose front
        end has not joined yet is no other's (`front_of` would hand it to the first)."""
        owner = self.claiming(channel_id)
        return owner is not None and (front is None or owner is front)

    def for_channel(self, channel_id: str) -> ChatLink:
        return self.front_of(channel_id).link

    # --- ChatLink, by the id each call names ------------------------------------------

    async def create_post(
        self, channel_id: str, message: str, *, root_id: str = "", file_ids: tuple[str, ...] = (),
        idempotency_key: str = "", reply_to: str = "",
    ) -> Post:  # fmt: skip
        return await self.for_channel(channel_id).create_post(
            channel_id, message, root_id=root_id, file_ids=file_ids, idempotency_key=idempotency_key, reply_to=reply_to
        )

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        return await self.for_channel(channel_id).open_thread(channel_id, header, key=key, title=title)

    async def edit_post(self, post_id: str, message: str) -> Post:
        return await self.for_channel(post_id).edit_post(post_id, message)

    def request_room(self) -> float:
        return max(f.link.request_room() for f in self.fronts)

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        await self.for_channel(post_id).offer_choices(post_id, kinds)

    async def settle_choices(self, post_id: str) -> None:
        await self.for_channel(post_id).settle_choices(post_id)

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        # Sessions take the legend from their own front end (`for_channel`); this is only
        # the protocol's answer where no place is known.
        return self.fronts[0].link.choice_legend(kinds)

    def words(self, channel_id: str) -> Words:
        return self.for_channel(channel_id).words(channel_id)

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return await self.for_channel(channel_id).posts_since(channel_id, since_ms)

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        return await self.for_channel(channel_id).choices_on(channel_id, post_id)

    async def file_info(self, file_id: str) -> FileRef:
        return await self.for_channel(file_id).file_info(file_id)

    async def download_file(self, file_id: str) -> bytes:
        return await self.for_channel(file_id).download_file(file_id)

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        return await self.for_channel(channel_id).upload_file(channel_id, name, data)

    async def user_by_username(self, username: str) -> ChatUser | None:
        for front in self.fronts:
            if (user := await front.link.user_by_username(username)) is not None:
                return user
        return None

    async def direct_channel(self, user_id: str) -> str:
        return await self.for_channel(user_id).direct_channel(user_id)

    async def send_typing(self, channel_id: str, parent_id: str) -> None:
        await self.for_channel(channel_id).send_typing(channel_id, parent_id)

    def permalink(self, post_id: str) -> str:
        return self.for_channel(post_id).permalink(post_id)

    def handled(self, channel_id: str, post_id: str) -> None:
        self.for_channel(channel_id).handled(channel_id, post_id)


if TYPE_CHECKING:
    # mypy proves the protocol is met; nothing runs.
    def _is_a_chat_link(fronts: Fronts) -> ChatLink:
        return fronts
