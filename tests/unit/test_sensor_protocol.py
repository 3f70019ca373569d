"""The Modbus sensor driver: exact Modbus RTU request/response pairs for every encoding, word order, scaling, an
out-of-range value and a probe fault (no hardware).

Same harness as tests/unit/test_eurotherm_protocol.py (an answer arrives when the driver next reads, after its
request has been sent). Frames are literal bytes; every one is checked against pymodbus's CRC below. The sensor
is at address 2; the maps are the shipped ones (hardware/sensors) and one written here for the other encodings.
Last, the simulated sensor (drivers/sim/_sensor_bank.py): what it answers, its fault schedule, its options.
"""

import math
import textwrap
from contextlib import contextmanager

import pytest
from test_eurotherm_protocol import Arrivals, RtuLine

from drivers import MapError, ModbusSensor, NotConnected, ProtocolError, load_sensor_map
from drivers.sim._sensor_bank import SensorBank, parse_sensor_fault
from drivers.sim.furnace import ModbusError, RtuResponder, _parse, crc16

# Requests
PH_READ = "02 03 00 00 00 03 05 F8"  # FC3 0 x3: temperature, pH, electrode mV (one request)
PH_STATUS_READ = "02 03 00 06 00 01 64 38"  # FC3 6 x1: the system status word (3-5 are not in the map)
FLOW_READ = "02 04 00 00 00 02 71 F8"  # FC4 0 x2: flow rate, float32, least significant word first
COND_READ = "02 03 00 02 00 04 E5 FA"  # FC3 2 x4: conductivity and temperature, float32 each
BALANCE_READ = "02 03 00 00 00 05 85 FA"  # FC3 0 x5: display weight, gross weight (float32), status word
MIX_READ = "02 03 00 0A 00 07 24 39"  # FC3 10 x7: uint16, int32 big, int32 little, uint32 little
# Responses
PH_21_5C_7_01_MINUS_12_3MV = "02 03 06 00 D7 02 BD FF 85 50 58"
PH_0x7FFF = "02 03 06 00 D7 7F FF FF 85 E8 20"  # pH raw 32767: 327.67, outside 0..14
PH_MINUS_0_01 = "02 03 06 00 D7 FF FF 00 00 41 B3"  # pH raw -1 (int16): -0.01, outside 0..14
STATUS_0 = "02 03 02 00 00 FC 44"
STATUS_BIT_0 = "02 03 02 00 01 3D 84"
STATUS_BIT_1 = "02 03 02 00 02 7D 85"  # a bit the map does not name
FLOW_12_5 = "02 04 04 00 00 41 48 F8 E2"  # 12.5 = 0x41480000, words 0000 4148 (little word order)
FLOW_NAN = "02 04 04 00 00 7F C0 E8 E4"  # a quiet NaN: not a measurement
FLOW_MINUS_20000 = "02 04 04 40 00 C6 9C 8E 8D"  # -20000 L/h, beyond -10000
COND_1413_US_25C = "02 03 08 44 B0 A0 00 41 C8 00 00 A3 F9"  # 1413.0 uS/cm (scale 0.001: 1.413 mS/cm), 25.0 C
BALANCE_12_25_12_75_OK = "02 03 0A 41 44 00 00 41 4C 00 00 00 00 6F B8"
BALANCE_OVER_CAPACITY = "02 03 0A 41 44 00 00 41 4C 00 00 04 00 6D 78"  # status bit 10
BALANCE_MOTION = "02 03 0A 41 44 00 00 41 4C 00 00 10 00 62 78"  # status bit 12: not a fault bit of the map
MIX = "02 03 0E EA 60 FF FE 1D C0 1D C0 FF FE 5E 00 B2 D0 8E 6D"  # 60000; -123456 twice; 3000000000
EXCEPTION_02 = "02 83 02 30 F1"
PH_FROM_ADDRESS_3 = "03 03 06 00 D7 02 BD 00 00 DD 9B"
PH_BAD_CRC = "02 03 06 00 D7 02 BD FF 85 50 59"

FRAMES = [
    value
    for name, value in dict(globals()).items()
    if name.isupper() and isinstance(value, str) and name != "PH_BAD_CRC"  # its last byte is wrong on purpose
]

