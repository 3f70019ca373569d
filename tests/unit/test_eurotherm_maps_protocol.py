"""The corrected registers of issue 15, as exact Modbus RTU request/response pairs (no hardware).

Same harness as tests/unit/test_eurotherm_protocol.py (an answer arrives when the driver next reads, after
its request has been sent). Frames are literal bytes; every one is checked against pymodbus's CRC below.
Address 1; the 2400 map in the integer area (525 reads 1 decimal, 12550 full resolution unless a test says
otherwise), the 3200 and EPC3000 maps in the float area.
"""

import pytest
from test_eurotherm_protocol import (
    BLOCK,
    BLOCK_TARGET_20,
    DECIMALS,
    PROGRAM_RESET,
    RATE_DECIMALS,
    RATE_ENABLED,
    RATE_UNITS,
    READ_AUTO_MANUAL,
    READ_BLOCK,
    READ_DECIMALS,
    READ_IDENT,
    READ_PROGRAM_SEGMENT,
    READ_PROGRAM_STATUS,
    READ_RATE,
    READ_RATE_UNITS,
    READ_REMOTE,
    READ_RESOLUTION,
    READ_STATUS,
    REMOTE_SELECTED,
    RESOLUTION,
    WORD_0,
    WORD_1,
    WORD_2,
    WORD_50,
    WORD_100,
    WORD_200,
    WORD_4500,
    WRITE_RATE_10,
    WRITE_RATE_20,
    WRITE_REMOTE_20,
    WRITE_REMOTE_450,
    RtuLine,
    furnace,
)

from drivers import LimitError, NotConfigured, ProgramSegment

