"""A catch-up whose server refuses it: tried until it answers, since the cursor moves past
what it misses (supervisor/runtime/router.py `_catch_up`)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest
import trio

from supervisor.chat import ChatError
from supervisor.core.events import Post
from supervisor.runtime.router import GONE_AFTER_TRIES, CaughtUp, _catch_up


def _front(refusals: list[ChatError]) -> Any:
    async def posts_since(channel_id: str, since_ms: int) -> list[Post]:
        if refusals:
            raise refusals.pop(0)
        return [Post("p1", channel_id, "u1", "written during the outage", create_at=since_ms + 1)]

    async def choices_on(channel_id: str, post_id: str) -> list[object]:
        return []

    return SimpleNamespace(link=SimpleNamespace(posts_since=posts_since, choices_on=choices_on))


async def _caught_up(front: Any) -> CaughtUp:
    send, receive = trio.open_memory_channel[Any](1)
    await _catch_up(front, {"c1": 1_000}, [], send)
    caught = receive.receive_nowait()
    assert isinstance(caught, CaughtUp)
    return caught


async def test_a_catch_up_refused_again_and_again_fetches_once_the_server_answers(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Given up after 8 refusals (a 401 while the server restarted, a proxy's login page:
    a minute or two), the posts written meanwhile were never answered, even after a restart.
    The log warns of the 1st, 2nd, 4th, 8th and 16th refusal in a row, not of each."""
    caplog.set_level(logging.DEBUG, logger="supervisor")
    refusals = [ChatError(401, "api.context.session_expired.app_error", "restarting")] * 20
    caught = await _caught_up(_front(refusals))
    assert [p.id for p in caught.posts] == ["p1"] and not refusals
    said = [r for r in caplog.records if "was refused" in r.getMessage()]
    assert [r.levelno == logging.WARNING for r in said] == [n in (1, 2, 4, 8, 16) for n in range(1, 21)]


async def test_a_catch_up_of_a_place_gone_or_closed_to_us_ends_after_a_few_tries(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The front end's new posts wait behind its catch-up: one that can never succeed
    must end (a 403 also comes while a server restarts: the first are tried again)."""
    for status in (403, 404):
        refusals = [ChatError(status, "gone", "")] * (GONE_AFTER_TRIES + 5)
        caught = await _caught_up(_front(refusals))
        assert caught.posts == () and len(refusals) == 5
    caught = await _caught_up(_front([ChatError(403, "restarting", "")] * (GONE_AFTER_TRIES - 1)))
    assert [p.id for p in caught.posts] == ["p1"]
    # Only in a row: refusals of other kinds between them start the count again.
    mixed = [ChatError(403, "restarting", ""), ChatError(401, "restarting", "")] * GONE_AFTER_TRIES
    assert [p.id for p in (await _caught_up(_front(mixed))).posts] == ["p1"]
