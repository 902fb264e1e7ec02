"""A streaming answer on Telegram: a draft with a Stop button while it grows, then real
messages; Stop on the draft interrupts the turn like `/stop`; where drafts fail, one
message edited in place at most once a second; a draft never shows another session's
text (without topics every session shares the chat's main view)."""

from __future__ import annotations

import html
import itertools
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.chat import ChatUser
from supervisor.chat.telegram import ids
from supervisor.chat.telegram.calls import Pacing
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.telegram.memory import Memory, ThreadInfo
from supervisor.core.events import Choice, ChoiceMade
from tests.fakes.telegram_botapi import TOKEN, running
from tests.fakes.telegram_schema import call_problems
from tests.telegram_world import ALICE, started_tg_world
from tests.test_telegram_link import CHANNEL, front_end


async def test_a_streaming_answer_is_a_draft_with_stop_then_real_messages(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("alpha")
            w.say("[slow 3] hello there", topic)
            chat = w.fake.chat(ALICE)
            await w.wait_for(lambda: topic in chat.live_drafts and "echo" in chat.live_drafts[topic][1])
            assert topic in chat.stoppable  # sent with can_stop: the person has a Stop button
            assert "echo" not in w.text(topic)  # the draft shows it, no message yet
            text = await w.answered(topic, "echo #1: hello there")
            await w.wait_for(lambda: topic not in chat.live_drafts)  # the message ended it
            growing = [d for t, _id, d in chat.drafts if t == topic]
            assert len(growing) >= 2 and growing == sorted(growing, key=len)  # it grew live
            assert text.count("echo #1: hello there") == 1
            edits = [c for c in w.fake.calls_of("editMessageText") if "echo" in c.params["text"]]
            assert edits == []  # no message was edited while it streamed
            assert call_problems(w.fake.calls) == []  # can_stop and the Stop update: 10.3


async def test_stop_on_the_draft_interrupts_the_turn_like_stop(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path) as w:
            topic = await w.new_session("beta")
            w.say("[slow 30] a long answer", topic)
            chat = w.fake.chat(ALICE)
            await w.wait_for(lambda: topic in chat.stoppable and "echo" in chat.live_drafts.get(topic, (0, ""))[1])
            stop = w.fake.user_stops_draft(ALICE, topic)
            await w.answered(topic, "Interrupted", timeout=15)
            await w.wait_for(lambda: stop in w.fake.confirmed)
            w.say("again", topic)  # the session goes on
            await w.answered(topic, "echo #2: again")


async def test_where_drafts_fail_one_message_is_edited_in_place_at_most_once_a_second(
    tmp_path: Path,
) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path, drafts=False) as w:  # an older Bot API server
            topic = await w.new_session("gamma")
            w.say("[slow 4] hello there", topic)
            text = await w.answered(topic, "echo #1: hello there")
            assert text.count("echo #1") == 1
            answer = next(s for s in w.said(topic) if "echo #1" in s.message["text"])
            edits = [c.at for c in w.fake.calls_of("editMessageText")
                     if c.params["message_id"] == answer.message["message_id"]]  # fmt: skip
            assert len(edits) >= 2  # it grew in place
            assert all(b - a >= 0.9 for a, b in itertools.pairwise(edits))
            assert len(w.fake.calls_of("sendMessageDraft")) == 1  # refused once, not tried again
            w.say("[slow 1] more", topic)
            await w.answered(topic, "echo #2: more")
            assert len(w.fake.calls_of("sendMessageDraft")) == 1


