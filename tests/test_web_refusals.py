"""What the page sends that the server cannot take is refused alone, by name: the
connection stays, and what the page sends next is delivered."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from supervisor.chat.web import codec, db
from supervisor.chat.web.store import WebStore
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


async def _answer_to(ws: Any, client_id: str) -> dict[str, Any]:
    """The server's ack or refusal of the page's action `client_id`."""
    while True:
        update: dict[str, Any] = json.loads(await ws.get_message())
        if update["type"] in ("ack", "error") and update.get("id") == client_id:
            return update


async def _locked_until(
    path: Path, released: Callable[[], bool], *, task_status: trio.TaskStatus[None]
) -> None:
    """Another program holds the database (a sqlite3 shell left in a transaction) until
    `released()` says so."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        task_status.started()
        while not released():
            await trio.sleep(0.01)
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_message_posted_while_another_program_holds_the_database_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lock outlasts SQLite's own wait once ("database is locked"): the store tries
    # again, and the message is taken, files and all, as soon as the lock is gone.
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.1)
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws, served.client() as client:
            await _welcomed(ws)
            upload = await client.post("/api/files", params={"name": "notes.txt"}, content=b"data")
            file_id = upload.json()["id"]
            answers: list[dict[str, Any]] = []

            def released() -> bool:  # once the store has said it tries again (or answered)
                return bool(answers) or any("busy" in r.getMessage() for r in caplog.records)

            async with trio.open_nursery() as nursery:
                await nursery.start(_locked_until, tmp_path / "web.sqlite3", released)
                await send(ws, type="post", id="locked-0001", thread=None, text="!help", files=[file_id])
                answers.append(await _answer_to(ws, "locked-0001"))
            await send(ws, type="open", thread="main")
            snapshot = await receive_until(ws, "snapshot")

    assert answers == [{"type": "ack", "id": "locked-0001"}]
    posted = [m for m in snapshot["messages"] if m["client_id"] == "locked-0001"]
    assert [f["name"] for f in posted[0]["files"]] == ["notes.txt"]
    # The stand-in core answers "!help" in the main thread: the command reached it once.
    assert [m["text"] for m in snapshot["messages"]].count("!help") == 1


async def test_a_message_the_locked_database_never_takes_is_refused_alone_and_keeps_its_upload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.05)
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws, served.client() as client:
            await _welcomed(ws)
            upload = await client.post("/api/files", params={"name": "notes.txt"}, content=b"data")
            file_id = upload.json()["id"]
            errors: list[dict[str, Any]] = []
            async with trio.open_nursery() as nursery:
                await nursery.start(_locked_until, tmp_path / "web.sqlite3", lambda: bool(errors))
                await send(ws, type="post", id="locked-0001", thread=None, text="!help", files=[file_id])
                errors.append(await receive_until(ws, "error"))
            await send(ws, type="post", id="after-0001", thread=None, text="!help")
            await receive_until(ws, "ack", id="after-0001")
            kept = await client.get(f"/files/{file_id}")

    assert errors[0]["id"] == "locked-0001" and "send it again" in errors[0]["text"]
    assert kept.status_code == 200  # for the message sent again
    assert any("could not take a Post" in r.getMessage() for r in caplog.records)


async def test_an_upload_the_locked_database_never_takes_is_a_503_the_page_can_try_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.05)
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.client() as client:
            answers: list[httpx.Response] = []
            async with trio.open_nursery() as nursery:
                await nursery.start(_locked_until, tmp_path / "web.sqlite3", lambda: bool(answers))
                answers.append(await client.post("/api/files", params={"name": "notes.txt"}, content=b"data"))
            again = await client.post("/api/files", params={"name": "notes.txt"}, content=b"data")

    assert answers[0].status_code == 503 and "locked" in answers[0].text
    assert again.status_code == 200


async def test_a_call_cancelled_while_the_database_is_locked_ends_after_the_try_under_way(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store tries a locked database again, but a caller's limit (a session's 5 s
    for its sidebar state, the stop's deadline) ends the call after the try under way,
    not after all of them while every other call of the web chat waits behind it."""
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.2)
    with trio.fail_after(LIMIT):
        store = await WebStore.open(tmp_path)
        async with trio.open_nursery() as nursery:
            done: list[bool] = []
            await nursery.start(_locked_until, tmp_path / "web.sqlite3", lambda: bool(done))
            with trio.move_on_after(0.05):
                await store.call(db.WebDb.add_file, "notes.txt", b"data")
            done.append(True)
        await store.aclose()
    assert sum("busy" in r.getMessage() for r in caplog.records) == 1


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
