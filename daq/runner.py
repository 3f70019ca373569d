"""Run one trial: start up, acquire and analyse live into one HDF5 file, shut down safely.

Startup (connect, identities, limits, dark and blank reference, metadata),
execution (furnace program run by the controller, spectrometer schedule, live
quantification), shutdown (instruments to their safe state, file closed with its
exit status) which always runs: on success, on an interlock, on Ctrl-C or
SIGTERM, on a lost instrument, on a full disk.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO, TypeVar

import numpy as np

import analysis
from analysis import LACK_OF_FIT_LIMIT
from drivers import DarkNotDark, InstrumentError

from ._common import software_version, utc_now, utc_now_iso
from ._config_references import resolve_recipe_scenario
from .bench import Bench, ScenarioError, open_bench
from .catalog import TRIALS_FOLDER, Catalog, CatalogError
from .clock import ExperimentClock
from .config import ConfigError, Recipe, Station, check_recipe_against_station
from .layout import (
    DEFAULT_FULL_SCALE_COUNTS,
    FLAG_ANALYSIS_FAILED,
    FLAG_LOST,
    FLAG_MODEL_MISMATCH,
    FLAG_NO_RARE_EARTHS,
    FLAG_READ_FAILED,
    FLAG_SATURATED,
    FinalStatus,
)
from .pipeline import analyse_counts, covered_elements, fit_coefficient_names, fit_coefficient_units
from .program import FurnaceProgramRunner
from .store import StorageError, TrialMetadata, TrialWriter

_T = TypeVar("_T")

__all__ = ["RunOptions", "TrialOutcome", "TrialRunner", "resolve_calibration", "new_trial_id"]


EPISODE_END_SPECTRA = 3
"""Spectra in a row that must disagree with a condition (model mismatch, rare earths present) before its end
is reported: a value near its limit then makes one event pair, not one per spectrum. Row flags are exact."""


class Episode:
    """A per-spectrum condition reported by its start and end only (model mismatch, rare earths in the cell).

    :meth:`update` takes each spectrum's verdict (None: no verdict, e.g. the analysis failed; it changes
    nothing) and returns "start" or "end" when the condition's state changes, else None. The condition is
    absent at first; it starts after ``start_after`` spectra in a row show it and ends after ``end_after``
    spectra in a row do not.
    """

    def __init__(self, start_after: int = 1, end_after: int = EPISODE_END_SPECTRA):
        self.start_after, self.end_after = start_after, end_after
        self.active = False
        self.verdicts = 0  # spectra with a verdict so far
        self._streak = 0

    def update(self, present: bool | None) -> str | None:
        if present is None:
            return None
        self.verdicts += 1
        if bool(present) == self.active:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < (self.end_after if self.active else self.start_after):
            return None
        self.active, self._streak = bool(present), 0
        return "start" if self.active else "end"


@dataclass
class RunOptions:
    """Where data goes and how the run reports; defaults suit the bench."""

    data_dir: Path
    calibration: Path | None = None  # overrides the recipe's calibration
    flush_interval_s: float = 0.5
    fsync_interval_s: float = 5.0
    status_stream: TextIO | None = sys.stderr
    status_interval_s: float = 1.0
    handle_signals: bool = True


@dataclass
class TrialOutcome:
    """How a trial ended."""

    path: Path
    trial_id: str
    exit_status: FinalStatus
    reason: str = ""
    rows: dict[str, int] = field(default_factory=dict)


def new_trial_id(title: str, now: datetime | None = None) -> str:
    """A sortable, readable trial id: UTC start time and a slug of the title."""
    now = now or utc_now()
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:32] or "trial"
    return f"{now:%Y%m%dT%H%M%SZ}-{slug}"


def resolve_calibration(recipe: Recipe, options: RunOptions) -> Path:
    """The calibration file to use: --calibration as given, else the recipe's, relative to the data folder."""
    if options.calibration is not None:
        path = Path(options.calibration)
        where = "--calibration"
    elif recipe.calibration is not None:
        path = recipe.calibration if recipe.calibration.is_absolute() else options.data_dir / recipe.calibration
        where = f"{recipe.source}: recipe.calibration"
    else:
        raise ConfigError(
            recipe.source,
            [
                "recipe.calibration: no calibration given (set it in the recipe or "
                "pass --calibration); run `remdaq calibrate` to make one"
            ],
        )
    if not path.is_file():
        raise ConfigError(
            recipe.source if where != "--calibration" else path,
            [
                f"{where}: calibration file {path} not found; run `remdaq calibrate STANDARDS "
                f"--station STATION --out {path}` first"
            ],
        )
    return path


