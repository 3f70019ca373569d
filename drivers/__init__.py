"""Instrument drivers for the rem-daq bench.

Knows nothing of trials, HDF5 or Streamlit. Public API:

- :class:`Eurotherm` - furnace controller over Modbus RTU (pyserial + minimalmodbus) or Modbus TCP
  (pymodbus); :func:`parse_tcp_port` checks a ``tcp://HOST[:PORT]`` port; :class:`NotConfigured` when the
  controller lacks a commissioning step; :class:`ProgramSegment` for a program its own programmer runs
- :class:`ScpiSpectrometer` - spectrometer over SCPI/VISA (pyvisa + pyvisa-py)
- :class:`OceanSpectrometer` - Ocean Insight spectrometer over python-seabreeze (USB, or OBP over TCP);
  :class:`DarkNotDark` when a dark still shows the light; :func:`parse_ocean_resource` checks a location
- :class:`Spectrometer` - the interface both spectrometer drivers offer (a Protocol)
- errors: :class:`InstrumentError` and its subclasses
- untrusted small files (station, recipe, map, dialect, scenario): :func:`read_small_toml_file`,
  :func:`is_regular_file`, :class:`UnreadableFileError`
- register maps (hardware/maps): :func:`load_register_map`, :func:`resolve_register_map`,
  :func:`register_map_models`, :class:`RegisterMap`, :class:`MapError`, :class:`ModelNotCovered`
- SCPI dialects (hardware/maps): :func:`load_dialect`, :class:`ScpiDialect`
- :class:`ModbusSensor` - a Modbus sensor (pH, conductivity, flow, mass) described by a sensor map
  (hardware/sensors): :func:`load_sensor_map`, :func:`resolve_sensor_map`, :class:`SensorMap`; a read is a
  :class:`SensorReading` of :class:`ChannelReading` (value, units, state)
"""

from typing import TYPE_CHECKING

from ._errors import InstrumentError, LimitError, NotConnected, ProtocolError, ReadbackMismatch
from ._modbus_address import parse_tcp_port
from ._spectrometer_interface import Spectrometer
from ._text_file import UnreadableFileError, is_regular_file, read_small_toml_file, shorten
from .maps import MapError

if TYPE_CHECKING:  # imported on first use (__getattr__ below); named here for type checkers
    from ._register_map import (
        ModelNotCovered,
        RegisterMap,
        load_register_map,
        register_map_models,
        resolve_register_map,
    )
    from ._scpi_dialect import ScpiDialect, load_dialect
    from ._sensor_map import SensorMap, load_sensor_map, resolve_sensor_map
    from .eurotherm import Eurotherm, NotConfigured, ProgramSegment
    from .ocean import DarkNotDark, OceanSpectrometer, parse_ocean_resource
    from .sensor import ChannelReading, ModbusSensor, SensorReading
    from .spectrometer import ScpiError, ScpiSpectrometer

__all__ = [
    "Eurotherm",
    "NotConfigured",
    "ProgramSegment",
    "parse_tcp_port",
    "ScpiSpectrometer",
    "ScpiError",
    "OceanSpectrometer",
    "DarkNotDark",
    "parse_ocean_resource",
    "Spectrometer",
    "InstrumentError",
    "LimitError",
    "NotConnected",
    "ProtocolError",
    "ReadbackMismatch",
    "UnreadableFileError",
    "is_regular_file",
    "read_small_toml_file",
    "shorten",
    "MapError",
    "ModelNotCovered",
    "RegisterMap",
    "load_register_map",
    "register_map_models",
    "resolve_register_map",
    "load_dialect",
    "ScpiDialect",
    "ModbusSensor",
    "SensorReading",
    "ChannelReading",
    "SensorMap",
    "load_sensor_map",
    "resolve_sensor_map",
]

#: Names imported on first use (the register map schema imports pydantic).
_REGISTER_MAP_NAMES = (
    "ModelNotCovered",
    "RegisterMap",
    "load_register_map",
    "register_map_models",
    "resolve_register_map",
)


def __getattr__(name):
    # Drivers are imported on first use so that `import drivers` stays cheap and a
    # missing optional stack (e.g. pyvisa) only matters to whoever uses that driver.
    if name in ("Eurotherm", "NotConfigured", "ProgramSegment"):
        from . import eurotherm

        return getattr(eurotherm, name)
    if name in _REGISTER_MAP_NAMES:
        from . import _register_map

        return getattr(_register_map, name)
    if name in ("ModbusSensor", "SensorReading", "ChannelReading"):
        from . import sensor

        return getattr(sensor, name)
    if name in ("SensorMap", "load_sensor_map", "resolve_sensor_map"):
        from . import _sensor_map

        return getattr(_sensor_map, name)
    if name in ("load_dialect", "ScpiDialect"):
        from . import _scpi_dialect

        return getattr(_scpi_dialect, name)
    if name in ("OceanSpectrometer", "DarkNotDark", "parse_ocean_resource"):
        from . import ocean

        return getattr(ocean, name)
    if name in ("ScpiSpectrometer", "ScpiError"):
        from . import spectrometer

        return getattr(spectrometer, name)
    raise AttributeError(f"module 'drivers' has no attribute {name!r}")
