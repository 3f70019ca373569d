"""The `remdaq` command line: check, calibrate, run, ls, show, recover, catalog rebuild, reanalyze, results, report."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import click

from .config import ConfigError, Station, load_recipe, load_station

__all__ = ["main", "cli", "resolve_data_dir"]

_STATION_OPTION = click.option(
    "--station",
    "station_path",
    required=True,
    type=click.Path(path_type=Path),
    help="station file, e.g. hardware/stations/sim.toml",
)
_DATA_DIR_OPTION = click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="data folder (default: $REMDAQ_DATA_DIR, else the station's data_dir, else ./data)",
)


def resolve_data_dir(option: Path | None, station: Station | None = None) -> Path:
    """The data folder: --data-dir, else $REMDAQ_DATA_DIR, else the station's, else ./data."""
    if option is not None:
        return option
    if os.environ.get("REMDAQ_DATA_DIR"):
        return Path(os.environ["REMDAQ_DATA_DIR"])
    return station.data_dir if station is not None else Path("data")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rem-daq")
def cli():
    """Data acquisition for the rare-earth oxide bench."""


@cli.command()
@_STATION_OPTION
@click.option(
    "--standard",
    "standard_path",
    type=click.Path(path_type=Path),
    default=None,
    help="check-standard file (seeds/standards/check/*.toml): also check --calibration against it",
)
@click.option(
    "--calibration",
    "calibration_path",
    type=click.Path(path_type=Path),
    default=None,
    help="calibration file to check (from `remdaq calibrate`); with --standard",
)
@click.option(
    "--scenario",
    default=None,
    metavar="PATH|NAME",
    help="simulated bench only: start the simulated spectrometer of the calibration check with this "
    "scenario (a path or a name in seeds/scenarios, e.g. fibre-replugged)",
)
def check(station_path: Path, standard_path: Path | None, calibration_path: Path | None, scenario: str | None):
    """Connect to each instrument of a station and print its identity and a reading.

    With --standard and --calibration, then measure the check standard (dark, blank,
    the standard) and report per element the stated and measured concentrations,
    bias and z, the lack of fit and the wavelength shift, and the verdict
    "calibration holds" or "recalibrate" with its reasons. Exit status 0 when every
    instrument answered (and the calibration holds), 1 otherwise, 2 for a bad file.
    """
    station = load_station(station_path)
    if (standard_path is None) != (calibration_path is None):
        raise click.UsageError(
            "--standard and --calibration go together (the check standard and the calibration to check against it)"
        )
    if scenario is not None and standard_path is None:
        raise click.UsageError(
            "--scenario sets up the simulated bench for the calibration check: give --standard and --calibration too"
        )
    from .calibration_check import prepare_calibration_check, run_calibration_check
    from .check import check_station

    plan = None
    if standard_path is not None and calibration_path is not None:  # (both or neither, see above)
        # every file is checked before any instrument is touched
        plan = prepare_calibration_check(station, standard_path, calibration_path, scenario)
    results = check_station(station)
    for result in results:
        kind = " (simulated)" if result.simulated else ""
        if result.ok:
            click.echo(f"{result.name}{kind}: OK  {result.ident}\n    {result.reading}")
        else:
            click.echo(f"{result.name}{kind}: FAILED  {result.problem}", err=True)
    if not results:
        raise click.ClickException(f"{station_path}: the station lists no instruments")
    failed = not all(r.ok for r in results)
    if plan is not None:
        if not any(r.name == "spectrometer" and r.ok for r in results):
            click.echo("calibration check: not done, the spectrometer did not answer", err=True)
            sys.exit(1)
        from drivers import InstrumentError

        try:
            outcome = run_calibration_check(plan, progress=lambda m: click.echo(f"  {m}", err=True))
        except ConfigError:
            raise
        except (InstrumentError, OSError, RuntimeError, ValueError) as error:
            click.echo(f"calibration check: FAILED  {type(error).__name__}: {error}", err=True)
            sys.exit(1)
        for line in outcome.report_lines():
            click.echo(line)
        failed = failed or not outcome.holds
    if failed:
        sys.exit(1)


