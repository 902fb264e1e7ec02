"""A wall clock stepped back between two runs loses no message: the creation times the
front end gives people's messages go on from the last run's (kept in its memory), so the
core's ledger, whose cursor is in that old future, never takes a new one for dealt with."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from supervisor.chat import ChatUser
from supervisor.chat.telegram import link as link_module
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.telegram.memory import Memory
from tests.fakes.telegram_botapi import TOKEN
from tests.telegram_world import started_tg_world

TWO_HOURS_MS = 2 * 3600 * 1000


class AheadClock:
    """`time` as the link sees it, two hours ahead (a clock later stepped back)."""

    @staticmethod
    def time() -> float:
        return time.time() + TWO_HOURS_MS / 1000


def link_on(state: Path) -> TelegramLink:
    api = BotApi(TOKEN, api_url="http://127.0.0.1:9")  # never called
    return TelegramLink(api, ChatUser("tg:u:1", "bot", is_bot=True), Memory.open(state), topics=True)


async def test_stamps_go_on_above_the_last_runs_across_a_restart(tmp_path: Path) -> None:
    ahead = int(time.time() * 1000) + TWO_HOURS_MS
    first = link_on(tmp_path)
    first.memory.last_stamp_ms = ahead
    first.memory.changed()
    await first.memory.commit()
    second = link_on(tmp_path)  # a new run, the clock behind the last run's stamps
    stamp = second.now_ms()
    assert stamp > ahead
    await second.memory.commit()
    assert Memory.open(tmp_path).last_stamp_ms == stamp
    await first.api.aclose()
    await second.api.aclose()


async def test_a_message_after_a_clock_stepped_back_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(60):
        monkeypatch.setattr(link_module, "time", AheadClock)
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            w.say("before", topic)
            await w.answered(topic, "echo #1: before")
            await w.wait_for(lambda: not w.fake.pending_updates())  # handled, confirmed
            await w.stop()
            monkeypatch.setattr(link_module, "time", time)  # stepped back two hours
            await w.start()
            w.say("after", topic)
            await w.answered(topic, "echo #2: after")
