"""What the bot says in the main place: help, guidance, the sessions table, thread roots.

Pure functions of plain data, so the wording can be read and tested in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

from supervisor.core.commands import NEW_FORM
from supervisor.core.lifecycle import SessionState
from supervisor.core.state import SessionRecord
from supervisor.core.words import Words


def main_help(words: Words) -> str:
    """The main place's help, in the front end's words (its commands, places, choices)."""
    w, cmd = words, words.cmd
    return (
        f"**Commands** (here, in {w.main}):\n"
        f"- {cmd(NEW_FORM)} — start a session: a new {w.thread}, one agent in CWD"
        " (`resume=ID` continues a conversation of that agent)\n"
        f"- {cmd('sessions')} — list sessions with their state and a link to each {w.thread}\n"
        f"- {cmd('agents')} — list the configured agents\n"
        f"- {cmd('end NAME')} — end a session\n"
        f"- {cmd('help')} — this text\n\n"
        f"**In a session's {w.thread}:** write to talk to the agent. {cmd('stop')} interrupts the turn, "
        f"{cmd('status')} shows the session, {cmd('get PATH')} sends a file from its directory, {cmd('end')} ends it. "
        "Attach files to hand them to the agent." + (f"\n\n{w.help_notes}" if w.help_notes else "")
    )


def guidance(words: Words) -> str:
    """The answer to text outside any session's place."""
    w, cmd = words, words.cmd
    where = w.where_prompts_go or f"Prompts go into a session {w.thread}: reply in the {w.thread} of a session."
    return (
        f"{where} {cmd('new NAME [CWD]')} starts one, {cmd('sessions')} lists them, {cmd('help')} shows everything."
    )


def ended(words: Words) -> str:
    """The answer to text in the place of a session that has ended."""
    return (
        f"This session has ended; nothing reaches an agent from this {words.thread}. "
        f"Start a new one with {words.cmd('new NAME')} in {words.main}."
    )


def state_refused(directory: str, why: str) -> str:
    """To every main place when the disk refuses the state (full, failing)."""
    return (
        f"⚠️ The supervisor cannot write its state to `{directory}` ({why}). Prompts wait "
        "until it can, and none is lost: make room there and they go on."
    )


def state_written_again() -> str:
    return "✅ The supervisor writes its state again: the prompts that waited go on."


def utc_iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def thread_root(record: SessionRecord, words: Words, agent: str) -> str:
    """The session's header. `agent`: the name of the agent it runs (the default agent's
    when the record names none), so a thread says which agent answers in it."""
    persona = f" · persona `{record.persona}`" if record.persona else ""
    persona += f" · agent `{agent or record.agent}`" if agent or record.agent else ""
    terminal = f"\nThe same conversation in a terminal: {record.terminal_hint}" if record.terminal_hint else ""
    return (
        f"🧵 **Session `{record.name}`** · `{record.cwd}`{persona}\n"
        f"started {record.created_at} · id `{record.short_id}`\n"
        f"Reply in this {words.thread} to talk to the agent." + terminal
    )


@attrs.frozen
class SessionRow:
    name: str
    state: str
    cwd: str
    created_at: str
    link: str


FINAL_STATES = frozenset(state.value for state in SessionState if state.is_final)  # as a row says them


def sessions_table(rows: Sequence[SessionRow], now_iso: str, words: Words, limit: int) -> str:
    """The table, in one message of at most `limit` characters: when all do not fit, the
    oldest ended or failed sessions are left out (and counted), the live ones never."""
    if not rows:
        return f"No sessions yet. Start one with {words.cmd('new NAME [CWD]')}."
    header = [f"| session | state | directory | age | {words.thread} |", "|---|---|---|---|---|"]
    lines = [
        f"| {row.name} | {row.state} | `{row.cwd}` | {age(row.created_at, now_iso)} | [open]({row.link}) |"
        for row in rows
    ]
    size = sum(len(line) + 1 for line in header + lines) - 1
    hidden: set[int] = set()
    if size > limit:
        size += len(_left_out(len(rows)))
        for index in (i for i, row in enumerate(rows) if row.state in FINAL_STATES):  # oldest first
            if size <= limit:
                break
            hidden.add(index)
            size -= len(lines[index]) + 1
    kept = [line for index, line in enumerate(lines) if index not in hidden]
    return "\n".join(header + kept) + (_left_out(len(hidden)) if hidden else "")


def _left_out(count: int) -> str:
    return f"\n\n…and {count} older ended or failed session(s), not listed."


def age(start_iso: str, now_iso: str) -> str:
    try:
        start = datetime.fromisoformat(start_iso.replace("Z", "+00:00"))
        now = datetime.fromisoformat(now_iso.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = max(0, int((now - start).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
