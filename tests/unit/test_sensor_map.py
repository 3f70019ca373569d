"""Sensor maps (hardware/sensors): the schema, ``extends``, finding a map, and every shipped map."""

import math
import textwrap

import pytest

from drivers import MapError, load_sensor_map, resolve_sensor_map
from drivers._sensor_map import known_sensor_maps, sensors_dir

SHIPPED = ["balance", "conductivity-transmitter", "flow-meter", "ph-transmitter"]

MINIMAL = textwrap.dedent("""\
    [sensor]
    name = "test probe"
    models = ["TP-1"]

    [[channel]]
    name = "pH"
    register = 0
    encoding = "int16"
    scale = 0.01
    units = "1"
    valid_min = 0.0
    valid_max = 14.0

    [[channel]]
    name = "temperature_C"
    register = 1
    encoding = "int16"
    scale = 0.1
    units = "degC"
    valid_min = -10.0
    valid_max = 110.0
    """)


def write(tmp_path, text: str, name: str = "probe.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def variant_error(tmp_path, old: str, new: str) -> MapError:
    assert old in MINIMAL, old
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    with pytest.raises(MapError) as error:
        load_sensor_map(path)
    assert error.value.path == path
    return error.value


# -- the shipped maps ---------------------------------------------------------------------------------------------
def test_the_shipped_maps_are_the_four_of_the_bench():
    assert known_sensor_maps() == SHIPPED
    assert {p.stem for p in sensors_dir().glob("*.toml")} == set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_map_loads_and_says_where_each_entry_comes_from(name):
    sensor_map = load_sensor_map(name)
    assert sensor_map.name == name and sensor_map.models and sensor_map.source
    assert name in sensor_map.models  # a station may name the generic model
    for channel in sensor_map.channels:
        assert channel.source or channel.verify, f"{name} {channel.name}: neither source nor verify"
        assert channel.units and channel.valid_min < channel.valid_max
        default = channel.simulated_default
        assert default is None or channel.in_range(default)
    assert resolve_sensor_map(model=sensor_map.models[0]).name == name


def test_the_shipped_maps_read_in_few_requests_and_in_their_units():
    blocks = {name: [(b.function, b.address, b.count) for b in load_sensor_map(name).blocks()] for name in SHIPPED}
    assert blocks == {
        "balance": [(3, 0, 5)],  # display weight, gross weight and the status word: one request
        "conductivity-transmitter": [(3, 2, 4)],
        "flow-meter": [(4, 0, 2)],  # input registers
        "ph-transmitter": [(3, 0, 3), (3, 6, 1)],  # 3-5 are not in the map: the status word is a request of its own
    }
    units = {name: dict((c.name, c.units) for c in load_sensor_map(name).channels) for name in SHIPPED}
    assert units["ph-transmitter"] == {"temperature_C": "degC", "pH": "1", "electrode_mV": "mV"}
    assert units["conductivity-transmitter"]["conductivity_mS_per_cm"] == "mS/cm"
    assert units["flow-meter"] == {"flow_L_per_h": "L/h"} and units["balance"]["mass_kg"] == "kg"
    flow = load_sensor_map("flow-meter")["flow_L_per_h"]
    assert (flow.encoding, flow.word_order) == ("float32", "little")  # the meter's "swapped float"


def test_decode_is_raw_times_scale_plus_offset_in_each_encoding_and_word_order(tmp_path):
    text = MINIMAL + textwrap.dedent("""\
        [[channel]]
        name = "mass_kg"
        register = 10
        encoding = "int32"
        word_order = "little"
        scale = 0.001
        offset = -5.0
        units = "kg"
        valid_min = -100.0
        valid_max = 100.0
        """)
    sensor_map = load_sensor_map(write(tmp_path, text))
    ph, mass = sensor_map["pH"], sensor_map["mass_kg"]
    assert ph.decode([701]) == pytest.approx(7.01) and ph.encode(7.01) == [701]
    assert ph.decode([0xFFFF]) == pytest.approx(-0.01)  # int16: signed
    assert mass.raw([0xFFFE, 0xFFFF]) == -2  # least significant word first
    assert mass.decode([0x1388, 0x0000]) == pytest.approx(0.0)  # 5000 * 0.001 - 5
    assert mass.encode(0.0) == [0x1388, 0x0000]
    assert ph.out_of_range_raw() == 32767 and not ph.in_range(math.nan)


# -- the schema: each problem is `file: field: problem` -----------------------------------------------------------
@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ("register = 0", "adress = 0", "channel[0].adress", "unknown key"),
        ('[sensor]\nname = "test probe"', '[sensr]\nname = "test probe"', "sensr", "unknown key"),
        ('encoding = "int16"', 'encoding = "int8"', "channel[0].encoding", "int16"),
        ("register = 0", "register = 0\nfunction = 6", "channel[0].function", "3 or 4"),
        ("register = 0", "register = 70000", "channel[0].register", "less than or equal to 65535"),
        ("register = 0", 'register = 0\nword_order = "big"', "channel[0].word_order", "only for 32-bit"),
        ("register = 0", 'register = 0\nword_order = "middle"', "channel[0].word_order", "'big' or 'little'"),
        ("scale = 0.01", "scale = 0", "channel[0].scale", "must not be 0"),
        ("scale = 0.01", "scale = true", "channel[0].scale", "not a boolean"),
        ("valid_max = 14.0", "valid_max = -1.0", "channel[0].valid_max", "above valid_min"),
        ("valid_max = 14.0", "valid_max = inf", "channel[0].valid_max", "finite"),
        ('units = "1"', 'units = ""', "channel[0].units", "at least 1 character"),
        ("register = 0", "register = 0\nstatus_register = 8", "channel[0].fault_bits", "needs fault_bits"),
        (
            "register = 0",
            'register = 0\nfault_bits = { 0 = "broken" }',
            "channel[0].fault_bits",
            "needs status_register",
        ),
        (
            "register = 0",
            'register = 0\nstatus_register = 8\nfault_bits = { 16 = "broken" }',
            "channel[0].fault_bits.16",
            "less than or equal to 15",
        ),
        ("register = 0", "register = 0\nsimulated_default = 20.0", "channel[0].simulated_default", "outside"),
        ('name = "pH"', 'name = "p H"', "channel[0].name", "pattern"),
        ('models = ["TP-1"]', "models = []", "sensor.models", "at least 1 item"),
        ('models = ["TP-1"]', 'models = ["TP-1", "TP-1"]', "sensor.models", "more than once"),
        ('models = ["TP-1"]\n', "", "sensor.models", "missing required key"),
    ],
)
def test_a_bad_field_is_refused_as_file_field_problem(tmp_path, old, new, field, words):
    error = variant_error(tmp_path, old, new)
    matching = [line for line in str(error).splitlines() if line.startswith(f"{error.path}: {field}: ")]
    assert matching, str(error)
    assert words in matching[0], str(error)


