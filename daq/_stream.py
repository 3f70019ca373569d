"""One spectrometer's stream in a trial: its dark and blank, its spectra, their live analysis.

A trial has one :class:`SpectrometerStream` per analysed spectrometer (a recipe's
``[[stream]]``, or its one ``[spectrometer]`` schedule). Each owns its dark and
blank reference, its saturation policy and the events of its analysis (model
mismatch, rare earths in the cell); the trial gives it a
:class:`~daq._trial_context.TrialContext` (clock, file, events, stop) and runs
:meth:`SpectrometerStream.run` in a thread.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import numpy as np

import analysis
from analysis import LACK_OF_FIT_LIMIT
from drivers import DarkNotDark, InstrumentError

from ._trial_context import instrument_table
from .config import ConfigError
from .layout import (
    FLAG_ANALYSIS_FAILED,
    FLAG_LOST,
    FLAG_MODEL_MISMATCH,
    FLAG_NO_RARE_EARTHS,
    FLAG_READ_FAILED,
    FLAG_SATURATED,
)
from .pipeline import analyse_counts

if TYPE_CHECKING:
    from pathlib import Path

    from ._trial_context import TrialContext
    from ._trial_plan import StreamPlan
    from .cell import Cell

__all__ = ["Episode", "SpectrometerStream", "EPISODE_END_SPECTRA"]

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


class SpectrometerStream:
    """One spectrometer's spectra and their analysis with its own calibration and target."""

    def __init__(self, plan: StreamPlan, calibration: analysis.Calibration, calibration_path: Path) -> None:
        self.plan = plan
        self.name = plan.spectrometer.name
        self.calibration = calibration
        self.calibration_path = calibration_path
        self.source = self.name[:16]  # the events table's source column
        self.last_purity = math.nan
        self.last_purity_sigma = math.nan
        self._mismatch = Episode(start_after=1)
        self._mismatch_spectra = 0
        self._rare_earths = Episode(start_after=EPISODE_END_SPECTRA)
        self._dark: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self._reference_index = 0
        self._darks_written = 0
        self.wavelength_nm = np.zeros(0)
        self.saturation = math.nan
        self.integration_time_s = plan.schedule.integration_time_s

    def table(self, name: str) -> str:
        """This stream's key of a trial-file table (``spectrometer``, ``dark``, ``reference``, ``analysis``)."""
        return instrument_table(name, self.name)

    # -- before the file exists ----------------------------------------------------------------

    def measure_references(self, spectrometer, cell: Cell) -> None:
        """Settings, the axis against the calibration's, then the dark and the blank reference (the blank in
        the cell); with ``on_saturation = "adjust"`` a saturated blank lowers the integration time now."""
        schedule = self.plan.schedule
        spectrometer.integration_time_s = schedule.integration_time_s
        spectrometer.averages = schedule.averages
        wavelength_nm = np.asarray(spectrometer.wavelengths_nm, dtype=float)
        calibrated_nm = np.asarray(self.calibration.wavelength_nm, dtype=float)
        if calibrated_nm.shape != wavelength_nm.shape or not np.allclose(calibrated_nm, wavelength_nm, atol=0.05):
            raise ConfigError(
                self.calibration_path,
                [
                    f"calibration wavelength axis ({calibrated_nm.size} px, {calibrated_nm[0]:.2f}-"
                    f"{calibrated_nm[-1]:.2f} nm) does not match the {self.name} spectrometer's ({wavelength_nm.size} "
                    f"px, {wavelength_nm[0]:.2f}-{wavelength_nm[-1]:.2f} nm): calibrate on this instrument"
                ],
            )
        self.wavelength_nm = wavelength_nm
        self.cell = cell
        cell.load_blank()
        self.saturation = float(spectrometer.full_scale_counts)
        spectrometer.averages = schedule.reference_averages or schedule.averages
        dark, reference = spectrometer.dark(), spectrometer.acquire()
        while (
            schedule.on_saturation == "adjust"
            and np.any(reference >= self.saturation)
            and self.integration_time_s / 2 >= self.plan.spectrometer.min_integration_time_s
        ):
            self.integration_time_s /= 2
            spectrometer.integration_time_s = self.integration_time_s
            dark, reference = spectrometer.dark(), spectrometer.acquire()
        spectrometer.averages = schedule.averages
        self._dark, self._reference = dark, reference
        analyse_counts(reference, dark, reference, self.calibration, self.plan.target, self.saturation)
        # ^ compiles the numba kernels now, not on the first spectrum

    # -- once the file exists --------------------------------------------------------------------

    def record_references(self, trial: TrialContext, ident: str) -> None:
        """The startup's events, dark and reference into the file; then the process stream starts."""
        schedule = self.plan.schedule
        trial.event("info", self.source, f"connected: {ident}")
        if self.integration_time_s != schedule.integration_time_s:
            trial.event(
                "warning",
                self.source,
                f"the blank saturated at {schedule.integration_time_s:g} s: "
                f"integration time lowered to {self.integration_time_s:g} s",
            )
        dark, reference = self._blank()
        self._write_dark(trial, dark)
        trial.file.append(
            self.table("reference"),
            time=trial.clock.now_s(),
            counts=reference,
            integration_time=self.integration_time_s,
        )
        self._reference_index = 0
        saturated = int(np.count_nonzero(reference >= self.saturation))
        if saturated:
            trial.event(
                "warning",
                self.source,
                f"blank reference has {saturated} saturated pixels (masked): lower the integration time",
            )
        self.cell.start_process_stream()
        trial.event("info", self.source, "dark and blank reference taken; process stream started")

    def run(self, trial: TrialContext, spectrometer) -> None:
        """Acquire and analyse on the schedule until the trial stops (a thread's body)."""
        schedule = self.plan.schedule
        next_s = trial.clock.now_s()
        spectra = 0
        lost_since = None
        dark_index = 0
        while not trial.clock.wait_until(next_s, trial.stop):
            next_s += schedule.interval_s
            try:
                if schedule.dark == "every" and spectra and spectra % schedule.dark_every_n == 0:
                    try:
                        self._dark = spectrometer.dark()
                        dark_index = self._write_dark(trial, self._dark)
                    except DarkNotDark as refused:  # the light was not blocked: the last good dark stays in use
                        trial.event("warning", self.source, f"dark refused, the previous one stays: {refused}")
                counts = spectrometer.acquire()
            except InstrumentError as error:
                lost_since = trial.instrument_lost(self.source, error, lost_since, spectrometer)
                self._append_spectrum(trial, None, dark_index, FLAG_READ_FAILED | FLAG_LOST)
                continue
            if lost_since is not None:
                trial.event(
                    "info", self.source, f"{self.source} answers again after {time.monotonic() - lost_since:.1f} s"
                )
                lost_since = None
            spectra += 1
            saturated = int(np.count_nonzero(counts >= self.saturation))
            self._append_spectrum(trial, counts, dark_index, FLAG_SATURATED if saturated else 0, saturated)
            if saturated:
                dark_index = self._on_saturation(trial, spectrometer, saturated, dark_index)

    def _append_spectrum(self, trial: TrialContext, counts, dark_index: int, flag: int, saturated: int = 0) -> None:
        now_s = trial.clock.now_s()
        dark, reference = self._blank()
        if counts is None:
            counts = np.full(len(reference), np.nan)
            result = None
        else:
            try:
                result = analyse_counts(counts, dark, reference, self.calibration, self.plan.target, self.saturation)
            except (ValueError, FloatingPointError) as error:
                where = "" if self.name == "spectrometer" else f"{self.name}: "
                trial.event("error", "analysis", f"{where}spectrum at {now_s:.1f} s not analysed: {error}")
                result, flag = None, flag | FLAG_ANALYSIS_FAILED
        if result is not None:
            flag |= (FLAG_MODEL_MISMATCH if _present(result.model_mismatch) else 0) | (
                FLAG_NO_RARE_EARTHS if _present(result.below_quantitation_limit) else 0
            )
        trial.file.append(
            self.table("spectrometer"),
            time=now_s,
            counts=counts,
            integration_time=self.integration_time_s,
            averages=self.plan.schedule.averages,
            saturated_pixels=saturated,
            dark_index=dark_index,
            reference_index=self._reference_index,
            flag=flag,
        )
        if result is None:
            nan_k = np.full(len(self.calibration.analytes), np.nan)
            trial.file.append(
                self.table("analysis"),
                time=now_s,
                concentration=nan_k,
                sigma=nan_k,
                purity=math.nan,
                purity_sigma=math.nan,
                residual_rms=math.nan,
            )  # fit columns: NaN
            return
        trial.file.append(
            self.table("analysis"),
            time=now_s,
            concentration=result.concentration_g_per_L[0],
            sigma=result.sigma_g_per_L[0],
            purity=result.purity[0],
            purity_sigma=result.purity_sigma[0],
            residual_rms=result.residual_rms[0],
            lack_of_fit=_row(result.lack_of_fit),
            wavelength_shift=_row(result.wavelength_shift_nm),
            fit_coefficients=_row(result.free_coefficients),
        )
        self.last_purity = float(result.purity[0])
        self.last_purity_sigma = float(result.purity_sigma[0])
        self._report_fit(trial, result)

    def _report_fit(self, trial: TrialContext, result) -> None:
        """Events at the start and end of a model mismatch and of rare earths in the cell (never per spectrum)."""
        lack = float(_row(result.lack_of_fit))
        limit = LACK_OF_FIT_LIMIT
        verdict = None if math.isnan(lack) else _present(result.model_mismatch)
        where = "" if self.name == "spectrometer" else f"{self.name}: "
        if verdict:
            self._mismatch_spectra += 1
        change = self._mismatch.update(verdict)
        if change == "start":
            self._mismatch_spectra = 1
            trial.event(
                "warning",
                "analysis",
                f"{where}model mismatch: lack of fit {lack:.3g} (limit {limit:g}): the "
                "calibration cannot represent these spectra \u2014 a new matrix? "
                "recalibrate; purity not to be trusted",
            )
        elif change == "end":
            trial.event(
                "info",
                "analysis",
                f"{where}model mismatch over: lack of fit {lack:.3g} (limit {limit:g}) "
                f"after {self._mismatch_spectra} mismatched spectra",
            )
        concentration = result.concentration_g_per_L[0]
        present = None if not np.all(np.isfinite(concentration)) else not _present(result.below_quantitation_limit)
        first = present is not None and self._rare_earths.verdicts == 0
        change = self._rare_earths.update(present)
        if change == "start":
            trial.event(
                "info",
                "analysis",
                f"{where}rare earths in the cell: {float(np.sum(concentration)):.3g} g/L "
                "in all, above the quantitation limit; purity reported from here",
            )
        elif change == "end" or (first and not present):
            trial.event(
                "info",
                "analysis",
                f"{where}no rare earths in the cell: total oxide below the quantitation limit; "
                "no purity until they return",
            )

    def _on_saturation(self, trial: TrialContext, spectrometer, saturated: int, dark_index: int) -> int:
        if self.plan.schedule.on_saturation == "flag":
            trial.event("warning", self.source, f"{saturated} saturated pixels (masked from the fit)")
            return dark_index
        new_time_s = max(self.plan.spectrometer.min_integration_time_s, self.integration_time_s / 2)
        if new_time_s == self.integration_time_s:
            trial.event("warning", self.source, f"{saturated} saturated pixels at the shortest integration time")
            return dark_index
        scale = new_time_s / self.integration_time_s
        spectrometer.integration_time_s = new_time_s
        old_dark, reference = self._blank()
        dark = spectrometer.dark()
        self._dark = dark
        # the blank cannot be re-measured mid-trial: scale its dark-corrected signal to the new time
        # rounded to what the file stores (float32), so reanalysis from the file reproduces the live numbers;
        # pixels where the blank itself clipped carry no information and stay masked (at full scale)
        clipped = reference >= self.saturation
        scaled = (reference - old_dark) * scale + dark
        self._reference = np.where(clipped, self.saturation, scaled).astype(np.float32).astype(float)
        self.integration_time_s = new_time_s
        trial.file.append(
            self.table("reference"), time=trial.clock.now_s(), counts=self._reference, integration_time=new_time_s
        )
        self._reference_index += 1
        trial.event(
            "warning",
            self.source,
            f"{saturated} saturated pixels: integration time lowered to "
            f"{new_time_s:g} s, new dark taken, reference scaled",
        )
        return self._write_dark(trial, dark)

    def _write_dark(self, trial: TrialContext, dark) -> int:
        trial.file.append(
            self.table("dark"), time=trial.clock.now_s(), counts=dark, integration_time=self.integration_time_s
        )
        self._darks_written += 1
        return self._darks_written - 1

    def _blank(self) -> tuple[np.ndarray, np.ndarray]:
        """The current dark and blank reference, taken in the startup."""
        if self._dark is None or self._reference is None:
            raise RuntimeError(f"{self.name}: the dark and blank reference are taken in the startup")
        return self._dark, self._reference

    @property
    def oxide(self) -> str:
        """The oxide this stream's purity is of (``Nd2O3``)."""
        return analysis.element(self.plan.target).oxide


def _row(values: np.ndarray | None):
    """The first row of a result field that :func:`daq.pipeline.analyse_counts` always sets."""
    if values is None:
        raise RuntimeError("analyse_counts left a result field unset")
    return values[0]


def _present(values: np.ndarray | None) -> bool:
    return bool(_row(values))