# Requests (2400, integer area)
READ_SELECT = "01 03 01 14 00 01 C5 F2"  # FC3 276 x1: local/remote SP select
WRITE_SELECT_REMOTE = "01 06 01 14 00 01 09 F2"  # FC6 276 := 1 (remote)
READ_RATE_DISABLE = "01 03 00 4E 00 01 E4 1D"  # FC3 78 x1
WRITE_RATE_ENABLE = "01 06 00 4E 00 00 E9 DD"  # FC6 78 := 0
WRITE_PROGRAM_NUMBER_1 = "01 06 00 16 00 01 A9 CE"  # FC6 22 := 1
READ_PROGRAM_NUMBER = "01 03 00 16 00 01 65 CE"
WRITE_CYCLES_1 = "01 06 20 8C 00 01 82 21"  # FC6 8332 := 1
READ_CYCLES = "01 03 20 8C 00 01 4E 21"
WRITE_RAMP_UNITS_MIN = "01 06 20 8A 00 01 62 20"  # FC6 8330 := 1 (per minute)
READ_RAMP_UNITS = "01 03 20 8A 00 01 AE 20"
WRITE_DWELL_UNITS_MIN = "01 06 20 8B 00 01 33 E0"  # FC6 8331 := 1 (minutes)
READ_DWELL_UNITS = "01 03 20 8B 00 01 FF E0"
WRITE_SEG1_TYPE_RATE = "01 06 20 90 00 01 43 E7"  # FC6 8336 := 1 (rate)
READ_SEG1_TYPE = "01 03 20 90 00 01 8F E7"
WRITE_SEG1_TARGET_200 = "01 06 20 91 07 D0 D0 4B"  # FC6 8337 := 2000 (200.0 C)
READ_SEG1_TARGET = "01 03 20 91 00 01 DE 27"
WRITE_SEG1_RATE_20 = "01 06 20 92 00 C8 22 71"  # FC6 8338 := 200 (20.0 C/min)
READ_SEG1_RATE = "01 03 20 92 00 01 2E 27"
WRITE_SEG2_TYPE_RATE = "01 06 20 98 00 01 C2 25"  # FC6 8344 := 1
READ_SEG2_TYPE = "01 03 20 98 00 01 0E 25"
WRITE_SEG2_TARGET_20 = "01 06 20 99 00 C8 53 B3"  # FC6 8345 := 200 (20.0 C, the safe setpoint)
READ_SEG2_TARGET = "01 03 20 99 00 01 5F E5"
WRITE_SEG2_RATE_20 = "01 06 20 9A 00 C8 A3 B3"  # FC6 8346 := 200 (20.0 C/min)
READ_SEG2_RATE = "01 03 20 9A 00 01 AF E5"
WRITE_SEG3_TYPE_END = "01 06 20 A0 00 00 82 28"  # FC6 8352 := 0 (end)
READ_SEG3_TYPE = "01 03 20 A0 00 01 8F E8"
WRITE_SEG3_END_DWELL = "01 06 20 A3 00 00 72 28"  # FC6 8355 := 0 (end type: dwell at the last SP)
READ_SEG3_END_TYPE = "01 03 20 A3 00 01 7F E8"
WRITE_RUN = "01 06 00 17 00 02 B8 0F"  # FC6 23 := 2 (run)
WRITE_RESET = "01 06 00 17 00 01 F8 0E"  # FC6 23 := 1 (reset)
# Requests (EPC3000, FC16 for everything)
EPC_WRITE_SP2_20 = "01 10 80 32 00 02 04 41 A0 00 00 04 BA"  # SP2 (25) @0x8032 := 20.0
EPC_WRITE_SP2_ACK = "01 10 80 32 00 02 C9 C7"
EPC_READ_SP2 = "01 03 80 32 00 02 4C 04"
EPC_WRITE_RATE_DOWN_20 = "01 10 8D 06 00 02 04 41 A0 00 00 5E CD"  # SPRateDown (1667) @0x8D06 := 20.0
EPC_WRITE_RATE_DOWN_ACK = "01 10 8D 06 00 02 8A A5"
EPC_READ_RATE_DOWN = "01 03 8D 06 00 02 0F 66"
EPC_WRITE_TIMEOUT_10 = "01 10 04 D1 00 01 02 00 0A 71 D6"  # WDTimeout (1233) := 10 s
EPC_WRITE_TIMEOUT_ACK = "01 10 04 D1 00 01 50 C0"
EPC_READ_TIMEOUT = "01 03 04 D1 00 01 D5 03"
EPC_READ_FLAG = "01 03 04 D4 00 01 C5 02"  # WDFlag (1236)
# Requests (3216P: float area, FC16; segment n at 1280 + 3(n-1): dwell, target SP, ramp rate)
P_READ_STATUS = "01 03 00 17 00 01 34 0E"  # FC3 23 x1: T.STAT, the programmer's status
P_READ_SEGMENT = "01 03 01 4A 00 01 A4 20"  # FC3 330 x1: the segment it is in
P_WRITE_SEG1_TARGET_200 = "01 10 8A 02 00 02 04 43 48 00 00 F8 82"  # target 1 (1281) @0x8A02 := 200.0
P_WRITE_SEG1_TARGET_ACK = "01 10 8A 02 00 02 CA 10"
P_READ_SEG1_TARGET = "01 03 8A 02 00 02 4F D3"
P_WRITE_SEG1_RATE_20 = "01 10 8A 04 00 02 04 41 A0 00 00 F9 24"  # ramp 1 (1282) @0x8A04 := 20.0
P_WRITE_SEG1_RATE_ACK = "01 10 8A 04 00 02 2A 11"
P_READ_SEG1_RATE = "01 03 8A 04 00 02 AF D2"
P_WRITE_SEG1_DWELL_5 = "01 10 8A 00 00 02 04 00 04 93 E0 C0 70"  # dwell 1 (1280) @0x8A00 := 300000 ms (5 min)
P_WRITE_SEG1_DWELL_ACK = "01 10 8A 00 00 02 6B D0"
P_READ_SEG1_DWELL = "01 03 8A 00 00 02 EE 13"
P_WRITE_SEG2_TARGET_20 = "01 10 8A 08 00 02 04 41 A0 00 00 F9 71"  # target 2 (1284) := 20.0 (the safe setpoint)
P_WRITE_SEG2_TARGET_ACK = "01 10 8A 08 00 02 EA 12"
P_READ_SEG2_TARGET = "01 03 8A 08 00 02 6F D1"
P_WRITE_SEG2_RATE_20 = "01 10 8A 0A 00 02 04 41 A0 00 00 78 A8"  # ramp 2 (1285) := 20.0 (the cool rate)
P_WRITE_SEG2_RATE_ACK = "01 10 8A 0A 00 02 4B D2"
P_READ_SEG2_RATE = "01 03 8A 0A 00 02 CE 11"
P_WRITE_SEG2_DWELL_0 = "01 10 8A 06 00 02 04 00 00 00 00 6C E3"  # dwell 2 (1283) := 0 ms
P_WRITE_SEG2_DWELL_ACK = "01 10 8A 06 00 02 8B D1"
P_READ_SEG2_DWELL = "01 03 8A 06 00 02 0E 12"
P_WRITE_END_DWELL = "01 10 01 48 00 01 02 00 01 78 D8"  # FC16 328 := 1 (end type: dwell at the last SP)
P_WRITE_END_ACK = "01 10 01 48 00 01 80 23"
P_READ_END = "01 03 01 48 00 01 05 E0"
P_WRITE_RUN = "01 10 00 17 00 01 02 00 01 64 B7"  # FC16 23 := 1 (run)
P_WRITE_RUN_ACK = "01 10 00 17 00 01 B1 CD"
# Responses
FLOAT_200 = "01 03 04 43 48 00 00 6F A1"
TIME_5_MIN = "01 03 04 00 04 93 E0 D6 8A"  # 300000 ms
TIME_0 = "01 03 04 00 00 00 00 FA 33"
WORD_3 = "01 03 02 00 03 F8 45"
WORD_8 = "01 03 02 00 08 B9 82"
WORD_0x2460 = "01 03 02 24 60 A3 6C"
WORD_0x2482 = "01 03 02 24 82 23 25"
WORD_0x4000 = "01 03 02 40 00 89 84"
WORD_0x2000 = "01 03 02 20 00 A1 84"
WORD_0x1000 = "01 03 02 10 00 B5 84"
WORD_0x0800 = "01 03 02 08 00 BF 84"
WORD_2000 = "01 03 02 07 D0 BB E8"
WORD_10 = "01 03 02 00 0A 38 43"
FLOAT_20 = "01 03 04 41 A0 00 00 EE 2D"
BLOCK_WHOLE_UNITS = "01 03 0A 01 C3 01 C2 00 42 00 42 01 B0 CB B9"  # 451, 450, 66, 66, 432: whole units
FLOAT_BLOCK_3200 = "01 03 14 43 E1 40 00 43 E1 00 00 41 40 00 00 42 83 00 00 43 D8 20 00 34 4F"  # 450.5 450 12 65.5
EXCEPTION_02_TO_FC6 = "01 86 02 C3 A1"

