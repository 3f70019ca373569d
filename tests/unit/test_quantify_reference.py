"""analysis.quantify against scipy (nnls, lsq_linear) and against plain numpy references.

The problem per spectrum: minimise sum_p w_p (y_p - S^T c - F f)_p^2 with c >= 0
and the free columns F (drift spectra, curvature, baseline: ``design_matrix``)
unconstrained, over the pixels that are not masked. Where that problem has a unique
solution, quantify must give scipy's answer to 1e-8 relative. A spectrum that takes
the second fit (an analyte's width coefficient beyond 4 sigma) has the Lorentzian
width columns of those analytes in F too, and is checked on that design.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import lsq_linear, nnls

from analysis import Calibration, absorbance, calibrate, quantify, quantify_counts
from analysis.quantify import (
    LORENTZIAN_TRIGGER_RELATIVE,
    LORENTZIAN_TRIGGER_SIGMAS,
    STATUS_OK,
    STATUS_TOO_FEW_PIXELS,
    _first_fit,
)

ANALYTES = ("Nd", "Pr", "Sm", "Er", "Ho", "Dy", "Tm", "Eu", "Yb")
RTOL = 1e-8


# ----------------------------------------------------------------------------- problems


def band_sensitivities(rng, K, P, wavelength_nm):
    """K positive spectra made of 1-4 Gaussian bands each (absorbance per g/L)."""
    S = np.zeros((K, P))
    for k in range(K):
        for _ in range(rng.integers(1, 5)):
            centre = rng.uniform(wavelength_nm[0], wavelength_nm[-1])
            width = rng.uniform(3, 25)
            S[k] += rng.uniform(0.005, 0.1) * np.exp(-0.5 * ((wavelength_nm - centre) / width) ** 2)
    return S


def make_calibration(rng, K, P, baseline_order, weighted=False, signed=False):
    wavelength_nm = np.linspace(350.0, 1000.0, P)
    S = rng.normal(0, 0.05, (K, P)) if signed else band_sensitivities(rng, K, P, wavelength_nm)
    weight = rng.uniform(0.2, 3.0, P) if weighted else None
    return Calibration.from_sensitivity(
        wavelength_nm, S, ANALYTES[:K], baseline_order=baseline_order, pixel_weight=weight
    )


def make_spectra(rng, cal, N, zero_fraction=0.3, noise=1e-3, baseline=0.02):
    K = len(cal.analytes)
    conc = rng.uniform(0, 5, (N, K)) * (rng.random((N, K)) >= zero_fraction)
    Y = conc @ cal.sensitivity + noise * rng.standard_normal((N, cal.n_pixels))
    if cal.baseline_order is not None:
        Y += rng.normal(0, baseline, (N, cal.baseline_order + 1)) @ cal.baseline().T
    return conc, Y


def scipy_solution(cal, y, X=None):
    """(analyte concentrations, free coefficients, weighted residual rms) by scipy, NaN pixels dropped.

    ``X``: the design (default ``cal.design_matrix()``).
    """
    X = cal.design_matrix() if X is None else X
    w = cal.pixel_weight
    keep = np.isfinite(y) & (w > 0)
    root_w = np.sqrt(w[keep])
    A = X[keep] * root_w[:, None]
    b = y[keep] * root_w
    K = len(cal.analytes)
    if X.shape[1] == K:  # no free column: plain NNLS
        v, _ = nnls(A, b, maxiter=50 * A.shape[1])
    else:
        lower = np.r_[np.zeros(K), np.full(X.shape[1] - K, -np.inf)]
        v = lsq_linear(A, b, bounds=(lower, np.inf), method="bvls", tol=1e-14, lsmr_tol=1e-14).x
    residual = b - A @ v
    return v[:K], v[K:], np.sqrt(residual @ residual / w[keep].sum())


def relative_error(ours, reference):
    return np.max(np.abs(ours - reference)) / max(np.max(np.abs(reference)), 1e-300)


def unmeasurable(cal, y):
    """Analytes whose sensitivity is (numerically) zero over the valid pixels: quantify says NaN."""
    w = np.where(np.isfinite(y), cal.pixel_weight, 0.0)
    left = np.sum(w * cal.sensitivity**2, axis=1)
    full = np.sum(cal.pixel_weight * cal.sensitivity**2, axis=1)
    return left <= 1e-9 * full


def assert_matches_scipy(cal, Y, result):
    """Each spectrum against scipy on the design its fit used: the design matrix, and in a second fit
    the Lorentzian width columns of the analytes refitted (a width coefficient beyond 4 sigma can happen
    by chance, about once in 16,000 analytes)."""
    refit = result.lorentzian_width_coefficients != 0
    n_design = cal.design_matrix().shape[1] - len(cal.analytes)
    for i, y in enumerate(Y):
        conc, free, rms = scipy_solution(cal, y, refit_design(cal, refit[i]))
        lost = unmeasurable(cal, y)
        assert np.all(np.isnan(result.concentration_g_per_L[i, lost]))
        ours = np.where(lost, 0.0, result.concentration_g_per_L[i])
        assert relative_error(ours, np.where(lost, 0.0, conc)) <= RTOL, (i, ours, conc)
        if n_design:
            assert relative_error(result.free_coefficients[i], free[:n_design]) <= RTOL
        assert np.allclose(result.lorentzian_width_coefficients[i, refit[i]], free[n_design:], rtol=1e-7, atol=1e-12)
        assert result.residual_rms[i] == pytest.approx(rms, rel=1e-7, abs=1e-13)


def lack_of_fit_reference(cal, y, conc, base) -> float:
    """Reference lack of fit: residual variance over the noise from differences of neighbouring valid residuals."""
    X = cal.design_matrix()
    w = cal.pixel_weight
    keep = np.isfinite(y) & (w > 0)
    v = np.r_[conc, base]
    e = np.where(keep, np.sqrt(w) * (np.where(keep, y, 0.0) - X @ v), np.nan)
    free = np.r_[conc > 0, np.any(X != 0, axis=0)[len(conc) :]]  # zero drift spectra are held at zero
    s2 = np.nansum(e**2) / (keep.sum() - free.sum())
    steps = np.diff(e)  # NaN where either neighbour is masked
    noise2 = np.nanmean(steps**2) / 2
    return s2 / noise2


def numpy_sigma(cal, y, conc, base):
    """Reference uncertainty: s^2 max(1, lack of fit) inv(N_FF) for the free set, inverse Schur complement
    for analytes at 0."""
    inflation = max(1.0, lack_of_fit_reference(cal, y, conc, base))
    X = cal.design_matrix()
    w = cal.pixel_weight
    keep = np.isfinite(y) & (w > 0)
    X, y, w = X[keep], y[keep], w[keep]
    K = len(cal.analytes)
    v = np.r_[conc, base]
    free = np.r_[conc > 0, np.ones(base.size, bool)]
    N = X.T @ (X * w[:, None])
    s2 = inflation * np.sum(w * (y - X @ v) ** 2) / (keep.sum() - free.sum())
    inv_free = np.linalg.inv(N[np.ix_(free, free)])
    sigma = np.empty(K)
    position = np.cumsum(free) - 1
    for k in range(K):
        if free[k]:
            sigma[k] = np.sqrt(s2 * inv_free[position[k], position[k]])
        else:
            schur = N[k, k] - N[k, free] @ inv_free @ N[free, k]
            sigma[k] = np.sqrt(s2 / schur)
    return sigma


# ----------------------------------------------------------------------------- random problems


@pytest.mark.parametrize("baseline_order", [None, 0, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_random_band_problems_match_scipy(baseline_order, weighted):
    rng = np.random.default_rng(11 + (baseline_order or 0) + 7 * weighted)
    cal = make_calibration(rng, 6, 400, baseline_order, weighted=weighted)
    _, Y = make_spectra(rng, cal, 40)
    result = quantify(Y, cal)
    assert np.all(result.status == STATUS_OK)
    assert np.all(result.concentration_g_per_L >= 0)
    assert_matches_scipy(cal, Y, result)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    K=st.integers(1, 9),
    P=st.integers(40, 300),
    baseline_order=st.sampled_from([None, 0, 1, 2, 3]),
    zero_fraction=st.floats(0, 1),
    signed=st.booleans(),
    weighted=st.booleans(),
    masked_fraction=st.sampled_from([0.0, 0.0, 0.05, 0.5]),
)
def test_property_quantify_equals_scipy(seed, K, P, baseline_order, zero_fraction, signed, weighted, masked_fraction):
    rng = np.random.default_rng(seed)
    cal = make_calibration(rng, K, P, baseline_order, weighted=weighted, signed=signed)
    _, Y = make_spectra(rng, cal, 3, zero_fraction=zero_fraction)
    Y[rng.random(Y.shape) < masked_fraction] = np.nan
    X = cal.design_matrix()
    n_terms = X.shape[1]  # analytes, baseline and the drift spectra
    for y in Y:  # only well-posed problems: full column rank over the valid pixels
        keep = np.isfinite(y)
        if keep.sum() <= n_terms or np.linalg.cond(X[keep] * np.sqrt(cal.pixel_weight[keep])[:, None]) > 1e5:
            return
    result = quantify(Y, cal)
    assert np.all(result.concentration_g_per_L >= 0)
    assert np.array_equal(result.n_masked_pixels, np.isnan(Y).sum(axis=1))
    assert_matches_scipy(cal, Y, result)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), K=st.integers(1, 9), baseline_order=st.sampled_from([None, 2]))
def test_property_kkt_conditions_hold(seed, K, baseline_order):
    """Independently of scipy: feasible, zero gradient on free variables, no descent direction on bound ones."""
    rng = np.random.default_rng(seed)
    cal = make_calibration(rng, K, 200, baseline_order, weighted=True, signed=True)
    _, Y = make_spectra(rng, cal, 4, zero_fraction=0.5)
    result = quantify(Y, cal)
    refit = result.lorentzian_width_coefficients != 0
    w = cal.pixel_weight
    for i, y in enumerate(Y):
        X = refit_design(cal, refit[i])  # the design of the spectrum's fit, a second fit's included
        v = np.r_[
            result.concentration_g_per_L[i],
            result.free_coefficients[i],
            result.lorentzian_width_coefficients[i, refit[i]],
        ]
        gradient = (X * w[:, None]).T @ (y - X @ v)
        scale = np.linalg.norm(X * np.sqrt(w)[:, None], axis=0) * np.sqrt(np.sum(w * y * y))
        assert np.all(v[:K] >= 0)
        free = np.r_[v[:K] > 0, np.ones(v.size - K, bool)]
        assert np.all(np.abs(gradient[free]) <= 1e-8 * scale[free])
        assert np.all(gradient[~free] <= 1e-8 * scale[~free])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), factor=st.floats(1e-3, 1e3))
def test_property_scaling_a_spectrum_scales_concentrations_and_sigma(seed, factor):
    rng = np.random.default_rng(seed)
    cal = make_calibration(rng, 4, 150, 2)
    _, Y = make_spectra(rng, cal, 2)
    base = quantify(Y, cal)
    scaled = quantify(factor * Y, cal)
    assert np.allclose(scaled.concentration_g_per_L, factor * base.concentration_g_per_L, rtol=1e-8, atol=1e-12)
    assert np.allclose(scaled.sigma_g_per_L, factor * base.sigma_g_per_L, rtol=1e-6)


def test_a_spectrum_does_not_depend_on_its_batch():
    rng = np.random.default_rng(5)
    cal = make_calibration(rng, 5, 300, 2)
    _, Y = make_spectra(rng, cal, 37)
    Y[3, 10:20] = np.nan
    whole = quantify(Y, cal)
    order = rng.permutation(len(Y))
    shuffled = quantify(Y[order], cal)
    alone = quantify(Y[3], cal)
    assert np.array_equal(shuffled.concentration_g_per_L, whole.concentration_g_per_L[order])
    assert np.array_equal(alone.concentration_g_per_L[0], whole.concentration_g_per_L[3])
    assert alone.concentration_g_per_L.shape == (1, 5)


def test_adding_a_baseline_polynomial_changes_only_the_baseline():
    rng = np.random.default_rng(6)
    cal = make_calibration(rng, 4, 250, 2)
    _, Y = make_spectra(rng, cal, 5)
    shift = np.array([0.3, -0.1, 0.05])
    before = quantify(Y, cal)
    after = quantify(Y + cal.baseline() @ shift, cal)
    assert np.allclose(after.concentration_g_per_L, before.concentration_g_per_L, rtol=1e-9, atol=1e-12)
    assert np.allclose(after.baseline_coefficients - before.baseline_coefficients, shift, atol=1e-10)


def test_sigma_equals_the_numpy_reference_for_free_and_bound_analytes():
    rng = np.random.default_rng(8)
    cal = make_calibration(rng, 6, 300, 2, weighted=True)
    _, Y = make_spectra(rng, cal, 20, zero_fraction=0.5)
    Y[0, 50:60] = np.nan
    result = quantify(Y, cal)
    assert np.any(result.concentration_g_per_L == 0) and np.any(result.concentration_g_per_L > 0)
    for i, y in enumerate(Y):
        expected = numpy_sigma(cal, y, result.concentration_g_per_L[i], result.free_coefficients[i])
        assert np.allclose(result.sigma_g_per_L[i], expected, rtol=1e-7)


def test_calibrated_model_solves_the_corrected_normal_equations():
    """With a calibration from noisy standards the solve uses N - E (errors-in-variables) and sigma adds
    v^T G v and the model error: checked against scipy on the Cholesky factor and a numpy reference."""
    rng = np.random.default_rng(15)
    wavelength_nm = np.linspace(350, 1000, 300)
    S = band_sensitivities(rng, 4, 300, wavelength_nm)
    C = np.vstack([np.zeros(4), rng.uniform(0.5, 5, (9, 4))])
    B = Calibration.from_sensitivity(wavelength_nm, S, ANALYTES[:4]).baseline()
    standards = C @ S + rng.normal(0, 0.01, (10, 3)) @ B.T + 2e-3 * rng.standard_normal((10, 300))
    cal = calibrate(wavelength_nm, standards, C, ANALYTES[:4], quadratic=("Nd",))
    assert np.any(cal.sensitivity_variance_factor != 0)
    _, Y = make_spectra(rng, cal, 8, zero_fraction=0.4, noise=2e-3)
    result = quantify(Y, cal)
    model = cal._model
    K = 4
    used = np.any(model.X != 0, axis=0)  # drift spectra that are mostly noise are zero: held at zero
    assert not used.all() and used[:K].all()
    corrected_used = (model.N - model.w.sum() * model.E_w)[np.ix_(used, used)]
    corrected = np.zeros_like(model.N)
    corrected[np.ix_(used, used)] = corrected_used
    R = np.linalg.cholesky(corrected_used).T  # v' (N - E) v / 2 - r' v  ==  |R v - R^-T r|^2 / 2 + const
    lower = np.r_[np.zeros(K), np.full(used.sum() - K, -np.inf)]
    for i, y in enumerate(Y):
        r = (model.XWt @ y)[used]
        v = np.zeros(used.size)
        v[used] = lsq_linear(R, np.linalg.solve(R.T, r), bounds=(lower, np.inf), method="bvls", tol=1e-14).x
        assert relative_error(result.concentration_g_per_L[i], v[:K]) <= RTOL
        assert np.allclose(result.quadratic_coefficients[i], v[K : K + 1], rtol=1e-7, atol=1e-12)
        # sigma: residual of the fit over its dof, plus v'Gv, times inv of the corrected free block
        free = np.r_[v[:K] > 0, used[K:]]
        s2 = np.sum(model.w * (y - model.X @ v) ** 2) / (300 - free.sum())
        s2 *= max(1.0, lack_of_fit_reference(cal, y, v[:K], v[K:]))
        assert result.lack_of_fit[i] == pytest.approx(lack_of_fit_reference(cal, y, v[:K], v[K:]), rel=1e-6)
        q = v[: K + 1] @ model.G @ v[: K + 1]
        inverse = np.linalg.inv(corrected[np.ix_(free, free)])
        position = np.cumsum(free) - 1
        for k in range(K):
            if free[k]:
                variance = inverse[position[k], position[k]]
            else:
                variance = 1.0 / (corrected[k, k] - corrected[k, free] @ inverse @ corrected[free, k])
            expected = np.sqrt((s2 + q) * variance + cal.model_sigma_g_per_L[k] ** 2)
            assert result.sigma_g_per_L[i, k] == pytest.approx(expected, rel=1e-6)


def test_sigma_is_honest_for_noise_of_known_size():
    """2-sigma intervals from the residual contain the truth about 95% of the time."""
    rng = np.random.default_rng(9)
    cal = make_calibration(rng, 5, 500, 2)
    conc, Y = make_spectra(rng, cal, 4000, zero_fraction=0.0, noise=2e-3)
    result = quantify(Y, cal)
    inside = np.abs(result.concentration_g_per_L - conc) <= 2 * result.sigma_g_per_L
    assert 0.93 <= inside.mean() <= 0.97


# ----------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("baseline_order", [None, 2])
def test_all_zero_spectrum_gives_zero_concentrations(baseline_order):
    cal = make_calibration(np.random.default_rng(1), 4, 100, baseline_order)
    result = quantify(np.zeros((2, 100)), cal)
    assert np.array_equal(result.concentration_g_per_L, np.zeros((2, 4)))
    assert np.all(result.residual_rms == 0) and np.all(result.status == STATUS_OK)
    assert np.all(np.isfinite(result.sigma_g_per_L))


def test_all_pixels_masked_gives_nan_not_zero():
    cal = make_calibration(np.random.default_rng(2), 3, 80, 2)
    Y = np.full((2, 80), np.nan)
    Y[1, :4] = 0.1  # 4 valid pixels for 6 terms: still not enough
    result = quantify(Y, cal)
    assert np.all(np.isnan(result.concentration_g_per_L)) and np.all(np.isnan(result.sigma_g_per_L))
    assert np.all(np.isnan(result.residual_rms))
    assert np.all(result.status == STATUS_TOO_FEW_PIXELS)
    assert list(result.n_masked_pixels) == [80, 76]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_masked_pixels_are_left_out_exactly(bad):
    rng = np.random.default_rng(3)
    cal = make_calibration(rng, 5, 300, 2, weighted=True)
    _, Y = make_spectra(rng, cal, 6)
    Y[0, :40] = bad  # many: the normal matrix is rebuilt
    Y[1, [5, 77, 150]] = bad  # few: it is downdated
    Y[2, 100:300] = bad  # most
    result = quantify(Y, cal)
    assert list(result.n_masked_pixels[:4]) == [40, 3, 200, 0]
    assert_matches_scipy(cal, np.where(np.isfinite(Y), Y, np.nan), result)


def test_masked_pixel_with_zero_weight_is_not_counted():
    rng = np.random.default_rng(4)
    wavelength_nm = np.linspace(350, 1000, 120)
    weight = np.ones(120)
    weight[:10] = 0.0
    cal = Calibration.from_sensitivity(
        wavelength_nm, band_sensitivities(rng, 3, 120, wavelength_nm), ANALYTES[:3], pixel_weight=weight
    )
    _, Y = make_spectra(rng, cal, 2)
    Y[:, :10] = np.nan
    result = quantify(Y, cal)
    assert np.all(result.n_masked_pixels == 0)
    assert_matches_scipy(cal, Y, result)


@pytest.mark.parametrize("baseline_order", [None, 1])
def test_one_analyte(baseline_order):
    rng = np.random.default_rng(12)
    cal = make_calibration(rng, 1, 200, baseline_order)
    _, Y = make_spectra(rng, cal, 10, zero_fraction=0.3)
    Y[3] -= 0.5 * cal.sensitivity[0]  # pushes the estimate below zero
    result = quantify(Y, cal)
    assert result.concentration_g_per_L.shape == (10, 1)
    assert_matches_scipy(cal, Y, result)


@pytest.mark.parametrize("baseline_order", [None, 2])
def test_negative_noise_gives_zeros_and_the_residual_of_scipy(baseline_order):
    rng = np.random.default_rng(13)
    cal = make_calibration(rng, 4, 200, baseline_order)
    Y = -np.abs(rng.normal(0, 0.01, (3, 200)))
    result = quantify(Y, cal)
    assert np.all(result.concentration_g_per_L >= 0)
    assert_matches_scipy(cal, Y, result)


def test_collinear_references_reach_scipy_residual_and_flag_the_redundant_one():
    rng = np.random.default_rng(14)
    wavelength_nm = np.linspace(350, 1000, 200)
    S = band_sensitivities(rng, 3, 200, wavelength_nm)
    S = np.vstack([S, 2.0 * S[0]])  # analyte 4 is analyte 1 at twice the sensitivity
    cal = Calibration.from_sensitivity(wavelength_nm, S, ANALYTES[:4], baseline_order=2)
    conc = np.array([[1.0, 0.5, 0.2, 0.0], [0.0, 0.1, 0.3, 0.7]])
    Y = conc @ S + 1e-3 * rng.standard_normal((2, 200))
    result = quantify(Y, cal)
    for i, y in enumerate(Y):
        ref_conc, _, ref_rms = scipy_solution(cal, y)
        assert result.residual_rms[i] == pytest.approx(ref_rms, rel=1e-8)
        # only c1 + 2 c4 is determined; it agrees
        ours = result.concentration_g_per_L[i]
        assert ours[0] + 2 * ours[3] == pytest.approx(ref_conc[0] + 2 * ref_conc[3], rel=1e-8)
        assert np.allclose(ours[1:3], ref_conc[1:3], rtol=1e-8)
        assert np.isinf(result.sigma_g_per_L[i, [0, 3]]).sum() == 1


def test_spectrum_shape_must_match_the_calibration():
    cal = make_calibration(np.random.default_rng(0), 2, 50, 2)
    with pytest.raises(ValueError, match="expected \\(P,\\) or \\(N, P\\) with P = 50"):
        quantify(np.zeros((3, 49)), cal)
    with pytest.raises(TypeError, match="Calibration"):
        quantify(np.zeros(50), object())


# ----------------------------------------------------------------------------- fused counts kernel


def counts_problem(rng, cal, N):
    P = cal.n_pixels
    lamp = 30000 * np.exp(-0.5 * ((cal.wavelength_nm - 700) / 250) ** 2) + 3000
    dark = 1000 + rng.normal(0, 3, P)
    reference = lamp + dark
    conc, A = make_spectra(rng, cal, N, noise=0.0)
    counts = lamp * 10.0**-A + dark + rng.normal(0, 20, (N, P))
    return counts, dark, reference


@pytest.mark.parametrize("baseline_order", [None, 2])
def test_counts_kernel_equals_numpy_absorbance_then_quantify(baseline_order):
    rng = np.random.default_rng(21)
    cal = make_calibration(rng, 6, 512, baseline_order, weighted=True)
    counts, dark, reference = counts_problem(rng, cal, 41)
    counts = counts.astype(np.float32)
    counts[0, 10:20] = 65535  # saturated
    counts[1, 30] = 0.0  # below the dark
    counts[2, 40:45] = np.nan
    counts[3, 50] = np.inf
    counts[4, :] = 0.0  # no light at all: every pixel masked
    counts[5, 60] = np.float32(dark[60]) + np.float32(1e-3)  # barely above dark
    reference = reference.copy()
    reference[100] = 70000.0  # reference saturated at one pixel: masked in every spectrum
    fused = quantify_counts(counts, dark, reference, cal, saturation_counts=65535)
    A = absorbance(counts, dark, reference, saturation_counts=65535)
    two_step = quantify(A, cal, reference=np.where(reference < 65535, reference - dark, np.nan))
    assert np.allclose(fused.reference_shift_nm, two_step.reference_shift_nm, rtol=1e-8, atol=1e-12, equal_nan=True)
    assert np.array_equal(fused.n_masked_pixels, two_step.n_masked_pixels)
    assert np.array_equal(fused.status, two_step.status)
    finite = np.isfinite(two_step.concentration_g_per_L)
    assert np.array_equal(finite, np.isfinite(fused.concentration_g_per_L))
    assert np.allclose(
        fused.concentration_g_per_L[finite], two_step.concentration_g_per_L[finite], rtol=1e-10, atol=1e-12
    )
    assert np.allclose(fused.sigma_g_per_L[finite], two_step.sigma_g_per_L[finite], rtol=1e-8)
    assert np.allclose(fused.residual_rms[1:], two_step.residual_rms[1:], rtol=1e-8, equal_nan=True)
    assert np.all(np.isnan(fused.concentration_g_per_L[4]))


def test_counts_kernel_one_component_and_rank_deficient():
    rng = np.random.default_rng(22)
    wavelength_nm = np.linspace(350, 1000, 256)
    S1 = band_sensitivities(rng, 1, 256, wavelength_nm)
    for S in (S1, np.vstack([S1, S1])):
        cal = Calibration.from_sensitivity(wavelength_nm, S, ANALYTES[: len(S)], baseline_order=1)
        counts, dark, reference = counts_problem(rng, cal, 9)
        fused = quantify_counts(counts.astype(np.float32), dark, reference, cal)
        two_step = quantify(absorbance(counts.astype(np.float32), dark, reference), cal, reference=reference - dark)
        assert np.allclose(
            fused.concentration_g_per_L.sum(axis=1), two_step.concentration_g_per_L.sum(axis=1), rtol=1e-10
        )
        assert np.allclose(fused.residual_rms, two_step.residual_rms, rtol=1e-8)


def test_counts_of_other_dtypes_take_the_two_step_path_with_the_same_answer():
    rng = np.random.default_rng(23)
    cal = make_calibration(rng, 3, 128, 2)
    counts, dark, reference = counts_problem(rng, cal, 5)
    as_uint16 = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    via_uint16 = quantify_counts(as_uint16, dark, reference, cal)
    via_float64 = quantify_counts(as_uint16.astype(np.float64), dark, reference, cal)
    assert np.allclose(via_uint16.concentration_g_per_L, via_float64.concentration_g_per_L, rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="reference"):
        quantify_counts(counts, dark, reference[:-1], cal)


# ----------------------------------------------------------------------------- second fit: Lorentzian widths
#
# Bands with Lorentzian wings that broaden leave a misfit the width spectrum (exact for Gaussian bands)
# cannot take up, and it biases c by many sigma. quantify refits the spectra whose width coefficient of
# an analyte is significant with that analyte's Lorentzian width spectrum as one more free column.


def voigt_bands(rng, K, wavelength_nm):
    """Band parameters (analyte, centre nm, FWHM nm, peak) for K analytes of 1-3 bands each."""
    return [
        (k, rng.uniform(wavelength_nm[0] + 40, wavelength_nm[-1] - 40), rng.uniform(6, 16), rng.uniform(0.02, 0.1))
        for k in range(K)
        for _ in range(rng.integers(1, 4))
    ]


def voigt_sensitivities(bands, K, wavelength_nm, width_factor=1.0):
    """Half-Lorentzian pseudo-Voigt bands, widths times ``width_factor`` with their areas kept."""
    S = np.zeros((K, wavelength_nm.size))
    for k, centre, fwhm, peak in bands:
        x = 2.0 * (wavelength_nm - centre) / (fwhm * width_factor)
        S[k] += peak / width_factor * (0.5 / (1.0 + x**2) + 0.5 * np.exp(-np.log(2.0) * x**2))
    return S


def broadened_problem(rng, K, P, N, baseline_order=2, weighted=False, width_factor=1.04, noise=2e-4):
    wavelength_nm = np.linspace(350.0, 1000.0, P)
    bands = voigt_bands(rng, K, wavelength_nm)
    weight = rng.uniform(0.5, 2.0, P) if weighted else None
    cal = Calibration.from_sensitivity(
        wavelength_nm,
        voigt_sensitivities(bands, K, wavelength_nm),
        ANALYTES[:K],
        baseline_order=baseline_order,
        pixel_weight=weight,
    )
    conc = rng.uniform(0.5, 5, (N, K)) * (rng.random((N, K)) >= 0.2)
    Y = conc @ voigt_sensitivities(bands, K, wavelength_nm, width_factor) + noise * rng.standard_normal((N, P))
    if baseline_order is not None:
        Y += rng.normal(0, 0.02, (N, baseline_order + 1)) @ cal.baseline().T
    return cal, conc, Y


def refit_design(cal, refit_row):
    """The second fit's design for one spectrum: the design matrix and the Lorentzian columns it used."""
    return np.hstack([cal.design_matrix(), cal.lorentzian_width_spectra()[refit_row].T])


