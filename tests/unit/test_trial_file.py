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
    return TrialMetadata(
        trial_id=trial_id,
        title="test",
        sample="NdPr lot 1",
        operator="tester",
        target="Nd",
        analytes=("Nd", "Pr"),
        wavelength_nm=np.linspace(350, 1000, PIXELS),
        covered_elements=("Nd", "Pr"),
        calibration_id="cal-1",
        calibration_arrays={"sensitivity": (np.ones((2, PIXELS)), "absorbance per g/L")},
    )


def furnace_row(i):
    return dict(
        time=float(i), temperature=20.0 + i, setpoint=100.0, working_setpoint=50.0, output=10.0, status_word=0, flag=0
    )


def spectra_block(n, start=0):
    return dict(
        time=np.arange(start, start + n, dtype=float),
        counts=np.full((n, PIXELS), 1000.0),
        integration_time=np.full(n, 0.1),
        averages=np.ones(n),
        saturated_pixels=np.zeros(n),
        dark_index=np.zeros(n),
        reference_index=np.zeros(n),
        flag=np.zeros(n),
    )


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
    for i, (sample, status, purity) in enumerate(
        [("NdPr A", "success", 0.995), ("NdPr B", "aborted", 0.9), ("Sm C", "success", float("nan"))]
    ):
        catalog.record(
            {
                "trial_id": f"T{i}",
                "file": str(tmp_path / f"trials/T{i}.h5"),
                "sample": sample,
                "start_time": f"2026-11-0{i + 1}T00:00:00+00:00",
                "state": status,
                "final_purity": purity,
            }
        )
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


# -- NeXus: the target element, links, the calibration (format 1.2) --------------------------------------------


def test_the_target_element_is_not_nexus_s_link_attribute_and_links_name_their_original(tmp_path):
    from daq.layout import FILE_FORMAT, PURITY_LINKS

    path = tmp_path / "t.h5"
    TrialWriter(path, metadata()).close("success")
    with h5py.File(path, "r") as handle:
        assert handle["entry"].attrs["file_format"] == FILE_FORMAT == "rem-daq trial 2.0"  # NeXus since 1.2
        analysis = handle["entry/analysis"]
        assert analysis.attrs["target_element"] == "Nd" and "target" not in analysis.attrs
        for name, original in PURITY_LINKS.items():
            assert handle["entry/purity"][name] == handle[original]  # one dataset, two paths
            assert handle[original].attrs["target"] == original
        # every NeXus `target` in the file is an absolute path that exists (a link), never an element symbol
        targets = []
        handle.visititems(lambda name, obj: targets.append(obj.attrs["target"]) if "target" in obj.attrs else None)
        assert targets and all(t.startswith("/") and t in handle for t in targets)
        calibration = analysis["calibration"]
        assert calibration.attrs["NX_class"] == "NXdata" and calibration.attrs["signal"] == "sensitivity"
    with open_trial(path) as trial:
        assert trial.target_element == "Nd" and trial.summary()["target"] == "Nd"
        assert trial.analysis_attrs["target_element"] == trial.analysis_attrs["target"] == "Nd"
        assert set(trial.calibration_arrays()) == {"sensitivity"}


def as_format_1_1(path):
    """Turn a trial file into what format 1.1 wrote: the target element in @target, links without NeXus
    @target, the calibration an NXcollection (the raw datasets are the same)."""
    with h5py.File(path, "r+") as handle:
        handle["entry"].attrs["file_format"] = "rem-daq trial 1.1"
        analysis = handle["entry/analysis"]
        analysis.attrs["target"] = analysis.attrs["target_element"]
        del analysis.attrs["target_element"]
        for name in ("purity", "time"):
            del analysis[name].attrs["target"]
        calibration = analysis["calibration"]
        calibration.attrs["NX_class"] = "NXcollection"
        for key in ("signal", "wavelength_indices"):
            if key in calibration.attrs:
                del calibration.attrs[key]
        for dataset in calibration.values():
            del dataset.attrs["long_name"]
    return path


def test_a_file_of_format_1_1_with_the_target_in_its_target_attribute_reads_the_same(tmp_path):
    from click.testing import CliRunner

    from daq.cli import cli

    (tmp_path / "trials").mkdir()
    new, old = tmp_path / "trials" / "new.h5", tmp_path / "trials" / "old.h5"
    for path in (new, old):
        writer = TrialWriter(path, metadata(path.stem))
        for i in range(5):
            writer.append("furnace", **furnace_row(i))
        writer.append("spectrometer", **spectra_block(3))
        writer.append(
            "analysis",
            time=np.arange(3.0),
            concentration=np.full((3, 2), 5.0),
            sigma=np.full((3, 2), 0.1),
            purity=np.full(3, 0.75),
            purity_sigma=np.full(3, 0.01),
            residual_rms=np.full(3, 1e-3),
            lack_of_fit=np.ones(3),
        )
        writer.close("success")
    as_format_1_1(old)
    with open_trial(new) as a, open_trial(old) as b:
        assert (a.format_version, b.format_version) == ((2, 0), (1, 1))
        # a 1.x file is a furnace, a spectrometer and one stream, as is a 2.0 file of a station of that form
        assert (
            a.instruments()
            == b.instruments()
            == (
                ("furnace", "temperature_controller"),
                ("spectrometer", "spectrometer"),
            )
        )
        assert a.streams() == b.streams() == ("spectrometer",)
        assert a.tables() == b.tables() == tuple(t.name for t in TABLES)
        assert a.target_element == b.target_element == "Nd"
        assert a.analysis_attrs["target"] == b.analysis_attrs["target"] == "Nd"
        assert b.analysis_attrs["target_element"] == "Nd"
        ignore = {"file", "trial_id", "start_time", "end_time"}
        assert {k: v for k, v in a.summary().items() if k not in ignore} == {
            k: v for k, v in b.summary().items() if k not in ignore
        }
        assert a.summary()["final_purity"] == 0.75
        assert a.calibration_arrays().keys() == b.calibration_arrays().keys()
    shown = {}
    for path in (new, old):
        result = CliRunner().invoke(cli, ["show", str(path)])
        assert result.exit_code == 0, result.output
        shown[path.stem] = [
            line
            for line in result.output.splitlines()
            if not line.startswith(("file ", "trial_id ", "start_time ", "end_time "))
        ]
    assert shown["new"] == shown["old"] and any(line.split() == ["target", "Nd"] for line in shown["old"])
    entries = {e.trial_id: e for e in Catalog(tmp_path).rebuild()}
    assert entries["old"].target == entries["new"].target == "Nd"


def test_a_target_holding_an_hdf5_path_is_never_taken_for_an_element():
    from daq.layout import target_element

    assert target_element({"target_element": "Pr", "target": "/entry/analysis"}) == "Pr"
    assert target_element({"target": b"Nd"}) == "Nd"
    assert target_element({"target": "/entry/analysis/purity"}) == ""
    assert target_element({}) == ""
