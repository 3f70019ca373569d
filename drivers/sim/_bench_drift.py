"""Drifts of a real bench for the simulated spectrometer: the physics and the truth, no I/O.

Three drifts, each switched on and off on its own (all off by default, when the
simulator is the undisturbed instrument of decision 0028, bit for bit):

- **wavelength axis** (``wavelength``): a small CCD spectrometer's wavelength
  calibration moves with its temperature. The true wavelength of every pixel is
  the nominal one (the stored coefficients the instrument reports, which do not
  change) plus ``k_T (T_spectrometer - T_cal)`` plus the sum of the steps of
  each fibre replug. ``k_T`` = +0.05 nm/C by default: typical of small fibre
  spectrometers (Flame/USB2000 class, a few hundredths to a tenth of a nm per C;
  a model value, not one instrument's datasheet), so a lab day's 4 C moves the
  axis by 0.2 nm. A replug moves it by a step of 0.05-0.3 nm (either sign). The
  spectrometer's temperature follows the lab's with a first-order lag
  (time constant 1200 s by default).
- **band temperature** (``bands``): the solution's temperature changes every
  f-f band: FWHM +0.3 %/C, centre +0.02 nm/C (to the red), peak absorptivity
  divided by the width factor (the band's area, its oscillator strength, kept).
  Plausible model values of the right size (thermal population of the ground
  multiplet's Stark levels), not literature figures for these ions.
- **matrix** (``matrix``): the hypersensitive bands (Nd 575, Ho 451, Er 523 nm;
  ``Band.hypersensitive``) change intensity and shape with the ligands around
  the ion. The band table is the aquo ion (perchlorate, which does not bind);
  in nitrate or chloride a fraction ``f = b [L] / (1 + b [L])`` of the ion is
  complexed (``[L]`` the acid's anion, mol/L; ``b`` a binding constant), and
  those bands' peak absorptivity, FWHM and centre move by ``f`` times the
  complexed ion's change (:data:`MATRICES`; model values: nitrate, inner-sphere,
  +30 % peak, +8 % width, +0.15 nm at full complexation; chloride, mostly
  outer-sphere, +10 %, +3 %, +0.05 nm). At 1 mol/L the hypersensitive Nd band
  is 20 % stronger in nitrate than in perchlorate and 13 % weaker in chloride
  than in nitrate. The other bands do not change with the matrix.

The solution's temperature and matrix are properties of what is in the cell
(the flow cell takes the stream's temperature at once); the lab's temperature
and the spectrometer's belong to the bench. :class:`BenchDrift` holds the
bench's switches and settings and the lab's temperature history;
:meth:`BenchDrift.state_at` combines them with the cell's solution into a
:class:`DriftState`, the truth the ``SIM:TRUT:DRIF?`` query reports.

The analysis package never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from ._lanthanide_bands import BANDS, Band
from ._optics import MAX_WAVELENGTH_SHIFT_NM

__all__ = [
    "REFERENCE_TEMPERATURE_C",
    "K_T_NM_PER_C",
    "CALIBRATION_TEMPERATURE_C",
    "SPECTROMETER_LAG_S",
    "WIDTH_PER_C",
    "CENTRE_NM_PER_C",
    "REPLUG_STEP_RANGE_NM",
    "MAX_REPLUG_STEP_NM",
    "LAB_TEMPERATURE_RANGE_C",
    "SOLUTION_TEMPERATURE_RANGE_C",
    "ACID_RANGE_MOL_PER_L",
    "K_T_RANGE_NM_PER_C",
    "LAG_RANGE_S",
    "Matrix",
    "MATRICES",
    "matrix_name",
    "Solution",
    "BandChange",
    "band_change",
    "changed_bands",
    "LabProfile",
    "SolutionProfile",
    "DriftSettings",
    "LabHistory",
    "BenchDrift",
    "DriftState",
]

#: Solution temperature of the band table (C): the literature spectra are at room temperature.
REFERENCE_TEMPERATURE_C = 20.0
#: Axis drift per C of spectrometer temperature (nm/C), typical of small fibre spectrometers.
K_T_NM_PER_C = 0.05
#: Spectrometer temperature at which the stored wavelength coefficients are right (C).
CALIBRATION_TEMPERATURE_C = 20.0
#: Thermal time constant of the spectrometer following the lab (s).
SPECTROMETER_LAG_S = 1200.0
#: Relative FWHM change of every band per C of solution temperature.
WIDTH_PER_C = 0.003
#: Centre shift of every band per C of solution temperature (nm/C, positive = to the red).
CENTRE_NM_PER_C = 0.02
#: Size of a random fibre-replug step (nm); its sign is random too.
REPLUG_STEP_RANGE_NM = (0.05, 0.3)
#: Largest replug step that may be given (nm).
MAX_REPLUG_STEP_NM = 2.0
#: Accepted temperatures (C): the lab (and the spectrometer's calibration temperature), the solution.
LAB_TEMPERATURE_RANGE_C = (0.0, 50.0)
SOLUTION_TEMPERATURE_RANGE_C = (0.0, 95.0)
#: Accepted acid (anion) concentration of the matrix (mol/L).
ACID_RANGE_MOL_PER_L = (0.0, 15.0)
#: Accepted axis drift coefficients (nm/C) and spectrometer time constants (s).
K_T_RANGE_NM_PER_C = (-0.5, 0.5)
LAG_RANGE_S = (0.0, 86400.0)

# The lag as an average over the lab's past: the exponential kernel's quantiles at equal weights, so a
# step of the lab temperature is followed within 1/_LAG_NODES of its size at any moment.
_LAG_NODES = 256
_LAG_QUANTILES = -np.log1p(-(np.arange(_LAG_NODES) + 0.5) / _LAG_NODES)
_MAX_SEGMENTS = 64


# --- the solution: matrix and temperature --------------------------------------------------------------
@dataclass(frozen=True)
class Matrix:
    """An acid matrix: how much its anion binds Ln(III) and what the complexed ion's hypersensitive bands do."""

    name: str
    binding_L_per_mol: float
    amplitude_complexed: float  # peak absorptivity factor of the hypersensitive bands, fully complexed
    width_complexed: float  # FWHM factor, fully complexed
    shift_complexed_nm: float  # centre shift, fully complexed

    def complexed_fraction(self, acid_mol_per_L: float) -> float:
        bound = self.binding_L_per_mol * acid_mol_per_L
        return bound / (1.0 + bound)


