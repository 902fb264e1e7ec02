"""A turn's end and the next queued prompt reaching its agent cost one write of the state
file, not two: the turn's durable save rides on the next prompt's handled mark
(`saves_a_mark_carries`), and nothing of the turn shows before that write is done."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.agent_events import SendPrompt, TextDelta, TurnEnded
from supervisor.core.events import Post
from supervisor.core.session_effects import (
    EditPost,
    Effect,
    MarkHandled,
    SaveRecord,
    Show,
    ToAgent,
    Typing,
    saves_a_mark_carries,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.runtime import store as store_module
from tests.memory_front import MemoryLink
from tests.test_memory_front import running as memory_running
from tests.test_session_core import make_core, prompt, running

RECORD = SessionRecord(id="s", name="n", channel_id="c", user_id="u", cwd="/")
DURABLE, SOON = SaveRecord(RECORD, True), SaveRecord(RECORD, False)
MARK = MarkHandled("c", "p")
SHOW = Show(PutPost.last("k", "text"))


def test_the_end_of_a_turn_rides_on_the_next_prompts_mark() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    core.prompt(prompt("p2"), 1.1)  # queued behind p1
    effects = core.agent_event(TextDelta("answer"), 2.0) + core.agent_event(TurnEnded(), 3.0)
    carried = saves_a_mark_carries(effects)
    (turn_end,) = [i for i, e in enumerate(effects) if isinstance(e, SaveRecord) and e.durable]
    mark = next(i for i, e in enumerate(effects) if isinstance(e, MarkHandled) and e.post_id == "p2")
    send = next(i for i, e in enumerate(effects) if isinstance(e, ToAgent) and isinstance(e.command, SendPrompt))
    assert carried == {turn_end} and turn_end < mark < send


def test_a_turn_end_with_nothing_queued_is_awaited_as_before() -> None:
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    effects = core.agent_event(TextDelta("answer"), 2.0) + core.agent_event(TurnEnded(), 3.0)
    assert saves_a_mark_carries(effects) == frozenset()


def test_only_across_effects_that_show_nothing_by_themselves() -> None:
    assert saves_a_mark_carries([DURABLE, SHOW, SOON, MARK]) == {0}
    assert saves_a_mark_carries([DURABLE, EditPost("x", "t"), MARK]) == frozenset()
    assert saves_a_mark_carries([DURABLE, Typing(), MARK]) == frozenset()
    assert saves_a_mark_carries([SOON, MARK]) == frozenset()  # nothing to carry
    assert saves_a_mark_carries([MARK, DURABLE]) == frozenset()  # no mark after it


EFFECTS = st.lists(st.sampled_from([DURABLE, SOON, MARK, SHOW, Typing(), EditPost("x", "t")]), max_size=12)


@given(EFFECTS)
def test_a_carried_save_always_has_a_mark_after_it_with_nothing_shown_between(effects: list[Effect]) -> None:
    for index in saves_a_mark_carries(effects):
        assert isinstance(effects[index], SaveRecord) and effects[index].durable
        mark = next(i for i in range(index, len(effects)) if isinstance(effects[i], MarkHandled))
        assert all(isinstance(e, Show | SaveRecord | ToAgent) for e in effects[index + 1 : mark])


# --- in the shell: the poster waits for the write, even when it wakes on its own ---------


async def test_a_turns_final_words_show_only_once_the_write_carrying_its_save_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The turn streams (so the poster has a streaming edit due, on its own timer, while the
    next prompt's mark is being written); that write is held up for half a second. The
    turn's completion line must not show before the write that makes its end durable."""
    happened: list[str] = []  # "durable" and the bot's texts, in order (the write is in a thread)
    second_id: list[str] = []
    real_append, real_edit = store_module.append_line, MemoryLink.edit_post

    def slow_append(journal: Any, line: bytes) -> None:
        carries = bool(second_id) and second_id[0].encode() in line
        if carries:
            time.sleep(0.5)  # the disk is slow for the write that carries the turn's end
        real_append(journal, line)
        if carries:
            happened.append("durable")

    async def logged_edit(self: MemoryLink, post_id: str, message: str) -> Post:
        happened.append(message)
        return await real_edit(self, post_id, message)

    monkeypatch.setattr(store_module, "append_line", slow_append)
    monkeypatch.setattr(MemoryLink, "edit_post", logged_edit)
    async with memory_running(tmp_path) as run:
        # Commits in a worker thread (as on a disk that proved slow): the event loop, and
        # the poster's own timer with it, goes on while the write is held up.
        assert run.supervisor is not None
        run.supervisor.store.commits_in_thread, run.supervisor.store.may_return_to_loop = True, False
        root = await run.new_session("alpha")
        run.chat.say("[slow 0.5] first", root)
        second_id.append(run.chat.say("second", root).id)  # queued behind the first turn
        await run.wait_for(lambda: run.find(root, "echo #2: second", "✅ Done"))
    done = next(i for i, text in enumerate(happened) if text.startswith("echo #1: first") and "✅ Done" in text)
    assert "durable" in happened[:done], happened
