"""Eurotherm driver: exact Modbus RTU request/response pairs for every property (no hardware).

Frames are literal bytes (CRC included; checked against pymodbus's CRC when written).
Address 1; the 2400 map uses the integer area with display decimals (register
525 reads 1), the 3200 map the float area.
"""

import math
import sys
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _expected_protocol import ExpectedLine, expected_protocol  # noqa: E402

from drivers import Eurotherm, LimitError, NotConnected, ProtocolError, ReadbackMismatch  # noqa: E402
from drivers.eurotherm import SensorFault  # noqa: E402

# Requests
READ_DECIMALS = "01 03 02 0D 00 01 14 71"      # FC3 525 x1
READ_PV = "01 03 00 01 00 01 D5 CA"            # FC3 1 x1
READ_TARGET = "01 03 00 02 00 01 25 CA"        # FC3 2 x1
READ_OUTPUT = "01 03 00 03 00 01 74 0A"        # FC3 3 x1
READ_WSP = "01 03 00 05 00 01 94 0B"           # FC3 5 x1
READ_REMOTE = "01 03 00 1A 00 01 A5 CD"        # FC3 26 x1
READ_RATE = "01 03 00 23 00 01 75 C0"          # FC3 35 x1
READ_STATUS = "01 03 00 4B 00 01 F4 1C"        # FC3 75 x1
READ_IDENT = "01 03 00 7A 00 01 A5 D3"         # FC3 122 x1
READ_AUTO_MANUAL = "01 03 01 11 00 01 D5 F3"   # FC3 273 x1
WRITE_REMOTE_450 = "01 06 00 1A 11 94 A5 F2"   # FC6 26 := 4500
WRITE_REMOTE_20 = "01 06 00 1A 00 C8 A9 9B"    # FC6 26 := 200
WRITE_RATE_10 = "01 06 00 23 00 64 79 EB"      # FC6 35 := 100
WRITE_RATE_20 = "01 06 00 23 00 C8 79 96"      # FC6 35 := 200
WRITE_AUTO = "01 06 01 11 00 00 D8 33"         # FC6 273 := 0
# Responses
WORD_0 = "01 03 02 00 00 B8 44"
WORD_1 = "01 03 02 00 01 79 84"
WORD_50 = "01 03 02 00 32 39 91"
WORD_100 = "01 03 02 00 64 B9 AF"
WORD_200 = "01 03 02 00 C8 B9 D2"
WORD_655 = "01 03 02 02 8F F8 80"
WORD_4321 = "01 03 02 10 E1 75 CC"
WORD_4499 = "01 03 02 11 93 F4 79"
WORD_4500 = "01 03 02 11 94 B5 BB"
WORD_4505 = "01 03 02 11 99 74 7E"
WORD_MINUS_123 = "01 03 02 FF 85 38 17"
WORD_0x0020 = "01 03 02 00 20 B9 9C"
WORD_0x0221 = "01 03 02 02 21 79 3C"
WORD_0x2480 = "01 03 02 24 80 A2 E4"
WORD_0x8000 = "01 03 02 80 00 D9 84"
ILLEGAL_ADDRESS = "01 83 02 C0 F1"             # exception 02 to FC3
DECIMALS = (READ_DECIMALS, WORD_1)


def furnace(pairs, **kwargs):
    return expected_protocol(Eurotherm, pairs, **kwargs)


# -- reads ------------------------------------------------------------------------------
def test_ident_names_the_model_from_the_map():
    with furnace([(READ_IDENT, WORD_0x2480)]) as f:
        assert f.ident == "Eurotherm 2408 (ident 0x2480, map eurotherm-2400)"


def test_temperature_reads_pv_with_display_decimals_then_checks_status():
    with furnace([DECIMALS, (READ_PV, WORD_4505), (READ_STATUS, WORD_0)]) as f:
        assert f.temperature_C == 450.5


def test_decimals_are_read_once_per_connection():
    pairs = [DECIMALS, (READ_PV, WORD_MINUS_123), (READ_STATUS, WORD_0), (READ_PV, WORD_4505), (READ_STATUS, WORD_0)]
    with furnace(pairs) as f:
        assert f.temperature_C == -12.3
        assert f.temperature_C == 450.5


def test_temperature_on_sensor_break_raises_instead_of_a_number():
    with furnace([DECIMALS, (READ_PV, WORD_4505), (READ_STATUS, WORD_0x0020)]) as f:
        with pytest.raises(SensorFault):
            f.temperature_C


@pytest.mark.parametrize("attribute, request_frame, response, value", [
    ("setpoint_C", READ_TARGET, WORD_4500, 450.0),
    ("working_setpoint_C", READ_WSP, WORD_4321, 432.1),
    ("rate_limit_C_per_min", READ_RATE, WORD_50, 5.0),
])
def test_display_scaled_properties(attribute, request_frame, response, value):
    with furnace([DECIMALS, (request_frame, response)]) as f:
        assert getattr(f, attribute) == value


