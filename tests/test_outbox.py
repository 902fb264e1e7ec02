"""The thread outbox, driven against an in-memory server with simulated time."""

from __future__ import annotations

import itertools
import math

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.agent_events import TextBlock, TextDelta, TurnEnded
from supervisor.core.outbox import FINISHED_KEPT, Action, Call, Create, Edit, Idle, Outbox, Wait
from supervisor.core.render import TurnRenderer
from supervisor.core.thread_ops import PutPost


@attrs.define
class FakeServer:
    """Posts by id, deduplicating creates on pending post ids like Mattermost does."""

    posts: dict[str, str] = attrs.Factory(dict)
    key_of: dict[str, str] = attrs.Factory(dict)  # post id -> outbox key
    by_pending: dict[str, str] = attrs.Factory(dict)

    def create(self, key: str, text: str, idempotency_key: str) -> str:
        if idempotency_key in self.by_pending:
            return self.by_pending[idempotency_key]
        post_id = f"p{len(self.posts)}"
        self.posts[post_id] = text
        self.key_of[post_id] = key
        self.by_pending[idempotency_key] = post_id
        return post_id

    def edit(self, post_id: str, text: str) -> None:
        self.posts[post_id] = text

    def text_of(self) -> dict[str, str]:
        return {self.key_of[pid]: text for pid, text in self.posts.items()}


@attrs.define
class Driver:
    """Makes the outbox's calls against the server, checking the rules as it goes."""

    outbox: Outbox
    server: FakeServer = attrs.Factory(FakeServer)
    now: float = 0.0
    calls: list[tuple[float, Call]] = attrs.Factory(list)
    acked: dict[str, str] = attrs.Factory(dict)  # what the outbox knows the server shows
    tried: dict[str, set[str]] = attrs.Factory(dict)  # texts of creates that failed

    def step(self, outcome: str = "ok") -> Action:
        """Ask for the next action and, if it is a call, make it at once."""
        action = self.issue()
        if isinstance(action, Create | Edit):
            self.complete(action, outcome)
        return action

    def issue(self) -> Action:
        action = self.outbox.next_action(self.now)
        if isinstance(action, Wait):
            assert action.until > self.now
        if isinstance(action, Create | Edit):
            assert self.outbox.next_action(self.now) == Idle()  # one call at a time
            self.check(action)
            self.calls.append((self.now, action))
        return action

    def complete(self, action: Call, outcome: str = "ok") -> None:
        if outcome == "fail":  # never reached the server
            self.failed(action)
            return
        if isinstance(action, Create):
            post_id = self.server.create(action.key, action.text, action.idempotency_key)
        else:
            self.server.edit(action.post_id, action.text)
            post_id = action.post_id
        if outcome == "lost":  # reached the server, but the answer was lost
            self.failed(action)
        else:
            self.outbox.done(action, post_id, self.now)
            self.acked[action.key] = action.text
            if isinstance(action, Create) and self.tried.get(action.key, set()) - {action.text}:
                del self.acked[action.key]  # an older attempt may be what the post shows

    def failed(self, action: Call) -> None:
        self.outbox.failed(action, self.now)
        self.tried.setdefault(action.key, set()).add(action.text)
        if isinstance(action, Edit):
            self.acked.pop(action.key, None)  # the outbox cannot know what the post shows

    def check(self, action: Call) -> None:
        assert action.text != self.acked.get(action.key)  # only what the server lacks
        if isinstance(action, Create):
            assert self.outbox.post_id(action.key) is None
            assert action.idempotency_key == self.outbox.idempotency_key(action.key)
            return
        earlier = [t for t, call in self.calls if call.key == action.key]
        if not action.urgent:  # a deferrable text is spaced; an urgent one goes at once
            assert earlier[-1] + self.outbox.edit_interval <= self.now

    def drain(self) -> None:
        for _ in range(10_000):
            action = self.step()
            if isinstance(action, Idle):
                return
            if isinstance(action, Wait):
                self.now = action.until
        raise AssertionError("the outbox never settled")

    def edits(self, key: str) -> list[float]:
        return [t for t, call in self.calls if isinstance(call, Edit) and call.key == key]


