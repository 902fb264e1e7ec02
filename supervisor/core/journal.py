"""The state's write-ahead journal: what one group commit of the store changed, as one line.

This module owns the shape of a `sessions.journal` line and the pure rules for replaying
lines onto a `State`. It never touches the disk: `runtime.store` appends and reads the file.

Rules it enforces:
- A line is one JSON object ending in a newline: its generation, the session records the
  batch wrote (whole records, the last one of a session wins), the posts newly handled per
  place with the time each is kept from (`Ledger.done`), and every place's cursor and front end (the number of
  places is small, and writing all of them needs no bookkeeping of which changed).
- Only lines of the snapshot's generation apply, in order. Lines of another generation
  belong to a journal the snapshot already holds (a crash between the snapshot's rename
  and the journal's reset), or to a newer snapshot that was lost: never to this one.
- A last line cut short (no newline, or not JSON) is a crash mid-append: that batch was
  never acknowledged, so it is ignored. A damaged line before the last is a gap: replay
  stops there, since applying what follows a lost batch would make up a state that never
  existed.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import cattrs

from supervisor.core.state import (
    ChannelLedger,
    Encoder,
    HandledIds,
    SessionRecord,
    State,
    converter,
)


class JournalLineError(Exception):
    pass


@attrs.frozen
class Entry:
    generation: int  # the snapshot this line follows (>= 1; 0 means "no journal")
    sessions: dict[str, SessionRecord] = attrs.field(factory=dict)
    handled: dict[str, dict[str, int]] = attrs.field(factory=dict)  # place -> post id -> kept from
    places: dict[str, tuple[int, str]] = attrs.field(factory=dict)  # place -> (cursor, front)


def entry_of(generation: int, records: dict[str, SessionRecord], handled: dict[str, dict[str, int]],
             channels: dict[str, ChannelLedger]) -> Entry:
    """The line for a batch, given the ledger's places as they are after it."""
    places = {place: (ledger.cursor, ledger.front) for place, ledger in channels.items()}
    return Entry(generation, records, handled, places)


def encode_entry(entry: Entry, encoder: Encoder | None = None) -> bytes:
    """`encoder`: the store's, so that the next snapshot reuses the records' text."""
    record = (encoder or Encoder()).record
    sessions = ",".join(f"{json.dumps(k)}:{record(k, r)}" for k, r in entry.sessions.items())
    places = {k: list(v) for k, v in entry.places.items()}
    rest = json.dumps({"handled": entry.handled, "places": places}, separators=(",", ":"))
    # The records' text spliced in as it is: one JSON object, as if encoded whole.
    return f'{{"g":{entry.generation},"sessions":{{{sessions}}},{rest[1:]}\n'.encode()


def decode_entry(raw: bytes) -> Entry:
    """One line, without its newline. Raises JournalLineError for anything else."""
    try:
        data: Any = json.loads(raw)
        return Entry(
            generation=int(data["g"]),
            sessions=converter.structure(data["sessions"], dict[str, SessionRecord]),
            handled={p: {k: int(t) for k, t in ids.items()} for p, ids in data["handled"].items()},
            places={p: (int(c), str(f)) for p, (c, f) in data["places"].items()},
        )
    except (UnicodeDecodeError, json.JSONDecodeError, cattrs.BaseValidationError, TypeError, ValueError,
            KeyError, AttributeError) as exc:
        raise JournalLineError(str(exc)) from exc


@attrs.define
class _Replaying:
    """A state being replayed: mutable, so that a long journal replays in linear time
    (a copy of every session and handled id per line made a 512 KiB journal take seconds)."""

    sessions: dict[str, SessionRecord]
    places: dict[str, tuple[int, str]]  # place -> (cursor, front)
    handled: dict[str, HandledIds]

    @classmethod
    def of(cls, state: State) -> _Replaying:
        return cls(
            sessions=dict(state.sessions),
            places={p: (ledger.cursor, ledger.front) for p, ledger in state.channels.items()},
            handled={p: HandledIds.of(ledger.handled) for p, ledger in state.channels.items()},
        )

    def apply(self, entry: Entry) -> None:
        """As `Ledger.snapshot` keeps it: a place's handled ids inside its slack window (the
        ledger never forgets a place, so a line names all it knows)."""
        self.sessions.update(entry.sessions)
        for place, (cursor, front) in entry.places.items():
            self.places[place] = (cursor, front)
            kept = self.handled.setdefault(place, HandledIds())
            for post_id, created in entry.handled.get(place, {}).items():
                kept.add(post_id, created)
            kept.within_slack(cursor)

    def state(self) -> State:
        channels = {
            place: ChannelLedger(cursor=cursor, handled=self.handled[place].ids, front=front)
            for place, (cursor, front) in self.places.items()
        }
        return State(sessions=self.sessions, channels=channels)


@attrs.frozen
class Replay:
    state: State
    applied: int  # lines applied
    other: int  # whole lines of another generation, skipped
    newer: int  # of those, lines of a generation after the snapshot's: no later start applies them
    torn: bool  # the last line was cut short (ignored)
    damaged_line: int = 0  # 1-based number of a damaged line before the last; 0 = none
    problem: str = ""


def replay(state: State, generation: int, raw: bytes) -> Replay:
    """`state` (the snapshot of `generation`) with the journal's lines applied."""
    lines = raw.split(b"\n")
    tail = lines.pop()  # after the last newline: b"" unless the last append was cut
    torn = bool(tail)
    applied = other = newer = 0
    replaying = _Replaying.of(state)
    for number, line in enumerate(lines, start=1):
        try:
            entry = decode_entry(line)
        except JournalLineError as exc:
            if number == len(lines) and not torn:
                torn = True
                break
            return Replay(replaying.state(), applied, other, newer, torn, damaged_line=number, problem=str(exc))
        if generation == 0 or entry.generation != generation:
            other += 1
            newer += entry.generation > generation
            continue
        replaying.apply(entry)
        applied += 1
    return Replay(replaying.state() if applied else state, applied, other, newer, torn)
