"""The content of a trial report as a list of blocks, and the two renderers: PDF (matplotlib) and HTML.

A report is headings, paragraphs, tables and plots (:class:`Plot` draws with matplotlib into a rectangle
of a figure). :func:`render_pdf` flows them onto A4 pages with matplotlib's PdfPages (no hand-made PDF);
:func:`render_html` writes one self-contained HTML page, plots as inline PNG. Both show the same text.
"""

from __future__ import annotations

import base64
import html
import io
import os
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import matplotlib
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

__all__ = ["Heading", "Paragraph", "Table", "Plot", "Block", "PageContent", "render_pdf", "render_html"]

PAGE_IN = (8.27, 11.69)  # A4 portrait
_MARGIN_IN = 0.6
_LINE_IN = 0.165  # one 8.5 pt line
_WRAP = 110  # characters of a paragraph line
_RC: dict[Any, Any] = {"pdf.fonttype": 42, "font.size": 8.5, "pdf.compression": 6}  # TrueType: pdftotext reads it


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 1


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    right: tuple[int, ...] = ()  # columns aligned right (numbers)

    def lines(self) -> list[str]:
        widths = [max([len(self.header[i]), *(len(r[i]) for r in self.rows)]) for i in range(len(self.header))]

        def line(cells: Sequence[str]) -> str:
            return "  ".join(
                (c.rjust(w) if i in self.right else c.ljust(w)) for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        return [line(self.header), "  ".join("-" * w for w in widths), *(line(r) for r in self.rows)]


@dataclass(frozen=True)
class Plot:
    title: str
    draw: Callable[[Figure, tuple[float, float, float, float]], None]
    """Draw into ``figure`` within ``rect`` = (left, bottom, width, height) in figure fractions."""
    height_in: float = 3.0


Block = Heading | Paragraph | Table | Plot


@dataclass
class PageContent:
    """What one PDF page holds: its headings, its plots' titles, and the text lines drawn (for checks)."""

    number: int
    headings: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    items: list[tuple[float, Block, object]] = field(default_factory=list)  # (top y in inches, block, payload)


def _wrap(text: str) -> list[str]:
    out: list[str] = []
    for part in text.split("\n"):
        out.extend(textwrap.wrap(part, _WRAP) or [""])
    return out


def _layout(blocks: Sequence[Block]) -> list[PageContent]:
    usable = PAGE_IN[1] - 2 * _MARGIN_IN - 0.3  # the footer's line
    pages = [PageContent(1)]
    y = 0.0

    def room(height: float) -> None:
        nonlocal y
        if y + height > usable and y > 0:
            pages.append(PageContent(len(pages) + 1))
            y = 0.0

    for index, block in enumerate(blocks):
        if isinstance(block, Heading):
            following = blocks[index + 1] if index + 1 < len(blocks) else None
            keep = 0.0
            if isinstance(following, Plot):
                keep = following.height_in + 0.3
            elif isinstance(following, Table):
                keep = _LINE_IN * min(len(following.rows) + 2, 8)
            elif isinstance(following, Paragraph):
                keep = _LINE_IN * 2
            room(0.35 + keep)  # a heading stays with the start of what follows
            pages[-1].headings.append(block.text)
            pages[-1].items.append((y, block, None))
            y += 0.35 if block.level == 1 else 0.28
        elif isinstance(block, Paragraph):
            for line in _wrap(block.text):
                room(_LINE_IN)
                pages[-1].items.append((y, block, line))
                y += _LINE_IN
            y += 0.06
        elif isinstance(block, Table):
            lines = block.lines()
            room(_LINE_IN * min(len(lines), 4))
            header = lines[:2]
            for number, line in enumerate(lines):
                if number >= 2 and y + _LINE_IN > usable:
                    room(usable)  # a new page, the table's header again
                    for repeated in header:
                        pages[-1].items.append((y, block, repeated))
                        y += _LINE_IN
                pages[-1].items.append((y, block, line))
                y += _LINE_IN
            y += 0.1
        else:
            room(block.height_in + 0.1)
            pages[-1].plots.append(block.title)
            pages[-1].items.append((y, block, None))
            y += block.height_in + 0.15
    return pages


def render_pdf(
    blocks: Sequence[Block],
    out: str | os.PathLike | BinaryIO,
    *,
    footer: str,
    title: str,
    progress: Callable[[str], None] | None = None,
) -> list[PageContent]:
    """Write the blocks as an A4 PDF (to a file, under a temporary name until complete, or to a binary
    stream); the pages as laid out (what each holds)."""
    if not isinstance(out, (str, os.PathLike)):
        return _pdf_pages(blocks, out, footer, title, progress)
    out = Path(out)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        pages = _pdf_pages(blocks, partial, footer, title, progress)
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return pages


def _pdf_pages(
    blocks: Sequence[Block],
    out: Path | BinaryIO,
    footer: str,
    title: str,
    progress: Callable[[str], None] | None,
) -> list[PageContent]:
    pages = _layout(blocks)
    width, height = PAGE_IN
    left = _MARGIN_IN / width
    with matplotlib.rc_context(_RC), PdfPages(out, metadata={"Title": title, "Creator": "rem-daq"}) as pdf:
        for page in pages:
            if progress is not None:
                progress(f"page {page.number} of {len(pages)}")
            figure = Figure(figsize=PAGE_IN)
            for top, block, payload in page.items:
                y = 1.0 - (_MARGIN_IN + top) / height
                if isinstance(block, Heading):
                    figure.text(left, y, block.text, va="top", fontsize=13 if block.level == 1 else 10.5, weight="bold")
                elif isinstance(block, Paragraph):
                    figure.text(left, y, str(payload), va="top")
                elif isinstance(block, Table):
                    figure.text(left, y, str(payload), va="top", family="DejaVu Sans Mono", fontsize=7.6)
                else:
                    plot_top = y - 0.05 / height
                    rect = (
                        left + 0.6 / width,
                        plot_top - (block.height_in - 0.35) / height,
                        1 - 2 * left - 0.7 / width,
                        (block.height_in - 0.55) / height,
                    )
                    block.draw(figure, rect)
            figure.text(left, _MARGIN_IN / 2 / height, f"{footer} · page {page.number} of {len(pages)}", fontsize=7)
            pdf.savefig(figure)
    return pages


def _png(plot: Plot) -> str:
    figure = Figure(figsize=(PAGE_IN[0] - 2 * _MARGIN_IN, plot.height_in))
    plot.draw(figure, (0.1, 0.16, 0.86, 0.72))
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(buffer, format="png", dpi=110)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render_html(
    blocks: Sequence[Block],
    *,
    footer: str,
    title: str,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The blocks as one self-contained HTML page (plots as inline PNG images)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;font-size:14px}"
        "table{border-collapse:collapse;margin:0.5em 0 1em}td,th{border:1px solid #ccc;padding:2px 6px}"
        "td.n{text-align:right;font-family:monospace}th{background:#f3f3f3}img{max-width:100%}</style>",
        "</head><body>",
    ]
    plots = sum(isinstance(b, Plot) for b in blocks)
    drawn = 0
    for block in blocks:
        if isinstance(block, Heading):
            tag = "h1" if block.level == 1 else "h2"
            parts.append(f"<{tag}>{html.escape(block.text)}</{tag}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{html.escape(block.text).replace(chr(10), '<br>')}</p>")
        elif isinstance(block, Table):
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.header) + "</tr>")
            for row in block.rows:
                cells = "".join(
                    f'<td class="n">{html.escape(c)}</td>' if i in block.right else f"<td>{html.escape(c)}</td>"
                    for i, c in enumerate(row)
                )
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</table>")
        else:
            drawn += 1
            if progress is not None:
                progress(f"plot {drawn} of {plots}: {block.title}")
            parts.append(
                f'<figure><img alt="{html.escape(block.title)}" src="data:image/png;base64,{_png(block)}">'
                f"<figcaption>{html.escape(block.title)}</figcaption></figure>"
            )
    parts.append(f"<footer><p><small>{html.escape(footer)}</small></p></footer></body></html>")
    return "\n".join(parts) + "\n"
