"""The WebSocket reader against a scripted trio-websocket server on 127.0.0.1.

Each accepted connection runs the next script (the last one repeats); the server records
what each connection asked for (path, headers), what the client sent and how it closed.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import httpx
import pytest
import trio
import trio_websocket
from trio_websocket import WebSocketConnection, WebSocketRequest

from supervisor.chat import ChatUser
from supervisor.chat.mattermost.link import MattermostLink
from supervisor.chat.mattermost.websocket import (
    MattermostWebSocket,
    StreamPosition,
    Verdict,
    websocket_url,
)
from supervisor.core.backoff import Backoff
from supervisor.core.events import ChatEvent, ChoiceMade, Hello, Posted, PostEdited
from tests.test_mm_codec import hello_frame, post_frame, posted_frame, reaction_frame, wire_post

TOKEN = "ws-s3cr3t-token"
FAST = Backoff(base=0.05, cap=0.1, floor=0.05)
LIMIT = 10  # seconds; every test is over in well under one


@attrs.define
class Connection:
    path: str
    headers: dict[str, str]
    received: list[dict[str, Any]] = attrs.Factory(list)
    close_code: int | None = None
    heard: trio.Event = attrs.Factory(trio.Event)  # set once the client sent something

    @property
    def query(self) -> dict[str, str]:
        return {key: values[0] for key, values in parse_qs(urlsplit(self.path).query).items()}


Script = Callable[[WebSocketConnection, Connection], Awaitable[None]]


class ScriptedServer:
    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.connections: list[Connection] = []
        self.port = 0

    async def handler(self, request: WebSocketRequest) -> None:
        record = Connection(
            request.path, {k.decode().lower(): v.decode() for k, v in request.headers}
        )
        index = len(self.connections)
        self.connections.append(record)
        socket = await request.accept()
        script = self.scripts[min(index, len(self.scripts) - 1)]
        await script(socket, record)


async def send(socket: WebSocketConnection, *frames: dict[str, Any] | str) -> None:
    for frame in frames:
        await socket.send_message(frame if isinstance(frame, str) else json.dumps(frame))


async def listen(socket: WebSocketConnection, record: Connection) -> None:
    """Keep the connection open, recording what the client sends, until it closes."""
    try:
        while True:
            record.received.append(json.loads(await socket.get_message()))
            record.heard.set()
    except trio_websocket.ConnectionClosed as closed:
        record.close_code = closed.reason.code if closed.reason else None


async def answer_pings(socket: WebSocketConnection, record: Connection) -> None:
    """Like `listen`, but answer the client's pings as Mattermost does."""
    try:
        while True:
            action = json.loads(await socket.get_message())
            record.received.append(action)
            if action.get("action") == "ping":
                reply = {"status": "OK", "seq_reply": action["seq"], "data": {"text": "pong"}}
                await send(socket, reply)
    except trio_websocket.ConnectionClosed:
        pass


def script(*frames: dict[str, Any] | str, then: Script | None = listen) -> Script:
    """Send `frames`, then (by default) stay connected; `then=None` drops the connection."""

    async def run(socket: WebSocketConnection, record: Connection) -> None:
        await send(socket, *frames)
        if then is not None:
            await then(socket, record)

    return run


def posted(seq: int, post_id: str) -> dict[str, Any]:
    return posted_frame(seq, wire_post(id=post_id))


def ids(events: list[ChatEvent]) -> list[str]:
    """A compact view of delivered events: hello ids and post ids."""
    out = []
    for event in events:
        if isinstance(event, Hello):
            out.append(f"hello:{event.connection_id}")
        elif isinstance(event, Posted | PostEdited):
            out.append(event.post.id)
        else:
            out.append(type(event).__name__)
    return out


@asynccontextmanager
async def running(
    server: ScriptedServer, *, buffer: int = 16, ping_interval: float = 30.0
) -> AsyncIterator[tuple[MattermostWebSocket, trio.MemoryReceiveChannel[ChatEvent]]]:
    """Serve `server` on 127.0.0.1:0 and run a reader against it (started = first hello)."""
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None
            )
            server.port = listener.port
            send_events, receive_events = trio.open_memory_channel[ChatEvent](buffer)
            reader = MattermostWebSocket(
                f"http://127.0.0.1:{server.port}",
                TOKEN,
                send_events,
                backoff=FAST,
                ping_interval=ping_interval,
                rng=random.Random(0),
            )
            await nursery.start(reader.run)
            yield reader, receive_events
            nursery.cancel_scope.cancel()


async def take(events: trio.MemoryReceiveChannel[ChatEvent], count: int) -> list[ChatEvent]:
    return [await events.receive() for _ in range(count)]


# --- the stream ------------------------------------------------------------------------------


