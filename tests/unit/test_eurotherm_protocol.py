"""Eurotherm driver: exact Modbus RTU request/response pairs for every property (no hardware).

Frames are literal bytes (CRC included; checked against pymodbus's CRC when written).
Address 1; the 2400 map uses the integer area with display decimals (register
525 reads 1), the 3200 map the float area.

The line is the expected-protocol harness (tests/_expected_protocol.py) with
RTU timing (:class:`RtuLine`): an answer arrives when the driver next reads,
after its request has been sent, as on a wire; a script may also put bytes on
the line before a request, while it is being sent, or right behind an answer.
"""

import dataclasses
import math
import sys
from collections import deque
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _expected_protocol import ExpectedLine, ExpectedPort, Frame, expected_protocol, frame  # noqa: E402

from drivers import Eurotherm, LimitError, NotConnected, ProtocolError, ReadbackMismatch  # noqa: E402
from drivers.eurotherm import SensorFault  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Arrivals:
    """What comes back for one request, and when."""

    answer: Frame = None  # arrives after the request has been sent (None: silence)
    before: Frame = None  # already on the line before the request is written (a late frame)
    during: Frame = None  # arrives while the request is being sent
    after: Frame = None  # arrives right behind the answer, before the line goes quiet


class RtuLine(ExpectedLine):
    """The expected-protocol line, its answers arriving as on an RTU wire."""

    def __init__(self, pairs) -> None:
        pairs = list(pairs)
        super().__init__([(request, None) for request, _ in pairs])
        self.pairs = deque(
            (frame(request), response if isinstance(response, Arrivals) else Arrivals(response))
            for request, response in pairs
        )

    def __call__(self, **settings) -> "RtuPort":
        self.opened.append(settings)
        return RtuPort(self, settings)


class RtuPort(ExpectedPort):
    """Each read takes the next arrival (or a silence); ``in_waiting`` shows what is on the line now."""

    def __init__(self, line: RtuLine, settings: dict) -> None:
        super().__init__(line, settings)
        self._arrivals: deque[bytes] = deque()
        self._just_written = False

    def write(self, data: bytes) -> int:
        data = bytes(data)
        arrivals = self._expect(data)
        if isinstance(arrivals.answer, BaseException):
            raise arrivals.answer
        if arrivals.during is not None:
            self._received += frame(arrivals.during)
            self._arrivals.append(b"")  # then a silence
        self._arrivals.extend(part for part in (frame(arrivals.answer), frame(arrivals.after)) if part)
        self._just_written = True
        return len(data)

    def read(self, size: int = 1) -> bytes:
        self._just_written = False
        if not self._received and self._arrivals:
            self._received += self._arrivals.popleft()
        return super().read(size)

    @property
    def in_waiting(self) -> int:
        if not (self._received or self._arrivals or self._just_written):
            self._late_frame_before_next_request()  # the driver looks at the line before its next request
        return len(self._received)

    def _late_frame_before_next_request(self) -> None:
        if self.line.pairs and self.line.pairs[0][1].before is not None:
            request, arrivals = self.line.pairs[0]
            self._received += frame(arrivals.before)
            self.line.pairs[0] = (request, dataclasses.replace(arrivals, before=None))


