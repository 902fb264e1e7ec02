"""The Telegram front end against the fake Bot API, without the core: threads as topics,
keyed posts sent once (also across a restart), long posts split and edited, buttons, and
the update loop's confirmations (only after `handled`, at once for what never reaches
the core, a stranger refused once)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from supervisor.chat import ChatError
from supervisor.chat.telegram import ids
from supervisor.chat.telegram import link as link_module
from supervisor.chat.telegram.codec import MalformedReply
from supervisor.chat.telegram.config import TelegramConfig
from supervisor.chat.telegram.front import TelegramFrontEnd, as_command
from supervisor.chat.telegram.memory import Memory
from supervisor.chat.telegram.runs import units
from supervisor.core.events import ChatEvent, Choice, ChoiceMade, Post, Posted
from tests.fakes.telegram_botapi import BOT_ID, TOKEN, FakeBotApi, Sent, running
from tests.fakes.telegram_html import parse_html

ALICE = 1001
MALLORY = 666
CHANNEL = ids.channel(ALICE)


def said(fake: FakeBotApi, topic: int) -> list[Sent]:
    """The bot's messages in a topic, without the service message that opened it."""
    return [s for s in fake.bot_messages(ALICE, topic) if "forum_topic_created" not in s.message]


def config(fake: FakeBotApi, rate: float = 1.0) -> TelegramConfig:
    return TelegramConfig(allowed_user_ids=(ALICE,), token=TOKEN, api_url=fake.url, poll_s=1,
                          per_chat_rate=rate)  # fmt: skip


@asynccontextmanager
async def front_end(
    fake: FakeBotApi, state: Path, rate: float = 1.0
) -> AsyncIterator[tuple[TelegramFrontEnd, trio.MemoryReceiveChannel[ChatEvent]]]:
    send, receive = trio.open_memory_channel[ChatEvent](10)
    front = await TelegramFrontEnd.connect(config(fake, rate), state, send)
    try:
        yield front, receive
    finally:
        await front.aclose()


@asynccontextmanager
async def in_a_topic(state: Path, title: str) -> AsyncIterator[tuple[FakeBotApi, TelegramFrontEnd, Post, int]]:
    """A bot with topics, its front end (paced for tests) and a session's topic `title`."""
    async with running(topics=True) as fake:
        fake.add_user(ALICE)
        async with front_end(fake, state, rate=100) as (front, _events):
            root = await front.tg.open_thread(CHANNEL, "h", key="k", title=title)
            yield fake, front, root, ids.parse_post(root.id)[1]

async def new_handled(
    front: TelegramFrontEnd, receive: trio.MemoryReceiveChannel[ChatEvent], name: str, refusal: str = ""
) -> None:
    """The next event, the `!new NAME` a topic or `/new` stands for, marked handled as the
    core would (its durable mark): refused, after its answer `refusal`."""
    asked = await receive.receive()
    assert isinstance(asked, Posted) and asked.post.message == f"!new {name}"
    if refusal:
        await front.link.create_post(CHANNEL, refusal, reply_to=asked.post.id)
    front.link.handled(CHANNEL, asked.post.id)



async def test_a_thread_is_a_topic_with_the_header_and_keys_are_kept_across_restarts(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path) as (front, _events):
                link = front.tg
                root = await link.open_thread(CHANNEL, "**alpha** in `/tmp`", key="k1", title="alpha")
                again = await link.open_thread(CHANNEL, "**alpha** in `/tmp`", key="k1", title="alpha")
                reply = await link.create_post(CHANNEL, "hello *there*", root_id=root.id, idempotency_key="p1")
            chat = fake.chat(ALICE)
            assert root.id == again.id and list(chat.topics.values()) == ["alpha"]
            topic = next(iter(chat.topics))
            assert root.id == ids.post(ALICE, topic)
            texts = [s.message["text"] for s in said(fake, topic)]
            assert texts == ["alpha in /tmp", "hello there"]
            assert "<b>alpha</b>" in said(fake, topic)[0].html
            # A new process with the same state directory: the keys still hold.
            async with front_end(fake, tmp_path) as (front, _events):
                same = await front.link.create_post(CHANNEL, "hello *there*", root_id=root.id, idempotency_key="p1")
                root2 = await front.link.open_thread(CHANNEL, "x", key="k1", title="alpha")
                await front.link.edit_post(root.id, "**alpha** ended")
            assert same.id == reply.id and root2.id == root.id
            assert len(said(fake, topic)) == 2 and len(chat.topics) == 1
            assert said(fake, topic)[0].message["text"] == "alpha ended"


async def test_a_long_post_is_split_and_edited_in_place_with_its_buttons_last(tmp_path: Path) -> None:
    long_text = "start\n```python\n" + "\n".join(f"line_{i} = {i}" for i in range(3000)) + "\n```\nend"
    with trio.fail_after(20):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, _events):
                link = front.tg
                root = await link.open_thread(CHANNEL, "h", key="k", title="beta")
                post = await link.create_post(CHANNEL, "short", root_id=root.id)
                await link.offer_choices(post.id, ("allow_once", "allow_always", "reject"))
                await link.edit_post(post.id, long_text)
                topic = ids.parse_post(root.id)[1]
                sent = said(fake, topic)[1:]
                assert len(sent) >= 2
                visible = [s.message["text"] for s in sent]
                assert all(units(v) <= 4096 for v in visible)
                assert all(s.html.count("<pre>") == s.html.count("</pre>") for s in sent)
                assert sent[-1].markup is not None and all(s.markup is None for s in sent[:-1])
                joined = "".join(parse_html(s.html) for s in sent)
                assert "line_0 = 0" in joined and "line_2999 = 2999" in joined and joined.endswith("end")
                await link.settle_choices(post.id)
                assert said(fake, topic)[-1].markup is None


