"""Property: whatever the interleaving, a message written in a topic reaches the core as a
post of that topic's thread, and nothing else does; without topics, plain text goes to
the active session and a reply to a session's message goes to that session."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.chat import ChatUser
from supervisor.chat.telegram import ids, incoming
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import Chat, Message, Update, User
from supervisor.chat.telegram.config import TelegramConfig
from supervisor.chat.telegram.front import TelegramFrontEnd
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.telegram.memory import Memory, ThreadInfo
from supervisor.core.events import ChatEvent, Posted
from tests.fakes.telegram_botapi import TOKEN

ALICE = 1001
TOPICS = [11, 12, 13, 14]
WRITES = st.lists(
    st.tuples(st.sampled_from([None, *TOPICS]), st.sampled_from(["hi", "/stop", "/new x", "!end", "text"])),
    max_size=30,
)


def front_end(directory: Path, topics: bool) -> TelegramFrontEnd:
    # No request is made: the transport refuses everything on purpose.
    api = BotApi(TOKEN, transport=httpx.MockTransport(lambda _request: httpx.Response(599)))
    memory = Memory.open(directory)
    for topic in TOPICS:
        root = ids.post(ALICE, topic)
        memory.threads[root] = ThreadInfo(ALICE, f"s{topic}", topic if topics else None, topic)
    link = TelegramLink(api, ChatUser(ids.user(1), "bot", is_bot=True), memory, topics=topics)
    send, _receive = trio.open_memory_channel[ChatEvent](0)
    config = TelegramConfig(allowed_user_ids=(ALICE,), token=TOKEN)
    return TelegramFrontEnd(config, api, link, send, bot_username="bot")


def update(n: int, topic: int | None, text: str, reply_to: int | None = None) -> Update:
    chat = Chat(ALICE, "private")
    replied = Message(reply_to, 1, chat, text=f"[s{reply_to}] earlier") if reply_to else None
    message = Message(
        1000 + n, 1, chat, sender=User(ALICE), text=text, message_thread_id=topic,
        is_topic_message=topic is not None, reply_to_message=replied,
    )  # fmt: skip
    return Update(n, message=message)


async def posted(front: TelegramFrontEnd, item: Update) -> Posted | None:
    read = incoming.read_update(item, "bot")
    assert isinstance(read, incoming.Posted)
    return await front._posted(read)


@given(WRITES)
@settings(deadline=None)
def test_a_message_in_a_topic_is_a_post_of_that_topics_thread(writes: list[tuple[int | None, str]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            front = front_end(Path(tmp), topics=True)
            seen_ms = 0
            for n, (topic, text) in enumerate(writes):
                event = await posted(front, update(n, topic, text))
                assert event is not None
                assert event.post.root_id == (ids.post(ALICE, topic) if topic is not None else "")
                assert event.post.id == ids.post(ALICE, 1000 + n)
                assert event.post.create_at > seen_ms  # a cursor for the core's ledger
                seen_ms = event.post.create_at
            await front.aclose()

    trio.run(main)


@given(WRITES, st.sampled_from(TOPICS), st.lists(st.sampled_from([None, *TOPICS]), max_size=30))
@settings(deadline=None)
def test_without_topics_text_goes_to_the_active_session_and_replies_to_their_session(
    writes: list[tuple[int | None, str]], active: int, replies: list[int | None]
) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            front = front_end(Path(tmp), topics=False)
            front.tg.memory.active[ids.channel(ALICE)] = ids.post(ALICE, active)
            for n, ((_topic, text), reply_to) in enumerate(zip(writes, replies + [None] * 30, strict=False)):
                event = await posted(front, update(n, None, text, reply_to))
                assert event is not None
                if text == "/new x":
                    assert event.post.root_id == ""  # a command of the main view
                    # Refused, as the core would (answered): what follows waits for it no more.
                    front.tg._new_settled(event.post.id)
                elif reply_to is not None:
                    assert event.post.root_id == ids.post(ALICE, reply_to)
                else:
                    assert event.post.root_id == ids.post(ALICE, active)
            await front.aclose()

    trio.run(main)
