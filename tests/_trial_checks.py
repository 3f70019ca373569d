"""Checks of a finished trial file that tests on several benches share (the SCPI and the Ocean simulated bench)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from _bench import ROOT

import analysis
from daq import open_trial
from drivers.sim.scenario import load_scenario

ELUTION_SCENARIO = ROOT / "seeds/scenarios/pr-nd-elution.toml"


def assert_purity_follows_the_elution(trial_path: Path, calibration_path: Path) -> None:
    """The quick recipe's trial on the pr-nd-elution scenario: every analyte within 2 % of its calibrated range
    (RMSE against the scenario's truth), the purity's median error under 1 pp where there is rare earth enough
    to speak of purity, and its 2-sigma band (+0.2 pp) covering the truth on at least 90 % of those rows."""
    calibration = analysis.Calibration.load(calibration_path)
    scenario = load_scenario(ELUTION_SCENARIO)
    with open_trial(trial_path) as trial:
        events = trial.events()
        started = [t for t, m in zip(events["time"], events["message"]) if "process stream started" in m]
        rows = trial.read("analysis")
        analytes = trial.analytes
    time_s = rows["time"] - started[0]
    truth = np.array([[scenario.concentrations_at(t).get(a, 0.0) for a in analytes] for t in time_s])
    measured = rows["concentration"]
    for k, analyte in enumerate(analytes):
        low, high = calibration.quality.calibrated_range_g_per_L[k]
        rmse = math.sqrt(np.mean((measured[:, k] - truth[:, k]) ** 2))
        assert rmse <= 0.02 * (high - low), f"{analyte}: RMSE {rmse:.4f} g/L"
    oxide = truth * np.array([analysis.oxide_factor(a) for a in analytes])
    visible = oxide.sum(axis=1) > 1.0  # where there is enough rare earth in the cell to speak of purity
    true_purity = oxide[:, analytes.index("Nd")] / oxide.sum(axis=1)
    error = np.abs(rows["purity"][visible] - true_purity[visible])
    assert visible.sum() > 20
    assert np.median(error) < 0.01
    assert np.mean(error <= 2 * rows["purity_sigma"][visible] + 0.002) >= 0.9