async def test_updates_are_confirmed_only_once_handled_and_strangers_never_reach_the_core(
    tmp_path: Path,
) -> None:
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            fake.add_user(MALLORY, "Mallory")
            stranger = fake.user_sends(MALLORY, "let me in")
            fake.user_sends(MALLORY, "please")
            first = fake.user_sends(ALICE, "/new alpha")
            alice_update = next(u["update_id"] for u in fake.pending_updates()
                                if u.get("message", {}).get("from", {}).get("id") == ALICE)  # fmt: skip
            async with front_end(fake, tmp_path) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                with trio.fail_after(5):
                    event = await receive.receive()
                assert isinstance(event, Posted)
                assert event.post.message == "!new alpha" and event.post.root_id == ""
                assert event.post.id == ids.post(ALICE, first["message_id"])
                await fake.wait_until(lambda: len(fake.bot_messages(MALLORY)) == 1)
                # The update the core holds stays ours: held in memory (durably) before
                # Telegram is told to forget it, so that newer updates come meanwhile.
                await fake.wait_until(lambda: not fake.pending_updates())
                assert [u["update_id"] for u in front.tg.memory.held] == [alice_update]
                front.link.handled(event.post.channel_id, event.post.id)
                while front.tg.memory.held:
                    await trio.sleep(0.02)
                assert front.tg.memory.offset == alice_update + 1
                nursery.cancel_scope.cancel()
            assert fake.bot_messages(MALLORY)[0].message["text"].startswith("This bot answers only")
            assert stranger["message_id"] not in {m.message["message_id"] for m in fake.bot_messages(MALLORY)}
            assert (tmp_path / "telegram.json").exists()


async def test_a_message_in_a_group_is_told_where_the_bot_works_and_never_reaches_the_core(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A person who added the bot to a group and writes there hears, once an hour, that it
    works in private chats only (and the log says so), instead of silence; other people's
    talk there gets nothing. The updates are confirmed; the core sees only the private chat."""
    group = -100777
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            fake.add_user(MALLORY, "Mallory")
            fake.user_sends_in_group(MALLORY, group, "hello all")
            fake.user_sends_in_group(ALICE, group, "/new@fake_claude_bot alpha")
            fake.user_sends_in_group(ALICE, group, "/new alpha")
            fake.user_sends(ALICE, "/help")
            async with front_end(fake, tmp_path) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                event = await receive.receive()
                assert isinstance(event, Posted) and event.post.message == "!help"
                assert event.post.channel_id == CHANNEL
                help_update = max(fake.delivered)
                await fake.wait_until(lambda: [u["update_id"] for u in fake.pending_updates()] == [help_update])
                await fake.wait_until(lambda: bool(fake.bot_messages(group)))  # told beside the updates
                nursery.cancel_scope.cancel()
            [told] = [s.message["text"] for s in fake.bot_messages(group)]
            assert told == "I work only in a private chat: write to me there, @fake_claude_bot."
            assert fake.bot_messages(ALICE) == []
            assert caplog.text.count("the bot works in private chats only") == 1


async def test_a_button_press_becomes_a_choice_and_a_strangers_press_is_refused(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            fake.add_user(MALLORY, "Mallory")
            async with front_end(fake, tmp_path) as (front, receive), trio.open_nursery() as nursery:
                root = await front.link.open_thread(CHANNEL, "h", key="k", title="gamma")
                post = await front.link.create_post(CHANNEL, "Allow `ls`?", root_id=root.id)
                await front.link.offer_choices(post.id, ("allow_once", "allow_always", "reject"))
                message_id = ids.parse_post(post.id)[1]
                markup = fake.chat(ALICE).messages[message_id].markup
                assert markup is not None
                allow = markup["inline_keyboard"][0][0]["callback_data"]
                await nursery.start(front.run)
                fake.chat(MALLORY).messages[message_id] = fake.chat(ALICE).messages[message_id]
                refused = fake.user_presses(MALLORY, message_id, allow)
                pressed = fake.user_presses(ALICE, message_id, allow)
                with trio.fail_after(5):
                    event = await receive.receive()
                assert event == ChoiceMade(Choice(ids.user(ALICE), post.id, "allow_once", CHANNEL))
                await fake.wait_until(lambda: {pressed, refused} <= fake.answered_queries.keys()
                                      and not fake.pending_updates())  # fmt: skip
                assert fake.answered_queries[refused] == "not allowed"
                assert receive.statistics().current_buffer_used == 0
                nursery.cancel_scope.cancel()


def test_slash_commands_are_the_cores_bang_commands() -> None:
    assert as_command("/new alpha /tmp") == "!new alpha /tmp"
    assert as_command("/start") == "!help"
    assert as_command("/tmp is a directory") == "/tmp is a directory"
    assert as_command("/STOP") == "!stop"
    # The seed's `/new NAME PERSONA`: a second word naming a persona.
    assert as_command("/new alpha reviewer", frozenset({"reviewer"})) == "!new alpha persona=reviewer"
    assert as_command("/new alpha ./reviewer", frozenset({"reviewer"})) == "!new alpha ./reviewer"
    assert as_command("/new alpha /srv", frozenset({"reviewer"})) == "!new alpha /srv"
    assert as_command("hello /new") == "hello /new"


async def test_buttons_a_previous_run_offered_are_removed_when_settled(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path) as (front, _events):
                post = await front.tg.create_post(CHANNEL, "The turn was cut.")
                await front.tg.offer_choices(post.id, ("rerun",))
            message_id = ids.parse_post(post.id)[1]
            assert fake.chat(ALICE).messages[message_id].markup is not None
            async with front_end(fake, tmp_path) as (front, _events):
                await front.tg.settle_choices(post.id)
            assert fake.chat(ALICE).messages[message_id].markup is None


async def test_a_message_with_no_text_or_file_is_confirmed_without_reaching_the_core(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            fake.add_update({"message": {"message_id": 50, "date": 1, "from": fake.chat(ALICE).user,
                                         "chat": {"id": ALICE, "type": "private"},
                                         "sticker": {"file_id": "S"}}})  # fmt: skip
            fake.user_sends(ALICE, "/help")
            async with front_end(fake, tmp_path) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                event = await receive.receive()
                assert isinstance(event, Posted) and event.post.message == "!help"
                help_update = max(fake.delivered)
                await fake.wait_until(lambda: [u["update_id"] for u in fake.pending_updates()] == [help_update])
                nursery.cancel_scope.cancel()


async def test_a_clock_behind_telegrams_stamps_no_message_older_than_telegrams_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start before time sync on a board with no clock of its own: the wall clock says
    2001. Such a stamp was older than the messages handled before the restart, so the
    core's ledger took every new message for one dealt with, and dropped it silently."""
    monkeypatch.setattr(link_module.time, "time", lambda: 1_000_000_000.0)
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            sent = fake.user_sends(ALICE, "/help")
            async with front_end(fake, tmp_path) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                event = await receive.receive()
                nursery.cancel_scope.cancel()
    assert isinstance(event, Posted) and event.post.create_at >= sent["date"] * 1000


async def test_a_topic_whose_header_a_crash_cut_gets_it_on_the_next_try_and_no_twin(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path) as (front, _events):
                root = await front.tg._new_topic(ALICE, "delta", "k-delta")  # then the crash
            async with front_end(fake, tmp_path) as (front, _events):
                again = await front.tg.open_thread(CHANNEL, "**delta** header", key="k-delta", title="delta")
                twice = await front.tg.open_thread(CHANNEL, "**delta** header", key="k-delta", title="delta")
            assert again.id == twice.id == root
            topic = ids.parse_post(root)[1]
            assert list(fake.chat(ALICE).topics) == [topic]
            assert [s.message["text"] for s in said(fake, topic)] == ["delta header"]


async def test_another_bots_offset_is_not_used(tmp_path: Path) -> None:
    memory = Memory.open(tmp_path)
    memory.bot_id, memory.offset = 42, 900_000
    memory.changed()
    await memory.commit()
    with trio.fail_after(10):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            fake.user_sends(ALICE, "/help")
            async with front_end(fake, tmp_path) as (front, receive), trio.open_nursery() as nursery:
                assert front.tg.memory.offset is None and front.tg.memory.bot_id == BOT_ID
                await nursery.start(front.run)
                event = await receive.receive()  # not forgotten behind a stranger's offset
                assert isinstance(event, Posted) and event.post.message == "!help"
                nursery.cancel_scope.cancel()


async def test_a_post_with_nothing_visible_shows_as_an_ellipsis_sent_edited_and_drafted(
    tmp_path: Path,
) -> None:
    """Markdown that renders to nothing (link definitions, a lone `&nbsp;`) still makes a
    message: Telegram refuses an empty one, and an error here would stop the session's
    output for good (the poster retries it)."""
    invisible = ["[x]: http://example.com", "&nbsp;", "[a]: http://a\n[b]: http://b\n"]
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "gamma") as (fake, front, root, topic):
            link = front.tg
            for text in invisible:
                post = await link.create_post(CHANNEL, text, root_id=root.id)
                await link.edit_post(post.id, "seen")
                await link.edit_post(post.id, text)
                growing = await link.create_growing(CHANNEL, text, root_id=root.id, idempotency_key="")
                await link.edit_growing(growing.id, text)
                await link.edit_post(growing.id, text)  # its last text: a real message
            assert [s.message["text"] for s in said(fake, topic)[1:]] == ["…"] * 6
            assert all(text == "…" for _t, _d, text in fake.chat(ALICE).drafts)


