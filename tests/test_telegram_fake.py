"""The fake Bot API keeps Telegram's semantics, and both sides keep the 10.1 schema."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
import trio

from supervisor.chat.telegram import choices
from supervisor.chat.telegram.calls import BadRequest, Conflict, Pacing
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.render import render_parts
from supervisor.chat.telegram.updates import UpdateSource
from tests.fakes.telegram_botapi import TOKEN, FakeBotApi, running
from tests.fakes.telegram_schema import (
    call_problems,
    request_problems,
    result_problems,
)

USER = 4242


async def raw(fake: FakeBotApi, method: str, **params: Any) -> dict[str, Any]:
    """One request exactly as given, bypassing our client."""
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{fake.url}/bot{fake.token}/{method}", json=params)
    body: dict[str, Any] = response.json()
    return body


def schema_problems(fake: FakeBotApi) -> list[str]:
    return call_problems(fake.calls)


async def test_every_request_and_answer_keeps_the_schema() -> None:
    with trio.fail_after(20):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url, pacing=Pacing(per_chat_rate=50, per_chat_burst=50))
            source = UpdateSource(api, poll_s=1)
            send, receive = trio.open_memory_channel[Any](20)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                await api.get_me()
                await api.get_webhook_info()
                topic = await api.create_forum_topic(USER, "alpha")
                thread = topic.message_thread_id
                for part in render_parts("**hi** `x`\n\n```py\nprint(1)\n```", limit=20):
                    await api.send_message(USER, part, thread_id=thread)
                asking = await api.send_message(USER, "Allow <code>ls</code>?", thread_id=thread,
                                                reply_markup=choices.buttons("p1"))  # fmt: skip
                await api.send_message_draft(USER, 3, "streaming…", thread_id=thread)
                await api.send_chat_action(USER, thread_id=thread)
                doc = await api.send_document(USER, "a.txt", b"abc", thread_id=thread)
                assert doc.document is not None
                await api.download(doc.document.file_id)
                # A person writes, sends a file and a photo, opens a topic, presses a button.
                fake.user_sends(USER, "/new beta")
                fake.user_sends(USER, "prompt", thread_id=thread)
                fake.user_sends(USER, "see file", thread_id=thread, document=("n.csv", b"1,2"))
                fake.user_sends(USER, "", thread_id=thread, photo=b"\xff\xd8jpeg")
                fake.user_creates_topic(USER, "mine")
                query = fake.user_presses(USER, asking.message_id, choices.encode(choices.ChoiceKind.ALLOW_ONCE, "p1"))
                replied = fake.user_sends(USER, "a reply", reply_to=asking.message_id)
                fake.user_sends(USER, "edited", edited_id=replied["message_id"])
                for _ in range(8):
                    update = await receive.receive()
                    if update.message and update.message.photo:
                        await api.download(update.message.photo[-1].file_id)
                    source.confirm(update.update_id)
                await api.answer_callback_query(query, "Allowed")
                await api.edit_message_text(USER, asking.message_id, "Allowed: <code>ls</code>")
                await api.edit_message_reply_markup(USER, asking.message_id, choices.buttons("p2"))
                await api.edit_message_reply_markup(USER, asking.message_id)
                with pytest.raises(BadRequest):
                    await api.send_message(USER, "<b>unclosed")
                await fake.wait_until(lambda: len(fake.pending_updates()) == 0)
                nursery.cancel_scope.cancel()
            await api.aclose()
    methods = {call.method for call in fake.calls}
    assert {"getUpdates", "deleteWebhook", "sendMessage", "sendDocument", "getFile",
            "createForumTopic", "sendMessageDraft", "editMessageText",
            "editMessageReplyMarkup", "answerCallbackQuery", "sendChatAction"} <= methods  # fmt: skip
    assert schema_problems(fake) == []


async def test_the_schema_check_can_fail() -> None:
    assert request_problems("sendMessage", {"chat_id": 1, "txt": "x"}) == [
        "sendMessage.txt: not a field of sendMessage",
        "sendMessage.text: required, missing",
    ]
    assert result_problems("getMe", {"id": "1", "is_bot": True, "first_name": "b"})
    assert result_problems("sendMessage", {"message_id": 1, "date": 1, "chat": {"id": 1}})
    assert request_problems("sendMessageDraft", {"chat_id": 1, "draft_id": 2, "can_stop": True}) == []


async def test_offsets_confirm_and_long_polls_wake() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(USER)
            first = fake.user_sends(USER, "one")
            answer = await raw(fake, "getUpdates", timeout=0)
            (update,) = answer["result"]
            assert update["message"]["text"] == first["text"]
            again = await raw(fake, "getUpdates", timeout=0)  # no offset: not confirmed
            assert [u["update_id"] for u in again["result"]] == [update["update_id"]]
            async with trio.open_nursery() as nursery:
                woke: list[dict[str, Any]] = []

                async def poll() -> None:
                    woke.append(await raw(fake, "getUpdates", offset=update["update_id"] + 1, timeout=30))

                nursery.start_soon(poll)
                await fake.wait_until(lambda: len(fake.arrived) == 3)
                assert update["update_id"] in fake.confirmed  # the offset confirmed it
                fake.user_sends(USER, "two")
            assert [u["message"]["text"] for u in woke[0]["result"]] == ["two"]


async def test_a_second_poll_ends_the_first_with_409() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            answers: list[dict[str, Any]] = []
            async with trio.open_nursery() as nursery:

                async def poll() -> None:
                    answers.append(await raw(fake, "getUpdates", timeout=30))

                nursery.start_soon(poll)
                await fake.wait_until(lambda: len(fake.arrived) == 1)
                newer = await raw(fake, "getUpdates", timeout=0)
            assert newer["ok"]
            assert answers[0]["error_code"] == 409 and "terminated by other" in answers[0]["description"]


async def test_limits_are_counted_like_telegram() -> None:
    with trio.fail_after(10):
        async with running(topics=False) as fake:
            fake.add_user(USER)
            assert (await raw(fake, "sendMessage", chat_id=USER, text="😀" * 2048))["ok"]
            too_long = await raw(fake, "sendMessage", chat_id=USER, text="😀" * 2049)
            assert too_long["description"] == "Bad Request: message is too long"
            html = "<b>" + "a" * 4096 + "</b>"  # tags do not count
            assert (await raw(fake, "sendMessage", chat_id=USER, text=html, parse_mode="HTML"))["ok"]
            empty = await raw(fake, "sendMessage", chat_id=USER, text="<b> </b>", parse_mode="HTML")
            assert empty["description"] == "Bad Request: message text is empty"
            data_65 = {"inline_keyboard": [[{"text": "x", "callback_data": "é" * 33}]]}
            refused = await raw(fake, "sendMessage", chat_id=USER, text="x", reply_markup=data_65)
            assert refused["description"] == "Bad Request: BUTTON_DATA_INVALID"
            topic = await raw(fake, "createForumTopic", chat_id=USER, name="t")
            assert topic["description"] == "Bad Request: the chat is not a forum"
            sent = await raw(fake, "sendMessage", chat_id=USER, text="same")
            same = await raw(fake, "editMessageText", chat_id=USER,
                             message_id=sent["result"]["message_id"], text="same")  # fmt: skip
            assert same["description"].startswith("Bad Request: message is not modified")
            assert (await raw(fake, "getMe"))["result"]["has_topics_enabled"] is False


async def test_a_reply_needs_its_message_in_the_same_topic_unless_it_may_go_without() -> None:
    """As Telegram: a reply to a message that is gone is refused, unless
    `allow_sending_without_reply` (then it is sent as no reply); one to a message of
    another topic is refused either way; without a topic, a reply goes to its message's."""
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(USER)
            alpha, beta = fake.user_creates_topic(USER, "alpha"), fake.user_creates_topic(USER, "beta")
            prompt = fake.user_sends(USER, "a prompt", thread_id=alpha)["message_id"]
            gone = fake.user_sends(USER, "deleted", thread_id=alpha)["message_id"]
            fake.user_deletes(USER, gone)

            async def reply(to: int, topic: int | None, **more: Any) -> dict[str, Any]:
                params = {"reply_parameters": {"message_id": to, **more}}
                return await raw(fake, "sendMessage", chat_id=USER, text="notice", **params,
                                 **({"message_thread_id": topic} if topic else {}))  # fmt: skip

            quoting = await reply(prompt, alpha)
            assert quoting["result"]["reply_to_message"]["message_id"] == prompt
            refused = await reply(gone, alpha)
            assert refused["description"] == "Bad Request: message to be replied not found"
            without = await reply(gone, alpha, allow_sending_without_reply=True)
            assert without["ok"] and "reply_to_message" not in without["result"]
            assert without["result"]["message_thread_id"] == alpha
            elsewhere = await reply(prompt, beta, allow_sending_without_reply=True)
            assert elsewhere["description"] == "Bad Request: message to be replied not found"
            placed = await reply(prompt, None)
            assert placed["result"]["message_thread_id"] == alpha
            assert schema_problems(fake) == []


