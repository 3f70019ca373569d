"""`remdaq check`: identity and one reading per instrument, or a clear reason why not; with a check standard,
whether the calibration still holds.

The calibration checks run the real CLI against the simulated bench of
hardware/stations/sim.toml with a calibration made once per session by
daq.calibration_run from the shipped standards (``sim_calibration``,
tests/system/conftest.py: 11 standards x 2 replicates x 256 averages) and the
shipped check standard seeds/standards/check/check-nd-pr.toml (Nd 10, Pr 2 g/L,
3 x 1000 averages). The simulator is the same instrument each time (seed 0).
"""

import re
import subprocess
import sys

import numpy as np
import pytest
from _bench import ROOT, SIM_STATION

import analysis
from daq.calibration_check import HOLDS, RECALIBRATE, SHIFT_LIMIT_NM, Z_LIMIT

pytestmark = pytest.mark.system

CHECK_STANDARD = ROOT / "seeds/standards/check/check-nd-pr.toml"
#: How close the reported wavelength shift must be to the simulator's APPARENT_NM (the drift end-to-end tests' 0.03 nm).
SHIFT_TOLERANCE_NM = 0.03


def check(station, *options):
    return subprocess.run(
        [sys.executable, "-m", "daq", "check", "--station", str(station), *map(str, options)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_on_the_simulated_bench_reports_both_instruments():
    result = check(SIM_STATION)
    assert result.returncode == 0, result.stderr
    assert "furnace (simulated): OK  Eurotherm" in result.stdout
    assert "PV 20.0 C" in result.stdout  # a cold furnace at ambient
    assert "spectrometer (simulated): OK" in result.stdout
    assert "2048 px" in result.stdout and "nm" in result.stdout
    assert "calibration check" not in result.stdout and "verdict" not in result.stdout


def test_check_says_why_an_absent_bench_cannot_be_reached(tmp_path):
    station = tmp_path / "absent.toml"
    station.write_text(
        (ROOT / "hardware/stations/example-bench.toml")
        .read_text()
        .replace("192.168.10.21", "127.0.0.1")
        .replace("5025", "9")
    )
    result = check(station)
    assert result.returncode == 1
    assert "furnace: FAILED  NotConnected" in result.stderr and "/dev/serial/by-id/" in result.stderr
    assert "spectrometer: FAILED  NotConnected" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_with_a_broken_station_file_names_file_and_field(tmp_path):
    station = tmp_path / "broken.toml"
    station.write_text(SIM_STATION.read_text().replace("max_ramp_C_per_min = 10.0", "max_ramp_C_per_min = -1"))
    result = check(station)
    assert result.returncode == 2
    assert str(station) in result.stderr and "furnace.max_ramp_C_per_min" in result.stderr


# --- the shift-start calibration check -------------------------------------------------------------


def report(stdout: str) -> dict:
    """The calibration check's report as numbers: per stated element (stated, u, measured, sigma, bias, z),
    lack of fit, shift, the simulator's truth, the verdict and its reasons."""
    rows, reasons = {}, []
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("calibration check:"))
    for line in lines[start + 2 :]:
        tokens = line.split()
        if len(tokens) == 9 and tokens[2] == tokens[5] == "±":
            el, stated, _, u, measured, _, sigma, bias, z = tokens
            rows[el] = dict(
                stated=float(stated),
                u=float(u),
                measured=float(measured),
                sigma=float(sigma),
                bias=float(bias),
                z=float(z),
            )
        if line.startswith("  - "):
            reasons.append(line[4:])
    truth = re.search(r"simulator truth\s+apparent shift ([-+]\d+\.\d+) nm, axis ([-+]\d+\.\d+) nm", stdout)
    return dict(
        rows=rows,
        reasons=reasons,
        lack_of_fit=float(re.search(r"lack of fit\s+(\S+) \(limit", stdout).group(1)),
        shift_nm=float(re.search(r"wavelength shift\s+([-+]\d+\.\d+) nm since calibration", stdout).group(1)),
        apparent_nm=float(truth.group(1)),
        axis_nm=float(truth.group(2)),
        verdict=re.search(r"^verdict: (.+)$", stdout, re.M).group(1),
    )


def test_a_fresh_bench_holds_its_calibration(sim_calibration):
    result = check(SIM_STATION, "--standard", CHECK_STANDARD, "--calibration", sim_calibration)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spectrometer (simulated): OK" in result.stdout  # the instrument check comes first, as without a standard
    print(result.stdout)
    r = report(result.stdout)
    assert r["verdict"] == HOLDS and r["reasons"] == []
    assert set(r["rows"]) == {"Nd", "Pr"}
    for el, stated in (("Nd", 10.0), ("Pr", 2.0)):
        row = r["rows"][el]
        assert row["stated"] == stated
        combined = np.hypot(row["sigma"], row["u"])
        assert abs(row["bias"]) <= 2 * combined, row  # the bias is within its stated uncertainty (2 sigma)
        assert row["z"] == pytest.approx(row["bias"] / combined, abs=0.05)
        assert abs(row["z"]) <= 2
    for el in ("Sm", "Er", "Ho"):  # the calibration's other analytes: reported, not judged
        assert re.search(rf"^\s+{el}\s+\(not stated\)", result.stdout, re.M)
    assert r["lack_of_fit"] <= 1.5
    assert r["apparent_nm"] == 0.0 and r["axis_nm"] == 0.0
    assert abs(r["shift_nm"]) <= SHIFT_TOLERANCE_NM


def test_a_replugged_fibre_beyond_the_limit_says_recalibrate_and_measures_the_shift(sim_calibration):
    """The fibre-replugged scenario steps the axis by +0.4 nm since calibration: beyond the 0.25 nm limit."""
    result = check(
        SIM_STATION, "--standard", CHECK_STANDARD, "--calibration", sim_calibration, "--scenario", "fibre-replugged"
    )
    assert result.returncode == 1, result.stdout + result.stderr
    print(result.stdout)
    r = report(result.stdout)
    assert r["verdict"] == RECALIBRATE
    assert r["axis_nm"] == pytest.approx(0.4) and r["apparent_nm"] == pytest.approx(-0.4)
    assert abs(r["shift_nm"] - r["apparent_nm"]) <= SHIFT_TOLERANCE_NM, r
    assert abs(r["shift_nm"]) > SHIFT_LIMIT_NM
    assert any(
        reason.startswith("wavelength shift") and f"±{SHIFT_LIMIT_NM:g} nm" in reason for reason in r["reasons"]
    ), r["reasons"]
    # the drift terms still follow the shift: the concentrations are right, the axis is what is out of bounds
    assert all(abs(row["z"]) <= Z_LIMIT for row in r["rows"].values()), r["rows"]


def test_a_calibration_from_another_axis_says_recalibrate_without_measuring(sim_calibration, tmp_path):
    station = tmp_path / "sim-1024.toml"
    station.write_text(SIM_STATION.read_text().replace("pixels = 2048", "pixels = 1024"))
    result = check(station, "--standard", CHECK_STANDARD, "--calibration", sim_calibration)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "verdict: recalibrate" in result.stdout
    assert "wavelength axis (2048 px" in result.stdout and "does not match the spectrometer's (1024 px" in result.stdout
    assert "nothing measured" in result.stdout and "standard check-nd-pr" not in result.stderr


def test_a_bad_check_standard_file_is_named_before_anything_is_started(sim_calibration, tmp_path):
    standard = tmp_path / "check-bad.toml"
    standard.write_text(CHECK_STANDARD.read_text().replace("Nd = 0.02, ", ""))
    result = check(SIM_STATION, "--standard", standard, "--calibration", sim_calibration)
    assert result.returncode == 2
    assert f"{standard}: standard.uncertainty_g_per_L: has no value for ['Nd']" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr  # no instrument checked, nothing measured


def test_a_standard_of_elements_the_calibration_does_not_quantify_is_refused(sim_calibration, tmp_path):
    standard = tmp_path / "check-dy.toml"
    standard.write_text(
        CHECK_STANDARD.read_text().replace("Pr = 2.0 }", "Dy = 2.0 }").replace("Pr = 0.006 }", "Dy = 0.006 }")
    )
    result = check(SIM_STATION, "--standard", standard, "--calibration", sim_calibration)
    assert result.returncode == 2
    assert str(standard) in result.stderr
    assert "standard.concentrations_g_per_L: Dy not among the analytes" in result.stderr
    assert "Nd, Pr, Sm, Er, Ho" in result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


# --- in-process: nothing is started for a refused file -------------------------------------------


@pytest.fixture
def no_bench(monkeypatch):
    """Any attempt to start a simulator or connect an instrument fails the test."""
    import daq.bench
    import daq.calibration_check
    import daq.check

    def refuse(*args, **kwargs):
        raise AssertionError("an instrument was touched")

    monkeypatch.setattr(daq.check, "open_bench", refuse)
    monkeypatch.setattr(daq.calibration_check, "open_bench", refuse)
    monkeypatch.setattr(daq.bench, "start_simulator", refuse)


def run_main(*argv) -> int:
    from daq.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["check", *map(str, argv)])
    return exit_.value.code


