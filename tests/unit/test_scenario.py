"""Scenario files: concentrations in the cell over simulated time."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from analysis.elements import oxide_factor
from drivers.sim._bench_drift import Solution
from drivers.sim._cascade import CascadeState
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
    scenario = load_scenario(
        write(
            tmp_path,
            """
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
""",
        )
    )
    assert scenario.concentrations_at(100.0)["Nd"] == pytest.approx(1.0 + 2.0 + 2.0)
    # bi-Gaussian: the tail (after the centre) is wider than the front
    before = scenario.concentrations_at(80.0)["Nd"] - 1.0 - 1.6
    after = scenario.concentrations_at(120.0)["Nd"] - 1.0 - 2.4
    assert after > before
    assert scenario.concentrations_at(-50.0)["Nd"] == pytest.approx(1.0)  # table holds its first value
    assert scenario.concentrations_at(5000.0)["Nd"] == pytest.approx(5.0)  # and its last
    assert scenario.elements == ("Pr", "Nd")


def test_repeat_wraps_at_the_duration(tmp_path):
    scenario = load_scenario(
        write(
            tmp_path,
            """
duration_s = 100
repeat = true
[table]
time_s = [0, 100]
Sm = [0.0, 10.0]
""",
        )
    )
    assert scenario.concentrations_at(125.0)["Sm"] == pytest.approx(2.5)


def test_process_quantities_are_piecewise_linear_and_hold_their_ends(tmp_path):
    scenario = load_scenario(
        write(tmp_path, "[process]\ntime_s = [0, 100, 200]\npH = [1.5, 1.5, 2.5]\nflow_L_per_h = 12.0\n")
    )
    assert scenario.process_at("pH", 150.0) == pytest.approx(2.0)
    assert scenario.process_at("pH", -10.0) == pytest.approx(1.5)
    assert scenario.process_at("pH", 1e6) == pytest.approx(2.5)
    assert scenario.process_at("flow_L_per_h", 77.0) == pytest.approx(12.0)
    with pytest.raises(ScenarioError, match="no process quantity 'mass_kg' .it has: pH, flow_L_per_h"):
        scenario.process_at("mass_kg", 0.0)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[base]\nXx = 1.0", "unknown element 'Xx'"),
        ("[base]\nNd = -1.0", "must be >= 0"),
        ('[base]\nNd = "lots"', "finite number"),
        ("colour = 'blue'", "unknown keys"),
        ("[table]\ntime_s = [0, 10]\nNd = [1.0]", "needs 2 values"),
        ("[table]\ntime_s = [0, 0]\nNd = [1.0, 2.0]", "increase strictly"),
        ("[table]\nNd = [1.0]", "time_s"),
        ("[[peak]]\nelement = 'Nd'\ncenter_s = 1\nsigma_s = 0\nheight_g_per_L = 1", "sigma_s: must be > 0"),
        ("repeat = true", "needs duration_s"),
        ("name = ", "not valid TOML"),
        ("[process]\npH = [1.5, 2.0]", "[process] pH: a list needs time_s"),
        ("[process]\ntime_s = [0, 10]\npH = [1.5]", "[process] pH: needs 2 values"),
        ("[process]\ntime_s = [10, 0]\npH = [1.5, 2.0]", "[process] time_s: must increase strictly"),
        ("[process]\npH = true", "[process] pH: expected a finite number"),
        ("[process]\n'flow rate' = 1.0", "is no quantity name"),
    ],
)
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


@pytest.mark.parametrize(
    "text, message",
    [
        ("base = 5", "[base]: must be a table"),
        ("peak = 5", "[[peak]]: must be an array of tables"),
        ("table = 5", "[table]: must be a table"),
        ("name = 5", "name: must be a string"),
        ("[base]\nNd = true", "finite number"),
        ("[base]\nNd = 5000.0", "at most 1000"),
        (
            "[[peak]]\nelement = 'Nd'\ncenter_s = 1e300\nsigma_s = 1\nheight_g_per_L = 1",
            "center_s: must be at most 1e+09",
        ),
        ("name = " + "9" * 5000, "not valid TOML here"),
    ],
)
def test_malformed_scenarios_are_scenario_errors_naming_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


@pytest.mark.timeout(20)
def test_a_pipe_device_or_folder_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    for path, kind in (
        (fifo, "a named pipe (FIFO)"),
        (Path("/dev/zero"), "a character device"),
        (tmp_path, "a folder"),
    ):
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


# -- issue 12: the bench around the cell ([lab], [solution], [drift]) ----------------------------------------


def test_the_drift_scenarios_drive_lab_solution_and_switches():
    warm = load_scenario("lab-warms-4C")
    assert warm.duration_s == 86400
    assert warm.lab_temperature_at(0.0) == 20.0 and warm.lab_temperature_at(50400.0) == 24.0
    assert warm.lab_temperature_at(86400.0) - warm.lab_temperature_at(0.0) == pytest.approx(4.0)
    assert warm.solution.follows_lab
    assert (warm.drift.wavelength, warm.drift.bands, warm.drift.matrix) == (True, True, None)
    assert warm.drift.k_T_nm_per_C == 0.05 and warm.drift.calibration_temperature_C == 20.0
    hot = load_scenario("calibrated-20C-used-30C")
    held = Solution()
    assert hot.lab is None and hot.solution_at(100.0, 20.0, held).temperature_C == 30.0
    assert hot.drift.bands is True and hot.drift.wavelength is None
    change = load_scenario("matrix-change")
    assert [change.solution_at(t, 20.0, held).matrix for t in (0.0, 7199.0, 7200.0, 14400.0)] == [
        "nitrate",
        "nitrate",
        "chloride",
        "chloride",
    ]
    assert change.solution_at(9000.0, 20.0, held).acid_mol_per_L == 1.0
    for name in ("lab-warms-4C", "calibrated-20C-used-30C"):
        c = load_scenario(name).concentrations_at(1000.0)
        oxides = {el: g * oxide_factor(el) for el, g in c.items()}
        assert oxides["Nd"] / sum(oxides.values()) == pytest.approx(0.995, abs=1e-5)


def test_existing_scenarios_leave_the_bench_alone():
    for name in ("nd-product-995", "pr-nd-elution", "pr-nd-countercurrent"):
        scenario = load_scenario(name)
        assert (scenario.lab, scenario.solution, scenario.drift) == (None, None, None)
        assert scenario.solution_at(100.0, 25.0, Solution(21.0, "nitrate", 2.0)) == Solution(21.0, "nitrate", 2.0)


def test_solution_keys_left_out_keep_what_the_bench_holds(tmp_path):
    scenario = load_scenario(write(tmp_path, "[solution]\nmatrix = 'CHL'\n"))
    assert scenario.solution_at(5.0, 30.0, Solution(27.0, "nitrate", 3.0)) == Solution(27.0, "chloride", 3.0)
    ramp = load_scenario(
        write(tmp_path, "[solution]\ntime_s = [0, 100]\ntemperature_C = [20.0, 30.0]\nacid_mol_per_L = [1.0, 3.0]\n")
    )
    assert ramp.solution_at(50.0, 0.0, Solution()) == Solution(25.0, "perchlorate", 2.0)


def test_a_daily_cycle_and_repeat_wrap_lab_and_replugs(tmp_path):
    cycle = load_scenario(write(tmp_path, "[lab]\ntemperature_C = 21.0\ncycle_amplitude_C = 2.0\n"))
    assert cycle.lab_temperature_at(50400.0) == pytest.approx(23.0)  # the maximum at 14:00 by default
    assert cycle.lab_temperature_at(50400.0 - 43200.0) == pytest.approx(19.0)
    wrapped = load_scenario(
        write(
            tmp_path,
            """