async def test_rate_limits_answer_429_with_retry_after() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(USER)
            fake.rate_limit(per_second=0.2, burst=3)  # slow enough for a contended CPU
            answers = [await raw(fake, "sendMessage", chat_id=USER, text=f"m{i}") for i in range(4)]
            assert [a["ok"] for a in answers] == [True, True, True, False]
            assert answers[3]["error_code"] == 429
            assert 1 <= answers[3]["parameters"]["retry_after"] <= 5
            assert answers[3]["description"].startswith("Too Many Requests: retry after")
            assert (await raw(fake, "sendChatAction", chat_id=USER, action="typing"))["ok"]


async def test_four_chats_streaming_under_rate_limits_lose_nothing() -> None:
    """Acceptance 6 at the client's level: 1 message/s per chat, burst 3, four chats at
    once, six messages each. Our pacing set too fast on purpose, so that 429s happen:
    every one is waited out and every message arrives once, in order."""
    users = [101, 102, 103, 104]
    with trio.fail_after(30):
        async with running() as fake:
            for user in users:
                fake.add_user(user)
            fake.rate_limit(per_second=1.0, burst=3)
            api = BotApi(TOKEN, api_url=fake.url, pacing=Pacing(per_chat_rate=4, per_chat_burst=4),
                         rng=random.Random(2))  # fmt: skip

            async def stream(user: int) -> None:
                for i in range(6):
                    await api.send_message(user, f"part {i} of {user}")

            async with trio.open_nursery() as nursery:
                for user in users:
                    nursery.start_soon(stream, user)
            await api.aclose()
    limited = [call for call in fake.calls if call.status == 429]
    assert limited  # the test did provoke the limiter
    for user in users:
        texts = [sent.message["text"] for sent in fake.bot_messages(user)]
        assert texts == [f"part {i} of {user}" for i in range(6)]
    # Each 429 was waited out: the chat's next request came retry_after later at least.
    for hit in limited:
        chat = hit.params["chat_id"]
        later = [c for c in fake.calls if c.seq > hit.seq and c.params.get("chat_id") == chat]
        assert later and later[0].at - hit.at >= hit.reply["parameters"]["retry_after"] - 0.05


