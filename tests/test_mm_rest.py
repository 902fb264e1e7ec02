"""The Mattermost REST client against an in-memory transport (httpx.MockTransport).

No real I/O happens here, so the tests run on trio's autojump clock: waits of seconds
(Retry-After, backoff, the request budget) pass instantly and are measured exactly.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from supervisor.chat import ChatError, ChatUser
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.core.backoff import Backoff
from supervisor.core.events import FileRef

BASE = "http://mm.test"
TOKEN = "s3cr3t-t0ken-never-logged"
ME = "bot0000000000000000000000a"
ALICE = "ali0000000000000000000000a"
CHANNEL = "chn0000000000000000000000a"
FAST = Backoff(base=0.01, cap=0.5)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A scripted server: answers with `handler` and remembers what it was asked, when."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        return self.handler(request)

    @property
    def paths(self) -> list[str]:
        return [request.url.path for request in self.requests]


def client(recorder: Recorder, **kwargs: Any) -> MattermostRest:
    kwargs.setdefault("backoff", FAST)
    kwargs.setdefault("requests_per_second", 1000.0)
    return MattermostRest(
        BASE, TOKEN, transport=httpx.MockTransport(recorder), rng=random.Random(0), **kwargs
    )


def user(user_id: str = ME, username: str = "claude", **extra: Any) -> dict[str, Any]:
    return {"id": user_id, "username": username, "roles": "system_user", **extra}


def wire_post(post_id: str, create_at: int, **extra: Any) -> dict[str, Any]:
    return {
        "id": post_id,
        "channel_id": CHANNEL,
        "user_id": ALICE,
        "message": f"post {post_id}",
        "create_at": create_at,
        "update_at": extra.pop("update_at", create_at),
        "delete_at": 0,
        "root_id": "",
        "props": {},
        "metadata": {},
        **extra,
    }


def app_error(status: int, error_id: str) -> httpx.Response:
    body = {"id": error_id, "message": "nope", "status_code": status, "request_id": "r1"}
    return httpx.Response(status, json=body)


def answers(*responses: httpx.Response | Exception) -> Handler:
    """Answer with each in turn; keep repeating the last one."""
    script = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


# --- basics ------------------------------------------------------------------------------


async def test_get_me_sends_the_bearer_token(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder(answers(httpx.Response(200, json=user(is_bot=True))))
    rest = client(recorder)
    assert await rest.get_me() == ChatUser(ME, "claude", True)
    assert rest.me == ChatUser(ME, "claude", True)
    request = recorder.requests[0]
    assert str(request.url) == f"{BASE}/api/v4/users/me"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    await rest.aclose()


async def test_rest_calls_use_the_documented_routes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        route = (request.method, request.url.path.removeprefix("/api/v4"))
        match route:
            case ("GET", "/users/me"):
                return httpx.Response(200, json=user())
            case ("POST", "/channels/direct"):
                return httpx.Response(201, json={"id": CHANNEL, "type": "D"})
            case ("POST", "/reactions"):
                return httpx.Response(201, json={**json.loads(request.content), "create_at": 1})
            case ("PUT", "/posts/p1/patch"):
                return httpx.Response(200, json=wire_post("p1", 1, message="edited"))
            case ("POST", "/users/ids"):
                return httpx.Response(200, json=[user(ALICE, "alice")])
            case ("POST", "/users/me/typing"):
                return httpx.Response(200, json={"status": "OK"})
            case ("GET", "/files/f1/info"):
                body = {"id": "f1", "name": "a.txt", "size": 3, "mime_type": "text/plain"}
                return httpx.Response(200, json={**body, "extension": "txt", "post_id": ""})
            case ("GET", "/files/f1"):
                return httpx.Response(200, content=b"abc")
            case ("GET", "/system/ping"):
                return httpx.Response(200, json={"status": "OK", "ActiveSearchBackend": "db"})
        return app_error(404, "api.context.404.app_error")

    recorder = Recorder(handler)
    rest = client(recorder)
    assert await rest.direct_channel(ALICE) == CHANNEL
    await rest.add_reaction("p1", "+1")
    assert (await rest.edit_post("p1", "edited")).message == "edited"
    assert await rest.users_by_ids([ALICE]) == [ChatUser(ALICE, "alice")]
    await rest.typing(CHANNEL, "root")
    assert await rest.file_info("f1") == FileRef("f1", "a.txt", 3, "text/plain")
    assert await rest.download_file("f1") == b"abc"
    assert await rest.ping() == "OK"

    bodies = {
        request.url.path: json.loads(request.content)
        for request in recorder.requests
        if request.content
    }
    assert bodies["/api/v4/channels/direct"] == [ME, ALICE]  # looked up "me" first
    assert bodies["/api/v4/reactions"] == {"user_id": ME, "post_id": "p1", "emoji_name": "+1"}
    assert bodies["/api/v4/posts/p1/patch"] == {"message": "edited"}
    assert bodies["/api/v4/users/ids"] == [ALICE]
    assert bodies["/api/v4/users/me/typing"] == {"channel_id": CHANNEL, "parent_id": "root"}
    assert recorder.paths.count("/api/v4/users/me") == 1  # cached after the first call
    await rest.aclose()


async def test_create_post_body(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder(answers(httpx.Response(201, json=wire_post("p1", 5, root_id="r1"))))
    rest = client(recorder)
    post = await rest.create_post(
        CHANNEL, "hi", root_id="r1", file_ids=("f1",), pending_post_id="pp1", props={"k": 1}
    )
    assert (post.id, post.root_id) == ("p1", "r1")
    assert json.loads(recorder.requests[0].content) == {
        "channel_id": CHANNEL,
        "message": "hi",
        "root_id": "r1",
        "file_ids": ["f1"],
        "props": {"k": 1, "supervisor_pending_post_id": "pp1"},  # found by it after a long outage
        "pending_post_id": "pp1",
    }
    await rest.aclose()


async def test_upload_file_is_multipart(autojump_clock: trio.testing.MockClock) -> None:
    info = {"id": "f9", "name": "notes.md", "size": 5, "mime_type": "text/markdown"}
    recorder = Recorder(answers(httpx.Response(201, json={"file_infos": [info], "client_ids": []})))
    rest = client(recorder)
    assert await rest.upload_file(CHANNEL, "notes.md", b"hello") == "f9"
    request = recorder.requests[0]
    assert request.url.path == "/api/v4/files"
    assert request.headers["Content-Type"].startswith("multipart/form-data")
    body = request.content
    assert b'name="channel_id"' in body and CHANNEL.encode() in body
    assert b'name="files"; filename="notes.md"' in body and b"hello" in body
    await rest.aclose()


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        app_error(503, "api.server.unavailable"),
        httpx.Response(502, text="<html>bad gateway</html>"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed"),
        httpx.ProxyError("502 Bad Gateway"),  # the proxy cannot reach the server
    ],
    ids=["503", "502-html", "connect", "timeout", "protocol", "proxy"],
)
async def test_transient_failures_are_retried_until_success(
    autojump_clock: trio.testing.MockClock, failure: httpx.Response | Exception
) -> None:
    recorder = Recorder(answers(failure, failure, httpx.Response(200, json=user())))
    rest = client(recorder)
    assert (await rest.get_me()).id == ME
    assert len(recorder.requests) == 3
    await rest.aclose()


async def test_a_proxy_s_refusal_is_said_once_per_answer_and_its_end_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Tries refused by the proxy with one answer make one line; another answer (the proxy
    let in, now its server down) one more; the way open again, one more."""
    refused, down = httpx.ProxyError("403 Forbidden"), httpx.ProxyError("502 Bad Gateway")
    recorder = Recorder(answers(refused, refused, refused, down, down, httpx.Response(200, json=user())))
    rest = client(recorder)
    assert (await rest.get_me()).id == ME
    said = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert [level for level, _ in said] == ["ERROR", "WARNING", "WARNING"]
    assert "answered 403 Forbidden: it will not connect us there" in said[0][1]
    assert "answered 502 Bad Gateway: it cannot reach the server" in said[1][1]
    assert said[2][1].startswith("Mattermost at http://mm.test: the proxy ") and "lets us through again" in said[2][1]
    await rest.aclose()