def test_output_has_fixed_decimals_and_needs_no_decimal_read():
    with furnace([(READ_OUTPUT, WORD_655)]) as f:
        assert f.output_percent == 65.5


def test_status_flags_use_the_2400_bits():
    with furnace([(READ_STATUS, WORD_0x0221), (READ_STATUS, "01 03 02 01 00 B9 D4")]) as f:
        status = f.status
        assert (status.raw, status.alarm_1, status.sensor_break, status.program_end) == (0x221, True, True, True)
        assert not (status.alarm_2 or status.manual or status.loop_break or status.tuning)
        assert status.any_alarm
        tuning = f.status  # bit 8 is autotune on a 2400
        assert tuning.tuning and not tuning.any_alarm


def test_read_all_is_one_poll_and_marks_a_broken_sensor_nan():
    pairs = [DECIMALS, (READ_PV, WORD_4505), (READ_TARGET, WORD_4500), (READ_WSP, WORD_4321),
             (READ_OUTPUT, WORD_655), (READ_STATUS, WORD_0),
             (READ_PV, WORD_4505), (READ_TARGET, WORD_4500), (READ_WSP, WORD_4321),
             (READ_OUTPUT, WORD_655), (READ_STATUS, WORD_0x0020)]
    with furnace(pairs) as f:
        reading = f.read_all()
        assert (reading.temperature_C, reading.setpoint_C, reading.working_setpoint_C, reading.output_percent) == (
            450.5, 450.0, 432.1, 65.5)
        broken = f.read_all()
        assert math.isnan(broken.temperature_C) and broken.status.sensor_break


# -- writes -----------------------------------------------------------------------------
def test_set_setpoint_checks_rate_writes_comms_sp_and_reads_back_both():
    pairs = [DECIMALS, (READ_RATE, WORD_50), (WRITE_REMOTE_450, WRITE_REMOTE_450),
             (READ_REMOTE, WORD_4500), (READ_TARGET, WORD_4500)]
    with furnace(pairs) as f:
        f.set_setpoint(450.0)


def test_set_setpoint_readback_mismatch():
    pairs = [DECIMALS, (READ_RATE, WORD_50), (WRITE_REMOTE_450, WRITE_REMOTE_450), (READ_REMOTE, WORD_4499)]
    with furnace(pairs) as f:
        with pytest.raises(ReadbackMismatch):
            f.set_setpoint(450.0)


def test_set_setpoint_detects_comms_sp_not_in_use():
    pairs = [DECIMALS, (READ_RATE, WORD_50), (WRITE_REMOTE_450, WRITE_REMOTE_450),
             (READ_REMOTE, WORD_4500), (READ_TARGET, WORD_200)]
    with furnace(pairs) as f:
        with pytest.raises(ReadbackMismatch, match="remote"):
            f.set_setpoint(450.0)


def test_set_setpoint_refused_while_controller_rate_limit_is_off():
    line = ExpectedLine([DECIMALS, (READ_RATE, WORD_0)])
    with furnace(line) as f:
        with pytest.raises(LimitError):
            f.set_setpoint(450.0)
    assert b"\x01\x06" not in bytes(line.written)


def test_set_rate_limit_writes_and_reads_back():
    with furnace([DECIMALS, (WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_100)]) as f:
        f.set_rate_limit(10.0)


@pytest.mark.parametrize("call, value", [
    ("set_setpoint", 1200.1), ("set_setpoint", -5.0), ("set_setpoint", math.nan), ("set_setpoint", math.inf),
    ("set_rate_limit", 20.5), ("set_rate_limit", 0.0), ("set_rate_limit", -1.0), ("set_rate_limit", math.nan),
])
def test_out_of_range_values_are_refused_with_the_line_silent(call, value):
    line = ExpectedLine([])
    with furnace(line) as f:
        with pytest.raises(LimitError):
            getattr(f, call)(value)
    assert bytes(line.written) == b""


def test_station_limit_below_instrument_limit_wins():
    line = ExpectedLine([])
    with furnace(line, max_temperature_C=900.0) as f:
        with pytest.raises(LimitError):
            f.set_setpoint(900.5)
    assert bytes(line.written) == b""


def test_safe_state_sets_rate_then_setpoint_then_auto():
    pairs = [DECIMALS, (WRITE_RATE_20, WRITE_RATE_20), (READ_RATE, WORD_200),
             (WRITE_REMOTE_20, WRITE_REMOTE_20), (READ_REMOTE, WORD_200), (READ_TARGET, WORD_200),
             (READ_AUTO_MANUAL, WORD_1), (WRITE_AUTO, WRITE_AUTO), (READ_AUTO_MANUAL, WORD_0)]
    with furnace(pairs) as f:
        f.safe_state()


