"""Station files of the current form: named instruments of three kinds on named connections; and migration."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from daq.cli import cli
from daq.config import ConfigError, FurnaceConfig, SensorConfig, SpectrometerConfig, load_station

STATIONS = sorted((Path(__file__).resolve().parents[2] / "hardware" / "stations").glob("*.toml"))

ZONE = """
[[instrument]]
name = "{name}"
kind = "temperature_controller"
connection = "furnace-bus"
address = {address}
model = "2400"
max_temperature_C = 1000.0
max_ramp_C_per_min = 10.0
"""

TUBE_FURNACE_AND_CASCADE = (
    """
[station]
name = "cascade-bench"

[[connection]]
name = "furnace-bus"
port = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"
baudrate = 19200
"""
    + "".join(ZONE.format(name=f"zone-{n}", address=n) for n in (1, 2, 3))
    + """
[[instrument]]
name = "raffinate"
kind = "spectrometer"
resource = "TCPIP0::192.168.10.21::5025::SOCKET"

[[instrument]]
name = "strip"
kind = "spectrometer"
driver = "ocean"
resource = "tcp://192.168.10.22:57357"
model = "HDX"

[[instrument]]
name = "feed-ph"
kind = "sensor"
connection = "furnace-bus"
address = 7
map = "ph-transmitter"
"""
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_station(write(tmp_path, text))
    assert str(tmp_path / "station.toml") in str(caught.value)
    return caught.value


def test_a_three_zone_furnace_two_spectrometers_and_a_sensor_share_what_they_share(tmp_path):
    station = load_station(write(tmp_path, TUBE_FURNACE_AND_CASCADE))
    assert station.file_form == "2"
    assert [i.name for i in station.instruments] == ["zone-1", "zone-2", "zone-3", "raffinate", "strip", "feed-ph"]
    zones = station.temperature_controllers
    assert all(isinstance(z, FurnaceConfig) for z in zones) and [z.address for z in zones] == [1, 2, 3]
    # every unit on the bus takes the bus's port and baud rate
    assert {(z.port, z.baudrate, z.connection) for z in (*zones, *station.sensors)} == {
        (station.connections[0].port, 19200, "furnace-bus")
    }
    assert [s.driver for s in station.spectrometers] == ["scpi", "ocean"]
    assert isinstance(station.sensors[0], SensorConfig) and station.sensors[0].map == "ph-transmitter"
    assert station.furnace is zones[0] and station.spectrometer is station.spectrometers[0]
    assert station.instrument("strip").kind == "spectrometer"
    with pytest.raises(KeyError, match="no instrument 'zone-4'.*zone-1, zone-2, zone-3, raffinate, strip, feed-ph"):
        station.instrument("zone-4")
    assert not station.simulated


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            'connection = "furnace-bus"\naddress = 2',
            'connection = "furnace-line"\naddress = 2',
            ["instrument[zone-2].connection: no [[connection]] named 'furnace-line' (connections: furnace-bus)"],
        ),
        (
            "address = 3\n",
            "address = 2\n",
            ["instrument[zone-3].address: unit 2 on furnace-bus is instrument[zone-2].address already"],
        ),
        ('name = "zone-2"', 'name = "zone-1"', ["instrument[zone-1].name: 'zone-1' names another instrument"]),
        ('name = "zone-2"', 'name = "zone_1"', ["'zone_1' and 'zone-1' differ only by - and _"]),
        ('name = "zone-2"', 'name = "Zone 2"', ["instrument[1].name: 'Zone 2' is not a name (lower-case letters"]),
        ('name = "zone-2"\n', "", ["instrument[1].name: missing required field"]),
        (
            'name = "strip"\nkind = "spectrometer"',
            'name = "strip"\nkind = "camera"',
            ["instrument[strip].kind: 'camera' is not one of temperature_controller, spectrometer, sensor"],
        ),
        ('name = "strip"\nkind = "spectrometer"\n', 'name = "strip"\n', ["instrument[strip].kind: missing"]),
        (
            "address = 7\n",
            'address = 7\nport = "/dev/ttyUSB1"\n',
            ["instrument[feed-ph].port: set on connection 'furnace-bus', not on an instrument that uses it"],
        ),
        ("address = 7\n", "address = 7\nbaudrate = 9600\n", ["instrument[feed-ph].baudrate: set on connection"]),
        ("address = 7\n", "address = 7\nsimulated = true\n", ["instrument[feed-ph].simulated: connection"]),
        (
            'kind = "spectrometer"\nresource',
            'kind = "spectrometer"\nconnection = "furnace-bus"\nresource',
            ["instrument[raffinate].connection: a spectrometer has its own resource"],
        ),
        (
            "max_ramp_C_per_min = 10.0\n",
            "max_ramp_C_per_min = 10.0\nwhere = 'x'\n",
            ["instrument[zone-1].where: unknown field"],
        ),
        (
            "max_temperature_C = 1000.0",
            "max_temperature_C = 5000.0",
            ["instrument[zone-1].max_temperature_C", "less than or equal to 1800"],
        ),
        ('model = "2400"', 'model = "9999"', ["instrument[zone-1].model: no register map covers model '9999'"]),
        (
            'model = "2400"',
            'model = "2400"\nmap = "eurotherm-nanodac"',
            ["instrument[zone-1].model: '2400' is not a model of register map", "(instrument[zone-1].map)"],
        ),
        ("baudrate = 19200", "baudrate = 19201", ["connection[furnace-bus].baudrate"]),
        (
            'port = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"\n',
            "",
            ["connection[furnace-bus].port: port is required for a real connection"],
        ),
        (
            'port = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"',
            'port = "tcp://gw:99999"',
            ["connection[furnace-bus].port"],
        ),
        ('name = "cascade-bench"', 'name = "cascade-bench"\ninstruments = []', ["station.instruments: unknown field"]),
        (
            'resource = "tcp://192.168.10.22:57357"\nmodel = "HDX"',
            'model = "HDX"',
            ["instrument[strip].resource: resource is required for a real spectrometer"],
        ),
        (
            'kind = "spectrometer"\nresource',
            'kind = "spectrometer"\ndark = "lamp"\nresource',
            ["instrument[raffinate].dark: 'lamp' is for instrument[raffinate].driver = 'ocean'"],
        ),
    ],
)
def test_each_mistake_is_one_message_naming_the_instrument_and_field(tmp_path, old, new, words):
    assert old in TUBE_FURNACE_AND_CASCADE
    error = refused(tmp_path, TUBE_FURNACE_AND_CASCADE.replace(old, new, 1))
    for word in words:
        assert word in str(error)
    assert len(error.problems) == 1, error.problems


def test_every_mistake_of_a_file_is_reported_at_once(tmp_path):
    text = TUBE_FURNACE_AND_CASCADE.replace("address = 3\n", "address = 2\n").replace('kind = "sensor"', 'kind = "x"')
    error = refused(tmp_path, text.replace("max_temperature_C = 1000.0", "max_temperature_C = -1", 1))
    assert len(error.problems) == 3
    assert [p.split(":")[0] for p in error.problems] == [
        "instrument[zone-1].max_temperature_C",
        "instrument[feed-ph].kind",
        "instrument[zone-3].address",
    ]


def test_the_two_forms_do_not_mix(tmp_path):
    text = TUBE_FURNACE_AND_CASCADE + "\n[furnace]\nsimulated = true\nmax_temperature_C = 900\nmax_ramp_C_per_min = 5\n"
    error = refused(tmp_path, text)
    assert "furnace: a station file has [[instrument]] tables or the older [furnace]/[spectrometer] ones" in str(error)
    assert "remdaq station migrate" in str(error)


def test_the_older_form_cannot_use_the_new_fields(tmp_path):
    text = '[station]\nname = "a"\n[furnace]\nsimulated = true\nname = "oven"\nmax_temperature_C = 900\n'
    error = refused(tmp_path, text + "max_ramp_C_per_min = 5\n")
    assert error.problems == ["furnace.name: unknown field (check the spelling)"]


def test_a_simulated_connection_makes_its_units_simulated(tmp_path):
    text = '[station]\nname = "s"\n[[connection]]\nname = "bus"\nsimulated = true\n' + "".join(
        ZONE.format(name=f"zone-{n}", address=n).replace('connection = "furnace-bus"', 'connection = "bus"')
        for n in (1, 2)
    )
    station = load_station(write(tmp_path, text))
    assert station.simulated and all(z.simulated and z.port is None for z in station.temperature_controllers)
    error = refused(tmp_path, text.replace("simulated = true", 'simulated = true\nport = "/dev/ttyUSB0"'))
    assert "connection[bus].port: a simulated connection has no port" in str(error)


@pytest.mark.parametrize("path", STATIONS, ids=lambda p: p.name)
def test_every_shipped_station_migrates_to_the_same_station(tmp_path, path):
    out = tmp_path / "migrated.toml"
    result = CliRunner().invoke(cli, ["station", "migrate", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    original = load_station(path)
    if original.file_form == "2":
        assert "nothing to migrate" in result.output and not out.exists()
        return
    migrated = load_station(out)
    assert migrated.file_form == "2"
    assert "[[instrument]]" in out.read_text() and "[furnace]" not in out.read_text()
    keep = {"source", "file_form"}
    assert migrated.model_dump(exclude=keep) == original.model_dump(exclude=keep)
    assert [i.where for i in migrated.instruments] == [f"instrument[{i.name}]" for i in original.instruments]


def test_migrate_prints_by_default_and_never_overwrites(tmp_path):
    station = STATIONS[0]
    printed = CliRunner().invoke(cli, ["station", "migrate", str(station)])
    assert printed.exit_code == 0 and printed.output.startswith("# Station ")
    out = tmp_path / "taken.toml"
    out.write_text("precious")
    refused_write = CliRunner().invoke(cli, ["station", "migrate", str(station), "--out", str(out)])
    assert refused_write.exit_code != 0 and "exists already" in refused_write.output
    assert out.read_text() == "precious"


def test_migrating_a_current_file_says_there_is_nothing_to_do(tmp_path):
    path = write(tmp_path, TUBE_FURNACE_AND_CASCADE.replace('map = "ph-transmitter"', 'map = "ph-transmitter"'))
    result = CliRunner().invoke(cli, ["station", "migrate", str(path)])
    assert result.exit_code == 0 and "nothing to migrate" in result.output


def test_a_spectrometer_config_is_named_by_its_table_in_the_older_form(tmp_path):
    text = '[station]\nname = "a"\n[spectrometer]\nsimulated = true\nmin_integration_time_s = 20\n'
    error = refused(tmp_path, text + "max_integration_time_s = 10\n")
    assert error.problems == [
        "spectrometer.min_integration_time_s: 20 s must be below spectrometer.max_integration_time_s 10 s"
    ]
    assert isinstance(load_station(write(tmp_path, text.replace("20", "0.01"))).spectrometer, SpectrometerConfig)
