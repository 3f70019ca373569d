"""A trial on the simulated Ocean bench (hardware/stations/sim-ocean.toml) through the `remdaq` command line.

The same chain as tests/system/test_trial_run.py on the SCPI bench — `remdaq check`, `remdaq calibrate`,
`remdaq run` of the quick recipe, `remdaq show` — with the spectrometer an Ocean HDX on OBP over TCP
driven through python-seabreeze: averages in software, the nonlinearity corrected, darks with the lamp
off through its TTL line. The purity must follow the scenario's truth as closely as on the SCPI bench
(the same criteria as there), and the trial file must say how the counts were made.

The station runs as shipped (300 x real time). A faster clock is no shortcut here: the driver averages
in software, one OBP request per scan, and the wall time of each round trip becomes simulated time —
at 2000 x, 32 scans of an elution span a minute of the scenario and the purity's 2-sigma band no longer
covers the row's instant (measured: 72 % instead of >= 90 %). A real HDX's round trip is milliseconds
of real time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
from _bench import QUICK_RECIPE, ROOT, STANDARDS, run_remdaq
from _trial_checks import assert_purity_follows_the_elution

from daq import open_trial

pytestmark = pytest.mark.system

OCEAN_STATION = ROOT / "hardware/stations/sim-ocean.toml"


def remdaq(*args, timeout_s: float = 300) -> tuple[int, str, str]:
    """`remdaq ARGS` from the project root, run to its end: (exit code, stdout, stderr)."""
    done = run_remdaq(*args, timeout_s=timeout_s)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def ocean_calibration(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ocean-calibration") / "ocean.h5"
    code, stdout, stderr = remdaq("calibrate", STANDARDS, "--station", OCEAN_STATION, "--out", out)
    assert code == 0, stderr
    assert "calibration written" in stdout
    return out


@pytest.fixture(scope="module")
def ocean_trial(ocean_calibration, tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("ocean-data")
    code, stdout, stderr = remdaq(
        "run", QUICK_RECIPE, "--station", OCEAN_STATION, "--data-dir", data_dir, "--calibration", ocean_calibration
    )
    assert code == 0, stderr
    path = Path(stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


def test_check_names_the_ocean_spectrometer_and_its_axis():
    code, stdout, stderr = remdaq("check", "--station", OCEAN_STATION)
    assert code == 0, stderr
    assert "Ocean Insight,HDX,HDX" in stdout and "2068 px" in stdout


def test_the_trial_succeeds_and_its_file_says_how_the_counts_were_made(ocean_trial):
    with open_trial(ocean_trial) as trial:
        assert trial.state == "success"
        assert trial.rows("analysis") == trial.rows("spectrometer") > 50
        dark = trial.read("dark")["counts"]
        reference = trial.read("reference")["counts"]

    def spread(counts):
        return np.percentile(counts, 95) - np.percentile(counts, 5)

    assert spread(dark) < 0.05 * spread(reference)  # the lamp was off for the dark: no spectrum of light in it
    with h5py.File(ocean_trial, "r") as handle:
        spectrometer = handle["/entry/instrument/spectrometer"]
        attrs = dict(spectrometer.attrs)
        assert spectrometer["wavelength"].shape == (2068,)
    assert attrs["driver"] == "ocean" and attrs["model"] == "HDX"
    assert attrs["nonlinearity_corrected"] == 1 and attrs["nonlinearity_coefficients"].count(",") == 7
    assert attrs["dark_method"] == "lamp" and attrs["serial_number"].startswith("HDX")
    assert attrs["full_scale_counts"] > 65535  # the linearised full scale
    header = subprocess.run(["h5dump", "-H", str(ocean_trial)], capture_output=True, text=True, check=True).stdout
    assert 'ATTRIBUTE "nonlinearity_corrected"' in header


def test_purity_follows_the_scenario_truth_as_on_the_scpi_bench(ocean_trial, ocean_calibration):
    """The criteria of tests/system/test_trial_run.py::test_purity_follows_the_scenario_truth."""
    assert_purity_follows_the_elution(ocean_trial, ocean_calibration)


def test_show_reads_the_ocean_trial(ocean_trial):
    code, stdout, stderr = remdaq("show", ocean_trial)
    assert code == 0, stderr
    assert "spectrometer connected: Ocean Insight,HDX,HDX" in stdout
    assert "state             success" in stdout
