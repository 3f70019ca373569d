"""Offline reanalysis of trial files with a (new) calibration, on this machine or a Dask cluster.

:func:`reanalyze` reads the raw counts of closed trial files again and runs them
through :func:`daq.pipeline.analyse_counts`, the function the live runner used,
so that with the live calibration it reproduces the live numbers, and with a
better calibration it gives better ones. It writes one result file per trial
(``OUT/<trial_id>.reanalysis.h5``, a NeXus NXprocess with provenance) and
``OUT/summary.csv`` across the trials of the run. docs/reanalysis.md is the
user guide and the result-file contract; docs/decisions/0060-0067 say why.

How it runs (Dask, ``dask.distributed``): one *inspect* task per file, then one
task per block of spectrometer rows; each task opens the raw file read-only on
its worker and reads only its own rows, and returns small results. The client
(this process) writes each trial's result file as its blocks arrive, under a
temporary name that is renamed when the trial is complete, so Ctrl-C never
leaves a half-written result. ``workers=0`` runs the same tasks in this process
without Dask (the plain loop of benchmarks/reanalysis.py).
"""

from __future__ import annotations

import contextlib
import functools
import math
import multiprocessing
import os
import signal
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ._common import software_version, utc_now_iso
from ._reanalysis_output import (
    NO_RARE_EARTHS,
    RESULT_SUFFIX,
    ReanalysisResult,
    ResultWriter,
    parameters_json,
    read_result,
    remove_stale_partials,
    result_identity,
    result_path,
    write_summary,
)
from ._reanalysis_tasks import (
    CHECKSUM_METHOD,
    FLAG_ANALYSIS_FAILED,
    FLAG_MODEL_MISMATCH,
    FLAG_NO_DARK_OR_REFERENCE,
    FLAG_NO_RARE_EARTHS,
    FLAG_READ_FAILED,
    HASH_ROWS,
    BlockResult,
    FileProblem,
    TrialInfo,
    analyse_block,
    analyse_block_task,
    combine_checksum,
    inspect_trial,
    inspect_trial_task,
)
from .config import ConfigError
from .layout import DEFAULT_FULL_SCALE_COUNTS

if TYPE_CHECKING:
    from tqdm.std import tqdm

__all__ = [
    "DEFAULT_SATURATION_COUNTS",
    "STATUSES",
    "ReanalysisOutcome",
    "ReanalysisReport",
    "ReanalysisResult",
    "ReanalysisStatus",
    "find_trial_files",
    "raw_checksum",
    "read_result",
    "reanalyze",
]

DEFAULT_SATURATION_COUNTS = DEFAULT_FULL_SCALE_COUNTS
"""Full scale of a 16-bit detector: used only for a trial file that does not record its spectrometer's
(``/entry/instrument/spectrometer@full_scale_counts``) when no saturation level is given."""
SATURATION_FROM_FILE = "trial file (/entry/instrument/spectrometer@full_scale_counts)"
SATURATION_FROM_OPTION = "given (--saturation-counts / saturation_counts=)"
SATURATION_DEFAULT = f"default {DEFAULT_SATURATION_COUNTS:g} (the trial file does not record its full scale)"
DEFAULT_BLOCK_BYTES = 32 * 2**20
"""Raw counts per row-block task (rows are rounded to whole multiples of HASH_ROWS)."""
WAVELENGTH_TOLERANCE_NM = 0.05
"""Largest difference between the calibration's and the trial's wavelength of a pixel (as the runner checks)."""

ReanalysisStatus = Literal[
    "reanalysed", "reanalysed-partial", "up-to-date", "skipped-running", "skipped-empty", "failed", "not-done"
]
"""What happened to one trial file of a run: ``ReanalysisOutcome.status``, the status column of summary.csv."""
_TaskKind = Literal["inspect", "check", "analyse"]
"""A task of a run: look at a trial file, checksum its rows (is the existing result up to date?), or analyse them."""

