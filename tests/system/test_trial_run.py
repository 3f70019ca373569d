"""Trials end to end on the simulated bench, through the `remdaq` command line.

The simulators are real processes speaking Modbus RTU over a pty and SCPI over
TCP; the runner drives them through the real driver stacks. Whole trials run on
a faster simulated clock (``fast_station``: the quick recipe in about 9 s instead
of 37); the signal tests run on the shipped station as it is.
"""

import os
import random
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import h5py
import numpy as np
import pytest
from _bench import QUICK_RECIPE, SIM_STATION, fast_sim_station, run_remdaq, start_remdaq
from _trial_checks import assert_purity_follows_the_elution
from click.testing import CliRunner

from daq import Catalog, open_trial
from daq.cli import cli
from daq.layout import TABLES

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def fast_station(tmp_path_factory) -> Path:
    return fast_sim_station(tmp_path_factory.mktemp("station"))


POLL_S = 0.02
"""Pause between two looks at a condition that has a deadline (the run needs the two cores more than the test)."""


def wait_for_trial_file(data_dir: Path, process, timeout_s=60.0) -> Path:
    """The trial file the run creates, once it exists (polls the folder with a deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = [p for p in (data_dir / "trials").glob("*.h5")] if (data_dir / "trials").is_dir() else []
        if files:
            return files[0]
        assert process.poll() is None, f"remdaq run exited early: {process.communicate()}"
        threading.Event().wait(POLL_S)  # poll interval of a condition with a deadline
    raise AssertionError("no trial file appeared")


def wait_for_rows(path: Path, table: str, rows: int, timeout_s=60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open_trial(path) as trial:
                seen = trial.rows(table)
        except OSError:
            seen = 0  # the file is still being laid out
        if seen >= rows:
            return seen
        assert time.monotonic() < deadline, f"{path}: {table} has {seen} of {rows} rows"
        threading.Event().wait(POLL_S)  # poll interval of a condition with a deadline


@pytest.fixture(scope="module")
def quick_trial(sim_calibration, fast_station, tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("data")
    done = run_remdaq(
        "run", QUICK_RECIPE, "--station", fast_station, "--data-dir", data_dir, "--calibration", sim_calibration
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file() and path.is_relative_to(data_dir)
    return path, done.stderr


def test_quick_trial_succeeds_and_reports_progress(quick_trial):
    path, stderr = quick_trial
    assert "furnace" in stderr and "purity Nd2O3" in stderr  # the live status line
    with open_trial(path) as trial:
        summary = trial.summary()
        assert trial.state == "success"
        # a spectrum every 60 s of the recipe's 2.5 h; the furnace polled throughout (how often depends on the
        # machine's load: each poll is wall time on the simulated serial line), from the start to the cool-down
        assert summary["spectra"] > 50 and summary["furnace_rows"] > 10
        assert trial.rows("analysis") == trial.rows("spectrometer")
        assert trial.rows("dark") >= 1 and trial.rows("reference") >= 1
        furnace = trial.read("furnace")
        assert np.nanmax(furnace["temperature"]) > 400  # the 450 C hold was reached
        assert furnace["time"][0] < 600 and furnace["time"][-1] > 2 * 3600  # polled from the start to the 450 C hold
        messages = list(trial.events()["message"])
        assert "program complete" in messages and "furnace in safe state" in messages


def test_trial_file_opens_in_h5dump_and_every_dataset_has_units(quick_trial):
    path, _ = quick_trial
    header = subprocess.run(["h5dump", "-H", str(path)], capture_output=True, text=True, check=True).stdout
    for table in TABLES:
        assert f'GROUP "{table.group.rsplit("/", 1)[-1]}"' in header
    status = subprocess.run(
        ["h5dump", "-d", "/entry/exit_status", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert '"success' in status
    without_units = []
    with h5py.File(path, "r") as handle:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and "units" not in obj.attrs:
                without_units.append(name)

        handle.visititems(visit)
    assert without_units == []


def test_purity_follows_the_scenario_truth(quick_trial, sim_calibration):
    path, _ = quick_trial
    assert_purity_follows_the_elution(path, sim_calibration)


def test_live_trial_stores_the_whole_fit_and_the_calibration_fits_the_simulator(quick_trial, sim_calibration):
    import analysis
    from daq.layout import FILE_FORMAT, FLAG_MODEL_MISMATCH
    from daq.pipeline import fit_coefficient_names

    path, _ = quick_trial
    calibration = analysis.Calibration.load(sim_calibration)
    with open_trial(path) as trial:
        assert trial.metadata["file_format"] == FILE_FORMAT
        rows = trial.read("analysis")
        flag = trial.read("spectrometer")["flag"]
        names = trial.fit_coefficient_names
        messages = list(trial.events()["message"])
    assert names == fit_coefficient_names(calibration)
    assert rows["fit_coefficients"].shape == (len(rows["time"]), len(names))
    analysed = np.isfinite(rows["purity"])
    assert analysed.any() and np.all(np.isfinite(rows["lack_of_fit"][analysed]))
    # the simulator's spectra are what the calibration knows: no model mismatch, no warning about one
    assert not np.any(flag & FLAG_MODEL_MISMATCH)
    assert not any(m.startswith("model mismatch") for m in messages)
    assert np.median(rows["lack_of_fit"][analysed]) < 2


def test_catalog_lists_the_trial(quick_trial):
    path, _ = quick_trial
    data_dir = path.parent.parent
    entry = {e.file: e for e in Catalog(data_dir).entries()}[f"trials/{path.name}"]
    assert entry.status == "success" and entry.final_purity is not None
    listed = run_remdaq("ls", "--data-dir", data_dir)
    assert listed.returncode == 0 and path.stem in listed.stdout and "success" in listed.stdout
    shown = run_remdaq("show", path)
    assert shown.returncode == 0 and "state             success" in shown.stdout


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_aborts_to_safe_state_with_file_closed(sim_calibration, tmp_path, signum):
    process = start_remdaq(
        "run", QUICK_RECIPE, "--station", SIM_STATION, "--data-dir", tmp_path, "--calibration", sim_calibration
    )
    path = wait_for_trial_file(tmp_path, process)
    wait_for_rows(path, "spectrometer", 5)
    process.send_signal(signum)
    process.communicate(timeout=5)  # the requirement: safe state and a closed file within 5 s
    assert process.returncode == 1
    with open_trial(path) as trial:
        assert trial.state == "aborted"
        messages = list(trial.events()["message"])
    assert "furnace in safe state" in messages
    assert any(signal.Signals(signum).name in m for m in messages)


def test_killed_runs_leave_readable_interrupted_files(sim_calibration, fast_station, tmp_path):
    rng = random.Random(20261127)
    flush_interval_s = 0.2
    for attempt in range(6):  # six kill points at random: before, during and after the furnace's first rows
        data_dir = tmp_path / f"kill{attempt}"
        process = start_remdaq(
            "run",
            QUICK_RECIPE,
            "--station",
            fast_station,
            "--data-dir",
            data_dir,
            "--calibration",
            sim_calibration,
            "--flush-interval",
            flush_interval_s,
        )
        path = wait_for_trial_file(data_dir, process)
        wait_for_rows(path, "furnace", rng.randint(1, 24))
        killed_at = datetime.now(UTC)
        process.send_signal(signal.SIGKILL)
        process.communicate()
        with open_trial(path) as trial:
            assert trial.state == "interrupted"
            assert trial.rows("furnace") >= 1
            last_flush = datetime.fromisoformat(trial.heartbeat_time)
        assert killed_at - last_flush <= timedelta(seconds=flush_interval_s + 1.0)
        shown = CliRunner().invoke(cli, ["show", str(path)])  # `remdaq show`, in this process
        assert shown.exit_code == 0 and "interrupted" in shown.output, shown.output
    entries = Catalog(tmp_path / "kill0").rebuild()
    assert [e.status for e in entries] == ["interrupted"]


def test_bad_inputs_are_refused_before_any_instrument_is_touched(sim_calibration, tmp_path):
    # a station whose instruments do not exist: touching one would fail differently
    ghost = tmp_path / "ghost.toml"
    ghost.write_text(
        SIM_STATION.read_text()
        .replace("simulated = true", "simulated = false")
        .replace('model = "2400"', 'model = "2400"\nport = "/dev/ttyGHOST"')
        .replace("pixels = 2048", 'pixels = 2048\nresource = "TCPIP0::192.0.2.1::5025::SOCKET"')
    )
    bad_recipe = tmp_path / "bad.toml"
    bad_recipe.write_text(QUICK_RECIPE.read_text().replace("target_C = 450.0", "target_C = 1450.0"))
    cases = [
        (("run", bad_recipe, "--station", ghost, "--calibration", sim_calibration), "target_C"),
        (("run", QUICK_RECIPE, "--station", tmp_path / "nowhere.toml"), "file not found"),
        (
            ("run", QUICK_RECIPE, "--station", ghost, "--data-dir", tmp_path, "--calibration", tmp_path / "no.h5"),
            "calibration file",
        ),
    ]
    for args, expected in cases:
        done = run_remdaq(*args, timeout_s=60)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr and "Traceback" not in done.stderr
        assert "/dev/ttyGHOST" not in done.stderr


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="mounting a tmpfs needs root")
def test_full_disk_fails_clearly_keeps_rows_and_makes_the_furnace_safe(sim_calibration, fast_station, tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        done = run_remdaq(
            "run", QUICK_RECIPE, "--station", fast_station, "--data-dir", mount, "--calibration", sim_calibration
        )
        stderr = done.stderr
        assert done.returncode == 1
        assert "trial failed" in stderr and "No space left" in stderr
        assert "Traceback" not in stderr
        path = next((mount / "trials").glob("*.h5"))
        with open_trial(path) as trial:
            assert trial.rows("spectrometer") > 0
            assert trial.rows("furnace") > 0
        assert "furnace in safe state" in stderr
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_catalog_that_cannot_be_written_is_a_warning_and_the_trial_goes_on(sim_calibration, fast_station, tmp_path):
    (tmp_path / "catalog.sqlite").write_bytes(b"not a database, as a damaged or full disk leaves it" * 50)
    done = run_remdaq(
        "run", QUICK_RECIPE, "--station", fast_station, "--data-dir", tmp_path, "--calibration", sim_calibration
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "catalog.sqlite: the catalog cannot be updated" in done.stderr
    with open_trial(Path(done.stdout.strip().splitlines()[-1])) as trial:
        assert trial.state == "success"
        assert any("catalog not updated" in message for message in trial.events()["message"])