# Requests
READ_DECIMALS = "01 03 02 0D 00 01 14 71"  # FC3 525 x1
READ_RESOLUTION = "01 03 31 06 00 01 6A F7"  # FC3 12550 x1: comms resolution (0 full, 1 integer)
READ_RATE_UNITS = "01 03 02 13 00 01 74 77"  # FC3 531 x1: SP rate units (1 = per minute)
READ_RATE_DISABLE = "01 03 00 4E 00 01 E4 1D"  # FC3 78 x1: SP rate limit disable
READ_SELECT = "01 03 01 14 00 01 C5 F2"  # FC3 276 x1: local/remote SP select
READ_PROGRAM_STATUS = "01 03 00 17 00 01 34 0E"  # FC3 23 x1
READ_PROGRAM_SEGMENT = "01 03 00 38 00 01 05 C7"  # FC3 56 x1
READ_BLOCK = "01 03 00 01 00 05 D4 09"  # FC3 1 x5: PV, target SP, output, working output, working SP
READ_REMOTE = "01 03 00 1A 00 01 A5 CD"  # FC3 26 x1
READ_RATE = "01 03 00 23 00 01 75 C0"  # FC3 35 x1
READ_STATUS = "01 03 00 4B 00 01 F4 1C"  # FC3 75 x1
READ_IDENT = "01 03 00 7A 00 01 A5 D3"  # FC3 122 x1
READ_AUTO_MANUAL = "01 03 01 11 00 01 D5 F3"  # FC3 273 x1
WRITE_REMOTE_450 = "01 06 00 1A 11 94 A5 F2"  # FC6 26 := 4500
WRITE_REMOTE_20 = "01 06 00 1A 00 C8 A9 9B"  # FC6 26 := 200
WRITE_RATE_10 = "01 06 00 23 00 64 79 EB"  # FC6 35 := 100
WRITE_RATE_20 = "01 06 00 23 00 C8 79 96"  # FC6 35 := 200
WRITE_AUTO = "01 06 01 11 00 00 D8 33"  # FC6 273 := 0
# Responses: one word
WORD_0 = "01 03 02 00 00 B8 44"
WORD_1 = "01 03 02 00 01 79 84"
WORD_2 = "01 03 02 00 02 39 85"
WORD_5 = "01 03 02 00 05 78 47"
WORD_50 = "01 03 02 00 32 39 91"
WORD_100 = "01 03 02 00 64 B9 AF"
WORD_200 = "01 03 02 00 C8 B9 D2"
WORD_4499 = "01 03 02 11 93 F4 79"
WORD_4500 = "01 03 02 11 94 B5 BB"
WORD_0x0020 = "01 03 02 00 20 B9 9C"
WORD_0x0200 = "01 03 02 02 00 B9 24"
WORD_0x0221 = "01 03 02 02 21 79 3C"
WORD_0x2480 = "01 03 02 24 80 A2 E4"
WORD_0x8000 = "01 03 02 80 00 D9 84"
# Responses: the block 1-5 (PV, target SP, output, working output, working SP)
BLOCK = "01 03 0A 11 99 11 94 02 8F 02 8F 10 E1 0E 5F"  # 450.5, 450.0, 65.5, 65.5, 432.1
BLOCK_PV_NEGATIVE = "01 03 0A FF 85 11 94 02 8F 02 8F 10 E1 F3 3C"  # PV -12.3, the rest as BLOCK
BLOCK_TARGET_20 = "01 03 0A 11 99 00 C8 02 8F 02 8F 10 E1 52 9A"  # target SP 20.0
BLOCK_OUTPUT_900 = "01 03 0A 11 99 11 94 23 28 02 8F 10 E1 3D 37"  # output 900.0 %: not an output
BLOCK_EARLIER = "01 03 0A 11 30 11 94 02 BC 02 BC 10 CC A8 1E"  # 440.0, 450.0, 70.0, 70.0, 430.0
BLOCK_UPSCALE = "01 03 0A 35 98 11 94 00 00 00 00 10 E1 27 1E"  # PV 1372.0 (sensor broken), output 0
BLOCK_PV_OUT_OF_SPAN = "01 03 0A 36 B0 11 94 00 00 00 00 10 E1 29 10"  # PV 1400.0: outside -200..1372
ILLEGAL_ADDRESS = "01 83 02 C0 F1"  # exception 02 to FC3
RESOLUTION = [(READ_RESOLUTION, WORD_0)] * 2  # full resolution, read twice: both reads must agree
DECIMALS = RESOLUTION + [(READ_DECIMALS, WORD_1)] * 2  # read twice: both reads must agree
RATE_UNITS = [(READ_RATE_UNITS, WORD_1)] * 2  # per minute, read twice, before the first rate read or write
RATE_DECIMALS = RATE_UNITS + DECIMALS
RATE_ENABLED = [(READ_RATE_DISABLE, WORD_0)]  # after a rate write: the rate limit is not disabled
REMOTE_SELECTED = [(READ_SELECT, WORD_1)]  # before the first setpoint: remote SP selected
PROGRAM_RESET = [(READ_PROGRAM_STATUS, WORD_1), (READ_PROGRAM_SEGMENT, WORD_0)]  # the programmer is in reset


def furnace(pairs, **kwargs):
    return expected_protocol(Eurotherm, pairs if isinstance(pairs, ExpectedLine) else RtuLine(pairs), **kwargs)


