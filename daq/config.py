"""Station and recipe files: read, validate, and check against each other.

A *station* file (TOML, ``hardware/stations/``) says which instruments the bench
has, where they are connected, their limits, and where data goes. A *recipe*
file (TOML, ``seeds/recipes/``) says what one trial does. Every problem is
reported as a :class:`ConfigError` naming the file, the field, what is wrong and
what is allowed, before any instrument is touched.

Files are untrusted input: only a small regular file is read (a pipe or device
is refused at once, see :mod:`drivers._text_file`); every number is finite, typed
and bounded (:mod:`daq._config_fields`); the register map, SCPI dialect and
scenario a file names are loaded and checked while the file is validated, so a
wrong name is reported with its file and field before any simulator starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from analysis import RARE_EARTHS

from ._config_fields import FilePath, count, field_error, number, text
from ._config_files import ConfigError, Strict, load_toml_model
from ._config_references import recipe_reference_problems
from ._instrument_config import (
    MAX_FURNACE_C,
    MAX_INTEGRATION_TIME_S,
    MAX_RAMP_C_PER_MIN,
    ConnectionConfig,
    FurnaceConfig,
    InstrumentConfig,
    Name,
    SensorConfig,
    SpectrometerConfig,
)
from ._station_config import Station, load_station, station_document
from ._trial_plan import TrialPlan, plan_trial

__all__ = [
    "ConfigError",
    "ConnectionConfig",
    "FurnaceConfig",
    "SpectrometerConfig",
    "SensorConfig",
    "InstrumentConfig",
    "Station",
    "station_document",
    "load_toml_model",
    "FurnaceSegment",
    "FurnaceProgram",
    "SpectrometerSchedule",
    "Stream",
    "SensorLimit",
    "Recipe",
    "load_station",
    "load_recipe",
    "check_recipe_against_station",
]

#: Physical upper bounds that hold whatever the recipe: the longest trial (30 days), the longest wait between
#: two spectra (1 day); the furnace's and the spectrometer's in :mod:`daq._instrument_config`.
MAX_TRIAL_MIN = 30 * 24 * 60.0
MAX_INTERVAL_S = 24 * 3600.0


class FurnaceSegment(Strict):
    """One program segment: ramp at a rate to a target, then dwell."""

    ramp_C_per_min: Annotated[float, number(gt=0, le=MAX_RAMP_C_PER_MIN)]
    target_C: Annotated[float, number(ge=0, le=MAX_FURNACE_C)]
    dwell_min: Annotated[float, number(ge=0, le=MAX_TRIAL_MIN)] = 0.0


class FurnaceProgram(Strict):
    """The furnace part of a recipe: segments, the cool-down, the over-temperature interlock."""

    segments: Annotated[list[FurnaceSegment], Field(min_length=1, max_length=100)]
    cool_to_C: Annotated[float, number(ge=0, le=MAX_FURNACE_C)] = 25.0
    cool_rate_C_per_min: Annotated[float, number(gt=0, le=MAX_RAMP_C_PER_MIN)] = 5.0
    abort_above_C: Annotated[float, number(gt=0, le=MAX_FURNACE_C)] | None = Field(
        None, description="interlock: abort if the furnace reads above this (default: the station's maximum)"
    )
    zones: Annotated[list[Name], Field(min_length=1, max_length=32)] | None = Field(
        None, description="the station's temperature controllers that run the program (default: every one)"
    )
    offset_C: dict[Name, Annotated[float, number(ge=-200, le=200)]] = Field(
        default_factory=dict,
        description="per zone: added to every segment target, e.g. a hotter end zone that flattens the profile",
    )

    def for_zone(self, zone: str) -> FurnaceProgram:
        """The program one zone runs: the segment targets moved by the zone's offset (not the cool-down)."""
        offset = self.offset_C.get(zone, 0.0)
        if not offset:
            return self
        segments = [segment.model_copy(update={"target_C": segment.target_C + offset}) for segment in self.segments]
        return self.model_copy(update={"segments": segments, "offset_C": {}, "zones": [zone]})


class SpectrometerSchedule(Strict):
    """The spectrometer part of a recipe: integration, averaging, when spectra and darks are taken."""

    integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)]
    averages: Annotated[int, count(ge=1, le=10000)] = 1
    reference_averages: Annotated[int, count(ge=1, le=100000)] | None = Field(
        None,
        description="averages for the dark and blank reference (default: averages); more = less noise in every "
        "spectrum",
    )
    interval_s: Annotated[float, number(ge=0, le=MAX_INTERVAL_S)] = 1.0
    dark: Literal["start", "every"] = "start"
    dark_every_n: Annotated[int, count(ge=1, le=1_000_000)] = 100
    reference: Literal["start"] = "start"
    on_saturation: Literal["flag", "adjust"] = "flag"


if TYPE_CHECKING:
    Element = str  # a symbol of RARE_EARTHS: a Literal built at run time is no type a checker can evaluate
else:
    Element = Literal[tuple(RARE_EARTHS)]


