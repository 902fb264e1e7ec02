"""Reading JSON from outside: no lone surrogate gets past (supervisor/json_text.py)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from supervisor import json_text

ANY_TEXT = st.text(alphabet=st.characters(codec=None))  # lone surrogates included


@given(st.recursive(ANY_TEXT | st.integers(), lambda inner: st.lists(inner) | st.dictionaries(ANY_TEXT, inner)))
def test_whatever_json_says_is_read_into_text_every_encoder_takes(value: object) -> None:
    for raw in (json.dumps(value), json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")):
        read = json_text.loads(raw)
        json.dumps(read, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
        assert read == json_text.clean(value)
