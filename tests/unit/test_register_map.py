"""Register maps (hardware/maps) and the simulator's responder answering exactly what a map says."""

import dataclasses
import struct
import tomllib
from pathlib import Path

import pytest

from drivers import MapError, ModelNotCovered, load_register_map, register_map_models, resolve_register_map
from drivers._register_map import STATUS_FLAGS
from drivers.maps import find_map, known_maps
from drivers.sim._furnace_plant import FurnaceModel
from drivers.sim.furnace import RegisterBank, RtuResponder, crc16

DESIGN_ADDRESSES = {  # the addresses both families share (2000-series addresses)
    "process_value": 1,
    "target_setpoint": 2,
    "working_setpoint": 5,
    "remote_setpoint": 26,
    "setpoint_rate_limit": 35,
    "status_word": 75,
    "ident": 122,
    "instrument_mode": 199,
    "auto_manual": 273,
    "remote_local_select": 276,
    "setpoint_rate_units": 531,
}
SHIPPED = ["eurotherm-2400", "eurotherm-3200", "eurotherm-3216p", "eurotherm-epc3000", "eurotherm-nanodac"]


@pytest.mark.parametrize("name", ["eurotherm-2400", "eurotherm-3200"])
def test_maps_load_with_the_design_addresses(name):
    regmap = load_register_map(name)
    assert {n: regmap[n].address for n in DESIGN_ADDRESSES} == DESIGN_ADDRESSES
    assert set(STATUS_FLAGS) <= set(regmap.status_bits)
    live = regmap[regmap.live_setpoint]
    assert live.name == "remote_setpoint" and live.writable and not live.eeprom
    assert regmap[regmap.target_setpoint].eeprom
    assert regmap.float_address(regmap["process_value"]) == 0x8002
    assert regmap.remote_select == ("remote_local_select", 1)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_analog_register_has_a_valid_range_and_the_poll_is_one_block(name):
    regmap = load_register_map(name)
    for register in regmap.registers.values():
        if register.kind == "analog":
            assert register.minimum is not None and register.maximum is not None, register.name
    assert (regmap["process_value"].minimum, regmap["process_value"].maximum) == regmap.input_range_C
    assert (regmap["output_power"].minimum, regmap["output_power"].maximum) == (0.0, 100.0)
    poll = ["process_value", "target_setpoint", "output_power", "working_setpoint"]
    blocks = [[register.address for register in block] for block in regmap.blocks(poll)]
    if name == "eurotherm-nanodac":  # auto/manual (513, a word) sits in the loop's block: not in the float area
        assert blocks == [[512], [514, 515, 516]]
    else:
        assert blocks == [[1, 2, 3, 4, 5]]
    if not regmap.status_registers:
        assert regmap.blocks(["process_value", "status_word"]) == [(regmap["process_value"],), (regmap["status_word"],)]


def test_the_corrections_of_issue_15_are_in_the_maps():
    e2400, e3200 = load_register_map("eurotherm-2400"), load_register_map("eurotherm-3200")
    # the 2400 ident decodes as 2 / range / size / type: a 2416 PID reads 0x2460, VP variants end in 2
    assert e2400.ident_codes[0x2460] == "2416" and 0x2160 not in e2400.ident_codes
    assert {e2400.ident_codes[c] for c in (0x2442, 0x2482, 0x2462)} == {"2404VP", "2408VP", "2416VP"}
    # the 3200's working output is register 4 (3 is the manual output value); 23 is its timer status
    assert (e3200["output_power"].address, e3200["manual_output"].address) == (4, 3)
    assert e3200["timer_status"].address == 23 and "program_status" not in e3200.registers
    # rate units (531), ramp disable (78), comms resolution (12550) are read by the driver
    assert dict(e2400.configuration) == {
        "rate_units": "setpoint_rate_units",
        "rate_units_per_minute": 1,
        "rate_disable": "rate_limit_disable",
        "comms_resolution": "comms_resolution",
        "integer_resolution": 1,
    }
    assert (e2400["rate_limit_disable"].address, e2400["comms_resolution"].address) == (78, 12550)
    assert "comms_resolution" not in e3200.registers  # 12550 is the comms delay on a 3216
    # the 3200 status bits 12-14 are decoded, remote SP fail among them
    assert {f: e3200.status_bits[f] for f in ("new_alarm", "ramp_running", "remote_sp_fail")} == {
        "new_alarm": 12,
        "ramp_running": 13,
        "remote_sp_fail": 14,
    }
    assert {f: e2400.status_bits[f] for f in ("dc_module_fault", "segment_sync", "remote_input_break")} == {
        "dc_module_fault": 11,
        "segment_sync": 12,
        "remote_input_break": 13,
    }