def poll(block=BLOCK, status=WORD_0):
    """A poll: status word, the block, status word again."""
    return [(READ_STATUS, status), (READ_BLOCK, block), (READ_STATUS, status)]


# -- reads ------------------------------------------------------------------------------
def test_ident_names_the_model_from_the_map():
    with furnace([(READ_IDENT, WORD_0x2480)]) as f:
        assert f.ident == "Eurotherm 2408 (ident 0x2480, map eurotherm-2400)"


def test_temperature_is_a_poll_the_status_read_before_and_after_the_block():
    with furnace([(READ_STATUS, WORD_0)] + DECIMALS + [(READ_BLOCK, BLOCK), (READ_STATUS, WORD_0)]) as f:
        assert f.temperature_C == 450.5


def test_decimals_are_read_twice_once_per_connection():
    pairs = [(READ_STATUS, WORD_0)] + DECIMALS + [(READ_BLOCK, BLOCK_PV_NEGATIVE), (READ_STATUS, WORD_0)] + poll()
    with furnace(pairs) as f:
        assert f.temperature_C == -12.3
        assert f.temperature_C == 450.5


def test_decimals_that_read_differently_are_read_again():
    pairs = (
        [(READ_STATUS, WORD_0)]
        + RESOLUTION
        + [(READ_DECIMALS, WORD_0), (READ_DECIMALS, WORD_1), (READ_DECIMALS, WORD_1), (READ_DECIMALS, WORD_1)]
        + [(READ_BLOCK, BLOCK), (READ_STATUS, WORD_0)]
    )
    with furnace(pairs) as f:
        assert f.temperature_C == 450.5


def test_temperature_on_sensor_break_raises_instead_of_a_number():
    with furnace(
        [(READ_STATUS, WORD_0x0020)] + DECIMALS + [(READ_BLOCK, BLOCK_UPSCALE), (READ_STATUS, WORD_0x0020)]
    ) as f:
        with pytest.raises(SensorFault):
            f.temperature_C


@pytest.mark.parametrize(
    "attribute, value",
    [
        ("setpoint_C", 450.0),
        ("working_setpoint_C", 432.1),
        ("output_percent", 65.5),
    ],
)
def test_properties_of_the_poll_block_are_read_with_their_block(attribute, value):
    with furnace(DECIMALS + [(READ_BLOCK, BLOCK)]) as f:
        assert getattr(f, attribute) == value


def test_rate_limit_is_one_register_scaled_by_the_display_decimals():
    with furnace(RATE_DECIMALS + [(READ_RATE, WORD_50)]) as f:
        assert f.rate_limit_C_per_min == 5.0


def test_status_flags_use_the_2400_bits_and_are_read_twice():
    pairs = [(READ_STATUS, WORD_0x0221)] * 2 + [(READ_STATUS, "01 03 02 01 00 B9 D4")] * 2
    with furnace(pairs) as f:
        status = f.status
        assert (status.raw, status.alarm_1, status.sensor_break, status.program_end) == (0x221, True, True, True)
        assert not (status.alarm_2 or status.manual or status.loop_break or status.tuning)
        assert status.any_alarm
        tuning = f.status  # bit 8 is autotune on a 2400
        assert tuning.tuning and not tuning.any_alarm


def test_read_all_is_one_poll_and_marks_a_broken_sensor_nan():
    pairs = (
        [(READ_STATUS, WORD_0)]
        + DECIMALS
        + [(READ_BLOCK, BLOCK), (READ_STATUS, WORD_0)]
        + poll(BLOCK_UPSCALE, WORD_0x0020)
    )
    with furnace(pairs) as f:
        reading = f.read_all()
        assert (reading.temperature_C, reading.setpoint_C, reading.working_setpoint_C, reading.output_percent) == (
            450.5,
            450.0,
            432.1,
            65.5,
        )
        broken = f.read_all()
        assert math.isnan(broken.temperature_C) and broken.status.sensor_break and broken.output_percent == 0.0


def test_a_sensor_break_seen_once_is_not_reported_the_poll_is_read_again():
    # the status word after the values says "sensor break", the one before did not: read the poll again
    pairs = [(READ_STATUS, WORD_0)] + DECIMALS + [(READ_BLOCK, BLOCK), (READ_STATUS, WORD_0x0020)] + poll()
    with furnace(pairs) as f:
        reading = f.read_all()
        assert reading.temperature_C == 450.5 and not reading.status.any_alarm


