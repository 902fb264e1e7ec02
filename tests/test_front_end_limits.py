"""Each front end's own limits reach the core: how long a message may be, how often a turn
repeats "typing", how long a create key may be (`ChatLink`'s attributes). The core holds
none of them; a front end with small ones gets its answers cut at its own limit."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from supervisor.chat.mattermost.link import MattermostLink
from supervisor.chat.telegram.limits import LIMITS
from supervisor.chat.telegram.link import TelegramLink
from supervisor.chat.web.link import WebLink
from supervisor.core.agent_events import SendPrompt, TextBlock, TurnEnded
from supervisor.core.outbox import Create, Outbox
from supervisor.core.session import SessionCore
from supervisor.core.session_effects import (
    Effect,
    QueuedPrompt,
    SessionSettings,
    Show,
    ToAgent,
    Typing,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from tests.memory_front import BOT, MemoryChat
from tests.test_memory_front import Run

CHANNEL = "chan"


def running_core(**settings: object) -> SessionCore:
    record = SessionRecord(id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root")
    core = SessionCore(record, SessionSettings(**settings))  # type: ignore[arg-type]
    core.start(0.0, launch_now=True)
    core.agent_ready(42, 0.0)
    return core


def final_texts(effects: list[Effect]) -> dict[str, str]:
    return {e.op.key: e.op.text for e in effects if isinstance(e, Show) and e.op.key.startswith("t")}


# --- in the core -------------------------------------------------------------------------


def test_an_answer_is_cut_at_the_front_ends_message_limit() -> None:
    core = running_core(max_message_chars=120)
    core.prompt(QueuedPrompt("p1", CHANNEL, "go"), 0.0)
    answer = "\n".join(f"line {i:03d}: some words of the answer" for i in range(40))
    effects = core.agent_event(TextBlock(answer), 1.0) + core.agent_event(TurnEnded(), 2.0)
    posts = final_texts(effects)
    assert len(posts) > 10 and all(len(text) <= 120 for text in posts.values())
    assert re.findall(r"line (\d{3})", "\n".join(posts.values())) == [f"{i:03d}" for i in range(40)]


def test_without_a_limit_the_core_does_not_cut() -> None:
    core = running_core()
    core.prompt(QueuedPrompt("p1", CHANNEL, "go"), 0.0)
    answer = "x" * 50_000
    posts = final_texts(core.agent_event(TextBlock(answer), 1.0) + core.agent_event(TurnEnded(), 2.0))
    assert len(posts) == 1 and next(iter(posts.values())).startswith(answer)


def test_typing_is_repeated_at_the_front_ends_cadence() -> None:
    core = running_core(typing_every_s=1.5, stall_timeout_s=float("inf"))
    started = core.prompt(QueuedPrompt("p1", CHANNEL, "go"), 0.0)
    assert ToAgent(SendPrompt("go")) in started and Typing() in started  # the first goes with it
    assert core.next_deadline() == 1.5
    assert Typing() not in core.tick(1.4)
    assert Typing() in core.tick(1.5)
    assert core.next_deadline() == 3.0
    assert Typing() in core.tick(3.2) and core.next_deadline() == pytest.approx(4.7)


def test_create_keys_stay_within_the_front_ends_key_limit() -> None:
    outbox = Outbox(0.5, max_key_chars=30)
    for i in range(200):
        outbox.put(PutPost.last(f"t1.{i}", "x"), 0.0)
    assert all(len(outbox.idempotency_key(f"t1.{i}")) <= 30 for i in range(200))
    action = outbox.next_action(0.0)
    assert isinstance(action, Create) and len(action.idempotency_key) <= 30
    with pytest.raises(ValueError):
        Outbox(0.5, max_key_chars=20)  # the default prefix would not leave room for the index


# --- each front end says its own -----------------------------------------------------------


def test_each_front_end_declares_its_limits() -> None:
    assert (MattermostLink.max_message_chars, MattermostLink.max_idempotency_key_chars) == (16383, 64)
    assert TelegramLink.max_message_chars <= LIMITS.max_message_chars == 4096
    assert TelegramLink.typing_every_s < 5  # sendChatAction shows "typing" for at most 5 s
    assert WebLink.max_message_chars >= MattermostLink.max_message_chars
    for link in (MattermostLink, TelegramLink, WebLink):
        assert 0 < link.typing_every_s < 5 and link.max_idempotency_key_chars >= 28


# --- through the real supervisor, on the memory front end -----------------------------------


@asynccontextmanager
async def supervised(tmp: Path, chat: MemoryChat) -> AsyncIterator[Run]:
    for name in ("home", "work", "state"):
        (tmp / name).mkdir()
    async with trio.open_nursery() as nursery:
        run = Run(chat, tmp, nursery)
        await run.start()
        try:
            yield run
        finally:
            if run.supervisor is not None:
                await run.stop()


async def test_a_front_end_with_a_small_limit_gets_its_answers_cut_at_it(tmp_path: Path) -> None:
    chat = MemoryChat(max_message_chars=300)
    async with supervised(tmp_path, chat) as run:
        root = await run.new_session("alpha")
        run.chat.say("[long 3000] a long one", root)
        await run.wait_for(lambda: run.find(root, "✅ Done"), 30)
        answer = [m.post.message for m in chat.thread(root)[2:] if m.post.user_id == BOT.id]
        assert len(answer) >= 10 and all(len(text) <= 300 for text in answer)
        numbers = re.findall(r"line (\d{5})", "\n".join(answer))
        assert numbers == [f"{n:05d}" for n in range(1, len(numbers) + 1)] and len(numbers) > 40


async def test_a_front_end_gets_typing_at_its_own_cadence(tmp_path: Path) -> None:
    chat = MemoryChat(typing_every_s=0.3)
    async with supervised(tmp_path, chat) as run:
        root = await run.new_session("alpha")
        run.chat.say("[slow 3] take your time", root)
        await run.wait_for(lambda: run.find(root, "✅ Done"), 30)
        times = [at for thread, at in chat.typing if thread == root]
        assert len(times) >= 5  # about one per 0.3 s of a 3 s turn; at 4 s there would be 1
        # The turn's first signal goes out with its prompt, a moment after the core decided it.
        assert all(b - a >= 0.2 for a, b in itertools.pairwise(times))
