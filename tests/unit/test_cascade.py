"""The simulated Pr/Nd cascade's chemistry holds to what its docstring states (drivers/sim/_cascade.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import analysis
from drivers.sim._cascade import CascadeChemistry, CascadeHistory, CascadeState


@pytest.fixture
def chemistry() -> CascadeChemistry:
    return CascadeChemistry()


@pytest.mark.parametrize("pH", [1.0, 1.3, 1.5, 1.7, 2.0])
def test_mass_balance_closes_at_every_ph(chemistry, pH):
    state = chemistry.steady_state(pH)
    for element, feed in chemistry.feed_g_per_L.items():
        out = state["raffinate"][element] + state["strip"][element] * chemistry.strip_to_feed_flow
        assert out == pytest.approx(feed, rel=1e-12)


def test_the_organic_carries_nd_so_the_strip_is_nd_rich_and_the_raffinate_pr_rich(chemistry):
    state = chemistry.steady_state(chemistry.reference_pH)
    feed_ratio = chemistry.feed_g_per_L["Nd"] / chemistry.feed_g_per_L["Pr"]
    assert (
        state["strip"]["Nd"] / state["strip"]["Pr"] > feed_ratio > state["raffinate"]["Nd"] / state["raffinate"]["Pr"]
    )


def test_a_higher_ph_extracts_more_of_both_and_the_separation_factor_stays(chemistry):
    low, high = chemistry.steady_state(1.3), chemistry.steady_state(1.7)
    for element in ("Pr", "Nd"):
        assert high["raffinate"][element] < low["raffinate"][element]
        ratio = chemistry.distribution_ratio(element, 1.7) / chemistry.distribution_ratio(element, 1.3)
        assert ratio == pytest.approx(10 ** (3 * 0.4))  # three protons exchanged per ion
    for pH in (1.3, 1.7):
        beta = chemistry.distribution_ratio("Nd", pH) / chemistry.distribution_ratio("Pr", pH)
        assert beta == pytest.approx(chemistry.separation_factor())


def test_kremser_against_a_stage_by_stage_solution(chemistry):
    """The closed form against the stage balances solved as a linear system (ideal counter-current stages)."""
    n, theta = chemistry.stages, chemistry.organic_to_aqueous_flow
    for element in ("Pr", "Nd"):
        for pH in (1.2, 1.5, 1.8):
            d = chemistry.distribution_ratio(element, pH)
            # unknowns: aqueous concentration leaving stages 1..n (feed enters stage 1, fresh organic stage n)
            a = np.zeros((n, n))
            b = np.zeros(n)
            for i in range(n):
                a[i, i] = -(1.0 + d * theta)
                if i > 0:
                    a[i, i - 1] = 1.0
                else:
                    b[i] = -1.0  # feed (unit concentration) into stage 1
                if i < n - 1:
                    a[i, i + 1] = d * theta  # organic from stage i+1 carries d x aqueous of that stage
            x = np.linalg.solve(a, b)
            assert chemistry.raffinate_fraction(element, pH) == pytest.approx(x[-1], rel=1e-9)


def test_separation_factor_between_points_from_analysis_matches_the_stated_chemistry(chemistry):
    """analysis.separation sees the cascade's selectivity: the strip is enriched in Nd relative to Pr."""
    state = chemistry.steady_state(chemistry.reference_pH)
    enrichment = analysis.separation_factor(
        np.array(state["strip"]["Nd"]) / state["raffinate"]["Nd"],
        np.array(state["strip"]["Pr"]) / state["raffinate"]["Pr"],
    )
    assert float(enrichment) > chemistry.separation_factor()  # a cascade multiplies the one-stage factor


