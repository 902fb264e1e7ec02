"""Telegram's HTML parse mode, as the fake Bot API (and the rendering tests) judge it.

`parse_html` returns the visible text of a message sent with `parse_mode: "HTML"`, or
raises `HtmlRefused` with words like Telegram's ("can't parse entities: ..."). Rules, from
the Bot API's formatting options: only the supported tags (b/strong, i/em, u/ins,
s/strike/del, span class="tg-spoiler", tg-spoiler, a href, code, pre, blockquote
[expandable], tg-emoji); every tag closed, in order; code and pre hold no other tag
except a single code inside pre; blockquotes and links are not nested. Stricter than Telegram on
purpose in one place: Telegram silently drops a disallowed nesting, we refuse it, so a
renderer that produces one is caught.
"""

from __future__ import annotations

import html.parser

_TAGS = {
    "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler",
    "a", "code", "pre", "blockquote", "tg-emoji",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href"},
    "code": {"class"},
    "span": {"class"},
    "blockquote": {"expandable"},
    "tg-emoji": {"emoji-id"},
}


class HtmlRefused(ValueError):
    pass


class _Parser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _TAGS:
            raise HtmlRefused(f'Unsupported start tag "{tag}"')
        for name, value in attrs:
            if name not in _ATTRIBUTES.get(tag, set()):
                raise HtmlRefused(f'Unsupported attribute "{name}" in tag "{tag}"')
            if tag == "a" and not value:
                raise HtmlRefused("Empty URL in a link")
            if tag == "span" and value != "tg-spoiler":
                raise HtmlRefused('Tag "span" must have class "tg-spoiler"')
        if tag == "span" and not attrs:
            raise HtmlRefused('Tag "span" must have class "tg-spoiler"')
        if self.stack and self.stack[-1] in ("code", "pre") and not (
            tag == "code" and self.stack[-1] == "pre"
        ):
            raise HtmlRefused(f'Tag "{tag}" can\'t be inside "{self.stack[-1]}"')
        if tag == "blockquote" and "blockquote" in self.stack:
            raise HtmlRefused("Blockquotes can't be nested")
        if tag == "a" and "a" in self.stack:  # "All other entities can't contain each other"
            raise HtmlRefused("Links can't be nested")
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise HtmlRefused(f'Unsupported start tag "{tag}/"')

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise HtmlRefused(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        raise HtmlRefused("Unsupported comment")

    def handle_decl(self, decl: str) -> None:
        raise HtmlRefused("Unsupported declaration")

    def handle_pi(self, data: str) -> None:
        raise HtmlRefused("Unsupported processing instruction")


def parse_html(text: str) -> str:
    """The visible text of `text` in Telegram's HTML parse mode."""
    parser = _Parser()
    try:
        parser.feed(text)
        parser.close()
    except HtmlRefused as refused:
        raise HtmlRefused(f"Bad Request: can't parse entities: {refused}") from None
    if parser.stack:
        raise HtmlRefused(
            f'Bad Request: can\'t parse entities: Can\'t find end tag corresponding to start '
            f'tag "{parser.stack[-1]}"'
        )
    return "".join(parser.text)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2
