"""The simulated Pr/Nd cascade's chemistry holds to what its docstring states (drivers/sim/_cascade.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import analysis
from drivers.sim._cascade import CascadeChemistry, CascadeState


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