KEYS = [f"k{i}" for i in range(6)]
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS), st.text(alphabet="abc", max_size=4)),
        st.tuples(st.just("tick"), st.floats(0, 2.0)),
        st.tuples(st.just("call"), st.sampled_from(["ok", "ok", "ok", "fail", "lost"])),
    ),
    max_size=120,
)


@settings(max_examples=600)
@given(STEPS, st.sampled_from([0.0, 0.3, 0.7, 1.5]))
def test_any_history_settles_in_order_spaced_and_complete(
    steps: list[tuple[object, ...]], interval: float
) -> None:
    driver = Driver(Outbox(interval, id_prefix="test"))
    wanted: dict[str, str] = {}
    for step in steps:
        match step:
            case ("put", str(key), str(text)):
                driver.outbox.put(PutPost(key, text), driver.now)
                wanted[key] = text
            case ("tick", float(dt)):
                driver.now += dt
            case ("call", str(outcome)):
                driver.step(outcome)
    driver.drain()
    assert driver.outbox.is_settled()
    assert driver.server.text_of() == wanted  # every post once, showing its last text
    created = list(driver.server.key_of.values())
    assert created == list(wanted)  # created in the order keys were first put
    issued = [call.key for _, call in driver.calls if isinstance(call, Create)]
    assert [k for i, k in enumerate(issued) if i == 0 or issued[i - 1] != k] == created
    for key in wanted:
        edits = driver.edits(key)
        assert all(a + interval <= b for a, b in itertools.pairwise(edits))
        assert driver.outbox.post_id(key) in driver.server.posts


def test_puts_within_the_interval_coalesce_into_one_edit() -> None:
    driver = Driver(Outbox(0.7, id_prefix="test"))
    driver.outbox.put(PutPost("a", "0"), 0.0)
    assert driver.step() == Create("a", "0", "test:0")
    for i in range(1, 50):
        driver.now = i / 100
        driver.outbox.put(PutPost("a", str(i)), driver.now)
        assert driver.step() == Wait(0.7)
    driver.now = 0.7
    assert driver.step() == Edit("a", "p0", "49")
    assert driver.step() == Idle()
    assert driver.outbox.is_settled()


def test_a_text_changed_while_its_create_was_in_flight_is_edited_after() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost("a", "first"), 0.0)
    create = outbox.next_action(0.0)
    assert isinstance(create, Create)
    outbox.put(PutPost("a", "second"), 0.1)
    assert outbox.next_action(0.1) == Idle()  # the create is still in flight
    outbox.done(create, "p1", 0.2)
    assert not outbox.is_settled()
    assert outbox.next_action(0.2) == Wait(0.5)  # spaced from the create
    assert outbox.next_action(0.5) == Edit("a", "p1", "second")


def test_unchanged_text_is_never_sent_again() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost("a", "same"), 0.0)
    create = outbox.next_action(0.0)
    assert isinstance(create, Create)
    outbox.done(create, "p1", 0.0)
    outbox.put(PutPost("a", "same"), 1.0)
    assert outbox.next_action(1.0) == Idle()
    outbox.put(PutPost("a", "other"), 1.0)
    outbox.put(PutPost("a", "same"), 1.1)  # changed back before it was sent
    assert outbox.next_action(1.1) == Idle() and outbox.is_settled()


def test_creates_keep_order_and_the_oldest_dirty_post_goes_first() -> None:
    driver = Driver(Outbox(1.0, id_prefix="test"))
    for key in ("a", "b"):
        driver.outbox.put(PutPost(key, key), 0.0)
        driver.step()
    driver.outbox.put(PutPost("b", "b2"), 0.5)
    driver.outbox.put(PutPost("a", "a2"), 0.5)
    driver.outbox.put(PutPost("c", "c"), 0.5)
    driver.now = 0.5
    # c was first put after a and b changed: it waits until they show that (the edits are
    # not due before 1.0), so a new post never overtakes the words before it.
    assert driver.step() == Wait(1.0)
    driver.now = 2.0
    assert driver.step() == Edit("a", "p0", "a2")  # oldest key first
    assert driver.step() == Edit("b", "p1", "b2")
    assert driver.step() == Create("c", "c", "test:2")
    assert driver.step() == Idle()


