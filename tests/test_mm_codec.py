"""The Mattermost codec against real-shaped frames and bodies, and against junk."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat import ChatUser
from supervisor.chat.mattermost import codec
from supervisor.chat.mattermost.codec import EventFrame, MalformedFrame, Reply
from supervisor.core.events import (
    Choice,
    ChoiceMade,
    FileRef,
    Hello,
    Post,
    PostDeleted,
    Posted,
    PostEdited,
)

ME = "bot0000000000000000000000a"
ALICE = "ali0000000000000000000000a"
CHANNEL = "chn0000000000000000000000a"


def wire_post(**overrides: Any) -> dict[str, Any]:
    """A Post as a current server serialises it, extras and all."""
    post: dict[str, Any] = {
        "id": "pst0000000000000000000000a",
        "create_at": 1_760_000_000_000,
        "update_at": 1_760_000_000_000,
        "edit_at": 0,
        "delete_at": 0,
        "is_pinned": False,
        "user_id": ALICE,
        "channel_id": CHANNEL,
        "root_id": "",
        "original_id": "",
        "message": "hello @bot",
        "type": "",
        "props": {"disable_group_highlight": True},
        "hashtags": "",
        "pending_post_id": "ali:1760000000000",
        "reply_count": 0,
        "last_reply_at": 0,
        "participants": None,
        "metadata": {"embeds": [], "files": [], "priority": {"priority": ""}},
    }
    post.update(overrides)
    return post


def broadcast(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "omit_users": None,
        "user_id": "",
        "channel_id": CHANNEL,
        "team_id": "",
        "connection_id": "",
        "omit_connection_id": "",
    }
    value.update(overrides)
    return value


def hello_frame(connection_id: str = "cnx0000000000000000000000a") -> dict[str, Any]:
    return {
        "event": "hello",
        "data": {
            "connection_id": connection_id,
            "server_hostname": "mm-0",
            "server_version": "10.11.0.10.11.0.abcdef.true",
        },
        "broadcast": broadcast(user_id=ME, channel_id=""),
        "seq": 0,
    }


def posted_frame(seq: int = 1, post: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "event": "posted",
        "data": {
            "channel_display_name": "@alice",
            "channel_name": f"{ME}__{ALICE}",
            "channel_type": "D",
            "mentions": json.dumps([ME]),
            "post": json.dumps(post or wire_post()),
            "sender_name": "@alice",
            "set_online": True,
            "team_id": "",
        },
        "broadcast": broadcast(),
        "seq": seq,
    }


def post_frame(event: str, seq: int = 2, **post: Any) -> dict[str, Any]:
    return {
        "event": event,
        "data": {"post": json.dumps(wire_post(**post))},
        "broadcast": broadcast(),
        "seq": seq,
    }


def reaction_frame(event: str, seq: int = 3, **reaction: Any) -> dict[str, Any]:
    body = {
        "user_id": ALICE,
        "post_id": "pst0000000000000000000000a",
        "emoji_name": "+1",
        "create_at": 1_760_000_000_500,
        "update_at": 1_760_000_000_500,
        "delete_at": 0,
        "remote_id": "",
        "channel_id": CHANNEL,
    }
    body.update(reaction)
    return {
        "event": event,
        "data": {"reaction": json.dumps(body)},
        "broadcast": broadcast(),
        "seq": seq,
    }


def decode(frame: dict[str, Any]) -> EventFrame:
    result = codec.decode_frame(json.dumps(frame))
    assert isinstance(result, EventFrame)
    return result


EXPECTED_POST = Post(
    id="pst0000000000000000000000a",
    channel_id=CHANNEL,
    user_id=ALICE,
    message="hello @bot",
    create_at=1_760_000_000_000,
    idempotency_key="ali:1760000000000",
)

# --- frames --------------------------------------------------------------------------


def test_hello() -> None:
    frame = decode(hello_frame())
    assert frame == EventFrame(
        0, "hello", Hello("cnx0000000000000000000000a", "10.11.0.10.11.0.abcdef.true")
    )


@pytest.mark.parametrize("data", [{"server_version": "5.20.0.5.20.0.abc.false"}, {}, None])
def test_a_hello_without_a_connection_id_is_still_a_hello(data: dict[str, Any] | None) -> None:
    # Servers before reliable websockets (5.x) send only their version: the reader must
    # still start on it, and catch up after every reconnect (`test_mm_websocket`).
    frame = decode({"event": "hello", "data": data, "broadcast": broadcast(), "seq": 0})
    version = (data or {}).get("server_version", "")
    assert frame == EventFrame(0, "hello", Hello("", version))


def test_posted_decodes_the_post_from_its_json_string() -> None:
    frame = decode(posted_frame(seq=7))
    assert frame == EventFrame(7, "posted", Posted(EXPECTED_POST))


@pytest.mark.parametrize(
    "change", [{"channel_type": "O"}, {"post": {"type": "system_join_channel"}}, {"post": {"delete_at": 5}}]
)
def test_posts_that_cannot_act_are_no_events(change: dict[str, Any]) -> None:
    # A team channel's post, a system post, a deleted one: the core never hears of them.
    frame = posted_frame(seq=7)
    if "post" in change:
        frame["data"]["post"] = json.dumps({**json.loads(frame["data"]["post"]), **change["post"]})
    else:
        frame["data"].update(change)
    assert decode(frame) == EventFrame(7, "posted", None)


def test_posted_reply_with_files() -> None:
    post = wire_post(root_id="root000000000000000000000a", file_ids=["f1", "f2"])
    frame = decode(posted_frame(post=post))
    assert isinstance(frame.event, Posted)
    assert frame.event.post.thread_id == "root000000000000000000000a"
    assert frame.event.post.file_ids == ("f1", "f2")


def test_post_edited_and_deleted() -> None:
    edited = decode(post_frame("post_edited", message="fixed", edit_at=5, update_at=5))
    assert edited.event == PostEdited(attrs.evolve(EXPECTED_POST, message="fixed"))
    deleted = decode(post_frame("post_deleted", delete_at=9, update_at=9))
    assert deleted.event == PostDeleted(EXPECTED_POST)


def test_post_deleted_admin_copy_with_delete_by() -> None:
    frame = post_frame("post_deleted", delete_at=9)
    frame["data"]["delete_by"] = ME
    assert isinstance(decode(frame).event, PostDeleted)


def test_a_reaction_that_chooses_is_a_choice() -> None:
    frame = decode(reaction_frame("reaction_added", seq=4))
    expected = Choice(ALICE, "pst0000000000000000000000a", "allow_once", CHANNEL)
    assert frame == EventFrame(4, "reaction_added", ChoiceMade(expected))


@pytest.mark.parametrize(
    "emoji, kind",
    [
        ("+1_medium_skin_tone", "allow_once"),
        ("+1_light_skin_tone", "allow_once"),
        ("thumbsup_medium_light_skin_tone", "allow_once"),
        ("-1_dark_skin_tone", "reject"),
        ("thumbsdown_medium_dark_skin_tone", "reject"),
    ],
)
def test_a_reaction_in_a_skin_tone_chooses_as_its_plain_emoji(emoji: str, kind: str) -> None:
    # Mattermost names each skin tone of an emoji apart (its model/emoji_data.go).
    event = decode(reaction_frame("reaction_added", seq=4, emoji_name=emoji)).event
    assert isinstance(event, ChoiceMade) and event.choice.kind == kind


@pytest.mark.parametrize(
    "name, emoji",
    [
        ("reaction_added", "heart"),
        ("reaction_removed", "+1"),
        ("reaction_added", "wave_medium_skin_tone"),  # a skin tone of an emoji no choice uses
        ("reaction_added", "+1_skin_tone"),  # no such tone
    ],
)
def test_reactions_that_choose_nothing_are_no_events(name: str, emoji: str) -> None:
    # A removed reaction never acts; a reaction no choice uses is not the core's business.
    assert decode(reaction_frame(name, seq=4, emoji_name=emoji)) == EventFrame(4, name, None)


def test_reaction_without_channel_takes_it_from_the_broadcast() -> None:
    frame = reaction_frame("reaction_added")
    body = json.loads(frame["data"]["reaction"])
    del body["channel_id"]
    frame["data"]["reaction"] = json.dumps(body)
    event = decode(frame).event
    assert isinstance(event, ChoiceMade)
    assert event.choice.channel_id == CHANNEL


@pytest.mark.parametrize(
    "frame",
    [
        {
            "event": "typing",
            "data": {"parent_id": "", "user_id": ALICE},
            "broadcast": broadcast(omit_users={ALICE: True}),
            "seq": 5,
        },
        {"event": "status_change", "data": {"status": "online", "user_id": ALICE}, "seq": 5},
        {"event": "some_future_event", "data": None, "seq": 5, "new_field": [1, 2]},
    ],
)
def test_unknown_events_still_count_their_seq(frame: dict[str, Any]) -> None:
    assert decode(frame) == EventFrame(5, frame["event"], None)


def test_replies() -> None:
    pong = {
        "status": "OK",
        "seq_reply": 2,
        "data": {"text": "pong", "version": "10.11.0", "server_time": 1, "node_id": ""},
    }
    assert codec.decode_frame(json.dumps(pong)) == Reply(2, "OK")
    fail = {
        "status": "FAIL",
        "seq_reply": 3,
        "error": {"id": "api.web_socket_router.not_authenticated.app_error", "message": "x"},
    }
    assert codec.decode_frame(json.dumps(fail)) == Reply(
        3, "FAIL", "api.web_socket_router.not_authenticated.app_error"
    )


def test_frames_may_be_bytes() -> None:
    assert codec.decode_frame(json.dumps(hello_frame()).encode()) == decode(hello_frame())


@pytest.mark.parametrize(
    "text, seq, fragment",
    [
        ("", None, "not JSON"),
        ("{", None, "not JSON"),
        ("[1, 2]", None, "list"),
        ('{"seq": 1}', 1, "event"),
        ('{"event": "posted"}', None, "seq"),
        ('{"event": "posted", "seq": "1"}', None, "seq"),
        ('{"event": "posted", "seq": true}', None, "seq"),
        # A readable seq counts, even when the rest of the envelope is off.
        ('{"event": 5, "seq": 1}', 1, "event"),
        ('{"event": "posted", "seq": 1, "data": []}', 1, "data"),
        ('{"seq_reply": "x", "status": "OK"}', None, "seq_reply"),
        # The envelope is sound, so the seq is known even though the content is not.
        ('{"event": "posted", "seq": 4, "data": {}}', 4, "post"),
        ('{"event": "posted", "seq": 4, "data": {"post": "{oops"}}', 4, "not JSON"),
        ('{"event": "posted", "seq": 4, "data": {"post": {"id": "x"}}}', 4, "post"),
        ('{"event": "posted", "seq": 4, "data": {"post": "{\\"id\\": 1}"}}', 4, "id"),
        ('{"event": "hello", "seq": 0, "data": {"connection_id": 5}}', 0, "connection_id"),
        ('{"event": "reaction_added", "seq": 6, "data": {"reaction": "[]"}}', 6, "Reaction"),
    ],
)
def test_malformed_frames_raise_one_exception_with_a_reason(
    text: str, seq: int | None, fragment: str
) -> None:
    with pytest.raises(MalformedFrame) as caught:
        codec.decode_frame(text)
    assert caught.value.seq == seq
    assert fragment in caught.value.reason
    assert len(caught.value.reason) <= 200


def test_deeply_nested_junk_is_malformed_not_a_crash() -> None:
    with pytest.raises(MalformedFrame):
        codec.decode_frame("[" * 100_000)
    with pytest.raises(MalformedFrame):
        codec.decode_frame(
            '{"event": "posted", "seq": 1, "data": {"post": "' + "[" * 100_000 + '"}}'
        )


# --- junk never escapes as anything but MalformedFrame ----------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

REAL_FRAMES = [
    hello_frame(),
    posted_frame(),
    post_frame("post_edited"),
    post_frame("post_deleted"),
    reaction_frame("reaction_added"),
    reaction_frame("reaction_removed"),
    {"status": "OK", "seq_reply": 1, "data": {"text": "pong"}},
]


@st.composite
def damaged_frames(draw: st.DrawFn) -> str:
    """A real frame with one field replaced (possibly inside the post's JSON string)."""
    frame = json.loads(json.dumps(draw(st.sampled_from(REAL_FRAMES))))
    target = frame
    if "data" in frame and draw(st.booleans()):
        target = frame["data"]
        for key in ("post", "reaction"):
            if key in target and draw(st.booleans()):
                inner = json.loads(target[key])
                inner[draw(st.sampled_from(sorted(inner)))] = draw(json_values)
                target[key] = json.dumps(inner)
                return json.dumps(frame)
    key = draw(st.sampled_from([*sorted(target), "extra"]))
    if draw(st.booleans()):
        target[key] = draw(json_values)
    else:
        target.pop(key, None)
    return json.dumps(frame)


def decodes_or_is_malformed(text: str | bytes) -> None:
    try:
        result = codec.decode_frame(text)
    except MalformedFrame as exc:
        assert exc.reason
    else:
        assert isinstance(result, EventFrame | Reply)


@given(st.text() | st.binary())
def test_junk_text_is_malformed_or_decoded(text: str | bytes) -> None:
    decodes_or_is_malformed(text)


@given(json_values)
def test_junk_json_is_malformed_or_decoded(value: Any) -> None:
    decodes_or_is_malformed(json.dumps(value))


@given(damaged_frames())
def test_damaged_real_frames_are_malformed_or_decoded(text: str) -> None:
    decodes_or_is_malformed(text)


# --- client actions --------------------------------------------------------------------


def test_actions() -> None:
    assert json.loads(codec.encode_typing(3, CHANNEL, "root")) == {
        "seq": 3,
        "action": "user_typing",
        "data": {"channel_id": CHANNEL, "parent_id": "root"},
    }
    assert json.loads(codec.encode_ping(4)) == {"seq": 4, "action": "ping"}
    with pytest.raises(ValueError):
        codec.encode_ping(0)  # the server refuses seq <= 0


# --- REST bodies -------------------------------------------------------------------------


def test_rest_post_tolerates_metadata_and_reads_file_ids() -> None:
    body = wire_post(
        file_ids=["fil0000000000000000000000a"],
        metadata={"files": [{"id": "fil0000000000000000000000a", "name": "a.png"}]},
    )
    post = codec.decode_post(body)
    assert post.file_ids == ("fil0000000000000000000000a",)
    assert attrs.evolve(post.to_post(), file_ids=()) == EXPECTED_POST


def test_rest_post_with_null_file_ids() -> None:
    assert codec.decode_post(wire_post(file_ids=None)).file_ids == ()


def test_post_list() -> None:
    older = wire_post(id="a" * 26, create_at=1)
    newer = wire_post(id="b" * 26, create_at=2)
    body = {
        "order": ["b" * 26, "a" * 26],
        "posts": {"a" * 26: older, "b" * 26: newer},
        "next_post_id": "",
        "prev_post_id": "z" * 26,
        "has_next": False,
        "first_inaccessible_post_time": 0,
    }
    result = codec.decode_post_list(body)
    assert result.order == ("b" * 26, "a" * 26)
    assert result.posts["a" * 26].create_at == 1
    assert result.prev_post_id == "z" * 26


def test_file_info() -> None:
    body = {
        "id": "fil0000000000000000000000a",
        "user_id": ALICE,
        "post_id": "",
        "create_at": 1,
        "update_at": 1,
        "delete_at": 0,
        "name": "report.pdf",
        "extension": "pdf",
        "size": 12345,
        "mime_type": "application/pdf",
        "width": 0,
        "height": 0,
        "has_preview_image": False,
    }
    assert codec.decode_file_info(body) == FileRef(
        "fil0000000000000000000000a", "report.pdf", 12345, "application/pdf"
    )


def test_users() -> None:
    bot = {"id": ME, "username": "claude", "is_bot": True, "roles": "system_user", "props": {}}
    human = {"id": ALICE, "username": "alice", "email": "a@example.com"}  # is_bot omitted
    assert codec.decode_users([bot, human]) == [
        ChatUser(ME, "claude", True),
        ChatUser(ALICE, "alice", False),
    ]
    with pytest.raises(MalformedFrame):
        codec.decode_users({"id": ME})
    with pytest.raises(MalformedFrame):
        codec.decode_user({"id": ME, "username": 7})


def test_reactions() -> None:
    body = json.loads(reaction_frame("reaction_added")["data"]["reaction"])
    assert [r.emoji_name for r in codec.decode_reactions([body])] == ["+1"]
    assert codec.decode_reactions(None) == []  # none yet: Go's nil slice


@pytest.mark.parametrize("value", [5, 0, True, 1.5, "+1", {"emoji_name": "+1"}])
def test_reactions_that_are_no_list_are_malformed(value: Any) -> None:
    # Only MalformedFrame may escape: a TypeError would end the caller (the catch-up).
    with pytest.raises(MalformedFrame):
        codec.decode_reactions(value)


def test_app_error() -> None:
    body = {
        "id": "model.post.is_valid.message_length.app_error",
        "message": "Message too long",
        "detailed_error": "",
        "request_id": "req",
        "status_code": 400,
    }
    error = codec.loads(json.dumps(body), codec.AppError)
    assert (error.id, error.status_code) == ("model.post.is_valid.message_length.app_error", 400)