async def test_pending_duplicate_post_is_retried_with_the_same_pending_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    pending = app_error(500, "api.post.deduplicate_create_post.pending")
    recorder = Recorder(answers(pending, httpx.Response(201, json=wire_post("p1", 1))))
    rest = client(recorder)
    assert (await rest.create_post(CHANNEL, "hi")).id == "p1"
    sent = [json.loads(request.content)["pending_post_id"] for request in recorder.requests]
    assert len(sent) == 2 and sent[0] == sent[1] != ""  # generated once, resent as is
    await rest.aclose()


async def test_retries_forever_with_growing_jittered_backoff_until_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(answers(app_error(503, "down")))
    rest = client(recorder, backoff=Backoff(base=0.25, cap=30.0))
    with trio.move_on_after(600) as scope:
        await rest.user_by_username("alice")  # not the start's `get_me`: that one listens (5 s)
    assert scope.cancelled_caught  # the caller's scope, not the client, gave up
    gaps = [
        later - earlier for earlier, later in zip(recorder.times, recorder.times[1:], strict=False)
    ]
    assert len(gaps) > 20
    assert all(gap <= 30.0 + 1e-6 for gap in gaps)
    assert max(gaps[:3]) <= 1.0  # 0.25, 0.5, 1 s ceilings at first
    assert max(gaps) > 10.0  # ... growing towards the cap
    await rest.aclose()


