"""Station and recipe files: the shipped ones load; every kind of mistake gets one clear message."""

import os
import re
from pathlib import Path

import pytest

from daq.config import ConfigError, check_recipe_against_station, load_recipe, load_station
from drivers import register_map_models

ROOT = Path(__file__).resolve().parents[2]
SIM_STATION = ROOT / "hardware/stations/sim.toml"
EXAMPLE_STATION = ROOT / "hardware/stations/example-bench.toml"
RECIPES = sorted((ROOT / "seeds/recipes").glob("*.toml"))
CASCADE_STATION = ROOT / "hardware/stations/sim-cascade.toml"
#: recipes that name the instruments of one station (zones, streams, sensors), and that station
NAMED_INSTRUMENT_RECIPES = {"cascade.toml": CASCADE_STATION}

GOOD_STATION = """
[station]
name = "t"
data_dir = "data"

[furnace]
port = "/dev/ttyUSB0"
max_temperature_C = 1000
max_ramp_C_per_min = 10

[spectrometer]
resource = "TCPIP0::10.0.0.5::5025::SOCKET"
"""

GOOD_RECIPE = """
[recipe]
title = "t"
sample = "s"
operator = "o"
analytes = ["Nd", "Pr"]
target = "Nd"

[furnace]
[[furnace.segments]]
ramp_C_per_min = 5
target_C = 450
dwell_min = 60

[spectrometer]
integration_time_s = 0.05
"""


def _listing(maps: dict) -> str:
    """How a refusal lists maps and their models (the maps of hardware/maps, read, not written down here)."""
    return ", ".join(f"{name} ({', '.join(models)})" for name, models in maps.items())


SHIPPED_MAPS = register_map_models()
MAPS_LISTED = "available maps: " + _listing(SHIPPED_MAPS)
KNOWN_MAPS = "known: " + ", ".join(SHIPPED_MAPS)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_stations_load():
    sim = load_station(SIM_STATION)
    assert sim.simulated and sim.furnace.simulated and sim.spectrometer.simulated
    bench = load_station(EXAMPLE_STATION)
    assert not bench.simulated
    assert bench.furnace.port.startswith("/dev/serial/by-id/")
    assert bench.spectrometer.resource.endswith("::SOCKET")