@pytest.mark.parametrize(
    "edit, words",
    [
        (("Nd = 10.0", "Nd = -10.0"), ["standard.concentrations_g_per_L.Nd", "greater than or equal to 0"]),
        (("Nd = 10.0", "Fe = 10.0"), ["standard.concentrations_g_per_L.Fe", "'Nd'"]),
        (("averages = 1000", "averages = 1e4"), ["check.averages", "integer"]),
        (("replicates = 3", "replicates = 0"), ["check.replicates", "greater than or equal to 1"]),
        (
            ("integration_time_s = 0.02", "integration_time_s = 20"),
            ["check.integration_time_s", "outside the station's range"],
        ),
        (("uncertainty_g_per_L = { Nd = 0.02, Pr = 0.006 }", ""), ["standard.uncertainty_g_per_L", "missing"]),
        (
            ("coverage_factor = 1", "coverage_factor = 1\ncertified_relative_uncertainty = 0.01"),
            ["standard.certified_relative_uncertainty", "not both"],
        ),
        (("[check]", "[chek]"), ["chek: unknown table", "check: missing [check] table"]),
    ],
)
def test_check_standard_mistakes_are_named_by_file_and_field(sim_calibration, tmp_path, no_bench, capsys, edit, words):
    old, new = edit
    text = CHECK_STANDARD.read_text()
    assert old in text
    standard = tmp_path / "check.toml"
    standard.write_text(text.replace(old, new, 1))
    assert run_main("--station", SIM_STATION, "--standard", standard, "--calibration", sim_calibration) == 2
    err = capsys.readouterr().err
    assert str(standard) in err
    for word in words:
        assert word in err


