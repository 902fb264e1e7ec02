"""The Bot API client: calls, typed errors, retries, pacing, and the token kept secret."""

from __future__ import annotations

import itertools
import json
import logging
import random
import traceback
from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio

from supervisor.chat.proxy import proxy_for
from supervisor.chat.telegram import choices
from supervisor.chat.telegram.calls import (
    CHAT_BUCKETS_KEPT,
    BadRequest,
    BotApiError,
    Conflict,
    Forbidden,
    NotFound,
    Pacing,
    TooManyRequests,
    Unauthorized,
    Unreachable,
)
from supervisor.chat.telegram.client import BotApi
from supervisor.core.backoff import Backoff
from tests.fakes.telegram_botapi import TOKEN, running

USER = 4242
# Distinctive, so that any leak is found by a plain substring search.
SECRET_TOKEN = "987654321:ZZsecretLEAKcanaryQQ_xyzzy-plugh"
SECRET_PART = "ZZsecretLEAKcanaryQQ"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def api_on(handler: Handler, **kwargs: object) -> BotApi:
    return BotApi(SECRET_TOKEN, api_url="https://api.example", transport=httpx.MockTransport(handler),
                  rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def ok(result: object) -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "result": result})


def refused(code: int, description: str, retry_after: int | None = None) -> httpx.Response:
    body: dict[str, object] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return httpx.Response(code, json=body)


async def test_calls_against_the_fake() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url)
            me = await api.get_me()
            assert me.is_bot and me.has_topics_enabled
            topic = await api.create_forum_topic(USER, "alpha")
            sent = await api.send_message(USER, "<b>hi</b> &amp; bye", thread_id=topic.message_thread_id,
                                          reply_markup=choices.buttons("r1"))
            assert sent.text == "hi & bye" and sent.topic_id == topic.message_thread_id
            await api.edit_message_text(USER, sent.message_id, "<b>hi</b> &amp; bye",
                                        reply_markup=choices.buttons("r1"))  # not modified: fine
            await api.edit_message_text(USER, sent.message_id, "done")
            assert fake.chat(USER).messages[sent.message_id].markup is None
            await api.send_message_draft(USER, 7, "partial…", thread_id=topic.message_thread_id)
            assert fake.chat(USER).drafts == [(topic.message_thread_id, 7, "partial…")]
            assert fake.chat(USER).live_drafts == {topic.message_thread_id: (7, "partial…")}
            await api.send_message(USER, "the answer", thread_id=topic.message_thread_id)
            assert fake.chat(USER).live_drafts == {}  # a real message ends the draft
            await api.send_chat_action(USER, thread_id=topic.message_thread_id)
            doc = await api.send_document(USER, "report.txt", b"data\x00\xff", caption_html="<i>r</i>")
            assert doc.document is not None and doc.document.file_name == "report.txt"
            assert await api.download(doc.document.file_id) == b"data\x00\xff"
            with pytest.raises(BadRequest, match=r"too big|larger"):
                await api.download(doc.document.file_id, max_bytes=3)
            query = fake.user_presses(USER, sent.message_id, "c1:a:r1")
            await api.answer_callback_query(query, "Allowed")
            assert fake.answered_queries == {query: "Allowed"}
            await api.aclose()


async def test_typed_errors_from_the_fake() -> None:
    with trio.fail_after(10):
        async with running(topics=False) as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url)
            with pytest.raises(BadRequest, match="not a forum"):
                await api.create_forum_topic(USER, "alpha")
            with pytest.raises(BadRequest, match="can't parse entities"):
                await api.send_message(USER, "<div>x</div>")
            with pytest.raises(BadRequest, match="too long"):
                await api.send_message(USER, "x" * 4097)
            with pytest.raises(BadRequest, match="BUTTON_DATA_INVALID"):
                await api.send_message(USER, "x", reply_markup={"inline_keyboard": [[
                    {"text": "a", "callback_data": "x" * 65}]]})
            fake.fail("sendMessage", 403, "Forbidden: bot was blocked by the user")
            with pytest.raises(Forbidden) as blocked:
                await api.send_message(USER, "x")
            assert blocked.value.status == 403 and "blocked" in blocked.value.description
            fake.set_webhook("https://hooks.example/x")
            with pytest.raises(Conflict, match="webhook"):
                await api.get_updates(None, poll_s=0, allowed_updates=["message"])
            fake.drafts = False
            with pytest.raises(NotFound):
                await api.send_message_draft(USER, 1, "x")
            wrong = BotApi("111:WrongToken", api_url=fake.url)
            with pytest.raises(Unauthorized):
                await wrong.get_me()
            await api.aclose()
            await wrong.aclose()