@pytest.mark.parametrize("recipe_path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_fit_the_shipped_stations(recipe_path):
    recipe = load_recipe(recipe_path)
    if recipe_path.name in NAMED_INSTRUMENT_RECIPES:
        plan = check_recipe_against_station(recipe, load_station(NAMED_INSTRUMENT_RECIPES[recipe_path.name]))
        assert plan.zones and plan.streams and plan.limits
        return
    check_recipe_against_station(recipe, load_station(SIM_STATION))
    check_recipe_against_station(recipe, load_station(EXAMPLE_STATION))
    # a recipe of one furnace and one spectrometer runs on a station of named instruments too: its program
    # on every zone, its schedule on the first spectrometer
    plan = check_recipe_against_station(recipe, load_station(CASCADE_STATION))
    assert len(plan.zones) == (3 if recipe.furnace else 0) and len(plan.streams) <= 1


def assert_one_clear_message(error, path, field, *words):
    message = str(error.value)
    assert str(path) in message
    assert field in message
    for word in words:
        assert word in message
    assert len(error.value.problems) == 1


@pytest.mark.parametrize(
    "edit, field, words",
    [
        (("max_ramp_C_per_min = 10\n", ""), "furnace.max_ramp_C_per_min", ["missing"]),
        (("max_temperature_C = 1000", 'max_temperature_C = "hot"'), "furnace.max_temperature_C", ["number", "'hot'"]),
        (
            ("max_ramp_C_per_min = 10", "max_ramp_C_per_min = -5"),
            "furnace.max_ramp_C_per_min",
            ["greater than 0", "-5"],
        ),
        (
            ("[spectrometer]", "[pyrometer]\nport = 'x'\n\n[spectrometer]"),
            "pyrometer",
            ["unknown instrument", "furnace, spectrometer"],
        ),
        (('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nprot = 1'), "furnace.prot", ["unknown field"]),
        (
            ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\ndriver = "watlow"'),
            "furnace.driver",
            ["'eurotherm'", "'watlow'"],
        ),
        (('port = "/dev/ttyUSB0"\n', ""), "furnace", ["port is required"]),
        (('name = "t"\n', ""), "station.name", ["missing"]),
    ],
)
def test_bad_station_gives_one_clear_message(tmp_path, edit, field, words):
    assert_station_edit_refused(tmp_path, *edit, field, words)


def assert_station_edit_refused(tmp_path, old: str, new: str, field: str, words) -> None:
    """The shipped-like station with ``old`` replaced by ``new`` is refused with one message naming ``field``."""
    assert old in GOOD_STATION
    path = write(tmp_path, "bench.toml", GOOD_STATION.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_station(path)
    assert_one_clear_message(error, path, field, *words)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[station\nname = 1", ["not valid TOML", "line 1"]),
        (b"\xff\xfe[station]", ["not UTF-8"]),
    ],
)
def test_unreadable_station(tmp_path, text, words):
    path = tmp_path / "bad.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError) as error:
        load_station(path)
    assert str(path) in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_missing_station_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_station(tmp_path / "nowhere.toml")


@pytest.mark.parametrize(
    "edit, field, words",
    [
        (('sample = "s"\n', ""), "recipe.sample", ["missing"]),
        (("ramp_C_per_min = 5", "ramp_C_per_min = -5"), "furnace.segments[0].ramp_C_per_min", ["greater than 0"]),
        (("ramp_C_per_min = 5", 'ramp_C_per_min = "fast"'), "furnace.segments[0].ramp_C_per_min", ["number"]),
        (('target = "Nd"', 'target = "Fe"'), "recipe.target", ["'Fe'", "'Nd'"]),
        (('target = "Nd"', 'target = "La"'), "recipe", ["not among analytes"]),
        (
            ("integration_time_s = 0.05", "integration_time_s = 0.05\nshutter = 1"),
            "spectrometer.shutter",
            ["unknown field"],
        ),
    ],
)
def test_bad_recipe_gives_one_clear_message(tmp_path, edit, field, words):
    old, new = edit
    assert old in GOOD_RECIPE
    path = write(tmp_path, "recipe.toml", GOOD_RECIPE.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert_one_clear_message(error, path, field, *words)


@pytest.mark.parametrize(
    "edit, field, words",
    [
        (
            ("target_C = 450", "target_C = 1250"),
            "furnace.segments[0].target_C",
            ["1250", "above", "max_temperature_C 1000"],
        ),
        (
            ("ramp_C_per_min = 5", "ramp_C_per_min = 25"),
            "furnace.segments[0].ramp_C_per_min",
            ["25", "max_ramp_C_per_min 10"],
        ),
        (("integration_time_s = 0.05", "integration_time_s = 120"), "spectrometer.integration_time_s", ["outside"]),
    ],
)
def test_recipe_breaking_a_station_limit_is_refused(tmp_path, edit, field, words):
    old, new = edit
    station_path = write(tmp_path, "bench.toml", GOOD_STATION)
    recipe_path = write(tmp_path, "recipe.toml", GOOD_RECIPE.replace(old, new, 1))
    recipe = load_recipe(recipe_path)
    with pytest.raises(ConfigError) as error:
        check_recipe_against_station(recipe, load_station(station_path))
    assert_one_clear_message(error, recipe_path, field, *words)
    assert str(station_path) in str(error.value)


def test_recipe_for_an_instrument_the_station_lacks(tmp_path):
    station_path = write(tmp_path, "bench.toml", GOOD_STATION.split("[spectrometer]")[0])
    recipe = load_recipe(write(tmp_path, "recipe.toml", GOOD_RECIPE))
    with pytest.raises(ConfigError, match="has no spectrometer"):
        check_recipe_against_station(recipe, load_station(station_path))


# -- issue 11: limits that are limits ---------------------------------------------------------------

SIM_RECIPE = """
[recipe]
title = "t"
sample = "s"
operator = "o"
analytes = ["Nd", "Pr"]
target = "Nd"

[furnace]
cool_to_C = 25.0

[[furnace.segments]]
ramp_C_per_min = 5
target_C = 450
dwell_min = 60

[spectrometer]
integration_time_s = 0.05
interval_s = 60.0
"""


def load_sim_recipe(tmp_path, old, new):
    assert old in SIM_RECIPE
    path = write(tmp_path, "recipe.toml", SIM_RECIPE.replace(old, new, 1))
    recipe = load_recipe(path)
    check_recipe_against_station(recipe, load_station(SIM_STATION))
    return recipe


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        (
            "cool_to_C = 25.0",
            "cool_to_C = 25.0\nabort_above_C = 1500",
            "furnace.abort_above_C",
            ["1500 C is above the station's max_temperature_C 1100 C", "never raised"],
        ),
        (
            "cool_to_C = 25.0",
            "cool_to_C = 1100.0",
            "furnace.cool_to_C",
            ["must be below the station's max_temperature_C 1100"],
        ),
    ],
)
def test_the_interlock_and_the_cool_down_stay_within_the_station_maximum(tmp_path, old, new, field, words):
    with pytest.raises(ConfigError) as error:
        load_sim_recipe(tmp_path, old, new)
    assert_one_clear_message(error, tmp_path / "recipe.toml", field, *words)
    assert str(SIM_STATION) in str(error.value)


