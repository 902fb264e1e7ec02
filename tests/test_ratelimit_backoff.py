"""The pure retry policy and request budget, driven without a clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.backoff import RECONNECT_BACKOFF, REST_BACKOFF, Backoff
from supervisor.core.ratelimit import TokenBucket

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
