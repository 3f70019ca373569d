"""A known non-linearity: how the standards' design decides whether a high-purity product reads right.

Synthetic bench, closed form (no simulator): Gaussian f-f bands (Beer-Lambert on
a 0.2 nm grid), seen through a Gaussian slit of 1.5 nm FWHM that averages the
*intensity* 10^-A, as a real spectrometer does. Narrow bands therefore bend away
from Beer-Lambert as c grows, for every analyte, not only Nd. The calibration
models Nd's curvature (``quadratic=("Nd",)``) and no other.

With standards that hold the impurities at 5-50 % of Nd (Pr up to 10 g/L) and
Nd alone only at the top of its range, the impurities' own curvature leaks into
the Nd terms and a 99.5 % Nd2O3 product reads its Pr low and its purity high
(decision 0059) -- noise-free, so it is a bias, not noise, and the standards'
leave-one-out cannot see it. Standards that bracket the product (a two-level
factorial without a centre point, plus product-like standards at 4-16 g/L Nd)
read it right, and `CalibrationQuality.warnings` tells the two designs apart.
"""

import h5py
import numpy as np
import pytest

from analysis import Calibration, calibrate, oxide_purity, quantify

ANALYTES = ("Nd", "Pr", "Sm", "Er", "Ho")
# centre nm, FWHM nm, peak absorbance per (g/L cm): aquo-ion bands, rounded literature values
BANDS = {
    "Nd": [(575, 10, 0.050), (740, 12, 0.046), (794, 10, 0.082)],
    "Pr": [(444, 8, 0.072), (469, 6, 0.031), (482, 5, 0.028), (589, 7, 0.013)],
    "Sm": [(402, 5, 0.023)],
    "Er": [(379, 6, 0.045), (523, 6, 0.019), (652, 8, 0.013)],
    "Ho": [(451, 7, 0.025), (537, 6, 0.022), (641, 10, 0.015)],
}
SLIT_FWHM_NM = 1.5
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

WAVELENGTH_NM = np.linspace(360.0, 990.0, 1024)
FINE_NM = np.arange(350.0, 1000.0, 0.2)
_SIGMA = SLIT_FWHM_NM * FWHM_TO_SIGMA
_OFFSETS = np.arange(-int(4 * _SIGMA / 0.2), int(4 * _SIGMA / 0.2) + 1) * 0.2
SLIT = np.exp(-0.5 * (_OFFSETS / _SIGMA) ** 2)
SLIT /= SLIT.sum()
FINE_S = np.array(
    [sum(h * np.exp(-0.5 * ((FINE_NM - c) / (w * FWHM_TO_SIGMA)) ** 2) for c, w, h in BANDS[a]) for a in ANALYTES]
)  # (K, fine) absorbance per g/L before the slit


def measured_absorbance(concentration):
    """A = -log10(slit * 10^-(C S)) at the pixels: slit-broadened Beer-Lambert (the blank transmits 1)."""
    C = np.atleast_2d(np.asarray(concentration, dtype=float))
    out = np.empty((len(C), WAVELENGTH_NM.size))
    for i, c in enumerate(C):
        light = np.convolve(10.0 ** -(c @ FINE_S), SLIT, mode="same")
        out[i] = -np.log10(np.interp(WAVELENGTH_NM, FINE_NM, light))
    return out


SEPARATION_SET = np.array(
    [  # the former seeds/standards/nd-pr-5.toml
        [0, 0, 0, 0, 0],
        [20, 0, 0, 0, 0],
        [0, 10, 0, 0, 0],
        [0, 0, 5, 0, 0],
        [0, 0, 0, 5, 0],
        [0, 0, 0, 0, 5],
        [10, 5, 1, 2.5, 0.5],
        [5, 2.5, 2.5, 0.5, 2.5],
        [15, 1, 0.5, 1, 1],
        [2, 8, 4, 4, 4],
        [18, 0.2, 0, 0, 0],
    ],
    dtype=float,
)


def bracketing_set():
    """Blank, Nd-20, 2^(5-2) factorial (Nd 4/20, Pr 2/10, others 1/5), one mid-level mixture, Nd-12, products
    at Nd 4-16: the shipped seeds/standards/nd-pr-5.toml."""
    runs = [[0, 0, 0, 0, 0], [20, 0, 0, 0, 0]]
    low, high = (4, 2, 1, 1, 1), (20, 10, 5, 5, 5)
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                runs.append([(high if s else low)[k] for k, s in enumerate((a, b, c, a ^ b, a ^ c))])
    runs += [
        [10, 5, 1, 2.5, 0.5],
        [12, 0, 0, 0, 0],
        [4, 0.05, 0.05, 0.05, 0.02],
        [8, 0.05, 0.1, 0, 0.1],
        [12, 0.1, 0, 0.05, 0.05],
        [16, 0.03, 0.05, 0.1, 0],
    ]
    return np.array(runs, dtype=float)


def products():
    """99.5 % Nd2O3 at Nd 4, 8, 12, 16 g/L: Pr, Er and Ho traces, no Sm."""
    nd = np.array([4.0, 8.0, 12.0, 16.0])
    return np.column_stack([nd, 0.03493 * nd / 12, 0 * nd, 0.0123 * nd / 12, 0.01228 * nd / 12])


def purity_error_pp(calibration, truth):
    """Purity error and purity sigma (percentage points), and the concentrations found."""
    result = quantify(measured_absorbance(truth), calibration)
    found = result.concentration_g_per_L
    purity = oxide_purity(found, ANALYTES, "Nd", sigma_g_per_L=result.sigma_g_per_L)
    error = 100 * (purity.purity - oxide_purity(truth, ANALYTES, "Nd").purity)
    return error, 100 * purity.purity_sigma, found


