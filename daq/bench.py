"""Connect to the instruments of a station, starting simulators for simulated ones.

The bench owns the driver objects and the simulator processes for as long as a
command needs them; closing it closes the drivers and stops the simulators. It is
the one place of ``daq`` that knows the simulated bench (``drivers.sim``): it
starts the simulators, reads the scenarios they play, and decides who fills the
flow cell (the simulator, or the operator).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from drivers import (
    Eurotherm,
    InstrumentError,
    ModbusSensor,
    NotConnected,
    OceanSpectrometer,
    ScpiSpectrometer,
    Spectrometer,
    UnreadableFileError,
    is_regular_file,
)
from drivers.sim.launch import SimulatorProcess, start_simulator
from drivers.sim.scenario import ScenarioError, find_scenario, load_scenario

from ._instrument_config import FurnaceConfig, SensorConfig, SpectrometerConfig
from .cell import Cell, OperatorCell, SimulatedCell, operator_prompt

if TYPE_CHECKING:
    from .config import Station

__all__ = [
    "Bench",
    "SimulatorControl",
    "open_bench",
    "connect_furnace",
    "connect_spectrometer",
    "connect_sensor",
    "find_bench_scenario",
    "ScenarioError",
]

#: The simulator module of each spectrometer driver: one physics, two wire protocols.
_SPECTROMETER_SIMULATORS = {"scpi": "drivers.sim.spectrometer", "ocean": "drivers.sim.ocean"}


def find_bench_scenario(name_or_path: str | os.PathLike, beside: Path | None = None) -> Path:
    """The scenario file for the simulated bench, read and checked: a file in folder ``beside`` (a recipe's
    own folder) first, else a path, else a name in seeds/scenarios.

    Raises :class:`ScenarioError` (what is wrong, in words) if there is none or it cannot be used.
    """
    path = None
    if beside is not None:
        candidate = Path(beside) / name_or_path
        try:
            if is_regular_file(candidate):
                path = candidate
        except UnreadableFileError as error:
            raise ScenarioError(str(error)) from None
    if path is None:
        path = find_scenario(name_or_path)
    load_scenario(path)
    return path


class SimCommands(Protocol):
    """Where ``SIM:`` commands go: a text command channel of the simulated bench."""

    def write(self, command: str) -> None: ...
    def query(self, command: str) -> str: ...
    def close(self) -> None: ...


class SimulatorControl:
    """The ``SIM:`` namespace of a simulator whose instrument protocol has no room for it (the simulated Ocean
    spectrometer speaks binary OBP): text commands on a port beside the instrument's, each checked with
    ``SYST:ERR?``. Every wait is bounded by ``timeout_s``."""

    def __init__(self, resource: str, timeout_s: float = 10.0):
        parts = resource.split("::")
        if len(parts) != 4 or not parts[2].isdigit():
            raise ValueError(f"{resource!r}: expected TCPIP0::HOST::PORT::SOCKET")
        self.resource, self.timeout_s = resource, timeout_s
        try:
            self._socket = socket.create_connection((parts[1], int(parts[2])), timeout=timeout_s)
        except OSError as error:
            raise NotConnected(f"{resource}: cannot reach the simulator's control port: {error}") from None
        self._pending = b""

    def query(self, command: str) -> str:
        """Send ``command`` and return its one-line answer."""
        self._send(command)
        while b"\n" not in self._pending:
            try:
                chunk = self._socket.recv(65536)
            except OSError as error:
                raise NotConnected(f"{self.resource}: no answer to {command!r}: {error}") from None
            if not chunk:
                raise NotConnected(f"{self.resource}: the simulator closed its control port")
            self._pending += chunk
            if len(self._pending) > 1 << 20:
                raise InstrumentError(f"{self.resource}: an answer to {command!r} longer than 1 MB")
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode("ascii", errors="replace").strip()

    def write(self, command: str) -> None:
        """Send ``command`` (no answer) and raise :class:`~drivers.InstrumentError` if the simulator refused it."""
        self._send(command)
        answer = self.query("SYST:ERR?")
        if not answer.startswith(("0,", "+0,")):
            raise InstrumentError(f"{self.resource}: {command!r} refused: {answer}")

    def _send(self, command: str) -> None:
        try:
            self._socket.sendall(command.encode("ascii") + b"\n")
        except OSError as error:
            raise NotConnected(f"{self.resource}: cannot send {command!r}: {error}") from None

    def close(self) -> None:
        """Close the control connection; safe to call twice."""
        self._socket.close()


@dataclass
class Bench:
    """The connected instruments of one station by name, and the scenario its simulators play.

    ``furnace``, ``spectrometer`` and ``sim_control`` are the primary ones (the first of their kind in the
    station file; the only ones of a one-furnace, one-spectrometer station), each None when absent.
    """

    station: Station
    furnace: Eurotherm | None = None
    spectrometer: Spectrometer | None = None
    simulators: dict[str, SimulatorProcess] = field(default_factory=dict)
    scenario: Path | None = None
    #: Where the simulated bench takes its ``SIM:`` commands: the SCPI spectrometer itself, or the control
    #: port of a simulator whose protocol has no room for them. None on a real bench.
    sim_control: SimCommands | None = None
    #: every connected instrument by its station name (the primary ones too)
    controllers: dict[str, Eurotherm] = field(default_factory=dict)
    spectrometers: dict[str, Spectrometer] = field(default_factory=dict)
    sensors: dict[str, Any] = field(default_factory=dict)
    sim_controls: dict[str, SimCommands] = field(default_factory=dict)
    #: the keys of ``simulators`` that serve sensors (their scenario starts with the process stream)
    _sensor_simulators: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        primary_furnace, primary_spectrometer = self.station.furnace, self.station.spectrometer
        if self.furnace is not None and primary_furnace is not None:
            self.controllers.setdefault(primary_furnace.name, self.furnace)
        if self.spectrometer is not None and primary_spectrometer is not None:
            self.spectrometers.setdefault(primary_spectrometer.name, self.spectrometer)
            if self.sim_control is not None:
                self.sim_controls.setdefault(primary_spectrometer.name, self.sim_control)

    def cell(self, ask: Callable[[str], object] | None = None, spectrometer: str | None = None) -> Cell:
        """Who fills the flow cell of ``spectrometer`` (default: the primary one): the simulator (``SIM:``
        commands; the scenario starts with the process stream) on a simulated spectrometer, else the operator,
        asked through ``ask`` (default: ``input``)."""
        config = self.station.spectrometer if spectrometer is None else self.station.instrument(spectrometer)
        if config is not None and config.simulated:
            control = self.sim_controls.get(config.name)
            if control is None:
                raise InstrumentError(f"the simulated spectrometer {config.name!r} is not connected")
            return SimulatedCell(control, scenario_loaded=self.scenario is not None)
        return OperatorCell() if ask is None else OperatorCell(ask)

    def start_sensor_scenarios(self) -> None:
        """On a simulated bench, start the scenario of every simulated sensor now: call it as the process
        stream starts (the simulated spectrometers start the same scenario then), so the sensors read the
        process the spectrometers see. Nothing on a real bench."""
        for key, simulator in self.simulators.items():
            if key in self._sensor_simulators and simulator.alive:
                os.kill(simulator.pid, signal.SIGRTMIN)

    def close(self) -> None:
        """Close drivers, then stop simulator processes. Safe to call twice."""
        instruments = [
            *self.controllers.values(),
            *self.spectrometers.values(),
            *self.sensors.values(),
            *self.sim_controls.values(),
            self.furnace,
            self.spectrometer,
            self.sim_control,
        ]
        closed: set[int] = set()
        for instrument in instruments:
            if instrument is not None and id(instrument) not in closed:
                closed.add(id(instrument))
                with contextlib.suppress(Exception):
                    instrument.close()
        for simulator in self.simulators.values():
            simulator.stop()
        self.simulators.clear()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _furnace_config(station: Station) -> FurnaceConfig:
    if station.furnace is None:
        raise ValueError(f"station {station.source} has no furnace")
    return station.furnace


def _spectrometer_config(station: Station) -> SpectrometerConfig:
    if station.spectrometer is None:
        raise ValueError(f"station {station.source} has no spectrometer")
    return station.spectrometer


def _modbus_link_key(config: FurnaceConfig | SensorConfig) -> str:
    """Which simulator serves a simulated Modbus instrument: its connection's, else one of its own."""
    return f"connection:{config.connection}" if config.connection else f"instrument:{config.name}"