#: The matrices the simulator knows (model values; perchlorate is the band table itself).
MATRICES: dict[str, Matrix] = {
    "perchlorate": Matrix("perchlorate", 0.0, 1.0, 1.0, 0.0),
    "chloride": Matrix("chloride", 0.8, 1.10, 1.03, 0.05),
    "nitrate": Matrix("nitrate", 2.0, 1.30, 1.08, 0.15),
}
_MATRIX_NAMES = {
    "PERC": "perchlorate",
    "PERCHLORATE": "perchlorate",
    "CHL": "chloride",
    "CHLORIDE": "chloride",
    "NITR": "nitrate",
    "NITRATE": "nitrate",
}


def matrix_name(text: object) -> str | None:
    """The matrix a name means (``nitrate``, ``NITR``, ... any case), ``None`` if it means none."""
    return _MATRIX_NAMES.get(text.strip().upper()) if isinstance(text, str) else None


@dataclass(frozen=True)
class Solution:
    """What the solution in the cell is besides its concentrations: temperature, matrix, acid."""

    temperature_C: float = REFERENCE_TEMPERATURE_C
    matrix: str = "perchlorate"
    acid_mol_per_L: float = 1.0


@dataclass(frozen=True)
class BandChange:
    """How the bands differ from the table: every band (temperature), the hypersensitive ones (matrix)."""

    width_factor: float = 1.0
    centre_shift_nm: float = 0.0
    amplitude_factor: float = 1.0
    hyper_amplitude_factor: float = 1.0
    hyper_width_factor: float = 1.0
    hyper_centre_shift_nm: float = 0.0

    @property
    def neutral(self) -> bool:
        return self == BandChange()


def band_change(solution: Solution, *, temperature: bool, matrix: bool) -> BandChange:
    """The band changes ``solution`` causes with the band-temperature and matrix drifts on or off."""
    change = BandChange()
    if temperature:
        delta_C = solution.temperature_C - REFERENCE_TEMPERATURE_C
        width = 1.0 + WIDTH_PER_C * delta_C
        change = replace(
            change, width_factor=width, centre_shift_nm=CENTRE_NM_PER_C * delta_C, amplitude_factor=1.0 / width
        )
    if matrix:
        m = MATRICES[solution.matrix]
        f = m.complexed_fraction(solution.acid_mol_per_L)
        change = replace(
            change,
            hyper_amplitude_factor=1.0 + (m.amplitude_complexed - 1.0) * f,
            hyper_width_factor=1.0 + (m.width_complexed - 1.0) * f,
            hyper_centre_shift_nm=m.shift_complexed_nm * f,
        )
    return change


