"""The Bot API codec: tolerant of what we do not use, strict about what we rely on."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat.telegram import codec
from supervisor.chat.telegram.codec import MalformedReply

CHAT = {"id": 42, "type": "private", "first_name": "Alice"}
ALICE = {"id": 42, "is_bot": False, "first_name": "Alice", "language_code": "en"}


def message(**extra: Any) -> dict[str, Any]:
    return {"message_id": 5, "date": 1_780_000_000, "chat": CHAT, "from": ALICE, **extra}


def test_a_topic_message_with_a_document() -> None:
    update = codec.decode_update({
        "update_id": 9,
        "message": message(
            message_thread_id=77, is_topic_message=True, caption="see",
            document={"file_id": "F", "file_unique_id": "U", "file_name": "a.txt", "file_size": 3},
            some_future_field={"x": 1},
        ),
    })  # fmt: skip
    assert update is not None and not update.empty and not update.malformed
    msg = update.message
    assert msg is not None and msg.sender is not None
    assert (msg.sender.id, msg.topic_id, msg.caption) == (42, 77, "see")
    assert msg.document == codec.Document("F", "U", "a.txt", "", 3)


def test_a_reply_outside_topics_is_not_a_topic_message() -> None:
    msg = codec.structure(
        message(message_thread_id=3, reply_to_message=message(message_id=3)), codec.Message
    )
    assert msg.topic_id is None
    assert msg.reply_to_message is not None and msg.reply_to_message.message_id == 3


def test_getme_topic_fields() -> None:
    me = codec.structure(
        {"id": 1, "is_bot": True, "first_name": "B", "username": "b_bot",
         "has_topics_enabled": True, "allows_users_to_create_topics": False},
        codec.User,
    )  # fmt: skip
    assert me.has_topics_enabled and not me.allows_users_to_create_topics


def test_callback_query_with_an_inaccessible_message() -> None:
    update = codec.decode_update({
        "update_id": 10,
        "callback_query": {"id": "q", "from": ALICE, "chat_instance": "c", "data": "c1:a:r",
                           "message": {"chat": CHAT, "message_id": 8, "date": 0}},
    })  # fmt: skip
    assert update is not None and update.callback_query is not None
    query = update.callback_query
    assert query.sender.id == 42 and query.data == "c1:a:r"
    assert query.message is not None and not query.message.accessible


def test_unknown_kinds_and_malformed_payloads_keep_their_id() -> None:
    poll = codec.decode_update({"update_id": 11, "poll": {"id": "p"}})
    assert poll is not None and poll.empty and not poll.malformed
    bad = codec.decode_update({"update_id": 12, "message": {"message_id": "5"}})
    assert bad is not None and bad.empty and "message_id" in bad.malformed
    forged = codec.decode_update({"update_id": 13, "malformed": "x", "message": message()})
    assert forged is not None and not forged.malformed
    assert codec.decode_update({"message": message()}) is None
    assert codec.decode_update({"update_id": True}) is None
    assert [u.update_id for u in codec.decode_updates([{"update_id": 1}, 5, {"update_id": 2}])] == [1, 2]


def test_strict_primitives() -> None:
    with pytest.raises(MalformedReply):
        codec.structure({"id": "1", "is_bot": True}, codec.User)
    with pytest.raises(MalformedReply):
        codec.structure({"id": 1, "is_bot": 1}, codec.User)


def test_envelope() -> None:
    assert codec.parse_reply({"ok": True, "result": [1]}) == [1]
    failure = codec.parse_reply(
        {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
         "parameters": {"retry_after": 3}}
    )  # fmt: skip
    assert failure == codec.Failure(429, "Too Many Requests: retry after 3",
                                    codec.ResponseParameters(retry_after=3))
    for body in [None, [], {"ok": "yes"}, {"ok": True}, "<html>"]:
        with pytest.raises(MalformedReply):
            codec.parse_reply(body)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.sampled_from(["update_id", "message", "callback_query",
                                        "edited_message", "other"]), JSONISH))  # fmt: skip
def test_no_payload_crashes_the_decoder(value: dict[str, Any]) -> None:
    update = codec.decode_update(value)
    assert update is None or update.update_id == value["update_id"]
