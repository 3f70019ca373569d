"""OceanSpectrometer against exact OBP bytes: every message the driver (and python-seabreeze under it) sends.

The real python-seabreeze protocol layer and the driver's bounded transport run over a real
loopback socket; the peer is a script of (request bytes, reply bytes) built from Ocean's OBP
layout (tests/_expected_obp.py), so any change in what goes over the wire fails here first.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from _expected_obp import CLOSE, expected_obp, reply, request

from drivers import InstrumentError, LimitError, NotConnected, ProtocolError, ReadbackMismatch
from drivers._spectrometer_interface import spectrometer_members
from drivers.ocean import DarkNotDark, OceanSpectrometer, parse_ocean_resource

PIXELS = 2068  # the HDX, as python-seabreeze's device table has it
SERIAL = b"HDX01234"
WAVELENGTH = (350.0, 0.33, -1.5e-5, 2.0e-10)  # float32-exact enough for the axis checks below
NONLINEARITY = (1.0, -6.0e-7)  # response 1 - 6e-7 * counts
MAX_ADC = 65535
MIN_US, MAX_US = 6000, 10_000_000


def u8(value: int) -> bytes:
    return struct.pack("<B", value)


def u32(value: int) -> bytes:
    return struct.pack("<L", value)


def f32(value: float) -> bytes:
    return struct.pack("<f", value)


def query(message_type: int, answer: bytes, data: bytes = b"") -> tuple[bytes, bytes]:
    return request(message_type, data), reply(message_type, answer)


def command(message_type: int, data: bytes, error: int = 0) -> tuple[bytes, bytes]:
    return request(message_type, data, ack=True), reply(message_type, ack=True, error=error)


def opening(integration_us: int = 100_000) -> list[tuple[bytes, bytes]]:
    """What goes over the wire when the driver opens an HDX."""
    return [
        query(0x00000101, u8(len(SERIAL))),  # serial number length (python-seabreeze, on open)
        query(0x00000100, SERIAL),  # serial number
        query(0x00180100, u8(len(WAVELENGTH))),  # wavelength coefficient count
        *(query(0x00180101, f32(c), u8(i)) for i, c in enumerate(WAVELENGTH)),
        query(0x00181100, u8(len(NONLINEARITY))),  # nonlinearity coefficient count
        *(query(0x00181101, f32(c), u8(i)) for i, c in enumerate(NONLINEARITY)),
        query(0x00101010, u32(MAX_ADC)),  # maximum ADC count
        query(0x00110001, u32(MIN_US)),  # shortest integration time
        query(0x00110002, u32(MAX_US)),  # longest integration time
        query(0x00110000, u32(integration_us)),  # integration time now
    ]


def spectrum(values: np.ndarray) -> bytes:
    return np.asarray(values, dtype="<u2").tobytes()


def open_driver(peer, **options) -> OceanSpectrometer:
    return OceanSpectrometer(f"tcp://127.0.0.1:{peer.port}", model="HDX", timeout_s=2.0, **options)


def test_opening_reads_identity_axis_nonlinearity_and_limits_from_the_device():
    with expected_obp(opening()) as peer:
        with open_driver(peer) as spectrometer:
            assert [name for name in spectrometer_members() if not hasattr(OceanSpectrometer, name)] == []
            assert spectrometer.ident == "Ocean Insight,HDX,HDX01234"
            assert spectrometer.pixels == PIXELS
            stored = np.float32(WAVELENGTH).astype(float)
            axis = np.polynomial.polynomial.polyval(np.arange(PIXELS), stored)
            np.testing.assert_allclose(spectrometer.wavelengths_nm, axis, rtol=0, atol=1e-9)
            assert spectrometer.wavelength_coefficients == tuple(stored)
            assert spectrometer.nonlinearity_coefficients == tuple(np.float32(NONLINEARITY).astype(float))
            assert spectrometer.integration_time_s == pytest.approx(0.1)
            assert spectrometer.min_integration_time_s == pytest.approx(MIN_US * 1e-6)
            assert spectrometer.max_integration_time_s == pytest.approx((MAX_US - 1) * 1e-6)
            response = 1.0 + float(np.float32(NONLINEARITY[1])) * MAX_ADC
            assert spectrometer.full_scale_counts == pytest.approx(MAX_ADC / response)
            assert spectrometer.recorded_attributes["nonlinearity_corrected"] == 1
        peer.assert_done()


def test_a_wavelength_polynomial_of_any_order_gives_the_axis():
    quintic = (340.0, 0.32, -1.2e-5, 1.0e-9, -2.0e-13, 1.0e-17)
    script = opening()
    start = 2
    script[start : start + 1 + len(WAVELENGTH)] = [
        query(0x00180100, u8(len(quintic))),
        *(query(0x00180101, f32(c), u8(i)) for i, c in enumerate(quintic)),
    ]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            stored = np.float32(quintic).astype(float)
            expected = np.polynomial.polynomial.polyval(np.arange(PIXELS), stored)
            np.testing.assert_allclose(spectrometer.wavelengths_nm, expected, rtol=0, atol=1e-9)
            assert len(spectrometer.wavelength_coefficients) == 6
        peer.assert_done()


def test_integration_time_is_sent_in_microseconds_and_read_back():
    script = [*opening(), command(0x00110010, u32(250_000)), query(0x00110000, u32(250_000))]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            spectrometer.integration_time_s = 0.25
            assert spectrometer.integration_time_s == pytest.approx(0.25)
        peer.assert_done()


def test_an_integration_time_outside_the_device_limits_is_refused_before_anything_is_sent():
    with expected_obp(opening()) as peer:
        with open_driver(peer) as spectrometer:
            for seconds in (0.001, 10.0, float("nan"), -1.0):
                with pytest.raises(LimitError, match="nothing was sent"):
                    spectrometer.integration_time_s = seconds
            assert spectrometer.integration_time_s == pytest.approx(0.1)
        peer.assert_done()  # the script holds no request after the opening: any would fail it


def test_a_readback_that_differs_is_a_readback_mismatch():
    script = [*opening(), command(0x00110010, u32(250_000)), query(0x00110000, u32(200_000))]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            with pytest.raises(ReadbackMismatch, match="250000 us.*200000 us"):
                spectrometer.integration_time_s = 0.25
            assert spectrometer.integration_time_s == pytest.approx(0.2)
        peer.assert_done()


def test_a_nack_on_a_setting_is_an_error_naming_the_code_not_swallowed():
    script = [*opening(), command(0x00110010, u32(250_000), error=6)]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            with pytest.raises(ProtocolError, match=r"0x00110010: error 6 \(payload data invalid\)"):
                spectrometer.integration_time_s = 0.25
            assert spectrometer.connected  # a NACK is a whole frame: the line is in step
        peer.assert_done()


def test_acquire_switches_the_lamp_on_then_averages_linearised_scans_in_software():
    rng = np.random.default_rng(1)
    scans = [rng.integers(1000, 50_000, PIXELS) for _ in range(3)]
    scans[1][7] = MAX_ADC  # clipped in one scan of three
    script = [*opening(), command(0x00110410, u8(1))]
    script += [query(0x00101000, spectrum(scan)) for scan in scans]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            spectrometer.averages = 3
            counts = spectrometer.acquire()
        peer.assert_done()
    k = float(np.float32(NONLINEARITY[1]))
    expected = np.mean([scan / (1.0 + k * scan) for scan in scans], axis=0)
    np.testing.assert_allclose(np.delete(counts, 7), np.delete(expected, 7), rtol=1e-12)
    assert counts[7] == spectrometer.full_scale_counts
    assert spectrometer.saturated(counts).nonzero()[0].tolist() == [7]


def test_without_the_nonlinearity_correction_the_counts_are_the_device_counts():
    scan = np.arange(PIXELS) * 20 + 1000
    script = [*opening(), command(0x00110410, u8(1)), query(0x00101000, spectrum(scan))]
    with expected_obp(script) as peer:
        with open_driver(peer, nonlinearity_correction=False) as spectrometer:
            np.testing.assert_array_equal(spectrometer.acquire(), scan)
            assert spectrometer.full_scale_counts == MAX_ADC
            assert spectrometer.recorded_attributes["nonlinearity_corrected"] == 0
        peer.assert_done()


def lit_scan() -> np.ndarray:
    return (1000 + 40_000 * np.exp(-(((np.arange(PIXELS) - 1000) / 500.0) ** 2))).astype(int)


def test_a_dark_switches_the_lamp_off_and_on_again():
    dark = np.full(PIXELS, 1000)
    script = [
        *opening(),
        command(0x00110410, u8(1)),
        query(0x00101000, spectrum(lit_scan())),  # the lit reference a dark is judged against
        command(0x00110410, u8(0)),
        query(0x00101000, spectrum(dark)),
        command(0x00110410, u8(1)),
    ]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            counts = spectrometer.dark()
            assert counts.max() < 1001
        peer.assert_done()


def test_a_dark_that_still_shows_the_lamp_is_refused_and_not_returned():
    script = [
        *opening(),
        command(0x00110410, u8(1)),
        query(0x00101000, spectrum(lit_scan())),
        command(0x00110410, u8(0)),
        query(0x00101000, spectrum(lit_scan())),  # the TTL line is not wired: the lamp stays on
        command(0x00110410, u8(1)),
    ]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            with pytest.raises(DarkNotDark, match="still shows the light.*not kept"):
                spectrometer.dark()
        peer.assert_done()


def test_a_device_without_a_lamp_line_says_what_to_configure():
    script = [*opening(), command(0x00110410, u8(1), error=2)]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            with pytest.raises(InstrumentError, match="HDX has no lamp-enable line.*dark = 'prompt'"):
                spectrometer.acquire()
        peer.assert_done()


def test_a_prompted_dark_asks_the_operator_to_block_and_then_unblock_the_light():
    asked: list[str] = []
    script = [
        *opening(),
        query(0x00101000, spectrum(lit_scan())),
        query(0x00101000, spectrum(np.full(PIXELS, 1000))),
    ]
    with expected_obp(script) as peer:
        with open_driver(peer, dark_method="prompt", dark_prompt=asked.append) as spectrometer:
            spectrometer.dark()
        peer.assert_done()
    assert [text.split()[0] for text in asked] == ["Block", "Unblock"]


@pytest.mark.parametrize(
    "bad_reply, error",
    [
        pytest.param(reply(0x00101000, spectrum(np.ones(PIXELS - 1))), ProtocolError, id="short-spectrum"),
        pytest.param(reply(0x00101000, spectrum(np.ones(PIXELS + 1))), ProtocolError, id="long-spectrum"),
        pytest.param(reply(0x00101000, error=77), ProtocolError, id="nack-unknown-code"),
        pytest.param(reply(0x00101000, error=13), ProtocolError, id="nack-device-error"),
        pytest.param(b"\x00\x00" + reply(0x00101000, spectrum(np.ones(PIXELS)))[2:], ProtocolError, id="header"),
        pytest.param(reply(0x00101000, spectrum(np.ones(PIXELS)))[:-4] + b"\0\0\0\0", ProtocolError, id="footer"),
        pytest.param(reply(0x00101000, spectrum(np.ones(PIXELS))) + b"\x01\x02", ProtocolError, id="extra-bytes"),
        pytest.param(reply(0x00101000, spectrum(np.ones(PIXELS)))[:1000] + CLOSE, NotConnected, id="close-mid"),
        pytest.param(None, NotConnected, id="silence"),
    ],
)
def test_a_malformed_spectrum_reply_raises_and_returns_no_spectrum(bad_reply, error):
    if bad_reply is not None and bad_reply.endswith(CLOSE):
        script_reply = bad_reply[: -len(CLOSE)]
        tail: list = [(b"", CLOSE)]
    else:
        script_reply, tail = bad_reply, []
    script = [*opening(), command(0x00110410, u8(1)), (request(0x00101000), script_reply), *tail]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            with pytest.raises(error):
                spectrometer.acquire()


def test_a_deferred_nack_is_followed_by_the_real_answer():
    scan = np.full(PIXELS, 1234)
    deferred = reply(0x00101000, error=255) + reply(0x00101000, spectrum(scan))
    script = [*opening(), command(0x00110410, u8(1)), (request(0x00101000), deferred)]
    with expected_obp(script) as peer:
        with open_driver(peer, nonlinearity_correction=False) as spectrometer:
            np.testing.assert_array_equal(spectrometer.acquire(), scan)
        peer.assert_done()


def test_a_different_device_at_the_address_after_a_reconnect_is_refused():
    other = [query(0x00000101, u8(8)), query(0x00000100, b"HDX99999")]
    with expected_obp(opening()) as first:
        spectrometer = open_driver(first)
        first.assert_done()
    spectrometer.close()
    with expected_obp(other) as second:
        spectrometer.location = parse_ocean_resource(f"tcp://127.0.0.1:{second.port}", "HDX")
        with pytest.raises(ProtocolError, match="'HDX99999', not 'HDX01234'"):
            spectrometer.reconnect()
    assert not spectrometer.connected


@pytest.mark.parametrize(
    "resource, model, message",
    [
        ("tcp://10.0.0.5:57357", None, "needs model"),
        ("tcp://10.0.0.5:99999", "HDX", "not 1..65535"),
        ("usb:", None, "serial number"),
        ("COM3", None, "expected 'usb'"),
    ],
)
def test_a_bad_resource_says_what_is_wrong(resource, model, message):
    with pytest.raises(ValueError, match=message):
        parse_ocean_resource(resource, model)


def test_nothing_listening_is_not_connected_within_the_timeout():
    import socket

    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with pytest.raises(NotConnected, match="cannot connect"):
        OceanSpectrometer(f"tcp://127.0.0.1:{port}", model="HDX", timeout_s=1.0)


def test_no_spectrometer_on_usb_is_not_connected_and_says_where_it_looked():
    # this machine has no Ocean device on USB (and perhaps no libusb): either way a clear NotConnected
    with pytest.raises(NotConnected, match=r"usb:NOSUCH42: (no .*on USB|cannot list USB devices)"):
        OceanSpectrometer("usb:NOSUCH42", timeout_s=1.0)


def test_the_driver_leaves_no_address_in_python_seabreezes_process_wide_registry():
    from seabreeze.pyseabreeze.transport import IPv4Transport

    before = dict(IPv4Transport.devices_ip_port)
    with expected_obp(opening()) as peer:
        with open_driver(peer):
            assert dict(IPv4Transport.devices_ip_port) == before  # its discovery would open every address in it
        peer.assert_done()


def test_a_shutter_dark_closes_and_opens_the_shutter():
    script = [
        *opening(),
        command(0x00110610, u8(1)),  # open for the lit reference
        query(0x00101000, spectrum(lit_scan())),
        command(0x00110610, u8(0)),  # closed for the dark
        query(0x00101000, spectrum(np.full(PIXELS, 1000))),
        command(0x00110610, u8(1)),
    ]
    with expected_obp(script) as peer:
        with open_driver(peer, dark_method="shutter") as spectrometer:
            assert spectrometer.dark().max() == pytest.approx(1000 / (1 + float(np.float32(NONLINEARITY[1])) * 1000))
        peer.assert_done()


def test_with_electric_dark_pixels_their_mean_is_taken_off_before_the_correction_and_put_back():
    # The HDX has none; USB models (e.g. the USB4000's pixels 5-17) do. The driver reads them from
    # python-seabreeze's device table at connection; here the table is given the indices after opening.
    scan = np.linspace(2000, 50_000, PIXELS).astype(int)
    scan[:4] = 1500  # the masked pixels: bias and dark current only
    script = [*opening(), command(0x00110410, u8(1)), query(0x00101000, spectrum(scan))]
    with expected_obp(script) as peer:
        with open_driver(peer) as spectrometer:
            spectrometer._electric_dark = (0, 1, 2, 3)
            counts = spectrometer.acquire()
            assert spectrometer.recorded_attributes["electric_dark_pixels"] == "0, 1, 2, 3"
        peer.assert_done()
    k = float(np.float32(NONLINEARITY[1]))
    signal = scan - 1500.0
    np.testing.assert_allclose(counts, signal / (1.0 + k * signal) + 1500.0, rtol=1e-12)