def test_the_epc3000_and_nanodac_maps():
    epc, nanodac = load_register_map("eurotherm-epc3000"), load_register_map("eurotherm-nanodac")
    assert epc.watchdog is not None and (epc[epc.watchdog.timeout].address, epc[epc.watchdog.flag].address) == (
        1233,
        1236,
    )
    assert epc[epc.watchdog.fallback_setpoint].address == 25 and epc["setpoint_rate_limit_down"].address == 1667
    assert (epc["remote_setpoint"].address, epc["output_power"].address, epc.area) == (277, 4, "float")
    assert nanodac["process_value"].address == 512 and nanodac.status_registers["sensor_break"] == "loop_sensor_break"
    assert (nanodac.watchdog, nanodac.programmer, epc.programmer) == (None, None, None)


def test_the_2400_programmer_layout_makes_its_segment_registers():
    layout = load_register_map("eurotherm-2400").programmer
    regmap = load_register_map("eurotherm-2400")
    assert layout is not None and layout.segments == 16
    assert regmap["segment_1_type"].address == 8336 and regmap["segment_2_target"].address == 8345
    assert regmap["segment_16_end_type"].address == 8336 + 15 * 8 + 3
    assert regmap["segment_3_target"].decimals == "display" and regmap["segment_3_time_or_rate"].decimals == 1


def test_valid_range_reads_as_text():
    regmap = load_register_map("eurotherm-2400")
    assert regmap["output_power"].valid_range == "0..100 percent"
    assert not regmap["output_power"].in_range(900.0) and regmap["output_power"].in_range(65.5)


def test_the_two_families_differ_where_documented():
    e2400, e3200 = load_register_map("eurotherm-2400"), load_register_map("eurotherm-3200")
    assert (e2400.status_bits["tuning"], e3200.status_bits["tuning"]) == (8, 15)
    assert (e2400["output_power"].address, e3200["output_power"].address) == (3, 4)
    assert (e2400.area, e3200.area) == ("integer", "float")
    assert not set(e2400.ident_codes) & set(e3200.ident_codes)


def _write_variant(tmp_path, old, new):
    text = find_map("eurotherm-2400").read_text()
    assert old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("[registers.ident]\naddress = 122", "[registers.ident]\naddress = 75", "share an address"),
        ("[registers.ident]", "[registers.not_ident]", "required register 'ident'"),
        ('live = "remote_setpoint"', 'live = "target_setpoint"', "EEPROM"),
        ("tuning = 8", "tuning = 9", "distinct bit"),
        ("program_end = 9\n", "", "lacks program_end"),
        ('area = "integer"', 'area = "bcd"', "area"),
        ('decimals = "display"', 'decimals = "lots"', "decimals"),
        ("min = 0.0                         # heat-only output\n", "", "needs min and max"),
        ('max = 100.0\ndescription = "Output power', 'max = -1.0\ndescription = "Output power', "min <= max"),
    ],
)
def test_a_broken_map_is_refused_naming_the_file(tmp_path, old, new, message):
    path = _write_variant(tmp_path, old, new)
    with pytest.raises(ValueError, match=message) as error:
        load_register_map(path)
    assert "broken.toml" in str(error.value)


# -- the schema: every key known, every value in its range, every problem at once -----------------
def _variant_error(tmp_path, old, new) -> MapError:
    path = _write_variant(tmp_path, old, new)
    with pytest.raises(MapError) as error:
        load_register_map(path)
    return error.value


