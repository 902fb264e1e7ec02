"""The router never crosses threads and never acts for strangers (issue 2, item 3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.core import commands
from supervisor.core.events import (
    Choice,
    ChoiceMade,
    Hello,
    Post,
    Posted,
    PostEdited,
)
from supervisor.core.router import (
    AnswerEnded,
    Choose,
    Guide,
    Ignore,
    Prompt,
    Resync,
    RouterView,
    RunMainCommand,
    RunThreadCommand,
    SessionRef,
    acts_after_catch_up,
    route,
)
from tests.strategies import choices, posts

BOT = "b" * 26
ALICE, BOB, MALLORY = "a" * 26, "c" * 26, "m" * 26
ALICE_DM, BOB_DM, TOWN = "d" * 26, "e" * 26, "t" * 26
ROOTS = [f"root{i}".ljust(26, "r") for i in range(6)]
REPLIES = [f"reply{i}".ljust(26, "p") for i in range(6)]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[RouterView, list[object]]:
    """A set of sessions (some ended) and a random interleaving of events."""
    sessions = {}
    for root in ROOTS[: draw(st.integers(0, len(ROOTS)))]:
        sessions[root] = SessionRef(root, draw(st.sampled_from([ALICE_DM, BOB_DM])), ended=draw(st.booleans()))
    # replies known to belong to some thread (by the post index), some to unknown roots
    index = {reply: draw(st.sampled_from([*ROOTS, "nowhere".ljust(26, "n")])) for reply in REPLIES}
    view = RouterView(BOT, frozenset({ALICE, BOB}), sessions, thread_of=index.get, places=frozenset({ALICE_DM, BOB_DM}))
    users, channels = [BOT, ALICE, BOB, MALLORY], [ALICE_DM, BOB_DM, TOWN]
    event = st.one_of(
        posts(users, channels, [*ROOTS, "gone".ljust(26, "g")]).map(Posted),
        posts(users, channels, ROOTS).map(PostEdited),
        choices(users, channels, ROOTS + REPLIES).map(ChoiceMade),
        st.just(Hello("conn")),
    )
    return view, draw(st.lists(event, max_size=30))


@given(worlds())
def test_router_never_crosses_threads_or_obeys_strangers(world: tuple[RouterView, list[object]]) -> None:
    view, events = world
    for event in events:
        decision = route(event, view)  # type: ignore[arg-type]
        if isinstance(decision, Ignore | Resync):
            continue
        if isinstance(decision, Choose):
            assert isinstance(event, ChoiceMade)
            choice: Choice = event.choice
            assert choice.user_id in view.allowed_user_ids and choice.user_id != BOT
            owner = choice.post_id if choice.post_id in view.sessions else view.thread_of(choice.post_id)
            assert decision.session.root_id == owner
            assert not decision.session.ended
            continue
        assert isinstance(event, Posted), decision
        post: Post = event.post
        assert post.user_id in view.allowed_user_ids and post.user_id != BOT
        assert post.channel_id in (ALICE_DM, BOB_DM)  # a main place, never a team channel
        if isinstance(decision, Prompt | RunThreadCommand | AnswerEnded):
            assert decision.session is view.sessions[post.root_id]
            assert decision.session.channel_id == post.channel_id
            assert isinstance(decision, AnswerEnded) == decision.session.ended
        elif isinstance(decision, RunMainCommand):
            assert post.root_id == ""
        else:
            assert isinstance(decision, Guide)
            assert post.root_id not in view.sessions


def _view() -> RouterView:
    return RouterView(BOT, frozenset({ALICE}), {ROOTS[0]: SessionRef(ROOTS[0], ALICE_DM)})


def _post(message: str, *, user: str = ALICE, root: str = "", channel: str = ALICE_DM) -> Posted:
    return Posted(Post(id="p".ljust(26, "p"), channel_id=channel, user_id=user, message=message, root_id=root))


def test_main_dm_text_gets_guidance_and_reaches_no_session() -> None:
    assert isinstance(route(_post("please fix the build"), _view()), Guide)


def test_main_dm_commands_are_parsed() -> None:
    decision = route(_post("!new alpha /tmp persona=reviewer"), _view())
    assert decision == RunMainCommand(decision.post, commands.NewSession("alpha", "/tmp", "reviewer"))  # type: ignore[union-attr]


def test_thread_text_is_a_prompt_for_that_session_only() -> None:
    decision = route(_post("fix it", root=ROOTS[0]), _view())
    assert isinstance(decision, Prompt) and decision.session.root_id == ROOTS[0]


def test_strangers_and_the_bot_reach_nothing() -> None:
    for user in (MALLORY, BOT):
        assert isinstance(route(_post("fix it", user=user, root=ROOTS[0]), _view()), Ignore)


def test_a_stop_on_the_session_root_reaches_it() -> None:
    choice = Choice(ALICE, ROOTS[0], "stop", ALICE_DM)
    assert isinstance(route(ChoiceMade(choice), _view()), Choose)


def test_a_stop_found_by_a_catch_up_acts_only_on_a_post_that_still_asks() -> None:
    """A 🛑 on a rerun offer may be weeks old: it would stop today's turn. On a pending
    permission request it answers it; any other choice acts wherever it was made."""
    stop, rerun, allow = (Choice("alice", "p", kind) for kind in ("stop", "rerun", "allow_once"))
    assert acts_after_catch_up(stop, asks=True)
    assert not acts_after_catch_up(stop, asks=False)
    assert acts_after_catch_up(rerun, asks=False) and acts_after_catch_up(allow, asks=True)
