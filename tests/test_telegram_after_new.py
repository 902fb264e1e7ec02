"""What is written right after a `/new` goes where that `/new` says: the first message in a
topic the person opens reaches the session the topic becomes (not the how-to text); without
topics, text right after `/new beta` goes to beta, not to the session active before. Live,
and with the supervisor stopped meanwhile (both updates then come in one answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.chat.telegram import link as link_module
from tests.telegram_world import FAST, TgWorld, started_tg_world, tg_world


@pytest.mark.parametrize("stopped", [True, False])
async def test_the_first_message_in_a_topic_the_person_opens_reaches_its_session(
    tmp_path: Path, stopped: bool
) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            await w.new_session("alpha")  # the core is up and serving
            await w.answered(None, "Started session alpha")
            if stopped:
                await w.stop()
            topic = w.fake.user_creates_topic(1001, "fresh")
            w.say("first", topic)
            if stopped:
                await w.start()
            await w.answered(topic, "echo #1: first")
            assert "/new NAME" not in w.text(topic)  # no how-to text for it
            assert list(w.fake.chat(1001).topics.values()).count("fresh") == 1


async def no_topics(w: TgWorld) -> None:
    w.configure(telegram=FAST)
    await w.start()
    await w.new_sessions_without_topics("alpha")


@pytest.mark.parametrize("stopped", [True, False])
async def test_text_right_after_new_goes_to_the_new_session(tmp_path: Path, stopped: bool) -> None:
    with trio.fail_after(60):
        async with tg_world(tmp_path, topics=False) as w:
            await no_topics(w)
            (w.work / "beta").mkdir()
            if stopped:
                await w.stop()
            w.say(f"/new beta {w.work / 'beta'}")
            w.say("hello")
            if stopped:
                await w.start()
            said = await w.answered(None, "[beta] echo #1: hello")
            assert "[alpha] echo" not in said


async def test_text_after_a_refused_new_goes_where_it_went_before(tmp_path: Path) -> None:
    """A `/new` the core refuses (its name is taken) holds the text behind it only until
    its refusal: then the text goes to the active session, as before."""
    with trio.fail_after(60):
        async with tg_world(tmp_path, topics=False) as w:
            await no_topics(w)
            w.say(f"/new alpha {w.work / 'alpha'}")
            w.say("hello")
            said = await w.answered(None, "[alpha] echo #1: hello")
            assert "already called alpha" in said


async def _link_without_topics(w: TgWorld) -> Any:
    """The running Telegram link, its chat without topics and alpha active."""
    await no_topics(w)
    assert w.supervisor is not None
    return w.supervisor.chat.fronts[0].tg


async def test_a_new_taken_with_no_thread_after_it_holds_nothing_for_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `/new` the core turns away as handled before (a redelivery after a crash) has no
    thread opened after it: the text behind it waits a few seconds, not for ever."""
    monkeypatch.setattr(link_module, "ACCEPTED_GRACE_S", 0.5)
    with trio.fail_after(30):
        async with tg_world(tmp_path, topics=False) as w:
            tg = await _link_without_topics(w)
            tg.new_asked(1001, "ghost", "tg:1001:999999")
            tg.new_handled("tg:1001:999999")  # taken; no thread follows
            w.say("hello")
            await w.answered(None, "[alpha] echo #1: hello", timeout=10)


async def test_a_new_the_core_never_takes_holds_up_one_post_and_for_a_bounded_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(link_module, "NEW_PATIENCE_S", 0.5)
    with trio.fail_after(30):
        async with tg_world(tmp_path, topics=False) as w:
            tg = await _link_without_topics(w)
            tg.new_asked(1001, "ghost", "tg:1001:999998")  # never handled nor answered
            w.say("one")
            await w.answered(None, "[alpha] echo #1: one", timeout=10)
            w.say("two")
            await w.answered(None, "[alpha] echo #2: two", timeout=10)
            assert caplog.text.count("for the /new ghost") == 1
