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
from drivers import InstrumentError

from ._common import software_version, utc_now, utc_now_iso
from ._config_references import resolve_recipe_scenario
from ._sensor_log import SensorLog
from ._stream import Episode, SpectrometerStream
from ._trial_plan import StreamPlan
from ._zone import FurnaceZone
from .bench import Bench, ScenarioError, open_bench
from .catalog import TRIALS_FOLDER, Catalog, CatalogError
from .clock import ExperimentClock
from .config import ConfigError, Recipe, Station, check_recipe_against_station
from .layout import DEFAULT_FULL_SCALE_COUNTS, FinalStatus
from .pipeline import covered_elements, fit_coefficient_names, fit_coefficient_units
from .store import (
    ControllerRecord,
    SensorRecord,
    SpectrometerRecord,
    StorageError,
    StreamRecord,
    TrialMetadata,
    TrialWriter,
)

_T = TypeVar("_T")

__all__ = ["RunOptions", "TrialOutcome", "TrialRunner", "resolve_calibration", "new_trial_id", "Episode"]


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


def resolve_stream_calibration(recipe: Recipe, plan: StreamPlan, options: RunOptions) -> Path:
    """The calibration file of one stream: the first stream's as :func:`resolve_calibration`; a further
    stream's own ``calibration`` (relative to the data folder), which it must have."""
    if plan.primary:
        return resolve_calibration(recipe, options)
    if plan.calibration is None:
        raise ConfigError(
            recipe.source,
            [
                f"{plan.where}.calibration: each stream after the first needs its own (a calibration of its "
                "spectrometer)"
            ],
        )
    path = plan.calibration if plan.calibration.is_absolute() else options.data_dir / plan.calibration
    if not path.is_file():
        raise ConfigError(
            recipe.source,
            [
                f"{plan.where}.calibration: calibration file {path} not found; run `remdaq calibrate STANDARDS "
                f"--station STATION --spectrometer {plan.spectrometer.name} --out {path}` first"
            ],
        )
    return path


