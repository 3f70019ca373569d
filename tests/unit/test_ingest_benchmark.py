"""Smoke run of benchmarks/ingest.py with several instruments at a tiny size (seconds).

Speed is not asserted (the machine is shared; the figures are in docs/performance.md): only that the
single-stream run and the run with 3 spectrometer streams, 3 furnace zones and 3 sensors (flat out and
paced) write every row they produced to its own table, with times increasing and values read back,
and that the SWMR reader in the other process saw every table and timed it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

# slow: four trials, each with a SWMR reader in a child process (spawned: a Python that imports daq), and the
# calibration of the synthetic source; 15-40 s in all on two shared cores, counted in the first test's limit
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
STREAMS = ("raffinate", "strip", "feed")
INSTRUMENTS = ("zone-1", "zone-2", "zone-3", "feed-ph", "strip-flow", "raffinate-ph")


@pytest.fixture(scope="module")
def bench():
    # imported under its own name from its folder: the SWMR reader is a spawned process, which imports
    # the module of its target function by that name (spawn passes this process's sys.path to it)
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("ingest")
    finally:
        sys.modules.pop("ingest", None)
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def figures(bench, tmp_path_factory):
    args = bench.parse_args(
        [
            "--spectra",
            "1536",
            "--block",
            "256",
            "--streams",
            "3",
            "--controllers",
            "3",
            "--sensors",
            "3",
            "--instrument-hz",
            "20,40",
            "--no-stages",
            "--paced",
            "20:1",
            "--out",
            str(tmp_path_factory.mktemp("ingest")),
        ]
    )
    return bench.run(args)


def test_every_run_passes_its_checks(bench, figures):
    assert {"trial", "multi", "paced", "paced_multi", "comparison"} <= figures.keys()
    assert bench.checks_ok(figures)
    assert figures["trial"]["checks"]["ok"] and figures["paced"]["checks"]["ok"]


@pytest.mark.parametrize("run", ["multi", "paced_multi"])
def test_every_table_has_the_rows_produced_times_increasing_values_read_back(figures, run):
    checks = figures[run]["checks"]
    assert checks["state"] == "success"
    assert set(checks["streams"]) == set(STREAMS)
    for name, stream in checks["streams"].items():
        assert stream["ok"], (name, stream)
        assert stream["no_row_dropped"] and stream["time_strictly_increasing"]
        assert stream["times_equal_in_both_tables"] and stream["purity_sum_matches"]
        assert stream["last_block_counts_identical"]
        assert stream["rows"] == {f"spectrometer:{name}": figures[run]["streams"][name]["spectra"]} | {
            f"analysis:{name}": figures[run]["streams"][name]["spectra"]
        }
    assert set(checks["instruments"]) == set(INSTRUMENTS)
    for name, instrument in checks["instruments"].items():
        assert instrument["ok"], (name, instrument)
        assert instrument["rows"] == instrument["rows_produced"] > 0
        assert instrument["time_strictly_increasing"] and instrument["times_read_back"]


@pytest.mark.parametrize("run", ["multi", "paced_multi"])
def test_the_reader_timed_every_table(figures, run):
    tables = figures[run]["tables"]
    expected = {f"{t}:{s}" for s in STREAMS for t in ("spectrometer", "analysis")}
    expected |= {f"furnace:{z}" for z in INSTRUMENTS[:3]} | {f"sensor:{s}" for s in INSTRUMENTS[3:]}
    assert set(tables) == expected
    seen = figures[run]["reader"]["rows_seen"]
    for key, table in tables.items():
        assert seen[key] == table["rows"], key
        latency = table["latency_s"]
        assert latency["n"] == table["rows"]
        assert 0 <= latency["p50"] <= latency["p99"] <= latency["max"]


def test_the_comparison_has_ratios_for_every_table(figures):
    for kind in ("flat out", "paced"):
        comparison = figures["comparison"][kind]
        assert comparison["spectra_per_s_ratio"] > 0 and comparison["rss_max_ratio"] > 0
        assert len(comparison["latency_ratio"]) == 2 * len(STREAMS) + len(INSTRUMENTS)
        assert comparison["targets"]["no row dropped, checks ok"]
