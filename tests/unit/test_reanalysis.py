"""Reanalysis: reproduces live results, provenance, skip/force, failures reported, Ctrl-C leaves nothing half-written.

The trials here are written with the real :class:`daq.TrialWriter`, and their
live analysis rows with :func:`daq.pipeline.analyse_counts` one spectrum at a
time against the dark and reference each row names, as the live runner does.
Most tests run the tasks in this process (``workers=0``); one runs them on a
small in-process Dask LocalCluster. tests/system/test_reanalysis_dask.py runs
worker processes, a real scheduler, and a trial from the simulated bench.
"""

import hashlib
import math
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import h5py
import numpy as np
import pytest
from _trial_factory import corrupt_trial, metadata, sensitivity, write_calibration
from click.testing import CliRunner

import analysis
from daq import TrialWriter
from daq.cli import cli
from daq.pipeline import analyse_counts
from daq.reanalysis import STATUSES, ReanalysisStatus, find_trial_files, raw_checksum, read_result, reanalyze

PIXELS = 64
FULL_SCALE = 65535.0


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_live_trial(
    path: Path,
    calibration: analysis.Calibration,
    rows: int = 300,
    *,
    seed: int = 1,
    exit_status: str | None = "success",
    dangling_dark_rows: int = 0,
    trial_id: str | None = None,
) -> Path:
    """A trial whose analysis rows were computed live, spectrum by spectrum, with ``calibration``.

    A new dark every 37 spectra, a second (scaled) reference after 60 % of the
    rows, a few spectra with saturated pixels (flag 2), one failed read (NaN
    counts, flag 1 | 4, NaN results). ``exit_status=None`` leaves the trial
    interrupted; ``dangling_dark_rows`` last spectra then name a dark row that
    was never written (a killed writer flushes spectra before darks).
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    wavelength = np.linspace(350.0, 1000.0, PIXELS)
    truth = sensitivity(wavelength)
    meta = metadata(trial_id or path.stem, pixels=PIXELS, calibration=calibration, calibration_file="live-cal.h5")
    writer = TrialWriter(path, meta, flush_interval_s=0.05)
    lamp = 50000.0 * np.exp(-0.5 * ((wavelength - 650.0) / 250.0) ** 2) + 3000.0
    dark = (900.0 + rng.normal(0.0, 3.0, PIXELS)).astype(np.float32)
    reference = (dark + lamp).astype(np.float32)
    writer.append("dark", time=0.0, counts=dark, integration_time=0.02)
    writer.append("reference", time=0.0, counts=reference, integration_time=0.02)
    dark_index = reference_index = 0
    x = np.linspace(-1.0, 1.0, PIXELS)
    for i in range(rows):
        t = 10.0 * (i + 1)
        if i and i % 37 == 0:
            dark = (900.0 + rng.normal(0.0, 3.0, PIXELS)).astype(np.float32)
            writer.append("dark", time=t, counts=dark, integration_time=0.02)
            dark_index += 1
        if i == int(0.6 * rows):
            reference = (dark + 0.8 * lamp).astype(np.float32)
            writer.append("reference", time=t, counts=reference, integration_time=0.02)
            reference_index += 1
        progress = i / rows
        concentration = np.array([8.0 + 6.0 * progress, 2.5 * (1.0 - progress) + 0.05])
        absorbance = concentration @ truth + 0.01 + 0.004 * x + 0.002 * x**2
        light = (reference - dark) * 10.0 ** (-absorbance)
        counts = (dark + light + rng.normal(0.0, 1.0, PIXELS) * np.sqrt(light) * 0.5).astype(np.float32)
        flag = 0
        if i % 53 == 5:
            counts[10:13] = FULL_SCALE
            flag = 2
        if i == rows // 3:
            counts[:] = np.nan
            flag = 1 | 4
        named_dark = dark_index + 1 if i >= rows - dangling_dark_rows else dark_index
        writer.append(
            "spectrometer",
            time=t,
            counts=counts,
            integration_time=0.02,
            averages=4,
            saturated_pixels=int(np.count_nonzero(counts >= FULL_SCALE)),
            dark_index=named_dark,
            reference_index=reference_index,
            flag=flag,
        )
        if flag & 1:
            nan_k = np.full(2, np.nan)
            writer.append(
                "analysis",
                time=t,
                concentration=nan_k,
                sigma=nan_k,
                purity=math.nan,
                purity_sigma=math.nan,
                residual_rms=math.nan,
            )
            continue
        live = analyse_counts(counts, dark, reference, calibration, "Nd", FULL_SCALE)
        writer.append(
            "analysis",
            time=t,
            concentration=live.concentration_g_per_L[0],
            sigma=live.sigma_g_per_L[0],
            purity=live.purity[0],
            purity_sigma=live.purity_sigma[0],
            residual_rms=live.residual_rms[0],
        )
    if exit_status is not None:
        writer.close(exit_status)
    else:  # as a killed process leaves it: rows flushed, exit status "running", no writer lock held
        writer.close("aborted")
        with h5py.File(path, "r+") as handle:
            handle["entry/exit_status"][()] = b"running"
            handle["entry/end_time"][()] = b""
    return path


@pytest.fixture(scope="module")
def calibrations(tmp_path_factory):
    """Two calibrations of the same instrument from different sets of standards: the live one and a new one."""
    folder = tmp_path_factory.mktemp("calibrations")
    live = write_calibration(folder / "live.h5", pixels=PIXELS, seed=3)
    new = write_calibration(folder / "new.h5", pixels=PIXELS, seed=11)
    assert live.calibration_id != new.calibration_id
    return folder / "live.h5", folder / "new.h5"


@pytest.fixture(scope="module")
def trials(tmp_path_factory, calibrations):
    """Two closed trials (one long enough for several row blocks) written with the live calibration."""
    folder = tmp_path_factory.mktemp("trials")
    live = analysis.Calibration.load(calibrations[0])
    return [
        write_live_trial(folder / "T-long.h5", live, rows=2600, seed=1),
        write_live_trial(folder / "T-short.h5", live, rows=300, seed=2),
    ]


def live_analysis(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        group = handle["entry/analysis"]
        return {
            name: group[name][()]
            for name in ("time", "concentration", "sigma", "purity", "purity_sigma", "residual_rms")
        }


def assert_reproduces_live(result, raw_path: Path, tolerance: float = 1e-9) -> None:
    live = live_analysis(raw_path)
    assert len(result.purity) == len(live["purity"])
    np.testing.assert_array_equal(result.time, live["time"])
    for name, ours in (
        ("purity", result.purity),
        ("purity_sigma", result.purity_sigma),
        ("concentration", result.concentration),
        ("sigma", result.sigma),
        ("residual_rms", result.residual_rms),
    ):
        theirs = live[name]
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{name}: NaN rows differ")
        finite = np.isfinite(theirs)
        assert np.max(np.abs(ours[finite] - theirs[finite])) <= tolerance, name


def test_same_calibration_reproduces_the_live_results_to_1e9(tmp_path, trials, calibrations):
    before = {p: sha256_of(p) for p in trials}
    report = reanalyze(trials, calibrations[0], tmp_path / "out", workers=0, block_rows=1024, progress=False)
    assert report.exit_code == 0 and [o.status for o in report.outcomes] == ["reanalysed", "reanalysed"]
    for raw in trials:
        result = read_result(tmp_path / "out" / f"{raw.stem}.reanalysis.h5")
        assert_reproduces_live(result, raw)
        assert np.isfinite(result.purity).sum() == len(result.purity) - 1  # the failed read stays NaN
        assert result.flag[np.isnan(result.purity)][0] & 1
        assert set(np.unique(result.flag)) == {0, 2, 5}  # saturated rows flagged, read failure kept
        assert result.provenance["calibration_changed"] is False
        assert result.provenance["calibration_id"] == result.provenance["live_calibration_id"]
    assert {p: sha256_of(p) for p in trials} == before  # raw files byte-identical


def test_a_dask_localcluster_gives_the_same_results_as_the_plain_loop(tmp_path, trials, calibrations):
    from distributed import Client, LocalCluster

    reanalyze(trials, calibrations[1], tmp_path / "plain", workers=0, progress=False)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        report = reanalyze(trials, calibrations[1], tmp_path / "dask", client=client, block_rows=1024, progress=False)
        assert client.status == "running"  # a client we gave is left open
    assert report.exit_code == 0, [(o.status, o.message) for o in report.outcomes]
    assert report.executed_by.startswith("dask client of inproc://")
    for raw in trials:
        a = read_result(tmp_path / "plain" / f"{raw.stem}.reanalysis.h5")
        b = read_result(tmp_path / "dask" / f"{raw.stem}.reanalysis.h5")
        for name in ("purity", "purity_sigma", "concentration", "sigma", "residual_rms", "flag", "masked_pixels"):
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=1e-12, err_msg=name)
        assert b.provenance["raw_sha256"] == a.provenance["raw_sha256"] == raw_checksum(raw)


def test_a_new_calibration_changes_the_results_and_the_provenance_says_so(tmp_path, trials, calibrations):
    new = analysis.Calibration.load(calibrations[1])
    report = reanalyze(trials[1:], calibrations[1], tmp_path, workers=0, progress=False)
    assert report.outcomes[0].status == "reanalysed"
    result = read_result(tmp_path / "T-short.reanalysis.h5")
    live = live_analysis(trials[1])
    finite = np.isfinite(live["purity"])
    change = np.abs(result.purity[finite] - live["purity"][finite])
    assert change.max() > 1e-6
    np.testing.assert_allclose(result.purity[finite], live["purity"][finite], atol=0.02)  # same chemistry
    p = result.provenance
    assert p["calibration_id"] == new.calibration_id != p["live_calibration_id"]
    assert p["calibration_changed"] is True
    assert p["calibration_file"] == str(calibrations[1].resolve())
    assert p["raw_file"] == str(trials[1]) and p["raw_trial_id"] == "T-short"


def test_result_file_is_nexus_with_units_and_provenance(tmp_path, trials, calibrations):
    started = datetime.now(UTC)
    reanalyze(trials[1:], calibrations[1], tmp_path, workers=0, progress=False)
    finished = datetime.now(UTC)
    path = tmp_path / "T-short.reanalysis.h5"
    with h5py.File(path, "r") as handle:
        process = handle["entry/reanalysis"]
        assert handle["entry"].attrs["NX_class"] == "NXentry" and process.attrs["NX_class"] == "NXprocess"
        for name in (
            "time",
            "concentration",
            "sigma",
            "purity",
            "purity_sigma",
            "residual_rms",
            "masked_pixels",
            "flag",
            "analytes",
            "program",
            "version",
            "date",
        ):
            assert "units" in process[name].attrs, name
        assert process["purity"].attrs["units"] == "1" and process["concentration"].attrs["units"] == "g/L"
        assert process["residual_rms"].attrs["units"] == "absorbance" and process["time"].attrs["units"] == "s"
        assert handle["entry/purity"].attrs["signal"] == "purity"
        assert handle["entry/purity/purity"] == process["purity"]
        attrs = dict(process.attrs)
    for key in (
        "raw_file",
        "raw_trial_id",
        "raw_sha256",
        "calibration_id",
        "calibration_file",
        "software_version",
        "parameters",
        "created_utc",
        "target_element",
        "covered_elements",
    ):
        assert attrs[key] not in ("", None), key
    created = datetime.fromisoformat(attrs["created_utc"])
    assert created.utcoffset().total_seconds() == 0 and started <= created <= finished
    assert attrs["raw_sha256"] == raw_checksum(trials[1])
    assert '"saturation_counts": 65535.0' in attrs["parameters"]
    lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert lines[0] == (
        "trial,sample,final_purity,mean_purity,covered_elements,rows,status,trial_state,target,"
        "calibration_id,result_file,raw_file,message,final_lack_of_fit,model_mismatch_fraction"
    )
    assert lines[1].startswith("T-short,NdPr lot 7,0.9") and ",Nd Pr,300,reanalysed,success,Nd," in lines[1]


def test_second_run_skips_what_is_done_and_force_redoes_it(tmp_path, trials, calibrations):
    out = tmp_path / "out"
    first = reanalyze(trials, calibrations[1], out, workers=0, block_rows=1024, progress=False)
    stamps = {o.trial_id: o.result_file.stat().st_mtime_ns for o in first.outcomes}
    second = reanalyze(trials, calibrations[1], out, workers=0, block_rows=1024, progress=False)
    assert [o.status for o in second.outcomes] == ["up-to-date", "up-to-date"] and second.exit_code == 0
    assert {o.trial_id: o.result_file.stat().st_mtime_ns for o in second.outcomes} == stamps
    assert [o.final_purity for o in second.outcomes] == [o.final_purity for o in first.outcomes]
    forced = reanalyze(trials, calibrations[1], out, workers=0, force=True, progress=False)
    assert [o.status for o in forced.outcomes] == ["reanalysed", "reanalysed"]
    assert all(o.result_file.stat().st_mtime_ns != stamps[o.trial_id] for o in forced.outcomes)
    other_calibration = reanalyze(trials[1:], calibrations[0], out, workers=0, progress=False)
    assert other_calibration.outcomes[0].status == "reanalysed"
    other_saturation = reanalyze(trials[1:], calibrations[0], out, workers=0, progress=False, saturation_counts=60000.0)
    assert other_saturation.outcomes[0].status == "reanalysed"


def test_changed_raw_counts_are_not_taken_for_done(tmp_path, trials, calibrations):
    out = tmp_path / "out"
    reanalyze(trials[1:], calibrations[1], out, workers=0, progress=False)
    copy = tmp_path / "copy" / "T-short.h5"  # same trial id, one count changed
    copy.parent.mkdir()
    shutil.copy(trials[1], copy)
    with h5py.File(copy, "r+") as handle:
        handle["entry/instrument/spectrometer/counts"][200, 30] += 1.0
    report = reanalyze([copy], calibrations[1], out, workers=0, progress=False)
    assert report.outcomes[0].status == "reanalysed"
    assert (
        read_result(out / "T-short.reanalysis.h5").provenance["raw_sha256"]
        == raw_checksum(copy)
        != raw_checksum(trials[1])
    )


def test_corrupt_missing_and_unsuitable_files_are_reported_while_the_others_succeed(tmp_path, trials, calibrations):
    bad = corrupt_trial(tmp_path / "bad.h5")
    missing = tmp_path / "missing.h5"
    other_instrument = tmp_path / "other.h5"
    write_live_trial(other_instrument, analysis.Calibration.load(calibrations[0]), rows=5)
    with h5py.File(other_instrument, "r+") as handle:
        handle["entry/instrument/spectrometer/wavelength"][0] = 300.0
    before = sha256_of(trials[1])
    result = CliRunner().invoke(
        cli,
        [
            "reanalyze",
            str(bad),
            str(trials[1]),
            str(missing),
            str(other_instrument),
            "--calibration",
            str(calibrations[1]),
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "0",
        ],
    )
    assert result.exit_code == 1, result.output
    statuses = {
        line.split(",")[0]: line.split(",")[6]
        for line in (tmp_path / "out" / "summary.csv").read_text().splitlines()[1:]
    }
    assert statuses == {"bad": "failed", "T-short": "reanalysed", "missing": "failed", "other": "failed"}
    assert "bad.h5: damaged" in result.output
    assert "missing.h5: no such trial file" in result.output
    assert "wavelength axis" in result.output
    assert "1 reanalysed, 3 failed" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["T-short.reanalysis.h5", "summary.csv"]
    assert sha256_of(trials[1]) == before


def test_a_target_the_calibration_does_not_cover_is_reported(tmp_path, trials, calibrations):
    report = reanalyze(trials[1:], calibrations[1], tmp_path, workers=0, target="Sm", progress=False)
    assert report.exit_code == 1 and "target Sm is not among the calibration's analytes" in report.outcomes[0].message


def test_running_trials_are_skipped(tmp_path, calibrations):
    live = analysis.Calibration.load(calibrations[0])
    writer = TrialWriter(tmp_path / "running.h5", metadata("running", pixels=PIXELS, calibration=live))
    try:
        report = reanalyze([tmp_path / "running.h5"], live, tmp_path / "out", workers=0, progress=False)
    finally:
        writer.close("success")
    assert report.outcomes[0].status == "skipped-running" and report.exit_code == 0
    assert not (tmp_path / "out" / "running.reanalysis.h5").exists()


def test_an_interrupted_trial_is_reanalysed_as_far_as_it_goes_and_marked(tmp_path, calibrations):
    live = analysis.Calibration.load(calibrations[0])
    raw = write_live_trial(tmp_path / "cut.h5", live, rows=120, exit_status=None, dangling_dark_rows=2)
    report = reanalyze([raw], calibrations[0], tmp_path / "out", workers=0, progress=False)
    outcome = report.outcomes[0]
    assert (outcome.status, outcome.trial_state, outcome.rows, report.exit_code) == (
        "reanalysed-partial",
        "interrupted",
        120,
        0,
    )
    result = read_result(outcome.result_file)
    assert result.provenance["raw_state"] == "interrupted" and result.provenance["raw_complete"] is False
    assert result.provenance["rows_without_dark_or_reference"] == 2
    assert np.all(result.flag[-2:] & 16) and np.all(np.isnan(result.purity[-2:]))
    live_rows = live_analysis(raw)
    np.testing.assert_allclose(result.purity[:-2], live_rows["purity"][:-2], rtol=0, atol=1e-9)


def test_ctrl_c_leaves_no_half_written_result_and_a_new_run_continues(tmp_path, trials, calibrations):
    out = tmp_path / "out"

    def interrupt_mid_trial(trial_id, rows_written, rows):
        if trial_id == "T-long" and rows_written < rows:  # its result file is half-written now
            raise KeyboardInterrupt

    before = {p: sha256_of(p) for p in trials}
    with pytest.raises(KeyboardInterrupt):
        reanalyze(
            trials[::-1], calibrations[1], out, workers=0, block_rows=1024, progress=False, on_block=interrupt_mid_trial
        )
    assert sorted(p.name for p in out.iterdir()) == ["T-short.reanalysis.h5", "summary.csv"]
    summary = (out / "summary.csv").read_text()
    assert ",reanalysed," in summary and ",not-done," in summary
    read_result(out / "T-short.reanalysis.h5")  # complete and readable
    again = reanalyze(trials, calibrations[1], out, workers=0, block_rows=1024, progress=False)
    assert [o.status for o in again.outcomes] == ["reanalysed", "up-to-date"]
    assert {p: sha256_of(p) for p in trials} == before


def test_a_row_whose_analysis_raises_is_flagged_and_the_others_kept(tmp_path, trials, calibrations, monkeypatch):
    import daq.pipeline

    real = daq.pipeline.analyse_counts

    def failing_on_row_7(counts, *args):
        if np.any(np.all(np.atleast_2d(counts) == poisoned, axis=1)):
            raise ValueError("numerically hopeless spectrum")
        return real(counts, *args)

    with h5py.File(trials[1], "r") as handle:
        poisoned = handle["entry/instrument/spectrometer/counts"][7]
    monkeypatch.setattr(daq.pipeline, "analyse_counts", failing_on_row_7)
    report = reanalyze(trials[1:], calibrations[0], tmp_path, workers=0, progress=False)
    result = read_result(report.outcomes[0].result_file)
    assert result.flag[7] & 8 and math.isnan(result.purity[7])
    assert result.provenance["rows_failed"] == 1
    keep = np.arange(len(result.purity)) != 7
    np.testing.assert_allclose(result.purity[keep], live_analysis(trials[1])["purity"][keep], rtol=0, atol=1e-9)


def test_folders_expand_to_their_trial_files(tmp_path, trials):
    folder = trials[0].parent
    (folder / "x.reanalysis.h5").write_bytes(b"")
    assert find_trial_files([folder, trials[1]]) == sorted(folder.glob("T-*.h5"))
    (folder / "x.reanalysis.h5").unlink()


def test_cli_refuses_workers_with_scheduler_and_a_bad_calibration(tmp_path, trials):
    both = CliRunner().invoke(
        cli,
        [
            "reanalyze",
            str(trials[1]),
            "--calibration",
            "x.h5",
            "--out",
            str(tmp_path),
            "--workers",
            "2",
            "--scheduler",
            "tcp://127.0.0.1:1",
        ],
    )
    assert both.exit_code == 2 and "not both" in both.output
    from daq.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["reanalyze", str(trials[1]), "--calibration", str(trials[1]), "--out", str(tmp_path), "--workers", "0"])
    assert exit_info.value.code == 2


def test_every_status_is_documented():
    assert tuple(STATUSES) == get_args(ReanalysisStatus)  # each status of the type is described, in its order
    text = (Path(__file__).resolve().parents[2] / "docs" / "reanalysis.md").read_text()
    for status in STATUSES:
        assert f"`{status}`" in text, status


def test_the_main_script_is_hidden_from_spawned_workers_only_while_the_own_cluster_starts(monkeypatch):
    """Spawn reads __main__.__file__ / __spec__ to re-import the script in each child: hidden, then put back."""
    import sys
    import types

    from daq import reanalysis

    script = types.ModuleType("__main__")
    script.__file__ = "/somewhere/analyst.py"
    script.__spec__ = types.SimpleNamespace(name="analyst")
    monkeypatch.setitem(sys.modules, "__main__", script)
    with reanalysis._spawned_workers_skip_main_script():
        assert getattr(script, "__file__", None) is None and script.__spec__ is None
    assert script.__file__ == "/somewhere/analyst.py" and script.__spec__.name == "analyst"
    with pytest.raises(KeyboardInterrupt), reanalysis._spawned_workers_skip_main_script():
        raise KeyboardInterrupt
    assert script.__file__ == "/somewhere/analyst.py"


def test_reanalyze_refuses_at_once_in_a_child_that_is_importing_the_main_script(monkeypatch, tmp_path):
    import multiprocessing

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(
        RuntimeError,
        match=r"^reanalyze was called while a child process .* put the call under "
        r'`if __name__ == "__main__":`$',
    ):
        reanalyze([tmp_path], tmp_path / "no-calibration.h5", tmp_path / "out", workers=0)
    assert not (tmp_path / "out").exists()
