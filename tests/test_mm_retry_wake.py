"""An answer being posted while Mattermost was away lands the moment the server is back,
not when its retry's pause (up to 30 s after a long outage) happens to end."""

from __future__ import annotations

import itertools
import random

import httpx
import trio
import trio.testing

from supervisor.chat.mattermost.link import MattermostLink
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.core.backoff import Backoff
from supervisor.core.events import ChatEvent, Hello
from tests.fakes.mattermost import FakeMattermost

# A retry asleep for a minute, as after a long outage (deterministic: no jitter below it).
LONG_ASLEEP = Backoff(base=60.0, cap=60.0, floor=60.0)
QUICK_RECONNECT = Backoff(base=0.1, cap=0.2, floor=0.1)


async def _connected(server: FakeMattermost, nursery: trio.Nursery) -> MattermostLink:
    await nursery.start(server.serve)
    send_events, events = trio.open_memory_channel[ChatEvent](64)
    link = await MattermostLink.connect(
        server.url, server.bot_token, send_events, rest_backoff=LONG_ASLEEP, reconnect_backoff=QUICK_RECONNECT
    )
    await nursery.start(link.run)
    assert isinstance(await events.receive(), Hello)

    async def drain() -> None:  # the events are not what these tests look at
        async for _ in events:
            pass

    nursery.start_soon(drain)
    return link


async def _post_during_an_outage(server: FakeMattermost, link: MattermostLink, nursery: trio.Nursery) -> str:
    """Start posting an answer while POST /posts fails; return once its first try failed."""
    channel = server.dm_with_bot("alice")["id"]
    tried = server.stats.count("POST", "/api/v4/posts")
    nursery.start_soon(link.create_post, channel, "the answer")
    await server.wait_until(lambda: server.stats.count("POST", "/api/v4/posts") > tried)
    return str(channel)


async def test_a_post_held_by_an_outage_lands_once_the_websocket_is_back(nursery: trio.Nursery) -> None:
    server = FakeMattermost()
    server.add_user("alice")
    link = await _connected(server, nursery)
    try:
        server.cut_off()
        server.fail_requests(503)
        channel = await _post_during_an_outage(server, link, nursery)
        # Back: no other REST call is made; only the WebSocket's reconnect says so.
        server.fail_requests(None)
        server.refuse_websockets(False)
        with trio.fail_after(5):  # its pause had 60 s to run
            await server.wait_until(lambda: any(p["message"] == "the answer" for p in server.posts_in_channel(channel)))
    finally:
        await link.aclose()


async def test_a_post_held_by_an_outage_lands_once_another_call_is_answered(nursery: trio.Nursery) -> None:
    server = FakeMattermost()
    alice = server.add_user("alice")
    link = await _connected(server, nursery)
    try:
        server.fail_requests(503, path_prefix="/api/v4/posts", method="POST")
        channel = await _post_during_an_outage(server, link, nursery)
        server.fail_requests(None)
        with trio.fail_after(5):
            assert await link.users_by_ids([alice.id])  # answered: the server is up
            await server.wait_until(lambda: any(p["message"] == "the answer" for p in server.posts_in_channel(channel)))
    finally:
        await link.aclose()


# --- what a wake must not do (scripted server, autojump clock) -------------------------------


def _client(handler: httpx.MockTransport, backoff: Backoff = LONG_ASLEEP) -> MattermostRest:
    return MattermostRest(
        "http://mm.test", "t0ken", transport=handler, backoff=backoff, rng=random.Random(0), requests_per_second=1000.0
    )


async def test_a_wake_does_not_cut_a_429_hold_short(autojump_clock: trio.testing.MockClock) -> None:
    posts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        posts.append(trio.current_time())
        if len(posts) == 1:
            return httpx.Response(429, text="limit exceeded\n", headers={"Retry-After": "30"})
        return httpx.Response(200, json={"status": "OK"})

    rest = _client(httpx.MockTransport(handler))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rest.typing, "c" * 26)
        await trio.sleep(1)
        rest.answers.answered()  # as the WebSocket's hello would
    assert posts == [0, 30]


async def test_a_call_the_server_keeps_failing_is_not_retried_at_the_pace_of_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The server answers everything but this call: each answer to another call may wake
    it once, but a woken try that fails waits its next pause out."""
    failed: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            failed.append(trio.current_time())
            return httpx.Response(500, json={"id": "broken", "message": "", "status_code": 500})
        return httpx.Response(200, json=[])

    rest = _client(httpx.MockTransport(handler), Backoff(base=10.0, cap=10.0, floor=10.0))
    with trio.move_on_after(100):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(rest.typing, "c" * 26)
            while True:
                await rest.reactions("p" * 26)
                await trio.sleep(0.1)
    # Without wakes: one try each 10 s; at most twice that with them.
    assert 10 <= len(failed) <= 21


async def test_the_starts_check_of_who_we_are_hears_a_server_back_within_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """No WebSocket listens before it answers, so nothing would wake it: after a long
    outage its pauses stay within the reconnect pace, not the rest's (here a minute)."""
    tries: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(trio.current_time())
        if trio.current_time() < 300:
            return httpx.Response(503, text="starting")
        return httpx.Response(200, json={"id": "b" * 26, "username": "bot", "is_bot": True})

    rest = _client(httpx.MockTransport(handler), Backoff(base=60.0, cap=60.0))
    assert (await rest.get_me()).username == "bot"
    assert max(b - a for a, b in itertools.pairwise(tries)) <= 5.0
    assert trio.current_time() <= 305