def test_the_allowed_keys_are_listed_with_an_unknown_one(tmp_path):
    error = variant_error(tmp_path, "register = 0", "adress = 0")
    assert "allowed: name, register, function, encoding, word_order, scale" in str(error)


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ('name = "temperature_C"', 'name = "pH"', "channel[1].name", "'pH' is also channel[0]"),
        ("register = 1", "register = 0", "channel[1].register", "register 0 (FC 3) is also channel 'pH'"),
        (
            'register = 1\nencoding = "int16"',
            'register = 0\nfunction = 4\nencoding = "float32"\nword_order = "big"',
            None,
            None,
        ),  # another function's area: no overlap
        (
            "register = 1",
            'register = 1\nstatus_register = 0\nfault_bits = { 0 = "x" }',
            "channel[1].status_register",
            "0 (FC 3) is also a register of channel 'pH'",
        ),
    ],
)
def test_the_rules_between_channels(tmp_path, old, new, field, words):
    path = write(tmp_path, MINIMAL.replace(old, new, 1))
    if field is None:
        assert load_sensor_map(path).channel_names == ("pH", "temperature_C")
        return
    with pytest.raises(MapError) as error:
        load_sensor_map(path)
    assert f"{path}: {field}: {words}" in str(error.value)


def test_every_problem_of_a_file_is_reported_at_once_one_line_each(tmp_path):
    text = MINIMAL.replace('encoding = "int16"', 'encoding = "int8"', 1)
    text = text.replace("valid_min = -10.0", "valid_minimum = -10.0")
    path = write(tmp_path, text)
    with pytest.raises(MapError) as error:
        load_sensor_map(path)
    fields = sorted(line.split(": ")[1] for line in str(error.value).splitlines())
    assert fields == ["channel[0].encoding", "channel[1].valid_min", "channel[1].valid_minimum"]  # missing, unknown
    assert all(line.startswith(f"{path}: ") for line in str(error.value).splitlines())
    assert len(error.value.problems) == len(fields)


def test_a_file_that_is_not_a_sensor_map_gets_one_message(tmp_path):
    path = write(tmp_path, '[instrument]\nmaker = "Eurotherm"\n')
    with pytest.raises(MapError) as error:
        load_sensor_map(path)
    assert str(error.value) == f"{path}: sensor: missing table [sensor] and [[channel]]: not a sensor map " + (
        "(docs/instruments/sensors.md)"
    )


