"""analysis.separation: distribution ratio, separation factor, extraction, recovery, DF, Fenske."""

import numpy as np
import pytest

from analysis import (
    decontamination_factor,
    distribution_ratio,
    extraction_percent,
    fenske_minimum_stages,
    recovery,
    separation_factor,
)


def test_distribution_ratio_and_separation_factor():
    d_nd = distribution_ratio(np.array([3.0, 0.0]), np.array([1.5, 2.0]))
    d_pr = distribution_ratio(1.2, 1.5)
    assert np.allclose(d_nd, [2.0, 0.0])
    assert separation_factor(d_nd[0], d_pr) == pytest.approx(2.0 / 0.8)
    assert distribution_ratio(1.0, 0.0) == np.inf


def test_extraction_percent_from_d_and_phase_ratio():
    assert extraction_percent(1.0) == pytest.approx(50.0)
    assert extraction_percent(1.0, organic_to_aqueous_volume_ratio=3.0) == pytest.approx(75.0)
    assert np.allclose(extraction_percent(np.array([0.0, 9.0, np.inf])), [0.0, 90.0, 100.0])


def test_extraction_agrees_with_a_mass_balance():
    """Contact 1 L aqueous at 10 g/L with 2 L organic at D = 4: E% from the balance equals the formula."""
    d, v_org, v_aq, c0 = 4.0, 2.0, 1.0, 10.0
    c_aq = c0 * v_aq / (v_aq + d * v_org)
    extracted = 100 * (c0 - c_aq) / c0
    assert extraction_percent(d, v_org / v_aq) == pytest.approx(extracted)
    assert distribution_ratio(d * c_aq, c_aq) == pytest.approx(d)


def test_recovery_is_a_fraction_of_the_feed():
    assert recovery(8.0, 1.1, 10.0, 1.0) == pytest.approx(0.88)
    assert np.allclose(recovery(np.array([0.0, 5.0]), 2.0, 10.0, 1.0), [0.0, 1.0])


def test_decontamination_factor():
    # feed Pr/Nd = 0.25, product Pr/Nd = 0.005 -> DF 50
    assert decontamination_factor(2.5, 10.0, 0.1, 20.0) == pytest.approx(50.0)
    assert decontamination_factor(2.5, 10.0, 0.0, 20.0) == np.inf


def test_fenske_minimum_stages():
    # 99 % A in the extract, 1 % A in the raffinate, beta 2: ln(99 * 99) / ln 2
    stages = fenske_minimum_stages(2.0, 99.0, 1 / 99.0)
    assert stages == pytest.approx(np.log(99.0**2) / np.log(2.0))
    assert stages == pytest.approx(13.26, abs=0.01)
    assert fenske_minimum_stages(1.0, 2.0, 1.0) == np.inf
    assert np.allclose(fenske_minimum_stages(np.array([1.5, 3.0]), 10.0, 0.1), np.log(100.0) / np.log([1.5, 3.0]))
    with pytest.raises(ValueError, match="separation factor must be > 0"):
        fenske_minimum_stages(0.0, 2.0, 1.0)


def test_every_metric_has_a_docstring_with_its_formula_and_units():
    for function in (
        distribution_ratio,
        separation_factor,
        extraction_percent,
        recovery,
        decontamination_factor,
        fenske_minimum_stages,
    ):
        doc = function.__doc__.lower()
        assert "=" in doc and any(unit in doc for unit in ("dimensionless", "fraction", "percent")), function