def test_an_interlock_below_the_station_maximum_is_a_recipe_choice(tmp_path):
    recipe = load_sim_recipe(tmp_path, "cool_to_C = 25.0", "cool_to_C = 25.0\nabort_above_C = 1100")
    assert recipe.furnace.abort_above_C == 1100.0


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("cool_to_C = 25.0", "cool_to_C = 25.0\nabort_above_C = 5000", "furnace.abort_above_C"),
        ("interval_s = 60.0", "interval_s = inf", "spectrometer.interval_s"),
        ("interval_s = 60.0", "interval_s = 1e308", "spectrometer.interval_s"),
        ("dwell_min = 60", "dwell_min = inf", "furnace.segments[0].dwell_min"),
        ("dwell_min = 60", "dwell_min = 1e308", "furnace.segments[0].dwell_min"),
        ('target = "Nd"', 'target = "Nd"\nwall_clock_limit_min = inf', "recipe.wall_clock_limit_min"),
        ('target = "Nd"', 'target = "Nd"\nwall_clock_limit_min = 1e308', "recipe.wall_clock_limit_min"),
        ('target = "Nd"', 'target = "Nd"\nlost_instrument_abort_s = inf', "recipe.lost_instrument_abort_s"),
        ('target = "Nd"', 'target = "Nd"\nlost_instrument_abort_s = nan', "recipe.lost_instrument_abort_s"),
    ],
)
def test_infinite_and_astronomic_durations_are_refused(tmp_path, old, new, field):
    assert old in SIM_RECIPE
    path = write(tmp_path, "recipe.toml", SIM_RECIPE.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert_one_clear_message(error, path, field)
    assert re.search(r"finite number|less than or equal to", str(error.value))


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("target_C = 450", "target_C = true", "furnace.segments[0].target_C"),
        ("ramp_C_per_min = 5", "ramp_C_per_min = true", "furnace.segments[0].ramp_C_per_min"),
        ("integration_time_s = 0.05", "integration_time_s = true", "spectrometer.integration_time_s"),
        ("interval_s = 60.0", "interval_s = 60.0\naverages = true", "spectrometer.averages"),
    ],
)
def test_a_boolean_is_not_a_number_in_a_recipe(tmp_path, old, new, field):
    path = write(tmp_path, "recipe.toml", SIM_RECIPE.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert_one_clear_message(error, path, field, "not a boolean")


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\naddress = true', "furnace.address", ["not a boolean"]),
        ("max_ramp_C_per_min = 10", "max_ramp_C_per_min = true", "furnace.max_ramp_C_per_min", ["not a boolean"]),
        ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nbaudrate = 9600.0', "furnace.baudrate", ["integer"]),
        ('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nsimulated = 0', "furnace.simulated", ["boolean"]),
        (
            "max_temperature_C = 1000",
            "max_temperature_C = 100\nsafe_temperature_C = 150",
            "furnace.safe_temperature_C",
            ["below furnace.max_temperature_C"],
        ),
        (
            "max_temperature_C = 1000",
            "max_temperature_C = 1500",
            "furnace.max_temperature_C",
            ["above the top of the controller's input range, 1372 C", "eurotherm-2400"],
        ),
        (
            "max_temperature_C = 1000",
            'max_temperature_C = 1000\nmap = "foo"',
            "furnace.map",
            [f"no register map 'foo' ({KNOWN_MAPS})"],
        ),
        (
            "max_temperature_C = 1000",
            'max_temperature_C = 1000\nmap = "scpi-spectrometer"',
            "furnace.map",
            ["scpi-spectrometer.toml: registers: missing table [registers]: not a register map"],
        ),
        (
            'resource = "TCPIP0',
            'dialect = "bar"\nresource = "TCPIP0',
            "spectrometer.dialect",
            ["no SCPI dialect 'bar' (known: scpi-spectrometer)"],
        ),
        (
            'resource = "TCPIP0',
            'dialect = "eurotherm-2400"\nresource = "TCPIP0',
            "spectrometer.dialect",
            ["eurotherm-2400.toml: commands: missing table [commands]: not a SCPI dialect"],
        ),
        ('name = "t"', f'name = "{"n" * 5000}"', "station.name", ["at most 200 characters", "5000 characters"]),
        ('port = "/dev/ttyUSB0"', f'port = "/dev/{"p" * 300}"', "furnace.port", ["at most 255 bytes a name"]),
    ],
)
def test_station_numbers_are_typed_and_names_are_resolved(tmp_path, old, new, field, words):
    assert_station_edit_refused(tmp_path, old, new, field, words)