# -- extends ----------------------------------------------------------------------------------------------------
def test_a_child_states_only_what_differs_and_channels_merge_by_name(tmp_path):
    write(tmp_path, MINIMAL, "base.toml")
    child = write(
        tmp_path,
        textwrap.dedent("""\
            extends = "base"

            [sensor]
            models = ["TP-2"]

            [[channel]]
            name = "pH"
            register = 20

            [[channel]]
            name = "electrode_mV"
            register = 22
            encoding = "int16"
            scale = 0.1
            units = "mV"
            valid_min = -1000.0
            valid_max = 1000.0
            """),
        "child.toml",
    )
    sensor_map = load_sensor_map(child)
    assert sensor_map.channel_names == ("pH", "temperature_C", "electrode_mV")
    assert (sensor_map["pH"].register, sensor_map["pH"].scale, sensor_map["temperature_C"].register) == (20, 0.01, 1)
    assert (sensor_map.sensor_name, sensor_map.models) == ("test probe", ("TP-2",))


def test_a_child_must_say_which_sensors_it_is_for(tmp_path):
    write(tmp_path, MINIMAL, "base.toml")
    child = write(tmp_path, 'extends = "base"\n', "child.toml")
    with pytest.raises(MapError) as error:
        load_sensor_map(child)
    assert str(error.value) == f"{child}: sensor.models: missing required key"


def test_a_childs_own_mistake_names_its_file_a_broken_parent_its_own(tmp_path):
    write(tmp_path, MINIMAL, "base.toml")
    child = write(
        tmp_path, 'extends = "base"\n[sensor]\nmodels = ["X"]\n[[channel]]\nname = "pH"\nscael = 2\n', "c.toml"
    )
    with pytest.raises(MapError) as error:
        load_sensor_map(child)
    assert f"{child}: channel[0].scael: unknown key" in str(error.value)
    broken = write(tmp_path, MINIMAL.replace('units = "1"', 'unit = "1"'), "broken.toml")
    child = write(tmp_path, 'extends = "broken.toml"\n[sensor]\nmodels = ["X"]\n', "c2.toml")
    with pytest.raises(MapError) as error:
        load_sensor_map(child)
    assert f"{broken}: channel[0].unit: unknown key" in str(error.value)


@pytest.mark.parametrize(
    "files, load, words",
    [
        ({"a.toml": 'extends = "b"\n', "b.toml": 'extends = "a"\n'}, "a.toml", "extends: a cycle: a -> b -> a"),
        ({"a.toml": 'extends = "nowhere"\n'}, "a.toml", "extends: no sensor map 'nowhere' beside this file"),
        ({"a.toml": "extends = 3\n"}, "a.toml", "extends: must be the name or path of a sensor map"),
    ],
)
def test_cycles_and_missing_parents_are_errors_on_extends(tmp_path, files, load, words):
    for name, text in files.items():
        write(tmp_path, text, name)
    with pytest.raises(MapError, match=words):
        load_sensor_map(tmp_path / load)


def test_a_shipped_map_can_be_extended_by_name_from_anywhere(tmp_path):
    child = write(tmp_path, 'extends = "ph-transmitter"\n[sensor]\nmodels = ["PH-2"]\n', "mine.toml")
    assert load_sensor_map(child).channel_names == load_sensor_map("ph-transmitter").channel_names


# -- finding a map --------------------------------------------------------------------------------------------------
def test_an_unknown_map_lists_the_known_ones_and_a_model_must_be_the_maps():
    with pytest.raises(MapError, match="no sensor map 'ph-meter' \\(known: balance, conductivity-transmitter"):
        load_sensor_map("ph-meter")
    with pytest.raises(MapError, match="not one that sensor map flow-meter covers"):
        resolve_sensor_map("SUP-PH8001", "flow-meter")
    with pytest.raises(MapError, match="no sensor map covers model 'XYZ'; available sensor maps: balance \\("):
        resolve_sensor_map("XYZ")


def test_a_new_sensor_is_a_map_dropped_in_the_hardware_folder(tmp_path, monkeypatch):
    (tmp_path / "sensors").mkdir()
    write(tmp_path / "sensors", MINIMAL, "my-probe.toml")
    monkeypatch.setenv("REMDAQ_HARDWARE_DIR", str(tmp_path))
    assert known_sensor_maps() == ["my-probe"]
    assert resolve_sensor_map("TP-1").name == "my-probe"