@pytest.mark.parametrize(
    ("baseline_order", "weighted", "masked"),
    [(2, False, False), (None, True, False), (1, True, True), (3, False, True)],
)
def test_second_fit_equals_scipy_on_the_columns_it_used(baseline_order, weighted, masked):
    rng = np.random.default_rng(31 + (baseline_order or 0) + 5 * weighted + 11 * masked)
    cal, _, Y = broadened_problem(rng, 4, 400, 16, baseline_order, weighted)
    if masked:
        Y[0, 20:60] = np.nan  # many: rebuilt normal matrix
        Y[1, [7, 130, 260]] = np.nan  # few: downdated
        Y[2, rng.random(400) < 0.3] = np.nan
    result = quantify(Y, cal)
    refit = result.lorentzian_width_coefficients != 0
    assert refit.any(axis=1).mean() >= 0.5  # the broadening is found
    assert np.all(result.status == STATUS_OK) and np.all(result.concentration_g_per_L >= 0)
    assert_matches_scipy(cal, Y, result)


def width_sigma_reference(cal, y, conc, free):
    """sigma of each width coefficient: as numpy_sigma, the width columns' diagonal of inv(N_FF)."""
    X = cal.design_matrix()
    w = cal.pixel_weight
    keep = np.isfinite(y) & (w > 0)
    inflation = max(1.0, lack_of_fit_reference(cal, y, conc, free))
    X, y, w = X[keep], y[keep], w[keep]
    K = len(cal.analytes)
    v = np.r_[conc, free]
    used = np.r_[conc > 0, np.ones(free.size, bool)]
    N = X.T @ (X * w[:, None])
    s2 = inflation * np.sum(w * (y - X @ v) ** 2) / (keep.sum() - used.sum())
    inverse = np.linalg.inv(N[np.ix_(used, used)])
    position = np.cumsum(used) - 1
    return np.array([np.sqrt(s2 * inverse[position[-K + k], position[-K + k]]) for k in range(K)])