FRAMES = [value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)]


def test_every_frame_here_carries_the_crc_pymodbus_computes():
    from pymodbus.framer.rtu import FramerRTU  # an independent CRC implementation

    for text in FRAMES:
        frame = bytes.fromhex(text)
        assert FramerRTU.compute_CRC(frame[:-2]).to_bytes(2, "big") == frame[-2:], text


# -- ident: 2 / range / size / type ---------------------------------------------------------------
@pytest.mark.parametrize("answer, model", [(WORD_0x2460, "2416"), (WORD_0x2482, "2408VP")])
def test_the_2400_ident_names_the_2416_and_the_vp_variants(answer, model):
    with furnace([(READ_IDENT, answer)]) as f:
        assert f.ident.startswith(f"Eurotherm {model} (ident 0x")


# -- 3200: working output is register 4 ----------------------------------------------------------
def test_the_3200_output_is_the_working_output_register_4_not_the_manual_output_3():
    pairs = [("01 03 80 02 00 0A 4D CD", FLOAT_BLOCK_3200)]  # the block 1-5 in the float area
    with furnace(pairs, model="3200") as f:
        assert f.output_percent == 65.5  # register 3 (manual output) reads 12.0 in that block


def test_the_3200_has_no_programmer_and_its_register_23_is_never_read_as_one():
    line = RtuLine([])
    with furnace(line, model="3200") as f:
        assert f.safety == "none"
        with pytest.raises(NotConfigured, match="no \\[programmer\\]"):
            f.program_state()
    assert bytes(line.written) == b""


# -- rate units (531) and the ramp-disable flag (78) ------------------------------------------------
def test_rate_units_other_than_per_minute_are_refused_before_any_rate_is_written():
    line = RtuLine([(READ_RATE_UNITS, WORD_2)] * 2)  # per hour
    with furnace(line) as f:
        with pytest.raises(NotConfigured, match="rate units .* read 2, not 1 \\(per minute\\)"):
            f.set_rate_limit(10.0)
    assert b"\x01\x06" not in bytes(line.written)


def test_a_disabled_rate_limit_refuses_the_setpoint_whatever_register_35_holds():
    line = RtuLine([(READ_RATE_DISABLE, WORD_1)])
    with furnace(line) as f:
        with pytest.raises(LimitError, match="rate limit is disabled"):
            f.set_setpoint(450.0)
    assert b"\x01\x06" not in bytes(line.written)


