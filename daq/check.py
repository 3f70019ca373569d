"""`remdaq check`: can we talk to each instrument of a station?

The shift-start calibration check (a check standard against a calibration) is
:mod:`daq.calibration_check`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers import InstrumentError

from .bench import open_bench
from .config import SensorConfig, SpectrometerConfig, Station

__all__ = ["InstrumentCheck", "check_station"]


@dataclass(frozen=True)
class InstrumentCheck:
    """What `check` learnt about one instrument."""

    name: str
    ok: bool
    ident: str = ""
    reading: str = ""
    problem: str = ""
    simulated: bool = False


def _read_furnace(furnace) -> str:
    reading = furnace.read_all()
    status = reading.status
    flags = [name for name in ("sensor_break", "loop_break", "heater_fail", "manual") if getattr(status, name)]
    alarms = " ALARM" if status.any_alarm else ""
    return (
        f"PV {reading.temperature_C:.1f} C, SP {reading.setpoint_C:.1f} C, "
        f"working SP {reading.working_setpoint_C:.1f} C, output {reading.output_percent:.1f} %"
        f"{alarms}{' ' + ','.join(flags) if flags else ''}"
    )


def _read_spectrometer(spectrometer) -> str:
    wavelengths_nm = spectrometer.wavelengths_nm
    counts = spectrometer.acquire()
    saturated = int(np.count_nonzero(counts >= spectrometer.full_scale_counts))
    return (
        f"{spectrometer.pixels} px, {wavelengths_nm[0]:.1f}-{wavelengths_nm[-1]:.1f} nm, "
        f"integration {spectrometer.integration_time_s:g} s, counts {counts.min():.0f}-{counts.max():.0f}"
        f"{f', {saturated} px saturated' if saturated else ''}"
    )


def _read_sensor(sensor) -> str:
    reading = sensor.read()
    return ", ".join(
        f"{name} {channel.value:.4g} {'' if channel.units == '1' else channel.units}".rstrip()
        + ("" if channel.ok else f" ({channel.state})")
        for name, channel in reading.channels.items()
    )


def check_station(station: Station) -> list[InstrumentCheck]:
    """Connect to each instrument in turn; report its identity and one reading, or why not.

    Nothing is written to an instrument. Simulated instruments are started for the check.
    """
    results = []
    for config in station.instruments:
        try:
            with open_bench(station, names=(config.name,)) as bench:
                if isinstance(config, SensorConfig):
                    sensor = bench.sensors[config.name]
                    ident, reading = sensor.identity, _read_sensor(sensor)
                elif isinstance(config, SpectrometerConfig):
                    spectrometer = bench.spectrometers[config.name]
                    ident, reading = spectrometer.ident, _read_spectrometer(spectrometer)
                else:
                    furnace = bench.controllers[config.name]
                    ident, reading = furnace.ident, _read_furnace(furnace)
            results.append(InstrumentCheck(config.name, True, ident, reading, simulated=config.simulated))
        except (InstrumentError, OSError, RuntimeError, ValueError) as error:
            results.append(
                InstrumentCheck(
                    config.name, False, problem=f"{type(error).__name__}: {error}", simulated=config.simulated
                )
            )
    return results
