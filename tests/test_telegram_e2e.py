"""The real supervisor behind the fake Bot API, with fake agents: topics, prompts and
their answers, ten sessions side by side, permissions by button, messages written while
the supervisor was down (kill -9 included), and a second poller on the token."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import re
import signal
import sys
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat.telegram.calls import Conflict
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.front import session_name
from supervisor.core.commands import NAME_RE
from tests.fakes.telegram_botapi import TOKEN
from tests.fakes.telegram_schema import call_problems
from tests.harness import REPO
from tests.reposts import AGAIN, answer_counts
from tests.telegram_world import ALICE, FAST, MALLORY, started_tg_world, tg_world


async def test_new_makes_a_topic_with_the_header_and_a_prompt_there_is_answered_there(
    tmp_path: Path,
) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path, with_mattermost=True) as w:  # beside [mattermost]
            topic = await w.new_session("alpha")
            header = w.said(topic)[0]
            assert "alpha" in header.message["text"] and str(w.work / "alpha") in header.message["text"]
            await w.wait_for(lambda: "alpha" in w.text(None))  # /new is answered in the main view
            w.say("hello there", topic)
            text = await w.answered(topic, "echo #1: hello there")
            assert "echo" not in w.text(None)
            # Outside topics only commands: other text gets guidance, and reaches no agent.
            w.say("hello main")
            await w.answered(None, "Prompts go into a session's topic: open it and write there.")
            assert "hello main" not in str(w.prompts_by_process())
            # A stranger reaches nothing.
            w.fake.user_sends(MALLORY, "/new evil")
            await w.wait_for(lambda: w.fake.bot_messages(MALLORY))
            assert w.topic("evil") is None and text.count("echo #1") == 1
            assert call_problems(w.fake.calls) == []  # every request we made keeps the schema
            assert ("new", "NAME [CWD] [agent=A] [persona=P] [resume=ID]: start a session") in w.fake.menu
            assert ("agents", "the agents sessions can run, and whether they start") in w.fake.menu


async def test_help_speaks_of_telegrams_buttons_commands_and_topics_not_mattermosts(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path, with_mattermost=True) as w:  # Mattermost is the first front end
            topic = await w.new_session("alpha")
            w.say("/help")
            main = await w.answered(None, "Commands")
            w.say("/help", topic)
            thread = await w.answered(topic, "Write here to talk")
            w.say("/new alpha")  # a live session's name: the refusal names the command as typed here
            refusal = await w.answered(None, "already called")
    for text in (main, thread):
        assert "Buttons:" in text and "Allow for this session" in text and "Stop" in text
        assert "React" not in text and "👍" not in text and "🛑" not in text
        assert "/stop" in text and "/status" in text and "!" not in text
    assert "/new NAME" in main and "/sessions" in main and "topic" in main
    assert "main DM" not in main and "thread" not in main
    assert "/end alpha" in refusal


async def test_ten_sessions_with_five_prompts_each_posted_at_once_never_cross(tmp_path: Path) -> None:
    names = [f"s{i}" for i in range(10)]
    with trio.fail_after(120):
        async with started_tg_world(tmp_path) as w:
            topics = {name: await w.new_session(name) for name in names}
            for round_ in range(5):
                for name in names:
                    w.say(f"{name}-p{round_}", topics[name])
            for name in names:
                await w.answered(topics[name], f"echo #5: {name}-p4", timeout=90)
            by_process = w.prompts_by_process()
            assert sorted(p for ps in by_process.values() for p in ps) == sorted(
                f"{n}-p{r}" for n in names for r in range(5)
            )  # each prompt reached exactly one agent, once
            for prompts in by_process.values():
                assert len({p.split("-")[0] for p in prompts}) == 1  # one session per agent
            for name, topic in topics.items():
                others = [n for n in names if n != name]
                shown = w.text(topic)
                assert not any(f"{other}-p" in shown for other in others)
                drafts = [text for t, _d, text in w.fake.chat(ALICE).drafts if t == topic]
                assert not any(f"{o}-p" in d for o in others for d in drafts)
            # Every text ever sent or edited in, not only what shows at the end.
            messages = w.fake.chat(ALICE).messages
            for call in w.fake.calls:
                if call.method not in ("sendMessage", "editMessageText") or call.status != 200:
                    continue
                sent_to = messages[call.reply["result"]["message_id"]].message.get("message_thread_id")
                for name in re.findall(r"(s\d)-p\d", call.params["text"]):
                    assert sent_to == topics[name], (name, call.params["text"])


async def test_permission_by_button_allow_runs_and_a_strangers_press_changes_nothing(
    tmp_path: Path,
) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("perm")
            w.say("[tool ls -la] go", topic)
            request = await w.wait_for(lambda: next((s for s in w.said(topic) if s.markup), None))
            buttons = [b for row in request.markup["inline_keyboard"] for b in row]
            assert [b["text"] for b in buttons] == ["Allow", "Allow for this session", "Deny"]
            message_id = request.message["message_id"]
            w.fake.chat(MALLORY).messages[message_id] = request
            refused = w.fake.user_presses(MALLORY, message_id, buttons[0]["callback_data"])
            await w.wait_for(lambda: refused in w.fake.answered_queries)
            assert w.fake.answered_queries[refused] == "not allowed"
            assert w.fake.chat(ALICE).messages[message_id].markup is not None
            pressed = w.fake.user_presses(ALICE, message_id, buttons[0]["callback_data"])
            await w.wait_for(lambda: pressed in w.fake.answered_queries)
            await w.wait_for(lambda: w.fake.chat(ALICE).messages[message_id].markup is None)
            text = await w.answered(topic, "tool ran: ls -la")
            assert "Allowed once by @alice_tg" in text and "not allowed" not in text
            assert call_problems(w.fake.calls) == []


async def test_messages_written_while_down_are_handled_once_in_order_after_kill_9(
    tmp_path: Path,
) -> None:
    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topics = [await w.new_session(name, timeout=30) for name in ("a", "b", "c")]
            for topic in topics:
                w.say("[slow 30] long one", topic)
            await w.wait_for(lambda: len(w.prompts_by_process()) == 3, timeout=30)
            # Queued behind the running turn: not handled, so not confirmed, unless held
            # (durably) in telegram.json first.
            queued = [w.say("queued", topic) for topic in topics]
            await trio.sleep(1.5)
            w.kill()
            pending = {u["message"]["message_id"] for u in w.fake.pending_updates() if "message" in u}
            memory = json.loads((w.tmp / "state" / "telegram.json").read_text())
            held = {u["message"]["message_id"] for u in memory["held"]}
            assert {m["message_id"] for m in queued} <= pending | held
            for topic in topics:  # written while the supervisor is down
                w.say("first while down", topic)
                w.say("second while down", topic)
            w.spawn()
            for topic in topics:
                text = await w.answered(topic, "second while down", timeout=40)
                assert text.index("first while down") < text.index("second while down")
            await trio.sleep(1.0)
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            for needle in ("queued", "first while down", "second while down"):
                assert prompts.count(needle) == 3, (needle, prompts)
            for topic in topics:
                assert w.text(topic).count("second while down") == 1
            await w.wait_for(lambda: not w.fake.pending_updates(), timeout=10)
            assert TOKEN not in w.log_text() and "telegram" in w.log_text()


async def test_a_second_poller_on_the_token_is_said_plainly_and_not_fought(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="supervisor.telegram")
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            other = BotApi(TOKEN, api_url=w.fake.url)
            try:
                for _ in range(3):  # the other program polls; Telegram ends our waiting poll
                    with contextlib.suppress(Conflict):
                        await other.get_updates(None, poll_s=1, allowed_updates=["message"])
                await w.wait_for(lambda: "another program is polling this bot token" in caplog.text)
            finally:
                await other.aclose()
            polls = len(w.fake.calls_of("getUpdates"))
            await trio.sleep(2)
            assert len(w.fake.calls_of("getUpdates")) - polls <= 1  # backs off, no tug of war
            assert TOKEN not in caplog.text


async def test_without_topics_the_active_session_takes_plain_text_and_replies_go_home(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path, topics=False) as w:
            w.say("before any session")
            guided = await w.answered(None, "none is active now")  # guidance, no agent
            assert "/new NAME" in guided and "thread" not in guided
            for name in ("a", "b"):
                (w.work / name).mkdir()
                w.say(f"/new {name} {w.work / name}")
                await w.wait_for(lambda name=name: f"Session {name} " in w.text(None))
            header_b = next(s for s in w.said(None) if "Session b " in s.message.get("text", ""))
            w.say("to b, the active one")
            await w.answered(None, "[b] echo #1: to b, the active one")
            w.say("/session a")
            await w.answered(None, "Plain text now goes to a.")
            w.say("to a now")
            await w.answered(None, "[a] echo #1: to a now")
            w.say("a reply to b", reply_to=header_b.message["message_id"])
            await w.answered(None, "[b] echo #2: a reply to b")
            w.say("/session nope")
            await w.answered(None, "There is no session nope: /new nope starts one.")
            w.say(f"/new a {w.work / 'a'}")  # a duplicate name: a friendly error, nothing made
            await w.wait_for(lambda: w.text(None).count("⚠️") >= 1 or "already" in w.text(None))
            w.say("/help")  # stays in the main view, and says where plain text goes
            helped = await w.answered(None, "The active session:")
            assert "/session NAME" in helped and "(here, in this chat)" in helped and "thread" not in helped
            assert sorted(len(p) for p in w.prompts_by_process().values()) == [1, 2]
            assert "before any session" not in str(w.prompts_by_process())


async def test_a_typing_signal_telegram_keeps_failing_never_holds_up_the_answer(tmp_path: Path) -> None:
    """"typing…" is cosmetic: while Telegram fails every sendChatAction (retried with
    backoff, ~30 s in all), the answer and the next prompt's answer still show at once."""
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("quick")
            w.fake.fail("sendChatAction", 502, "Bad Gateway", count=8)
            started = trio.current_time()
            w.say("hello", topic)
            await w.answered(topic, "echo #1: hello", timeout=5)
            w.say("and again", topic)
            await w.answered(topic, "echo #2: and again", timeout=5)
            assert trio.current_time() - started < 5
            assert any(c.method == "sendChatAction" and c.status == 502 for c in w.fake.calls)


