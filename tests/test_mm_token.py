"""A bot token revoked while the supervisor runs: said once, checked slowly, and what was
being posted goes once the token is taken again; a passing 401 is no refusal."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
import trio

from supervisor.chat import ChatError, token
from supervisor.chat.mattermost.link import MattermostLink
from supervisor.chat.mattermost.token import TokenWatch
from supervisor.core.backoff import Backoff
from supervisor.core.events import ChatEvent, Hello
from tests.fakes.mattermost import FakeMattermost

CHECK_EVERY_S = 0.5
REFUSED = "refuses the bot's token (401 on GET /users/me)"


@pytest.fixture(autouse=True)
def _quick_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(token, "CHECK_EVERY_S", CHECK_EVERY_S)


async def _connected(
    server: FakeMattermost, nursery: trio.Nursery
) -> tuple[MattermostLink, trio.MemoryReceiveChannel[ChatEvent]]:
    await nursery.start(server.serve)
    send_events, events = trio.open_memory_channel[ChatEvent](64)
    link = await MattermostLink.connect(
        server.url, server.bot_token, send_events, rng=random.Random(3),
        reconnect_backoff=Backoff(base=0.1, cap=0.2, floor=0.1),
    )  # fmt: skip
    await nursery.start(link.run)
    assert isinstance(await events.receive(), Hello)
    return link, events


def _posted(server: FakeMattermost, channel: str, text: str) -> bool:
    return any(post["message"] == text for post in server.posts_in_channel(channel))


async def test_a_revoked_token_is_said_once_checked_slowly_and_what_waited_goes_once_it_is_taken_again(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = FakeMattermost(ws_auth_timeout=0.2)
    server.add_user("alice")
    channel = server.dm_with_bot("alice")["id"]
    link, events = await _connected(server, nursery)
    try:
        server.revoke_token()
        nursery.start_soon(link.create_post, channel, "an answer finished meanwhile")
        with trio.fail_after(10):
            await server.wait_until(lambda: REFUSED in caplog.text)
        # Refused for a while: no stream of tries, neither REST nor WebSocket.
        upgrades, checks = server.stats.ws_upgrades, server.stats.count_path("GET", "/api/v4/users/me")
        await trio.sleep(10 * CHECK_EVERY_S)
        assert server.stats.ws_upgrades - upgrades <= 1
        assert server.stats.count_path("GET", "/api/v4/users/me") - checks <= 11
        assert not _posted(server, channel, "an answer finished meanwhile")
        await server.user_post("alice", "written while it was refused")

        server.accept_token()
        with trio.fail_after(10):
            await server.wait_until(lambda: _posted(server, channel, "an answer finished meanwhile"))
            event = await events.receive()  # the socket is back: a hello, or the replay
        assert isinstance(event, Hello) or "written while it was refused" in repr(event)
    finally:
        await link.aclose()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors if REFUSED in r.getMessage()] == [errors[0].getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "takes the bot's token again" in caplog.text
    # The checks while it is refused are no stream of lines: the first one is said.
    assert sum("-> 401" in r.getMessage() for r in caplog.records if r.levelno >= logging.INFO) <= 1
    assert server.bot_token not in caplog.text


@pytest.mark.parametrize("handshake", ["let in, never greeted", "refused with 401"])
async def test_a_revoked_token_is_found_by_the_websocket_alone(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture, handshake: str
) -> None:
    """Nothing to post: the WebSocket's tries are what find the token refused."""
    server = FakeMattermost(ws_auth_timeout=0.2)
    link, _ = await _connected(server, nursery)
    try:
        requests = sum(server.stats.requests.values())
        server.revoke_token()
        if handshake == "refused with 401":
            server.refuse_websockets(401)
        with trio.fail_after(10):
            await server.wait_until(lambda: REFUSED in caplog.text)
        assert server.stats.count_path("GET", "/api/v4/users/me") >= 1
        upgrades = server.stats.ws_upgrades
        await trio.sleep(10 * CHECK_EVERY_S)
        assert server.stats.ws_upgrades - upgrades <= 1
        assert sum(server.stats.requests.values()) - requests <= 30
    finally:
        await link.aclose()


