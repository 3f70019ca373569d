"""The `remdaq` command line: check, calibrate, run, ls, show, catalog, reanalyze."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .config import ConfigError, load_station

__all__ = ["main", "cli"]

_STATION_OPTION = click.option(
    "--station", "station_path", required=True, type=click.Path(path_type=Path),
    help="station file, e.g. hardware/stations/sim.toml")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rem-daq")
def cli():
    """Data acquisition for the rare-earth oxide bench."""


@cli.command()
@_STATION_OPTION
def check(station_path: Path):
    """Connect to each instrument of a station and print its identity and a reading."""
    station = load_station(station_path)
    from .check import check_station

    results = check_station(station)
    for result in results:
        kind = " (simulated)" if result.simulated else ""
        if result.ok:
            click.echo(f"{result.name}{kind}: OK  {result.ident}\n    {result.reading}")
        else:
            click.echo(f"{result.name}{kind}: FAILED  {result.problem}", err=True)
    if not results:
        raise click.ClickException(f"{station_path}: the station lists no instruments")
    if not all(r.ok for r in results):
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `remdaq` console script."""
    try:
        cli.main(args=argv, prog_name="remdaq", standalone_mode=True)
    except ConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