MIXED_MAP = textwrap.dedent("""\
    [sensor]
    name = "encodings"
    models = ["ENC"]

    [[channel]]
    name = "level_mm"
    register = 10
    encoding = "uint16"
    scale = 0.5
    offset = -10.0
    units = "mm"
    valid_min = -10.0
    valid_max = 40000.0

    [[channel]]
    name = "count_big"
    register = 11
    encoding = "int32"
    word_order = "big"
    units = "1"
    valid_min = -1e7
    valid_max = 1e7

    [[channel]]
    name = "count_little"
    register = 13
    encoding = "int32"
    word_order = "little"
    scale = 0.001
    units = "1"
    valid_min = -1e7
    valid_max = 1e7

    [[channel]]
    name = "total_L"
    register = 15
    encoding = "uint32"
    word_order = "little"
    scale = 0.01
    units = "L"
    valid_min = 0.0
    valid_max = 1e9
    """)


def test_every_frame_here_carries_the_crc_pymodbus_computes():
    from pymodbus.framer.rtu import FramerRTU  # an independent CRC implementation

    for text in FRAMES:
        frame = bytes.fromhex(text)
        assert FramerRTU.compute_CRC(frame[:-2]).to_bytes(2, "big") == frame[-2:], text


@contextmanager
def sensor(pairs, sensor_map="ph-transmitter", **kwargs):
    line = pairs if isinstance(pairs, RtuLine) else RtuLine(pairs)
    driver = ModbusSensor("expected://line", 2, sensor_map, serial_factory=line, timeout_s=0.05, **kwargs)
    try:
        yield driver
    finally:
        driver.close()
    line.assert_done()


# -- encodings, word orders, scaling ----------------------------------------------------------------------------
def test_the_ph_transmitter_reads_three_channels_in_one_request_and_its_status_in_another():
    with sensor([(PH_READ, PH_21_5C_7_01_MINUS_12_3MV), (PH_STATUS_READ, STATUS_0)]) as probe:
        reading = probe.read()
    assert list(reading) == ["temperature_C", "pH", "electrode_mV"]
    assert reading.values == pytest.approx({"temperature_C": 21.5, "pH": 7.01, "electrode_mV": -12.3})  # int16
    assert (reading["pH"].units, reading["temperature_C"].units, reading["electrode_mV"].units) == ("1", "degC", "mV")
    assert reading.ok and all(reading[name].state == "ok" for name in reading)


def test_a_float_with_the_least_significant_word_first_from_input_registers():
    with sensor([(FLOW_READ, FLOW_12_5)], "flow-meter") as meter:
        reading = meter.read()
    assert reading["flow_L_per_h"].value == 12.5 and reading["flow_L_per_h"].units == "L/h"


def test_floats_most_significant_word_first_and_a_scale_to_the_maps_units():
    with sensor([(COND_READ, COND_1413_US_25C)], "conductivity-transmitter") as probe:
        reading = probe.read()
    assert reading["conductivity_mS_per_cm"].value == pytest.approx(1.413)  # 1413 uS/cm * 0.001
    assert reading["temperature_C"].value == 25.0


def test_uint16_int32_and_uint32_in_both_word_orders_with_scale_and_offset(tmp_path):
    path = tmp_path / "encodings.toml"
    path.write_text(MIXED_MAP)
    with sensor([(MIX_READ, MIX)], path) as probe:
        reading = probe.read()
    assert reading.values == pytest.approx(
        {
            "level_mm": 60000 * 0.5 - 10.0,  # uint16: 0xEA60 is not negative
            "count_big": -123456,  # FF FE 1D C0
            "count_little": -123.456,  # 1D C0 FF FE, scale 0.001
            "total_L": 30000000.0,  # 3000000000 (5E00 B2D0 little: B2D05E00) * 0.01
        }
    )


# -- not a measurement: NaN with its state, never a number -------------------------------------------------------
@pytest.mark.parametrize(
    "answer, detail",
    [
        (PH_0x7FFF, "raw 32767 (7FFF) reads 327.67, outside 0..14 1"),
        (PH_MINUS_0_01, "raw -1 (FFFF) reads -0.01, outside 0..14 1"),
    ],
)
def test_a_raw_value_outside_the_valid_range_is_nan_and_out_of_range_and_is_not_read_again(answer, detail):
    with sensor([(PH_READ, answer), (PH_STATUS_READ, STATUS_0)]) as probe:
        reading = probe.read()
    ph = reading["pH"]
    assert math.isnan(ph.value) and ph.state == "out_of_range" and not ph.ok and not reading.ok
    assert ph.detail == detail
    assert reading["temperature_C"].value == 21.5 and reading["temperature_C"].ok  # the others are measurements


@pytest.mark.parametrize("answer", [FLOW_NAN, FLOW_MINUS_20000])
def test_a_float_that_is_not_a_number_or_beyond_the_span_is_out_of_range(answer):
    with sensor([(FLOW_READ, answer)], "flow-meter") as meter:
        flow = meter.read()["flow_L_per_h"]
    assert math.isnan(flow.value) and flow.state == "out_of_range"


