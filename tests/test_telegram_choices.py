"""Permission and Stop buttons <-> callback_data (at most 64 bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat.telegram.choices import (
    MAX_CALLBACK_DATA_BYTES,
    MAX_REF_BYTES,
    Choice,
    ChoiceKind,
    buttons,
    decode,
    encode,
)

REFS = st.text(min_size=1, max_size=80).filter(lambda r: len(r.encode()) <= MAX_REF_BYTES)


@given(st.sampled_from(list(ChoiceKind)), REFS)
def test_round_trip_within_64_bytes(kind: ChoiceKind, ref: str) -> None:
    data = encode(kind, ref)
    assert 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES
    assert decode(data) == Choice(kind, ref)


def test_a_ref_too_long_or_empty_is_refused() -> None:
    with pytest.raises(ValueError):
        encode(ChoiceKind.ALLOW_ONCE, "x" * (MAX_REF_BYTES + 1))
    with pytest.raises(ValueError):
        encode(ChoiceKind.ALLOW_ONCE, "é" * (MAX_REF_BYTES // 2 + 1))  # bytes, not characters
    with pytest.raises(ValueError):
        encode(ChoiceKind.REJECT, "")
    assert decode(encode(ChoiceKind.STOP, "x" * MAX_REF_BYTES)) is not None


@given(st.text(max_size=100))
def test_foreign_data_is_not_a_choice(data: str) -> None:
    choice = decode(data)
    if choice is not None:
        assert data == encode(choice.kind, choice.ref)


def test_foreign_shapes() -> None:
    for data in ["", "c1", "c1:a", "c1:a:", "c2:a:r", "c1:z:r", "a:r", "c1:a:" + "x" * 64]:
        assert decode(data) is None


def test_permission_keyboard_has_the_three_buttons() -> None:
    markup = buttons("r7")
    labels = [[button["text"] for button in row] for row in markup["inline_keyboard"]]
    assert labels == [["Allow", "Allow for this session"], ["Deny"]]
    pressed = [decode(b["callback_data"]) for row in markup["inline_keyboard"] for b in row]
    assert [c.kind for c in pressed if c] == [
        ChoiceKind.ALLOW_ONCE, ChoiceKind.ALLOW_ALWAYS, ChoiceKind.REJECT
    ]
    assert buttons("d1", (ChoiceKind.STOP,)) == {
        "inline_keyboard": [[{"text": "Stop", "callback_data": "c1:x:d1"}]]
    }
