"""The Mattermost REST client keeps a bounded number of requests in flight: httpcore's
pool does work quadratic in its connections for every request, so fifty sessions posting
at once must not open fifty connections. The rest wait their turn, and all go out."""

from __future__ import annotations

import random

import httpx
import trio
import trio.testing

from supervisor.chat.mattermost.rest import MattermostRest


async def test_fifty_edits_at_once_keep_at_most_sixteen_in_flight_and_all_go_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    in_flight = 0
    most = 0
    done: list[str] = []

    async def server(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await trio.sleep(0.02)  # a real server's latency
        in_flight -= 1
        post_id = request.url.path.split("/")[-2]
        done.append(post_id)
        body = {"id": post_id, "channel_id": "c", "user_id": "u", "message": "m"}
        return httpx.Response(200, json=body)

    rest = MattermostRest(
        "http://mm.test", "token", transport=httpx.MockTransport(server), rng=random.Random(0)
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(rest.edit_post, f"p{n:02d}", "text")
    assert sorted(done) == [f"p{n:02d}" for n in range(50)]
    assert most == 16
    await rest.aclose()