def _load_calibration(path: Path) -> analysis.Calibration:
    try:
        return analysis.Calibration.load(path)
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(path, [f"not a readable calibration file: {error}"]) from None


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
        self.stop = threading.Event()
        self._program_done = threading.Event()
        # wakes the main loop at once when the trial must end (stop, failure, program complete): waiting out
        # the status interval instead lets a simulated bench's fast clock run on past the end (speed x 1 s)
        self._wake = threading.Event()
        self._abort_reason = ""
        self._fail_reason = ""
        self._lock = threading.Lock()
        self._writer: TrialWriter | None = None
        self.zones: list[FurnaceZone] = []
        self.streams: list[SpectrometerStream] = []
        self.sensor_logs: list[SensorLog] = []
        self._preflight()

    # -- before anything is touched ----------------------------------------------------------

    def _preflight(self) -> None:
        recipe = self.recipe
        self.plan = check_recipe_against_station(recipe, self.station)
        if recipe.furnace is None and recipe.duration_min is None:
            raise ConfigError(
                recipe.source, ["recipe.duration_min: a recipe without a furnace program needs a duration"]
            )
        self._stream_calibrations = []
        for plan in self.plan.streams or ():
            path = resolve_stream_calibration(recipe, plan, self.options)
            calibration = _load_calibration(path)
            missing = [a for a in plan.analytes if a not in calibration.analytes]
            if missing:
                field_name = "recipe.analytes" if plan.primary and not recipe.streams else f"{plan.where}.analytes"
                raise ConfigError(
                    recipe.source,
                    [
                        f"{field_name}: calibration {path} does not cover {', '.join(missing)} "
                        f"(it covers {', '.join(calibration.analytes)})"
                    ],
                )
            self._stream_calibrations.append((plan, calibration, path))
        if not self._stream_calibrations:  # a furnace-only trial: the recipe's calibration still describes it
            self.calibration_path = resolve_calibration(recipe, self.options)
            self.calibration = _load_calibration(self.calibration_path)
        else:
            _, self.calibration, self.calibration_path = self._stream_calibrations[0]
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
        self.stop.set()
        self._wake.set()

    def _request_fail(self, reason: str) -> None:
        with self._lock:
            if not self._abort_reason and not self._fail_reason:
                self._fail_reason = reason
        self.stop.set()
        self._wake.set()

    # -- startup --------------------------------------------------------------------------------

    def _startup(self, bench: Bench) -> None:
        station = self.station
        self.zones = [FurnaceZone(plan, bench.controllers[plan.controller.name]) for plan in self.plan.zones]
        self.sensor_logs = [
            SensorLog(config, bench.sensors[config.name], self.plan.limits)
            for config in self.plan.sensors
            if config.name in bench.sensors
        ]
        self.streams = []
        for plan, calibration, path in self._stream_calibrations:
            stream = SpectrometerStream(plan, calibration, path)
            stream.measure_references(bench.spectrometers[stream.name], bench.cell(spectrometer=stream.name))
            self.streams.append(stream)
        metadata = self._metadata(bench)
        self._start_time = metadata.start_time
        self._writer = TrialWriter(
            self.path,
            metadata,
            flush_interval_s=self.options.flush_interval_s,
            fsync_interval_s=self.options.fsync_interval_s,
        )
        self.clock.start()
        self.event("info", "runner", f"trial {self.trial_id} started on station {station.name}")
        for zone in self.zones:
            self.event("info", zone.source, f"connected: {zone.controller.ident}")
        for log in self.sensor_logs:
            self.event("info", log.source, f"connected: {log.sensor.identity}")
        for stream in self.streams:
            stream.record_references(self, bench.spectrometers[stream.name].ident)
        bench.start_sensor_scenarios()  # the simulated sensors read the process the spectrometers now see
        self._record_in_catalog("running")
        self._print(f"trial file: {self.path}", stream=sys.stdout)

    def _record_in_catalog(self, status: str) -> None:
        """Index the trial in the data folder's catalog; a catalog that cannot be written is a warning only."""
        try:
            Catalog(self.options.data_dir).record(self._summary(status))
        except CatalogError as error:  # the file is the truth; `remdaq catalog rebuild` re-indexes it later
            self._print(f"warning: {error}")
            if status == "running":  # at the end, the event could no longer be written anyway
                self.event("warning", "runner", f"catalog not updated: {error}")

    def _metadata(self, bench: Bench) -> TrialMetadata:
        recipe = self.recipe
        calibration = self.calibration
        primary = self.streams[0] if self.streams else None
        order = _instrument_order(self.station, bench, self.streams)
        spectrometers = [name for name in order if name in bench.spectrometers]
        first_spectrometer = spectrometers[0] if spectrometers else None
        wavelength_nm, full_scale, attributes = _spectrometer_description(bench, first_spectrometer, primary)
        return TrialMetadata(
            trial_id=self.trial_id,
            title=recipe.title,
            sample=recipe.sample,
            operator=recipe.operator,
            target=primary.plan.target if primary else recipe.target,
            analytes=tuple(calibration.analytes),
            wavelength_nm=wavelength_nm,
            recipe_text=_read_text(recipe.source),
            station_text=_read_text(self.station.source),
            software_version=software_version(),
            clock_speed=self.clock.speed,
            full_scale_counts=full_scale,
            spectrometer_attributes=attributes,
            covered_elements=covered_elements(calibration),
            calibration_id=calibration.calibration_id,
            calibration_file=str(self.calibration_path.resolve()),
            calibration_arrays=_calibration_arrays(calibration),
            fit_coefficient_names=fit_coefficient_names(calibration),
            fit_coefficient_units=fit_coefficient_units(calibration),
            extra={
                "furnace_ident": bench.controllers[order[0]].ident if order and order[0] in bench.controllers else "",
                "spectrometer_ident": bench.spectrometers[first_spectrometer].ident if first_spectrometer else "",
                "simulated": bool(self.station.simulated),
            },
            **_further_instruments(self, bench, order, spectrometers),
        )

    # -- execution ------------------------------------------------------------------------------

    def _execute(self, bench: Bench) -> tuple[FinalStatus, str]:
        threads = []
        for zone in self.zones:
            threads.append(
                threading.Thread(
                    target=self._guard, args=(zone.run, self, self._zone_done), name=f"furnace:{zone.name}"
                )
            )
        if not self.zones:
            self._program_done.set()
        for stream in self.streams:
            spectrometer = bench.spectrometers[stream.name]
            threads.append(
                threading.Thread(
                    target=self._guard, args=(stream.run, self, spectrometer), name=f"stream:{stream.name}"
                )
            )
        for log in self.sensor_logs:
            threads.append(threading.Thread(target=self._guard, args=(log.run, self), name=f"sensor:{log.name}"))
        for thread in threads:
            thread.daemon = True
            thread.start()
        wall_limit_s = 60.0 * self.recipe.wall_clock_limit_min
        duration_s = 60.0 * self.recipe.duration_min if self.recipe.duration_min else None
        started = time.monotonic()
        try:
            while True:
                self._wake.wait(self._main_wait_s(duration_s))
                self._wake.clear()  # then look at the state: a wake set after this is seen on the next pass
                if self.stop.is_set():
                    break
                self._print_status()
                if self.file.failed:
                    self._request_fail(f"trial file: {self.file.error}")
                elif time.monotonic() - started > wall_limit_s:
                    self.event("error", "runner", f"wall-clock limit {self.recipe.wall_clock_limit_min:g} min reached")
                    self.request_abort("wall-clock limit reached")
                elif self._program_done.is_set() and (duration_s is None or self.clock.now_s() >= duration_s):
                    break
        finally:
            self.stop.set()
            # the furnace zones first: a spectrometer stuck in its timeout must not delay their safe state
            zone_threads = [t for t in threads if t.name.startswith("furnace:")]
            for thread in zone_threads:
                thread.join(timeout=30)
            self._furnace_safe()
            for thread in threads:
                if thread not in zone_threads:
                    thread.join(timeout=30)
        self._print_status(final=True)
        if self._fail_reason:
            return "failed", self._fail_reason
        if self._abort_reason:
            return "aborted", self._abort_reason
        return "success", "program complete"

    def _zone_done(self) -> None:
        if all(zone.program_done.is_set() for zone in self.zones):
            self._program_done.set()
            self._wake.set()

    def _main_wait_s(self, duration_s: float | None) -> float:
        """Wall seconds the main loop may sleep: the status interval, less if the recipe's duration ends first."""
        wait_s = self.options.status_interval_s
        if self._program_done.is_set() and duration_s is not None:
            wait_s = min(wait_s, max(0.0, (duration_s - self.clock.now_s()) / self.clock.speed))
        return wait_s

    def _guard(self, loop, *args) -> None:
        try:
            loop(*args)
        except StorageError as error:
            self._request_fail(f"trial file: {error}")
        except Exception as error:  # noqa: BLE001 - any loop failure stops the trial, never silently
            self._request_fail(f"{threading.current_thread().name}: {type(error).__name__}: {error}")

    def instrument_lost(self, name: str, error: Exception, lost_since: float | None, instrument) -> float:
        """Note that ``name`` does not answer (an event the first time), abort when it has been lost too long,
        and try to reconnect; the monotonic time since when it has been lost."""
        now = time.monotonic()
        if lost_since is None:
            self.event("error", name, f"{name} lost: {error}; readings are NaN until it answers")
            lost_since = now
        if now - lost_since > self.recipe.lost_instrument_abort_s:
            self.event("error", name, f"{name} lost for more than {self.recipe.lost_instrument_abort_s:g} s")
            self.request_abort(f"{name} lost for more than {self.recipe.lost_instrument_abort_s:g} s")
        if self.stop.is_set():
            return lost_since  # stopping: a reconnect could block for the instrument's whole timeout
        with contextlib.suppress(InstrumentError, OSError):
            instrument.reconnect()
        return lost_since

    # -- shutdown -------------------------------------------------------------------------------

    @property
    def file(self) -> TrialWriter:
        """The trial file, open from the startup on."""
        if self._writer is None:
            raise RuntimeError("the trial file is created in the startup")
        return self._writer

    def _shutdown(self, bench: Bench | None, status: FinalStatus, reason: str) -> tuple[FinalStatus, str]:
        self.stop.set()
        if not self.zones and bench is not None:  # the startup stopped before the zones: still every controller
            self.zones = [
                FurnaceZone(plan, bench.controllers[plan.controller.name])
                for plan in self.plan.zones
                if plan.controller.name in bench.controllers
            ]
        error = self._furnace_safe()
        if error is not None:
            status, reason = "failed", reason or f"furnace safe state failed: {error}"
        if bench is not None:
            bench.close()
        if self._writer is not None:
            if reason:
                self.event("info" if status == "success" else "error", "runner", f"trial {status}: {reason}")
            try:
                self._writer.close(status)
            except StorageError as error:
                status, reason = "failed", str(error)
            self._record_in_catalog(self._writer_state(status))
        self._print(f"trial {status}{': ' + reason if reason else ''}")
        return status, reason

    def _furnace_safe(self) -> Exception | None:
        """Put every zone in its safe state, once; the first error if any failed."""
        errors = [error for zone in self.zones if (error := zone.safe_state(self)) is not None]
        return errors[0] if errors else None

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
            "final_purity": self.streams[0].last_purity if self.streams else math.nan,
            "target": self.streams[0].plan.target if self.streams else self.recipe.target,
        }

    # -- reporting ------------------------------------------------------------------------------

    def event(self, level: str, source: str, message: str) -> None:
        """An event into the trial file (and to the terminal unless it is only info)."""
        if self._writer is not None and not self._writer.failed:
            with contextlib.suppress(StorageError, RuntimeError):
                self._writer.event(self.clock.now_s(), level, source, message)
        if level != "info":
            self._print(f"{level}: {source}: {message}")

    def print(self, text: str) -> None:
        """A line on the status stream."""
        self._print(text)

    def _print(self, text: str, stream: TextIO | None = None) -> None:
        stream = stream or self.options.status_stream
        if stream is not None:
            print(text, file=stream, flush=True)

    def _print_status(self, final: bool = False) -> None:
        stream = self.options.status_stream
        if stream is None or self._writer is None:
            return
        elapsed = self.clock.now_s()
        rows = self._writer.rows_written
        zone = self.zones[0] if self.zones else None
        parts = [f"{int(elapsed // 3600):02d}:{int(elapsed % 3600 // 60):02d}:{int(elapsed % 60):02d}"]
        parts.append(
            f"furnace {zone.last_temperature_C:.1f}/{zone.last_setpoint_C:.1f} C" if zone else "furnace nan/nan C"
        )
        for stream_ in self.streams:
            purity = stream_.last_purity
            name = "" if stream_.name == "spectrometer" else f"{stream_.name} "
            parts.append(f"{name}purity {stream_.oxide} {'-' if math.isnan(purity) else f'{100 * purity:.2f} %'}")
        parts.append(f"rows furnace {rows.get('furnace', 0)} spectra {rows.get('spectrometer', 0)}")
        print("  ".join(parts[:1]) + " " + "  ".join(parts[1:]), file=stream, flush=True)


