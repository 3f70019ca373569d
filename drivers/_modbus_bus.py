"""One link per bus: the controllers on one RS-485 line or behind one gateway share its port and its lock.

Units 1..n on one serial port (RS-485) or one Modbus TCP gateway are one
physical link: their frames must not interleave, and the port may be open only
once. Each :class:`~drivers._modbus.ModbusLink` of such a unit attaches to the
:class:`Bus` of its link (keyed by transport, port and the factory that opens
it) and holds the bus's lock for each transaction, and for each sequence of
transactions that must not be cut (a poll, a write and its read-back).

A key is ``(transport, port, factory)``. The bus holds the open port (``handle``). A unit that loses it, or must reopen
it, replaces it: ``generation`` counts the handles, so the other units see that
theirs is gone and take the new one before their next transaction. The last
unit to detach closes the port.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["Bus", "attach", "detach", "attached_units"]

_REGISTRY_LOCK = threading.Lock()
_BUSES: dict[tuple, Bus] = {}


class Bus:
    """The shared state of one physical link: the open port, its lock, who uses it."""

    def __init__(self, key: tuple, settings: dict[str, Any]) -> None:
        self.key = key
        self.settings = dict(settings)  # what every unit on the bus must agree on (baud rate, timeouts)
        self.lock = threading.RLock()  # one transaction (or one uncut sequence) at a time, all units together
        self.handle: Any = None  # the open port or client; None while closed
        self.generation = 0  # incremented with every handle opened
        self.units: Counter[int] = Counter()  # addresses (unit ids) attached, and by how many drivers

    def replace(self, opener: Callable[[], Any], closer: Callable[[Any], None]) -> Any:
        """Close the current handle (if any) and open a new one; raises what ``opener`` raises."""
        with self.lock:
            self.drop(closer)
            self.handle = opener()
            self.generation += 1
            return self.handle

    def drop(self, closer: Callable[[Any], None]) -> None:
        """Close the current handle; the next transaction of any unit opens a new one."""
        with self.lock:
            handle, self.handle = self.handle, None
            if handle is not None:
                self.generation += 1
                closer(handle)


def attach(key: tuple, address: int, settings: dict[str, Any]) -> Bus:
    """The bus ``key``, with unit ``address`` on it; ValueError if the settings differ from the bus's."""
    with _REGISTRY_LOCK:
        bus = _BUSES.get(key)
        if bus is None:
            bus = _BUSES[key] = Bus(key, settings)
        elif bus.settings != settings:
            differ = ", ".join(
                f"{name} {settings.get(name)!r} (the bus has {bus.settings.get(name)!r})"
                for name in sorted(set(settings) | set(bus.settings))
                if settings.get(name) != bus.settings.get(name)
            )
            raise ValueError(f"{key[1]}: a unit on this link already uses other settings: {differ}")
        bus.units[address] += 1
        return bus


def detach(bus: Bus, address: int, closer: Callable[[Any], None]) -> None:
    """Unit ``address`` leaves the bus; the last one out closes the port."""
    with _REGISTRY_LOCK:
        bus.units[address] -= 1
        if bus.units[address] <= 0:
            del bus.units[address]
        if bus.units:
            return
        if _BUSES.get(bus.key) is bus:
            del _BUSES[bus.key]
    bus.drop(closer)


def attached_units(key: tuple) -> set[int]:
    """The addresses attached to bus ``key`` (diagnostics and tests)."""
    with _REGISTRY_LOCK:
        bus = _BUSES.get(key)
        return set(bus.units) if bus is not None else set()
