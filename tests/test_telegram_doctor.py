"""`check` for a Telegram bot: token, topic mode, webhook, each one line with a fix."""

from __future__ import annotations

import trio

from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.doctor import Check, telegram_checks
from tests.fakes.telegram_botapi import TOKEN, running

SECRET_TOKEN = "555:ZZdoctorCANARYtoken_abc"


async def checks_for(url: str, token: str = TOKEN) -> list[Check]:
    api = BotApi(token, api_url=url)
    try:
        return await telegram_checks(api, network_s=3)
    finally:
        await api.aclose()


async def test_all_good_with_topics() -> None:
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            token, topics, webhook = await checks_for(fake.url)
    assert token.ok and "@fake_claude_bot" in token.detail
    assert topics.ok and "topic mode on" in topics.detail and not topics.fix
    assert webhook.ok and "none set" in webhook.detail


async def test_topic_mode_off_is_fine_but_says_how_to_switch_it_on() -> None:
    with trio.fail_after(10):
        async with running(topics=False) as fake:
            _token, topics, _webhook = await checks_for(fake.url)
    assert topics.ok and "topic mode off" in topics.detail
    assert "BotFather" in topics.fix and "Threaded mode" in topics.fix


async def test_a_webhook_is_named_with_a_fix() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.set_webhook("https://hooks.example.org/tg/secret-path")
            fake.add_user(7)
            fake.user_sends(7, "waiting")
            _token, _topics, webhook = await checks_for(fake.url)
            assert fake.webhook_url  # the doctor only looks
    assert not webhook.ok
    assert "hooks.example.org" in webhook.detail and "secret-path" not in webhook.detail
    assert "1 update(s) waiting" in webhook.detail and webhook.fix


async def test_a_refused_token_fails_and_skips_the_rest_without_showing_it() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            results = await checks_for(fake.url, SECRET_TOKEN)
    token, topics, webhook = results
    assert not token.ok and "401" in token.detail and "BotFather" in token.fix
    assert not topics.ok and "skipped" in topics.detail
    assert not webhook.ok and "skipped" in webhook.detail
    assert all("CANARY" not in f"{r.detail} {r.fix}" for r in results)


async def test_an_unreachable_api_fails_plainly() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            url = fake.url
        token, _topics, _webhook = await checks_for(url)  # the fake has stopped
    assert not token.ok and "cannot reach the Bot API" in token.detail
    assert "Connect" in token.detail


async def test_a_server_that_hangs_up_is_not_retried_by_the_doctor() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.fail("getMe", 0, hang_up=True)
            api = BotApi(TOKEN, api_url=fake.url)
            results = await telegram_checks(api, network_s=3)
            await api.aclose()
    assert not results[0].ok and "cannot reach the Bot API" in results[0].detail
    assert len(fake.arrived) == 1


async def test_the_people_line_names_who_can_be_answered_and_who_never_pressed_start() -> None:
    """A bot cannot write first: an allowed person with no chat with it yet (or an id that
    is not theirs) would hear nothing, so `check` names them, with what to do."""
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(7, username="alice_tg")
            fake.add_user(8)
            api = BotApi(TOKEN, api_url=fake.url)
            try:
                *_, everyone = await telegram_checks(api, network_s=3, people=(7, 8))
                *_, missing = await telegram_checks(api, network_s=3, people=(9, 7))
            finally:
                await api.aclose()
    assert everyone.ok and everyone.detail == "@alice_tg, 8 can be answered" and not everyone.fix
    assert missing.ok and missing.detail == "no chat with the bot yet: 9 (@alice_tg can be answered)"
    assert "presses Start" in missing.fix


async def test_the_people_line_is_skipped_with_a_refused_token() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            api = BotApi(SECRET_TOKEN, api_url=fake.url)
            try:
                results = await telegram_checks(api, network_s=3, people=(7,))
            finally:
                await api.aclose()
    assert [r.name for r in results][-1] == "telegram people" and "skipped" in results[-1].detail


async def test_the_people_line_counts_an_id_listed_twice_once_and_names_other_refusals() -> None:
    with trio.fail_after(10):
        async with running() as fake:
            fake.add_user(7, username="alice_tg")
            api = BotApi(TOKEN, api_url=fake.url)
            try:
                *_, twice = await telegram_checks(api, network_s=3, people=(7, 7))
                fake.fail("getChat", 400, "Bad Request: something else", count=1)
                *_, other = await telegram_checks(api, network_s=3, people=(7,))
            finally:
                await api.aclose()
    assert twice.ok and twice.detail == "@alice_tg can be answered"
    assert not other.ok and "7: Bad Request: something else" in other.detail and "Start" not in other.fix
