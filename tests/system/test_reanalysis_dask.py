"""Reanalysis on real Dask processes: the default LocalCluster of `remdaq reanalyze`, a `dask scheduler` with two
`dask worker` processes on 127.0.0.1, and Ctrl-C at the terminal; with a trial run on the simulated bench.

The bench trial is made by `python -m daq run` (simulators speaking Modbus RTU
and SCPI) with the session's bench calibration; its live purity must come back
to 1e-9. The other trials are synthetic (tests/_trial_factory.py).
"""

import hashlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
from _bench import run_remdaq, sim_station, start_remdaq, stop_process
from _trial_factory import corrupt_trial, write_calibration, write_trial
from distributed import Client

import analysis
from daq.reanalysis import raw_checksum, read_result, reanalyze

pytestmark = pytest.mark.system

DASK = Path(sys.executable).with_name("dask")
BENCH_SPEED = 600.0  # simulated seconds per wall second of the bench trial
RECIPE = """\
[recipe]
title = "reanalysis check"
sample = "SX raffinate"
operator = "test"
analytes = ["Nd", "Pr", "Sm", "Er", "Ho"]
target = "Nd"
duration_min = 60
wall_clock_limit_min = 3
scenario = "pr-nd-countercurrent"

[spectrometer]
integration_time_s = 0.02
averages = 4
interval_s = 15.0
dark = "every"
dark_every_n = 40
on_saturation = "flag"
"""


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def summary_statuses(out: Path) -> dict[str, str]:
    lines = (out / "summary.csv").read_text().splitlines()[1:]
    return {line.split(",")[0]: line.split(",")[6] for line in lines}