def _start_modbus_simulators(station: Station, wanted: set[str], scenario: Path | None, bench: Bench):
    """One simulated bus or gateway per simulated connection (and per simulated unit without one), serving
    the ``wanted`` controllers and sensors on it; the port each is reached on, by name."""
    units: dict[str, list[FurnaceConfig | SensorConfig]] = {}
    for config in (*station.temperature_controllers, *station.sensors):
        if config.simulated and config.name in wanted:
            units.setdefault(_modbus_link_key(config), []).append(config)
    ports: dict[str, str] = {}
    for key, configs in units.items():
        controllers = [c for c in configs if isinstance(c, FurnaceConfig)]
        sensors = [c for c in configs if isinstance(c, SensorConfig)]
        models = {(c.model, c.map) for c in controllers}
        if len(models) > 1:
            raise ValueError(
                f"station {station.source}: the simulated bus {key.split(':', 1)[1]} serves one controller model; "
                f"{', '.join(c.name for c in controllers)} name different models or maps"
            )
        args = ["--speed", f"{station.simulation_speed:g}"]
        if controllers:
            model, map_name = next(iter(models))
            args += ["--address", ",".join(str(c.address) for c in controllers)]
            args += [*(["--model", model] if model else []), *(["--map", map_name] if map_name else [])]
        for sensor in sensors:
            args += ["--sensor", f"{sensor.address}:{sensor.map}"]
        if sensors and scenario is not None:
            args += ["--scenario", str(scenario)]
        simulator = start_simulator("drivers.sim.furnace", *args)
        bench.simulators[key] = simulator
        if sensors:
            bench._sensor_simulators.add(key)
        for config in configs:
            ports[config.name] = simulator.address
    return ports


