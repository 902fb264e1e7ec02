"""The fake Mattermost server, driven over loopback by httpx and trio-websocket.

Each test names one behaviour of the real server (FACTS.md) that the fake must reproduce,
because the supervisor's end-to-end tests rely on it. Every test is bounded by fail_after.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import (
    ConnectionClosed,
    WebSocketConnection,
    open_websocket_url,
)

from tests.fakes.mattermost import Account, FakeMattermost
from tests.fakes.mattermost_faults import RateLimiter
from tests.fakes.mattermost_http import parse_multipart
from tests.fakes.mattermost_shapes import is_valid_id, new_id

TIMEOUT = 10
_TLS = ssl.create_default_context()  # shared: httpx builds one per client otherwise (~60 ms)

POST_KEYS = {
    "id",
    "create_at",
    "update_at",
    "edit_at",
    "delete_at",
    "is_pinned",
    "user_id",
    "channel_id",
    "root_id",
    "original_id",
    "message",
    "type",
    "props",
    "hashtags",
    "pending_post_id",
    "reply_count",
    "metadata",
    "file_ids",
}
BROADCAST_KEYS = {
    "omit_users",
    "user_id",
    "channel_id",
    "team_id",
    "connection_id",
    "omit_connection_id",
}


@pytest.fixture
async def server(nursery: trio.Nursery) -> FakeMattermost:
    server = FakeMattermost(max_file_size=1 << 20, ws_auth_timeout=1.0)
    await nursery.start(server.serve)
    return server


@pytest.fixture
def alice(server: FakeMattermost) -> Account:
    return server.add_user("alice")


@pytest.fixture
async def bot_http(server: FakeMattermost) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(server, server.bot_token) as client:
        yield client


def client_for(server: FakeMattermost, token: str | None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=server.url + "/api/v4", headers=headers, verify=_TLS)


@asynccontextmanager
async def websocket(
    server: FakeMattermost, token: str | None, query: str = ""
) -> AsyncIterator[WebSocketConnection]:
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    async with open_websocket_url(server.ws_url + query, extra_headers=headers) as ws:
        try:
            yield ws
        finally:
            # trio-websocket 0.12.2 never closes its TCP stream when the peer hangs up
            # without a close frame (aclose() returns early), leaking the socket.
            stream: trio.abc.Stream = ws._stream
            await trio.aclose_forcefully(stream)


async def next_frame(ws: WebSocketConnection) -> dict[str, Any]:
    frame = json.loads(await ws.get_message())
    assert isinstance(frame, dict)
    return frame


async def next_event(ws: WebSocketConnection, event: str) -> dict[str, Any]:
    """The next frame, which must be `event` (frames are never reordered)."""
    frame = await next_frame(ws)
    assert frame.get("event") == event, frame
    return frame


# ---------------------------------------------------------------------------------------
# REST: auth, users, channels


async def test_ping_is_public_and_everything_else_needs_a_token(server: FakeMattermost) -> None:
    with trio.fail_after(TIMEOUT):
        async with client_for(server, None) as anonymous:
            ping = await anonymous.get("/system/ping")
            assert ping.status_code == 200 and ping.json()["status"] == "OK"
            me = await anonymous.get("/users/me")
        async with client_for(server, "not-a-token") as stranger:
            bad = await stranger.get("/users/me")
    for answer in (me, bad):
        assert answer.status_code == 401
        body = answer.json()
        assert body["id"] == "api.context.session_expired.app_error"
        assert body["status_code"] == 401
        assert body["request_id"] == answer.headers["X-Request-Id"]


async def test_users_by_me_id_username_ids_and_usernames(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        me = (await bot_http.get("/users/me")).json()
        by_id = (await bot_http.get(f"/users/{alice.id}")).json()
        by_name = (await bot_http.get("/users/username/alice")).json()
        missing = await bot_http.get("/users/username/nobody")
        by_ids = await bot_http.post("/users/ids", json=[alice.id, server.bot.id, new_id()])
        by_names = await bot_http.post("/users/usernames", json=["alice", "nobody"])
    assert me["id"] == server.bot.id and me["username"] == "claude-bot" and me["is_bot"] is True
    assert by_id == by_name and by_id["username"] == "alice"
    assert "is_bot" not in by_id  # omitempty in model.User
    assert all(is_valid_id(u) for u in (me["id"], by_id["id"]))
    assert missing.status_code == 404 and missing.json()["id"] == "app.user.missing_account.const"
    assert {u["id"] for u in by_ids.json()} == {alice.id, server.bot.id}
    assert [u["username"] for u in by_names.json()] == ["alice"]


async def test_direct_channel_is_created_once_with_sorted_name(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    bob = server.add_user("bob")
    with trio.fail_after(TIMEOUT):
        first = await bot_http.post("/channels/direct", json=[server.bot.id, alice.id])
        again = await bot_http.post("/channels/direct", json=[alice.id, server.bot.id])
        fetched = await bot_http.get(f"/channels/{first.json()['id']}")
        others = await bot_http.post("/channels/direct", json=[alice.id, bob.id])
        foreign = server.dm_channel(alice.id, bob.id)
        peek = await bot_http.get(f"/channels/{foreign['id']}")
    assert first.status_code == again.status_code == 201
    channel = first.json()
    assert channel["type"] == "D" and channel["team_id"] == ""
    assert channel["name"] == "__".join(sorted((server.bot.id, alice.id)))
    assert again.json()["id"] == channel["id"] == fetched.json()["id"]
    assert others.status_code == 403 and peek.status_code == 403


async def test_unknown_route_and_client_config(bot_http: httpx.AsyncClient) -> None:
    with trio.fail_after(TIMEOUT):
        unknown = await bot_http.get("/nothing/here")
        old = await bot_http.get("/config/client", params={"format": "old"})
        new = await bot_http.get("/config/client")
    assert unknown.status_code == 404 and unknown.json()["id"] == "api.context.404.app_error"
    assert old.status_code == 200
    assert old.json()["MaxPostSize"] == "16383" and old.json()["MaxFileSize"] == str(1 << 20)
    assert new.status_code == 501


# ---------------------------------------------------------------------------------------
# REST: posts


async def test_create_post_shape_order_and_validation(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm = server.dm_with_bot("alice")
    with trio.fail_after(TIMEOUT):
        created = [
            await bot_http.post("/posts", json={"channel_id": dm["id"], "message": f"m{i}"})
            for i in range(5)
        ]
        longest = await bot_http.post(
            "/posts", json={"channel_id": dm["id"], "message": "é" * 16383}
        )
        too_long = await bot_http.post(
            "/posts", json={"channel_id": dm["id"], "message": "x" * 16384}
        )
        orphan = await bot_http.post(
            "/posts", json={"channel_id": dm["id"], "message": "r", "root_id": new_id()}
        )
        fetched = await bot_http.get(f"/posts/{created[0].json()['id']}")
    assert all(r.status_code == 201 for r in created)
    posts = [r.json() for r in created]
    assert set(posts[0]) >= POST_KEYS
    assert posts[0]["user_id"] == server.bot.id and posts[0]["metadata"] == {}
    stamps = [p["create_at"] for p in posts]
    assert stamps == sorted(set(stamps)), "create_at strictly increases"
    assert longest.status_code == 201
    assert too_long.status_code == 400
    assert too_long.json()["id"] == "model.post.is_valid.message_length.app_error"
    assert (
        orphan.status_code == 400
        and orphan.json()["id"] == "api.post.create_post.root_id.app_error"
    )
    assert fetched.json()["message"] == "m0"


async def test_pending_post_id_returns_the_first_post(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm = server.dm_with_bot("alice")
    body = {"channel_id": dm["id"], "message": "once", "pending_post_id": "bot:123"}
    with trio.fail_after(TIMEOUT):
        first = await bot_http.post("/posts", json=body)
        second = await bot_http.post("/posts", json=body)
        server.store.pending["bot:123"] = (first.json()["id"], 0.0)  # as if 30 s had passed
        third = await bot_http.post("/posts", json=body)
        fetched = await bot_http.get(f"/posts/{first.json()['id']}")
    assert first.status_code == second.status_code == third.status_code == 201
    assert first.json()["id"] == second.json()["id"] != third.json()["id"]
    assert first.json()["pending_post_id"] == "bot:123"
    assert fetched.json()["pending_post_id"] == ""  # not a database column
    assert len(server.posts_in_channel(dm["id"])) == 2


async def test_patch_edits_in_place_and_keeps_history(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm = server.dm_with_bot("alice")
    with trio.fail_after(TIMEOUT):
        post = (
            await bot_http.post("/posts", json={"channel_id": dm["id"], "message": "v1"})
        ).json()
        async with websocket(server, alice.token) as ws:
            await next_event(ws, "hello")
            patched = await bot_http.put(
                f"/posts/{post['id']}/patch", json={"message": "v2", "props": {"k": [1, 2]}}
            )
            edited_event = await next_event(ws, "post_edited")
        too_long = await bot_http.put(f"/posts/{post['id']}/patch", json={"message": "x" * 16384})
        alice_post = await server.user_post("alice", "mine")
        not_mine = await bot_http.put(f"/posts/{alice_post['id']}/patch", json={"message": "no"})
        since = await bot_http.get(
            f"/channels/{dm['id']}/posts", params={"since": post["create_at"]}
        )
    assert patched.status_code == 200
    edited = patched.json()
    assert edited["id"] == post["id"] and edited["message"] == "v2"
    assert edited["props"] == {"k": [1, 2]}
    assert json.loads(edited_event["data"]["post"]) == edited  # a JSON string, not an object
    assert edited_event["broadcast"]["channel_id"] == dm["id"]
    assert edited["edit_at"] > post["create_at"] and edited["update_at"] >= edited["edit_at"]
    assert too_long.status_code == 400 and not_mine.status_code == 403
    assert [post_id for post_id, _ in server.edits] == [post["id"]]
    listing = since.json()
    history = [p for p in listing["posts"].values() if p["original_id"] == post["id"]]
    assert len(history) == 1 and history[0]["message"] == "v1" and history[0]["delete_at"] > 0
    assert listing["posts"][post["id"]]["message"] == "v2"


async def test_delete_removes_a_thread_and_announces_it(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        async with websocket(server, alice.token) as ws:
            await next_event(ws, "hello")
            root = (
                await bot_http.post("/posts", json={"channel_id": dm_id, "message": "r"})
            ).json()
            await bot_http.post(
                "/posts", json={"channel_id": dm_id, "message": "c", "root_id": root["id"]}
            )
            await next_event(ws, "posted")
            await next_event(ws, "posted")
            deleted = await bot_http.delete(f"/posts/{root['id']}")
            event = await next_event(ws, "post_deleted")
            gone = await bot_http.get(f"/posts/{root['id']}")
            since = await bot_http.get(
                f"/channels/{dm_id}/posts", params={"since": root["create_at"] - 1}
            )
            page = await bot_http.get(f"/channels/{dm_id}/posts")
    assert deleted.json() == {"status": "OK"}
    assert json.loads(event["data"]["post"])["id"] == root["id"]
    assert gone.status_code == 404
    assert all(p["delete_at"] > 0 for p in since.json()["posts"].values())
    assert len(since.json()["order"]) == 2 and page.json()["order"] == []
    assert server.thread(root["id"]) == []


async def test_thread_lists_root_and_replies(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        root = await server.user_post("alice", "root")
        dm_id = root["channel_id"]
        replies = [
            (
                await bot_http.post(
                    "/posts", json={"channel_id": dm_id, "message": f"r{i}", "root_id": root["id"]}
                )
            ).json()
            for i in range(3)
        ]
        via_reply = (await bot_http.get(f"/posts/{replies[1]['id']}/thread")).json()
    assert via_reply["order"] == [p["id"] for p in reversed(replies)] + [root["id"]]
    assert via_reply["posts"][root["id"]]["reply_count"] == 3
    assert [p["message"] for p in server.thread(root["id"])] == ["root", "r0", "r1", "r2"]
    assert server.store.posts[root["id"]]["update_at"] == replies[-1]["create_at"]


async def test_channel_posts_since_and_paging(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        posts = [await server.user_post("alice", f"p{i}") for i in range(210)]
        ids = [p["id"] for p in posts]
        cut = posts[199]["update_at"]
        await server.user_edit("alice", ids[5], "p5 edited")
        since = (await bot_http.get(f"/channels/{dm_id}/posts", params={"since": cut})).json()
        page0 = (await bot_http.get(f"/channels/{dm_id}/posts", params={"per_page": 500})).json()
        page1 = (
            await bot_http.get(f"/channels/{dm_id}/posts", params={"per_page": 100, "page": 1})
        ).json()
        after = (
            await bot_http.get(
                f"/channels/{dm_id}/posts", params={"after": ids[200], "per_page": 5}
            )
        ).json()
        before = (
            await bot_http.get(
                f"/channels/{dm_id}/posts", params={"before": ids[10], "per_page": 3}
            )
        ).json()
    # since: everything changed after `cut`, edits and edit-history rows included, newest first.
    live_order = [i for i in since["order"] if not since["posts"][i]["original_id"]]
    assert live_order == [*reversed(ids[200:]), ids[5]]
    assert len(since["order"]) == 12 and since["next_post_id"] == since["prev_post_id"] == ""
    # per_page is capped at 200; order is newest first; cursor ids border the window.
    assert page0["order"] == list(reversed(ids[10:]))
    assert page0["prev_post_id"] == ids[9] and page0["next_post_id"] == ""
    assert page1["order"] == list(reversed(ids[10:110]))
    assert page1["next_post_id"] == ids[110] and page1["has_next"] is True
    assert after["order"] == list(reversed(ids[201:206]))
    assert after["prev_post_id"] == ids[200] and after["next_post_id"] == ids[206]
    assert before["order"] == list(reversed(ids[7:10])) and before["next_post_id"] == ids[10]


# ---------------------------------------------------------------------------------------
# REST: reactions, files, typing


async def test_reactions_are_validated_saved_and_broadcast(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, alice.token) as ws:
            await next_event(ws, "hello")
            post = await server.user_post("alice", "approve?")
            await next_event(ws, "posted")
            saved = await bot_http.post(
                "/reactions",
                json={
                    "user_id": server.bot.id,
                    "post_id": post["id"],
                    "emoji_name": "white_check_mark",
                },
            )
            added = await next_event(ws, "reaction_added")
            listed = await bot_http.get(f"/posts/{post['id']}/reactions")
            bad_name = await bot_http.post(
                "/reactions",
                json={"user_id": server.bot.id, "post_id": post["id"], "emoji_name": "no spaces"},
            )
            unknown = await bot_http.post(
                "/reactions",
                json={
                    "user_id": server.bot.id,
                    "post_id": post["id"],
                    "emoji_name": "not_an_emoji",
                },
            )
            as_alice = await bot_http.post(
                "/reactions", json={"user_id": alice.id, "post_id": post["id"], "emoji_name": "+1"}
            )
            removed = await bot_http.delete(
                f"/users/me/posts/{post['id']}/reactions/white_check_mark"
            )
            gone = await next_event(ws, "reaction_removed")
            await server.user_react("alice", post["id"], "thumbsup")
            by_alice = await next_event(ws, "reaction_added")
            still_there = server.reactions_on(post["id"])
            await server.user_unreact("alice", post["id"], "thumbsup")
            unreacted = await next_event(ws, "reaction_removed")
    assert saved.status_code == 201 and saved.json()["emoji_name"] == "white_check_mark"
    reaction = json.loads(added["data"]["reaction"])  # a JSON string, not an object
    assert reaction["user_id"] == server.bot.id and reaction["post_id"] == post["id"]
    assert added["broadcast"]["channel_id"] == post["channel_id"]
    assert [r["emoji_name"] for r in listed.json()] == ["white_check_mark"]
    assert bad_name.status_code == 400 and unknown.status_code == 404
    assert as_alice.status_code == 403
    assert removed.status_code == 200 and removed.json() == {"status": "OK"}
    assert json.loads(gone["data"]["reaction"])["emoji_name"] == "white_check_mark"
    assert json.loads(by_alice["data"]["reaction"])["user_id"] == alice.id
    assert [r["emoji_name"] for r in still_there] == ["thumbsup"]
    assert json.loads(unreacted["data"]["reaction"])["emoji_name"] == "thumbsup"
    assert server.reactions_on(post["id"]) == []


async def test_files_multipart_raw_download_and_attach(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    files = [
        ("files", ("notes.txt", b"line\r\n--x", "text/plain")),
        ("files", ("blob.bin", bytes(range(256)), "application/octet-stream")),
    ]
    with trio.fail_after(TIMEOUT):
        multi = await bot_http.post(
            "/files", data={"channel_id": dm_id, "client_ids": ["c1", "c2"]}, files=files
        )
        raw = await bot_http.post(
            "/files", params={"channel_id": dm_id, "filename": "raw.md"}, content=b"# raw"
        )
        big = await bot_http.post(
            "/files",
            params={"channel_id": dm_id, "filename": "big"},
            content=b"x" * ((1 << 20) + 1),
        )
        infos = multi.json()["file_infos"]
        data = await bot_http.get(f"/files/{infos[1]['id']}")
        info = await bot_http.get(f"/files/{infos[0]['id']}/info")
        post = await bot_http.post(
            "/posts",
            json={"channel_id": dm_id, "message": "", "file_ids": [i["id"] for i in infos]},
        )
        attached = await bot_http.get(f"/files/{infos[0]['id']}/info")
        alice_file = server.upload_as("alice", "a.png", b"\x89PNG\r\n\x1a\n" + bytes(16))
    assert multi.status_code == 201 and multi.json()["client_ids"] == ["c1", "c2"]
    assert [i["name"] for i in infos] == ["notes.txt", "blob.bin"]
    assert infos[0]["size"] == len(b"line\r\n--x") and infos[0]["extension"] == "txt"
    assert raw.status_code == 201 and raw.json()["file_infos"][0]["name"] == "raw.md"
    assert big.status_code == 413
    assert data.content == bytes(range(256))
    assert info.json()["mime_type"] == "text/plain" and "post_id" not in info.json()
    assert post.json()["file_ids"] == [i["id"] for i in infos]
    assert [f["id"] for f in post.json()["metadata"]["files"]] == post.json()["file_ids"]
    assert attached.json()["post_id"] == post.json()["id"]
    assert server.store.files[alice_file].info["user_id"] == alice.id


async def test_typing_over_rest_and_websocket_reaches_the_others(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        async with (
            websocket(server, alice.token) as alice_ws,
            websocket(server, server.bot_token) as bot_ws,
        ):
            await next_event(alice_ws, "hello")
            await next_event(bot_ws, "hello")
            answer = await bot_http.post(
                f"/users/{server.bot.id}/typing", json={"channel_id": dm_id, "parent_id": "root1"}
            )
            typing = await next_event(alice_ws, "typing")
            await bot_ws.send_message(
                json.dumps(
                    {
                        "seq": 1,
                        "action": "user_typing",
                        "data": {"channel_id": dm_id, "parent_id": ""},
                    }
                )
            )
            reply = await next_frame(bot_ws)
            from_ws = await next_event(alice_ws, "typing")
    assert answer.status_code == 200
    assert typing["data"] == {"parent_id": "root1", "user_id": server.bot.id}
    assert typing["broadcast"]["omit_users"] == {server.bot.id: True}
    assert typing["broadcast"]["channel_id"] == dm_id
    assert reply == {"status": "OK", "seq_reply": 1}
    assert from_ws["seq"] == typing["seq"] + 1
    assert [(u, c, p) for u, c, p, _ in server.typing_events] == [
        (server.bot.id, dm_id, "root1"),
        (server.bot.id, dm_id, ""),
    ]


# ---------------------------------------------------------------------------------------
# WebSocket


async def test_hello_then_posted_with_post_as_json_string(
    server: FakeMattermost, alice: Account
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, server.bot_token) as ws:
            hello = await next_event(ws, "hello")
            first = await server.user_post("alice", "hi @claude-bot")
            second = await server.user_post("alice", "again", root_id=first["id"])
            events = [await next_event(ws, "posted"), await next_event(ws, "posted")]
    assert hello["seq"] == 0 and set(hello["broadcast"]) == BROADCAST_KEYS
    assert hello["broadcast"]["user_id"] == server.bot.id
    assert is_valid_id(hello["data"]["connection_id"])
    assert [e["seq"] for e in events] == [1, 2]
    data = events[0]["data"]
    post = json.loads(data["post"])
    assert post == first and set(post) >= POST_KEYS
    assert data["channel_type"] == "D" and data["sender_name"] == "@alice"
    assert data["channel_display_name"] == "@alice" and data["team_id"] == ""
    assert data["channel_name"] == server.dm_with_bot("alice")["name"]
    assert json.loads(data["mentions"]) == [server.bot.id]
    assert events[0]["broadcast"]["channel_id"] == first["channel_id"]
    assert json.loads(events[1]["data"]["post"])["root_id"] == second["root_id"] == first["id"]


async def test_ping_action_and_challenge_authentication(
    server: FakeMattermost, alice: Account
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, None) as ws:
            await ws.send_message(json.dumps({"seq": 1, "action": "ping"}))
            refused = await next_frame(ws)
            await ws.send_message(
                json.dumps(
                    {"seq": 2, "action": "authentication_challenge", "data": {"token": alice.token}}
                )
            )
            ok = await next_frame(ws)
            hello = await next_event(ws, "hello")
            await ws.send_message(json.dumps({"seq": 3, "action": "ping"}))
            pong = await next_frame(ws)
        async with websocket(server, None) as ws:
            await ws.send_message(
                json.dumps(
                    {"seq": 1, "action": "authentication_challenge", "data": {"token": "wrong"}}
                )
            )
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
    assert refused["status"] == "FAIL" and refused["seq_reply"] == 1
    assert refused["error"]["id"] == "api.web_socket_router.not_authenticated.app_error"
    assert ok == {"status": "OK", "seq_reply": 2}
    assert hello["seq"] == 0 and hello["broadcast"]["user_id"] == alice.id
    assert pong["status"] == "OK" and pong["seq_reply"] == 3 and pong["data"]["text"] == "pong"


async def test_keepalive_pings_keep_a_ponging_client_connected() -> None:
    server = FakeMattermost(ws_ping_interval=0.05, ws_pong_wait=0.2)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            server.add_user("alice")
            async with websocket(server, server.bot_token) as ws:
                await next_event(ws, "hello")
                await trio.sleep(0.5)  # several ping periods: trio-websocket answers each
                await server.user_post("alice", "still here")
                posted = await next_event(ws, "posted")
            nursery.cancel_scope.cancel()
    assert posted["seq"] == 1


async def test_a_client_resetting_its_socket_does_not_take_the_server_down(
    server: FakeMattermost, alice: Account
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, server.bot_token) as ws:
            await next_event(ws, "hello")
            stream = ws._stream
            assert isinstance(stream, trio.SocketStream)
            # SO_LINGER 0: close() sends a RST, so the server's next write fails.
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await trio.aclose_forcefully(stream)
        for _ in range(20):
            await server.user_post("alice", "x" * 1000)
        await server.wait_until(lambda: server.websockets(server.bot.id) == 0)
        async with websocket(server, server.bot_token) as ws:
            hello = await next_event(ws, "hello")
    assert hello["seq"] == 0


async def test_oversized_frames_drop_the_socket(server: FakeMattermost) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, server.bot_token) as ws:
            await next_event(ws, "hello")
            await ws.send_message(json.dumps({"seq": 1, "action": "ping", "data": "x" * 9000}))
            with pytest.raises(ConnectionClosed):
                await ws.get_message()


async def test_unauthenticated_socket_is_closed_after_the_auth_timeout(
    server: FakeMattermost,
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, None) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.get_message()


async def _read_posted(ws: WebSocketConnection, count: int) -> list[int]:
    return [(await next_event(ws, "posted"))["seq"] for _ in range(count)]


async def test_resume_replays_from_the_dead_queue_without_hello(
    server: FakeMattermost, alice: Account
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, server.bot_token) as ws:
            conn_id = (await next_event(ws, "hello"))["data"]["connection_id"]
            for text in ("a", "b", "c"):
                await server.user_post("alice", text)
            assert await _read_posted(ws, 3) == [1, 2, 3]
            server.drop_sockets()
            with pytest.raises(ConnectionClosed):
                await ws.get_message()
        await server.user_post("alice", "while away")
        query = f"?connection_id={conn_id}&sequence_number=2"
        async with websocket(server, server.bot_token, query) as ws:
            frames = [await next_frame(ws) for _ in range(3)]
            await server.user_post("alice", "after")
            later = await next_frame(ws)
    assert [f["event"] for f in frames] == ["posted"] * 3  # no hello on a resume
    assert [f["seq"] for f in frames] == [2, 3, 4]
    assert [json.loads(f["data"]["post"])["message"] for f in frames] == ["b", "c", "while away"]
    assert later["seq"] == 5
    assert server.stats.ws_resumed == 1


async def test_lossless_resume_continues_the_sequence(
    server: FakeMattermost, alice: Account
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, server.bot_token) as ws:
            conn_id = (await next_event(ws, "hello"))["data"]["connection_id"]
            await server.user_post("alice", "seen")
            assert await _read_posted(ws, 1) == [1]
        query = f"?connection_id={conn_id}&sequence_number=2"
        async with websocket(server, server.bot_token, query) as ws:
            await server.user_post("alice", "next")
            frame = await next_frame(ws)
    assert frame["event"] == "posted" and frame["seq"] == 2


async def test_lost_events_mean_a_new_connection_id_and_hello(
    server: FakeMattermost, alice: Account
) -> None:
    with trio.fail_after(TIMEOUT):
        async with websocket(server, server.bot_token) as ws:
            conn_id = (await next_event(ws, "hello"))["data"]["connection_id"]
            for i in range(130):  # more than the 128-event dead queue
                await server.user_post("alice", f"m{i}")
            await _read_posted(ws, 130)
        query = f"?connection_id={conn_id}&sequence_number=1"
        async with websocket(server, server.bot_token, query) as ws:
            lost = await next_event(ws, "hello")
        server.forget_connections()
        query = f"?connection_id={lost['data']['connection_id']}&sequence_number=1"
        async with websocket(server, server.bot_token, query) as ws:
            forgotten = await next_event(ws, "hello")
        async with websocket(server, server.bot_token, f"?connection_id={new_id()}") as ws:
            unknown = await next_event(ws, "hello")
    ids = {
        conn_id,
        lost["data"]["connection_id"],
        forgotten["data"]["connection_id"],
        unknown["data"]["connection_id"],
    }
    assert len(ids) == 4
    assert lost["seq"] == forgotten["seq"] == unknown["seq"] == 0


UPGRADE_HEADERS = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_refused_websockets_are_rejected_until_allowed(
    server: FakeMattermost, bot_http: httpx.AsyncClient
) -> None:
    # A plain HTTP client sees the refusal; trio-websocket would leak its socket on it.
    with trio.fail_after(TIMEOUT):
        server.refuse_websockets(True)
        refused = await bot_http.get("/websocket", headers=UPGRADE_HEADERS)
        server.refuse_websockets(False)
        async with websocket(server, server.bot_token) as ws:
            await next_event(ws, "hello")
            await server.wait_for_websocket()
            assert server.websockets(server.bot.id) == 1
    assert refused.status_code == 503 and refused.headers["connection"] == "close"
    assert server.stats.ws_upgrades == 2


# ---------------------------------------------------------------------------------------
# Faults, limits, bookkeeping


async def test_rate_limit_answers_429_with_headers(
    server: FakeMattermost, bot_http: httpx.AsyncClient
) -> None:
    server.rate_limit(per_second=0.5, burst=2)  # 3 at once, then one per 2 s
    with trio.fail_after(TIMEOUT):
        answers = [await bot_http.get("/users/me") for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert all(a.headers["X-RateLimit-Limit"] == "3" for a in answers)
    limited = answers[-1]
    assert limited.text == "limit exceeded\n"
    assert limited.headers["content-type"].startswith("text/plain")
    assert limited.headers["Retry-After"] == "2"
    assert server.stats.rate_limited == 1


def test_gcra_refills_at_the_configured_rate() -> None:
    limiter = RateLimiter(per_second=10, burst=1)
    assert [limiter.check("ip", 0.0).limited for _ in range(3)] == [False, False, True]
    assert limiter.check("ip", 0.1).limited is False
    assert limiter.check("ip", 0.1).limited is True
    assert limiter.check("other", 0.1).limited is False


async def test_fail_requests_with_a_status_for_a_prefix_and_count(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    server.fail_requests(503, path_prefix="/api/v4/posts", method="POST", count=1)
    with trio.fail_after(TIMEOUT):
        failed = await bot_http.post("/posts", json={"channel_id": dm_id, "message": "x"})
        other = await bot_http.get("/users/me")
        retried = await bot_http.post("/posts", json={"channel_id": dm_id, "message": "x"})
    assert failed.status_code == 503 and failed.json()["status_code"] == 503
    assert other.status_code == 200 and retried.status_code == 201
    assert len(server.posts_in_channel(dm_id)) == 1


async def test_refuse_hangs_up_and_drop_response_hangs_up_after_acting(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    body = {"channel_id": dm_id, "message": "x", "pending_post_id": "p1"}
    with trio.fail_after(TIMEOUT):
        server.fail_requests("refuse")
        with pytest.raises(httpx.RemoteProtocolError):
            await bot_http.post("/posts", json=body)
        assert server.posts_in_channel(dm_id) == []
        server.fail_requests(None)
        server.fail_requests("drop_response", count=1)
        with pytest.raises(httpx.RemoteProtocolError):
            await bot_http.post("/posts", json=body)
        retried = await bot_http.post("/posts", json=body)
    created = server.posts_in_channel(dm_id)
    assert len(created) == 1 and retried.json()["id"] == created[0]["id"]
    assert server.stats.refused == 2


async def test_keep_alive_and_many_concurrent_clients(
    server: FakeMattermost, alice: Account
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]

    async def client(n: int) -> None:
        async with client_for(server, server.bot_token) as http:
            for i in range(10):
                answer = await http.post(
                    "/posts", json={"channel_id": dm_id, "message": f"{n}.{i}"}
                )
                assert answer.status_code == 201

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(client, n)
    assert len(server.posts_in_channel(dm_id)) == 200
    assert server.stats.connections == 20  # one kept-alive connection per client
    assert server.stats.count("POST", "/api/v4/posts") == 200


async def test_request_log_keeps_shapes_but_not_tokens(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    dm_id = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        await bot_http.post("/posts", json={"channel_id": dm_id, "message": "logged"})
    record = server.stats.records("POST", "/api/v4/posts")[0]
    assert record.json == {"channel_id": dm_id, "message": "logged"}
    assert record.status == 201 and record.response_json["message"] == "logged"
    assert dict(record.headers)["authorization"] == "Bearer <redacted>"
    assert server.bot_token not in repr(record)


async def test_latency_delays_each_request(
    server: FakeMattermost, bot_http: httpx.AsyncClient
) -> None:
    server.latency(0.2)
    with trio.fail_after(TIMEOUT):
        start = trio.current_time()
        await bot_http.get("/users/me")
    assert trio.current_time() - start >= 0.2


async def test_wait_until_wakes_on_changes(server: FakeMattermost, alice: Account) -> None:
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.user_post, "alice", "wake up")
            await server.wait_until(lambda: len(server.posts_by("alice")) == 1)
    assert server.posts_by("alice")[0]["message"] == "wake up"


# ---------------------------------------------------------------------------------------
# Sans-IO pieces

# httpx writes control characters and `"` as %XX, which the server (like Go) keeps as is.
_names = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cc"], exclude_characters='"'),
    min_size=1,
    max_size=20,
)


@given(parts=st.lists(st.tuples(_names, st.binary(max_size=200)), min_size=1, max_size=4))
def test_multipart_parser_reads_what_httpx_writes(parts: list[tuple[str, bytes]]) -> None:
    request = httpx.Request(
        "POST",
        "http://fake/api/v4/files",
        data={"channel_id": "c"},
        files=[("files", (name, data)) for name, data in parts],
    )
    parsed = parse_multipart(request.read(), request.headers["content-type"])
    assert (parsed[0].name, parsed[0].data) == ("channel_id", b"c")
    assert [(p.filename, p.data) for p in parsed[1:]] == parts


async def test_since_over_the_cap_answers_1000_unordered_changes(
    server: FakeMattermost, alice: Account, bot_http: httpx.AsyncClient
) -> None:
    """Over 1000 changes, `since` answers with 1000 of them as the real LIMIT (no ORDER BY)
    may: by default neither the oldest nor the newest 1000; `store.since_pick` chooses."""
    dm_id = server.dm_with_bot("alice")["id"]
    with trio.fail_after(TIMEOUT):
        since = server.store.clock()
        ids = [(await server.user_post("alice", f"p{i}"))["id"] for i in range(1_100)]
        answers = {}
        for pick in ("arbitrary", "oldest", "newest"):
            server.store.since_pick = pick
            body = (await bot_http.get(f"/channels/{dm_id}/posts", params={"since": since})).json()
            answers[pick] = body["order"]
    for order in answers.values():
        assert len(order) == 1000 and set(order) <= set(ids)
        assert order == sorted(order, key=ids.index, reverse=True)  # newest first
    assert set(answers["oldest"]) == set(ids[:1000])
    assert set(answers["newest"]) == set(ids[100:])
    assert set(answers["arbitrary"]) == set(sorted(ids)[:1000])
    assert set(answers["arbitrary"]) not in (set(ids[:1000]), set(ids[100:]))
