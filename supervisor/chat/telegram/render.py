"""The core's Markdown-ish text as Telegram HTML, in messages of at most 4,096 characters.

Owns the look of text in Telegram: Markdown (parsed by markdown-it-py, CommonMark plus
tables and strikethrough) becomes a flat list of `Run`s, each a piece of visible text with
the tags around it; `split_runs` cuts the runs into messages; `runs_html` writes one
message's HTML. Pure: text in, text out; it must never do I/O.

Telegram's rules (FACTS.md, "Streaming an answer"), which every output keeps:
- only the tags b, i, s, u, code, pre, a (http, https, tg, mailto links) and blockquote
  (`expandable` for a collapsed one); text escaped (`&`, `<`, `>`; `"` in attributes);
- code and pre hold nothing else (a code block is `<pre><code class="language-x">`);
  blockquotes are never nested;
- a message holds 1-4,096 characters of text after entity parsing, counted in UTF-16
  code units (an emoji outside the BMP counts 2).
Because a run carries its tags, any cut closes what is open at the end of one message
and reopens it at the start of the next: a code block cut by a split is closed and
reopened with its language, and every message is well-formed on its own.
"""

from __future__ import annotations

import bisect
import functools
import html
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs

MAX_MESSAGE_UNITS: Final = 4096

_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_HR = "──────────"
_BULLET = "•"


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


# --- Markdown -> runs ------------------------------------------------------------------


@functools.cache
def _parser() -> Any:
    # Imported here: only a Telegram front end pays for the parser (cold start).
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])


def to_runs(markdown: str, *, collapse_quotes: bool = True) -> list[Run]:
    """The runs of `markdown`; leading and trailing blank space dropped."""
    builder = _Builder(collapse_quotes)
    builder.blocks(_parser().parse(markdown))
    return _trimmed(_merged(builder.runs))


def render(markdown: str, *, collapse_quotes: bool = True) -> str:
    """`markdown` as one piece of Telegram HTML, however long."""
    return runs_html(to_runs(markdown, collapse_quotes=collapse_quotes))


def render_parts(
    markdown: str,
    *,
    limit: int = MAX_MESSAGE_UNITS,
    prefix: str = "",
    collapse_quotes: bool = True,
) -> list[str]:
    """`markdown` as messages of at most `limit` units of text each, every one starting
    with `prefix` (plain text, e.g. "[alpha] " for a session without a topic)."""
    runs = to_runs(markdown, collapse_quotes=collapse_quotes)
    head = [Run(prefix)] if prefix else []
    return [runs_html(head + part) for part in split_runs(runs, limit - units(prefix))]


