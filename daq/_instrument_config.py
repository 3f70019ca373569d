"""The instruments and connections of a station file, each validated on its own.

Three kinds of instrument (:data:`INSTRUMENT_KINDS`): a temperature controller
(:class:`FurnaceConfig`), a spectrometer (:class:`SpectrometerConfig`), a sensor
(:class:`SensorConfig`: pH, conductivity, flow, mass, read through a sensor map).
Modbus instruments (controllers and sensors) reach their unit through a port of
their own or a named :class:`ConnectionConfig` (one RS-485 bus or one Modbus TCP
gateway shared by several units). Every instrument has a ``name``, unique in
its station, that names its group in the trial file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StrictBool, model_validator

from drivers import parse_ocean_resource, parse_tcp_port

from ._config_fields import PathText, count, field_error, number, one_of, text
from ._config_files import Strict

__all__ = [
    "ConnectionConfig",
    "FurnaceConfig",
    "SpectrometerConfig",
    "SensorConfig",
    "InstrumentConfig",
    "INSTRUMENT_KINDS",
    "INSTRUMENT_NAME",
    "MAX_FURNACE_C",
    "MAX_RAMP_C_PER_MIN",
    "MAX_INTEGRATION_TIME_S",
]

#: Physical upper bounds that hold whatever the station: the hottest tube furnace, the fastest ramp a
#: tube survives, the longest integration.
MAX_FURNACE_C = 1800.0
MAX_RAMP_C_PER_MIN = 100.0
MAX_INTEGRATION_TIME_S = 3600.0

#: An instrument's or connection's name: it names an HDF5 group, a column of `remdaq show` and a CLI argument.
INSTRUMENT_NAME = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_NAME_HELP = "lower-case letters, digits, - and _, starting with a letter, at most 40 characters"

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


Name = Annotated[str, text(min_length=1, max_length=40), Field(description=_NAME_HELP)]


class _Named(Strict):
    name: Name
    #: where the loader found it, as messages name it: ``furnace`` (a station file's old form) or ``instrument[NAME]``
    where: str = Field("", exclude=True)

    def field(self, name: str) -> str:
        """A field of this table as the file's messages name it, e.g. ``instrument[zone-1].map``."""
        return f"{self.where or self.name}.{name}"

    @model_validator(mode="after")
    def _name_is_a_name(self):
        if not INSTRUMENT_NAME.fullmatch(self.name):
            raise field_error(("name",), f"{self.name!r} is not a name ({_NAME_HELP})")
        return self


class _Instrument(_Named):
    """What every instrument has: a name, unique in its station (and the table it was read from, for messages)."""


def _check_modbus_port(port: str | None) -> None:
    if port and port.startswith("tcp://"):
        try:
            parse_tcp_port(port)
        except ValueError as error:
            raise field_error(("port",), str(error)) from None


class ConnectionConfig(_Named):
    """A link several Modbus units share: one RS-485 bus (serial port) or one Modbus TCP gateway."""

    simulated: StrictBool = False
    port: PathText | None = Field(
        None, description="serial port, e.g. /dev/serial/by-id/..., or tcp://HOST[:PORT] (Modbus TCP, port 502)"
    )
    baudrate: Annotated[int, one_of(*BAUD_RATES)] = 9600

    @model_validator(mode="after")
    def _port_for_real(self):
        if not self.simulated and not self.port:
            raise field_error(("port",), f"port is required for a real connection ({self.field('simulated')} is false)")
        if self.simulated and self.port:
            raise field_error(("port",), "a simulated connection has no port (the simulated bench opens one)")
        _check_modbus_port(self.port)
        return self


class _ModbusUnit(_Instrument):
    """What a Modbus instrument has: its unit address on its own port or on a named connection."""

    simulated: StrictBool = False
    connection: Name | None = Field(None, description="name of the [[connection]] (bus or gateway) the unit is on")
    port: PathText | None = Field(
        None,
        description="serial port (Modbus RTU), e.g. /dev/serial/by-id/..., or tcp://HOST[:PORT] (Modbus TCP, port "
        "502 when omitted; address is then the unit id); not for simulated, not with connection",
    )
    address: Annotated[int, count(ge=1, le=247)] = 1
    baudrate: Annotated[int, one_of(*BAUD_RATES)] = 9600


