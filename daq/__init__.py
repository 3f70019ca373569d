"""Trials: station and recipe config, the trial runner, HDF5 trial files, catalog, CLI.

Public API (flat):

- config: :func:`load_station`, :func:`load_recipe`, :func:`check_recipe_against_station`, :class:`ConfigError`
- files: :func:`open_trial`, :class:`TrialReader`, :class:`TrialFileError`, :class:`TrialWriter`
- catalog: :class:`Catalog`
- running: :class:`TrialRunner`, :class:`RunOptions` (imported on first use: they load the drivers)
- reanalysis: :func:`reanalyze` (imported on first use; needs the ``cluster`` extra for Dask)
"""

from typing import TYPE_CHECKING

from .catalog import Catalog, CatalogEntry
from .config import ConfigError, Recipe, Station, check_recipe_against_station, load_recipe, load_station
from .reader import Decimated, TrialFileError, TrialReader, open_trial
from .store import StorageError, TrialMetadata, TrialWriter, writer_is_alive

if TYPE_CHECKING:  # imported on first use (__getattr__ below); named here for type checkers
    from .pipeline import analyse_counts
    from .reanalysis import reanalyze
    from .runner import RunOptions, TrialRunner

__all__ = [
    "Catalog",
    "CatalogEntry",
    "ConfigError",
    "Decimated",
    "Recipe",
    "RunOptions",
    "Station",
    "StorageError",
    "TrialFileError",
    "TrialMetadata",
    "TrialReader",
    "TrialRunner",
    "TrialWriter",
    "analyse_counts",
    "check_recipe_against_station",
    "load_recipe",
    "load_station",
    "open_trial",
    "reanalyze",
    "writer_is_alive",
]

_LAZY = {"TrialRunner": "runner", "RunOptions": "runner", "analyse_counts": "pipeline", "reanalyze": "reanalysis"}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'daq' has no attribute {name!r}")
