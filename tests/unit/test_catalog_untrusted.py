"""The catalog stays inside its data folder, survives a broken database with a message, and reads old catalogs."""

import sqlite3
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from _trial_factory import metadata, trials_folder, write_trial  # noqa: E402

from daq import Catalog  # noqa: E402
from daq.catalog import CatalogError  # noqa: E402


def test_a_link_to_a_file_outside_the_data_folder_is_listed_as_refused_and_not_read(tmp_path):
    data = tmp_path / "data"
    write_trial(trials_folder(data) / "inside.h5", meta=metadata("inside"))
    outside = write_trial(
        tmp_path / "elsewhere.h5", meta=metadata("secret", title="someone else's trial", sample="private sample")
    )
    (data / "trials" / "link.h5").symlink_to(outside)
    entries = {entry.file: entry for entry in Catalog(data).rebuild()}
    assert entries["trials/inside.h5"].status == "success"
    refused = entries["trials/link.h5"]
    assert refused.status == "unreadable" and "outside the data folder" in refused.title
    assert all("secret" not in e.trial_id and "private" not in e.sample for e in entries.values())


def test_a_broken_catalog_database_is_a_message_naming_it(tmp_path):
    (tmp_path / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match="catalog.sqlite: the catalog cannot be updated"):
        Catalog(tmp_path).record({"trial_id": "T", "file": str(tmp_path / "trials/T.h5"), "state": "running"})


def test_rebuild_keeps_the_old_catalog_when_the_scan_fails(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_trial(trials_folder(data) / "a.h5", meta=metadata("a"))
    catalog = Catalog(data)
    catalog.rebuild()

    def fail(_path):
        raise KeyboardInterrupt  # an operator's Ctrl-C in the middle of a long scan

    with pytest.raises(KeyboardInterrupt):
        catalog.rebuild(progress=fail)
    assert [entry.trial_id for entry in catalog.entries()] == ["a"]


def test_a_catalog_made_before_needs_recovery_existed_is_upgraded(tmp_path):
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        db.execute(
            "CREATE TABLE trials (trial_id TEXT PRIMARY KEY, file TEXT NOT NULL UNIQUE, title TEXT, "
            "sample TEXT, operator TEXT, start_time TEXT, end_time TEXT, status TEXT NOT NULL, "
            "final_purity REAL, target TEXT)"
        )
        db.execute("INSERT INTO trials VALUES ('old', 'trials/old.h5', '', '', '', '', '', 'success', 0.9, 'Nd')")
    db.close()
    catalog = Catalog(tmp_path)
    assert catalog.entries()[0].trial_id == "old" and not catalog.entries()[0].needs_recovery
    catalog.record(
        {"trial_id": "new", "file": str(tmp_path / "trials/new.h5"), "state": "interrupted", "needs_recovery": True}
    )
    assert {e.trial_id: e.needs_recovery for e in catalog.entries()} == {"old": False, "new": True}