def test_a_status_word_that_never_reads_the_same_twice_is_a_protocol_error():
    pairs = [(READ_STATUS, WORD_0)] + DECIMALS + [(READ_BLOCK, BLOCK), (READ_STATUS, WORD_0x0020)]
    pairs += [(READ_STATUS, WORD_0), (READ_BLOCK, BLOCK), (READ_STATUS, WORD_0x0020)] * 2
    with furnace(pairs, retries=2) as f:
        with pytest.raises(ProtocolError, match="status word 0x0000 before the values, 0x0020 after"):
            f.read_all()


def test_a_pv_outside_the_sensor_span_counts_only_when_the_controller_says_so():
    broken = [(READ_STATUS, WORD_0x0020)] + DECIMALS + [(READ_BLOCK, BLOCK_PV_OUT_OF_SPAN), (READ_STATUS, WORD_0x0020)]
    with furnace(broken) as f:
        assert math.isnan(f.read_all().temperature_C)  # the status says sensor break: NaN, as decision 0017
    # the status says nothing: 1400 C is no PV of a type K sensor, so not this register's answer; read again
    silent = [(READ_STATUS, WORD_0)] + DECIMALS + [(READ_BLOCK, BLOCK_PV_OUT_OF_SPAN), (READ_STATUS, WORD_0)] + poll()
    with furnace(silent) as f:
        assert f.read_all().temperature_C == 450.5


# -- writes -----------------------------------------------------------------------------
def test_set_setpoint_checks_rate_writes_comms_sp_and_reads_back_both():
    pairs = (
        RATE_ENABLED
        + RATE_DECIMALS
        + [(READ_RATE, WORD_50)]
        + REMOTE_SELECTED
        + [
            (WRITE_REMOTE_450, WRITE_REMOTE_450),
            (READ_REMOTE, WORD_4500),
            (READ_BLOCK, BLOCK),
        ]
    )
    with furnace(pairs) as f:
        f.set_setpoint(450.0)


def test_set_setpoint_readback_mismatch():
    pairs = RATE_ENABLED + RATE_DECIMALS + [(READ_RATE, WORD_50)] + REMOTE_SELECTED
    pairs += [(WRITE_REMOTE_450, WRITE_REMOTE_450), (READ_REMOTE, WORD_4499)]
    with furnace(pairs) as f:
        with pytest.raises(ReadbackMismatch):
            f.set_setpoint(450.0)


def test_set_setpoint_detects_comms_sp_not_in_use():
    pairs = RATE_ENABLED + RATE_DECIMALS + [(READ_RATE, WORD_50)] + REMOTE_SELECTED
    pairs += [(WRITE_REMOTE_450, WRITE_REMOTE_450), (READ_REMOTE, WORD_4500), (READ_BLOCK, BLOCK_TARGET_20)]
    with furnace(pairs) as f:
        with pytest.raises(ReadbackMismatch, match="remote"):
            f.set_setpoint(450.0)


def test_set_setpoint_refused_while_controller_rate_limit_is_off():
    line = RtuLine(RATE_ENABLED + RATE_DECIMALS + [(READ_RATE, WORD_0)])
    with furnace(line) as f:
        with pytest.raises(LimitError):
            f.set_setpoint(450.0)
    assert b"\x01\x06" not in bytes(line.written)


def test_set_rate_limit_writes_and_reads_back():
    with furnace(RATE_DECIMALS + [(WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_100)] + RATE_ENABLED) as f:
        f.set_rate_limit(10.0)


@pytest.mark.parametrize(
    "call, value",
    [
        ("set_setpoint", 1200.1),
        ("set_setpoint", -5.0),
        ("set_setpoint", math.nan),
        ("set_setpoint", math.inf),
        ("set_rate_limit", 20.5),
        ("set_rate_limit", 0.0),
        ("set_rate_limit", -1.0),
        ("set_rate_limit", math.nan),
    ],
)
def test_out_of_range_values_are_refused_with_the_line_silent(call, value):
    line = RtuLine([])
    with furnace(line) as f:
        with pytest.raises(LimitError):
            getattr(f, call)(value)
    assert bytes(line.written) == b""