@cli.command()
@click.argument("standards_path", metavar="STANDARDS", type=click.Path(path_type=Path))
@_STATION_OPTION
@click.option("--out", required=True, type=click.Path(path_type=Path), help="calibration file to write (.h5)")
@click.option(
    "--spectrometer",
    "spectrometer_name",
    default=None,
    help="the station's spectrometer to calibrate, by name (default: its first)",
)
def calibrate(standards_path: Path, station_path: Path, out: Path, spectrometer_name: str | None):
    """Measure a set of standards and write a calibration with its quality report."""
    from drivers import InstrumentError

    from .calibration_run import calibrate_station, load_standards

    station = load_station(station_path)
    standards = load_standards(standards_path)
    try:
        calibration = calibrate_station(
            station, standards, out, progress=lambda m: click.echo(m, err=True), spectrometer=spectrometer_name
        )
    except (InstrumentError, TimeoutError) as error:  # nothing was written: the calibration file is made at the end
        click.echo(f"calibration FAILED, nothing written: {type(error).__name__}: {error}", err=True)
        sys.exit(1)
    click.echo(f"calibration written: {out}")
    if calibration.quality is None:  # analysis.calibrate always reports the quality of what it fitted
        raise RuntimeError(f"calibration {out} has no quality report")
    click.echo(calibration.quality.summary(calibration.analytes))


@cli.command()
@click.argument("recipe_path", metavar="RECIPE", type=click.Path(path_type=Path))
@_STATION_OPTION
@_DATA_DIR_OPTION
@click.option(
    "--calibration", type=click.Path(path_type=Path), default=None, help="calibration file (overrides the recipe's)"
)
@click.option(
    "--flush-interval",
    "flush_interval_s",
    type=click.FloatRange(0.01, 60),
    default=0.5,
    show_default=True,
    help="seconds between writes to the trial file",
)
def run(
    recipe_path: Path, station_path: Path, data_dir: Path | None, calibration: Path | None, flush_interval_s: float
):
    """Run a trial: furnace program, spectra, live purity, all into one HDF5 file."""
    from .runner import RunOptions, TrialRunner

    recipe = load_recipe(recipe_path)
    station = load_station(station_path)
    options = RunOptions(
        data_dir=resolve_data_dir(data_dir, station), calibration=calibration, flush_interval_s=flush_interval_s
    )
    outcome = TrialRunner(recipe, station, options).run()
    click.echo(f"{outcome.path}")
    sys.exit(0 if outcome.exit_status == "success" else 1)


@cli.command("ls")
@_DATA_DIR_OPTION
@click.option("--sample", default=None, help="only samples containing this text")
@click.option("--status", default=None, help="success, aborted, failed, interrupted, running, unreadable")
def list_trials(data_dir: Path | None, sample: str | None, status: str | None):
    """List the trials of a data folder (from its catalog)."""
    from .catalog import Catalog

    folder = resolve_data_dir(data_dir)
    entries = Catalog(folder).entries(sample=sample, status=status)
    if not entries:
        click.echo("no trials", err=True)
    for e in entries:
        purity = f"{100 * e.final_purity:.2f}%" if e.final_purity is not None else _purity_note(folder, e)
        note = "  (needs `remdaq recover`)" if e.needs_recovery else ""
        if e.certified_purity is not None:
            note += f"  certified {100 * e.certified_purity:.3f}% (ICP)"
        click.echo(f"{e.trial_id:45s} {e.status:11s} {e.start_time[:19]:19s} {purity:>8s}  {e.sample}{note}")


def _purity_note(data_dir: Path, entry) -> str:
    """Why a catalogued trial has no final purity: "no rare earths in the cell" (flag 32 on its last spectrum,
    read from the file: the catalog records only the number), else "-"."""
    if entry.status == "unreadable":
        return "-"
    from .reader import TrialFileError, open_trial

    file = Path(entry.file) if Path(entry.file).is_absolute() else data_dir / entry.file
    try:
        with open_trial(file) as trial:
            return str(trial.fit_summary()["final_purity_note"]) or "-"
    except (TrialFileError, OSError, KeyError):
        return "-"


def _format_summary_value(key: str, value, summary: dict) -> str:
    if key == "final_purity" and isinstance(value, float) and math.isnan(value) and summary.get("final_purity_note"):
        return summary["final_purity_note"]
    if key in ("final_lack_of_fit", "model_mismatch_fraction") and not summary.get("fit_recorded", True):
        return "not recorded (file format before 1.1)"
    if key == "model_mismatch_fraction" and isinstance(value, float) and not math.isnan(value):
        return f"{value:.3g} ({100 * value:.1f} % of spectra flagged model mismatch)"
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.6g}"
    return str(value)


