"""The trial file: layout, units, SWMR visibility, clean end, interruption, decimation, catalog."""

import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from daq.catalog import Catalog
from daq.layout import TABLES
from daq.reader import TrialFileError, open_trial
from daq.store import StorageError, TrialMetadata, TrialWriter, writer_lock_path

PIXELS = 64


def metadata(trial_id="T1"):
    return TrialMetadata(trial_id=trial_id, title="test", sample="NdPr lot 1", operator="tester", target="Nd",
                         analytes=("Nd", "Pr"), wavelength_nm=np.linspace(350, 1000, PIXELS),
                         covered_elements=("Nd", "Pr"), calibration_id="cal-1",
                         calibration_arrays={"sensitivity": (np.ones((2, PIXELS)), "absorbance per g/L")})


def furnace_row(i):
    return dict(time=float(i), temperature=20.0 + i, setpoint=100.0, working_setpoint=50.0, output=10.0,
                status_word=0, flag=0)


def spectra_block(n, start=0):
    return dict(time=np.arange(start, start + n, dtype=float), counts=np.full((n, PIXELS), 1000.0),
                integration_time=np.full(n, 0.1), averages=np.ones(n), saturated_pixels=np.zeros(n),
                dark_index=np.zeros(n), reference_index=np.zeros(n), flag=np.zeros(n))


def wait_for_rows(reader, table, rows, timeout_s=10.0):
    """Refresh until the reader sees ``rows`` rows (a condition with a deadline, not a sleep)."""
    import time

    deadline = time.monotonic() + timeout_s
    while reader.rows(table) < rows:
        assert time.monotonic() < deadline, f"{table}: saw {reader.rows(table)} of {rows} rows"
        reader.refresh()
    return reader.rows(table)


def test_every_dataset_is_created_up_front_with_units(tmp_path):
    path = tmp_path / "t.h5"
    writer = TrialWriter(path, metadata())
    writer.close("success")
    with h5py.File(path, "r") as handle:
        for table in TABLES:
            for column in table.columns:
                dataset = handle[table.group][column.name]
                assert "units" in dataset.attrs, f"{table.group}/{column.name} has no units"
        assert handle["entry/instrument/spectrometer/wavelength"].attrs["units"] == "nm"
        assert handle["entry"].attrs["NX_class"] == "NXentry"
        assert handle["entry/purity"].attrs["signal"] == "purity"
        assert handle["entry/purity/purity"] == handle["entry/analysis/purity"]


def test_rows_become_visible_to_a_swmr_reader_before_close(tmp_path):
    path = tmp_path / "t.h5"
    writer = TrialWriter(path, metadata(), flush_interval_s=0.05)
    with open_trial(path) as reader:
        assert reader.state == "running"
        for i in range(10):
            writer.append("furnace", **furnace_row(i))
        writer.append("spectrometer", **spectra_block(5))
        assert wait_for_rows(reader, "furnace", 10) == 10
        assert wait_for_rows(reader, "spectrometer", 5) == 5
        rows, mark = reader.read_new("furnace", 0)
        np.testing.assert_array_equal(rows["temperature"], 20.0 + np.arange(10))
        writer.append("furnace", **furnace_row(10))
        wait_for_rows(reader, "furnace", 11)
        new, mark = reader.read_new("furnace", mark)
        assert list(new["time"]) == [10.0] and mark == 11
        writer.close("success")
        reader.refresh()
        assert reader.state == "success"
        assert reader.end_time


def test_exit_status_must_be_a_known_one(tmp_path):
    writer = TrialWriter(tmp_path / "t.h5", metadata())
    with pytest.raises(ValueError, match="allowed: success, aborted, failed"):
        writer.close("done")
    writer.close("aborted")


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "t.h5"
    TrialWriter(path, metadata()).close("success")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        TrialWriter(path, metadata())
    assert path.read_bytes() == before


def test_a_killed_writer_leaves_a_readable_interrupted_file(tmp_path):
    (tmp_path / "trials").mkdir()
    path = tmp_path / "trials" / "killed.h5"
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {os.fspath(os.path.dirname(__file__))!r})
        from test_trial_file import metadata, furnace_row
        from daq.store import TrialWriter
        writer = TrialWriter({os.fspath(path)!r}, metadata(), flush_interval_s=0.05)
        for i in range(20):
            writer.append("furnace", **furnace_row(i))
        print("ready", flush=True)
        sys.stdin.read()
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout.readline().strip() == b"ready"
    with open_trial(path) as reader:
        wait_for_rows(reader, "furnace", 20)
        assert reader.state == "running"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert reader.state == "interrupted"
    with open_trial(path) as reader:
        assert reader.rows("furnace") == 20
        assert reader.summary()["state"] == "interrupted"
    entries = Catalog(tmp_path).rebuild()
    assert [e.status for e in entries] == ["interrupted"]


