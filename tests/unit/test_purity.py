"""analysis.oxide_purity: target oxide over total rare-earth oxide, its uncertainty, and the detection-limit policy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import Calibration, oxide_factor, oxide_purity, quantify

ANALYTES = ("Nd", "Pr", "Sm", "Er", "Ho")


def test_pure_target_is_one_and_covers_the_analytes():
    result = oxide_purity(np.array([[5.0, 0, 0, 0, 0]]), ANALYTES, "Nd", sigma_g_per_L=np.zeros((1, 5)))
    assert result.purity[0] == 1.0 and result.purity_sigma[0] == 0.0
    assert result.target == "Nd" and result.target_oxide == "Nd2O3"
    assert result.covered_elements == ANALYTES
    assert result.purity_percent[0] == 100.0


def test_equal_element_masses_weigh_by_oxide_factor():
    result = oxide_purity(np.array([1.0, 1.0]), ("Nd", "Pr"), "Nd")
    assert oxide_factor("Nd") == pytest.approx(1.1664, abs=1e-4)
    assert oxide_factor("Pr") == pytest.approx(1.2082, abs=1e-4)
    assert result.purity[0] == pytest.approx(1.1664 / (1.1664 + 1.2082), abs=1e-4)
    assert result.total_oxide_g_per_L[0] == pytest.approx(1.1664 + 1.2082, abs=1e-3)
    assert np.isnan(result.purity_sigma[0]), "no sigma given, none invented"


def test_undefined_purity_is_nan():
    conc = np.array([[0, 0, 0, 0, 0], [5, np.nan, 0, 0, 0], [np.nan, 0, 0, 0, 0], [0, 1, 0, 0, 0.0]])
    result = oxide_purity(conc, ANALYTES, "Nd", sigma_g_per_L=np.full((4, 5), 0.01))
    assert np.isnan(result.purity[:3]).all() and np.isnan(result.purity_sigma[:3]).all()
    assert result.purity[3] == 0.0


@settings(max_examples=100, deadline=None)
@given(conc=st.lists(st.floats(0, 50), min_size=5, max_size=5), target=st.sampled_from(ANALYTES))
def test_property_purity_is_a_fraction_and_the_oxide_share(conc, target):
    conc = np.array(conc)
    result = oxide_purity(conc, ANALYTES, target)
    oxide = conc * np.array([oxide_factor(a) for a in ANALYTES])
    if oxide.sum() == 0:
        assert np.isnan(result.purity[0])
    else:
        assert 0.0 <= result.purity[0] <= 1.0
        assert result.purity[0] == pytest.approx(oxide[ANALYTES.index(target)] / oxide.sum(), rel=1e-12)


def test_sigma_is_first_order_propagation():
    rng = np.random.default_rng(0)
    conc = np.array([[20.0, 0.08, 0.02, 0.01, 0.03]])
    sigma = np.array([[0.05, 0.01, 0.02, 0.008, 0.01]])
    result = oxide_purity(conc, ANALYTES, "Nd", sigma_g_per_L=sigma)
    samples = conc + sigma * rng.standard_normal((200_000, 5))
    spread = oxide_purity(samples, ANALYTES, "Nd").purity.std()
    assert result.purity_sigma[0] == pytest.approx(spread, rel=0.02)
    # and analytically for one impurity
    two = oxide_purity(np.array([[10.0, 1.0]]), ("Nd", "Pr"), "Nd", sigma_g_per_L=np.array([[0.0, 0.1]]))
    fn, fp = oxide_factor("Nd"), oxide_factor("Pr")
    total = 10 * fn + fp
    assert two.purity_sigma[0] == pytest.approx(10 * fn * fp * 0.1 / total**2, rel=1e-12)


def test_detection_limit_policy_on_simulated_nnls_output():
    """Absent impurities come out of an NNLS fit as max(0, noise): without the policy they add a false impurity."""
    rng = np.random.default_rng(1)
    sigma = np.array([0.02, 0.01, 0.03, 0.02, 0.02])
    truth = np.array([20.0, 0.1, 0.0, 0.0, 0.0])  # Nd with 0.1 g/L Pr, nothing else
    measured = np.maximum(truth + sigma * rng.standard_normal((20_000, 5)), 0.0)
    true_purity = oxide_purity(truth, ANALYTES, "Nd").purity[0]
    naive = oxide_purity(measured, ANALYTES, "Nd", sigma_g_per_L=np.tile(sigma, (20_000, 1)))
    policy = oxide_purity(
        measured, ANALYTES, "Nd", sigma_g_per_L=np.tile(sigma, (20_000, 1)), detection_limit_g_per_L=3 * sigma
    )
    naive_bias = naive.purity.mean() - true_purity
    policy_bias = policy.purity.mean() - true_purity
    assert naive_bias < -1e-3, "noise on three absent analytes reads as ~0.13 % impurity"
    assert abs(policy_bias) < 0.05 * abs(naive_bias)
    # the real impurity (10 sigma) is always counted, the absent ones almost never
    assert not policy.below_detection_limit[:, 1].any()
    assert policy.below_detection_limit[:, 2:].mean() > 0.99
    assert not policy.below_detection_limit[:, 0].any(), "the target is never censored"
    # a censored analyte still contributes its uncertainty
    without_absent = oxide_purity(
        measured,
        ANALYTES,
        "Nd",
        sigma_g_per_L=np.tile(sigma * [1, 1, 0, 0, 0], (20_000, 1)),
        detection_limit_g_per_L=3 * sigma,
    )
    assert np.all(policy.purity_sigma > without_absent.purity_sigma)


def test_lower_bound_puts_every_censored_analyte_at_its_detection_limit():
    limits = np.array([0.01, 0.02, 0.03, 0.02, 0.02])
    conc = np.array([[10.0, 0.005, 0.0, 0.5, 0.0], [10.0, 0.5, 0.5, 0.5, 0.5]])
    result = oxide_purity(conc, ANALYTES, "Nd", detection_limit_g_per_L=limits)
    factor = np.array([oxide_factor(a) for a in ANALYTES])
    hidden = (limits * factor)[[1, 2, 4]].sum()
    counted = 10 * factor[0] + 0.5 * factor[3]
    assert result.purity[0] == pytest.approx(10 * factor[0] / counted)
    assert result.purity_lower_bound[0] == pytest.approx(10 * factor[0] / (counted + hidden))
    assert result.purity_lower_bound[1] == result.purity[1], "nothing censored, nothing hidden"


def test_target_below_its_detection_limit_is_still_counted():
    result = oxide_purity(np.array([0.001, 5.0, 0, 0, 0]), ANALYTES, "Nd", detection_limit_g_per_L=np.full(5, 0.01))
    assert 0 < result.purity[0] < 0.001  # the target is never censored, even below its own limit


def test_no_purity_when_the_cell_holds_no_rare_earths_to_speak_of():
    limits = np.full(5, 0.01)  # 3 sigma each: the total oxide of a blank has sigma ~0.009 g/L
    blank_noise = np.array(
        [[0.003, 0.0, 0.002, 0.0, 0.0], [0.0, 0.004, 0.0, 0.0, 0.0], [0.05, 0.0, 0, 0, 0], [1.0, 0.02, 0.0, 0.0, 0.0]]
    )
    result = oxide_purity(blank_noise, ANALYTES, "Nd", detection_limit_g_per_L=limits)
    assert list(result.below_quantitation_limit) == [True, True, True, False]
    assert np.all(np.isnan(result.purity[:3])) and np.all(np.isnan(result.purity_lower_bound[:3]))
    assert 0.97 < result.purity[3] < 1.0
    widened = np.full((4, 5), 0.5)  # a spectrum's sigma widened by a misfit does not make the cell "empty"
    with_sigma = oxide_purity(blank_noise, ANALYTES, "Nd", sigma_g_per_L=widened, detection_limit_g_per_L=limits)
    assert list(with_sigma.below_quantitation_limit) == [True, True, True, False]
    sigma = np.full((4, 5), 0.001)  # without detection limits, the spectra's own sigmas set the limit
    with_sigma = oxide_purity(blank_noise, ANALYTES, "Nd", sigma_g_per_L=sigma)
    assert list(with_sigma.below_quantitation_limit) == [True, True, False, False]
    assert np.all(np.isnan(with_sigma.purity_sigma[:2])) and np.isfinite(with_sigma.purity_sigma[2])
    assert with_sigma.quantitation_limit_g_per_L[0] == pytest.approx(
        10 * np.sqrt(np.sum((0.001 * np.array([oxide_factor(a) for a in ANALYTES])) ** 2))
    )
    unbounded = oxide_purity(blank_noise, ANALYTES, "Nd")  # no sigma, no limits: no policy to apply
    assert not unbounded.below_quantitation_limit.any() and np.isnan(unbounded.quantitation_limit_g_per_L).all()


def test_per_spectrum_detection_limits_broadcast():
    conc = np.array([[10.0, 0.05, 0, 0, 0], [10.0, 0.05, 0, 0, 0]])
    limits = np.array([[0.1, 0.1, 0.1, 0.1, 0.1], [0.01, 0.01, 0.01, 0.01, 0.01]])
    result = oxide_purity(conc, ANALYTES, "Nd", detection_limit_g_per_L=limits)
    assert result.purity[0] == 1.0 and result.purity[1] < 1.0
    assert list(result.below_detection_limit[:, 1]) == [True, False]


def test_policy_with_real_quantification_of_a_995_percent_product():
    """Whole chain: spectra of 99.5 % Nd2O3 (Pr impurity), NNLS, purity with and without the policy."""
    rng = np.random.default_rng(2)
    wl = np.linspace(350, 1000, 600)
    bands = {
        "Nd": [(575, 5, 0.05), (740, 6, 0.045), (794, 5, 0.08)],
        "Pr": [(444, 4, 0.07), (469, 3, 0.03)],
        "Sm": [(402, 3, 0.022)],
        "Er": [(379, 3, 0.045), (523, 3, 0.019)],
        "Ho": [(451, 4, 0.025), (537, 3, 0.022)],
    }
    S = np.array([sum(h * np.exp(-0.5 * ((wl - c) / w) ** 2) for c, w, h in bands[a]) for a in ANALYTES])
    cal = Calibration.from_sensitivity(wl, S, ANALYTES)
    nd = 15.0
    pr = nd * oxide_factor("Nd") * (0.005 / 0.995) / oxide_factor("Pr")
    truth = np.array([nd, pr, 0, 0, 0])
    spectra = truth @ S + 5e-4 * rng.standard_normal((2000, wl.size)) + 0.01
    q = quantify(spectra, cal)
    sigma0 = np.median(q.sigma_g_per_L, axis=0)
    naive = oxide_purity(q.concentration_g_per_L, ANALYTES, "Nd", q.sigma_g_per_L)
    policy = oxide_purity(q.concentration_g_per_L, ANALYTES, "Nd", q.sigma_g_per_L, 3 * sigma0)
    assert naive.purity.mean() < 0.995 - 0.0001
    assert policy.purity.mean() == pytest.approx(0.995, abs=0.0001)
    assert np.mean(np.abs(policy.purity - 0.995) <= 0.001) > 0.99


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(analytes=ANALYTES, target="La"), "target 'La' is not among the analytes"),
        (dict(analytes=("Nd", "Qq", "Sm", "Er", "Ho"), target="Nd"), r"analytes\[1\]"),
        (dict(analytes=ANALYTES[:4], target="Nd"), "concentration_g_per_L has shape"),
        (dict(analytes=ANALYTES, target="Nd", sigma_g_per_L=np.ones((2, 5))), "sigma_g_per_L has shape"),
        (dict(analytes=ANALYTES, target="Nd", detection_limit_g_per_L=np.ones(4)), "detection_limit_g_per_L"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        oxide_purity(np.ones((3, 5)), **kwargs)