async def test_hello_then_events_in_order() -> None:
    typing = {"event": "typing", "data": {"parent_id": "", "user_id": "u"}, "seq": 2}
    server = ScriptedServer(
        script(
            hello_frame("c1"),
            posted(1, "p1"),
            typing,  # unknown to us, but it takes a seq
            reaction_frame("reaction_added", seq=3),
            post_frame("post_edited", seq=4, id="p1", message="edited"),
        )
    )
    async with running(server) as (_, events):
        received = await take(events, 4)
    assert ids(received) == ["hello:c1", "p1", "ChoiceMade", "p1"]
    assert isinstance(received[2], ChoiceMade)
    assert isinstance(received[3], PostEdited) and received[3].post.message == "edited"
    first = server.connections[0]
    assert urlsplit(first.path).path == "/api/v4/websocket"
    assert first.query == {}  # nothing to resume yet
    assert first.headers["authorization"] == f"Bearer {TOKEN}"


async def test_a_drop_resumes_with_connection_id_and_sequence_number() -> None:
    server = ScriptedServer(
        script(hello_frame("c1"), posted(1, "p1"), then=None),  # then the socket drops
        script(posted(2, "p2")),  # the server replays from where we were
    )
    async with running(server) as (_, events):
        received = await take(events, 3)
    assert ids(received) == ["hello:c1", "p1", "p2"]  # no second hello: nothing was lost
    assert server.connections[1].query == {"connection_id": "c1", "sequence_number": "2"}


async def test_a_new_connection_id_after_a_drop_delivers_a_hello() -> None:
    server = ScriptedServer(
        script(hello_frame("c1"), posted(1, "p1"), then=None),
        script(hello_frame("c2"), posted(1, "p9")),  # the server could not resume
    )
    async with running(server) as (_, events):
        received = await take(events, 4)
    assert ids(received) == ["hello:c1", "p1", "hello:c2", "p9"]


def old_hello() -> dict[str, Any]:
    """A server before reliable websockets: its version, no connection id."""
    frame = hello_frame()
    del frame["data"]["connection_id"]
    return frame


async def test_a_server_without_connection_ids_is_served_and_caught_up_after_each_drop() -> None:
    server = ScriptedServer(
        script(old_hello(), posted(1, "p1"), then=None),
        script(old_hello(), posted(1, "p9")),
    )
    async with running(server) as (_, events):  # started: it took the first hello
        received = await take(events, 4)
    assert ids(received) == ["hello:", "p1", "hello:", "p9"]  # the second hello catches up
    assert server.connections[1].query == {}  # nothing to resume with


async def test_an_id_less_hello_after_a_resume_is_a_new_connection() -> None:
    server = ScriptedServer(
        script(hello_frame("c1"), posted(1, "p1"), posted(2, "p2"), then=None),
        script(old_hello(), posted(1, "p9")),  # a server that lost the connection and its ids
    )
    async with running(server) as (_, events):
        received = await take(events, 5)
    assert ids(received) == ["hello:c1", "p1", "p2", "hello:", "p9"]
    assert server.connections[1].query == {"connection_id": "c1", "sequence_number": "3"}


async def test_a_seq_gap_closes_and_resumes_from_the_gap() -> None:
    server = ScriptedServer(
        script(hello_frame("c1"), posted(1, "p1"), posted(3, "p3")),  # seq 2 went missing
        script(posted(2, "p2"), posted(3, "p3")),
    )
    async with running(server) as (_, events):
        received = await take(events, 4)
    assert ids(received) == ["hello:c1", "p1", "p2", "p3"]  # p3 once, and in order
    assert server.connections[0].close_code == 4001
    assert server.connections[1].query == {"connection_id": "c1", "sequence_number": "2"}


async def test_malformed_frames_are_dropped_and_the_stream_goes_on() -> None:
    broken_post = posted_frame(1)
    broken_post["data"]["post"] = "{not json"
    server = ScriptedServer(
        script(
            hello_frame("c1"),
            "garbage",
            json.dumps([1, 2, 3]),
            broken_post,  # readable envelope: seq 1 is used up
            posted(2, "p2"),
        )
    )
    async with running(server) as (_, events):
        received = await take(events, 2)
        await trio.sleep(0.2)  # room for a wrong reconnect to show up
    assert ids(received) == ["hello:c1", "p2"]
    assert len(server.connections) == 1


class RefusingFirst(ScriptedServer):
    """Rejects the first `refused` handshakes with a 502, as a proxy does while the server
    restarts; then plays its script."""

    def __init__(self, refused: int, *scripts: Script) -> None:
        super().__init__(*scripts)
        self.refused, self.attempts = refused, 0

    async def handler(self, request: WebSocketRequest) -> None:
        self.attempts += 1
        if self.attempts <= self.refused:
            await request.reject(502, body=b"bad gateway")
            return
        await super().handler(request)