STATUSES: dict[ReanalysisStatus, str] = {
    "reanalysed": "result written",
    "reanalysed-partial": "result written for an interrupted trial: the rows up to its last flush",
    "up-to-date": "an existing result has the same raw checksum, calibration and parameters: skipped",
    "skipped-running": "the trial is still being written: skipped",
    "skipped-empty": "the trial has no spectra: nothing to reanalyse",
    "failed": "unreadable or unsuitable file, or a task failed: see message",
    "not-done": "the run was stopped (Ctrl-C) before this trial was done",
}
"""Each :data:`ReanalysisStatus` and what it means."""


@dataclass
class ReanalysisOutcome:
    """What happened to one trial file of a run (one row of summary.csv)."""

    raw_file: Path
    status: ReanalysisStatus = "not-done"
    trial_id: str = ""
    sample: str = ""
    trial_state: str = ""  # success, aborted, failed, interrupted, running (of the raw trial)
    target: str = ""
    rows: int = 0
    final_purity: float = math.nan
    mean_purity: float = math.nan
    covered_elements: tuple[str, ...] = ()
    calibration_id: str = ""
    result_file: Path | None = None
    message: str = ""
    final_lack_of_fit: float = math.nan  # the last finite lack of fit
    model_mismatch_fraction: float = math.nan  # fraction of spectra flagged model mismatch
    final_purity_note: str = ""  # "no rare earths in the cell" when no spectrum had a purity for that reason
    saturation_counts: float = math.nan  # the saturation level used
    saturation_counts_source: str = ""  # where it came from (the trial file, the option, the default)

    @property
    def failed(self) -> bool:
        """True when this trial could not be reanalysed (see ``message``)."""
        return self.status == "failed"


@dataclass
class ReanalysisReport:
    """The outcome of :func:`reanalyze`: one :class:`ReanalysisOutcome` per trial file, in input order."""

    outcomes: list[ReanalysisOutcome]
    out_dir: Path
    summary_path: Path | None
    calibration_id: str
    calibration_file: str
    executed_by: str

    @property
    def failed(self) -> list[ReanalysisOutcome]:
        """The outcomes of the trials that failed."""
        return [o for o in self.outcomes if o.failed]

    @property
    def exit_code(self) -> int:
        """0 when no trial failed, 1 otherwise (what ``remdaq reanalyze`` exits with)."""
        return 1 if self.failed else 0

    def counts(self) -> dict[ReanalysisStatus, int]:
        """How many trials ended in each status."""
        present = [o.status for o in self.outcomes]
        return {status: present.count(status) for status in STATUSES if status in present}


def find_trial_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Absolute paths of the trial files named: files as given, folders as the ``*.h5`` files directly in them.

    Result files (``*.reanalysis.h5``) and hidden files in a folder are left out;
    duplicates are dropped (first occurrence kept).
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().absolute()
        candidates = (
            [p for p in sorted(path.glob("*.h5")) if not p.name.endswith(RESULT_SUFFIX) and not p.name.startswith(".")]
            if path.is_dir()
            else [path]
        )
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def _load_calibration(calibration):
    import analysis

    if isinstance(calibration, analysis.Calibration):
        return calibration, ""
    path = Path(calibration)
    if not path.is_file():
        raise ConfigError(path, ["calibration file not found"])
    try:
        return analysis.Calibration.load(path), str(path.resolve())
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(path, [f"not a readable calibration file: {error}"]) from None