@cli.command()
@click.argument("file", type=click.Path(path_type=Path))
def show(file: Path):
    """Summarise one trial file (state, rows, final purity, events)."""
    from .reader import open_trial

    with open_trial(file) as trial:
        summary = trial.summary()
        events = trial.events()
    for key, value in summary.items():
        if key in ("final_purity_note", "fit_recorded"):
            continue  # said by final_purity and the fit lines
        click.echo(f"{key:17s} {_format_summary_value(key, value, summary)}")
    if summary["state"] == "interrupted":
        click.echo(
            "note              this trial was interrupted: the file has no clean-end mark; "
            "rows up to the last flush are kept"
        )
    if summary["needs_recovery"]:
        click.echo(
            f"note              HDF5 tools other than SWMR readers refuse this file until `remdaq recover {file}`"
        )
    for t, level, source, message in zip(events["time"], events["level"], events["source"], events["message"]):
        click.echo(f"  {t:10.1f} s  {level:7s} {source:12s} {message}")


@cli.command()
@click.argument("files", metavar="FILE...", nargs=-1, required=True, type=click.Path(path_type=Path))
def recover(files: tuple[Path, ...]):
    """Make interrupted trial files readable by any HDF5 tool (h5dump, HDFView); raw data untouched.

    Clears the "open for writing" mark a killed writer left in each file, once no
    process holds its writer lock, and records in the file that it did so. Exit
    status 1 if any file could not be recovered.
    """
    from .catalog import TRIALS_FOLDER, Catalog, CatalogError
    from .reader import TrialFileError, open_trial
    from .recovery import RecoveryError, recover_trial

    failed = 0
    for file in files:
        try:
            result = recover_trial(file)
        except (RecoveryError, TrialFileError) as error:
            click.echo(f"not recovered: {error}", err=True)
            failed += 1
            continue
        click.echo(result.describe())
        data_dir = file.resolve().parent.parent
        if file.resolve().parent.name == TRIALS_FOLDER and (data_dir / "catalog.sqlite").is_file():
            try:
                with open_trial(file) as trial:
                    Catalog(data_dir).record(trial.summary())
            except (CatalogError, TrialFileError) as error:
                click.echo(f"  catalog not updated: {error}", err=True)
    sys.exit(1 if failed else 0)


@cli.group()
def station():
    """Station files."""


