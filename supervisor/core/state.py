"""The persisted state: thread <-> session mappings and which posts were handled.

This module owns the shape of `sessions.json` (versioned JSON, human-readable) and the
pure rules for changing it. It never touches the disk: `runtime.store` is the only writer.

Exactly-once bookkeeping (the ledger), per place, grouped in the file by the front end
the place is on (each front end's name is data its adapter hands over; the router tells
the ledger when it catches up a place):
- `cursor` (ms): every post created before `cursor - SLACK_MS` has been dealt with.
- `handled`: ids of dealt-with posts created (or, if later, marked: see `Ledger.done`)
  at or after that line, so a catch-up that re-reads the slack window skips them.
- Posts admitted but not yet dealt with live only in memory (`in_flight`): after a crash
  they are simply fetched again, because the cursor never moves past them.
"""

from __future__ import annotations

import json
from collections.abc import Container
from typing import Any

import attrs
import cattrs

# 3: the file is a snapshot: "journal" names the generation of `sessions.journal` whose
# lines apply on top of it (0: none); 2: the ledger grouped by front end ("fronts"), the
# file alone being the whole state; 1: one flat "channels" map, from before there were
# several front ends (read as places of a front end not named yet, "").
VERSION = 3
# Posts are re-read this far behind the cursor on catch-up, so a post that reaches us
# out of creation order is still seen; `handled` keeps the ids inside this window.
SLACK_MS = 60_000


@attrs.frozen
class SessionRecord:
    id: str  # our session id (a uuid we chose; Claude Code's conversation id too): stable from the first moment on
    name: str
    channel_id: str
    user_id: str
    cwd: str
    persona: str = ""
    root_id: str = ""  # the thread root post; "" until announced
    root_pending_id: str = ""  # idempotency key of the root post, to find it after a crash
    # The `!new` that made this session is handled (in the same write as this record) but
    # its answer, "Started session ... <link>", may not be posted yet: a start finishes it.
    answer_pending: bool = False
    new_post_id: str = ""  # that `!new` post ("" from the config): the answer goes beside it
    created_at: str = ""  # UTC ISO 8601
    has_history: bool = False  # the agent conversation has at least one prompt
    status: str = "live"  # live | suspended | ended | failed
    pgid: int = 0  # process group of the running agent; 0 when none
    # Prompts that reached the agent but whose answer is not wholly on the server yet;
    # after a crash each gets a notice that its turn was cut (or its kept answer, whole),
    # so none is silently lost.
    unsettled: tuple[str, ...] = ()
    from_config: bool = False
    # The agent's cumulative cost of the conversation at its last result; the CLI keeps
    # counting across --resume, so a turn's own cost is the difference from this.
    total_cost_usd: float = 0.0
    # What the session's earlier conversations cost (a new one started where the agent had
    # lost the last): `!status` shows the sum.
    earlier_cost_usd: float = 0.0
    # Turns that ended in this session, across restarts (`!status` shows it beside the cost).
    turns: int = 0
    # The text of each unsettled prompt (up to a bound), so 🔁 on its cut notice can run it
    # again after a restart.
    prompt_texts: dict[str, str] = attrs.field(factory=dict)
    # Unsettled prompts whose turn ended (the agent answered in full): after a crash their
    # answer is posted again (or, too long to keep, a notice says it may be incomplete),
    # and the turn is not called cut.
    answered: tuple[str, ...] = ()
    # The whole answer of each of those (its posts' texts, up to a bound), on disk in the
    # write that marks the turn ended: after a crash the thread gets it, not a notice alone.
    answer_texts: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    # Unsettled prompts their agent never acted on (it was gone, or exited without a word
    # on them: `TurnLoop.not_delivered`), or 🔁 reruns waiting behind a turn, that no agent
    # has been given since: a start runs them (their text is kept in `prompt_texts`)
    # rather than calling their turn cut.
    handed_on: tuple[str, ...] = ()
    # Cut turns' notices on which 🔁 runs the prompt again: notice post id -> prompt text
    # (the newest few).
    rerun_offers: dict[str, str] = attrs.field(factory=dict)
    # Rules the person allowed "for this session" (🔁), in the CLI's notation
    # (`Bash(npm test)`), and a permission mode so allowed: a relaunched agent gets them.
    allowed_rules: tuple[str, ...] = ()
    session_mode: str = ""
    # Permission requests whose posts still ask for a reaction: post id -> the text that
    # says the request lapsed, put there by the next start.
    lapsed_requests: dict[str, str] = attrs.field(factory=dict)
    # The configured agent this session uses (`[agents.NAME]`); "" is the default `[agent]`.
    agent: str = ""
    # The agent's own id for the conversation when the agent chose it (ACP `session/new`);
    # "" while none is known, and for agents that take ours (`id`).
    agent_session_id: str = ""
    # How to carry on this conversation in a terminal, as the agent side says it ("" = not said).
    terminal_hint: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:8]

    def handed_on_but(self, gone: Container[str]) -> tuple[str, ...]:
        """`handed_on` less the prompts in `gone`: given to an agent, said not run, or settled."""
        return tuple(p for p in self.handed_on if p not in gone)

    @property
    def is_live(self) -> bool:
        return self.status in ("live", "suspended")


