"""The files a station or recipe names (register map, SCPI dialect, sensor map, scenario), checked when read.

A wrong name must be reported with the station or recipe file and the field
before any simulator or instrument is started, not by a simulator that fails to
start or by a driver halfway through connecting. So each named file is loaded
and checked here, with the same loaders the drivers and simulators use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from drivers import MapError, ModelNotCovered, load_dialect, load_sensor_map, resolve_register_map

if TYPE_CHECKING:
    from ._instrument_config import FurnaceConfig
    from ._station_config import Station
    from .config import Recipe

__all__ = ["station_reference_problems", "recipe_reference_problems", "resolve_recipe_scenario"]

#: What a hand-edited map may still trip over in a loader that expects tables and strings.
_MALFORMED = (TypeError, KeyError, AttributeError)


def _map_problem(field: str, error: Exception) -> str:
    if isinstance(error, ValueError):
        return f"{field}: {error}"
    return f"{field}: the map file is malformed ({type(error).__name__}: {error})"


def _map_problems(field: str, error: Exception) -> list[str]:
    """One problem per problem of a map file (``field: map file: field in the map: problem``)."""
    if isinstance(error, MapError) and error.path is not None and error.problems:
        return [f"{field}: {error.path}: {problem}" for problem in error.problems]
    return [_map_problem(field, error)]


def _model_problem(error: ModelNotCovered, model_field: str, map_field: str) -> str:
    """A controller's model against the register map it names or the maps in hardware/maps."""
    if error.map_name is not None:
        return (
            f"{model_field}: {error.model!r} is not a model of register map {error.map_name} ({map_field}), "
            f"which covers {', '.join(error.covers)}; {error.listing}"
        )
    if error.covering:
        return (
            f"{model_field}: {error.model!r} is covered by several register maps "
            f"({', '.join(error.covering)}); choose one with {map_field}"
        )
    return (
        f"{model_field}: no register map covers model {error.model!r}; {error.listing} "
        f"(name one with {map_field}, or add a map to hardware/maps)"
    )


def _controller_problems(furnace: FurnaceConfig) -> list[str]:
    model_field, map_field = furnace.field("model"), furnace.field("map")
    try:
        register_map = resolve_register_map(furnace.model_or_default, furnace.map)
    except ModelNotCovered as error:
        return [_model_problem(error, model_field, map_field)]
    except (ValueError, *_MALFORMED) as error:
        return _map_problems(map_field if furnace.map else model_field, error)
    top_C = register_map.input_range_C[1]
    if furnace.max_temperature_C > top_C:
        return [
            f"{furnace.field('max_temperature_C')}: {furnace.max_temperature_C:g} C is above the top of "
            f"the controller's input range, {top_C:g} C (register map {register_map.name})"
        ]
    return []


def station_reference_problems(station: Station) -> list[str]:
    """Problems with the register maps and SCPI dialects a validated station names ([] if none)."""
    problems = []
    for furnace in station.temperature_controllers:
        problems += _controller_problems(furnace)
    for spectrometer in station.spectrometers:
        try:
            load_dialect(spectrometer.dialect)
        except (ValueError, *_MALFORMED) as error:
            problems += _map_problems(spectrometer.field("dialect"), error)
    for sensor in station.sensors:
        try:
            load_sensor_map(sensor.map)
        except (ValueError, *_MALFORMED) as error:
            problems += _map_problems(sensor.field("map"), error)
    return problems


def resolve_recipe_scenario(recipe: Recipe) -> Path | None:
    """The scenario file a recipe names, read and checked: a file beside the recipe, else a path or a bundled name.

    Raises :class:`daq.bench.ScenarioError` if there is none or it cannot be used.
    """
    if recipe.scenario is None:
        return None
    from .bench import find_bench_scenario  # the bench knows the simulated bench (it imports the config)

    return find_bench_scenario(recipe.scenario, beside=Path(recipe.source).parent)


def recipe_reference_problems(recipe: Recipe) -> list[str]:
    """Problems with the scenario a validated recipe names ([] if none)."""
    from .bench import ScenarioError

    try:
        resolve_recipe_scenario(recipe)
    except ScenarioError as error:
        return [f"recipe.scenario: {error}"]
    return []