def changed_bands(change: BandChange, bands: tuple[Band, ...] = BANDS) -> tuple[Band, ...]:
    """The band table with ``change`` applied (the same objects if it is neutral)."""
    if change.neutral:
        return bands
    out = []
    for band in bands:
        width, centre, amplitude = change.width_factor, change.centre_shift_nm, change.amplitude_factor
        if band.hypersensitive:
            width *= change.hyper_width_factor
            centre += change.hyper_centre_shift_nm
            amplitude *= change.hyper_amplitude_factor
        out.append(
            replace(
                band,
                center_nm=band.center_nm + centre,
                fwhm_nm=band.fwhm_nm * width,
                epsilon_L_per_mol_cm=band.epsilon_L_per_mol_cm * amplitude,
            )
        )
    return tuple(out)


# --- profiles over scenario time (read from scenario files by drivers.sim.scenario) ----------------------
def _interp(times: tuple[float, ...], values: tuple[float, ...], t: np.ndarray) -> np.ndarray:
    if len(values) == 1:
        return np.full(np.shape(t), values[0], dtype=float)
    return np.interp(t, times, values)


@dataclass(frozen=True)
class LabProfile:
    """Lab temperature over scenario time: constant or piecewise-linear (holding its end values), plus an
    optional cosine cycle (a lab day) whose maximum is at ``cycle_peak_s``."""

    time_s: tuple[float, ...] = (0.0,)
    temperature_C: tuple[float, ...] = (REFERENCE_TEMPERATURE_C,)
    cycle_amplitude_C: float = 0.0
    cycle_period_s: float = 86400.0
    cycle_peak_s: float = 50400.0

    def at(self, time_s) -> np.ndarray:
        t = np.asarray(time_s, dtype=float)
        value = _interp(self.time_s, self.temperature_C, t)
        if self.cycle_amplitude_C:
            value = value + self.cycle_amplitude_C * np.cos(2.0 * np.pi * (t - self.cycle_peak_s) / self.cycle_period_s)
        return value


@dataclass(frozen=True)
class SolutionProfile:
    """The process stream's temperature, matrix and acid over scenario time.

    Temperature and acid are piecewise-linear over ``time_s`` (one value: constant),
    or the lab's temperature (``follows_lab``); the matrix changes in steps, each
    name holding from its time to the next. ``None``: what the bench holds.
    """

    time_s: tuple[float, ...] = (0.0,)
    temperature_C: tuple[float, ...] | None = None
    follows_lab: bool = False
    matrix: tuple[str, ...] | None = None
    acid_mol_per_L: tuple[float, ...] | None = None

    def at(self, time_s: float, lab_temperature_C: float, held: Solution) -> Solution:
        t = np.asarray(float(time_s))
        if self.follows_lab:
            temperature = float(lab_temperature_C)
        elif self.temperature_C is not None:
            temperature = float(_interp(self.time_s, self.temperature_C, t))
        else:
            temperature = held.temperature_C
        if self.matrix is None:
            matrix = held.matrix
        elif len(self.matrix) == 1:
            matrix = self.matrix[0]
        else:
            matrix = self.matrix[max(0, int(np.searchsorted(self.time_s, float(time_s), side="right")) - 1)]
        acid = (
            held.acid_mol_per_L if self.acid_mol_per_L is None else float(_interp(self.time_s, self.acid_mol_per_L, t))
        )
        return Solution(temperature, matrix, acid)


@dataclass(frozen=True)
class DriftSettings:
    """A scenario's ``[drift]`` section: settings applied when it starts (``None`` = leave as is) and its
    fibre replugs (scenario time s, step nm)."""

    wavelength: bool | None = None
    bands: bool | None = None
    matrix: bool | None = None
    k_T_nm_per_C: float | None = None
    calibration_temperature_C: float | None = None
    spectrometer_lag_s: float | None = None
    replug_s: tuple[float, ...] = ()
    replug_step_nm: tuple[float, ...] = ()

    def replug_offset_nm(self, time_s: float, cycles: int = 0) -> float:
        """Sum of the steps of the replugs up to scenario time ``time_s`` (after ``cycles`` whole repeats)."""
        passed = sum(step for at, step in zip(self.replug_s, self.replug_step_nm) if at <= time_s)
        return cycles * sum(self.replug_step_nm) + passed


