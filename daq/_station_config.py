"""Station files: the bench's named instruments on named connections, read and validated.

The form since version 2 of the station file::

    [station]
    name = "bench-3"

    [[connection]]              # one RS-485 bus or one Modbus TCP gateway, shared by its units
    name = "furnace-bus"
    port = "/dev/serial/by-id/usb-FTDI_..."
    baudrate = 9600

    [[instrument]]
    name = "zone-1"             # names its group in the trial file
    kind = "temperature_controller"     # or "spectrometer", "sensor"
    connection = "furnace-bus"
    address = 1
    ...                         # the fields of its kind (docs/station.md)

The older form, one ``[furnace]`` and one ``[spectrometer]`` table, still loads:
as instruments named ``furnace`` and ``spectrometer``, with messages that name
those tables as before. ``remdaq station migrate`` writes a file of the older
form in the new one (:func:`station_document`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from drivers import shorten

from ._config_fields import FilePath, number, text
from ._config_files import ConfigError, Strict, read_toml, validate_table
from ._config_references import station_reference_problems
from ._instrument_config import (
    INSTRUMENT_KINDS,
    INSTRUMENT_NAME,
    ConnectionConfig,
    FurnaceConfig,
    InstrumentConfig,
    SensorConfig,
    SpectrometerConfig,
)

__all__ = ["Station", "load_station", "station_document", "LEGACY_TABLES"]

#: The tables of the older form of a station file, and the kind of instrument each is.
LEGACY_TABLES = {"furnace": "temperature_controller", "spectrometer": "spectrometer"}
#: Fields of a table that the loader sets, never the file.
_LOADER_FIELDS = ("where", "source")
#: What an instrument on a connection takes from it, and may not set itself.
_FROM_CONNECTION = ("port", "baudrate")

Kind = Literal["temperature_controller", "spectrometer", "sensor"]


class Station(Strict):
    """A bench: its named instruments, the connections they share, their limits and its data folder."""

    name: Annotated[str, text(min_length=1, max_length=200)]
    description: Annotated[str, text(max_length=2000, multiline=True)] = ""
    data_dir: FilePath = Path("data")
    simulation_speed: Annotated[float, number(gt=0, le=10000)] = 1.0
    connections: tuple[ConnectionConfig, ...] = ()
    instruments: tuple[InstrumentConfig, ...] = ()
    #: "1" for a file of the older form ([furnace], [spectrometer]), "2" for [[instrument]] tables
    file_form: Literal["1", "2"] = "2"
    source: Path = Path("<memory>")

    def of_kind(self, kind: Kind) -> tuple[InstrumentConfig, ...]:
        """The station's instruments of one kind, in the file's order."""
        return tuple(i for i in self.instruments if i.kind == kind)

    @property
    def temperature_controllers(self) -> tuple[FurnaceConfig, ...]:
        """Every temperature controller (furnace zone), in the file's order."""
        return tuple(i for i in self.instruments if isinstance(i, FurnaceConfig))

    @property
    def spectrometers(self) -> tuple[SpectrometerConfig, ...]:
        """Every spectrometer, in the file's order."""
        return tuple(i for i in self.instruments if isinstance(i, SpectrometerConfig))

    @property
    def sensors(self) -> tuple[SensorConfig, ...]:
        """Every sensor, in the file's order."""
        return tuple(i for i in self.instruments if isinstance(i, SensorConfig))

    @property
    def furnace(self) -> FurnaceConfig | None:
        """The first temperature controller (the furnace of a one-furnace station), or None."""
        return next(iter(self.temperature_controllers), None)

    @property
    def spectrometer(self) -> SpectrometerConfig | None:
        """The first spectrometer (the spectrometer of a one-spectrometer station), or None."""
        return next(iter(self.spectrometers), None)

    def instrument(self, name: str) -> InstrumentConfig:
        """The instrument called ``name``; KeyError naming the station's instruments if there is none."""
        for instrument in self.instruments:
            if instrument.name == name:
                return instrument
        raise KeyError(f"station {self.name!r} has no instrument {name!r} (it has: {self.instrument_names()})")

    def instrument_names(self) -> str:
        """The instruments' names, comma-separated, for messages."""
        return ", ".join(i.name for i in self.instruments) or "none"

    @property
    def simulated(self) -> bool:
        """True when every instrument of the station is a simulator."""
        return bool(self.instruments) and all(i.simulated for i in self.instruments)