def test_station_limit_below_instrument_limit_wins():
    line = RtuLine([])
    with furnace(line, max_temperature_C=900.0) as f:
        with pytest.raises(LimitError):
            f.set_setpoint(900.5)
    assert bytes(line.written) == b""


def test_safe_state_sets_rate_then_setpoint_then_resets_the_programmer_then_auto():
    pairs = RATE_DECIMALS + [(WRITE_RATE_20, WRITE_RATE_20), (READ_RATE, WORD_200)] + RATE_ENABLED
    pairs += REMOTE_SELECTED + [(WRITE_REMOTE_20, WRITE_REMOTE_20), (READ_REMOTE, WORD_200)]
    pairs += PROGRAM_RESET + [(READ_BLOCK, BLOCK_TARGET_20)]  # in reset already: the live SP is the target
    pairs += [
        (READ_AUTO_MANUAL, WORD_1),
        (WRITE_AUTO, WRITE_AUTO),
        (READ_AUTO_MANUAL, WORD_0),
    ]
    with furnace(pairs) as f:
        f.safe_state()


def test_safe_state_on_a_dead_line_raises_not_connected():
    with furnace(RATE_DECIMALS + [(WRITE_RATE_20, None)] * 4) as f:
        with pytest.raises(NotConnected):
            f.safe_state()


# -- retry policy -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad_response",
    [
        "01 03 02 00 32 39 90",  # CRC corrupted
        "01 03 02 00 33 39 91",  # data corrupted
        "01 03 02 00",  # truncated
        None,  # silence
        "02 03 02 00 32 39 91",  # another slave's address
    ],
)
def test_a_bad_answer_is_retried_and_never_returned(bad_response):
    with furnace(RATE_DECIMALS + [(READ_RATE, bad_response), (READ_RATE, WORD_50)]) as f:
        assert f.rate_limit_C_per_min == 5.0


def test_silence_for_the_whole_budget_is_not_connected_then_the_port_is_reopened():
    line = RtuLine([(READ_IDENT, None)] * 4 + [(READ_IDENT, WORD_0x2480)])
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
    pairs = RATE_DECIMALS + [(WRITE_RATE_10, None), (WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_100)]
    pairs += RATE_ENABLED
    with furnace(pairs) as f:
        f.set_rate_limit(10.0)


def test_lost_port_is_not_connected_at_once_and_reopened_next_time():
    line = RtuLine([(READ_IDENT, serial.SerialException("device disconnected")), (READ_IDENT, WORD_0x2480)])
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


# -- answers taken for the wrong register (decision 0039) -----------------------------------
def test_a_stale_frame_on_the_line_before_the_request_is_discarded():
    pairs = DECIMALS + [(READ_BLOCK, Arrivals(BLOCK, before=BLOCK_EARLIER))]
    with furnace(pairs) as f:
        assert f.output_percent == 65.5  # not 70.0 from the frame that was already there
        assert f.line_counters["stale_bytes"] == 15


def test_a_frame_arriving_while_the_request_is_sent_is_discarded():
    pairs = RATE_DECIMALS + [(READ_RATE, Arrivals(WORD_50, during=WORD_4500))]
    with furnace(pairs) as f:
        assert f.rate_limit_C_per_min == 5.0  # not 450.0, the setpoint's value
        assert f.line_counters["stale_bytes"] == 7


def test_a_frame_right_behind_the_answer_makes_it_ambiguous_and_it_is_read_again():
    pairs = RATE_DECIMALS + [(READ_RATE, Arrivals(WORD_4500, after=WORD_50)), (READ_RATE, WORD_50)]
    with furnace(pairs) as f:
        assert f.rate_limit_C_per_min == 5.0
        assert f.line_counters["ambiguous_answers"] == 1


@pytest.mark.parametrize(
    "wrong, why",
    [
        ("02 03 02 00 32 39 91", "another slave's address"),
        ("01 04 02 00 32 38 E5", "another function"),
        ("01 03 04 00 32 00 00 5B FC", "4 data bytes where 2 were asked"),
        (BLOCK, "the answer to a block read"),
        (ILLEGAL_ADDRESS.replace("83", "86").replace("C0 F1", "C3 A1"), "an exception to another function"),
    ],
)
def test_an_answer_of_another_address_function_or_byte_count_is_refused(wrong, why):
    with furnace(RATE_DECIMALS + [(READ_RATE, wrong), (READ_RATE, WORD_50)]) as f:
        assert f.rate_limit_C_per_min == 5.0, why


