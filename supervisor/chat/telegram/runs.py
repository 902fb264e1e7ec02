"""Runs: pieces of visible text, each with the tags around it, as Telegram takes them.

A message is a list of `Run`s; `runs_html` writes its HTML and `split_runs` cuts a long
list into messages of at most 4,096 characters (UTF-16 code units, as Telegram counts).
Because a run carries its tags, any cut closes what is open at the end of one message
and reopens it at the start of the next: a code block cut by a split is closed and
reopened with its language, and every message is well-formed on its own. Knows nothing
of Markdown (that is `render`). Pure: it must never do I/O.
"""

from __future__ import annotations

import bisect
import html
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Final

import attrs

MAX_MESSAGE_UNITS: Final = 4096


@attrs.frozen
class Tag:
    name: str  # b, i, s, u, code, pre, a, blockquote
    attrs: str = ""  # written as is after the name: ' href="..."', ' expandable'

    @property
    def opener(self) -> str:
        return f"<{self.name}{self.attrs}>"

    @property
    def closer(self) -> str:
        return f"</{self.name}>"


@attrs.frozen
class Run:
    """Visible text (not escaped) and the tags around it, outermost first."""

    text: str
    tags: tuple[Tag, ...] = ()


BOLD = Tag("b")
ITALIC = Tag("i")
STRIKE = Tag("s")
CODE = Tag("code")
PRE = Tag("pre")


def units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def escape(text: str) -> str:
    """Plain text for Telegram HTML."""
    return html.escape(text, quote=False)


def plain_text(html_text: str) -> str:
    """The visible text of HTML we wrote (`runs_html`: its tags, its escapes), to send
    with no parse mode."""
    return html.unescape(re.sub(r"<[^>]*>", "", html_text))


def common_prefix(a: tuple[Tag, ...], b: tuple[Tag, ...]) -> tuple[Tag, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]



# --- runs -> HTML ---------------------------------------------------------------------


def runs_html(runs: Sequence[Run]) -> str:
    """The HTML of `runs`: tags opened and closed around each run, well-formed."""
    out: list[str] = []
    open_tags: tuple[Tag, ...] = ()
    for run in runs:
        keep = len(common_prefix(open_tags, run.tags))
        out.extend(tag.closer for tag in reversed(open_tags[keep:]))
        out.extend(tag.opener for tag in run.tags[keep:])
        out.append(escape(run.text))
        open_tags = run.tags
    out.extend(tag.closer for tag in reversed(open_tags))
    return "".join(out)


# --- splitting ------------------------------------------------------------------------


def split_runs(runs: Sequence[Run], budget: int = MAX_MESSAGE_UNITS) -> list[list[Run]]:
    """`runs` cut into messages of at most `budget` units of visible text each.

    Cuts prefer, in this order, a blank line outside code, a line end, a space, and
    only then any character, looking no further back than half a message. Parts that
    would hold only blank space are left out (Telegram refuses an empty message).
    """
    if budget < 2:
        raise ValueError(f"budget must be at least 2 units, not {budget}")
    text = "".join(run.text for run in runs)
    in_code = _code_mask(runs)
    sums = _unit_sums(text)
    starts = list(itertools.accumulate((len(run.text) for run in runs), initial=0))[:-1]
    parts: list[list[Run]] = []
    start = 0
    for end in _cuts(text, sums, in_code, budget):
        part = _slice(runs, starts, start, end)
        if any(run.text.strip() for run in part):
            parts.append(part)
        start = end
    return parts


def _unit_sums(text: str) -> list[int]:
    sums = [0]
    for ch in text:
        sums.append(sums[-1] + (2 if ord(ch) > 0xFFFF else 1))
    return sums


def _code_mask(runs: Sequence[Run]) -> list[bool]:
    mask: list[bool] = []
    for run in runs:
        mask.extend([any(tag.name == "pre" for tag in run.tags)] * len(run.text))
    return mask


def _cuts(text: str, sums: list[int], in_code: list[bool], budget: int) -> Iterator[int]:
    """End positions (exclusive) of the successive parts."""
    start, n = 0, len(text)
    while start < n:
        # The furthest end that fits: sums[end] - sums[start] <= budget.
        end = _furthest(sums, start, budget)
        if end >= n:
            yield n
            return
        start = _nicest(text, in_code, start, end)
        yield start


def _furthest(sums: list[int], start: int, budget: int) -> int:
    lo, hi = start + 1, len(sums) - 1
    while lo < hi:  # the largest end in [start+1, n] with sums[end] - sums[start] <= budget
        mid = (lo + hi + 1) // 2
        if sums[mid] - sums[start] <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _nicest(text: str, in_code: list[bool], start: int, end: int) -> int:
    """Where to end a part that may reach `end` (exclusive) at the furthest."""
    half = start + (end - start) // 2
    blank = text.rfind("\n\n", half, end)
    while blank >= 0 and in_code[blank]:  # a blank line inside code: look further back
        blank = text.rfind("\n\n", half, blank + 1)
    if blank >= 0:
        return blank + 2
    for mark in ("\n", " "):
        at = text.rfind(mark, half, end)
        if at >= 0:
            return at + 1
    return end


def _slice(runs: Sequence[Run], starts: list[int], start: int, end: int) -> list[Run]:
    """The runs covering text[start:end], the first and last cut to fit (`starts`: where
    each run begins in the text)."""
    part: list[Run] = []
    i = bisect.bisect_right(starts, start) - 1
    while i < len(runs) and starts[i] < end:
        run, run_start = runs[i], starts[i]
        lo, hi = max(start, run_start), min(end, run_start + len(run.text))
        if lo < hi:
            part.append(Run(run.text[lo - run_start : hi - run_start], run.tags))
        i += 1
    return part
