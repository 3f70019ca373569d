"""ScpiSpectrometer against the simulated spectrometer, through the real pyvisa-py TCP stack.

The physics checks compute what Beer-Lambert predicts from literature band
numbers stated here, in the test, and compare with what the driver measures,
within the noise figure the simulator reports (SIM:NOIS?). They never call the
simulator's own optics code.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from drivers import LimitError, ScpiSpectrometer
from drivers.sim.launch import start_simulator
from drivers.spectrometer import ScpiError

pytestmark = pytest.mark.system

SPEED = 10.0  # simulated seconds per wall second: exposures run 10x faster


@pytest.fixture(scope="module")
def sim():
    with start_simulator("drivers.sim.spectrometer", "--seed", "11", "--speed", str(SPEED)) as process:
        yield process


@pytest.fixture
def spec(sim):
    with ScpiSpectrometer(sim.address, timeout_s=2.0) as s:
        for command in ("*RST", "SIM:FAUL NONE", "SIM:STAN", f"SIM:SPE {SPEED}"):
            s.write(command)
        yield s


def concentrations(text: str) -> dict[str, float]:
    return {el: float(v) for el, v in (item.split("=") for item in text.split(",") if item)}


# --- identity, axis, settings ------------------------------------------------------------------
def test_identity_and_pixel_count(spec):
    assert spec.ident.startswith("REMDAQ,SIM-UVVISNIR-2048,")
    assert spec.pixels == 2048


def test_wavelength_axis_is_the_instruments_cubic_over_pixel_index(spec):
    coefficients = [float(c) for c in spec.query("CALC:WAV:COEF?").split(",")]
    index = np.arange(spec.pixels)
    expected = sum(c * index**k for k, c in enumerate(coefficients))
    wavelength_nm = spec.wavelengths_nm
    assert wavelength_nm.dtype == np.float64 and wavelength_nm.shape == (2048,)
    np.testing.assert_allclose(wavelength_nm, expected, rtol=1e-12)
    assert wavelength_nm[0] == pytest.approx(350, abs=1) and wavelength_nm[-1] == pytest.approx(1000, abs=1)
    assert np.all(np.diff(wavelength_nm) > 0)


def test_spectra_have_one_finite_float64_per_pixel_and_dark_reopens_the_shutter(spec):
    light = spec.acquire()
    dark = spec.dark()
    assert light.shape == dark.shape == (spec.pixels,)
    assert light.dtype == dark.dtype == np.float64
    assert np.isfinite(light).all() and np.isfinite(dark).all()
    assert np.median(light - dark) > 1000
    assert spec.query("SOUR:SHUT?") == "OPEN"
    assert np.median(spec.acquire() - dark) > 1000


def test_integration_time_and_averages_read_back(spec):
    spec.integration_time_s = 0.025
    spec.averages = 8
    assert spec.integration_time_s == pytest.approx(0.025)
    assert spec.averages == 8
    assert spec.query("SENS:AVER:COUN?") == "8"


def test_integration_time_limits_are_checked_before_anything_is_sent(sim):
    with ScpiSpectrometer(
        sim.address, min_integration_time_s=0.005, max_integration_time_s=2.0, max_averages=50
    ) as spec:
        before = spec.integration_time_s
        for bad in (0.001, 2.5, -1.0, 0.0, math.nan, math.inf):
            with pytest.raises(LimitError):
                spec.integration_time_s = bad
        for bad in (0, -5, 51):
            with pytest.raises(LimitError):
                spec.averages = bad
        assert spec.integration_time_s == before
        assert spec.query("SYST:ERR?").startswith("0,")  # the instrument never saw them
        spec.integration_time_s = 2.0
        assert spec.integration_time_s == 2.0


def test_the_instruments_own_limit_is_reported_through_syst_err(sim):
    with ScpiSpectrometer(sim.address, max_integration_time_s=120.0) as spec:
        before = spec.integration_time_s
        with pytest.raises(ScpiError) as caught:
            spec.integration_time_s = 100.0
        assert caught.value.errors[0][0] == -222
        assert spec.integration_time_s == before


def test_settings_made_through_the_driver_survive_reconnect(spec):
    spec.integration_time_s = 0.02
    spec.averages = 3
    spec.write("*RST")  # the instrument forgets them (as after a power cycle)
    spec.reconnect()
    assert spec.integration_time_s == pytest.approx(0.02)
    assert spec.averages == 3


def test_the_driver_restores_its_data_format_after_pass_through_commands(spec):
    spec.write("FORM:DATA ASC")
    spec.write("FORM:BORD NORM")
    counts = spec.acquire()
    assert counts.shape == (spec.pixels,)
    assert 500 < np.median(counts) < 65535


def test_sim_errors_come_back_as_scpi_errors(spec):
    with pytest.raises(ScpiError) as caught:
        spec.write("SIM:STAN Xx=1")
    assert caught.value.errors[0][0] == -224
    with pytest.raises(ScpiError) as caught:
        spec.write("SENS:FOO 1")
    assert caught.value.errors[0][0] == -113


# --- physics ---------------------------------------------------------------------------------------
# Aqueous Ln(III) f-f bands, approximate literature values (Carnall; analytical tables):
#   element: (molar mass g/mol, [(centre nm, FWHM nm, peak epsilon L/mol/cm), ...])
LITERATURE_BANDS = {
    "Nd": (144.242, [(575.0, 10.0, 7.2), (740.0, 12.0, 6.6), (794.0, 10.0, 11.8)]),
    "Pr": (140.908, [(444.0, 8.0, 10.2), (469.0, 6.0, 4.4), (482.0, 5.0, 4.0), (589.0, 7.0, 1.9)]),
}
SLIT_FWHM_NM = 1.5  # instrument bandwidth (Gaussian slit function)
STRAY_LIGHT_FRACTION = 5e-4  # of the mean detected light, spectrally flat
PATH_LENGTH_CM = 1.0


def beer_lambert(wavelength_nm: np.ndarray, standard: dict[str, float]) -> np.ndarray:
    """A = sum(epsilon c l) over Gaussian bands, each seen through the Gaussian slit (widths add in quadrature)."""
    total = np.zeros_like(wavelength_nm)
    for element, g_per_L in standard.items():
        molar_mass, bands = LITERATURE_BANDS[element]
        mol_per_L = g_per_L / molar_mass
        for center_nm, fwhm_nm, epsilon in bands:
            seen_fwhm = math.hypot(fwhm_nm, SLIT_FWHM_NM)
            peak = epsilon * mol_per_L * PATH_LENGTH_CM * fwhm_nm / seen_fwhm
            total += peak * np.exp(-4 * math.log(2) * ((wavelength_nm - center_nm) / seen_fwhm) ** 2)
    return total


def noise_std(spec, wavelength_nm: float) -> float:
    return float(spec.query(f"SIM:NOIS? {wavelength_nm:.4f}"))


def test_absorbance_of_a_standard_matches_beer_lambert_within_the_reported_noise(spec):
    standard = {"Nd": 10.0, "Pr": 5.0}
    spec.integration_time_s = 0.1
    spec.averages = 4
    dark = spec.dark()
    spec.write("SIM:STAN")  # water blank
    reference = spec.acquire()
    spec.write("SIM:STAN Nd=10,Pr=5")
    assert concentrations(spec.query("SIM:TRUT?")) == standard
    sample = spec.acquire()
    measured = -np.log10((sample - dark) / (reference - dark))

    wavelength_nm = spec.wavelengths_nm
    true_transmittance = 10.0 ** -beer_lambert(wavelength_nm, standard)
    # Stray light adds a flat fraction of the mean detected light to sample and reference alike.
    light = reference - dark
    lamp = light - STRAY_LIGHT_FRACTION * light.mean()
    expected = -np.log10((lamp * true_transmittance + STRAY_LIGHT_FRACTION * (sample - dark).mean()) / light)

    checked = []
    for element, (_, bands) in LITERATURE_BANDS.items():
        for center_nm, _, _ in bands:
            i = int(np.argmin(np.abs(wavelength_nm - center_nm)))
            sigma = noise_std(spec, wavelength_nm[i])
            assert 0 < sigma < 0.02
            assert abs(measured[i] - expected[i]) <= 5 * sigma, (element, center_nm, measured[i], expected[i], sigma)
            checked.append(expected[i])
    assert max(checked) > 0.5  # strong enough bands to mean something (Nd 794 nm about 0.8)
    # and where neither element absorbs, nothing is measured
    clear = int(np.argmin(np.abs(wavelength_nm - 680.0)))
    assert abs(measured[clear]) <= 5 * noise_std(spec, wavelength_nm[clear])


def test_reported_noise_is_what_the_spectra_show_and_falls_with_averages(spec):
    spec.integration_time_s = 0.05
    wavelength_nm = spec.wavelengths_nm
    window = np.flatnonzero((wavelength_nm > 420) & (wavelength_nm < 900))[::3]
    reported = {}
    for averages in (1, 16):
        spec.averages = averages
        dark = spec.dark()
        first, second = spec.acquire(), spec.acquire()  # the same water blank twice
        absorbance = -np.log10((second - dark) / (first - dark))
        reported[averages] = np.array([noise_std(spec, wavelength_nm[i]) for i in window])
        chi2_per_point = np.mean((absorbance[window] / reported[averages]) ** 2)
        assert 0.8 < chi2_per_point < 1.25, (averages, chi2_per_point)
    np.testing.assert_allclose(reported[16] / reported[1], 0.25, rtol=0.02)


def test_saturating_integration_times_are_flagged(spec):
    spec.integration_time_s = 1.0
    counts = spec.acquire()
    saturated = spec.saturated(counts)
    assert spec.full_scale_counts == 65535.0
    assert saturated.sum() > 100
    assert np.all(counts[saturated] == spec.full_scale_counts)
    assert counts.max() == spec.full_scale_counts
    assert not spec.saturated(spec.dark()).any()
    spec.integration_time_s = 0.02
    assert not spec.saturated(spec.acquire()).any()


def test_counts_scale_with_integration_time(spec):
    spec.averages = 4
    spec.integration_time_s = 0.02
    dark_short, light_short = spec.dark(), spec.acquire()
    spec.integration_time_s = 0.04
    dark_long, light_long = spec.dark(), spec.acquire()
    bright = (light_short - dark_short) > 5000
    ratio = np.median((light_long - dark_long)[bright] / (light_short - dark_short)[bright])
    assert ratio == pytest.approx(2.0, rel=0.01)
    assert np.median(dark_long - dark_short) > 0  # dark current grows with integration time


def test_a_scenario_runs_on_simulated_time_and_pr_elutes_before_nd(spec):
    spec.write("SIM:SCEN pr-nd-elution")
    spec.write("SIM:SPE 40000")
    spec.write("SIM:SCEN:STAR")
    history = []
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        name, running, elapsed_s = spec.query("SIM:SCEN?").split(",")
        truth = concentrations(spec.query("SIM:TRUT?"))
        history.append((float(elapsed_s), truth.get("Pr", 0.0), truth.get("Nd", 0.0)))
        if float(elapsed_s) > 14400:
            break
    assert name == '"Pr/Nd elution"' and running == "1"
    times, pr, nd = np.array(history).T
    assert times[-1] > 14400, "scenario did not reach its end before the deadline"
    assert max(pr) > 3 and max(nd) > 5
    assert times[np.argmax(pr)] < times[np.argmax(nd)]
    spec.write("SIM:SCEN:STOP")
    frozen = spec.query("SIM:TRUT?")
    assert spec.query("SIM:TRUT?") == frozen
