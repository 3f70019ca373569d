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
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from analysis import RARE_EARTHS
from drivers import UnreadableFileError, parse_ocean_resource, parse_tcp_port, read_small_toml_file, shorten

from ._config_fields import FIELD_ERROR, FilePath, PathText, count, field_error, number, one_of, text
from ._config_references import recipe_reference_problems, station_reference_problems

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

_Model = TypeVar("_Model", bound=BaseModel)

#: Physical upper bounds that hold whatever the station: the hottest tube furnace, the fastest ramp a
#: tube survives, the longest trial (30 days), the longest wait between two spectra (1 day).
MAX_FURNACE_C = 1800.0
MAX_RAMP_C_PER_MIN = 100.0
MAX_TRIAL_MIN = 30 * 24 * 60.0
MAX_INTERVAL_S = 24 * 3600.0
MAX_INTEGRATION_TIME_S = 3600.0


class ConfigError(ValueError):
    """A station or recipe file is unreadable or wrong; the message names file and field."""

    def __init__(self, path: str | os.PathLike, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        where = shorten(str(self.path), 512)
        super().__init__(
            f"{where}: {len(problems)} problem(s):\n{lines}" if len(problems) > 1 else f"{where}: {problems[0]}"
        )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FurnaceConfig(_Strict):
    """The furnace controller of a station."""

    driver: Literal["eurotherm"] = "eurotherm"
    simulated: StrictBool = False
    port: PathText | None = Field(
        None,
        description="serial port (Modbus RTU), e.g. /dev/serial/by-id/..., or tcp://HOST[:PORT] (Modbus TCP, port "
        "502 when omitted; address is then the unit id); not for simulated",
    )
    address: Annotated[int, count(ge=1, le=247)] = 1
    baudrate: Annotated[int, one_of(1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)] = 9600
    model: Annotated[str, text(min_length=1, max_length=40)] | None = Field(
        None,
        description="controller model or family; one of the register map's models (default: 2400 without a "
        "map, any of the map's models with one)",
    )
    map: PathText | None = Field(
        None, description="register map name in hardware/maps or a path (default: the map that covers model)"
    )
    max_temperature_C: Annotated[float, number(gt=0, le=MAX_FURNACE_C)]
    max_ramp_C_per_min: Annotated[float, number(gt=0, le=MAX_RAMP_C_PER_MIN)]
    safe_temperature_C: Annotated[float, number(ge=0, le=200)] = 25.0
    poll_interval_s: Annotated[float, number(gt=0, le=60)] = 1.0
    watchdog_s: Annotated[float, number(ge=1, le=3600)] | None = Field(
        None,
        description="comms watchdog timeout, where the controller has one (EPC3000): with no request for this "
        "long it goes to its fallback (safe) setpoint by itself; at least 3 poll intervals (default: 10 s or 5 "
        "poll intervals, whichever is longer)",
    )

    @model_validator(mode="after")
    def _port_for_real_and_safe_below_max(self):
        if not self.simulated and not self.port:
            raise field_error(
                ("port",),
                "port is required for a real furnace (furnace.simulated is false; "
                "set simulated = true for the simulator)",
            )
        if self.port and self.port.startswith("tcp://"):
            try:
                parse_tcp_port(self.port)
            except ValueError as error:
                raise field_error(("port",), str(error)) from None
        if self.watchdog_s is not None and self.watchdog_s < 3 * self.poll_interval_s:
            raise field_error(
                ("watchdog_s",),
                f"{self.watchdog_s:g} s is less than 3 poll intervals ({3 * self.poll_interval_s:g} s): the "
                "controller would leave the program between polls",
            )
        if self.safe_temperature_C >= self.max_temperature_C:
            raise field_error(
                ("safe_temperature_C",),
                f"{self.safe_temperature_C:g} C must be below furnace.max_temperature_C {self.max_temperature_C:g} C",
            )
        return self

    @property
    def watchdog_or_default_s(self) -> float:
        """The comms watchdog timeout the driver arms: ``watchdog_s``, else 10 s or 5 poll intervals."""
        return self.watchdog_s if self.watchdog_s is not None else min(3600.0, max(10.0, 5 * self.poll_interval_s))

    @property
    def model_or_default(self) -> str | None:
        """The model the register map is chosen or checked by: ``model``; 2400 when neither it nor ``map`` is given."""
        return self.model or (None if self.map else "2400")


class SpectrometerConfig(_Strict):
    """The spectrometer of a station: a SCPI instrument over VISA, or an Ocean Insight one over python-seabreeze."""

    driver: Literal["scpi", "ocean"] = "scpi"
    simulated: StrictBool = False
    resource: Annotated[str, text(min_length=1, max_length=1024)] | None = Field(
        None,
        description="scpi: VISA resource, e.g. TCPIP0::10.0.0.5::5000::SOCKET; "
        "ocean: usb, usb:SERIAL or tcp://HOST:PORT",
    )
    visa_library: PathText = "@py"
    dialect: PathText = "scpi-spectrometer"
    model: Annotated[str, text(min_length=1, max_length=40)] | None = Field(
        None, description="ocean: the model (HDX or FX over TCP; on USB, checked against the device when given)"
    )
    dark: Literal["shutter", "lamp", "prompt"] | None = Field(
        None,
        description="how a dark is taken: shutter (scpi default), lamp (the lamp's TTL line on the spectrometer; "
        "ocean default), prompt (the operator blocks the light path)",
    )
    light_settle_s: Annotated[float, number(ge=0, le=60)] = Field(
        0.0, description="ocean: wait after switching the lamp or shutter before the next scan"
    )
    nonlinearity_correction: StrictBool = Field(
        True, description="ocean: apply the device's nonlinearity polynomial to each scan"
    )
    pixels: Annotated[int, count(ge=16, le=16384)] = 2048
    min_integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)] = 0.001
    max_integration_time_s: Annotated[float, number(gt=0, le=MAX_INTEGRATION_TIME_S)] = 60.0
    max_averages: Annotated[int, count(ge=1, le=100000)] = Field(
        100000, description="most scans the spectrometer averages in one acquisition (the simulator: 1000)"
    )
    timeout_s: Annotated[float, number(gt=0, le=3600)] = 10.0

    @property
    def dark_method(self) -> Literal["shutter", "lamp", "prompt"]:
        """How this spectrometer takes a dark: ``dark``, or the driver's default."""
        return self.dark or ("lamp" if self.driver == "ocean" else "shutter")

    def setting_problems(
        self, section: str, integration_time_s: float, averages: dict[str, int | None], station_source: Path
    ) -> list[str]:
        """What of a measurement's settings this spectrometer cannot do: ``section.key: problem`` lines."""
        problems = []
        if not self.min_integration_time_s <= integration_time_s <= self.max_integration_time_s:
            problems.append(
                f"{section}.integration_time_s: {integration_time_s:g} s is outside the station's range "
                f"{self.min_integration_time_s:g}-{self.max_integration_time_s:g} s ({station_source})"
            )
        for key, scans in averages.items():
            if scans is not None and scans > self.max_averages:
                problems.append(
                    f"{section}.{key}: {scans} is above the station's max_averages {self.max_averages} "
                    f"({station_source})"
                )
        return problems

    @model_validator(mode="after")
    def _resource_for_real_and_integration_range(self):
        if not self.simulated and not self.resource:
            raise field_error(
                ("resource",),
                "resource is required for a real spectrometer (spectrometer.simulated "
                "is false; set simulated = true for the simulator)",
            )
        if self.driver == "scpi" and self.dark not in (None, "shutter"):
            raise field_error(
                ("dark",),
                f"{self.dark!r} is for spectrometer.driver = 'ocean'; a SCPI spectrometer (spectrometer.driver = "
                f"{self.driver!r}) takes its darks with its shutter",
            )
        if self.driver == "ocean" and self.dark == "prompt" and self.simulated:
            raise field_error(("dark",), "'prompt': the simulated bench has no operator; use 'lamp'")
        if self.driver == "ocean" and self.resource and not self.simulated:
            try:
                parse_ocean_resource(self.resource, self.model)
            except ValueError as error:
                raise field_error(("resource",), str(error)) from None
        if self.min_integration_time_s >= self.max_integration_time_s:
            raise field_error(
                ("min_integration_time_s",),
                f"{self.min_integration_time_s:g} s must be below spectrometer.max_integration_time_s "
                f"{self.max_integration_time_s:g} s",
            )
        return self