@attrs.frozen
class ChannelLedger:
    cursor: int = 0
    handled: dict[str, int] = attrs.field(factory=dict)  # post id -> create_at
    front: str = ""  # the front end the place is on; "" = not named yet (a version 1 file)


@attrs.frozen
class State:
    version: int = VERSION
    sessions: dict[str, SessionRecord] = attrs.field(factory=dict)
    channels: dict[str, ChannelLedger] = attrs.field(factory=dict)

    def live_session_named(self, name: str) -> SessionRecord | None:
        return next((s for s in self.sessions.values() if s.name == name and s.is_live), None)


# Reads and writes records and states (here, and the journal's lines: `core.journal`).
converter = cattrs.Converter(forbid_extra_keys=False)


class StateFileError(Exception):
    pass


class Encoder:
    """Writes a state as JSON with one line per session and per place: readable, diffable,
    and fast — the C encoder does each line, and a session record is encoded once while
    it is unchanged: the journal line that wrote it and every later snapshot share that
    text (re-encoding 200 records made each snapshot hold the event loop ~5 ms)."""

    def __init__(self) -> None:
        self._records: dict[str, tuple[SessionRecord, str]] = {}

    def record(self, key: str, record: SessionRecord) -> str:
        """One session record as JSON."""
        cached = self._records.get(key)
        if cached is None or cached[0] is not record:
            text = json.dumps(converter.unstructure(record), sort_keys=True)
            self._records[key] = cached = (record, text)
        return cached[1]

    @staticmethod
    def _channel(key: str, ledger: ChannelLedger) -> str:
        fields = {"cursor": ledger.cursor, "handled": ledger.handled}  # its front is its group
        # A place's handled ids in the order they were dealt with, not sorted: sorting the
        # last minute's ids on every write cost more than encoding the rest of the file.
        return f"{json.dumps(key)}: {json.dumps(fields)}"

    def encode(self, state: State, journal: int = 0) -> bytes:
        """`journal`: the generation of the journal that follows this snapshot (0: none)."""
        sessions = ",\n".join(
            f"  {json.dumps(k)}: {self.record(k, r)}" for k, r in sorted(state.sessions.items())
        )
        for gone in self._records.keys() - state.sessions.keys():
            del self._records[gone]
        groups: dict[str, list[str]] = {}
        for key, ledger in sorted(state.channels.items()):
            groups.setdefault(ledger.front, []).append(self._channel(key, ledger))
        # Still one line per place: a front end's group opens on its first place's line.
        fronts = ",\n".join(
            f"  {json.dumps(front)}: {{" + ",\n   ".join(places) + "}" for front, places in sorted(groups.items())
        )
        text = (
            f'{{"version": {VERSION}, "journal": {journal},\n'
            f' "sessions": {{\n{sessions}\n }},\n'
            f' "fronts": {{\n{fronts}\n }}\n}}\n'
        )
        return text.encode()


def encode(state: State, journal: int = 0) -> bytes:
    return Encoder().encode(state, journal)


def decode(raw: bytes) -> State:
    """Parse a state file. Raises StateFileError for anything that is not a whole state."""
    return decode_snapshot(raw)[0]


def decode_snapshot(raw: bytes) -> tuple[State, int]:
    """A state file and the generation of the journal that follows it (0: none, as for
    every file before version 3). Raises StateFileError for anything not a whole state."""
    try:
        data: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateFileError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or "version" not in data:
        raise StateFileError("no version field")
    if data["version"] not in (1, 2, VERSION):
        raise StateFileError(f"unsupported version {data['version']!r}")
    try:
        journal = int(data.pop("journal", 0))
        if data["version"] != 1:  # places by front end -> one map, each place knowing its front
            fronts = data.pop("fronts", {})
            data["channels"] = {
                place: {**ledger, "front": front} for front, places in fronts.items() for place, ledger in places.items()
            }
        data["version"] = VERSION  # a version 1 file is read as the same places, front not named
        return converter.structure(data, State), journal
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError, AttributeError) as exc:
        raise StateFileError(f"wrong shape: {exc}") from exc


# --- the ledger ------------------------------------------------------------------