async def test_html_telegram_refuses_is_sent_again_as_plain_text_and_never_lost(tmp_path: Path) -> None:
    """Sent, edited, drafted: a "can't parse entities" answer makes the same visible text
    go again with no parse mode, and drafts stay on."""
    refusal = "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0"
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "delta") as (fake, front, root, topic):
            link = front.tg
            fake.fail("sendMessage", 400, refusal)
            post = await link.create_post(CHANNEL, "a **bold** <answer> & more", root_id=root.id)
            fake.fail("editMessageText", 400, refusal)
            await link.edit_post(post.id, "the *final* <answer> & more")
            fake.fail("sendMessageDraft", 400, refusal)
            growing = await link.create_growing(CHANNEL, "growing `x < y`", root_id=root.id, idempotency_key="")
            assert fake.chat(ALICE).live_drafts[topic][1] == "growing x < y"
            await link.edit_post(growing.id, "grown")
            sent = said(fake, topic)[1:]
            assert [s.message["text"] for s in sent] == ["the final <answer> & more", "grown"]
            assert sent[0].html == "the final <answer> & more"  # no parse mode: as it is
            assert ALICE not in front.tg.drafts.off


async def test_a_notice_whose_prompt_telegram_will_not_quote_is_sent_without_the_quote(tmp_path: Path) -> None:
    """A notice answers its prompt as a reply; a prompt in another topic cannot be quoted
    there (Telegram refuses such a reply even when it may go without): the notice goes
    all the same, in its session's topic."""
    with trio.fail_after(10):
        async with in_a_topic(tmp_path, "delta") as (fake, front, root, topic):
            elsewhere = fake.user_sends(ALICE, "a prompt", thread_id=fake.user_creates_topic(ALICE, "other"))
            prompt = ids.post(ALICE, elsewhere["message_id"])
            await front.link.create_post(CHANNEL, "that turn was cut", root_id=root.id, reply_to=prompt)
            notice = said(fake, topic)[-1].message
            assert notice["text"] == "that turn was cut" and "reply_to_message" not in notice


