"""The Markdown -> Telegram HTML renderer and the message splitter."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat.telegram.render import render, render_parts, to_runs
from supervisor.chat.telegram.runs import MAX_MESSAGE_UNITS, split_runs, units
from tests.fakes.telegram_html import HtmlRefused, parse_html, utf16_units
from tests.strategies import telegram_markdown


def visible(html: str) -> str:
    return parse_html(html)


def squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_formatting_maps_to_telegram_tags() -> None:
    html = render(
        "# Plan\n\nSome **bold _it_**, `x < y`, ~~old~~ and [docs](https://e.com/?a=1&b=2)."
    )
    assert html == (
        "<b>Plan</b>\n\nSome <b>bold <i>it</i></b>, <code>x &lt; y</code>, <s>old</s> and "
        '<a href="https://e.com/?a=1&amp;b=2">docs</a>.'
    )


def test_code_block_is_pre_code_with_its_language_and_escaped() -> None:
    assert render("```python\nif a < b & c:\n    pass\n```") == (
        '<pre><code class="language-python">if a &lt; b &amp; c:\n    pass</code></pre>'
    )


def test_raw_html_and_unsafe_links_stay_text() -> None:
    html = render('<script>alert(1)</script> [x](javascript:alert(1)) <a href="y">z</a>')
    assert "<script>" not in html and "<a href=\"y\">" not in html
    assert "&lt;script&gt;" in html
    assert "javascript" not in re.findall(r"<a [^>]*>", html).__str__()
    parse_html(html)


def test_quotes_collapse_and_code_never_nests_inside_them() -> None:
    html = render("> thinking about `x`\n> more")
    assert html.startswith("<blockquote expandable>thinking about </blockquote><code>x</code>")
    parse_html(html)
    assert render("> a", collapse_quotes=False) == "<blockquote>a</blockquote>"


def test_lists_and_tool_lines_read_as_text() -> None:
    html = render("- one\n- two\n  1. inner\n\n🔧 `Bash` `ls -la`")
    assert html == "• one\n• two\n  1. inner\n\n🔧 <code>Bash</code> <code>ls -la</code>"


def test_units_count_utf16() -> None:
    assert units("a😀") == 3 == utf16_units("a😀")


def test_the_validator_refuses_what_telegram_refuses() -> None:
    for bad in ["<div>x</div>", "<b>x", "<b><i>x</b></i>", "<code><b>x</b></code>",
                "<blockquote><blockquote>x</blockquote></blockquote>"]:  # fmt: skip
        with pytest.raises(HtmlRefused):
            parse_html(bad)


def test_forty_thousand_characters_with_a_code_block_across_a_split() -> None:
    prose = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 12 for i in range(60))
    code = "\n".join(f"    line_{i} = compute({i}) < limit & mask  # 😀" for i in range(500))
    text = f"{prose}\n\n```python\n{code}\n```\n\n{prose}"
    assert len(text) >= 40_000
    parts = render_parts(text)
    assert len(parts) >= 10
    split_inside_code = 0
    for part in parts:
        shown = visible(part)  # well-formed, allowed tags only
        assert utf16_units(shown) <= MAX_MESSAGE_UNITS
        assert part.count("<pre>") == part.count("</pre>")
        assert part.count("<code") == part.count("</code>")
        if part.startswith('<pre><code class="language-python">') or part.endswith("</code></pre>"):
            split_inside_code += 1
    assert split_inside_code >= 2  # the block was cut and reopened with its language
    whole = visible(render(text))
    assert "".join(visible(part) for part in parts) == whole
    assert squeezed(whole) == squeezed(visible(render(text)))
    assert "line_499 = compute(499)" in visible(parts[-2] + parts[-1]) or any(
        "line_499" in visible(part) for part in parts
    )


@given(telegram_markdown(), st.integers(min_value=20, max_value=400))
def test_split_parts_fit_are_valid_and_keep_the_text(text: str, limit: int) -> None:
    parts = render_parts(text, limit=limit)
    for part in parts:
        shown = visible(part)  # raises on ill-formed HTML or a tag Telegram lacks
        assert 0 < utf16_units(shown) <= limit
        assert shown.strip()
        assert part.count("<pre>") == part.count("</pre>")
    whole = visible(render(text))
    assert squeezed("".join(visible(part) for part in parts)) == squeezed(whole)


@given(telegram_markdown())
def test_one_message_when_it_fits(text: str) -> None:
    html = render(text)
    if utf16_units(visible(html)) <= MAX_MESSAGE_UNITS and visible(html).strip():
        assert render_parts(text) == [html]


@given(telegram_markdown(), st.text(alphabet="[]abc <>&😀", min_size=1, max_size=8),
       st.integers(min_value=30, max_value=300))  # fmt: skip
def test_prefix_starts_every_part_and_counts(text: str, prefix: str, limit: int) -> None:
    for part in render_parts(text, limit=limit, prefix=prefix):
        shown = visible(part)
        assert shown.startswith(prefix)
        assert utf16_units(shown) <= limit


@given(st.text(max_size=3000), st.integers(min_value=2, max_value=50))
def test_split_runs_never_loses_text(text: str, budget: int) -> None:
    runs = to_runs(text)
    joined = "".join(run.text for part in split_runs(runs, budget) for run in part)
    assert squeezed(joined) == squeezed("".join(run.text for run in runs))


@given(st.text(alphabet="ab😀<&", min_size=1, max_size=400), st.text(alphabet="😀[x]", max_size=4),
       st.integers(min_value=10, max_value=60))  # fmt: skip  (a prefix takes up to 8 units)
def test_hard_cuts_fill_parts_to_the_unit(text: str, prefix: str, limit: int) -> None:
    # No space or newline to cut at: every cut lands exactly at the limit.
    parts = render_parts(text, limit=limit, prefix=prefix)
    for part in parts:
        assert utf16_units(visible(part)) <= limit
    assert "".join(visible(part)[len(prefix) :] for part in parts) == visible(render(text))


def test_blank_stretches_make_no_empty_message() -> None:
    text = "```\nstart\n" + " \n" * 400 + "end\n```"
    parts = render_parts(text, limit=100)
    assert parts and all(visible(part).strip() for part in parts)
    assert visible(parts[0]).startswith("start") and visible(parts[-1]).strip().endswith("end")


def test_an_image_inside_a_link_is_that_link_alone_never_a_link_in_a_link() -> None:
    html = render("See [![the logo](https://e.com/logo.png)](https://e.com/home) and ![x](https://e.com/x.png)")
    assert html.count("<a ") == 2 and "https://e.com/logo.png" not in html
    assert '<a href="https://e.com/home">the logo</a>' in html
    assert visible(html) == "See the logo and x"  # the fake refuses a link in a link


def test_a_link_in_a_link_is_refused_as_telegram_does() -> None:
    with pytest.raises(HtmlRefused, match="can't parse entities"):
        parse_html('<a href="https://a.com">x <a href="https://b.com">y</a></a>')
