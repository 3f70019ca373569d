"""Station and recipe files: read, validate, and check against each other.

A *station* file (TOML, ``hardware/stations/``) says which instruments the bench
has, where they are connected, their limits, and where data goes. A *recipe*
file (TOML, ``seeds/recipes/``) says what one trial does. Every problem is
reported as a :class:`ConfigError` naming the file, the field, what is wrong and
what is allowed, before any instrument is touched.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from analysis import RARE_EARTHS

__all__ = [
    "ConfigError",
    "FurnaceConfig",
    "SpectrometerConfig",
    "Station",
    "FurnaceSegment",
    "FurnaceProgram",
    "SpectrometerSchedule",
    "Recipe",
    "load_station",
    "load_recipe",
    "check_recipe_against_station",
]

KNOWN_INSTRUMENTS = ("furnace", "spectrometer")


class ConfigError(ValueError):
    """A station or recipe file is unreadable or wrong; the message names file and field."""

    def __init__(self, path: str | os.PathLike, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{self.path}: {len(problems)} problem(s):\n{lines}" if len(problems) > 1
                         else f"{self.path}: {problems[0]}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class FurnaceConfig(_Strict):
    """The furnace controller of a station."""

    driver: Literal["eurotherm"] = "eurotherm"
    simulated: bool = False
    port: str | None = Field(None, description="serial port, e.g. /dev/serial/by-id/...; not for simulated")
    address: Annotated[int, Field(ge=1, le=247)] = 1
    baudrate: Literal[1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200] = 9600
    model: Literal["2400", "3200"] = "2400"
    map: str | None = Field(None, description="register map name in hardware/maps or a path")
    max_temperature_C: Annotated[float, Field(gt=0, le=1800)]
    max_ramp_C_per_min: Annotated[float, Field(gt=0, le=100)]
    safe_temperature_C: Annotated[float, Field(ge=0, le=200)] = 25.0
    poll_interval_s: Annotated[float, Field(gt=0, le=60)] = 1.0

    @model_validator(mode="after")
    def _port_for_real(self):
        if not self.simulated and not self.port:
            raise ValueError("port is required for a real furnace (set simulated = true for the simulator)")
        return self


class SpectrometerConfig(_Strict):
    """The spectrometer of a station."""

    driver: Literal["scpi"] = "scpi"
    simulated: bool = False
    resource: str | None = Field(None, description="VISA resource, e.g. TCPIP0::10.0.0.5::5000::SOCKET")
    visa_library: str = "@py"
    dialect: str = "scpi-spectrometer"
    pixels: Annotated[int, Field(ge=16, le=16384)] = 2048
    min_integration_time_s: PositiveFloat = 0.001
    max_integration_time_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    timeout_s: PositiveFloat = 10.0

    @model_validator(mode="after")
    def _resource_for_real(self):
        if not self.simulated and not self.resource:
            raise ValueError("resource is required for a real spectrometer (set simulated = true for the simulator)")
        if self.min_integration_time_s >= self.max_integration_time_s:
            raise ValueError("min_integration_time_s must be below max_integration_time_s")
        return self


class Station(_Strict):
    """A bench: its instruments, their limits and its data folder."""

    name: str
    description: str = ""
    data_dir: Path = Path("data")
    simulation_speed: Annotated[float, Field(gt=0, le=10000)] = 1.0
    furnace: FurnaceConfig | None = None
    spectrometer: SpectrometerConfig | None = None
    source: Path = Path("<memory>")

    @property
    def simulated(self) -> bool:
        """True when every instrument of the station is a simulator."""
        instruments = [i for i in (self.furnace, self.spectrometer) if i is not None]
        return bool(instruments) and all(i.simulated for i in instruments)


class FurnaceSegment(_Strict):
    """One program segment: ramp at a rate to a target, then dwell."""

    ramp_C_per_min: PositiveFloat
    target_C: Annotated[float, Field(ge=0)]
    dwell_min: NonNegativeFloat = 0.0


class FurnaceProgram(_Strict):
    segments: Annotated[list[FurnaceSegment], Field(min_length=1)]
    cool_to_C: Annotated[float, Field(ge=0)] = 25.0
    cool_rate_C_per_min: PositiveFloat = 5.0
    abort_above_C: PositiveFloat | None = Field(
        None, description="interlock: abort if the furnace reads above this (default: the station's maximum)")


class SpectrometerSchedule(_Strict):
    integration_time_s: PositiveFloat
    averages: Annotated[int, Field(ge=1, le=10000)] = 1
    reference_averages: Annotated[int, Field(ge=1, le=100000)] | None = Field(
        None, description="averages for the dark and blank reference (default: averages); more = less noise in every spectrum")
    interval_s: NonNegativeFloat = 1.0
    dark: Literal["start", "every"] = "start"
    dark_every_n: Annotated[int, Field(ge=1)] = 100
    reference: Literal["start"] = "start"
    on_saturation: Literal["flag", "adjust"] = "flag"


Element = Literal[tuple(RARE_EARTHS)]  # type: ignore[valid-type]


class Recipe(_Strict):
    """What one trial does: sample, furnace program, spectrometer schedule, analysis."""

    title: str
    sample: str
    operator: str
    analytes: Annotated[list[Element], Field(min_length=1)]  # type: ignore[valid-type]
    target: Element  # type: ignore[valid-type]
    calibration: Path | None = None
    wall_clock_limit_min: PositiveFloat = 24 * 60
    duration_min: PositiveFloat | None = Field(None, description="experiment time; needed without a furnace program")
    lost_instrument_abort_s: PositiveFloat = 60.0
    furnace: FurnaceProgram | None = None
    spectrometer: SpectrometerSchedule | None = None
    scenario: Path | None = Field(None, description="simulated bench only: what flows through the cell")
    source: Path = Path("<memory>")

    @model_validator(mode="after")
    def _target_among_analytes(self):
        if self.target not in self.analytes:
            raise ValueError(f"target {self.target!r} is not among analytes {self.analytes}")
        if len(set(self.analytes)) != len(self.analytes):
            raise ValueError(f"analytes repeat an element: {self.analytes}")
        if self.furnace is None and self.spectrometer is None:
            raise ValueError("a recipe needs a [furnace] program, a [spectrometer] schedule, or both")
        return self


def _read_toml(path: Path) -> dict:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(path, ["file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(path, ["is a folder, not a TOML file"]) from None
    except PermissionError:
        raise ConfigError(path, ["cannot be read (permission denied)"]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(path, [f"not UTF-8 text: {error}"]) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(path, [f"not valid TOML: {error}"]) from None


def _field_name(location: tuple) -> str:
    name = ""
    for part in location:
        if isinstance(part, int):
            name += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "literal[")):
            name += f".{part}" if name else part
    return name or "(top level)"


def _problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        field = _field_name(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif item["type"] == "missing":
            message = "missing required field"
        if "input" in item and item["type"] not in ("missing", "model_type") and not isinstance(item["input"], dict):
            message += f" (got {item['input']!r})"
        problems.append(f"{field}: {message}")
    return problems


def load_toml_model(path: str | os.PathLike, model: type[BaseModel], main_table: str, main_hint: str,
                    sub_tables: dict[str, str], unknown: str = "unknown table"):
    """Read a TOML file made of one main table and named sub-tables, and validate it as ``model``.

    Fields of the main table become the model's fields; each sub-table goes into the
    model field ``sub_tables[name]``. Every problem names the file and the field as
    written in the file (``main_table.field`` or ``sub_table.field``).
    """
    path = Path(path)
    raw = _read_toml(path)
    main = raw.pop(main_table, None)
    problems = [f"{name}: {unknown}; allowed: {', '.join([main_table, *sub_tables])}"
                for name in raw if name not in sub_tables]
    if not isinstance(main, dict):
        problems.insert(0, f"{main_table}: missing [{main_table}] table ({main_hint})")
    elif "source" in main:
        problems.append(f"{main_table}.source: unknown field (check the spelling)")
    if problems:
        raise ConfigError(path, problems)
    try:
        return model.model_validate({**main, **{sub_tables[k]: v for k, v in raw.items()}, "source": path})
    except ValidationError as error:
        sub_fields = {field_name: table_name for table_name, field_name in sub_tables.items()}
        located = []
        for problem in _problems(error):
            head, message = problem.split(":", 1)
            root = head.split(".", 1)[0].split("[", 1)[0]
            if head == "(top level)":
                head = main_table
            elif root in sub_fields:
                head = sub_fields[root] + head[len(root):]
            else:
                head = f"{main_table}.{head}"
            located.append(f"{head}:{message}")
        raise ConfigError(path, located) from None


def load_station(path: str | os.PathLike) -> Station:
    """Read and validate a station file."""
    return load_toml_model(path, Station, "station", "name, data_dir, ...",
                           {name: name for name in KNOWN_INSTRUMENTS}, unknown="unknown instrument")


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe file."""
    return load_toml_model(path, Recipe, "recipe", "title, sample, operator, analytes, target",
                           {"furnace": "furnace", "spectrometer": "spectrometer"})