@pytest.fixture(scope="module")
def bench_trial(sim_calibration, tmp_path_factory) -> Path:
    """A trial from the simulated bench: an SX raffinate with rising Nd purity, a new dark every 40 spectra.

    On a clock twice the shipped station's: the hour's 240 spectra take 6 s of wall time instead of 12.
    """
    folder = tmp_path_factory.mktemp("bench")
    recipe = folder / "recipe.toml"
    recipe.write_text(RECIPE)
    station = sim_station(folder, speed=BENCH_SPEED)
    done = run_remdaq(
        "run",
        recipe,
        "--station",
        station,
        "--data-dir",
        folder / "data",
        "--calibration",
        sim_calibration,
        timeout_s=240,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    with h5py.File(path, "r") as handle:
        assert len(np.unique(handle["entry/instrument/spectrometer/dark_index"][()])) > 1
        assert np.nanmax(handle["entry/analysis/purity"][()]) > 0.5
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> dict:
    """A calibration and five synthetic trials of 256-px spectra (one short, four of 24,000 spectra)."""
    folder = tmp_path_factory.mktemp("synthetic")
    calibration = folder / "calibration.h5"
    write_calibration(calibration)
    trials = [write_trial(folder / "S0-short.h5", duration_s=600.0, spectrum_period_s=1.0)]
    for index in range(1, 5):
        trials.append(
            write_trial(
                folder / f"S{index}.h5",
                duration_s=24000.0,
                spectrum_period_s=1.0,
                furnace_period_s=60.0,
                block_s=6000.0,
            )
        )
    return {"calibration": calibration, "trials": trials}


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1; yields the scheduler address."""
    assert DASK.is_file(), f"{DASK}: the dask command line is missing (pip install 'rem-daq[cluster]')"
    logs = tmp_path_factory.mktemp("dask")
    process = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes = [process]
    try:
        address = None
        for line in process.stderr:  # blocks until the scheduler logs its address (or exits: EOF)
            if "Scheduler at:" in line:
                address = line.split("Scheduler at:")[1].strip()
                break
        assert address and address.startswith("tcp://127.0.0.1:"), "dask scheduler did not start"
        drain = threading.Thread(target=process.stderr.read, daemon=True)  # keep its log pipe from filling
        drain.start()
        for name in ("w1", "w2"):
            log = open(logs / f"{name}.log", "w")
            processes.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                        "--name",
                        name,
                    ],
                    stdout=log,
                    stderr=log,
                )
            )
            log.close()
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for worker_or_scheduler in reversed(processes):
            stop_process(worker_or_scheduler, timeout_s=30)


def test_cli_on_its_own_local_cluster_reproduces_the_bench_trial_to_1e9(bench_trial, sim_calibration, tmp_path):
    before = sha256_of(bench_trial)
    out = tmp_path / "out"
    process = start_remdaq("reanalyze", bench_trial, "--calibration", sim_calibration, "--out", out, "--workers", "2")
    stdout, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr
    assert "1 reanalysed" in stdout and "Traceback" not in stderr
    result = read_result(out / f"{bench_trial.stem}.reanalysis.h5")
    with h5py.File(bench_trial, "r") as handle:
        live = {name: handle["entry/analysis"][name][()] for name in ("purity", "concentration", "purity_sigma")}
    for name, live_values in live.items():
        ours = getattr(result, name)
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(live_values))
        finite = np.isfinite(live_values)
        assert finite.sum() > 100 and np.max(np.abs(ours[finite] - live_values[finite])) <= 1e-9, name
    p = result.provenance
    assert p["calibration_changed"] is False and p["executed_by"].startswith("dask LocalCluster of 2 worker")
    assert p["raw_sha256"] == raw_checksum(bench_trial) and p["raw_state"] == "success"
    assert summary_statuses(out) == {bench_trial.stem: "reanalysed"}
    assert sha256_of(bench_trial) == before


def test_a_scheduler_with_two_worker_processes_reanalyses_reports_skips_and_forces(scheduler, synthetic, tmp_path):
    trials = synthetic["trials"]
    bad = corrupt_trial(tmp_path / "bad.h5")
    before = {p: sha256_of(p) for p in trials}
    out = tmp_path / "out"

    def run(*paths, extra=()):
        process = start_remdaq(
            "reanalyze",
            *paths,
            "--calibration",
            synthetic["calibration"],
            "--out",
            out,
            "--scheduler",
            scheduler,
            *extra,
        )
        stdout, stderr = process.communicate(timeout=180)
        return process.returncode, stdout, stderr

    code, stdout, stderr = run(trials[0], bad, *trials[1:])
    assert code == 1, stderr
    assert "bad.h5: damaged" in stderr
    assert summary_statuses(out) == {
        "S0-short": "reanalysed",
        "bad": "failed",
        "S1": "reanalysed",
        "S2": "reanalysed",
        "S3": "reanalysed",
        "S4": "reanalysed",
    }
    first = read_result(out / "S1.reanalysis.h5")
    assert first.provenance["executed_by"] == f"dask scheduler {scheduler}" and len(first.purity) == 24000
    with Client(scheduler, timeout=30) as client:
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
    assert len(executed) == 2 and all(count > 0 for count in executed.values()), executed
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.reanalysis.h5")}

    code, stdout, stderr = run(*trials)
    assert code == 0, stderr
    assert set(summary_statuses(out).values()) == {"up-to-date"} and "5 up-to-date" in stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.reanalysis.h5")} == stamps

    code, stdout, stderr = run(*trials, extra=("--force",))
    assert code == 0, stderr
    assert set(summary_statuses(out).values()) == {"reanalysed"}
    assert all(p.stat().st_mtime_ns != stamps[p.name] for p in out.glob("*.reanalysis.h5"))
    np.testing.assert_array_equal(read_result(out / "S1.reanalysis.h5").purity, first.purity)
    assert {p: sha256_of(p) for p in trials} == before
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_new_calibration_on_the_scheduler_changes_the_bench_results_and_says_so(
    scheduler, bench_trial, sim_calibration, tmp_path
):
    live_calibration = analysis.Calibration.load(sim_calibration)
    scale = np.ones((len(live_calibration.analytes), 1))
    scale[live_calibration.analytes.index("Nd")] = 1.03
    revised = analysis.Calibration.from_sensitivity(  # e.g. Nd band strengths re-measured 3 % higher
        live_calibration.wavelength_nm,
        live_calibration.sensitivity * scale,
        live_calibration.analytes,
        baseline_order=live_calibration.baseline_order,
        pixel_weight=live_calibration.pixel_weight,
    )
    revised.save(tmp_path / "revised.h5")
    before = sha256_of(bench_trial)
    report = reanalyze([bench_trial], tmp_path / "revised.h5", tmp_path / "out", scheduler=scheduler, progress=False)
    assert report.exit_code == 0 and report.outcomes[0].status == "reanalysed"
    result = read_result(report.outcomes[0].result_file)
    with h5py.File(bench_trial, "r") as handle:
        live = handle["entry/analysis/concentration"][()][:, live_calibration.analytes.index("Nd")]
    ours = result.concentration[:, result.analytes.index("Nd")]
    nd = np.isfinite(live) & (live > 1.0)
    assert nd.sum() > 100
    np.testing.assert_allclose(ours[nd], live[nd] / 1.03, rtol=0.02)
    p = result.provenance
    assert p["calibration_changed"] is True
    assert p["calibration_id"] == revised.calibration_id and p["live_calibration_id"] == live_calibration.calibration_id
    assert p["calibration_file"] == str((tmp_path / "revised.h5").resolve())
    assert sha256_of(bench_trial) == before


def test_ctrl_c_at_the_terminal_stops_cleanly_and_a_new_run_finishes(synthetic, tmp_path):
    trials = synthetic["trials"]
    out = tmp_path / "out"
    before = {p: sha256_of(p) for p in trials}
    process = start_remdaq(
        "reanalyze",
        *trials,
        "--calibration",
        synthetic["calibration"],
        "--out",
        out,
        "--workers",
        "2",
        start_new_session=True,
    )
    first_line = process.stdout.readline()  # blocks until the first trial is done
    assert first_line.startswith("reanalysed"), process.communicate()
    children = psutil.Process(process.pid).children(recursive=True)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C at a terminal does: the whole process group
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "stopped: finished results" in stderr and "Traceback" not in stderr
    psutil.wait_procs(children, timeout=30)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    done = sorted(p.name for p in out.glob("*.reanalysis.h5"))
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # nothing half-written
    for name in done:
        result = read_result(out / name)
        assert result.provenance["raw_sha256"] and np.isfinite(result.purity).all()
    statuses = summary_statuses(out)
    assert "not-done" in statuses.values() and len(done) < len(trials)
    assert {p: sha256_of(p) for p in trials} == before
    report = reanalyze(trials, synthetic["calibration"], out, workers=0, progress=False)
    assert {o.status for o in report.outcomes} <= {"reanalysed", "up-to-date"}
    assert sum(o.status == "up-to-date" for o in report.outcomes) == len(done)
