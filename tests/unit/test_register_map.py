"""Register maps (hardware/maps) and the simulator's responder answering exactly what a map says."""

import struct

import pytest

from drivers._register_map import STATUS_FLAGS, load_register_map
from drivers.maps import find_map
from drivers.sim._furnace_plant import FurnaceModel
from drivers.sim.furnace import RegisterBank, RtuResponder, crc16

DESIGN_ADDRESSES = {
    "process_value": 1, "target_setpoint": 2, "output_power": 3, "working_output": 4, "working_setpoint": 5,
    "program_status": 23,
    "remote_setpoint": 26, "setpoint_rate_limit": 35, "status_word": 75, "ident": 122, "instrument_mode": 199,
    "auto_manual": 273, "decimal_places": 525,
}


@pytest.mark.parametrize("name", ["eurotherm-2400", "eurotherm-3200"])
def test_maps_load_with_the_design_addresses(name):
    regmap = load_register_map(name)
    assert {n: regmap[n].address for n in DESIGN_ADDRESSES} == DESIGN_ADDRESSES
    assert set(STATUS_FLAGS) <= set(regmap.status_bits)
    live = regmap[regmap.live_setpoint]
    assert live.name == "remote_setpoint" and live.writable and not live.eeprom
    assert regmap[regmap.target_setpoint].eeprom
    assert regmap.float_address(regmap["process_value"]) == 0x8002


@pytest.mark.parametrize("name", ["eurotherm-2400", "eurotherm-3200"])
def test_every_analog_register_has_a_valid_range_and_the_poll_is_one_block(name):
    regmap = load_register_map(name)
    for register in regmap.registers.values():
        if register.kind == "analog":
            assert register.minimum is not None and register.maximum is not None, register.name
    assert (regmap["process_value"].minimum, regmap["process_value"].maximum) == regmap.input_range_C
    assert (regmap["output_power"].minimum, regmap["output_power"].maximum) == (0.0, 100.0)
    poll = ["process_value", "target_setpoint", "output_power", "working_setpoint"]
    (block,) = regmap.blocks(poll)
    assert [register.address for register in block] == [1, 2, 3, 4, 5]
    assert regmap.blocks(["process_value", "status_word"]) == [(regmap["process_value"],), (regmap["status_word"],)]


def test_valid_range_reads_as_text():
    regmap = load_register_map("eurotherm-2400")
    assert regmap["output_power"].valid_range == "0..100 percent"
    assert not regmap["output_power"].in_range(900.0) and regmap["output_power"].in_range(65.5)


def test_the_two_families_differ_where_documented():
    e2400, e3200 = load_register_map("eurotherm-2400"), load_register_map("eurotherm-3200")
    assert (e2400.status_bits["tuning"], e3200.status_bits["tuning"]) == (8, 15)
    assert (e2400.area, e3200.area) == ("integer", "float")
    assert not set(e2400.ident_codes) & set(e3200.ident_codes)


def _write_variant(tmp_path, old, new):
    text = find_map("eurotherm-2400").read_text()
    assert old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old, new, message", [
    ("[registers.ident]\naddress = 122", "[registers.ident]\naddress = 75", "share an address"),
    ("[registers.ident]", "[registers.not_ident]", "required register 'ident'"),
    ('live = "remote_setpoint"', 'live = "target_setpoint"', "EEPROM"),
    ("tuning = 8", "tuning = 9", "distinct bit"),
    ("program_end = 9\n", "", "lacks program_end"),
    ('area = "integer"', 'area = "bcd"', "area"),
    ('decimals = "display"', 'decimals = "lots"', "decimals"),
    ("min = 0.0                         # heat-only output\n", "", "needs min and max"),
    ("max = 100.0\ndescription = \"Output power", "max = -1.0\ndescription = \"Output power", "min <= max"),
])
def test_a_broken_map_is_refused_naming_the_file(tmp_path, old, new, message):
    path = _write_variant(tmp_path, old, new)
    with pytest.raises(ValueError, match=message) as error:
        load_register_map(path)
    assert "broken.toml" in str(error.value)


