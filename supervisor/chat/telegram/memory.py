"""What the Telegram front end remembers across restarts: `<state.dir>/telegram.json`.

Owns that file (nothing else writes it) and eight things in it:
- `offset`: the next `getUpdates` offset; everything below it is handled, durably, or
  kept in `held` (the update source moves it only past confirmed updates), so a start
  skips straight to the updates written while we were away, which Telegram still holds,
  in order;
- `keys`: idempotency key -> the message made for it (`create_post`'s `idempotency_key`),
  the newest `MAX_KEYS`: asking twice returns the first message (`open_thread`'s key is
  kept with its thread, as long as the thread);
  A crash between Telegram's answer and the write below leaves a key unrecorded, and the
  retry after the restart sends again: the one window Telegram gives us no way to close;
- `threads`: a session thread's root id -> its chat, topic (or header message) and title,
  for edits of the root and, without topics, `[NAME]` prefixes and `/session NAME`;
- `held`: updates (as they came) that the core has not handled yet but that Telegram was
  told to forget, so that updates behind them can be fetched (`getUpdates` answers from
  the offset, at most 100; see `backlog`): kept here, durably, until handled; a start
  hands them out first;
- `posts`: the messages that show a post of ours that continues in further messages (a
  long one), and its topic, for the newest `MAX_POSTS` of those: an edit after a restart
  must reach all of them, and grow the post in its topic. Kept with the next write, or
  at once when an edit adds a message (`remember_parts`);
- `roots`: post id -> the root id of the session thread it is in (with topics, its
  topic's), for the newest `MAX_ROOTS` posts in a thread: an edit after a restart grows a
  post of one message in its topic though Telegram's answer may tell none ("message is
  not modified"), and keeps its `[NAME]` prefix without topics; a reply to it goes to that
  session (a reply to a later message of a long post: by `posts`). A short string each
  (cheap to encode, unlike a `posts` entry per post); written before the post is
  returned to the core, with its idempotency key if it has one;
- `opened`: the `!new NAME`s of the main view (topic mode) that no session's thread took
  yet, in the order they went to the core, by post id, each with the topic the person
  opened for it or none (typed), the newest `OPENED_TOPICS_KEPT` (`link`): a topic's
  written before its `!new` reaches the core (a typed one with the next write), so that
  a start that finishes the announcement a crash cut short (a `!new` accepted, its
  thread not kept yet: the oldest of its name kept) puts the session in the person's
  topic, or in one of its own for a typed `!new`, never in another topic of that name.
  Forgotten once a thread takes one, once its refusal is answered (before the core marks
  it handled), and when the front end runs after that start;
- `last_stamp_ms`: the creation time given to the newest person's message (`now_ms`), so
  that a wall clock stepped back before a start never stamps a new message older than
  those handled before (the core's ledger takes such a one for dealt with). Kept with
  the next write (the offset's, once that message is handled).

Writes are atomic and durable (temp file, fsync, rename, fsync the directory) and grouped:
callers that changed something while a write was running share the next one. It must
never let a half-written file replace a good one; a damaged file is kept aside and the
front end starts from the server's backlog (nothing confirmed is lost: Telegram forgets
only what an offset confirmed).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
import trio

from supervisor.chat import CannotStart
from supervisor.durable import until_written, write_atomically

log = logging.getLogger("supervisor.telegram")

FILE_NAME: Final = "telegram.json"
VERSION: Final = 1
MAX_KEYS: Final = 1000  # a key matters for a retry after a crash: only recent ones do
MAX_POSTS: Final = 500  # after a restart the core edits recent posts only (a lapsed request)
MAX_ROOTS: Final = 1000  # as many as keys: one of each per post of a session


def keep_newest(kept: dict[Any, Any], limit: int) -> None:
    """Drop the oldest entries (first inserted) of `kept` beyond `limit`: what this front
    end remembers of its messages matters for recent ones only, and must not grow."""
    while len(kept) > limit:
        del kept[next(iter(kept))]


@attrs.frozen
class ThreadInfo:
    chat_id: int
    title: str
    topic_id: int | None = None  # the forum topic (None: no topic mode)
    header_id: int = 0  # the message that holds the header (0: not sent yet)
    key: str = ""  # the `open_thread` key that made it


@attrs.frozen
class PostParts:
    parts: tuple[int, ...]  # the message ids showing the post, the first one its own
    topic_id: int | None = None


@attrs.frozen
class OpenedTopic:
    """A `!new` of the main view (topic mode), waiting for its session's thread."""

    chat_id: int
    name: str  # the session name it asks for
    topic_id: int | None  # the topic the person opened for it; None: typed, a topic of its own


@attrs.frozen
class Remembered:
    version: int = VERSION
    bot_id: int | None = None  # whose offset it is: update ids count per bot
    offset: int | None = None
    keys: dict[str, str] = attrs.Factory(dict)  # key -> port post id
    threads: dict[str, ThreadInfo] = attrs.Factory(dict)  # root post id -> thread
    active: dict[str, str] = attrs.Factory(dict)  # channel id -> active root (no topics)
    held: list[Any] = attrs.Factory(list)  # updates as they came, oldest first
    posts: dict[str, PostParts] = attrs.Factory(dict)  # post id -> its messages and topic
    roots: dict[str, str] = attrs.Factory(dict)  # post id -> its session thread's root id
    opened: dict[str, OpenedTopic] = attrs.Factory(dict)  # `!new` post id -> the topic it opened
    last_stamp_ms: int = 0  # the newest message's creation time we gave (0: none yet)


