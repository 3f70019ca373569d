"""analysis.calibrate: CLS sensitivities from standards, quality report, errors, save/load."""

import importlib.metadata
from datetime import UTC, datetime, timedelta

import h5py
import numpy as np
import pytest

from analysis import Calibration, baseline_basis, calibrate, quantify

ANALYTES = ("Nd", "Pr", "Sm", "Er", "Ho")
BANDS = {  # centre nm, width nm, absorbance per g/L at the peak
    "Nd": [(575, 5, 0.050), (740, 6, 0.045), (794, 5, 0.080)],
    "Pr": [(444, 4, 0.070), (469, 3, 0.030), (482, 3, 0.028), (589, 4, 0.013)],
    "Sm": [(402, 3, 0.022)],
    "Er": [(379, 3, 0.045), (523, 3, 0.019), (652, 4, 0.013)],
    "Ho": [(451, 4, 0.025), (537, 3, 0.022), (641, 5, 0.015)],
    "La": [],
}


class Lab:
    """A synthetic bench: Gaussian bands, a lamp that is weak in the blue (noisier there), drifting baselines."""

    def __init__(self, seed=0, pixels=512, analytes=ANALYTES):
        self.rng = np.random.default_rng(seed)
        self.analytes = analytes
        self.wavelength_nm = np.linspace(350.0, 1000.0, pixels)
        wl = self.wavelength_nm
        self.S = np.array(
            [sum(h * np.exp(-0.5 * ((wl - c) / w) ** 2) for c, w, h in BANDS[a]) + 0 * wl for a in analytes]
        )
        lamp = np.exp(-0.5 * ((wl - 800.0) / 230.0) ** 2) + 0.02
        self.noise_sd = 4e-4 / np.sqrt(lamp / lamp.max())
        self.basis = baseline_basis(wl, 2)

    def spectra(self, concentration, noise=True, baseline_sd=0.01):
        C = np.atleast_2d(concentration)
        A = C @ self.S + (self.rng.normal(0, baseline_sd, (len(C), 3)) @ self.basis.T)
        if noise:
            A = A + self.rng.standard_normal(A.shape) * self.noise_sd
        return A


def design(K, high=(10.0, 3.0, 3.0, 3.0, 3.0)):
    """Blank, a two-level 2^(5-2) fractional factorial (levels 0.2 and 1 of range) and a centre point."""
    runs = [[0.0] * K]
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                signs = [a, b, c, a ^ b, a ^ c][:K]
                runs.append([high[k] * (1.0 if s else 0.2) for k, s in enumerate(signs)])
    runs.append([0.5 * h for h in high[:K]])
    return np.array(runs)


@pytest.fixture(scope="module")
def noisy():
    lab = Lab(seed=1)
    C = design(5)
    A = lab.spectra(C)
    return lab, C, A, calibrate(lab.wavelength_nm, A, C, ANALYTES, standard_names=[f"std{i}" for i in range(len(C))])


# ----------------------------------------------------------------------------- fitting


def test_noise_free_standards_with_drifting_baselines_give_exact_predictions():
    lab = Lab(seed=2)
    C = design(5)
    cal = calibrate(lab.wavelength_nm, lab.spectra(C, noise=False), C, ANALYTES, weighting="uniform")
    unknown = np.array([[4.0, 1.0, 0.0, 2.5, 0.3], [0.0, 0.0, 2.0, 0.0, 1.0]])
    result = quantify(lab.spectra(unknown, noise=False, baseline_sd=0.05), cal)
    assert np.allclose(result.concentration_g_per_L, unknown, atol=1e-9)
    # the sensitivity is the true one with its baseline-shaped part removed (it is not identifiable)
    B = cal.baseline()
    true_projected = lab.S - (B @ np.linalg.lstsq(B, lab.S.T, rcond=None)[0]).T
    assert np.allclose(cal.sensitivity, true_projected, atol=1e-12)
    assert np.allclose(cal.sensitivity @ B, 0.0, atol=1e-12)