def test_set_rate_limit_switches_a_disabled_rate_limit_on():
    pairs = RATE_DECIMALS + [(WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_100)]
    pairs += [(READ_RATE_DISABLE, WORD_1), (WRITE_RATE_ENABLE, WRITE_RATE_ENABLE), (READ_RATE_DISABLE, WORD_0)]
    with furnace(pairs) as f:
        f.set_rate_limit(10.0)


# -- comms resolution (12550) ----------------------------------------------------------------------
def test_integer_comms_resolution_means_whole_units_and_525_is_not_used():
    pairs = [(READ_STATUS, WORD_0), (READ_RESOLUTION, WORD_1), (READ_RESOLUTION, WORD_1)]
    pairs += [(READ_BLOCK, BLOCK_WHOLE_UNITS), (READ_STATUS, WORD_0)]
    with furnace(pairs) as f:
        reading = f.read_all()
        assert (reading.temperature_C, reading.setpoint_C, reading.output_percent) == (451.0, 450.0, 66.0)


def test_full_comms_resolution_scales_by_the_decimal_places():
    with furnace([(READ_STATUS, WORD_0)] + DECIMALS + [(READ_BLOCK, BLOCK), (READ_STATUS, WORD_0)]) as f:
        assert f.read_all().temperature_C == 450.5
    assert (READ_RESOLUTION, WORD_0) in DECIMALS and (READ_DECIMALS, WORD_1) in DECIMALS


# -- remote setpoint select (276) ------------------------------------------------------------------
def test_the_driver_selects_the_remote_setpoint_itself_before_the_first_setpoint():
    pairs = RATE_ENABLED + RATE_DECIMALS + [(READ_RATE, WORD_50)]
    pairs += [(READ_SELECT, WORD_0), (WRITE_SELECT_REMOTE, WRITE_SELECT_REMOTE), (READ_SELECT, WORD_1)]
    pairs += [(WRITE_REMOTE_450, WRITE_REMOTE_450), (READ_REMOTE, WORD_4500), (READ_BLOCK, BLOCK)]
    with furnace(pairs) as f:
        f.set_setpoint(450.0)


def test_a_controller_that_refuses_the_remote_setpoint_is_refused_saying_what_to_configure():
    line = RtuLine(RATE_UNITS + RESOLUTION + [(READ_SELECT, WORD_0), (WRITE_SELECT_REMOTE, EXCEPTION_02_TO_FC6)])
    with furnace(line) as f:
        with pytest.raises(NotConfigured, match="configure the remote/comms setpoint .* no setpoint was written"):
            f.prepare()  # before the first segment
    assert b"\x01\x06\x00\x1a" not in bytes(line.written)  # no live setpoint written


# -- status bits ------------------------------------------------------------------------------------
def test_the_3200_status_bits_12_to_14_are_decoded_remote_sp_fail_is_an_alarm():
    with furnace([(READ_STATUS, WORD_0x4000)] * 2 + [(READ_STATUS, WORD_0x2000)] * 2, model="3200") as f:
        failed = f.status
        assert failed.remote_sp_fail and failed.any_alarm  # running on the local SP: ours is not in use
        ramping = f.status
        assert ramping.ramp_running and not ramping.any_alarm


def test_the_2400_status_bits_11_to_13_are_decoded():
    with furnace([(READ_STATUS, WORD_0x0800)] * 2 + [(READ_STATUS, WORD_0x1000)] * 2) as f:
        module = f.status
        assert module.dc_module_fault and module.any_alarm
        sync = f.status
        assert sync.segment_sync and not sync.any_alarm


