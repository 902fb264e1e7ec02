"""The page's JSON: anything the page (or anyone) sends decodes to a message or a refusal."""

from __future__ import annotations

import json
import shlex

from hypothesis import example, given
from hypothesis import strategies as st

from supervisor.chat.web import codec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)


@given(st.text(max_size=200))
def test_any_text_decodes_without_raising(raw: str) -> None:
    codec.decode_page(raw)


@given(st.sampled_from(["hello", "open", "post", "choose", "stop", "new", "x"]),
       st.dictionaries(st.sampled_from(["id", "thread", "text", "files", "message", "option",
                                        "since", "name", "cwd", "agent", "persona", "before"]),
                       json_values, max_size=6))  # fmt: skip
def test_any_json_object_decodes_to_a_valid_message_or_a_refusal(kind: str, fields: dict) -> None:  # type: ignore[type-arg]
    message = codec.decode_page(json.dumps({"type": kind, **fields}))
    if isinstance(message, codec.Refused):
        assert message.id is None or codec.CLIENT_ID.fullmatch(message.id)
    elif not isinstance(message, codec.Hello | codec.Open):
        assert codec.CLIENT_ID.fullmatch(message.id)


def test_a_well_formed_post_and_a_bad_option() -> None:
    post = codec.decode_page(
        '{"type": "post", "id": "abcdef0123", "thread": "t1", "text": "hi", "files": ["f1"]}'
    )
    bad = codec.decode_page('{"type": "choose", "id": "abcdef0123", "message": "m", "option": "yes"}')
    short_id = codec.decode_page('{"type": "stop", "id": "x", "thread": "t"}')

    assert post == codec.Post("abcdef0123", "t1", "hi", ("f1",))
    assert bad == codec.Refused("abcdef0123", "unknown option 'yes'")
    assert short_id == codec.Refused(None, "malformed message: no valid client id")


@given(st.text(st.characters(exclude_categories=()), max_size=40))  # surrogates included
@example("half an emoji: \ud83d")
def test_every_string_that_decodes_can_be_stored_as_utf_8(text: str) -> None:
    # Any lone surrogate (half an emoji the page cut) arrives as U+FFFD, never raw.
    raw = json.dumps({"type": "post", "id": "abcdef0123", "thread": text, "text": text + "x"})
    message = codec.decode_page(raw)

    assert isinstance(message, codec.Post)
    (message.thread or "").encode("utf-8")
    message.text.encode("utf-8")


@given(st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True),
       st.text(st.characters(exclude_characters="\n\r\x00"), max_size=30))  # fmt: skip
def test_the_form_becomes_the_new_command_the_core_splits_back(name: str, cwd: str) -> None:
    form = codec.NewSession("abcdef0123", name, cwd, "claude", "reviewer")
    words = shlex.split(codec.new_session_command(form))

    expected_cwd = [cwd.strip()] if cwd.strip() else []
    assert words == ["!new", name, *expected_cwd, "agent=claude", "persona=reviewer"]