@attrs.define
class HandledIds:
    """A place's handled post ids (post id -> the time it is kept from: `Ledger.done`), with
    the oldest of those: keeping only the slack window behind the cursor costs nothing
    while none expired. (A `min` over every id in the window ran on each commit, in the path of each prompt:
    some 60 us with 2,000 ids in the last minute, 120 us with 6,000.)"""

    ids: dict[str, int] = attrs.field(factory=dict)
    oldest: int | None = None

    @classmethod
    def of(cls, ids: dict[str, int]) -> HandledIds:
        return cls(dict(ids), min(ids.values(), default=None))

    def __contains__(self, post_id: object) -> bool:
        return post_id in self.ids

    def add(self, post_id: str, created: int) -> None:
        self.ids[post_id] = created
        self.oldest = created if self.oldest is None else min(self.oldest, created)

    def within_slack(self, cursor: int) -> dict[str, int]:
        """The ids a place keeps: those inside the slack window behind its cursor. The same
        dict while none expired (a copy only when one did)."""
        if self.oldest is not None and self.oldest < cursor - SLACK_MS:
            self.ids = {p: t for p, t in self.ids.items() if t >= cursor - SLACK_MS}
            self.oldest = min(self.ids.values(), default=None)
        return self.ids


@attrs.define
class Ledger:
    """Which posts were dealt with, per channel. Mutable; owned by the store actor.

    Invariants: an id is in at most one of `in_flight` and `handled`; every post created
    before `cursors[c] - SLACK_MS` in channel c has been dealt with.
    """

    cursors: dict[str, int] = attrs.field(factory=dict)
    handled: dict[str, HandledIds] = attrs.field(factory=dict)  # channel -> its handled ids
    in_flight: dict[str, dict[str, int]] = attrs.field(factory=dict)  # channel -> id -> t
    newest: dict[str, int] = attrs.field(factory=dict)  # channel -> newest dealt-with t
    fronts: dict[str, str] = attrs.field(factory=dict)  # channel -> its front end's name

    @classmethod
    def from_state(cls, channels: dict[str, ChannelLedger]) -> Ledger:
        return cls(
            cursors={c: ledger.cursor for c, ledger in channels.items()},
            handled={c: HandledIds.of(ledger.handled) for c, ledger in channels.items()},
            newest={c: max([ledger.cursor, *ledger.handled.values()]) for c, ledger in channels.items()},
            fronts={c: ledger.front for c, ledger in channels.items() if ledger.front},
        )

    def admit(self, channel_id: str, post_id: str, create_at: int) -> bool:
        """True the first time a post is seen and not yet dealt with."""
        flying = self.in_flight.setdefault(channel_id, {})
        if post_id in flying or post_id in self.handled.get(channel_id, ()):
            return False
        if create_at < self.cursors.get(channel_id, 0) - SLACK_MS:
            return False
        flying[post_id] = create_at
        return True

    def done(self, channel_id: str, post_id: str) -> int | None:
        """The post was dealt with (prompt written to its agent, command answered...).
        Returns the time its handled id is kept from, if this newly marks it handled: its
        create_at, or the place's newest post if later (the id is kept a slack window from
        its mark: a post that waited longer, queued behind a turn, can still come again
        after a crash that cut its front end's confirmation, and where a front end stamps
        a post with the time it received it (Telegram), only the id says it was handled)."""
        flying = self.in_flight.setdefault(channel_id, {})
        if post_id not in flying:
            return None
        created = flying.pop(post_id)
        newest = self.newest[channel_id] = max(self.newest.get(channel_id, 0), created)
        self.handled.setdefault(channel_id, HandledIds()).add(post_id, newest)
        self.cursors[channel_id] = min([newest, *flying.values()])
        return newest

    def begin(self, channel_id: str, start_ms: int, front: str = "") -> None:
        """A channel about to be caught up, on the front end called `front`. Seen for the
        first time: what came before this start (`start_ms`) is history."""
        if front:
            self.fronts[channel_id] = front
        if channel_id not in self.cursors:
            self.cursors[channel_id] = self.newest[channel_id] = start_ms

    def catch_up_since(self, channel_id: str) -> int:
        """The `since` for a REST catch-up of this channel (never 0: the server would
        read that as "no since" and answer with the newest page only)."""
        return max(1, self.cursors.get(channel_id, 0) - SLACK_MS)

    def snapshot(self) -> dict[str, ChannelLedger]:
        """What goes to disk: cursors, and handled ids inside the slack window."""
        out = {}
        for channel, cursor in self.cursors.items():
            kept = self.handled.setdefault(channel, HandledIds()).within_slack(cursor)
            out[channel] = ChannelLedger(cursor=cursor, handled=kept, front=self.fronts.get(channel, ""))
        return out
