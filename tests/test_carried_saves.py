"""A turn's end and the next queued prompt reaching its agent cost one write of the state
file, not two: the turn's durable save rides on the next prompt's handled mark
(`saves_a_mark_carries`), and nothing of the turn shows before that write is done."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.agent_events import SendPrompt, TextDelta, TurnEnded
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
