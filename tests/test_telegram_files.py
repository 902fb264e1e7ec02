"""Files a person sends the bot: a photo or document with no caption and no session to go
to is answered with guidance (and never stops the front end); a photo sent to a session
reaches the agent as image content."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import trio

from tests.telegram_world import ALICE, TgWorld, started_tg_world

# The smallest JPEG header is enough: the agent is handed the bytes as they came.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(16)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"


def _user_prompts(w: TgWorld) -> list[list[dict[str, Any]]]:
    """The content blocks of every prompt the fake agents were given."""
    found = []
    for path in sorted(w.agent_log.glob("*.jsonl")):
        for raw in path.read_text().splitlines():
            line = json.loads(raw)
            message = line.get("line", {}) if line.get("event") == "stdin" else {}
            if message.get("type") == "user" and isinstance(message["message"]["content"], list):
                found.append(message["message"]["content"])
    return found


async def test_without_topics_a_file_with_no_caption_and_no_session_is_guided_and_nothing_stops(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path, topics=False) as w:
            w.fake.user_sends(ALICE, photo=JPEG)  # no caption, no session yet
            await w.answered(None, "none is active now")
            w.fake.user_sends(ALICE, document=("notes.txt", b"hello"))
            await w.wait_for(lambda: w.text(None).count("none is active now") == 2)
            await w.new_sessions_without_topics("a")
            # A reply to a message of no session, with a file: the active session takes it.
            w.fake.user_sends(ALICE, "look", photo=JPEG)
            await w.answered(None, "[a] echo #1: look")
            assert w.fake.pending_updates() == []  # every update confirmed: none is replayed


async def test_a_photo_sent_to_a_session_reaches_the_agent_as_image_content(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("pics")
            w.fake.user_sends(ALICE, "what is this", thread_id=topic, photo=JPEG)
            await w.answered(topic, "echo #1")
            w.fake.user_sends(ALICE, "and this", thread_id=topic, document=("pixel.png", PNG))
            await w.answered(topic, "echo #2")
            images = [block["source"] for prompt in _user_prompts(w) for block in prompt
                      if block.get("type") == "image"]  # fmt: skip
            assert [(i["media_type"], base64.b64decode(i["data"])) for i in images] == [
                ("image/jpeg", JPEG), ("image/png", PNG)
            ]


async def test_a_voice_note_sent_to_a_session_is_saved_and_handed_to_the_agent(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("voice")
            sent = w.fake.user_sends(ALICE, thread_id=topic, voice=b"OggS voice")
            await w.answered(topic, "echo #1")
            name = f"voice-{sent['message_id']}.ogg"
            saved = list((w.work / "voice").glob(f".supervisor/uploads/*/{name}"))
            assert [p.read_bytes() for p in saved] == [b"OggS voice"]
            assert name in w.text(topic)


async def test_an_album_is_one_prompt_with_all_its_photos_and_captions(tmp_path: Path) -> None:
    """Telegram sends each photo of an album as a message of its own (the caption on
    one): each was a prompt, a turn and an answer of its own. The last part may come in
    a later `getUpdates` than the first."""
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("pics")
            w.fake.user_sends(ALICE, "compare these", thread_id=topic, photo=JPEG, album="a1")
            w.fake.user_sends(ALICE, thread_id=topic, photo=JPEG, album="a1")
            await trio.sleep(0.3)
            w.fake.user_sends(ALICE, "the last one is new", thread_id=topic, photo=JPEG, album="a1")
            w.fake.user_sends(ALICE, "and a word after", thread_id=topic)
            await w.answered(topic, "echo #2: and a word after")
            assert "echo #1: compare these\n\nthe last one is new" in w.text(topic)
            assert "echo #3" not in w.text(topic)
            [album] = _user_prompts(w)  # the one with content blocks: the word after is text
            assert sum(block.get("type") == "image" for block in album) == 3
            assert len(list((w.work / "pics").glob(".supervisor/uploads/*/photo-*.jpg"))) == 3
            assert w.fake.pending_updates() == []  # every part confirmed


async def test_a_file_over_telegrams_20_mb_is_refused_by_its_name_without_asking_for_it(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("big")
            w.fake.user_sends(ALICE, "look at this", thread_id=topic, document=("holiday.mov", bytes(21 * 1024 * 1024)))
            said = await w.answered(topic, "Not saved")
            assert "Not saved: holiday.mov (22.0 MB, over the 20 MB a bot may fetch from Telegram" in said
            assert not w.fake.calls_of("getFile")  # refused before asking