@pytest.mark.parametrize(
    "scenario, words",
    [
        ("no-such-scenario", ["not found", "pr-nd-elution"]),
        ("s" * 5000, ["too long for a path"]),
        ("s" * 300, ["at most 255 bytes a name"]),
        ("seeds", ["is a folder, not a regular file"]),
    ],
)
def test_the_recipe_scenario_is_resolved_when_the_recipe_is_read(tmp_path, monkeypatch, scenario, words):
    monkeypatch.chdir(ROOT)  # "seeds" is then the folder of that name
    path = write(
        tmp_path, "recipe.toml", SIM_RECIPE.replace('target = "Nd"', f'target = "Nd"\nscenario = "{scenario}"')
    )
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert_one_clear_message(error, path, "recipe.scenario", *words)


def test_a_scenario_beside_the_recipe_or_bundled_is_accepted(tmp_path):
    (tmp_path / "mine.toml").write_text("[base]\nNd = 1.0\n")
    for name in ("mine.toml", "pr-nd-elution"):
        path = write(
            tmp_path, "recipe.toml", SIM_RECIPE.replace('target = "Nd"', f'target = "Nd"\nscenario = "{name}"')
        )
        assert load_recipe(path).scenario == Path(name)


def not_regular_files(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.toml"
    folder.mkdir()
    return {"a named pipe (FIFO)": fifo, "a folder": folder, "a character device": Path("/dev/zero")}


@pytest.mark.timeout(20)
def test_a_pipe_folder_or_device_as_station_or_recipe_is_refused_at_once(tmp_path):
    for kind, path in not_regular_files(tmp_path).items():
        for loader in (load_station, load_recipe):
            with pytest.raises(ConfigError, match=re.escape(f"{path}: is {kind}, not a regular file")):
                loader(path)


@pytest.mark.timeout(20)
def test_a_pipe_as_register_map_or_dialect_is_refused_naming_the_field(tmp_path):
    fifo = not_regular_files(tmp_path)["a named pipe (FIFO)"]
    for old, new, field in [
        ("max_temperature_C = 1000", f'max_temperature_C = 1000\nmap = "{fifo}"', "furnace.map"),
        ('resource = "TCPIP0', f'dialect = "{fifo}"\nresource = "TCPIP0', "spectrometer.dialect"),
    ]:
        path = write(tmp_path, "bench.toml", GOOD_STATION.replace(old, new, 1))
        with pytest.raises(ConfigError) as error:
            load_station(path)
        assert_one_clear_message(error, path, field, "is a named pipe (FIFO), not a regular file")


def test_a_station_file_over_one_mebibyte_is_refused_and_one_of_exactly_that_size_is_read(tmp_path):
    padding = (1 << 20) - len(GOOD_STATION.encode()) - 1
    path = write(tmp_path, "bench.toml", GOOD_STATION + "#" * padding + "\n")
    assert path.stat().st_size == 1 << 20
    assert load_station(path).name == "t"
    path.write_text(GOOD_STATION + "#" * (padding + 1) + "\n")
    with pytest.raises(ConfigError, match="is 1048577 bytes; at most 1048576 bytes are allowed"):
        load_station(path)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[station]\nname = " + "[" * 100_000 + "]" * 100_000, ["nested too deeply"]),
        ("[station]\nname = " + "9" * 5000, ["not valid TOML here", "4300"]),
    ],
)
def test_toml_that_breaks_the_parser_is_a_config_error(tmp_path, text, words):
    path = write(tmp_path, "bench.toml", text)
    with pytest.raises(ConfigError) as error:
        load_station(path)
    for word in words:
        assert word in str(error.value)