duration_s = 100
repeat = true
[lab]
time_s = [0, 100]
temperature_C = [20.0, 24.0]
[drift]
replug_s = [50]
replug_step_nm = [0.1]
""",
        )
    )
    assert wrapped.lab_temperature_at(150.0) == pytest.approx(22.0)
    assert wrapped.replug_offset_nm(40.0) == 0.0 and wrapped.replug_offset_nm(60.0) == pytest.approx(0.1)
    assert wrapped.replug_offset_nm(260.0) == pytest.approx(0.3)  # two whole cycles and this one's


@pytest.mark.parametrize(
    "text, message",
    [
        ("lab = 5", "[lab]: must be a table"),
        ("drift = [1, 2]", "[drift]: must be a table"),
        ("[lab]\ncolour = 1\ntemperature_C = 20.0", "unknown keys ['colour']"),
        ("[lab]\ntime_s = [0]", "needs temperature_C"),
        ("[lab]\ntemperature_C = true", "temperature_C: expected a finite number, got True"),
        ("[lab]\ntemperature_C = nan", "expected a finite number"),
        ("[lab]\ntemperature_C = inf", "expected a finite number"),
        ("[lab]\ntemperature_C = 2" + "0" * 400, "expected a finite number"),
        ("[lab]\ntemperature_C = 70.0", "must be within 0 to 50 C"),
        ("[lab]\ntemperature_C = [20.0, 24.0]", "a list needs time_s"),
        ("[lab]\ntime_s = [0, 10]\ntemperature_C = [20.0]", "needs 2 values"),
        ("[lab]\ntime_s = [0, 10]\ntemperature_C = [20.0, '21']", "temperature_C[1]: expected a finite number"),
        ("[lab]\ntime_s = [10, 0]\ntemperature_C = 20.0", "must increase strictly"),
        ("[lab]\ntime_s = []\ntemperature_C = 20.0", "non-empty list"),
        ("[lab]\ntemperature_C = 45.0\ncycle_amplitude_C = 10.0", "must stay within 0 to 50 C"),
        ("[lab]\ntemperature_C = 20.0\ncycle_period_s = 0", "cycle_period_s: must be within 60"),
        ("[solution]", "gives none of"),
        ("[solution]\nmatrix = 'sulphate'", "unknown matrix 'sulphate'"),
        ("[solution]\nmatrix = 1", "unknown matrix 1"),
        ("[solution]\ntemperature_C = 'hot'", "expected a finite number"),
        ("[solution]\ntemperature_C = 120.0", "must be within 0 to 95 C"),
        ("[solution]\nacid_mol_per_L = -1.0", "must be within 0 to 15 mol/L"),
        ("[solution]\nacid_mol_per_L = false", "expected a finite number"),
        ("[solution]\ntime_s = [0, 10]\nmatrix = ['nitrate']", "needs 2 values"),
        ("[solution]\nmatrix = 'nitrate'\npH = 1", "unknown keys ['pH']"),
        ("[drift]\nwavelength = 1", "wavelength: must be true or false"),
        ("[drift]\nbands = 'yes'", "bands: must be true or false"),
        ("[drift]\nk_T_nm_per_C = true", "expected a finite number"),
        ("[drift]\nk_T_nm_per_C = 2.0", "must be within -0.5 to 0.5 nm/C"),
        ("[drift]\ncalibration_temperature_C = -40.0", "must be within 0 to 50 C"),
        ("[drift]\nspectrometer_lag_s = -1", "must be within 0 to 86400 s"),
        ("[drift]\nreplug_s = [10]", "go together"),
        ("[drift]\nreplug_s = [10, 20]\nreplug_step_nm = [0.1]", "needs 2 values"),
        ("[drift]\nreplug_s = [10]\nreplug_step_nm = [5.0]", "must be within -2 to 2 nm"),
        ("[drift]\nreplug_s = [-10]\nreplug_step_nm = [0.1]", "must be >= 0"),
        ("[drift]\nshift_nm = 0.1", "unknown keys ['shift_nm']"),
        ("[base]\nNd = 1" + "0" * 400, "expected a finite number"),
    ],
)
def test_bad_bench_sections_raise_errors_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


# -- issue 16: the sampling points of a Pr/Nd solvent-extraction cascade ([cascade]) -----------------------

CASCADE_STEP = """
name = "step"
[process]
time_s = [0, 1000, 1001]
pH = [1.5, 1.5, 1.7]
[cascade]
residence_time_s = 1200
"""


def test_the_cascade_scenario_states_its_chemistry_and_moves_with_the_ph():
    scenario = load_scenario("pr-nd-cascade")
    cascade = scenario.cascade
    assert cascade is not None and scenario.duration_s == 14400
    assert dict(cascade.feed_g_per_L) == {"Pr": 4.0, "Nd": 12.0}
    assert dict(cascade.reference_distribution_ratio) == {"Pr": 0.8, "Nd": 1.2}
    assert (cascade.reference_pH, cascade.stages, cascade.organic_to_aqueous_flow) == (1.5, 8, 1.0)
    assert (cascade.strip_to_feed_flow, cascade.residence_time_s) == (0.75, 1200.0)
    assert [scenario.process_at("pH", t) for t in (0.0, 3599.0, 3660.0, 8999.0, 9060.0)] == [
        1.45,
        1.45,
        1.55,
        1.55,
        1.5,
    ]
    feed_ratio = 12.0 / 4.0
    before, after = scenario.cascade_truth_at(3500.0), scenario.cascade_truth_at(8900.0)
    for truth in (before, after, scenario.cascade_truth_at(14400.0)):
        strip, raffinate = truth.concentrations["strip"], truth.concentrations["raffinate"]
        assert strip["Nd"] / strip["Pr"] > feed_ratio > raffinate["Nd"] / raffinate["Pr"]  # Nd loads the organic
        assert truth.concentrations["feed"] == {"Pr": 4.0, "Nd": 12.0}
        assert truth.beta() == pytest.approx(1.5, rel=1e-12)
        assert max(strip.values()) < 17.0  # within the optics' range (nd-product-995 has Nd 20 g/L)
    assert after.distribution_ratio["Nd"] / before.distribution_ratio["Nd"] == pytest.approx(10 ** (3 * 0.1))
    assert after.concentrations["raffinate"]["Nd"] < 0.1 * before.concentrations["raffinate"]["Nd"]
    assert after.concentrations["strip"]["Pr"] > 1.5 * before.concentrations["strip"]["Pr"]
    assert scenario.separation_factor_at(8900.0) == pytest.approx(after.separation_factor())
    assert after.separation_factor() > 2 * before.separation_factor() > 2 * 1.5  # a cascade multiplies beta


def test_two_loads_of_a_cascade_scenario_agree_exactly_whatever_was_asked_before():
    """Two simulator processes of one scenario load it separately and are asked at different times."""
    first, second = load_scenario("pr-nd-cascade"), load_scenario("pr-nd-cascade")
    times = [float(t) for t in np.linspace(-100.0, 16000.0, 397)] + [3600.5, 3630.25, 9059.999]
    points = ("feed", "raffinate", "strip")
    forward = {(t, p): first.concentrations_at(t, p) for t in times for p in points}
    second.concentrations_at(12345.678, "strip")  # a late time first: the grid is laid in another order
    backward = {(t, p): second.concentrations_at(t, p) for t in reversed(times) for p in reversed(points)}
    assert forward == backward  # exactly, not approximately
    assert first.cascade_truth_at(4321.0) == second.cascade_truth_at(4321.0)


def test_at_steady_state_the_cascade_balances_its_mass():
    scenario = load_scenario("pr-nd-cascade")
    cascade = scenario.cascade
    assert cascade is not None
    for time_s, pH in ((100.0, 1.45), (3599.0, 1.45), (1e6, 1.50)):  # settled: from the start, long after the end
        points = {p: scenario.concentrations_at(time_s, p) for p in ("feed", "raffinate", "strip")}
        expected = cascade.steady_state(pH)
        for element, feed in points["feed"].items():
            balance = points["raffinate"][element] + points["strip"][element] * cascade.strip_to_feed_flow
            assert balance == pytest.approx(feed, rel=1e-12)
            for point in ("raffinate", "strip"):
                assert points[point][element] == pytest.approx(expected[point][element], rel=1e-12)


def test_after_a_ph_step_the_points_lag_with_the_residence_time(tmp_path):
    scenario = load_scenario(write(tmp_path, CASCADE_STEP))
    cascade = scenario.cascade
    assert cascade is not None
    tau = cascade.residence_time_s
    start, target = cascade.steady_state(1.5), cascade.steady_state(1.7)
    at_step = scenario.cascade_truth_at(1001.0).concentrations
    for point in ("raffinate", "strip"):
        for element in ("Pr", "Nd"):
            step = start[point][element] - target[point][element]
            assert at_step[point][element] == pytest.approx(start[point][element], abs=1e-3 * abs(step))  # 1 s of 1200
            for elapsed in (tau, 3 * tau):
                now = scenario.concentrations_at(1001.0 + elapsed, point)[element]
                left = (now - target[point][element]) / (at_step[point][element] - target[point][element])
                assert left == pytest.approx(math.exp(-elapsed / tau), rel=1e-9)
    # the whole trajectory against the lag stepped by hand (drivers.sim._cascade.CascadeState, 0.01 s steps on the ramp)
    state = CascadeState(cascade, pH=1.5)
    state.advance(1000.0, 1.5)
    for t in np.arange(1000.01, 1001.0001, 0.01):
        state.advance(float(t), scenario.process_at("pH", float(t)))
    for t in (1500.0, 2400.0, 6000.0):
        by_hand = state.advance(t, 1.7)
        for point in ("raffinate", "strip"):
            for element in ("Pr", "Nd"):
                assert scenario.concentrations_at(t, point)[element] == pytest.approx(by_hand[point][element], rel=1e-5)
    at_once = load_scenario(write(tmp_path, CASCADE_STEP.replace("residence_time_s = 1200", "residence_time_s = 0")))
    assert at_once.concentrations_at(1001.0, "raffinate") == pytest.approx(target["raffinate"], rel=1e-12)


def test_beta_does_not_depend_on_ph_while_the_distribution_ratios_move():
    scenario = load_scenario("pr-nd-cascade")
    d_nd = []
    for t in np.linspace(0.0, 14400.0, 97):
        ratios = scenario.distribution_ratios_at(float(t))
        assert ratios["Nd"] / ratios["Pr"] == pytest.approx(1.5, rel=1e-12)
        assert scenario.cascade_truth_at(float(t)).beta() == pytest.approx(1.5, rel=1e-12)
        d_nd.append(ratios["Nd"])
    assert max(d_nd) / min(d_nd) == pytest.approx(10 ** (3 * 0.1), rel=1e-9)


def test_without_a_sampling_point_a_scenario_is_what_it_was(tmp_path):
    plain = """