def check_recipe_against_station(recipe: Recipe, station: Station) -> None:
    """Refuse a recipe that needs an instrument the station lacks or breaks a station limit."""
    problems = []
    if recipe.furnace is not None:
        furnace = station.furnace
        if furnace is None:
            problems.append(f"furnace: the recipe has a furnace program but station {station.source} has no furnace")
        else:
            for index, segment in enumerate(recipe.furnace.segments):
                where = f"furnace.segments[{index}]"
                if segment.target_C > furnace.max_temperature_C:
                    problems.append(f"{where}.target_C: {segment.target_C:g} C is above the station's "
                                    f"max_temperature_C {furnace.max_temperature_C:g} C ({station.source})")
                if segment.ramp_C_per_min > furnace.max_ramp_C_per_min:
                    problems.append(f"{where}.ramp_C_per_min: {segment.ramp_C_per_min:g} C/min is above the station's "
                                    f"max_ramp_C_per_min {furnace.max_ramp_C_per_min:g} ({station.source})")
            if recipe.furnace.cool_rate_C_per_min > furnace.max_ramp_C_per_min:
                problems.append(f"furnace.cool_rate_C_per_min: {recipe.furnace.cool_rate_C_per_min:g} C/min is above "
                                f"the station's max_ramp_C_per_min {furnace.max_ramp_C_per_min:g} ({station.source})")
    if recipe.spectrometer is not None:
        spectrometer = station.spectrometer
        if spectrometer is None:
            problems.append(f"spectrometer: the recipe has a spectrometer schedule but station {station.source} "
                            "has no spectrometer")
        else:
            time_s = recipe.spectrometer.integration_time_s
            if not spectrometer.min_integration_time_s <= time_s <= spectrometer.max_integration_time_s:
                problems.append(f"spectrometer.integration_time_s: {time_s:g} s is outside the station's range "
                                f"{spectrometer.min_integration_time_s:g}-{spectrometer.max_integration_time_s:g} s "
                                f"({station.source})")
    if problems:
        raise ConfigError(recipe.source, problems)