async def test_429_waits_as_retry_after_says(autojump_clock: trio.testing.MockClock) -> None:
    limited = httpx.Response(
        429,
        text="limit exceeded\n",
        headers={"Retry-After": "2", "X-RateLimit-Reset": "9", "Content-Type": "text/plain"},
    )
    recorder = Recorder(answers(limited, httpx.Response(200, json=user())))
    rest = client(recorder)
    await rest.get_me()
    assert recorder.times[1] - recorder.times[0] == pytest.approx(2.0, abs=0.01)
    await rest.aclose()


async def test_429_without_retry_after_uses_the_reset_seconds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    limited = httpx.Response(429, text="limit exceeded\n", headers={"X-RateLimit-Reset": "3"})
    recorder = Recorder(answers(limited, httpx.Response(200, json=user())))
    rest = client(recorder)
    await rest.get_me()
    assert recorder.times[1] - recorder.times[0] == pytest.approx(3.0, abs=0.01)
    await rest.aclose()


async def test_remaining_zero_holds_the_next_request_until_the_server_has_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    exhausted = httpx.Response(
        200,
        json=user(),
        headers={
            "X-RateLimit-Limit": "101",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "4",
        },
    )
    recorder = Recorder(answers(exhausted, httpx.Response(200, json=user())))
    rest = client(recorder)
    await rest.get_me()
    await rest.get_me()
    # Not the whole reset (the time until the server's bucket is full again): the time
    # until it holds a token again and the margin we keep, at the rate its headers imply
    # (101 tokens missing, full again within 4 s: more than 25 per second).
    rate = 0.95 * (101 - 1) / 4
    assert recorder.times[1] - recorder.times[0] == pytest.approx((1 + 0.05 * 101) / rate, abs=0.01)
    await rest.aclose()


# --- permanent errors ---------------------------------------------------------------------


async def test_400_raises_chat_error_with_the_server_id_and_no_retry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(answers(app_error(400, "model.post.is_valid.message_length.app_error")))
    rest = client(recorder)
    with pytest.raises(ChatError) as caught:
        await rest.create_post(CHANNEL, "x" * 20000)
    assert caught.value.status == 400
    assert caught.value.error_id == "model.post.is_valid.message_length.app_error"
    assert caught.value.message == "nope"
    assert len(recorder.requests) == 1
    await rest.aclose()


