"""The web chat's history and its exactly-once: SQLite rows, client ids, replay after restart."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.chat.web import codec
from supervisor.chat.web.db import UNSENT_FILE_KEEP_S, WebDb
from supervisor.chat.web.port import (
    WEB_PLACE,
    ChoiceMade,
    Incoming,
    MessagePosted,
    StopAsked,
    ThreadRef,
)
from supervisor.chat.web.store import open_web_store
from tests.web_served import receive_until, send, serve

LIMIT = 20


def test_keys_make_threads_and_messages_idempotent(tmp_path: Path) -> None:
    db = WebDb(tmp_path / "web.sqlite3")
    first = db.open_thread("k1", "alpha", "claude", "/tmp")
    again = db.open_thread("k1", "alpha", "claude", "/tmp")
    m1 = db.create(first.id, "bot", "text", "hi", key="a")
    m2 = db.create(first.id, "bot", "text", "hi", key="a")

    assert first.id == again.id
    assert m1.id == m2.id
    assert [m.id for m in db.thread_messages(first.id)] == [m1.id]


def test_a_resent_client_id_is_recognised_and_written_once(tmp_path: Path) -> None:
    db = WebDb(tmp_path / "web.sqlite3")
    message = {"thread_id": "main", "text": "!help", "files": ()}
    waiting1, row1 = db.accept("client-0001", '{"x": 1}', message)
    waiting2, row2 = db.accept("client-0001", '{"x": 1}', message)

    assert (waiting1, waiting2) == (True, True)  # waiting for the core, both times
    assert row1 is not None and row2 is not None and row1.id == row2.id
    assert [m.text for m in db.thread_messages("main")] == ["!help"]
    assert db.unhandled() == ['{"x": 1}']
    db.handled("client-0001")
    assert db.unhandled() == []
    assert db.accept("client-0001", '{"x": 1}', message)[0] is False
    assert [m.text for m in db.thread_messages("main")] == ["!help"]


def test_a_resend_is_recognised_while_another_program_holds_the_write_lock(tmp_path: Path) -> None:
    """Its ack was lost, and a sqlite3 shell (a backup) holds the database: the resend was
    refused after the busy timeout ("send it again"), and sent again with a new client id
    its words reached the agent twice. A recorded event is now answered from a read."""
    path = tmp_path / "web.sqlite3"
    db = WebDb(path)
    message = {"thread_id": "main", "text": "!help", "files": ()}
    _, first = db.accept("client-0001", '{"x": 1}', message)
    db.accept("client-0002", '{"x": 2}', None)  # a press: no bubble
    db.handled("client-0002")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        waiting, again = db.accept("client-0001", '{"x": 1}', message)
        pressed = db.accept("client-0002", '{"x": 2}', None)
        took = time.monotonic() - started
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert took < 1  # not SQLite's busy wait (5 s), nor its error
    assert waiting is True and again is not None and first is not None and again.id == first.id
    assert pressed == (False, None)
    assert [m.text for m in db.thread_messages("main")] == ["!help"]


def test_history_survives_reopening_and_changes_come_by_version(tmp_path: Path) -> None:
    path = tmp_path / "web.sqlite3"
    db = WebDb(path)
    thread = db.open_thread("k", "alpha", "claude", "/tmp")
    message = db.create(thread.id, "bot", "text", "one", key="a")
    seen = db.version()
    db.edit(message.id, "one two")
    choice = db.create(thread.id, "bot", "choice", "allow?", key="c", options=(("reject", "Deny"),))
    db.settle(choice.id, "❌ Denied")
    db.close()

    reopened = WebDb(path)
    changes = reopened.changes_since(seen)
    mode = reopened._conn.execute("PRAGMA journal_mode").fetchone()[0]

    assert mode == "wal"
    assert [m.text for m in reopened.thread_messages(thread.id)] == ["one two", "allow?"]
    assert {m.id for m in changes.messages} == {message.id, choice.id}
    assert reopened.message(choice.id) is not None
    assert reopened.message(choice.id).outcome == "❌ Denied"  # type: ignore[union-attr]
    first_visit = reopened.changes_since(0)  # the threads; their messages when opened
    assert [t.title for t in first_visit.threads] == ["Commands", "alpha"] and first_visit.messages == ()


@settings(max_examples=50)
@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=20))
def test_any_sequence_of_resends_gives_one_row_per_client_id(ids: list[str]) -> None:
    db = WebDb(Path(":memory:"))
    for cid in ids:
        db.accept(f"client-{cid}-000", "{}", {"thread_id": "main", "text": cid, "files": ()})

    assert sorted(m.text for m in db.thread_messages("main")) == sorted(set(ids))
    assert len(db.unhandled()) == len(set(ids))


def test_events_round_trip_through_the_inbox_record() -> None:
    thread = ThreadRef(WEB_PLACE, "t1")
    events: list[Incoming] = [
        MessagePosted("c1", WEB_PLACE, thread, "u", "hi", ()),
        MessagePosted("c2", WEB_PLACE, None, "u", "!help"),
        ChoiceMade("c3", "m1", "allow_always", "u"),
        StopAsked("c4", thread, "u"),
    ]
    assert [codec.decode_event(codec.encode_event(e)) for e in events] == events


async def test_the_store_runs_every_call_off_the_event_loop_one_at_a_time(tmp_path: Path) -> None:
    loop_thread = threading.get_ident()
    seen: set[int] = set()

    def where(db: WebDb, n: int) -> int:
        seen.add(threading.get_ident())
        return n

    with trio.fail_after(LIMIT):
        async with open_web_store(tmp_path) as store, trio.open_nursery() as nursery:
            for n in range(20):
                nursery.start_soon(store.call, where, n)
            assert await store.call(where, 99) == 99

    assert loop_thread not in seen
    assert (tmp_path / "web.sqlite3").exists()


async def test_a_page_resend_is_acknowledged_but_not_run_twice(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            await send(ws, type="hello", since=0)
            await receive_until(ws, "welcome")
            await send(ws, type="new", id="new-alpha-1", name="alpha", cwd="/tmp")
            thread = (await receive_until(ws, "thread"))["thread"]["id"]
            for _ in range(3):
                await send(ws, type="post", id="prompt-0001", thread=thread, text="hello")
                await receive_until(ws, "ack", id="prompt-0001")
            await _turn_done(ws, thread)

    assert served.core.counts["hello"] == 1
    assert served.core.prompts_seen == ["hello"]


async def _turn_done(ws: object, thread: str) -> None:
    """The stand-in core's turn in `thread` ended ("Done" in its answer), so the prompt's
    handled mark, which it awaits before the turn, is durable. (Waiting for the thread to
    be idle again is not enough: the `!new` that opened it also says "idle", and may reach
    the page after the prompt's ack.)"""
    while True:
        message = (await receive_until(ws, "message"))["message"]  # type: ignore[arg-type]
        if message["thread_id"] == thread and "Done" in message["text"]:
            return


async def test_a_restart_keeps_history_and_recognises_a_resend(tmp_path: Path) -> None:
    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served, served.page() as ws:
            port = served.chat.port
            await send(ws, type="hello", since=0)
            await receive_until(ws, "welcome")
            await send(ws, type="new", id="new-alpha-1", name="alpha")
            thread = (await receive_until(ws, "thread"))["thread"]["id"]
            await send(ws, type="post", id="prompt-0001", thread=thread, text="first")
            await receive_until(ws, "ack", id="prompt-0001")
            await _turn_done(ws, thread)
        async with serve(tmp_path, port=port) as again, again.page() as ws:
            await send(ws, type="hello", since=0)
            welcome = await receive_until(ws, "welcome")
            await send(ws, type="post", id="prompt-0001", thread=thread, text="first")
            await receive_until(ws, "ack", id="prompt-0001")
            await send(ws, type="open", thread=thread)
            snapshot = await receive_until(ws, "snapshot")

    assert again.core.prompts_seen == []  # the resend was recognised
    assert [t["title"] for t in welcome["threads"]] == ["Commands", "alpha"]
    texts = [m["text"] for m in snapshot["messages"]]
    assert texts[1] == "first" and "You said: first" in texts[2] and "Done" in texts[2]


async def test_events_accepted_but_not_handled_reach_the_core_after_a_restart(
    tmp_path: Path,
) -> None:
    # The supervisor died after the ack and before the core handled the prompt.
    db = WebDb(tmp_path / "web.sqlite3")
    thread = db.open_thread("k", "alpha", "claude", "/tmp")
    event = MessagePosted("prompt-0009", WEB_PLACE, ThreadRef(WEB_PLACE, thread.id), "u", "late")
    db.accept(event.id, codec.encode_event(event), {"thread_id": thread.id, "text": "late", "files": ()})
    db.close()

    with trio.fail_after(LIMIT):
        async with serve(tmp_path) as served:
            while "late" not in served.core.prompts_seen:
                await trio.sleep(0.01)
            while WebDb(tmp_path / "web.sqlite3").unhandled():
                await trio.sleep(0.01)

    assert served.core.prompts_seen == ["late"]


def test_the_database_is_plain_sqlite(tmp_path: Path) -> None:
    WebDb(tmp_path / "web.sqlite3").close()
    tables = sqlite3.connect(tmp_path / "web.sqlite3").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
    )
    assert {"threads", "messages", "inbox", "files"} <= {row[0] for row in tables}