class _AbortRequest(Exception):
    pass


class TrialRunner:
    """One trial from start-up to shutdown. Call :meth:`run` from the main thread.

    ``bench_factory(station, scenario=...)`` connects the station's instruments; None (the default) is
    :func:`daq.bench.open_bench`, which starts the simulators of a simulated station. Unit tests pass one
    that returns in-process fake instruments.
    """

    def __init__(
        self,
        recipe: Recipe,
        station: Station,
        options: RunOptions,
        *,
        bench_factory: Callable[..., Bench] | None = None,
    ):
        self.recipe = recipe
        self.station = station
        self.options = options
        self._bench_factory = bench_factory
        self.clock = ExperimentClock(station.simulation_speed if station.simulated else 1.0)
        self._stop = threading.Event()
        self._program_done = threading.Event()
        # wakes the main loop at once when the trial must end (stop, failure, program complete): waiting out
        # the status interval instead lets a simulated bench's fast clock run on past the end (speed x 1 s)
        self._wake = threading.Event()
        self._abort_reason = ""
        self._fail_reason = ""
        self._lock = threading.Lock()
        self._writer: TrialWriter | None = None
        self._last = {"temperature_C": math.nan, "setpoint_C": math.nan, "purity": math.nan, "purity_sigma": math.nan}
        self._mismatch = Episode(start_after=1)
        self._mismatch_spectra = 0
        self._rare_earths = Episode(start_after=EPISODE_END_SPECTRA)
        self._preflight()

    # -- before anything is touched ----------------------------------------------------------

    def _preflight(self) -> None:
        recipe = self.recipe
        check_recipe_against_station(recipe, self.station)
        if recipe.furnace is None and recipe.duration_min is None:
            raise ConfigError(
                recipe.source, ["recipe.duration_min: a recipe without a furnace program needs a duration"]
            )
        self.calibration_path = resolve_calibration(recipe, self.options)
        try:
            self.calibration = analysis.Calibration.load(self.calibration_path)
        except (OSError, ValueError, KeyError) as error:
            raise ConfigError(self.calibration_path, [f"not a readable calibration file: {error}"]) from None
        missing = [a for a in recipe.analytes if a not in self.calibration.analytes]
        if missing:
            raise ConfigError(
                recipe.source,
                [
                    f"recipe.analytes: calibration {self.calibration_path} does not cover {', '.join(missing)} "
                    f"(it covers {', '.join(self.calibration.analytes)})"
                ],
            )
        self.scenario_path = None
        if self.station.simulated and recipe.scenario is not None:
            try:
                scenario = resolve_recipe_scenario(recipe)
            except ScenarioError as error:
                raise ConfigError(recipe.source, [f"recipe.scenario: {error}"]) from None
            self.scenario_path = None if scenario is None else scenario.resolve()
        trials = self.options.data_dir / TRIALS_FOLDER
        try:
            trials.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(self.options.data_dir, [f"data folder cannot be created: {error}"]) from None
        self.trial_id = new_trial_id(recipe.title)
        self.path = trials / f"{self.trial_id}.h5"
        suffix = 2
        while self.path.exists():
            self.path = trials / f"{self.trial_id}-{suffix}.h5"
            suffix += 1
        self.trial_id = self.path.stem

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> TrialOutcome:
        """Run the trial to its end; the file is closed with its exit status whatever happens."""
        previous_handlers = self._install_signal_handlers()
        bench: Bench | None = None
        status: FinalStatus = "failed"
        reason = ""
        try:
            bench = (self._bench_factory or open_bench)(self.station, scenario=self.scenario_path)
            self._startup(bench)
            status, reason = self._execute(bench)
        except KeyboardInterrupt:
            status, reason = "aborted", "interrupted by the operator (Ctrl-C)"
        except _AbortRequest as request:
            status, reason = "aborted", str(request)
        except StorageError as error:
            status, reason = "failed", f"trial file: {error}"
        except InstrumentError as error:
            status, reason = "failed", f"instrument: {error}"
        except Exception as error:  # noqa: BLE001 - report, then still shut down safely
            status, reason = "failed", f"{type(error).__name__}: {error}"
            raise
        finally:
            status, reason = self._shutdown(bench, status, reason)
            self._restore_signal_handlers(previous_handlers)
        rows = dict(self._writer.rows_written) if self._writer else {}
        return TrialOutcome(self.path, self.trial_id, status, reason, rows)

    def _install_signal_handlers(self):
        if not self.options.handle_signals or threading.current_thread() is not threading.main_thread():
            return None

        def on_signal(signum, _frame):
            self.request_abort(f"stopped by {signal.Signals(signum).name}")

        return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    @staticmethod
    def _restore_signal_handlers(previous) -> None:
        for sig, handler in (previous or {}).items():
            signal.signal(sig, handler)

    def request_abort(self, reason: str) -> None:
        """Stop the trial as aborted (interlock, signal, lost instrument); safe from any thread."""
        with self._lock:
            if not self._abort_reason and not self._fail_reason:
                self._abort_reason = reason
        self._stop.set()
        self._wake.set()

    def _request_fail(self, reason: str) -> None:
        with self._lock:
            if not self._abort_reason and not self._fail_reason:
                self._fail_reason = reason
        self._stop.set()
        self._wake.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise _AbortRequest(self._abort_reason or self._fail_reason or "stopped")

    # -- startup --------------------------------------------------------------------------------

    def _startup(self, bench: Bench) -> None:
        recipe, station = self.recipe, self.station
        schedule = recipe.spectrometer
        spectrometer = bench.spectrometer if schedule is not None else None
        wavelength_nm = np.zeros(0)
        self._dark = self._reference = None
        if spectrometer is not None and schedule is not None:
            spectrometer.integration_time_s = schedule.integration_time_s
            spectrometer.averages = schedule.averages
            wavelength_nm = np.asarray(spectrometer.wavelengths_nm, dtype=float)
            calibrated_nm = np.asarray(self.calibration.wavelength_nm, dtype=float)
            if calibrated_nm.shape != wavelength_nm.shape or not np.allclose(calibrated_nm, wavelength_nm, atol=0.05):
                raise ConfigError(
                    self.calibration_path,
                    [
                        f"calibration wavelength axis ({calibrated_nm.size} px, {calibrated_nm[0]:.2f}-"
                        f"{calibrated_nm[-1]:.2f} nm) does not match the spectrometer's ({wavelength_nm.size} px, "
                        f"{wavelength_nm[0]:.2f}-{wavelength_nm[-1]:.2f} nm): calibrate on this instrument"
                    ],
                )
            self._cell = bench.cell()
            self._cell.load_blank()
            self._saturation = float(spectrometer.full_scale_counts)
            self._integration_time_s = schedule.integration_time_s
            spectrometer.averages = schedule.reference_averages or schedule.averages
            self._dark = spectrometer.dark()
            self._reference = spectrometer.acquire()
            # with "adjust", a saturated blank is fixed now, while the blank is still in the cell
            while (
                schedule.on_saturation == "adjust"
                and np.any(self._reference >= self._saturation)
                and self._integration_time_s / 2
                >= _checked(station.spectrometer, "station.spectrometer").min_integration_time_s
            ):
                self._integration_time_s /= 2
                spectrometer.integration_time_s = self._integration_time_s
                self._dark = spectrometer.dark()
                self._reference = spectrometer.acquire()
            spectrometer.averages = schedule.averages
            analyse_counts(
                self._reference, self._dark, self._reference, self.calibration, recipe.target, self._saturation
            )  # compiles the numba kernels now, not on the first spectrum
        metadata = self._metadata(bench, wavelength_nm)
        self._start_time = metadata.start_time
        self._writer = TrialWriter(
            self.path,
            metadata,
            flush_interval_s=self.options.flush_interval_s,
            fsync_interval_s=self.options.fsync_interval_s,
        )
        self.clock.start()
        self._event("info", "runner", f"trial {self.trial_id} started on station {station.name}")
        if bench.furnace is not None:
            self._event("info", "furnace", f"connected: {bench.furnace.ident}")
        if spectrometer is not None and schedule is not None:
            self._event("info", "spectrometer", f"connected: {spectrometer.ident}")
            if self._integration_time_s != schedule.integration_time_s:
                self._event(
                    "warning",
                    "spectrometer",
                    f"the blank saturated at {schedule.integration_time_s:g} s: "
                    f"integration time lowered to {self._integration_time_s:g} s",
                )
            self._write_dark(self._dark)
            self._writer.append(
                "reference", time=self.clock.now_s(), counts=self._reference, integration_time=self._integration_time_s
            )
            self._reference_index = 0
            saturated = int(np.count_nonzero(self._blank()[1] >= self._saturation))
            if saturated:
                self._event(
                    "warning",
                    "spectrometer",
                    f"blank reference has {saturated} saturated pixels (masked): lower the integration time",
                )
            self._cell.start_process_stream()
            self._event("info", "spectrometer", "dark and blank reference taken; process stream started")
        self._record_in_catalog("running")
        self._print(f"trial file: {self.path}", stream=sys.stdout)

    def _record_in_catalog(self, status: str) -> None:
        """Index the trial in the data folder's catalog; a catalog that cannot be written is a warning only."""
        try:
            Catalog(self.options.data_dir).record(self._summary(status))
        except CatalogError as error:  # the file is the truth; `remdaq catalog rebuild` re-indexes it later
            self._print(f"warning: {error}")
            if status == "running":  # at the end, the event could no longer be written anyway
                self._event("warning", "runner", f"catalog not updated: {error}")

    def _metadata(self, bench: Bench, wavelength_nm: np.ndarray) -> TrialMetadata:
        recipe = self.recipe
        calibration = self.calibration
        return TrialMetadata(
            trial_id=self.trial_id,
            title=recipe.title,
            sample=recipe.sample,
            operator=recipe.operator,
            target=recipe.target,
            analytes=tuple(calibration.analytes),
            wavelength_nm=wavelength_nm,
            recipe_text=_read_text(recipe.source),
            station_text=_read_text(self.station.source),
            software_version=software_version(),
            clock_speed=self.clock.speed,
            full_scale_counts=getattr(self, "_saturation", DEFAULT_FULL_SCALE_COUNTS),
            spectrometer_attributes=dict(bench.spectrometer.recorded_attributes) if bench.spectrometer else {},
            covered_elements=covered_elements(calibration),
            calibration_id=calibration.calibration_id,
            calibration_file=str(self.calibration_path.resolve()),
            calibration_arrays={
                "sensitivity": (calibration.sensitivity, "absorbance per g/L"),
                "wavelength": (np.asarray(calibration.wavelength_nm), "nm"),
            },
            fit_coefficient_names=fit_coefficient_names(calibration),
            fit_coefficient_units=fit_coefficient_units(calibration),
            extra={
                "furnace_ident": bench.furnace.ident if bench.furnace else "",
                "spectrometer_ident": bench.spectrometer.ident if bench.spectrometer else "",
                "simulated": bool(self.station.simulated),
            },
        )

    # -- execution ------------------------------------------------------------------------------

    def _execute(self, bench: Bench) -> tuple[FinalStatus, str]:
        threads = []
        if bench.furnace is not None and self.recipe.furnace is not None:
            threads.append(
                threading.Thread(
                    target=self._guard, args=(self._furnace_loop, bench.furnace), name="furnace", daemon=True
                )
            )
        else:
            self._program_done.set()
        if bench.spectrometer is not None and self.recipe.spectrometer is not None:
            threads.append(
                threading.Thread(
                    target=self._guard,
                    args=(self._spectrometer_loop, bench.spectrometer),
                    name="spectrometer",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        wall_limit_s = 60.0 * self.recipe.wall_clock_limit_min
        duration_s = 60.0 * self.recipe.duration_min if self.recipe.duration_min else None
        started = time.monotonic()
        try:
            while True:
                self._wake.wait(self._main_wait_s(duration_s))
                self._wake.clear()  # then look at the state: a wake set after this is seen on the next pass
                if self._stop.is_set():
                    break
                self._print_status()
                if self._file.failed:
                    self._request_fail(f"trial file: {self._file.error}")
                elif time.monotonic() - started > wall_limit_s:
                    self._event("error", "runner", f"wall-clock limit {self.recipe.wall_clock_limit_min:g} min reached")
                    self.request_abort("wall-clock limit reached")
                elif self._program_done.is_set() and (duration_s is None or self.clock.now_s() >= duration_s):
                    break
        finally:
            self._stop.set()
            # the furnace first: a spectrometer stuck in its timeout must not delay the furnace's safe state
            for thread in sorted(threads, key=lambda t: t.name != "furnace"):
                thread.join(timeout=30)
                if thread.name == "furnace":
                    self._furnace_safe(bench)
        self._print_status(final=True)
        if self._fail_reason:
            return "failed", self._fail_reason
        if self._abort_reason:
            return "aborted", self._abort_reason
        return "success", "program complete"

    def _main_wait_s(self, duration_s: float | None) -> float:
        """Wall seconds the main loop may sleep: the status interval, less if the recipe's duration ends first."""
        wait_s = self.options.status_interval_s
        if self._program_done.is_set() and duration_s is not None:
            wait_s = min(wait_s, max(0.0, (duration_s - self.clock.now_s()) / self.clock.speed))
        return wait_s

    def _guard(self, loop, instrument) -> None:
        try:
            loop(instrument)
        except StorageError as error:
            self._request_fail(f"trial file: {error}")
        except Exception as error:  # noqa: BLE001 - any loop failure stops the trial, never silently
            self._request_fail(f"{threading.current_thread().name}: {type(error).__name__}: {error}")

    def _furnace_loop(self, furnace) -> None:
        recipe_program = _checked(self.recipe.furnace, "recipe.furnace")
        station_furnace = _checked(self.station.furnace, "station.furnace")
        program = FurnaceProgramRunner(recipe_program)
        interval_s = station_furnace.poll_interval_s
        limit_C = recipe_program.abort_above_C or station_furnace.max_temperature_C
        lost_since = None
        next_poll = time.monotonic()
        while not self._stop.is_set():
            now_s = self.clock.now_s()
            try:
                reading = furnace.read_all()
            except InstrumentError as error:
                lost_since = self._instrument_lost("furnace", error, lost_since, furnace)
                self._file.append(
                    "furnace",
                    time=now_s,
                    temperature=math.nan,
                    setpoint=math.nan,
                    working_setpoint=math.nan,
                    output=math.nan,
                    status_word=0,
                    flag=FLAG_READ_FAILED | FLAG_LOST,
                )
            else:
                if lost_since is not None:
                    self._event("info", "furnace", f"furnace answers again after {time.monotonic() - lost_since:.1f} s")
                    lost_since = None
                self._file.append(
                    "furnace",
                    time=now_s,
                    temperature=reading.temperature_C,
                    setpoint=reading.setpoint_C,
                    working_setpoint=reading.working_setpoint_C,
                    output=reading.output_percent,
                    status_word=reading.status.raw,
                    flag=FLAG_READ_FAILED if math.isnan(reading.temperature_C) else 0,
                )
                self._last["temperature_C"] = reading.temperature_C
                self._last["setpoint_C"] = reading.setpoint_C
                self._furnace_interlocks(reading, limit_C)
                if self._stop.is_set():
                    return
                try:
                    step = program.step(furnace, reading.working_setpoint_C, now_s)
                except InstrumentError as error:
                    self._event("warning", "furnace", f"program write failed, retrying next poll: {error}")
                    step = None
                if step is not None:
                    self._event("info", "program", step.message)
                if program.done and not self._program_done.is_set():
                    self._program_done.set()
                    self._wake.set()
            next_poll += interval_s
            self._stop.wait(max(0.0, next_poll - time.monotonic()))

    def _furnace_interlocks(self, reading, limit_C: float) -> None:
        status = reading.status
        if reading.temperature_C > limit_C:
            self._event(
                "error",
                "interlock",
                f"furnace at {reading.temperature_C:.1f} C is above the limit {limit_C:g} C: aborting to safe state",
            )
            self.request_abort(f"interlock: furnace over {limit_C:g} C")
        elif status.sensor_break:
            self._event("error", "interlock", "furnace reports sensor break: aborting to safe state")
            self.request_abort("interlock: furnace sensor break")
        elif status.any_alarm:
            self._event("error", "interlock", f"furnace alarm (status word 0x{status.raw:04x}): aborting")
            self.request_abort("interlock: furnace alarm")

    def _instrument_lost(self, name: str, error: Exception, lost_since: float | None, instrument) -> float:
        now = time.monotonic()
        if lost_since is None:
            self._event("error", name, f"{name} lost: {error}; readings are NaN until it answers")
            lost_since = now
        if now - lost_since > self.recipe.lost_instrument_abort_s:
            self._event("error", name, f"{name} lost for more than {self.recipe.lost_instrument_abort_s:g} s")
            self.request_abort(f"{name} lost for more than {self.recipe.lost_instrument_abort_s:g} s")
        if self._stop.is_set():
            return lost_since  # stopping: a reconnect could block for the instrument's whole timeout
        with contextlib.suppress(InstrumentError, OSError):
            instrument.reconnect()
        return lost_since

    def _spectrometer_loop(self, spectrometer) -> None:
        schedule = _checked(self.recipe.spectrometer, "recipe.spectrometer")
        next_s = self.clock.now_s()
        spectra = 0
        lost_since = None
        dark_index = 0
        while not self.clock.wait_until(next_s, self._stop):
            next_s += schedule.interval_s
            try:
                if schedule.dark == "every" and spectra and spectra % schedule.dark_every_n == 0:
                    try:
                        self._dark = spectrometer.dark()
                        dark_index = self._write_dark(self._dark)
                    except DarkNotDark as refused:  # the light was not blocked: the last good dark stays in use
                        self._event("warning", "spectrometer", f"dark refused, the previous one stays: {refused}")
                counts = spectrometer.acquire()
            except InstrumentError as error:
                lost_since = self._instrument_lost("spectrometer", error, lost_since, spectrometer)
                self._append_spectrum(None, dark_index, FLAG_READ_FAILED | FLAG_LOST)
                continue
            if lost_since is not None:
                self._event(
                    "info", "spectrometer", f"spectrometer answers again after {time.monotonic() - lost_since:.1f} s"
                )
                lost_since = None
            spectra += 1
            saturated = int(np.count_nonzero(counts >= self._saturation))
            self._append_spectrum(counts, dark_index, FLAG_SATURATED if saturated else 0, saturated)
            if saturated:
                dark_index = self._on_saturation(spectrometer, saturated, dark_index)

    def _append_spectrum(self, counts, dark_index: int, flag: int, saturated: int = 0) -> None:
        now_s = self.clock.now_s()
        dark, reference = self._blank()
        pixels = len(reference)
        if counts is None:
            counts = np.full(pixels, np.nan)
            result = None
        else:
            try:
                result = analyse_counts(counts, dark, reference, self.calibration, self.recipe.target, self._saturation)
            except (ValueError, FloatingPointError) as error:
                self._event("error", "analysis", f"spectrum at {now_s:.1f} s not analysed: {error}")
                result, flag = None, flag | FLAG_ANALYSIS_FAILED
        if result is not None:
            flag |= (FLAG_MODEL_MISMATCH if _checked(result.model_mismatch, "model_mismatch")[0] else 0) | (
                FLAG_NO_RARE_EARTHS if _checked(result.below_quantitation_limit, "below_quantitation_limit")[0] else 0
            )
        self._file.append(
            "spectrometer",
            time=now_s,
            counts=counts,
            integration_time=self._integration_time_s,
            averages=_checked(self.recipe.spectrometer, "recipe.spectrometer").averages,
            saturated_pixels=saturated,
            dark_index=dark_index,
            reference_index=self._reference_index,
            flag=flag,
        )
        analytes = len(self.calibration.analytes)
        if result is None:
            nan_k = np.full(analytes, np.nan)
            self._file.append(
                "analysis",
                time=now_s,
                concentration=nan_k,
                sigma=nan_k,
                purity=math.nan,
                purity_sigma=math.nan,
                residual_rms=math.nan,
            )  # fit columns: NaN
            return
        self._file.append(
            "analysis",
            time=now_s,
            concentration=result.concentration_g_per_L[0],
            sigma=result.sigma_g_per_L[0],
            purity=result.purity[0],
            purity_sigma=result.purity_sigma[0],
            residual_rms=result.residual_rms[0],
            lack_of_fit=_checked(result.lack_of_fit, "lack_of_fit")[0],
            wavelength_shift=_checked(result.wavelength_shift_nm, "wavelength_shift_nm")[0],
            fit_coefficients=_checked(result.free_coefficients, "free_coefficients")[0],
        )
        self._last["purity"] = float(result.purity[0])
        self._last["purity_sigma"] = float(result.purity_sigma[0])
        self._report_fit(result)

    def _report_fit(self, result) -> None:
        """Events at the start and end of a model mismatch and of rare earths in the cell (never per spectrum)."""
        lack = float(result.lack_of_fit[0])
        limit = LACK_OF_FIT_LIMIT
        verdict = None if math.isnan(lack) else bool(result.model_mismatch[0])
        if verdict:
            self._mismatch_spectra += 1
        change = self._mismatch.update(verdict)
        if change == "start":
            self._mismatch_spectra = 1
            self._event(
                "warning",
                "analysis",
                f"model mismatch: lack of fit {lack:.3g} (limit {limit:g}): the "
                "calibration cannot represent these spectra \u2014 a new matrix? "
                "recalibrate; purity not to be trusted",
            )
        elif change == "end":
            self._event(
                "info",
                "analysis",
                f"model mismatch over: lack of fit {lack:.3g} (limit {limit:g}) "
                f"after {self._mismatch_spectra} mismatched spectra",
            )
        concentration = result.concentration_g_per_L[0]
        present = None if not np.all(np.isfinite(concentration)) else not bool(result.below_quantitation_limit[0])
        first = present is not None and self._rare_earths.verdicts == 0
        change = self._rare_earths.update(present)
        if change == "start":
            self._event(
                "info",
                "analysis",
                f"rare earths in the cell: {float(np.sum(concentration)):.3g} g/L "
                "in all, above the quantitation limit; purity reported from here",
            )
        elif change == "end" or (first and not present):
            self._event(
                "info",
                "analysis",
                "no rare earths in the cell: total oxide below the quantitation limit; no purity until they return",
            )

    def _on_saturation(self, spectrometer, saturated: int, dark_index: int) -> int:
        schedule = _checked(self.recipe.spectrometer, "recipe.spectrometer")
        if schedule.on_saturation == "flag":
            self._event("warning", "spectrometer", f"{saturated} saturated pixels (masked from the fit)")
            return dark_index
        station_spectrometer = _checked(self.station.spectrometer, "station.spectrometer")
        new_time_s = max(station_spectrometer.min_integration_time_s, self._integration_time_s / 2)
        if new_time_s == self._integration_time_s:
            self._event("warning", "spectrometer", f"{saturated} saturated pixels at the shortest integration time")
            return dark_index
        scale = new_time_s / self._integration_time_s
        spectrometer.integration_time_s = new_time_s
        old_dark, reference = self._blank()
        self._dark = spectrometer.dark()
        # the blank cannot be re-measured mid-trial: scale its dark-corrected signal to the new time
        # rounded to what the file stores (float32), so reanalysis from the file reproduces the live numbers;
        # pixels where the blank itself clipped carry no information and stay masked (at full scale)
        clipped = reference >= self._saturation
        scaled = (reference - old_dark) * scale + self._dark
        self._reference = np.where(clipped, self._saturation, scaled).astype(np.float32).astype(float)
        self._integration_time_s = new_time_s
        self._file.append("reference", time=self.clock.now_s(), counts=self._reference, integration_time=new_time_s)
        self._reference_index += 1
        self._event(
            "warning",
            "spectrometer",
            f"{saturated} saturated pixels: integration time lowered to "
            f"{new_time_s:g} s, new dark taken, reference scaled",
        )
        return self._write_dark(self._dark)

    def _write_dark(self, dark) -> int:
        self._file.append("dark", time=self.clock.now_s(), counts=dark, integration_time=self._integration_time_s)
        self._darks_written = getattr(self, "_darks_written", 0) + 1
        return self._darks_written - 1

    # -- shutdown -------------------------------------------------------------------------------

    @property
    def _file(self) -> TrialWriter:
        """The trial file, open from the startup on."""
        return _checked(self._writer, "the trial file")

    def _blank(self) -> tuple[np.ndarray, np.ndarray]:
        """The current dark and blank reference, taken in the startup."""
        return _checked(self._dark, "the dark"), _checked(self._reference, "the blank reference")

    def _shutdown(self, bench: Bench | None, status: FinalStatus, reason: str) -> tuple[FinalStatus, str]:
        self._stop.set()
        error = self._furnace_safe(bench)
        if error is not None:
            status, reason = "failed", reason or f"furnace safe state failed: {error}"
        if bench is not None:
            bench.close()
        if self._writer is not None:
            if reason:
                self._event("info" if status == "success" else "error", "runner", f"trial {status}: {reason}")
            try:
                self._writer.close(status)
            except StorageError as error:
                status, reason = "failed", str(error)
            self._record_in_catalog(self._writer_state(status))
        self._print(f"trial {status}{': ' + reason if reason else ''}")
        return status, reason

    def _furnace_safe(self, bench: Bench | None) -> Exception | None:
        """Put the furnace in its safe state, once; return the error if that failed."""
        if bench is None or bench.furnace is None:
            return None
        if not hasattr(self, "_safe_state_error"):
            try:
                bench.furnace.safe_state()
                self._safe_state_error = None
                self._event("info", "furnace", "furnace in safe state")
                self._print("furnace in safe state")
            except Exception as error:  # noqa: BLE001 - record it; the controller's own alarm remains
                self._safe_state_error = error
                self._event("error", "furnace", f"could not put the furnace in its safe state: {error}")
        return self._safe_state_error

    def _writer_state(self, status: str) -> str:
        return "failed" if self._writer is not None and self._writer.failed else status

    def _summary(self, state: str) -> dict:
        return {
            "trial_id": self.trial_id,
            "file": str(self.path),
            "title": self.recipe.title,
            "sample": self.recipe.sample,
            "operator": self.recipe.operator,
            "start_time": self._start_time,
            "end_time": "" if state == "running" else utc_now_iso(),
            "state": state,
            "final_purity": self._last["purity"],
            "target": self.recipe.target,
        }

    # -- reporting ------------------------------------------------------------------------------

    def _event(self, level: str, source: str, message: str) -> None:
        if self._writer is not None and not self._writer.failed:
            with contextlib.suppress(StorageError, RuntimeError):
                self._writer.event(self.clock.now_s(), level, source, message)
        if level != "info":
            self._print(f"{level}: {source}: {message}")

    def _print(self, text: str, stream: TextIO | None = None) -> None:
        stream = stream or self.options.status_stream
        if stream is not None:
            print(text, file=stream, flush=True)

    def _print_status(self, final: bool = False) -> None:
        stream = self.options.status_stream
        if stream is None or self._writer is None:
            return
        elapsed = self.clock.now_s()
        purity = self._last["purity"]
        rows = self._writer.rows_written
        line = (
            f"{int(elapsed // 3600):02d}:{int(elapsed % 3600 // 60):02d}:{int(elapsed % 60):02d} "
            f"furnace {self._last['temperature_C']:.1f}/{self._last['setpoint_C']:.1f} C  "
            f"purity {analysis.element(self.recipe.target).oxide} "
            f"{'-' if math.isnan(purity) else f'{100 * purity:.2f} %'}  "
            f"rows furnace {rows['furnace']} spectra {rows['spectrometer']}"
        )
        print(line, file=stream, flush=True)


def _checked(value: _T | None, what: str) -> _T:
    """``value``, which is never None here: the preflight (recipe against station), the startup or
    :func:`daq.pipeline.analyse_counts` provide it."""
    if value is None:
        raise RuntimeError(f"{what} is missing")
    return value


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
