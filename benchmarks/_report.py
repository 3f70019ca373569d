"""Put a benchmark's section into docs/performance.md, leaving the other sections alone."""

from __future__ import annotations

import re
from pathlib import Path

PERFORMANCE_DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"


def write_section(section: str, document: Path = PERFORMANCE_DOC) -> None:
    """Replace the section with the same ``## Title`` line as ``section`` (or append it)."""
    title = section.splitlines()[0]
    if not title.startswith("## "):
        raise ValueError(f"a section starts with '## Title', not {title!r}")
    document.parent.mkdir(parents=True, exist_ok=True)
    text = document.read_text() if document.exists() else "# Performance\n\nMeasured figures; see benchmarks/.\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _match: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    document.write_text(text)