def _block_rows(block_rows: int | None, pixels: int) -> int:
    if block_rows is None:
        block_rows = DEFAULT_BLOCK_BYTES // (4 * max(1, pixels))
    return max(1, -(-int(block_rows) // HASH_ROWS)) * HASH_ROWS


# ---------------------------------------------------------------------------- executors


class _InProcessExecutor:
    """Runs the reanalysis tasks in this process, one after another as the run asks for them (``workers=0``: no Dask).

    A task is a :class:`concurrent.futures.Future`, run when :meth:`completed` reaches it (never in a thread:
    a Ctrl-C is seen between two tasks, as with Dask); a cancelled one is passed over. The same interface as
    :class:`daq._reanalysis_dask.DaskExecutor`, whose futures are Dask's.
    """

    description = "this process (no Dask)"

    def __init__(self):
        self._queue: deque[tuple[str, Future, Callable[[], object]]] = deque()

    def start(self, calibration):
        return calibration

    def submit(self, function, *args, key: str, **kwargs) -> Future:
        future: Future = Future()
        self._queue.append((key, future, functools.partial(function, *args, **kwargs)))
        return future

    def completed(self, stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[str, Future]]:
        """``(key, future)`` of each task once it has run, in submission order, including those submitted
        while iterating. Raises KeyboardInterrupt as soon as ``stop()`` is true (checked before each task)."""
        while self._queue:
            if stop():
                raise KeyboardInterrupt
            key, future, call = self._queue.popleft()
            if not future.set_running_or_notify_cancel():
                continue  # cancelled
            try:
                future.set_result(call())
            except Exception as error:  # noqa: BLE001 - handed to the caller by result(), as Dask does
                future.set_exception(error)
            yield key, future

    def cancel(self, futures) -> None:
        for future in futures:
            future.cancel()

    def close(self, cancel=()) -> None:
        self.cancel(cancel)
        self._queue.clear()


# ---------------------------------------------------------------------------- one run


@contextlib.contextmanager
def _ctrl_c_at_safe_points():
    """Turn Ctrl-C (SIGINT) into a flag that the run checks between tasks; yields the check.

    Python's default handler raises KeyboardInterrupt wherever the main thread is,
    including inside a ``__del__`` (of a released Dask future, say), where the
    exception is printed and dropped and the run would go on. A second Ctrl-C
    raises at once. Only in the main thread (signals cannot be caught elsewhere).
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    presses = []

    def on_sigint(_signum, _frame):
        presses.append(1)
        if len(presses) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield lambda: bool(presses)
    finally:
        signal.signal(signal.SIGINT, previous)
    if presses:  # pressed after the last check: stop now rather than report success
        raise KeyboardInterrupt


@dataclass
class _Trial:
    path: Path
    outcome: ReanalysisOutcome
    info: TrialInfo | None = None
    phase: _TaskKind | Literal["done"] = "inspect"  # the kind of task it waits for
    target: str = ""
    final_path: Path | None = None
    existing: dict | None = None
    futures: dict = field(default_factory=dict)  # key -> future
    leaves: dict[int, list[bytes]] = field(default_factory=dict)
    blocks_left: int = 0
    writer: ResultWriter | None = None
    last_finite: tuple[int, float] = (-1, math.nan)
    purity_sum: float = 0.0
    purity_count: int = 0
    row_counts: dict[str, int] = field(default_factory=dict)
    last_lack_of_fit: tuple[int, float] = (-1, math.nan)
    saturation_counts: float | None = None
    saturation_source: str = ""


class _Run:
    def __init__(
        self,
        files: list[Path],
        calibration,
        calibration_file: str,
        out_dir: Path,
        executor,
        *,
        force: bool,
        saturation_counts: float | None,
        target: str | None,
        block_rows: int | None,
        progress: bool | None,
        on_outcome,
        on_block,
    ):
        self.trials = [
            _Trial(
                path,
                ReanalysisOutcome(
                    raw_file=path,
                    trial_id=path.stem,
                    calibration_id=calibration.calibration_id,
                    covered_elements=tuple(calibration.analytes),
                ),
            )
            for path in files
        ]
        self.calibration = calibration
        self.calibration_file = calibration_file
        self.out_dir = out_dir
        self.executor = executor
        self.force = force
        self.saturation_counts = None if saturation_counts is None else float(saturation_counts)
        self.target = target
        self.block_rows = block_rows
        self.progress = progress
        self.on_outcome = on_outcome
        self.on_block = on_block
        self._tasks: dict[str, tuple[_Trial, _TaskKind]] = {}
        self._result_paths: dict[Path, _Trial] = {}
        self._calibration_ref = None
        self._bar: tqdm | None = None  # made by run()
        self._done = 0

    # -- driving ----------------------------------------------------------------------------

    def run(self) -> list[ReanalysisOutcome]:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=0,
            unit=" spectra",
            unit_scale=True,
            desc="reanalysis",
            file=sys.stderr,
            disable=(None if self.progress is None else not self.progress),
            dynamic_ncols=True,
        )
        self._postfix()
        try:
            with _ctrl_c_at_safe_points() as interrupted:
                self._calibration_ref = self.executor.start(self.calibration)
                for trial in self.trials:
                    self._submit(trial, "inspect", inspect_trial_task, str(trial.path))
                for key, future in self.executor.completed(stop=interrupted):
                    self._handle(key, future)
        except BaseException:  # Ctrl-C (KeyboardInterrupt), or a bug: leave nothing half-written
            pending = [f for t in self.trials for f in t.futures.values()]
            self.executor.close(cancel=pending)
            for trial in self.trials:
                if trial.phase != "done":
                    self._drop_writer(trial)
                    trial.phase = "done"
                    trial.outcome.status = "not-done"
                    trial.outcome.message = "stopped before this trial was done"
            raise
        else:
            self.executor.close()
        finally:
            self._bar.close()
        return [t.outcome for t in self.trials]

    @property
    def _progress_bar(self) -> tqdm:
        """The progress bar; tasks are submitted and handled only inside :meth:`run`, which makes it first."""
        assert self._bar is not None
        return self._bar

    def _postfix(self) -> None:
        self._progress_bar.set_postfix_str(f"{self._done}/{len(self.trials)} trials", refresh=False)

    def _submit(self, trial: _Trial, kind: _TaskKind, function, *args) -> None:
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in trial.path.stem)[:48]
        key = f"rem-daq-{kind}-{stem}-{uuid.uuid4().hex[:12]}"
        future = self.executor.submit(function, *args, key=key)
        trial.futures[key] = future
        self._tasks[key] = (trial, kind)

    def _handle(self, key: str, future) -> None:
        trial, kind = self._tasks.pop(key, (None, None))
        if trial is None:
            return
        trial.futures.pop(key, None)
        if trial.phase == "done":  # a leftover of a trial that already failed
            return
        try:
            value = future.result()
        except Exception as error:  # noqa: BLE001 - one file's failure is reported; the others go on
            self._fail(trial, error)
            return
        if isinstance(value, FileProblem):
            self._fail(trial, value.message)
            return
        try:
            if kind == "inspect":
                self._plan(trial, value)
            elif kind == "check":
                self._checked(trial, value)
            else:
                self._analysed(trial, value)
        except OSError as error:  # writing the result failed (disk full, folder gone)
            self._fail(trial, error)

    # -- per trial -----------------------------------------------------------------------------

    def _plan(self, trial: _Trial, info: TrialInfo) -> None:
        trial.info = info
        o = trial.outcome
        o.trial_id, o.sample, o.trial_state, o.rows = info.trial_id, info.sample, info.state, info.rows
        trial.target = o.target = self.target or info.target
        if self.saturation_counts is not None:
            trial.saturation_counts, trial.saturation_source = self.saturation_counts, SATURATION_FROM_OPTION
        elif info.full_scale_counts is not None:
            trial.saturation_counts, trial.saturation_source = info.full_scale_counts, SATURATION_FROM_FILE
        else:
            trial.saturation_counts, trial.saturation_source = DEFAULT_SATURATION_COUNTS, SATURATION_DEFAULT
        o.saturation_counts, o.saturation_counts_source = trial.saturation_counts, trial.saturation_source
        if info.state == "running":
            return self._finish(trial, "skipped-running", "the trial is still being written; run again after it ends")
        problem = self._unsuitable(info, trial.target)
        if problem:
            return self._fail(trial, problem)
        final = result_path(self.out_dir, info.trial_id)
        if final.resolve() == trial.path.resolve():
            return self._fail(trial, f"the result {final} would overwrite the raw file")
        other = self._result_paths.get(final)
        if other is not None:
            return self._fail(
                trial,
                f"trial id {info.trial_id} is also the trial id of {other.path} in this run (one result per trial id)",
            )
        self._result_paths[final] = trial
        trial.final_path = final
        if info.rows == 0:
            return self._finish(trial, "skipped-empty", "the trial has no spectra")
        if not self.force and final.exists():
            existing = result_identity(final)
            if existing is not None and self._same_inputs(existing, trial):
                trial.existing = existing
                return self._submit_blocks(trial, "check")
        self._submit_blocks(trial, "analyse")

    def _unsuitable(self, info: TrialInfo, target: str) -> str:
        calibration = self.calibration
        if target not in calibration.analytes:
            return (
                f"target {target or '(none recorded)'} is not among the calibration's analytes "
                f"({', '.join(calibration.analytes)}); pass a target"
            )
        calibrated = np.asarray(calibration.wavelength_nm, dtype=float)
        if calibrated.shape != info.wavelength_nm.shape:
            return (
                f"the calibration's wavelength axis has {calibrated.size} px, the trial's {info.pixels}: "
                f"calibrate on the instrument the trial was measured with"
            )
        worst = float(np.max(np.abs(calibrated - info.wavelength_nm))) if calibrated.size else 0.0
        if not worst <= WAVELENGTH_TOLERANCE_NM:
            return (
                f"the calibration's wavelength axis differs from the trial's by up to {worst:.3g} nm "
                f"(tolerance {WAVELENGTH_TOLERANCE_NM} nm): calibrate on the instrument the trial was "
                f"measured with"
            )
        return ""

    def _parameters(self, trial: _Trial) -> dict[str, object]:
        return {
            "target": trial.target,
            "saturation_counts": trial.saturation_counts,
            "analysis": "daq.pipeline.analyse_counts",
        }

    def _same_inputs(self, existing: dict, trial: _Trial) -> bool:
        """Whether an existing result may be up to date (same calibration, parameters, raw shape and header);
        the raw rows' checksum decides."""
        info = trial.info
        assert info is not None  # set by _plan, which calls this
        return (
            existing.get("calibration_id") == self.calibration.calibration_id
            and existing.get("parameters") == parameters_json(self._parameters(trial))
            and existing.get("raw_rows") == info.rows
            and existing.get("raw_header_sha256") == info.header_sha256
            and existing.get("raw_trial_id") == info.trial_id
        )

    def _submit_blocks(self, trial: _Trial, kind: Literal["check", "analyse"]) -> None:
        info = trial.info
        assert info is not None  # blocks are submitted once the trial is inspected
        trial.phase = kind
        trial.leaves = {}
        rows = _block_rows(self.block_rows, info.pixels)
        starts = range(0, info.rows, rows)
        trial.blocks_left = len(starts)
        for start in starts:
            self._submit(
                trial,
                kind,
                analyse_block_task,
                info.path,
                start,
                min(info.rows, start + rows),
                self._calibration_ref,
                trial.target,
                trial.saturation_counts,
                info.dark_rows,
                info.reference_rows,
                kind == "analyse",
            )
        self._progress_bar.total += info.rows
        self._progress_bar.refresh()

    def _checked(self, trial: _Trial, block: BlockResult) -> None:
        trial.leaves[block.start] = block.leaves
        trial.blocks_left -= 1
        self._progress_bar.update(block.rows)
        if trial.blocks_left:
            return
        # a "check" block is of a trial that _plan found an existing result for
        assert trial.info is not None and trial.existing is not None and trial.final_path is not None
        checksum = combine_checksum(trial.info, self._ordered_leaves(trial))
        if checksum != trial.existing.get("raw_sha256"):
            return self._submit_blocks(trial, "analyse")
        result = read_result(trial.final_path)
        o = trial.outcome
        o.final_purity, o.mean_purity = result.final_purity, result.mean_purity
        o.final_lack_of_fit, o.model_mismatch_fraction = result.final_lack_of_fit, result.model_mismatch_fraction
        o.final_purity_note = result.final_purity_note
        trial.outcome.result_file = trial.final_path
        self._finish(trial, "up-to-date", "same raw checksum, calibration and parameters as the existing result")

    def _analysed(self, trial: _Trial, block: BlockResult) -> None:
        info = trial.info
        assert info is not None and trial.final_path is not None  # set by _plan before any block is submitted
        if trial.writer is None:
            trial.writer = ResultWriter(trial.final_path, info, self.calibration, self._initial_attrs(trial))
        writer = trial.writer
        writer.write_block(block)
        trial.leaves[block.start] = block.leaves
        purity, lack_of_fit, flag = block.purity, block.lack_of_fit, block.flag
        assert purity is not None and lack_of_fit is not None and flag is not None  # an "analyse" block has results
        finite = np.flatnonzero(np.isfinite(purity))
        if finite.size:
            if block.start + finite[-1] > trial.last_finite[0]:
                trial.last_finite = (block.start + int(finite[-1]), float(purity[finite[-1]]))
            trial.purity_sum += float(purity[finite].sum())
            trial.purity_count += int(finite.size)
        fitted = np.flatnonzero(np.isfinite(lack_of_fit))
        if fitted.size and block.start + fitted[-1] > trial.last_lack_of_fit[0]:
            trial.last_lack_of_fit = (block.start + int(fitted[-1]), float(lack_of_fit[fitted[-1]]))
        for name, bit in (
            ("rows_read_failed_live", FLAG_READ_FAILED),
            ("rows_failed", FLAG_ANALYSIS_FAILED),
            ("rows_without_dark_or_reference", FLAG_NO_DARK_OR_REFERENCE),
            ("rows_model_mismatch", FLAG_MODEL_MISMATCH),
            ("rows_no_rare_earths", FLAG_NO_RARE_EARTHS),
        ):
            trial.row_counts[name] = trial.row_counts.get(name, 0) + int(np.count_nonzero(flag & bit))
        trial.blocks_left -= 1
        self._progress_bar.update(block.rows)
        if self.on_block is not None:
            self.on_block(info.trial_id, writer.rows_written, info.rows)
        if trial.blocks_left:
            return
        checksum = combine_checksum(info, self._ordered_leaves(trial))
        now = utc_now_iso()
        trial.outcome.result_file = writer.finish(
            {"raw_sha256": checksum, "created_utc": now, "rows_analysed": trial.purity_count, **trial.row_counts},
            date=now,
        )
        trial.writer = None
        o = trial.outcome
        o.final_purity = trial.last_finite[1]
        o.mean_purity = (trial.purity_sum / trial.purity_count) if trial.purity_count else math.nan
        o.final_lack_of_fit = trial.last_lack_of_fit[1]
        o.model_mismatch_fraction = trial.row_counts.get("rows_model_mismatch", 0) / info.rows
        o.final_purity_note = (
            NO_RARE_EARTHS if math.isnan(o.final_purity) and trial.row_counts.get("rows_no_rare_earths", 0) else ""
        )
        if info.state == "interrupted":
            self._finish(trial, "reanalysed-partial", "interrupted trial: reanalysed up to its last flushed row")
        else:
            self._finish(trial, "reanalysed", "")

    def _ordered_leaves(self, trial: _Trial) -> list[bytes]:
        return [leaf for start in sorted(trial.leaves) for leaf in trial.leaves[start]]

    def _initial_attrs(self, trial: _Trial) -> dict[str, object]:
        import analysis

        info, calibration = trial.info, self.calibration
        assert info is not None and trial.saturation_counts is not None  # both set by _plan
        return {
            "raw_file": str(trial.path),
            "raw_trial_id": info.trial_id,
            "raw_state": info.state,
            "raw_complete": info.state != "interrupted",
            "raw_rows": info.rows,
            "raw_file_bytes": info.file_bytes,
            "raw_stored_eof": info.stored_eof,
            "raw_ends_where_it_says": info.file_bytes >= info.stored_eof,
            "raw_header_sha256": info.header_sha256,
            "raw_sha256": "",
            "raw_checksum_method": CHECKSUM_METHOD,
            "raw_software_version": info.software_version,
            "calibration_id": calibration.calibration_id,
            "calibration_file": self.calibration_file,
            "live_calibration_id": info.live_calibration_id,
            "live_calibration_file": info.live_calibration_file,
            "calibration_changed": calibration.calibration_id != info.live_calibration_id,
            "target": trial.target,
            "target_oxide": analysis.element(trial.target).oxide,
            "covered_elements": ", ".join(calibration.analytes),
            "software_version": software_version(),
            "parameters": parameters_json(self._parameters(trial)),
            "saturation_counts": float(trial.saturation_counts),
            "saturation_counts_source": trial.saturation_source,
            "executed_by": self.executor.description,
            "created_utc": "",
        }

    # -- endings ---------------------------------------------------------------------------------

    def _drop_writer(self, trial: _Trial) -> None:
        if trial.writer is not None:
            trial.writer.abandon()
            trial.writer = None

    def _fail(self, trial: _Trial, problem) -> None:
        self.executor.cancel(list(trial.futures.values()))
        for key in trial.futures:
            self._tasks.pop(key, None)
        trial.futures.clear()
        self._drop_writer(trial)
        if isinstance(problem, BaseException):
            problem = str(problem) if isinstance(problem, OSError) else f"{type(problem).__name__}: {problem}"
        self._finish(trial, "failed", problem)

    def _finish(self, trial: _Trial, status: ReanalysisStatus, message: str) -> None:
        trial.phase = "done"
        trial.outcome.status = status
        trial.outcome.message = message
        self._done += 1
        self._postfix()
        self._progress_bar.refresh()
        if self.on_outcome is not None:
            self.on_outcome(trial.outcome)


# ---------------------------------------------------------------------------- scripts without a __main__ guard

UNGUARDED_SCRIPT_MESSAGE = (
    "reanalyze was called while a child process was importing the main script "
    "(a spawned process re-runs an unguarded script): put the call under "
    '`if __name__ == "__main__":`'
)


def _refuse_in_bootstrapping_child() -> None:
    """Raise the one-line error when a spawned (or forkserver) child is re-importing the main script.

    A child started with the spawn or forkserver method imports the parent's main
    module again before it runs (multiprocessing's "bootstrapping phase"); a call
    at the top level of an unguarded script then runs in the child too, where it
    would start processes of its own (which multiprocessing refuses, three
    screens of traceback later) or reanalyse everything a second time.
    """
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # as multiprocessing.spawn checks it
        raise RuntimeError(UNGUARDED_SCRIPT_MESSAGE)


@contextlib.contextmanager
def _spawned_workers_skip_main_script():
    """While the own LocalCluster starts: its spawned worker processes do not import this process's main script.

    multiprocessing's spawn makes every child import the parent's ``__main__``
    again (by path, or by module name for ``python -m``), so a script calling
    :func:`reanalyze` at its top level, without ``if __name__ == "__main__":``,
    would call it again in each worker, and the workers would fail to start
    ("Nanny failed to start"). The workers run only ``daq`` functions, never
    anything of the script, so for the few seconds the cluster needs to spawn
    them the main module's ``__file__`` and ``__spec__`` (what spawn reads) are
    hidden, and put back afterwards. A worker restarted later (after a crash)
    imports the script as usual; in an unguarded script, that call then stops
    with :data:`UNGUARDED_SCRIPT_MESSAGE` (:func:`_refuse_in_bootstrapping_child`).
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if getattr(main, name, None) is not None}
    if main is not None and "__file__" in saved:  # saved is empty without a __main__ module
        del main.__file__
    if main is not None and "__spec__" in saved:
        main.__spec__ = None
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


# ---------------------------------------------------------------------------- public entry points


def reanalyze(
    paths: Iterable[str | os.PathLike],
    calibration,
    out_dir: str | os.PathLike,
    client=None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    saturation_counts: float | None = None,
    target: str | None = None,
    block_rows: int | None = None,
    progress: bool | None = None,
    on_outcome: Callable[[ReanalysisOutcome], None] | None = None,
    on_block: Callable[[str, int, int], None] | None = None,
) -> ReanalysisReport:
    """Reanalyse trial files with a calibration; write one result file per trial and ``summary.csv`` in ``out_dir``.

    - ``paths``: trial files, or folders whose ``*.h5`` files are taken (see :func:`find_trial_files`).
    - ``calibration``: a calibration file (``remdaq calibrate``) or an :class:`analysis.Calibration`.
    - where it runs: ``client`` (a ``distributed.Client`` you made), else ``scheduler``
      (``"tcp://HOST:PORT"`` of a running ``dask scheduler``), else a LocalCluster of
      ``workers`` processes on this machine (default: one per CPU), closed at the end.
      ``workers=0`` runs everything in this process without Dask. Raw files must be
      readable by the workers at the same paths, and ``out_dir`` is written by this process.
    - ``force``: reanalyse even trials whose result in ``out_dir`` is up to date (same raw
      checksum, calibration id, target and saturation level).
    - ``saturation_counts``: detector full scale; pixels at or above it are masked. None (the default): the
      full scale each trial file records (``/entry/instrument/spectrometer@full_scale_counts``; 65535 for a
      file without it); ``math.inf``: no mask. The result's provenance says which was used
      (``saturation_counts``, ``saturation_counts_source``).
    - ``target``: the element whose oxide purity is computed (default: the trial's own target).
    - ``block_rows``: spectrometer rows per task (rounded up to a multiple of 1024; default ~32 MB of counts).
    - ``progress``: a tqdm bar on stderr (None: only when stderr is a terminal).
    - ``on_outcome(outcome)`` is called as each trial ends; ``on_block(trial_id, rows_written, rows)``
      after each block of results is written.

    Running trials are skipped, interrupted ones reanalysed as far as they go, and an
    unreadable file is reported as failed while the others go on. Raw files are only read.
    On Ctrl-C the run stops, deletes its temporary files, writes summary.csv (unfinished
    trials marked ``not-done``) and re-raises KeyboardInterrupt; a new run continues
    where it stopped. Returns a :class:`ReanalysisReport`.
    """
    _refuse_in_bootstrapping_child()
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be >= 0, not {workers}")
    if workers is not None and (client is not None or scheduler is not None):
        raise ValueError("give workers, scheduler or client, not several")
    if client is not None and scheduler is not None:
        raise ValueError("give a client or a scheduler address, not both")
    calibration, calibration_file = _load_calibration(calibration)
    files = find_trial_files(paths)
    out_dir = Path(out_dir).absolute()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(out_dir, [f"output folder cannot be created: {error}"]) from None
    remove_stale_partials(out_dir)
    options: dict[str, Any] = dict(  # the keyword arguments of _Run, each of its declared type
        force=force,
        saturation_counts=saturation_counts,
        target=target,
        block_rows=block_rows,
        progress=progress,
        on_outcome=on_outcome,
        on_block=on_block,
    )
    run: _Run | None = None
    executed_by = _InProcessExecutor.description
    try:
        if workers == 0:
            run = _Run(files, calibration, calibration_file, out_dir, _InProcessExecutor(), **options)
            run.run()
        else:
            try:
                from ._reanalysis_dask import DaskExecutor, dask_client
            except ImportError as error:
                raise ConfigError(
                    "dask",
                    [
                        f"reanalysis on a cluster needs dask.distributed ({error}): "
                        "pip install 'rem-daq[cluster]', or pass workers=0"
                    ],
                ) from None
            with contextlib.ExitStack() as cluster:
                with (
                    _spawned_workers_skip_main_script()
                    if client is None and scheduler is None
                    else contextlib.nullcontext()
                ):
                    dask, description = cluster.enter_context(dask_client(client, workers, scheduler))
                executed_by = description
                run = _Run(files, calibration, calibration_file, out_dir, DaskExecutor(dask, description), **options)
                run.run()
    finally:
        if run is not None:  # also after Ctrl-C: what was done, and what was not
            outcomes = [t.outcome for t in run.trials]
            summary = write_summary(out_dir / "summary.csv", outcomes)
    return ReanalysisReport(
        outcomes=outcomes,
        out_dir=out_dir,
        summary_path=summary,
        calibration_id=calibration.calibration_id,
        calibration_file=calibration_file,
        executed_by=executed_by,
    )


def raw_checksum(path: str | os.PathLike) -> str:
    """The raw checksum of a trial file as reanalysis records it (``raw_sha256``), computed here in one pass.

    For checking a result's provenance against a raw file by hand; the algorithm is
    in docs/reanalysis.md.
    """
    info = inspect_trial(str(Path(path).absolute()))
    leaves: list[bytes] = []
    step = 16 * HASH_ROWS
    for start in range(0, info.rows, step):
        leaves += analyse_block(
            info.path,
            start,
            min(info.rows, start + step),
            None,
            "",
            None,
            info.dark_rows,
            info.reference_rows,
            analyse=False,
        ).leaves
    return combine_checksum(info, leaves)
