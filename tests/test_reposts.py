"""The count of answers a restart posted again (`tests.reposts`), which the crash test and
the soaks rely on to tell a copy the person was told of from a duplicate."""

from __future__ import annotations

import re

from tests.reposts import AGAIN, AnsweredAgain

ANSWER = re.compile(r"echo #\d+: (p\d+) \(earlier")
LINE = f"⚠️ The supervisor restarted while the answer to your message was being posted; {AGAIN}:"


def _unexplained(*messages: str) -> int:
    """The copies of p1's answer in one thread beyond its first that nobody explained."""
    again = AnsweredAgain(ANSWER)
    copies = sum(len(again.answers(message, "root")) for message in messages)
    return max(copies - 1 - again.explained("p1"), 0)


def test_an_answer_posted_again_below_its_line_is_no_duplicate() -> None:
    answer = "echo #1: p1 (earlier: none)"
    assert _unexplained(answer) == 0
    assert _unexplained(LINE, answer) == 0  # it never showed before the restart
    assert _unexplained(answer, LINE, answer) == 0  # it had: told why it shows twice
    assert _unexplained(LINE, answer, LINE, answer) == 0  # two restarts, each posting it
    assert _unexplained(LINE, LINE, answer) == 0  # a kill between the line and the answer


def test_a_copy_nobody_explained_is_a_duplicate() -> None:
    answer = "echo #1: p1 (earlier: none)"
    assert _unexplained(answer, answer) == 1
    assert _unexplained(LINE, answer, answer) == 1  # posted again, then once more unasked
    assert _unexplained(answer, answer, LINE, answer) == 1


def test_which_answers_had_shown_before_they_were_posted_again() -> None:
    again = AnsweredAgain(ANSWER)
    for message in ["echo #1: p1 (earlier: none)", LINE, "echo #1: p1 (earlier: none)", LINE, "echo #2: p2 (earlier: 'p1')"]:
        again.answers(message, "root")
    assert again.reposts == {"p1": 1, "p2": 1} and again.shown_before == {"p1"}
