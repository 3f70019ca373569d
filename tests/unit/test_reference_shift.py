"""A sample measured on a wavelength axis that moved since its blank: the blank's own light is modelled too.

Over a lab day a CCD's axis drifts by tenths of a nm; the blank was taken in the
morning. The sample then sees the lamp, the detector's response and the water
band at shifted wavelengths, the blank at the old ones: a structure in the
absorbance that no analyte band represents. With the reference's shift column
the fit stays at the noise (lack of fit about 1) and says how far the axis moved.
"""

import numpy as np
import pytest

from analysis import Calibration, absorbance, quantify, quantify_counts

P = 2048
WAVELENGTH_NM = np.linspace(350.0, 1000.0, P)
BANDS = {
    "Nd": ((575.0, 4.2, 0.05), (740.0, 5.1, 0.03), (794.0, 4.2, 0.06)),
    "Pr": ((444.0, 3.4, 0.07), (469.0, 2.5, 0.03), (589.0, 3.0, 0.015)),
}


def bands(wavelength_nm, concentration):
    return sum(
        c * h * np.exp(-0.5 * ((wavelength_nm - centre) / sigma) ** 2)
        for (name, c) in zip(BANDS, concentration)
        for centre, sigma, h in BANDS[name]
    )


def lamp(wavelength_nm):
    """Tungsten-halogen through a silicon detector and a water-filled cell: counts per scan."""
    planck = 1.0 / (wavelength_nm**5 * (np.exp(1.4388e7 / (wavelength_nm * 3000.0)) - 1.0))
    response = np.exp(-0.5 * ((wavelength_nm - 600.0) / 220.0) ** 2) / (1 + np.exp(-(wavelength_nm - 380) / 12))
    water = 10.0 ** (-0.19 * np.exp(-0.5 * ((wavelength_nm - 970.0) / 30.0) ** 2))
    light = planck * response * water
    return 40_000.0 * light / light.max()


def measure(rng, concentration, axis_shift_nm, averages=200):
    true_wavelength = WAVELENGTH_NM + axis_shift_nm
    signal = lamp(true_wavelength) * 10.0 ** -bands(true_wavelength, concentration)
    noise = np.sqrt(signal / 2.0 + 36.0) / np.sqrt(averages)
    return (signal + 1000.0 + rng.normal(0, 1, P) * noise).astype(np.float32)


@pytest.fixture(scope="module")
def calibration():
    S = np.array([bands(WAVELENGTH_NM, [1.0, 0.0]), bands(WAVELENGTH_NM, [0.0, 1.0])])
    return Calibration.from_sensitivity(WAVELENGTH_NM, S, tuple(BANDS), baseline_order=2)


def test_a_moved_axis_is_measured_from_the_blank_and_the_fit_stays_at_the_noise(calibration):
    rng = np.random.default_rng(5)
    dark = np.full(P, 1000.0)
    reference = (lamp(WAVELENGTH_NM) + dark).astype(np.float32)
    truth = np.array([8.0, 1.5])
    for shift in (0.0, 0.15, 0.3):
        counts = np.array([measure(rng, truth, shift) for _ in range(6)])
        with_blank = quantify_counts(counts, dark, reference, calibration)
        without = quantify(absorbance(counts, dark, reference), calibration)  # no reference column
        assert np.all(np.abs(with_blank.reference_shift_nm - shift) < 0.03), with_blank.reference_shift_nm
        assert np.all(with_blank.lack_of_fit < 1.3), with_blank.lack_of_fit
        assert not with_blank.model_mismatch.any()
        assert np.allclose(with_blank.concentration_g_per_L, truth, rtol=0.01)
        if shift >= 0.15:
            assert np.all(without.lack_of_fit > 2 * with_blank.lack_of_fit), without.lack_of_fit
        assert np.all(np.isnan(without.reference_shift_nm))


def test_the_two_step_path_with_the_reference_equals_the_fused_one(calibration):
    rng = np.random.default_rng(6)
    dark = np.full(P, 1000.0)
    reference = (lamp(WAVELENGTH_NM) + dark).astype(np.float32)
    counts = np.array([measure(rng, [5.0, 0.5], 0.2) for _ in range(3)])
    fused = quantify_counts(counts, dark, reference, calibration)
    two_step = quantify(absorbance(counts, dark, reference), calibration, reference=reference - dark)
    assert np.allclose(fused.concentration_g_per_L, two_step.concentration_g_per_L, rtol=1e-9)
    assert np.allclose(fused.reference_shift_nm, two_step.reference_shift_nm, rtol=1e-8)
    model = fused.model_absorbance(calibration, reference - dark)
    measured = absorbance(counts, dark, reference)
    assert np.sqrt(np.mean((model - measured) ** 2)) < 3 * fused.residual_rms.max()
