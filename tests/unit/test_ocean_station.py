"""Station files with an Ocean Insight spectrometer: what loads, what is refused and how it says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from daq.config import ConfigError, check_recipe_against_station, load_recipe, load_station

ROOT = Path(__file__).resolve().parents[2]
STATIONS = ROOT / "hardware" / "stations"

REAL_OCEAN = """
[station]
name = "bench-3"

[spectrometer]
driver = "ocean"
resource = "usb:FLMS12345"
dark = "prompt"
"""


def station_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_the_shipped_ocean_stations_load_with_their_dark_methods():
    simulated = load_station(STATIONS / "sim-ocean.toml")
    assert simulated.spectrometer.driver == "ocean" and simulated.spectrometer.simulated
    assert simulated.spectrometer.dark_method == "lamp"
    real = load_station(STATIONS / "example-ocean.toml")
    assert not real.spectrometer.simulated and real.spectrometer.dark_method == "prompt"
    assert load_station(STATIONS / "sim.toml").spectrometer.dark_method == "shutter"  # SCPI: its shutter


def test_the_quick_recipe_fits_the_simulated_ocean_bench():
    check_recipe_against_station(
        load_recipe(ROOT / "seeds/recipes/quick.toml"), load_station(STATIONS / "sim-ocean.toml")
    )


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ('resource = "usb:FLMS12345"', 'resource = "tcp://10.0.0.7:57357"', "spectrometer.resource", ["needs model"]),
        ('resource = "usb:FLMS12345"', 'resource = "COM4"', "spectrometer.resource", ["expected 'usb'"]),
        ('dark = "prompt"', 'dark = "candle"', "spectrometer.dark", ["'candle'"]),
        ('driver = "ocean"', 'driver = "scpi"', "spectrometer.dark", ["its shutter"]),
    ],
)
def test_a_bad_ocean_spectrometer_entry_names_the_field(tmp_path, old, new, field, words):
    path = station_file(tmp_path, REAL_OCEAN.replace(old, new))
    with pytest.raises(ConfigError) as error:
        load_station(path)
    message = str(error.value)
    assert str(path) in message and field in message, message
    for word in words:
        assert word in message, message


def test_an_ethernet_ocean_spectrometer_with_its_model_loads(tmp_path):
    text = REAL_OCEAN.replace('resource = "usb:FLMS12345"', 'resource = "tcp://10.0.0.7:57357"\nmodel = "HDX"')
    assert load_station(station_file(tmp_path, text)).spectrometer.model == "HDX"
