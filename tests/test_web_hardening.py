"""The web chat against what other programs on the host do: their cookies, their many
connections; and a page that keeps its tab open for longer than its cookie lives."""

from __future__ import annotations

import select
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from supervisor.chat.web import http_server, security
from supervisor.chat.web.db import WebDb
from tests.web_served import receive_until, send, serve

LIMIT = 20

# Cookies other local apps set on 127.0.0.1 (cookies ignore ports), which Python's
# SimpleCookie cannot parse: it dropped the whole header, or stopped before ours.
FOREIGN_COOKIES = [
    "foo",  # no '='
    "version=1",  # an attribute's name (as are path, expires, max-age...)
    'p={"x":1}',  # JSON, unquoted
    "a=b c",  # a space in the value
    "path=/; expires=Wed, 21 Oct 2015 07:28:00 GMT",
]


@pytest.mark.parametrize("foreign", FOREIGN_COOKIES)
def test_our_cookie_is_found_among_cookies_simplecookie_cannot_parse(foreign: str) -> None:
    ours = f"{security.cookie_name(8765)}=tok-en_1"

    assert security.cookie_token([f"{foreign}; {ours}"], 8765) == "tok-en_1"
    assert security.cookie_token([f"{ours}; {foreign}"], 8765) == "tok-en_1"
    assert security.cookie_token([foreign, ours], 8765) == "tok-en_1"  # one header each


def test_only_our_cookies_exact_name_counts() -> None:
    assert security.cookie_token([f"x{security.cookie_name(8765)}=a; supervisor_web_8766=b"], 8765) == ""
    assert security.cookie_token([f" {security.cookie_name(8765)} = a ;b=c"], 8765) == "a"
    assert security.cookie_token(["", ";;", "="], 8765) == ""


@pytest.mark.parametrize("foreign", FOREIGN_COOKIES)
async def test_a_foreign_cookie_before_ours_does_not_lock_the_page_out(
    tmp_path: Path, foreign: str
) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.client(authorised=False) as client:
            ours = served.cookie()[1].decode()
            page = await client.get("/", headers={"cookie": f"{foreign}; {ours}"})

    assert page.status_code == 200 and "<!doctype html>" in page.text


async def test_each_websocket_connection_renews_the_cookie(tmp_path: Path) -> None:
    """A tab left open reconnects after every restart but never loads the page again:
    without this its cookie would lapse after a month, and the next reconnect be refused."""
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            cookies = [v.decode() for k, v in ws.handshake_headers if k.lower() == b"set-cookie"]
            await send(ws, type="hello", since=0)
            await receive_until(ws, "welcome")

    assert cookies == [security.session_cookie(served.chat.port, served.token)]
    assert "Max-Age=2592000" in cookies[0] and "HttpOnly" in cookies[0]


def _untouched(stream: trio.SocketStream) -> bool:
    """Nothing to read on it now: neither an answer nor the server's close."""
    readable, _, _ = select.select([stream.socket.fileno()], [], [], 0)
    return not readable


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    try:
        return await stream.receive_some(1) == b""
    except trio.BrokenResourceError:  # reset: the server closed it with our bytes unread
        return True


async def test_idle_connections_beyond_the_cap_are_closed_at_once_and_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Idle connections from any local process would otherwise take the supervisor's file
    descriptors, which its agents, state file and chat links share."""
    cap, excess = http_server.MAX_CONNECTIONS, 8
    held: list[trio.SocketStream] = []
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            port = served.chat.port
            try:
                for _ in range(cap):
                    held.append(await trio.open_tcp_stream("127.0.0.1", port))
                await trio.testing.wait_all_tasks_blocked(0.05)  # all taken by the server
                extra = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(excess)]
                held.extend(extra)
                with trio.fail_after(2):  # promptly: not after hypercorn's idle timeout (5 s)
                    closed = [await _closed_by_server(stream) for stream in extra]
                still_open = [_untouched(stream) for stream in held[:cap]]
                request = (
                    f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n"
                    f"Cookie: {served.cookie()[1].decode()}\r\n\r\n"
                ).encode()
                answers = [await _answer(stream, request) for stream in held[:excess]]
                page = await _get_when_served(served.client())
            finally:
                for stream in held:
                    await stream.aclose()

    assert closed == [True] * excess
    assert still_open == [True] * cap
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)  # served, and closed
    assert page.status_code == 200
    said = [r for r in caplog.records if r.name == http_server.__name__]
    assert len(said) == 1 and str(cap) in said[0].getMessage()


async def _answer(stream: trio.SocketStream, request: bytes) -> bytes:
    await stream.send_all(request)
    answer = b""
    while chunk := await stream.receive_some():
        answer += chunk
    return answer


async def _get_when_served(client: httpx.AsyncClient) -> httpx.Response:
    """GET / once the server has ended the connections it answered (at once, or not)."""
    async with client:
        while True:
            try:
                return await client.get("/")
            except httpx.TransportError:
                await trio.sleep(0.05)


def test_the_cap_says_one_burst_once() -> None:
    cap = http_server.ConnectionCap(limit=4)

    taken = [cap.take() for _ in range(5)]
    firsts = [cap.refused() for _ in range(3)]
    cap.release()  # three left: still the same burst
    again = cap.refused()
    cap.release()  # two, half the cap: the burst is over
    after = cap.refused()

    assert taken == [True] * 4 + [False]
    assert firsts == [True, False, False] and again is False and after is True


def test_a_page_that_saw_a_fresh_database_gets_what_was_posted_since(tmp_path: Path) -> None:
    """Version 0 means "nothing seen" (a first visit, which gets no messages): a fresh
    database must never answer it, or a page that saw it misses the next posts."""
    db = WebDb(tmp_path / "web.sqlite3")
    seen = db.changes_since(0).version  # a page's first welcome
    posted = db.create("main", "user", "text", "!help", client_id="c1")  # from another tab

    changes = db.changes_since(seen)
    db.close()

    assert seen > 0
    assert [m.id for m in changes.messages] == [posted.id]


def test_a_database_left_at_version_0_moves_off_it_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "web.sqlite3"
    old = WebDb(path)
    old._conn.execute("UPDATE meta SET value = 0 WHERE key = 'version'")  # as before the fix
    old.close()

    db = WebDb(path)
    seen = db.changes_since(0).version
    posted = db.create("main", "user", "text", "!help", client_id="c1")

    changes = db.changes_since(seen)
    main = db.thread("main")
    db.close()
    reopened = WebDb(path)
    version = reopened.version()
    reopened.close()

    assert seen > 0 and main is not None
    assert [m.id for m in changes.messages] == [posted.id]
    assert version == seen + 1  # once moved off 0, a version never goes back