@pytest.mark.parametrize(
    ("status", "refusal"),
    [(403, "Forbidden: bot was blocked by the user"), (400, "Bad Request: message thread not found")],
    ids=["blocked", "topic gone"],
)
async def test_a_draft_refused_as_any_message_would_be_leaves_drafts_on_for_the_chat(
    tmp_path: Path, status: int, refusal: str
) -> None:
    """A person who blocked the bot (every call to their chat fails with 403), or a topic
    deleted (its messages fail as its draft does): that is no chat without drafts, and
    once unblocked, or in the chat's other topics, the answers stream as drafts again
    (they were messages edited in place until a restart)."""
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "lambda") as (fake, front, root, topic):
            link = front.tg
            fake.fail("sendMessageDraft", status, refusal)
            with pytest.raises(ChatError):
                await link.create_growing(CHANNEL, "refused", root_id=root.id, idempotency_key="")
            await link.create_growing(CHANNEL, "a draft still", root_id=root.id, idempotency_key="")
            assert fake.chat(ALICE).live_drafts[topic][1] == "a draft still"
            assert ALICE not in link.drafts.off and said(fake, topic)[1:] == []  # nothing sent twice


async def test_a_draft_in_a_topic_deleted_meanwhile_is_dropped_and_the_others_are_kept(tmp_path: Path) -> None:
    """The person deleted a topic while its answer grew: its draft can never show again,
    and failing it must not keep the drafts behind it (other topics') from being shown
    again before Telegram lets them lapse."""
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "nu") as (fake, front, root, topic):
            link = front.tg
            other = await link.open_thread(CHANNEL, "**xi** header", key="k-xi", title="xi")
            gone = await link.create_growing(CHANNEL, "in the topic deleted", root_id=root.id, idempotency_key="")
            kept = await link.create_growing(CHANNEL, "in the other topic", root_id=other.id, idempotency_key="")
            del fake.chat(ALICE).topics[topic]
            shown = len(fake.chat(ALICE).drafts)
            await link.keep_drafts(0, 3600)
            assert gone.id not in link.drafts.growing and kept.id in link.drafts.growing
            assert [text for _t, _d, text in fake.chat(ALICE).drafts[shown:]] == ["in the other topic"]


async def test_a_drafts_last_text_whose_send_fails_is_sent_when_tried_again(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "epsilon") as (fake, front, root, topic):
            link = front.tg
            growing = await link.create_growing(CHANNEL, "the answer so", root_id=root.id, idempotency_key="")
            fake.fail("sendMessage", 400, "Bad Request: not enough rights to send text messages")
            with pytest.raises(ChatError):
                await link.edit_post(growing.id, "the answer so far, all of it")
            await link.edit_post(growing.id, "the answer so far, all of it")  # the poster's retry
            assert [s.message["text"] for s in said(fake, topic)[1:]] == ["the answer so far, all of it"]


async def test_a_file_whose_caption_telegram_refuses_is_sent_with_the_caption_after_it(tmp_path: Path) -> None:
    refusal = "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 0"
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "zeta") as (fake, front, root, topic):
            link = front.tg
            file_id = await link.upload_file(CHANNEL, "out.txt", b"data")
            fake.fail("sendDocument", 400, refusal)
            await link.create_post(CHANNEL, "the *file*", root_id=root.id, file_ids=(file_id,))
            sent = said(fake, topic)[1:]
            assert [s.message["document"]["file_name"] for s in sent if "document" in s.message] == ["out.txt"]
            assert [s.message.get("text") for s in sent if "document" not in s.message] == ["the file"]


async def test_a_file_whose_post_failed_is_not_kept_for_a_retry_nobody_makes(tmp_path: Path) -> None:
    """A `/get` whose post Telegram refused says so in its thread and is not tried again:
    its file (up to tens of MB) must not stay in memory for the rest of the run."""
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "eta") as (fake, front, root, _topic):
            link = front.tg
            fake.fail("sendDocument", 400, "Bad Request: not enough rights to send documents")
            file_id = await link.upload_file(CHANNEL, "out.bin", b"x" * 1000)
            with pytest.raises(ChatError, match="rights"):
                await link.create_post(CHANNEL, "", root_id=root.id, file_ids=(file_id,))
            with pytest.raises(ChatError, match="gone"):
                await link.create_post(CHANNEL, "", root_id=root.id, file_ids=(file_id,))


async def test_a_long_answer_cut_after_some_parts_goes_on_from_the_first_part_not_sent(tmp_path: Path) -> None:
    """A part that fails with an error we did not expect (an answer we cannot read) makes
    the poster try the whole post again: the parts already sent are not sent twice
    (Telegram has no idempotency key), as a keyed message or as a draft's last text."""
    answer = "\n\n".join(f"paragraph {i:02}: " + "word " * 150 for i in range(30))  # 6 parts or so
    with trio.fail_after(30):
        async with in_a_topic(tmp_path, "eta") as (fake, front, root, topic):
            link = front.tg
            fake.fail("sendMessage", 200, after=2, unreadable=True)
            with pytest.raises(MalformedReply):
                await link.create_post(CHANNEL, answer, root_id=root.id, idempotency_key="answer")
            await link.create_post(CHANNEL, answer, root_id=root.id, idempotency_key="answer")  # the retry
            growing = await link.create_growing(CHANNEL, "the second", root_id=root.id, idempotency_key="")
            fake.fail("sendMessage", 200, after=3, unreadable=True)
            with pytest.raises(MalformedReply):
                await link.edit_post(growing.id, answer.replace("paragraph", "section"))
            # The retry's text changed meanwhile (the outbox sends the newest): the parts
            # sent show it too.
            await link.edit_post(growing.id, "revised: " + answer.replace("paragraph", "section"))
            shown = "\n".join(parse_html(s.html) for s in said(fake, topic)[1:])
            numbers = re.findall(r"(paragraph|section) (\d\d):", shown)
            assert numbers == [("paragraph", f"{i:02}") for i in range(30)] + [("section", f"{i:02}") for i in range(30)]
            assert "revised: section 00" in shown