@pytest.mark.parametrize(
    "old, new, field, count",
    [
        (
            "[registers.process_value]\naddress = 1",
            "[registers.process_value]\nadress = 1",
            "registers.process_value.adress",
            2,
        ),  # and registers.process_value.address: missing required key
        ("[encoding]", "[encodeing]", "encodeing", 1),
        ('maker = "Eurotherm"', 'maker = "Eurotherm"\nmakers = "Eurotherm"', "instrument.makers", 1),
        ('units = "percent"', 'unit = "percent"', "registers.output_power.unit", 1),
        ("sensor_break = 5", "sensor_brake = 5", "status_bits.sensor_brake", 1),
        ("complete = 16", "completed = 16", "program_status.completed", 1),
        (
            "float_base = 0x8000\n",
            'float_base = 0x8000\ndisplay_decimals = "decimal_places"\n',
            "encoding.display_decimals",
            1,
        ),  # a key nothing read is gone from the format
    ],
)
def test_a_map_with_a_misspelt_key_fails_to_load_with_file_field_unknown_key(tmp_path, old, new, field, count):
    path = _write_variant(tmp_path, old, new)
    with pytest.raises(MapError) as error:
        load_register_map(path)
    assert f"{path}: {field}: unknown key" in str(error.value)
    assert error.value.path == path and len(error.value.problems) == count


def test_the_keys_nothing_read_are_refused_and_gone_from_the_shipped_maps(tmp_path):
    error = _variant_error(tmp_path, 'maker = "Eurotherm"', 'maker = "Eurotherm"\nident_register = "ident"')
    assert "instrument.ident_register: unknown key" in str(error)
    for name in known_maps("registers"):
        text = find_map(name).read_text()
        assert "ident_register" not in text and "display_decimals" not in text
    assert load_register_map("eurotherm-2400").maker == "Eurotherm"  # read: Eurotherm.ident names the maker


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        (
            "[registers.ident]\naddress = 122",
            "[registers.ident]\naddress = 65536",
            "registers.ident.address",
            ["less than or equal to 65535"],
        ),
        (
            "[registers.ident]\naddress = 122",
            "[registers.ident]\naddress = -1",
            "registers.ident.address",
            ["greater than or equal to 0"],
        ),
        (
            "[registers.ident]\naddress = 122",
            "[registers.ident]\naddress = 40000",
            "registers.ident.address",
            ["below encoding.float_base 32768"],
        ),
        (
            "[registers.ident]\naddress = 122",
            "[registers.ident]\naddress = 122.0",
            "registers.ident.address",
            ["valid integer"],
        ),
        (
            "[registers.ident]\naddress = 122",
            "[registers.ident]\naddress = true",
            "registers.ident.address",
            ["not a boolean"],
        ),
        ("decimals = 1", "decimals = 5", "registers.output_power.decimals", ['0..4 or "display"']),
        ("tuning = 8", "tuning = 16", "status_bits.tuning", ["less than or equal to 15"]),
        ("single_write_function = 6", "single_write_function = 3", "encoding.single_write_function", ["6", "16"]),
        ("float_base = 0x8000", "float_base = 0x10000", "encoding.float_base", ["65535"]),
        ("high_C = 1372.0", "high_C = inf", "input_range.high_C", ["finite"]),
        ("high_C = 1372.0", "high_C = -250.0", "input_range.high_C", ["above low_C"]),
        (
            'address = 273\naccess = "rw"\nkind = "word"\nmin = 0\nmax = 1\n',
            'address = 273\naccess = "rw"\nkind = "word"\nmin = 0\nmax = 70000\n',
            "registers.auto_manual.max",
            ["integer 0..65535"],
        ),
        (
            'max = 100.0\ndescription = "Output power',
            'max = 1e12\ndescription = "Output power',
            "registers.output_power.max",
            ["less than or equal to"],
        ),
        ('"0x2480" = "2408"', '"0x2480" = "2409"', "instrument.ident_codes.0x2480", ["not in instrument.models"]),
        ('"0x2480" = "2408"', '"0x1_0000" = "2408"', "instrument.ident_codes.0x1_0000", ["65535"]),
        (
            'models = ["2400", "2404", "2408", "2416", "2404VP", "2408VP", "2416VP"]',
            "models = []",
            "instrument.models",
            ["at least 1"],
        ),
        ('area = "integer"', 'area = "bcd"', "encoding.area", ["'integer' or 'float'"]),
        ("eeprom = false", "eeprom = 0", "registers.remote_setpoint.eeprom", ["boolean"]),
        (
            '[registers.instrument_mode]\naddress = 199\naccess = "r"\nkind = "word"',
            '[registers.instrument_mode]\naddress = 199\naccess = "r"\nkind = "word"\ndecimals = 1',
            "registers.instrument_mode.decimals",
            ["only for analog registers"],
        ),
        ("[registers.ident]", "[registers.Ident]", "registers.Ident", ["pattern"]),
    ],
)
def test_out_of_range_or_mistyped_values_are_refused_naming_file_and_field(tmp_path, old, new, field, words):
    error = _variant_error(tmp_path, old, new)
    message = str(error)
    assert message.startswith(f"{error.path}: {field}: "), message
    for word in words:
        assert word in message, message


