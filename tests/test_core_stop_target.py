"""Which turn a 🛑 stops: one given on a turn's answer while it streamed may come after
that turn ended and the next queued prompt began; it must not stop that prompt's turn."""

from __future__ import annotations

from supervisor.chat.mattermost import choices
from supervisor.core import commands
from supervisor.core.agent_events import Interrupt, SendPrompt, TextDelta, TurnEnded, TurnStarted
from supervisor.core.session import SessionCore
from supervisor.core.session_effects import Effect, QueuedPrompt, SessionSettings, Show, ToAgent
from supervisor.core.state import SessionRecord
from supervisor.core.turn_loop import TURN_POSTS_KEPT
from tests.test_session_core import asked

CHANNEL = "chan"
ENDED = "that turn had ended already"


def running() -> SessionCore:
    record = SessionRecord(id="sid", name="alpha", channel_id=CHANNEL, user_id="u", cwd="/tmp", root_id="root")
    settings = SessionSettings(username="alice", permalink=lambda p: f"https://chat.test/pl/{p}", legend=choices.legend)
    core = SessionCore(record, settings)
    core.start(0.0, launch_now=True)
    core.agent_ready(42, 0.0)
    return core


def prompt(post_id: str) -> QueuedPrompt:
    return QueuedPrompt(post_id, CHANNEL, f"text of {post_id}")


def texts(effects: list[Effect]) -> list[str]:
    return [e.op.text for e in effects if isinstance(e, Show)]


def interrupts(effects: list[Effect]) -> list[Interrupt]:
    return [e.command for e in effects if isinstance(e, ToAgent) and isinstance(e.command, Interrupt)]


def first_turn_ends_and_second_starts(core: SessionCore) -> None:
    """p1's answer is post "a1"; p2, queued behind it, is in the agent once it ends."""
    core.prompt(prompt("p1"), 1.0)
    shown = core.agent_event(TextDelta("answer one"), 1.5)
    assert [e.op.key for e in shown if isinstance(e, Show)] == ["t1.0"]
    core.post_created("t1.0", "a1")
    core.prompt(prompt("p2"), 2.0)
    effects = core.agent_event(TurnEnded(), 3.0)
    assert [e.command.text for e in effects if isinstance(e, ToAgent) and isinstance(e.command, SendPrompt)] == [
        "text of p2"
    ]


def test_a_stop_on_the_ended_turns_answer_does_not_stop_the_next_queued_prompt() -> None:
    core = running()
    first_turn_ends_and_second_starts(core)
    effects = core.choose("stop", "a1", 3.1)  # given while p1's turn streamed
    assert interrupts(effects) == []
    assert any(ENDED in text and "`!stop`" in text for text in texts(effects)), texts(effects)
    assert core.turn is not None and core.turn.prompt.post_id == "p2" and core.turn.interrupted_at is None


def test_a_stop_on_the_running_turns_answer_or_the_root_or_by_command_stops_it() -> None:
    for stop in ("answer", "root", "command"):
        core = running()
        first_turn_ends_and_second_starts(core)
        core.agent_event(TextDelta("answer two"), 3.2)
        core.post_created("t2.0", "a2")
        if stop == "answer":
            effects = core.choose("stop", "a2", 3.3)
        elif stop == "root":
            effects = core.choose("stop", "root", 3.3)
        else:
            effects = core.command(commands.Stop(), "c1", CHANNEL, 3.3)
        assert len(interrupts(effects)) == 1, stop
        assert not any(ENDED in text for text in texts(effects)), stop


def test_a_stop_on_an_ended_turns_permission_request_does_not_stop_the_next_turn() -> None:
    core = running()
    core.prompt(prompt("p1"), 1.0)
    request = core.agent_event(asked("r1"), 1.2)
    key = next(e.op.key for e in request if isinstance(e, Show))
    core.post_created(key, "q1")
    core.choose("allow_once", "q1", 1.4)
    core.prompt(prompt("p2"), 2.0)
    core.agent_event(TurnEnded(), 3.0)
    assert core.turn is not None and core.turn.prompt.post_id == "p2"
    effects = core.choose("stop", "q1", 3.1)
    assert interrupts(effects) == [] and any(ENDED in text for text in texts(effects))


def test_a_stop_on_an_ended_turns_answer_waiting_for_a_held_prompt_does_not_stop_it() -> None:
    core = running()
    core.prompt(prompt("p1"), 1.0)
    core.agent_event(TextDelta("answer one"), 1.5)
    core.post_created("t1.0", "a1")
    core.prompt_in(prompt("p2"), ["f2"], 2.0)  # its file is being saved
    core.agent_event(TurnEnded(), 3.0)
    assert core.choose("stop", "a1", 3.1) == []  # no turn runs: it waits for p2's
    effects = core.files_saved(prompt("p2"), 4.0)
    assert core.turn is not None and core.turn.prompt.post_id == "p2"
    assert interrupts(effects) == [] and any(ENDED in text for text in texts(effects))


def test_a_stop_on_an_ended_turns_answer_does_not_stop_the_agents_own_turn() -> None:
    core = running()
    core.prompt(prompt("p1"), 1.0)
    core.agent_event(TextDelta("answer one"), 1.5)
    core.post_created("t1.0", "a1")
    core.agent_event(TurnEnded(), 3.0)
    core.agent_event(TurnStarted("sid"), 4.0)  # a background task woke it
    own = core.agent_event(TextDelta("woken"), 4.1)
    assert [e.op.key for e in own if isinstance(e, Show)] == ["t2.0"]
    core.post_created("t2.0", "b2")
    effects = core.choose("stop", "a1", 4.2)
    assert interrupts(effects) == [] and any(ENDED in text for text in texts(effects))
    assert len(interrupts(core.choose("stop", "b2", 4.3))) == 1


def test_the_posts_whose_turn_is_known_stay_bounded() -> None:
    core = running()
    core.prompt(prompt("p1"), 1.0)
    for i in range(TURN_POSTS_KEPT + 10):
        core.post_created(f"t1.{i}", f"a{i}")
    core.post_created("note.0", "n0")  # a post of no turn is not kept
    kept = core.loop.turn_posts
    assert len(kept) == TURN_POSTS_KEPT
    assert "a0" not in kept and f"a{TURN_POSTS_KEPT + 9}" in kept and "n0" not in kept