# --- the bench: lab temperature history, spectrometer, switches ------------------------------------------
Source = Callable[[np.ndarray], np.ndarray]


class LabHistory:
    """The lab's temperature over simulated time: segments, each a function of simulated time from its start.

    Before the first segment the first one's value holds. A new segment truncates any
    that start later (a scenario started "as if" some time ago rewrites that past).
    """

    def __init__(self, temperature_C: float = REFERENCE_TEMPERATURE_C):
        self._starts: list[float] = [-math.inf]
        self._sources: list[Source] = [self._constant(temperature_C)]

    @staticmethod
    def _constant(value: float) -> Source:
        return lambda t: np.full(np.shape(t), float(value))

    def hold(self, start_s: float, temperature_C: float) -> None:
        """From ``start_s`` on, the lab is at ``temperature_C``."""
        self.follow(start_s, self._constant(temperature_C))

    def follow(self, start_s: float, source: Source) -> None:
        """From ``start_s`` on, the lab's temperature is ``source(simulated time)``."""
        keep = int(np.searchsorted(self._starts, start_s, side="left"))
        del self._starts[keep:], self._sources[keep:]
        self._starts.append(float(start_s))
        self._sources.append(source)
        if len(self._starts) > _MAX_SEGMENTS:
            del self._starts[0], self._sources[0]

    def at(self, time_s) -> np.ndarray:
        t = np.atleast_1d(np.asarray(time_s, dtype=float))
        index = np.clip(np.searchsorted(self._starts, t, side="right") - 1, 0, None)
        out = np.empty_like(t)
        for i in np.unique(index):
            where = index == i
            out[where] = self._sources[i](t[where])
        return out

    def followed_at(self, time_s: float, lag_s: float) -> float:
        """Temperature of something that follows the lab with a first-order lag of time constant ``lag_s``."""
        if lag_s <= 0.0:
            return float(self.at(time_s)[0])
        return float(np.mean(self.at(time_s - lag_s * _LAG_QUANTILES)))


