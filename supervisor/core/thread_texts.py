"""What a session says in its thread: help, status, and the notices of its ends and clocks.

Pure functions of plain data, so the wording can be read and tested in one place (the
main place's words are in `core.texts`). Nothing here decides when a text is said.
"""

from __future__ import annotations

import shlex

from supervisor.core.state import SessionRecord
from supervisor.core.words import Words

STDERR_LINE_CHARS = 300  # of each of the agent's last stderr lines a failure notice shows


def thread_help(words: Words) -> str:
    """A session's help in its place, in the front end's words (its commands, choices)."""
    cmd = words.cmd
    return (
        f"Write here to talk to this session's agent. Commands: {cmd('stop')} (interrupt the turn), "
        f"{cmd('status')}, {cmd('get PATH')} (send a file from the session's directory), {cmd('end')}."
        + (f"\n{words.help_notes}" if words.help_notes else "")
    )


def status_text(record: SessionRecord, agent: str, state: str, model: str, queued: int) -> str:
    """`agent`: the name of the agent the session runs (the default agent's when the
    record names none)."""
    r, agent = record, agent or record.agent
    return "\n".join(
        [
            f"**{r.name}** · {state}",
            f"- directory: `{r.cwd}`",
            f"- agent session: `{r.agent_session_id or r.id}`" + (f" · agent `{agent}`" if agent else ""),
            f"- model: {model or 'not known yet'}",
            f"- turns: {r.turns} · cost so far: ${r.earlier_cost_usd + r.total_cost_usd:.4f}",
            f"- queued prompts: {queued}",
        ]
    )


def ended_note(name: str, words: Words) -> str:
    """The session was ended (`end`): its last words in its place."""
    return f"🏁 Session **{name}** ended. Start another with {words.cmd('new NAME')} in {words.main}."


def failed_text(why: str, stderr_tail: str, words: Words, record: SessionRecord | None = None) -> str:
    """The session failed: why, how to carry on its conversation in a new session (when
    it has one), and the last lines the agent wrote to stderr."""
    if record is not None and record.has_history:
        text = (f"{why} The session is marked failed. To carry on its conversation (once the cause is "
                f"mended), write {words.cmd(carry_on(record))} in {words.main}.")
    else:
        text = f"{why} The session is marked failed; start a new one with {words.cmd('new')}."
    tail = [line[:STDERR_LINE_CHARS] for line in stderr_tail.strip().splitlines()[-3:]]
    if tail:
        text += "\n```\n" + "\n".join(tail) + "\n```"
    return text


def queued_line(waiting: int) -> str:
    """The running answer's footer while prompts wait behind its turn."""
    if waiting == 1:
        return "⏳ 1 more prompt queued: it runs when this turn ends."
    return f"⏳ {waiting} more prompts queued: they run in order after this turn."


def queued_note(waiting: int, *, starting: bool) -> str:
    """Prompts wait with no answer of ours running to say so in its footer."""
    yours = "your message runs" if waiting == 1 else f"your {waiting} messages run, in order,"
    if starting:
        return f"⏳ Queued: the agent is starting; {yours} once it is ready."
    return f"⏳ Queued: the agent is in a turn it began by itself; {yours} when that turn ends."


def not_run_text(why: str, links: list[str]) -> str:
    """Queued prompts that will never run, each a link to its post."""
    one = len(links) == 1
    return f"⏭️ Not run, {why}: {', '.join(links)} ({'it was' if one else 'they were'} queued)."


def ended_turn_stop_text(words: Words) -> str:
    """A 🛑 on a post of a turn that had ended when it came: the turn running now goes on."""
    return (f"🛑 Not stopped: that turn had ended already. To stop the turn running now, "
            f"use 🛑 on its answer or write {words.cmd('stop')}.")


def watchdog_text(why: str, action: str) -> str:
    cause = {
        "timeout": "the turn ran past its time limit",
        "stall": "the agent produced no output for too long",
        "stop": "the agent did not stop when asked",
    }.get(why, why)
    if action == "interrupted":
        return f"⏱️ The watchdog interrupted the turn: {cause}."
    return f"⏱️ The agent was terminated: {cause} and it did not answer the interrupt. It restarts with the conversation."


def deaf_text(waited_s: float) -> str:
    return (f"⏱️ The agent was terminated: it took no input for {waited_s:g} s (frozen?). "
            "It restarts with the conversation.")


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def carry_on(record: SessionRecord) -> str:
    """The `new` command that starts a session on this one's conversation, as it was."""
    options = [f"agent={record.agent}"] if record.agent else []
    options += [f"persona={record.persona}"] if record.persona else []
    options.append(f"resume={record.agent_session_id or record.id}")
    # `new` splits its words as a shell does: a directory with a space or a quote is quoted.
    return " ".join(["new", record.name, *map(shlex.quote, [record.cwd, *options])])
