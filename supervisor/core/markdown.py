"""Markdown as the chat front ends read it: code fences, splitting a long message, small quoting helpers.

Owns the one definition of a code fence used everywhere (CommonMark's: a line of at most
three spaces, then three or more backticks or tildes; a backtick fence's info string has no
backtick; a closing fence uses the same character, is at least as long and has nothing
after it) and the rule for cutting a message into posts of at most `limit` characters
(the front end's: `supervisor.chat.ChatLink.max_message_chars`; this module knows none).

Must never do I/O or know about posts, keys or servers: text in, text out.

A cut inside a fenced block closes the fence at the end of the post and reopens it, with
the same info string, at the start of the next; those lines count toward the limit.
Fences are tracked on each post's own lines, so every post is balanced on its own even
when a line longer than a post had to be cut in the middle. A cut is moved a line or two
earlier rather than leave an empty code block (right after a fence opened, or right
before it closes: the next post would open with one).
"""

from __future__ import annotations

import bisect
import re
import sys
from collections.abc import Iterator
from typing import Final

import attrs

NO_LIMIT: Final = sys.maxsize  # where no front end says how long a message may be: never cut

_FENCE_START = re.compile(r"( {0,3})(`{3,}|~{3,})([^\n]*)")
# The same after a newline: a literal first character lets `re` skip ahead fast, where
# a multiline `^` would try every position (this runs on every streamed delta).
_FENCE_AFTER_NEWLINE = re.compile(r"\n( {0,3})(`{3,}|~{3,})([^\n]*)")
# How far past a cut the next line is read, to see whether it closes the fence (longer
# lines are taken not to: no real closing fence is this long).
_LINE_LOOKED_AT: Final = 256


def _fence_lines(text: str) -> Iterator[tuple[int, int, str, str, str]]:
    """(line start, line end, indent, run, rest) of each line that looks like a fence."""
    first = _FENCE_START.match(text)
    if first is not None:
        yield 0, first.end(), first[1], first[2], first[3]
    for m in _FENCE_AFTER_NEWLINE.finditer(text):
        yield m.start() + 1, m.end(), m[1], m[2], m[3]


@attrs.frozen
class Fence:
    """An open fenced code block: what it takes to reopen it and to close it."""

    char: str  # "`" or "~"
    length: int
    indent: str = ""
    info: str = ""  # everything after the run on the opening line, e.g. "python"

    @property
    def opener(self) -> str:
        return f"{self.indent}{self.char * self.length}{self.info}"

    @property
    def closer(self) -> str:
        return self.char * self.length


@attrs.frozen
class Part:
    """One post of a split message: `body` is a slice of the original text; `reopen` and
    `close` are the fence lines added around it (empty when the cut is outside code)."""

    reopen: str
    body: str
    close: str

    @property
    def text(self) -> str:
        return f"{self.reopen}{self.body}{self.close}"


def fence_after_line(fence: Fence | None, indent: str, run: str, rest: str) -> Fence | None:
    """The open fence after a fence-looking line (`indent` + `run` + `rest`)."""
    if fence is None:
        if run[0] == "`" and "`" in rest:
            return None  # not an opening fence: inline code at the start of a line
        return Fence(run[0], len(run), indent, rest.rstrip(" \t\r"))
    closes = run[0] == fence.char and len(run) >= fence.length and not rest.strip(" \t\r")
    return None if closes else fence


def open_fence(text: str, fence: Fence | None = None) -> Fence | None:
    """The fence still open at the end of `text` (its last line counts even if unfinished)."""
    for _, _, indent, run, rest in _fence_lines(text):
        fence = fence_after_line(fence, indent, run, rest)
    return fence


def split_message(text: str, limit: int) -> list[str]:
    """`text` as posts of at most `limit` characters, cut at a newline where possible,
    never leaving a code fence unbalanced."""
    return [part.text for part in split_parts(text, limit)]


def split_parts(text: str, limit: int) -> list[Part]:
    """Like `split_message`, keeping apart what came from `text` and what was added."""
    return [cut.part for cut in iter_cuts(text, 0, None, limit)]


@attrs.frozen
class Cut:
    part: Part
    end: int  # where the part's body ends in the text
    carry: Fence | None  # the fence open at `end`, to reopen in the next part


def iter_cuts(text: str, start: int, fence: Fence | None, limit: int) -> Iterator[Cut]:
    """The parts of `text[start:]`, which begins inside `fence` (reopened if it fits)."""
    if limit < 1:
        raise ValueError(f"limit must be positive, not {limit}")
    while True:
        fence = _reopenable(fence, limit)
        reopen = f"{fence.opener}\n" if fence else ""
        rest = text[start:]
        if len(reopen) + len(rest) <= limit:  # else it cannot fit: spare the scan
            end_fence = open_fence(rest, fence)
            close = closing_fence(rest, end_fence)
            if len(reopen) + len(rest) + len(close) <= limit:
                yield Cut(Part(reopen, rest, close), len(text), end_fence)
                return
        size, carry = _cut(rest, fence, limit - len(reopen))
        body = rest[:size]
        yield Cut(Part(reopen, body, closing_fence(body, carry)), start + size, carry)
        start, fence = start + size, carry


def closing_fence(body: str, fence: Fence | None) -> str:
    """What closes `fence` after `body`: the closer on a line of its own, or nothing."""
    if fence is None:
        return ""
    return fence.closer if body.endswith("\n") or not body else f"\n{fence.closer}"