@dataclass(frozen=True)
class DriftState:
    """Everything the bench drifts do at one moment: the truth of ``SIM:TRUT:DRIF?``.

    ``axis_shift_nm``: true minus reported wavelength of every pixel (what the
    optics apply; 0 with the wavelength drift off). ``apparent_shift_nm``: how far
    every band appears to have moved on the reported axis (to the red, nm):
    the bands' own temperature shift minus the axis shift (the hypersensitive
    bands move by ``hyper_centre_shift_nm`` more).
    """

    time_s: float
    wavelength: bool
    bands: bool
    matrix: bool
    lab_C: float
    spectrometer_C: float
    calibration_temperature_C: float
    k_T_nm_per_C: float
    thermal_shift_nm: float
    fibre_shift_nm: float
    axis_shift_nm: float
    axis_clipped: bool
    solution: Solution
    change: BandChange

    @property
    def apparent_shift_nm(self) -> float:
        return self.change.centre_shift_nm - self.axis_shift_nm

    @property
    def disturbed(self) -> bool:
        return self.axis_shift_nm != 0.0 or not self.change.neutral

    def optics_arguments(self) -> dict:
        """Keyword arguments of ``Optics.signal_rate``: none when nothing is disturbed."""
        if not self.disturbed:
            return {}
        return {"wavelength_shift_nm": self.axis_shift_nm, "bands": changed_bands(self.change)}

    def format(self) -> str:
        """``KEY=value,...`` for ``SIM:TRUT:DRIF?`` (keys in docs/instruments/spectrometer.md)."""
        c, s = self.change, self.solution
        items = [
            ("AXIS_NM", self.axis_shift_nm),
            ("APPARENT_NM", self.apparent_shift_nm),
            ("THERMAL_NM", self.thermal_shift_nm),
            ("FIBRE_NM", self.fibre_shift_nm),
            ("CLIPPED", int(self.axis_clipped)),
            ("LAB_C", self.lab_C),
            ("SPEC_C", self.spectrometer_C),
            ("TCAL_C", self.calibration_temperature_C),
            ("KT_NM_PER_C", self.k_T_nm_per_C),
            ("SOL_C", s.temperature_C),
            ("MATRIX", s.matrix.upper()),
            ("ACID_MOL_PER_L", s.acid_mol_per_L),
            ("WIDTH_FACTOR", c.width_factor),
            ("CENTRE_NM", c.centre_shift_nm),
            ("AMPLITUDE_FACTOR", c.amplitude_factor),
            ("HYPER_AMPLITUDE_FACTOR", c.hyper_amplitude_factor),
            ("HYPER_WIDTH_FACTOR", c.hyper_width_factor),
            ("HYPER_CENTRE_NM", c.hyper_centre_shift_nm),
            ("WAV", int(self.wavelength)),
            ("BAND", int(self.bands)),
            ("MATR", int(self.matrix)),
        ]
        return ",".join(f"{k}={v:.9g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)


class BenchDrift:
    """The bench's drift switches and settings, the lab's temperature and the fibre's replug steps."""

    def __init__(self, rng: np.random.Generator | None = None):
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.wavelength = False
        self.bands = False
        self.matrix = False
        self.k_T_nm_per_C = K_T_NM_PER_C
        self.calibration_temperature_C = CALIBRATION_TEMPERATURE_C
        self.lag_s = SPECTROMETER_LAG_S
        self.lab = LabHistory()
        #: Sum of the steps of every replug so far (SIM:FIBR:REPL and finished scenario runs), nm.
        self.fibre_offset_nm = 0.0

    @property
    def any_on(self) -> bool:
        return self.wavelength or self.bands or self.matrix

    def set_all(self, on: bool) -> None:
        self.wavelength = self.bands = self.matrix = bool(on)

    def apply(self, settings: DriftSettings) -> None:
        """A scenario's ``[drift]`` settings (those it gives)."""
        for name, value in (
            ("wavelength", settings.wavelength),
            ("bands", settings.bands),
            ("matrix", settings.matrix),
            ("k_T_nm_per_C", settings.k_T_nm_per_C),
            ("calibration_temperature_C", settings.calibration_temperature_C),
            ("lag_s", settings.spectrometer_lag_s),
        ):
            if value is not None:
                setattr(self, name, value)

    def replug(self, step_nm: float | None = None) -> float:
        """Replug the fibre: the axis steps by ``step_nm`` (random 0.05-0.3 nm, either sign, if None)."""
        if step_nm is None:
            low, high = REPLUG_STEP_RANGE_NM
            step_nm = float(self.rng.uniform(low, high)) * (1.0 if self.rng.random() < 0.5 else -1.0)
        if not (math.isfinite(step_nm) and abs(step_nm) <= MAX_REPLUG_STEP_NM):
            raise ValueError(f"a replug step must be finite and within +-{MAX_REPLUG_STEP_NM:g} nm, got {step_nm!r}")
        self.fibre_offset_nm += step_nm
        return step_nm

    def lab_temperature_at(self, time_s: float) -> float:
        return float(self.lab.at(time_s)[0])

    def spectrometer_temperature_at(self, time_s: float) -> float:
        return self.lab.followed_at(time_s, self.lag_s)

    def state_at(self, time_s: float, solution: Solution, scenario_fibre_nm: float = 0.0) -> DriftState:
        """The drifts at simulated time ``time_s`` with ``solution`` in the cell."""
        spectrometer_C = self.spectrometer_temperature_at(time_s)
        thermal = self.k_T_nm_per_C * (spectrometer_C - self.calibration_temperature_C)
        fibre = self.fibre_offset_nm + scenario_fibre_nm
        axis = thermal + fibre if self.wavelength else 0.0
        clipped = abs(axis) > MAX_WAVELENGTH_SHIFT_NM
        if clipped:
            axis = math.copysign(MAX_WAVELENGTH_SHIFT_NM, axis)
        return DriftState(
            time_s=float(time_s),
            wavelength=self.wavelength,
            bands=self.bands,
            matrix=self.matrix,
            lab_C=self.lab_temperature_at(time_s),
            spectrometer_C=spectrometer_C,
            calibration_temperature_C=self.calibration_temperature_C,
            k_T_nm_per_C=self.k_T_nm_per_C,
            thermal_shift_nm=thermal,
            fibre_shift_nm=fibre,
            axis_shift_nm=float(axis),
            axis_clipped=clipped,
            solution=solution,
            change=band_change(solution, temperature=self.bands, matrix=self.matrix),
        )
