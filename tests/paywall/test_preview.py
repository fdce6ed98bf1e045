"""A preview is whole blocks from the start, well-formed, within its share, and never the paid part.

Known examples plus a Hypothesis property over random articles of paragraphs,
headings, lists and inline markup: the preview must be a prefix of the
article (up to the closing tags it adds), parse with balanced tags, hold at
most the share of the visible text, and never cut inside a tag.
"""

from __future__ import annotations

from decimal import Decimal
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from farthing.paywall.edge.preview import split_html, split_preview, split_text


class _Balance(HTMLParser):
    VOID = frozenset({"br", "hr", "img"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ok = True
        self.text = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.ok = False

    def handle_data(self, data: str) -> None:
        self.text += sum(1 for c in data if not c.isspace())


def _visible(html: str) -> int:
    parser = _Balance()
    parser.feed(html)
    return parser.text


def test_html_is_cut_after_a_whole_paragraph_with_open_elements_closed() -> None:
    html = "<article><p>one <b>bold</b> two</p><p>three four five six</p><p>seven</p></article>"
    assert split_html(html, Decimal("0.5")) == "<article><p>one <b>bold</b> two</p></article>"
    assert split_html(html, Decimal("0.1")) == ""
    assert split_preview(html, Decimal(0), "text/html") == ""


def test_no_cut_inside_inline_elements_or_script() -> None:
    # The paragraph inside <span> is not a boundary (cutting there would leave
    # the span's phrase split), and '<p>' inside a script is not markup.
    html = "<p>intro</p><span><p>inside a span</p></span><script>var x = '<p>';</script><p>end</p>"
    assert split_html(html, Decimal("0.9")) == "<p>intro</p>"


def test_markdown_keeps_fenced_code_whole() -> None:
    text = "# Title\n\nIntro.\n\n```\ncode\n\nstill code\n```\n\nThe paid conclusion is long.\n"
    preview = split_text(text, Decimal("0.6"))
    assert preview.count("```") in (0, 2)
    assert "paid conclusion" not in preview
    assert split_preview(text, Decimal("0.6"), "text/markdown; charset=utf-8") == preview


def test_other_media_types_have_no_preview() -> None:
    assert split_preview('{"a": 1}', Decimal("0.5"), "application/json") == ""


_inline = st.sampled_from(
    ["plain words here", "<b>bold</b> text", '<a href="/x">a link</a> and more', "é ü 汉字"]
)
_block = st.one_of(
    st.builds(
        lambda parts: "<p>" + " ".join(parts) + "</p>", st.lists(_inline, min_size=1, max_size=3)
    ),
    st.builds(lambda t: f"<h2>{t}</h2>", _inline),
    st.builds(
        lambda items: "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>",
        st.lists(_inline, min_size=1, max_size=3),
    ),
    st.just("<hr>"),
)


@settings(max_examples=150, deadline=None)
@given(
    blocks=st.lists(_block, min_size=1, max_size=12), share=st.integers(min_value=0, max_value=99)
)
def test_html_previews_are_whole_balanced_prefixes_within_the_share(
    blocks: list[str], share: int
) -> None:
    article = "<html><body><article>" + "\n".join(blocks) + "</article></body></html>"
    fraction = Decimal(share) / 100
    preview = split_html(article, fraction)
    if not preview:
        return
    body = preview.removesuffix("</article></body></html>")
    assert article.startswith(body)
    assert body.endswith(("</p>", "</h2>", "</ul>", "<hr>"))  # a block boundary, never mid-tag
    checker = _Balance()
    checker.feed(preview)
    assert checker.ok and checker.stack == []
    assert _visible(preview) <= fraction * _visible(article)
    assert _visible(preview) < _visible(article)
