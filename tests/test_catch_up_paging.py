"""Catch-up past the `since` cap: `MattermostRest.posts_since` against the fake server.

A real server answers `GET /channels/{id}/posts?since=` with at most 1000 of the posts
changed after `since`, and which 1000 is up to the database (the query's LIMIT has no
ORDER BY). Whichever 1000 the server picks, every post created after `since` must come
back, oldest first, once. Several posts can share a millisecond, and `before=`/`after=`
compare create_at strictly, so paging must not skip the posts of a shared millisecond.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from supervisor.chat.mattermost.rest import MattermostRest
from tests.fakes.mattermost import FakeMattermost
from tests.fakes.mattermost_shapes import MillisClock
from tests.fakes.openapi_check import load_spec, require_spec, validate_record

TIMEOUT = 60
UNLIMITED = 1_000_000.0  # requests per second: the fake has no limit here


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeMattermost:
    server = FakeMattermost()
    await nursery.start(server.serve)
    server.add_user("alice")
    return server


@pytest.fixture
async def rest(server: FakeMattermost) -> AsyncIterator[MattermostRest]:
    client = MattermostRest(server.url, server.bot_token, requests_per_second=UNLIMITED)
    yield client
    await client.aclose()


async def _churn(
    server: FakeMattermost, old_id: str, count: int, edits: int, rng: random.Random
) -> list[str]:
    """`count` new posts (some of them replies) with `edits` edits of an older post mixed in:
    count + 2 x edits changed rows (each edit leaves an edit-history row). Returns the new
    posts' ids in the order they were made."""
    made: list[str] = []
    roots: list[str] = []
    edits_left = edits
    for n in range(count):
        root_id = rng.choice(roots) if roots and rng.random() < 0.3 else ""
        post = await server.user_post("alice", f"new {n}", root_id=root_id)
        made.append(post["id"])
        if not root_id:
            roots.append(post["id"])
        while edits_left and rng.random() < edits / count:
            await server.user_edit("alice", old_id, f"edit {edits_left}")
            edits_left -= 1
    for left in range(edits_left):
        await server.user_edit("alice", old_id, f"late edit {left}")
    return made


@pytest.mark.parametrize("pick", ["arbitrary", "newest", "oldest"])
async def test_every_post_created_after_since_comes_back_whichever_1000_the_server_picks(
    server: FakeMattermost, rest: MattermostRest, pick: str
) -> None:
    server.store.since_pick = pick
    dm = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        old = await server.user_post("alice", "long before")
        since = server.store.clock()
        made = await _churn(server, old["id"], 1_150, 300, random.Random(9))
        posts = await rest.posts_since(dm, since)
    created_after = [p.id for p in posts if p.create_at > since and not p.delete_at]
    assert created_after == made  # all of them, oldest first, once
    assert len({p.id for p in posts}) == len(posts)
    assert all(p.update_at > since for p in posts)


class SharedMilliseconds(MillisClock):
    """A clock on which posts share milliseconds: 7 to a millisecond, then 250 in one (more
    than a page), then 7 to a millisecond again."""

    def __init__(self, start: int) -> None:
        super().__init__()
        self.ticks = self._ticks(start)

    @staticmethod
    def _ticks(start: int) -> Iterator[int]:
        for n in range(700):
            yield start + n // 7
        yield from itertools.repeat(start + 100, 250)
        for n in itertools.count(7 * 101):
            yield start + n // 7

    def __call__(self) -> int:
        self.last = next(self.ticks)
        return self.last


async def test_posts_sharing_a_millisecond_are_not_skipped_between_pages(
    server: FakeMattermost, rest: MattermostRest
) -> None:
    dm = server.dm_with_bot("alice")["id"]
    server.store.since_pick = "newest"
    with trio.fail_after(TIMEOUT):
        await server.user_post("alice", "long before")
        since = server.store.clock()
        server.store.clock = SharedMilliseconds(since + 1)
        made = [(await server.user_post("alice", f"p{n}"))["id"] for n in range(1_400)]
        posts = await rest.posts_since(dm, since)
    assert sorted(p.id for p in posts) == sorted(made)
    assert len(posts) == len(made)
    created = [p.create_at for p in posts]
    assert created == sorted(created)


async def test_below_the_cap_one_request_answers(server: FakeMattermost, rest: MattermostRest) -> None:
    dm = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        old = await server.user_post("alice", "before")
        since = server.store.clock()
        made = [(await server.user_post("alice", f"p{n}"))["id"] for n in range(30)]
        await server.user_edit("alice", old["id"], "before, edited")
        server.stats.reset()
        posts = await rest.posts_since(dm, since)
    live = [p for p in posts if not p.delete_at]  # the edit left a (deleted) history row
    assert [p.id for p in live] == [old["id"], *made]  # the edited older post too
    assert live[0].message == "before, edited"
    assert server.stats.count("GET", "/api/v4/channels/{channel_id}/posts") == 1


async def test_the_paging_requests_match_the_spec(
    server: FakeMattermost, rest: MattermostRest
) -> None:
    require_spec()
    await trio.to_thread.run_sync(load_spec)  # seconds, once per process
    dm = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        since = server.store.clock()
        for n in range(1_050):
            await server.user_post("alice", f"p{n}")
        server.stats.reset()
        await rest.posts_since(dm, since)
    records = server.stats.records("GET", "/api/v4/channels/{channel_id}/posts")
    assert any("before" in dict(r.query) for r in records)  # it did page
    assert {tuple(validate_record(r, server.url)) for r in records} == {()}


async def test_pages_bring_only_their_own_posts_not_every_reply_of_their_threads(
    server: FakeMattermost, rest: MattermostRest
) -> None:
    """A session's thread grows long; without `skipFetchThreads` each page would carry
    the whole thread again for context (FACTS.md §2), which catch-up never reads."""
    dm = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        root = await server.user_post("alice", "a long session")
        since = server.store.clock()
        made = [(await server.user_post("alice", f"r{n}", root_id=root["id"]))["id"] for n in range(1_100)]
        server.stats.reset()
        posts = await rest.posts_since(dm, since)
    assert [p.id for p in posts if p.create_at > since] == made
    pages = [r.response_json for r in server.stats.records("GET", "/api/v4/channels/{channel_id}/posts")]
    paged = [page for page in pages if len(page["order"]) == 200]
    assert len(paged) >= 5  # it did page, back past `since`
    assert all(set(page["posts"]) <= {*page["order"], root["id"]} for page in paged)
