"""Scenario files: concentrations in the cell over simulated time."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from analysis.elements import oxide_factor
from drivers.sim.scenario import (
    ScenarioError,
    format_concentrations,
    load_scenario,
    parse_concentrations,
    scenarios_dir,
)


def write(tmp_path, text: str):
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return path


def test_every_bundled_scenario_loads_and_never_goes_negative():
    paths = sorted(scenarios_dir().glob("*.toml"))
    assert len(paths) >= 2
    for path in paths:
        scenario = load_scenario(path)
        for t in np.linspace(-100, 20000, 200):
            assert all(v >= 0 for v in scenario.concentrations_at(t).values())


def test_in_the_elution_pr_comes_off_before_nd():
    scenario = load_scenario("pr-nd-elution")
    times = np.linspace(0, scenario.duration_s, 2000)
    pr = [scenario.concentrations_at(t)["Pr"] for t in times]
    nd = [scenario.concentrations_at(t)["Nd"] for t in times]
    assert times[np.argmax(pr)] < times[np.argmax(nd)]
    assert max(pr) > 1.0 and max(nd) > 1.0


def test_the_nd_product_is_99_5_percent_nd2o3_of_total_oxide():
    c = load_scenario("nd-product-995").concentrations_at(1234.0)
    oxides = {el: g * oxide_factor(el) for el, g in c.items()}
    assert oxides["Nd"] / sum(oxides.values()) == pytest.approx(0.995, abs=1e-4)


def test_counter_current_nd_to_pr_ratio_rises():
    scenario = load_scenario("pr-nd-countercurrent")
    start, end = scenario.concentrations_at(0.0), scenario.concentrations_at(14400.0)
    assert end["Nd"] / end["Pr"] > 10 * start["Nd"] / start["Pr"]


def test_base_peaks_and_table_add_up(tmp_path):
    scenario = load_scenario(write(tmp_path, """
name = "sum"
[base]
Nd = 1.0
[[peak]]
element = "Nd"
center_s = 100
sigma_s = 10
tail_sigma_s = 40
height_g_per_L = 2.0
[table]
time_s = [0, 200]
Nd = [0.0, 4.0]
Pr = [1.0, 1.0]
"""))
    assert scenario.concentrations_at(100.0)["Nd"] == pytest.approx(1.0 + 2.0 + 2.0)
    # bi-Gaussian: the tail (after the centre) is wider than the front
    before = scenario.concentrations_at(80.0)["Nd"] - 1.0 - 1.6
    after = scenario.concentrations_at(120.0)["Nd"] - 1.0 - 2.4
    assert after > before
    assert scenario.concentrations_at(-50.0)["Nd"] == pytest.approx(1.0)  # table holds its first value
    assert scenario.concentrations_at(5000.0)["Nd"] == pytest.approx(5.0)  # and its last
    assert scenario.elements == ("Pr", "Nd")


def test_repeat_wraps_at_the_duration(tmp_path):
    scenario = load_scenario(write(tmp_path, """
duration_s = 100
repeat = true
[table]
time_s = [0, 100]
Sm = [0.0, 10.0]
"""))
    assert scenario.concentrations_at(125.0)["Sm"] == pytest.approx(2.5)


@pytest.mark.parametrize("text, message", [
    ("[base]\nXx = 1.0", "unknown element 'Xx'"),
    ("[base]\nNd = -1.0", "must be >= 0"),
    ("[base]\nNd = \"lots\"", "finite number"),
    ("colour = 'blue'", "unknown keys"),
    ("[table]\ntime_s = [0, 10]\nNd = [1.0]", "needs 2 values"),
    ("[table]\ntime_s = [0, 0]\nNd = [1.0, 2.0]", "increase strictly"),
    ("[table]\nNd = [1.0]", "time_s"),
    ("[[peak]]\nelement = 'Nd'\ncenter_s = 1\nsigma_s = 0\nheight_g_per_L = 1", "sigma_s: must be > 0"),
    ("repeat = true", "needs duration_s"),
    ("name = ", "not valid TOML"),
])
def test_bad_scenarios_raise_errors_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_scenario_lists_the_bundled_ones():
    with pytest.raises(ScenarioError, match="pr-nd-elution"):
        load_scenario("no-such-scenario")


def test_concentration_lists_round_trip():
    text = "Nd=12.5,Pr=0.25,La=1e-3"
    parsed = parse_concentrations(text)
    assert parsed == {"Nd": 12.5, "Pr": 0.25, "La": 0.001}
    assert parse_concentrations(format_concentrations(parsed)) == parsed
    assert parse_concentrations("  ") == {}


@pytest.mark.parametrize("text", ["Nd", "Nd=abc", "Nd=1,Nd=2", "Qq=1", "Nd=-1", "Nd=nan", "Nd=inf"])
def test_bad_concentration_lists_are_refused(text):
    with pytest.raises(ScenarioError):
        parse_concentrations(text)


# -- issue 11: a scenario is untrusted input ---------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("base = 5", "[base]: must be a table"),
    ("peak = 5", "[[peak]]: must be an array of tables"),
    ("table = 5", "[table]: must be a table"),
    ("name = 5", "name: must be a string"),
    ("[base]\nNd = true", "finite number"),
    ("[base]\nNd = 5000.0", "at most 1000"),
    ("[[peak]]\nelement = 'Nd'\ncenter_s = 1e300\nsigma_s = 1\nheight_g_per_L = 1", "center_s: must be at most 1e+09"),
    ("name = " + "9" * 5000, "not valid TOML here"),
])
def test_malformed_scenarios_are_scenario_errors_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.timeout(20)
def test_a_pipe_device_or_folder_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a named pipe (FIFO)"), (Path("/dev/zero"), "a character device"),
                       (tmp_path, "a folder")):
        with pytest.raises(ScenarioError, match=re.escape(f"is {kind}, not a regular file")):
            load_scenario(path)


def test_an_oversized_scenario_is_refused(tmp_path):
    path = write(tmp_path, "[base]\nNd = 1.0\n" + "#" * (1 << 20))
    with pytest.raises(ScenarioError, match="at most 1048576 bytes are allowed"):
        load_scenario(path)


def test_an_over_long_scenario_name_is_a_scenario_error_not_an_os_error():
    with pytest.raises(ScenarioError, match="too long for the file system") as caught:
        load_scenario("s" * 5000)
    assert len(str(caught.value)) < 500