async def test_a_refused_handshake_is_retried() -> None:
    server = RefusingFirst(2, script(hello_frame("c1"), posted(1, "p1")))
    async with running(server) as (_, events):
        received = await take(events, 2)
    assert ids(received) == ["hello:c1", "p1"]
    assert server.attempts == 3


async def test_a_long_outage_is_told_in_a_few_lines_and_its_end_in_one(caplog: pytest.LogCaptureFixture) -> None:
    """A try every few seconds through an hour's outage must not bury the log: of nine
    refused tries in a row, the 1st, 2nd, 4th and 8th are warned of."""
    caplog.set_level(logging.INFO, logger="supervisor.mattermost")
    async with running(RefusingFirst(9, script(hello_frame("c1")))) as (_, events):
        await events.receive()
    lines = [r.getMessage() for r in caplog.records if r.name == "supervisor.mattermost"]
    failures = [line for line in lines if "bad gateway" in line]
    assert [re.findall(r"\((\d+) tries in a row\)", line) for line in failures] == [[], ["2"], ["4"], ["8"]]
    assert lines.count("websocket: connecting") == 1
    assert lines[-1] == "websocket: connected after 9 failed tries"


# --- keepalive and backpressure -----------------------------------------------------------------


async def test_pings_are_sent_and_a_silent_server_is_left() -> None:
    server = ScriptedServer(
        script(hello_frame("c1")),  # listens, never answers
        script(hello_frame("c2"), then=answer_pings),
    )
    async with running(server, ping_interval=0.2) as (_, events):
        received = await take(events, 2)
    assert ids(received) == ["hello:c1", "hello:c2"]
    silent = server.connections[0]
    assert silent.received[0] == {"seq": 1, "action": "ping"}
    assert all(action["action"] == "ping" for action in silent.received)


async def test_a_server_that_answers_pings_keeps_the_connection() -> None:
    server = ScriptedServer(script(hello_frame("c1"), then=answer_pings))
    async with running(server, ping_interval=0.25) as (_, events):
        assert ids(await take(events, 1)) == ["hello:c1"]
        await trio.sleep(1.5)  # six intervals, three silence limits
    assert len(server.connections) == 1
    assert len(server.connections[0].received) >= 3  # the pings went on


async def test_a_slow_consumer_is_backpressure_not_silence() -> None:
    frames = [posted(seq, f"p{seq}") for seq in range(1, 6)]
    server = ScriptedServer(script(hello_frame("c1"), *frames))
    async with running(server, buffer=0, ping_interval=0.05) as (_, events):
        await trio.sleep(0.5)  # the reader waits on us for ten ping intervals
        received = await take(events, 6)
    assert ids(received) == ["hello:c1", "p1", "p2", "p3", "p4", "p5"]
    assert len(server.connections) == 1


async def test_the_reader_stops_when_the_consumer_is_gone() -> None:
    server = ScriptedServer(script(hello_frame("c1"), posted(1, "p1"), posted(2, "p2")))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None
            )
            send_events, receive_events = trio.open_memory_channel[ChatEvent](0)
            reader = MattermostWebSocket(
                f"http://127.0.0.1:{listener.port}", TOKEN, send_events, backoff=FAST
            )
            done = trio.Event()

            async def run_reader() -> None:
                await reader.run()
                done.set()

            nursery.start_soon(run_reader)
            assert isinstance(await receive_events.receive(), Hello)
            await receive_events.aclose()
            await done.wait()  # run() returned on its own
            nursery.cancel_scope.cancel()


# --- typing -----------------------------------------------------------------------------------


async def test_send_typing_goes_out_as_a_user_typing_action() -> None:
    server = ScriptedServer(script(hello_frame("c1")))
    async with running(server) as (reader, events):
        await events.receive()
        reader.send_typing("chan", "root")
        await server.connections[0].heard.wait()
    assert server.connections[0].received[0] == {
        "seq": 1,
        "action": "user_typing",
        "data": {"channel_id": "chan", "parent_id": "root"},
    }


async def test_typing_while_disconnected_is_dropped_not_sent_late() -> None:
    """Typing is a hint: while there is no socket, send_typing neither blocks nor raises,
    and nothing queued then goes out once connected (it would be stale by then)."""
    server = ScriptedServer(script(hello_frame("c1")))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None
            )
            send_events, receive_events = trio.open_memory_channel[ChatEvent](4)
            reader = MattermostWebSocket(
                f"http://127.0.0.1:{listener.port}", TOKEN, send_events, backoff=FAST
            )
            for n in range(1000):
                reader.send_typing("chan", f"stale{n}")  # synchronous: cannot block
            await nursery.start(reader.run)
            assert isinstance(await receive_events.receive(), Hello)
            reader.send_typing("chan", "fresh")
            # The sentinel: the first action heard; a stale one would have come before it.
            await server.connections[0].heard.wait()
            nursery.cancel_scope.cancel()
    assert server.connections[0].received[0] == {
        "seq": 1,
        "action": "user_typing",
        "data": {"channel_id": "chan", "parent_id": "fresh"},
    }