async def test_under_telegrams_rate_limit_four_streaming_sessions_finish_complete(tmp_path: Path) -> None:
    """1 message/s per chat with a burst of 3 (Telegram's flood control, as the fake keeps
    it), the supervisor's own pacing as shipped: every answer arrives whole."""
    names = ["r1", "r2", "r3", "r4"]
    with trio.fail_after(150):
        async with tg_world(tmp_path) as w:
            w.fake.rate_limit(per_second=1.0, burst=3)
            await w.start()
            topics = {name: await w.new_session(name, timeout=60) for name in names}
            for name in names:
                w.say(f"[slow 2] {name} streams", topics[name])
            for name in names:
                text = await w.answered(topics[name], "✅ Done", timeout=100)
                assert f"echo #1: {name} streams" in text
            limited = [c for c in w.fake.calls if c.status == 429]
            print(f"429s: {len(limited)} of {len(w.fake.calls)} requests")
            assert all(c.reply["parameters"]["retry_after"] >= 1 for c in limited)
            prompts = sorted(p for ps in w.prompts_by_process().values() for p in ps)
            assert prompts == sorted(f"[slow 2] {n} streams" for n in names)


async def test_twenty_kills_while_messages_flow_lose_nothing_and_answer_nothing_twice(
    tmp_path: Path,
) -> None:
    rng = random.Random(12)
    with trio.fail_after(300):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.spawn()
            topics = [await w.new_session(name, timeout=30) for name in ("k1", "k2")]
            sent: list[tuple[int, str]] = []
            for kill in range(20):
                for _ in range(rng.randint(1, 3)):
                    topic = rng.choice(topics)
                    text = f"m{len(sent)}"
                    w.say(text, topic)
                    sent.append((topic, text))
                    await trio.sleep(rng.uniform(0, 0.3))
                await trio.sleep(rng.uniform(0.2, 1.2))
                w.kill()
                if kill % 4 == 0:  # some written while it is down
                    topic = rng.choice(topics)
                    w.say(f"m{len(sent)}", topic)
                    sent.append((topic, f"m{len(sent)}"))
                w.spawn()
            await w.wait_for(lambda: not w.fake.pending_updates(), timeout=60)
            await trio.sleep(2)  # the last answers' edits
            delivered = [p for ps in w.prompts_by_process().values() for p in ps]
            assert len(delivered) == len(set(delivered)), "a prompt reached an agent twice"
            for topic in topics:
                shown = w.text(topic)
                messages = [s.message.get("text", "") for s in w.said(topic)]
                mine = [text for t, text in sent if t == topic]
                # But for a copy a restart posted again and said so, below its line.
                told_apart = answer_counts(messages, re.compile(r"echo #\d+: (m\d+)\b"))
                assert all(n == 1 for n in told_apart.values()), "a prompt answered twice"
                echoed = [text for text in mine if text in told_apart]
                cut = sum("restarted" in m and AGAIN not in m for m in messages)
                assert len(echoed) + cut >= len(mine), (mine, shown)
                assert set(delivered) >= set(echoed)
                print(f"topic {topic}: {len(mine)} prompts, {len(echoed)} answered, {cut} cut notices")
            assert TOKEN not in w.log_text()


