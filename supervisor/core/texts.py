"""What the bot says in the main DM: help, guidance, the sessions table, thread roots.

Pure functions of plain data, so the wording can be read and tested in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import attrs

from supervisor.core.state import SessionRecord


def main_help(choices_help: str) -> str:
    """The main DM's help; `choices_help` says how choices are made there (reactions,
    buttons), in the front end's words."""
    return (
        "**Commands** (here, in the main DM):\n"
        "- `!new NAME [CWD] [agent=A] [persona=P]` — start a session: a new thread, one agent in CWD\n"
        "- `!sessions` — list sessions with their state and a link to each thread\n"
        "- `!agents` — list the configured agents\n"
        "- `!end NAME` — end a session\n"
        "- `!help` — this text\n\n"
        "**In a session thread:** write to talk to the agent. `!stop` interrupts the turn, "
        "`!status` shows the session, `!get PATH` sends a file from its directory, `!end` ends it. "
        "Attach files to hand them to the agent." + (f"\n\n{choices_help}" if choices_help else "")
    )


GUIDANCE = (
    "Prompts go into a session thread: reply in the thread of a session. "
    "`!new NAME [CWD]` starts one, `!sessions` lists them, `!help` shows everything."
)

ENDED = "This session has ended; nothing reaches an agent from this thread. Start a new one with `!new NAME` in the main DM."


def utc_iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def thread_root(record: SessionRecord) -> str:
    persona = f" · persona `{record.persona}`" if record.persona else ""
    persona += f" · agent `{record.agent}`" if record.agent else ""
    terminal = f"\nThe same conversation in a terminal: {record.terminal_hint}" if record.terminal_hint else ""
    return (
        f"🧵 **Session `{record.name}`** · `{record.cwd}`{persona}\n"
        f"started {record.created_at} · id `{record.short_id}`\n"
        "Reply in this thread to talk to the agent." + terminal
    )


@attrs.frozen
class SessionRow:
    name: str
    state: str
    cwd: str
    created_at: str
    link: str


def sessions_table(rows: Sequence[SessionRow], now_iso: str) -> str:
    if not rows:
        return "No sessions yet. Start one with `!new NAME [CWD]`."
    lines = ["| session | state | directory | age | thread |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.state} | `{row.cwd}` | {age(row.created_at, now_iso)} | [open]({row.link}) |"
        )
    return "\n".join(lines)


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