_NO_PIXELS = np.zeros(0)


def _calibration_arrays(calibration: analysis.Calibration) -> dict[str, tuple[np.ndarray, str]]:
    """The copy of a calibration the trial file keeps (reanalysis and the app read it)."""
    return {
        "sensitivity": (calibration.sensitivity, "absorbance per g/L"),
        "wavelength": (np.asarray(calibration.wavelength_nm), "nm"),
    }


def _instrument_order(station: Station, bench: Bench, streams: list[SpectrometerStream]) -> tuple[str, ...]:
    """The connected instruments in the station's order, except that the streamed spectrometers come first
    among the spectrometers, in the recipe's order: the first stream's spectrometer is the file's primary one
    (the ``spectrometer`` table beside the first stream's ``analysis``, as every 1.x reader pairs them)."""
    connected = {*bench.controllers, *bench.spectrometers, *bench.sensors}
    names = [i.name for i in station.instruments if i.name in connected]
    streamed = [s.name for s in streams]
    ordered_spectrometers = iter(streamed + [n for n in names if n in bench.spectrometers and n not in streamed])
    order = [next(ordered_spectrometers) if name in bench.spectrometers else name for name in names]
    # a trial file always has a furnace and a spectrometer group (zero rows without one): by their default names
    if not bench.controllers:
        order.insert(0, "furnace")
    if not bench.spectrometers:
        order.append("spectrometer")
    return tuple(order)