async def test_a_document_in_a_topic_is_saved_for_the_agent_and_get_sends_a_file_back(
    tmp_path: Path,
) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("files")
            message = w.fake.user_sends(ALICE, "read this", thread_id=topic, document=("notes.txt", b"hello file"))
            await w.answered(topic, "echo #1")
            saved = list((w.work / "files" / ".supervisor" / "uploads").rglob("notes.txt"))
            assert [p.read_bytes() for p in saved] == [b"hello file"]
            assert str(message["message_id"]) in str(saved[0].parent)
            (w.work / "files" / "out.txt").write_text("from the agent's directory")
            w.say("/get out.txt", topic)
            await w.wait_for(lambda: any("document" in s.message for s in w.fake.bot_messages(ALICE, topic)))
            sent = next(s for s in w.fake.bot_messages(ALICE, topic) if "document" in s.message)
            assert sent.message["document"]["file_name"] == "out.txt"
            assert call_problems(w.fake.calls) == []


async def test_a_topic_the_person_opens_becomes_a_session_of_that_name(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            topic = w.fake.user_creates_topic(ALICE, "mine")
            await w.wait_for(lambda: "Session mine " in w.text(topic))
            assert list(w.fake.chat(ALICE).topics.values()) == ["mine"]  # adopted, not a second one
            w.say("in my own topic", topic)
            await w.answered(topic, "echo #1: in my own topic")


async def test_a_session_started_for_a_topic_the_person_opened_says_so_in_that_topic(tmp_path: Path) -> None:
    """The person looks at the topic they opened: the answer to the `/new` it stands for
    comes there, as a refusal does. A typed `/new` is answered where it was typed."""
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            topic = w.fake.user_creates_topic(ALICE, "mine")
            await w.answered(topic, "Started session mine")
            typed = await w.new_session("typed")
            await w.answered(None, "Started session typed")
            assert "Started session" not in w.text(typed)
            assert "Started session mine" not in w.text(None)


async def test_a_topic_the_person_opened_whose_answer_a_kill_cut_is_answered_there_after_the_restart(
    tmp_path: Path,
) -> None:
    """The `!new` of a topic the person opened is handled and the session's header is in
    that topic when a kill cuts its answer: the next start finishes the session and says
    "Started" in that topic, where the person is, not in the main view."""
    def answer_tried() -> bool:
        return any("Started session" in c.params.get("text", "") for c in w.fake.calls_of("sendMessage"))

    with trio.fail_after(90):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST)
            w.fake.fail("sendMessage", 500, after=1, count=10_000)  # the header goes out, the answer never
            w.spawn()
            topic = w.fake.user_creates_topic(ALICE, "mine")
            await w.wait_for(answer_tried, timeout=30)
            await w.wait_for(lambda: not w.fake.pending_updates(), timeout=30)  # handled: confirmed
            w.kill()
            w.fake.clear_faults()
            w.spawn()
            await w.answered(topic, "Started session mine", timeout=30)
            assert "Session mine " in w.text(topic) and w.text(None) == ""
            assert list(w.fake.chat(ALICE).topics.values()) == ["mine"]
            w.say("still mine", topic)
            await w.answered(topic, "echo #1: still mine", timeout=30)


