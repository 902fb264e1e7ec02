"""Issue 12, acceptance 3, end to end: a 40,000-character answer with a code block across
the splits, from a real (fake) agent process through the real supervisor to the fake Bot
API: complete, in order, every message within 4,096 visible characters, valid HTML, every
code block closed in the message it opened in. And a post that Telegram shows in two
messages, cut after the first by an error the poster retries, is not sent twice."""

from __future__ import annotations

import re
from pathlib import Path

import trio

from tests.fakes.telegram_html import parse_html, utf16_units
from tests.fakes.telegram_schema import call_problems
from tests.telegram_world import started_tg_world


async def test_a_40000_character_answer_arrives_complete_in_order_in_valid_messages(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("big")
            w.say("[fence 40000] the whole listing", topic)
            await w.answered(topic, "✅ Done", timeout=90)
            answer = [s for s in w.said(topic)[1:] if "echo #1" in s.html or "row " in s.html or "✅" in s.html]
            assert len(answer) >= 10  # 40,000 characters do not fit fewer messages
            shown = [parse_html(s.html) for s in answer]  # raises on HTML Telegram refuses
            assert all(utf16_units(text) <= 4096 for text in shown)
            assert all(s.html.count("<pre>") == s.html.count("</pre>") for s in answer)
            assert all(s.html.count("<code") == s.html.count("</code>") for s in answer)
            rows = [int(n) for n in re.findall(r"row (\d{5}): fenced code keeps going", "\n".join(shown))]
            assert rows == list(range(1, len(rows) + 1)) and len(rows) > 500  # all of them, in order, once
            assert "That was the code." in shown[-1] or "That was the code." in shown[-2]
            assert call_problems(w.fake.calls) == []



async def test_an_answer_in_two_messages_whose_second_fails_unexpectedly_is_not_sent_twice(tmp_path: Path) -> None:
    """One post of the core that Telegram shows in two messages (its emoji count twice in
    Telegram's limit), the second getting an answer our client cannot read (not a
    refusal: the poster tries the post again): the first is not sent again (Telegram has
    no idempotency key)."""
    with trio.fail_after(120):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("wide")
            w.fake.fail("sendMessage", 200, after=1, unreadable=True)
            w.say("😀" * 3000, topic)
            await w.answered(topic, "✅ Done", timeout=90)
            assert any(call.reply.get("result") is True for call in w.fake.calls_of("sendMessage"))  # met
            shown = [parse_html(s.html) for s in w.said(topic)[1:]]
            assert len(shown) >= 2 and "".join(shown).count("😀") == 3000  # its echo, once
