"""A Modbus sensor (pH, conductivity, flow, mass, ...) described by a sensor map: a new sensor is a map, not code.

One class for every such sensor over :mod:`drivers._modbus` (RTU on a serial
port, or ``tcp://HOST[:PORT]``), with the transaction rules of the furnace
driver: bounded retries and drains, owed answers waited out, a failed read
closes the port (reopened on the next call), ``NotConnected`` /
``ProtocolError``, and a sensor on the RS-485 line or behind the gateway of
Eurotherm controllers shares their link and its lock (decision 0078).

What is read, and how it is decoded, is the map's (``hardware/sensors``,
:mod:`drivers._sensor_map`): :meth:`ModbusSensor.read` reads every channel
and status word in as few requests as the map's addresses allow (adjacent
registers of one function are one request), all under the bus's lock. A raw
value outside the channel's valid range (or a float that is not a number) is
not a measurement: its value is NaN, its state ``"out_of_range"``. A set fault
bit of its status word makes it NaN with state ``"probe_fault"``. A failed read
raises; it never returns a number (decision 0086).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from ._modbus import LinkBase, open_link
from ._modbus_unit import ModbusUnitDriver
from ._sensor_map import ReadBlock, SensorChannel, SensorMap, resolve_sensor_map

__all__ = ["ChannelReading", "ModbusSensor", "SensorReading", "SensorState"]

#: What a channel's reading is: a measurement, a raw value outside the valid range, or the probe says it is faulty.
SensorState = Literal["ok", "out_of_range", "probe_fault"]


@dataclass(frozen=True)
class ChannelReading:
    """One channel of a reading: ``value`` in ``units`` (NaN unless ``state`` is ``"ok"``); ``detail`` says why
    a value is not a measurement (the raw value and the range, or the fault bits that are set)."""

    value: float
    units: str
    state: SensorState
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "ok"


@dataclass(frozen=True)
class SensorReading:
    """One read of every channel of a sensor, in the map's order: ``reading["pH"].value``."""

    channels: Mapping[str, ChannelReading]

    def __getitem__(self, name: str) -> ChannelReading:
        return self.channels[name]

    def __iter__(self):
        return iter(self.channels)

    @property
    def values(self) -> dict[str, float]:
        """``{channel: value}`` (NaN where a channel is not ``"ok"``)."""
        return {name: channel.value for name, channel in self.channels.items()}

    @property
    def ok(self) -> bool:
        """Every channel is a measurement."""
        return all(channel.ok for channel in self.channels.values())


class ModbusSensor(ModbusUnitDriver):
    """A sensor on a serial port (Modbus RTU) or at ``tcp://HOST[:PORT]`` (Modbus TCP; ``address`` is the unit id).

    ``sensor_map`` (a :class:`~drivers._sensor_map.SensorMap`, a name in
    ``hardware/sensors`` or a path) says what it reads; without one, the map
    whose ``models`` list ``model`` is used; given both, ``model`` must be one of
    the map's. ``timeout_s``, ``retries``, ``late_answer_s`` (how late an RTU
    answer may still come, default two timeouts), ``answer_guard_s`` and
    ``serial_factory`` (tests) are as for :class:`~drivers.Eurotherm`; a sensor
    on the port of other units must agree with them on the baud rate (RTU) or
    the timeout (TCP). Nothing is ever written to the sensor.
    """

    def __init__(
        self,
        port: str,
        address: int = 1,
        sensor_map: str | os.PathLike | SensorMap | None = None,
        baudrate: int = 9600,
        timeout_s: float = 0.2,
        retries: int = 3,
        *,
        model: str | None = None,
        late_answer_s: float | None = None,
        answer_guard_s: float | None = None,
        serial_factory=None,
    ) -> None:
        self.sensor_map = resolve_sensor_map(model, sensor_map)
        self._blocks = self.sensor_map.blocks()
        self._link: LinkBase = open_link(
            port,
            address,
            baudrate,
            timeout_s,
            retries,
            serial_factory,
            answer_guard_s=answer_guard_s,
            late_answer_s=late_answer_s,
        )

    # -- what it is ---------------------------------------------------------------------------
    @property
    def identity(self) -> str:
        """``"<maker> <sensor name> (map <map>, unit <address> at <port>)"``, from the map (nothing is read)."""
        m = self.sensor_map
        return f"{m.maker} {m.sensor_name}".strip() + f" (map {m.name}, unit {self._link.address} at {self._link.port})"

    @property
    def channels(self) -> Mapping[str, str]:
        """``{channel name: units}``, in the map's order."""
        return MappingProxyType({channel.name: channel.units for channel in self.sensor_map.channels})

    # -- reading ------------------------------------------------------------------------------
    def read(self) -> SensorReading:
        """Every channel, read in the map's blocks under the bus's lock (one uncut sequence of requests).

        ``NotConnected`` (no answer within the budget, port lost) or ``ProtocolError`` (refused, or only
        garbled answers): no reading at all, never a partial one.
        """
        words: dict[tuple[int, int], int] = {}
        with self._link.lock:
            for block in self._blocks:
                for offset, word in enumerate(self._read_block(block)):
                    words[(block.function, block.address + offset)] = word
        return SensorReading(
            MappingProxyType({channel.name: _channel_reading(channel, words) for channel in self.sensor_map.channels})
        )

    def _read_block(self, block: ReadBlock) -> list[int]:
        return self._link.read_registers(
            block.address, block.count, f"read {block.what}", function=4 if block.function == 4 else 3
        )

    def __repr__(self) -> str:
        return f"ModbusSensor(port={self._link.port!r}, address={self._link.address}, map={self.sensor_map.name!r})"


def _channel_reading(channel: SensorChannel, words: dict[tuple[int, int], int]) -> ChannelReading:
    """A channel's reading from the words read: its probe's fault bits first, then its valid range."""
    own = [words[(channel.function, channel.register + i)] for i in range(channel.words)]
    if channel.status_register is not None:
        status = words[(channel.function, channel.status_register)]
        faults = [f"bit {bit}: {meaning}" for bit, meaning in channel.fault_bits.items() if status >> bit & 1]
        if faults:
            detail = f"status register {channel.status_register} reads 0x{status:04X}: {'; '.join(faults)}"
            return ChannelReading(math.nan, channel.units, "probe_fault", detail)
    value = channel.decode(own)
    if not channel.in_range(value):
        raw = channel.raw(own)
        detail = f"raw {raw!r} ({' '.join(f'{w:04X}' for w in own)}) reads {value!r}, outside {channel.valid_range}"
        return ChannelReading(math.nan, channel.units, "out_of_range", detail)
    return ChannelReading(value, channel.units, "ok")
