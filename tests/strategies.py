"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from supervisor.agent.acp.wire import PermissionOption
from supervisor.core.desk import DeskFacts, Directory, NewSession
from supervisor.core.events import CHOICE_KINDS, Choice, Post
from supervisor.core.state import ChannelLedger

IDS = st.text(alphabet="abcdefghijkmnopqrstuwxyz13456789", min_size=26, max_size=26)

# Messages that exercise every branch of the command parsers, plus free text.
MESSAGES = st.one_of(
    st.sampled_from(
        ["hello", "!help", "!sessions", "!new alpha", "!new beta /tmp", "!end alpha", "!stop",
         "!status", "!end", "!get a.txt", "!new", "!bogus", "!important: do it", "  !help", "'", ""]
    ),
    st.text(max_size=40),
)

CHOICES = st.sampled_from(CHOICE_KINDS)


def posts(user_ids: list[str], channel_ids: list[str], root_ids: list[str]) -> st.SearchStrategy[Post]:
    return st.builds(
        Post,
        id=IDS,
        channel_id=st.sampled_from(channel_ids),
        user_id=st.sampled_from(user_ids),
        message=MESSAGES,
        root_id=st.sampled_from(["", *root_ids]),
        create_at=st.integers(0, 2**40),
    )


def choices(user_ids: list[str], channel_ids: list[str], post_ids: list[str]) -> st.SearchStrategy[Choice]:
    return st.builds(
        Choice,
        user_id=st.sampled_from(user_ids),
        post_id=st.sampled_from(post_ids),
        kind=CHOICES,
        channel_id=st.sampled_from(["", *channel_ids]),
    )


# --- Telegram (tests/test_telegram_*.py) ---------------------------------------------

# Words that stress the HTML renderer: markup characters, entities, emoji outside the BMP
# (two UTF-16 units each), Markdown punctuation.
TELEGRAM_WORDS = st.one_of(
    st.sampled_from(
        ["word", "<b>", "a&b", "&amp;", "x<y", "**bold**", "_it_", "~~s~~", "`code`",
         "[link](https://example.com/?a=1&b=2)", "[bad](javascript:x)", "😀", "𝔘", "👩‍💻",
         "> quoted", "# Heading", "- item", "1. first", "|a|b|", "\\*", "***", "---", " ", "\t"]
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=12),
)


@st.composite
def telegram_code_blocks(draw: st.DrawFn) -> str:
    language = draw(st.sampled_from(["", "python", "sh", "c++", "weird lang"]))
    lines = draw(st.lists(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=80), max_size=30))
    fence = draw(st.sampled_from(["```", "~~~", "````"]))
    return f"{fence}{language}\n" + "\n".join(lines) + f"\n{fence}"


@st.composite
def telegram_markdown(draw: st.DrawFn) -> str:
    """Markdown-ish text as the core writes it: paragraphs, lists, quotes, code."""
    blocks = draw(
        st.lists(
            st.one_of(
                st.lists(TELEGRAM_WORDS, max_size=40).map(" ".join),
                telegram_code_blocks(),
                st.lists(TELEGRAM_WORDS, min_size=1, max_size=8).map(lambda ws: "> " + " ".join(ws)),
                st.lists(TELEGRAM_WORDS, min_size=1, max_size=5).map(lambda ws: "\n".join(f"- {w}" for w in ws)),
            ),
            max_size=12,
        )
    )
    return "\n\n".join(blocks)


# --- the session machine (tests/test_session_model.py) -----------------------------