def test_the_spectra_refit_are_those_whose_width_coefficient_is_significant():
    """Which analyte gets its Lorentzian width column: c > 0 and |width coefficient| > 4 sigma of it (numpy)."""
    rng = np.random.default_rng(41)
    cal, _, Y = broadened_problem(rng, 4, 300, 40, width_factor=1.01, noise=1e-3)
    Y[3, 100:140] = np.nan
    first = _first_fit(Y, cal)
    result = quantify(Y, cal)
    refit = result.lorentzian_width_coefficients != 0
    K = len(cal.analytes)
    decided = 0
    for i, y in enumerate(Y):
        conc, free, _ = scipy_solution(cal, y)
        assert relative_error(first.concentration_g_per_L[i], conc) <= RTOL
        z = np.abs(free[-K:]) / width_sigma_reference(cal, y, conc, free)
        clear = np.abs(z / LORENTZIAN_TRIGGER_SIGMAS - 1.0) > 1e-3  # not on the threshold to rounding
        material = np.abs(free[-K:]) > LORENTZIAN_TRIGGER_RELATIVE * conc
        expected = (z > LORENTZIAN_TRIGGER_SIGMAS) & (conc > 0) & material
        assert np.array_equal(refit[i][clear], expected[clear]), (i, z)
        decided += int(expected.any())
    assert 0 < decided < len(Y)  # both kinds of spectrum are in the test


