"""Tables for people: aligned plain text for the terminal, Markdown for reports. One formatter."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def cell(x: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals, ``nan`` for NaN, ``-`` for None, else ``str(x)``."""
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{digits}f}"
    return "-" if x is None else str(x)


def text_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """Columns separated by two spaces, a dashed rule under the header; ``align`` has one letter
    per column, ``l`` or ``r`` (default: all left)."""
    cells = [[cell(c) for c in header]] + [[cell(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    align = align or "l" * len(header)
    pad = lambda c, w, a: c.rjust(w) if a == "r" else c.ljust(w)  # noqa: E731
    lines = [
        "  ".join(pad(c, w, a) for c, w, a in zip(row, widths, align)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(cell(c) for c in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)