async def test_a_topic_named_in_words_becomes_a_session_of_a_valid_name_there(tmp_path: Path) -> None:
    """"Bug fix" is no `/new Bug` in a directory `fix`: the session is "Bug-fix", in the
    default directory, and the person's topic is its topic."""
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            topic = w.fake.user_creates_topic(ALICE, "Bug fix")
            header = await w.wait_for(lambda: "Session Bug-fix " in w.text(topic) and w.text(topic))
            assert str(w.work) in header and "⚠️" not in w.text(None)
            assert list(w.fake.chat(ALICE).topics.values()) == ["Bug fix"]  # adopted, not a second one
            w.say("in my own topic", topic)
            await w.answered(topic, "echo #1: in my own topic")


async def test_text_in_a_topic_of_no_session_is_answered_in_that_topic(tmp_path: Path) -> None:
    """A topic the person opened under a name already taken is no session; the refusal is
    said in that topic, where the person is, and what they write there is answered there."""
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            await w.new_session("alpha")
            before = await w.answered(None, "Started session alpha")  # (after its topic's header)
            topic = w.fake.user_creates_topic(ALICE, "alpha")
            refusal = await w.answered(topic, "⚠️")
            assert "already called alpha" in refusal and w.text(None) == before
            w.say("hello?", topic)
            guided = await w.answered(topic, "/new NAME")
            assert "Session alpha" not in guided and w.text(None).count("/new NAME") == 0


