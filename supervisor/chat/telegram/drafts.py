"""Growing posts shown as drafts: which post holds the draft of each place, and what
became of it (sans-IO bookkeeping for the link).

While an answer streams, Telegram can show it as a draft (`sendMessageDraft`): an
ephemeral preview in a chat or topic that a real message ends. The core knows nothing of
it: it creates a post and edits it. So a growing post gets a provisional id here (a
negative message id, never one Telegram gives) and its texts go to a draft; its last text
(or anything that needs a real message: buttons) makes it a real message, and from then on
the provisional id stands for that message (`real`, and `core_of` the other way, for a
button pressed on it).

Rules kept here:
- one draft per place (chat, topic): a draft never shows another session's text; a second
  session growing a post in the same place (without topics, the chat's main view) gets a
  real message instead;
- a place's draft has one draft id, and a Stop pressed on it names the session's thread
  (`root_of_draft`), for this run (a draft lasts seconds);
- drafts that failed in a chat (an older Bot API server, a chat that refuses them) are not
  tried again there (`off`): that chat gets one message edited in place.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from typing import Final

import attrs

from supervisor.chat.telegram import ids

_KEPT: Final = 2000  # provisional ids (and draft ids) remembered once made real


@attrs.define
class Growing:
    """A post shown as a draft. Invariant: `text` is what the core last put."""

    post_id: str  # provisional: tg:<chat>:-<n>
    chat_id: int
    topic_id: int | None
    root_id: str  # the session's thread
    draft_id: int
    text: str
    prefix: str  # "[NAME] " without topics
    shown_at: float = 0.0  # when the draft was last sent (trio time)
    changed_at: float = 0.0  # when the core last changed its text (trio time)


class Drafts:
    def __init__(self) -> None:
        self.growing: dict[str, Growing] = {}
        self.off: set[int] = set()  # chats where a draft call failed
        self.real: OrderedDict[str, str] = OrderedDict()  # provisional id -> real post id
        self.core_of: dict[str, str] = {}  # real post id -> provisional id
        self._places: dict[tuple[int, int | None], str] = {}  # place -> provisional id
        self._roots: OrderedDict[tuple[int, int], str] = OrderedDict()  # (chat, draft id) -> root
        self._draft_ids = itertools.count(1)
        # Provisional ids must not repeat across runs (the core keeps them): microseconds.
        self._last = 0

    def holder(self, chat_id: int, topic_id: int | None) -> Growing | None:
        """The growing post whose draft shows in that place now."""
        post_id = self._places.get((chat_id, topic_id))
        return self.growing[post_id] if post_id is not None else None

    def start(self, chat_id: int, topic_id: int | None, root_id: str, text: str, prefix: str) -> Growing:
        """A new growing post in a free place (see `holder`)."""
        if (chat_id, topic_id) in self._places:
            raise ValueError("that place shows another post's draft")
        self._last = max(self._last + 1, time.time_ns() // 1000)
        post_id = ids.post(chat_id, -self._last)
        growing = Growing(post_id, chat_id, topic_id, root_id, next(self._draft_ids), text, prefix)
        self.growing[post_id] = growing
        self._places[(chat_id, topic_id)] = post_id
        self._roots[(chat_id, growing.draft_id)] = root_id
        while len(self._roots) > _KEPT:
            self._roots.popitem(last=False)
        return growing

    def finish(self, post_id: str) -> Growing:
        """The post stops growing (it is about to become a real message): its place is free."""
        growing = self.growing.pop(post_id)
        del self._places[(growing.chat_id, growing.topic_id)]
        return growing

    def made_real(self, post_id: str, real_id: str) -> None:
        self.real[post_id] = real_id
        self.core_of[real_id] = post_id
        while len(self.real) > _KEPT:
            _old, real = self.real.popitem(last=False)
            self.core_of.pop(real, None)

    def root_of_draft(self, chat_id: int, draft_id: int) -> str | None:
        return self._roots.get((chat_id, draft_id))


def is_provisional(post_id: str) -> bool:
    try:
        return ids.parse_post(post_id)[1] < 0
    except ValueError:
        return False
