"""OceanSpectrometer through the real python-seabreeze stack over a real socket, against the simulated HDX.

The simulator (`python -m drivers.sim.ocean`) speaks OBP on one port and the bench's `SIM:` text commands
on another (daq.bench.SimulatorControl is the client): truths are read there, faults armed there. Every
malformed reply the line can deliver must end in ProtocolError or NotConnected within the driver's
timeout — never a spectrum.
"""

from __future__ import annotations

import numpy as np
import pytest

from daq.bench import SimulatorControl
from drivers import DarkNotDark, LimitError, NotConnected, OceanSpectrometer, ProtocolError
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

TIMEOUT_S = 2.0


@pytest.fixture
def hdx():
    """A fresh simulated HDX: (OBP address, control client)."""
    with start_simulator("drivers.sim.ocean", "--speed", "100") as simulator:
        assert simulator.control is not None
        control = SimulatorControl(simulator.control)
        try:
            yield simulator.address, control
        finally:
            control.close()


def connect(address: str, **options) -> OceanSpectrometer:
    return OceanSpectrometer(address, model="HDX", timeout_s=TIMEOUT_S, **options)


def absorbance(sample: np.ndarray, blank: np.ndarray, dark: np.ndarray) -> np.ndarray:
    return -np.log10((sample - dark) / (blank - dark))


def test_identity_axis_and_limits_come_from_the_device(hdx):
    address, control = hdx
    with connect(address) as spectrometer:
        assert spectrometer.ident.startswith("Ocean Insight,HDX,HDX")
        assert spectrometer.ident.split(",")[2] in control.query("*IDN?")
        assert spectrometer.pixels == 2068
        axis = spectrometer.wavelengths_nm
        assert 340 < axis[0] < 360 and 990 < axis[-1] < 1010 and np.all(np.diff(axis) > 0)
        assert spectrometer.min_integration_time_s == pytest.approx(0.006)
        assert spectrometer.max_integration_time_s == pytest.approx(10.0, abs=1e-5)
        with pytest.raises(LimitError):
            spectrometer.integration_time_s = 0.005
        spectrometer.integration_time_s = 0.05
        assert spectrometer.integration_time_s == pytest.approx(0.05)


def test_a_higher_order_wavelength_polynomial_gives_the_same_axis():
    with start_simulator("drivers.sim.ocean", "--wavelength-order", "3") as cubic:
        with connect(cubic.address) as spectrometer:
            reference = spectrometer.wavelengths_nm
    with start_simulator("drivers.sim.ocean", "--wavelength-order", "5") as quintic:
        with connect(quintic.address) as spectrometer:
            assert len(spectrometer.wavelength_coefficients) == 6
            np.testing.assert_allclose(spectrometer.wavelengths_nm, reference, atol=0.01)


def bright_ratio(spectrometer: OceanSpectrometer, short_s: float, long_s: float) -> float:
    """Median over the bright pixels of (long - its dark) / (short - its dark)."""
    spectrometer.averages = 4
    spectrometer.integration_time_s = short_s
    short = spectrometer.acquire() - spectrometer.dark()
    spectrometer.integration_time_s = long_s
    long = spectrometer.acquire() - spectrometer.dark()
    bright = long > 20_000
    return float(np.median(long[bright] / short[bright]))


def test_counts_scale_with_integration_time_once_linearised(hdx):
    address, _ = hdx
    with connect(address) as spectrometer:
        assert bright_ratio(spectrometer, 0.03, 0.09) == pytest.approx(3.0, rel=0.005)


def test_without_the_correction_the_detector_is_visibly_nonlinear(hdx):
    address, control = hdx
    with connect(address, nonlinearity_correction=False) as spectrometer:
        assert bright_ratio(spectrometer, 0.03, 0.09) < 2.97  # the raw response droops towards full scale
    control.write("SIM:NONL OFF")  # a linear detector: then the raw counts scale exactly
    with connect(address, nonlinearity_correction=False) as spectrometer:
        assert bright_ratio(spectrometer, 0.03, 0.09) == pytest.approx(3.0, rel=0.005)


