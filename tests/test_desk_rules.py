"""The desk's pure rules (`core.desk`): which `!new` goes ahead, and the `!sessions` rows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.desk import (
    Accepted,
    DeskFacts,
    Directory,
    NewSession,
    Refused,
    check_new,
    sessions_text,
)
from supervisor.core.state import SessionRecord
from supervisor.core.words import Words
from tests.strategies import DESK_FACTS, DESK_NAMES, DIRECTORIES, NEW_SESSIONS


@given(NEW_SESSIONS, DIRECTORIES, DESK_FACTS)
def test_a_request_is_refused_exactly_when_a_rule_is_broken(
    request: NewSession, directory: Directory, facts: DeskFacts
) -> None:
    broken = [
        request.name in facts.live_names,
        bool(request.persona) and request.persona not in facts.personas,
        not directory.is_dir,
        bool(request.agent) and request.agent not in facts.agents,
    ]
    answer = check_new(request, directory, facts)
    assert isinstance(answer, Refused) == any(broken)
    if isinstance(answer, Accepted):
        assert answer == Accepted(request, directory.resolved)  # runs where the links lead
    else:
        # The first rule broken is the one the person reads about.
        first = broken.index(True)
        subject = [request.name, request.persona, directory.path, request.agent][first]
        assert f"`{subject}`" in answer.reason


def test_the_refusals_read_as_before() -> None:
    facts = DeskFacts(frozenset({"alpha"}), ("reviewer", "writer"), ("claude", "fake"))
    there = Directory("/srv/work", True, "/srv/work")
    assert check_new(NewSession("alpha"), there, facts) == Refused(
        "A live session is already called `alpha`; pick another name or `!end alpha` first."
    )
    assert check_new(NewSession("beta", persona="poet"), there, facts) == Refused(
        "There is no persona `poet` (`reviewer`, `writer`)."
    )
    no_personas = DeskFacts(frozenset(), (), ("claude",))
    assert check_new(NewSession("beta", persona="poet"), there, no_personas) == Refused(
        "There is no persona `poet` (none are configured)."
    )
    assert check_new(NewSession("beta"), Directory("/srv/gone", False, "/srv/gone"), facts) == Refused(
        "`/srv/gone` is not an existing directory."
    )
    assert check_new(NewSession("beta", agent="gpt"), there, facts) == Refused(
        "There is no agent `gpt` (configured: `claude`, `fake`)."
    )


@pytest.mark.parametrize("default", ["claude", "opencode"])
def test_a_persona_is_refused_with_an_agent_that_would_not_hear_it(default: str) -> None:
    """`!new x persona=reviewer agent=opencode`: OpenCode got none of the persona's system
    prompt and model, without a word."""
    agents = ("claude", "opencode") if default == "claude" else ("opencode", "claude")
    facts = DeskFacts(frozenset(), ("reviewer",), agents, personas_not_taken={"reviewer": (("opencode",), "why")})
    there = Directory("/srv/work", True, "/srv/work")
    refused = Refused("Persona `reviewer` cannot reach agent `opencode`: why.")
    assert check_new(NewSession("x", persona="reviewer", agent="opencode"), there, facts) == refused
    assert isinstance(check_new(NewSession("x", persona="reviewer", agent="claude"), there, facts), Accepted)
    chosen_by_default = check_new(NewSession("x", persona="reviewer"), there, facts)
    assert chosen_by_default == refused if default == "opencode" else isinstance(chosen_by_default, Accepted)


def _record(name: str, created_at: str, root_id: str, status: str = "live") -> SessionRecord:
    return SessionRecord(
        id=name, name=name, channel_id="dm", user_id="ana", cwd=f"/srv/{name}", root_id=root_id,
        created_at=created_at, status=status,
    )  # fmt: skip


def test_no_sessions_yet() -> None:
    unannounced = _record("alpha", "2026-01-01T00:00:00Z", root_id="")
    assert sessions_text([unannounced], {}, lambda root: root, 0.0, Words(), 16383) == (
        "No sessions yet. Start one with `!new NAME [CWD]`."
    )


def test_the_rows_oldest_first_with_the_live_state_and_a_link() -> None:
    records = [
        _record("beta", "2026-01-01T00:10:00Z", "r2", status="ended"),
        _record("alpha", "2026-01-01T00:00:00Z", "r1"),
        _record("gamma", "2026-01-01T00:20:00Z", ""),  # not announced: not listed
    ]
    now = 1767226800.0  # 2026-01-01T00:20:00Z
    text = sessions_text(records, {"r1": "busy"}, lambda root: f"https://chat/{root}", now, Words(), 16383)
    assert text == (
        "| session | state | directory | age | thread |\n"
        "|---|---|---|---|---|\n"
        "| alpha | busy | `/srv/alpha` | 20m | [open](https://chat/r1) |\n"
        "| beta | ended | `/srv/beta` | 10m | [open](https://chat/r2) |"
    )


@given(
    st.lists(
        st.tuples(DESK_NAMES, st.integers(0, 59), st.sampled_from(["", "r1", "r2", "r3"]), st.booleans()),
        max_size=8,
    )
)
def test_every_announced_session_has_one_row_in_age_order(rows: list[tuple[str, int, str, bool]]) -> None:
    records = [
        _record(name, f"2026-01-01T00:{minute:02d}:00Z", root, status="live" if live else "ended")
        for name, minute, root, live in rows
    ]
    text = sessions_text(records, {}, lambda root: f"link-{root}", 1767226800.0, Words(), 16383)
    announced = sorted((r for r in records if r.root_id), key=lambda r: r.created_at)
    lines = text.splitlines()[2:] if announced else []
    assert len(lines) == len(announced)
    for line, record in zip(lines, announced, strict=True):
        assert line.startswith(f"| {record.name} | {record.status} | `{record.cwd}` |")
        assert line.endswith(f"[open](link-{record.root_id}) |")


def test_a_list_longer_than_a_message_leaves_out_the_oldest_ended_sessions_and_says_how_many() -> None:
    """Sessions are never forgotten: after a few months one message could not hold them
    all, and the server refused the answer (Mattermost: 16,383 characters), so
    `!sessions` went unanswered for good."""
    records = [
        _record(f"s{n:03d}", f"2026-01-01T{n // 60:02d}:{n % 60:02d}:00Z", f"r{n}", status="ended" if n % 10 else "live")
        for n in range(300)
    ]
    link = "https://chat.example.com/team/pl/{}".format
    text = sessions_text(records, {}, link, 1767226800.0, Words(), 16383)
    assert len(text) <= 16383
    rows = [line for line in text.splitlines() if line.startswith("| s") and not line.startswith("| session")]
    assert all(f"| s{n:03d} |" in text for n in range(0, 300, 10))  # every live one
    assert "| s299 |" in text and "| s001 |" not in text  # the newest ended ones stay
    assert text.endswith(f"…and {300 - len(rows)} older ended or failed session(s), not listed.")
    assert "not listed" not in sessions_text(records[:3], {}, link, 1767226800.0, Words(), 16383)


def test_a_conversation_a_live_session_continues_is_refused_to_a_second_one() -> None:
    facts = DeskFacts(frozenset({"alpha"}), (), ("claude",), live_conversations={"ses_1": "alpha"})
    there = Directory("/srv/work", True, "/srv/work")
    assert check_new(NewSession("beta", resume="ses_1"), there, facts) == Refused(
        "Session **alpha** is still continuing conversation `ses_1`: a second session on it would mix"
        " two histories into one. End it first (`!end alpha`), then start this one again."
    )
    assert isinstance(check_new(NewSession("beta", resume="ses_2"), there, facts), Accepted)
    assert isinstance(check_new(NewSession("beta"), there, facts), Accepted)
