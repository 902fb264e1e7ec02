"""Who may reach the web chat: listen rule, token, cookie, Origin; uploads bounded."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat.web import security
from tests.web_served import serve

LIMIT = 15


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8765", "localhost:8765", "[::1]:8765", "127.3.4.5:0"]
)
def test_loopback_addresses_need_no_permission(listen: str) -> None:
    assert security.listen_problem(listen, allow_remote=False) is None


@pytest.mark.parametrize("listen", ["0.0.0.0:8765", "192.168.1.10:8765", "[::]:80", "example.org:80"])
def test_a_remote_address_needs_allow_remote_and_the_sentence_names_the_key(listen: str) -> None:
    problem = security.listen_problem(listen, allow_remote=False)

    assert problem is not None and "web.listen" in problem and "allow_remote" in problem
    assert security.listen_problem(listen, allow_remote=True) is None


@pytest.mark.parametrize("listen", ["8765", ":8765", "127.0.0.1:", "127.0.0.1:99999", "h:x"])
def test_a_malformed_listen_is_one_sentence_naming_the_key(listen: str) -> None:
    problem = security.listen_problem(listen, allow_remote=True)

    assert problem is not None and problem.startswith("web.listen") and "\n" not in problem


@given(st.text(max_size=40), st.booleans())
def test_listen_problem_never_raises(listen: str, allow_remote: bool) -> None:
    problem = security.listen_problem(listen, allow_remote)
    assert problem is None or "web.listen" in problem


def test_the_token_file_is_created_0600_once_and_reused(tmp_path: Path) -> None:
    token = security.load_or_create_token(tmp_path / "state")
    mode = stat.S_IMODE(os.stat(tmp_path / "state" / "web-token").st_mode)

    assert mode == 0o600
    assert len(token) >= 40
    assert security.load_or_create_token(tmp_path / "state") == token
    assert os.listdir(tmp_path / "state") == ["web-token"]


def test_a_damaged_token_file_is_replaced_by_a_new_token_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """We never write anything but ASCII there, and no browser could send such a token:
    it is replaced as a missing one is, and the log says why the address changed. `check`
    says so too, and fails nothing for it."""
    from supervisor.chat.web.doctor import token_check

    path = tmp_path / "web-token"
    path.write_bytes(b"\xff\xfeab\xe9cd\n")
    path.chmod(0o600)
    said = token_check(tmp_path)
    token = security.load_or_create_token(tmp_path)

    assert said.ok and said.detail.startswith(f"{path} is damaged (not ASCII text): the next start replaces it")
    assert len(token) >= 40 and path.read_text(encoding="ascii") == token + "\n"
    assert [r.getMessage() for r in caplog.records if r.name == security.__name__] == [
        f"{path} is damaged (not ASCII text): a new token replaces it, and the web chat's address changes"
        " with it (the new one is printed once it listens)"
    ]
    assert token_check(tmp_path).detail == f"{path} (mode 600)"


def test_origin_must_name_the_served_address_exactly() -> None:
    assert security.same_origin("http://127.0.0.1:8765", "127.0.0.1:8765")
    # Behind a reverse proxy that ends TLS and says so; without its word, another site's.
    assert security.same_origin("https://chat.example.org", "chat.example.org", "https")
    assert not security.same_origin("https://chat.example.org", "chat.example.org")
    assert not security.same_origin("https://evil.example", "chat.example.org", "https")
    assert not security.same_origin("http://evil.example", "127.0.0.1:8765")
    assert not security.same_origin("http://127.0.0.1:9999", "127.0.0.1:8765")
    assert not security.same_origin(None, "127.0.0.1:8765")
    assert not security.same_origin("null", "127.0.0.1:8765")


async def test_without_the_token_every_path_is_401_with_no_page_data(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.client(authorised=False) as client:
            for path in ("/", "/static/app.js", "/static/index.html", "/files/x", "/ws"):
                response = await client.get(path)
                assert response.status_code == 401, path
                assert b"<" not in response.content and b"script" not in response.content
            wrong = await client.get("/?token=not-the-token")
            assert wrong.status_code == 401
            assert "set-cookie" not in wrong.headers


async def test_the_printed_url_sets_an_httponly_strict_cookie_and_drops_the_token(
    tmp_path: Path,
) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.client(authorised=False) as client:
            first = await client.get(f"/?token={served.token}")
            cookie = first.headers["set-cookie"]
            page = await client.get("/")  # with the cookie only

    assert first.status_code == 303 and first.headers["location"] == "/"
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=2592000" in cookie  # outlives a browser's restart: a month
    assert served.token not in first.text
    assert page.status_code == 200 and "<!doctype html>" in page.text
    assert page.headers["set-cookie"] == cookie  # and each page load renews it
    assert served.token not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]


UPGRADE = {
    "connection": "Upgrade",
    "upgrade": "websocket",
    "sec-websocket-version": "13",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
}


async def test_websocket_without_token_or_with_a_foreign_origin_is_refused(
    tmp_path: Path,
) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            async with served.client(origin="http://evil.example") as foreign:
                cross = await foreign.get("/ws", headers=UPGRADE)
            async with served.client(origin="http://evil.example", authorised=False) as anon:
                tokenless = await anon.get("/ws", headers={**UPGRADE, "origin": served.origin})
            async with served.page() as ws:  # the same page, same origin, with the cookie
                await ws.send_message('{"type": "hello", "since": 0}')
                assert "welcome" in await ws.get_message()

    assert cross.status_code == 403
    assert tokenless.status_code == 403
    assert b"thread" not in cross.content + tokenless.content


async def test_state_changing_requests_need_a_same_origin(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            async with served.client(origin="http://evil.example") as foreign:
                refused = await foreign.post("/api/files?name=a.txt", content=b"x")
            async with served.client() as client:
                accepted = await client.post("/api/files?name=a.txt", content=b"x")

    assert refused.status_code == 403
    assert accepted.status_code == 200 and accepted.json()["size"] == 1


async def test_uploads_over_the_limit_are_refused_and_named(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path, max_upload_bytes=1000) as served, served.client() as client:
            declared = await client.post("/api/files?name=big", content=b"x" * 1001)

            async def chunks() -> object:
                for _ in range(5):
                    yield b"y" * 400

            streamed = await client.post("/api/files?name=big", content=chunks())  # type: ignore[arg-type]
            fits = await client.post("/api/files?name=ok", content=b"z" * 1000)

    assert declared.status_code == 413 and "max_upload_mb" in declared.text
    assert streamed.status_code == 413
    assert fits.status_code == 200


async def test_downloads_are_attachments_with_the_name_encoded(tmp_path: Path) -> None:
    name = '<img src=x onerror=alert(1)>".txt'
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.client() as client:
            ref = (await client.post("/api/files", params={"name": name}, content=b"data")).json()
            response = await client.get(f"/files/{ref['id']}")
            missing = await client.get("/files/nope")

    assert response.content == b"data"
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"].startswith("attachment; filename*=UTF-8''")
    assert "<" not in response.headers["content-disposition"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404


async def test_malformed_upgrades_and_garbage_never_stop_the_server(tmp_path: Path) -> None:
    # hypercorn issue 225: trailing bytes after an upgrade request once crashed the server.
    port_request = (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n"
        "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: bKdPyn3u98cTfZJSh4TNeQ==\r\nOrigin: http://127.0.0.1:{port}\r\n"
        "Cookie: {cookie}\r\n\r\nx\n"
    )
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            cookie = served.cookie()[1].decode()
            for payload in (
                port_request.format(port=served.chat.port, cookie=cookie).encode(),
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            ):
                stream = await trio.open_tcp_stream("127.0.0.1", served.chat.port)
                await stream.send_all(payload)
                with trio.move_on_after(1):
                    await stream.receive_some(65536)
                await stream.aclose()
            async with served.client() as client:
                assert (await client.get("/")).status_code == 200
