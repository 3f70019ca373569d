"""The files a station or recipe names (register map, SCPI dialect, scenario), checked during validation.

A wrong name must be reported with the station or recipe file and the field
before any simulator or instrument is started, not by a simulator that fails to
start or by a driver halfway through connecting. So each named file is loaded
and checked here, with the same loaders the drivers and simulators use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from drivers import MapError, ModelNotCovered, load_dialect, resolve_register_map

if TYPE_CHECKING:
    from .config import Recipe, Station

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


def _model_problem(error: ModelNotCovered) -> str:
    """The station's furnace.model against the register map it names or the maps in hardware/maps."""
    if error.map_name is not None:
        return (
            f"furnace.model: {error.model!r} is not a model of register map {error.map_name} (furnace.map), "
            f"which covers {', '.join(error.covers)}; {error.listing}"
        )
    if error.covering:
        return (
            f"furnace.model: {error.model!r} is covered by several register maps "
            f"({', '.join(error.covering)}); choose one with furnace.map"
        )
    return (
        f"furnace.model: no register map covers model {error.model!r}; {error.listing} "
        "(name one with furnace.map, or add a map to hardware/maps)"
    )


def station_reference_problems(station: Station) -> list[str]:
    """Problems with the register map and SCPI dialect a validated station names ([] if none)."""
    problems = []
    furnace = station.furnace
    if furnace is not None:
        field = "furnace.map" if furnace.map else "furnace.model"
        try:
            register_map = resolve_register_map(furnace.model_or_default, furnace.map)
        except ModelNotCovered as error:
            problems.append(_model_problem(error))
        except (ValueError, *_MALFORMED) as error:
            problems += _map_problems(field, error)
        else:
            top_C = register_map.input_range_C[1]
            if furnace.max_temperature_C > top_C:
                problems.append(
                    f"furnace.max_temperature_C: {furnace.max_temperature_C:g} C is above the top of "
                    f"the controller's input range, {top_C:g} C (register map {register_map.name})"
                )
    spectrometer = station.spectrometer
    if spectrometer is not None:
        try:
            load_dialect(spectrometer.dialect)
        except (ValueError, *_MALFORMED) as error:
            problems += _map_problems("spectrometer.dialect", error)
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