def test_a_fault_bit_of_the_status_word_is_a_probe_fault_other_bits_are_not():
    with sensor([(PH_READ, PH_21_5C_7_01_MINUS_12_3MV), (PH_STATUS_READ, STATUS_BIT_0)]) as probe:
        reading = probe.read()
    assert math.isnan(reading["pH"].value) and reading["pH"].state == "probe_fault"
    assert reading["pH"].detail == "status register 6 reads 0x0001: bit 0: pH electrode fault"
    assert reading["temperature_C"].ok and reading["electrode_mV"].ok  # their channels name no fault bits
    with sensor([(PH_READ, PH_21_5C_7_01_MINUS_12_3MV), (PH_STATUS_READ, STATUS_BIT_1)]) as probe:
        assert probe.read()["pH"].value == pytest.approx(7.01)


def test_a_probe_fault_comes_before_out_of_range():
    with sensor([(PH_READ, PH_0x7FFF), (PH_STATUS_READ, STATUS_BIT_0)]) as probe:
        assert probe.read()["pH"].state == "probe_fault"


def test_the_balance_reads_weights_and_status_in_one_request_and_over_capacity_is_a_probe_fault():
    with sensor([(BALANCE_READ, BALANCE_12_25_12_75_OK)], "balance") as scale:
        assert scale.read().values == {"mass_kg": 12.25, "gross_mass_kg": 12.75}
    with sensor([(BALANCE_READ, BALANCE_OVER_CAPACITY)], "balance") as scale:
        reading = scale.read()
    assert {name: reading[name].state for name in reading} == {"mass_kg": "probe_fault", "gross_mass_kg": "probe_fault"}
    assert "bit 10: over capacity" in reading["mass_kg"].detail
    with sensor([(BALANCE_READ, BALANCE_MOTION)], "balance") as scale:
        assert scale.read().ok  # motion is not a fault bit of the map


# -- the transaction rules (those of drivers._modbus, as for the furnace) ----------------------------------------
def test_a_garbled_or_foreign_answer_is_read_again_and_then_used():
    pairs = [
        (PH_READ, PH_BAD_CRC),
        (PH_READ, PH_FROM_ADDRESS_3),
        (PH_READ, PH_21_5C_7_01_MINUS_12_3MV),
        (PH_STATUS_READ, STATUS_0),
    ]
    with sensor(pairs) as probe:
        assert probe.read()["pH"].value == pytest.approx(7.01)


def test_silence_is_not_connected_after_the_retries_and_never_a_number():
    line = RtuLine([(PH_READ, Arrivals())] * 3)
    with sensor(line, retries=2) as probe:
        with pytest.raises(NotConnected, match="no answer from address 2"):
            probe.read()


def test_a_refusal_is_a_protocol_error():
    with sensor([(FLOW_READ, "02 84 02 32 C1")], "flow-meter") as meter:
        with pytest.raises(ProtocolError, match="refused"):
            meter.read()
    with sensor([(PH_READ, EXCEPTION_02)]) as probe:
        with pytest.raises(ProtocolError, match="refused"):
            probe.read()


def test_a_lost_port_is_not_connected_and_the_next_read_reopens_it():
    line = RtuLine(
        [
            (PH_READ, OSError("device disconnected")),
            (PH_READ, PH_21_5C_7_01_MINUS_12_3MV),
            (PH_STATUS_READ, STATUS_0),
        ]
    )
    with sensor(line) as probe:
        with pytest.raises(NotConnected, match="lost"):
            probe.read()
        assert probe.read()["pH"].value == pytest.approx(7.01)
    assert len(line.opened) == 2


def test_identity_and_channels_come_from_the_map_without_a_byte_on_the_line():
    line = RtuLine([])
    with sensor(line, "conductivity-transmitter") as probe:
        assert (
            probe.identity == "Hach conductivity transmitter (map conductivity-transmitter, unit 2 at expected://line)"
        )
        assert dict(probe.channels) == {"conductivity_mS_per_cm": "mS/cm", "temperature_C": "degC"}
    assert bytes(line.written) == b""


def test_a_model_chooses_the_map_and_must_be_one_of_a_named_maps():
    with sensor(RtuLine([]), None, model="ID551PN") as scale:
        assert scale.sensor_map.name == "balance"
    with pytest.raises(MapError, match="not one that sensor map balance covers"):
        ModbusSensor("expected://line", 2, "balance", model="SUP-PH8001", serial_factory=RtuLine([]))


