"""The drifting simulated bench through `remdaq run`: the real runner, the real trial file.

tests/system/test_drift_end_to_end.py tests the analysis against the bench's
drifts through the spectrometer protocol alone; here the same drifts meet the
whole chain, as an operator runs it: `remdaq calibrate`, `remdaq run` (one dark
and one blank at the start, live analysis, row flags, events), `remdaq show` and
`remdaq ls`. The stations are copies of hardware/stations/sim.toml with a
faster clock: 5000 times real time for the day (about 20 s), 2500 for the 6 h
trials. A spectrum costs the runner and the simulator some 50-100 ms of wall time
(acquisition, transfer, analysis), so a faster clock would space the spectra
farther apart than the recipe asks (the schedule then runs back to back).

1. ``lab-warms-4C`` (seeds/recipes/day-drift.toml): a day on a 99.5 % Nd2O3
   product while the lab warms by 4 C and the wavelength axis drifts by 0.2 nm:
   every row's purity within 0.1 pp of the scenario's, no row flagged model
   mismatch, no mismatch event.
2. ``matrix-change``, calibrated in 1 M nitrate: the rows after the switch to
   chloride are flagged model mismatch, with one warning event where it starts;
   nothing before the switch is flagged.
3. ``pr-nd-elution``: its blank start (La and Ce only, which the spectrometer
   cannot see) and its empty end have no purity (NaN, flag "no rare earths in
   the cell"), and `remdaq show` and `remdaq ls` say "no rare earths in the cell".

The truth is the scenario file (read as TOML; its concentrations through the
scenario reader, as tests/system/test_trial_run.py does); nothing of the
simulator's physics is imported. Row times are turned into scenario times with
the "process stream started" event (the runner starts the scenario just before
it). Each trial ends when its furnace program completes, which the experiment
clock decides; nothing here sleeps or measures wall time.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from _bench import ROOT, run_remdaq, sim_station

import analysis
from analysis.quantify import LACK_OF_FIT_LIMIT
from daq import open_trial
from daq.layout import FLAG_MODEL_MISMATCH, FLAG_NO_RARE_EARTHS
from drivers.sim.scenario import load_scenario

pytestmark = pytest.mark.system

DAY_SPEED = 5000.0  # simulated seconds per wall second: 15 min between spectra is 180 ms of wall time
SHORT_SPEED = 2500.0  # for the trials with spectra every 5-10 min
DAY_RECIPE = ROOT / "seeds/recipes/day-drift.toml"
STANDARDS = ROOT / "seeds/standards/nd-product.toml"
SCENARIOS = ROOT / "seeds/scenarios"
PURITY_TOLERANCE = 0.001  # 0.1 percentage point
NO_RARE_EARTHS = "no rare earths in the cell"


def scenario_toml(name: str) -> dict:
    return tomllib.loads((SCENARIOS / f"{name}.toml").read_text())


def trial_recipe(folder: Path, name: str, scenario: str, dwell_min: float, interval_s: float) -> Path:
    """A recipe like day-drift.toml for another scenario: a furnace program of ``dwell_min`` at 110 C."""
    text = DAY_RECIPE.read_text()
    for old, new in (
        ('scenario = "lab-warms-4C"', f'scenario = "{scenario}"'),
        ('title = "A day on a Nd product while the lab warms 4 C"', f'title = "{name}"'),
        ("dwell_min = 1440.0", f"dwell_min = {dwell_min:.1f}"),
        ("interval_s = 900.0", f"interval_s = {interval_s:.1f}"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """The module's folder: station copies, calibrations, recipes, data folders."""
    return tmp_path_factory.mktemp("drift-bench")