async def test_an_edit_that_grows_a_post_of_an_earlier_run_and_is_cut_goes_on_where_it_stopped(
    tmp_path: Path,
) -> None:
    answer = "\n\n".join(f"paragraph {i:02}: " + "word " * 150 for i in range(30))
    with trio.fail_after(30):
        async with in_a_topic(tmp_path, "theta") as (fake, front, root, _topic):
            post = await front.tg.create_post(CHANNEL, "short", root_id=root.id)
            async with front_end(fake, tmp_path, rate=100) as (again, _events):  # a restart
                fake.fail("sendMessage", 200, after=2, unreadable=True)
                with pytest.raises(MalformedReply):
                    await again.tg.edit_post(post.id, answer)
                await again.tg.edit_post(post.id, answer)
            # The new run learnt the post's topic from its first message's edit (the
            # post was never written down: its run did not stop): the parts it adds are there.
            assert fake.bot_messages(ALICE, None) == []
            shown = "\n".join(parse_html(s.html) for s in said(fake, _topic))
            assert re.findall(r"paragraph (\d\d):", shown) == [f"{i:02}" for i in range(30)]


async def test_an_edit_by_a_later_run_grows_a_post_in_its_topic_and_reaches_all_its_parts(
    tmp_path: Path,
) -> None:
    """The messages of a post and its topic outlive a restart: a post that grows puts its
    new parts in its topic, not the chat's main view, and one that had several parts
    has them all edited (none keeps old text), with its buttons on its last; so do the
    parts an edit added."""
    answer = "\n\n".join(f"paragraph {i:02}: " + "word " * 150 for i in range(30))
    with trio.fail_after(30):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, _events):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="theta")
                topic = ids.parse_post(root.id)[1]
                short = await front.tg.create_post(CHANNEL, "short", root_id=root.id)
                long = await front.tg.create_post(CHANNEL, answer, root_id=root.id)
            assert len(said(fake, topic)) > 3  # the header, "short", the long one's parts
            async with front_end(fake, tmp_path, rate=100) as (again, _events):  # a restart
                await again.tg.edit_post(short.id, answer)
                await again.tg.edit_post(long.id, "now short")
                await again.tg.offer_choices(short.id, ("stop",))
            assert fake.bot_messages(ALICE, None) == []  # nothing in the main view
            shown = [parse_html(s.html) for s in said(fake, topic)]
            assert re.findall(r"paragraph (\d\d):", "\n".join(shown)) == [f"{i:02}" for i in range(30)]
            assert shown.count("now short") == 1 and "short" not in shown
            assert [s.markup is not None for s in said(fake, topic)] == [False] * (len(shown) - 1) + [True]
            # The parts an edit added are durable at once, with no clean stop after them.
            async with front_end(fake, tmp_path, rate=100) as (third, _events):
                await third.tg.edit_post(short.id, "short again")
            shown = [parse_html(s.html) for s in said(fake, topic)]
            assert re.findall(r"paragraph (\d\d):", "\n".join(shown)) == []
            assert shown.count("short again") == 1 and "now short" in shown


async def test_a_post_of_one_message_an_earlier_run_sent_grows_in_its_topic_though_its_first_part_is_unchanged(
    tmp_path: Path,
) -> None:
    """An edit by a later run that grows a post of one message into two, its first part
    as it was: Telegram answers that part "message is not modified", which tells no
    topic; the new part still goes to the post's topic, not the chat's main view."""
    full = "x" * 4096  # one message at Telegram's limit: the grown text's first part is it
    with trio.fail_after(20):
        async with in_a_topic(tmp_path, "iota") as (fake, front, root, topic):
            post = await front.tg.create_post(CHANNEL, full, root_id=root.id, idempotency_key="answer")
            async with front_end(fake, tmp_path, rate=100) as (again, _events):  # a restart
                await again.tg.edit_post(post.id, full + "y" * 10)
            assert fake.bot_messages(ALICE, None) == []
            assert [s.message["text"] for s in said(fake, topic)[1:]] == [full, "y" * 10]


async def test_without_topics_an_edit_by_a_later_run_keeps_the_sessions_prefix(tmp_path: Path) -> None:
    """Without topics every message of a session starts with `[NAME]`: so does one an
    earlier run sent (a message, or a draft made real) when a later run edits it, and
    a reply to it still goes to that session."""
    with trio.fail_after(20):
        async with running(topics=False) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, _events):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="kappa")
                post = await front.tg.create_post(CHANNEL, "thinking", root_id=root.id, idempotency_key="p1")
                growing = await front.tg.create_growing(CHANNEL, "drafting", root_id=root.id, idempotency_key="p2")
                await front.tg.keep_all_drafts()  # a stop: the draft becomes a message
            async with front_end(fake, tmp_path, rate=100) as (again, _events):  # a restart
                await again.tg.edit_post(post.id, "the answer")
                await again.tg.edit_post(growing.id, "the draft's answer")
                replied = again.tg.root_of_message(ALICE, ids.parse_post(post.id)[1])
            shown = [s.message["text"] for s in fake.bot_messages(ALICE)]
            assert shown == ["h", "[kappa] the answer", "[kappa] the draft's answer"]
            assert replied == root.id


async def test_without_topics_a_files_caption_starts_with_its_sessions_name(tmp_path: Path) -> None:
    """Without topics every message of a session starts with `[NAME]`: so does the
    caption of a file it sends (`/get`), one with no caption of its own, and, with a text
    over a caption's 1,024 characters, the file and the message that says the text."""
    long_text = "word " * 300
    with trio.fail_after(20):
        async with running(topics=False) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, _events):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="kappa")
                for caption in ("📎 `out.txt`", "", long_text):
                    file_id = await front.tg.upload_file(CHANNEL, "out.txt", b"data")
                    await front.tg.create_post(CHANNEL, caption, root_id=root.id, file_ids=(file_id,))
            shown = [s.message.get("caption", s.message.get("text")) for s in fake.bot_messages(ALICE)]
            assert shown == ["h", "[kappa] 📎 out.txt", "[kappa]", "[kappa]", "[kappa] " + long_text.strip()]


