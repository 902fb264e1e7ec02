"""The web chat as a front end of the supervisor: the chat port over `WebChat`, both ways.

Outgoing, `WebLink` is the core's `ChatLink`: a place is the page (channel "web"), a
thread is a web thread (its id is the root id), a message is a bubble, choices are buttons
on a card, "queued" is a badge. Incoming, `WebFrontEnd.run` hands the page's actions to
the core as its own events: a message is `Posted`, a button is `ChoiceMade`, Stop is
`ChoiceMade(kind="stop")` on the thread's root.

Exactly once: the web inbox keeps every action until the core's handled mark for it is
durable (`handled`), and replays what is left after a restart, so `posts_since` has
nothing to add. Every id handed out starts with "web" (`owns`).

Never decides what a message means, and never names a web concept to the core.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs
import trio

from supervisor.chat import ChatError, ChatLink, ChatUser
from supervisor.chat.fronts import People
from supervisor.chat.web.config import WebConfig
from supervisor.chat.web.db import ID_PREFIX, USER_MESSAGE, MessageRow, WebDb
from supervisor.chat.web.front import PageConfig, WebChat
from supervisor.chat.web.port import (
    MAIN_THREAD,
    WEB_AUTHOR,
    WEB_PLACE,
    Incoming,
    MessagePosted,
    StopAsked,
    ThreadRef,
)
from supervisor.chat.web.port import (
    ChoiceMade as WebChoice,
)
from supervisor.chat.web.server import (
    OpenedWebChat,
    RunningWebChat,
    WebSettings,
    listen,
    open_web_chat,
)
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

if TYPE_CHECKING:
    from supervisor.chat.fronts import FrontEnd

log = logging.getLogger(__name__)

CHANNEL = WEB_PLACE  # the page's one place; its main thread takes commands only
BOT = ChatUser(ID_PREFIX + "-bot", "supervisor", is_bot=True)
PERSON = ChatUser(WEB_AUTHOR, "you")
# The card's buttons: what each choice is called on the page. Stop is not among them:
# the page's Stop button (beside the composer) is always there while a turn runs.
LABELS: dict[ChoiceKind, str] = {
    "allow_once": "Allow",
    "allow_always": "Allow for this session",
    "reject": "Deny",
    "rerun": "Run again",
}
_HEADER_CWD = re.compile(r"`[^`]*`[^`\n]*·\s*`([^`\n]+)`")  # the header's second code span


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _thread(root_id: str) -> ThreadRef:
    return ThreadRef(WEB_PLACE, root_id or MAIN_THREAD)


def _root_of(row: MessageRow) -> str:
    return "" if row.thread_id == MAIN_THREAD else row.thread_id


class WebLink:
    """The `ChatLink` of the web chat."""

    me = BOT

    def __init__(
        self, front: WebChat, events: trio.MemorySendChannel[ChatEvent] | None = None
    ) -> None:
        self._front = front
        self._events = events
        # Unbounded on purpose: `handled` is sync (called by the core's store actor) and
        # must never drop a mark (a dropped one would replay its message after a restart);
        # there is at most one per message the person sent.
        self._handled_send, self.handled_marks = trio.open_memory_channel[str](math.inf)

    # messages and threads ------------------------------------------------------------

    async def create_post(
        self,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        file_ids: tuple[str, ...] = (),
        pending_post_id: str = "",
    ) -> Post:
        front = self._front
        row = await front.create(_thread(root_id), message, pending_post_id or None, file_ids)
        return _post(row, BOT.id, pending_post_id)

    async def open_thread(self, channel_id: str, header: str, *, key: str, title: str) -> Post:
        front = self._front
        found = _HEADER_CWD.search(header)
        thread = await front.open_thread(
            WEB_PLACE, title, header, key, cwd=found[1] if found else ""
        )
        root = Post(
            thread.thread_id, CHANNEL, BOT.id, header, create_at=_ms(time.time()), pending_post_id=key
        )
        if self._events is not None:
            # The page shows the thread at once and a quick person writes in it: the core
            # must know the thread before that message, as Mattermost's own echo of a new
            # root post tells it. Ahead of the page's message, which takes a round trip.
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                await self._events.send(Posted(root, channel_type="D"))
        await front.update_thread(thread, state="active")
        return root

    async def edit_post(self, post_id: str, message: str) -> Post:
        front = self._front
        target = post_id
        if post_id.startswith(ID_PREFIX + "t"):  # a thread's root: its header message
            header = await front.header(post_id)
            if header is None:
                raise ChatError(404, "web.thread", f"no thread {post_id}")
            target = header.id
        row = await front.edit(target, message)
        if row is None:
            raise ChatError(404, "web.message", f"no message {post_id}")
        return attrs.evolve(_post(row, row.author), id=post_id)

    def request_room(self) -> float:
        return 0.0  # an edit is one local SQLite write: no budget to keep

    # choices and marks ---------------------------------------------------------------

    async def offer_choices(self, post_id: str, kinds: tuple[ChoiceKind, ...]) -> None:
        options = tuple((kind, LABELS[kind]) for kind in kinds if kind in LABELS)
        if options:
            await self._front.offer_choice(post_id, options)

    async def settle_choices(self, post_id: str) -> None:
        # The core edits the outcome into the message's text; the card only loses its buttons.
        await self._front.settle_choice(post_id, "")

    def choice_legend(self, kinds: Iterable[ChoiceKind]) -> str:
        return ""  # the buttons say it themselves

    async def mark_queued(self, post_id: str, queued: bool) -> None:
        self._front.mark_queued(post_id, queued)

    async def send_typing(self, channel_id: str, parent_id: str) -> None:
        await self._front.typing(_thread(parent_id))

    # catch-up and the handled mark ---------------------------------------------------

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        return []  # the web inbox replays what the core has not handled, by itself

    def handled(self, channel_id: str, post_id: str) -> None:
        if post_id.startswith(USER_MESSAGE):
            self._handled_send.send_nowait(post_id.removeprefix(USER_MESSAGE))

    # files ---------------------------------------------------------------------------

    async def file_info(self, file_id: str) -> FileRef:
        found = await self._front.store.call(WebDb.file_ref, file_id)
        if found is None:
            raise ChatError(404, "web.file", f"no file {file_id}")
        return FileRef(file_id, found[0], found[1])

    async def download_file(self, file_id: str) -> bytes:
        found = await self._front.store.call(WebDb.file, file_id)
        if found is None:
            raise ChatError(404, "web.file", f"no file {file_id}")
        return found[1]

    async def upload_file(self, channel_id: str, name: str, data: bytes) -> str:
        ref = await self._front.store.call(WebDb.add_file, name, data)
        return str(ref["id"])

    # people and places ---------------------------------------------------------------

    async def user_by_username(self, username: str) -> ChatUser | None:
        return PERSON if username in (PERSON.username, PERSON.id) else None

    async def direct_channel(self, user_id: str) -> str:
        return CHANNEL

    def permalink(self, post_id: str) -> str:
        return f"#thread/{post_id}"


def _post(row: MessageRow, user_id: str, pending_post_id: str = "") -> Post:
    return Post(
        row.id,
        CHANNEL,
        user_id,
        row.text,
        root_id=_root_of(row),
        create_at=_ms(row.created),
        file_ids=tuple(str(f["id"]) for f in row.files),
        pending_post_id=pending_post_id,
    )


@attrs.define
class Clock:
    """`create_at` for the core's ledger: ms, strictly increasing within one run.

    A message is stamped with the time the web chat accepted it, kept in its inbox record,
    so a replay after a restart is exactly as old as the first delivery: the ledger then
    recognises what it handled even once it has forgotten the id (older than its cursor).
    """

    last: int = 0

    def next(self, at_ms: int = 0) -> int:
        self.last = max(self.last + 1, at_ms or _ms(time.time()))
        return self.last


def to_core(event: Incoming, clock: Clock) -> ChatEvent:
    """A page action, in the core's words."""
    match event:
        case MessagePosted():
            post = Post(
                USER_MESSAGE + event.id,
                CHANNEL,
                PERSON.id,
                event.text,
                root_id="" if event.thread is None else event.thread.thread_id,
                create_at=clock.next(_ms(event.sent_at)),
                file_ids=tuple(ref.id for ref in event.attachments),
            )
            return Posted(post, channel_type="D")
        case WebChoice():
            return ChoiceMade(Choice(PERSON.id, event.message_id, event.option_kind, CHANNEL))
        case StopAsked():
            return ChoiceMade(Choice(PERSON.id, event.thread.thread_id, "stop", CHANNEL))