def _reopenable(fence: Fence | None, limit: int) -> Fence | None:
    """The fence to reopen a part with, leaving at least half the post for content.

    Only an absurd fence (thousands of characters, in a full-size post) loses its info
    string or, at worst, is not reopened at all: the next post is then plain text, but
    still balanced.
    """
    if fence is None:
        return None
    for candidate in (fence, Fence(fence.char, fence.length)):
        if len(candidate.opener) + len(candidate.closer) + 3 <= limit // 2:
            return candidate
    return None


class _Lines:
    """The fence state along a window that starts at a line start inside `fence`."""

    def __init__(self, window: str, fence: Fence | None) -> None:
        self.window = window
        self.fence = fence
        # (start, end, state after) of each fence line that changed the state, in order
        self.changes: list[tuple[int, int, Fence | None]] = []
        for start, end, indent, run, rest in _fence_lines(window):
            after = fence_after_line(fence, indent, run, rest)
            if after != fence:
                self.changes.append((start, end, after))
                fence = after
        self._ends = [end for _, end, _ in self.changes]

    def state_at(self, pos: int) -> Fence | None:
        """The fence open after the lines that end at or before `pos` (a newline's index)."""
        i = bisect.bisect_right(self._ends, pos)
        return self.changes[i - 1][2] if i else self.fence

    def opened_by_line_ending_at(self, pos: int) -> bool:
        """Whether the line ending at `pos` (a newline's index) opened a fence."""
        i = bisect.bisect_right(self._ends, pos)
        return i > 0 and self.changes[i - 1][1] == pos and self.changes[i - 1][2] is not None


def _cut(rest: str, fence: Fence | None, budget: int) -> tuple[int, Fence | None]:
    """How much of `rest` goes into this part (`budget` characters available for the
    body and its closing fence), and the fence open at the cut."""
    lines = _Lines(rest[:budget], fence)
    j = lines.window.rfind("\n", 0, budget)
    while j >= 0 and j + 1 + len(closing_fence("\n", lines.state_at(j))) > budget:
        j = lines.window.rfind("\n", 0, j)
    if j < 0:
        return _hard_cut(lines, budget)
    best = n = _nicer_cut(lines, j, budget)
    for _ in range(3):  # a block of one line takes two steps back, to before it opened
        if not _beside_an_empty_block(lines, rest, n):
            best = n
            break
        n = lines.window.rfind("\n", 0, n)
        if n < 0:
            break
    return best + 1, lines.state_at(best)


def _beside_an_empty_block(lines: _Lines, rest: str, n: int) -> bool:
    """Whether a cut after the newline at `n` shows an empty code block: the fence opened
    on the line it ends, or closes on the line after it (the reopened fence would close
    at once)."""
    if lines.opened_by_line_ending_at(n):
        return True
    fence = lines.state_at(n)
    end = rest.find("\n", n + 1, n + _LINE_LOOKED_AT)
    if fence is None or (end < 0 and len(rest) > n + _LINE_LOOKED_AT):
        return False
    m = _FENCE_START.fullmatch(rest, n + 1, len(rest) if end < 0 else end)
    return m is not None and fence_after_line(fence, *m.groups()) is None


def _nicer_cut(lines: _Lines, j: int, budget: int) -> int:
    """A newline at or before `j`, in the second half of the post, that reads better:
    outside code rather than inside it, and at a blank line rather than mid-paragraph."""
    half = budget // 2

    def fits(n: int) -> bool:
        return half <= n <= j and n + 1 + len(closing_fence("\n", lines.state_at(n))) <= budget

    if lines.state_at(j) is not None:  # inside code: cut before it opened or after it closed
        for start, end, after in reversed(lines.changes):
            n = end if after is None else start - 1
            if n < half:
                break
            if lines.state_at(n) is None and lines.window[n : n + 1] == "\n" and fits(n):
                return n
        return j
    p = lines.window.rfind("\n\n", half, j + 1)
    return p + 1 if p >= 0 and lines.state_at(p + 1) is None and fits(p + 1) else j


def _hard_cut(lines: _Lines, budget: int) -> tuple[int, Fence | None]:
    """Cut inside a line: no newline leaves room for the closing fence."""
    k = min(budget, len(lines.window))
    for _ in range(8):
        state, run_start, run_end = _fragment_state(lines, k)
        need = len(closing_fence("x", state))
        if k + need <= budget:
            return k, state
        shorter = budget - need
        if shorter < run_end:  # the cut shortens the fence run, and so its closer, too
            shorter = (budget - 1 + run_start) // 2
        k = max(1, min(shorter, k - 1))
    return 1, _fragment_state(lines, 1)[0]  # one character is never a fence line


def _fragment_state(lines: _Lines, k: int) -> tuple[Fence | None, int, int]:
    """The fence open after `window[:k]`, whose last line is unfinished, and where that
    line's fence run starts and ends (0, 0 when it is no fence line)."""
    line_start = lines.window.rfind("\n", 0, k) + 1
    before = lines.state_at(line_start - 1) if line_start else lines.fence
    m = _FENCE_START.fullmatch(lines.window, line_start, k)
    if m is None:
        return before, 0, 0
    return fence_after_line(before, *m.groups()), m.start(2), m.end(2)