def test_decimation_keeps_extremes_and_bounds_points(tmp_path):
    path = tmp_path / "t.h5"
    writer = TrialWriter(path, metadata())
    temperatures = np.sin(np.arange(10_000) / 300.0) * 100 + 500
    temperatures[1234] = 2000.0  # a spike decimation must not hide
    block = {k: np.full(10_000, v) for k, v in furnace_row(0).items()}
    block.update(time=np.arange(10_000.0), temperature=temperatures)
    writer.append("furnace", **block)
    writer.close("success")
    with open_trial(path) as reader:
        trace = reader.decimated("furnace", "temperature", max_points=300)
    assert len(trace.time_s) <= 300
    assert trace.rows == 10_000
    assert trace.maximum.max() == 2000.0
    assert trace.minimum.min() == pytest.approx(temperatures.min())
    assert np.all(trace.minimum <= trace.maximum)


def test_reader_refuses_what_is_not_a_trial_file(tmp_path):
    with pytest.raises(TrialFileError, match="no such trial file"):
        open_trial(tmp_path / "missing.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5 at all" * 100)
    with pytest.raises(TrialFileError, match="not an HDF5 file"):
        open_trial(garbage)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as handle:
        handle["x"] = 1
    with pytest.raises(TrialFileError, match="not a rem-daq trial file"):
        open_trial(other)


def test_catalog_records_and_filters(tmp_path):
    catalog = Catalog(tmp_path)
    for i, (sample, status, purity) in enumerate([("NdPr A", "success", 0.995), ("NdPr B", "aborted", 0.9),
                                                  ("Sm C", "success", float("nan"))]):
        catalog.record({"trial_id": f"T{i}", "file": str(tmp_path / f"trials/T{i}.h5"), "sample": sample,
                        "start_time": f"2026-11-0{i + 1}T00:00:00+00:00", "state": status, "final_purity": purity})
    assert [e.trial_id for e in catalog.entries()] == ["T2", "T1", "T0"]
    assert [e.trial_id for e in catalog.entries(sample="NdPr")] == ["T1", "T0"]
    assert [e.trial_id for e in catalog.entries(status="success", min_purity=0.99)] == ["T0"]
    assert catalog.entries(sample="Sm")[0].final_purity is None
    assert catalog.entries(since="2026-11-02")[-1].trial_id == "T1"
    assert catalog.entries()[0].file == "trials/T2.h5"


def test_writer_lock_is_removed_on_clean_close(tmp_path):
    path = tmp_path / "t.h5"
    writer = TrialWriter(path, metadata())
    assert writer_lock_path(path).exists()
    writer.close("success")
    assert not writer_lock_path(path).exists()


def test_appending_with_wrong_columns_says_which(tmp_path):
    writer = TrialWriter(tmp_path / "t.h5", metadata())
    with pytest.raises(ValueError, match=r"missing columns \['flag'\].*unknown columns \['colour'\]"):
        row = furnace_row(0)
        del row["flag"]
        writer.append("furnace", colour=1, **row)
    writer.close("success")
    with pytest.raises(RuntimeError, match="closed"):
        writer.append("furnace", **furnace_row(1))


def test_write_failure_is_reported_and_flushed_rows_survive(tmp_path):
    """A dataset that can no longer grow stands in for a full disk here; the system test uses a real one."""
    path = tmp_path / "t.h5"
    writer = TrialWriter(path, metadata(), flush_interval_s=0.05)
    writer.append("furnace", **furnace_row(0))
    with open_trial(path) as reader:
        wait_for_rows(reader, "furnace", 1)
    writer.append("spectrometer", **{**spectra_block(1), "counts": np.ones((1, PIXELS + 1))})  # wrong row shape
    import time

    deadline = time.monotonic() + 30.0
    with pytest.raises(StorageError):  # producers learn of the failure on their next append
        for i in range(1, 10**9):
            writer.append("furnace", **furnace_row(i))
            assert time.monotonic() < deadline, "the writer's failure never reached the producer"
    with pytest.raises(StorageError, match="rows up to the last flush are kept"):
        writer.close("success")
    with open_trial(path) as reader:
        assert reader.rows("furnace") >= 1
        assert reader.exit_status == "failed"


def test_queue_is_bounded_in_bytes_so_a_slow_disk_holds_back_producers(tmp_path):
    """Blocks of spectra wait for room instead of piling up in memory (memory stays flat)."""
    path = tmp_path / "t.h5"
    writer = TrialWriter(path, metadata(), flush_interval_s=0.05, max_queued_bytes=64 * PIXELS * 4 * 2)
    block_bytes = sum(np.asarray(v).nbytes for v in spectra_block(50).values())
    for start in range(0, 4000, 50):
        writer.append("spectrometer", **spectra_block(50, start))
        # one block larger than the bound may wait alone; otherwise the bound holds
        assert writer._queued_bytes <= max(writer.max_queued_bytes, block_bytes)
    writer.close("success")
    with open_trial(path) as reader:
        assert reader.rows("spectrometer") == 4000
        np.testing.assert_array_equal(reader.read("spectrometer", columns=("time",))["time"], np.arange(4000.0))
