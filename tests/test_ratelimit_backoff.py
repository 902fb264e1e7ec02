"""The pure retry policy and request budget, driven without a clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.core.backoff import (
    LISTENING_CAP_S,
    RECONNECT_BACKOFF,
    REST_BACKOFF,
    Backoff,
    listening_pace,
)
from supervisor.core.ratelimit import Announced, RequestBudget, TokenBucket, announced_limits
from tests.fakes.mattermost_faults import RateLimiter

EPSILON = 1e-9

# --- backoff ---------------------------------------------------------------------------


@given(attempt=st.integers(min_value=0, max_value=10_000), seed=st.integers())
def test_backoff_delay_stays_between_floor_and_ceiling(attempt: int, seed: int) -> None:
    for policy in (REST_BACKOFF, RECONNECT_BACKOFF, Backoff(base=0.05, cap=0.2)):
        delay = policy.delay(attempt, random.Random(seed))
        assert policy.floor <= delay <= policy.ceiling(attempt) <= policy.cap


def test_backoff_ceiling_doubles_until_the_cap() -> None:
    policy = Backoff(base=0.25, cap=30.0)
    assert [policy.ceiling(n) for n in range(9)] == [0.25, 0.5, 1, 2, 4, 8, 16, 30, 30]
    assert policy.ceiling(10**9) == 30.0  # no overflow however long the outage


def test_backoff_is_fully_jittered_and_reproducible() -> None:
    policy = Backoff(base=1.0, cap=30.0)
    first = [policy.delay(4, random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]  # the injected rng decides everything
    spread = [policy.delay(4, random.Random(seed)) for seed in range(200)]
    assert min(spread) < 2.0 and max(spread) > 14.0  # uniform over [0, 16], not a constant


def test_reconnect_backoff_never_retries_within_a_second() -> None:
    rng = random.Random(1)
    assert min(RECONNECT_BACKOFF.delay(n, rng) for n in range(100)) >= 1.0


def test_reconnect_backoff_tries_again_within_five_seconds_however_long_the_outage() -> None:
    """The socket's next try is how soon a returning server is noticed (and the posts
    written during its outage fetched): never minutes later."""
    assert max(RECONNECT_BACKOFF.ceiling(n) for n in range(1000)) == 5.0


def test_a_call_that_listens_for_the_server_pauses_at_most_the_reconnect_pace() -> None:
    """The start's check of who we are, Telegram's long poll: nothing else hears the server
    back, so however long the outage, it is heard within seconds (the rest wait up to 30 s)."""
    listens = listening_pace(REST_BACKOFF)
    assert listens.ceiling(100) == LISTENING_CAP_S == RECONNECT_BACKOFF.cap < REST_BACKOFF.ceiling(100)
    assert [listens.ceiling(n) for n in range(3)] == [REST_BACKOFF.ceiling(n) for n in range(3)]
    assert listening_pace(Backoff(base=0.01, cap=0.05)) == Backoff(base=0.01, cap=0.05)  # a quicker one stays
    assert listening_pace(Backoff(base=60, cap=60, floor=60)).ceiling(0) == 60  # its floor holds


@pytest.mark.parametrize(
    "kwargs", [{"base": 0.0}, {"floor": 5.0, "cap": 1.0}, {"floor": -1.0}, {"base": -1.0}]
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


# --- token bucket -----------------------------------------------------------------------


def test_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=10)
    waits = [bucket.take(0.0) for _ in range(13)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1, 0.2, 0.3])


def test_bucket_refills_with_time() -> None:
    bucket = TokenBucket(rate=10, burst=10)
    for _ in range(10):
        bucket.take(0.0)
    assert bucket.take(0.5) == 0.0  # five slots came back by then
    assert bucket.take(10.0) == 0.0


def starts_of(bucket: TokenBucket, call_times: list[float]) -> list[float]:
    return [now + bucket.take(now) for now in call_times]


@given(
    rate=st.sampled_from([1.0, 2.5, 10.0, 50.0]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), min_size=1, max_size=300),
)
def test_bucket_never_exceeds_its_budget_in_any_window(rate: float, gaps: list[float]) -> None:
    bucket = TokenBucket(rate=rate, burst=rate)
    now, call_times = 0.0, []
    for gap in gaps:
        now += gap
        call_times.append(now)
    starts = starts_of(bucket, call_times)
    assert starts == sorted(starts)  # first come, first served
    assert all(start >= call for start, call in zip(starts, call_times, strict=True))
    window = 1.0
    for i, start in enumerate(starts):
        in_window = sum(1 for other in starts[i:] if other < start + window - EPSILON)
        assert in_window <= rate + rate * window


def test_bucket_pause_holds_every_request_then_resumes_at_the_rate() -> None:
    bucket = TokenBucket(rate=10, burst=10)
    assert bucket.take(0.0) == 0.0
    bucket.pause(0.0, 5.0)
    assert bucket.held(1.0) == pytest.approx(4.0)
    assert bucket.held(6.0) == 0.0
    starts = starts_of(bucket, [1.0] * 4)
    # Not a burst at 5.0: the server just said we were at its limit.
    assert starts == pytest.approx([5.0, 5.1, 5.2, 5.3])


def test_bucket_pause_never_shortens_an_earlier_one() -> None:
    bucket = TokenBucket(rate=10, burst=10)
    bucket.pause(0.0, 5.0)
    bucket.pause(1.0, 1.0)
    assert bucket.take(1.0) == pytest.approx(4.0)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0.5)


# --- the request budget: follow the server (issue 13) -------------------------------------


def test_without_announced_limits_the_budget_does_not_throttle_a_busy_supervisor() -> None:
    budget = RequestBudget()
    assert [budget.take(0.0) for _ in range(400)] == [0.0] * 400  # a generous burst ...
    later = [budget.take(1.0) + 1.0 for _ in range(1000)]
    assert max(later) < 1.5  # ... and well over 1,000 requests per second


def test_an_explicit_cap_is_a_cap() -> None:
    budget = RequestBudget(cap=5.0)
    starts = [budget.take(0.0) for _ in range(10)]
    assert starts[:5] == [0.0] * 5 and starts[5:] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    budget.observe(0.0, Announced(limit=101, remaining=100, reset=1))
    assert budget.rate <= 5.0 and budget.burst <= 5.0  # the server allows more: still capped


def test_announced_limits_are_adopted_and_what_is_left_is_believed() -> None:
    budget = RequestBudget()
    budget.observe(0.0, Announced(limit=101, remaining=51, reset=5))
    assert budget.burst < 101 and budget.rate < 10.0
    assert budget.rate == pytest.approx(0.95 * (50 - 1) / 5)
    waits = [budget.take(0.0) for _ in range(50)]
    assert sum(1 for w in waits if w == 0) <= 51 - 3  # clear of what the server has left


def test_deferrable_calls_find_room_only_while_the_bucket_is_mostly_full() -> None:
    bucket = TokenBucket(rate=10, burst=100)
    assert bucket.room(0.0) == 0.0
    for _ in range(50):
        bucket.take(0.0)
    assert bucket.room(0.0) == pytest.approx((76 - 50) / 10)  # 3/4 full and one token more
    assert bucket.take(0.0) == 0.0  # urgent calls still go at once


@pytest.mark.parametrize("cap", [0.5, 1, 2, 3, 4])
def test_under_a_small_cap_deferrable_calls_find_room_once_the_bucket_is_full(cap: float) -> None:
    """`requests_per_second = 2` makes a bucket of 2: asking it for three-quarters and one
    more token asked for more than it ever holds, so no streaming edit ever went."""
    budget = RequestBudget(cap=cap)
    assert budget.room(0.0) == 0.0
    budget.take(0.0)
    assert 0.0 < budget.room(0.0) <= 1 / budget.rate + 1e-9
    assert budget.room(3600.0) == 0.0


@settings(max_examples=200, deadline=None)
@given(
    rate=st.sampled_from([2.0, 10.0, 25.0]),
    burst=st.sampled_from([10, 50, 100]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.3), min_size=50, max_size=400),
    latency=st.floats(min_value=0.0, max_value=0.05),
)
def test_never_a_429_under_the_limits_the_server_announces(
    rate: float, burst: int, gaps: list[float], latency: float
) -> None:
    """Requests as fast as the budget allows against Mattermost's own limiter (the fake's
    GCRA), its headers fed back as each answer arrives: the server never refuses one.
    (The supervisor's first request, `GET /users/me`, is made alone at start: its answer
    tells the limits before anything else is sent.)"""
    server = RateLimiter(rate, burst)
    budget = RequestBudget()
    first = dict(server.check("us", 0.0).headers)
    budget.observe(latency, announced_limits(*(first.get(f"X-RateLimit-{h}") for h in ("Limit", "Remaining", "Reset"))) or Announced(1, 0, 0))
    now, refused = latency, 0
    answers: list[tuple[float, Announced | None]] = []  # (arrives at, headers)
    for gap in gaps:
        now += gap
        start = now + budget.take(now)
        while budget.held(start) > 0:
            start += budget.take(start)
        for arrive, announced in sorted((a for a in answers if a[0] <= start), key=lambda a: a[0]):
            if announced is not None:
                budget.observe(arrive, announced)
        answers = [a for a in answers if a[0] > start]
        decision = server.check("us", start)
        refused += decision.limited
        headers = dict(decision.headers)
        limits = announced_limits(
            headers.get("X-RateLimit-Limit"), headers.get("X-RateLimit-Remaining"), headers.get("X-RateLimit-Reset")
        )
        answers.append((start + latency, limits))
        now = start
    assert refused == 0