@pytest.fixture(scope="module")
def calibration(bench) -> Path:
    """`remdaq calibrate` with the product standards (the simulator's default matrix: perchlorate)."""
    out = bench / "nd-product.h5"
    done = run_remdaq(
        "calibrate", STANDARDS, "--station", sim_station(bench, speed=DAY_SPEED), "--out", out, timeout_s=300
    )
    assert done.returncode == 0, done.stderr
    assert "calibration written" in done.stdout
    return out


@pytest.fixture(scope="module")
def nitrate_calibration(bench) -> Path:
    """The same standards made up in 1 mol/L nitric acid, measured as `remdaq calibrate` measures them.

    `remdaq calibrate` has no way to say what matrix the standards are in on the simulated bench, so this is
    its measurement (daq.calibration_run.measure_standards) with the bench's matrix set to nitrate first.
    """
    from daq.bench import open_bench
    from daq.calibration_run import load_standards, measure_standards
    from daq.cell import SimulatedCell
    from daq.config import load_station

    standards = load_standards(STANDARDS)
    with open_bench(load_station(sim_station(bench, speed=DAY_SPEED)), instruments=("spectrometer",)) as connected:
        spectrometer = connected.spectrometer
        spectrometer.write("SIM:DRIF:MATR ON")
        spectrometer.write("SIM:SOL:MATR NITR,1")
        measured = measure_standards(spectrometer, SimulatedCell(spectrometer, scenario_loaded=False), standards)
        assert spectrometer.query("SIM:SOL:MATR?").strip().strip('"').startswith("NITRATE")
    wavelength_nm, absorbance, concentration, names = measured
    out = bench / "nd-product-nitrate.h5"
    analysis.calibrate(
        wavelength_nm,
        absorbance,
        concentration,
        standards.analytes,
        baseline_order=standards.baseline_order,
        standard_names=names,
        quadratic=tuple(standards.quadratic),
    ).save(out)
    return out


def run_trial(bench: Path, speed: float, recipe: Path, calibration: Path, data_dir: Path) -> Path:
    done = run_remdaq(
        "run",
        recipe,
        "--station",
        sim_station(bench, speed=speed),
        "--data-dir",
        data_dir,
        "--calibration",
        calibration,
        timeout_s=300,
    )
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file()
    return path


class Trial:
    """What a test needs of one trial file: rows, flags, events, and each row's scenario time."""

    def __init__(self, path: Path):
        self.path = path
        with open_trial(path) as trial:
            self.state = trial.state
            self.analytes = tuple(trial.analytes)
            self.rows = trial.read("analysis")
            self.flag = np.asarray(trial.read("spectrometer")["flag"], dtype=int)
            self.names = trial.fit_coefficient_names
            events = trial.events()
        self.events = list(zip(events["time"], events["level"], events["source"], events["message"]))
        started = [t for t, _, _, m in self.events if "process stream started" in m]
        assert len(started) == 1, self.events
        self.scenario_s = self.rows["time"] - started[0]
        self.stream_started_s = started[0]

    def analysis_events(self, prefix: str) -> list[tuple]:
        return [e for e in self.events if e[2] == "analysis" and e[3].startswith(prefix)]

    def coefficient(self, name: str) -> np.ndarray:
        return self.rows["fit_coefficients"][:, self.names.index(name)]


def _report(title: str, columns: dict[str, np.ndarray]) -> None:
    print(f"\n{title}")
    print("  " + "  ".join(f"{k:>12s}" for k in columns))
    for row in zip(*columns.values()):
        print("  " + "  ".join(f"{v:12.4f}" for v in row))


# --- 1. a day while the lab warms by 4 C --------------------------------------------------------------------
@pytest.fixture(scope="module")
def day_trial(bench, calibration) -> Trial:
    return Trial(run_trial(bench, DAY_SPEED, DAY_RECIPE, calibration, bench / "day"))


