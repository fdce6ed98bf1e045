"""Charts drawn on the server as inline SVG: no script, no CDN, nothing for the CSP to allow.

Only presentation attributes are used (``fill``, ``stroke``), never ``style``,
because a strict ``style-src 'self'`` blocks inline styles. Every text
value is escaped; the numbers are ints scaled to the view box, so an amount
is never turned into a float on its way to the books, only into a pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["bar_chart", "burn_down_chart"]

_W, _H, _PAD = 600, 160, 24


def _frame(title: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="none">'
        f"<title>{escape(title)}</title>"
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W}" y2="{_H - _PAD}" stroke="#999"/>'
        f"{body}</svg>"
    )


def bar_chart(values: Sequence[int], *, title: str, first_label: str, last_label: str) -> Markup:
    """One bar per value (e.g. payments in each minute), scaled to the largest."""
    top = max(values, default=0) or 1
    width = (_W - _PAD) / max(1, len(values))
    bars = []
    for i, value in enumerate(values):
        height = (_H - 2 * _PAD) * value // top
        x = _PAD + i * width
        bars.append(
            f'<rect x="{x:.1f}" y="{_H - _PAD - height}" width="{max(1.0, width - 1):.1f}" '
            f'height="{height}" fill="#3b6ea5"><title>{value}</title></rect>'
        )
    labels = (
        f'<text x="{_PAD}" y="{_H - 6}" font-size="11" fill="#555">{escape(first_label)}</text>'
        f'<text x="{_W - 4}" y="{_H - 6}" font-size="11" fill="#555" text-anchor="end">'
        f"{escape(last_label)}</text>"
        f'<text x="{_PAD}" y="{_PAD - 8}" font-size="11" fill="#555">max {top}</text>'
    )
    return _frame(title, "".join(bars) + labels)


def burn_down_chart(used_by_hour: Sequence[int], limit_total: int, *, title: str) -> Markup:
    """What is left of the day's limits after each hour since midnight (24 slots)."""
    top = max([limit_total, *used_by_hour, 1])
    step = (_W - _PAD) / 24

    def y(amount: int) -> int:
        return _H - _PAD - (_H - 2 * _PAD) * max(0, amount) // top

    points = [f"{_PAD},{y(limit_total)}"]
    for i, used in enumerate(used_by_hour):
        points.append(f"{_PAD + (i + 1) * step:.1f},{y(limit_total - used)}")
    body = (
        f'<line x1="{_PAD}" y1="{y(limit_total)}" x2="{_W}" y2="{y(limit_total)}" '
        f'stroke="#bbb" stroke-dasharray="4 3"/>'
        f'<polyline points="{" ".join(points)}" fill="none" stroke="#c0392b" stroke-width="2"/>'
        f'<text x="{_PAD}" y="{_H - 6}" font-size="11" fill="#555">00:00 UTC</text>'
        f'<text x="{_W - 4}" y="{_H - 6}" font-size="11" fill="#555" text-anchor="end">24:00</text>'
    )
    return _frame(title, body)
