"""The simulated Ocean HDX (drivers.sim.ocean) through the real python-seabreeze stack, and its control port.

The OBP port is driven by bare pyseabreeze (pure-Python backend, IPv4 transport),
as the driver runs it; messages pyseabreeze has no call for are framed by
pyseabreeze's own ``_construct_outgoing_message`` and read by hand. The text
control port is driven by a plain socket (and pyvisa once). Physics is checked
against numbers stated here (literature bands, the HDX's data sheet, Ocean's
nonlinearity convention), not against the simulator's optics code.

pyseabreeze sockets have no timeout of their own: the module sets a default
socket timeout so that a simulator bug fails a test instead of hanging it.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from typing import Any, cast

import numpy as np
import pytest
from seabreeze.pyseabreeze.api import SeaBreezeAPI
from seabreeze.pyseabreeze.protocol import OBPProtocol
from seabreeze.pyseabreeze.transport import IPv4Transport

from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

SIM = "drivers.sim.ocean"
SPEED = 10.0  # simulated seconds per wall second: exposures run 10x faster
SEED = 11
PIXELS = 2068
OBP = OBPProtocol.OBP
SOCKET_TIMEOUT_S = 10.0

GET_SERIAL_NUMBER = 0x00000100
GET_SERIAL_NUMBER_LENGTH = 0x00000101
GET_ORIGINAL_DEVICE_STRING = 0x00000E11
GET_SPECTRUM_NOW_HDX = 0x00101000
GET_RAW_SPECTRUM_NOW = 0x00101100
GET_MAXIMUM_ADC_COUNTS = 0x00101010
GET_SATURATION_LEVEL = 0x001010A0
GET_INTEGRATION_TIME_US = 0x00110000
GET_MINIMUM_INTEGRATION_TIME_US = 0x00110001
GET_MAXIMUM_INTEGRATION_TIME_US = 0x00110002
SET_ITIME_USEC = 0x00110010
SET_TRIG_MODE = 0x00110110
SET_LAMP_ENABLE = 0x00110410
GET_WL_COEFF_COUNT = 0x00180100
GET_WL_COEFF = 0x00180101
SPECTRUM_REPLY_BYTES = 44 + 2 * PIXELS + 20

# pyseabreeze frames the requests of the raw exchanges below (its protocol object needs a transport to exist).
_FRAMING_TRANSPORT = IPv4Transport(OBPProtocol)
_FRAMING = OBPProtocol(_FRAMING_TRANSPORT)


def request_bytes(message_type: int, data: bytes = b"", request_ack: bool = False) -> bytes:
    """One OBP request exactly as pyseabreeze frames it."""
    return _FRAMING._construct_outgoing_message(message_type, data, request_ack=request_ack)


def find(api: SeaBreezeAPI, location: tuple[str, int]) -> Any:
    """The one device pyseabreeze lists at ``location`` (host, port)."""
    found = [d for d in api.list_devices() if cast(Any, d)._raw_device.get_address() == location]
    assert len(found) == 1, found
    return found[0]


def obp_port(address: str) -> int:
    assert address.startswith("tcp://127.0.0.1:"), address
    return int(address.rsplit(":", 1)[1])


@pytest.fixture(scope="module", autouse=True)
def socket_timeout():
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(SOCKET_TIMEOUT_S)
    yield
    socket.setdefaulttimeout(previous)


# --- clients ------------------------------------------------------------------------------------------
class Control:
    """A plain-socket client of the text control port: one line out, one line back."""

    def __init__(self, resource: str | None):
        assert resource is not None, "the simulator printed no control port"
        _, host, port, _ = resource.split("::")
        self.sock = socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S)
        self.lines = self.sock.makefile("rb")

    def query(self, command: str) -> str:
        self.sock.sendall(command.encode("ascii") + b"\n")
        line = self.lines.readline()
        assert line.endswith(b"\n"), f"no answer to {command!r}"
        return line.decode("ascii").strip()

    def error_after(self, command: str) -> str:
        """Send ``command`` and return the SYST:ERR? answer after it."""
        self.sock.sendall(command.encode("ascii") + b"\n")
        return self.query("SYST:ERR?")

    def write(self, *commands: str) -> None:
        for command in commands:
            assert self.error_after(command) == '0,"No error"', command

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


class RawObp:
    """A socket of our own on the OBP port: pyseabreeze-framed requests out, replies read byte by byte."""

    def __init__(self, address: str):
        self.sock = socket.create_connection(("127.0.0.1", obp_port(address)), timeout=SOCKET_TIMEOUT_S)

    def send(self, message_type: int, data: bytes = b"", request_ack: bool = False) -> None:
        self.sock.sendall(request_bytes(message_type, data, request_ack))

    def receive(self, n: int) -> bytes:
        """``n`` bytes, or fewer if the peer closes first."""
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        return data

    def reply(self) -> tuple[tuple, bytes, bytes]:
        """One reply as its header announces it: (header fields, data, the whole message)."""
        head = self.receive(44)
        fields = struct.unpack(OBP.HEADER_FMT, head)
        body = self.receive(fields[10])
        immediate_length, immediate, payload = fields[8], fields[9], body[:-20]
        return fields, immediate[:immediate_length] if immediate_length else payload, head + body

    def query(self, message_type: int, data: bytes = b"", request_ack: bool = False) -> tuple[tuple, bytes, bytes]:
        self.send(message_type, data, request_ack)
        return self.reply()

    def assert_in_step(self) -> None:
        """The next bytes on the line are a clean reply to a new request (nothing left of an earlier one)."""
        fields, data, message = self.query(GET_SERIAL_NUMBER_LENGTH)
        assert fields[0] == OBP.HEADER_START_BYTES and fields[4] == GET_SERIAL_NUMBER_LENGTH
        assert struct.unpack("<L", message[-4:])[0] == OBP.FOOTER and data == b"\x08"

    def close(self) -> None:
        self.sock.close()


def flags_error(fields: tuple) -> tuple[int, int]:
    return fields[2], fields[3]


# --- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim():
    with start_simulator(SIM, "--seed", str(SEED), "--speed", str(SPEED)) as process:
        yield process


@pytest.fixture(scope="module")
def control(sim):
    client = Control(sim.control)
    yield client
    client.close()


@pytest.fixture(scope="module")
def hdx(sim):
    """The simulated HDX as pyseabreeze finds and opens it."""
    api = SeaBreezeAPI()
    location = ("127.0.0.1", obp_port(sim.address))
    api.add_ipv4_device_location("HDX", *location)
    try:
        device = find(api, location)
        assert device.model == "HDX"
        device.open()
        yield device
        device.close()
    finally:
        IPv4Transport.devices_ip_port.pop(location, None)  # later tests must not look for a stopped simulator


@pytest.fixture
def spec(hdx, control):
    """The HDX at 100 ms with the lamp on, water in the cell, no faults, nonlinearity on."""
    control.write("SIM:FAUL NONE", "SIM:STAN", "SIM:NONL ON", "SIM:ABS NONE", "SIM:DRIF OFF", f"SIM:SPE {SPEED}")
    control.write("SIM:LAMP:WIR ON")
    hdx.f.spectrometer.set_integration_time_micros(100_000)
    lamp(hdx, True)
    return hdx.f.spectrometer


def exchange(device, message_type: int, data: bytes = b"", request_ack: bool = False) -> tuple[int, int, bytes]:
    """A pyseabreeze-framed request on the device's own connection: (flags, error, data) of the reply."""
    transport = device.f.spectrometer.protocol.transport
    transport.write(request_bytes(message_type, data, request_ack))
    head = transport.read(64)
    fields = struct.unpack(OBP.HEADER_FMT, head[:44])
    body = head[44:] + (transport.read(fields[10] - 20) if fields[10] > 20 else b"")
    assert struct.unpack("<L", body[-4:])[0] == OBP.FOOTER
    data_out = fields[9][: fields[8]] if fields[8] else body[:-20]
    return fields[2], fields[3], data_out