class Station(_Strict):
    """A bench: its instruments, their limits and its data folder."""

    name: Annotated[str, text(min_length=1, max_length=200)]
    description: Annotated[str, text(max_length=2000, multiline=True)] = ""
    data_dir: FilePath = Path("data")
    simulation_speed: Annotated[float, number(gt=0, le=10000)] = 1.0
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

    ramp_C_per_min: Annotated[float, number(gt=0, le=MAX_RAMP_C_PER_MIN)]
    target_C: Annotated[float, number(ge=0, le=MAX_FURNACE_C)]
    dwell_min: Annotated[float, number(ge=0, le=MAX_TRIAL_MIN)] = 0.0


class FurnaceProgram(_Strict):
    """The furnace part of a recipe: segments, the cool-down, the over-temperature interlock."""

    segments: Annotated[list[FurnaceSegment], Field(min_length=1, max_length=100)]
    cool_to_C: Annotated[float, number(ge=0, le=MAX_FURNACE_C)] = 25.0
    cool_rate_C_per_min: Annotated[float, number(gt=0, le=MAX_RAMP_C_PER_MIN)] = 5.0
    abort_above_C: Annotated[float, number(gt=0, le=MAX_FURNACE_C)] | None = Field(
        None, description="interlock: abort if the furnace reads above this (default: the station's maximum)"
    )


