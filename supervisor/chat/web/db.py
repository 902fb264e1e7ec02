"""The web chat's history in SQLite (`<state.dir>/web.sqlite3`): plain, synchronous calls.

Owns the schema and every statement. Each public method is one transaction, so a crash
leaves either all of a change or none of it. Every change bumps one counter (`version`)
and stamps the row with it: a page that saw version N asks for what changed after N, and
applying rows by version makes duplicates and reordering harmless.

Must never be called from the event loop: `store.WebStore` runs it in a worker thread,
from one owner task (one connection, one writer).
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import os
import secrets
import sqlite3
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY, key TEXT UNIQUE, title TEXT NOT NULL, state TEXT NOT NULL,
    agent TEXT NOT NULL, cwd TEXT NOT NULL, created REAL NOT NULL, version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
    thread_id TEXT NOT NULL, key TEXT UNIQUE, client_id TEXT UNIQUE,
    author TEXT NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '[]', outcome TEXT, files TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL, version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_thread ON messages (thread_id, seq);
CREATE INDEX IF NOT EXISTS messages_version ON messages (version);
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT UNIQUE NOT NULL,
    event TEXT NOT NULL, handled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, size INTEGER NOT NULL, data BLOB NOT NULL,
    created REAL NOT NULL, mime_type TEXT NOT NULL DEFAULT ''
);
"""
# Databases from before a column existed get it here (SQLite adds a column in place).
ADDED_COLUMNS = {"files": {"mime_type": "TEXT NOT NULL DEFAULT ''"}}


@attrs.frozen
class ThreadRow:
    id: str
    title: str
    state: str
    agent: str
    cwd: str
    created: float
    version: int


@attrs.frozen
class MessageRow:
    """One bubble of a thread. `kind`: text | choice | file; `author`: user | bot."""

    id: str
    seq: int  # the order within its thread
    thread_id: str
    author: str
    kind: str
    text: str
    options: tuple[tuple[str, str], ...]  # (option kind, label) of a choice
    outcome: str | None  # a settled choice's outcome; the buttons are gone
    files: tuple[dict[str, Any], ...]  # {"id", "name", "size"} attached to the message
    client_id: str | None
    created: float
    version: int


@attrs.frozen
class Changes:
    threads: tuple[ThreadRow, ...]
    messages: tuple[MessageRow, ...]
    version: int
    # Threads with changed messages left out: ones the page holds none of (`changed`), and
    # ones it holds whose changes were too many to send (`reload`: it fetches them anew).
    changed: tuple[str, ...] = ()
    reload: tuple[str, ...] = ()


_MESSAGE_COLUMNS = (
    "id, seq, thread_id, author, kind, text, options, outcome, files, client_id, created, version"
)


def _message(row: tuple[Any, ...]) -> MessageRow:
    mid, seq, thread_id, author, kind, text, options, outcome, files, client_id, created, ver = row
    return MessageRow(
        mid,
        seq,
        thread_id,
        author,
        kind,
        text,
        tuple((str(k), str(label)) for k, label in json.loads(options)),
        outcome,
        tuple(json.loads(files)),
        client_id,
        created,
        ver,
    )


# Every id the web chat hands out starts with "web": with several front ends in one
# supervisor, the id alone says which front end owns it (PORT: `FrontEnd.owns`).
ID_PREFIX = "web"
# An upload no message carries is dropped at the next start once it is this old: long
# enough for a page that queued its message offline (a phone asleep) to send it.
UNSENT_FILE_KEEP_S = 7 * 24 * 3600
# How long one statement waits for another connection's transaction (a sqlite3 shell, a
# backup) before SQLite says "database is locked"; the store tries a few times more.
BUSY_TIMEOUT_S = 5.0
USER_MESSAGE = ID_PREFIX + "u"  # + the page's client id: a person's message
# The ids of the files some message carries (most messages carry none: their JSON is skipped).
_CARRIED_FILES = (
    "SELECT json_extract(f.value, '$.id') FROM messages AS m, json_each(m.files) AS f"
    " WHERE m.files != '[]'"
)


def _private(path: Path) -> None:
    """The whole chat history and every upload: readable by their owner only. SQLite gives
    the -wal and -shm files it makes the database's mode, so they follow; ones left by an
    older version (0644) are tightened too."""
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(path.with_name(name), 0o600)


def media_type(declared: str, name: str) -> str:
    """`declared` ("type/subtype", parameters dropped) unless it says nothing, then the
    name's usual type: browsers leave it empty or generic for types they do not know."""
    declared = declared.partition(";")[0].strip().lower()
    if declared and declared != "application/octet-stream" and len(declared) <= 100:
        return declared
    return mimetypes.guess_type(name, strict=False)[0] or declared