def test_a_day_while_the_lab_warms_keeps_purity_within_0_1_pp_on_every_row(day_trial):
    trial = day_trial
    scenario = scenario_toml("lab-warms-4C")
    truth = np.array([[scenario["base"].get(a, 0.0) for a in trial.analytes]])
    true_purity = float(analysis.oxide_purity(truth, trial.analytes, "Nd").purity[0])
    assert true_purity == pytest.approx(0.995, abs=1e-5)  # the scenario's comment: a 99.5 % Nd2O3 product
    purity, sigma = trial.rows["purity"], trial.rows["purity_sigma"]
    errors_pp = 100 * (purity - true_purity)
    axis_nm = trial.coefficient("axis shift since blank")
    _report(
        "lab warms 4 C through remdaq run: scenario h, purity error pp, sigma pp, lack of fit, shift nm, "
        "axis since blank nm",
        {
            "h": trial.scenario_s / 3600,
            "error pp": errors_pp,
            "sigma pp": 100 * sigma,
            "lack of fit": trial.rows["lack_of_fit"],
            "shift nm": trial.rows["wavelength_shift"],
            "axis nm": axis_nm,
        },
    )
    assert trial.state == "success"
    # the trial covers the scenario's day, a spectrum every 15 min
    assert trial.scenario_s.min() < 3600 and trial.scenario_s.max() >= scenario["duration_s"]
    assert len(purity) >= 72  # the recipe asks for about 100; at least one every 20 min
    # the drift happened: by the afternoon the axis had moved k_T x 4 C from where the morning blank saw it
    drift, lab = scenario["drift"], scenario["lab"]
    expected_axis_nm = drift["k_T_nm_per_C"] * (lab["temperature_C"][-1] - drift["calibration_temperature_C"])
    assert expected_axis_nm == pytest.approx(0.2)
    afternoon = trial.scenario_s > lab["time_s"][-2] + 3 * drift["spectrometer_lag_s"]
    assert afternoon.sum() >= 20
    assert np.all(np.abs(axis_nm[afternoon] - expected_axis_nm) <= 0.03), np.round(axis_nm[afternoon], 3)
    # every row after the blank: a purity, within 0.1 pp of the truth, not flagged
    assert np.all(np.isfinite(purity))
    assert np.all(np.abs(purity - true_purity) <= PURITY_TOLERANCE), np.round(errors_pp, 3)
    assert not np.any(trial.flag & (FLAG_MODEL_MISMATCH | FLAG_NO_RARE_EARTHS)), trial.flag
    assert np.all(trial.rows["lack_of_fit"] < LACK_OF_FIT_LIMIT), np.round(trial.rows["lack_of_fit"], 2)
    assert trial.analysis_events("model mismatch") == []
    assert [e[3] for e in trial.analysis_events("rare earths in the cell")] != []


# --- 2. the acid matrix changes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def matrix_trial(bench, nitrate_calibration) -> Trial:
    recipe = trial_recipe(bench, "matrix-change", "matrix-change", dwell_min=240.0, interval_s=600.0)
    return Trial(run_trial(bench, SHORT_SPEED, recipe, nitrate_calibration, bench / "matrix"))