@station.command("migrate")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="write the migrated station here (default: print it); an existing file is not overwritten",
)
def station_migrate(file: Path, out: Path | None):
    """Write a station file of the older form ([furnace], [spectrometer]) with [[instrument]] tables."""
    import tomli_w

    from ._common import software_version, utc_now_iso
    from .config import station_document

    loaded = load_station(file)
    if loaded.file_form == "2":
        click.echo(f"{file} has [[instrument]] tables already: nothing to migrate", err=True)
        return
    note = (
        f"# Station {loaded.name!r}, migrated from {file} by remdaq {software_version()} on {utc_now_iso()}.\n"
        "# The instruments keep their names (furnace, spectrometer): trial files and recipes still match.\n"
        "# Comments of the original file are not carried over.\n\n"
    )
    text = note + tomli_w.dumps(station_document(loaded))
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        with open(out, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise click.ClickException(f"{out} exists already; give another --out (nothing was written)") from None
    click.echo(f"migrated station written: {out} ({len(loaded.instruments)} instruments)")


@cli.group()
def catalog():
    """The trial catalog of a data folder."""


@catalog.command()
@_DATA_DIR_OPTION
def rebuild(data_dir: Path | None):
    """Rebuild the catalog by scanning the trial files."""
    from tqdm.auto import tqdm

    from .catalog import Catalog

    catalog_of_folder = Catalog(resolve_data_dir(data_dir))
    with tqdm(total=len(catalog_of_folder.trial_files()), unit="file", desc="reading trial files", disable=None) as bar:
        entries = catalog_of_folder.rebuild(progress=lambda _path: bar.update())
    click.echo(f"{len(entries)} trial(s) catalogued")
    for e in entries:
        note = f"  {e.title}" if e.status == "unreadable" else ("  needs `remdaq recover`" if e.needs_recovery else "")
        click.echo(f"  {e.trial_id}  {e.status}{note}")


@cli.command("reanalyze")
@click.argument("paths", metavar="PATHS...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--calibration",
    required=True,
    type=click.Path(path_type=Path),
    help="calibration file to reanalyse with (from `remdaq calibrate`)",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="folder for the result files (<trial_id>.reanalysis.h5) and summary.csv",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="worker processes of a local Dask cluster (default: one per CPU; 0: no Dask, this process)",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="tcp://HOST:PORT",
    help="use a running Dask scheduler (`dask scheduler`) instead of a local cluster",
)
@click.option("--force", is_flag=True, help="reanalyse trials even when their result is up to date")
@click.option("--target", default=None, help="element whose oxide purity is computed (default: each trial's)")
@click.option(
    "--saturation-counts",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="detector full scale; pixels at or above it are masked (default: the full scale each trial "
    "file records, /entry/instrument/spectrometer@full_scale_counts)",
)
def reanalyze_command(
    paths: tuple[Path, ...],
    calibration: Path,
    out_dir: Path,
    workers: int | None,
    scheduler: str | None,
    force: bool,
    target: str | None,
    saturation_counts: float | None,
):
    """Reanalyse trial files (or folders of them) with a calibration, on this machine or a Dask cluster.

    Writes one result file per trial and summary.csv into --out; trials whose result
    is up to date are skipped, running trials too. Exit status 1 if any trial failed.
    """
    import signal

    from tqdm.auto import tqdm

    from .reanalysis import reanalyze

    if workers is not None and scheduler is not None:
        raise click.UsageError("give --workers or --scheduler, not both")

    def report(outcome) -> None:
        purity = (
            f"{100 * outcome.final_purity:.3f}%"
            if not math.isnan(outcome.final_purity)
            else outcome.final_purity_note or "-"
        )
        where = outcome.message if outcome.failed or outcome.result_file is None else outcome.result_file
        stream = sys.stderr if outcome.failed else sys.stdout
        tqdm.write(f"{outcome.status:18s} {outcome.trial_id:40s} {purity:>9s}  {where}", file=stream)
        stream.flush()

    def on_sigterm(_signum, _frame):
        signal.raise_signal(signal.SIGINT)  # stop as Ctrl-C does

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = reanalyze(
            paths,
            calibration,
            out_dir,
            workers=workers,
            scheduler=scheduler,
            force=force,
            target=target,
            saturation_counts=saturation_counts,
            on_outcome=report,
        )
    except KeyboardInterrupt:
        click.echo(
            f"stopped: finished results and {out_dir / 'summary.csv'} are kept, no half-written file is "
            "left; run the same command again to continue",
            err=True,
        )
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    counts = ", ".join(f"{n} {status}" for status, n in result.counts().items()) or "no trial files"
    click.echo(f"{counts}; calibration {result.calibration_id}; summary: {result.summary_path}")
    sys.exit(result.exit_code)


def _trial_file(trial: str, data_dir: Path | None) -> Path:
    """A trial given as a file, or as a trial id in the data folder's trials/."""
    given = Path(trial)
    if given.suffix == ".h5" or given.exists():
        return given
    from .catalog import TRIALS_FOLDER

    candidate = resolve_data_dir(data_dir) / TRIALS_FOLDER / f"{trial}.h5"
    if not candidate.exists():
        raise click.BadParameter(
            f"no trial file {given} and no trial {trial!r} in {candidate.parent}", param_hint="TRIAL"
        )
    return candidate


def _bad_input(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(2)


@cli.group()
def results():
    """Certified results of a trial's product: ICP, loss on ignition (docs/results.md)."""


@results.command("add")
@click.argument("trial", metavar="TRIAL")
@click.argument("results_path", metavar="RESULTS", type=click.Path(path_type=Path))
@_DATA_DIR_OPTION
@click.option("--replace", is_flag=True, help="replace the trial's product file if it has one")
def results_add(trial: str, results_path: Path, data_dir: Path | None, replace: bool):
    """Certify a trial (a file, or a trial id in the data folder) with a results file (TOML).

    Writes <trial>.product.json beside the trial file (the raw file is only read) and records it in the
    catalog. Exit status 2 for a bad results or ICP file: nothing is written then.
    """
    from .catalog import TRIALS_FOLDER, Catalog, CatalogError
    from .icp import IcpFileError
    from .product import ProductError, write_product

    path = _trial_file(trial, data_dir)
    try:
        product = write_product(path, results_path, replace=replace, progress=lambda m: click.echo(m, err=True))
    except (IcpFileError, ProductError) as error:
        _bad_input(error)
        return
    d = product.data
    click.echo(f"product file written: {product.path}")
    click.echo(f"{d['target_oxide']} / TREO  {100 * product.purity:.4f} %  (u {100 * product.purity_sigma:.4f} %)")
    click.echo(f"TREO           {d['treo']['mg_per_kg'] / 1e4:.3f} % of the solid")
    if d.get("loi"):
        click.echo(f"LOI            {d['loi']['percent']:.3f} %  (u {d['loi']['sigma_percent']:.3f} %)")
    if product.agreement:
        click.echo(f"agreement      {product.agreement['verdict']}")
    else:
        click.echo(f"agreement      none: {d.get('agreement_note', '')}")
    resolved = path.resolve()
    if resolved.parent.name == TRIALS_FOLDER and (resolved.parent.parent / "catalog.sqlite").is_file():
        try:
            Catalog(resolved.parent.parent).record_product(product)
        except CatalogError as error:
            click.echo(f"  catalog not updated: {error}", err=True)


@results.command("check")
@click.argument("results_path", metavar="RESULTS", type=click.Path(path_type=Path))
@click.option("--target", default="Nd", show_default=True, help="element whose oxide purity is computed")
def results_check(results_path: Path, target: str):
    """Validate a results file and its ICP file and print the certificate; writes nothing."""
    from .icp import IcpFileError, read_icp_csv
    from .product import ProductError, certificate, load_results

    results_file = load_results(results_path)
    try:
        icp = read_icp_csv(
            results_file.resolve(results_file.icp_file),
            mapping=results_file.resolve(results_file.mapping) if results_file.mapping else None,
            sample_id=results_file.sample_id,
            digestion=results_file.digestion,
        )
        cert = certificate(icp, target, results_file.loi)
    except (IcpFileError, ProductError) as error:
        _bad_input(error)
        return
    click.echo(f"{icp.source}: {len(icp.rows)} rows, samples {', '.join(icp.samples)}; product {icp.sample_id}")
    for e in icp.elements:
        if e.below_detection_limit:
            value, oxide = f"< {e.detection_limit_mg_per_kg:g}", f"< {e.oxide_detection_limit_mg_per_kg:.3g}"
        else:
            value, oxide = f"{e.value_mg_per_kg:.6g}", f"{e.oxide_mg_per_kg:.6g}"
        click.echo(f"  {e.element:3s} {value:>12s} mg/kg  {e.oxide:7s} {oxide:>12s} mg/kg")
    click.echo(f"{cert.target_oxide} / TREO  {100 * cert.purity:.4f} %  (u {100 * cert.purity_sigma:.4f} %)")
    click.echo(f"TREO           {cert.treo_percent:.3f} % of the solid")
    if cert.loi is not None:
        click.echo(f"LOI            {cert.loi.percent:.3f} %  (u {cert.loi.sigma_percent:.3f} %)")


@cli.command("report")
@click.argument("trial", metavar="TRIAL")
@click.option(
    "--results",
    "results_path",
    type=click.Path(path_type=Path),
    default=None,
    help="a product file (.json) or results file (.toml); default: the trial's own product file, if any",
)
@click.option("--out", required=True, type=click.Path(path_type=Path), help="report file to write (.pdf or .html)")
@_DATA_DIR_OPTION
def report_command(trial: str, results_path: Path | None, out: Path, data_dir: Path | None):
    """Write a trial's report (PDF or HTML): furnace, purity, events, calibration, ICP, LOI, agreement."""
    from .icp import IcpFileError
    from .product import ProductError
    from .report import ReportError, write_report

    path = _trial_file(trial, data_dir)
    try:
        pages = write_report(path, out, results=results_path, progress=lambda m: click.echo(m, err=True))
    except (IcpFileError, ProductError, ReportError) as error:
        _bad_input(error)
        return
    click.echo(f"report written: {out}" + (f" ({len(pages)} pages)" if pages else ""))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `remdaq` console script."""
    try:
        cli.main(args=argv, prog_name="remdaq", standalone_mode=True)
    except ConfigError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except OSError as error:  # unreadable trial file, unwritable folder: a message, not a traceback
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