def test_an_over_long_station_path_is_a_config_error_not_an_os_error(tmp_path):
    for path in (tmp_path / ("s" * 5000), tmp_path / "bench\x00.toml"):
        with pytest.raises(ConfigError) as error:
            load_station(path)
        assert re.search(r"too long|NUL character", str(error.value))
        assert len(str(error.value)) < 1000


def test_remdaq_reports_a_pipe_as_station_cleanly(tmp_path, capsys):
    from daq.cli import main

    fifo = not_regular_files(tmp_path)["a named pipe (FIFO)"]
    with pytest.raises(SystemExit) as exited:
        main(["check", "--station", str(fifo)])
    assert exited.value.code == 2
    assert f"error: {fifo}: is a named pipe (FIFO), not a regular file" in capsys.readouterr().err


# -- the furnace's model and register map: any map in hardware/maps --------------------------------


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            "max_temperature_C = 1000",
            'max_temperature_C = 1000\nmodel = "2500"',
            ["furnace.model: no register map covers model '2500'", MAPS_LISTED],
        ),
        (
            "max_temperature_C = 1000",
            'max_temperature_C = 1000\nmodel = "2400"\nmap = "eurotherm-3200"',
            [
                "furnace.model: '2400' is not a model of register map eurotherm-3200 (furnace.map), which covers 3200, "
                "3204, 3208, 3216",
                MAPS_LISTED,
            ],
        ),
        ("max_temperature_C = 1000", 'max_temperature_C = 1000\nmodel = ""', ["furnace.model", "at least 1 character"]),
        ("max_temperature_C = 1000", "max_temperature_C = 1000\nmodel = 2400", ["furnace.model", "valid string"]),
    ],
)
def test_a_furnace_model_no_map_covers_is_refused_listing_the_maps(tmp_path, old, new, words):
    assert_station_edit_refused(tmp_path, old, new, "furnace.model", words)


def test_a_station_naming_an_unknown_map_gets_the_maps_listed(tmp_path):
    assert_station_edit_refused(
        tmp_path,
        "max_temperature_C = 1000",
        'max_temperature_C = 1000\nmap = "eurotherm-2500"',
        "furnace.map",
        [f"no register map 'eurotherm-2500' ({KNOWN_MAPS})"],
    )


@pytest.mark.parametrize(
    "furnace_lines, expected_map",
    [
        ('model = "2416"', "eurotherm-2400"),  # a model, not only the family: the map that lists it
        ('model = "3216"', "eurotherm-3200"),
        ('model = "3208"\nmap = "eurotherm-3200"', "eurotherm-3200"),
        ("", "eurotherm-2400"),  # the default model, 2400
        ('map = "eurotherm-3200"', "eurotherm-3200"),  # a map without a model: any of its models
    ],
)
def test_a_model_any_map_covers_is_accepted(tmp_path, furnace_lines, expected_map):
    from drivers import resolve_register_map

    path = write(
        tmp_path,
        "bench.toml",
        GOOD_STATION.replace("max_temperature_C = 1000", f"max_temperature_C = 1000\n{furnace_lines}", 1),
    )
    furnace = load_station(path).furnace
    assert resolve_register_map(furnace.model_or_default, furnace.map).name == expected_map


