"""Charts drawn on the server as inline SVG: no script, no third-party origin.

Each chart sits beside the table it draws (the table is the truth; the chart only shows
it), so a chart carries no axis labels it cannot fit: a title for screen readers and a
``<title>`` per bar with its exact figure, shown on hover.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Final

PALETTE: Final = ("#2f6db5", "#e08a1e", "#3a9a5b", "#b5412f", "#7a56b0")


def bars(title: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[int]]],
         width: int = 640, height: int = 180) -> str:
    """Vertical bars: one group per label, one bar per series, scaled to the largest."""
    top = max((v for _name, values in series for v in values), default=0) or 1
    groups = max(len(labels), 1)
    slot = width / groups
    bar = max(slot * 0.8 / max(len(series), 1), 1.0)
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height + 14}"'
           f' width="100%" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    # what every bar of a series shares, escaped and formatted once (a page draws hundreds)
    shared = [(f'" width="{bar:.1f}" height="', f'" fill="{PALETTE[j % len(PALETTE)]}"><title>',
               f" {escape(name)}: ", values, len(values), j * bar)
              for j, (name, values) in enumerate(series)]
    scale = height / top
    for i, label in enumerate(labels):
        text = escape(label)
        left = i * slot + slot * 0.1
        for width_part, fill_part, name_part, values, n, offset in shared:
            v = values[i] if i < n else 0
            h = v * scale
            out.append(f'<rect x="{left + offset:.1f}" y="{height - h:.1f}{width_part}{h:.1f}'
                       f'{fill_part}{text}{name_part}{v}</title></rect>')
    out.append(f'<line x1="0" y1="{height}" x2="{width}" y2="{height}" stroke="#888"/>')
    if labels:  # the first and the last label under the axis
        out.append(f'<text x="0" y="{height + 12}" font-size="10">{escape(labels[0])}</text>')
        if len(labels) > 1:
            out.append(f'<text x="{width}" y="{height + 12}" font-size="10"'
                       f' text-anchor="end">{escape(labels[-1])}</text>')
    out.append("</svg>")
    return "".join(out)


def hbars(title: str, rows: Sequence[tuple[str, int]], width: int = 640,
          row_h: int = 22) -> str:
    """Horizontal bars, one per row (a funnel, a breakdown), each labelled with its figure."""
    top = max((v for _l, v in rows), default=0) or 1
    label_w = 150
    height = row_h * max(len(rows), 1)
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%"'
           f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>']
    for i, (label, v) in enumerate(rows):
        w = v / top * (width - label_w - 60)
        y = i * row_h
        out.append(f'<text x="0" y="{y + row_h * 0.7:.1f}" font-size="12">'
                   f'{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}"'
                   f' fill="{PALETTE[0]}"><title>{escape(label)}: {v}</title></rect>')
        out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + row_h * 0.7:.1f}"'
                   f' font-size="12">{v}</text>')
    out.append("</svg>")
    return "".join(out)