async def test_the_refusal_for_a_topic_deleted_meanwhile_is_said_in_the_main_view(tmp_path: Path) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            await w.new_session("alpha")
            await w.answered(None, "Started session alpha")  # not the send the fault is for
            w.fake.fail("sendMessage", 400, "Bad Request: message thread not found")
            w.fake.user_creates_topic(ALICE, "alpha")
            await w.answered(None, "already called alpha")


def test_a_topic_name_is_made_a_valid_session_name() -> None:
    assert [session_name(name, 7) for name in ("Bug fix", "mine", " --a / b.. ", "Работа", "x" * 80)] == [
        "Bug-fix", "mine", "a-b", "topic-7", "x" * 64,
    ]


@given(st.text(max_size=130))
def test_any_topic_name_gives_a_name_the_core_takes(topic_name: str) -> None:
    assert NAME_RE.match(session_name(topic_name, 7))


async def test_a_refused_token_stops_the_start_with_a_plain_error_that_never_shows_it(
    tmp_path: Path,
) -> None:
    wrong = "987654321:AAWrongTokenWrongTokenWrongToken_xy"
    with trio.fail_after(40):
        async with tg_world(tmp_path) as w:
            w.configure(telegram={"token": wrong})
            process = w.spawn()
            await w.wait_for(lambda: process.poll() is not None, timeout=30)
            log = w.log_text()
            assert process.returncode != 0
            assert "Telegram refused the bot token (401 on getMe): get the bot's token from @BotFather" in log
            assert "Traceback" not in log and log.count("refused the bot token") == 1  # one sentence, said once
            assert wrong not in log and wrong.split(":")[1] not in log


