"""The trial catalog: one SQLite row per trial file in a data folder.

The runner records a trial at its start and at its end; `remdaq catalog rebuild`
recreates the catalog from the files themselves (the files are the truth, the
catalog is an index). Product files (``<trial>.product.json`` beside a trial file, :mod:`daq.product`) are
indexed too, in a table of their own: :attr:`CatalogEntry.certified_purity` says which trials have
certified results. Only files inside the data folder are catalogued: a link in
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

__all__ = ["Catalog", "CatalogEntry", "CatalogError", "ProductEntry", "TRIALS_FOLDER", "CATALOG_FILE"]

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


_PRODUCT_COLUMNS = (
    "trial_id",
    "file",
    "created_utc",
    "icp_purity",
    "icp_purity_sigma",
    "live_purity",
    "bias",
    "combined_sigma",
    "consistent",
    "raw_sha256",
)

_PRODUCT_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    trial_id TEXT PRIMARY KEY,      -- the trial the product file certifies
    file TEXT NOT NULL,             -- the product file, relative to the data folder
    created_utc TEXT,               -- UTC, ISO 8601
    icp_purity REAL,                -- target oxide / TREO by ICP (mass fraction)
    icp_purity_sigma REAL,
    live_purity REAL,               -- live UV-Vis purity at the end of the trial
    bias REAL,                      -- live - ICP over the same elements
    combined_sigma REAL,
    consistent INTEGER,             -- 1: |bias| <= 2 combined sigma
    raw_sha256 TEXT                 -- the raw trial file's checksum the product links
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
    certified_purity: float | None = None
    """Target oxide / TREO of the trial's product file (ICP), None when the trial has no certified results."""


@dataclass(frozen=True)
class ProductEntry:
    """A product file as the catalog knows it (one per trial)."""

    trial_id: str
    file: str
    created_utc: str
    icp_purity: float | None
    icp_purity_sigma: float | None
    live_purity: float | None
    bias: float | None
    combined_sigma: float | None
    consistent: bool | None
    raw_sha256: str
    start_time: str = ""  # the trial's, when the catalog knows the trial


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
            db.execute(_PRODUCT_SCHEMA)
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
                f"SELECT {', '.join('trials.' + c for c in _COLUMNS)}, products.icp_purity FROM trials "
                f"LEFT JOIN products ON products.trial_id = trials.trial_id {where} ORDER BY start_time DESC",
                values,
            ).fetchall()
        return [CatalogEntry(*row[:-2], needs_recovery=bool(row[-2]), certified_purity=row[-1]) for row in rows]

    def record_product(self, product) -> None:
        """Insert or update the product file of a trial (a :class:`daq.product.Product`)."""
        with self._database() as db:
            self._insert_product(db, product)

    def _insert_product(self, db: sqlite3.Connection, product) -> None:
        agreement = product.agreement or {}

        def number(value) -> float | None:
            return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)

        row = {
            "trial_id": product.trial_id,
            "file": self._relative(product.path),
            "created_utc": str(product.data.get("created_utc", "")),
            "icp_purity": number(product.purity),
            "icp_purity_sigma": number(product.purity_sigma),
            "live_purity": number(agreement.get("live_purity")),
            "bias": number(agreement.get("difference")),
            "combined_sigma": number(agreement.get("combined_sigma")),
            "consistent": None if "consistent" not in agreement else int(bool(agreement["consistent"])),
            "raw_sha256": product.raw_sha256,
        }
        db.execute(
            f"INSERT OR REPLACE INTO products ({', '.join(_PRODUCT_COLUMNS)}) "
            f"VALUES ({', '.join(':' + c for c in _PRODUCT_COLUMNS)})",
            row,
        )

    def products(self) -> list[ProductEntry]:
        """Every catalogued product file, oldest trial first (the order of a control chart)."""
        with self._database() as db:
            rows = db.execute(
                f"SELECT {', '.join('products.' + c for c in _PRODUCT_COLUMNS)}, COALESCE(trials.start_time, '') "
                "FROM products LEFT JOIN trials ON trials.trial_id = products.trial_id "
                "ORDER BY COALESCE(trials.start_time, products.created_utc)"
            ).fetchall()
        return [
            ProductEntry(
                *row[:8], consistent=None if row[8] is None else bool(row[8]), raw_sha256=row[9], start_time=row[10]
            )
            for row in rows
        ]

    def product_files(self) -> list[Path]:
        """Every product file under the data folder's trials/ folder."""
        from .product import PRODUCT_SUFFIX

        return sorted(p for p in (self.data_dir / TRIALS_FOLDER).rglob(f"*{PRODUCT_SUFFIX}") if self._inside(p))

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
        from .product import ProductError, read_product

        rows = []
        for path in self.trial_files():
            rows.append(self._scan(path))
            if progress is not None:
                progress(path)
        products = []
        for path in self.product_files():
            try:
                products.append(read_product(path))
            except ProductError:
                continue  # not indexed: `remdaq results add --replace` writes it again
        with self._database() as db:
            db.execute("DELETE FROM trials")
            for row in rows:
                self._insert(db, row)
            db.execute("DELETE FROM products")
            for product in products:
                self._insert_product(db, product)
        return self.entries()