def _modbus_port(config: FurnaceConfig | SensorConfig, simulated_ports: dict[str, str]) -> str:
    if config.simulated:
        return simulated_ports[config.name]
    if not config.port:  # the station's validation requires a port for a real instrument
        raise ValueError(f"{config.field('port')} is required for a real instrument")
    return config.port


def _spectrometer_address(station: Station, config: SpectrometerConfig, simulators: dict, scenario: Path | None) -> str:
    if not config.simulated:
        if not config.resource:  # the station's validation requires a resource for a real spectrometer
            raise ValueError(f"{config.field('resource')} is required for a real spectrometer")
        return config.resource
    args = ["--port", "0", "--speed", f"{station.simulation_speed:g}"]
    if config.driver == "scpi":
        args += ["--pixels", str(config.pixels)]
    if scenario is not None:
        args += ["--scenario", str(scenario)]
    if config.sampling_point is not None:
        args += ["--sampling-point", config.sampling_point]
    simulator = start_simulator(_SPECTROMETER_SIMULATORS[config.driver], *args)
    simulators[f"spectrometer:{config.name}"] = simulator
    return simulator.address


def connect_furnace(station: Station, port: str, config: FurnaceConfig | None = None) -> Eurotherm:
    """A driver for a temperature controller of the station (default: its furnace) on ``port``, with its limits."""
    config = config or _furnace_config(station)
    return Eurotherm(
        port,
        address=config.address,
        baudrate=config.baudrate,
        model=config.model,
        register_map=config.map,
        max_temperature_C=config.max_temperature_C,
        max_rate_C_per_min=config.max_ramp_C_per_min,
        safe_setpoint_C=config.safe_temperature_C,
        watchdog_s=config.watchdog_or_default_s,
    )


