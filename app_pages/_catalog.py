"""The Trials page's table: the data folder's catalog (daq.Catalog), read without writing the data folder.

When the data folder has a catalog, its rows are used as they are, except that a
trial the catalog still calls "running" is checked against its writer lock
(a killed run stays "running" in the catalog; the file says "interrupted").
When it has none, a catalog is built from the files' own summaries in a
private temporary folder, so the same filters apply and the data folder stays
untouched.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from daq import Catalog, CatalogEntry, TrialFileError, open_trial
from daq.store import writer_is_alive

from ._paths import DataFolder, OutsideDataFolder, confine, list_trials, relative_name

__all__ = ["Filters", "TrialTable", "trial_table", "file_summary", "STATUSES"]

STATUSES = ("running", "success", "aborted", "failed", "interrupted", "unreadable")


@dataclass(frozen=True)
class Filters:
    """What the user filters on; empty fields do not filter."""

    sample: str = ""
    status: str = ""
    since: date | None = None
    until: date | None = None  # inclusive
    min_purity: float | None = None  # mass fraction


@dataclass
class TrialTable:
    """Catalog rows after filtering, where they came from, and files the catalog does not list."""

    entries: list[CatalogEntry]
    from_catalog: bool
    unlisted: list[str]


def file_summary(path: Path) -> dict:
    """A trial file's summary for the catalog; an "unreadable" row when it cannot be read."""
    try:
        with open_trial(path) as trial:
            return trial.summary()
    except (TrialFileError, OSError, KeyError, ValueError, RuntimeError) as error:  # RuntimeError: h5py, corrupt
        reason = str(error).removeprefix(f"{path}: ")
        return {
            "trial_id": f"unreadable:{path.name}",
            "file": str(path),
            "title": f"unreadable: {reason[:200]}",
            "state": "unreadable",
        }


def _query(catalog: Catalog, filters: Filters) -> list[CatalogEntry]:
    # running/interrupted are corrected from the files after the query, so they are filtered after it too
    status = filters.status if filters.status not in ("running", "interrupted") else None
    until = (filters.until + timedelta(days=1)).isoformat() if filters.until else None
    return catalog.entries(
        sample=filters.sample or None,
        status=status or None,
        since=filters.since.isoformat() if filters.since else None,
        until=until,
        min_purity=filters.min_purity,
    )


def entry_path(folder: DataFolder, entry: CatalogEntry) -> Path | None:
    """The file of a catalog row, if it is inside the data folder (None otherwise)."""
    try:
        return confine(folder, entry.file)
    except OutsideDataFolder:
        return None


def trial_table(folder: DataFolder, filters: Filters, summaries=file_summary) -> TrialTable:
    """The filtered trials of a data folder, newest first.

    ``summaries(path) -> dict`` reads one file's summary (the page passes a cached one).
    """
    files = list_trials(folder)
    if folder.catalog.is_file():
        entries = _query(Catalog(folder.path), filters)
        listed = {entry.file for entry in Catalog(folder.path).entries()}
        unlisted = [name for name in (relative_name(folder, path) for path in files) if name not in listed]
        from_catalog = True
    else:
        with tempfile.TemporaryDirectory(prefix="remdaq-app-catalog-") as scratch:
            catalog = Catalog(scratch)
            for path in files:
                summary = dict(summaries(path))
                summary["file"] = str(path)  # absolute: the scratch catalog is not in the data folder
                catalog.record(summary)
            entries = _query(catalog, filters)
        unlisted, from_catalog = [], False
    corrected = []
    for entry in entries:
        if entry.status == "running":
            path = entry_path(folder, entry)
            if path is not None and path.is_file() and not writer_is_alive(path):
                entry = replace(entry, status="interrupted")
        if filters.status and entry.status != filters.status:
            continue
        corrected.append(entry)
    return TrialTable(corrected, from_catalog, unlisted)
