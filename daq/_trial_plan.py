"""What each instrument of a station does in a recipe's trial: the recipe resolved against the station.

A recipe names the station's instruments: the temperature controllers that run
its furnace program (``[furnace] zones``, default every one, each with its
``offset_C``), the spectrometers whose streams are analysed (``[[stream]]``, by
default one stream on the station's first spectrometer with the recipe's own
analytes, target and calibration), and the sensor channels that have limits
(``[[limit]]``). :func:`plan_trial` resolves those names into a
:class:`TrialPlan`, or lists every problem as ``recipe field: problem`` (with
the station file where a station limit is meant).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._instrument_config import FurnaceConfig, SensorConfig, SpectrometerConfig

if TYPE_CHECKING:
    from ._station_config import Station
    from .config import FurnaceProgram, Recipe, SensorLimit, SpectrometerSchedule

__all__ = ["ZonePlan", "StreamPlan", "LimitPlan", "TrialPlan", "plan_trial"]


@dataclass(frozen=True)
class ZonePlan:
    """One temperature controller and the program it runs (the recipe's, moved by the zone's offset)."""

    controller: FurnaceConfig
    program: FurnaceProgram
    primary: bool


@dataclass(frozen=True)
class StreamPlan:
    """One spectrometer's stream: its schedule, what it analyses and with which calibration."""

    spectrometer: SpectrometerConfig
    schedule: SpectrometerSchedule
    analytes: tuple[str, ...]
    target: str
    calibration: Path | None  # as the recipe gives it (None: the recipe's, or --calibration for the first)
    primary: bool
    where: str  # how messages name the stream's part of the recipe: "spectrometer" or "stream[1]"


@dataclass(frozen=True)
class LimitPlan:
    """A limit on one channel of one sensor."""

    sensor: SensorConfig
    limit: SensorLimit
    where: str


@dataclass(frozen=True)
class TrialPlan:
    """The instruments a trial uses and what each does."""

    zones: tuple[ZonePlan, ...]
    streams: tuple[StreamPlan, ...]
    limits: tuple[LimitPlan, ...]
    #: every sensor the trial records: all of the station's (a sensor without limits is logged too)
    sensors: tuple[SensorConfig, ...] = ()


def _station_field(instrument: FurnaceConfig, name: str) -> str:
    """A station field as a recipe's message names it: ``max_temperature_C`` of a one-furnace station file of
    the older form, ``instrument[zone-2].max_temperature_C`` of a named instrument."""
    return name if instrument.where == "furnace" else instrument.field(name)


def _segment_problems(
    program: FurnaceProgram, controller: FurnaceConfig, offset: float, station_source: Path
) -> list[str]:
    problems = []
    zone = "" if controller.where == "furnace" else f" on {controller.name}"
    shift = f" (with its offset {offset:+g} C)" if offset else ""
    for index, segment in enumerate(program.segments):
        where = f"furnace.segments[{index}]"
        if segment.target_C + offset > controller.max_temperature_C:
            problems.append(
                f"{where}.target_C: {segment.target_C + offset:g} C{zone}{shift} is above the station's "
                f"{_station_field(controller, 'max_temperature_C')} {controller.max_temperature_C:g} C "
                f"({station_source})"
            )
        if segment.target_C + offset < 0:
            problems.append(f"{where}.target_C: {segment.target_C + offset:g} C{zone}{shift} is below 0 C")
        if segment.ramp_C_per_min > controller.max_ramp_C_per_min:
            problems.append(
                f"{where}.ramp_C_per_min: {segment.ramp_C_per_min:g} C/min is above the station's "
                f"{_station_field(controller, 'max_ramp_C_per_min')} {controller.max_ramp_C_per_min:g} "
                f"({station_source})"
            )
    if program.cool_rate_C_per_min > controller.max_ramp_C_per_min:
        problems.append(
            f"furnace.cool_rate_C_per_min: {program.cool_rate_C_per_min:g} C/min is above "
            f"the station's {_station_field(controller, 'max_ramp_C_per_min')} {controller.max_ramp_C_per_min:g} "
            f"({station_source})"
        )
    if program.cool_to_C >= controller.max_temperature_C:
        problems.append(
            f"furnace.cool_to_C: {program.cool_to_C:g} C must be below the station's "
            f"{_station_field(controller, 'max_temperature_C')} {controller.max_temperature_C:g} C ({station_source})"
        )
    if program.abort_above_C is not None and program.abort_above_C > controller.max_temperature_C:
        problems.append(
            f"furnace.abort_above_C: {program.abort_above_C:g} C is above the station's "
            f"{_station_field(controller, 'max_temperature_C')} {controller.max_temperature_C:g} C ({station_source}); "
            "the software interlock may be lowered, never raised above the station's limit"
        )
    return problems


