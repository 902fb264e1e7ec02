"""What the main-place desk decides: whether a new session may start, and `!sessions`.

Rules `check_new` enforces, in this order (the first one broken is the answer):
- no two live sessions share a name;
- no two live sessions continue one conversation (`resume=`): two agents would each
  append to one history and cross it;
- a persona, when named, is a configured one;
- the directory exists and is a directory;
- an agent, when named, is a configured one.
An accepted request runs in the directory with its links followed.

Pure: no disk, no clock, no chat. The desk (`runtime.desk`) looks the facts up (which
names are live, what the disk says of the directory) and posts the answer; sentences
here are the person-facing refusals, without the warning sign the desk puts before them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import attrs

from supervisor.core import texts
from supervisor.core.state import SessionRecord
from supervisor.core.words import Words


@attrs.frozen
class NewSession:
    """What `!new` (or a `[[sessions]]` entry) asks for."""

    name: str
    persona: str = ""  # "" = none
    agent: str = ""  # "" = the default agent
    resume: str = ""  # the agent's conversation to continue; "" = a new one


@attrs.frozen
class Directory:
    """What the disk says of the directory a new session asks for."""

    path: str  # as the person named it, made absolute: what a refusal shows
    is_dir: bool  # it exists and is a directory
    resolved: str  # where it leads, links followed: where the session runs


@attrs.frozen
class DeskFacts:
    """What the desk knows when it checks a request."""

    live_names: Collection[str]  # names of the sessions that are live now
    personas: Sequence[str]  # the configured personas, in the config's order
    agents: Sequence[str]  # the configured agents' names, the default one first
    words: Words = attrs.Factory(Words)  # how the place the request came from names commands
    # conversation id -> the live session (running or suspended) that continues it
    live_conversations: Mapping[str, str] = attrs.Factory(dict)
    # persona -> the agents that would not get all it says (its system prompt, its model),
    # and why: it is refused with them rather than dropped without a word
    personas_not_taken: Mapping[str, tuple[Collection[str], str]] = attrs.Factory(dict)


@attrs.frozen
class Accepted:
    request: NewSession
    cwd: str  # the resolved directory the session runs in


@attrs.frozen
class Refused:
    reason: str  # one sentence for the person


def check_new(request: NewSession, directory: Directory, facts: DeskFacts) -> Accepted | Refused:
    name, persona, agent = request.name, request.persona, request.agent
    if name in facts.live_names:
        end = facts.words.cmd(f"end {name}")
        return Refused(f"A live session is already called `{name}`; pick another name or {end} first.")
    holder = facts.live_conversations.get(request.resume) if request.resume else None
    if holder is not None:
        end = facts.words.cmd(f"end {holder}")
        return Refused(
            f"Session **{holder}** is still continuing conversation `{request.resume}`: a second session on"
            f" it would mix two histories into one. End it first ({end}), then start this one again."
        )
    if persona and persona not in facts.personas:
        known = ", ".join(f"`{p}`" for p in facts.personas) or "none are configured"
        return Refused(f"There is no persona `{persona}` ({known}).")
    if not directory.is_dir:
        return Refused(f"`{directory.path}` is not an existing directory.")
    if agent and agent not in facts.agents:
        known = ", ".join(f"`{n}`" for n in facts.agents)
        return Refused(f"There is no agent `{agent}` (configured: {known}).")
    not_taken, why = facts.personas_not_taken.get(persona, ((), ""))
    chosen = agent or (facts.agents[0] if facts.agents else "")
    if chosen in not_taken:
        return Refused(f"Persona `{persona}` cannot reach agent `{chosen}`: {why}.")
    return Accepted(request, directory.resolved)


def sessions_text(
    records: Iterable[SessionRecord],
    live_states: Mapping[str, str],  # thread root id -> state of its live session
    link: Callable[[str], str],  # thread root id -> a link to its thread
    now_s: float,
    words: Words,
    limit: int,  # the longest message the front end takes
) -> str:
    """`!sessions`: every announced session, oldest first, with its state now."""
    rows = [
        texts.SessionRow(
            record.name,
            live_states.get(record.root_id, record.status),
            record.cwd,
            record.created_at,
            link(record.root_id),
        )
        for record in sorted(records, key=lambda r: r.created_at)
        if record.root_id
    ]
    return texts.sessions_table(rows, texts.utc_iso(now_s), words, limit)


# A disk on the edge may refuse and take writes by turns: people are told at most this often.
STATE_REFUSED_NOTICE_EVERY_S = 600.0


@attrs.define
class StateRefusalNotices:
    """What the main places are told when the store's disk refuses the state, or takes it
    again: a warning at most every `STATE_REFUSED_NOTICE_EVERY_S`, and "again" only after
    a warning was given."""

    _told_at: float | None = None  # clock time of the last warning
    _told: bool = False  # a warning was given and no "again" since

    def notice(self, directory: str, why: str | None, now: float) -> str | None:
        """The text to post everywhere (`why`: refusing, None: written again), or None."""
        if why is not None:
            if self._told_at is not None and now - self._told_at < STATE_REFUSED_NOTICE_EVERY_S:
                return None
            self._told_at, self._told = now, True
            return texts.state_refused(directory, why)
        if self._told:
            self._told = False
            return texts.state_written_again()
        return None