def test_lorentzian_broadening_is_refit_and_sigma_covers_the_error():
    """4 % broader half-Lorentzian bands: the first fit reads every analyte low by many sigma; the second
    fit's 2-sigma intervals hold the truth 85-99 % of the time. Unbroadened spectra are not refit."""
    rng = np.random.default_rng(43)
    wavelength_nm = np.linspace(350.0, 1000.0, 600)
    bands = voigt_bands(rng, 4, wavelength_nm)
    cal = Calibration.from_sensitivity(
        wavelength_nm, voigt_sensitivities(bands, 4, wavelength_nm), ANALYTES[:4], baseline_order=2
    )
    conc = rng.uniform(0.5, 5, (300, 4))
    noise = 1e-3 * rng.standard_normal((300, 600))
    broad = conc @ voigt_sensitivities(bands, 4, wavelength_nm, 1.04) + noise
    first, second = _first_fit(broad, cal), quantify(broad, cal)
    inside_first = np.abs(first.concentration_g_per_L - conc) <= 2 * first.sigma_g_per_L
    inside = np.abs(second.concentration_g_per_L - conc) <= 2 * second.sigma_g_per_L
    assert inside_first.mean() < 0.6
    assert np.mean(np.any(second.lorentzian_width_coefficients != 0, axis=1)) > 0.9
    assert 0.85 <= inside.mean() <= 0.99
    assert np.abs(np.mean(second.concentration_g_per_L / conc - 1.0)) < 0.5 * np.abs(
        np.mean(first.concentration_g_per_L / conc - 1.0)
    )
    unbroadened = quantify(conc @ cal.sensitivity + noise, cal)
    assert np.mean(unbroadened.lorentzian_width_coefficients != 0) <= 0.01
    assert np.any(unbroadened.lorentzian_width_coefficients == 0)