def test_without_baseline_the_sensitivity_is_the_plain_cls_estimate():
    lab = Lab(seed=3)
    C = design(5)
    A = lab.spectra(C, baseline_sd=0.0)
    cal = calibrate(lab.wavelength_nm, A, C, ANALYTES, baseline_order=None)
    assert cal.baseline_order is None and cal.baseline().shape == (lab.wavelength_nm.size, 0)
    assert np.allclose(cal.sensitivity, np.linalg.lstsq(C, A, rcond=None)[0], atol=1e-12)


def test_quality_report_describes_the_calibration(noisy):
    lab, C, A, cal = noisy
    q = cal.quality
    M, K = C.shape
    assert q.fit_residual_rms.shape == (M,) and q.loo_error_g_per_L.shape == (M, K)
    # residual of each standard is about the noise (weighted rms, in absorbance)
    typical_noise = np.sqrt(np.mean(lab.noise_sd**-2) ** -1)
    assert np.all((q.fit_residual_rms > 0.3 * typical_noise) & (q.fit_residual_rms < 1.5 * typical_noise))
    assert np.array_equal(q.calibrated_range_g_per_L, np.stack([C.min(0), C.max(0)], axis=1))
    assert np.all(np.isfinite(q.loo_rmse_g_per_L)) and np.all(q.loo_rmse_g_per_L > 0)
    assert np.all(q.detection_limit_g_per_L > 0)
    assert np.all(q.sensitivity_significance > 100)
    assert q.residual_dof > 0 and 1 < q.condition_number < 1e4
    assert "LOO RMSE" in q.summary(cal.analytes) and "Sm" in q.summary(cal.analytes)
    assert q.warnings == ()  # no curvature analyte: no product-design check (decision 0059)
    # estimated noise per pixel follows the true noise (it sets the pixel weights)
    assert np.corrcoef(q.noise_absorbance, lab.noise_sd)[0, 1] > 0.9
    assert np.corrcoef(np.log(cal.pixel_weight), -2 * np.log(lab.noise_sd))[0, 1] > 0.85
    assert cal.pixel_weight.mean() == pytest.approx(1.0)


def test_detection_limit_is_three_sigma_of_a_blank(noisy):
    lab, C, A, cal = noisy
    blanks = quantify(lab.spectra(np.zeros((3000, 5))), cal)
    limit = cal.quality.detection_limit_g_per_L
    assert np.all((blanks.concentration_g_per_L > limit).mean(axis=0) < 0.01)
    # the spread of estimates where every analyte is free is the sigma behind the limit
    level = 0.2 * C.max(axis=0)
    present = quantify(lab.spectra(np.tile(level, (3000, 1))), cal)
    spread = present.concentration_g_per_L.std(axis=0)
    assert np.allclose(limit / 3.0, spread, rtol=0.25)


def test_leave_one_out_error_matches_the_prediction_error_on_new_unknowns(noisy):
    lab, C, A, cal = noisy
    unknown = lab.rng.uniform(0, 1, (400, 5)) * C.max(axis=0)
    error = quantify(lab.spectra(unknown), cal).concentration_g_per_L - unknown
    rmsep = np.sqrt(np.mean(error**2, axis=0))
    ratio = cal.quality.loo_rmse_g_per_L / rmsep  # ten folds: an estimate good to a factor of a few
    assert np.all((ratio > 0.2) & (ratio < 5.0))


def test_noisy_standards_do_not_bias_predictions_and_sigma_stays_honest():
    """Noise in the standards inflates S W S^T; the errors-in-variables correction removes the bias."""
    lab = Lab(seed=4)
    lab.noise_sd *= 6.0  # standards and unknowns both noisy: S is estimated poorly
    C = design(5)
    cal = calibrate(lab.wavelength_nm, lab.spectra(C), C, ANALYTES)
    unknown = lab.rng.uniform(0.2, 1, (1500, 5)) * C.max(axis=0)
    spectra = lab.spectra(unknown)
    corrected = quantify(spectra, cal)
    naive = quantify(
        spectra,
        Calibration.from_sensitivity(lab.wavelength_nm, cal.sensitivity, ANALYTES, pixel_weight=cal.pixel_weight),
    )

    def slope(result):
        return np.array([np.polyfit(unknown[:, k], result.concentration_g_per_L[:, k], 1)[0] for k in range(5)])

    naive_bias, corrected_bias = np.abs(slope(naive) - 1.0), np.abs(slope(corrected) - 1.0)
    assert naive_bias[ANALYTES.index("Sm")] > 0.2, "uncorrected estimates of the weakest analyte are attenuated"
    assert np.all(corrected_bias < 0.035)
    attenuated = naive_bias > 0.05
    assert np.all(corrected_bias[attenuated] < naive_bias[attenuated] / 2)
    inside = np.abs(corrected.concentration_g_per_L - unknown) <= 2 * corrected.sigma_g_per_L
    assert 0.88 <= inside.mean() <= 0.995


