"""The fake Mattermost speaks API v4 as the official OpenAPI spec describes it.

One scenario drives every endpoint of the fake (successes and the usual errors) over
loopback; then every exchange in the fake's request log, request and response, is
validated against the spec with `tests.fakes.openapi_check` (the known spec gaps are
explicit exceptions there). Other tests check that the checker itself catches mismatches.
"""

from __future__ import annotations

import json
import ssl

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.fakes.mattermost import FakeMattermost
from tests.fakes.mattermost_rest import ROUTES, WEBSOCKET_ROUTE
from tests.fakes.mattermost_shapes import new_id
from tests.fakes.openapi_check import load_spec, require_spec, validate_exchange, validate_record

TIMEOUT = 20
_TLS = ssl.create_default_context()  # shared: building one per client costs ~60 ms


@pytest.fixture(scope="module", autouse=True)
def spec_loaded() -> None:
    """Parse the spec once for the module (seconds), outside any test's time budget.
    A missing spec skips every test here, or fails them under CI=true."""
    require_spec()
    load_spec()


async def _drive_every_endpoint(server: FakeMattermost) -> None:
    alice = server.add_user("alice")
    auth = {"Authorization": f"Bearer {server.bot_token}"}
    api = server.url + "/api/v4"
    async with (
        httpx.AsyncClient(base_url=api, headers=auth, verify=_TLS) as bot,
        httpx.AsyncClient(base_url=api, verify=_TLS) as anonymous,
    ):
        await anonymous.get("/system/ping")
        await anonymous.get("/users/me")  # 401
        await bot.get("/config/client", params={"format": "old"})
        await bot.get("/users/me")
        await bot.get(f"/users/{alice.id}")
        await bot.get("/users/username/alice")
        await bot.get("/users/username/nobody")  # 404
        await bot.post("/users/ids", json=[alice.id, server.bot.id])
        await bot.post("/users/usernames", json=["alice", "claude-bot"])
        dm = (await bot.post("/channels/direct", json=[server.bot.id, alice.id])).json()
        await bot.get(f"/channels/{dm['id']}")

        upload = await bot.post(
            "/files",
            data={"channel_id": dm["id"], "client_ids": ["a", "b"]},
            files=[
                ("files", ("a.txt", b"hello", "text/plain")),
                ("files", ("b.png", b"\x89PNG\r\n\x1a\n" + bytes(16))),
            ],
        )
        raw = await bot.post(
            "/files", params={"channel_id": dm["id"], "filename": "raw.md"}, content=b"# raw"
        )
        await bot.post(
            "/files", params={"channel_id": dm["id"], "filename": "big"}, content=b"x" * 2048
        )  # 413
        file_ids = [f["id"] for f in upload.json()["file_infos"]]
        await bot.get(f"/files/{file_ids[0]}")
        await bot.get(f"/files/{raw.json()['file_infos'][0]['id']}/info")

        root = await server.user_post("alice", "root")
        reply = (
            await bot.post(
                "/posts",
                json={
                    "channel_id": dm["id"],
                    "message": "reply",
                    "root_id": root["id"],
                    "file_ids": file_ids,
                    "props": {"from_bot": "true"},
                    "pending_post_id": "p:1",
                },
            )
        ).json()
        await bot.post("/posts", json={"channel_id": dm["id"], "message": "x" * 16384})  # 400
        await bot.get(f"/posts/{reply['id']}")
        await bot.put(f"/posts/{reply['id']}/patch", json={"message": "edited", "props": {"k": 1}})
        await bot.get(f"/posts/{root['id']}/thread")
        for params in (
            {},
            {"since": root["create_at"] - 1},
            {"after": root["id"]},
            {"before": reply["id"], "per_page": 1, "page": 0},
        ):
            await bot.get(f"/channels/{dm['id']}/posts", params=params)

        await bot.post(
            "/reactions", json={"user_id": server.bot.id, "post_id": root["id"], "emoji_name": "+1"}
        )
        await bot.post(
            "/reactions",
            json={"user_id": server.bot.id, "post_id": root["id"], "emoji_name": "bad name"},
        )  # 400
        await bot.get(f"/posts/{root['id']}/reactions")
        await bot.delete(f"/users/{server.bot.id}/posts/{root['id']}/reactions/+1")
        await bot.post(f"/users/{server.bot.id}/typing", json={"channel_id": dm["id"]})
        await bot.delete(f"/posts/{reply['id']}")

        headers = [(b"authorization", f"Bearer {server.bot_token}".encode())]
        query = f"?connection_id={new_id()}&sequence_number=0"
        async with open_websocket_url(server.ws_url + query, extra_headers=headers) as ws:
            assert json.loads(await ws.get_message())["event"] == "hello"

        server.fail_requests(503, count=1)
        await bot.get("/users/me")
        server.fail_requests("refuse", count=1)
        with pytest.raises(httpx.RemoteProtocolError):
            await bot.post("/posts", json={"channel_id": dm["id"], "message": "lost"})
        server.rate_limit(per_second=1, burst=0)
        await bot.get("/users/me")
        await bot.get("/users/me")  # 429
        server.rate_limit(None)