def missing_agent_notice(command: tuple[str, ...], path: str | None) -> str:
    """The page's notice when the agent's program cannot be found ("" when it can)."""
    program = command[0]
    if shutil.which(program, path=path):
        return ""
    return (
        f"The agent program `{program}` was not found on this machine, so sessions cannot "
        "start yet. Install Claude Code (npm install -g @anthropic-ai/claude-code), or set "
        "agent.command in the configuration, then restart the supervisor."
    )


def web_settings(config: Config) -> WebSettings:
    """What the web chat needs from the whole configuration."""
    web = config.web or WebConfig()
    agent = config.agent
    path = agent.env.get("PATH") or os.environ.get("PATH")
    return WebSettings(
        state_dir=config.state.dir,
        listen=web.listen,
        max_upload_bytes=config.files.max_upload_mb * 1_000_000,
        page=PageConfig(
            # Named agents only: the form's first choice is the default agent (no agent=).
            agents=tuple(getattr(config, "agents", {})),
            personas=tuple(config.personas),
            default_cwd=str(agent.default_cwd),
            notice=missing_agent_notice(agent.command, path),
        ),
    )


class WebFrontEnd:
    """The web chat in the supervisor (chat/fronts.py): `link` works from `open_front` on;
    `run` serves the page and hands the page's actions to the core, in order."""

    name = "web"

    def __init__(self, opened: OpenedWebChat, events: trio.MemorySendChannel[ChatEvent]) -> None:
        self._opened = opened
        self._events = events
        self._link = WebLink(opened.front, events)
        self.link: ChatLink = self._link
        self.running: RunningWebChat | None = None

    def owns(self, id_: str) -> bool:
        return id_.startswith(ID_PREFIX)

    async def people(self) -> People:
        return People({PERSON.id: PERSON}, {CHANNEL: PERSON.id})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the page until cancelled; `started()` once it listens."""
        front = self._opened.front
        async with self._events, trio.open_nursery() as nursery:
            self.running = await nursery.start(listen, self._opened)
            # The URL carries the access token: said on stderr, to the person who started
            # the supervisor, like a notebook server does; never a log line.
            print(self.running.announcement(), file=sys.stderr, flush=True)
            nursery.start_soon(self._mark_handled)
            # First a hello (the core starts its ledger for this place), then the actions.
            await self._events.send(Hello(f"web-{self.running.port}"))
            task_status.started()
            clock = Clock()
            async for event in front.events:
                await self._events.send(to_core(event, clock))
                if not isinstance(event, MessagePosted):
                    # A button press is acted on at once and never replayed: pressing it
                    # again is the person's call, as with a reaction.
                    await front.handled(event.id)

    async def _mark_handled(self) -> None:
        async for event_id in self._link.handled_marks:
            await self._opened.front.handled(event_id)

    async def aclose(self) -> None:
        await self._opened.aclose()


async def open_front(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> WebFrontEnd:
    """The web chat with its store open (chat/registry.py): not listening until `run`."""
    return WebFrontEnd(await open_web_chat(web_settings(config)), events)


if TYPE_CHECKING:
    # mypy proves the protocols are met; nothing runs.
    def _is_a_chat_link(link: WebLink) -> ChatLink:
        return link

    def _is_a_front_end(front: WebFrontEnd) -> FrontEnd:
        return front