class SpectrometerSchedule(_Strict):
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


class Recipe(_Strict):
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
        return self


def _read_toml(path: Path) -> dict:
    try:
        return read_small_toml_file(path)
    except UnreadableFileError as error:
        raise ConfigError(path, [error.problem]) from None


def _field_name(location: tuple) -> str:
    name = ""
    for part in location:
        if isinstance(part, int):
            name += f"[{part}]"
        elif isinstance(part, str) and part != "[key]" and not part.startswith(("function-", "literal[")):
            name += f".{part}" if name else part
    return name or "(top level)"


def _describe(value: object) -> str:
    """A value from a file as an error message shows it: short, a long text by its start and length."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) > 60:
        return f"a text of {len(value)} characters starting {value[:40]!r}"
    return shorten(repr(value))


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field below the model, message) for each validation error, in the words of the file."""
    problems = []
    for item in error.errors():
        location = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if item["type"] == FIELD_ERROR:
            location += tuple(item.get("ctx", {})["field"])
        elif item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif item["type"] == "missing":
            message = "missing required field"
        elif item["type"] in ("float_type", "int_type") and isinstance(value, bool):
            message = f"expected a number, not a boolean (got {_describe(value)})"
        elif item["type"] == "path_type":
            message = f"expected a path as text (got {_describe(value)})"
        elif (
            "input" in item
            and item["type"] not in ("missing", "model_type", FIELD_ERROR)
            and not isinstance(value, dict)
        ):
            message += f" (got {_describe(value)})"
        problems.append((_field_name(location), message))
    return problems


def load_toml_model(
    path: str | os.PathLike,
    model: type[_Model],
    main_table: str,
    main_hint: str,
    sub_tables: dict[str, str],
    unknown: str = "unknown table",
) -> _Model:
    """Read a TOML file made of one main table and named sub-tables, and validate it as ``model``.

    Fields of the main table become the model's fields; each sub-table goes into the
    model field ``sub_tables[name]``. Every problem names the file and the field as
    written in the file (``main_table.field`` or ``sub_table.field``).
    """
    path = Path(path)
    raw = _read_toml(path)
    main = raw.pop(main_table, None)
    problems = [
        f"{name}: {unknown}; allowed: {', '.join([main_table, *sub_tables])}" for name in raw if name not in sub_tables
    ]
    if main is None:
        problems.insert(0, f"{main_table}: missing [{main_table}] table ({main_hint})")
    elif not isinstance(main, dict):
        problems.insert(0, f"{main_table}: must be a [{main_table}] table ({main_hint}), not {shorten(repr(main))}")
    else:
        problems += [
            f"{main_table}.{name}: unknown field (check the spelling)"
            for name in main
            if name == "source" or name in sub_tables.values()
        ]
    if problems or not isinstance(main, dict):  # main is a table whenever there are no problems
        raise ConfigError(path, problems)
    try:
        return model.model_validate({**main, **{sub_tables[k]: v for k, v in raw.items()}, "source": path})
    except ValidationError as error:
        sub_fields = {field_name: table_name for table_name, field_name in sub_tables.items()}
        located = []
        for head, message in _problems(error):
            root = head.split(".", 1)[0].split("[", 1)[0]
            if head == "(top level)":
                head = main_table
            elif root in sub_fields:
                head = sub_fields[root] + head[len(root) :]
            else:
                head = f"{main_table}.{head}"
            located.append(f"{head}: {message}")
        raise ConfigError(path, located) from None