def test_lorentzian_width_spectrum_is_what_broadening_a_lorentzian_band_adds():
    """For a Lorentzian band the Lorentzian width spectrum is s (-|d/dl|) S = (s / g) dS/de, e the relative
    change of the half width g with the area kept: its shape exactly, its scale s / g about 1 / sqrt(2)
    (what -S/S'' at the peak gives, read off the smoothed S)."""
    wavelength_nm = np.linspace(300.0, 900.0, 3001)
    centre, half_width = 600.0, 8.0

    def band(g):
        return (half_width / g) / (1.0 + ((wavelength_nm - centre) / g) ** 2)

    S = np.vstack([band(half_width), 0.5 * band(half_width)])  # two analytes: the scale follows S
    step = 1e-4
    derivative = (band(half_width * (1 + step)) - band(half_width * (1 - step))) / (2 * step)
    spectra = Calibration.from_sensitivity(wavelength_nm, S, ("Nd", "Pr")).lorentzian_width_spectra()
    middle = np.abs(wavelength_nm - centre) < 60.0
    scale = (spectra[0, middle] @ derivative[middle]) / (derivative[middle] @ derivative[middle])
    assert scale == pytest.approx(1.0 / np.sqrt(2.0), rel=0.05)
    assert np.max(np.abs(spectra[0, middle] - scale * derivative[middle])) < 0.005 * np.max(np.abs(derivative))
    assert np.allclose(spectra[1], 0.5 * spectra[0], rtol=1e-9, atol=1e-12)


def test_noise_gains_of_the_lorentzian_width_filter_match_monte_carlo():
    """What noise in S puts into the Lorentzian width spectra, into its correlation with S and with the width
    spectra: the gains the errors-in-variables correction uses, against simulated noise passed through the
    same filters (the band widths that scale them read off the noise-free S, as the gains assume)."""
    from analysis._drift_terms import _derivatives, _minus_abs_derivative, _squared_band_widths, drift_noise

    rng = np.random.default_rng(3)
    wavelength_nm = np.linspace(350.0, 1000.0, 1200)
    S = np.vstack(
        [
            sum(np.exp(-0.5 * ((wavelength_nm - c) / 4.0) ** 2) for c in (450.0, 520.0, 700.0)),
            sum(np.exp(-0.5 * ((wavelength_nm - c) / 6.0) ** 2) for c in (600.0, 800.0)),
        ]
    )
    gains = drift_noise(wavelength_nm, S)
    smooth, _, curvature = _derivatives(wavelength_nm, S)
    widths2 = _squared_band_widths(wavelength_nm, smooth, curvature)
    step = np.gradient(wavelength_nm)

    def filtered(noise):
        smoothed, _, second = _derivatives(wavelength_nm, noise)
        return widths2 * second, np.sqrt(widths2) * _minus_abs_derivative(smoothed) / step

    inner = slice(100, -100)
    n_inner = wavelength_nm[inner].size
    sums = np.zeros((3, 2))  # Lorentzian energy, its product with S's noise, with the width spectrum's
    trials, sd = 200, 1e-3
    for _ in range(trials):
        noise = sd * rng.standard_normal(S.shape)
        width, lorentzian = filtered(noise)
        sums[0] += np.sum(lorentzian[:, inner] ** 2, axis=1)
        sums[1] += np.sum(lorentzian[:, inner] * noise[:, inner], axis=1)
        sums[2] += np.sum(lorentzian[:, inner] * width[:, inner], axis=1)
    measured = sums / (trials * sd**2 * n_inner)
    assert np.allclose(measured[0], np.diag(gains.lorentzian_gain), rtol=0.05)
    assert np.allclose(measured[1], gains.lorentzian_centre, rtol=0.05)
    assert np.allclose(measured[2], np.diag(gains.width_lorentzian_gain), rtol=0.05)