async def test_without_topics_a_reply_to_a_file_sent_without_a_key_goes_to_its_session_after_a_restart(
    tmp_path: Path,
) -> None:
    """`/get` sends a file into its session with no idempotency key (and a `[NAME]` is no
    sure guide: a newer session may have the same name): which session it is of is durable at once, so a reply to it after
    a restart (crash or stop, nothing else written meanwhile) goes to that session, not to
    the active one."""
    with trio.fail_after(20):
        async with running(topics=False) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, _events):
                root = await front.tg.open_thread(CHANNEL, "h", key="k", title="kappa")
                file_id = await front.tg.upload_file(CHANNEL, "out.txt", b"data")
                sent = await front.tg.create_post(CHANNEL, "📎 `out.txt`", root_id=root.id, file_ids=(file_id,))
            async with front_end(fake, tmp_path, rate=100) as (again, _events):  # a restart
                assert again.tg.root_of_message(ALICE, ids.parse_post(sent.id)[1]) == root.id


async def test_without_topics_a_reply_to_a_later_message_of_a_long_post_goes_to_its_session(
    tmp_path: Path,
) -> None:
    """A post split into several messages: a reply to any of them goes to the post's
    session, also after a restart; not by the `[NAME]` it starts with, which a newer
    session of the same name (its own ended since) has too, nor to the active one."""
    long_text = "\n\n".join(f"paragraph {i} " + "word " * 40 for i in range(60))
    with trio.fail_after(20):
        async with running(topics=False) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, _events):
                root = await front.tg.open_thread(CHANNEL, "h", key="k1", title="kappa")
                await front.tg.create_post(CHANNEL, long_text, root_id=root.id, idempotency_key="p")
                await front.tg.open_thread(CHANNEL, "h", key="k2", title="kappa")  # newer, and active
            parts = [s.message["message_id"] for s in fake.bot_messages(ALICE) if "paragraph" in s.message["text"]]
            assert len(parts) >= 2
            for part in parts:
                fake.user_sends(ALICE, "about this", reply_to=part)
            async with front_end(fake, tmp_path, rate=100) as (again, events), trio.open_nursery() as nursery:
                await nursery.start(again.run)  # a restart
                for _part in parts:
                    event = await events.receive()
                    assert isinstance(event, Posted) and event.post.root_id == root.id
                nursery.cancel_scope.cancel()


async def test_a_topic_whose_new_is_refused_is_not_taken_by_a_later_new_of_that_name(tmp_path: Path) -> None:
    """A topic the person opens stands for `!new NAME`: accepted, the session's thread is
    that topic (the core marks the `!new` handled, then opens the thread); refused (e.g.
    the session limit), a later `/new NAME` gets a topic of its own, not that one."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                refused_topic = fake.user_creates_topic(ALICE, "alpha")
                await new_handled(front, receive, "alpha", "refused: too many sessions")
                fake.user_sends(ALICE, "/new alpha")
                await new_handled(front, receive, "alpha")  # accepted: its thread comes next
                alpha = await front.link.open_thread(CHANNEL, "h", key="k-alpha", title="alpha")
                accepted_topic = fake.user_creates_topic(ALICE, "beta")
                await new_handled(front, receive, "beta")
                beta = await front.link.open_thread(CHANNEL, "h", key="k-beta", title="beta")
                nursery.cancel_scope.cancel()
            assert ids.parse_post(beta.id)[1] == accepted_topic  # the person's topic
            assert ids.parse_post(alpha.id)[1] not in (refused_topic, accepted_topic)
            assert sorted(fake.chat(ALICE).topics.values()) == ["alpha", "alpha", "beta"]
            assert (front.tg.topics_waiting, front.tg.topics_accepted) == ({}, {})


async def test_a_refused_topic_leaves_telegram_json_with_its_answer(tmp_path: Path) -> None:
    """A topic whose `!new` is refused (answered there, then marked handled) will be no
    session's thread: telegram.json forgets it with the answer, also one of a name whose
    newer topic is refused after it, not only at the next `/new` of its name or start."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                for _twice in range(2):
                    fake.user_creates_topic(ALICE, "alpha")
                    await new_handled(front, receive, "alpha", "refused: too many sessions")
                    assert Memory.open(tmp_path).opened == {}
                assert (front.tg.topics_waiting, front.tg.topics_accepted) == ({}, {})
                nursery.cancel_scope.cancel()