# Settings the model draws from: small, distinct figures so that timers cross often, with
# infinity (a timer switched off) and idle suspend off (0) among them.
TURN_TIMEOUTS = st.sampled_from([40.0, 100.0, float("inf")])
STALL_TIMEOUTS = st.sampled_from([15.0, 30.0, float("inf")])
APPROVAL_TIMEOUTS = st.sampled_from([20.0, 60.0, float("inf")])
IDLE_SUSPENDS = st.sampled_from([0.0, 25.0, 70.0])
INTERRUPT_GRACES = st.sampled_from([5.0, 10.0])
# How far the clock moves in one step; small steps and big leaps both.
CLOCK_STEPS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 5.0]), st.floats(0, 150, allow_nan=False))
PROMPT_TEXTS = st.sampled_from(["hello", "fix the tests", "[tool rm -rf build] clean", "x" * 50])
TOOL_NAMES = st.sampled_from(["Bash", "Write", "WebFetch"])
AGENT_TEXTS = st.sampled_from(["Sure.", "```python\nprint(1)\n", "done", ""])
THREAD_COMMANDS = st.sampled_from(["!stop", "!status", "!help", "!end", "!get a.txt", "!get"])
# Choices on a permission request or any other post; "allow_always" (🔁 on Mattermost) also
# runs a cut notice's prompt again.
SESSION_CHOICES = st.sampled_from(CHOICE_KINDS)


# --- the desk's rules, the per-front-end ledger, ACP permission options -----------------
# (tests/test_desk_rules.py, tests/test_state_fronts.py, tests/test_acp_answers.py)

DESK_NAMES = st.sampled_from(["alpha", "beta", "gamma", "delta"])
DESK_FACTS = st.builds(
    DeskFacts,
    live_names=st.frozensets(DESK_NAMES),
    personas=st.lists(st.sampled_from(["reviewer", "writer", "tester"]), unique=True).map(tuple),
    agents=st.lists(st.sampled_from(["claude", "opencode", "fake"]), min_size=1, unique=True).map(tuple),
)
NEW_SESSIONS = st.builds(
    NewSession,
    name=DESK_NAMES,
    persona=st.sampled_from(["", "reviewer", "writer", "tester", "nobody"]),
    agent=st.sampled_from(["", "claude", "opencode", "fake", "gpt"]),
)
DIRECTORIES = st.builds(
    Directory,
    path=st.sampled_from(["/srv/work", "/srv/src", "/tmp/x y"]),
    is_dir=st.booleans(),
    resolved=st.sampled_from(["/srv/work", "/data/src"]),
)
PLACE_LEDGERS = st.builds(
    ChannelLedger,
    cursor=st.integers(0, 2**53),
    handled=st.dictionaries(st.text(min_size=1, max_size=8), st.integers(0, 2**53), max_size=3),
    front=st.sampled_from(["", "mattermost", "telegram", "web"]),
)
ACP_OPTION_KINDS = ["allow_once", "allow_always", "reject_once", "reject_always"]
ACP_OPTIONS = st.lists(st.sampled_from(ACP_OPTION_KINDS), unique=True).map(
    lambda kinds: [PermissionOption(f"opt-{kind}", kind) for kind in kinds]
)


# --- the state file's ledger (tests/test_state_encoder.py) ------------------------------

# (channel, post id, created ms, done at once): short ids so that the same id turns up in
# two channels (Telegram's message ids are per chat), times spread over a few minutes so
# that handled ids expire from the slack window while others are added.
LEDGER_STEPS = st.lists(
    st.tuples(
        st.sampled_from(["c1", "c2", "c3"]),
        st.text(alphabet="ab12", min_size=1, max_size=3),
        st.integers(0, 300_000),
        st.booleans(),
    ),
    max_size=60,
)


# --- the store's journal (tests/test_store_journal.py) ----------------------------------

# One change handed to the store: a session record saved, a post admitted (and maybe
# handled at once), or a place caught up (its cursor set the first time).
JOURNAL_CHANGES = st.one_of(
    st.tuples(st.just("save"), st.sampled_from(["s1", "s2", "s3"]), st.text(max_size=8)),
    st.tuples(
        st.just("post"),
        st.sampled_from(["c1", "c2"]),
        st.text(alphabet="ab12", min_size=1, max_size=3),
        st.integers(0, 300_000),
        st.booleans(),  # handled in the same batch (else it stays in flight)
    ),
    st.tuples(st.just("begin"), st.sampled_from(["c1", "c2", "c3"]), st.integers(0, 300_000),
              st.sampled_from(["", "mattermost", "telegram"])),
)
# Batches of changes, each made durable by one group commit.
JOURNAL_BATCHES = st.lists(st.lists(JOURNAL_CHANGES, min_size=1, max_size=5), min_size=1, max_size=8)
