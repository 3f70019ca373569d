"""Simulated Modbus sensors: a sensor map served as :class:`~drivers.sim.furnace.RegisterBank` serves a furnace map.

A :class:`SensorBank` answers FC 3 and 4 reads exactly as its sensor map
(``hardware/sensors``) says, through the same ``read(address, count)`` /
``write(address, words)`` / ``served_values()`` interface as a furnace's
register bank, so the furnace simulator's RTU responder, TCP server and
``--truth`` lines serve it unchanged: one simulated RS-485 line or gateway
holds controllers and sensors together
(``python -m drivers.sim.furnace --sensor 2:ph-transmitter --scenario FILE``).

What a channel reads is the true value of the scenario's ``[process]``
quantity of the channel's name at scenario time
(:meth:`~drivers.sim.scenario.Scenario.process_at`; without one, the channel's
``simulated_default``, else mid-span), plus noise (one count of an integer
encoding, 1e-5 of the span of a float), as the encoding holds it. The scenario
starts with the simulator, and again at each ``SIGRTMIN`` (out of band, as the
thermocouple's signals are): the simulated bench sends it when the trial starts
the process stream, the moment the simulated spectrometers start the same
scenario (``SIM:SCEN:STAR``), so the pH the sensor reads is the pH the cascade
sees. Fault times are simulated seconds since the simulator started.

Faults of the sensor are switched out of band, never on the wire (decision
0016): a schedule in simulated time given on the command line,
``--sensor-fault ADDRESS:CHANNEL:KIND[=RATE]@START_S[-END_S]``:

- ``stuck``: the channel keeps sending the words it sent when the fault began;
- ``drift=RATE``: the probe drifts by RATE units per simulated hour from
  START_S on (a pH electrode's offset), back to none at END_S (recalibrated);
- ``out_of_range``: a raw value outside the channel's valid range (an integer
  encoding's largest, else smallest; a float32 one span beyond);
- ``probe_fault``: the first of the channel's ``fault_bits`` set in its status word.

The truth (``served_values``) says the scenario time (``scenario_s``) and, per channel: the value its words decode to
(``<channel>``), the true process value (``.true``), the fault in force
(``.fault``), the drift offset (``.drift``) and the state the driver must
report (``.state``: ``ok``, ``out_of_range`` or ``probe_fault``); and each
status word (``status.<register>``).

A sensor bank answers FC 3 and FC 4 alike (the interface has no function
code): a map whose two areas share an address is refused.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._sensor_map import SensorChannel, SensorMap, load_sensor_map
from .scenario import Scenario

__all__ = [
    "FAULT_KINDS",
    "SensorBank",
    "SensorFault",
    "SensorProcess",
    "SensorRefusal",
    "parse_sensor",
    "parse_sensor_fault",
    "sensor_banks",
]

#: The faults a simulated sensor channel can be given.
FAULT_KINDS = ("stuck", "drift", "out_of_range", "probe_fault")

_FAULT = re.compile(
    r"^(?P<address>\d+):(?P<channel>[A-Za-z][A-Za-z0-9_]*):(?P<kind>[a-z_]+)(=(?P<rate>[-+0-9.eE]+))?"
    r"@(?P<start>[0-9.eE+]+)(-(?P<end>[0-9.eE+]+))?$"
)


class SensorRefusal(Exception):
    """A request the sensor refuses with a Modbus exception ``code`` (the furnace simulator passes its own)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class SensorFault:
    """One scheduled fault of one channel of the sensor at ``address``, from ``start_s`` until ``end_s``."""

    address: int
    channel: str
    kind: str
    start_s: float
    end_s: float = math.inf
    rate_per_h: float = 0.0  # drift: units per simulated hour

    def active(self, time_s: float) -> bool:
        return self.start_s <= time_s < self.end_s


def parse_sensor(text: str) -> tuple[int, str]:
    """``"2:ph-transmitter"`` -> (2, "ph-transmitter"): a sensor's unit address and its map (name or path)."""
    address, colon, name = text.partition(":")
    if not colon or not address.isdigit() or not 1 <= int(address) <= 247 or not name:
        raise ValueError(f"{text!r}: give ADDRESS:MAP, an address 1..247 and a sensor map, e.g. 2:ph-transmitter")
    return int(address), name