def connect_spectrometer(
    station: Station,
    resource: str,
    ask: Callable[[str], object] | None = None,
    config: SpectrometerConfig | None = None,
) -> ScpiSpectrometer | OceanSpectrometer:
    """A driver for a spectrometer of the station (default: its first) at ``resource``, with its limits;
    ``ask`` is how an Ocean spectrometer whose darks are taken by hand asks the operator (default: a bounded
    prompt)."""
    config = config or _spectrometer_config(station)
    if config.driver == "ocean":
        return OceanSpectrometer(
            resource,
            model="HDX" if config.simulated else config.model,
            timeout_s=config.timeout_s,
            min_integration_time_s=config.min_integration_time_s,
            max_integration_time_s=config.max_integration_time_s,
            max_averages=config.max_averages,
            dark_method=config.dark_method,
            dark_prompt=(ask or operator_prompt()) if config.dark_method == "prompt" else None,
            light_settle_s=config.light_settle_s,
            nonlinearity_correction=config.nonlinearity_correction,
        )
    return ScpiSpectrometer(
        resource,
        visa_library=config.visa_library,
        dialect=config.dialect,
        timeout_s=config.timeout_s,
        min_integration_time_s=config.min_integration_time_s,
        max_integration_time_s=config.max_integration_time_s,
        max_averages=config.max_averages,
    )


def connect_sensor(config: SensorConfig, port: str) -> ModbusSensor:
    """A driver for a sensor of the station on ``port`` (its own, its connection's or its simulator's)."""
    return ModbusSensor(port, address=config.address, sensor_map=config.map, baudrate=config.baudrate)


def _sim_control(simulator: SimulatorProcess | None, spectrometer: Spectrometer) -> SimCommands | None:
    if simulator is None:
        return None
    if simulator.control:
        return SimulatorControl(simulator.control)
    return spectrometer if isinstance(spectrometer, ScpiSpectrometer) else None


#: The kinds of instrument :func:`open_bench` connects, by the names commands use for them.
ALL_KINDS = ("furnace", "spectrometer", "sensor")
_KIND_OF = {"furnace": "temperature_controller", "spectrometer": "spectrometer", "sensor": "sensor"}


def open_bench(
    station: Station,
    *,
    scenario: Path | None = None,
    instruments: tuple[str, ...] = ALL_KINDS,
    names: tuple[str, ...] | None = None,
) -> Bench:
    """Start the station's simulators (if any) and connect its instruments of the kinds ``instruments`` names
    (``furnace``: every temperature controller, ``spectrometer``, ``sensor``), or only those called ``names``.

    On failure everything already started is stopped again before the error propagates.
    """
    bench = Bench(station, scenario=scenario)
    kinds = tuple(_KIND_OF[name] for name in instruments)
    wanted = {
        config.name
        for config in station.instruments
        if config.kind in kinds and (names is None or config.name in names)
    }
    try:
        ports = _start_modbus_simulators(station, wanted, scenario, bench)
        for config in station.temperature_controllers:
            if config.name in wanted:
                bench.controllers[config.name] = connect_furnace(station, _modbus_port(config, ports), config)
        for sensor_config in station.sensors:
            if sensor_config.name in wanted:
                bench.sensors[sensor_config.name] = connect_sensor(sensor_config, _modbus_port(sensor_config, ports))
        for spectrometer_config in station.spectrometers:
            if spectrometer_config.name in wanted:
                address = _spectrometer_address(station, spectrometer_config, bench.simulators, scenario)
                driver = connect_spectrometer(station, address, config=spectrometer_config)
                bench.spectrometers[spectrometer_config.name] = driver
                control = _sim_control(bench.simulators.get(f"spectrometer:{spectrometer_config.name}"), driver)
                if control is not None:
                    bench.sim_controls[spectrometer_config.name] = control
        if station.furnace is not None:
            bench.furnace = bench.controllers.get(station.furnace.name)
        if station.spectrometer is not None:
            bench.spectrometer = bench.spectrometers.get(station.spectrometer.name)
            bench.sim_control = bench.sim_controls.get(station.spectrometer.name)
    except BaseException:
        bench.close()
        raise
    return bench
