"""`remdaq check --standard`: does the calibration still hold at the start of a shift?

:func:`check_calibration` measures a check standard as a calibration measures its
standards and says whether the calibration still reproduces it (bias against the
stated concentrations, lack of fit, wavelength shift) or it is time to
recalibrate (docs/user-guide.md, "Shift-start calibration check";
docs/decisions/0056-check-standard-verdict.md).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import analysis
from analysis import LACK_OF_FIT_LIMIT
from drivers import UnreadableFileError, is_regular_file

from ._check_standard import (
    CheckStandardFile,
    check_standard_against_calibration,
    check_standard_against_station,
    checked_spectrometer,
    load_check_standard,
)
from .bench import ScenarioError, find_bench_scenario, open_bench
from .cell import OPERATOR_TIMEOUT_S, operator_prompt
from .config import ConfigError, Station

__all__ = [
    "AnalyteResult",
    "CalibrationCheck",
    "CalibrationCheckPlan",
    "prepare_calibration_check",
    "run_calibration_check",
    "check_calibration",
    "operator_prompt",
    "verdict_reasons",
    "Z_LIMIT",
    "SHIFT_LIMIT_NM",
    "AXIS_TOLERANCE_NM",
    "OPERATOR_TIMEOUT_S",
    "HOLDS",
    "RECALIBRATE",
]


#: |bias| / combined uncertainty above this on any stated element: the calibration does not reproduce the standard.
Z_LIMIT = 3.0
#: |wavelength shift| since calibration beyond this (nm): outside what the drift terms were validated for
#: (0.2 nm of lab warming, 0.25 nm fibre replugs in tests/system/test_drift_end_to_end.py).
SHIFT_LIMIT_NM = 0.25
#: The calibration's wavelength axis must match the spectrometer's within this (nm), as for a trial.
AXIS_TOLERANCE_NM = 0.05
#: Longest wait for the operator to fill the cell on a real bench (s).

HOLDS = "calibration holds"
RECALIBRATE = "recalibrate"


@dataclass(frozen=True)
class AnalyteResult:
    """One analyte of the calibration measured in the check standard (stated or not)."""

    element: str
    measured_g_per_L: float
    sigma_g_per_L: float
    replicate_sd_g_per_L: float = math.nan  # scatter of the single replicates (NaN with one)
    stated_g_per_L: float | None = None  # None: the standard states nothing for this analyte
    stated_uncertainty_g_per_L: float | None = None  # standard uncertainty (k = 1)

    @property
    def stated(self) -> bool:
        return self.stated_g_per_L is not None

    @property
    def bias_g_per_L(self) -> float:
        stated = self.stated_g_per_L
        return self.measured_g_per_L - stated if stated is not None else math.nan

    @property
    def combined_sigma_g_per_L(self) -> float:
        """sqrt(sigma_measured^2 + u_stated^2)."""
        if not self.stated:
            return math.nan
        if self.stated_uncertainty_g_per_L is None:
            raise TypeError(f"{self.element}: a stated concentration needs its stated uncertainty")
        return math.hypot(self.sigma_g_per_L, self.stated_uncertainty_g_per_L)

    @property
    def z(self) -> float:
        """bias / combined uncertainty (NaN when either is not a finite number)."""
        bias, combined = self.bias_g_per_L, self.combined_sigma_g_per_L
        if not (math.isfinite(bias) and math.isfinite(combined)) or combined <= 0:
            return math.nan
        return bias / combined


@dataclass(frozen=True)
class CalibrationCheck:
    """What the check standard said of the calibration; ``reasons`` empty means it holds."""

    standard_name: str
    standard_path: Path
    calibration_path: Path
    calibration_id: str
    analytes: tuple[AnalyteResult, ...] = ()
    lack_of_fit: float = math.nan
    wavelength_shift_nm: float = math.nan  # apparent band shift since calibration (analysis wavelength_shift_nm)
    reference_shift_nm: float = math.nan  # axis movement between the check's blank and the standard
    reasons: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    measured: bool = True
    simulator_truth: dict | None = None  # simulated bench only: SIM:TRUT:DRIF? after the standard

    @property
    def holds(self) -> bool:
        return not self.reasons

    @property
    def verdict(self) -> str:
        return HOLDS if self.holds else RECALIBRATE

    def report_lines(self) -> list[str]:
        """The report as printed by `remdaq check --standard`."""
        lines = [
            f"calibration check: standard {self.standard_name!r} ({self.standard_path}) against "
            f"calibration {self.calibration_id} ({self.calibration_path})"
        ]
        if self.measured:
            lines.append("  analyte      stated g/L           measured g/L             bias g/L      z")
            for a in self.analytes:
                measured = f"{a.measured_g_per_L:9.4f} ± {a.sigma_g_per_L:<8.2g}"
                if a.stated:
                    lines.append(
                        f"  {a.element:<8} {a.stated_g_per_L:9.4f} ± {a.stated_uncertainty_g_per_L:<8.2g}  "
                        f"{measured}  {a.bias_g_per_L:+10.4f}  {a.z:+6.2f}"
                    )
                else:
                    lines.append(f"  {a.element:<8} {'(not stated)':>20}  {measured}")
            scatter = [
                f"{a.element} {a.replicate_sd_g_per_L:.2g}"
                for a in self.analytes
                if a.stated and math.isfinite(a.replicate_sd_g_per_L)
            ]
            if scatter:
                lines.append(f"  replicates        scatter (sd) {', '.join(scatter)} g/L")
            lines.append(f"  lack of fit       {self.lack_of_fit:.3g} (limit {LACK_OF_FIT_LIMIT:g})")
            lines.append(
                f"  wavelength shift  {self.wavelength_shift_nm:+.3f} nm since calibration "
                f"(limit ±{SHIFT_LIMIT_NM:g} nm); axis moved {self.reference_shift_nm:+.3f} nm "
                f"between blank and standard"
            )
            if self.simulator_truth is not None:
                truth = self.simulator_truth
                lines.append(
                    f"  simulator truth   apparent shift {truth.get('APPARENT_NM', math.nan):+.3f} nm, "
                    f"axis {truth.get('AXIS_NM', math.nan):+.3f} nm (SIM:TRUT:DRIF?)"
                )
        lines += [f"  note: {note}" for note in self.notes]
        lines.append(f"verdict: {self.verdict}")
        lines += [f"  - {reason}" for reason in self.reasons]
        return [line.rstrip() for line in lines]


@dataclass(frozen=True)
class CalibrationCheckPlan:
    """A validated check: station, check standard, calibration and (simulated bench) scenario; nothing touched yet."""

    station: Station
    check: CheckStandardFile
    calibration: analysis.Calibration
    calibration_path: Path
    scenario: Path | None = None


def _load_calibration(path: Path) -> analysis.Calibration:
    try:
        if not is_regular_file(path):
            raise ConfigError(path, ["calibration file not found (make one with `remdaq calibrate`)"])
    except UnreadableFileError as error:
        raise ConfigError(path, [error.problem]) from None
    try:
        return analysis.Calibration.load(path)
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(path, [f"not a readable calibration file: {error}"]) from None


def _resolve_scenario(station: Station, scenario: str | os.PathLike | None) -> Path | None:
    if scenario is None:
        return None
    if not checked_spectrometer(station).simulated:
        raise ConfigError(
            station.source,
            ["--scenario: the station's spectrometer is not simulated; a scenario sets up the simulated bench only"],
        )
    try:
        path = find_bench_scenario(scenario)
    except ScenarioError as error:
        raise ConfigError(Path(scenario), [f"--scenario: {error}"]) from None
    return path


def prepare_calibration_check(
    station: Station,
    standard_path: str | os.PathLike,
    calibration_path: str | os.PathLike,
    scenario: str | os.PathLike | None = None,
) -> CalibrationCheckPlan:
    """Read and check everything a calibration check needs, before any instrument is touched.

    Raises :class:`ConfigError` (naming file and key) for a bad check-standard file,
    an unreadable calibration, a standard stating elements the calibration does not
    quantify, an integration time outside the station's range, or a bad scenario.
    """
    check = load_check_standard(standard_path)
    check_standard_against_station(check, station)
    calibration_path = Path(calibration_path)
    calibration = _load_calibration(calibration_path)
    check_standard_against_calibration(check, calibration.analytes, calibration_path)
    return CalibrationCheckPlan(station, check, calibration, calibration_path, _resolve_scenario(station, scenario))


def _mean_spectrum(measure: Callable[[], np.ndarray], n: int) -> np.ndarray:
    return np.mean([np.asarray(measure(), dtype=float) for _ in range(n)], axis=0)


def _simulator_truth(spectrometer) -> dict:
    truth = {}
    for item in spectrometer.query("SIM:TRUT:DRIF?").strip().split(","):
        key, _, value = item.partition("=")
        try:
            truth[key] = float(value)
        except ValueError:
            truth[key] = value
    return truth


def _axis_problem(calibration, wavelength_nm: np.ndarray) -> str:
    calibrated = np.asarray(calibration.wavelength_nm, dtype=float)
    if calibrated.shape == wavelength_nm.shape and np.allclose(calibrated, wavelength_nm, atol=AXIS_TOLERANCE_NM):
        return ""
    return (
        f"the calibration's wavelength axis ({calibrated.size} px, {calibrated[0]:.2f}-{calibrated[-1]:.2f} nm) "
        f"does not match the spectrometer's ({wavelength_nm.size} px, {wavelength_nm[0]:.2f}-"
        f"{wavelength_nm[-1]:.2f} nm, tolerance {AXIS_TOLERANCE_NM:g} nm): calibrate on this instrument"
    )


def verdict_reasons(
    analytes: tuple[AnalyteResult, ...], lack_of_fit: float, shift_nm: float, status: int = 0
) -> list[str]:
    """Why to recalibrate ([] when the calibration holds): a failed fit, |z| > Z_LIMIT on a stated element (or no
    estimate of it), lack of fit above LACK_OF_FIT_LIMIT (or none), |shift| beyond SHIFT_LIMIT_NM (or none)."""
    reasons = []
    if status != 0:
        reasons.append(
            f"the fit of the standard's spectrum did not succeed (status {status}: too few usable "
            f"pixels, an undetermined baseline or an unsettled active set)"
        )
    for a in analytes:
        if not a.stated:
            continue
        if not math.isfinite(a.z):
            reasons.append(
                f"{a.element}: no usable estimate (measured {a.measured_g_per_L:.4g} ± {a.sigma_g_per_L:.3g} g/L)"
            )
        elif abs(a.z) > Z_LIMIT:
            reasons.append(
                f"{a.element}: bias {a.bias_g_per_L:+.4g} g/L is {a.z:+.1f} times its combined "
                f"uncertainty {a.combined_sigma_g_per_L:.2g} g/L (limit ±{Z_LIMIT:g})"
            )
    if not math.isfinite(lack_of_fit):
        reasons.append("lack of fit: not computed (too few usable pixels)")
    elif lack_of_fit > LACK_OF_FIT_LIMIT:
        reasons.append(
            f"lack of fit {lack_of_fit:.3g} is above {LACK_OF_FIT_LIMIT:g}: the calibration cannot "
            f"represent the standard's spectrum (a changed acid matrix, an unknown absorber, a moved "
            f"axis)"
        )
    if not math.isfinite(shift_nm):
        reasons.append("wavelength shift: not estimated")
    elif abs(shift_nm) > SHIFT_LIMIT_NM:
        reasons.append(
            f"wavelength shift {shift_nm:+.3f} nm since calibration is beyond ±{SHIFT_LIMIT_NM:g} nm, "
            f"what the model's drift terms were validated for (a replugged fibre, the spectrometer's "
            f"temperature)"
        )
    return reasons


def _notes(check: CheckStandardFile, calibration, analytes: tuple[AnalyteResult, ...]) -> list[str]:
    notes = []
    quality = calibration.quality
    if quality is not None:
        for a in analytes:
            k = calibration.analytes.index(a.element)
            low, high = quality.calibrated_range_g_per_L[k]
            if a.stated and not low <= a.stated_g_per_L <= high:
                notes.append(
                    f"{a.element} {a.stated_g_per_L:g} g/L is outside the calibrated range "
                    f"{low:g}-{high:g} g/L: the check extrapolates"
                )
    for a in analytes:
        if not a.stated and a.sigma_g_per_L > 0 and a.measured_g_per_L > 3 * a.sigma_g_per_L:
            notes.append(
                f"{a.element} found ({a.measured_g_per_L:.4g} ± {a.sigma_g_per_L:.2g} g/L) although the "
                f"standard states none: not part of the verdict"
            )
    return notes


def run_calibration_check(
    plan: CalibrationCheckPlan,
    *,
    ask: Callable[[str], object] | None = None,
    progress: Callable[[str], None] = lambda _message: None,
) -> CalibrationCheck:
    """Measure the check standard as a calibration measures its standards and judge the calibration.

    Dark, blank reference, then the standard ``replicates`` times (each ``averages``
    scans); on the simulated bench the cell is loaded with ``SIM:STAN``, on a real
    bench the operator is asked (``ask``, default :func:`operator_prompt`). The mean
    spectrum is quantified with the blank as reference. Instrument problems raise
    (``InstrumentError``, ``OSError``, ``TimeoutError``, ``ValueError``).
    """
    station, check, calibration = plan.station, plan.check, plan.calibration
    standard = check.standard
    base: dict[str, Any] = dict(
        standard_name=standard.name,
        standard_path=check.source,
        calibration_path=plan.calibration_path,
        calibration_id=calibration.calibration_id,
    )
    simulated = checked_spectrometer(station).simulated
    truth = None
    with open_bench(station, scenario=plan.scenario, instruments=("spectrometer",)) as bench:
        spectrometer = bench.spectrometer
        if spectrometer is None:  # open_bench connects the station's spectrometer, checked above
            raise RuntimeError(f"station {station.source}: no spectrometer connected")
        axis_problem = _axis_problem(calibration, np.asarray(spectrometer.wavelengths_nm, dtype=float))
        if axis_problem:
            return CalibrationCheck(
                **base,
                reasons=(axis_problem,),
                measured=False,
                notes=("nothing measured: the calibration cannot be applied to this spectrometer",),
            )
        cell = bench.cell(ask or operator_prompt())
        spectrometer.integration_time_s = check.integration_time_s
        spectrometer.averages = check.averages
        saturation = float(spectrometer.full_scale_counts)
        progress(
            f"blank: dark and reference, {check.replicates} x {check.averages} averages at "
            f"{check.integration_time_s:g} s"
        )
        cell.load_blank()
        dark = _mean_spectrum(spectrometer.dark, check.replicates)
        reference = _mean_spectrum(spectrometer.acquire, check.replicates)
        saturated = int(np.count_nonzero(reference >= saturation))
        if saturated > reference.size // 10:
            raise ValueError(
                f"blank reference has {saturated} of {reference.size} pixels saturated at "
                f"{check.integration_time_s:g} s: lower integration_time_s in {check.source}"
            )
        progress(f"standard {standard.name}: {check.replicates} x {check.averages} averages")
        cell.load_standard(standard.name, standard.concentrations_g_per_L)
        counts = np.array([spectrometer.acquire() for _ in range(check.replicates)])
        if simulated:
            truth = _simulator_truth(bench.sim_control)
    spectra = np.vstack([counts.mean(axis=0), counts]).astype(np.float32)  # the mean first, then each replicate
    q = analysis.quantify_counts(
        spectra, dark.astype(np.float32), reference.astype(np.float32), calibration, saturation_counts=saturation
    )
    stated = dict(zip(standard.elements, standard.stated_g_per_L()))
    uncertainty = dict(zip(standard.elements, standard.standard_uncertainty_g_per_L()))
    order = [el for el in standard.elements] + [el for el in calibration.analytes if el not in stated]
    results = []
    for el in order:
        k = calibration.analytes.index(el)
        spread = float(np.std(q.concentration_g_per_L[1:, k], ddof=1)) if check.replicates > 1 else math.nan
        results.append(
            AnalyteResult(
                el,
                float(q.concentration_g_per_L[0, k]),
                float(q.sigma_g_per_L[0, k]),
                spread,
                float(stated[el]) if el in stated else None,
                float(uncertainty[el]) if el in uncertainty else None,
            )
        )
    results = tuple(results)
    lack_of_fit, shift = float(q.lack_of_fit[0]), float(q.wavelength_shift_nm[0])
    return CalibrationCheck(
        **base,
        analytes=results,
        lack_of_fit=lack_of_fit,
        wavelength_shift_nm=shift,
        reference_shift_nm=float(q.reference_shift_nm[0]),
        reasons=tuple(verdict_reasons(results, lack_of_fit, shift, int(q.status[0]))),
        notes=tuple(_notes(check, calibration, results)),
        simulator_truth=truth,
    )


def check_calibration(
    station: Station,
    standard_path: str | os.PathLike,
    calibration_path: str | os.PathLike,
    scenario: str | os.PathLike | None = None,
    **options,
) -> CalibrationCheck:
    """:func:`prepare_calibration_check` then :func:`run_calibration_check` (``options``: ``ask``, ``progress``)."""
    return run_calibration_check(
        prepare_calibration_check(station, standard_path, calibration_path, scenario), **options
    )
