"""What the page sends that the server cannot take is refused alone, by name: the
connection stays, and what the page sends next is delivered."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import trio

from supervisor.chat.web import codec
from tests.web_served import receive_until, send, serve

LIMIT = 20


async def _welcomed(ws: object) -> None:
    await send(ws, type="hello", since=0)  # type: ignore[arg-type]
    await receive_until(ws, "welcome")  # type: ignore[arg-type]


async def test_a_lone_surrogate_is_replaced_and_the_connection_keeps_delivering(
    tmp_path: Path,
) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await _welcomed(ws)
            # Half an emoji, as a page's JSON.stringify writes it: an escaped lone surrogate.
            await ws.send_message(
                '{"type": "post", "id": "broken-0001", "thread": null, "text": "broken \\ud83d end"}'
            )
            await receive_until(ws, "ack", id="broken-0001")
            await send(ws, type="post", id="after-0001", thread=None, text="!help")
            await receive_until(ws, "ack", id="after-0001")
            await send(ws, type="open", thread="main")
            snapshot = await receive_until(ws, "snapshot")

    texts = [m["text"] for m in snapshot["messages"]]
    assert "broken \ufffd end" in texts and "!help" in texts


async def test_a_refused_message_is_named_with_its_reason_and_the_connection_stays(
    tmp_path: Path,
) -> None:
    too_long = "x" * (codec.MAX_TEXT + 1)
    files = [f"f{i}" for i in range(codec.MAX_FILES + 1)]
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await _welcomed(ws)
            await send(ws, type="post", id="long-0001", thread=None, text=too_long)
            long_error = await receive_until(ws, "error")
            await send(ws, type="post", id="many-0001", thread=None, text="hi", files=files)
            many_error = await receive_until(ws, "error")
            await send(ws, type="new", id="new-0001", name="alpha", cwd="/tmp\nx")
            cwd_error = await receive_until(ws, "error")
            await ws.send_message("not json")
            garbage_error = await receive_until(ws, "error")
            await send(ws, type="post", id="after-0001", thread=None, text="!help")
            await receive_until(ws, "ack", id="after-0001")

    assert long_error["id"] == "long-0001" and f"{codec.MAX_TEXT:,}" in long_error["text"]
    assert many_error["id"] == "many-0001" and str(codec.MAX_FILES) in many_error["text"]
    assert cwd_error["id"] == "new-0001" and "line break" in cwd_error["text"]
    assert garbage_error["id"] is None
    assert served.core.sessions == {}  # nothing refused reached the core


async def test_the_page_learns_the_limits_it_checks_before_sending(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await send(ws, type="hello", since=0)
            welcome = await receive_until(ws, "welcome")

    assert welcome["page"]["max_text"] == codec.MAX_TEXT
    assert welcome["page"]["max_files"] == codec.MAX_FILES


async def test_a_huge_since_or_before_is_refused_and_the_connection_stays(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await send(ws, type="hello", since=10**30)
            since_error = await receive_until(ws, "error")
            await send(ws, type="open", thread="main", before=-(10**30))
            before_error = await receive_until(ws, "error")
            await send(ws, type="hello", since=0)
            await receive_until(ws, "welcome")

    assert "since" in since_error["text"] and "before" in before_error["text"]


async def test_a_post_or_stop_in_an_unknown_thread_is_refused_and_not_passed_on(
    tmp_path: Path,
) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await _welcomed(ws)
            await send(ws, type="post", id="ghost-0001", thread="webtnosuchthread", text="hi")
            post_error = await receive_until(ws, "error")
            await send(ws, type="stop", id="ghost-0002", thread="webtnosuchthread")
            stop_error = await receive_until(ws, "error")
            await send(ws, type="open", thread="webtnosuchthread")
            snapshot = await receive_until(ws, "snapshot")

    assert post_error == {"type": "error", "id": "ghost-0001", "text": "there is no thread webtnosuchthread"}
    assert stop_error["id"] == "ghost-0002"
    assert served.core.prompts_seen == [] and snapshot["messages"] == []


def test_the_refusal_keeps_the_client_id_only_when_it_is_valid() -> None:
    refused = codec.decode_page(json.dumps({"type": "post", "id": "x", "thread": None, "text": ""}))
    assert refused == codec.Refused(None, "malformed message: no valid client id")


async def test_an_action_whose_handling_fails_is_refused_alone_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Another program holds the database (a sqlite3 shell left in a transaction): the
    # write fails after SQLite's wait ("database is locked"), a failure of this action only.
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await _welcomed(ws)
            other = sqlite3.connect(tmp_path / "web.sqlite3", isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            await send(ws, type="post", id="locked-0001", thread=None, text="!help")
            error = await receive_until(ws, "error")
            other.execute("ROLLBACK")
            other.close()
            await send(ws, type="post", id="after-0001", thread=None, text="!help")
            await receive_until(ws, "ack", id="after-0001")

    assert error["id"] == "locked-0001" and "could not take this message" in error["text"]
    assert any("could not take a Post" in r.getMessage() for r in caplog.records)


async def test_a_refused_messages_uploads_are_deleted_with_it(tmp_path: Path) -> None:
    too_long = "x" * (codec.MAX_TEXT + 1)
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws, served.client() as client:

            async def upload(name: str) -> str:
                return str((await client.post("/api/files", params={"name": name}, content=b"data")).json()["id"])

            await _welcomed(ws)
            sent = await upload("sent.txt")
            await send(ws, type="post", id="sent-0001", thread=None, text="!help", files=[sent])
            await receive_until(ws, "ack", id="sent-0001")
            # Refused by the server (no such thread), naming one file a message carries too.
            ghost = await upload("ghost.txt")
            await send(ws, type="post", id="ghost-0001", thread="webtnosuchthread", text="hi",
                       files=[ghost, sent])  # fmt: skip
            await receive_until(ws, "error", id="ghost-0001")
            # Refused by the codec (too long).
            long = await upload("long.txt")
            await send(ws, type="post", id="long-0001", thread=None, text=too_long, files=[long])
            await receive_until(ws, "error", id="long-0001")
            statuses = {f: (await client.get(f"/files/{f}")).status_code for f in (sent, ghost, long)}

    assert statuses == {sent: 200, ghost: 404, long: 404}