async def test_a_passing_401_is_no_refusal(nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    """A proxy's 401 while the server restarts: the token's check passes at once, and the
    post goes without a word of refusal."""
    server = FakeMattermost()
    server.add_user("alice")
    channel = server.dm_with_bot("alice")["id"]
    link, _ = await _connected(server, nursery)
    try:
        server.fail_requests(401, path_prefix="/api/v4/posts", method="POST", count=1)
        with trio.fail_after(5):
            await link.create_post(channel, "through")
        assert _posted(server, channel, "through")
    finally:
        await link.aclose()
    assert "refuses" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_401_the_tokens_check_does_not_confirm_twice_is_the_calls_own_refusal(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A path a proxy or a gateway guards answers 401 while the token is fine: after two
    401s in a row each followed by a check that takes the token, the second is that call's
    refusal (a `ChatError`, as any 4xx), not a wait for a token that is taken already (it
    once waited for good, tried again at every check)."""
    server = FakeMattermost()
    server.add_user("alice")
    channel = server.dm_with_bot("alice")["id"]
    link, _ = await _connected(server, nursery)
    try:
        server.fail_requests(401, path_prefix="/api/v4/posts", method="POST")
        with trio.fail_after(5 * CHECK_EVERY_S), pytest.raises(ChatError) as refused:
            await link.create_post(channel, "guarded")
        assert refused.value.status == 401
    finally:
        await link.aclose()
    assert "refuses" not in caplog.text


async def test_a_token_refused_again_right_after_a_check_took_it_holds_the_post(
    nursery: trio.Nursery, caplog: pytest.LogCaptureFixture
) -> None:
    """A flapping token: a post refused, the token taken at the check, and refused again
    at the post's retry. The post waits for the token as any refused post does, and goes
    once it is taken (it was dropped: a second 401 after a passing check counted as the
    call's own refusal)."""
    server = FakeMattermost()
    server.add_user("alice")
    channel = server.dm_with_bot("alice")["id"]
    link, _ = await _connected(server, nursery)
    try:
        server.fail_requests(401, path_prefix="/api/v4/posts", method="POST", count=2)
        nursery.start_soon(link.create_post, channel, "held, not dropped")
        with trio.fail_after(10):
            # The retry refused: the token is revoked before the next check (it comes
            # CHECK_EVERY_S after the one that took the token).
            await server.wait_until(lambda: server.stats.count_path("POST", "/api/v4/posts") == 2)
            server.revoke_token()
            await server.wait_until(lambda: REFUSED in caplog.text)
        assert not _posted(server, channel, "held, not dropped")
        server.accept_token()
        with trio.fail_after(10):
            await server.wait_until(lambda: _posted(server, channel, "held, not dropped"))
    finally:
        await link.aclose()
    assert caplog.text.count(REFUSED) == 1


async def test_a_check_of_the_token_that_gets_no_answer_is_tried_again_not_raised() -> None:
    """A check that fails without an answer from Mattermost (a proxy refusing its CONNECT,
    say) once ended the watch, and with it the supervisor: it is neither a refusal nor a
    pass, and the watch tries again."""
    tries = 0

    async def check() -> None:
        nonlocal tries
        tries += 1
        if tries == 1:
            raise RuntimeError("the proxy refused the CONNECT")

    watch = TokenWatch("http://mattermost.example")
    with trio.fail_after(5 * CHECK_EVERY_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run, check)
            await watch.taken_again()
            nursery.cancel_scope.cancel()
    assert tries == 2 and not watch.refused


async def test_a_call_waiting_for_the_token_is_let_go_when_the_watch_ends() -> None:
    """The watch ends with its link: a call waiting for the token's next check must not
    wait for good."""
    async def refused() -> None:
        raise ChatError(401, "api.context.session_expired.app_error", "Invalid or expired session")

    watch = TokenWatch("http://mattermost.example")
    with trio.fail_after(5 * CHECK_EVERY_S):
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as watching:
                nursery.start_soon(_watch_until, watch, refused, watching)
                await watch.taken_again()  # refused: let go only when the watch ends
    assert watch.refused and not watch.watching


async def _watch_until(watch: TokenWatch, check: Any, scope: trio.CancelScope) -> None:
    with trio.move_on_after(2 * CHECK_EVERY_S):
        await watch.run(check)


async def test_a_watch_run_again_holds_a_call_until_a_check_of_its_own_takes_the_token() -> None:
    """The watch's end lets every waiting call go. Run again (its link run once more), it
    must not let the next ones go before one of its own checks takes the token: the mark
    of the end once stayed set, so a call refused with 401 was let go at once, again and
    again, a loop with no pause."""
    tries = 0

    async def refused_twice() -> None:
        nonlocal tries
        tries += 1
        if tries <= 2:
            raise ChatError(401, "api.context.session_expired.app_error", "Invalid or expired session")

    watch = TokenWatch("http://mattermost.example")
    with trio.CancelScope() as first_run:
        first_run.cancel()
        await watch.run(refused_twice)  # ends at once, as a link's run ends
    assert tries == 0
    with trio.fail_after(10 * CHECK_EVERY_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run, refused_twice)
            await watch.taken_again()
            nursery.cancel_scope.cancel()
    assert tries == 3 and not watch.refused