def test_a_calibration_without_an_element_of_the_standard_is_refused(tmp_path, no_bench, capsys):
    wavelength_nm = np.linspace(350.0, 1000.0, 2048)
    bands = np.exp(-0.5 * ((wavelength_nm[None, :] - np.array([[575.0], [402.0]])) / 5.0) ** 2)
    calibration = tmp_path / "nd-sm.h5"
    analysis.Calibration.from_sensitivity(wavelength_nm, 0.05 * bands, ("Nd", "Sm")).save(calibration)
    assert run_main("--station", SIM_STATION, "--standard", CHECK_STANDARD, "--calibration", calibration) == 2
    err = capsys.readouterr().err
    assert f"{CHECK_STANDARD}: standard.concentrations_g_per_L: Pr not among the analytes of calibration" in err


@pytest.mark.parametrize(
    "argv, words",
    [
        (("--standard", CHECK_STANDARD), ["--standard and --calibration go together"]),
        (("--scenario", "fibre-replugged"), ["--scenario sets up the simulated bench"]),
    ],
)
def test_options_that_go_together(no_bench, capsys, argv, words):
    assert run_main("--station", SIM_STATION, *argv) == 2
    err = capsys.readouterr().err
    assert all(word in err for word in words)


def test_missing_calibration_and_bad_scenario_and_a_real_bench_scenario(sim_calibration, tmp_path, no_bench, capsys):
    missing = tmp_path / "none.h5"
    assert run_main("--station", SIM_STATION, "--standard", CHECK_STANDARD, "--calibration", missing) == 2
    assert f"{missing}: calibration file not found" in capsys.readouterr().err
    assert (
        run_main(
            "--station",
            SIM_STATION,
            "--standard",
            CHECK_STANDARD,
            "--calibration",
            sim_calibration,
            "--scenario",
            "no-such-scenario",
        )
        == 2
    )
    assert "--scenario: scenario 'no-such-scenario' not found" in capsys.readouterr().err
    assert (
        run_main(
            "--station",
            ROOT / "hardware/stations/example-bench.toml",
            "--standard",
            CHECK_STANDARD,
            "--calibration",
            sim_calibration,
            "--scenario",
            "fibre-replugged",
        )
        == 2
    )
    assert "--scenario: the station's spectrometer is not simulated" in capsys.readouterr().err


def test_on_a_real_bench_the_operator_is_asked_and_a_wrong_solution_says_recalibrate(sim_calibration, tmp_path):
    """A bench that is not simulated (here a simulator the check did not start): the operator is prompted for the
    blank and the standard; the cell still holds the blank, so the standard reads ~0 and the verdict names it."""
    from daq.calibration_check import check_calibration
    from daq.config import load_station
    from drivers.sim.launch import start_simulator

    prompts = []
    with start_simulator("drivers.sim.spectrometer", "--port", "0", "--speed", "300") as simulator:
        station = tmp_path / "bench.toml"
        station.write_text(
            f'[station]\nname = "bench"\n\n[spectrometer]\nresource = "{simulator.address}"\n'
            "max_integration_time_s = 10.0\n"
        )
        outcome = check_calibration(load_station(station), CHECK_STANDARD, sim_calibration, ask=prompts.append)
    assert prompts == [
        "Fill the cell with the blank (matrix without rare earths), then press Enter: ",
        "Fill the cell with standard 'check-nd-pr' (Nd 10 g/L, Pr 2 g/L), then press Enter: ",
    ]
    assert outcome.verdict == RECALIBRATE and outcome.simulator_truth is None
    nd, pr = outcome.analytes[:2]
    assert nd.measured_g_per_L < 0.1 and pr.measured_g_per_L < 0.1 and nd.z < -Z_LIMIT and pr.z < -Z_LIMIT
    assert [r.split(":")[0] for r in outcome.reasons[:2]] == ["Nd", "Pr"], outcome.reasons
