"""The turn renderer, message splitting, and permission request texts."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.agent.claude.permissions import permission_asked
from supervisor.agent.claude.tools import tool_argument
from supervisor.chat.mattermost.choices import PERMISSION_LEGEND as LEGEND
from supervisor.chat.mattermost.choices import kind_of
from supervisor.core.agent_events import (
    AgentEvent,
    PermissionAsked,
    TextBlock,
    TextDelta,
    ThinkingBlock,
    ToolCall,
    ToolOutcome,
    TurnEnded,
    TurnStarted,
)
from supervisor.core.markdown import closing_fence, open_fence, split_parts
from supervisor.core.permissions import Answer, PermissionState, choice_answer, permission_text
from supervisor.core.render import TurnRenderer, _Segment, split_message
from supervisor.core.thread_ops import PutPost

MAX_POST_CHARS = 16_383  # a front end's limit (Mattermost's); the core is handed it


def claude_tool(tool_use_id: str, name: str, tool_input: dict[str, Any]) -> ToolCall:
    """A tool call as the Claude side hands it over: with its one-line summary."""
    return ToolCall(tool_use_id, name, tool_input, tool_argument(name, tool_input))

# --- an independent reading of CommonMark fences, to check the splitter against ----------

Fence = tuple[str, int]  # (character, run length)


def _fence_line(line: str) -> tuple[str, int, str] | None:
    """(char, run, rest) when the line looks like a fence, else None."""
    stripped = line.lstrip(" ")
    if len(line) - len(stripped) > 3 or stripped[:1] not in ("`", "~"):
        return None
    run = len(stripped) - len(stripped.lstrip(stripped[0]))
    return (stripped[0], run, stripped[run:]) if run >= 3 else None


def _step(fence: Fence | None, line: str) -> Fence | None:
    found = _fence_line(line)
    if found is None:
        return fence
    char, run, rest = found
    if fence is None:
        return None if char == "`" and "`" in rest else (char, run)
    closes = char == fence[0] and run >= fence[1] and not rest.strip(" \t\r")
    return None if closes else fence


def states(text: str, fence: Fence | None = None) -> list[tuple[Fence | None, Fence | None]]:
    """The fence open before and after each line."""
    out = []
    for line in text.split("\n"):
        after = _step(fence, line)
        out.append((fence, after))
        fence = after
    return out


def is_balanced(text: str) -> bool:
    return states(text)[-1][1] is None


# --- strategies ---------------------------------------------------------------------------

FENCE_LINES = st.sampled_from(
    ["```", "```python", "~~~", "````", "````md", "~~~~ js", "   ```", "```x`y", "`````", "```  "]
)
ALPHABET = "ab `~#>-* é漢😀\t\r"
LINES = st.one_of(
    FENCE_LINES,
    st.text(alphabet=ALPHABET, max_size=30),
    st.text(alphabet=ALPHABET, min_size=40, max_size=400),  # long lines without newlines
    st.text(max_size=30),  # any unicode, newlines included
)
TEXTS = st.lists(LINES, max_size=40).map("\n".join)
SHORT_LINES = st.one_of(FENCE_LINES, st.text(alphabet="ab `~é漢😀", max_size=12))
SHORT_LINE_TEXTS = st.lists(SHORT_LINES, max_size=60).map("\n".join)


# --- a segment streamed: its fence state kept as it grows -----------------------------------


@settings(max_examples=400)
@given(TEXTS, st.lists(st.integers(1, 40), min_size=1, max_size=60))
def test_a_streamed_segment_is_sealed_as_if_scanned_whole(text: str, sizes: list[int]) -> None:
    """`sealed` scans only what each delta added (whole lines carried over): the same
    closing fence as a scan of the whole text, at every step."""
    segment = _Segment("text", "", streaming=True)
    at = 0
    for size in itertools.cycle(sizes):
        if at >= len(text):
            break
        segment.append(text[at : at + size])
        at += size
        so_far = text[:at]
        assert segment.sealed() == so_far + closing_fence(so_far, open_fence(so_far))


# --- split_message ------------------------------------------------------------------------


@settings(max_examples=600)
@given(TEXTS, st.integers(1, 300))
def test_split_parts_fit_balance_and_keep_every_character(text: str, limit: int) -> None:
    parts = split_parts(text, limit)
    assert "".join(part.body for part in parts) == text
    assert split_message(text, limit) == [part.text for part in parts]
    for part in parts:
        assert len(part.text) <= limit
        assert is_balanced(part.text)
        # what was added is fence lines only: an opener before, a closer after
        if part.reopen:
            assert part.reopen.endswith("\n") and _fence_line(part.reopen[:-1]) is not None
        if part.close:
            closer = part.close.removeprefix("\n")
            assert closer and set(closer) in ({"`"}, {"~"})
            assert part.close.startswith("\n") != part.body.endswith("\n") or not part.body
    assert all(part.body for part in parts) or parts == split_parts("", limit)


@settings(max_examples=400)
@given(SHORT_LINE_TEXTS, st.integers(60, 300))
def test_split_cuts_at_newlines_and_keeps_code_code(text: str, limit: int) -> None:
    """With short lines, every cut is at a newline and each line stays exactly as much
    code (inside the same kind of fence) as it was in the whole message."""
    parts = split_parts(text, limit)
    original = states(text)
    line = 0
    for part in parts[:-1]:
        assert part.body.endswith("\n")
    for part in parts:
        start: Fence | None = None
        if part.reopen:
            start = states(part.reopen[:-1])[0][1]
        body_lines = part.body.split("\n")
        if part.body.endswith("\n"):
            body_lines.pop()
        seen = states("\n".join(body_lines), start) if body_lines else []
        assert seen == original[line : line + len(body_lines)]
        line += len(body_lines)


@settings(max_examples=300)
@given(st.text(max_size=200), st.integers(1, 300))
def test_split_leaves_short_balanced_text_alone(text: str, limit: int) -> None:
    if len(text) <= limit and is_balanced(text):
        assert split_message(text, limit) == [text]


def test_split_reopens_with_the_same_info_string() -> None:
    code = "\n".join(f"x{i} = {i}" for i in range(40))
    parts = split_message(f"intro\n````python\n{code}\n````\nouttro", 120)
    assert len(parts) > 2
    for part in parts[1:-1]:
        assert part.startswith("````python\n") and part.endswith("\n````")
    assert all(len(part) <= 120 and is_balanced(part) for part in parts)


def test_split_prefers_cutting_outside_code_and_between_paragraphs() -> None:
    prose = "word " * 12
    code = "code\n" * 30
    text = f"{prose}\n\n{prose}\n{prose}\n```\n{code}```\nend"
    first = split_message(text, 200)[0]
    assert first == f"{prose}\n\n{prose}\n{prose}\n"  # before the fence, not inside it
    paragraphs = split_message(f"{prose}\n{prose}\n\n{prose}\n{prose}", 150)
    assert paragraphs[0] == f"{prose}\n{prose}\n\n"


@pytest.mark.parametrize("lines", range(1, 12))
def test_no_post_shows_an_empty_code_block_where_the_cut_could_move(lines: int) -> None:
    """A code block ends just past where the post is full: the cut is made a line earlier,
    not right before the closing fence (the next post would open with an empty block, or
    be nothing else), nor right after the opening one."""
    code = "".join(f"line {i:02} of code\n" for i in range(lines))
    for limit in range(40, 160):
        parts = split_parts(f"Some words first.\n```python\n{code}```\nAnd after it.\n" * 2, limit)
        for part in parts:
            first_line = part.body.split("\n", 1)[0]
            assert not (part.reopen and first_line == "```"), (limit, part)
            assert not part.body.endswith("```python\n"), (limit, part)


def test_split_a_line_longer_than_a_post() -> None:
    parts = split_message("é" * 40000, MAX_POST_CHARS)
    assert [len(p) for p in parts] == [MAX_POST_CHARS, MAX_POST_CHARS, 40000 - 2 * MAX_POST_CHARS]


def test_split_a_fence_made_of_a_huge_run_of_backticks() -> None:
    parts = split_message("`" * 1000 + "\nx", 100)
    assert all(len(p) <= 100 and is_balanced(p) for p in parts)


# --- the renderer: text -------------------------------------------------------------------


def final_posts(ops: list[PutPost]) -> dict[str, str]:
    posts: dict[str, str] = {}
    for op in ops:
        posts[op.key] = op.text
    return posts


def feed_all(renderer: TurnRenderer, events: list[AgentEvent], now: float = 0.0) -> list[PutPost]:
    ops: list[PutPost] = []
    for event in events:
        ops += renderer.feed(event, now)
    return ops


def test_deltas_stream_into_one_post_and_the_block_is_authoritative() -> None:
    r = TurnRenderer()
    r.start_turn(0)
    assert r.feed(TextDelta("Hel"), 1) == [PutPost.urgent("t1.0", "Hel")]  # the first words: at once
    assert r.feed(TextDelta("lo"), 2) == [PutPost("t1.0", "Hello")]
    assert r.feed(TextDelta(""), 2) == []
    assert r.feed(TextBlock("Hello, world."), 3) == [PutPost("t1.0", "Hello, world.")]
    assert r.feed(TextBlock("Second block."), 4) == [
        PutPost("t1.0", "Hello, world.\n\nSecond block.")
    ]


def test_text_tool_text_flow_in_one_post() -> None:
    r = TurnRenderer()
    ops = feed_all(
        r,
        [
            TurnStarted("s"),
            TextDelta("Let me look."),
            TextBlock("Let me look."),
            claude_tool("u1", "Bash", {"command": "ls -la\necho more"}),
            claude_tool("u2", "Read", {"file_path": "/src/a.py"}),
            TextDelta("Found it."),
        ],
    )
    assert final_posts(ops) == {
        "t1.0": "Let me look.\n\n🔧 `Bash` `ls -la …`\n🔧 `Read` `/src/a.py`\n\nFound it."
    }


def test_tool_lines_name_the_key_argument() -> None:
    assert tool_argument("Bash", {"command": "x" * 500}) == "x" * 500
    assert tool_argument("Write", {"file_path": "/a", "content": "..."}) == "/a"
    assert tool_argument("Edit", {"file_path": "/b", "old_string": "1"}) == "/b"
    assert tool_argument("Grep", {"pattern": "def \\w+", "path": "."}) == "def \\w+"
    assert tool_argument("Glob", {"pattern": "**/*.py"}) == "**/*.py"
    assert tool_argument("WebFetch", {"url": "https://x.org", "prompt": "p"}) == "https://x.org"
    assert tool_argument("mcp__db__query", {"sql": "select 1"}) == '{"sql": "select 1"}'
    assert tool_argument("TodoRead", {}) == ""
    r = TurnRenderer()
    ops = feed_all(
        r,
        [
            claude_tool("1", "Bash", {"command": "y" * 500}),
            claude_tool("2", "Bash", {"command": "echo `date`"}),
            claude_tool("3", "TodoRead", {}),
        ],
    )
    lines = final_posts(ops)["t1.0"].split("\n")
    assert lines[0] == f"🔧 `Bash` `{'y' * 119}…`"
    assert lines[1] == "🔧 `Bash` `` echo `date` ``"
    assert lines[2] == "🔧 `TodoRead`"


def test_failed_tool_outcome_marks_its_line_and_ok_adds_nothing() -> None:
    r = TurnRenderer()
    feed_all(
        r, [claude_tool("1", "Bash", {"command": "make"}), claude_tool("2", "Read", {"file_path": "/x"})]
    )
    assert r.feed(ToolOutcome("2", is_error=False, text="contents"), 1) == []
    assert r.feed(ToolOutcome("1", is_error=True, text="Exit code 2\nmake: *** failed"), 1) == [
        PutPost("t1.0", "❌ `Bash` `make` — `Exit code 2`\n🔧 `Read` `/x`")
    ]
    assert r.feed(ToolOutcome("unknown", is_error=True), 1) == []


def test_a_call_said_again_changes_its_line_in_place() -> None:
    """An ACP plan is sent whole each time it changes: one line, the latest, where the
    first stood, even once a permission request has moved the turn to a post below."""
    r = TurnRenderer()
    feed_all(r, [ToolCall("plan", "Plan", summary="▸ Look · ☐ Fix"), claude_tool("1", "Bash", {"command": "ls"})])
    assert r.feed(ToolCall("plan", "Plan", summary="☑ Look · ▸ Fix"), 1) == [
        PutPost("t1.0", "🔧 `Plan` `☑ Look · ▸ Fix`\n🔧 `Bash` `ls`")
    ]
    r.break_flow()
    r.feed(TextDelta("Fixing."), 2)
    assert final_posts(r.feed(ToolCall("plan", "Plan", summary="☑ Look · ☑ Fix"), 3)) == {
        "t1.0": "🔧 `Plan` `☑ Look · ☑ Fix`\n🔧 `Bash` `ls`"
    }


def test_thinking_is_a_short_quote_or_nothing() -> None:
    thought = "First I check.\n\nThen I plan.\nThen I act.\nThen I rest."
    shown = final_posts(feed_all(TurnRenderer(), [ThinkingBlock(thought), TextBlock("Done.")]))
    assert shown == {"t1.0": "> 💭 First I check.\n> Then I plan.\n> Then I act. …\n\nDone."}
    hidden = final_posts(
        feed_all(TurnRenderer(show_thinking=False), [ThinkingBlock(thought), TextBlock("Done.")])
    )
    assert hidden == {"t1.0": "Done."}
    assert feed_all(TurnRenderer(), [ThinkingBlock("  ")]) == []


def test_an_unclosed_fence_does_not_swallow_what_follows() -> None:
    ops = feed_all(
        TurnRenderer(), [TextBlock("```sh\nmake"), claude_tool("1", "Bash", {"command": "make"})]
    )
    text = final_posts(ops)["t1.0"]
    assert text == "```sh\nmake\n```\n\n🔧 `Bash` `make`"
    assert is_balanced(text)


def test_a_long_answer_with_a_fence_across_the_cut_arrives_whole_and_in_order() -> None:
    prose = "".join(f"Sentence {i} of the introduction.\n" for i in range(200))
    code = "".join(f"    value_{i} = compute({i})  # step {i}\n" for i in range(600))
    answer = f"{prose}\n```python\n{code}```\n\n{prose * 3}"[:40000]
    assert len(answer) == 40000 and answer.count("```") == 2
    r = TurnRenderer(limit=MAX_POST_CHARS)
    r.start_turn(0)
    ops: list[PutPost] = []
    for i in range(0, len(answer), 37):
        ops += r.feed(TextDelta(answer[i : i + 37]), i / 1000)
    ops += r.feed(TextBlock(answer), 50)
    ops += r.feed(TurnEnded(total_cost_usd=0.5), 60)
    posts = final_posts(ops)
    assert list(posts) == ["t1.0", "t1.1", "t1.2"]  # first put in this order
    # The completion line is the last post's footer, not a post of its own.
    last, done = posts["t1.2"].rsplit("\n\n", 1)
    assert done.startswith("✅ Done")
    posts["t1.2"] = last
    assert all(op.final for op in ops[-3:]) and {op.key for op in ops[-3:]} == set(posts)
    texts = list(posts.values())
    assert texts == split_message(answer, MAX_POST_CHARS)
    assert all(len(t) <= MAX_POST_CHARS and is_balanced(t) for t in texts)
    assert texts[0].endswith("\n```") and texts[1].startswith("```python\n")

    def content(text: str) -> list[str]:
        return [ln for ln in text.split("\n") if ln.strip() and _fence_line(ln) is None]

    assert content("\n".join(texts)) == content(answer)
    # stable: once a later post was put, an earlier one never changes again
    latest = -1
    for op in ops:
        if op.key.startswith("t1.") and not op.final:
            index = int(op.key.split(".")[1])
            assert index >= latest
            latest = index


def stream(text: str, limit: int, sizes: list[int]) -> list[PutPost]:
    """`text` fed as deltas of the given sizes, then as its block."""
    r = TurnRenderer(limit=limit)
    r.start_turn(0)
    ops: list[PutPost] = []
    start = 0
    for n in itertools.cycle(sizes):
        if start >= len(text):
            break
        ops += r.feed(TextDelta(text[start : start + n]), 0)
        start += n
    return ops + r.feed(TextBlock(text), 1)


def assert_stable(ops: list[PutPost]) -> None:
    """Once a later post of the answer was put, an earlier one never changes again."""
    latest = -1
    for op in ops:
        index = int(op.key.split(".")[1])
        assert index >= latest, f"{op.key} changed after post {latest}"
        latest = index


@settings(max_examples=300)
@given(TEXTS, st.integers(20, 300), st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_any_streamed_answer_fits_balances_and_is_stable(
    text: str, limit: int, sizes: list[int]
) -> None:
    ops = stream(text, limit, sizes)
    assert_stable(ops)
    for post in final_posts(ops).values():
        assert len(post) <= limit and is_balanced(post) and post.strip()


@settings(max_examples=300)
@given(SHORT_LINE_TEXTS, st.integers(60, 300), st.lists(st.integers(1, 40), min_size=1))
def test_a_streamed_answer_arrives_complete(text: str, limit: int, sizes: list[int]) -> None:
    def content(text: str) -> list[str]:
        return [ln for ln in text.split("\n") if ln.strip() and _fence_line(ln) is None]

    posts = final_posts(stream(text, limit, sizes))
    assert content("\n".join(posts.values())) == content(text)


# --- the renderer: end of turn -------------------------------------------------------------


def done_line(r: TurnRenderer, event: TurnEnded, start: float = 0.0, end: float = 12.0) -> str:
    r.start_turn(start)
    ops = r.feed(event, end)
    assert [op.key for op in ops] == [f"t{r.turns}.done"]
    return ops[0].text


def test_turn_cost_is_the_difference_of_cumulative_totals() -> None:
    r = TurnRenderer()
    assert done_line(r, TurnEnded(total_cost_usd=0.10)) == "✅ Done · 12s · $0.1000"
    assert done_line(r, TurnEnded(total_cost_usd=0.25)).endswith("$0.1500")
    assert done_line(r, TurnEnded(total_cost_usd=0.25)).endswith("$0.0000")
    # a total below the baseline: a new conversation, counted from zero
    assert done_line(r, TurnEnded(total_cost_usd=0.05)).endswith("$0.0500")
    assert done_line(r, TurnEnded(total_cost_usd=0.08)).endswith("$0.0300")
    assert done_line(r, TurnEnded(total_cost_usd=0.0)).endswith("$0.0000")  # no figure
    assert done_line(r, TurnEnded(total_cost_usd=1.58)).endswith("$1.50")
    assert r.spent_usd == pytest.approx(0.25 + 1.58)  # what each of the two conversations cost
    assert r.cost_baseline == 1.58
    r.cost_baseline = 0.0  # what a session does when a new conversation starts
    assert done_line(r, TurnEnded(total_cost_usd=2.0)).endswith("$2.00")


@settings(max_examples=300)
@given(st.lists(st.tuples(st.floats(0, 5), st.booleans()), max_size=30))
def test_turn_costs_add_up_to_what_each_conversation_cost(steps: list[tuple[float, bool]]) -> None:
    """Each turn shows its own cost; the session tells the renderer of a new conversation."""
    r = TurnRenderer()
    total = 0.0
    for cost, restart in steps:
        if restart:
            total, r.cost_baseline = 0.0, 0.0
        total += cost
        before = r.spent_usd
        text = done_line(r, TurnEnded(total_cost_usd=total))
        assert r.spent_usd - before == pytest.approx(cost if total > 0 else 0.0, abs=1e-9)
        assert float(text.rsplit("$", 1)[1]) == pytest.approx(cost if total > 0 else 0, abs=0.006)
    assert r.spent_usd == pytest.approx(sum(cost for cost, _ in steps), abs=1e-9)


def test_duration_comes_from_the_turn_clock_or_the_agent() -> None:
    r = TurnRenderer()
    assert "1m 05s" in done_line(r, TurnEnded(duration_ms=1), start=100, end=165)
    implicit = TurnRenderer().feed(TurnEnded(duration_ms=3400), 99)[0].text
    assert implicit == "✅ Done · 3.4s · $0.0000"
    r.start_turn(0)
    assert r.feed(TurnStarted("s"), 5) == []  # the prompt already started the clock
    assert "2h 00m" in r.feed(TurnEnded(), 7200)[0].text


def test_interruptions_and_errors_are_said_plainly() -> None:
    r = TurnRenderer()
    interrupted = TurnEnded(
        "error_during_execution", is_error=True, terminal_reason="aborted_streaming"
    )
    assert done_line(r, interrupted).startswith("⏹️ Interrupted.")
    api = done_line(r, TurnEnded("success", is_error=True, result="API Error: 529 overloaded"))
    assert api == "⚠️ API Error: 529 overloaded · 12s · $0.0000"
    several = done_line(r, TurnEnded("error_during_execution", errors=("first", "second")))
    assert several == "⚠️ first · 12s · $0.0000\n> second"
    bare = done_line(r, TurnEnded("error_during_execution", is_error=True))
    assert bare.startswith("⚠️ error during execution")
    turns = done_line(r, TurnEnded("error_max_turns", is_error=True, num_turns=30))
    assert turns.startswith("⚠️ Stopped: the turn limit was reached (30 turns).")
    budget = done_line(r, TurnEnded("error_max_budget_usd", is_error=True))
    assert budget.startswith("⚠️ Stopped: the cost budget was reached.")


def test_each_turn_has_its_own_posts() -> None:
    r = TurnRenderer()
    first = feed_all(r, [TurnStarted("s"), TextBlock("one"), TurnEnded(total_cost_usd=0.1)])
    second = feed_all(r, [TurnStarted("s"), TextBlock("two"), TurnEnded(total_cost_usd=0.2)])
    assert [op.key for op in first] == ["t1.0", "t1.0"]  # the answer, then with its footer
    assert [op.key for op in second] == ["t2.0", "t2.0"]
    assert first[-1].text.startswith("one\n\n✅ Done") and first[-1].final
    assert r.turns == 2


def test_permission_and_control_traffic_is_not_rendered() -> None:
    assert TurnRenderer().feed(PermissionAsked("r", "Bash", {"command": "ls"}), 0) == []


# --- permission requests ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("emoji", "answer"),
    [
        ("+1", Answer.ALLOW),
        ("thumbsup", Answer.ALLOW),
        ("white_check_mark", Answer.ALLOW),
        ("-1", Answer.DENY),
        ("thumbsdown", Answer.DENY),
        ("x", Answer.DENY),
        ("repeat", Answer.ALLOW_SESSION),
        ("octagonal_sign", Answer.STOP),
        ("stop_sign", Answer.STOP),
        ("heart", None),
        ("", None),
    ],
)
def test_reactions_answer_permission_requests(emoji: str, answer: Answer | None) -> None:
    kind = kind_of(emoji)
    assert (None if kind is None else choice_answer(kind)) is answer


def test_a_pending_request_names_tool_input_description_and_legend() -> None:
    req = permission_asked(
        "r1", "Bash", {"command": "rm -rf build\necho ```done```"}, description="Clean up"
    )
    text = permission_text(req, "pending", legend=LEGEND)
    assert text.startswith("🔐 **Permission needed:** `Bash`\n> Clean up\n\n````bash\n")
    assert "rm -rf build\necho ```done```\n````" in text  # the whole command, safely fenced
    assert text.endswith("\n" + LEGEND)
    assert is_balanced(text)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        (PermissionState.ALLOWED, "✅ **Allowed once** by @ann"),
        ("allowed for session", "🔁 **Allowed for this session** by @ann"),
        ("denied", "⛔ **Denied** by @ann"),
        ("timed out", "⏰ **No answer in time: denied** by @ann"),
        ("cancelled", "🚫 **Cancelled**: the agent no longer needs an answer by @ann"),
        ("stopped", "🛑 **Denied, and the turn was stopped** by @ann"),
    ],
)
def test_an_answered_request_shows_its_outcome(state: str, outcome: str) -> None:
    req = permission_asked("r1", "Write", {"file_path": "/etc/x", "content": "hi"})
    text = permission_text(req, state, by="@ann")
    assert text.endswith("\n" + outcome)
    assert LEGEND not in text
    assert '`/etc/x`\n```json\n{\n  "content": "hi"\n}\n```' in text


def test_a_request_for_another_tool_shows_its_input_as_json_within_the_post_limit() -> None:
    req = permission_asked("r1", "mcp__db__query", {"sql": "x" * 20000})
    text = permission_text(req, max_chars=4096)
    assert '```json\n{\n  "sql": "xxx' in text
    assert "characters not shown here; allowing the call allows them too" in text
    assert len(text) <= 4096 and is_balanced(text)
    with pytest.raises(ValueError):
        permission_text(req, "maybe")


@pytest.mark.parametrize("limit", [4096, 16383])
def test_a_long_command_shows_as_much_as_the_post_holds_its_start_and_its_end(limit: int) -> None:
    """A heredoc that writes a script, then runs it: what comes last (the run, an `rm`)
    is shown, and what is not shown is said, in every state of the request. (Only the
    first 3,000 characters were shown, on every front end.)"""
    script = "cat > x.sh <<'EOF'\n" + "echo step\n" * 2000 + "EOF\nbash x.sh && rm -rf ~/project\n"
    req = permission_asked("r1", "Bash", {"command": script})
    for state in ("pending", "allowed", "lapsed"):
        text = permission_text(req, state, by="@ann", legend=LEGEND, max_chars=limit)
        assert len(text) <= limit and is_balanced(text)
        assert "cat > x.sh <<'EOF'" in text and "bash x.sh && rm -rf ~/project" in text
        assert "characters not shown here; allowing the call allows them too" in text
    whole = "cd build && " + "make -j4 all; " * 300  # 4,200 characters: a post holds it
    text = permission_text(permission_asked("r2", "Bash", {"command": whole}), max_chars=16383)
    assert whole in text and "not shown" not in text


def test_emoji_sets_are_disjoint() -> None:
    names = ["+1", "thumbsup", "white_check_mark", "-1", "thumbsdown", "x", "repeat"]
    names += ["octagonal_sign", "stop_sign"]
    assert len({kind_of(n) for n in names}) == 4
    assert re.fullmatch(r"React .*", LEGEND)