_converter = cattrs.Converter(forbid_extra_keys=False)


class Memory:
    """The file's content in memory, and its writer. Mutated by the link's tasks, always
    followed by `commit()` when the change must be durable before going on."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        self.data = _load(self.path)
        self.keys = dict(self.data.keys)
        self.threads = dict(self.data.threads)
        self.active = dict(self.data.active)
        self.held = list(self.data.held)
        self.posts = dict(self.data.posts)
        self.roots = dict(self.data.roots)
        self.opened = dict(self.data.opened)
        self.offset = self.data.offset
        self.last_stamp_ms = self.data.last_stamp_ms
        self.bot_id = self.data.bot_id
        self._lock = trio.Lock()
        self._changes = 0
        self._written = 0

    @classmethod
    def open(cls, directory: Path) -> Memory:
        """The memory kept in `directory`; `CannotStart` (one sentence, not a traceback)
        when it cannot be read: a file another user left there, after a `sudo -E` run."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return cls(directory)
        except OSError as exc:
            where = exc.filename or directory
            raise CannotStart(
                f"the Telegram front end cannot read its memory in {where} ({exc.strerror or exc}): let the "
                f"supervisor's user read and write {directory}, or set state.dir elsewhere, and start again"
            ) from exc

    def changed(self) -> None:
        self._changes += 1

    def for_bot(self, bot_id: int) -> None:
        """Another bot's offset means nothing for this one (and one too high would make
        Telegram forget this bot's waiting updates): start from its backlog."""
        if self.bot_id not in (None, bot_id):
            log.warning("the bot token changed (bot %s, was %s): reading this bot's updates "
                        "from its backlog", bot_id, self.bot_id)  # fmt: skip
            self.offset = None
        if self.bot_id != bot_id:
            self.bot_id = bot_id
            self.changed()

    def thread_of_key(self, key: str) -> str | None:
        """The root of the thread `open_thread` made for `key` (kept as long as the thread)."""
        return next((root for root, thread in self.threads.items() if thread.key == key), None)

    def remember_key(self, key: str, post_id: str) -> None:
        self.keys[key] = post_id
        keep_newest(self.keys, MAX_KEYS)
        self.changed()

    def remember_root(self, post_id: str, root_id: str) -> None:
        """The session thread a message of ours is in (see `roots`)."""
        if self.roots.get(post_id) == root_id:
            return
        self.roots[post_id] = root_id
        keep_newest(self.roots, MAX_ROOTS)
        self.changed()

    def remember_parts(self, post_id: str, parts: list[int], topic_id: int | None) -> bool:
        """The messages and topic of a post of several messages (an edit after a restart
        reaches a post of one by its id); whether that changed what is kept."""
        if len(parts) == 1:
            return False
        known = PostParts(tuple(parts), topic_id)
        if self.posts.get(post_id) == known:
            return False
        self.posts.pop(post_id, None)  # the newest last: the oldest go first
        self.posts[post_id] = known
        keep_newest(self.posts, MAX_POSTS)
        self.changed()
        return True

    async def commit(self) -> None:
        """Every change made before this call is on disk when it returns."""
        wanted = self._changes
        async with self._lock:
            if self._written >= wanted:
                return  # a write that began after our change already carried it

            async def write() -> None:
                upto = self._changes  # each attempt carries what changed before it
                raw = self._encode()
                # Shielded: a write that began must end, or a caller could be told
                # "durable" about a file that is not there.
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(write_atomically, self.path, raw)
                self._written = upto

            # A full disk: the updates (and answers) that wait for this write wait, and
            # Telegram keeps every update not confirmed by an offset written here.
            await until_written(write, self.path.parent, "Telegram updates", what=f"`{self.path.name}`", log=log)

    def _encode(self) -> bytes:
        value = Remembered(VERSION, self.bot_id, self.offset, self.keys, self.threads, self.active,
                           self.held, self.posts, self.roots, self.opened, self.last_stamp_ms)  # fmt: skip
        # In the order entries came, not sorted: the oldest go first (`keep_newest`), and a
        # name's oldest `!new` is its first (`TelegramLink.topics_accepted`), after a restart too.
        return (json.dumps(_converter.unstructure(value)) + "\n").encode()


def _load(path: Path) -> Remembered:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Remembered()
    try:
        data: Any = json.loads(raw)
        if data.get("version") != VERSION:
            raise ValueError(f"unsupported version {data.get('version')!r}")
        return _converter.structure(data, Remembered)
    except (ValueError, TypeError, AttributeError, KeyError, cattrs.BaseValidationError) as exc:
        aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(path, aside)
        log.error("%s is damaged (%s): kept as %s; starting from the server's backlog",
                  path, type(exc).__name__, aside.name)  # fmt: skip
        return Remembered()