def test_nan_pixels_in_a_standard_are_not_used():
    lab = Lab(seed=5)
    C = design(5)
    A = lab.spectra(C)
    A[3, 100:110] = np.nan
    cal = calibrate(lab.wavelength_nm, A, C, ANALYTES)
    assert np.all(cal.pixel_weight[100:110] == 0) and np.all(cal.sensitivity[:, 100:110] == 0)
    assert np.all(cal.pixel_weight[:100] > 0)
    assert np.all(np.isnan(cal.standards.absorbance[3, 100:110]))


def test_a_fold_that_cannot_calibrate_every_analyte_is_nan():
    lab = Lab(seed=6)
    C = design(5)
    C = np.vstack([C, [0, 0, 0, 0, 0]])
    C[1:, 2] = 0.0
    C[-1, 2] = 3.0  # only the last standard has Sm
    cal = calibrate(lab.wavelength_nm, lab.spectra(C), C, ANALYTES)
    loo = cal.quality.loo_error_g_per_L
    assert np.all(np.isnan(loo[-1])) and np.all(np.isfinite(loo[:-1]))
    assert np.all(np.isfinite(cal.quality.loo_rmse_g_per_L))


def test_curvature_term_captures_a_band_that_bends_away_from_beer_lambert():
    """Strong Nd bands read low at high concentration; a quadratic term for Nd takes that up exactly."""
    lab = Lab(seed=9)
    C = design(5)
    bend = -0.05 * lab.S[0] ** 2  # absorbance per (g/L)^2: peaks bend most, ~6 % low at 15 g/L

    def spectra(conc, noise=False):
        conc = np.atleast_2d(conc)
        return lab.spectra(conc, noise=noise) + (conc[:, :1] ** 2) * bend

    linear = calibrate(lab.wavelength_nm, spectra(C), C, ANALYTES, weighting="uniform")
    curved = calibrate(lab.wavelength_nm, spectra(C), C, ANALYTES, weighting="uniform", quadratic=("Nd",))
    assert linear.model_sigma_g_per_L[0] > 0.01, "leave-one-out sees the misfit the noise does not explain"
    assert curved.quadratic_analytes == ("Nd",) and curved.quadratic_sensitivity.shape == (1, lab.S.shape[1])
    assert np.allclose(curved.model_sigma_g_per_L, 0.0, atol=1e-9)
    unknown = np.array([[7.0, 1.0, 0.5, 2.0, 0.0], [12.0, 0.0, 2.0, 0.0, 1.5]])
    result = quantify(spectra(unknown), curved)
    assert np.allclose(result.concentration_g_per_L, unknown, atol=1e-8)
    assert np.allclose(result.quadratic_coefficients[:, 0], unknown[:, 0] ** 2, rtol=1e-8)
    assert result.baseline_coefficients.shape == (2, 3)
    assert np.max(np.abs(quantify(spectra(unknown), linear).concentration_g_per_L - unknown)) > 0.01
    # the factorial's only Nd level with no impurity beside it is the blank: Nd products are not bracketed,
    # and its centre point lets the impurities' curvature into the Nd terms (decision 0059)
    assert linear.quality.warnings == () and len(curved.quality.warnings) == 2
    assert "Nd products" in curved.quality.warnings[0] and "between 0 and 10 g/L" in curved.quality.warnings[0]
    assert "curvature" in curved.quality.warnings[1] and "Pr" in curved.quality.warnings[1]


def test_curvature_term_needs_three_levels_of_its_analyte():
    lab = Lab(seed=10)
    C = design(5)
    C[:, 1] = np.where(C[:, 1] > 0, 3.0, 0.0)  # Pr at two levels only: Pr^2 is proportional to Pr
    with pytest.raises(ValueError, match=r"quadratic terms of Pr.*three or more distinct levels"):
        calibrate(lab.wavelength_nm, lab.spectra(C), C, ANALYTES, quadratic=("Pr",))
    with pytest.raises(ValueError, match="quadratic .* must name distinct analytes"):
        calibrate(lab.wavelength_nm, lab.spectra(C), C, ANALYTES, quadratic=("La",))


# ----------------------------------------------------------------------------- errors


