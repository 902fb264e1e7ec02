"""The chat side, as the rest of the supervisor sees it.

`ChatLink` is everything sessions and the router may ask of a chat server. Mattermost is
the first implementation (`supervisor.chat.mattermost`); a Telegram front end would be a
second one, and the router and session logic would not change.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs

from supervisor.core.events import FileRef, Post


@attrs.frozen
class ChatUser:
    id: str
    username: str
    is_bot: bool = False


class ChatLink(Protocol):
    """REST-like operations. Each call retries transient failures until it succeeds or the
    caller's cancel scope ends it; permanent refusals raise `ChatError`."""

    me: ChatUser

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        pending_post_id: str = "",
        props: dict[str, Any] | None = None,
    ) -> Post: ...

    async def edit_post(self, post_id: str, message: str) -> Post: ...

    def request_room(self) -> float:
        """Seconds until a deferrable request (an intermediate edit, which a later one can
        replace) should go; 0 while the request budget is comfortably full."""
        ...

    async def add_reaction(self, post_id: str, emoji_name: str) -> None: ...

    async def remove_reaction(self, post_id: str, emoji_name: str) -> None: ...

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        """Every post created or changed after `since_ms`, oldest first, all pages."""
        ...

    async def file_info(self, file_id: str) -> FileRef: ...

    async def download_file(self, file_id: str) -> bytes: ...

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str: ...

    async def user_by_username(self, username: str) -> ChatUser | None: ...

    async def direct_channel(self, user_id: str) -> str: ...

    async def send_typing(self, channel_id: str, parent_id: str) -> None: ...

    def permalink(self, post_id: str) -> str: ...


class ChatError(Exception):
    """The chat server refused a request for good (bad input, missing, forbidden)."""

    def __init__(self, status: int, error_id: str = "", message: str = "") -> None:
        super().__init__(f"{status} {error_id}: {message}".strip())
        self.status = status
        self.error_id = error_id
        self.message = message
