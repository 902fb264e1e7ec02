"""The answers a restart posts again, whole, below the line that says why (the supervisor
was killed while they were being posted): told apart from duplicates, in a thread's
messages read in the order posted. Used by the crash test and the soaks."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import attrs

from supervisor.runtime.store import read_state

# The line above a finished answer a restart posts again (`core.prompt_endings.answer_again`).
AGAIN = "here it is, whole"


@attrs.define
class AnsweredAgain:
    """Finds the answers a restart posted again, whole: each follows the line that says
    why in its thread, as a post of its own. `reposts` counts them by prompt; `shown_before`
    are the prompts whose answer had shown (whole) before the first of them."""

    answer: re.Pattern[str]  # a whole answer, as the front end shows it; group 1 names its prompt
    reposts: Counter[str] = attrs.Factory(Counter)
    shown_before: set[str] = attrs.Factory(set)
    _seen: set[str] = attrs.Factory(set)  # prompts with an answer so far
    _below_line: set[str] = attrs.Factory(set)  # threads whose next answer is one posted again

    def answers(self, message: str, thread: str) -> list[re.Match[str]]:
        """The whole answers in one message (read in the order posted)."""
        found = list(self.answer.finditer(message))
        if found and thread in self._below_line:
            text = found[0].group(1)
            if not self.reposts[text] and text in self._seen:
                self.shown_before.add(text)
            self.reposts[text] += 1
        self._seen.update(match.group(1) for match in found)
        self._below_line.discard(thread)
        if AGAIN in message:
            self._below_line.add(thread)
        return found

    def explained(self, text: str) -> int:
        """The copies of a prompt's answer beyond its first that the person was told of:
        each one posted again, and the first, if it had shown before them. Any more is a
        duplicate."""
        reposts = self.reposts[text]
        return reposts + (text in self.shown_before) - 1 if reposts else 0


def answer_counts(messages: Iterable[str], answer: re.Pattern[str]) -> Counter[str]:
    """Each prompt's answers in one thread's messages (in the order posted), but for the
    copies a restart posted again and said so: more than one is a duplicate."""
    again = AnsweredAgain(answer)
    counts = Counter(match.group(1) for message in messages for match in again.answers(message, ""))
    return Counter({text: n - again.explained(text) for text, n in counts.items()})


def nothing_to_post_again(state_dir: Path) -> bool:
    """Every answer the sessions gave is recorded as shown: a kill now posts none again.
    (A test about something else waits for this before its kill.)"""
    return not any(record.unsettled for record in read_state(state_dir).state.sessions.values())