def test_a_new_post_waits_only_for_what_came_before_it() -> None:
    """A completion line waits for the answer's last edit, but later streaming into an
    earlier post does not hold a new post back any further."""
    driver = Driver(Outbox(1.0, id_prefix="test"))
    driver.outbox.put(PutPost("answer", "hel"), 0.0)
    driver.step()  # created at 0.0
    driver.outbox.put(PutPost("answer", "hello"), 0.1)
    driver.outbox.put(PutPost("note", "queued"), 0.1)
    driver.outbox.put(PutPost("answer", "hello, world"), 0.2)
    driver.now = 0.2
    assert driver.step() == Wait(1.0)
    driver.now = 1.0
    assert driver.step() == Edit("answer", "p0", "hello, world")
    assert driver.step() == Create("note", "queued", "test:1")


def test_a_failed_create_is_retried_with_the_same_pending_id_and_never_doubles() -> None:
    driver = Driver(Outbox(0.5, id_prefix="test"))
    driver.outbox.put(PutPost("a", "hello"), 0.0)
    driver.outbox.put(PutPost("b", "world"), 0.0)
    first = driver.step("lost")  # the server made the post, the answer timed out
    assert driver.step("fail") == first  # still due, and still first
    assert driver.step() == first
    assert driver.step() == Create("b", "world", "test:1")
    assert driver.server.text_of() == {"a": "hello", "b": "world"}
    assert len(driver.server.posts) == 2


def test_a_create_retried_with_a_new_text_is_followed_by_an_edit() -> None:
    driver = Driver(Outbox(0.5, id_prefix="test"))
    driver.outbox.put(PutPost("a", "old"), 0.0)
    driver.step("lost")
    driver.outbox.put(PutPost("a", "new"), 0.1)
    driver.now = 0.1
    assert driver.step() == Create("a", "new", "test:0")
    assert driver.server.text_of() == {"a": "old"}  # the server answered with the first post
    assert driver.step() == Wait(0.6)
    driver.drain()
    assert driver.server.text_of() == {"a": "new"}


def test_a_failed_edit_is_retried_no_sooner_than_the_interval() -> None:
    driver = Driver(Outbox(0.5, id_prefix="test"))
    driver.outbox.put(PutPost("a", "1"), 0.0)
    driver.step()
    driver.outbox.put(PutPost("a", "2"), 0.1)
    driver.now = 0.5
    assert driver.step("fail") == Edit("a", "p0", "2")
    assert driver.step() == Wait(1.0)


def test_a_post_given_up_does_not_block_the_thread() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost("a", "x" * 99999), 0.0)
    outbox.put(PutPost("b", "fine"), 0.0)
    refused = outbox.next_action(0.0)
    assert isinstance(refused, Create)
    outbox.dropped(refused, 0.0)
    assert outbox.next_action(0.0) == Create("b", "fine", outbox.idempotency_key("b"))
    outbox.put(PutPost("a", "still too long"), 0.1)  # a given-up post stays given up
    create_b = Create("b", "fine", outbox.idempotency_key("b"))
    outbox.done(create_b, None, 0.1)  # a create without a post id gives up too
    assert outbox.next_action(0.2) == Idle() and outbox.is_settled()
    assert outbox.post_id("a") is None and outbox.post_id("b") is None


def test_only_the_call_in_flight_can_finish() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost("a", "x"), 0.0)
    with pytest.raises(RuntimeError):
        outbox.done(Create("a", "x", "test:0"), "p1", 0.0)
    call = outbox.next_action(0.0)
    assert isinstance(call, Create)
    with pytest.raises(RuntimeError):
        outbox.failed(Edit("a", "p1", "x"), 0.0)