# -- the simulated sensor answers what the map says (drivers/sim/_sensor_bank.py) ---------------------------------
def ph_bank(*faults: str, scenario=None) -> SensorBank:
    return SensorBank(
        load_sensor_map("ph-transmitter"), scenario, [parse_sensor_fault(f) for f in faults], refusal=ModbusError
    )


def test_the_simulated_sensor_answers_the_drivers_request_as_the_map_says():
    bank = ph_bank()
    responder = RtuResponder({2: bank})
    answer = responder.feed(bytes.fromhex(PH_READ))[0]
    words = [int.from_bytes(answer[3 + 2 * i : 5 + 2 * i], "big") for i in range(3)]
    assert answer[:3] == bytes.fromhex("02 03 06") and crc16(answer[:-2]) == answer[-2:]
    assert load_sensor_map("ph-transmitter")["pH"].decode(words[1:2]) == pytest.approx(7.0, abs=0.05)  # default
    assert bank.served_values()["pH"] == load_sensor_map("ph-transmitter")["pH"].decode(words[1:2])  # the truth
    assert responder.feed(bytes.fromhex("02 03 00 00 00 07 04 3B")) == [bytes.fromhex("02 83 02 30 F1")]  # 3-5
    assert responder.feed(bytes.fromhex("02 06 00 01 02 BC D8 E8")) == [bytes.fromhex("02 86 02 33 A1")]  # no writes


def test_a_scheduled_fault_is_on_only_in_its_window_and_its_truth_says_so():
    bank = ph_bank("2:pH:stuck@100-200", "2:temperature_C:drift=3.6@100-200", "2:electrode_mV:out_of_range@100")
    model = bank.model
    model.advance(50.0)
    before = bank.read(1, 1)
    assert bank.served_values()["pH.fault"] == "none" and bank.served_values()["pH.state"] == "ok"
    model.advance(150.0)
    assert bank.read(1, 1) == before and bank.served_values()["pH.fault"] == "stuck"
    for time_s in (160.0, 170.0, 180.0):  # noise and the process go on; the words do not
        model.advance(time_s)
        assert bank.read(1, 1) == before
    assert bank.served_values()["temperature_C.drift"] == pytest.approx(0.08)  # 3.6 C/h for 80 s
    assert bank.read(2, 1) == [0x7FFF] and bank.served_values()["electrode_mV.state"] == "out_of_range"
    model.advance(250.0)
    assert bank.served_values()["pH.fault"] == "none" and bank.served_values()["temperature_C.drift"] == 0.0
    assert bank.served_values()["electrode_mV.fault"] == "out_of_range"  # no end: still on


def test_a_probe_fault_sets_the_channels_first_fault_bit():
    bank = ph_bank("2:pH:probe_fault@10")
    assert bank.read(6, 1) == [0]
    bank.model.advance(10.0)
    assert bank.read(6, 1) == [1] and bank.served_values()["pH.state"] == "probe_fault"
    assert bank.served_values()["status.6"] == 1


@pytest.mark.parametrize(
    "text, words",
    [
        ("2:pH:drift@0", "needs its rate"),
        ("2:pH:stuck=1@0", "needs its rate"),
        ("2:pH:melted@0", "unknown fault 'melted'"),
        ("2:pH:stuck@10-5", "END_S > START_S"),
        ("2:pH:stuck", "ADDRESS:CHANNEL:KIND"),
    ],
)
def test_a_bad_fault_schedule_is_refused_saying_why(text, words):
    with pytest.raises(ValueError, match=words):
        parse_sensor_fault(text)


def test_a_fault_the_sensor_cannot_have_is_refused_when_the_simulator_starts():
    with pytest.raises(ValueError, match="no status_register"):
        ph_bank("2:temperature_C:probe_fault@0")
    with pytest.raises(ValueError, match="no channel 'ORP'"):
        ph_bank("2:ORP:stuck@0")


def test_the_simulators_options_put_sensors_and_controllers_on_one_line():
    assert _parse(["--sensor", "2:ph-transmitter"]).address == [1]  # the controller stays at 1
    assert _parse(["--sensor", "1:ph-transmitter"]).address == []  # a sensor alone
    assert _parse(["--address", "1,3", "--sensor", "2:balance"]).sensor == [(2, "balance")]
    for argv in (
        ["--address", "2", "--sensor", "2:balance"],
        ["--scenario", "pr-nd-elution"],
        ["--sensor", "2:balance", "--sensor", "2:flow-meter"],
        ["--sensor", "balance"],
    ):
        with pytest.raises(SystemExit):
            _parse(argv)