def test_every_problem_of_a_map_file_is_reported_at_once_one_line_each(tmp_path):
    path = _write_variant(tmp_path, "[registers.process_value]\naddress = 1", "[registers.process_value]\nadress = 1")
    path.write_text(path.read_text().replace("tuning = 8", "tuning = 99").replace('area = "integer"', "area = 5"))
    with pytest.raises(MapError) as error:
        load_register_map(path)
    lines = str(error.value).splitlines()
    assert len(lines) == len(error.value.problems) == 4  # adress unknown, address missing, tuning, area
    assert all(line.startswith(f"{path}: ") for line in lines)
    fields = {problem.split(":", 1)[0] for problem in error.value.problems}
    assert fields == {
        "registers.process_value.adress",
        "registers.process_value.address",
        "status_bits.tuning",
        "encoding.area",
    }


def test_a_file_that_is_not_a_register_map_gets_one_message():
    with pytest.raises(MapError) as error:
        load_register_map(find_map("scpi-spectrometer"))
    assert error.value.problems == (
        "registers: missing table [registers]: not a register map (a register map has one, or extends a map that has)",
    )


# -- extends ----------------------------------------------------------------------------------
def _copy_2400(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    parent = folder / "eurotherm-2400.toml"
    parent.write_text(find_map("eurotherm-2400").read_text())
    return parent


CHILD = """\
extends = "eurotherm-2400"

[instrument]
family = "9000"
models = ["9000", "9001"]

[instrument.ident_codes]
"0x9001" = "9001"

[registers.setpoint_rate_limit]
max = 99.9                     # one field of one register; the rest of it is inherited

[registers.alarm_3_setpoint]   # a register the parent has not
address = 15
access = "rw"
decimals = "display"
units = "degC"
min = 0.0
max = 1300.0
eeprom = true

[status_bits]
tuning = 14
"""


def test_a_child_states_only_what_differs_tables_merge_and_other_values_replace(tmp_path):
    _copy_2400(tmp_path)
    (tmp_path / "acme-9000.toml").write_text(CHILD)
    parent, child = load_register_map(tmp_path / "eurotherm-2400.toml"), load_register_map(tmp_path / "acme-9000.toml")
    assert (child.name, child.family, child.models, dict(child.ident_codes)) == (
        "acme-9000",
        "9000",
        ("9000", "9001"),
        {0x9001: "9001"},
    )  # never inherited
    assert (child.maker, child.description, child.area) == (parent.maker, parent.description, parent.area)
    rate = child["setpoint_rate_limit"]
    assert rate == dataclasses.replace(parent["setpoint_rate_limit"], maximum=99.9)
    assert child["alarm_3_setpoint"].address == 15 and child["alarm_3_setpoint"].kind == "analog"  # default kind
    assert set(child.registers) == set(parent.registers) | {"alarm_3_setpoint"}
    assert dict(child.status_bits) == {**parent.status_bits, "tuning": 14}
    assert (child.program_status, child.input_range_C) == (parent.program_status, parent.input_range_C)


def test_a_child_must_state_which_instruments_it_is_for(tmp_path):
    _copy_2400(tmp_path)
    (tmp_path / "child.toml").write_text('extends = "eurotherm-2400"\n\n[encoding]\narea = "float"\n')
    with pytest.raises(MapError) as error:
        load_register_map(tmp_path / "child.toml")
    assert set(error.value.problems) == {
        "instrument.family: missing required key",
        "instrument.models: missing required key",
    }


def test_a_child_is_checked_as_merged_and_its_own_misspelling_names_its_file(tmp_path):
    _copy_2400(tmp_path)
    path = tmp_path / "child.toml"
    path.write_text(CHILD.replace("max = 99.9 ", "maxi = 99.9").replace("tuning = 14", "tuning = 9"))
    with pytest.raises(MapError) as error:
        load_register_map(path)
    assert f"{path}: registers.setpoint_rate_limit.maxi: unknown key" in str(error.value)
    path.write_text(CHILD.replace("tuning = 14", "tuning = 9"))  # program_end is bit 9 in the parent
    with pytest.raises(MapError, match=r"child.toml: status_bits.(tuning|program_end): bit 9 is also"):
        load_register_map(path)


def test_extends_by_path_relative_to_the_child_and_by_a_name_in_hardware_maps(tmp_path):
    parent = _copy_2400(tmp_path / "elsewhere")
    (tmp_path / "by-path.toml").write_text(CHILD.replace('"eurotherm-2400"', '"elsewhere/eurotherm-2400.toml"'))
    (tmp_path / "by-name.toml").write_text(CHILD)  # no eurotherm-2400.toml beside it: the one in hardware/maps
    assert load_register_map(tmp_path / "by-path.toml").registers.keys() >= load_register_map(parent).registers.keys()
    assert load_register_map(tmp_path / "by-name.toml")["ident"].address == 122


@pytest.mark.parametrize(
    "files, load, words",
    [
        ({"a": 'extends = "b"\n', "b": 'extends = "a"\n'}, "a", ["b.toml: extends: a cycle: a -> b -> a"]),
        ({"a": 'extends = "a"\n'}, "a", ["a.toml: extends: a cycle: a -> a"]),
        (
            {"a": 'extends = "b"\n', "b": 'extends = "c"\n', "c": 'extends = "b"\n'},
            "a",
            ["c.toml: extends: a cycle: a -> b -> c -> b"],
        ),
        ({"a": 'extends = "no-such-map"\n'}, "a", ["a.toml: extends: no register map 'no-such-map'", "known:"]),
        ({"a": 'extends = "../../etc/passwd"\n'}, "a", ["a.toml: extends: no register map"]),
        ({"a": "extends = 5\n"}, "a", ["a.toml: extends: must be the name or path of a register map (got 5)"]),
    ],
)
def test_cycles_and_missing_parents_are_clear_errors(tmp_path, files, load, words):
    for stem, content in files.items():
        (tmp_path / f"{stem}.toml").write_text(content)
    with pytest.raises(MapError) as error:
        load_register_map(tmp_path / f"{load}.toml")
    for word in words:
        assert word in str(error.value)


def test_a_broken_parent_is_reported_with_the_parent_file(tmp_path):
    parent = _copy_2400(tmp_path)
    parent.write_text(parent.read_text().replace("tuning = 8", "tunning = 8"))
    (tmp_path / "child.toml").write_text(CHILD)
    with pytest.raises(MapError) as error:
        load_register_map(tmp_path / "child.toml")
    assert error.value.path == parent and f"{parent}: status_bits.tunning: unknown key" in str(error.value)


# -- the shipped maps ---------------------------------------------------------------------------
def test_every_shipped_map_loads_and_says_which_models_it_covers():
    names = known_maps("registers")
    assert names == SHIPPED
    assert register_map_models() == {
        "eurotherm-2400": ("2400", "2404", "2408", "2416", "2404VP", "2408VP", "2416VP"),
        "eurotherm-3200": ("3200", "3204", "3208", "3216"),
        "eurotherm-3216p": ("3216P",),
        "eurotherm-epc3000": ("EPC3000", "EPC3016", "EPC3008", "EPC3004"),
        "eurotherm-nanodac": ("nanodac",),
    }
    for name in names:
        regmap = load_register_map(name)
        assert set(regmap.ident_codes.values()) <= set(regmap.models) and regmap.family in regmap.models


def test_the_3200_map_is_a_whole_map_because_a_derived_one_cannot_remove_what_differs():
    raw = tomllib.loads(find_map("eurotherm-3200").read_text())
    assert "extends" not in raw
    parent = tomllib.loads(find_map("eurotherm-2400").read_text())
    # what the 2400 has at the addresses where the 3200 has something else, or nothing
    assert {"program_status", "comms_resolution", "rate_limit_disable"} <= set(parent["registers"])
    assert not {"program_status", "comms_resolution", "rate_limit_disable"} & set(raw["registers"])


@pytest.mark.parametrize("name", SHIPPED)
def test_the_simulator_serves_every_shipped_map(name):
    bank = RegisterBank(load_register_map(name), FurnaceModel())
    assert set(bank.served_values()) == set(load_register_map(name).registers)


# -- which map a model means ------------------------------------------------------------------------
def test_a_model_resolves_to_the_one_map_that_covers_it_and_is_checked_against_a_named_map():
    assert resolve_register_map("2416").name == "eurotherm-2400"
    assert resolve_register_map("3200").name == "eurotherm-3200"
    assert resolve_register_map("3216", "eurotherm-3200").name == "eurotherm-3200"
    assert resolve_register_map(None, "eurotherm-3200").name == "eurotherm-3200"  # no model: not checked
    with pytest.raises(
        ModelNotCovered,
        match="no register map covers model '2500'; available maps: "
        r"eurotherm-2400 \(2400, 2404, 2408, 2416, 2404VP, 2408VP, 2416VP\), eurotherm-3200 \(3200",
    ):
        resolve_register_map("2500")
    with pytest.raises(ModelNotCovered, match="'2400' is not one that register map eurotherm-3200 covers"):
        resolve_register_map("2400", "eurotherm-3200")


def test_two_maps_covering_one_model_need_the_map_named(tmp_path, monkeypatch):
    maps = tmp_path / "maps"
    _copy_2400(maps)
    (maps / "copy.toml").write_text(find_map("eurotherm-2400").read_text())
    monkeypatch.setenv("REMDAQ_HARDWARE_DIR", str(tmp_path))
    with pytest.raises(ModelNotCovered, match=r"covered by several register maps \(copy, eurotherm-2400\)"):
        resolve_register_map("2408")
    assert resolve_register_map("2408", "copy").name == "copy"


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


@pytest.mark.parametrize(
    "request_fields, fmt, code",
    [
        ((1, 3, 6, 1), ">BBHH", 2),  # address 6 is not in the map
        ((1, 3, 1, 6), ">BBHH", 2),  # block runs into unmapped 6
        ((1, 3, 1, 0), ">BBHH", 3),  # count 0
        ((1, 3, 0x8003, 2), ">BBHH", 2),  # float area, misaligned
        ((1, 6, 1, 100), ">BBHH", 2),  # PV is read-only
        ((1, 6, 26, 12001), ">BBHH", 3),  # 1200.1 C is above the comms SP max
        ((1, 6, 273, 2), ">BBHH", 3),  # auto/manual is 0..1
    ],
)
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
        _request(1, 16, 0x8034, 2, fmt=">BBHH")
    ]
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