def _zones(recipe: Recipe, station: Station, problems: list[str]) -> tuple[ZonePlan, ...]:
    program = recipe.furnace
    if program is None:
        return ()
    controllers = {c.name: c for c in station.temperature_controllers}
    if not controllers:
        problems.append(f"furnace: the recipe has a furnace program but station {station.source} has no furnace")
        return ()
    names = list(program.zones or controllers)
    known = ", ".join(controllers)
    for name in names:
        if name not in controllers:
            problems.append(
                f"furnace.zones: {name!r} is not a temperature controller of station {station.source} ({known})"
            )
    for name in program.offset_C:
        if name not in names:
            problems.append(
                f"furnace.offset_C.{name}: {name!r} does not run the program (furnace.zones: {', '.join(names)})"
            )
    if len(set(names)) != len(names):
        problems.append(f"furnace.zones: repeats a zone: {names}")
    plans = []
    first = next(iter(controllers))
    for name in dict.fromkeys(names):
        controller = controllers.get(name)
        if controller is None:
            continue
        offset = program.offset_C.get(name, 0.0)
        problems += _segment_problems(program, controller, offset, station.source)
        plans.append(ZonePlan(controller, program.for_zone(name), primary=name == first))
    return tuple(plans)


def _streams(recipe: Recipe, station: Station, problems: list[str]) -> tuple[StreamPlan, ...]:
    base = recipe.spectrometer
    if base is None:
        return ()
    spectrometers = {s.name: s for s in station.spectrometers}
    if not spectrometers:
        problems.append(
            f"spectrometer: the recipe has a spectrometer schedule but station {station.source} has no spectrometer"
        )
        return ()
    if not recipe.streams:
        first = next(iter(spectrometers.values()))
        plans = [
            StreamPlan(first, base, tuple(recipe.analytes), recipe.target, recipe.calibration, True, "spectrometer")
        ]
    else:
        plans = []
        known = ", ".join(spectrometers)
        for index, stream in enumerate(recipe.streams):
            where = f"stream[{index}]"
            config = spectrometers.get(stream.spectrometer)
            if config is None:
                problems.append(
                    f"{where}.spectrometer: {stream.spectrometer!r} is not a spectrometer of station "
                    f"{station.source} ({known})"
                )
                continue
            plans.append(
                StreamPlan(
                    config,
                    stream.schedule(base),
                    tuple(stream.analytes or recipe.analytes),
                    stream.target or recipe.target,
                    stream.calibration if stream.calibration is not None or index else recipe.calibration,
                    index == 0,
                    where,
                )
            )
    streams = {stream.spectrometer: stream for stream in recipe.streams}
    for plan in plans:
        schedule = plan.schedule
        stream = streams.get(plan.spectrometer.name)
        # a setting the stream inherits is the [spectrometer] table's: the message names it there
        own = {key: plan.where for key in _STREAM_SETTINGS if stream is not None and getattr(stream, key) is not None}
        for problem in plan.spectrometer.setting_problems(
            "spectrometer",
            schedule.integration_time_s,
            {"averages": schedule.averages, "reference_averages": schedule.reference_averages},
            station.source,
            sections=own,
        ):
            shown = problem if plan.primary or problem.startswith(plan.where) else f"{problem} ({plan.where})"
            if shown not in problems:
                problems.append(shown)
    return tuple(plans)


#: The [spectrometer] settings a stream may set for itself.
_STREAM_SETTINGS = ("integration_time_s", "averages", "reference_averages", "interval_s")


def _limits(recipe: Recipe, station: Station, problems: list[str]) -> tuple[LimitPlan, ...]:
    from drivers import load_sensor_map  # the maps are validated with the station; here only channel names

    sensors = {s.name: s for s in station.sensors}
    plans = []
    for index, limit in enumerate(recipe.limits):
        where = f"limit[{index}]"
        sensor = sensors.get(limit.instrument)
        if sensor is None:
            known = ", ".join(sensors) or "none"
            problems.append(
                f"{where}.instrument: {limit.instrument!r} is not a sensor of station {station.source} ({known})"
            )
            continue
        if limit.min is not None and limit.max is not None and limit.min >= limit.max:
            problems.append(f"{where}.min: {limit.min:g} must be below {where}.max {limit.max:g}")
            continue
        channels = [channel.name for channel in load_sensor_map(sensor.map).channels]
        if limit.channel not in channels:
            problems.append(
                f"{where}.channel: {sensor.name} ({sensor.map}) has no channel {limit.channel!r} "
                f"({', '.join(channels)})"
            )
            continue
        plans.append(LimitPlan(sensor, limit, where))
    return tuple(plans)


def plan_trial(recipe: Recipe, station: Station) -> tuple[TrialPlan | None, list[str]]:
    """The recipe's trial on the station, or None and every problem (``recipe field: problem`` lines)."""
    problems: list[str] = []
    plan = TrialPlan(
        _zones(recipe, station, problems),
        _streams(recipe, station, problems),
        _limits(recipe, station, problems),
        station.sensors,
    )
    return (None if problems else plan), problems
