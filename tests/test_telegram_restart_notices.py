"""What the Telegram kill -9 soak (`benchmarks/soak_telegram.py`) found about the notices a
restart leaves in a topic:

- a notice named no message: "the answer to your message was cut", in a topic where
  several prompts may be waiting (Mattermost's links the prompt's post; a private chat has
  no message links): it is a reply to the prompt now, and is sent all the same when the
  person deleted the prompt meanwhile (Telegram refuses a reply to a message that is gone
  unless told it may go without);
- a turn the agent finished whose answer was still a draft (or waiting for its
  `sendMessage`) when the supervisor was killed: the draft is gone and the answer never
  shows; its notice offers to run the prompt again (it once offered nothing).
"""

from __future__ import annotations

import json
from pathlib import Path

import trio

from supervisor.runtime.store import read_state
from tests.fakes.telegram_botapi import Sent
from tests.telegram_world import ALICE, FAST, TgWorld, started_tg_world, tg_world


def finished(w: TgWorld, prompt: str) -> bool:
    """An agent wrote its `result` line for the turn of `prompt`."""
    for path in w.agent_log.glob("*.jsonl"):
        turn = ""
        for raw in path.read_text().splitlines():
            entry = json.loads(raw)
            line = entry.get("line", {})
            if entry.get("event") == "stdin" and line.get("type") == "user":
                turn = str(line["message"]["content"])
            elif entry.get("event") == "stdout" and line.get("type") == "result" and turn == prompt:
                return True
    return False


def notice(w: TgWorld, topic: int, words: str) -> Sent | None:
    return next((s for s in w.said(topic) if words in s.message.get("text", "")), None)


async def test_the_notice_of_a_turn_a_kill_cut_replies_to_its_prompt(tmp_path: Path) -> None:
    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topic = await w.new_session("a", timeout=30)
            prompt = w.say("[slow 30] a long one", topic)
            w.say("queued behind it", topic)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=30)
            w.kill()
            w.spawn()
            cut = await w.wait_for(lambda: notice(w, topic, "that turn was cut"), timeout=30)
            await w.answered(topic, "echo #2: queued behind it", timeout=30)
            assert cut.message.get("reply_to_message", {}).get("message_id") == prompt["message_id"], cut.message


async def test_the_notice_of_a_cut_turn_whose_prompt_was_deleted_still_arrives(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("a")
            prompt = w.say("[crash] the agent dies in this turn", topic)
            w.fake.user_deletes(ALICE, prompt["message_id"])  # before the turn is even cut
            cut = await w.wait_for(lambda: notice(w, topic, "was cut"))
            assert "reply_to_message" not in cut.message, cut.message


async def test_a_finished_answer_a_kill_kept_from_telegram_shows_whole_after_the_restart(tmp_path: Path) -> None:
    """The agent finished; Telegram refused every message, so the answer was a draft when
    the kill came (a draft is gone with its sender). The next start posts it whole, under
    a line that says why: before, a notice said it "may be incomplete, or missing" and
    the person had to run the prompt again (its tools too) to read it."""
    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topic = await w.new_session("a", timeout=30)
            # The session starts once its `/new` is answered: that message must not fail.
            await w.answered(None, "Started session a", timeout=30)
            w.fake.fail("sendMessage", 500, count=10_000)  # the answer stays a draft
            w.say("hello", topic)
            await w.wait_for(lambda: finished(w, "hello"), timeout=30)
            # Killed once the supervisor has it on disk that the agent finished (before, the
            # next start says the turn was cut, a notice that always offered 🔁).
            await w.wait_for(lambda: _answered_on_disk(w), timeout=30)
            w.kill()
            # A send the kill caught in flight is still answered by the fake: with its fault,
            # as a server would have (cleared at once, it would be posted after the kill).
            await trio.sleep(0.5)
            w.fake.clear_faults()
            w.spawn()
            await w.answered(topic, "echo #1: hello", timeout=30)
            said = notice(w, topic, "here it is, whole")
            assert said is not None and said.markup is None, w.text(topic)  # nothing to run again
            assert w.text(topic).index("here it is, whole") < w.text(topic).index("echo #1: hello"), w.text(topic)
            await w.wait_for(lambda: not any(r.unsettled for r in read_state(w.tmp / "state").state.sessions.values()))


def _answered_on_disk(w: TgWorld) -> bool:
    state = read_state(w.tmp / "state").state
    return any(record.answered for record in state.sessions.values())
