"""Property: whatever a person sends (text or none, a file with or without a caption, a
reply to any message, a topic of any name, a button with any data), with or without
topics, reading it never raises (an exception there would stop the front end, and again
at every start: the update is never confirmed)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.chat.telegram import codec
from tests.fakes.telegram_botapi import FakeBotApi, running
from tests.test_telegram_link import ALICE, MALLORY, front_end

TEXTS = st.sampled_from(["", " ", "hi", "/sessions", "!sessions", "/session", "/session a",
                         "/session a b", "/new", "/new x", "/end", "/stop", "/get", "[a] x"])  # fmt: skip
ACTIONS = st.lists(
    st.one_of(
        st.tuples(
            st.just("send"), st.sampled_from([ALICE, MALLORY]), TEXTS,
            st.sampled_from(["", "document", "photo"]), st.booleans(), st.booleans(),
        ),
        st.tuples(st.just("topic"), st.text(max_size=20)),
        st.tuples(st.just("press"), st.sampled_from([ALICE, MALLORY]), st.text(max_size=70)),
    ),
    max_size=12,
)


def act(fake: FakeBotApi, action: tuple[Any, ...], topics: bool) -> None:
    if action[0] == "topic":
        if topics:
            fake.user_creates_topic(ALICE, action[1] or "t")
    elif action[0] == "press":
        if pressed := fake.chat(action[1]).messages:
            fake.user_presses(action[1], max(pressed), action[2])
    else:
        _kind, user, text, file, in_topic, reply = action
        topic = next(iter(fake.chat(user).topics), None) if in_topic else None
        replied = max(fake.chat(user).messages, default=None) if reply else None
        document = ("notes.txt", b"x") if file == "document" else None
        fake.user_sends(user, text, thread_id=topic, reply_to=replied, document=document,
                        photo=b"jpeg" if file == "photo" else None)  # fmt: skip


@given(ACTIONS, st.booleans())
@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
def test_no_update_a_person_can_send_makes_reading_it_raise(actions: list[tuple[Any, ...]], topics: bool) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp, trio.fail_after(30):
            async with running(topics=topics) as fake:
                fake.add_user(ALICE)
                fake.add_user(MALLORY, "Mallory")
                for action in actions:
                    act(fake, action, topics)
                async with front_end(fake, Path(tmp), rate=1000) as (front, _events):
                    for raw in fake.pending_updates():
                        update = codec.decode_update(raw)
                        assert update is not None
                        await front._event_of(update)

    trio.run(main)

