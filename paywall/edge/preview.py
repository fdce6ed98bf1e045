"""The free preview of an article: its first share, cut only between whole blocks.

HTML is cut just after the end tag of a block element (a paragraph, heading,
list, table, figure, quote, ``pre`` or ``div``), never inside a tag or an
inline element; the elements still open at the cut (``<article>``, ``<body>``)
are closed, so the preview is well-formed. Markdown and plain text are cut at
blank lines, never inside a fenced code block.

The share is measured in visible text (scripts, styles and markup do not
count): the preview is the longest run of whole blocks from the start whose
text is at most ``fraction`` of the article's. So a one-paragraph article
shows nothing rather than everything: a preview never gives the paid part away.
A third of nine paragraphs of unequal length may well be two paragraphs.

A route may instead (or as well) name ``blocks``: at most that many whole
blocks, counted as they end (a list or a nested ``div`` counts each block
that ends inside it). With both, the preview is the shorter. Either way it is
never the whole article.

An HTML preview keeps the document's ``<head>``, but not the metadata in it
that holds paid text (a JSON-LD ``articleBody``, an ``og:description`` that
quotes a later paragraph): :func:`farthing.paywall.edge.metadata.free_metadata`
keeps only the values the preview itself shows.
"""

from __future__ import annotations

import re
from decimal import Decimal
from html.parser import HTMLParser
from typing import Final

from farthing.paywall.edge.metadata import free_metadata

__all__ = ["BLOCK_TAGS", "split_html", "split_preview", "split_text"]

BLOCK_TAGS: Final = frozenset(
    {
        "address", "aside", "blockquote", "details", "div", "dl", "fieldset", "figure",
        "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "ol",
        "p", "pre", "section", "table", "ul",
    }
)  # fmt: skip
_VOID_TAGS: Final = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)
_INVISIBLE_TAGS: Final = frozenset({"script", "style", "template", "head", "title"})
_FENCE_RE: Final = re.compile(r"^\s{0,3}(```|~~~)")


def split_preview(
    body: str, fraction: Decimal, media_type: str, *, blocks: int | None = None
) -> str:
    """The free part of ``body``: HTML by tag, markdown and text by paragraph."""
    if fraction <= 0 or blocks == 0 or not body:
        return ""
    kind = media_type.split(";", 1)[0].strip().lower()
    if kind in ("text/html", "application/xhtml+xml"):
        preview = split_html(body, fraction, blocks=blocks)
        return free_metadata(preview, preview) if preview else ""
    if kind.startswith("text/"):
        return split_text(body, fraction, blocks=blocks)
    return ""  # JSON, images, ...: no safe block boundary to cut at


def _visible_length(text: str) -> int:
    return sum(1 for char in text if not char.isspace())


class _BlockScanner(HTMLParser):
    """Records, after each block element closes, where it ends and what is still open."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0]
        for match in re.finditer("\n", source):
            self.line_starts.append(match.end())
        self.stack: list[str] = []
        self.text_length = 0
        self.cuts: list[tuple[int, int, tuple[str, ...]]] = []  # (offset, text so far, open tags)

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def _tag_end(self, start: int) -> int:
        end = self.source.find(">", start)
        return len(self.source) if end < 0 else end + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            if tag in BLOCK_TAGS and not self._inside_inline():
                self._cut(self._tag_end(self._offset()))
            return
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in BLOCK_TAGS and not self._inside_inline():
            self._cut(self._tag_end(self._offset()))

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.stack:
            return  # a stray end tag: browsers ignore it, and so does the cut
        end = self._tag_end(self._offset())
        while self.stack:
            if self.stack.pop() == tag:
                break
        if tag in BLOCK_TAGS and not self._inside_inline():
            self._cut(end)

    def handle_data(self, data: str) -> None:
        if not any(tag in _INVISIBLE_TAGS for tag in self.stack):
            self.text_length += _visible_length(data)

    def _inside_inline(self) -> bool:
        # Cutting inside <a> or <span> would split a phrase: only cut where
        # every open element is itself a block or a page-level container.
        containers = BLOCK_TAGS | {
            "html",
            "body",
            "main",
            "article",
            "li",
            "td",
            "th",
            "tr",
            "tbody",
            "thead",
        }
        return any(tag not in containers for tag in self.stack)

    def _cut(self, offset: int) -> None:
        self.cuts.append((offset, self.text_length, tuple(self.stack)))


def split_html(body: str, fraction: Decimal, *, blocks: int | None = None) -> str:
    """The longest prefix of whole HTML blocks within ``fraction`` of the text (and ``blocks``)."""
    scanner = _BlockScanner(body)
    scanner.feed(body)
    scanner.close()
    budget = Decimal(scanner.text_length) * fraction
    cuts = scanner.cuts if blocks is None else scanner.cuts[:blocks]
    best: tuple[int, int, tuple[str, ...]] | None = None
    for cut in cuts:
        if cut[1] <= budget and cut[1] < scanner.text_length:
            best = cut
    if best is None:
        return ""
    offset, _, still_open = best
    closing = "".join(f"</{tag}>" for tag in reversed(still_open))
    return body[:offset] + closing


def split_text(body: str, fraction: Decimal, *, blocks: int | None = None) -> str:
    """The longest prefix of whole paragraphs (blank-line separated) within ``fraction``
    (and at most ``blocks`` of them)."""
    lines = body.splitlines(keepends=True)
    total = _visible_length(body)
    budget = Decimal(total) * fraction
    in_fence = False
    seen = 0
    offset = 0
    best = 0
    ended = 0  # paragraphs ended so far (a run of blank lines ends one)
    previous_blank = True
    for line in lines:
        if _FENCE_RE.match(line):
            in_fence = not in_fence
        offset += len(line)
        seen += _visible_length(line)
        blank = not line.strip()
        if not in_fence and blank:
            ended += 0 if previous_blank else 1
            if blocks is not None and ended > blocks:
                break
            if seen <= budget and seen < total:
                best = offset
        previous_blank = blank
    return body[:best].rstrip() + "\n" if best else ""
