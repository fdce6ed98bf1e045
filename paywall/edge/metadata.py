"""Page metadata that would give the paid part away, taken out of an unpaid answer.

SEO plugins copy an article into its ``<head>``: a JSON-LD ``articleBody``
(often the whole text), a ``description``, ``og:description`` and
``twitter:description`` (often its last or best paragraph). The preview cut
keeps the head whole, so without this a 402 would carry the paid text in its
metadata (DESIGN.md §13: nothing outside the free part leaves unpaid).

:func:`free_metadata` walks every ``<meta>`` tag and every
``<script type="application/ld+json">`` block of a document and keeps a
text value only if it is in the free part (its visible text, compared with
whitespace folded, case ignored, a trailing ellipsis dropped) or is the
document's ``<title>``. Text values are the known prose keys (descriptions,
``articleBody``, ``text``, ``abstract``) and any value of five words or more;
names, dates, URLs and short labels stay. A meta tag that fails loses the
whole tag; a JSON-LD block loses the failing keys (and a block that is not
bounded JSON, or nests too deep, is dropped whole). The rest of the document
is left byte for byte as it was.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any, Final

from farthing.web import JsonBodyError, loads_bounded

__all__ = ["free_metadata", "visible_text"]

PROSE_KEYS: Final = frozenset(
    {
        "description", "og:description", "twitter:description", "dc.description",
        "dcterms.description", "dcterms.abstract", "articlebody", "text", "abstract",
    }
)  # fmt: skip
_PROSE_WORDS_MIN: Final = 5
_JSON_LD_DEPTH_MAX: Final = 32
_JSON_LD_BYTES_MAX: Final = 1024 * 1024
_INVISIBLE: Final = frozenset({"script", "style", "template", "head", "title", "noscript"})
_ELLIPSIS_RE: Final = re.compile(r"\s*(?:\[?(?:…|\.\.\.)\]?)\s*$")


def _fold(text: str) -> str:
    return " ".join(_ELLIPSIS_RE.sub("", text).split()).casefold()


class _TextScanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.parts: list[str] = []
        self.title: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _INVISIBLE:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1] == "title":
            self.title.append(data)
        elif not self.stack:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text a reader sees in ``html`` (no head, script, style or template)."""
    scanner = _TextScanner()
    scanner.feed(html)
    scanner.close()
    return " ".join(scanner.parts)


class _MetadataScanner(HTMLParser):
    """Finds each meta tag and JSON-LD block: its span in the source and its values."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", source)]
        self.metas: list[tuple[int, int, dict[str, str | None]]] = []
        self.json_ld: list[tuple[int, int, int, str]] = []  # start, body start, end, body
        self.title: list[str] = []
        self._open_json_ld: int | None = None
        self._body_start = 0
        self._in_title = False

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        start = self._offset()
        end = start + len(self.get_starttag_text() or "")
        if tag == "meta":
            self.metas.append((start, end, {k.lower(): v for k, v in attrs}))
        elif tag == "script":
            kind = (dict(attrs).get("type") or "").split(";", 1)[0].strip().lower()
            if kind == "application/ld+json":
                self._open_json_ld = start
                self._body_start = end
        elif tag == "title":
            self._in_title = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "meta":
            start = self._offset()
            end = start + len(self.get_starttag_text() or "")
            self.metas.append((start, end, {k.lower(): v for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag == "script" and self._open_json_ld is not None:
            close = self._offset()
            end = self.source.find(">", close)
            end = len(self.source) if end < 0 else end + 1
            body = self.source[self._body_start : close]
            self.json_ld.append((self._open_json_ld, self._body_start, end, body))
            self._open_json_ld = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)


class _Judge:
    """Whether a metadata value may go out unpaid."""

    def __init__(self, free_text: str, title: str) -> None:
        self.free = _fold(free_text)
        self.title = _fold(title)

    def keeps(self, key: str, value: str) -> bool:
        folded = _fold(value)
        if not folded:
            return True
        prose = key.lower() in PROSE_KEYS or len(folded.split()) >= _PROSE_WORDS_MIN
        return not prose or folded == self.title or folded in self.free

    def prune(self, data: Any, key: str = "") -> tuple[Any, bool]:
        """``data`` without the values it may not show, and whether anything went."""
        if isinstance(data, str):
            return (data, False) if self.keeps(key, data) else (None, True)
        if isinstance(data, list):
            kept, changed = [], False
            for item in data:
                value, went = self.prune(item, key)
                changed |= went
                if value is not None:
                    kept.append(value)
            return kept, changed
        if isinstance(data, dict):
            out, changed = {}, False
            for name, item in data.items():
                value, went = self.prune(item, str(name))
                changed |= went
                if value is not None:
                    out[name] = value
            return out, changed
        return data, False


def free_metadata(document: str, free_html: str) -> str:
    """``document`` with each metadata value that ``free_html`` does not show taken out."""
    scanner = _MetadataScanner(document)
    scanner.feed(document)
    scanner.close()
    judge = _Judge(visible_text(free_html), "".join(scanner.title))
    edits: list[tuple[int, int, str]] = []
    for start, end, attrs in scanner.metas:
        content = attrs.get("content")
        key = attrs.get("name") or attrs.get("property") or attrs.get("itemprop") or ""
        if content is not None and not judge.keeps(key, content):
            edits.append((start, end, ""))
    for start, body_start, end, body in scanner.json_ld:
        try:
            data = loads_bounded(body, depth_max=_JSON_LD_DEPTH_MAX, bytes_max=_JSON_LD_BYTES_MAX)
        except JsonBodyError:
            edits.append((start, end, ""))
            continue
        pruned, changed = judge.prune(data)
        if changed:
            # "</" cannot close the script early: JSON allows the escaped slash.
            text = json.dumps(pruned, ensure_ascii=False).replace("</", "<\\/")
            edits.append((body_start, end, text + "</script>"))
    for start, end, replacement in sorted(edits, reverse=True):
        document = document[:start] + replacement + document[end:]
    return document
