"""Smoke run of benchmarks/drift_accuracy.py at a tiny size: it runs and produces its table.

Accuracy targets are not asserted here (the benchmark is an experiment; its
figures are in docs/performance.md): only that every row is there, with its
columns, and with numbers where a number is expected.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "drift_accuracy.py"


@pytest.fixture(scope="module")
def bench():
    name = "drift_accuracy_benchmark"
    spec = importlib.util.spec_from_file_location(name, BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the file runs
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def result(bench):
    return bench.main(["--quick", "--pixels", "512", "--unknowns", "10", "--products", "3", "--seed", "3"])


def test_a_row_per_generator_shift_width_and_drift_setting(bench, result):
    rows = result["rows"]
    for drift in ("on", "off"):
        grid = {
            (r["generator"], r["shift_nm"], r["width_factor"])
            for r in rows
            if r["drift_terms"] == drift and not r["hypersensitive"]
        }
        assert grid == {(c.name, s, w) for c in bench.CHEMISTRIES for s in bench.SHIFTS_NM for w in bench.WIDTH_FACTORS}
        hyper = [r for r in rows if r["drift_terms"] == drift and r["hypersensitive"]]
        assert sorted(r["generator"] for r in hyper) == sorted(c.name for c in bench.CHEMISTRIES)
    assert len(rows) == 2 * len(bench.CHEMISTRIES) * (len(bench.SHIFTS_NM) * len(bench.WIDTH_FACTORS) + 1)


def test_numbers_are_finite_where_they_must_be(result):
    for row in result["rows"]:
        for key in (
            "rmsep_worst_pct",
            "purity_error_pp_mean_abs",
            "purity_error_pp_mean",
            "flagged_pct",
            "purity_withheld_pct",
            "lack_of_fit_median_unknowns",
            "lack_of_fit_median_products",
        ):
            assert math.isfinite(row[key]), (key, row)
        assert row["rmsep_worst_analyte"] in ("Nd", "Pr", "Sm", "Er", "Ho")
        assert 0.0 <= row["flagged_pct"] <= 100.0
        assert row["status_not_ok"] == 0
    unperturbed = [
        r for r in result["rows"] if r["shift_nm"] == 0.0 and r["width_factor"] == 1.0 and not r["hypersensitive"]
    ]
    for row in unperturbed:  # nothing to flag: every coverage and the purity sigma are numbers
        for key in ("coverage_concentration_pct", "coverage_purity_pct", "purity_sigma_pp_median"):
            assert math.isfinite(row[key]), (key, row)


def test_the_second_fit_is_reported_and_never_taken_without_drift_terms(result):
    for row in result["rows"]:
        assert 0.0 <= row["second_fit_pct"] <= 100.0, row
        if row["drift_terms"] == "off":  # no width spectra, no width change to refit
            assert row["second_fit_pct"] == 0.0, row


def test_markdown_tables_have_the_columns(bench, result):
    text = result["markdown"]
    header_columns = [c.strip() for c in bench.HEADER.strip("|").split("|")]
    for column in (
        "generator",
        "shift nm",
        "width",
        "RMSEP worst, % of range",
        "purity error pp, mean abs (mean)",
        "purity sigma pp, median",
        "2-sigma coverage conc. %",
        "2-sigma coverage purity %",
        "flagged %",
        "lack_of_fit median, unknowns / product",
        "second fit %",
    ):
        assert column in header_columns
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    body = [line for line in lines if line != bench.HEADER]
    assert text.count(bench.HEADER) == 2  # drift terms on, and off
    assert len(body) == len(result["rows"])
    assert all(line.count("|") == len(header_columns) + 1 for line in body)
    assert "Targets (drift terms on):" in text