def _tables(value: object, where: str, problems: list[str]) -> list[tuple[int, dict]]:
    """``[[where]]`` tables with their positions (a problem for each item that is something else)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        problems.append(f"{where}: must be [[{where}]] tables, not {shorten(repr(value))}")
        return []
    tables = []
    for index, item in enumerate(value):
        if isinstance(item, dict):
            tables.append((index, item))
        else:
            problems.append(f"{where}[{index}]: must be a [[{where}]] table, not {shorten(repr(item))}")
    return tables


def _where(section: str, table: dict, index: int) -> str:
    """How messages name a table of ``section``: by its name (``instrument[zone-1]``), else by its index."""
    name = table.get("name")
    return f"{section}[{name}]" if isinstance(name, str) and INSTRUMENT_NAME.fullmatch(name) else f"{section}[{index}]"


def _loader_field_problems(table: dict, where: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [f"{where}.{key}: unknown field (check the spelling)" for key in (*_LOADER_FIELDS, *extra) if key in table]


def _connections(raw: object, problems: list[str]) -> dict[str, ConnectionConfig | None]:
    """The valid connections by name; None for a named one with problems (its instruments are not checked)."""
    connections: dict[str, ConnectionConfig | None] = {}
    for index, table in _tables(raw, "connection", problems):
        where = _where("connection", table, index)
        problems += _loader_field_problems(table, where)
        result = validate_table(ConnectionConfig, table, where, where=where)
        if isinstance(result, list):
            problems += result
            connections.setdefault(table["name"] if isinstance(table.get("name"), str) else f"#{index}", None)
        elif result.name in connections:
            problems.append(f"{where}.name: {result.name!r} names another connection already")
        else:
            connections[result.name] = result
    return connections


def _on_connection(table: dict, where: str, connections: dict, problems: list[str]) -> dict | None:
    """The instrument's table with its connection's port, baud rate and simulation filled in (None: no connection)."""
    name = table.get("connection")
    if name is None:
        return table
    if (isinstance(name, str) and name in connections and connections[name] is None) or any(
        key.startswith("#") for key in connections
    ):
        return None  # a connection's own problems are reported (an unnamed broken one may be this one)
    connection = connections.get(name) if isinstance(name, str) else None
    if connection is None:
        known = ", ".join(connections) or "none"
        problems.append(f"{where}.connection: no [[connection]] named {shorten(repr(name))} (connections: {known})")
        return None
    for key in _FROM_CONNECTION:
        if key in table:
            problems.append(f"{where}.{key}: set on connection {name!r}, not on an instrument that uses it")
    if "simulated" in table and table["simulated"] is not connection.simulated:
        problems.append(
            f"{where}.simulated: connection {name!r} is {'' if connection.simulated else 'not '}simulated; "
            "its instruments follow it (leave simulated out)"
        )
    return {**table, "port": connection.port, "baudrate": connection.baudrate, "simulated": connection.simulated}


def _instrument(table: dict, where: str, kind: object, connections, problems: list[str]) -> InstrumentConfig | None:
    model = INSTRUMENT_KINDS.get(kind) if isinstance(kind, str) else None
    if model is None:
        if kind is None:
            problems.append(f"{where}.kind: missing required field ({', '.join(INSTRUMENT_KINDS)})")
        else:
            problems.append(f"{where}.kind: {shorten(repr(kind))} is not one of {', '.join(INSTRUMENT_KINDS)}")
        return None
    if model is SpectrometerConfig and "connection" in table:
        problems.append(f"{where}.connection: a spectrometer has its own resource, not a Modbus connection")
        return None
    resolved = _on_connection(table, where, connections, problems)
    if resolved is None:
        return None
    result = validate_table(model, resolved, where, where=where)
    if isinstance(result, list):
        problems += result
        return None
    return result


def _legacy_instruments(raw: dict, problems: list[str]) -> list[InstrumentConfig]:
    instruments = []
    for table_name, kind in LEGACY_TABLES.items():
        table = raw.get(table_name)
        if table is None:
            continue
        if not isinstance(table, dict):
            problems.append(f"{table_name}: must be a [{table_name}] table, not {shorten(repr(table))}")
            continue
        problems += _loader_field_problems(table, table_name, ("name", "kind", "connection"))
        instrument = _instrument({**table, "name": table_name}, table_name, kind, {}, problems)
        if instrument is not None:
            instruments.append(instrument)
    return instruments


def _new_instruments(raw: object, connections, problems: list[str]) -> list[InstrumentConfig]:
    instruments: list[InstrumentConfig] = []
    for index, table in _tables(raw, "instrument", problems):
        where = _where("instrument", table, index)
        problems += _loader_field_problems(table, where)
        instrument = _instrument(table, where, table.get("kind"), connections, problems)
        if instrument is None:
            continue
        if any(other.name == instrument.name for other in instruments):
            problems.append(f"{where}.name: {instrument.name!r} names another instrument already")
            continue
        twin = next(
            (o.name for o in instruments if o.name.replace("-", "_") == instrument.name.replace("-", "_")), None
        )
        if twin is not None:
            problems.append(
                f"{where}.name: {instrument.name!r} and {twin!r} differ only by - and _, which the trial file's "
                "groups write alike (NeXus allows no -)"
            )
            continue
        instruments.append(instrument)
    return instruments


def _shared_unit_problems(instruments: list[InstrumentConfig]) -> list[str]:
    """Two Modbus instruments that would answer to the same unit on the same link."""
    problems: list[str] = []
    seen: dict[tuple, InstrumentConfig] = {}
    for instrument in instruments:
        if isinstance(instrument, SpectrometerConfig):
            continue
        link = instrument.connection or (instrument.port if not instrument.simulated else None)
        if link is None:
            continue
        key = (link, instrument.address)
        if key in seen:
            problems.append(
                f"{instrument.field('address')}: unit {instrument.address} on {link} is {seen[key].field('address')}"
                " already (units on one bus or gateway need different addresses)"
            )
        else:
            seen[key] = instrument
    return problems


_HINT = "name, data_dir, ..."


def load_station(path: str | os.PathLike) -> Station:
    """Read and validate a station file (either form), including the maps and dialects it names."""
    path = Path(path)
    raw = read_toml(path)
    main = raw.pop("station", None)
    problems: list[str] = []
    allowed = ("station", "connection", "instrument", *LEGACY_TABLES)
    problems += [
        f"{name}: unknown instrument or table; allowed: station, connection, instrument (the older form: "
        "furnace, spectrometer)"
        for name in raw
        if name not in allowed
    ]
    if main is None:
        problems.insert(0, f"station: missing [station] table ({_HINT})")
    elif not isinstance(main, dict):
        problems.insert(0, f"station: must be a [station] table ({_HINT}), not {shorten(repr(main))}")
        main = None
    else:
        problems += [
            f"station.{name}: unknown field (check the spelling)"
            for name in main
            if name in ("source", "connections", "instruments", "file_form", *LEGACY_TABLES)
        ]
    legacy = [name for name in LEGACY_TABLES if name in raw]
    new = [name for name in ("connection", "instrument") if name in raw]
    if legacy and new:
        problems.append(
            f"{legacy[0]}: a station file has [[instrument]] tables or the older [furnace]/[spectrometer] ones, "
            "not both (`remdaq station migrate` writes the older form in the new one)"
        )
    if legacy:
        instruments = _legacy_instruments(raw, problems)
        connections: dict[str, ConnectionConfig | None] = {}

    else:
        connections = _connections(raw.get("connection", []), problems)
        instruments = _new_instruments(raw.get("instrument", []), connections, problems)
        problems += _shared_unit_problems(instruments)
        if not problems:
            used = {getattr(instrument, "connection", None) for instrument in instruments}
            problems += [
                f"connection[{name}]: no instrument uses it (give an [[instrument]] connection = {name!r}, "
                "or leave the connection out)"
                for name in connections
                if name not in used
            ]
    if main is not None:
        station = validate_table(
            Station,
            main,
            "station",
            connections=tuple(c for c in connections.values() if c is not None),
            instruments=tuple(instruments),
            file_form="1" if legacy else "2",
            source=path,
        )
        if isinstance(station, list):
            problems += station
        elif not problems:
            problems += station_reference_problems(station)
            if not problems:
                return station
    raise ConfigError(path, problems)


def station_document(station: Station) -> dict:
    """The station as a TOML document of the current form (``remdaq station migrate`` writes it)."""
    head = station.model_dump(
        mode="json", exclude={"connections", "instruments", "file_form", "source"}, exclude_unset=True
    )
    head["name"] = station.name
    document: dict = {"station": head}
    if station.connections:
        document["connection"] = [c.model_dump(mode="json", exclude_unset=True) for c in station.connections]
    instruments = []
    for instrument in station.instruments:
        table = instrument.model_dump(mode="json", exclude_unset=True)
        instruments.append({"name": instrument.name, "kind": instrument.kind, **table})
    document["instrument"] = instruments
    return document