@pytest.fixture(scope="module")
def separation_calibration():
    C = SEPARATION_SET
    return calibrate(WAVELENGTH_NM, measured_absorbance(C), C, ANALYTES, baseline_order=3, quadratic=("Nd",))


@pytest.fixture(scope="module")
def bracketing_calibration():
    C = bracketing_set()
    return calibrate(WAVELENGTH_NM, measured_absorbance(C), C, ANALYTES, baseline_order=3, quadratic=("Nd",))


def test_the_response_is_non_linear_for_every_narrow_band():
    """The premise: through the slit, Nd at 20 and Pr at 10 g/L read below their initial slope at the peak.

    By only 0.05 %: a bend far below anything the standards' residuals show, yet enough to bias a trace.
    """
    for k, top in ((0, 20.0), (1, 10.0)):
        c = np.zeros(5)
        c[k] = 1e-3
        slope = measured_absorbance(c)[0] / 1e-3
        c[k] = top
        peak = int(np.argmax(slope))
        assert 0.999 < measured_absorbance(c)[0, peak] / (top * slope[peak]) < 0.9998


def test_standards_that_do_not_bracket_the_product_read_its_impurity_low_and_its_purity_high(separation_calibration):
    error, sigma, found = purity_error_pp(separation_calibration, products())
    truth = products()
    pr_error = found[:, 1] - truth[:, 1]
    assert np.all(pr_error < -0.005), f"Pr error {pr_error} g/L"  # truth 0.012-0.047 g/L
    assert pr_error[1] < -0.01 and pr_error[2] < -0.01  # largest mid-range (pinned at Nd 0 and ~19)
    assert np.all(error[:3] > 0.1) and np.all(error > 0.03), f"purity error {error} pp"
    assert error[1] > 2 * sigma[1], "a wrong purity with a small sigma"
    # the standards' own leave-one-out does not show it: no standard looks like the product
    assert np.all(np.abs(separation_calibration.quality.loo_error_g_per_L[:, 1]) < 0.01)
    warnings = separation_calibration.quality.warnings
    assert any("Nd products" in w and "between 0 and 18 g/L" in w for w in warnings), warnings
    assert any("curvature" in w and "Pr" in w for w in warnings), warnings
    assert "warning: " in separation_calibration.quality.summary(ANALYTES)


def test_a_nd_only_curvature_is_not_what_is_missing(separation_calibration):
    """A cubic Nd response is not the cause: Nd alone (no impurity curvature) reads right with the same standards."""
    C = SEPARATION_SET

    def linear_others(conc):
        conc = np.atleast_2d(conc)
        nd = np.column_stack([conc[:, 0], np.zeros((len(conc), 4))])
        slopes = measured_absorbance(np.eye(5) * 1e-4)[1:] / 1e-4
        return measured_absorbance(nd) + conc[:, 1:] @ slopes

    cal = calibrate(WAVELENGTH_NM, linear_others(C), C, ANALYTES, baseline_order=3, quadratic=("Nd",))
    found = quantify(linear_others(products()), cal).concentration_g_per_L
    assert np.max(np.abs(found[:, 1:] - products()[:, 1:])) < 0.001


def test_standards_that_bracket_the_product_read_it_right(bracketing_calibration):
    error, sigma, found = purity_error_pp(bracketing_calibration, products())
    assert np.all(np.abs(error) < 0.05), f"purity error {error} pp"
    assert np.all(np.abs(error) < 2 * sigma)
    assert np.all(np.abs(found[:, 1] - products()[:, 1]) < 0.004)
    assert bracketing_calibration.quality.warnings == ()


def test_the_warnings_name_the_unsupported_range():
    from analysis.calibration import _design_warnings

    more_nd = np.vstack([SEPARATION_SET, [[5, 0, 0, 0, 0], [10, 0, 0, 0, 0]]])
    warnings = _design_warnings(more_nd, ANALYTES, ("Nd",))
    assert len(warnings) == 1 and "between 10 and 18 g/L" in warnings[0]  # the leak is below the limit now
    assert _design_warnings(bracketing_set(), ANALYTES, ("Nd",)) == ()
    assert _design_warnings(SEPARATION_SET, ANALYTES, ()) == ()  # nothing to say without a curvature analyte


def test_warnings_round_trip_and_older_files_have_none(separation_calibration, tmp_path):
    path = tmp_path / "cal.h5"
    separation_calibration.save(path)
    loaded = Calibration.load(path)
    assert loaded.quality.warnings == separation_calibration.quality.warnings
    with h5py.File(path, "a") as f:  # a file written before the check (format 1 without the dataset)
        del f["quality/warnings"]
    assert Calibration.load(path).quality.warnings == ()


def test_the_shipped_separation_set_is_the_bracketing_design_and_draws_no_warning():
    import tomllib
    from pathlib import Path

    from analysis.calibration import _design_warnings

    shipped = tomllib.loads((Path(__file__).resolve().parents[2] / "seeds/standards/nd-pr-5.toml").read_text())
    C = np.array([[s["concentrations_g_per_L"].get(a, 0.0) for a in ANALYTES] for s in shipped["standard"]])
    assert shipped["standards"]["quadratic"] == ["Nd"]
    assert sorted(map(tuple, C)) == sorted(map(tuple, bracketing_set()))
    assert _design_warnings(C, ANALYTES, ("Nd",)) == ()