async def test_without_topics_a_draft_never_shows_another_sessions_text(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with started_tg_world(tmp_path, topics=False) as w:
            await w.new_sessions_without_topics("a", "b")
            w.say("/session a")
            await w.answered(None, "Plain text now goes to a")
            w.say("[slow 3] from-a")
            w.say("/session b")
            await w.answered(None, "Plain text now goes to b")
            w.say("[slow 3] from-b")
            await w.answered(None, "echo #1: from-a")
            await w.answered(None, "echo #1: from-b")
            drafts = w.fake.chat(ALICE).drafts
            assert drafts  # drafts were used
            owner: dict[int, str] = {}
            for _thread, draft_id, text in drafts:
                name = text[1]  # every text of a session starts with [NAME]
                assert owner.setdefault(draft_id, name) == name, (draft_id, text)
                other = "b" if name == "a" else "a"
                assert f"from-{other}" not in text, (draft_id, text)
            seen = [d for _t, d, _x in drafts]
            # One draft at a time in the main view: an earlier draft never comes back.
            assert all(seen[i] == seen[i - 1] or seen[i] not in seen[:i] for i in range(1, len(seen)))


async def test_a_growing_post_made_real_keeps_its_id_for_buttons_and_after_a_restart(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=50) as (front, receive), trio.open_nursery() as nursery:
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="delta")
                post = await front.tg.create_growing(CHANNEL, "Allow `ls`?", root_id=root.id, idempotency_key="")
                topic = ids.parse_post(root.id)[1]
                assert fake.chat(ALICE).live_drafts[topic][1] == "Allow ls?"  # a draft, no message
                await front.tg.offer_choices(post.id, ("allow_once", "reject"))  # needs a message
                (asking,) = [s for s in fake.bot_messages(ALICE, topic) if s.markup]
                assert topic not in fake.chat(ALICE).live_drafts
                await nursery.start(front.run)
                allow = asking.markup["inline_keyboard"][0][0]["callback_data"] if asking.markup else ""
                fake.user_presses(ALICE, asking.message["message_id"], allow)
                with trio.fail_after(5):
                    event = await receive.receive()
                # The core knows the post by the id it was given, whatever Telegram's is.
                assert event == ChoiceMade(Choice(ids.user(ALICE), post.id, "allow_once", CHANNEL))
                nursery.cancel_scope.cancel()
            async with front_end(fake, tmp_path, rate=50) as (front, _receive):  # a restart
                await front.tg.settle_choices(post.id)
                await front.tg.edit_post(post.id, "Allowed `ls`")
            assert asking.markup is None and asking.message["text"] == "Allowed ls"


async def test_a_paused_draft_is_shown_again_and_after_a_long_pause_becomes_a_message(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=50) as (front, _receive):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="eps")
                topic = ids.parse_post(root.id)[1]
                await front.tg.create_growing(CHANNEL, "thinking so far", root_id=root.id, idempotency_key="")
                await front.tg.keep_drafts(10.0, 60.0)  # shown just now: nothing to do
                assert len(fake.chat(ALICE).drafts) == 1
                await trio.sleep(0.3)
                await front.tg.keep_drafts(0.2, 60.0)  # a pause longer than that: shown again
                assert [text for _t, _d, text in fake.chat(ALICE).drafts] == ["thinking so far"] * 2
                assert fake.chat(ALICE).live_drafts[topic][1] == "thinking so far"
                assert not [s for s in fake.bot_messages(ALICE, topic) if "thinking" in s.message.get("text", "")]
                await trio.sleep(0.3)
                await front.tg.keep_drafts(0.2, 0.5)  # not grown for that long: a message now
                assert len([s for s in fake.bot_messages(ALICE, topic) if "thinking" in s.message.get("text", "")]) == 1
                assert topic not in fake.chat(ALICE).live_drafts


# --- a property over the link: drafts and sessions --------------------------------------

SESSIONS = [11, 12, 13]  # topic ids (and, without topics, header message ids)
OPS = st.lists(st.tuples(st.sampled_from(SESSIONS), st.sampled_from(["grow", "grow", "final", "note"])),
               max_size=30)  # fmt: skip