async def test_unknown_username_is_none_but_forbidden_raises(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rest = client(Recorder(answers(app_error(404, "app.user.missing_account.const"))))
    assert await rest.user_by_username("nobody") is None
    await rest.aclose()
    rest = client(Recorder(answers(app_error(403, "api.context.permissions.app_error"))))
    with pytest.raises(ChatError) as caught:
        await rest.user_by_username("secret")
    assert caught.value.status == 403
    await rest.aclose()


async def test_non_json_error_body_still_gives_a_chat_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rest = client(Recorder(answers(httpx.Response(413, text="<html>too large</html>"))))
    with pytest.raises(ChatError) as caught:
        await rest.upload_file(CHANNEL, "big.bin", b"0" * 10)
    assert (caught.value.status, caught.value.error_id) == (413, "")
    assert "too large" in caught.value.message
    await rest.aclose()


async def test_unusable_success_body_is_a_chat_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rest = client(Recorder(answers(httpx.Response(200, json={"id": 7}))))
    with pytest.raises(ChatError) as caught:
        await rest.get_me()
    assert caught.value.error_id == "malformed_response"
    await rest.aclose()


# httpx leaves its raw-bytes generator unfinished when decoding fails; trio warns as it
# collects it. Nothing of ours is left open (the response is closed).
@pytest.mark.filterwarnings("ignore:Async generator 'httpx._models.Response.aiter_raw':ResourceWarning")
async def test_a_body_that_does_not_decode_is_retried_as_a_lost_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A broken proxy's bad gzip during a catch-up: tried again, not an exception the
    catch-up does not expect (it ended the supervisor)."""
    reaction = {"user_id": ALICE, "post_id": "p1", "emoji_name": "+1"}
    tries: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(1)
        if len(tries) < 3:  # a stream, so that the body is decoded when read, as off the wire
            broken = httpx.ByteStream(b"\x1f\x8b not gzip after all")
            return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=broken)
        return httpx.Response(200, json=[reaction])

    rest = client(Recorder(handler))
    assert [r.emoji_name for r in await rest.reactions("p1")] == ["+1"]
    assert len(tries) == 3
    await rest.aclose()


@pytest.mark.parametrize("body", [5, "+1", {"emoji_name": "+1"}])
async def test_reactions_that_are_no_list_are_a_chat_error(
    autojump_clock: trio.testing.MockClock, body: Any
) -> None:
    rest = client(Recorder(answers(httpx.Response(200, json=body))))
    with pytest.raises(ChatError) as caught:
        await rest.reactions("p1")
    assert caught.value.error_id == "malformed_response"
    await rest.aclose()


async def test_ping_is_not_retried(autojump_clock: trio.testing.MockClock) -> None:
    recorder = Recorder(answers(httpx.ConnectError("refused")))
    rest = client(recorder)
    with pytest.raises(ChatError) as caught:
        await rest.ping()
    assert (caught.value.status, caught.value.error_id) == (0, "unreachable")
    await rest.aclose()
    recorder = Recorder(answers(app_error(503, "down")))
    rest = client(recorder)
    with pytest.raises(ChatError) as caught:
        await rest.ping()
    assert caught.value.status == 503
    assert len(recorder.requests) == 1
    await rest.aclose()


# --- catch-up paging ------------------------------------------------------------------------


class Channel:
    """A channel of posts answering GET /channels/{id}/posts the way Mattermost does."""

    def __init__(self, count: int, since: int) -> None:
        self.posts = [wire_post(f"p{n:04d}", since + 1 + n) for n in range(count)]
        # Context the server adds: the root of a reply, unchanged since `since`.
        self.root = wire_post("root", since - 100)
        self.posts[0]["root_id"] = "root"

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if "since" in params:
            since = int(params["since"])
            changed = [post for post in self.posts if post["update_at"] > since][:1000]
            return self.page(changed, extra=(self.root,))
        per_page, page = int(params["per_page"]), int(params["page"])
        if "after" in params:
            after = next(post for post in self.posts if post["id"] == params["after"])
            later = [post for post in self.posts if post["create_at"] > after["create_at"]]
            return self.page(later[page * per_page : (page + 1) * per_page])
        earlier = self.posts[::-1]  # newest first
        if "before" in params:
            before = next(post for post in self.posts if post["id"] == params["before"])
            earlier = [post for post in earlier if post["create_at"] < before["create_at"]]
        return self.page(earlier[page * per_page : (page + 1) * per_page])

    @staticmethod
    def page(posts: list[dict[str, Any]], extra: tuple[dict[str, Any], ...] = ()) -> httpx.Response:
        newest_first = sorted(posts, key=lambda post: -post["create_at"])
        body = {
            "order": [post["id"] for post in newest_first],
            "posts": {post["id"]: post for post in [*posts, *extra]},
            "next_post_id": "",
            "prev_post_id": "",
            "has_next": False,
        }
        return httpx.Response(200, json=body)


async def test_posts_since_pages_on_beyond_the_1000_cap(
    autojump_clock: trio.testing.MockClock,
) -> None:
    since = 1_700_000_000_000
    channel = Channel(1450, since)
    recorder = Recorder(channel)
    rest = client(recorder)
    posts = await rest.posts_since(CHANNEL, since)
    assert [post.id for post in posts] == [f"p{n:04d}" for n in range(1450)]  # oldest first
    queries = [dict(request.url.params) for request in recorder.requests]
    assert queries[0] == {"since": str(since)}
    # At the cap: the channel newest first, back to `since` (tests/test_catch_up_paging.py),
    # each page without the threads it touches.
    only = {"skipFetchThreads": "true"}
    assert queries[1] == {"page": "0", "per_page": "200", **only}
    assert queries[2] == {"before": "p1251", "page": "0", "per_page": "200", **only}
    assert len(queries) == 9  # 1000, then 8 pages of 200 back to the first post
    await rest.aclose()


async def test_posts_since_below_the_cap_is_one_request_and_dedupes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    since = 1000
    edited = wire_post("b", 50, update_at=2000)
    body = {
        "order": ["c", "b", "b"],
        "posts": {"c": wire_post("c", 1500), "b": edited},
    }
    recorder = Recorder(answers(httpx.Response(200, json=body)))
    rest = client(recorder)
    posts = await rest.posts_since(CHANNEL, since)
    assert [(post.id, post.update_at) for post in posts] == [("b", 2000), ("c", 1500)]
    assert len(recorder.requests) == 1
    await rest.aclose()


async def test_posts_after(autojump_clock: trio.testing.MockClock) -> None:
    channel = Channel(450, 0)
    rest = client(Recorder(channel))
    posts = await rest.posts_after(CHANNEL, "p0009")
    assert [post.id for post in posts] == [f"p{n:04d}" for n in range(10, 450)]
    await rest.aclose()


# --- the request budget ----------------------------------------------------------------------


async def test_a_burst_of_calls_stays_within_the_budget(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(answers(httpx.Response(200, json=user())))
    rest = client(recorder, requests_per_second=10.0)
    async with trio.open_nursery() as nursery:
        for _ in range(100):
            nursery.start_soon(rest.get_me)
    times = sorted(recorder.times)
    assert len(times) == 100
    for i, start in enumerate(times):
        assert sum(1 for other in times[i:] if other < start + 1.0 - 1e-9) <= 10 + 10
    assert times[-1] - times[0] >= 8.9  # 10 at once, then 10 per second
    await rest.aclose()


# --- secrets ---------------------------------------------------------------------------------


async def test_the_token_never_reaches_the_log(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder(
        answers(
            httpx.ConnectError(f"refused (Authorization: Bearer {TOKEN})"),
            app_error(503, "down"),
            httpx.Response(429, text="limit exceeded\n", headers={"Retry-After": "1"}),
            httpx.Response(200, json=user()),
            app_error(400, "bad"),
        )
    )
    rest = client(recorder)
    await rest.get_me()
    with pytest.raises(ChatError):
        await rest.edit_post("p1", "x")
    await rest.aclose()
    mattermost_lines = [r for r in caplog.records if r.name == "supervisor.mattermost"]
    assert len(mattermost_lines) >= 4  # the failures above were logged ...
    for record in caplog.records:  # ... and no line from anyone carries the secret
        text = record.getMessage() + repr(record.args) + str(record.exc_info)
        assert TOKEN not in text
        assert "Authorization" not in text