# -- the 2400's own programmer ----------------------------------------------------------------------
def test_a_program_is_loaded_into_the_2400_programmer_ending_at_the_safe_setpoint_and_run():
    pairs = list(PROGRAM_RESET)  # in reset: a program can be edited
    pairs += [(WRITE_PROGRAM_NUMBER_1, WRITE_PROGRAM_NUMBER_1), (READ_PROGRAM_NUMBER, WORD_1)]
    pairs += [(WRITE_CYCLES_1, WRITE_CYCLES_1), (READ_CYCLES, WORD_1)]
    pairs += [(WRITE_RAMP_UNITS_MIN, WRITE_RAMP_UNITS_MIN), (READ_RAMP_UNITS, WORD_1)]
    pairs += [(WRITE_DWELL_UNITS_MIN, WRITE_DWELL_UNITS_MIN), (READ_DWELL_UNITS, WORD_1)]
    pairs += [(WRITE_SEG1_TYPE_RATE, WRITE_SEG1_TYPE_RATE), (READ_SEG1_TYPE, WORD_1)]
    pairs += DECIMALS + [(WRITE_SEG1_TARGET_200, WRITE_SEG1_TARGET_200), (READ_SEG1_TARGET, WORD_2000)]
    pairs += [(WRITE_SEG1_RATE_20, WRITE_SEG1_RATE_20), (READ_SEG1_RATE, WORD_200)]
    pairs += [(WRITE_SEG2_TYPE_RATE, WRITE_SEG2_TYPE_RATE), (READ_SEG2_TYPE, WORD_1)]
    pairs += [(WRITE_SEG2_TARGET_20, WRITE_SEG2_TARGET_20), (READ_SEG2_TARGET, WORD_200)]
    pairs += [(WRITE_SEG2_RATE_20, WRITE_SEG2_RATE_20), (READ_SEG2_RATE, WORD_200)]
    pairs += [(WRITE_SEG3_TYPE_END, WRITE_SEG3_TYPE_END), (READ_SEG3_TYPE, WORD_0)]
    pairs += [(WRITE_SEG3_END_DWELL, WRITE_SEG3_END_DWELL), (READ_SEG3_END_TYPE, WORD_0)]
    pairs += [(WRITE_RUN, WRITE_RUN), (READ_PROGRAM_STATUS, WORD_2), (READ_PROGRAM_SEGMENT, WORD_1)]
    with furnace(pairs) as f:
        assert f.safety == "programmer"
        f.load_program([ProgramSegment(20.0, 200.0)], end_rate_C_per_min=20.0)
        f.run_program()


def test_a_program_the_programmer_cannot_hold_is_refused_with_the_line_silent():
    line = RtuLine([])
    with furnace(line) as f:
        with pytest.raises(LimitError, match="needs 18 controller segments .* holds 16"):
            f.load_program([ProgramSegment(5.0, 100.0 + 10 * n, 1.0) for n in range(8)])
        with pytest.raises(LimitError, match="ramp 25 C/min is outside 0..20"):
            f.load_program([ProgramSegment(25.0, 300.0)])
    assert bytes(line.written) == b""


def test_safe_state_writes_the_live_setpoint_then_resets_a_running_program_then_checks_the_target():
    pairs = RATE_DECIMALS + [(WRITE_RATE_20, WRITE_RATE_20), (READ_RATE, WORD_200)] + RATE_ENABLED
    pairs += REMOTE_SELECTED + [(WRITE_REMOTE_20, WRITE_REMOTE_20), (READ_REMOTE, WORD_200)]
    pairs += [(READ_PROGRAM_STATUS, WORD_2), (READ_PROGRAM_SEGMENT, WORD_1), (WRITE_RESET, WRITE_RESET)]
    pairs += PROGRAM_RESET + [(READ_BLOCK, BLOCK_TARGET_20)]  # reset: the safe live SP is the target
    pairs += [(READ_AUTO_MANUAL, WORD_0)]
    with furnace(pairs) as f:
        f.safe_state()


# -- the EPC3000's comms watchdog --------------------------------------------------------------------
def test_arming_the_epc3000_watchdog_writes_fallback_setpoint_down_rate_and_timeout_each_read_back():
    pairs = [(EPC_WRITE_SP2_20, EPC_WRITE_SP2_ACK), (EPC_READ_SP2, FLOAT_20)]
    pairs += RATE_UNITS + [(EPC_WRITE_RATE_DOWN_20, EPC_WRITE_RATE_DOWN_ACK), (EPC_READ_RATE_DOWN, FLOAT_20)]
    pairs += [(EPC_WRITE_TIMEOUT_10, EPC_WRITE_TIMEOUT_ACK), (EPC_READ_TIMEOUT, WORD_10)]
    pairs += [(EPC_READ_FLAG, WORD_0), (EPC_READ_FLAG, WORD_1)]
    with furnace(pairs, model="EPC3016", watchdog_s=10.0) as f:
        assert f.safety == "watchdog"
        f.arm_watchdog()
        assert not f.watchdog_tripped
        assert f.watchdog_tripped


