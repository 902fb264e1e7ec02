"""Updates Telegram gives again after a crash, and urgent updates behind a backlog.

A crash between the core's durable handled mark and our offset confirmation makes
Telegram deliver that update again: the core turns it away as handled, and says so to
the front end (`handled`) once that is durable, which confirms it. It is not answered
twice, and it does not hold up the updates behind it."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.telegram_world import tg_world

FAST = {"per_chat_rate": 50.0, "per_chat_burst": 50.0}


async def test_an_update_handled_but_not_confirmed_before_kill_9_is_confirmed_not_answered_again(
    tmp_path: Path,
) -> None:
    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topic = await w.new_session("a", timeout=30)
            await w.wait_for(lambda: not w.fake.pending_updates(), timeout=10)
            message = w.say("only once", topic)
            (update_id,) = [u["update_id"] for u in w.fake.pending_updates()
                            if u.get("message", {}).get("message_id") == message["message_id"]]  # fmt: skip
            await w.fake.wait_until(lambda: update_id in w.fake.delivered)
            # From now on no poll gets through: the offset past it never reaches Telegram.
            w.fake.fail("getUpdates", 502, count=10**6, hang_up=True)
            await w.answered(topic, "echo #1: only once", timeout=30)  # handled, durably
            w.kill()
            assert update_id not in w.fake.confirmed
            # The crash came before our own note of the offset, too (telegram.json): the
            # next start asks from before it, and Telegram gives it again.
            memory = w.tmp / "state" / "telegram.json"
            noted = json.loads(memory.read_text())
            assert noted["offset"] in (update_id, update_id + 1)
            memory.write_text(json.dumps(noted | {"offset": update_id}))
            w.fake.clear_faults()
            w.spawn()
            await w.wait_for(lambda: len(w.fake.delivered[update_id]) >= 2, timeout=30)
            await w.wait_for(lambda: update_id in w.fake.confirmed, timeout=30)
            w.say("next", topic)  # nothing waits behind it
            text = await w.answered(topic, "echo #2: next", timeout=30)
            assert text.count("echo #1: only once") == 1 and "echo #3" not in text
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            assert prompts.count("only once") == 1 and prompts.count("next") == 1