def new_id(kind: str) -> str:
    return ID_PREFIX + kind + secrets.token_hex(8)


class WebDb:
    """One connection. Invariant: used by one thread at a time (the store's owner)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if str(path) != ":memory:":  # tests' throwaway databases are not files
            _private(path)
        # isolation_level=None: we open transactions ourselves, one per method.
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a crash or kill -9 (it is in the OS's
        # cache) but not a power cut; enough for streamed edits, of which there are many.
        # What exactly-once rests on is committed with FULL (`_durable`).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        for table, columns in ADDED_COLUMNS.items():
            present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in present:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        # Version 0 is a page's "nothing seen" (a first visit, which gets no messages):
        # a database that answered it, fresh, would have such a page miss what is posted
        # next. So it starts at 1, and one an older release left at 0 moves to 1.
        self._conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', 1)")
        self._conn.execute("UPDATE meta SET value = 1 WHERE key = 'version' AND value = 0")
        # The main thread: commands only, like a Mattermost main DM.
        self._conn.execute(
            "INSERT OR IGNORE INTO threads VALUES ('main', 'main', 'Commands', 'idle', '', '', 0, 0)"
        )
        self.forget_unsent_files(time.time() - UNSENT_FILE_KEEP_S)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _durable(self) -> Iterator[None]:
        """One transaction synced to disk before it returns (FULL syncs the WAL, and so
        every commit before it too): for what an ack or the core's handled mark promises."""
        self._conn.execute("PRAGMA synchronous=FULL")
        try:
            with self._conn:
                yield
        finally:
            self._conn.execute("PRAGMA synchronous=NORMAL")

    def _bump(self) -> int:
        self._conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        (version,) = self._conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return int(version)

    def version(self) -> int:
        (version,) = self._conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return int(version)

    # threads -------------------------------------------------------------------------

    def open_thread(self, key: str, title: str, agent: str, cwd: str) -> ThreadRow:
        """Idempotent by `key`: a second call returns the first call's thread."""
        with self._durable():
            self._conn.execute("BEGIN IMMEDIATE")
            found = self._conn.execute("SELECT id FROM threads WHERE key = ?", (key,)).fetchone()
            if found is None:
                version = self._bump()
                self._conn.execute(
                    "INSERT INTO threads VALUES (?, ?, ?, 'starting', ?, ?, ?, ?)",
                    (new_id("t"), key, title, agent, cwd, time.time(), version),
                )
                found = self._conn.execute(
                    "SELECT id FROM threads WHERE key = ?", (key,)
                ).fetchone()
        thread = self.thread(found[0])
        assert thread is not None
        return thread

    def update_thread(self, thread_id: str, **fields: str) -> ThreadRow | None:
        """The thread with `fields` changed; None when there is no such thread, or nothing
        changed (no new version for the pages to fetch)."""
        allowed = {k: v for k, v in fields.items() if k in ("state", "agent", "cwd", "title")}
        now = self.thread(thread_id)
        if now is None or all(getattr(now, k) == v for k, v in allowed.items()):
            return None
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            version = self._bump()
            sets = ", ".join(f"{k} = ?" for k in allowed)
            self._conn.execute(
                f"UPDATE threads SET {sets}{', ' if sets else ''}version = ? WHERE id = ?",
                (*allowed.values(), version, thread_id),
            )
        return self.thread(thread_id)

    def thread(self, thread_id: str) -> ThreadRow | None:
        row = self._conn.execute(
            "SELECT id, title, state, agent, cwd, created, version FROM threads WHERE id = ?",
            (thread_id,),
        ).fetchone()
        return None if row is None else ThreadRow(*row)

    def threads(self) -> list[ThreadRow]:
        rows = self._conn.execute(
            "SELECT id, title, state, agent, cwd, created, version FROM threads ORDER BY created"
        ).fetchall()
        return [ThreadRow(*row) for row in rows]

    # messages ------------------------------------------------------------------------

    def create(
        self,
        thread_id: str,
        author: str,
        kind: str,
        text: str,
        *,
        key: str | None = None,
        client_id: str | None = None,
        options: tuple[tuple[str, str], ...] = (),
        files: tuple[dict[str, Any], ...] = (),
    ) -> MessageRow:
        """Idempotent by `key` (the core's) and by `client_id` (the page's)."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            found = self._insert(
                thread_id, author, kind, text, key=key, client_id=client_id,
                options=options, files=files,
            )  # fmt: skip
        message = self.message(found)
        assert message is not None
        return message

    def _insert(
        self,
        thread_id: str,
        author: str,
        kind: str,
        text: str,
        *,
        key: str | None,
        client_id: str | None,
        options: tuple[tuple[str, str], ...],
        files: tuple[dict[str, Any], ...],
    ) -> str:
        """Inside a transaction: the message's id, inserted unless its key was seen."""
        found = self._find(key, client_id)
        if found is not None:
            return found
        # A person's message is named after the page's client id, so the event that
        # carries it (replayed after a restart too) names the message without a lookup.
        mid = USER_MESSAGE + client_id if client_id is not None else new_id("m")
        self._conn.execute(
            "INSERT INTO messages (id, thread_id, key, client_id, author, kind, text,"
            " options, files, created, version) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                mid, thread_id, key, client_id, author, kind, text,
                json.dumps(options), json.dumps(files), time.time(), self._bump(),
            ),
        )  # fmt: skip
        return mid

    def _find(self, key: str | None, client_id: str | None) -> str | None:
        for column, value in (("key", key), ("client_id", client_id)):
            if value is not None:
                row = self._conn.execute(
                    f"SELECT id FROM messages WHERE {column} = ?", (value,)
                ).fetchone()
                if row is not None:
                    return str(row[0])
        return None

    def edit(self, message_id: str, text: str) -> MessageRow | None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "UPDATE messages SET text = ?, version = ? WHERE id = ?",
                (text, self._bump(), message_id),
            )
        return self.message(message_id)

    def settle(self, message_id: str, outcome: str) -> MessageRow | None:
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "UPDATE messages SET outcome = ?, version = ? WHERE id = ?",
                (outcome, self._bump(), message_id),
            )
        return self.message(message_id)

    def offer(self, message_id: str, options: tuple[tuple[str, str], ...]) -> MessageRow | None:
        """Turn a message into a choice card with these buttons (again, if it was one)."""
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "UPDATE messages SET kind = 'choice', options = ?, outcome = NULL, version = ?"
                " WHERE id = ?",
                (json.dumps(options), self._bump(), message_id),
            )
        return self.message(message_id)

    def first_message(self, thread_id: str) -> MessageRow | None:
        """A thread's header (its first message)."""
        row = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE thread_id = ? ORDER BY seq LIMIT 1",
            (thread_id,),
        ).fetchone()
        return None if row is None else _message(row)

    def message(self, message_id: str) -> MessageRow | None:
        row = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return None if row is None else _message(row)

    def thread_messages(
        self, thread_id: str, before: int | None = None, limit: int | None = None
    ) -> list[MessageRow]:
        """The thread's newest `limit` messages older than seq `before`, oldest first."""
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE thread_id = ? AND seq < ?"
            " ORDER BY seq DESC LIMIT ?",
            (thread_id, before if before is not None else 2**62, limit if limit else -1),
        ).fetchall()
        return [_message(row) for row in reversed(rows)]

    def changes_since(
        self, version: int, held: Collection[str] | None = None, most: int | None = None
    ) -> Changes:
        """Every thread and message changed after `version` (a reconnecting page). A first
        visit (version 0) gets every thread, the main one included, and no message: each
        thread's newest come when it is opened, not the whole history at every load.

        With `held` (the threads whose messages the page keeps), the messages of those
        only, the other changed threads named; and none at all when more than `most` of
        them changed (a tab asleep through a busy day): those threads are to be fetched anew."""
        with self._conn:
            self._conn.execute("BEGIN")
            threads = self._conn.execute(
                "SELECT id, title, state, agent, cwd, created, version FROM threads"
                " WHERE version > ? OR ? = 0 ORDER BY created, version",
                (version, version),
            ).fetchall()
            changed: tuple[str, ...] = ()
            reload: tuple[str, ...] = ()
            if held is None:
                messages = self._changed_messages(version, None)
            else:
                messages, changed, reload = self._changed_in(version, set(held), most)
            now = self.version()
        return Changes(tuple(ThreadRow(*r) for r in threads), messages, now, changed, reload)

    def _changed_in(
        self, version: int, held: set[str], most: int | None
    ) -> tuple[tuple[MessageRow, ...], tuple[str, ...], tuple[str, ...]]:
        """Inside a transaction: the messages of `held` changed after `version`, the other
        threads with changed messages, and the held ones to fetch anew (over `most`)."""
        counts = self._conn.execute(
            "SELECT thread_id, count(*) FROM messages WHERE version > ? AND ? > 0"
            " GROUP BY thread_id ORDER BY min(version)",
            (version, version),
        ).fetchall()
        mine = [thread for thread, _ in counts if thread in held]
        changed = tuple(thread for thread, _ in counts if thread not in held)
        if most is not None and sum(n for thread, n in counts if thread in held) > most:
            return (), changed, tuple(mine)
        return self._changed_messages(version, mine), changed, ()

    def _changed_messages(self, version: int, threads: list[str] | None) -> tuple[MessageRow, ...]:
        """Inside a transaction: the messages changed after `version` (of `threads`, if given)."""
        rows = self._conn.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE version > ? AND ? > 0"
            " AND (? OR thread_id IN (SELECT value FROM json_each(?))) ORDER BY version",
            (version, version, threads is None, json.dumps(threads or [])),
        ).fetchall()
        return tuple(_message(r) for r in rows)

    # the page's events: exactly once --------------------------------------------------

    def accept(
        self, event_id: str, event: str, message: dict[str, Any] | None, stamp_ms: int = 0
    ) -> tuple[bool, MessageRow | None]:
        """Record an event from the page; whether it waits for the core: False once the
        core marked it handled. A resend of one still waiting is True again: whoever
        accepted it first may have been stopped before handing it on (`WebChat.accept`).

        With `message` (a posted text), its bubble is written in the same transaction, so
        the page never sees its message without the event, nor the event twice. A new
        event's `stamp_ms` (its time for the core) is kept as the high-water mark
        (`last_stamp_ms`)."""
        # A resend (its ack was lost) is answered from a plain read: WAL readers are not
        # blocked by another program's write lock (a sqlite3 shell, a backup), which would
        # refuse it, and the page would send its words again as a new message.
        seen = self._conn.execute(
            "SELECT handled FROM inbox WHERE event_id = ?", (event_id,)
        ).fetchone()
        found = self._find(None, event_id) if message is not None else None
        if seen is not None and (message is None or found is not None):
            return not seen[0], (None if found is None else self.message(found))
        with self._durable():
            self._conn.execute("BEGIN IMMEDIATE")
            seen = self._conn.execute(
                "SELECT handled FROM inbox WHERE event_id = ?", (event_id,)
            ).fetchone()
            if seen is None:
                self._conn.execute(
                    "INSERT INTO inbox (event_id, event) VALUES (?, ?)", (event_id, event)
                )
                self._conn.execute(
                    "INSERT INTO meta VALUES ('last_stamp_ms', ?) ON CONFLICT (key)"
                    " DO UPDATE SET value = max(value, excluded.value)",
                    (stamp_ms,),
                )
            mid = None
            if message is not None:
                mid = self._insert(
                    key=None, client_id=event_id, options=(), kind="text", author="user",
                    **message,
                )  # fmt: skip
        return seen is None or not seen[0], (None if mid is None else self.message(mid))

    def last_stamp_ms(self) -> int:
        """The newest stamp an accepted event was given (0: none yet)."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'last_stamp_ms'").fetchone()
        return 0 if row is None else int(row[0])

    def handled(self, event_id: str) -> None:
        with self._durable():
            self._conn.execute("UPDATE inbox SET handled = 1 WHERE event_id = ?", (event_id,))

    def unhandled(self) -> list[str]:
        """Events recorded but not yet marked handled by the core, oldest first."""
        rows = self._conn.execute("SELECT event FROM inbox WHERE handled = 0 ORDER BY seq")
        return [str(row[0]) for row in rows.fetchall()]

    # files ---------------------------------------------------------------------------

    def add_file(self, name: str, data: bytes, content_type: str = "") -> dict[str, Any]:
        """Keep an uploaded file; `content_type` as the uploader declared it, if it did."""
        fid = new_id("f")
        with self._conn:
            self._conn.execute(
                "INSERT INTO files (id, name, size, data, created, mime_type) VALUES (?,?,?,?,?,?)",
                (fid, name, len(data), data, time.time(), media_type(content_type, name)),
            )
        return {"id": fid, "name": name, "size": len(data)}

    def forget_unsent_files(self, before: float) -> int:
        """Drop files uploaded before `before` that no message carries: the page took them
        but their message was never sent (discarded, or the tab closed), or a `!get` was
        cut between its upload and its message. Returns how many went."""
        with self._conn:
            gone = self._conn.execute(
                f"DELETE FROM files WHERE created < ? AND id NOT IN ({_CARRIED_FILES})", (before,)
            ).rowcount
        return int(gone)

    def forget_files(self, file_ids: tuple[str, ...]) -> int:
        """Drop these uploads now unless a message carries one (a refused message's files:
        its message will never be sent). Returns how many went."""
        marks = ", ".join("?" * len(file_ids))
        with self._conn:
            gone = self._conn.execute(
                f"DELETE FROM files WHERE id IN ({marks}) AND id NOT IN ({_CARRIED_FILES})", file_ids
            ).rowcount
        return int(gone)

    def file_ref(self, file_id: str) -> tuple[str, int, str] | None:
        """The file's name, size and media type (guessed from the name if none was kept)."""
        row = self._conn.execute(
            "SELECT name, size, mime_type FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]), media_type(row[2], row[0]))

    def file(self, file_id: str) -> tuple[str, bytes] | None:
        row = self._conn.execute(
            "SELECT name, data FROM files WHERE id = ?", (file_id,)
        ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))
