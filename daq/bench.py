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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from drivers import Eurotherm, ScpiSpectrometer, UnreadableFileError, is_regular_file
from drivers.sim.launch import SimulatorProcess, start_simulator
from drivers.sim.scenario import ScenarioError, find_scenario, load_scenario

from .cell import Cell, OperatorCell, SimulatedCell

if TYPE_CHECKING:
    from .config import FurnaceConfig, SpectrometerConfig, Station

__all__ = ["Bench", "open_bench", "connect_furnace", "connect_spectrometer", "find_bench_scenario", "ScenarioError"]


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


@dataclass
class Bench:
    """The connected instruments of one station (either may be None), and the scenario its simulator plays."""

    station: Station
    furnace: Eurotherm | None = None
    spectrometer: ScpiSpectrometer | None = None
    simulators: dict[str, SimulatorProcess] = field(default_factory=dict)
    scenario: Path | None = None

    def cell(self, ask: Callable[[str], object] | None = None) -> Cell:
        """Who fills the flow cell: the simulator (``SIM:`` commands; the scenario starts with the process
        stream) on a simulated spectrometer, else the operator, asked through ``ask`` (default: ``input``)."""
        if self.station.spectrometer is not None and self.station.spectrometer.simulated:
            return SimulatedCell(self.spectrometer, scenario_loaded=self.scenario is not None)
        return OperatorCell() if ask is None else OperatorCell(ask)

    def close(self) -> None:
        """Close drivers, then stop simulator processes. Safe to call twice."""
        for instrument in (self.furnace, self.spectrometer):
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
    args = ["--port", "0", "--pixels", str(config.pixels), "--speed", f"{station.simulation_speed:g}"]
    if scenario is not None:
        args += ["--scenario", str(scenario)]
    simulator = start_simulator("drivers.sim.spectrometer", *args)
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
    )


def connect_spectrometer(station: Station, resource: str) -> ScpiSpectrometer:
    """A spectrometer driver for the station's spectrometer at ``resource``, with its limits."""
    config = _spectrometer_config(station)
    return ScpiSpectrometer(
        resource,
        visa_library=config.visa_library,
        dialect=config.dialect,
        timeout_s=config.timeout_s,
        min_integration_time_s=config.min_integration_time_s,
        max_integration_time_s=config.max_integration_time_s,
        max_averages=config.max_averages,
    )


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
    except BaseException:
        bench.close()
        raise
    return bench
