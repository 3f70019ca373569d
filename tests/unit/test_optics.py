"""The simulator's optics and detector behave as a real array spectrometer would."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.sim._lanthanide_bands import BANDS, absorbance_per_cm
from drivers.sim._optics import wavelength_coefficients

ND_MOLAR_MASS_G_PER_MOL = 144.242


def absorbance(optics, sample, time_s=0.0):
    """Noise-free apparent absorbance of the instrument (ratio of photo-signals)."""
    return -np.log10(optics.signal_rate(sample, time_s) / optics.signal_rate({}, time_s))


@pytest.mark.parametrize("pixels", [2048, 3648, 512])
def test_wavelength_polynomial_spans_350_to_1000_nm_monotonically(pixels):
    c0, c1, c2, c3 = wavelength_coefficients(pixels)
    index = np.arange(pixels)
    wavelength_nm = c0 + c1 * index + c2 * index**2 + c3 * index**3
    assert wavelength_nm[0] == pytest.approx(350.0, abs=0.5)
    assert wavelength_nm[-1] == pytest.approx(1000.0, abs=0.5)
    assert np.all(np.diff(wavelength_nm) > 0)


def test_band_table_has_the_literature_band_positions():
    positions = {(b.element, round(b.center_nm)) for b in BANDS}
    for element, centers in {
        "Nd": (575, 740, 794),
        "Pr": (444, 469, 482, 589),
        "Sm": (402,),
        "Er": (379, 523, 652),
        "Ho": (451, 537, 641),
        "Dy": (351, 365, 910),
        "Tm": (683, 790),
        "Eu": (394,),
        "Yb": (975,),
    }.items():
        for center in centers:
            assert (element, center) in positions
    assert not {b.element for b in BANDS} & {"La", "Ce", "Gd", "Lu", "Y"}


def test_a_few_g_per_L_of_nd_absorb_0_1_to_1_at_575_nm():
    # Real Nd(III)(aq): epsilon(575 nm) about 7 L/mol/cm.
    for g_per_L in (3.0, 5.0, 12.0):
        a575 = float(absorbance_per_cm(np.array([575.0]), {"Nd": g_per_L})[0])
        assert 0.1 <= a575 <= 1.0
        assert a575 == pytest.approx(7.2 * g_per_L / ND_MOLAR_MASS_G_PER_MOL, rel=1e-6)


def test_transparent_elements_do_not_absorb(optics):
    a = absorbance(optics, {"La": 50.0, "Ce": 50.0, "Gd": 50.0, "Lu": 50.0, "Y": 50.0})
    assert np.abs(a).max() < 1e-12


def test_slit_broadens_a_band_to_the_quadrature_sum_of_widths(optics):
    # Eu 394 nm band: 4 nm FWHM; with a 1.5 nm slit the observed FWHM is about sqrt(4^2 + 1.5^2).
    wavelength_nm = optics.wavelengths_nm
    a = absorbance(optics, {"Eu": 5.0})
    window = (wavelength_nm > 380) & (wavelength_nm < 410)
    half = a[window].max() / 2
    above = wavelength_nm[window][a[window] >= half]
    observed_fwhm = above[-1] - above[0]
    pixel_nm = np.diff(wavelength_nm[window]).mean()
    assert observed_fwhm == pytest.approx(math.hypot(4.0, 1.5), abs=1.5 * pixel_nm)


def test_stray_light_caps_the_apparent_absorbance_near_3_3(optics):
    # 0.05 % stray light: an opaque band reads about -log10(0.0005) = 3.3, not its true value.
    a = absorbance(optics, {"Nd": 2000.0})
    i = int(np.argmin(np.abs(optics.wavelengths_nm - 794.0)))
    assert float(absorbance_per_cm(np.array([794.0]), {"Nd": 2000.0})[0]) > 100
    assert 2.8 < a[i] < 4.0


def test_blank_peaks_near_40000_counts_at_100_ms_and_is_weak_in_the_blue(optics):
    signal = optics.signal_rate({}, 0.0) * 0.1
    assert 35000 < signal.max() < 45000
    blue = signal[np.argmin(np.abs(optics.wavelengths_nm - 360.0))]
    assert blue < 0.05 * signal.max()


def test_dark_counts_grow_linearly_with_integration_time(optics):
    dark_1 = optics.mean_counts(None, 1.0) - optics.mean_counts(None, 0.0)
    dark_10 = optics.mean_counts(None, 10.0) - optics.mean_counts(None, 0.0)
    assert np.all(dark_1 > 0)
    np.testing.assert_allclose(dark_10, 10 * dark_1)


def test_counts_scale_with_integration_time(optics):
    rate = optics.signal_rate({}, 0.0)
    bias = optics.mean_counts(None, 0.0)
    ratio = (optics.mean_counts(rate, 0.1) - bias) / (optics.mean_counts(rate, 0.05) - bias)
    np.testing.assert_allclose(ratio, 2.0)


def test_each_scan_clips_at_16_bit_full_scale(optics):
    rng = np.random.default_rng(1)
    counts = optics.read_out(optics.signal_rate({}, 0.0), 1.0, 3, rng)
    assert counts.max() == 65535.0
    assert counts.min() >= 0.0
    assert np.sum(counts == 65535.0) > 100


def test_read_out_noise_matches_the_model_and_falls_with_averages(optics):
    rng = np.random.default_rng(2)
    rate = optics.signal_rate({}, 0.0)
    expected_single = np.sqrt(optics.scan_variance(rate, 0.05))
    for averages in (1, 16):
        draws = np.stack([optics.read_out(rate, 0.05, averages, rng) for _ in range(60)])
        ratio = draws.std(axis=0, ddof=1) / (expected_single / math.sqrt(averages))
        assert np.median(ratio) == pytest.approx(1.0, abs=0.05)


def test_reported_absorbance_noise_matches_monte_carlo(optics):
    rng = np.random.default_rng(3)
    sample = optics.signal_rate({"Nd": 10.0}, 0.0)
    blank = optics.signal_rate({}, 0.0)
    t, n = 0.1, 4
    absorbances = []
    for _ in range(200):
        dark = optics.read_out(None, t, n, rng)
        reference = optics.read_out(blank, t, n, rng)
        measured = optics.read_out(sample, t, n, rng)
        absorbances.append(-np.log10((measured - dark) / (reference - dark)))
    empirical = np.std(absorbances, axis=0, ddof=1)
    reported = optics.absorbance_noise_std(sample, blank, t, n)
    ratio = empirical / reported
    window = (optics.wavelengths_nm > 420) & (optics.wavelengths_nm < 900)
    assert np.median(ratio[window]) == pytest.approx(1.0, abs=0.05)


def test_lamp_drifts_slowly(optics):
    temperature_K, intensity = zip(*(optics.lamp_state(t) for t in np.linspace(0, 20000, 400)))
    assert 2990 < min(temperature_K) < 3000 < max(temperature_K) < 3010
    assert 0.997 < min(intensity) < 1 < max(intensity) < 1.003
    t0, i0 = optics.lamp_state(100.0)
    t1, i1 = optics.lamp_state(101.0)
    assert abs(t1 - t0) < 0.01 and abs(i1 - i0) < 1e-5


@pytest.mark.parametrize("shift_nm", [0.5, -0.8])
def test_an_axis_drift_moves_the_bands_the_other_way_on_the_reported_axis(optics, shift_nm):
    # The true wavelength of every pixel is the reported one + shift: a band appears shift nm *bluer*.
    wavelength_nm = optics.wavelengths_nm
    window = (wavelength_nm > 385) & (wavelength_nm < 405)

    def peak_nm(shift):
        rate = optics.signal_rate({"Eu": 5.0}, 0.0, wavelength_shift_nm=shift)
        a = -np.log10(rate / optics.signal_rate({}, 0.0, wavelength_shift_nm=shift))[window]
        x, w = wavelength_nm[window], np.clip(a - 0.5 * a.max(), 0, None)
        return float(np.sum(x * w) / np.sum(w))

    assert peak_nm(shift_nm) - peak_nm(0.0) == pytest.approx(-shift_nm, abs=0.02)
    assert optics.coefficients == wavelength_coefficients(optics.config.pixels)  # the stored axis never moves


# --- an axis polynomial of any order (the Ocean HDX stores its own) ------------------------------------------
def test_the_default_axis_is_the_cubic_evaluated_as_before():
    from drivers.sim._optics import Optics, OpticsConfig

    optics = Optics(OpticsConfig(pixels=2048), seed=7)
    c0, c1, c2, c3 = wavelength_coefficients(2048)
    index = np.arange(2048, dtype=float)
    assert np.array_equal(optics.wavelengths_nm, c0 + index * (c1 + index * (c2 + index * c3)))  # bit for bit


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5, 7])
def test_the_optics_take_a_stored_polynomial_of_any_order_as_their_axis(order):
    from drivers.sim._optics import Optics, OpticsConfig, fit_wavelength_coefficients

    pixels = 2068
    cubic_nm = Optics(OpticsConfig(pixels=pixels)).wavelengths_nm
    stored = tuple(float(np.float32(c)) for c in fit_wavelength_coefficients(cubic_nm, order))  # as a device keeps them
    optics = Optics(OpticsConfig(pixels=pixels, wavelength_coefficients=stored), seed=7)
    index = np.arange(pixels, dtype=float)
    client_nm = sum(c * index**k for k, c in enumerate(stored))  # what python-seabreeze computes from them
    assert len(optics.coefficients) == order + 1
    np.testing.assert_allclose(optics.wavelengths_nm, client_nm, rtol=1e-12)
    if order >= 3:
        assert np.max(np.abs(optics.wavelengths_nm - cubic_nm)) < 0.01
    rate = optics.signal_rate({"Nd": 10.0}, 0.0)
    assert rate.shape == (pixels,) and np.all(np.isfinite(rate)) and rate.max() > 1e5


def test_a_wavelength_polynomial_that_does_not_rise_is_refused():
    from drivers.sim._optics import Optics, OpticsConfig

    for coefficients in ((1000.0, -0.3), (500.0,), (350.0, 0.3, -1e-3)):
        with pytest.raises(ValueError, match="monotonically"):
            Optics(OpticsConfig(pixels=2068, wavelength_coefficients=coefficients))


# --- a nonlinear detector and its correction (Ocean's convention) ------------------------------------------------
def test_the_nonlinear_detector_droops_by_a_few_percent_towards_full_scale(optics):
    linear = np.array([1000.0, 10000.0, 32768.0, 60000.0, 65535.0])
    measured = optics.nonlinear_counts(linear)
    droop = 1.0 - measured / linear
    assert np.all(np.diff(droop) > 0) and droop[0] < 0.001
    assert droop[-1] == pytest.approx(0.04, rel=1e-9)  # the default: 4 % at full scale
    assert np.all(np.diff(optics.nonlinear_counts(np.linspace(-10.0, 1e7, 10001))) >= 0)  # monotonic
    assert optics.nonlinear_counts(np.array([1e7]))[0] >= optics.config.full_scale_counts  # saturates, never folds


def test_the_stored_7th_order_coefficients_correct_the_response_to_0_1_percent(optics):
    coefficients = np.array([np.float32(c) for c in optics.nonlinearity_coefficients(7)], dtype=float)
    assert len(coefficients) == 8
    linear = np.linspace(1000.0, 60000.0, 2000)
    measured = np.rint(optics.nonlinear_counts(linear))  # whole counts, as the ADC gives them
    corrected = measured / np.polyval(coefficients[::-1], measured)  # python-seabreeze's Spectrometer.intensities
    assert np.max(np.abs(corrected / linear - 1.0)) < 1e-3
    assert np.max(np.abs(measured / linear - 1.0)) > 0.03  # and without the correction it is far off


def test_read_out_is_linear_unless_asked_and_nonlinear_scans_clip_at_full_scale(optics):
    blank = optics.signal_rate({}, 0.0)
    linear = optics.read_out(blank, 0.1, 1, np.random.default_rng(5))
    again = optics.read_out(blank, 0.1, 1, np.random.default_rng(5), nonlinear=False)
    drooped = optics.read_out(blank, 0.1, 1, np.random.default_rng(5), nonlinear=True)
    assert np.array_equal(linear, again)
    peak = int(np.argmax(linear))
    assert drooped[peak] / linear[peak] == pytest.approx(1.0 - 0.04 * linear[peak] / 65535, abs=2e-4)
    saturated = optics.read_out(blank, 1.0, 1, np.random.default_rng(5), nonlinear=True)
    assert saturated.max() == 65535.0