def test_idempotency_keys_are_stable_per_post_and_unique_across_outboxes() -> None:
    one, two = Outbox(0.5), Outbox(0.5)
    for outbox in (one, two):
        outbox.put(PutPost("t1.0", "a"), 0.0)
        outbox.put(PutPost("t1.1", "b"), 0.0)
        outbox.put(PutPost("t1.0", "changed"), 0.0)
    ids = {o.idempotency_key(k) for o in (one, two) for k in ("t1.0", "t1.1")}
    assert len(ids) == 4 and all(len(i) <= 64 for i in ids)
    assert one.idempotency_key("t1.0") == one.idempotency_key("t1.0")
    with pytest.raises(ValueError):
        Outbox(0.5, id_prefix="x" * 60, max_key_chars=64)


def test_a_stream_of_deltas_is_coalesced_to_few_edits_per_post() -> None:
    """10 s of small deltas, edit_interval 0.7 s, each call taking 50 ms."""
    interval, latency = 0.7, 0.05
    renderer = TurnRenderer(limit=16383)
    driver = Driver(Outbox(interval, id_prefix="test"))
    renderer.start_turn(0.0)
    answer = "".join(f"Line {i}: the quick brown fox jumps.\n" for i in range(600))
    in_flight: tuple[float, Call] | None = None
    wanted: dict[str, str] = {}
    for tick in range(1001):
        driver.now = tick / 100
        for op in renderer.feed(TextDelta(answer[tick * 22 : (tick + 1) * 22]), driver.now):
            driver.outbox.put(op, driver.now)
            wanted[op.key] = op.text
        if in_flight is not None and driver.now >= in_flight[0]:
            driver.complete(in_flight[1])
            in_flight = None
        if in_flight is None:
            action = driver.issue()
            if isinstance(action, Create | Edit):
                in_flight = (driver.now + latency, action)
    if in_flight is not None:
        driver.now = in_flight[0]
        driver.complete(in_flight[1])
    assert set(wanted) == {"t1.0", "t1.1"}  # the answer needed a second post
    for key in wanted:
        assert len(driver.edits(key)) <= math.ceil(10 / interval) + 1
    for op in renderer.feed(TextBlock(answer[:22000]), 10.0) + renderer.feed(TurnEnded(), 10.0):
        driver.outbox.put(op, driver.now)
        wanted[op.key] = op.text
    driver.drain()
    assert driver.server.text_of() == wanted
    assert all(len(text) <= 16383 for text in wanted.values())


# --- priorities, the final words at once, flat memory (issue 13; issue 9 defect 5) ---------


def test_the_final_text_goes_out_at_once_whatever_the_edit_interval() -> None:
    driver = Driver(Outbox(0.7, id_prefix="test"))
    driver.outbox.put(PutPost("a", "hel"), 0.0)
    assert driver.step() == Create("a", "hel", "test:0")
    driver.now = 0.1
    driver.outbox.put(PutPost("a", "hello"), 0.1)
    assert driver.step() == Wait(0.7)  # an intermediate text is spaced ...
    driver.now = 0.2
    driver.outbox.put(PutPost.last("a", "hello, world\n\n✅ Done"), 0.2)
    assert driver.step() == Edit("a", "p0", "hello, world\n\n✅ Done", urgent=True)  # ... the last is not


def test_deferrable_calls_wait_for_room_in_the_budget_and_urgent_ones_do_not() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost("a", "streaming"), 0.0)
    assert outbox.next_action(0.0, room_at=3.0) == Wait(3.0)
    outbox.put(PutPost.urgent("a", "first words"), 0.1)
    create = outbox.next_action(0.1, room_at=3.0)
    assert create == Create("a", "first words", "test:0", urgent=True)
    outbox.done(create, "p0", 0.1)
    outbox.put(PutPost("a", "more words"), 0.2)
    assert outbox.next_action(1.0, room_at=3.0) == Wait(3.0)  # interval over, budget tight
    outbox.put(PutPost("b", "next post, streaming"), 1.0)
    assert outbox.next_action(1.0, room_at=3.0) == Wait(3.0)  # a deferrable create waits too
    outbox.put(PutPost.last("a", "all words"), 1.5)
    assert outbox.next_action(1.5, room_at=3.0) == Edit("a", "p0", "all words", urgent=True)


