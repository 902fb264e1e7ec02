"""The sans-IO core's commands and session texts: a thread verb with words after it, the
rerun offer of a long prompt, the `new` a failed session suggests, and the word that a
prompt waits when no answer of ours runs to say it."""

from __future__ import annotations

import pytest

from supervisor.core import commands
from supervisor.core.agent_events import SendPrompt, TextDelta, TurnEnded, TurnStarted
from supervisor.core.events import Post
from supervisor.core.prompt_endings import PROMPT_KEEP_CHARS
from supervisor.core.router import RouterView, RunThreadCommand, SessionRef, route_post
from supervisor.core.session_effects import (
    Effect,
    MarkHandled,
    OfferChoices,
    Show,
    ToAgent,
)
from supervisor.core.state import SessionRecord
from supervisor.core.thread_texts import carry_on
from supervisor.core.turn_loop import STARTING_NOTE_AFTER_S
from tests.test_session_core import CHANNEL, make_core, prompt, running, texts


def prompts_sent(effects: list[Effect]) -> list[str]:
    return [e.command.text for e in effects if isinstance(e, ToAgent) and isinstance(e.command, SendPrompt)]


# --- a thread verb with words after it is ours, not a prompt ------------------------


@pytest.mark.parametrize(
    ("text", "usage"),
    [("!stop now", "`!stop`"), ("!status please", "`!status`"), ("!end alpha", "`!end`"),
     ("!help me", "`!help`"), ("!sessions all", "`!sessions`")],
)
def test_a_thread_verb_with_words_after_it_is_told_its_usage_not_sent_to_the_agent(text: str, usage: str) -> None:
    """`!stop now` went to the agent as a prompt: the person's stop stopped nothing."""
    view = RouterView(bot_user_id="bot", allowed_user_ids=frozenset({"u"}),
                      sessions={"root": SessionRef("root", CHANNEL)})
    decision = route_post(Post(id="c1", channel_id=CHANNEL, user_id="u", message=text, root_id="root"), view)
    assert isinstance(decision, RunThreadCommand) and isinstance(decision.command, commands.BadCommand)
    core = running(make_core())
    core.prompt(prompt("p1"), 1.0)
    effects = core.command(decision.command, "c1", CHANNEL, 2.0)
    (said,) = texts(effects)
    assert said.startswith("⚠️ ") and said.endswith(f"usage: {usage}"), said
    assert MarkHandled(CHANNEL, "c1") in effects and not [e for e in effects if isinstance(e, ToAgent)]
    assert core.turn is not None and core.state.value == "busy"  # nothing else happened
    assert commands.parse_thread_command("!stop") == commands.Stop()  # the bare verbs still work


# --- a prompt too long to keep gets no rerun offer ----------------------------------


def test_a_cut_turn_whose_prompt_is_too_long_to_keep_offers_no_rerun_with_its_text() -> None:
    """The 🔁 offer kept the whole prompt in the record, for every later save to carry."""
    core = running(make_core())
    long = "x" * (PROMPT_KEEP_CHARS + 4_000)
    core.prompt(prompt("p1", long), 1.0)
    effects = core.agent_exited(1, "", 10.0)
    (notice,) = [e.op for e in effects if isinstance(e, Show) and "pl/p1" in e.op.text]
    assert "was cut" in notice.text and "Post it again to run it." in notice.text
    assert not [e for e in effects if isinstance(e, OfferChoices)]
    assert core.post_created(notice.key, "n1") == []
    assert core.record.rerun_offers == {} and long not in core.record.prompt_texts.values()
    # one that fits is still offered again
    core = running(make_core())
    core.prompt(prompt("p2", "x" * PROMPT_KEEP_CHARS), 1.0)
    effects = core.agent_exited(1, "", 10.0)
    (offer,) = [e for e in effects if isinstance(e, OfferChoices)]
    core.post_created(offer.key, "n2")
    assert core.record.rerun_offers == {"n2": "x" * PROMPT_KEEP_CHARS}


# --- the `new` a failed session suggests reads back as that session ------------------


@pytest.mark.parametrize("cwd", ["/home/u/My Project", "/srv/it's here", "/srv/api"])
def test_the_new_a_failed_session_suggests_starts_it_in_its_own_directory(cwd: str) -> None:
    """Joined with spaces, a directory with a space gave a `new` that `new` refused."""
    record = SessionRecord(id="0f3c", name="api", channel_id="c", user_id="u", cwd=cwd, has_history=True,
                           agent="opencode", persona="my reviewer", agent_session_id="ses_9")
    parsed = commands.parse_main_command("!" + carry_on(record))
    assert parsed == commands.NewSession("api", cwd, persona="my reviewer", agent="opencode", resume="ses_9")


# --- a prompt that waits with no answer of ours running is said to wait --------------


def test_a_prompt_written_during_the_agents_own_turn_is_said_queued() -> None:
    """It waited for that turn's end (up to the stall timeout) with no word in the thread."""
    core = running(make_core())
    core.agent_event(TurnStarted("s"), 1.0)  # no prompt of ours: the agent's own turn
    effects = core.prompt(prompt("B", "question B"), 2.0)
    assert prompts_sent(effects) == []
    assert any("Queued" in t and "began by itself" in t for t in texts(effects)), texts(effects)
    assert core.prompt(prompt("C"), 2.5) == []  # one note for a burst
    # once the turn has words, its answer's footer counts the queue, as ours does
    core.agent_event(TextDelta("the background task finished"), 3.0)
    effects = core.prompt(prompt("D"), 3.5)
    assert any("3 more prompts queued" in t for t in texts(effects)), texts(effects)
    assert prompts_sent(core.agent_event(TurnEnded(), 4.0)) == ["question B"]  # the order is kept


def test_prompts_written_while_the_agent_starts_slowly_are_said_queued() -> None:
    """They waited for a slow start (an ACP handshake, a restart's backoff) with no word."""
    core = make_core()
    core.start(0.0, launch_now=True)  # starting: not ready yet
    assert core.prompt(prompt("A", "question A"), 1.0) == []  # a quick start says nothing
    assert core.prompt(prompt("B", "question B"), 1.5) == []
    assert core.next_deadline() == 1.0 + STARTING_NOTE_AFTER_S
    assert core.tick(1.0 + STARTING_NOTE_AFTER_S - 0.1) == []
    (said,) = texts(core.tick(1.0 + STARTING_NOTE_AFTER_S))
    assert "Queued" in said and "starting" in said and "your 2 messages run, in order," in said
    assert core.next_deadline() is None and core.tick(20.0) == []  # once
    assert prompts_sent(core.agent_ready(42, 21.0)) == ["question A"]  # the order is kept


def test_a_prompt_written_while_the_agent_starts_quickly_is_not_said_queued() -> None:
    core = make_core()
    core.start(0.0, launch_now=True)
    core.prompt(prompt("A", "question A"), 1.0)
    assert prompts_sent(core.agent_ready(42, 2.0)) == ["question A"]
    assert not texts(core.tick(1.0 + STARTING_NOTE_AFTER_S))