def test_safe_state_on_a_dead_line_raises_not_connected():
    with furnace([DECIMALS] + [(WRITE_RATE_20, None)] * 4) as f:
        with pytest.raises(NotConnected):
            f.safe_state()


# -- retry policy -------------------------------------------------------------------------
@pytest.mark.parametrize("bad_response", [
    "01 03 02 11 99 74 7F",   # CRC corrupted
    "01 03 02 11 98 74 7E",   # data corrupted
    "01 03 02 11",            # truncated
    None,                     # silence
    "02 03 02 11 99 74 7E",   # another slave's address
])
def test_a_bad_answer_is_retried_and_never_returned(bad_response):
    pairs = [DECIMALS, (READ_PV, bad_response), (READ_PV, WORD_4505), (READ_STATUS, WORD_0)]
    with furnace(pairs) as f:
        assert f.temperature_C == 450.5


def test_silence_for_the_whole_budget_is_not_connected_then_the_port_is_reopened():
    line = ExpectedLine([(READ_IDENT, None)] * 4 + [(READ_IDENT, WORD_0x2480)])
    with furnace(line, retries=3) as f:
        with pytest.raises(NotConnected):
            f.ident
        assert "2408" in f.ident
    assert len(line.opened) == 2


def test_garbage_for_the_whole_budget_is_a_protocol_error():
    with furnace([(READ_IDENT, "01 03 02 24 80 00 00")] * 3, retries=2) as f:
        with pytest.raises(ProtocolError):
            f.ident


def test_exception_response_is_a_protocol_error_without_retry():
    with furnace([(READ_IDENT, ILLEGAL_ADDRESS)]) as f:
        with pytest.raises(ProtocolError, match="refused"):
            f.ident


def test_write_retried_when_its_answer_is_lost_because_it_is_idempotent():
    pairs = [DECIMALS, (WRITE_RATE_10, None), (WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_100)]
    with furnace(pairs) as f:
        f.set_rate_limit(10.0)


def test_lost_port_is_not_connected_at_once_and_reopened_next_time():
    line = ExpectedLine([(READ_IDENT, serial.SerialException("device disconnected")), (READ_IDENT, WORD_0x2480)])
    with furnace(line) as f:
        with pytest.raises(NotConnected):
            f.ident
        assert "2408" in f.ident
    assert len(line.opened) == 2


def test_unopenable_port_is_not_connected():
    def no_port(**settings):
        raise serial.SerialException(f"could not open port {settings['port']}")
    with pytest.raises(NotConnected, match="cannot open"):
        Eurotherm("/dev/nonexistent", serial_factory=no_port)


# -- 3200 map: float area, other status bits -------------------------------------------
def test_3200_reads_and_writes_in_the_float_area():
    pairs = [
        ("01 03 80 02 00 02 4C 0B", "01 03 04 43 E1 40 00 8E 41"),            # PV float @0x8002 = 450.5
        (READ_STATUS, WORD_0),
        ("01 03 80 46 00 02 0C 1E", "01 03 04 40 A0 00 00 EF D1"),            # rate @0x8046 = 5.0
        ("01 10 80 34 00 02 04 43 E1 20 00 CC FC", "01 10 80 34 00 02 29 C6"),  # comms SP := 450.25
        ("01 03 80 34 00 02 AC 05", "01 03 04 43 E1 20 00 A6 41"),            # read back 450.25
        ("01 03 80 04 00 02 AC 0A", "01 03 04 43 E1 20 00 A6 41"),            # target 450.25
        (READ_STATUS, WORD_0x8000),
    ]
    with furnace(pairs, model="3200") as f:
        assert f.temperature_C == 450.5
        f.set_setpoint(450.25)
        assert f.status.tuning  # bit 15 on a 3200


# -- decoding, any value -----------------------------------------------------------------
@settings(max_examples=50, deadline=None)
@given(word=st.integers(0, 0xFFFF))
def test_any_status_word_decodes_to_its_bits(word):
    with furnace([(READ_STATUS, _word_response(word))]) as f:
        status = f.status
    assert status.raw == word
    assert status.sensor_break == bool(word & 0x20) and status.pv_out_of_range == bool(word & 0x400)


@settings(max_examples=50, deadline=None)
@given(tenths=st.integers(-2000, 12000))
def test_any_setpoint_word_scales_by_its_decimals(tenths):
    with furnace([DECIMALS, (READ_TARGET, _word_response(tenths))]) as f:
        assert f.setpoint_C == pytest.approx(tenths / 10, abs=1e-9)


def _word_response(word: int) -> bytes:
    from pymodbus.framer.rtu import FramerRTU  # an independent CRC implementation

    body = bytes([1, 3, 2]) + (word & 0xFFFF).to_bytes(2, "big")
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
