"""A Telegram bot token refused while the supervisor runs (revoked, or a Bot API server
that will not take it for a while): said once, checked slowly, what is being sent waits
and goes once the token is taken again, and nothing ends; a passing 401 is no refusal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from supervisor.chat import token
from supervisor.chat.telegram.calls import Unauthorized
from supervisor.chat.telegram.client import BotApi
from tests.fakes.telegram_botapi import TOKEN, FakeBotApi, running
from tests.telegram_world import ALICE, started_tg_world

CHECK_EVERY_S = 0.5
REFUSED = "refuses the bot's token (401 on getMe)"


@pytest.fixture(autouse=True)
def _quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token, "CHECK_EVERY_S", CHECK_EVERY_S)


async def test_a_token_refused_while_running_holds_the_answers_says_so_once_and_ends_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Revoked mid-answer: one ERROR naming the cause (never the token), no stream of
    tries; once Telegram takes the token again, the answer that was streaming, a prompt
    written meanwhile and one written after are all answered."""
    caplog.set_level(logging.INFO)
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            w.say("[slow 2] streaming as it is revoked", topic)
            await w.wait_for(lambda: w.fake.chat(ALICE).live_drafts.get(topic))
            w.fake.revoke_token()
            await w.wait_for(lambda: REFUSED in caplog.text)
            w.say("written while it was refused", topic)
            calls = len(w.fake.calls)
            await trio.sleep(10 * CHECK_EVERY_S)
            meanwhile = w.fake.calls[calls:]
            assert sum(c.method == "getMe" for c in meanwhile) <= 11  # the checks, one each CHECK_EVERY_S
            assert len(meanwhile) <= 16  # and one try of each call held: no stream of tries
            assert "echo #1" not in w.text(topic)
            w.fake.accept_token()
            await w.answered(topic, "echo #1: streaming as it is revoked")
            await w.answered(topic, "written while it was refused")
            w.say("written after", topic)
            await w.answered(topic, "written after")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and REFUSED in errors[0], errors
    assert "revoked in @BotFather" in errors[0]
    assert "takes the bot's token again" in caplog.text
    assert TOKEN not in caplog.text and TOKEN.split(":")[1] not in caplog.text
    # The checks while it is refused are no stream of lines: the first one is said.
    assert sum("-> 401" in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO) <= 1


async def test_a_passing_401_is_no_refusal(caplog: pytest.LogCaptureFixture) -> None:
    """A proxy's 401 while a local Bot API server restarts: the token's check passes at
    once, and the message goes without a word of refusal."""
    with trio.fail_after(5):
        async with running() as fake, trio.open_nursery() as nursery:
            fake.add_user(ALICE)
            api = BotApi(TOKEN, api_url=fake.url)
            nursery.start_soon(api.watch_token)
            fake.fail("sendMessage", 401, "Unauthorized")
            sent = await api.send_message(ALICE, "through")
            assert fake.chat(ALICE).messages[sent.message_id].message["text"] == "through"
            nursery.cancel_scope.cancel()
            await api.aclose()
    assert "refuses" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_401_the_tokens_check_does_not_confirm_is_the_calls_own_refusal() -> None:
    """A method a proxy guards answers 401 while the token is fine: after a check that
    takes the token, a second 401 is that call's refusal, not a wait for good."""
    with trio.fail_after(5 * CHECK_EVERY_S):
        async with running() as fake, trio.open_nursery() as nursery:
            fake.add_user(ALICE)
            api = BotApi(TOKEN, api_url=fake.url)
            nursery.start_soon(api.watch_token)
            fake.fail("sendMessage", 401, "Unauthorized", count=2)
            with pytest.raises(Unauthorized):
                await api.send_message(ALICE, "guarded")
            nursery.cancel_scope.cancel()
            await api.aclose()


async def test_a_file_download_refused_for_the_token_waits_for_it() -> None:
    with trio.fail_after(5):
        async with running() as fake, trio.open_nursery() as nursery:
            fake.add_user(ALICE)
            document = fake.user_sends(ALICE, document=("a.txt", b"abc"))["document"]
            api = BotApi(TOKEN, api_url=fake.url)
            nursery.start_soon(api.watch_token)
            path = (await api.get_file(document["file_id"])).file_path
            assert path is not None
            fake.revoke_token()
            nursery.start_soon(_accept_once_refused, fake)
            assert await api.download_path(path, 100) == b"abc"
            nursery.cancel_scope.cancel()
            await api.aclose()


async def _accept_once_refused(fake: FakeBotApi) -> None:
    await fake.wait_until(lambda: any(c.method == "getMe" and c.status == 401 for c in fake.calls))
    fake.accept_token()


async def test_a_poll_refused_while_the_token_is_taken_goes_on_and_ends_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """getUpdates answered 401 (a proxy guarding it) while getMe takes the token: no
    "token refused" end of the supervisor, one ERROR saying what is refused, and the
    messages written meanwhile are answered once the poll is let through."""
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            w.fake.fail("getUpdates", 401, "Unauthorized", count=3)
            w.say("written while the poll was refused", topic)
            await w.answered(topic, "written while the poll was refused")
            w.say("and after", topic)
            await w.answered(topic, "and after")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refuses getUpdates (401) though it takes the bot's token" in errors[0], errors
