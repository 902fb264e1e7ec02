"""The core's Markdown-ish text as Telegram HTML, in messages of at most 4,096 characters.

Owns the look of text in Telegram: Markdown (parsed by markdown-it-py, CommonMark plus
tables and strikethrough) becomes a flat list of `runs.Run`s, each a piece of visible text
with the tags around it; `runs.split_runs` cuts the runs into messages; `runs.runs_html`
writes one message's HTML. Pure: text in, text out; it must never do I/O.

Telegram's rules (FACTS.md, "Streaming an answer"), which every output keeps:
- only the tags b, i, s, u, code, pre, a (http, https, tg, mailto links) and blockquote
  (`expandable` for a collapsed one); text escaped (`&`, `<`, `>`; `"` in attributes);
- code and pre hold nothing else (a code block is `<pre><code class="language-x">`);
  blockquotes are never nested;
- a message holds 1-4,096 characters of text after entity parsing, counted in UTF-16
  code units (an emoji outside the BMP counts 2).
"""
from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from typing import Any

from supervisor.chat.telegram.runs import (
    BOLD,
    CODE,
    ITALIC,
    MAX_MESSAGE_UNITS,
    PRE,
    STRIKE,
    Run,
    Tag,
    common_prefix,
    runs_html,
    split_runs,
    units,
)

_LINK_SCHEMES = ("http://", "https://", "tg://", "mailto:")
_LANGUAGE = re.compile(r"[A-Za-z0-9_+#.-]{1,32}")
_HR = "──────────"
_BULLET = "•"


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
                # Inside a link (`[![alt](img)](url)`) it stays that link: Telegram refuses
                # a link in a link.
                inside_link = any(tag.name == "a" for tag in stack)
                link = Tag("") if inside_link else _link_tag(str(child.attrs.get("src", "")))
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
            common = common_prefix(self.runs[-1].tags, tags) if self.runs else ()
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


