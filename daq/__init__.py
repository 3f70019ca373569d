"""Trials: station and recipe config, the trial runner, HDF5 trial files, catalog, CLI.

Public API (flat):

- config: :func:`load_station`, :func:`load_recipe`, :func:`check_recipe_against_station`, :class:`ConfigError`
- files: :func:`open_trial`, :class:`TrialReader`, :class:`TrialFileError`, :class:`TrialWriter`
- catalog: :class:`Catalog`
- running: :class:`TrialRunner`, :class:`RunOptions` (imported on first use: they load the drivers)
- reanalysis: :func:`reanalyze` (imported on first use; needs the ``cluster`` extra for Dask)
- certified results: :func:`read_icp_csv`, :class:`IcpFileError`, :func:`load_results`, :func:`write_product`,
  :func:`read_product`, :class:`ProductError` (daq.icp, daq.product); :func:`write_report` (daq.report, loads
  matplotlib) — all imported on first use
"""

from typing import TYPE_CHECKING

from .catalog import Catalog, CatalogEntry
from .config import ConfigError, Recipe, Station, check_recipe_against_station, load_recipe, load_station
from .reader import Decimated, TrialFileError, TrialReader, open_trial
from .store import StorageError, TrialMetadata, TrialWriter, writer_is_alive

if TYPE_CHECKING:  # imported on first use (__getattr__ below); named here for type checkers
    from .icp import IcpFileError, read_icp_csv
    from .pipeline import analyse_counts
    from .product import ProductError, load_results, read_product, write_product
    from .reanalysis import reanalyze
    from .report import write_report
    from .runner import RunOptions, TrialRunner

__all__ = [
    "Catalog",
    "CatalogEntry",
    "ConfigError",
    "Decimated",
    "IcpFileError",
    "ProductError",
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
    "load_results",
    "load_station",
    "open_trial",
    "read_icp_csv",
    "read_product",
    "reanalyze",
    "write_product",
    "write_report",
    "writer_is_alive",
]

_LAZY = {
    "TrialRunner": "runner",
    "RunOptions": "runner",
    "analyse_counts": "pipeline",
    "reanalyze": "reanalysis",
    "read_icp_csv": "icp",
    "IcpFileError": "icp",
    "load_results": "product",
    "write_product": "product",
    "read_product": "product",
    "ProductError": "product",
    "write_report": "report",
}


def __getattr__(name):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'daq' has no attribute {name!r}")
