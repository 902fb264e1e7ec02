"""A Mattermost back from an outage is heard again within seconds, with the defaults users
run: the WebSocket's next try decides when the posts written meanwhile are fetched."""

from __future__ import annotations

import random

import trio

from supervisor.chat.mattermost.link import MattermostLink
from supervisor.core.events import ChatEvent, Hello
from tests.fakes.mattermost import FakeMattermost

# Five refused tries in a row: the old policy (cap 60 s) then waited up to 33 s before the
# next, 22 s with this seed; ours waits at most 5 s whatever the seed.
REFUSED_TRIES = 5
SEED = 6


async def test_a_server_back_after_an_outage_is_heard_again_within_seconds(nursery: trio.Nursery) -> None:
    server = FakeMattermost()
    await nursery.start(server.serve)
    send_events, events = trio.open_memory_channel[ChatEvent](16)
    link = await MattermostLink.connect(server.url, server.bot_token, send_events, rng=random.Random(SEED))
    try:
        await nursery.start(link.run)
        first = await events.receive()
        assert isinstance(first, Hello)

        # The server restarts behind its proxy: every try is refused (503), and once it is
        # back it has forgotten our connection.
        server.cut_off()
        tries = server.stats.ws_upgrades
        with trio.fail_after(60):
            await server.wait_until(lambda: server.stats.ws_upgrades >= tries + REFUSED_TRIES)
        server.refuse_websockets(False)

        with trio.fail_after(6):
            hello = await events.receive()
        assert isinstance(hello, Hello) and hello.connection_id != first.connection_id
    finally:
        await link.aclose()
