"""The trial catalog: one SQLite row per trial file in a data folder.

The runner records a trial at its start and at its end; `remdaq catalog rebuild`
recreates the catalog from the files themselves (the files are the truth, the
catalog is an index). Only files inside the data folder are catalogued: a link in
``trials/`` to a file elsewhere is listed as refused, not read. A catalog that
cannot be written (a full disk) raises :class:`CatalogError`, a message, never a
database traceback.
"""

from __future__ import annotations

import math
import os
import sqlite3
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from .reader import TrialFileError, open_trial

__all__ = ["Catalog", "CatalogEntry", "CatalogError", "TRIALS_FOLDER", "CATALOG_FILE"]

TRIALS_FOLDER = "trials"
CATALOG_FILE = "catalog.sqlite"

_COLUMNS = (
    "trial_id",
    "file",
    "title",
    "sample",
    "operator",
    "start_time",
    "end_time",
    "status",
    "final_purity",
    "target",
    "needs_recovery",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    trial_id TEXT PRIMARY KEY,
    file TEXT NOT NULL UNIQUE,      -- relative to the data folder
    title TEXT, sample TEXT, operator TEXT,
    start_time TEXT, end_time TEXT, -- UTC, ISO 8601
    status TEXT NOT NULL,           -- running, success, aborted, failed, interrupted, unreadable
    final_purity REAL,              -- mass fraction of the target oxide, NULL if none
    target TEXT,
    needs_recovery INTEGER NOT NULL DEFAULT 0  -- 1: interrupted, HDF5 tools refuse it until `remdaq recover`
)
"""


class CatalogError(OSError):
    """The catalog database cannot be read or written (full disk, read-only folder, damaged database)."""


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
    needs_recovery: bool = False


class Catalog:
    """The SQLite catalog of one data folder."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / CATALOG_FILE
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise CatalogError(f"{self.data_dir}: cannot create the data folder: {error.strerror or error}") from None
        with self._database() as db:
            db.execute(_SCHEMA)
            known = {row[1] for row in db.execute("PRAGMA table_info(trials)")}
            if "needs_recovery" not in known:  # a catalog made before the column existed
                db.execute("ALTER TABLE trials ADD COLUMN needs_recovery INTEGER NOT NULL DEFAULT 0")

    @contextmanager
    def _database(self):
        """A connection in one transaction; database errors become :class:`CatalogError`."""
        try:
            with closing(sqlite3.connect(self.path, timeout=10)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                with db:
                    yield db
        except sqlite3.Error as error:
            raise CatalogError(
                f"{self.path}: the catalog cannot be updated ({error}); the trial files are "
                "kept and `remdaq catalog rebuild` recreates it"
            ) from None

    def _relative(self, file: str | os.PathLike) -> str:
        """The path relative to the data folder (a link named as the link, not as its target)."""
        pairs = (
            (os.path.abspath(self.data_dir), os.path.abspath(file)),
            (self.data_dir.resolve(), Path(file).resolve()),
        )
        for base, path in pairs:
            try:
                return str(Path(path).relative_to(base))
            except ValueError:
                continue
        return str(Path(file).resolve())

    def record(self, summary: dict) -> None:
        """Insert or update a trial from a :meth:`daq.TrialReader.summary`-like dict."""
        with self._database() as db:
            self._insert(db, summary)

    def _insert(self, db: sqlite3.Connection, summary: dict) -> None:
        purity = summary.get("final_purity")
        row = {
            "trial_id": summary["trial_id"],
            "file": self._relative(summary["file"]),
            "title": summary.get("title", ""),
            "sample": summary.get("sample", ""),
            "operator": summary.get("operator", ""),
            "start_time": summary.get("start_time", ""),
            "end_time": summary.get("end_time", ""),
            "status": summary.get("state", "running"),
            "final_purity": None
            if purity is None or (isinstance(purity, float) and math.isnan(purity))
            else float(purity),
            "target": summary.get("target", ""),
            "needs_recovery": int(bool(summary.get("needs_recovery"))),
        }
        db.execute(
            f"INSERT OR REPLACE INTO trials ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})",
            row,
        )

    def entries(
        self,
        *,
        sample: str | None = None,
        status: str | None = None,
        since: str | None = None,
        until: str | None = None,
        min_purity: float | None = None,
    ) -> list[CatalogEntry]:
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
        with self._database() as db:
            rows = db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM trials {where} ORDER BY start_time DESC", values
            ).fetchall()
        return [CatalogEntry(*row[:-1], needs_recovery=bool(row[-1])) for row in rows]

    def trial_files(self) -> list[Path]:
        """Every trial file under the data folder's trials/ folder (links included; see :meth:`rebuild`)."""
        return sorted((self.data_dir / TRIALS_FOLDER).rglob("*.h5"))

    def _inside(self, path: Path) -> bool:
        try:
            path.resolve().relative_to(self.data_dir.resolve())
        except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
            return False
        return True

    def _scan(self, path: Path) -> dict:
        """The catalog row of one file: its summary, or an "unreadable" row saying why."""
        relative = os.path.relpath(path, self.data_dir)
        if not self._inside(path):
            return {
                "trial_id": f"unreadable:{relative}",
                "file": str(path),
                "state": "unreadable",
                "title": "refused: a link to a file outside the data folder (not read)",
            }
        try:
            with open_trial(path) as trial:
                return trial.summary()
        except (TrialFileError, OSError, KeyError, RuntimeError) as error:
            reason = str(error).removeprefix(f"{path}: ")
            return {
                "trial_id": f"unreadable:{relative}",
                "file": str(path),
                "state": "unreadable",
                "title": f"unreadable: {reason[:200]}",
            }

    def rebuild(self, progress=None) -> list[CatalogEntry]:
        """Scan the trial files again and replace the catalog at once; unreadable files are listed as such.

        ``progress(path)``, if given, is called after each file is read. The old
        catalog stays as it was until every file has been scanned.
        """
        rows = []
        for path in self.trial_files():
            rows.append(self._scan(path))
            if progress is not None:
                progress(path)
        with self._database() as db:
            db.execute("DELETE FROM trials")
            for row in rows:
                self._insert(db, row)
        return self.entries()