def test_a_short_answer_put_whole_before_the_first_call_is_one_create() -> None:
    driver = Driver(Outbox(0.7, id_prefix="test"))
    driver.outbox.put(PutPost.urgent("t1.0", "echo"), 0.0)
    driver.outbox.put(PutPost.last("t1.0", "echo #1\n\n✅ Done"), 0.0)
    driver.drain()
    assert [call for _, call in driver.calls] == [Create("t1.0", "echo #1\n\n✅ Done", "test:0", urgent=True)]


def test_memory_stays_flat_posts_with_their_final_text_shown_are_forgotten() -> None:
    """Issue 9, defect 5: a supervisor running for weeks must not keep every post."""
    outbox, server = Outbox(0.7, id_prefix="test"), FakeServer()
    now = 0.0

    def drain() -> None:
        while isinstance(call := outbox.next_action(now), Create | Edit):
            if isinstance(call, Create):
                outbox.done(call, server.create(call.key, call.text, call.idempotency_key), now)
            else:
                server.edit(call.post_id, call.text)
                outbox.done(call, call.post_id, now)

    sizes = []
    for turn in range(10_000):
        outbox.put(PutPost.urgent(f"t{turn}.0", "thinking"), now)
        outbox.put(PutPost(f"t{turn}.0", "words"), now)
        outbox.put(PutPost.urgent(f"perm.{turn}", "may I?"), now)
        drain()
        outbox.put(PutPost.last(f"perm.{turn}", "allowed"), now)
        outbox.put(PutPost.last(f"t{turn}.0", "words\n\n✅ Done"), now)
        outbox.put(PutPost.last(f"n{turn}", "a notice"), now)
        drain()
        assert outbox.is_settled()
        now += 1.0
        sizes.append(len(outbox))
    assert max(sizes) == 0
    assert server.text_of()["t9999.0"] == "words\n\n✅ Done"
    assert len(server.posts) == 30_000


def test_a_post_is_not_forgotten_while_its_final_text_is_in_flight() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost.last("a", "done"), 0.0)
    create = outbox.next_action(0.0)
    assert isinstance(create, Create)
    outbox.put(PutPost.last("a", "done"), 0.1)  # the same text again, while it is sent
    outbox.done(create, "p0", 0.2)
    assert len(outbox) == 0 and outbox.is_settled()


def test_a_forgotten_post_put_again_is_never_a_second_post() -> None:
    """A turn's end puts again what it showed above a permission request: the same text is
    nothing to do, a changed one an edit of that post (it was a second post before)."""
    outbox = Outbox(0.5, id_prefix="test")
    outbox.put(PutPost.last("t1.0", "I will run a command."), 0.0)
    create = outbox.next_action(0.0)
    assert isinstance(create, Create)
    outbox.done(create, "p0", 0.0)
    assert len(outbox) == 0  # forgotten: its final text shows
    outbox.put(PutPost.last("t1.0", "I will run a command."), 1.0)
    assert outbox.is_settled() and isinstance(outbox.next_action(1.0), Idle)
    outbox.put(PutPost.last("t1.0", "I will run a command. ❌ failed"), 2.0)
    assert outbox.next_action(2.0) == Edit("t1.0", "p0", "I will run a command. ❌ failed", urgent=True)


def test_what_is_kept_of_forgotten_posts_is_bounded() -> None:
    outbox = Outbox(0.5, id_prefix="test")
    for i in range(FINISHED_KEPT + 50):
        outbox.put(PutPost.last(f"k{i}", "x"), float(i))
        create = outbox.next_action(float(i))
        assert isinstance(create, Create)
        outbox.done(create, f"p{i}", float(i))
    assert len(outbox._finished) == FINISHED_KEPT and "k0" not in outbox._finished


def test_a_post_that_answers_a_persons_post_is_created_as_a_reply_to_it() -> None:
    """A cut turn's notice names the prompt it is about; where the front end cannot link it
    (Telegram), its create carries the prompt as the post it answers."""
    driver = Driver(Outbox(0.7, id_prefix="test"))
    driver.outbox.put(PutPost("note", "cut", final=True, deferrable=False, reply_to="prompt-1"), 0.0)
    assert driver.step() == Create("note", "cut", "test:0", urgent=True, reply_to="prompt-1")
