"""The trial catalog: one SQLite row per trial file in a data folder.

The runner records a trial at its start and at its end; `remdaq catalog rebuild`
recreates the catalog from the files themselves (the files are the truth, the
catalog is an index).
"""

from __future__ import annotations

import math
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from .reader import TrialFileError, open_trial

__all__ = ["Catalog", "CatalogEntry", "TRIALS_FOLDER", "CATALOG_FILE"]

TRIALS_FOLDER = "trials"
CATALOG_FILE = "catalog.sqlite"

_COLUMNS = ("trial_id", "file", "title", "sample", "operator", "start_time", "end_time", "status",
            "final_purity", "target")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,      -- relative to the data folder
    title TEXT, sample TEXT, operator TEXT,
    start_time TEXT, end_time TEXT, -- UTC, ISO 8601
    status TEXT NOT NULL,           -- running, success, aborted, failed, interrupted, unreadable
    final_purity REAL,              -- mass fraction of the target oxide, NULL if none
    target TEXT
)
"""


@dataclass(frozen=True)
class CatalogEntry:
    """One trial as the catalog knows it."""

    trial_id: str
    file: str
    title: str
    sample: str
    operator: str
    start_time: str
    end_time: str
    status: str
    final_purity: float | None
    target: str


class Catalog:
    """The SQLite catalog of one data folder."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / CATALOG_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        return db

    def _relative(self, file: str | os.PathLike) -> str:
        path = Path(file).resolve()
        try:
            return str(path.relative_to(self.data_dir.resolve()))
        except ValueError:
            return str(path)

    def record(self, summary: dict) -> None:
        """Insert or update a trial from a :meth:`daq.TrialReader.summary`-like dict."""
        purity = summary.get("final_purity")
        row = {
            "trial_id": summary["trial_id"], "file": self._relative(summary["file"]),
            "title": summary.get("title", ""), "sample": summary.get("sample", ""),
            "operator": summary.get("operator", ""), "start_time": summary.get("start_time", ""),
            "end_time": summary.get("end_time", ""), "status": summary.get("state", "running"),
            "final_purity": None if purity is None or (isinstance(purity, float) and math.isnan(purity))
            else float(purity),
            "target": summary.get("target", ""),
        }
        with closing(self._connect()) as db, db:
            db.execute(f"INSERT OR REPLACE INTO trials ({', '.join(_COLUMNS)}) "
                       f"VALUES ({', '.join(':' + c for c in _COLUMNS)})", row)

    def entries(self, *, sample: str | None = None, status: str | None = None,
                since: str | None = None, until: str | None = None,
                min_purity: float | None = None) -> list[CatalogEntry]:
        """Trials, newest first, optionally filtered (sample substring, status, start date range, purity)."""
        clauses, values = [], []
        if sample:
            clauses.append("sample LIKE ?")
            values.append(f"%{sample}%")
        if status:
            clauses.append("status = ?")
            values.append(status)
        if since:
            clauses.append("start_time >= ?")
            values.append(since)
        if until:
            clauses.append("start_time <= ?")
            values.append(until)
        if min_purity is not None:
            clauses.append("final_purity >= ?")
            values.append(min_purity)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM trials {where} "
                              "ORDER BY start_time DESC", values).fetchall()
        return [CatalogEntry(*row) for row in rows]

    def trial_files(self) -> list[Path]:
        """Every trial file under the data folder's trials/ folder."""
        return sorted((self.data_dir / TRIALS_FOLDER).rglob("*.h5"))

    def rebuild(self) -> list[CatalogEntry]:
        """Forget the catalog and scan the trial files again; unreadable files are listed as such."""
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM trials")
        for path in self.trial_files():
            try:
                with open_trial(path) as trial:
                    self.record(trial.summary())
            except (TrialFileError, OSError, KeyError, RuntimeError) as error:
                self.record({"trial_id": f"unreadable:{self._relative(path)}", "file": str(path),
                             "title": f"unreadable: {str(error)[:200]}", "state": "unreadable"})
        return self.entries()