def test_averaging_in_software_lowers_the_noise_as_the_square_root(hdx):
    address, control = hdx
    with connect(address) as spectrometer:
        spectrometer.integration_time_s = 0.02
        singles = np.array([spectrometer.acquire() for _ in range(6)])
        spectrometer.averages = 16
        averaged = np.array([spectrometer.acquire() for _ in range(6)])
    ratio = np.median(singles.std(axis=0)) / np.median(averaged.std(axis=0))
    assert 2.5 < ratio < 6.0  # sqrt(16) = 4


def test_a_standard_appears_as_its_bands_and_the_dark_is_taken_with_the_lamp_off(hdx):
    address, control = hdx
    with connect(address) as spectrometer:
        spectrometer.averages = 8
        control.write("SIM:STAN")
        dark = spectrometer.dark()
        assert control.query("SIM:LAMP?") == "1"  # on again after the dark
        blank = spectrometer.acquire()
        control.write("SIM:STAN Nd=10")
        sample = spectrometer.acquire()
        axis = spectrometer.wavelengths_nm
        recorded = spectrometer.recorded_attributes
    a = absorbance(sample, blank, dark)
    at_575 = a[np.argmin(abs(axis - 575.0))]
    at_650 = a[np.argmin(abs(axis - 650.0))]
    assert at_575 > 0.05 and abs(at_650) < 0.01  # Nd's hypersensitive band, and none where Nd has none
    assert dark.max() < 0.1 * blank.max()
    assert recorded["dark_method"] == "lamp" and recorded["nonlinearity_corrected"] == 1


def test_a_dark_with_the_lamp_line_not_wired_is_refused(hdx):
    address, control = hdx
    control.write("SIM:LAMP:WIRed 0")  # the lamp's TTL input is not connected: the lamp stays on
    with connect(address) as spectrometer:
        spectrometer.acquire()
        with pytest.raises(DarkNotDark, match="still shows the light"):
            spectrometer.dark()
        assert spectrometer.connected


@pytest.mark.parametrize(
    "fault, error",
    [
        ("SHORT", NotConnected),  # fewer bytes than the header says, then silence: the deadline ends it
        ("LONG,16", ProtocolError),
        ("NACK,77", ProtocolError),
        ("NACK,13", ProtocolError),
        ("HEAD", ProtocolError),
        ("VERS", ProtocolError),
        ("FOOT", ProtocolError),
        ("LENG,2067", ProtocolError),
        ("CLOS,1000", NotConnected),
        ("DROP", NotConnected),
        ("DEL,5", NotConnected),
    ],
)
def test_a_malformed_reply_is_an_error_within_the_timeout_never_a_spectrum(hdx, fault, error):
    address, control = hdx
    with connect(address) as spectrometer:
        spectrometer.integration_time_s = 0.01
        spectrometer.acquire()
        control.write(f"SIM:FAUL {fault}")
        with pytest.raises(error):
            spectrometer.acquire()
        assert control.query("SIM:FAUL:LAST?").split(",")[0] != "NONE"  # the fault was delivered
        if not spectrometer.connected:
            spectrometer.reconnect()
        assert spectrometer.acquire().shape == (2068,)  # and the driver is in step again afterwards


def test_a_trickled_reply_within_the_deadline_is_read_whole(hdx):
    address, control = hdx
    with connect(address, nonlinearity_correction=False) as spectrometer:
        spectrometer.integration_time_s = 0.05
        whole = spectrometer.acquire()
        control.write("SIM:FAUL TRIC,1024,0.05")
        trickled = spectrometer.acquire()
        assert control.query("SIM:FAUL:LAST?").startswith("TRICKLE")
        assert trickled.shape == (2068,)
        np.testing.assert_allclose(trickled, whole, rtol=0.05, atol=50)  # the same light, only delivered slowly


def test_unplugged_is_not_connected_then_reconnect_finds_the_same_device(hdx):
    address, control = hdx
    with connect(address) as spectrometer:
        serial = spectrometer.serial_number
        spectrometer.integration_time_s = 0.02
        control.write("SIM:UNPL 600")
        with pytest.raises(NotConnected):
            spectrometer.acquire()
        assert not spectrometer.connected
        with pytest.raises(NotConnected, match="cannot connect"):
            spectrometer.reconnect()  # still unplugged: refused at once, not a hang
        control.write("SIM:UNPL 0")  # plugged in again (the device lost its settings)
        spectrometer.reconnect()
        assert spectrometer.serial_number == serial
        assert spectrometer.integration_time_s == pytest.approx(0.02)  # re-applied: the device had lost it