def load_station(path: str | os.PathLike) -> Station:
    """Read and validate a station file, including the register map and SCPI dialect it names."""
    station = load_toml_model(
        path,
        Station,
        "station",
        "name, data_dir, ...",
        {name: name for name in KNOWN_INSTRUMENTS},
        unknown="unknown instrument",
    )
    problems = station_reference_problems(station)
    if problems:
        raise ConfigError(station.source, problems)
    return station


def load_recipe(path: str | os.PathLike) -> Recipe:
    """Read and validate a recipe file, including the scenario it names."""
    recipe = load_toml_model(
        path,
        Recipe,
        "recipe",
        "title, sample, operator, analytes, target",
        {"furnace": "furnace", "spectrometer": "spectrometer"},
    )
    problems = recipe_reference_problems(recipe)
    if problems:
        raise ConfigError(recipe.source, problems)
    return recipe


def _furnace_limit_problems(program: FurnaceProgram, furnace: FurnaceConfig, station_source: Path) -> list[str]:
    """The cool-down and the interlock threshold of a program against a station's furnace limits."""
    problems = []
    if program.cool_rate_C_per_min > furnace.max_ramp_C_per_min:
        problems.append(
            f"furnace.cool_rate_C_per_min: {program.cool_rate_C_per_min:g} C/min is above "
            f"the station's max_ramp_C_per_min {furnace.max_ramp_C_per_min:g} ({station_source})"
        )
    if program.cool_to_C >= furnace.max_temperature_C:
        problems.append(
            f"furnace.cool_to_C: {program.cool_to_C:g} C must be below the station's "
            f"max_temperature_C {furnace.max_temperature_C:g} C ({station_source})"
        )
    if program.abort_above_C is not None and program.abort_above_C > furnace.max_temperature_C:
        problems.append(
            f"furnace.abort_above_C: {program.abort_above_C:g} C is above the station's "
            f"max_temperature_C {furnace.max_temperature_C:g} C ({station_source}); the software "
            "interlock may be lowered, never raised above the station's limit"
        )
    return problems


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
                    problems.append(
                        f"{where}.target_C: {segment.target_C:g} C is above the station's "
                        f"max_temperature_C {furnace.max_temperature_C:g} C ({station.source})"
                    )
                if segment.ramp_C_per_min > furnace.max_ramp_C_per_min:
                    problems.append(
                        f"{where}.ramp_C_per_min: {segment.ramp_C_per_min:g} C/min is above the station's "
                        f"max_ramp_C_per_min {furnace.max_ramp_C_per_min:g} ({station.source})"
                    )
            problems += _furnace_limit_problems(recipe.furnace, furnace, station.source)
    if recipe.spectrometer is not None:
        spectrometer = station.spectrometer
        if spectrometer is None:
            problems.append(
                f"spectrometer: the recipe has a spectrometer schedule but station {station.source} has no spectrometer"
            )
        else:
            schedule = recipe.spectrometer
            problems += spectrometer.setting_problems(
                "spectrometer",
                schedule.integration_time_s,
                {"averages": schedule.averages, "reference_averages": schedule.reference_averages},
                station.source,
            )
    if problems:
        raise ConfigError(recipe.source, problems)