def parse_sensor_fault(text: str) -> SensorFault:
    """``ADDRESS:CHANNEL:KIND[=RATE]@START_S[-END_S]``, e.g. ``2:pH:drift=0.5@600`` or ``2:pH:stuck@0-3600``."""
    found = _FAULT.match(text)
    usage = "give ADDRESS:CHANNEL:KIND[=RATE]@START_S[-END_S], e.g. 2:pH:drift=0.5@600 or 2:pH:stuck@0-3600"
    if found is None:
        raise ValueError(f"{text!r}: {usage}")
    kind = found["kind"]
    if kind not in FAULT_KINDS:
        raise ValueError(f"{text!r}: unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
    if (kind == "drift") != (found["rate"] is not None):
        raise ValueError(f"{text!r}: a drift needs its rate (drift=RATE, units per hour), no other fault has one")
    try:
        start = float(found["start"])
        end = math.inf if found["end"] is None else float(found["end"])
        rate = 0.0 if found["rate"] is None else float(found["rate"])
    except ValueError:
        raise ValueError(f"{text!r}: {usage}") from None
    if not (math.isfinite(start) and math.isfinite(rate) and end > start) or not 1 <= int(found["address"]) <= 247:
        raise ValueError(f"{text!r}: need an address 1..247, finite times with END_S > START_S, a finite rate")
    return SensorFault(int(found["address"]), found["channel"], kind, start, end, rate)


class SensorProcess:
    """What a simulated sensor's channels read at simulated time ``time_s`` (the bank's ``model``).

    :meth:`advance` computes every channel's words once per step (noise
    included), so a read and the truth written after it agree.
    """

    def __init__(
        self, sensor_map: SensorMap, scenario: Scenario | None, faults: Iterable[SensorFault], seed: int = 0
    ) -> None:
        self.map, self.scenario = sensor_map, scenario
        self.faults = tuple(faults)
        self.time_s = -1.0
        self._rng = random.Random(seed)
        self._frozen: dict[str, list[int]] = {}
        self.words: dict[str, list[int]] = {}  # channel -> the words it sends now
        self.statuses: dict[int, int] = {}  # status register -> the word it reads now
        self.truth: dict[str, float | int | str] = {}
        self.restart_pending = False  # SIGRTMIN came: the scenario starts again at the next step
        self.scenario_start_s = 0.0  # simulated time at which the scenario started
        self._check_faults()
        self.advance(0.0)

    def _check_faults(self) -> None:
        for fault in self.faults:
            try:
                channel = self.map[fault.channel]
            except KeyError:
                known = ", ".join(self.map.channel_names)
                raise ValueError(f"sensor map {self.map.name} has no channel {fault.channel!r} ({known})") from None
            if fault.kind == "probe_fault" and channel.status_register is None:
                raise ValueError(f"{self.map.name} {channel.name}: no status_register, so no probe fault bit")
            if fault.kind == "out_of_range" and channel.out_of_range_raw() is None:
                raise ValueError(f"{self.map.name} {channel.name}: its encoding holds no value outside its range")

    # -- the clock, as a FurnaceModel's ------------------------------------------------------------
    def watch_comms(self, now: float) -> None:
        """A sensor has no comms watchdog."""

    def comms_request(self, now: float) -> None:
        """A sensor has no comms watchdog."""

    def restart_scenario(self) -> None:
        """Start the scenario again at the next step (the process stream starts now); safe in a signal handler."""
        self.restart_pending = True

    def scenario_time_s(self, time_s: float) -> float:
        """Scenario time at simulated time ``time_s``: the time since the scenario (re)started."""
        return time_s - self.scenario_start_s

    def true_value(self, channel: SensorChannel, time_s: float) -> float:
        """The process value the channel measures at simulated time ``time_s`` (no noise, no fault)."""
        if self.scenario is not None and channel.name in self.scenario.process:
            return self.scenario.process_at(channel.name, self.scenario_time_s(time_s))
        if channel.simulated_default is not None:
            return channel.simulated_default
        return (channel.valid_min + channel.valid_max) / 2

    def _noise_sd(self, channel: SensorChannel) -> float:
        if channel.encoding == "float32":
            return 1e-5 * (channel.valid_max - channel.valid_min)
        return abs(channel.scale)

    def advance(self, time_s: float) -> None:
        """Move to simulated time ``time_s``: every channel's words and the truth."""
        if time_s == self.time_s:
            return
        self.time_s = time_s
        if self.restart_pending:
            self.restart_pending, self.scenario_start_s = False, time_s
        truth: dict[str, float | int | str] = {}
        statuses: dict[int, int] = {}
        for channel in self.map.channels:
            active = {f.kind: f for f in self.faults if f.channel == channel.name and f.active(time_s)}
            true = self.true_value(channel, time_s)
            drift = active["drift"].rate_per_h * (time_s - active["drift"].start_s) / 3600 if "drift" in active else 0.0
            words = channel.encode(true + drift + self._rng.gauss(0.0, self._noise_sd(channel)))
            if "out_of_range" in active:
                raw = channel.out_of_range_raw()
                assert raw is not None  # checked when the faults were given
                words = channel.encode_raw(raw)
            if "stuck" in active:
                words = self._frozen.setdefault(channel.name, self.words.get(channel.name, words))
            else:
                self._frozen.pop(channel.name, None)
            self.words[channel.name] = words
            if channel.status_register is not None:
                status = statuses.get(channel.status_register, 0)
                if "probe_fault" in active:
                    status |= 1 << next(iter(channel.fault_bits))
                statuses[channel.status_register] = status
            value = channel.decode(words)
            truth[channel.name] = value
            truth[f"{channel.name}.true"] = true
            truth[f"{channel.name}.drift"] = drift
            truth[f"{channel.name}.fault"] = "+".join(sorted(active)) or "none"
        for channel in self.map.channels:
            value = truth[channel.name]
            assert isinstance(value, float)
            faulty = channel.status_register is not None and any(
                statuses[channel.status_register] >> bit & 1 for bit in channel.fault_bits
            )
            truth[f"{channel.name}.state"] = (
                "probe_fault" if faulty else "ok" if channel.in_range(value) else "out_of_range"
            )
        for address, status in sorted(statuses.items()):
            truth[f"status.{address}"] = status
        truth["scenario_s"] = self.scenario_time_s(time_s)
        self.statuses, self.truth = statuses, truth


class SensorBank:
    """A sensor map seen as a bank of registers: what each address reads (the sensor writes nothing).

    ``refusal`` makes the exception a request is refused with (the furnace
    simulator passes its ``ModbusError``, so that its responders answer it).
    """

    def __init__(
        self,
        sensor_map: SensorMap,
        scenario: Scenario | None = None,
        faults: Iterable[SensorFault] = (),
        *,
        seed: int = 0,
        refusal: Callable[[int], Exception] = SensorRefusal,
    ) -> None:
        self.map = sensor_map
        self.model = SensorProcess(sensor_map, scenario, faults, seed)
        self._refusal = refusal
        self._at: dict[int, tuple[str, int]] = {}  # address -> (channel name, word index), or ("", 0): a status word
        for channel in sensor_map.channels:
            for i in range(channel.words):
                self._claim(channel.register + i, (channel.name, i))
            if channel.status_register is not None:
                self._claim(channel.status_register, ("", 0))

    def _claim(self, address: int, what: tuple[str, int]) -> None:
        if self._at.setdefault(address, what) != what:  # the map's rules keep each area's addresses apart
            raise ValueError(
                f"{self.map.path}: address {address} is in both the FC 3 and the FC 4 area; "
                "the simulator answers both alike"
            )

    def read(self, address: int, count: int) -> list[int]:
        """Words for FC 3/FC 4: exception 03 for a bad count, 02 for an address the map does not name."""
        if not 1 <= count <= 125:
            raise self._refusal(3)
        words = []
        for at in range(address, address + count):
            held = self._at.get(at)
            if held is None:
                raise self._refusal(2)
            name, index = held
            words.append(self.model.words[name][index] if name else self.model.statuses.get(at, 0))
        return words

    def write(self, address: int, words: list[int]) -> None:
        """The sensor map names nothing writable: exception 02 (illegal data address)."""
        raise self._refusal(2)

    def served_values(self) -> dict[str, float | int | str]:
        """The truth now: every channel as a read gives it, its true value, fault, drift and state; status words."""
        return dict(self.model.truth)


def sensor_banks(
    sensors: Iterable[tuple[int, str]],
    scenario: Scenario | None,
    faults: Iterable[SensorFault],
    refusal: Callable[[int], Exception] = SensorRefusal,
) -> dict[int, SensorBank]:
    """``{address: SensorBank}`` for ``--sensor ADDRESS:MAP`` options, each with its scheduled faults."""
    faults = tuple(faults)
    banks: dict[int, SensorBank] = {}
    for address, map_name in sensors:
        if address in banks:
            raise ValueError(f"--sensor: address {address} is given twice")
        own = [fault for fault in faults if fault.address == address]
        banks[address] = SensorBank(load_sensor_map(map_name), scenario, own, seed=address, refusal=refusal)
    stray = sorted({fault.address for fault in faults} - set(banks))
    if stray:
        raise ValueError(f"--sensor-fault: no sensor at address {', '.join(map(str, stray))}")
    return banks
