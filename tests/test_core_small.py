"""The small sans-IO pieces: commands, lifecycle, restart policy, the post ledger."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core import commands, texts, thread_texts
from supervisor.core.desk import StateRefusalNotices
from supervisor.core.lifecycle import IllegalTransition, SessionState, transition
from supervisor.core.restart import GiveUp, Restart, RestartPolicy, RestartTracker
from supervisor.core.state import (
    SLACK_MS,
    HandledIds,
    Ledger,
    SessionRecord,
    State,
    StateFileError,
    decode,
    encode,
)
from supervisor.core.words import Words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("!help", commands.Help()),
        ("!sessions", commands.ListSessions()),
        ("!new alpha", commands.NewSession("alpha")),
        ("!new alpha ~/src/alpha", commands.NewSession("alpha", "~/src/alpha")),
        ('!new alpha "/tmp/with space" persona=rev', commands.NewSession("alpha", "/tmp/with space", "rev")),
        ("!end alpha", commands.EndSession("alpha")),
        ("hello", None),
    ],
)
def test_main_commands(text: str, expected: object) -> None:
    assert commands.parse_main_command(text) == expected


@pytest.mark.parametrize("text", ["!new", "!new bad/name", "!new " + "x" * 65, "!end", "!nope", "!new a b c", "!new 'x"])
def test_bad_main_commands_explain(text: str) -> None:
    assert isinstance(commands.parse_main_command(text), commands.BadCommand)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("!end", "usage: `{c}end NAME`"),
        ("!new a b c", "usage: `{c}new NAME [CWD] [agent=A] [persona=P] [resume=ID]`"),
        ("!nope", "unknown command `!nope`; the commands here are `{c}help`, `{c}sessions`, "
                  "`{c}new NAME [CWD] [agent=A] [persona=P] [resume=ID]`, `{c}end NAME`, `{c}agents`"),
        ("!new bad/name", "`bad/name` is not a valid session name: use 1-64 letters, digits, `-`, `_` or `.`"),
    ],
)
def test_a_bad_command_names_the_right_forms_as_each_front_end_spells_them(text: str, said: str) -> None:
    bad = commands.parse_main_command(text)
    assert isinstance(bad, commands.BadCommand)
    for sign in ("!", "/"):
        assert bad.text(Words(command=sign)) == said.format(c=sign)


def test_the_core_texts_use_the_front_ends_words() -> None:
    words = Words(command="/", main="the chat's main view", thread="topic", help_notes="Buttons.")
    for text in (texts.main_help(words), texts.guidance(words), texts.ended(words), thread_texts.thread_help(words),
                 thread_texts.ended_note("a", words), thread_texts.failed_text("It died.", "", words)):
        assert "`!" not in text and "main DM" not in text and "thread" not in text, text
        assert "`/" in text, text
    assert "Buttons." in texts.main_help(words) and "Buttons." in thread_texts.thread_help(words)
    talked = SessionRecord(id="0f3c", name="api", channel_id="c", user_id="u", cwd="/srv/api", has_history=True,
                           agent="opencode", persona="reviewer", agent_session_id="ses_9")
    failed = thread_texts.failed_text("It died.", "", words, talked)
    assert "write `/new api /srv/api agent=opencode persona=reviewer resume=ses_9` in the chat's main view." in failed
    assert "resume=0f3c" in thread_texts.failed_text("", "", Words(), attrs.evolve(talked, agent="", agent_session_id=""))
    assert "resume=" not in thread_texts.failed_text("", "", Words(), attrs.evolve(talked, has_history=False))
    own = Words(where_prompts_go="Plain text goes to the active session.")
    assert texts.guidance(own).startswith("Plain text goes to the active session. `!new NAME [CWD]` starts one")
    assert texts.ended(Words()) == (  # the core's own words, as Mattermost shows them
        "This session has ended; nothing reaches an agent from this thread. Start a new one with `!new NAME` "
        "in the main DM."
    )


def test_thread_commands_and_prompts_that_look_like_commands() -> None:
    assert commands.parse_thread_command("!stop") == commands.Stop()
    assert commands.parse_thread_command("!get src/a.py") == commands.GetFile("src/a.py")
    assert commands.parse_thread_command("!important: keep tests green") is None
    assert commands.parse_thread_command('!get "my file.txt"') == commands.GetFile("my file.txt")


@pytest.mark.parametrize("text", ["!important: don't touch main", '!note: a "quote', "!tip: end with \\"])
def test_a_prompt_that_looks_like_a_command_is_a_prompt_whatever_its_quotes(text: str) -> None:
    """Read as a command line first, an apostrophe made it "could not read that command":
    the prompt was refused and marked handled, never reaching the agent."""
    assert commands.parse_thread_command(text) is None


@pytest.mark.parametrize("name", ["foo\n", "foo\nbar", "\nfoo"])
def test_a_session_name_holds_no_line_break(name: str) -> None:
    """`$` matched before a trailing newline: `!new "foo⏎"` made a second `foo`."""
    assert isinstance(commands.parse_main_command(f'!new "{name}"'), commands.BadCommand)


@pytest.mark.parametrize("text", ["!get my file.txt", "!get it's.txt", "!get"])
def test_a_file_name_that_did_not_read_as_one_word_is_told_how_to_quote_it(text: str) -> None:
    bad = commands.parse_thread_command(text)
    assert isinstance(bad, commands.BadCommand)
    said = bad.text(Words(command="/"))
    assert "in quotes" in said and '"my file.txt"`' in said, said
    if text != "!get it's.txt":  # that one is told before the verb is known
        assert said.endswith('usage: `/get PATH`, e.g. `/get "my file.txt"`'), said


def test_the_help_offers_new_in_the_form_a_wrong_new_is_told() -> None:
    bad = commands.parse_main_command("!new")
    assert isinstance(bad, commands.BadCommand)
    usage = bad.text(Words()).removeprefix("usage: ")
    assert "[resume=ID]" in usage and f"- {usage} — start a session" in texts.main_help(Words())


def test_final_states_are_final() -> None:
    for final in (SessionState.ENDED, SessionState.FAILED):
        for other in SessionState:
            with pytest.raises(IllegalTransition):
                transition(final, other)


def test_restart_policy_gives_up_past_its_window_limit() -> None:
    tracker = RestartTracker(RestartPolicy(max_restarts=2, window_s=10, backoff_base_s=1, backoff_cap_s=10))
    assert tracker.on_exit(0) == Restart(1)
    assert tracker.on_exit(1) == Restart(2)
    assert isinstance(tracker.on_exit(2), GiveUp)
    # once the window has passed, the count starts afresh
    assert tracker.on_exit(100) == Restart(1)


@given(st.lists(st.tuples(st.integers(0, 10**5), st.integers(0, SLACK_MS - 1), st.booleans()), max_size=60))
def test_ledger_admits_each_post_once_and_never_skips_an_unhandled_one(ops: list[tuple[int, int, bool]]) -> None:
    """Posts arrive in creation order, give or take less than the slack window."""
    ledger = Ledger()
    open_posts: dict[str, int] = {}
    clock = SLACK_MS
    for n, (step, late_by, finish) in enumerate(ops):
        clock += step
        created = clock - late_by
        post = f"p{n}"
        assert ledger.admit("c", post, created)
        assert not ledger.admit("c", post, created)
        open_posts[post] = created
        if finish:
            ledger.done("c", post)
            open_posts.pop(post)
            assert not ledger.admit("c", post, created)
    # A catch-up from the ledger's position re-reads every post not yet dealt with.
    since = ledger.catch_up_since("c")
    assert all(created >= since for created in open_posts.values())
    assert since >= 1, "since=0 would mean 'no since' to the server"


@given(st.lists(st.one_of(st.tuples(st.just("add"), st.integers(0, 4 * SLACK_MS)),
                         st.tuples(st.just("keep"), st.integers(0, 5 * SLACK_MS))), max_size=80))
def test_handled_ids_keep_exactly_the_slack_window_behind_the_cursor(ops: list[tuple[str, int]]) -> None:
    """The oldest id is tracked, not searched for on each commit: what is kept is still
    exactly every id created inside the window, whatever the order of adds and cursors."""
    ids = HandledIds()
    model: dict[str, int] = {}
    for n, (op, t) in enumerate(ops):
        if op == "add":
            ids.add(f"p{n}", t)
            model[f"p{n}"] = t
        else:
            model = {p: c for p, c in model.items() if c >= t - SLACK_MS}
            assert ids.within_slack(t) == model
        assert ids.oldest == min(ids.ids.values(), default=None)


def test_ledger_survives_encoding() -> None:
    ledger = Ledger()
    ledger.admit("c", "p1", SLACK_MS * 3)
    ledger.done("c", "p1")
    state = decode(encode(State(channels=ledger.snapshot())))
    again = Ledger.from_state(state.channels)
    assert not again.admit("c", "p1", SLACK_MS * 3)


def test_a_post_marked_handled_after_waiting_past_the_slack_is_kept_a_slack_window_from_its_mark() -> None:
    """A prompt queued behind a long turn is marked when its turn begins: its id must
    still be known after a restart, when a front end that stamps receipt times (Telegram)
    may give it again, newly stamped, if the crash cut its confirmation."""
    ledger = Ledger()
    ledger.admit("c", "queued", SLACK_MS)
    ledger.admit("c", "stop", 3 * SLACK_MS)  # a minute and more later, handled at once
    ledger.done("c", "stop")
    ledger.done("c", "queued")  # its turn begins
    state = decode(encode(State(channels=ledger.snapshot())))
    again = Ledger.from_state(state.channels)
    assert not again.admit("c", "queued", 4 * SLACK_MS - 1)  # given again, stamped anew


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'{"version": 99}', b'{"version": 1, "sessions": 5}', b"\xff\xfe"])
def test_damaged_state_is_an_error_not_an_empty_state(raw: bytes) -> None:
    with pytest.raises(StateFileError):
        decode(raw)


def test_a_disk_that_refuses_and_takes_writes_by_turns_is_told_at_most_every_ten_minutes() -> None:
    notices = StateRefusalNotices()
    assert notices.notice("/s", None, 0.0) is None  # nothing to say "again" about
    warning = notices.notice("/s", "No space left on device", 0.0)
    assert warning == texts.state_refused("/s", "No space left on device")
    assert notices.notice("/s", None, 5.0) == texts.state_written_again()
    assert notices.notice("/s", None, 6.0) is None  # said once
    assert notices.notice("/s", "No space left on device", 60.0) is None  # flapping: quiet
    assert notices.notice("/s", None, 61.0) is None  # no warning given, no "again" either
    assert notices.notice("/s", "No space left on device", 600.0) == warning