def test_a_thread_is_read_in_pages_from_the_newest(tmp_path: Path) -> None:
    db = WebDb(tmp_path / "web.sqlite3")
    thread = db.open_thread("k", "long", "claude", "~")
    for i in range(25):
        db.create(thread.id, "bot", "text", str(i), key=str(i))
    newest = db.thread_messages(thread.id, None, 10)
    older = db.thread_messages(thread.id, newest[0].seq, 10)
    oldest = db.thread_messages(thread.id, older[0].seq, 10)

    assert [m.text for m in newest] == [str(i) for i in range(15, 25)]
    assert [m.text for m in older] == [str(i) for i in range(5, 15)]
    assert [m.text for m in oldest] == [str(i) for i in range(5)]


def test_acceptance_and_handled_marks_are_synced_and_edits_are_not(tmp_path: Path) -> None:
    db = WebDb(tmp_path / "web.sqlite3")
    levels: list[int] = []

    def trace(statement: str) -> None:
        if statement.startswith("INSERT INTO inbox") or statement.startswith("UPDATE inbox"):
            levels.append(db._conn.execute("PRAGMA synchronous").fetchone()[0])
        if statement.startswith("UPDATE messages SET text"):
            levels.append(db._conn.execute("PRAGMA synchronous").fetchone()[0])

    message = db.create("main", "bot", "text", "a", key="k")
    db._conn.set_trace_callback(trace)
    db.accept("client-0001", "{}", None)
    db.handled("client-0001")
    db.edit(message.id, "ab")
    db._conn.set_trace_callback(None)

    assert levels == [2, 2, 1]  # FULL, FULL, NORMAL


