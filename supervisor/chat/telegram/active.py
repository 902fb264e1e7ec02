"""Without topics: which session a person's plain text goes to (the seed's model).

Owns the active session of each private chat (the memory's `active`, set by `/session
NAME` and by a new session's header), the routing of a message written in the main view
(a command stays there, a reply goes to the session it answers, anything else to the
active session), and the note that says which session is active below the core's
`/sessions` list (sent once that list is out) and the answer to `/session NAME`, both
through one lane of replies (`notes`: in order, at most 16 waiting).

It must never take a main-view command (`/new`, `/sessions`, `/end NAME`) into a session,
nor hold up the update loop for a note (notes are cosmetic: past 16 waiting, dropped).
"""

from __future__ import annotations

import functools
import re
from typing import Final

from supervisor.chat.telegram import ids, incoming
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.telegram.memory import Memory
from supervisor.chat.telegram.replies import Replies
from supervisor.chat.telegram.runs import escape
from supervisor.core.events import TurnedTo

NOTES_QUEUED: Final = 16  # notes of ours waiting to be sent; more are cosmetic and dropped
NOTE_PATIENCE_S: Final = 60.0  # a note Telegram holds up longer holds up the next ones no more
_SESSION_PREFIX: Final = re.compile(r"^\[([A-Za-z0-9._-]{1,64})\] ")
# Commands meant for the session a plain message would reach (no topics: the active one).
_THREAD_VERBS: Final = frozenset({"!stop", "!status", "!get"})


def newest_named(memory: Memory, chat_id: int, name: str) -> str | None:
    """The root of the newest session thread of that name in the chat. Ended sessions keep
    their threads, and a name is free again once its session ended: the newest is the one
    that may still run (its header is the chat's later message)."""
    named = [root for root, thread in memory.threads.items() if thread.chat_id == chat_id and thread.title == name]
    return max(named, key=lambda root: ids.parse_post(root)[1], default=None)


class ActiveSession:
    """The active sessions of one bot's chats. `notes.run` is its task."""

    def __init__(self, api: BotApi, link: TelegramLink) -> None:
        self.api = api
        self.tg = link
        # `/sessions` asked (post id -> chat), and the notes saying which session is
        # active, sent once the list is out (see `_mark_active`).
        self._listing: dict[str, int] = {}
        self.notes = Replies("notes", senders=1, queued=NOTES_QUEUED, patience_s=NOTE_PATIENCE_S)

    async def switch(self, item: incoming.Posted, channel: str, text: str) -> TurnedTo | None:
        """`/session NAME`: choose where plain text goes, and tell the core the person
        turned to that session (its agent starts now if it is not running)."""
        words = text.split()
        memory = self.tg.memory
        name = words[1] if len(words) == 2 else ""
        root = newest_named(memory, item.chat_id, name)
        if not name:
            answer = "Usage: /session NAME (/sessions lists them)"
        elif root is None:
            answer = f"There is no session {name}: /new {name} starts one."
        else:
            memory.active[channel] = root
            memory.changed()
            await memory.commit()
            answer = f"Plain text now goes to {name}."
        # Not in the update loop: a slow answer must hold no other chat's updates.
        self.notes.put("the answer to /session", functools.partial(self.api.send_message, item.chat_id,
                                                                   escape(answer)))  # fmt: skip
        return TurnedTo(ids.user(item.author_id), channel, root) if root is not None and name else None

    def root_of(self, item: incoming.Posted, channel: str, text: str) -> str:
        """A main-view command stays there; a reply goes to the session it answers;
        anything else to the active session."""
        memory = self.tg.memory
        words = text.split()
        verb = words[0].lower() if words else ""
        if verb.startswith("!") and not (verb in _THREAD_VERBS or (verb == "!end" and len(words) == 1)):
            return ""
        if item.reply_to is not None:
            replied = self.tg.root_of_message(item.chat_id, item.reply_to)
            if replied is None and (named := _SESSION_PREFIX.match(item.reply_text)):
                replied = newest_named(memory, item.chat_id, named[1])
            if replied is not None:
                return replied
        return memory.active.get(channel, "")

    def listing(self, post_id: str, chat_id: int) -> None:
        """`/sessions` asked in the main view: say the active session once it is handled."""
        self._listing[post_id] = chat_id

    def handled(self, channel_id: str, post_id: str) -> None:
        chat_id = self._listing.pop(post_id, None)
        if chat_id is not None:
            self._mark_active(chat_id, channel_id)

    def _mark_active(self, chat_id: int, channel_id: str) -> None:
        """Below the core's session list (it is out once the command is handled): which
        session plain text goes to. Only the front end knows that (the seed's model)."""
        root = self.tg.memory.active.get(channel_id)
        thread = self.tg.memory.threads.get(root) if root else None
        if thread is None:
            return
        note = f"▶ Plain text goes to <b>{escape(thread.title)}</b> (/session NAME switches)."
        self.notes.put("the active session's note", functools.partial(self.api.send_message, chat_id, note))