class FurnaceConfig(_ModbusUnit):
    """A temperature controller of a station (a furnace, or one zone of a multi-zone furnace)."""

    kind: Literal["temperature_controller"] = "temperature_controller"
    driver: Literal["eurotherm"] = "eurotherm"
    model: Annotated[str, text(min_length=1, max_length=40)] | None = Field(
        None,
        description="controller model or family; one of the register map's models (default: 2400 without a "
        "map, any of the map's models with one)",
    )
    map: PathText | None = Field(
        None, description="register map name in hardware/maps or a path (default: the map that covers model)"
    )
    max_temperature_C: Annotated[float, number(gt=0, le=MAX_FURNACE_C)]
    max_ramp_C_per_min: Annotated[float, number(gt=0, le=MAX_RAMP_C_PER_MIN)]
    safe_temperature_C: Annotated[float, number(ge=0, le=200)] = 25.0
    poll_interval_s: Annotated[float, number(gt=0, le=60)] = 1.0
    watchdog_s: Annotated[float, number(ge=1, le=3600)] | None = Field(
        None,
        description="comms watchdog timeout, where the controller has one (EPC3000): with no request for this "
        "long it goes to its fallback (safe) setpoint by itself; at least 3 poll intervals (default: 10 s or 5 "
        "poll intervals, whichever is longer)",
    )

    @model_validator(mode="after")
    def _port_for_real_and_safe_below_max(self):
        _check_port(self)
        if self.watchdog_s is not None and self.watchdog_s < 3 * self.poll_interval_s:
            raise field_error(
                ("watchdog_s",),
                f"{self.watchdog_s:g} s is less than 3 poll intervals ({3 * self.poll_interval_s:g} s): the "
                "controller would leave the program between polls",
            )
        if self.safe_temperature_C >= self.max_temperature_C:
            raise field_error(
                ("safe_temperature_C",),
                f"{self.safe_temperature_C:g} C must be below {self.field('max_temperature_C')} "
                f"{self.max_temperature_C:g} C",
            )
        return self

    @property
    def watchdog_or_default_s(self) -> float:
        """The comms watchdog timeout the driver arms: ``watchdog_s``, else 10 s or 5 poll intervals."""
        return self.watchdog_s if self.watchdog_s is not None else min(3600.0, max(10.0, 5 * self.poll_interval_s))

    @property
    def model_or_default(self) -> str | None:
        """The model the register map is chosen or checked by: ``model``; 2400 when neither it nor ``map`` is given."""
        return self.model or (None if self.map else "2400")