# -- the 3216P: a ramp_dwell programmer laid over the 3200 map (decision 0087) --------------------------------
def test_the_3216p_map_extends_the_3200_with_eight_ramp_dwell_segments_from_1280():
    regmap, parent = load_register_map("eurotherm-3216p"), load_register_map("eurotherm-3200")
    layout = regmap.programmer
    assert layout is not None and parent.programmer is None  # the plain 3200 still has none
    assert (layout.style, layout.segments, layout.end_register, layout.end_dwell) == (
        "ramp_dwell",
        8,
        "program_end_type",
        1,
    )
    assert (layout.control, layout.status, regmap["timer_status"].address, regmap["timer_status"].writable) == (
        "timer_status",
        "timer_status",
        23,
        True,
    )
    assert [regmap[f"segment_1_{f}"].address for f in ("dwell", "target", "rate")] == [1280, 1281, 1282]
    assert [regmap[f"segment_8_{f}"].address for f in ("dwell", "target", "rate")] == [1301, 1302, 1303]
    assert regmap["segment_3_dwell"].is_time and regmap["segment_3_dwell"].units == "min"
    assert regmap["program_end_type"].address == 328 and regmap["program_segment"].address == 330
    assert dict(regmap.program_status) == {"reset": 0, "run": 1, "hold": 2, "complete": 3}
    assert regmap.float_address(regmap["segment_1_dwell"]) == 0x8A00
    assert regmap.area == parent.area == "float" and regmap["output_power"].address == 4  # the 3200's
    assert resolve_register_map("3216P").name == "eurotherm-3216p"