# -- the simulator's responder -------------------------------------------------------------
def _request(*fields: int, fmt: str) -> bytes:
    pdu = struct.pack(fmt, *fields)
    return pdu + crc16(pdu)


@pytest.fixture
def responder():
    return RtuResponder(RegisterBank(load_register_map("eurotherm-2400"), FurnaceModel()), address=1)


def test_responder_reads_integer_and_float_areas(responder):
    assert responder.feed(_request(1, 3, 1, 1, fmt=">BBHH")) == [_request(1, 3, 2, 200, fmt=">BBBH")]
    (answer,) = responder.feed(_request(1, 4, 0x8002, 2, fmt=">BBHH"))
    assert struct.unpack(">f", answer[3:7])[0] == 20.0


@pytest.mark.parametrize("request_fields, fmt, code", [
    ((1, 3, 6, 1), ">BBHH", 2),           # address 6 is not in the map
    ((1, 3, 1, 6), ">BBHH", 2),           # block runs into unmapped 6
    ((1, 3, 1, 0), ">BBHH", 3),           # count 0
    ((1, 3, 0x8003, 2), ">BBHH", 2),      # float area, misaligned
    ((1, 6, 1, 100), ">BBHH", 2),         # PV is read-only
    ((1, 6, 26, 12001), ">BBHH", 3),      # 1200.1 C is above the comms SP max
    ((1, 6, 273, 2), ">BBHH", 3),         # auto/manual is 0..1
])
def test_responder_exceptions_follow_the_map(responder, request_fields, fmt, code):
    function = request_fields[1]
    assert responder.feed(_request(*request_fields, fmt=fmt)) == [_request(1, function | 0x80, code, fmt=">BBB")]


def test_responder_reads_the_poll_block(responder):
    (answer,) = responder.feed(_request(1, 3, 1, 5, fmt=">BBHH"))
    assert answer[:3] == bytes((1, 3, 10)) and struct.unpack(">5h", answer[3:13]) == (200, 200, 0, 0, 200)


def test_served_values_are_the_truth_as_a_read_gives_it(responder):
    model = responder.bank.model
    model.temperature_C, model.output_percent = 450.46, 65.44
    values = responder.bank.served_values()
    assert (values["process_value"], values["output_power"], values["working_output"]) == (450.5, 65.4, 65.4)
    assert values["status_word"] == 0 and values["ident"] == 0x2480


def test_responder_writes_fc6_and_fc16(responder):
    write6 = _request(1, 6, 35, 75, fmt=">BBHH")
    assert responder.feed(write6) == [write6]
    high, low = struct.unpack(">HH", struct.pack(">f", 450.0))
    assert responder.feed(_request(1, 16, 0x8034, 2, 4, high, low, fmt=">BBHHBHH")) == [
        _request(1, 16, 0x8034, 2, fmt=">BBHH")]
    model = responder.bank.model
    assert (model.rate_limit_C_per_min, model.remote_setpoint_C) == (7.5, 450.0)


def test_responder_ignores_bad_crc_and_other_slaves_and_resynchronises(responder):
    good = _request(1, 3, 1, 1, fmt=">BBHH")
    assert responder.feed(good[:-1] + bytes([good[-1] ^ 1])) == []
    assert responder.feed(_request(2, 3, 1, 1, fmt=">BBHH")) == []
    responder.buffer.clear()
    assert responder.feed(b"\x01\x03\x00" + good) == [_request(1, 3, 2, 200, fmt=">BBBH")]


def test_responder_answers_unknown_function_with_exception_01_at_the_gap(responder):
    assert responder.feed(_request(1, 1, 0, 8, fmt=">BBHH")) == []
    assert responder.gap() == [_request(1, 0x81, 1, fmt=">BBB")]