def _inputs():
    lab = Lab(seed=7)
    C = design(5)
    return lab, C, lab.spectra(C)


def test_too_few_standards():
    lab, C, A = _inputs()
    with pytest.raises(ValueError, match="at least 6 standards"):
        calibrate(lab.wavelength_nm, A[:5], C[:5], ANALYTES)


def test_collinear_standards_name_the_analytes():
    lab, C, A = _inputs()
    C = C.copy()
    C[:, 1] = 0.25 * C[:, 0]
    with pytest.raises(ValueError, match=r"rank-deficient standards.*Nd.*Pr"):
        calibrate(lab.wavelength_nm, A, C, ANALYTES)


def test_analyte_absent_from_every_standard():
    lab, C, A = _inputs()
    C = C.copy()
    C[:, 3] = 0.0
    with pytest.raises(ValueError, match="Er is zero in every standard"):
        calibrate(lab.wavelength_nm, A, C, ANALYTES)


def test_analyte_without_a_band_in_range_is_refused():
    lab = Lab(seed=8, analytes=("Nd", "Pr", "La"))
    C = design(3)
    with pytest.raises(ValueError, match="La .*remove it from analytes"):
        calibrate(lab.wavelength_nm, lab.spectra(C), C, lab.analytes)


@pytest.mark.parametrize(
    "analytes, match",
    [
        (("Nd", "Xx", "Sm", "Er", "Ho"), r"analytes\[1\].*'Xx'"),
        (("Nd", "Nd", "Sm", "Er", "Ho"), "Nd more than once"),
        ("NdPrSmErHo", "sequence of element symbols"),
    ],
)
def test_bad_analyte_lists(analytes, match):
    lab, C, A = _inputs()
    with pytest.raises(ValueError, match=match):
        calibrate(lab.wavelength_nm, A, C, analytes)


def test_shape_mismatches_say_what_and_where():
    lab, C, A = _inputs()
    with pytest.raises(ValueError, match="standards_absorbance has shape .* P = 512"):
        calibrate(lab.wavelength_nm, A[:, :-1], C, ANALYTES)
    with pytest.raises(ValueError, match="standards_concentration_g_per_L has shape"):
        calibrate(lab.wavelength_nm, A, C[:-1], ANALYTES)
    with pytest.raises(ValueError, match="standards_concentration_g_per_L has shape"):
        calibrate(lab.wavelength_nm, A, C[:, :4], ANALYTES)
    with pytest.raises(ValueError, match="standard_names has 2 names for 10 standards"):
        calibrate(lab.wavelength_nm, A, C, ANALYTES, standard_names=["a", "b"])


@pytest.mark.parametrize("value", [-0.1, np.nan, np.inf])
def test_bad_concentration_names_the_standard_and_analyte(value):
    lab, C, A = _inputs()
    C = C.copy()
    C[4, 2] = value
    names = [f"S{i}" for i in range(len(C))]
    with pytest.raises(ValueError, match="standard 'S4': concentration of Sm"):
        calibrate(lab.wavelength_nm, A, C, ANALYTES, standard_names=names)


@pytest.mark.parametrize("order", [-1, 1.5, True, 200])
def test_bad_baseline_order(order):
    lab, C, A = _inputs()
    with pytest.raises(ValueError, match="baseline_order"):
        calibrate(lab.wavelength_nm, A, C, ANALYTES, baseline_order=order)


def test_from_sensitivity_checks_shapes():
    with pytest.raises(ValueError, match=r"sensitivity has shape \(2, 10\); expected \(K, P\) = \(3, 10\)"):
        Calibration.from_sensitivity(np.arange(10.0), np.ones((2, 10)), ("Nd", "Pr", "Sm"))
    with pytest.raises(ValueError, match="pixel_weight is zero everywhere"):
        Calibration.from_sensitivity(np.arange(10.0), np.ones((1, 10)), ("Nd",), pixel_weight=np.zeros(10))


# ----------------------------------------------------------------------------- identity and files