# -- the 3216P's own programmer: 8 ramp-dwell segments from 1280, the end type in 328 ---------------------
def _rtu(pdu: bytes) -> str:
    """``pdu`` framed for address 1 with pymodbus's CRC (for the six identical filler segments)."""
    from pymodbus.framer.rtu import FramerRTU

    frame = b"\x01" + pdu
    return (frame + FramerRTU.compute_CRC(frame).to_bytes(2, "big")).hex(" ")


def _float_write_pairs(address: int, data: bytes) -> list[tuple[str, str]]:
    """Write two words at float address ``address`` (FC16), its ack, the read back and its answer."""
    head = address.to_bytes(2, "big") + b"\x00\x02"
    return [
        (_rtu(b"\x10" + head + b"\x04" + data), _rtu(b"\x10" + head)),
        (_rtu(b"\x03" + head), _rtu(b"\x03\x04" + data)),
    ]


def test_a_program_is_loaded_into_the_3216p_ramp_dwell_segments_every_one_ending_at_the_safe_setpoint():
    pairs = [(P_READ_STATUS, WORD_0), (P_READ_SEGMENT, WORD_0)]  # in reset: a program can be edited
    pairs += RATE_UNITS  # no ramp units of its own: the SP rate units (531), per minute, read twice
    pairs += [(P_WRITE_SEG1_TARGET_200, P_WRITE_SEG1_TARGET_ACK), (P_READ_SEG1_TARGET, FLOAT_200)]
    pairs += [(P_WRITE_SEG1_RATE_20, P_WRITE_SEG1_RATE_ACK), (P_READ_SEG1_RATE, FLOAT_20)]
    pairs += [(P_WRITE_SEG1_DWELL_5, P_WRITE_SEG1_DWELL_ACK), (P_READ_SEG1_DWELL, TIME_5_MIN)]
    pairs += [(P_WRITE_SEG2_TARGET_20, P_WRITE_SEG2_TARGET_ACK), (P_READ_SEG2_TARGET, FLOAT_20)]
    pairs += [(P_WRITE_SEG2_RATE_20, P_WRITE_SEG2_RATE_ACK), (P_READ_SEG2_RATE, FLOAT_20)]
    pairs += [(P_WRITE_SEG2_DWELL_0, P_WRITE_SEG2_DWELL_ACK), (P_READ_SEG2_DWELL, TIME_0)]
    for number in range(3, 9):  # the rest stay at the safe setpoint: the programmer runs all eight
        first = 0x8000 + 2 * (1280 + 3 * (number - 1))
        pairs += _float_write_pairs(first + 2, bytes.fromhex("41 A0 00 00"))  # target 20.0
        pairs += _float_write_pairs(first + 4, bytes.fromhex("41 A0 00 00"))  # ramp 20.0
        pairs += _float_write_pairs(first, bytes(4))  # dwell 0 ms
    pairs += [(P_WRITE_END_DWELL, P_WRITE_END_ACK), (P_READ_END, WORD_1)]
    pairs += [(P_WRITE_RUN, P_WRITE_RUN_ACK), (P_READ_STATUS, WORD_1), (P_READ_SEGMENT, WORD_1)]
    with furnace(pairs, model="3216P") as f:
        assert f.safety == "programmer"
        assert f.load_program([ProgramSegment(20.0, 200.0, 5.0)], end_rate_C_per_min=20.0) == 2  # the cool ramp
        f.run_program()  # T.STAT must then read run


def test_the_3216p_program_state_reads_t_stat_and_its_segment_register():
    pairs = [(P_READ_STATUS, WORD_3), (P_READ_SEGMENT, WORD_8)]
    with furnace(pairs, model="3216P") as f:
        assert f.program_state() == ("complete", 8)  # T.STAT 3: end (dwelling at the safe setpoint)


def test_a_program_the_3216p_cannot_hold_is_refused_with_the_line_silent():
    line = RtuLine([])
    with furnace(line, model="3216P") as f:
        with pytest.raises(LimitError, match="needs 9 controller segments .* holds 8"):
            f.load_program([ProgramSegment(5.0, 100.0 + 10 * n, 1.0) for n in range(8)])
        with pytest.raises(LimitError, match=r"segment 1 \(dwell\): 6000 is outside 0..5999 min"):
            f.load_program([ProgramSegment(5.0, 100.0, 6000.0)])
    assert bytes(line.written) == b""