class _Builder:
    """Walks markdown-it's token stream, keeping the open block and inline tags."""

    def __init__(self, collapse_quotes: bool) -> None:
        self.runs: list[Run] = []
        self._quote = Tag("blockquote", " expandable" if collapse_quotes else "")
        self._quotes = 0  # depth; only the outermost one becomes a tag
        self._lists: list[list[int]] = []  # per open list: [next number] or [] for bullets
        self._tight: list[bool] = []
        self._item_prefix = ""  # to write before the first text of a list item
        self._sep = ""  # to write before the next text of a new block
        self._bold = False  # inside a heading or a table's header cell
        self._cells = 0  # cells written in the current table row

    # blocks

    def blocks(self, tokens: Sequence[Any]) -> None:
        for token in tokens:
            handler = getattr(self, f"_on_{token.type}", None)
            if handler is not None:
                handler(token)

    def _block(self, separator: str = "\n\n") -> None:
        if self.runs and len(separator) > len(self._sep):
            self._sep = separator

    def _on_paragraph_open(self, token: Any) -> None:
        self._block("\n" if token.hidden else "\n\n")

    def _on_heading_open(self, token: Any) -> None:
        self._block()
        self._bold = True

    def _on_heading_close(self, token: Any) -> None:
        self._bold = False

    def _on_inline(self, token: Any) -> None:
        self._inline(token.children or [])

    def _on_blockquote_open(self, token: Any) -> None:
        self._block()
        self._quotes += 1

    def _on_blockquote_close(self, token: Any) -> None:
        self._quotes -= 1
        self._block()

    def _on_bullet_list_open(self, token: Any) -> None:
        self._block("\n" if self._lists else "\n\n")
        self._lists.append([])

    def _on_ordered_list_open(self, token: Any) -> None:
        self._block("\n" if self._lists else "\n\n")
        start = token.attrs.get("start", 1)
        self._lists.append([int(start) if isinstance(start, int | str) else 1])

    def _on_bullet_list_close(self, token: Any) -> None:
        self._lists.pop()
        self._block()

    _on_ordered_list_close = _on_bullet_list_close

    def _on_list_item_open(self, token: Any) -> None:
        self._block("\n")
        numbers = self._lists[-1]
        indent = "  " * (len(self._lists) - 1)
        if numbers:
            self._item_prefix = f"{indent}{numbers[0]}. "
            numbers[0] += 1
        else:
            self._item_prefix = f"{indent}{_BULLET} "

    def _on_fence(self, token: Any) -> None:
        self._block()
        language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
        code = (
            Tag("code", f' class="language-{language}"') if _LANGUAGE.fullmatch(language) else CODE
        )
        self._write(token.content.rstrip("\n") or " ", (PRE, code), exclusive=True)

    _on_code_block = _on_fence

    def _on_hr(self, token: Any) -> None:
        self._block()
        self._write(_HR, ())

    def _on_table_open(self, token: Any) -> None:
        self._block()
        self._cells = 0

    def _on_tr_open(self, token: Any) -> None:
        self._block("\n")
        self._cells = 0

    def _on_th_open(self, token: Any) -> None:
        self._cell()
        self._bold = True

    def _on_td_open(self, token: Any) -> None:
        self._cell()

    _on_th_close = _on_heading_close

    def _cell(self) -> None:
        if self._cells:
            self._write(" | ", ())
        self._cells += 1

    # inline

    def _inline(self, children: Sequence[Any]) -> None:
        stack: list[Tag] = [BOLD] if self._bold else []
        for child in children:
            kind = child.type
            if kind == "text":
                self._write(child.content, tuple(stack))
            elif kind in ("softbreak", "hardbreak"):
                self._write("\n", tuple(stack))
            elif kind == "code_inline":
                self._write(child.content, (CODE,), exclusive=True)
            elif kind in ("strong_open", "em_open", "s_open"):
                stack.append({"strong_open": BOLD, "em_open": ITALIC, "s_open": STRIKE}[kind])
            elif kind in ("strong_close", "em_close", "s_close", "link_close"):
                if stack:
                    stack.pop()
            elif kind == "link_open":
                stack.append(_link_tag(str(child.attrs.get("href", ""))))
            elif kind == "image":
                alt = child.content or str(child.attrs.get("src", "")) or "image"
                link = _link_tag(str(child.attrs.get("src", "")))
                self._write(alt, (*stack, link))
            else:  # html_inline and anything newer: its source, as text
                self._write(child.content, tuple(stack))

    def _write(self, text: str, tags: tuple[Tag, ...], *, exclusive: bool = False) -> None:
        """Append text. `exclusive` (code): no quote or other tag may wrap it."""
        if not text:
            return
        tags = tuple(tag for tag in tags if tag.name != "")
        if not exclusive and self._quotes:
            tags = (self._quote, *tags)
        if self._sep:
            common = _common_prefix(self.runs[-1].tags, tags) if self.runs else ()
            self.runs.append(Run(self._sep, common))
            self._sep = ""
        if self._item_prefix:
            outer = (self._quote,) if self._quotes and not exclusive else ()
            self.runs.append(Run(self._item_prefix, outer))
            self._item_prefix = ""
        self.runs.append(Run(text, tags))


def _link_tag(href: str) -> Tag:
    """An `a` tag for links Telegram opens; anything else stays plain text."""
    if not href.lower().startswith(_LINK_SCHEMES):
        return Tag("")
    return Tag("a", f' href="{html.escape(href, quote=True)}"')


def _common_prefix(a: tuple[Tag, ...], b: tuple[Tag, ...]) -> tuple[Tag, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _merged(runs: list[Run]) -> list[Run]:
    merged: list[Run] = []
    for run in runs:
        if merged and merged[-1].tags == run.tags:
            merged[-1] = Run(merged[-1].text + run.text, run.tags)
        elif run.text:
            merged.append(run)
    return merged


def _trimmed(runs: list[Run]) -> list[Run]:
    while runs and not runs[0].text.strip():
        runs.pop(0)
    while runs and not runs[-1].text.strip():
        runs.pop()
    if runs:
        runs[0] = Run(runs[0].text.lstrip("\n"), runs[0].tags)
        runs[-1] = Run(runs[-1].text.rstrip(), runs[-1].tags)
    return runs


# --- runs -> HTML ---------------------------------------------------------------------


def runs_html(runs: Sequence[Run]) -> str:
    """The HTML of `runs`: tags opened and closed around each run, well-formed."""
    out: list[str] = []
    open_tags: tuple[Tag, ...] = ()
    for run in runs:
        keep = len(_common_prefix(open_tags, run.tags))
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