def _write_3216p_variant(tmp_path, old: str, new: str, parent: str = "eurotherm-3216p") -> Path:
    text = find_map(parent).read_text()
    assert old in text, old
    path = tmp_path / "variant.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ('style = "ramp_dwell"', 'style = "ramps"', "programmer.style", ["'typed' or 'ramp_dwell'"]),
        (
            'end_register = "program_end_type"',
            'end_regster = "program_end_type"',
            "programmer.end_regster",
            ["unknown key"],
        ),
        ('end_register = "program_end_type"', "", "programmer.end_register", ["missing: a ramp_dwell program ends"]),
        (
            'end_register = "program_end_type"',
            'end_register = "program_segment"',
            "programmer.end_register",
            ["writable"],
        ),
        (
            'end_register = "program_end_type"',
            'end_register = "nothing"',
            "programmer.end_register",
            ["not a register"],
        ),
        ('kind = "time"', 'kind = "word"', "programmer.fields.dwell.kind", ["'word': must be 'analog' or 'time'"]),
        ('kind = "time"', 'kind = "duration"', "programmer.fields.dwell.kind", ["'analog', 'word' or 'time'"]),
        ("[programmer.fields.rate]", "[programmer.fields.ramp]", "programmer.fields.ramp", ["'rate'"]),
        ("[programmer.fields.rate]", "[programmer.fields.type]", "programmer.fields", ["lacks rate (a ramp_dwell"]),
        (
            "[programmer.fields.rate]",
            "[programmer.fields.type]",
            "programmer.fields.type",
            ["not a field of a ramp_dwell"],
        ),
        (
            "[programmer.fields.dwell]",
            "[programmer.segment_types]\nend = 0\n\n[programmer.fields.dwell]",
            "programmer.segment_types",
            ["only for style typed"],
        ),
        ("max = 5999.0 ", "", "programmer.fields.dwell", ["a time field needs min and max"]),
        ('units = "min"\n', 'units = "min"\ndecimals = 1\n', "programmer.fields.dwell.decimals", ["only for analog"]),
    ],
)
def test_the_ramp_dwell_layout_is_checked_naming_file_and_field(tmp_path, old, new, field, words):
    path = _write_3216p_variant(tmp_path, old, new)
    with pytest.raises(MapError) as error:
        load_register_map(path)
    matching = [p for p in error.value.problems if p.startswith(f"{field}: ")]
    assert matching, error.value.problems
    for word in words:
        assert any(word in p for p in matching), (word, matching)


