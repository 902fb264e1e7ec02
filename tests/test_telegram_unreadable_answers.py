"""Answers that are not Telegram's end nothing: a proxy that refuses the way (ProxyError), a
body that does not decode, a captive portal's HTML page with status 200 or 403. The long
poll and the tasks beside it say so (never the token) and try again; a later message gets
through."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
import trio

from supervisor.chat.telegram import calls
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.config import TelegramConfig
from supervisor.chat.telegram.front import TelegramFrontEnd
from supervisor.core.backoff import Backoff
from supervisor.core.events import ChatEvent, Posted
from tests.fakes.telegram_botapi import TOKEN, running
from tests.telegram_world import started_tg_world

ALICE = 1001
PORTAL = "<html><body>Please log in to the hotel Wi-Fi</body></html>"


class ProxyInTheWay(httpx.AsyncBaseTransport):
    """The real transport, but the first `refusals` calls of `method` meet a proxy that will
    not open the way (as httpcore raises it for a CONNECT refused), or a body that does
    not decode."""

    def __init__(self, method: str, refusals: int, error: type[httpx.HTTPError] = httpx.ProxyError) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._method = method
        self._error = error
        self.refusals = refusals

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"/{self._method}") and self.refusals > 0:
            self.refusals -= 1
            raise self._error("407 Proxy Authentication Required")
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def no_token_in(caplog: pytest.LogCaptureFixture) -> None:
    secret = TOKEN.split(":", 1)[1]
    leaked = [r.getMessage() for r in caplog.records if secret in r.getMessage() or secret in str(r.exc_info)]
    assert not leaked


@pytest.mark.parametrize("error", [httpx.ProxyError, httpx.DecodingError])
async def test_a_proxy_and_a_portal_in_the_way_of_the_long_poll_end_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, error: type[httpx.HTTPError]
) -> None:
    caplog.set_level(logging.DEBUG, logger="supervisor")
    with trio.fail_after(30):
        async with running(topics=False) as fake:
            fake.add_user(ALICE)
            fake.fail("getUpdates", 200, page=PORTAL, count=2)
            transport = ProxyInTheWay("getUpdates", 3, error)
            config = TelegramConfig(allowed_user_ids=(ALICE,), token=TOKEN, api_url=fake.url, poll_s=1)
            send, receive = trio.open_memory_channel[ChatEvent](10)
            front = await TelegramFrontEnd.connect(config, tmp_path, send, transport=transport)
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(front.run)
                    fake.user_sends(ALICE, "still there?")
                    event = await receive.receive()
                    assert isinstance(event, Posted) and event.post.message == "still there?"
                    assert transport.refusals == 0 and not fake.calls_of("getUpdates")[0].reply  # the page came
                    nursery.cancel_scope.cancel()
            finally:
                await front.aclose()
    no_token_in(caplog)
    if error is httpx.ProxyError:  # said once while the proxy answers the same
        said = [r for r in caplog.records if "through the proxy" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.ERROR


async def test_a_portal_page_is_not_taken_for_telegrams_refusal() -> None:
    """An HTML 403 is no "the person blocked the bot": it is not Telegram's word."""

    async def portal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, text=PORTAL)

    api = BotApi(TOKEN, api_url="https://api.example", transport=httpx.MockTransport(portal))
    with trio.fail_after(5), pytest.raises(calls.BotApiError) as caught:
        await api.send_message(ALICE, "hi")
    assert not isinstance(caught.value, calls.Forbidden) and not caught.value.for_good
    await api.aclose()


async def test_a_proxy_refusal_is_retried_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    tries = 0

    async def proxy(request: httpx.Request) -> httpx.Response:
        nonlocal tries
        tries += 1
        if tries <= 4:
            raise httpx.ProxyError("403 Forbidden")
        return httpx.Response(200, json={"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "b",
                                                                "username": "b"}})  # fmt: skip

    api = BotApi(TOKEN, api_url="https://api.example", transport=httpx.MockTransport(proxy),
                 backoff=Backoff(base=0.01, cap=0.01))  # fmt: skip
    with trio.fail_after(5):
        me = await api.get_me()
    await api.aclose()
    assert me.id == 1 and tries == 5
    messages = [r.getMessage() for r in caplog.records]
    assert sum("through the proxy" in m for m in messages) == 1
    assert any("lets us through to Telegram again" in m for m in messages)


async def test_a_portal_page_on_the_long_poll_holds_up_nothing_for_long(tmp_path: Path) -> None:
    """The whole supervisor: a 200 and a 403 portal page answer the long poll; the prompt
    written meanwhile is answered."""
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            w.fake.fail("getUpdates", 403, page=PORTAL, count=2)
            await w.wait_for(lambda: [c for c in w.fake.calls_of("getUpdates") if not c.reply])
            w.say("hello", topic)
            await w.answered(topic, "echo #1: hello")
            assert [c.status for c in w.fake.calls_of("getUpdates") if not c.reply] == [403, 403]
            assert w.supervisor is not None