def test_second_fit_solves_the_corrected_normal_equations_of_a_calibration_from_standards():
    """From noisy standards the second fit also removes the expected noise energy of S from its normal
    matrix, the Lorentzian columns' share included (errors-in-variables)."""
    rng = np.random.default_rng(45)
    wavelength_nm = np.linspace(350, 1000, 400)
    bands = voigt_bands(rng, 3, wavelength_nm)
    S = voigt_sensitivities(bands, 3, wavelength_nm)
    C = np.vstack([np.zeros(3), rng.uniform(0.5, 5, (12, 3))])
    standards = C @ S + 2e-4 * rng.standard_normal((13, 400))
    cal = calibrate(wavelength_nm, standards, C, ANALYTES[:3], weighting="uniform")
    conc = rng.uniform(1, 5, (10, 3))
    Y = conc @ voigt_sensitivities(bands, 3, wavelength_nm, 1.05) + 2e-4 * rng.standard_normal((10, 400))
    result = quantify(Y, cal)
    refit = result.lorentzian_width_coefficients != 0
    assert refit.any(axis=1).all()
    model = cal._lorentzian_model
    K = 3
    n_first = cal.design_matrix().shape[1]
    assert np.any(model.E_w[n_first:, :K])  # the Lorentzian columns carry S's noise
    for i, y in enumerate(Y):
        used = np.any(model.X != 0, axis=0)
        used[n_first:] &= refit[i]
        corrected = (model.N - model.w.sum() * model.E_w)[np.ix_(used, used)]
        R = np.linalg.cholesky(corrected).T
        r = (model.XWt @ y)[used]
        lower = np.r_[np.zeros(K), np.full(used.sum() - K, -np.inf)]
        v = lsq_linear(R, np.linalg.solve(R.T, r), bounds=(lower, np.inf), method="bvls", tol=1e-14).x
        assert relative_error(result.concentration_g_per_L[i], v[:K]) <= RTOL
        assert np.allclose(result.lorentzian_width_coefficients[i, refit[i]], v[-refit[i].sum() :], rtol=1e-6)