async def test_a_refused_topic_whose_new_comes_again_after_a_crash_is_not_kept_for_a_later_crash(
    tmp_path: Path,
) -> None:
    """A topic's `!new` refused (answered, handled), then a crash before its confirmation
    was written: it comes again, and the core turns it away as handled, with no answer
    and no thread, as it would an accepted one before its thread. A later `/new` of its
    name, accepted, gets a topic of its own, and telegram.json keeps nothing of the
    refused one (a start after another crash would take it for that name's oldest)."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                refused_topic = fake.user_creates_topic(ALICE, "alpha")
                await new_handled(front, receive, "alpha", "refused: too many sessions")
                nursery.cancel_scope.cancel()  # the crash: the offset not written
            async with front_end(fake, tmp_path, rate=100) as (again, receive), trio.open_nursery() as nursery:
                await nursery.start(again.run)
                await new_handled(again, receive, "alpha")  # came again: turned away as handled
                fake.user_sends(ALICE, "/new alpha")
                await new_handled(again, receive, "alpha")  # accepted: its thread comes next
                alpha = await again.link.open_thread(CHANNEL, "h", key="k-alpha", title="alpha")
                assert Memory.open(tmp_path).opened == {}
                nursery.cancel_scope.cancel()
            assert ids.parse_post(alpha.id)[1] != refused_topic
            assert sorted(fake.chat(ALICE).topics.values()) == ["alpha", "alpha"]


async def test_a_topic_the_person_opened_is_the_sessions_thread_after_a_crash_before_it_was_kept(
    tmp_path: Path,
) -> None:
    """A topic the person opens stands for `!new NAME`; the core marks that handled (with
    the session's record), then opens the thread. A crash between the two: the next
    start finishes the announcement (`Desk.recover_unannounced`) before any update comes
    again, and the session's thread must be the person's topic, not a twin of that name."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                opened = fake.user_creates_topic(ALICE, "gamma")
                await new_handled(front, receive, "gamma")  # the core's durable mark; then the crash
                nursery.cancel_scope.cancel()
            async with front_end(fake, tmp_path, rate=100) as (again, _receive):  # the next start
                gamma = await again.link.open_thread(CHANNEL, "h", key="k-gamma", title="gamma")
            assert ids.parse_post(gamma.id)[1] == opened
            assert sorted(fake.chat(ALICE).topics.values()) == ["gamma"]
            assert Memory.open(tmp_path).opened == {}  # the thread took it


async def test_a_topic_whose_new_was_refused_is_not_taken_after_a_restart(tmp_path: Path) -> None:
    """Topics the person opened, `!new`s refused (answered there, then handled), are kept
    across a crash only for the thread of a `!new` accepted before it: not taken by the
    thread of a `/new` of that name accepted after them, which the next start opens, nor,
    once the front end runs, by any later thread of that name."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                refused_topics = [fake.user_creates_topic(ALICE, name) for name in ("alpha", "beta")]
                for _topic in refused_topics:
                    refused = await receive.receive()
                    assert isinstance(refused, Posted)
                    await front.link.create_post(CHANNEL, "refused: too many sessions", reply_to=refused.post.id)
                    front.link.handled(CHANNEL, refused.post.id)
                fake.user_sends(ALICE, "/new alpha")
                await new_handled(front, receive, "alpha")  # accepted; its thread is cut by a crash
                await fake.wait_until(lambda: not fake.pending_updates())
                while front.tg.memory.held:  # all of it handled, durably: none comes again
                    await trio.sleep(0.02)
                await front.tg.memory.commit()
                nursery.cancel_scope.cancel()
            async with front_end(fake, tmp_path, rate=100) as (again, _receive), trio.open_nursery() as nursery:
                alpha = await again.link.open_thread(CHANNEL, "h", key="k-alpha", title="alpha")  # the start's
                await nursery.start(again.run)
                beta = await again.link.open_thread(CHANNEL, "h", key="k-beta", title="beta")  # e.g. configured
                nursery.cancel_scope.cancel()
            assert ids.parse_post(alpha.id)[1] != refused_topics[0]
            assert ids.parse_post(beta.id)[1] != refused_topics[1]
            assert sorted(fake.chat(ALICE).topics.values()) == ["alpha", "alpha", "beta", "beta"]


async def test_two_topics_of_one_name_each_get_the_answer_of_their_own_new(tmp_path: Path) -> None:
    """Two topics opened under one name, each standing for its `!new`: the first `!new`
    accepted takes the first topic, and the second, refused, is answered in the second.
    A `/new` typed before a topic of its name was opened takes no topic of the person's."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                first_topic = fake.user_creates_topic(ALICE, "alpha")
                first = await receive.receive()
                second_topic = fake.user_creates_topic(ALICE, "alpha")
                second = await receive.receive()
                assert isinstance(first, Posted) and isinstance(second, Posted)
                front.link.handled(CHANNEL, first.post.id)  # accepted: its thread comes next
                alpha = await front.link.open_thread(CHANNEL, "h", key="k-alpha", title="alpha")
                await front.link.create_post(CHANNEL, "Started alpha", reply_to=first.post.id)
                await front.link.create_post(CHANNEL, "refused: alpha exists", reply_to=second.post.id)
                front.link.handled(CHANNEL, second.post.id)

                fake.user_sends(ALICE, "/new beta")
                typed = await receive.receive()
                beta_topic = fake.user_creates_topic(ALICE, "beta")
                opened = await receive.receive()
                assert isinstance(typed, Posted) and isinstance(opened, Posted)
                front.link.handled(CHANNEL, typed.post.id)  # accepted, before the opened one
                beta = await front.link.open_thread(CHANNEL, "h", key="k-beta", title="beta")
                await front.link.create_post(CHANNEL, "refused: beta exists", reply_to=opened.post.id)
                front.link.handled(CHANNEL, opened.post.id)
                nursery.cancel_scope.cancel()
            assert ids.parse_post(alpha.id)[1] == first_topic
            assert [s.message["text"] for s in said(fake, first_topic)] == ["h", "Started alpha"]
            assert [s.message["text"] for s in said(fake, second_topic)] == ["refused: alpha exists"]
            assert ids.parse_post(beta.id)[1] not in (beta_topic, first_topic, second_topic)
            assert [s.message["text"] for s in said(fake, beta_topic)] == ["refused: beta exists"]


async def handled_again(front: TelegramFrontEnd, receive: trio.MemoryReceiveChannel[ChatEvent],
                        accepted: Posted, refused: Posted, refusal: str) -> None:
    """After a restart, what comes again, as the core deals with it: the accepted `!new`
    (if the crash cut its confirmation) turned away as handled; the one behind it, not
    handled before the crash, refused (`refusal`, with the core's key), then handled."""
    while True:
        event = await receive.receive()
        assert isinstance(event, Posted)
        if event.post.id == accepted.post.id:
            front.link.handled(CHANNEL, event.post.id)
            continue
        assert event.post.id == refused.post.id
        await front.link.create_post(CHANNEL, refusal, reply_to=event.post.id, idempotency_key=f"answer:{event.post.id}")
        front.link.handled(CHANNEL, event.post.id)
        return


async def test_a_second_topic_of_a_name_opened_right_after_the_first_leaves_the_session_in_the_first_across_a_crash(
    tmp_path: Path,
) -> None:
    """Two topics opened under one name, each standing for its `!new`: the first accepted
    (its handled mark durable), then a crash before its thread was kept, the second's not
    handled yet. The next start puts the session in the first topic, as without the crash,
    and the second, handled afresh, is refused there."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                first_topic = fake.user_creates_topic(ALICE, "alpha")
                second_topic = fake.user_creates_topic(ALICE, "alpha")
                first, second = await receive.receive(), await receive.receive()
                assert isinstance(first, Posted) and isinstance(second, Posted)
                front.link.handled(CHANNEL, first.post.id)  # accepted; then the crash
                nursery.cancel_scope.cancel()
            async with front_end(fake, tmp_path, rate=100) as (again, receive), trio.open_nursery() as nursery:
                # The start finishes the announcement (`Desk.recover_unannounced`), then runs.
                alpha = await again.link.open_thread(CHANNEL, "h", key="k-alpha", title="alpha")
                await again.link.create_post(CHANNEL, "Started alpha", reply_to=first.post.id, idempotency_key="a")
                await nursery.start(again.run)
                await handled_again(again, receive, first, second, "refused: alpha exists")
                nursery.cancel_scope.cancel()
            # Nothing left for a later thread of the name to take (the first `!new`, if it
            # came again, is of a session already).
            assert (again.tg.topics_waiting, again.tg.topics_accepted, Memory.open(tmp_path).opened) == ({}, {}, {})
            assert ids.parse_post(alpha.id)[1] == first_topic
            assert [s.message["text"] for s in said(fake, first_topic)] == ["h", "Started alpha"]
            assert [s.message["text"] for s in said(fake, second_topic)] == ["refused: alpha exists"]
            assert sorted(fake.chat(ALICE).topics.values()) == ["alpha", "alpha"]
            assert fake.bot_messages(ALICE, None) == []


async def test_a_new_typed_while_the_topic_of_its_name_waits_for_its_thread_leaves_the_session_in_that_topic(
    tmp_path: Path,
) -> None:
    """A topic opened, its `!new` accepted (handled), and a `/new` of its name typed (read
    by the front end) before the session's thread is opened: the thread is the person's
    topic, also when a crash came before it was kept; the typed `/new`, handled after,
    is refused in the main view."""
    for crash in (False, True):
        state = tmp_path / f"crash-{crash}"
        with trio.fail_after(15):
            async with running(topics=True) as fake:
                fake.add_user(ALICE)
                async with front_end(fake, state, rate=100) as (front, receive), trio.open_nursery() as nursery:
                    await nursery.start(front.run)
                    opened_topic = fake.user_creates_topic(ALICE, "gamma")
                    opened = await receive.receive()
                    assert isinstance(opened, Posted)
                    front.link.handled(CHANNEL, opened.post.id)  # accepted: its thread comes next
                    fake.user_sends(ALICE, "/new gamma")
                    typed = await receive.receive()
                    assert isinstance(typed, Posted)
                    if not crash:
                        gamma = await front.link.open_thread(CHANNEL, "h", key="k-gamma", title="gamma")
                        await front.link.create_post(CHANNEL, "refused: gamma exists", reply_to=typed.post.id)
                        front.link.handled(CHANNEL, typed.post.id)
                    nursery.cancel_scope.cancel()
                if crash:
                    async with front_end(fake, state, rate=100) as (again, receive), trio.open_nursery() as nursery:
                        gamma = await again.link.open_thread(CHANNEL, "h", key="k-gamma", title="gamma")  # the start's
                        await nursery.start(again.run)
                        await handled_again(again, receive, opened, typed, "refused: gamma exists")
                        nursery.cancel_scope.cancel()
                assert ids.parse_post(gamma.id)[1] == opened_topic, f"crash: {crash}"
                assert sorted(fake.chat(ALICE).topics.values()) == ["gamma"]
                assert [s.message["text"] for s in fake.bot_messages(ALICE, None)] == ["refused: gamma exists"]


async def test_a_new_typed_before_a_topic_of_its_name_was_opened_takes_no_topic_of_the_persons_across_a_crash(
    tmp_path: Path,
) -> None:
    """`/new gamma` typed, then a topic gamma opened: the typed one, handled first and
    accepted, gets a topic of its own, also when a crash came before its thread was
    kept (the opened topic still waiting); the opened topic's `!new` is refused there."""
    with trio.fail_after(15):
        async with running(topics=True) as fake:
            fake.add_user(ALICE)
            async with front_end(fake, tmp_path, rate=100) as (front, receive), trio.open_nursery() as nursery:
                await nursery.start(front.run)
                fake.user_sends(ALICE, "/new gamma")
                typed = await receive.receive()
                opened_topic = fake.user_creates_topic(ALICE, "gamma")
                opened = await receive.receive()
                assert isinstance(typed, Posted) and isinstance(opened, Posted)
                front.link.handled(CHANNEL, typed.post.id)  # accepted; then the crash
                nursery.cancel_scope.cancel()
            async with front_end(fake, tmp_path, rate=100) as (again, receive), trio.open_nursery() as nursery:
                gamma = await again.link.open_thread(CHANNEL, "h", key="k-gamma", title="gamma")  # the start's
                await nursery.start(again.run)
                await handled_again(again, receive, typed, opened, "refused: gamma exists")
                nursery.cancel_scope.cancel()
            assert ids.parse_post(gamma.id)[1] != opened_topic
            assert sorted(fake.chat(ALICE).topics.values()) == ["gamma", "gamma"]
            assert [s.message["text"] for s in said(fake, opened_topic)] == ["refused: gamma exists"]


def test_a_memory_file_of_a_version_without_posts_parts_is_read_whole(tmp_path: Path) -> None:
    (tmp_path / "telegram.json").write_text('{"version": 1, "offset": 5, "keys": {"a": "tg:1:2"}}')
    memory = Memory.open(tmp_path)
    assert (memory.offset, memory.keys, memory.posts, memory.roots, memory.opened) == (5, {"a": "tg:1:2"}, {}, {}, {})
    memory.remember_parts("tg:1:2", [2], 9)  # one message: an edit reaches it by its id
    memory.remember_parts("tg:1:3", [3, 4], 9)
    assert list(memory.posts) == ["tg:1:3"] and memory.posts["tg:1:3"].parts == (3, 4)