def recording_link(directory: Path, topics: bool, calls: list[tuple[str, dict[str, Any]]]) -> TelegramLink:
    message_ids = itertools.count(1000)

    def answer(request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        params = json.loads(request.content)
        calls.append((method, params))
        result: Any = True
        if method == "sendMessage":
            result = {"message_id": next(message_ids), "date": 1,
                      "chat": {"id": params["chat_id"], "type": "private"}}  # fmt: skip
        return httpx.Response(200, json={"ok": True, "result": result})

    fast = Pacing(per_chat_rate=1e6, per_chat_burst=1e6, overall_rate=1e6, overall_burst=1e6)
    api = BotApi(TOKEN, transport=httpx.MockTransport(answer), pacing=fast)
    memory = Memory.open(directory)
    for topic in SESSIONS:
        memory.threads[ids.post(ALICE, topic)] = ThreadInfo(ALICE, f"s{topic}", topic if topics else None, topic)
    return TelegramLink(api, ChatUser(ids.user(1), "bot", is_bot=True), memory, topics=topics)


@given(OPS, st.booleans())
@settings(deadline=None)
def test_a_draft_only_ever_shows_its_own_sessions_text_and_every_last_text_arrives(
    ops: list[tuple[int, str]], topics: bool
) -> None:
    async def main() -> None:
        calls: list[tuple[str, dict[str, Any]]] = []
        with tempfile.TemporaryDirectory() as tmp:
            link = recording_link(Path(tmp), topics, calls)
            growing: dict[int, str] = {}  # session -> its growing post
            words: dict[int, str] = {}
            lasts: list[str] = []
            for n, (session, op) in enumerate([*ops, *((s, "final") for s in SESSIONS)]):
                root = ids.post(ALICE, session)
                words[session] = words.get(session, f"<s{session}>") + f" w{n}"
                if op == "grow" and session in growing:
                    await link.edit_growing(growing[session], words[session])
                elif op == "grow":
                    post = await link.create_growing(CHANNEL, words[session], root_id=root, idempotency_key="")
                    growing[session] = post.id
                elif op == "final" and session in growing:
                    await link.edit_post(growing.pop(session), words[session] + " done")
                    lasts.append(words.pop(session) + " done")
                elif op == "note":
                    await link.create_post(CHANNEL, f"<s{session}> note {n}", root_id=root)
                    lasts.append(f"<s{session}> note {n}")
            await link.api.aclose()
        owner: dict[object, str] = {}  # place -> the session whose draft shows there
        for method, params in calls:
            place = params.get("message_thread_id")
            (session,) = re.findall(r"&lt;(s\d+)&gt;", params["text"]) or ["?"]
            if method == "sendMessageDraft":
                assert owner.setdefault(place, session) == session, (place, params["text"])
            elif method == "sendMessage" and owner.get(place) == session:
                del owner[place]  # its draft became this message
        shown = " ".join(params["text"] for method, params in calls if method in ("sendMessage", "editMessageText"))
        for last in lasts:
            assert html.escape(last, quote=False) in shown  # nothing is left only in a draft

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_at_a_stop_what_a_draft_shows_becomes_a_message(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=50) as (front, _receive):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="zeta")
                topic = ids.parse_post(root.id)[1]
                await front.tg.create_growing(CHANNEL, "half an answer", root_id=root.id, idempotency_key="")
                assert not [s for s in fake.bot_messages(ALICE, topic) if "half" in s.message.get("text", "")]
            # front_end closed the front end, as a stop does
            assert [s.message.get("text") for s in fake.bot_messages(ALICE, topic)][-1] == "half an answer"


async def test_a_stop_on_a_draft_of_an_earlier_run_never_stops_another_sessions_turn(tmp_path: Path) -> None:
    """Draft ids are not reused across runs, and a Stop's topic says whose draft it was: a
    Stop pressed on an old draft (a restart since) cannot interrupt another session."""
    with trio.fail_after(90):
        async with started_tg_world(tmp_path) as w:
            alpha = await w.new_session("alpha")
            w.say("[slow 2] first answer", alpha)
            chat = w.fake.chat(ALICE)
            await w.wait_for(lambda: alpha in chat.live_drafts)
            old_draft = chat.live_drafts[alpha][0]
            await w.answered(alpha, "echo #1: first answer")
            await w.stop()
            await w.start()
            beta = await w.new_session("beta")
            w.say("[slow 30] a long answer", beta)
            await w.wait_for(lambda: "echo" in chat.live_drafts.get(beta, (0, ""))[1])
            assert chat.live_drafts[beta][0] != old_draft
            stop = w.fake.stop_draft(ALICE, old_draft, thread_id=alpha)
            await w.wait_for(lambda: stop in w.fake.confirmed)
            await trio.sleep(1)
            assert "Interrupted" not in w.text(beta)
            w.say("/stop", beta)
            await w.answered(beta, "Interrupted", timeout=15)


async def test_a_draft_in_a_chat_that_blocked_the_bot_is_not_refreshed_for_ever(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """403 on the draft's refresh (the person blocked the bot): said once, and not tried
    again at every refresh; the next text the core sends tries again."""
    with trio.fail_after(20):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=50) as (front, _receive):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="eps")
                post = await front.tg.create_growing(CHANNEL, "thinking", root_id=root.id, idempotency_key="")
                fake.fail("sendMessageDraft", 403, "Forbidden: bot was blocked by the user", count=1000)
                for _period in range(4):
                    await trio.sleep(0.25)
                    await front.tg.keep_drafts(0.2, 60.0)
                refused = [c for c in fake.calls_of("sendMessageDraft") if c.status == 403]
                assert len(refused) == 1
                said = [r for r in caplog.records if "refuses the bot" in r.getMessage()]
                assert len(said) == 1
                fake.clear_faults()  # unblocked: the answer goes on, and is refreshed again
                await front.tg.edit_growing(post.id, "thinking more")
                await trio.sleep(0.25)
                await front.tg.keep_drafts(0.2, 60.0)
                assert [t for _t, _d, t in fake.chat(ALICE).drafts][-2:] == ["thinking more"] * 2