def test_a_matrix_change_flags_model_mismatch_and_nothing_before_it(matrix_trial):
    trial = matrix_trial
    solution = scenario_toml("matrix-change")["solution"]
    change_s = solution["time_s"][solution["matrix"].index("chloride")]
    assert solution["matrix"][0] == "nitrate"
    exposure_s = 0.12 * 1000  # the recipe's integration time x averages: a row's spectrum ends at its time
    margin_s = 300.0  # the runner's clock and the simulator's scenario clock start a few ms of wall time apart
    before = trial.scenario_s < change_s - margin_s
    after = trial.scenario_s - exposure_s > change_s + margin_s
    mismatch = (trial.flag & FLAG_MODEL_MISMATCH) != 0
    lack_of_fit = trial.rows["lack_of_fit"]
    _report(
        "matrix change through remdaq run: scenario h, lack of fit, mismatch flag",
        {"h": trial.scenario_s / 3600, "lack of fit": lack_of_fit, "flag": mismatch.astype(float)},
    )
    assert trial.state == "success"
    assert before.sum() >= 5 and after.sum() >= 5  # the recipe asks for 11 and 12
    assert not mismatch[before].any(), np.round(lack_of_fit, 2)
    assert np.all(lack_of_fit[before] < LACK_OF_FIT_LIMIT), np.round(lack_of_fit, 2)
    assert mismatch[after].all(), np.round(lack_of_fit, 2)
    assert np.all(lack_of_fit[after] > 5 * LACK_OF_FIT_LIMIT), np.round(lack_of_fit, 2)
    # one warning where the mismatch starts, after the change; it lasts to the end, so no "over"
    starts = trial.analysis_events("model mismatch:")
    assert len(starts) == 1, trial.events
    time_s, level, _, message = starts[0]
    assert level == "warning" and "lack of fit" in message
    assert time_s - trial.stream_started_s > change_s - margin_s
    assert trial.analysis_events("model mismatch over") == []


# --- 3. the blank start of an elution ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def elution_trial(bench, calibration) -> Trial:
    # the program outlasts the scenario's 4 h: the elution is over and the cell empty again when the trial ends
    recipe = trial_recipe(bench, "elution", "pr-nd-elution", dwell_min=270.0, interval_s=300.0)
    return Trial(run_trial(bench, SHORT_SPEED, recipe, calibration, bench / "elution"))


def test_an_elution_shows_no_purity_while_no_rare_earths_are_in_the_cell(elution_trial):
    trial = elution_trial
    scenario = load_scenario(SCENARIOS / "pr-nd-elution.toml")
    factor = np.array([analysis.oxide_factor(a) for a in trial.analytes])
    truth = (
        np.array([[scenario.concentrations_at(t).get(a, 0.0) for a in trial.analytes] for t in trial.scenario_s])
        @ factor
    )  # g/L of the oxides the spectrometer can see
    purity = trial.rows["purity"]
    empty = (trial.flag & FLAG_NO_RARE_EARTHS) != 0
    _report(
        "elution through remdaq run: scenario h, true visible oxide g/L, purity, no-rare-earths flag",
        {"h": trial.scenario_s / 3600, "oxide g/L": truth, "purity": purity, "flag": empty.astype(float)},
    )
    assert trial.state == "success"
    blank = truth < 1e-3  # La and Ce come first; Pr, Nd and Sm not yet, or no more
    blank_start = blank & (trial.scenario_s < 3600)
    assert blank_start.sum() >= 3 and blank[-1]  # the recipe asks for about 8 at the start
    assert np.all(empty[blank]) and np.all(np.isnan(purity[blank])), (np.round(truth, 4), trial.flag)
    present = truth > 1.0
    assert present.sum() >= 10
    assert not empty[present].any() and np.all(np.isfinite(purity[present]))
    assert np.all(np.isnan(purity[empty]))
    # the events: none at first, rare earths when the Pr arrives, none again at the end
    messages = [e[3] for e in trial.events if e[2] == "analysis"]
    assert messages[0].startswith(NO_RARE_EARTHS) and messages[-1].startswith(NO_RARE_EARTHS), messages
    assert any(m.startswith("rare earths in the cell") for m in messages)
    # what the operator reads
    shown = run_remdaq("show", trial.path, timeout_s=60)
    assert shown.returncode == 0
    final = [line for line in shown.stdout.splitlines() if line.startswith("final_purity")]
    assert len(final) == 1 and NO_RARE_EARTHS in final[0], shown.stdout
    listed = run_remdaq("ls", "--data-dir", trial.path.parent.parent, timeout_s=60)
    assert listed.returncode == 0
    lines = [line for line in listed.stdout.splitlines() if trial.path.stem in line]
    assert len(lines) == 1 and NO_RARE_EARTHS in lines[0], listed.stdout