def lamp(device, on: bool) -> None:
    flags, error, _ = exchange(device, SET_LAMP_ENABLE, bytes([int(on)]), request_ack=True)
    assert error == 0 and flags & OBP.FLAG_ACK


def integration_time_us(device) -> int:
    flags, error, data = exchange(device, GET_INTEGRATION_TIME_US)
    assert error == 0
    return struct.unpack("<L", data)[0]


def corrected(counts: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """Ocean's nonlinearity correction as python-seabreeze applies it (no electric-dark pixels on the HDX)."""
    return counts / np.polyval(np.asarray(coefficients)[::-1], counts)


def mean_spectrum(spec, scans: int, coefficients: list[float] | None = None) -> np.ndarray:
    """Average of ``scans`` single scans (the HDX does not average), each corrected first if coefficients given."""
    total = np.zeros(PIXELS)
    for _ in range(scans):
        counts = spec.get_intensities()
        total += corrected(counts, coefficients) if coefficients is not None else counts
    return total / scans


# --- identity, address line, limits ----------------------------------------------------------------------
def test_the_simulator_prints_the_obp_address_and_the_control_resource(sim):
    assert sim.address.startswith("tcp://127.0.0.1:")
    assert sim.control is not None and sim.control.startswith("TCPIP0::127.0.0.1::")
    assert sim.control.endswith("::SOCKET") and obp_port(sim.address) != int(sim.control.split("::")[2])


def test_identity_over_obp_and_the_control_port(hdx, control):
    assert hdx.model == "HDX" and hdx.serial_number == f"HDX{SEED:05d}"
    assert exchange(hdx, GET_ORIGINAL_DEVICE_STRING)[2] == b"HDX"
    assert control.query("*IDN?") == f"REMDAQ,SIM-OCEAN-HDX-BENCH,HDX{SEED:05d},0.1"
    assert control.query("SYST:ERR?") == '0,"No error"'
    assert control.error_after("SIM:FOO 1").startswith("-113,")


def test_a_visa_client_checks_its_commands_on_the_control_port(sim):
    import pyvisa
    from pyvisa.resources import MessageBasedResource

    rm = pyvisa.ResourceManager("@py")
    try:
        bench = cast(
            MessageBasedResource,
            rm.open_resource(sim.control, read_termination="\n", write_termination="\n", timeout=5000),
        )
        assert bench.query("*IDN?").startswith("REMDAQ,SIM-OCEAN-HDX-BENCH,")
        bench.write("SIM:NONL MAYBE")
        assert bench.query("SYST:ERR?").startswith("-224,")
        assert bench.query("SIM:NONL?") == "1"
        bench.close()
    finally:
        rm.close()


def test_the_hdx_limits_and_full_scale(hdx):
    def u32(message_type: int) -> int:
        flags, error, data = exchange(hdx, message_type)
        assert error == 0 and flags & OBP.FLAG_RESPONSE_TO_REQUEST and len(data) == 4
        return struct.unpack("<L", data)[0]

    assert u32(GET_MINIMUM_INTEGRATION_TIME_US) == 6000
    assert u32(GET_MAXIMUM_INTEGRATION_TIME_US) == 10_000_000
    assert u32(GET_MAXIMUM_ADC_COUNTS) == 65535
    assert u32(GET_SATURATION_LEVEL) == 65535
    assert hdx.f.spectrometer.get_integration_time_micros_limits() == (6000, 10_000_000)


# --- axis ----------------------------------------------------------------------------------------------------
def test_wavelengths_are_the_stored_cubic_of_the_physics_axis(spec, hdx):
    from drivers.sim._optics import wavelength_coefficients

    wavelength_nm = spec.get_wavelengths()
    assert wavelength_nm.shape == (PIXELS,) and wavelength_nm.dtype == np.float64
    index = np.arange(PIXELS)
    physics_nm = sum(c * index**k for k, c in enumerate(wavelength_coefficients(PIXELS)))
    assert np.max(np.abs(wavelength_nm - physics_nm)) < 1e-4  # float32 coefficients, about 1e-5 nm
    assert wavelength_nm[0] == pytest.approx(350, abs=1) and wavelength_nm[-1] == pytest.approx(1000, abs=1)
    assert np.all(np.diff(wavelength_nm) > 0)
    assert exchange(hdx, GET_WL_COEFF_COUNT)[2] == b"\x04"


def test_a_coefficient_index_past_the_count_is_payload_data_invalid(spec, hdx):
    flags, error, _ = exchange(hdx, GET_WL_COEFF, b"\x04")
    assert flags & OBP.FLAG_NACK and error == 6


@pytest.mark.parametrize("order", [4, 7])
def test_a_device_storing_a_higher_order_polynomial_gives_the_same_axis(order):
    api = SeaBreezeAPI()
    with start_simulator(SIM, "--seed", "3", "--wavelength-order", str(order)) as other:
        location = ("127.0.0.1", obp_port(other.address))
        api.add_ipv4_device_location("HDX", *location)
        try:
            device = find(api, location)
            device.open()
            wavelength_nm = device.f.spectrometer.get_wavelengths()
            assert exchange(device, GET_WL_COEFF_COUNT)[2] == bytes([order + 1])
            device.close()
        finally:
            IPv4Transport.devices_ip_port.pop(location, None)
        assert other.stop() == 0  # SIGTERM: a clean exit
    from drivers.sim._optics import wavelength_coefficients

    index = np.arange(PIXELS)
    cubic_nm = sum(c * index**k for k, c in enumerate(wavelength_coefficients(PIXELS)))
    assert np.max(np.abs(wavelength_nm - cubic_nm)) < 0.01


# --- intensities -----------------------------------------------------------------------------------------------
def test_a_water_blank_at_100_ms_peaks_near_40000_counts_as_on_the_scpi_simulator(spec, hdx):
    counts = spec.get_intensities()
    assert counts.shape == (PIXELS,) and counts.dtype == np.float64
    assert np.all(counts == np.rint(counts)) and counts.min() >= 0 and counts.max() <= 65535
    assert 36_000 < counts.max() < 44_000
    assert counts.min() > 1000  # bias about 1000 counts, and some light on every pixel
    raw = exchange(hdx, GET_RAW_SPECTRUM_NOW)[2]
    assert len(raw) == 2 * PIXELS  # the other "spectrum now" message: the same 2068 uint16


def test_counts_scale_with_integration_time(spec, hdx):
    nl = hdx.f.nonlinearity_coefficients.get_nonlinearity_coefficients()
    measured = {}
    for t_us in (40_000, 80_000):
        spec.set_integration_time_micros(t_us)
        assert integration_time_us(hdx) == t_us
        lamp(hdx, False)
        dark = mean_spectrum(spec, 4, nl)
        lamp(hdx, True)
        measured[t_us] = mean_spectrum(spec, 4, nl) - dark
    bright = measured[40_000] > 5000
    ratio = np.median(measured[80_000][bright] / measured[40_000][bright])
    assert ratio == pytest.approx(2.0, rel=0.005)


def test_an_integration_time_out_of_range_is_nacked_and_changes_nothing(spec, hdx):
    spec.set_integration_time_micros(50_000)
    for bad_us in (5999, 10_000_001, 0):
        flags, error, _ = exchange(hdx, SET_ITIME_USEC, struct.pack("<L", bad_us), request_ack=True)
        assert flags & OBP.FLAG_NACK and not flags & OBP.FLAG_ACK and error == 6
    assert integration_time_us(hdx) == 50_000
    flags, error, _ = exchange(hdx, SET_ITIME_USEC, struct.pack("<L", 10_000_000), request_ack=True)
    assert flags & OBP.FLAG_ACK and error == 0
    assert integration_time_us(hdx) == 10_000_000
    spec.set_integration_time_micros(6000)
    assert integration_time_us(hdx) == 6000


def test_only_the_normal_trigger_mode_is_accepted(spec, hdx):
    spec.set_trigger_mode(0)
    for mode in (1, 2, 3):
        flags, error, _ = exchange(hdx, SET_TRIG_MODE, bytes([mode]), request_ack=True)
        assert flags & OBP.FLAG_NACK and error == 6


def test_the_detector_is_nonlinear_and_the_stored_coefficients_correct_it(spec, hdx, control):
    # A CCD's response droops by a few per cent towards full scale; Ocean stores a 7th-order correction
    # (8 coefficients) that python-seabreeze applies as counts / polyval(coefficients[::-1], counts).
    coefficients = hdx.f.nonlinearity_coefficients.get_nonlinearity_coefficients()
    assert len(coefficients) == 8 and coefficients[0] == pytest.approx(1.0, abs=0.05)
    assert control.query("SIM:NONL?") == "1"  # on by default, as a real detector is
    spec.set_integration_time_micros(140_000)  # the blank's peak near 57 000 counts
    nonlinear = mean_spectrum(spec, 8)
    nonlinear_corrected = mean_spectrum(spec, 8, coefficients)
    control.write("SIM:NONL OFF")
    assert control.query("SIM:NONL?") == "0"
    linear = mean_spectrum(spec, 8)
    control.write("SIM:NONL ON")
    bright = linear > 30_000
    assert 50_000 < linear.max() < 62_000
    droop = 1.0 - np.median(nonlinear[bright] / linear[bright])
    assert 0.01 < droop < 0.06
    top = linear > 0.95 * linear.max()
    assert 1.0 - np.median(nonlinear[top] / linear[top]) > droop  # the more light, the more droop
    assert np.median(nonlinear_corrected[bright] / linear[bright]) == pytest.approx(1.0, abs=1e-3)
    dim = (linear > 2000) & (linear < 10_000)
    assert np.median(nonlinear_corrected[dim] / linear[dim]) == pytest.approx(1.0, abs=1e-3)


def test_with_the_lamp_off_the_spectrum_is_dark(spec, hdx, control):
    assert control.query("SIM:LAMP?") == "1"
    lamp(hdx, False)
    assert control.query("SIM:LAMP?") == "0"
    dark = spec.get_intensities()
    assert 900 < np.median(dark) < 1100  # bias plus 0.1 s of dark current
    assert dark.max() < 3000  # hot pixels, no light
    lamp(hdx, True)
    assert control.query("SIM:LAMP?") == "1"
    assert np.median(spec.get_intensities() - dark) > 1000
    flags, error, _ = exchange(hdx, SET_LAMP_ENABLE, b"\x02", request_ack=True)
    assert flags & OBP.FLAG_NACK and error == 6


def test_a_lamp_whose_ttl_input_is_not_wired_stays_on(spec, hdx, control):
    control.write("SIM:LAMP:WIR OFF")
    assert control.query("SIM:LAMP:WIR?") == "0"
    lamp(hdx, False)  # the spectrometer takes the command: nobody listens to its line
    assert control.query("SIM:LAMP?") == "1"
    assert np.median(spec.get_intensities()) > 5000
    control.write("SIM:LAMP:WIR ON")  # connected again: the line, still low, switches the lamp off
    assert control.query("SIM:LAMP?") == "0"
    assert np.median(spec.get_intensities()) < 1100


# --- the bench: standards, scenarios, drifts ---------------------------------------------------------------------
# Aqueous Nd(III) f-f bands (centre nm, FWHM nm, peak epsilon L/mol/cm), approximate literature values.
ND_MOLAR_MASS_G_PER_MOL = 144.242
ND_BANDS = [(575.0, 10.0, 7.2), (740.0, 12.0, 6.6), (794.0, 10.0, 11.8)]
SLIT_FWHM_NM = 1.5


def absorbance(spec, hdx, control, standard: str, scans: int = 4) -> np.ndarray:
    """A = -log10((S - D) / (R - D)) from corrected counts: dark (lamp off), water blank, then the standard."""
    nl = hdx.f.nonlinearity_coefficients.get_nonlinearity_coefficients()
    lamp(hdx, False)
    dark = mean_spectrum(spec, scans, nl)
    lamp(hdx, True)
    control.write("SIM:STAN")
    blank = mean_spectrum(spec, scans, nl)
    control.write(f"SIM:STAN {standard}")
    sample = mean_spectrum(spec, scans, nl)
    return -np.log10((sample - dark) / (blank - dark))


def band_peak_nm(wavelength_nm: np.ndarray, a: np.ndarray, center_nm: float, half_width_nm: float = 8.0) -> float:
    window = np.abs(wavelength_nm - center_nm) < half_width_nm
    x, y = wavelength_nm[window], a[window]
    weights = np.clip(y - 0.5 * y.max(), 0, None)
    return float(np.sum(x * weights) / np.sum(weights))


def test_a_standard_shows_its_bands_at_their_wavelengths_and_strengths(spec, hdx, control):
    a = absorbance(spec, hdx, control, "Nd=10")
    assert control.query("SIM:TRUT?") == "Nd=10"
    wavelength_nm = spec.get_wavelengths()
    mol_per_L = 10.0 / ND_MOLAR_MASS_G_PER_MOL
    for center_nm, fwhm_nm, epsilon in ND_BANDS:
        i = int(np.argmin(np.abs(wavelength_nm - center_nm)))
        expected = epsilon * mol_per_L * fwhm_nm / math.hypot(fwhm_nm, SLIT_FWHM_NM)  # slit-broadened peak
        sigma = float(control.query(f"SIM:NOIS? {wavelength_nm[i]:.4f}"))
        assert 0 < sigma < 0.02
        assert abs(a[i] - expected) < max(5 * sigma, 0.02), (center_nm, a[i], expected)
        assert band_peak_nm(wavelength_nm, a, center_nm) == pytest.approx(center_nm, abs=0.3)
    clear = int(np.argmin(np.abs(wavelength_nm - 680.0)))
    assert abs(a[clear]) < 0.01


def test_a_scenario_runs_on_simulated_time(spec, control):
    control.write("SIM:SCEN pr-nd-elution", "SIM:SPE 40000", "SIM:SCEN:STAR")
    name, running, elapsed_s = control.query("SIM:SCEN?").split(",")
    assert name == '"Pr/Nd elution"' and running == "1"
    first = float(elapsed_s)
    truths = {control.query("SIM:TRUT?") for _ in range(50)}
    assert float(control.query("SIM:SCEN?").split(",")[2]) > first
    assert len(truths) > 1  # the concentrations change as the scenario runs
    assert spec.get_intensities().shape == (PIXELS,)
    control.write("SIM:SCEN:STOP")
    frozen = control.query("SIM:TRUT?")
    assert control.query("SIM:TRUT?") == frozen
    assert control.query("SIM:SCEN?").split(",")[1] == "0"


def test_the_wavelength_drift_switches_on_and_moves_the_bands(spec, hdx, control):
    wavelength_nm = spec.get_wavelengths()
    undisturbed = band_peak_nm(wavelength_nm, absorbance(spec, hdx, control, "Nd=10"), 794.0)
    control.write("SIM:DRIF:WAV ON", "SIM:LAB:LAG 0", "SIM:DRIF:TCAL 20", "SIM:DRIF:KT 0.05", "SIM:LAB:TEMP 30")
    assert control.query("SIM:DRIF?") == "1,0,0"
    assert float(control.query("SIM:SPEC:TEMP?")) == pytest.approx(30.0)
    drifted = band_peak_nm(wavelength_nm, absorbance(spec, hdx, control, "Nd=10"), 794.0)
    control.write("SIM:DRIF OFF", "SIM:LAB:TEMP 20")
    assert control.query("SIM:DRIF?") == "0,0,0"
    # true wavelength = reported + 0.05 nm/C x 10 C: the band shows up 0.5 nm bluer on the reported axis
    assert drifted - undisturbed == pytest.approx(-0.5, abs=0.1)


# --- OBP replies and errors --------------------------------------------------------------------------------------
def test_acks_only_when_asked_and_nacks_always(sim):
    raw = RawObp(sim.address)
    try:
        raw.send(SET_ITIME_USEC, struct.pack("<L", 100_000), request_ack=False)  # no reply to wait for
        raw.assert_in_step()
        fields, data, message = raw.query(SET_ITIME_USEC, struct.pack("<L", 100_000), request_ack=True)
        assert flags_error(fields) == (OBP.FLAG_RESPONSE_TO_REQUEST | OBP.FLAG_ACK, 0) and len(message) == 64
        fields, data, _ = raw.query(GET_SERIAL_NUMBER, request_ack=True)  # a query with an ACK: both in one reply
        assert data == f"HDX{SEED:05d}".encode() and fields[2] & OBP.FLAG_ACK
        fields, _, _ = raw.query(0x00ABCDEF)
        assert flags_error(fields) == (OBP.FLAG_RESPONSE_TO_REQUEST | OBP.FLAG_NACK, 2) and fields[4] == 0x00ABCDEF
        fields, _, _ = raw.query(SET_ITIME_USEC, b"\x01\x02", request_ack=False)  # unasked: still a NACK
        assert flags_error(fields)[1] == 5
        fields, _, _ = raw.query(GET_SERIAL_NUMBER, b"\x00")
        assert flags_error(fields)[1] == 5
        raw.assert_in_step()
    finally:
        raw.close()


@pytest.mark.parametrize("damage", ["start", "footer"])
def test_a_request_with_broken_framing_gets_nack_1_and_the_connection_is_closed(sim, damage):
    raw = RawObp(sim.address)
    try:
        message = bytearray(request_bytes(GET_SERIAL_NUMBER_LENGTH))
        if damage == "start":
            message[0:2] = b"\xc0\xc1"
        else:
            message[-4:] = b"\x00\x00\x00\x00"
        raw.sock.sendall(bytes(message))
        fields, _, _ = raw.reply()
        assert fields[2] & OBP.FLAG_NACK and fields[3] == 1
        assert raw.receive(1) == b""  # closed: nothing after a broken frame can be read in step
    finally:
        raw.close()


def test_absurd_answers_replace_the_integration_time_and_coefficients_only(spec, hdx, control):
    control.write("SIM:ABS ITIM,4294967295", "SIM:ABS COEF,nan,1,2")
    assert control.query("SIM:ABS?") == "ITIM,COEF"
    assert integration_time_us(hdx) == 4294967295
    assert exchange(hdx, GET_WL_COEFF_COUNT)[2] == b"\x03"
    assert math.isnan(struct.unpack("<f", exchange(hdx, GET_WL_COEFF, b"\x00")[2])[0])
    assert control.error_after("SIM:ABS PIX,5").startswith("-224,")  # OBP has no pixel-count message
    control.write("SIM:ABS NONE")
    assert integration_time_us(hdx) == 100_000
    assert spec.get_intensities().shape == (PIXELS,)  # it measured with its real settings all along


# --- line faults -----------------------------------------------------------------------------------------------------
@pytest.fixture
def raw(sim, control):
    control.write("SIM:FAUL NONE")
    client = RawObp(sim.address)
    client.query(SET_ITIME_USEC, struct.pack("<L", 100_000), request_ack=True)
    yield client
    client.close()
    control.write("SIM:FAUL NONE")


def arm(control, fault: str) -> None:
    control.write(f"SIM:FAUL {fault}")


def test_short_sends_part_of_what_the_header_claims_then_silence(raw, control):
    arm(control, "SHORT")
    assert control.query("SIM:FAUL?") == "SHORT,SPEC"
    raw.send(GET_SPECTRUM_NOW_HDX)
    head = raw.receive(44)
    assert struct.unpack(OBP.HEADER_FMT, head)[10] == 2 * PIXELS + 20
    assert control.query("SIM:FAUL:LAST?") == f"SHORT,{44 + (2 * PIXELS + 20) // 2},{SPECTRUM_REPLY_BYTES}"
    partial = raw.receive((2 * PIXELS + 20) // 2)
    assert len(partial) == (2 * PIXELS + 20) // 2
    raw.assert_in_step()  # nothing more of the short reply came: the next bytes are the next reply
    assert control.query("SIM:FAUL?") == "NONE"  # one-shot


def test_long_puts_more_bytes_in_the_frame_than_its_header_says(raw, control):
    arm(control, "LONG,16")
    raw.send(GET_SPECTRUM_NOW_HDX)
    message = raw.receive(SPECTRUM_REPLY_BYTES + 16)
    fields = struct.unpack(OBP.HEADER_FMT, message[:44])
    assert fields[10] == 2 * PIXELS + 20  # the header still says the true length
    assert struct.unpack("<L", message[-4:])[0] == OBP.FOOTER  # the footer comes 16 bytes late
    assert struct.unpack("<L", message[SPECTRUM_REPLY_BYTES - 4 : SPECTRUM_REPLY_BYTES])[0] != OBP.FOOTER
    assert control.query("SIM:FAUL:LAST?") == f"LONG,{SPECTRUM_REPLY_BYTES + 16},{SPECTRUM_REPLY_BYTES}"
    raw.assert_in_step()


@pytest.mark.parametrize("code", [255, 77, 7])
def test_nack_replaces_the_spectrum(raw, control, code):
    arm(control, f"NACK,{code}")
    fields, data, message = raw.query(GET_SPECTRUM_NOW_HDX)
    assert fields[2] & OBP.FLAG_NACK and fields[3] == code and data == b"" and len(message) == 64
    assert fields[4] == GET_SPECTRUM_NOW_HDX
    raw.assert_in_step()
    assert len(raw.query(GET_SPECTRUM_NOW_HDX)[1]) == 2 * PIXELS  # the next one is whole


def test_a_fault_armed_for_any_reply_hits_the_next_reply_whatever_it_is(raw, control):
    arm(control, "NACK,6,ANY")
    assert control.query("SIM:FAUL?") == "NACK,6,ANY"
    fields, _, _ = raw.query(GET_INTEGRATION_TIME_US)
    assert fields[2] & OBP.FLAG_NACK and fields[3] == 6
    fields, data, _ = raw.query(GET_INTEGRATION_TIME_US)
    assert struct.unpack("<L", data)[0] == 100_000


@pytest.mark.parametrize(
    ("fault", "where", "value"),
    [("HEADER", 0, 0xC1C0), ("VERSION", 1, 0x1000)],
)
def test_header_and_version_faults_change_one_header_field(raw, control, fault, where, value):
    arm(control, fault)
    raw.send(GET_SPECTRUM_NOW_HDX)
    message = raw.receive(SPECTRUM_REPLY_BYTES)
    fields = struct.unpack(OBP.HEADER_FMT, message[:44])
    assert fields[where] == value and fields[10] == 2 * PIXELS + 20
    raw.assert_in_step()


def test_footer_fault_sends_a_wrong_footer(raw, control):
    arm(control, "FOOTER")
    raw.send(GET_SPECTRUM_NOW_HDX)
    message = raw.receive(SPECTRUM_REPLY_BYTES)
    assert struct.unpack("<L", message[-4:])[0] not in (OBP.FOOTER, 0)
    raw.assert_in_step()


def test_length_sends_a_well_formed_frame_of_the_wrong_pixel_count(raw, control):
    arm(control, "LENGTH")
    fields, data, message = raw.query(GET_SPECTRUM_NOW_HDX)
    assert len(data) == 2 * (PIXELS - 1) and fields[10] == len(data) + 20
    assert struct.unpack("<L", message[-4:])[0] == OBP.FOOTER
    arm(control, "LENGTH,4096")
    assert len(raw.query(GET_SPECTRUM_NOW_HDX)[1]) == 2 * 4096
    raw.assert_in_step()


def test_close_sends_some_bytes_then_closes_the_connection(sim, raw, control):
    arm(control, "CLOSE,100")
    raw.send(GET_SPECTRUM_NOW_HDX)
    assert len(raw.receive(100)) == 100
    assert raw.receive(1) == b""
    assert control.query("SIM:FAUL:LAST?") == f"CLOSE,100,{SPECTRUM_REPLY_BYTES}"
    again = RawObp(sim.address)  # the device itself is fine
    try:
        again.assert_in_step()
    finally:
        again.close()


def test_drop_sends_nothing_and_keeps_the_connection(raw, control):
    arm(control, "DROP")
    raw.send(GET_SPECTRUM_NOW_HDX)
    raw.assert_in_step()  # the first bytes after the dropped spectrum are the next reply
    assert control.query("SIM:FAUL:LAST?") == f"DROP,0,{SPECTRUM_REPLY_BYTES}"


@pytest.mark.parametrize("fault", ["DELAY,0.2", "TRICKLE,500,0.01"])
def test_delayed_and_trickled_spectra_arrive_whole(raw, control, fault):
    arm(control, fault)
    fields, data, message = raw.query(GET_SPECTRUM_NOW_HDX)
    assert len(data) == 2 * PIXELS and struct.unpack("<L", message[-4:])[0] == OBP.FOOTER
    kind = fault.split(",")[0]
    assert control.query("SIM:FAUL:LAST?") == f"{kind},{SPECTRUM_REPLY_BYTES},{SPECTRUM_REPLY_BYTES}"
    raw.assert_in_step()


@pytest.mark.parametrize("bad", ["FOO", "NACK", "NACK,70000", "CLOSE", "DELAY", "LONG,0", "HEADER,1", "TRIC,0"])
def test_bad_fault_commands_are_scpi_errors(control, bad):
    assert control.error_after(f"SIM:FAUL {bad}")[0] == "-"
    assert control.query("SIM:FAUL?") == "NONE"


# --- unplugging ------------------------------------------------------------------------------------------------------
def test_unplug_resets_the_connection_refuses_new_ones_and_comes_back_with_the_same_serial():
    with start_simulator(SIM, "--seed", "5", "--speed", str(SPEED)) as sim:
        api = SeaBreezeAPI()
        location = ("127.0.0.1", obp_port(sim.address))
        api.add_ipv4_device_location("HDX", *location)
        bench = Control(sim.control)
        try:
            device = find(api, location)
            device.open()
            device.f.spectrometer.set_integration_time_micros(50_000)
            assert integration_time_us(device) == 50_000
            lamp(device, False)
            assert bench.query("SIM:CONN?") == "1"

            bench.write("SIM:UNPL 600")
            assert bench.query("SIM:CONN?") == "0"
            assert 590 < float(bench.query("SIM:UNPL?")) <= 600
            assert bench.query("SIM:LAMP?") == "1"  # power lost: the lamp line is back to its default
            with pytest.raises(ConnectionError):  # reset (RST): no orderly end for a blocked read to spin on
                connected = device._raw_device.socket  # the IPv4 transport handle's connected socket
                connected.sendall(request_bytes(GET_SERIAL_NUMBER_LENGTH))
                connected.recv(64)
            device.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(location)
            with pytest.raises(RuntimeError, match="Could not connect"):
                device.open()

            bench.write("SIM:UNPL 0")  # plugged in again at once
            assert bench.query("SIM:UNPL?") == "0.000"
            device.open()
            assert device.serial_number == "HDX00005"
            assert integration_time_us(device) == 100_000  # the power-on setting: the driver must set it again
            assert device.f.spectrometer.get_intensities().max() > 10_000  # lamp on at power-on

            bench.write("SIM:UNPL 0.3")
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(location)
            deadline = time.monotonic() + 10.0
            while float(bench.query("SIM:UNPL?")) > 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # polling the bench for its state, not timing the device
            assert bench.query("SIM:UNPL?") == "0.000"
            device.close()
            device.open()
            assert device.serial_number == "HDX00005" and device.f.spectrometer.get_intensities().shape == (PIXELS,)
            device.close()
        finally:
            bench.close()
            IPv4Transport.devices_ip_port.pop(location, None)
        assert sim.stop() == 0