def test_a_value_outside_its_registers_range_is_refused_and_read_again():
    with furnace(DECIMALS + [(READ_BLOCK, BLOCK_OUTPUT_900), (READ_BLOCK, BLOCK)]) as f:
        assert f.output_percent == 65.5
        assert f.line_counters["refused_answers"] == 1


def test_values_outside_their_range_for_the_whole_budget_are_an_error_never_a_number():
    with furnace(DECIMALS + [(READ_BLOCK, BLOCK_OUTPUT_900)] * 3, retries=2) as f:
        with pytest.raises(ProtocolError, match=r"output_power reads 900.0, outside 0..100 percent"):
            f.setpoint_C  # the setpoint in that answer looks fine; the answer as a whole is refused


def test_a_word_outside_its_range_is_refused():
    with furnace(
        [
            (READ_STATUS, WORD_0),
            *RESOLUTION,
            (READ_DECIMALS, WORD_5),
            (READ_DECIMALS, WORD_1),
            (READ_DECIMALS, WORD_1),
            (READ_BLOCK, BLOCK),
            (READ_STATUS, WORD_0),
        ]
    ) as f:
        assert f.temperature_C == 450.5  # 5 decimal places is no answer of register 525


def test_after_a_read_got_no_answer_the_next_read_of_its_shape_waits_out_the_late_answer():
    pairs = DECIMALS + [
        (READ_BLOCK, None),
        (READ_BLOCK, BLOCK),  # the first answer may still come
        (READ_BLOCK, Arrivals(BLOCK, before=BLOCK_EARLIER)),
    ]  # it comes: waited out, discarded
    with furnace(pairs) as f:
        assert f.output_percent == 65.5
        assert f.output_percent == 65.5
        assert f.line_counters["waits_for_owed_answers"] == 1
        assert f.line_counters["stale_bytes"] == 15


# -- 3200 map: float area, other status bits -------------------------------------------
def test_3200_reads_and_writes_in_the_float_area():
    float_block = "01 03 14 43 E1 40 00 43 E1 20 00 42 83 00 00 42 83 00 00 43 D8 20 00 E2 EC"  # 450.5, 450.25 ..
    pairs = [
        (READ_STATUS, WORD_0),
        ("01 03 80 02 00 0A 4D CD", float_block),  # block @0x8002 x10
        (READ_STATUS, WORD_0),
        *RATE_UNITS,  # per minute (531, a word: the integer area)
        ("01 03 80 46 00 02 0C 1E", "01 03 04 40 A0 00 00 EF D1"),  # rate @0x8046 = 5.0
        *REMOTE_SELECTED,  # 276, the alternative SP select
        ("01 10 80 34 00 02 04 43 E1 20 00 CC FC", "01 10 80 34 00 02 29 C6"),  # comms SP := 450.25
        ("01 03 80 34 00 02 AC 05", "01 03 04 43 E1 20 00 A6 41"),  # read back 450.25
        ("01 03 80 02 00 0A 4D CD", float_block),  # target 450.25, in its block
        (READ_STATUS, WORD_0x8000),
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
    with furnace([(READ_STATUS, _word_response(word))] * 2) as f:
        status = f.status
    assert status.raw == word
    assert status.sensor_break == bool(word & 0x20) and status.pv_out_of_range == bool(word & 0x400)


@settings(max_examples=50, deadline=None)
@given(tenths=st.integers(0, 12000))
def test_any_setpoint_word_scales_by_its_decimals(tenths):
    with furnace(DECIMALS + [(READ_BLOCK, _block_response(target=tenths))]) as f:
        assert f.setpoint_C == pytest.approx(tenths / 10, abs=1e-9)


def _word_response(word: int) -> bytes:
    return _response([word])


def _block_response(target: int) -> bytes:
    return _response([4505, target, 655, 655, 4321])


def _response(words: list[int]) -> bytes:
    from pymodbus.framer.rtu import FramerRTU  # an independent CRC implementation

    body = bytes([1, 3, 2 * len(words)]) + b"".join((word & 0xFFFF).to_bytes(2, "big") for word in words)
    return body + FramerRTU.compute_CRC(body).to_bytes(2, "big")