def test_a_typed_programmer_refuses_the_ramp_dwell_keys_and_a_time_needs_the_float_area(tmp_path):
    path = _write_variant(tmp_path, "end_dwell = 0 ", 'end_register = "program_number"\nend_dwell = 0 ')
    with pytest.raises(MapError, match="programmer.end_register: only for style ramp_dwell"):
        load_register_map(path)
    path = _write_variant(
        tmp_path,
        "[programmer.fields.end_type]",
        "[programmer.fields.dwell]\noffset = 4\n\n[programmer.fields.end_type]",
    )
    with pytest.raises(MapError, match="programmer.fields.dwell: not a field of a typed segment"):
        load_register_map(path)
    path = _write_3216p_variant(tmp_path, "[programmer]", '[encoding]\narea = "integer"\n\n[programmer]')
    with pytest.raises(MapError) as error:
        load_register_map(path)
    assert 'programmer.fields.dwell.kind: "time" is a duration in the float area (encoding.area = "float")' in (
        error.value.problems
    )


class SimulatorPort:
    """A serial port wired to the simulator's RTU responder in this process: an answer arrives when read."""

    def __init__(self, responder: RtuResponder, **settings) -> None:
        self.responder, self.port = responder, settings.get("port")
        self.baudrate, self.timeout, self.is_open = settings.get("baudrate", 9600), settings.get("timeout"), True
        self._answers: list[bytes] = []
        self._received = bytearray()

    def write(self, data: bytes) -> int:
        self._answers += self.responder.feed(bytes(data))
        return len(data)

    def read(self, size: int = 1) -> bytes:
        if not self._received and self._answers:
            self._received += self._answers.pop(0)
        chunk = bytes(self._received[:size])
        del self._received[:size]
        return chunk

    @property
    def in_waiting(self) -> int:
        return len(self._received)

    def reset_input_buffer(self) -> None:
        self._received.clear()

    def reset_output_buffer(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False


def test_the_simulated_3216p_runs_a_loaded_program_to_its_safe_end_by_itself():
    from drivers import Eurotherm, ProgramSegment

    regmap = load_register_map("eurotherm-3216p")
    model = FurnaceModel(input_range_C=regmap.input_range_C)
    bank = RegisterBank(regmap, model)
    responder = RtuResponder(bank, address=1)
    furnace = Eurotherm(
        "sim://3216p",
        model="3216P",
        max_temperature_C=1100.0,
        max_rate_C_per_min=20.0,
        safe_setpoint_C=25.0,
        serial_factory=lambda **settings: SimulatorPort(responder, **settings),
    )
    with furnace:
        furnace.prepare()  # rate units, remote SP selected
        cool = furnace.load_program([ProgramSegment(10.0, 300.0, 5.0)], end_rate_C_per_min=20.0)
        assert cool == 2
        assert bank.served_values()["program_end_type"] == 1  # dwell at the last setpoint
        assert model.programmer.segments[1] == {"target": 300.0, "rate": 10.0, "dwell": 5.0}
        assert all(model.programmer.segments[n] == {"target": 25.0, "rate": 20.0, "dwell": 0.0} for n in range(2, 9))
        furnace.run_program()
        seen = []
        for minute in range(1, 60):  # the PC goes away: the controller runs on, in simulated time
            model.advance(60.0 * minute)
            seen.append((model.programmer.state, model.programmer.segment, round(model.working_setpoint_C, 3)))
        ramp_done = next(i for i, (_, _, wsp) in enumerate(seen, start=1) if wsp == 300.0)
        assert ramp_done == 28  # 20 C to 300 C at 10 C/min
        assert seen[ramp_done + 3][:2] == ("run", 1) and seen[ramp_done + 4][1] == 2  # the 5 min dwell, then on
        assert ("run", 2) in {s[:2] for s in seen}  # the ramp down to the safe setpoint
        state, segment, wsp = seen[-1]
        assert (state, wsp) == ("complete", 25.0)  # 275 C at 20 C/min, then the fillers: safe, by itself
        assert furnace.program_state() == ("complete", 0)
        assert bank.served_values()["timer_status"] == regmap.program_status["complete"]
        assert furnace.read_all().working_setpoint_C == 25.0
        assert model.target_setpoint_C == 25.0  # and it stays there (end type dwell)
