"""A post is made once even when its create's answer is lost and an outage outlasts the
server's memory of its pending_post_id (30 s, FACTS §2): past that, a resend would be a
second post, so the client first looks for the one its lost answer made."""

from __future__ import annotations

import pytest
import trio

from supervisor.chat import ChatError
from supervisor.chat.mattermost import rest as rest_module
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.core.backoff import Backoff
from tests.fakes import mattermost_store
from tests.fakes.mattermost import FakeMattermost


async def _serving(nursery: trio.Nursery) -> tuple[FakeMattermost, str]:
    """A fake server with alice, and her DM with the bot."""
    server = FakeMattermost()
    await nursery.start(server.serve)
    server.add_user("alice")
    return server, server.dm_with_bot("alice")["id"]


async def test_a_create_whose_answer_was_lost_before_a_long_outage_is_made_once(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's 30 s and our 25 s, scaled down to keep the test short.
    monkeypatch.setattr(mattermost_store, "PENDING_POST_TTL_S", 0.5)
    monkeypatch.setattr(rest_module, "PENDING_POST_SAFE_S", 0.4)
    server, dm_id = await _serving(nursery)
    rest = MattermostRest(server.url, server.bot_token, backoff=Backoff(base=0.2, cap=0.3, floor=0.2))
    server.fail_requests("drop_response", path_prefix="/api/v4/posts", method="POST", count=1)
    server.fail_requests("refuse", path_prefix="/api/v4/posts", method="POST", count=4)
    with trio.fail_after(30):
        post = await rest.create_post(dm_id, "only once", pending_post_id="k:1")
    await rest.aclose()
    made = server.posts_in_channel(dm_id)
    assert [p["message"] for p in made] == ["only once"]
    assert post.id == made[0]["id"] and post.message == "only once"


async def test_a_create_refused_by_a_server_that_remembers_it_is_resent_without_a_lookup(
    nursery: trio.Nursery,
) -> None:
    """A try the server answered (a 429, a 503 of its own) made nothing: within the
    server's memory of the key it is sent again at once, with no lookup."""
    server, dm_id = await _serving(nursery)
    rest = MattermostRest(server.url, server.bot_token, backoff=Backoff(base=0.01, cap=0.05))
    server.fail_requests(503, path_prefix="/api/v4/posts", method="POST", count=1)
    with trio.fail_after(30):
        post = await rest.create_post(dm_id, "once", pending_post_id="k:2")
    await rest.aclose()
    assert [p["id"] for p in server.posts_in_channel(dm_id)] == [post.id]
    assert not [r for r in server.stats.log if r.method == "GET" and "/posts" in r.path]


@pytest.mark.parametrize("forgets", [False, True], ids=["server-remembers", "server-restarted"])
async def test_a_create_whose_answer_was_lost_is_looked_for_before_it_is_sent_again(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, forgets: bool
) -> None:
    """The server made the post and its answer was lost; then it restarted (or another
    node answers), forgetting the key it dedupes by for 30 s: the resend within those 30 s
    made the post twice. A try that went unanswered is looked for first now."""
    if forgets:  # a restarted server keeps no key: each create is a new post
        monkeypatch.setattr(mattermost_store, "PENDING_POST_TTL_S", 0.0)
    server, dm_id = await _serving(nursery)
    rest = MattermostRest(server.url, server.bot_token, backoff=Backoff(base=0.01, cap=0.05))
    server.fail_requests("drop_response", path_prefix="/api/v4/posts", method="POST", count=1)
    with trio.fail_after(30):
        post = await rest.create_post(dm_id, "once", pending_post_id="k:3")
    await rest.aclose()
    assert [p["id"] for p in server.posts_in_channel(dm_id)] == [post.id]
    assert len([r for r in server.stats.log if r.method == "POST" and r.path == "/api/v4/posts"]) == 1


@pytest.mark.parametrize("refusals", [2, None], ids=["for-a-moment", "for-good"])
async def test_a_403_for_a_moment_is_tried_again_and_one_for_good_still_refuses(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch, refusals: int | None
) -> None:
    """Mattermost answers 403 when its permission check fails on any error (its database
    while it restarts): an answer's post was given up as refused for good, a new session
    failed. A 403 is tried again for a while first; one that lasts still refuses."""
    monkeypatch.setattr(rest_module, "FORBIDDEN_PATIENCE_S", 1.0)
    server, dm_id = await _serving(nursery)
    rest = MattermostRest(server.url, server.bot_token, backoff=Backoff(base=0.05, cap=0.1))
    server.fail_requests(403, path_prefix="/api/v4/posts", method="POST", count=refusals)
    with trio.fail_after(30):
        if refusals is None:
            with pytest.raises(ChatError) as refused:
                await rest.create_post(dm_id, "refused", pending_post_id="k:4")
            assert refused.value.status == 403 and refused.value.for_good
        else:
            post = await rest.create_post(dm_id, "once", pending_post_id="k:4")
            assert [p["id"] for p in server.posts_in_channel(dm_id)] == [post.id]
    await rest.aclose()


async def test_a_read_refused_with_403_is_said_at_once_for_its_caller_to_count(nursery: trio.Nursery) -> None:
    """The catch-up counts a place's refusals itself (8 in a row: the place is gone): 30 s
    of patience inside each read held the front end's other places up for minutes."""
    server, dm_id = await _serving(nursery)
    rest = MattermostRest(server.url, server.bot_token, backoff=Backoff(base=0.05, cap=0.1))
    server.fail_requests(403, path_prefix=f"/api/v4/channels/{dm_id}/posts", method="GET")
    with trio.fail_after(5), pytest.raises(ChatError) as refused:
        await rest.posts_since(dm_id, 1)
    assert refused.value.status == 403
    await rest.aclose()
