"""Choices on Mattermost are reactions: which emoji the bot offers for each kind, what a
person's reaction means, and the legend under a pending request.

The only place emoji names are listed. A reaction that means nothing is not an event at
all: the core never hears of it. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from supervisor.core.events import Choice, ChoiceKind, ChoiceMade


@attrs.frozen
class Reaction:
    """A reaction as the server sends it (`reaction_added` and the reactions API)."""

    user_id: str
    post_id: str
    emoji_name: str
    channel_id: str = ""
    create_at: int = 0


_KIND_OF_EMOJI: dict[str, ChoiceKind] = {
    **dict.fromkeys(("+1", "thumbsup", "white_check_mark"), "allow_once"),
    # 🔁 on a permission request allows for the session; on a cut turn's notice the core
    # reads the same choice as "run it again" (it knows which post offered what).
    "repeat": "allow_always",
    **dict.fromkeys(("-1", "thumbsdown", "x"), "reject"),
    **dict.fromkeys(("octagonal_sign", "stop_sign"), "stop"),  # also stops a turn from any post
}

OFFERED_EMOJI: dict[ChoiceKind, str] = {
    "allow_once": "+1",
    "allow_always": "repeat",
    "reject": "-1",
    "stop": "octagonal_sign",
    "rerun": "repeat",
}

PERMISSION_LEGEND = "React 👍 allow once · 🔁 allow for this session · 👎 deny · 🛑 stop the turn"
RERUN_LEGEND = "React 🔁 here to run it again."
HELP = (
    "**Reactions:** 🛑 on any post of a thread stops the turn. On a permission request: "
    "👍 or ✅ allows once, 🔁 allows this kind of call for the rest of the session, 👎 or ❌ denies."
)


# Mattermost names each skin tone of an emoji apart (`+1_medium_skin_tone`,
# `thumbsdown_dark_skin_tone`): a 👍 chosen with a skin tone is a 👍 all the same.
_SKIN_TONE = re.compile(r"_(?:light|medium_light|medium|medium_dark|dark)_skin_tone\Z")


def kind_of(emoji_name: str) -> ChoiceKind | None:
    """What a reaction chooses; None if it chooses nothing."""
    return _KIND_OF_EMOJI.get(_SKIN_TONE.sub("", emoji_name))


def choice_made(reaction: Reaction) -> ChoiceMade | None:
    kind = kind_of(reaction.emoji_name)
    if kind is None:
        return None
    return ChoiceMade(Choice(reaction.user_id, reaction.post_id, kind, reaction.channel_id))


def legend(kinds: Iterable[ChoiceKind]) -> str:
    return RERUN_LEGEND if tuple(kinds) == ("rerun",) else PERMISSION_LEGEND