def test_a_broken_map_file_gives_one_problem_per_map_problem_naming_station_map_and_field(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text(
        (ROOT / "hardware/maps/eurotherm-2400.toml")
        .read_text()
        .replace("tuning = 8", "tunning = 8")
        .replace("address = 122", "address = 70000")
    )
    path = write(
        tmp_path,
        "bench.toml",
        GOOD_STATION.replace("max_temperature_C = 1000", f'max_temperature_C = 1000\nmap = "{broken}"', 1),
    )
    with pytest.raises(ConfigError) as error:
        load_station(path)
    problems = sorted(error.value.problems)
    assert len(problems) == 2
    assert problems[0] == (
        f"furnace.map: {broken}: registers.ident.address: Input should be less than or equal to 65535 (got 70000)"
    )
    assert problems[1].startswith(f"furnace.map: {broken}: status_bits.tunning: unknown key (check the spelling;")
    assert "'tuning'" in problems[1] and "'alarm_1'" in problems[1]  # the allowed names, the intended one among them


NEW_CONTROLLER = """\
# A controller the code has never heard of: a new map, nothing else.
extends = "eurotherm-2400"

[instrument]
maker = "Acme"
family = "A9000"
models = ["A9000", "A9010"]

[instrument.ident_codes]
"0xA901" = "A9010"

[input_range]
high_C = 1600.0

[registers.process_value]
max = 1600.0
"""


def test_a_new_map_dropped_in_the_maps_folder_works_without_code_changes(tmp_path, monkeypatch):
    from drivers import resolve_register_map

    hardware = tmp_path / "hardware"
    (hardware / "maps").mkdir(parents=True)
    for shipped in ("eurotherm-2400.toml", "scpi-spectrometer.toml"):  # the parent, and the station's dialect
        (hardware / "maps" / shipped).write_text((ROOT / "hardware/maps" / shipped).read_text())
    (hardware / "maps/acme-a9000.toml").write_text(NEW_CONTROLLER)
    monkeypatch.setenv("REMDAQ_HARDWARE_DIR", str(hardware))  # the maps folder setting
    for lines in ('model = "A9010"', 'model = "A9000"\nmap = "acme-a9000"'):
        path = write(
            tmp_path,
            "bench.toml",
            GOOD_STATION.replace("max_temperature_C = 1000", f"max_temperature_C = 1500\n{lines}", 1),
        )
        furnace = load_station(path).furnace
        regmap = resolve_register_map(furnace.model, furnace.map)
        assert (regmap.name, regmap.maker, regmap.input_range_C, regmap["process_value"].maximum) == (
            "acme-a9000",
            "Acme",
            (-200.0, 1600.0),
            1600.0,
        )
        assert regmap["remote_setpoint"] == resolve_register_map("2400")["remote_setpoint"]  # inherited
    path = write(
        tmp_path,
        "bench.toml",
        GOOD_STATION.replace("max_temperature_C = 1000", 'max_temperature_C = 1000\nmodel = "3216"', 1),
    )
    with pytest.raises(ConfigError) as error:  # only the maps of this folder are available
        load_station(path)
    assert_one_clear_message(
        error,
        path,
        "furnace.model",
        "no register map covers model '3216'; available maps: "
        + _listing({"acme-a9000": ("A9000", "A9010"), "eurotherm-2400": SHIPPED_MAPS["eurotherm-2400"]}),
    )


def test_a_new_map_given_by_path_works_without_the_maps_folder_setting(tmp_path):
    (tmp_path / "acme-a9000.toml").write_text(NEW_CONTROLLER)  # extends the eurotherm-2400 of hardware/maps
    path = write(
        tmp_path,
        "bench.toml",
        GOOD_STATION.replace(
            "max_temperature_C = 1000",
            f'max_temperature_C = 1500\nmodel = "A9010"\nmap = "{tmp_path}/acme-a9000.toml"',
            1,
        ),
    )
    assert load_station(path).furnace.map == f"{tmp_path}/acme-a9000.toml"