def _spectrometer_description(
    bench: Bench, name: str | None, stream: SpectrometerStream | None
) -> tuple[np.ndarray, float, dict]:
    """Wavelength axis, full scale and recorded attributes of spectrometer ``name`` (its stream's, if any)."""
    if name is None:
        return _NO_PIXELS, DEFAULT_FULL_SCALE_COUNTS, {}
    driver = bench.spectrometers[name]
    attributes = dict(getattr(driver, "recorded_attributes", {}))
    if stream is not None and stream.name == name:
        return stream.wavelength_nm, stream.saturation, attributes
    return np.asarray(driver.wavelengths_nm, dtype=float), float(driver.full_scale_counts), attributes


def _further_instruments(runner: TrialRunner, bench: Bench, order: tuple[str, ...], spectrometers: list[str]) -> dict:
    """The :class:`~daq.store.TrialMetadata` fields of every instrument and stream beyond the primary ones."""
    streams = {stream.name: stream for stream in runner.streams}
    controllers = [name for name in order if name in bench.controllers]
    fields: dict = {"instrument_order": order}
    if controllers:
        fields["furnace_name"] = controllers[0]
        fields["furnace_attributes"] = {"ident": bench.controllers[controllers[0]].ident}
    fields["controllers"] = tuple(
        ControllerRecord(name, {"ident": bench.controllers[name].ident}) for name in controllers[1:]
    )
    if spectrometers:
        fields["spectrometer_name"] = spectrometers[0]
    further = []
    for name in spectrometers[1:]:
        wavelength_nm, full_scale, attributes = _spectrometer_description(bench, name, streams.get(name))
        further.append(SpectrometerRecord(name, wavelength_nm, full_scale, attributes))
    fields["spectrometers"] = tuple(further)
    fields["sensors"] = tuple(
        SensorRecord(
            log.name,
            tuple((channel, units, f"{channel} read by {log.name}") for channel, units in log.channels.items()),
            {"ident": log.sensor.identity},
        )
        for log in runner.sensor_logs
    )
    fields["streams"] = tuple(
        StreamRecord(
            stream.name,
            stream.plan.target,
            tuple(stream.calibration.analytes),
            covered_elements(stream.calibration),
            stream.calibration.calibration_id,
            str(stream.calibration_path.resolve()),
            _calibration_arrays(stream.calibration),
            fit_coefficient_names(stream.calibration),
            fit_coefficient_units(stream.calibration),
        )
        for stream in runner.streams[1:]
    )
    return fields


def _read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