def test_model_absorbance_includes_the_lorentzian_terms():
    rng = np.random.default_rng(47)
    cal, _, Y = broadened_problem(rng, 3, 300, 6)
    result = quantify(Y, cal)
    assert np.any(result.lorentzian_width_coefficients != 0)
    residual = Y - result.model_absorbance(cal)
    rms = np.sqrt(np.sum(cal.pixel_weight * residual**2, axis=1) / cal.pixel_weight.sum())
    assert np.allclose(rms, result.residual_rms, rtol=1e-8)


def test_second_fit_edge_cases_zero_one_component_and_rank_deficient():
    rng = np.random.default_rng(49)
    wavelength_nm = np.linspace(350, 1000, 300)
    bands = voigt_bands(rng, 1, wavelength_nm)
    S1 = voigt_sensitivities(bands, 1, wavelength_nm)
    one = Calibration.from_sensitivity(wavelength_nm, S1, ANALYTES[:1], baseline_order=1)
    Y = (
        np.vstack([np.zeros(300), np.outer([2.0, 4.0], voigt_sensitivities(bands, 1, wavelength_nm, 1.05)[0])])
        + 1e-4 * np.r_[np.zeros((1, 300)), rng.standard_normal((2, 300))]
    )
    result = quantify(Y, one)
    assert np.all(result.lorentzian_width_coefficients[0] == 0)  # all-zero: nothing to refit
    assert np.all(result.lorentzian_width_coefficients[1:] != 0)
    assert_matches_scipy(one, Y, result)
    twice = Calibration.from_sensitivity(wavelength_nm, np.vstack([S1, 2.0 * S1]), ANALYTES[:2], baseline_order=1)
    collinear = quantify(Y[1:], twice)
    for i in range(2):  # only c1 + 2 c2 is determined; it agrees with the one-analyte fit
        ours = collinear.concentration_g_per_L[i]
        assert ours[0] + 2 * ours[1] == pytest.approx(result.concentration_g_per_L[i + 1, 0], rel=1e-8)
        assert np.isinf(collinear.sigma_g_per_L[i]).sum() == 1