def test_a_ph_step_moves_the_points_with_the_residence_time_lag(chemistry):
    state = CascadeState(chemistry, pH=1.5)
    before = state.concentrations["raffinate"]["Nd"]
    target = chemistry.steady_state(1.7)["raffinate"]["Nd"]
    after_one_tau = state.advance(chemistry.residence_time_s, 1.7)["raffinate"]["Nd"]
    assert after_one_tau == pytest.approx(target + (before - target) * math.exp(-1.0))
    settled = state.advance(chemistry.residence_time_s * 20, 1.7)["raffinate"]["Nd"]
    assert settled == pytest.approx(target, abs=1e-6 * before)  # 19 more residence times: e**-19 of the step left
    with pytest.raises(ValueError, match="forward only"):
        state.advance(0.0, 1.7)


def test_bad_chemistry_is_refused():
    with pytest.raises(ValueError, match="same elements"):
        CascadeChemistry(feed_g_per_L={"Nd": 1.0}, reference_distribution_ratio={"Nd": 1.0, "Pr": 1.0})
    with pytest.raises(ValueError, match="stages"):
        CascadeChemistry(stages=0)


@pytest.mark.parametrize("pH", [-2.0, 0.0, 1.5 + 1e-13, 3.0, 14.0])
def test_kremser_stays_a_fraction_at_extreme_and_near_unit_extraction(pH):
    """No overflow at E of 1e50 or underflow at 1e-50, and no cancellation where E is nearly 1."""
    chemistry = CascadeChemistry(reference_distribution_ratio={"Pr": 1.0, "Nd": 1e6}, stages=100)
    for element in ("Pr", "Nd"):
        fraction = chemistry.raffinate_fraction(element, pH)
        assert 0.0 <= fraction <= 1.0 and math.isfinite(fraction)
    near = CascadeChemistry(reference_distribution_ratio={"Pr": 1.0 + 1e-9, "Nd": 1.0 - 1e-9})
    assert near.raffinate_fraction("Pr", 1.5) == pytest.approx(1.0 / 9.0, rel=1e-7)
    assert near.raffinate_fraction("Nd", 1.5) == pytest.approx(1.0 / 9.0, rel=1e-7)


def test_the_history_is_the_exact_lag_while_the_ph_holds_and_a_function_of_time_alone(chemistry):
    def pH_at(t: float) -> float:
        return float(np.interp(t, [0.0, 600.0, 660.0], [1.5, 1.5, 1.8]))

    history = CascadeHistory(chemistry, pH_at, [0.0, 600.0, 660.0])
    assert history.at(-50.0) == history.at(0.0) == chemistry.steady_state(1.5)
    assert history.at(599.0)["strip"] == pytest.approx(chemistry.steady_state(1.5)["strip"], rel=1e-12)
    tau, target = chemistry.residence_time_s, chemistry.steady_state(1.8)
    at_end = history.at(660.0)
    later = history.at(660.0 + tau)
    for point in ("raffinate", "strip"):
        for element in ("Pr", "Nd"):
            moved = (later[point][element] - target[point][element]) / (at_end[point][element] - target[point][element])
            assert moved == pytest.approx(math.exp(-1.0), rel=1e-10)
    fresh = CascadeHistory(chemistry, pH_at, [0.0, 600.0, 660.0])
    assert fresh.at(630.123) == CascadeHistory(chemistry, pH_at, [660.0, 600.0]).at(630.123)  # bends in any order
    assert [fresh.at(t) for t in (5000.0, 630.123, 10.0)] == [history.at(t) for t in (5000.0, 630.123, 10.0)]


# --- the SIM: commands of a simulated spectrometer at a sampling point (drivers/sim/_bench_control.py) -----------
class StillClock:
    """Simulated time that moves only when the test says so."""

    speed = 1e6

    def __init__(self) -> None:
        self.t = 100.0

    def now_s(self) -> float:
        return self.t


def answer(device, command: str) -> str:
    answers = device.handle(command)
    error = device.handle("SYST:ERR?")[0].data.decode().strip()
    assert error == '0,"No error"', (command, error)
    return answers[0].data.decode().strip() if answers else ""


def error_of(device, command: str) -> str:
    assert device.handle(command) == []
    return device.handle("SYST:ERR?")[0].data.decode().strip()