def test_an_upload_no_message_carries_is_dropped_at_a_start_once_a_week_old(tmp_path: Path) -> None:
    """The page uploads a file as soon as it is picked; a message that never comes (the
    attachment removed, the tab closed) must not keep it in the database forever."""
    path = tmp_path / "web.sqlite3"
    db = WebDb(path)
    sent = db.add_file("sent.txt", b"carried")
    bot_sent = db.add_file("got.txt", b"by !get")
    unsent = db.add_file("unsent.txt", b"never posted")
    fresh = db.add_file("fresh.txt", b"its message may still come")
    db.accept("client-0001", '{"x": 1}', {"thread_id": "main", "text": "see", "files": (sent,)})
    db.create("main", "bot", "file", "", key="get-1", files=(bot_sent,))
    week_ago = time.time() - UNSENT_FILE_KEEP_S - 60
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE files SET created = ? WHERE id != ?", (week_ago, fresh["id"]))
    db.close()

    reopened = WebDb(path)

    assert reopened.file(unsent["id"]) is None
    assert reopened.file(sent["id"]) == ("sent.txt", b"carried")
    assert reopened.file(bot_sent["id"]) == ("got.txt", b"by !get")
    assert reopened.file(fresh["id"]) == ("fresh.txt", b"its message may still come")


def test_an_upload_keeps_its_type_and_a_database_from_before_types_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "web.sqlite3"
    old = sqlite3.connect(path)  # the files table as it was before uploads kept a type
    old.execute(
        "CREATE TABLE files (id TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL,"
        " data BLOB NOT NULL, created REAL NOT NULL)"
    )
    old.execute("INSERT INTO files VALUES ('webfold', 'old.png', 1, x'00', ?)", (time.time(),))
    old.commit()
    old.close()

    db = WebDb(path)
    declared = db.add_file("x.bin", b"\x89PNG", "image/png; charset=binary")
    generic = db.add_file("notes.txt", b"hi", "application/octet-stream")
    unknown = db.add_file("blob", b"?")

    assert db.file_ref("webfold") == ("old.png", 1, "image/png")  # guessed from the name
    assert db.file_ref(declared["id"]) == ("x.bin", 4, "image/png")
    assert db.file_ref(generic["id"]) == ("notes.txt", 2, "text/plain")
    assert db.file_ref(unknown["id"]) == ("blob", 1, "")


def test_the_database_and_its_wal_and_shm_are_private(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual one: files 0644 unless made otherwise
    try:
        loose = tmp_path / "old" / "web.sqlite3"
        loose.parent.mkdir()
        loose.touch(mode=0o644)  # left by a version that made it world-readable
        WebDb(loose).close()
        db = WebDb(tmp_path / "web.sqlite3")
        db.add_file("secret.txt", b"the person's upload")  # the WAL and its index exist now
        modes = {
            p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("web.sqlite3*")
        }
    finally:
        os.umask(old_umask)

    assert modes == {"web.sqlite3": 0o600, "web.sqlite3-wal": 0o600, "web.sqlite3-shm": 0o600}
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600