async def test_deny_and_allow_for_this_session_by_button_and_an_unanswered_request_lapses(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with tg_world(tmp_path) as w:
            w.configure(telegram=FAST, agent={"approval_timeout_s": 3})
            await w.start()
            topic = await w.new_session("perm2")

            async def press(label: str) -> int:
                request = await w.wait_for(lambda: next((s for s in w.said(topic) if s.markup), None))
                button = next(b for row in request.markup["inline_keyboard"] for b in row if b["text"] == label)
                message_id: int = request.message["message_id"]
                w.fake.user_presses(ALICE, message_id, button["callback_data"])
                await w.wait_for(lambda: w.fake.chat(ALICE).messages[message_id].markup is None)
                return message_id

            w.say("[tool rm -rf build] first", topic)
            denied = await press("Deny")
            await w.answered(topic, "✅ Done")
            assert "tool ran: rm -rf build" not in w.text(topic)
            assert "Denied" in w.fake.chat(ALICE).messages[denied].message["text"]
            w.say("[tool make] second", topic)
            await press("Allow for this session")
            await w.answered(topic, "tool ran: make")
            asked = len(w.fake.calls_of("editMessageReplyMarkup"))
            w.say("[tool make] third", topic)
            await w.wait_for(lambda: w.text(topic).count("tool ran: make") == 2)
            assert len(w.fake.calls_of("editMessageReplyMarkup")) == asked  # not asked again
            w.say("[tool ls] fourth", topic)  # nobody answers
            await w.wait_for(lambda: next((s for s in w.said(topic) if s.markup), None))
            await w.wait_for(lambda: not any(s.markup for s in w.said(topic)), timeout=20)
            assert "tool ran: ls" not in w.text(topic)
            assert call_problems(w.fake.calls) == []


async def test_a_prompt_waiting_its_turn_is_said_in_the_running_answer_and_not_in_the_final_one(
    tmp_path: Path,
) -> None:
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("queue")
            w.say("[slow 2] first", topic)
            await w.wait_for(lambda: w.prompts_by_process())
            second = w.say("second", topic)
            line = "⏳ 1 more prompt queued"
            chat = w.fake.chat(ALICE)
            await w.wait_for(lambda: any(line in text for _thread, _draft, text in chat.drafts))  # while it streams
            await w.answered(topic, "echo #2: second")
            assert "queued" not in w.text(topic)  # the answers as they stay
            assert chat.messages[second["message_id"]].reaction_changes == 0  # no mark to take off
            assert call_problems(w.fake.calls) == []


async def test_check_verifies_the_token_topic_mode_and_webhook_and_never_prints_the_token(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with tg_world(tmp_path) as w:
            w.fake.set_webhook("https://example.invalid/hook")
            done = await trio.run_process(
                [sys.executable, "-m", "supervisor", "check", "--config", str(w.config_path)],
                capture_stdout=True, capture_stderr=True, check=False,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
            out = done.stdout.decode() + done.stderr.decode()
            assert "telegram token    ok    @fake_claude_bot accepts the token" in out
            assert "telegram topics   ok" in out
            assert "telegram webhook  FAIL" in out and "example.invalid" in out
            assert "telegram people   ok    @alice_tg can be answered" in out
            assert TOKEN not in out and TOKEN.split(":")[1] not in out


async def test_sigterm_stops_within_ten_seconds_even_during_a_long_poll(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with tg_world(tmp_path) as w:
            w.configure(telegram={**FAST, "poll_s": 30})
            process = w.spawn()
            topic = await w.new_session("term", timeout=30)
            w.say("[slow 20] long", topic)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=20)
            await trio.sleep(0.5)
            started = trio.current_time()
            process.send_signal(signal.SIGTERM)
            await w.wait_for(lambda: process.poll() is not None, timeout=15)
            assert process.returncode == 0 and trio.current_time() - started < 10
            assert "stopped" in w.log_text() and TOKEN not in w.log_text()


async def test_a_configured_session_is_a_topic_from_the_first_start_reused_after_a_restart(
    tmp_path: Path,
) -> None:
    with trio.fail_after(40):
        async with tg_world(tmp_path) as w:
            (w.work / "homelab").mkdir()
            w.configure(telegram=FAST, sessions=[{"name": "homelab", "cwd": str(w.work / "homelab")}])
            await w.start()
            topic = await w.wait_for(lambda: w.topic("homelab"))
            await w.wait_for(lambda: "Session homelab " in w.text(topic))
            await w.stop()
            await w.start()
            w.say("still here?", topic)
            await w.answered(topic, "echo #1: still here?")
            assert list(w.fake.chat(ALICE).topics.values()) == ["homelab"]


async def test_while_telegram_fails_to_give_a_document_the_running_answer_goes_on_and_stop_is_heard(
    tmp_path: Path,
) -> None:
    """The document's download is retried while Telegram fails `getFile`; meanwhile the
    topic's running turn streams and `/stop` is answered at once. Then the document's
    prompt runs, before the one written after it."""
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("files")
            w.say("[slow 30] a long turn", topic)
            await w.wait_for(lambda: w.prompts_by_process(), timeout=20)
            w.fake.fail("getFile", 502, count=10**6)
            w.fake.user_sends(ALICE, "read this", thread_id=topic, document=("notes.txt", b"hello file"))
            w.say("and then this", topic)
            await trio.sleep(1)
            w.say("/stop", topic)
            with trio.fail_after(5):
                await w.answered(topic, "Interrupted")
            assert "read this" not in str(w.prompts_by_process())
            w.fake.clear_faults()
            await w.answered(topic, ": and then this", timeout=30)
            prompts = [p for ps in w.prompts_by_process().values() for p in ps]
            document = next(i for i, p in enumerate(prompts) if p.startswith("read this"))
            assert "notes.txt" in prompts[document] and document < prompts.index("and then this")


async def test_a_commands_answer_telegram_gives_back_unreadable_is_logged_and_the_next_is_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An answer to a command's reply that we cannot read (a garbling proxy, say) is not
    a crash of the whole supervisor, to come again at every start: it is logged, the
    command is handled, and the next one is answered."""
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            w.fake.fail("sendMessage", 200, unreadable=True)
            w.say("/help")
            await w.wait_for(lambda: "could not answer" in caplog.text)
            w.say("/help")
            await w.answered(None, "Commands")
            assert w.text(None).count("Commands") == 1



async def test_a_topic_telegram_makes_with_an_unreadable_answer_fails_that_session_only(tmp_path: Path) -> None:
    """`/new` whose createForumTopic answer we cannot read: that session fails, said so
    in the main view; the supervisor goes on, and the next `/new` starts its session."""
    with trio.fail_after(40):
        async with started_tg_world(tmp_path) as w:
            w.fake.fail("createForumTopic", 200, unreadable=True)
            w.say("/new first")
            await w.answered(None, "Could not start session first")
            topic = await w.new_session("second")
            w.say("hello", topic)
            await w.answered(topic, "echo #1: hello")


async def test_a_turn_a_graceful_stop_cuts_is_said_cut_after_the_restart_at_telegrams_own_pace(
    tmp_path: Path,
) -> None:
    """At Telegram's default pace (about one message a second per chat) a stop has no
    time to post much: the turn it cut is said cut by the next start, with its button to
    run the prompt again, never called finished. (Without drafts, so that the answer
    shows as a message while it streams.)"""
    with trio.fail_after(90):
        async with tg_world(tmp_path, drafts=False) as w:
            w.configure()  # the default pacing
            await w.start()
            topic = await w.new_session("paced")
            w.say("[slow 6] a long answer", topic)
            await w.answered(topic, "echo #1", timeout=30)
            await w.stop()
            await w.start()
            said = await w.answered(topic, "that turn was cut", timeout=30)
            assert "may be incomplete" not in said and "here it is, whole" not in said and "✅ Done" not in said
            notice = await w.wait_for(lambda: next((s for s in w.said(topic) if s.markup and "was cut" in s.message["text"]), None), 30)
            [button] = [b for row in notice.markup["inline_keyboard"] for b in row]
            w.fake.user_presses(ALICE, notice.message["message_id"], button["callback_data"])
            await w.answered(topic, "✅ Done", timeout=30)



async def test_a_telegram_out_of_reach_at_start_is_served_as_at_the_last_start_and_caught_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A start while Telegram cannot be reached (the network not up yet, at boot): after a
    few seconds the supervisor serves as the bot it was at its last start instead of
    holding up every front end; what was written meanwhile is answered once Telegram
    answers, once."""
    down = ("getMe", "deleteWebhook", "getUpdates", "getChat", "setMyCommands")
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            await w.stop()
            for method in down:
                w.fake.fail(method, 502, count=10_000)
            w.say("written while it was out of reach", topic)
            await w.start()
            assert "telegram does not answer yet: serving as @" in caplog.text
            w.fake.clear_faults()
            await w.answered(topic, "echo #1: written while it was out of reach", timeout=30)
            await trio.sleep(1)
            assert w.text(topic).count("written while it was out of reach") == 1


async def test_the_menu_a_silent_start_could_not_offer_is_offered_once_telegram_answers(
    tmp_path: Path,
) -> None:
    """Started as the bot of the last start (Telegram kept silent), the command menu is
    offered once Telegram answers, once: not only at the next start that finds it. (Here
    it was cleared meanwhile, as BotFather's /deletecommands would.)"""
    down = ("getMe", "deleteWebhook", "getUpdates", "getChat", "setMyCommands")
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            await w.wait_for(lambda: w.fake.menu)
            offered = list(w.fake.menu)
            await w.stop()
            w.fake.menu = []
            for method in down:
                w.fake.fail(method, 502, count=10_000)
            await w.start()
            assert w.fake.menu == []
            w.fake.clear_faults()
            await w.wait_for(lambda: w.fake.menu, timeout=30)
            assert w.fake.menu == offered
            w.say("/sessions")  # updates flow, and the menu is not offered again
            await w.answered(None, "No sessions yet", timeout=30)
            assert len([c for c in w.fake.calls_of("setMyCommands") if c.status == 200]) == 2


async def test_a_token_revoked_while_telegram_was_out_of_reach_ends_the_supervisor_in_one_sentence(
    tmp_path: Path,
) -> None:
    """Started as the bot of the last start (Telegram kept silent), a token that Telegram
    refuses once it answers is said as at a start: one sentence, exit 1, no traceback."""
    down = ("getMe", "deleteWebhook", "getUpdates", "getChat", "setMyCommands")
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            await w.stop()
            for method in down:
                w.fake.fail(method, 502, count=10_000)
            process = w.spawn()
            await w.wait_for(lambda: "telegram does not answer yet" in w.log_text(), timeout=30)
            for method in down:
                w.fake.fail(method, 401, "Unauthorized", count=10_000)
            await w.wait_for(lambda: process.poll() is not None, timeout=30)
    assert process.returncode == 1
    assert "Telegram refused the bot token (401)" in w.log_text() and "Traceback" not in w.log_text()