async def test_our_pacing_keeps_429s_away() -> None:
    with trio.fail_after(30):
        async with running() as fake:
            fake.add_user(USER)
            fake.rate_limit(per_second=1.0, burst=3)
            api = BotApi(TOKEN, api_url=fake.url)  # the default pacing: 1/s, burst 3
            for i in range(6):
                await api.send_message(USER, f"m{i}")
            await api.aclose()
    assert [c.status for c in fake.calls] == [200] * 6


async def test_a_query_is_answered_once_and_webhooks_block_polling() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(USER)
            sent = await raw(fake, "sendMessage", chat_id=USER, text="x")
            query = fake.user_presses(USER, sent["result"]["message_id"], "c1:a:r")
            assert (await raw(fake, "answerCallbackQuery", callback_query_id=query))["ok"]
            twice = await raw(fake, "answerCallbackQuery", callback_query_id=query)
            assert "query is too old" in twice["description"]
            fake.set_webhook("https://x.example/h")
            api = BotApi(TOKEN, api_url=fake.url)
            with pytest.raises(Conflict):
                await api.get_updates(None, poll_s=0, allowed_updates=["message"])
            await api.delete_webhook()
            assert len((await api.get_updates(None, poll_s=0, allowed_updates=["callback_query"])).updates) == 1
            await api.aclose()
