"""Updates Telegram gives again after a crash, and urgent updates behind a backlog.

A crash between the core's durable handled mark and our offset confirmation makes
Telegram deliver that update again: the core turns it away as handled, and says so to
the front end (`handled`) once that is durable, which confirms it. It is not answered
twice, and it does not hold up the updates behind it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio

from tests.reposts import answer_counts, nothing_to_post_again
from tests.telegram_world import ALICE, FAST, TgWorld, tg_world


async def _serving_a_session(w: TgWorld) -> int:
    """The supervisor started (polling fast), with a session whose updates are all confirmed."""
    w.configure(telegram=FAST)
    w.spawn()
    topic = await w.new_session("a", timeout=30)
    await w.wait_for(lambda: not w.fake.pending_updates(), timeout=10)
    return topic


async def test_an_update_handled_but_not_confirmed_before_kill_9_is_confirmed_not_answered_again(
    tmp_path: Path,
) -> None:
    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            topic = await _serving_a_session(w)
            message = w.say("only once", topic)
            (update_id,) = [u["update_id"] for u in w.fake.pending_updates()
                            if u.get("message", {}).get("message_id") == message["message_id"]]  # fmt: skip
            await w.fake.wait_until(lambda: update_id in w.fake.delivered)
            # From now on no poll gets through: the offset past it never reaches Telegram.
            w.fake.fail("getUpdates", 502, count=10**6, hang_up=True)
            await w.answered(topic, "echo #1: only once", timeout=30)  # handled, durably
            await w.wait_for(lambda: nothing_to_post_again(w.tmp / "state"))  # its answer is not at stake
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


async def test_an_album_handled_but_not_confirmed_before_kill_9_comes_again_whole_and_is_confirmed(
    tmp_path: Path,
) -> None:
    """Its parts wait for its one handled mark; given again after a kill, they make the
    same one message again, turned away as handled: every part confirmed, none answered."""
    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            topic = await _serving_a_session(w)
            parts = [w.fake.user_sends(ALICE, text, thread_id=topic, photo=b"\xff\xd8jpeg", album="g1")
                     for text in ("two photos", "")]  # fmt: skip
            ids = [u["update_id"] for u in w.fake.pending_updates()
                   if u.get("message", {}).get("message_id") in {p["message_id"] for p in parts}]  # fmt: skip
            assert len(ids) == 2
            await w.fake.wait_until(lambda: all(i in w.fake.delivered for i in ids))
            w.fake.fail("getUpdates", 502, count=10**6, hang_up=True)
            await w.answered(topic, "echo #1: two photos", timeout=30)
            await w.wait_for(lambda: nothing_to_post_again(w.tmp / "state"))
            w.kill()
            memory = w.tmp / "state" / "telegram.json"
            memory.write_text(json.dumps(json.loads(memory.read_text()) | {"offset": ids[0]}))
            w.fake.clear_faults()
            w.spawn()
            await w.wait_for(lambda: all(len(w.fake.delivered[i]) >= 2 for i in ids), timeout=30)
            await w.wait_for(lambda: all(i in w.fake.confirmed for i in ids), timeout=30)
            w.say("next", topic)
            text = await w.answered(topic, "echo #2: next", timeout=30)
            assert text.count("echo #1: two photos") == 1 and "echo #3" not in text


async def test_a_stop_behind_more_than_a_hundred_queued_prompts_is_not_kept_waiting_and_none_is_lost(
    tmp_path: Path,
) -> None:
    count = 110  # more than one getUpdates answer holds
    with trio.fail_after(150):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topic = await w.new_session("a", timeout=30)
            w.say("[slow 60] a long turn", topic)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=30)
            for i in range(count):
                w.say(f"q{i}", topic)
            w.say("/stop", topic)
            # Before: the stop waited behind 100 unconfirmed prompts, until the turn ended.
            await w.answered(topic, "Interrupted", timeout=30)
            w.kill()  # with prompts still held by us, and no longer by Telegram
            shown_at_kill = w.text(topic)
            agents_before = set(w.prompts_by_process())
            memory = json.loads((w.tmp / "state" / "telegram.json").read_text())
            held = {u["message"]["text"] for u in memory["held"]}
            assert held, "some prompts were held"
            w.spawn()
            await w.answered(topic, f": q{count - 1} (", timeout=90)
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            reached = [prompts.count(f"q{i}") for i in range(count)]
            # Each reached an agent at most once. The one being handed over as the kill came
            # may not have: its mark is durable first (so it is never handed over twice), and
            # the agent died before reading it.
            assert set(reached) <= {0, 1} and reached.count(0) <= 1, prompts
            text = w.text(topic)
            # An answer on its way at the kill is posted again by the restart, below a line
            # that says so: a copy the person is told of, not a second answer.
            told_apart = answer_counts([s.message.get("text", "") for s in w.said(topic)], re.compile(r": (q\d+) \("))
            answers = [told_apart[f"q{i}"] for i in range(count)]
            assert set(answers) <= {0, 1}, answers  # never twice
            # At the kill, the turn running was cut, and so were the turns before it whose
            # answers were still on their way to paced Telegram; how many depends on the
            # machine's timing. Each of those got a notice instead (or, finished, its answer
            # posted again below the line that says so) and was never run again.
            # An answer shown before the kill stays, and every prompt the fresh agents
            # took after the restart is answered.
            shown = [i for i in range(count) if f": q{i} (" in shown_at_kill]
            fresh = {p for log, ps in w.prompts_by_process().items() if log not in agents_before for p in ps}
            taken_after = [i for i in range(count) if f"q{i}" in fresh]
            assert taken_after, "the backlog was taken after the restart"
            assert all(answers[i] == 1 for i in shown + taken_after), [i for i, a in enumerate(answers) if not a]
            assert all(answers[i] == 0 for i in range(count) if not reached[i])
            assert text.count("The supervisor restarted") >= answers.count(0)
            await w.wait_for(lambda: not w.fake.pending_updates(), timeout=10)
            await w.wait_for(lambda: not json.loads((w.tmp / "state" / "telegram.json").read_text())["held"])


async def test_a_stop_behind_one_queued_prompt_and_99_handled_updates_still_comes(
    tmp_path: Path,
) -> None:
    # One prompt waits for the running turn; 99 commands after it are answered at once.
    # The window from the offset (the queued prompt) to the newest update is then a whole
    # getUpdates answer: before, every poll returned those 100 and nothing newer came.
    with trio.fail_after(120):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            await w.start()
            topic = await w.new_session("a")
            w.say("[slow 60] a long turn", topic)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=30)
            w.say("queued one", topic)
            shown = len(w.said(None))
            for batch in range(1, 10):  # in small batches, each answered before the next:
                for _ in range(11):  # never 100 at once waiting for the core
                    w.say("/agents")
                answered = shown + 11 * batch
                await w.wait_for(lambda: len(w.said(None)) >= answered, timeout=30)  # noqa: B023
            w.say("/stop", topic)
            await w.answered(topic, "Interrupted", timeout=30)
            # The queued prompt is not lost: it runs once the turn is stopped.
            await w.answered(topic, "queued one", timeout=30)


@pytest.mark.slow  # it waits out the ledger's minute: about 65 s
async def test_a_prompt_that_waited_over_a_minute_is_not_run_twice_when_a_kill_cuts_its_release(
    tmp_path: Path,
) -> None:
    # A Telegram post's create_at is when we received it, and the core keeps a handled id
    # for a minute behind its place's newest post: a prompt held longer than that was
    # forgotten the moment it was marked. A kill before its release from telegram.json was
    # written handed it out again at the start, with a new create_at: run a second time.
    with trio.fail_after(150):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topic = await w.new_session("a", timeout=30)
            w.say("[slow 120] a long turn", topic)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=30)
            w.say("queued for over a minute", topic)
            memory_path = w.tmp / "state" / "telegram.json"

            def held() -> list[dict[str, object]]:
                held_updates: list[dict[str, object]] = json.loads(memory_path.read_text())["held"]
                return held_updates

            (queued,) = await w.wait_for(held, timeout=20)
            await trio.sleep(61)  # SLACK_MS: the core's minute
            w.say("/stop", topic)  # handled at once: the place's newest post
            await w.answered(topic, "echo #2: queued for over a minute", timeout=30)
            await w.wait_for(lambda: not held(), timeout=10)
            await w.wait_for(lambda: nothing_to_post_again(w.tmp / "state"))  # its answer is not at stake
            w.kill()
            # As if the kill had come between the core's handled mark and the write of
            # telegram.json that let the update go (both durable writes, one after the other).
            memory_path.write_text(json.dumps(json.loads(memory_path.read_text()) | {"held": [queued]}))
            w.spawn()
            await w.wait_for(lambda: not held(), timeout=30)
            w.say("next", topic)
            text = await w.answered(topic, ": next (", timeout=30)
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            assert prompts.count("queued for over a minute") == 1, prompts
            assert text.count(": queued for over a minute (") == 1