class Stream(Strict):
    """One spectrometer's stream of a recipe with ``[[stream]]`` tables: which spectrometer, analysed how.

    Left out: the recipe's own (analytes, target, calibration; the ``[spectrometer]`` schedule's settings).
    """

    spectrometer: Name
    analytes: Annotated[list[Element], Field(min_length=1, max_length=len(RARE_EARTHS))] | None = None
    target: Element | None = None
    calibration: FilePath | None = Field(None, description="relative paths are taken from the data folder")
    integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)] | None = None
    averages: Annotated[int, count(ge=1, le=10000)] | None = None
    reference_averages: Annotated[int, count(ge=1, le=100000)] | None = None
    interval_s: Annotated[float, number(ge=0, le=MAX_INTERVAL_S)] | None = None

    def schedule(self, base: SpectrometerSchedule) -> SpectrometerSchedule:
        """The recipe's ``[spectrometer]`` schedule with this stream's own settings."""
        own = {
            key: value
            for key in ("integration_time_s", "averages", "reference_averages", "interval_s")
            if (value := getattr(self, key)) is not None
        }
        return base.model_copy(update=own)


class SensorLimit(Strict):
    """An interlock on one channel of one sensor: outside [min, max] (or not a measurement) it acts."""

    instrument: Name
    channel: Annotated[str, text(min_length=1, max_length=64)]
    min: Annotated[float, number(ge=-1e9, le=1e9)] | None = None
    max: Annotated[float, number(ge=-1e9, le=1e9)] | None = None
    action: Literal["abort", "warn"] = Field(
        "abort", description="abort: the trial stops to its safe state; warn: an event, the trial goes on"
    )
    after_s: Annotated[float, number(ge=0, le=24 * 3600.0)] = Field(
        0.0, description="experiment seconds the reading must stay outside before the limit acts"
    )

    @model_validator(mode="after")
    def _a_bound(self):
        if self.min is None and self.max is None:
            raise field_error(("max",), "a limit needs min, max or both")
        return self


class Recipe(Strict):
    """What one trial does: sample, furnace program, spectrometer schedule, analysis."""

    title: Annotated[str, text(min_length=1, max_length=200)]
    sample: Annotated[str, text(min_length=1, max_length=200)]
    operator: Annotated[str, text(min_length=1, max_length=200)]
    analytes: Annotated[list[Element], Field(min_length=1, max_length=len(RARE_EARTHS))]
    target: Element
    calibration: FilePath | None = None
    wall_clock_limit_min: Annotated[float, number(gt=0, le=MAX_TRIAL_MIN)] = 24 * 60.0
    duration_min: Annotated[float, number(gt=0, le=MAX_TRIAL_MIN)] | None = Field(
        None, description="experiment time; needed without a furnace program"
    )
    lost_instrument_abort_s: Annotated[float, number(gt=0, le=24 * 3600.0)] = 60.0
    furnace: FurnaceProgram | None = None
    spectrometer: SpectrometerSchedule | None = None
    streams: tuple[Stream, ...] = ()
    limits: tuple[SensorLimit, ...] = ()
    scenario: FilePath | None = Field(None, description="simulated bench only: what flows through the cell")
    source: Path = Path("<memory>")

    @model_validator(mode="after")
    def _target_among_analytes(self):
        if len(set(self.analytes)) != len(self.analytes):
            raise field_error(("analytes",), f"repeats an element: {self.analytes}")
        if self.target not in self.analytes:
            raise field_error(("target",), f"{self.target!r} is not among analytes {self.analytes} (recipe.analytes)")
        if self.furnace is None and self.spectrometer is None:
            raise ValueError("a recipe needs a [furnace] program, a [spectrometer] schedule, or both")
        if self.furnace is None and self.duration_min is None:
            raise field_error(("duration_min",), "a recipe without a [furnace] program needs a duration")
        if self.streams and self.spectrometer is None:
            raise field_error(("spectrometer",), "[[stream]] tables need a [spectrometer] schedule (their defaults)")
        seen = set()
        for index, stream in enumerate(self.streams):
            if stream.spectrometer in seen:
                raise field_error(("streams", index, "spectrometer"), f"{stream.spectrometer!r} has a stream already")
            seen.add(stream.spectrometer)
            analytes = stream.analytes or self.analytes
            if len(set(analytes)) != len(analytes):
                raise field_error(("streams", index, "analytes"), f"repeats an element: {analytes}")
            if (stream.target or self.target) not in analytes:
                source = f"stream[{index}].analytes" if stream.analytes else "recipe.analytes"
                raise field_error(
                    ("streams", index, "target"),
                    f"{stream.target or self.target!r} is not among analytes {analytes} ({source})",
                )
        return self


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe file, including the scenario it names."""
    recipe = load_toml_model(
        path,
        Recipe,
        "recipe",
        "title, sample, operator, analytes, target",
        {"furnace": "furnace", "spectrometer": "spectrometer", "stream": "streams", "limit": "limits"},
    )
    problems = recipe_reference_problems(recipe)
    if problems:
        raise ConfigError(recipe.source, problems)
    return recipe


def check_recipe_against_station(recipe: Recipe, station: Station) -> TrialPlan:
    """What each of the station's instruments does in the recipe's trial; a ConfigError listing every
    instrument the recipe needs and the station lacks, and every station limit it breaks."""
    plan, problems = plan_trial(recipe, station)
    if plan is None:
        raise ConfigError(recipe.source, problems)
    return plan