async def test_retry_after_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    sent_at: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(trio.current_time())
        if len(sent_at) == 1:
            return refused(429, "Too Many Requests: retry after 7", retry_after=7)
        return ok({"message_id": 1, "date": 1, "chat": {"id": USER, "type": "private"}})

    api = api_on(handler)
    await api.send_message(USER, "x")
    assert sent_at[1] - sent_at[0] == pytest.approx(7, abs=0.01)
    with pytest.raises(TooManyRequests) as raised:
        sent_at.clear()
        await api.call("getMe", retry=False)
    assert raised.value.retry_after == 7


async def test_a_429_holds_back_that_chat_only(autojump_clock: trio.abc.Clock) -> None:
    started: list[tuple[int, float]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        chat = json.loads(request.content)["chat_id"]
        started.append((chat, trio.current_time()))
        if len(started) == 1:
            return refused(429, "Too Many Requests: retry after 30", retry_after=30)
        return ok({"message_id": 1, "date": 1, "chat": {"id": chat, "type": "private"}})

    api = api_on(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(api.send_message, 1, "held")
        await trio.sleep(1)
        nursery.start_soon(api.send_message, 2, "free")
    assert [chat for chat, _ in started] == [1, 2, 1]
    assert started[1][1] == pytest.approx(1, abs=0.01)
    assert started[2][1] == pytest.approx(30, abs=0.01)


async def test_a_429_on_typing_holds_back_that_chat_not_the_long_poll(autojump_clock: trio.abc.Clock) -> None:
    """Typing is sent every few seconds per running turn and not paced as a message: a 429
    on it holds its chat (typing and messages both), never every chat and the long poll,
    which would leave every Stop and Allow unheard for the hold."""
    started: list[tuple[str, float]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        started.append((method, trio.current_time()))
        if method == "sendChatAction" and len(started) == 1:
            return refused(429, "Too Many Requests: retry after 30", retry_after=30)
        if method == "getUpdates":
            return ok([])
        if method == "sendChatAction":
            return ok(True)
        return ok({"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}})

    api = api_on(handler)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(api.send_chat_action, 1)
        await trio.sleep(1)
        await api.get_updates(None, poll_s=1, allowed_updates=["message"])
        await api.send_message(2, "another chat")
        nursery.start_soon(api.send_message, 1, "held with its chat")
    calls = [(m, round(t)) for m, t in started]
    assert calls[:3] == [("sendChatAction", 0), ("getUpdates", 1), ("sendMessage", 1)]
    assert sorted(calls[3:]) == [("sendChatAction", 30), ("sendMessage", 30)]  # both at the hold's end


async def test_server_errors_and_dead_connections_are_retried_with_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    attempts: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(trio.current_time())
        if len(attempts) == 1:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if len(attempts) == 2:
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        if len(attempts) == 3:
            return refused(500, "Internal Server Error")
        return ok(True)

    api = api_on(handler, backoff=Backoff(base=2.0, cap=8.0, floor=1.0))
    assert await api.call("sendChatAction", {"chat_id": 1, "action": "typing"}) is True
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert len(gaps) == 3 and all(1.0 <= gap <= 8.0 for gap in gaps)

    async def always_down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(Unreachable, match="Connection refused"):
        await api_on(always_down).get_me(retry=False)


async def test_the_long_poll_and_the_starts_getme_hear_telegram_back_within_seconds(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Nothing else would wake them after an outage (the long poll is how we hear at all):
    their pauses stay within the reconnect pace, not the other calls' (here a minute)."""
    tries: dict[str, list[float]] = {}

    async def handler(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        tries.setdefault(method, []).append(trio.current_time())
        if trio.current_time() < 300 * len(tries):
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        if method == "getMe":
            return ok({"id": 7, "is_bot": True, "first_name": "bot", "username": "bot"})
        return ok([])

    api = api_on(handler, backoff=Backoff(base=60.0, cap=60.0))
    assert (await api.get_me()).username == "bot"
    assert (await api.get_updates(None, poll_s=1, allowed_updates=["message"])).updates == []
    for times in tries.values():
        assert max(b - a for a, b in itertools.pairwise(times)) <= 5.0
    assert trio.current_time() <= 610


@pytest.mark.parametrize("failure", ["hang_up", "502"])
async def test_a_message_held_by_an_outage_is_sent_once_the_long_poll_is_answered(failure: str) -> None:
    """Its retry was asleep for a minute (as after a long outage): Telegram answering the
    long poll says it is back, and the message goes at once."""
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url, backoff=Backoff(base=60.0, cap=60.0, floor=60.0))
            fake.fail("sendMessage", 502, hang_up=failure == "hang_up")
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(api.send_message, USER, "the answer")
                    await fake.wait_until(lambda: bool(fake.calls_of("sendMessage")))
                    fake.user_sends(USER, "meanwhile")
                    await api.get_updates(None, poll_s=1, allowed_updates=["message"])
                    with trio.fail_after(3):
                        await fake.wait_until(lambda: len(fake.calls_of("sendMessage")) == 2)
            finally:
                await api.aclose()
            assert [sent.html for sent in fake.bot_messages(USER)] == ["the answer"]


async def test_not_modified_is_success_and_other_400s_are_not(
    autojump_clock: trio.abc.Clock,
) -> None:
    answers = [
        refused(400, "Bad Request: message is not modified: specified new message content "
                "and reply markup are exactly the same as a current content and reply markup"),
        refused(400, "Bad Request: message to edit not found"),
    ]  # fmt: skip

    async def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    api = api_on(handler)
    await api.edit_message_text(USER, 5, "same")
    with pytest.raises(BadRequest, match="not found") as raised:
        await api.edit_message_text(USER, 5, "gone")
    assert isinstance(raised.value, BotApiError) and raised.value.status == 400


async def test_messages_to_one_chat_are_paced(autojump_clock: trio.abc.Clock) -> None:
    started: list[tuple[int, float]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        chat = json.loads(request.content).get("chat_id", 0)
        started.append((chat, trio.current_time()))
        return ok({"message_id": 1, "date": 1, "chat": {"id": chat, "type": "private"}})

    api = api_on(handler, pacing=Pacing(per_chat_rate=1.0, per_chat_burst=3))
    async with trio.open_nursery() as nursery:
        for _ in range(6):
            nursery.start_soon(api.send_message, 1, "x")
        nursery.start_soon(api.send_message, 2, "other chat")
        nursery.start_soon(api.answer_callback_query, "q")  # not a message: never waits
    times = sorted(t for chat, t in started if chat == 1)
    assert times == pytest.approx([0, 0, 0, 1, 2, 3], abs=0.01)
    assert [t for chat, t in started if chat == 2] == pytest.approx([0], abs=0.01)
    assert [t for chat, t in started if chat == 0] == pytest.approx([0], abs=0.01)


async def test_the_buckets_of_chats_at_rest_are_forgotten(autojump_clock: trio.abc.Clock) -> None:
    """Each chat written to made a bucket kept for ever: a public bot refusing strangers
    grew without end. A bucket full again is a new one's twin; one still spent is kept."""

    async def handler(request: httpx.Request) -> httpx.Response:
        chat = json.loads(request.content).get("chat_id", 0)
        return ok({"message_id": 1, "date": 1, "chat": {"id": chat, "type": "private"}})

    api = api_on(handler, pacing=Pacing(per_chat_rate=1.0, per_chat_burst=3))
    for _ in range(3):
        await api.send_message(1, "x")  # chat 1 spent its burst: paced on, and kept
    for chat in range(2, 5000):
        await api.send_message(chat, "go away")
        await trio.sleep(0.1)
    chats = api._pacer._chats
    assert len(chats) <= CHAT_BUCKETS_KEPT and 4999 in chats
    started = trio.current_time()
    await api.send_message(4999, "x")
    await api.send_message(4999, "x")
    await api.send_message(4999, "x")
    assert trio.current_time() - started == pytest.approx(0.9, abs=0.01)  # its own bucket, spent 0.1 s ago


# --- the token never shows --------------------------------------------------------------


def leaks(texts: list[str]) -> list[str]:
    return [text for text in texts if SECRET_PART in text or SECRET_TOKEN in text]


def exception_texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), *traceback.format_exception(error)]


async def test_the_token_reaches_no_log_line_exception_or_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's, httpcore's
    texts: list[str] = []
    with trio.fail_after(20):
        async with running(token=SECRET_TOKEN) as fake:
            fake.add_user(USER)
            api = BotApi(SECRET_TOKEN, api_url=fake.url, backoff=Backoff(base=0.01, cap=0.02))
            await api.get_me()
            doc = await api.send_document(USER, "a.txt", b"abc")
            assert doc.document is not None
            assert await api.download(doc.document.file_id) == b"abc"
            fake.fail("getMe", 500, "Internal Server Error", count=2)
            await api.get_me()  # retried, logged
            fake.fail("sendMessage", 400, f"Bad Request: echoing /bot{SECRET_TOKEN}/sendMessage")
            with pytest.raises(BadRequest) as echoed:
                await api.send_message(USER, "x")
            texts += exception_texts(echoed.value)
            fake.fail("getMe", 0, hang_up=True)
            await api.get_me()  # the server hung up once: retried
            await api.aclose()
            port = int(fake.url.rsplit(":", 1)[1])
        # The fake has stopped: its port refuses connections now.
        dead = BotApi(SECRET_TOKEN, api_url=f"http://127.0.0.1:{port}")
        with pytest.raises(Unreachable) as unreachable:
            await dead.get_me(retry=False)
        texts += exception_texts(unreachable.value)
        await dead.aclose()

    async def quoting_transport(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}")

    api = api_on(quoting_transport)
    with pytest.raises(Unreachable) as quoted:
        await api.get_me(retry=False)
    texts += exception_texts(quoted.value)
    assert "REDACTED" in str(quoted.value)

    async def odd_transport(request: httpx.Request) -> httpx.Response:
        raise httpx.UnsupportedProtocol(f"no idea how to reach {request.url}")  # not retried

    with pytest.raises(httpx.UnsupportedProtocol) as odd:
        await api_on(odd_transport).get_me()
    texts += exception_texts(odd.value)
    assert "REDACTED" in str(odd.value)

    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    assert any("HTTP Request: POST" in text and "REDACTED" in text for text in texts)
    assert len([c for c in fake.calls if c.method == "getMe"]) >= 4  # the token did work
    assert leaks(texts) == []


def test_a_malformed_token_is_refused_without_being_shown() -> None:
    with pytest.raises(ValueError) as raised:
        BotApi(f"{SECRET_PART}/../x")
    assert leaks(exception_texts(raised.value)) == []


async def test_the_environments_proxy_is_used_and_the_token_still_goes_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with trio.fail_after(10):
        async with running() as fake:
            monkeypatch.setenv("http_proxy", fake.url)  # the fake plays the proxy
            monkeypatch.delenv("no_proxy", raising=False)
            monkeypatch.delenv("NO_PROXY", raising=False)
            api = BotApi(TOKEN, api_url="http://api.telegram.invalid")
            me = await api.get_me()
            await api.aclose()
    assert me.username == "fake_claude_bot"
    assert fake.proxied == ["http://api.telegram.invalid"]


def test_proxy_for_honours_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    assert proxy_for("https://api.telegram.org") == "http://proxy.example:3128"
    assert proxy_for("https://internal.example") is None
    monkeypatch.delenv("https_proxy")
    assert proxy_for("https://api.telegram.org") is None