class SpectrometerConfig(_Instrument):
    """A spectrometer of a station: a SCPI instrument over VISA, or an Ocean Insight one over python-seabreeze."""

    kind: Literal["spectrometer"] = "spectrometer"
    driver: Literal["scpi", "ocean"] = "scpi"
    simulated: StrictBool = False
    resource: Annotated[str, text(min_length=1, max_length=1024)] | None = Field(
        None,
        description="scpi: VISA resource, e.g. TCPIP0::10.0.0.5::5000::SOCKET; "
        "ocean: usb, usb:SERIAL or tcp://HOST:PORT",
    )
    visa_library: PathText = "@py"
    dialect: PathText = "scpi-spectrometer"
    model: Annotated[str, text(min_length=1, max_length=40)] | None = Field(
        None, description="ocean: the model (HDX or FX over TCP; on USB, checked against the device when given)"
    )
    dark: Literal["shutter", "lamp", "prompt"] | None = Field(
        None,
        description="how a dark is taken: shutter (scpi default), lamp (the lamp's TTL line on the spectrometer; "
        "ocean default), prompt (the operator blocks the light path)",
    )
    light_settle_s: Annotated[float, number(ge=0, le=60)] = Field(
        0.0, description="ocean: wait after switching the lamp or shutter before the next scan"
    )
    nonlinearity_correction: StrictBool = Field(
        True, description="ocean: apply the device's nonlinearity polynomial to each scan"
    )
    sampling_point: Literal["feed", "raffinate", "strip"] | None = Field(
        None,
        description="simulated only: the point of the scenario's solvent-extraction cascade whose solution the "
        "simulated flow cell holds (default: the scenario's cell)",
    )
    pixels: Annotated[int, count(ge=16, le=16384)] = 2048
    min_integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)] = 0.001
    max_integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)] = 60.0
    max_averages: Annotated[int, count(ge=1, le=100000)] = Field(
        100000, description="most scans the spectrometer averages in one acquisition (the simulator: 1000)"
    )
    timeout_s: Annotated[float, number(gt=0, le=3600)] = 10.0

    @property
    def dark_method(self) -> Literal["shutter", "lamp", "prompt"]:
        """How this spectrometer takes a dark: ``dark``, or the driver's default."""
        return self.dark or ("lamp" if self.driver == "ocean" else "shutter")

    def setting_problems(
        self,
        section: str,
        integration_time_s: float,
        averages: dict[str, int | None],
        station_source: Path,
        sections: dict[str, str] | None = None,
    ) -> list[str]:
        """What of a measurement's settings this spectrometer cannot do: ``section.key: problem`` lines
        (``sections[key]`` instead of ``section`` for a key set elsewhere)."""
        sections = sections or {}
        problems = []
        if not self.min_integration_time_s <= integration_time_s <= self.max_integration_time_s:
            problems.append(
                f"{sections.get('integration_time_s', section)}.integration_time_s: {integration_time_s:g} s is "
                "outside the station's range "
                f"{self.min_integration_time_s:g}-{self.max_integration_time_s:g} s ({station_source})"
            )
        for key, scans in averages.items():
            if scans is not None and scans > self.max_averages:
                problems.append(
                    f"{sections.get(key, section)}.{key}: {scans} is above the station's max_averages "
                    f"{self.max_averages} ({station_source})"
                )
        return problems

    @model_validator(mode="after")
    def _resource_for_real_and_integration_range(self):
        if not self.simulated and not self.resource:
            raise field_error(
                ("resource",),
                f"resource is required for a real spectrometer ({self.field('simulated')} is false; set "
                "simulated = true for the simulator)",
            )
        if self.driver == "scpi" and self.dark not in (None, "shutter"):
            raise field_error(
                ("dark",),
                f"{self.dark!r} is for {self.field('driver')} = 'ocean'; a SCPI spectrometer "
                f"({self.field('driver')} = {self.driver!r}) takes its darks with its shutter",
            )
        if self.sampling_point is not None and not self.simulated:
            raise field_error(
                ("sampling_point",), "is for a simulated spectrometer (a real flow cell is where it is plumbed)"
            )
        if self.driver == "ocean" and self.dark == "prompt" and self.simulated:
            raise field_error(("dark",), "'prompt': the simulated bench has no operator; use 'lamp'")
        if self.driver == "ocean" and self.resource and not self.simulated:
            try:
                parse_ocean_resource(self.resource, self.model)
            except ValueError as error:
                raise field_error(("resource",), str(error)) from None
        if self.min_integration_time_s >= self.max_integration_time_s:
            raise field_error(
                ("min_integration_time_s",),
                f"{self.min_integration_time_s:g} s must be below {self.field('max_integration_time_s')} "
                f"{self.max_integration_time_s:g} s",
            )
        return self


class SensorConfig(_ModbusUnit):
    """A sensor beside the cell (pH, conductivity, flow, mass), read over Modbus through a sensor map."""

    kind: Literal["sensor"] = "sensor"
    driver: Literal["modbus"] = "modbus"
    map: PathText = Field(description="sensor map name in hardware/sensors or a path")
    poll_interval_s: Annotated[float, number(gt=0, le=3600)] = 1.0

    @model_validator(mode="after")
    def _port_for_real(self):
        _check_port(self)
        return self


def _check_port(instrument: _ModbusUnit) -> None:
    """A real Modbus instrument has a port (its own or its connection's, which the station loader fills in)."""
    if not instrument.simulated and not instrument.port:
        raise field_error(
            ("port",),
            f"port is required for a real instrument ({instrument.field('simulated')} is false; give its port or "
            f"{'a connection' if instrument.where == 'furnace' else instrument.field('connection')}, or set "
            "simulated = true for the simulator)",
        )
    _check_modbus_port(instrument.port)


#: Every instrument a station may have.
InstrumentConfig = FurnaceConfig | SpectrometerConfig | SensorConfig

#: kind = ... in an [[instrument]] table, and the model it is read with.
INSTRUMENT_KINDS: dict[str, type[FurnaceConfig] | type[SpectrometerConfig] | type[SensorConfig]] = {
    "temperature_controller": FurnaceConfig,
    "spectrometer": SpectrometerConfig,
    "sensor": SensorConfig,
}