[base]
Nd = 1.0
La = 0.5
[[peak]]
element = "Sm"
center_s = 500
sigma_s = 100
height_g_per_L = 2.0
[table]
time_s = [0, 2000]
Pr = [0.0, 2.0]
[process]
time_s = [0, 1000, 1060]
pH = [1.4, 1.4, 1.6]
"""
    without = load_scenario(write(tmp_path, plain))
    with_cascade = load_scenario(write(tmp_path, plain + "[cascade]\nstages = 6\n"))
    for t in np.linspace(-50.0, 5000.0, 41):
        t = float(t)
        assert with_cascade.concentrations_at(t) == without.concentrations_at(t)
        strip = with_cascade.concentrations_at(t, "strip")
        assert list(strip) == ["La", "Pr", "Nd", "Sm"]  # periodic-table order
        cascade = with_cascade.cascade_truth_at(t)
        point = cascade.concentrations["strip"]
        assert point == strip
        base = without.concentrations_at(t)
        history = with_cascade.concentrations_at(t, "strip")
        assert history["La"] == base["La"] and history["Sm"] == base["Sm"]
        assert history["Nd"] > base["Nd"] and history["Pr"] > base["Pr"]
        assert without.concentrations_at(t, "strip") == base  # a point of a scenario without a cascade: its solution
    assert load_scenario("pr-nd-cascade").concentrations_at(100.0) == {}
    for name in ("nd-product-995", "pr-nd-elution", "pr-nd-countercurrent"):
        assert load_scenario(name).cascade is None


def test_sampling_points_and_cascade_truths_are_checked(tmp_path):
    scenario = load_scenario("pr-nd-cascade")
    with pytest.raises(ScenarioError, match="unknown sampling point 'tank' .known: feed, raffinate, strip"):
        scenario.concentrations_at(0.0, "tank")
    with pytest.raises(ScenarioError, match="unknown sampling point"):
        scenario.separation_factor_at(0.0, enriched="organic")
    plain = load_scenario("nd-product-995")
    for ask in (plain.cascade_truth_at, plain.distribution_ratios_at, plain.separation_factor_at):
        with pytest.raises(ScenarioError, match="has no .cascade. section"):
            ask(0.0)


def test_a_repeating_cascade_starts_settled_again_each_cycle(tmp_path):
    scenario = load_scenario(write(tmp_path, "duration_s = 5000\nrepeat = true\n" + CASCADE_STEP))
    for point in ("raffinate", "strip"):
        assert scenario.concentrations_at(5000.0 + 2500.0, point) == scenario.concentrations_at(2500.0, point)
        assert scenario.concentrations_at(5000.0 + 10.0, point) == scenario.concentrations_at(10.0, point)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[cascade]\nstages = 8", "[cascade]: needs [process] pH"),
        ("[process]\nflow_L_per_h = 1.0\n[cascade]\nstages = 8", "[cascade]: needs [process] pH"),
        ("cascade = 5\n[process]\npH = 1.5", "[cascade]: must be a table"),
        ("[process]\npH = 1.5\n[cascade]\ncolour = 1", "[cascade]: unknown keys ['colour']"),
        ("[process]\npH = 1.5\n[cascade]\nstages = 0", "[cascade] stages: must be a whole number 1 to 100, got 0"),
        ("[process]\npH = 1.5\n[cascade]\nstages = 2.5", "stages: must be a whole number 1 to 100, got 2.5"),
        ("[process]\npH = 1.5\n[cascade]\nstages = true", "stages: must be a whole number 1 to 100, got True"),
        ("[process]\npH = 1.5\n[cascade]\nstages = 101", "stages: must be a whole number 1 to 100"),
        ("[process]\npH = 1.5\n[cascade]\nfeed_g_per_L = 5", "[cascade] feed_g_per_L: must be a table"),
        ("[process]\npH = 1.5\n[cascade.feed_g_per_L]\n", "[cascade] feed_g_per_L: names no element"),
        ("[process]\npH = 1.5\n[cascade.feed_g_per_L]\nXx = 1.0", "[cascade] feed_g_per_L: unknown element 'Xx'"),
        ("[process]\npH = 1.5\n[cascade.feed_g_per_L]\nNd = -1.0\nPr = 1.0", "feed_g_per_L Nd: must be >= 0"),
        ("[process]\npH = 1.5\n[cascade.feed_g_per_L]\nNd = 'lots'\nPr = 1.0", "Nd: expected a finite number"),
        (
            "[process]\npH = 1.5\n[cascade.reference_distribution_ratio]\nNd = 0.0\nPr = 1.0",
            "reference_distribution_ratio Nd: must be > 0",
        ),
        (
            "[process]\npH = 1.5\n[cascade.feed_g_per_L]\nNd = 10.0",
            "must name the same elements (feed: Nd; ratios: Nd, Pr)",
        ),
        ("[process]\npH = 1.5\n[cascade]\nstrip_to_feed_flow = 0", "strip_to_feed_flow: must be > 0"),
        ("[process]\npH = 1.5\n[cascade]\norganic_to_aqueous_flow = true", "expected a finite number"),
        ("[process]\npH = 1.5\n[cascade]\norganic_to_aqueous_flow = 1e9", "must be at most 1e+06"),
        ("[process]\npH = 1.5\n[cascade]\nresidence_time_s = -1", "residence_time_s: must be >= 0"),
        ("[process]\npH = 1.5\n[cascade]\nreference_pH = 20", "reference_pH: must be within -2 to 14"),
        ("[process]\npH = 1.5\n[cascade]\nreference_pH = nan", "reference_pH: expected a finite number"),
        (
            "[process]\ntime_s = [0, 10]\npH = [1.5, 20.0]\n[cascade]\nstages = 8",
            "[cascade]: [process] pH must stay within -2 to 14 for the cascade, got 20.0",
        ),
    ],
)
def test_bad_cascade_sections_raise_errors_naming_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