async def test_every_exchange_of_every_endpoint_matches_the_spec(
    spec_loaded: None, nursery: trio.Nursery
) -> None:
    server = FakeMattermost(max_file_size=1024)
    await nursery.start(server.serve)
    with trio.fail_after(TIMEOUT):
        await _drive_every_endpoint(server)

    records = [r for r in server.stats.log if r.route]
    problems = [
        (r.method, r.path, r.status, p) for r in records for p in validate_record(r, server.url)
    ]
    # The one invalid request is the one sent without a token on purpose.
    assert [(m, path, status) for m, path, status, _ in problems] == [
        ("GET", "/api/v4/users/me", 401)
    ]
    assert "bearerAuth" in problems[0][3]
    covered = {(r.method, r.route) for r in records}
    assert {(route.method, route.template) for route in ROUTES} <= covered
    assert ("GET", WEBSOCKET_ROUTE) in covered
    statuses = {r.status for r in records}
    assert {0, 101, 200, 201, 400, 401, 404, 413, 429, 503} <= statuses


def test_checker_reports_shape_errors_with_their_path(spec_loaded: None) -> None:
    problems = validate_exchange(
        "GET",
        "http://127.0.0.1:1/api/v4/posts/abc",
        None,
        200,
        {"id": "abc", "create_at": "yesterday", "metadata": {"files": [{"size": "big"}]}},
    )
    assert any("/create_at" in p for p in problems)
    assert any("/metadata/files/0/size" in p for p in problems)


def test_checker_reports_bad_requests(spec_loaded: None) -> None:
    missing_message = validate_exchange(
        "POST", "http://127.0.0.1:1/api/v4/posts", {"channel_id": "c"}, 201, {"id": "p"}
    )
    unauthenticated = validate_exchange(
        "GET", "http://127.0.0.1:1/api/v4/users/me", None, 200, {"id": "u"}, request_headers={}
    )
    assert any("message" in p for p in missing_message)
    assert any("Security" in p for p in unauthenticated)


def test_checker_handles_the_known_gaps_explicitly(spec_loaded: None) -> None:
    patch = "http://127.0.0.1:1/api/v4/posts/abc/patch"
    assert validate_exchange("PUT", patch, {"props": {"a": 1}}, 200, {"id": "abc"}) == []
    assert validate_exchange("PUT", patch, {"props": [1]}, 200, {"id": "abc"}) == [
        "request: props must be a JSON object"
    ]
    me = "http://127.0.0.1:1/api/v4/users/me"
    assert validate_exchange("GET", me, None, 200, {"id": "u", "is_bot": True}) == []
    assert validate_exchange("GET", me, None, 200, {"id": "u", "is_bot": "yes"}) != []
    limited_headers = {
        "X-RateLimit-Limit": "101",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1",
        "Retry-After": "1",
    }
    assert (
        validate_exchange(
            "GET",
            me,
            None,
            429,
            b"limit exceeded\n",
            limited_headers,
            response_content_type="text/plain; charset=utf-8",
        )
        == []
    )
    assert validate_exchange("GET", me, None, 429, {"id": "x"}, limited_headers) != []
    assert validate_exchange("GET", me, None, 503, {"id": "x", "status_code": "503"}) != []
    ping = "http://127.0.0.1:1/api/v4/system/ping"
    assert validate_exchange("GET", ping, None, 200, {"status": "OK"}, request_headers={}) == []
