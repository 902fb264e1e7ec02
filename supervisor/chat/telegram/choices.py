"""Permission buttons and the draft's Stop button, as `callback_data` and back.

Owns the encoding: `c1:<kind letter>:<ref>`, where `ref` is the short, opaque reference
the caller gives (e.g. the request's local key) and the whole is at most 64 bytes, the
Bot API's limit. Pure; it must never do I/O. `decode` answers None for anything that is
not ours (an old version's data, a forged press): such a press is answered and ignored.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from supervisor.chat.telegram.codec import InlineButton, JSONObject, keyboard

MAX_CALLBACK_DATA_BYTES: Final = 64
_VERSION: Final = "c1"


class ChoiceKind(enum.Enum):
    """The port's option kinds; the value is the letter on the wire."""

    ALLOW_ONCE = "a"
    ALLOW_ALWAYS = "s"  # for this session
    REJECT = "d"
    STOP = "x"  # the draft's / streaming message's Stop
    RERUN = "r"  # on a cut turn's notice: run its prompt again


LABELS: Final = {
    ChoiceKind.ALLOW_ONCE: "Allow",
    ChoiceKind.ALLOW_ALWAYS: "Allow for this session",
    ChoiceKind.REJECT: "Deny",
    ChoiceKind.STOP: "Stop",
    ChoiceKind.RERUN: "Run it again",
}

PERMISSION_KINDS: Final = (ChoiceKind.ALLOW_ONCE, ChoiceKind.ALLOW_ALWAYS, ChoiceKind.REJECT)
HELP: Final = (
    f"**Buttons:** a permission request has {LABELS[ChoiceKind.ALLOW_ONCE]}, "
    f"{LABELS[ChoiceKind.ALLOW_ALWAYS]} and {LABELS[ChoiceKind.REJECT]}; "
    f"{LABELS[ChoiceKind.STOP]} under a streaming answer stops the turn."
)
_BY_LETTER: Final = {kind.value: kind for kind in ChoiceKind}
MAX_REF_BYTES: Final = MAX_CALLBACK_DATA_BYTES - len(f"{_VERSION}:a:")


@attrs.frozen
class Choice:
    kind: ChoiceKind
    ref: str


def encode(kind: ChoiceKind, ref: str) -> str:
    """The callback_data for pressing `kind` on the message known as `ref`.

    ValueError when `ref` is empty or too long (at most `MAX_REF_BYTES` UTF-8 bytes).
    """
    data = f"{_VERSION}:{kind.value}:{ref}"
    if not ref or len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        raise ValueError(f"a choice ref must be 1-{MAX_REF_BYTES} bytes, got {ref!r}")
    return data


def decode(data: str) -> Choice | None:
    """The choice `data` encodes, or None when it is not one of ours."""
    version, _, rest = data.partition(":")
    letter, _, ref = rest.partition(":")
    kind = _BY_LETTER.get(letter)
    if version != _VERSION or kind is None or not ref:
        return None
    if len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        return None
    return Choice(kind, ref)


def buttons(ref: str, kinds: tuple[ChoiceKind, ...] = PERMISSION_KINDS) -> JSONObject:
    """An inline keyboard with one button per kind: Allow and Allow for this session on
    the first row, Deny (and Stop) on the second, so the long label has room."""
    made = [InlineButton(LABELS[kind], encode(kind, ref)) for kind in kinds]
    allow = [b for b, k in zip(made, kinds, strict=True) if k in _ALLOWS]
    other = [b for b, k in zip(made, kinds, strict=True) if k not in _ALLOWS]
    return keyboard([row for row in (allow, other) if row])


_ALLOWS: Final = frozenset({ChoiceKind.ALLOW_ONCE, ChoiceKind.ALLOW_ALWAYS})
