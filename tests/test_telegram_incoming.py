"""Updates read as the port's incoming events."""

from __future__ import annotations

from typing import Any

from supervisor.chat.telegram import choices, codec
from supervisor.chat.telegram.incoming import (
    Attachment,
    InGroup,
    Posted,
    Pressed,
    StopPressed,
    command_text,
    read_update,
)
from tests.fakes.telegram_botapi import FakeBotApi

USER = 4242


def last_update(fake: FakeBotApi) -> codec.Update:
    update = codec.decode_update(fake.pending_updates()[-1])
    assert update is not None
    return update


def read_last(fake: FakeBotApi) -> Any:
    return read_update(last_update(fake), "fake_claude_bot")


async def test_a_prompt_in_a_topic_with_files() -> None:
    fake = FakeBotApi()
    fake.add_user(USER)
    thread = fake.user_creates_topic(USER, "alpha")
    opened = read_last(fake)
    assert isinstance(opened, Posted) and opened.topic_opened == "alpha"
    assert opened.topic_id == thread and opened.text == ""
    fake.user_sends(USER, "look", thread_id=thread, document=("notes.md", b"# hi"))
    posted = read_last(fake)
    assert isinstance(posted, Posted)
    assert (posted.chat_id, posted.topic_id, posted.author_id, posted.text) == (USER, thread, USER, "look")
    assert posted.attachments == (Attachment(posted.attachments[0].file_id, "notes.md", 4, "document", "text/markdown"),)
    assert posted.event_id == f"tg:{last_update(fake).update_id}"
    fake.user_sends(USER, "", thread_id=thread, photo=b"jpeg")
    photo = read_last(fake)
    assert isinstance(photo, Posted) and photo.attachments[0].kind == "photo"
    assert photo.attachments[0].name == f"photo-{photo.message_id}.jpg"
    assert photo.attachments[0].mime_type == "image/jpeg"  # Telegram's photos are JPEG


async def test_voice_notes_videos_and_animations_come_as_files() -> None:
    """What a phone sends most besides text: a voice note with no words is a prompt with
    its file (it once meant nothing, and had no answer at all); an animation, which
    Telegram sends as a document too, comes once."""
    fake = FakeBotApi()
    fake.add_user(USER)
    thread = fake.user_creates_topic(USER, "alpha")
    fake.user_sends(USER, thread_id=thread, voice=b"OggS")
    voice = read_last(fake)
    assert isinstance(voice, Posted) and voice.text == ""
    assert voice.attachments == (Attachment(voice.attachments[0].file_id, f"voice-{voice.message_id}.ogg", 4,
                                            "document", "audio/ogg"),)  # fmt: skip
    gif = {"file_id": "AnimGif", "file_unique_id": "u1", "file_name": "cat.mp4", "mime_type": "video/mp4", "file_size": 9}
    circle = {"file_id": "Round", "file_unique_id": "u2", "length": 240, "duration": 3, "file_size": 7}
    fake.add_update({"message": {"message_id": 77, "date": 1, "from": fake.chat(USER).user, "caption": "look",
                                 "chat": {"id": USER, "type": "private"},
                                 "animation": {**gif, "width": 1, "height": 1, "duration": 1},
                                 "document": gif, "video_note": circle}})  # fmt: skip
    both = read_last(fake)
    assert isinstance(both, Posted) and both.text == "look"
    assert [(a.file_id, a.name, a.mime_type) for a in both.attachments] == [
        ("AnimGif", "cat.mp4", "video/mp4"), ("Round", "video-note-77.mp4", "video/mp4")
    ]


async def test_replies_commands_and_the_main_view() -> None:
    fake = FakeBotApi(topics=False)
    fake.add_user(USER)
    first = fake.user_sends(USER, "/new@fake_claude_bot alpha")
    posted = read_last(fake)
    assert isinstance(posted, Posted) and posted.text == "/new alpha" and posted.topic_id is None
    fake.user_sends(USER, "to alpha", reply_to=first["message_id"])
    reply = read_last(fake)
    assert isinstance(reply, Posted) and reply.reply_to == first["message_id"]
    assert command_text("/new@other_bot x", "fake_claude_bot") == "/new@other_bot x"
    assert command_text("!stop", "fake_claude_bot") == "!stop"


async def test_presses_and_stops() -> None:
    fake = FakeBotApi()
    fake.add_user(USER)
    sent = fake.user_sends(USER, "x")
    fake.user_presses(USER, sent["message_id"], choices.encode(choices.ChoiceKind.REJECT, "p9"))
    pressed = read_last(fake)
    assert isinstance(pressed, Pressed)
    assert pressed.choice == choices.Choice(choices.ChoiceKind.REJECT, "p9")
    assert (pressed.author_id, pressed.chat_id, pressed.message_id) == (USER, USER, sent["message_id"])
    fake.user_presses(USER, sent["message_id"], "something else")
    assert read_last(fake).choice is None
    fake.stop_draft(USER, 77, None)
    assert read_last(fake) == StopPressed(f"tg:{last_update(fake).update_id}", USER, None, 77)


async def test_what_means_nothing() -> None:
    fake = FakeBotApi()
    fake.add_user(USER)
    sent = fake.user_sends(USER, "x")
    fake.user_sends(USER, "x, edited", edited_id=sent["message_id"])
    assert read_last(fake) is None
    fake.add_update({"message": {"message_id": 1, "date": 1, "chat": {"id": -5, "type": "group"},
                                 "from": {"id": USER, "is_bot": False, "first_name": "A"}, "text": "hi"}})
    assert read_last(fake) == InGroup(f"tg:{last_update(fake).update_id}", -5, None, USER)  # for the front end alone
    fake.add_update({"poll": {"id": "p"}})
    assert read_last(fake) is None