# --- the position, sans-IO ----------------------------------------------------------------------


def test_stream_position_rules() -> None:
    position = StreamPosition()
    assert position.resume_query() == ""
    assert position.observe(0, Hello("c1")) is Verdict.DELIVER
    assert position.observe(1, None) is Verdict.DELIVER  # unknown events still count
    assert position.resume_query() == "?connection_id=c1&sequence_number=2"
    assert position.observe(1, None) is Verdict.SKIP  # a replay of what we had
    assert position.observe(3, None) is Verdict.GAP
    assert position.next_seq == 2  # a gap does not move us
    assert position.observe(2, None) is Verdict.DELIVER
    assert position.connecting() == "?connection_id=c1&sequence_number=3"
    assert position.observe(0, Hello("c1")) is Verdict.SKIP  # resumed, same id: nothing lost
    assert position.observe(0, Hello("c2")) is Verdict.DELIVER
    assert position.next_seq == 1


def test_a_hello_is_a_fresh_connection_unless_it_resumed_the_same_id() -> None:
    position = StreamPosition()
    position.observe(0, Hello("c1"))
    position.observe(1, None)
    position.connecting()  # resuming c1 at seq 2...
    # ... but the server, downgraded or behind another node, knows no ids: events may be
    # lost, and the new connection counts from its own seq 0.
    assert position.observe(0, Hello("")) is Verdict.DELIVER
    assert position.observe(1, None) is Verdict.DELIVER
    position.gaps = 2
    assert position.connecting() == ""  # opened afresh, so whatever the server says is new
    assert position.observe(0, Hello("")) is Verdict.DELIVER


def test_a_server_that_gives_no_ids_has_every_hello_delivered() -> None:
    position = StreamPosition()
    for _ in range(3):
        assert position.connecting() == ""  # nothing to resume with
        assert position.observe(0, Hello("")) is Verdict.DELIVER
        assert position.observe(1, None) is Verdict.DELIVER


def test_stream_position_starts_afresh_after_repeated_gaps() -> None:
    position = StreamPosition()
    position.observe(0, Hello("c1"))
    position.observe(5, None)
    assert position.resume_query() != ""  # one gap: ask for a replay
    position.observe(5, None)
    assert position.resume_query() == ""  # the replay did not help: start afresh


def test_the_first_hello_is_delivered_even_with_an_empty_id() -> None:
    assert StreamPosition().observe(0, Hello("")) is Verdict.DELIVER


@pytest.mark.parametrize(
    "base, expected",
    [
        ("http://mm:8065", "ws://mm:8065/api/v4/websocket"),
        ("https://chat.example.com/", "wss://chat.example.com/api/v4/websocket"),
        ("https://example.com/mm", "wss://example.com/mm/api/v4/websocket"),
    ],
)
def test_websocket_url(base: str, expected: str) -> None:
    assert websocket_url(base) == expected


# --- the link: REST and socket together ----------------------------------------------------------


async def test_link_composes_rest_and_socket() -> None:
    def rest_server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v4/users/me":
            return httpx.Response(200, json={"id": "me", "username": "claude", "is_bot": True})
        body = {"id": "p1", "channel_id": "chan", "user_id": "me", "message": "hi"}
        return httpx.Response(201, json=body)

    server = ScriptedServer(script(hello_frame("c1")))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            listener = await nursery.start(
                trio_websocket.serve_websocket, server.handler, "127.0.0.1", 0, None
            )
            send_events, receive_events = trio.open_memory_channel[ChatEvent](4)
            link = await MattermostLink.connect(
                f"http://127.0.0.1:{listener.port}/",
                TOKEN,
                send_events,
                transport=httpx.MockTransport(rest_server),
                reconnect_backoff=FAST,
            )
            assert link.me == ChatUser("me", "claude", True)
            await nursery.start(link.run)
            assert await receive_events.receive() == Hello("c1", "10.11.0.10.11.0.abcdef.true")
            assert (await link.create_post("chan", "hi")).id == "p1"
            await link.send_typing("chan", "p1")
            await server.connections[0].heard.wait()
            assert server.connections[0].received[0]["action"] == "user_typing"
            assert link.permalink("p1") == f"http://127.0.0.1:{listener.port}/_redirect/pl/p1"
            await link.aclose()
            nursery.cancel_scope.cancel()