def test_calibration_id_is_a_content_hash(noisy):
    lab, C, A, cal = noisy
    again = calibrate(lab.wavelength_nm, A, C, ANALYTES, standard_names=cal.standards.names)
    assert again.calibration_id == cal.calibration_id
    other = calibrate(lab.wavelength_nm, A * 1.001, C, ANALYTES)
    assert other.calibration_id != cal.calibration_id
    assert cal.calibration_id.startswith("cal-") and len(cal.calibration_id) == 20


def test_arrays_are_read_only(noisy):
    cal = noisy[3]
    with pytest.raises(ValueError):
        cal.sensitivity[0, 0] = 1.0
    with pytest.raises(ValueError):
        cal.quality.detection_limit_g_per_L[0] = 1.0


def test_save_and_load_round_trip_with_provenance(noisy, tmp_path):
    lab, C, A, cal = noisy
    path = tmp_path / "cal.h5"
    cal.save(path)
    loaded = Calibration.load(path)
    assert loaded.calibration_id == cal.calibration_id
    assert loaded.analytes == cal.analytes and loaded.baseline_order == 2
    for name in ("wavelength_nm", "sensitivity", "pixel_weight", "sensitivity_variance_factor"):
        assert np.array_equal(getattr(loaded, name), getattr(cal, name))
    for name in ("fit_residual_rms", "loo_rmse_g_per_L", "detection_limit_g_per_L", "calibrated_range_g_per_L"):
        assert np.array_equal(getattr(loaded.quality, name), getattr(cal.quality, name), equal_nan=True)
    assert loaded.quality.condition_number == cal.quality.condition_number
    assert loaded.quality.warnings == cal.quality.warnings  # design warnings (decision 0059)
    assert loaded.standards.names == tuple(f"std{i}" for i in range(len(C)))
    assert np.array_equal(loaded.standards.concentration_g_per_L, C)
    assert np.allclose(loaded.standards.absorbance, A)
    created = datetime.fromisoformat(loaded.created_utc)
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(hours=1)
    assert loaded.software_version == importlib.metadata.version("rem-daq")
    spectra = lab.spectra(np.array([[1.0, 2.0, 0.5, 0.0, 1.0]]))
    assert np.array_equal(quantify(spectra, loaded).concentration_g_per_L, quantify(spectra, cal).concentration_g_per_L)
    with h5py.File(path) as f:
        assert f["sensitivity"].attrs["units"] == "absorbance per g/L"
        assert f["wavelength_nm"].attrs["units"] == "nm"


def test_curvature_terms_round_trip(tmp_path):
    lab = Lab(seed=11)
    C = design(5)
    cal = calibrate(lab.wavelength_nm, lab.spectra(C), C, ANALYTES, quadratic="Nd")
    cal.save(tmp_path / "curved.h5")
    loaded = Calibration.load(tmp_path / "curved.h5")
    assert loaded.quadratic_analytes == ("Nd",)
    assert np.array_equal(loaded.quadratic_sensitivity, cal.quadratic_sensitivity)
    assert loaded.calibration_id == cal.calibration_id
    assert loaded.sensitivity_variance_factor.shape == (6, 6)


def test_calibration_without_standards_round_trips(tmp_path):
    cal = Calibration.from_sensitivity(np.linspace(400, 700, 20), np.ones((1, 20)), ("Nd",), baseline_order=None)
    cal.save(tmp_path / "lib.h5")
    loaded = Calibration.load(tmp_path / "lib.h5")
    assert loaded.baseline_order is None and loaded.quality is None and loaded.standards is None
    assert loaded.calibration_id == cal.calibration_id


def test_an_edited_file_is_refused(noisy, tmp_path):
    path = tmp_path / "cal.h5"
    noisy[3].save(path)
    with h5py.File(path, "r+") as f:
        f["sensitivity"][0, 100] += 1e-6
    with pytest.raises(ValueError, match="does not match its calibration_id"):
        Calibration.load(path)


def test_a_file_that_is_not_a_calibration_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a rem-daq calibration file"):
        Calibration.load(path)


def test_loading_a_calibration_from_a_fifo_or_a_damaged_file_fails_at_once(noisy, tmp_path):
    import os

    fifo = tmp_path / "cal.h5"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        Calibration.load(fifo)  # opening a FIFO for reading would wait for a writer forever
    good = tmp_path / "good.h5"
    noisy[3].save(good)
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(OSError, match="truncated"):
        Calibration.load(truncated)
