"""A second chat front end, in memory, to prove the chat port: nothing here is Mattermost.

`MemoryChat` is the "server" (it outlives supervisor restarts, like a real one): one
person, one main place, threads, messages with their edits, the choices offered on each.
`open_memory_front(chat)` is an opener for `app.serve(front_ends=...)`: each supervisor
run connects anew, gets a `Hello`, and then every message the person writes while it is
connected; what is written while none is connected is found by the catch-up
(`posts_since`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

import attrs
import trio

from supervisor.chat import NO_LIMIT, ChatError, ChatUser
from supervisor.chat.fronts import People
from supervisor.chat.registry import Opener
from supervisor.config import Config
from supervisor.core.events import (
    ChatEvent,
    Choice,
    ChoiceKind,
    ChoiceMade,
    FileRef,
    Hello,
    Post,
    Posted,
)
from supervisor.core.words import Words

PERSON = ChatUser("mem-person", "pat")
BOT = ChatUser("mem-bot", "supervisor", is_bot=True)
PLACE = "mem-place"


@attrs.define
class Message:
    post: Post
    title: str = ""  # a thread's name, on its first message
    offered: tuple[ChoiceKind, ...] = ()
    settled: bool = False


class MemoryChat:
    """`max_message_chars`, `typing_every_s`: this "server's" limits, which its link hands
    to the core (a test may make them small); `typing` records each typing signal."""

    def __init__(self, *, max_message_chars: int = NO_LIMIT, typing_every_s: float = 4.0) -> None:
        self.max_message_chars = max_message_chars
        self.typing_every_s = typing_every_s
        self.typing: list[tuple[str, float]] = []  # (thread root id, trio time) per signal
        self.messages: dict[str, Message] = {}
        self._by_key: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._last_ms = 0
        self.events: trio.MemorySendChannel[ChatEvent] | None = None
        self.handled: list[str] = []
        self.changed = trio.Event()

    # --- what the person does --------------------------------------------------------

    def say(self, text: str, root_id: str = "") -> Post:
        post = self._add(PERSON.id, text, root_id)
        if self.events is not None:
            self.events.send_nowait(Posted(post))
        return post

    def choose(self, post_id: str, kind: ChoiceKind) -> None:
        assert self.events is not None, "nobody is connected"
        self.events.send_nowait(ChoiceMade(Choice(PERSON.id, post_id, kind, PLACE)))

    # --- what the person sees --------------------------------------------------------

    def thread(self, root_id: str) -> list[Message]:
        return [m for m in self.messages.values() if root_id in (m.post.id, m.post.root_id)]

    def texts(self, root_id: str = "") -> list[str]:
        if root_id:
            return [m.post.message for m in self.thread(root_id)]
        return [m.post.message for m in self.messages.values() if not m.post.root_id and not m.title]

    def threads(self) -> dict[str, str]:
        """Thread root id -> its title."""
        return {m.post.id: m.title for m in self.messages.values() if m.title}

    # --- the link's side -------------------------------------------------------------

    def _add(self, user_id: str, text: str, root_id: str, key: str = "", title: str = "") -> Post:
        if key and key in self._by_key:
            return self.messages[self._by_key[key]].post
        if root_id and root_id not in self.messages:
            raise ChatError(404, "no_thread", f"no thread {root_id}")
        post = Post(f"mem{next(self._ids)}", PLACE, user_id, text, root_id=root_id, create_at=self.now_ms())
        self.messages[post.id] = Message(post, title=title)
        if key:
            self._by_key[key] = post.id
        self._touch()
        return post

    def now_ms(self) -> int:
        """Wall-clock ms, strictly increasing: the core's ledger reads it as a cursor."""
        self._last_ms = max(self._last_ms + 1, int(time.time() * 1000))
        return self._last_ms

    def _touch(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class MemoryLink:
    """The chat port over a `MemoryChat`."""

    me = BOT
    max_idempotency_key_chars = NO_LIMIT  # kept whole (`MemoryChat._by_key`)

    def __init__(self, chat: MemoryChat) -> None:
        self.chat = chat
        self.max_message_chars = chat.max_message_chars
        self.typing_every_s = chat.typing_every_s

    async def create_post(
        self, channel_id: str, message: str, *, root_id: str = "", file_ids: tuple[str, ...] = (),
        idempotency_key: str = "", reply_to: str = "",
    ) -> Post:  # fmt: skip
        return self.chat._add(BOT.id, message, root_id, idempotency_key)

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        return self.chat._add(BOT.id, header, "", key, title=title)

    async def edit_post(self, post_id: str, message: str) -> Post:
        entry = self.chat.messages[post_id]
        entry.post = attrs.evolve(entry.post, message=message)
        self.chat._touch()
        return entry.post

    def request_room(self) -> float:
        return 0.0

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        self.chat.messages[post_id].offered = kinds
        self.chat._touch()

    async def settle_choices(self, post_id: str) -> None:
        self.chat.messages[post_id].settled = True
        self.chat._touch()

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        return ""  # the choices are buttons: they say what they do

    def words(self, channel_id: str) -> Words:
        return Words(help_notes="**Buttons:** on the request.")

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return [m.post for m in self.chat.messages.values() if m.post.create_at > since_ms]

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        return []  # its events are never lost

    async def file_info(self, file_id: str) -> FileRef:
        raise ChatError(404, "no_files", "this front end keeps no files")

    async def download_file(self, file_id: str) -> bytes:
        raise ChatError(404, "no_files", "this front end keeps no files")

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        raise ChatError(400, "no_files", "this front end keeps no files")

    async def user_by_username(self, username: str) -> ChatUser | None:
        return PERSON if username == PERSON.username else None

    async def direct_channel(self, user_id: str) -> str:
        return PLACE

    async def send_typing(self, channel_id: str, parent_id: str) -> None:
        self.chat.typing.append((parent_id, trio.current_time()))

    def permalink(self, post_id: str) -> str:
        return f"mem:{post_id}"

    def handled(self, channel_id: str, post_id: str) -> None:
        self.chat.handled.append(post_id)


class MemoryFront:
    name = "memory"

    def __init__(self, chat: MemoryChat, events: trio.MemorySendChannel[ChatEvent]) -> None:
        self.chat = chat
        self.link = MemoryLink(chat)
        self._events = events

    clock_ahead_ms = 0

    def owns(self, id_: str) -> bool:
        return id_.startswith("mem")

    async def people(self) -> People:
        return People({PERSON.id: PERSON}, {PLACE: PERSON.id})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.chat.events = self._events
        try:
            await self._events.send(Hello(f"mem-connection-{id(self)}"))
            task_status.started()
            await trio.sleep_forever()
        finally:
            self.chat.events = None

    async def aclose(self) -> None:
        pass


def memory_opener(chat: MemoryChat) -> Opener:
    async def open_front(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> MemoryFront:
        return MemoryFront(chat, events)

    return open_front
