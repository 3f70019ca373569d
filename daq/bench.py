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
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from drivers import (
    Eurotherm,
    InstrumentError,
    NotConnected,
    OceanSpectrometer,
    ScpiSpectrometer,
    Spectrometer,
    UnreadableFileError,
    is_regular_file,
)
from drivers.sim.launch import SimulatorProcess, start_simulator
from drivers.sim.scenario import ScenarioError, find_scenario, load_scenario

from .cell import Cell, OperatorCell, SimulatedCell, operator_prompt

if TYPE_CHECKING:
    from .config import FurnaceConfig, SpectrometerConfig, Station

__all__ = [
    "Bench",
    "SimulatorControl",
    "open_bench",
    "connect_furnace",
    "connect_spectrometer",
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
    """The connected instruments of one station (either may be None), and the scenario its simulator plays."""

    station: Station
    furnace: Eurotherm | None = None
    spectrometer: Spectrometer | None = None
    simulators: dict[str, SimulatorProcess] = field(default_factory=dict)
    scenario: Path | None = None
    #: Where the simulated bench takes its ``SIM:`` commands: the SCPI spectrometer itself, or the control
    #: port of a simulator whose protocol has no room for them. None on a real bench.
    sim_control: SimCommands | None = None

    def cell(self, ask: Callable[[str], object] | None = None) -> Cell:
        """Who fills the flow cell: the simulator (``SIM:`` commands; the scenario starts with the process
        stream) on a simulated spectrometer, else the operator, asked through ``ask`` (default: ``input``)."""
        if self.station.spectrometer is not None and self.station.spectrometer.simulated:
            if self.sim_control is None:
                raise InstrumentError("the simulated spectrometer is not connected")
            return SimulatedCell(self.sim_control, scenario_loaded=self.scenario is not None)
        return OperatorCell() if ask is None else OperatorCell(ask)

    def close(self) -> None:
        """Close drivers, then stop simulator processes. Safe to call twice."""
        for instrument in (self.furnace, self.spectrometer, self.sim_control):
            if instrument is not None:
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


def _furnace_address(station: Station, simulators: dict) -> str:
    config = _furnace_config(station)
    if not config.simulated:
        if not config.port:  # the station's validation requires a port for a real furnace
            raise ValueError(f"station {station.source}: furnace.port is required for a real furnace")
        return config.port
    simulator = start_simulator(
        "drivers.sim.furnace",
        "--address",
        str(config.address),
        *(["--model", config.model] if config.model else []),
        *(["--map", config.map] if config.map else []),
        "--speed",
        f"{station.simulation_speed:g}",
    )
    simulators["furnace"] = simulator
    return simulator.address


def _spectrometer_address(station: Station, simulators: dict, scenario: Path | None) -> str:
    config = _spectrometer_config(station)
    if not config.simulated:
        if not config.resource:  # the station's validation requires a resource for a real spectrometer
            raise ValueError(f"station {station.source}: spectrometer.resource is required for a real spectrometer")
        return config.resource
    args = ["--port", "0", "--speed", f"{station.simulation_speed:g}"]
    if config.driver == "scpi":
        args += ["--pixels", str(config.pixels)]
    if scenario is not None:
        args += ["--scenario", str(scenario)]
    simulator = start_simulator(_SPECTROMETER_SIMULATORS[config.driver], *args)
    simulators["spectrometer"] = simulator
    return simulator.address


def connect_furnace(station: Station, port: str) -> Eurotherm:
    """A furnace driver for the station's furnace on ``port``, with the station's limits."""
    config = _furnace_config(station)
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
    station: Station, resource: str, ask: Callable[[str], object] | None = None
) -> ScpiSpectrometer | OceanSpectrometer:
    """A spectrometer driver for the station's spectrometer at ``resource``, with its limits; ``ask`` is how
    an Ocean spectrometer whose darks are taken by hand asks the operator (default: a bounded prompt)."""
    config = _spectrometer_config(station)
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


def _sim_control(bench: Bench) -> SimCommands | None:
    simulator = bench.simulators.get("spectrometer")
    if simulator is None:
        return None
    if simulator.control:
        return SimulatorControl(simulator.control)
    return bench.spectrometer if isinstance(bench.spectrometer, ScpiSpectrometer) else None


def open_bench(
    station: Station, *, scenario: Path | None = None, instruments: tuple[str, ...] = ("furnace", "spectrometer")
) -> Bench:
    """Start the station's simulators (if any) and connect its instruments.

    On failure everything already started is stopped again before the error propagates.
    """
    bench = Bench(station, scenario=scenario)
    try:
        if "furnace" in instruments and station.furnace is not None:
            bench.furnace = connect_furnace(station, _furnace_address(station, bench.simulators))
        if "spectrometer" in instruments and station.spectrometer is not None:
            bench.spectrometer = connect_spectrometer(
                station, _spectrometer_address(station, bench.simulators, scenario)
            )
            bench.sim_control = _sim_control(bench)
    except BaseException:
        bench.close()
        raise
    return bench
