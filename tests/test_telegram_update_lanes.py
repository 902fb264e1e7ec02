"""The update loop waits for no Bot API call that need not be in order: a stranger's
refusal, a button's answer or a topic being opened that Telegram holds up (429 with
retry_after 30, or no answer) holds no prompt of another topic; and the strangers told
are remembered for the hour that matters only, a bounded few."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from supervisor.chat import ChatUser
from supervisor.chat.telegram import ids
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.config import TelegramConfig
from supervisor.chat.telegram.front import REFUSE_EVERY_S, REFUSED_KEPT, TelegramFrontEnd
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.telegram.memory import Memory
from supervisor.core.events import ChatEvent
from tests.fakes.telegram_botapi import TOKEN
from tests.telegram_world import ALICE, MALLORY, TgWorld, started_tg_world

SLOW_S = 30  # what Telegram makes the slow call wait: retry_after
PROMPTLY_S = 8.0  # a prompt in another topic reaches its agent well within it


def strangers_message(w: TgWorld) -> None:
    w.fake.fail("sendMessage", 429, "Too Many Requests: retry after 30", retry_after=SLOW_S)
    w.fake.user_sends(MALLORY, "let me in")


def strangers_message_unanswered(w: TgWorld) -> None:
    w.fake.fail("sendMessage", 0, hang_up=True, count=1000)  # every try: no answer at all
    w.fake.user_sends(MALLORY, "let me in")


def strangers_press(w: TgWorld) -> None:
    header = w.fake.bot_messages(ALICE)[-1]
    w.fake.chat(MALLORY).messages[header.message["message_id"]] = header
    w.fake.fail("answerCallbackQuery", 429, "Too Many Requests: retry after 30", retry_after=SLOW_S)
    w.fake.user_presses(MALLORY, header.message["message_id"], "c1:a:r1")


def new_topic(w: TgWorld) -> None:
    (w.work / "beta").mkdir()
    w.fake.fail("createForumTopic", 429, "Too Many Requests: retry after 30", retry_after=SLOW_S)
    w.say(f"/new beta {w.work / 'beta'}")


# Each with whether Alice's chat is free meanwhile: the fake's faults are per method (every
# sendMessage hangs), and a 429 on a topic of hers holds her chat's messages, as Telegram's.
@pytest.mark.parametrize(
    ("slow", "method", "alice_free"),
    [
        (strangers_message, "sendMessage", True),
        (strangers_message_unanswered, "sendMessage", False),
        (strangers_press, "answerCallbackQuery", True),
        (new_topic, "createForumTopic", False),
    ],
)
async def test_a_call_telegram_holds_up_holds_no_prompt_of_another_topic(
    tmp_path: Path, slow: Any, method: str, alice_free: bool
) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            await w.answered(None, "alpha")  # the /new is answered: no message is on its way
            slow(w)
            await w.wait_for(lambda: any(c.method == method and c.status != 200 for c in w.fake.calls))
            w.say("hello alpha", topic)
            with trio.fail_after(PROMPTLY_S):
                await w.wait_for(lambda: "hello alpha" in str(w.prompts_by_process()))
            if alice_free:
                await w.answered(topic, "echo #1: hello alpha", timeout=PROMPTLY_S)
            w.fake.clear_faults()


def front_end(directory: Path, sent: list[int]) -> TelegramFrontEnd:
    def answer(request: httpx.Request) -> httpx.Response:
        chat = json.loads(request.content)["chat_id"]
        sent.append(chat)
        message = {"message_id": 1, "date": 1, "chat": {"id": chat, "type": "private"}}
        return httpx.Response(200, json={"ok": True, "result": message})

    api = BotApi(TOKEN, transport=httpx.MockTransport(answer))
    link = TelegramLink(api, ChatUser(ids.user(1), "bot", is_bot=True), Memory.open(directory), topics=True)
    send, _receive = trio.open_memory_channel[ChatEvent](0)
    return TelegramFrontEnd(TelegramConfig(allowed_user_ids=(ALICE,), token=TOKEN), api, link, send,
                            bot_username="bot")  # fmt: skip


async def test_the_strangers_told_are_bounded_and_a_recent_one_is_not_told_again(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    sent: list[int] = []
    front = front_end(tmp_path, sent)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(front.refusals.run)
        strangers = range(10_000, 10_000 + 5 * REFUSED_KEPT)
        for chat in strangers:  # a crowd within the hour
            assert front._refuse(chat, None)
            await trio.sleep(1)
        assert len(front._refused) <= REFUSED_KEPT
        assert not front._refuse(strangers[-1], None)  # told a second ago
        await trio.sleep(REFUSE_EVERY_S / 2)
        assert not front._refuse(strangers[-1], None)  # within the hour still
        await trio.sleep(REFUSE_EVERY_S / 2)
        assert front._refuse(4242, None)  # the hour has passed for all the others
        assert list(front._refused) == [4242]
        assert front._refuse(strangers[-1], None)  # told again, an hour on
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert sorted(sent) == sorted([*strangers, 4242, strangers[-1]])
