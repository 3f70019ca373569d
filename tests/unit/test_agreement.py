"""The agreement of the live UV-Vis purity with the ICP purity, for simulated products whose truth is known.

A product trial is written with the synthetic bench of tests/_trial_factory.py at constant element
concentrations (the truth); its ICP file is made from the same truth (as mass fractions of the calcined
solid, with an invisible La share the spectrometer cannot see). Every expected number is derived here from
that truth and the oxide factors, never typed in.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from _trial_factory import SyntheticBench, metadata, trials_folder

from analysis import oxide_factor
from daq import TrialWriter, open_trial
from daq.icp import read_icp_csv
from daq.product import (
    AGREEMENT_SIGMAS,
    END_ROWS,
    agreement,
    bias_chart,
    certificate,
    live_end_purity,
    write_product,
)

FLAG_MODEL_MISMATCH = 16


class ProductBench(SyntheticBench):
    """The synthetic bench with a steady product stream: constant Nd and Pr concentrations (g/L)."""

    def __init__(self, truth_g_per_L: tuple[float, float], **kwargs):
        super().__init__(**kwargs)
        self.truth = np.asarray(truth_g_per_L, dtype=float)

    def concentrations(self, t):
        return np.tile(self.truth, (len(np.atleast_1d(t)), 1))


def write_product_trial(
    path: Path, truth_g_per_L: tuple[float, float], *, duration_s: float = 600.0, flag_last: int = 0, seed: int = 7
) -> Path:
    """A closed trial of a steady product; the last ``flag_last`` spectra flagged model mismatch."""
    meta = metadata(path.stem)
    bench = ProductBench(truth_g_per_L, seed=seed)
    writer = TrialWriter(path, meta, flush_interval_s=0.05)
    bench.start(writer)
    writer.append("furnace", **bench.furnace(np.arange(0.0, duration_s, 1.0)))
    spectrometer, analysis = bench.spectra(np.arange(0.0, duration_s, 10.0))
    if flag_last:
        spectrometer["flag"][-flag_last:] = FLAG_MODEL_MISMATCH
        analysis["purity"][-flag_last:] = 0.5  # what a mismatched fit might say: must not be used
    writer.append("spectrometer", **spectrometer)
    writer.append("analysis", **analysis)
    writer.close("success")
    return path


def icp_csv_from_truth(path: Path, truth_g_per_L: dict[str, float], *, treo_fraction: float, rsd_percent: float):
    """An ICP export of the calcined product of these element concentrations: mass fractions (mg/kg) of a
    solid whose rare-earth oxides are in the same proportion as in the stream and sum to ``treo_fraction``."""
    oxide = {e: c * oxide_factor(e) for e, c in truth_g_per_L.items()}
    total = sum(oxide.values())
    lines = ["Sample ID,Element,Concentration,Unit,RSD %,LOD"]
    for e, o in oxide.items():
        mg_per_kg = 1e6 * treo_fraction * o / total / oxide_factor(e)
        lines.append(f"P-1,{e},{mg_per_kg!r},mg/kg,{rsd_percent},0.5")
    lines.append("P-1,Fe 259.940,12.0,mg/kg,3.0,0.5")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def truth_purity(truth: dict[str, float], elements) -> float:
    oxide = {e: truth[e] * oxide_factor(e) for e in elements}
    return oxide["Nd"] / sum(oxide.values())


ND, PR = 20.0, 0.05822  # g/L: the nd-product-995 scenario's Nd and Pr
LA = 0.01499  # its La: no band in the UV-Vis, so the live purity does not see it


@pytest.fixture
def product(tmp_path):
    trial = write_product_trial(trials_folder(tmp_path / "data") / "P1.h5", (ND, PR))
    truth = {"Nd": ND, "Pr": PR, "La": LA}
    icp = icp_csv_from_truth(tmp_path / "icp.csv", truth, treo_fraction=0.9985, rsd_percent=1.0)
    results = tmp_path / "results.toml"
    results.write_text(f'[results]\nicp_file = "{icp.name}"\n', encoding="utf-8")
    return trial, icp, results, truth


def test_the_icp_purity_of_a_simulated_product_is_its_truth_and_agrees_with_the_live_purity(product):
    trial, icp, results, truth = product
    made = write_product(trial, results)
    agree = made.agreement
    assert agree is not None
    # ICP over the elements the live purity covers (Nd, Pr) is the truth's, to the digits of the CSV
    assert agree["icp_elements"] == ["Pr", "Nd"]
    assert agree["icp_purity"] == pytest.approx(truth_purity(truth, ("Nd", "Pr")), abs=1e-12)
    # the certificate's number is over every rare earth, La included
    assert made.purity == pytest.approx(truth_purity(truth, ("Nd", "Pr", "La")), abs=1e-12)
    assert agree["icp_treo_purity"] == made.purity
    # the live purity is the synthetic bench's measurement of the same truth: within its sigma
    assert abs(agree["live_purity"] - truth_purity(truth, ("Nd", "Pr"))) <= 2 * agree["live_sigma"]
    assert agree["consistent"] is True
    assert abs(agree["difference"]) <= AGREEMENT_SIGMAS * agree["combined_sigma"]
    assert agree["combined_sigma"] == pytest.approx(math.hypot(agree["live_sigma"], agree["icp_sigma"]))


def test_a_product_whose_icp_truth_has_four_times_the_impurity_is_not_consistent(product, tmp_path):
    trial, _icp, _results, truth = product
    worse = {**truth, "Pr": 4 * PR}
    icp = icp_csv_from_truth(tmp_path / "worse.csv", worse, treo_fraction=0.9985, rsd_percent=1.0)
    results = tmp_path / "worse.toml"
    results.write_text(f'[results]\nicp_file = "{icp.name}"\n', encoding="utf-8")
    agree = write_product(trial, results).agreement
    assert agree is not None
    expected_bias = truth_purity(truth, ("Nd", "Pr")) - truth_purity(worse, ("Nd", "Pr"))
    assert abs(expected_bias) > 2 * AGREEMENT_SIGMAS * agree["combined_sigma"]  # the case is a clear one
    assert agree["difference"] == pytest.approx(expected_bias, abs=2 * agree["live_sigma"])
    assert agree["consistent"] is False
    assert agree["z"] > AGREEMENT_SIGMAS
    assert "NOT consistent" in agree["verdict"]


def test_the_icp_purity_uncertainty_is_the_first_order_propagation_of_the_rsds(product):
    _trial, icp, _results, _truth = product
    results = read_icp_csv(icp)
    values = {e.element: e for e in results.rare_earths}
    cert = certificate(results, "Nd")
    oxides = {s: e.value_mg_per_kg * oxide_factor(s) for s, e in values.items()}
    sigmas = {s: e.sigma_mg_per_kg * oxide_factor(s) for s, e in values.items()}
    total = sum(oxides.values())
    # p = a / T: dp/da = (T - a) / T^2, dp/db = -a / T^2 for every other oxide b
    variance = ((total - oxides["Nd"]) / total**2 * sigmas["Nd"]) ** 2 + sum(
        (oxides["Nd"] / total**2 * sigmas[s]) ** 2 for s in oxides if s != "Nd"
    )
    assert cert.purity_sigma == pytest.approx(math.sqrt(variance), rel=1e-9)
    assert cert.treo_mg_per_kg == pytest.approx(total, rel=1e-12)
    assert cert.treo_sigma_mg_per_kg == pytest.approx(math.sqrt(sum(s**2 for s in sigmas.values())), rel=1e-12)


def test_the_live_purity_is_the_mean_of_the_last_unflagged_rows(tmp_path):
    trial = write_product_trial(tmp_path / "flagged.h5", (ND, PR), flag_last=3)
    with open_trial(trial) as reader:
        live = live_end_purity(reader)
        rows = reader.rows("analysis")
        block = reader.read("analysis")
    expected_rows = tuple(range(rows - 3 - END_ROWS, rows - 3))
    assert live.rows == expected_rows
    chosen = block["purity"][list(expected_rows)]
    assert live.purity == pytest.approx(float(np.mean(chosen)))
    rms_sigma = float(np.sqrt(np.mean(block["purity_sigma"][list(expected_rows)] ** 2)))
    assert live.sigma == pytest.approx(max(rms_sigma, float(np.std(chosen, ddof=1))))
    assert live.covered_elements == ("Nd", "Pr")


def test_agreement_is_like_for_like_and_reports_elements_missing_from_the_icp_file(product, tmp_path):
    trial, _icp, _results, truth = product
    only_nd = tmp_path / "nd-only.csv"
    only_nd.write_text("Sample ID,Element,Concentration,Unit,RSD %,LOD\nP-1,Nd,850000,mg/kg,1,1\n", encoding="utf-8")
    with open_trial(trial) as reader:
        live = live_end_purity(reader)
    agree = agreement(live, certificate(read_icp_csv(only_nd), "Nd"))
    assert agree.missing_elements == ("Pr",)
    assert agree.icp_purity == 1.0


def test_bias_chart_centre_and_limits_from_the_moving_range():
    bias = [0.001, 0.0012, 0.0008, 0.0011, 0.0009, 0.006]
    points = [(f"T{i}", f"2026-11-{10 + i:02d}T00:00:00+00:00", b, 0.001, True) for i, b in enumerate(bias)]
    chart = bias_chart(reversed(points))  # any order in, start-time order out
    assert chart.trial_ids == tuple(p[0] for p in points)
    assert chart.centre == pytest.approx(np.mean(bias))
    sigma = np.mean(np.abs(np.diff(bias))) / 1.128
    assert chart.sigma == pytest.approx(sigma)
    assert chart.upper_limit == pytest.approx(np.mean(bias) + 3 * sigma)
    outside = [p[0] for p in points if not np.mean(bias) - 3 * sigma <= p[2] <= np.mean(bias) + 3 * sigma]
    assert chart.out_of_control == tuple(outside)


def test_bias_chart_has_no_limits_with_fewer_than_three_trials():
    chart = bias_chart([("A", "2026-11-01", 0.001, 0.001, True), ("B", "2026-11-02", 0.002, 0.001, True)])
    assert chart.centre == pytest.approx(0.0015)
    assert math.isnan(chart.sigma) and chart.out_of_control == ()


def test_a_trial_without_an_unflagged_purity_is_certified_without_an_agreement(product, tmp_path):
    _trial, _icp, results, truth = product
    rows = 600 // 10
    trial = write_product_trial(tmp_path / "all-flagged.h5", (ND, PR), flag_last=rows)
    made = write_product(trial, results)
    assert made.agreement is None
    assert "no analysed spectrum without a flag" in made.data["agreement_note"]
    assert made.purity == pytest.approx(truth_purity(truth, ("Nd", "Pr", "La")), abs=1e-12)