def test_second_fit_of_counts_equals_the_two_step_path_with_nan_and_saturated_pixels():
    rng = np.random.default_rng(51)
    cal, _, A = broadened_problem(rng, 4, 512, 24, noise=0.0)
    P = cal.n_pixels
    lamp = 30000 * np.exp(-0.5 * ((cal.wavelength_nm - 700) / 250) ** 2) + 3000
    dark = 1000 + rng.normal(0, 3, P)
    reference = lamp + dark
    counts = (lamp * 10.0**-A + dark + rng.normal(0, 5, A.shape)).astype(np.float32)
    counts[0, 10:20] = 65535  # saturated
    counts[1, 40:45] = np.nan
    counts[2, 50] = np.inf
    counts[3, :] = 0.0  # no light: every pixel masked
    fused = quantify_counts(counts, dark, reference, cal, saturation_counts=65535)
    two_step = quantify(absorbance(counts, dark, reference, saturation_counts=65535), cal, reference=reference - dark)
    refit = fused.lorentzian_width_coefficients != 0
    assert refit.any(axis=1).sum() >= 12
    assert np.array_equal(refit, two_step.lorentzian_width_coefficients != 0)
    finite = np.isfinite(two_step.concentration_g_per_L)
    assert np.array_equal(finite, np.isfinite(fused.concentration_g_per_L)) and not finite[3].any()
    assert np.allclose(
        fused.concentration_g_per_L[finite], two_step.concentration_g_per_L[finite], rtol=1e-10, atol=1e-12
    )
    assert np.allclose(
        fused.lorentzian_width_coefficients, two_step.lorentzian_width_coefficients, rtol=1e-8, atol=1e-12
    )
    assert np.allclose(fused.sigma_g_per_L[finite], two_step.sigma_g_per_L[finite], rtol=1e-8)
