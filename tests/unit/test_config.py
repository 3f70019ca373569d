"""Station and recipe files: the shipped ones load; every kind of mistake gets one clear message."""

from pathlib import Path

import pytest

from daq.config import ConfigError, check_recipe_against_station, load_recipe, load_station

ROOT = Path(__file__).resolve().parents[2]
SIM_STATION = ROOT / "hardware/stations/sim.toml"
EXAMPLE_STATION = ROOT / "hardware/stations/example-bench.toml"
RECIPES = sorted((ROOT / "seeds/recipes").glob("*.toml"))

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
    check_recipe_against_station(recipe, load_station(SIM_STATION))
    check_recipe_against_station(recipe, load_station(EXAMPLE_STATION))


def assert_one_clear_message(error, path, field, *words):
    message = str(error.value)
    assert str(path) in message
    assert field in message
    for word in words:
        assert word in message
    assert len(error.value.problems) == 1


@pytest.mark.parametrize("edit, field, words", [
    (("max_ramp_C_per_min = 10\n", ""), "furnace.max_ramp_C_per_min", ["missing"]),
    (("max_temperature_C = 1000", 'max_temperature_C = "hot"'), "furnace.max_temperature_C", ["number", "'hot'"]),
    (("max_ramp_C_per_min = 10", "max_ramp_C_per_min = -5"), "furnace.max_ramp_C_per_min", ["greater than 0", "-5"]),
    (("[spectrometer]", "[pyrometer]\nport = 'x'\n\n[spectrometer]"), "pyrometer", ["unknown instrument", "furnace, spectrometer"]),
    (('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\nprot = 1'), "furnace.prot", ["unknown field"]),
    (('port = "/dev/ttyUSB0"', 'port = "/dev/ttyUSB0"\ndriver = "watlow"'), "furnace.driver", ["'eurotherm'", "'watlow'"]),
    (('port = "/dev/ttyUSB0"\n', ""), "furnace", ["port is required"]),
    (('name = "t"\n', ""), "station.name", ["missing"]),
])
def test_bad_station_gives_one_clear_message(tmp_path, edit, field, words):
    old, new = edit
    assert old in GOOD_STATION
    path = write(tmp_path, "bench.toml", GOOD_STATION.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_station(path)
    assert_one_clear_message(error, path, field, *words)


@pytest.mark.parametrize("text, words", [
    ("[station\nname = 1", ["not valid TOML", "line 1"]),
    (b"\xff\xfe[station]", ["not UTF-8"]),
])
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


@pytest.mark.parametrize("edit, field, words", [
    (('sample = "s"\n', ""), "recipe.sample", ["missing"]),
    (("ramp_C_per_min = 5", "ramp_C_per_min = -5"), "furnace.segments[0].ramp_C_per_min", ["greater than 0"]),
    (("ramp_C_per_min = 5", 'ramp_C_per_min = "fast"'), "furnace.segments[0].ramp_C_per_min", ["number"]),
    (('target = "Nd"', 'target = "Fe"'), "recipe.target", ["'Fe'", "'Nd'"]),
    (('target = "Nd"', 'target = "La"'), "recipe", ["not among analytes"]),
    (("integration_time_s = 0.05", "integration_time_s = 0.05\nshutter = 1"), "spectrometer.shutter", ["unknown field"]),
])
def test_bad_recipe_gives_one_clear_message(tmp_path, edit, field, words):
    old, new = edit
    assert old in GOOD_RECIPE
    path = write(tmp_path, "recipe.toml", GOOD_RECIPE.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_recipe(path)
    assert_one_clear_message(error, path, field, *words)


@pytest.mark.parametrize("edit, field, words", [
    (("target_C = 450", "target_C = 1250"), "furnace.segments[0].target_C", ["1250", "above", "max_temperature_C 1000"]),
    (("ramp_C_per_min = 5", "ramp_C_per_min = 25"), "furnace.segments[0].ramp_C_per_min", ["25", "max_ramp_C_per_min 10"]),
    (("integration_time_s = 0.05", "integration_time_s = 120"), "spectrometer.integration_time_s", ["outside"]),
])
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