def test_sim_commands_name_the_sampling_point_and_tell_the_cascades_truth():
    from drivers.sim._bench_control import Cell, Device, SimControl
    from drivers.sim._optics import Optics, OpticsConfig
    from drivers.sim.scenario import load_scenario
    from drivers.sim.spectrometer import Instrument, LineFaults

    clock = StillClock()
    cell = Cell(sampling_point="raffinate")
    instrument = Instrument(Optics(OpticsConfig(pixels=64)), clock, cell, np.random.default_rng(0), serial="X")  # type: ignore[arg-type]
    device = Device(instrument, SimControl(instrument, LineFaults(np.random.default_rng(1))))
    assert answer(device, "SIM:SAMP?") == "RAFFINATE"
    assert answer(device, "SIM:TRUT:CASC?") == "POINT=RAFFINATE,CASCADE=0"  # nothing loaded
    answer(device, "SIM:SCEN pr-nd-cascade")
    assert error_of(device, "SIM:TRUT:CASC?").startswith("-221,")  # loaded, not running: say when
    scenario = load_scenario("pr-nd-cascade")
    at_4860 = answer(device, "SIM:TRUT:CASC? 4860")
    truth = dict(item.split("=") for item in at_4860.split(","))
    expected = scenario.cascade_truth_at(4860.0)
    assert (truth["POINT"], truth["CASCADE"], truth["SCENARIO_S"], truth["PH"]) == ("RAFFINATE", "1", "4860", "1.55")
    assert float(truth["D_ND"]) == pytest.approx(expected.distribution_ratio["Nd"], rel=1e-8)
    assert float(truth["BETA_ND_PR"]) == pytest.approx(1.5, rel=1e-8)
    assert float(truth["SEPARATION_ND_PR"]) == pytest.approx(expected.separation_factor(), rel=1e-8)
    for point in ("feed", "raffinate", "strip"):
        for element in ("Pr", "Nd"):
            value = float(truth[f"{point.upper()}_{element.upper()}"])
            assert value == pytest.approx(expected.concentrations[point][element], rel=1e-8)
    answer(device, "SIM:SCEN:STAR 4860")
    assert answer(device, "SIM:TRUT:CASC?") == at_4860  # running: now is scenario time 4860
    assert answer(device, "SIM:TRUT?") == "Pr=0.791571,Nd=0.881288"
    answer(device, "SIM:SAMP STR")
    assert answer(device, "SIM:TRUT?") == "Pr=4.27791,Nd=14.8249"
    assert answer(device, "SIM:TRUT:CASC?").startswith("POINT=STRIP,CASCADE=1,SCENARIO_S=4860,")
    answer(device, "SIM:SAMP NONE")
    assert answer(device, "SIM:SAMP?") == "NONE" and answer(device, "SIM:TRUT?") == ""  # as without a cascade
    assert error_of(device, "SIM:SAMP tank").startswith("-224,")
    assert error_of(device, "SIM:SAMP").startswith("-109,")
    answer(device, "SIM:SAMP feed")
    assert answer(device, "SIM:TRUT?") == "Pr=4,Nd=12"
    clock.t += 600.0
    answer(device, "SIM:SCEN:STOP")  # frozen as it is, like any scenario
    answer(device, "SIM:SAMP raffinate")
    assert answer(device, "SIM:TRUT?") == "Pr=4,Nd=12"
    with pytest.raises(ValueError, match="sampling point must be one of feed, raffinate, strip"):
        Cell(sampling_point="tank")


@pytest.mark.parametrize("module", ["drivers.sim.spectrometer", "drivers.sim.ocean"])
def test_an_unknown_sampling_point_on_the_command_line_is_refused(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as caught:
        importlib.import_module(module).main(["--sampling-point", "tank", "--scenario", "pr-nd-cascade"])
    assert caught.value.code == 2
    assert "invalid choice: 'tank' (choose from 'feed', 'raffinate', 'strip')" in capsys.readouterr().err
