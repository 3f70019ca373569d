"""Scenario files: what is in the simulated flow cell, as concentrations over simulated time.

A scenario is a TOML file with three optional, additive parts (all in g/L of
element)::

    name = "Pr/Nd elution"
    description = "..."
    duration_s = 14400          # optional; informational (values hold after the last point)
    repeat = false              # true: scenario time wraps at duration_s

    [base]                      # constant background
    La = 0.01

    [[peak]]                    # an elution peak: bi-Gaussian (sigma before, tail_sigma after the centre)
    element = "Pr"
    center_s = 5400
    sigma_s = 700
    tail_sigma_s = 1000         # optional, defaults to sigma_s
    height_g_per_L = 5.0

    [table]                     # piecewise-linear table; holds the first/last value outside
    time_s = [0, 3600, 7200]
    Nd = [10.0, 12.0, 12.5]

The concentration of an element at time t is base + sum of its peaks + its
table value. A bare scenario name (``pr-nd-elution``) is looked up in
``seeds/scenarios``.

Three more optional sections describe the bench around the cell (its drifts,
:mod:`drivers.sim._bench_drift`; docs/instruments/spectrometer.md)::

    [lab]                       # the room's temperature over scenario time
    time_s = [0, 86400]         # needed when a value below is a list
    temperature_C = [20.0, 24.0]    # a number (constant) or one value per time_s (piecewise-linear)
    cycle_amplitude_C = 1.5     # optional cosine cycle on top: amplitude,
    cycle_period_s = 86400      #   period (default a day)
    cycle_peak_s = 50400        #   and the time of its maximum (default 14:00)

    [solution]                  # the process stream in the cell besides its concentrations
    time_s = [0, 43200]
    temperature_C = "lab"       # a number, one per time_s, or "lab" (the stream is at room temperature)
    matrix = ["nitrate", "chloride"]   # a name or one per time_s (a step: each holds until the next)
    acid_mol_per_L = 1.0        # the acid's anion, a number or one per time_s

    [drift]                     # applied when the scenario starts; a key left out leaves that setting
    wavelength = true           # axis drift with the spectrometer's temperature and fibre replugs
    bands = true                # band widths and centres with the solution's temperature
    matrix = true               # hypersensitive bands with the matrix
    k_T_nm_per_C = 0.05
    calibration_temperature_C = 20.0
    spectrometer_lag_s = 1200
    replug_s = [30000]          # fibre replugs at these scenario times,
    replug_step_nm = [0.12]     #   each stepping the axis by this much

One more optional section gives the process quantities that sensors beside the
cell read (a simulated pH, conductivity, flow or mass sensor reports them;
:meth:`Scenario.process_at`)::

    [process]                   # piecewise-linear, holding the first/last value outside time_s
    time_s = [0, 7200, 7260]    # needed when a value below is a list
    pH = [1.5, 1.5, 1.8]        # a quantity name (letters, digits, _) = a number or one per time_s
    flow_L_per_h = 12.0

One more optional section puts the flow cell at a sampling point of a Pr/Nd
counter-current solvent-extraction cascade (:mod:`drivers.sim._cascade`: P507
in kerosene against a chloride feed, Nd loads the organic, the strip liquor is
Nd-rich and the raffinate Pr-rich; docs/instruments/spectrometer.md)::

    [cascade]                   # needs [process] pH: the feed's pH, the one a pH sensor reads
    reference_pH = 1.5          # the pH at which the distribution ratios below hold (-2 to 14)
    stages = 8                  # ideal counter-current extraction stages (1-100)
    organic_to_aqueous_flow = 1.0   # theta, organic over aqueous flow in the extraction section
    strip_to_feed_flow = 0.5    # the strip liquor's flow over the feed's
    residence_time_s = 1200     # first-order lag of the points after a pH change (0: at once)

    [cascade.feed_g_per_L]      # the feed, g/L of element (default Pr 6, Nd 18)
    Pr = 6.0
    Nd = 18.0

    [cascade.reference_distribution_ratio]  # D at reference_pH (default Pr 0.80, Nd 1.20)
    Pr = 0.80
    Nd = 1.20

Keys left out take these defaults (those of ``CascadeChemistry``); the feed and
the distribution ratios name the same elements. Each ion exchanges three
protons, so ``D = D_ref 10**(3 (pH - reference_pH))`` and ``beta = D_Nd / D_Pr``
does not depend on pH. With a ``[cascade]``,
``concentrations_at(t, sampling_point)`` (``"feed"``, ``"raffinate"``,
``"strip"``) is the cascade's concentrations at that point, lagging behind the
pH history that :meth:`Scenario.process_at` gives (``[process] pH``, the same
numbers a simulated pH sensor reports), plus ``[base]``, ``[[peak]]`` and
``[table]``; the cascade starts settled at the pH of scenario time 0 and, with
``repeat = true``, starts so again each cycle. The lag is integrated from t = 0
on a fixed grid (``CascadeHistory``), so the value at a time is a function of
that time alone: simulators of the same scenario in separate processes agree
exactly. Without a sampling point ``concentrations_at`` ignores the cascade. The
truth to compare with: :meth:`Scenario.cascade_truth_at` (pH, distribution
ratios, beta, every point's concentrations), :meth:`Scenario.distribution_ratios_at`,
:meth:`Scenario.separation_factor_at` (``(Nd/Pr in strip) / (Nd/Pr in raffinate)``).

A solution key left out keeps what the bench holds (``SIM:SOL:...``). Every
value is checked: true/false where a switch is meant (a boolean is never a
number), finite numbers within the ranges of :mod:`drivers.sim._bench_drift`,
known matrix names, lists one per ``time_s``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, overload

import numpy as np

from .._text_file import UnreadableFileError, is_regular_file, read_small_toml_file, shorten
from ._bench_drift import (
    ACID_RANGE_MOL_PER_L,
    K_T_RANGE_NM_PER_C,
    LAB_TEMPERATURE_RANGE_C,
    LAG_RANGE_S,
    MATRICES,
    MAX_REPLUG_STEP_NM,
    SOLUTION_TEMPERATURE_RANGE_C,
    DriftSettings,
    LabProfile,
    Solution,
    SolutionProfile,
    matrix_name,
)
from ._cascade import SAMPLING_POINTS, CascadeChemistry, CascadeHistory
from ._lanthanide_bands import KNOWN_ELEMENTS

_T = TypeVar("_T")

__all__ = [
    "CascadeTruth",
    "SAMPLING_POINTS",
    "Scenario",
    "ScenarioError",
    "Peak",
    "load_scenario",
    "scenarios_dir",
    "find_scenario",
    "parse_concentrations",
    "format_concentrations",
]


class ScenarioError(ValueError):
    """A scenario file (or a concentration list) that cannot be read; the message names the file and key."""


#: Largest concentration a scenario may put in the cell, g/L of element (far above any real solution).
MAX_CONCENTRATION_G_PER_L = 1000.0
#: Largest scenario time or width, s (about 30 years).
MAX_SCENARIO_TIME_S = 1e9
#: The pH a cascade's feed and reference may have (``[cascade]``, ``[process] pH``).
CASCADE_PH_RANGE = (-2.0, 14.0)
#: Most ideal stages a ``[cascade]`` may have.
MAX_CASCADE_STAGES = 100
#: Largest distribution ratio at the reference pH, and largest flow ratio, of a ``[cascade]``.
MAX_CASCADE_RATIO = 1e6


def scenarios_dir() -> Path:
    """The folder of bundled scenarios (``seeds/scenarios`` of the source checkout)."""
    return Path(__file__).resolve().parents[2] / "seeds" / "scenarios"


@dataclass(frozen=True)
class Peak:
    """One bi-Gaussian elution peak of one element."""

    element: str
    center_s: float
    sigma_s: float
    tail_sigma_s: float
    height_g_per_L: float

    def at(self, time_s: float) -> float:
        """Concentration (g/L) this peak contributes at ``time_s``."""
        sigma = self.sigma_s if time_s <= self.center_s else self.tail_sigma_s
        return self.height_g_per_L * math.exp(-0.5 * ((time_s - self.center_s) / sigma) ** 2)


@dataclass(frozen=True)
class CascadeTruth:
    """What the cascade of a scenario is at one scenario time: the numbers a test or the app compares with."""

    time_s: float
    #: The feed's pH (``[process] pH``, as :meth:`Scenario.process_at` gives it).
    pH: float
    #: D of each element at that pH.
    distribution_ratio: dict[str, float]
    #: What is in the cell at each sampling point (cascade plus base, peaks, table), g/L of element.
    concentrations: dict[str, dict[str, float]]

    def beta(self, a: str = "Nd", b: str = "Pr") -> float:
        """The separation factor ``D_a / D_b`` (the same at every pH)."""
        return self.distribution_ratio[a] / self.distribution_ratio[b]

    def separation_factor(
        self, enriched: str = "strip", depleted: str = "raffinate", a: str = "Nd", b: str = "Pr"
    ) -> float:
        """``(a/b at enriched) / (a/b at depleted)``; inf where the depleted point holds no ``a``."""
        high, low = self.concentrations[_point(enriched)], self.concentrations[_point(depleted)]
        numerator, denominator = high.get(a, 0.0) * low.get(b, 0.0), high.get(b, 0.0) * low.get(a, 0.0)
        if denominator == 0.0:
            return math.inf if numerator > 0.0 else math.nan
        return numerator / denominator


def _point(name: str) -> str:
    if name not in SAMPLING_POINTS:
        raise ScenarioError(f"unknown sampling point {shorten(repr(name))} (known: {', '.join(SAMPLING_POINTS)})")
    return name


@dataclass(frozen=True)
class Scenario:
    """Concentrations in the cell as a function of scenario time (s since the scenario started)."""

    name: str
    description: str = ""
    duration_s: float | None = None
    repeat: bool = False
    base: dict[str, float] = field(default_factory=dict)
    peaks: tuple[Peak, ...] = ()
    table_time_s: tuple[float, ...] = ()
    table: dict[str, tuple[float, ...]] = field(default_factory=dict)
    lab: LabProfile | None = None
    solution: SolutionProfile | None = None
    drift: DriftSettings | None = None
    process_time_s: tuple[float, ...] = (0.0,)
    process: dict[str, tuple[float, ...]] = field(default_factory=dict)
    cascade: CascadeChemistry | None = None
    _history: CascadeHistory | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cascade is not None:
            if "pH" not in self.process:
                raise ScenarioError(f"scenario {self.name!r}: a cascade needs the [process] quantity pH")
            history = CascadeHistory(self.cascade, lambda t: self.process_at("pH", t), self.process_time_s)
            object.__setattr__(self, "_history", history)

    @overload
    def scenario_time(self, time_s: float) -> float: ...
    @overload
    def scenario_time(self, time_s: np.ndarray) -> np.ndarray: ...
    def scenario_time(self, time_s):
        """Scenario time as its profiles see it: wrapped at ``duration_s`` when ``repeat``."""
        if self.repeat and self.duration_s:
            return np.mod(time_s, self.duration_s) if isinstance(time_s, np.ndarray) else time_s % self.duration_s
        return time_s

    def lab_temperature_at(self, time_s) -> np.ndarray:
        """Lab temperature (C) at scenario time(s) ``time_s``; needs a ``[lab]`` section."""
        if self.lab is None:
            raise ValueError(f"scenario {self.name!r} has no [lab] section")
        return self.lab.at(self.scenario_time(np.asarray(time_s, dtype=float)))

    def solution_at(self, time_s: float, lab_temperature_C: float, held: Solution) -> Solution:
        """The stream's temperature, matrix and acid at scenario time ``time_s`` (``held`` where not given)."""
        if self.solution is None:
            return held
        return self.solution.at(self.scenario_time(time_s), lab_temperature_C, held)

    def replug_offset_nm(self, time_s: float) -> float:
        """Sum of the scenario's fibre-replug steps up to scenario time ``time_s`` (repeats included)."""
        if self.drift is None or not self.drift.replug_s or time_s < 0:
            return 0.0
        cycles = int(time_s // self.duration_s) if self.repeat and self.duration_s else 0
        return self.drift.replug_offset_nm(self.scenario_time(time_s), cycles)

    def process_at(self, quantity: str, time_s: float) -> float:
        """The value of a ``[process]`` quantity (e.g. ``"pH"``) at scenario time ``time_s``."""
        if quantity not in self.process:
            known = ", ".join(self.process) or "none"
            raise ScenarioError(f"scenario {self.name!r} has no process quantity {quantity!r} (it has: {known})")
        values = self.process[quantity]
        if len(values) == 1:
            return values[0]
        return float(np.interp(self.scenario_time(time_s), self.process_time_s, values))

    @property
    def elements(self) -> tuple[str, ...]:
        """Every element the scenario ever puts in the cell, in periodic-table order."""
        present = set(self.base) | {p.element for p in self.peaks} | set(self.table)
        return tuple(el for el in KNOWN_ELEMENTS if el in present)

    def concentrations_at(self, time_s: float, sampling_point: str | None = None) -> dict[str, float]:
        """Element concentrations (g/L) at scenario time ``time_s``; never negative.

        ``sampling_point`` (``"feed"``, ``"raffinate"``, ``"strip"``): with a ``[cascade]``, that
        point's concentrations are added (none without one); ``None``: the cascade is left out.
        """
        if self.repeat and self.duration_s:
            time_s = time_s % self.duration_s
        result = {el: 0.0 for el in self.elements}
        if sampling_point is not None:
            point = _point(sampling_point)
            if self._history is not None:
                for el, value in self._history.at(time_s)[point].items():
                    result[el] = result.get(el, 0.0) + value
                result = {el: result[el] for el in KNOWN_ELEMENTS if el in result}
        for el, value in self.base.items():
            result[el] += value
        for peak in self.peaks:
            result[peak.element] += peak.at(time_s)
        if self.table_time_s:
            for el, values in self.table.items():
                result[el] += float(np.interp(time_s, self.table_time_s, values))
        return {el: max(value, 0.0) for el, value in result.items()}

    # --- the cascade's truth ---------------------------------------------------------------------
    def _need_cascade(self) -> CascadeChemistry:
        if self.cascade is None:
            raise ScenarioError(f"scenario {self.name!r} has no [cascade] section")
        return self.cascade

    def distribution_ratios_at(self, time_s: float) -> dict[str, float]:
        """D of each element of the cascade at the feed's pH at scenario time ``time_s``."""
        cascade = self._need_cascade()
        pH = self.process_at("pH", time_s)
        return {el: cascade.distribution_ratio(el, pH) for el in cascade.feed_g_per_L}

    def cascade_truth_at(self, time_s: float) -> CascadeTruth:
        """pH, distribution ratios and every sampling point's concentrations at scenario time ``time_s``."""
        cascade = self._need_cascade()
        pH = self.process_at("pH", time_s)
        return CascadeTruth(
            time_s=float(time_s),
            pH=pH,
            distribution_ratio={el: cascade.distribution_ratio(el, pH) for el in cascade.feed_g_per_L},
            concentrations={point: self.concentrations_at(time_s, point) for point in SAMPLING_POINTS},
        )

    def separation_factor_at(
        self, time_s: float, enriched: str = "strip", depleted: str = "raffinate", a: str = "Nd", b: str = "Pr"
    ) -> float:
        """``(a/b at enriched) / (a/b at depleted)`` at scenario time ``time_s`` (default: Nd/Pr, strip/raffinate).

        What a separation factor drawn from two sampling points' concentrations should show; the
        one-stage ``beta`` is :meth:`CascadeTruth.beta`.
        """
        return self.cascade_truth_at(time_s).separation_factor(enriched, depleted, a, b)


def find_scenario(name_or_path: str | os.PathLike) -> Path:
    """Resolve a scenario given as a path or as a bare name in ``seeds/scenarios``."""
    text = os.fspath(name_or_path)
    candidate = Path(name_or_path)
    bundled = scenarios_dir() / f"{candidate.name.removesuffix('.toml')}.toml"
    try:
        if text and is_regular_file(candidate):
            return candidate
        if is_regular_file(bundled):
            return bundled
    except UnreadableFileError as error:
        raise ScenarioError(f"scenario {shorten(text)!r}: {error.problem}") from None
    known = sorted(p.stem for p in scenarios_dir().glob("*.toml"))
    raise ScenarioError(
        f"scenario {shorten(text)!r} not found (looked for {shorten(str(candidate))} and "
        f"{shorten(str(bundled))}); bundled scenarios: {', '.join(known) or 'none'}"
    )


def _element(symbol: object, where: str) -> str:
    if symbol not in KNOWN_ELEMENTS:
        raise ScenarioError(f"{where}: unknown element {symbol!r} (known: {', '.join(KNOWN_ELEMENTS)})")
    return str(symbol)


def _finite(value: object, where: str) -> float:
    """``value`` as a float if it is a finite int or float (never a boolean); a ScenarioError otherwise."""
    number = None
    if not isinstance(value, bool) and isinstance(value, (int, float)):
        try:
            number = float(value)
        except OverflowError:  # an integer beyond any float
            number = None
    if number is None or not math.isfinite(number):
        raise ScenarioError(f"{where}: expected a finite number, got {shorten(repr(value))}")
    return number


def _number(
    value: object,
    where: str,
    *,
    minimum: float | None = None,
    positive: bool = False,
    maximum: float = MAX_SCENARIO_TIME_S,
) -> float:
    """``value`` as a float if it is a finite number in range (not a boolean); a ScenarioError otherwise."""
    value = _finite(value, where)
    if abs(value) > maximum:
        raise ScenarioError(f"{where}: must be at most {maximum:g} in magnitude, got {value!r}")
    if positive and value <= 0:
        raise ScenarioError(f"{where}: must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{where}: must be >= {minimum:g}, got {value!r}")
    return float(value)


def _in_range(value: object, where: str, bounds: tuple[float, float], unit: str) -> float:
    number = _finite(value, where)
    low, high = bounds
    if not low <= number <= high:
        raise ScenarioError(f"{where}: must be within {low:g} to {high:g} {unit}, got {value!r}")
    return number


def _switch(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{where}: must be true or false, not {shorten(repr(value))}")
    return value


def _times(value: object, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise ScenarioError(f"{where}: needs a non-empty list of times (s)")
    times = tuple(_number(t, where) for t in value)
    if any(b <= a for a, b in zip(times, times[1:])):
        raise ScenarioError(f"{where}: must increase strictly")
    return times


def _series(value: object, where: str, times: tuple[float, ...] | None, read) -> tuple:
    """A value or one per ``time_s`` (``times``), each read with ``read(value, where)``."""
    if isinstance(value, list):
        if times is None:
            raise ScenarioError(f"{where}: a list needs time_s in the same section")
        if len(value) != len(times):
            raise ScenarioError(f"{where}: needs {len(times)} values, one per time_s")
        return tuple(read(v, f"{where}[{i}]") for i, v in enumerate(value))
    return (read(value, where),)


def _check_keys(raw: dict, allowed: set[str], where: str) -> None:
    unknown = set(raw) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")


def _matrix(value: object, where: str) -> str:
    name = matrix_name(value)
    if name is None:
        raise ScenarioError(f"{where}: unknown matrix {shorten(repr(value))} (known: {', '.join(MATRICES)})")
    return name


def _parse_lab(raw: object, where: str) -> LabProfile:
    at = f"{where} [lab]"
    raw = _of_type(raw, dict, at, "a table")
    _check_keys(raw, {"time_s", "temperature_C", "cycle_amplitude_C", "cycle_period_s", "cycle_peak_s"}, at)
    times = _times(raw["time_s"], f"{at} time_s") if "time_s" in raw else None
    if "temperature_C" not in raw:
        raise ScenarioError(f"{at}: needs temperature_C (a number, or one per time_s)")
    temperatures = _series(
        raw["temperature_C"], f"{at} temperature_C", times, lambda v, w: _in_range(v, w, LAB_TEMPERATURE_RANGE_C, "C")
    )
    amplitude = _in_range(raw.get("cycle_amplitude_C", 0.0), f"{at} cycle_amplitude_C", (0.0, 20.0), "C")
    period = _in_range(raw.get("cycle_period_s", 86400.0), f"{at} cycle_period_s", (60.0, MAX_SCENARIO_TIME_S), "s")
    peak = _in_range(
        raw.get("cycle_peak_s", 50400.0), f"{at} cycle_peak_s", (-MAX_SCENARIO_TIME_S, MAX_SCENARIO_TIME_S), "s"
    )
    low, high = LAB_TEMPERATURE_RANGE_C
    if min(temperatures) - amplitude < low or max(temperatures) + amplitude > high:
        raise ScenarioError(f"{at}: temperature_C with the cycle's amplitude must stay within {low:g} to {high:g} C")
    return LabProfile(times or (0.0,), temperatures, amplitude, period, peak)


def _parse_solution(raw: object, where: str) -> SolutionProfile:
    at = f"{where} [solution]"
    raw = _of_type(raw, dict, at, "a table")
    _check_keys(raw, {"time_s", "temperature_C", "matrix", "acid_mol_per_L"}, at)
    times = _times(raw["time_s"], f"{at} time_s") if "time_s" in raw else None
    temperature, follows_lab = None, False
    if raw.get("temperature_C") == "lab":
        follows_lab = True
    elif "temperature_C" in raw:
        temperature = _series(
            raw["temperature_C"],
            f"{at} temperature_C",
            times,
            lambda v, w: _in_range(v, w, SOLUTION_TEMPERATURE_RANGE_C, "C"),
        )
    matrix = _series(raw["matrix"], f"{at} matrix", times, _matrix) if "matrix" in raw else None
    acid = (
        _series(
            raw["acid_mol_per_L"],
            f"{at} acid_mol_per_L",
            times,
            lambda v, w: _in_range(v, w, ACID_RANGE_MOL_PER_L, "mol/L"),
        )
        if "acid_mol_per_L" in raw
        else None
    )
    if temperature is None and not follows_lab and matrix is None and acid is None:
        raise ScenarioError(f"{at}: gives none of temperature_C, matrix, acid_mol_per_L")
    return SolutionProfile(times or (0.0,), temperature, follows_lab, matrix, acid)


def _parse_drift(raw: object, where: str) -> DriftSettings:
    at = f"{where} [drift]"
    raw = _of_type(raw, dict, at, "a table")
    _check_keys(
        raw,
        {
            "wavelength",
            "bands",
            "matrix",
            "k_T_nm_per_C",
            "calibration_temperature_C",
            "spectrometer_lag_s",
            "replug_s",
            "replug_step_nm",
        },
        at,
    )
    switches = {key: _switch(raw[key], f"{at} {key}") for key in ("wavelength", "bands", "matrix") if key in raw}
    numbers = {}
    for key, bounds, unit in (
        ("k_T_nm_per_C", K_T_RANGE_NM_PER_C, "nm/C"),
        ("calibration_temperature_C", LAB_TEMPERATURE_RANGE_C, "C"),
        ("spectrometer_lag_s", LAG_RANGE_S, "s"),
    ):
        if key in raw:
            numbers[key] = _in_range(raw[key], f"{at} {key}", bounds, unit)
    replug_s: tuple[float, ...] = ()
    steps: tuple[float, ...] = ()
    if "replug_s" in raw or "replug_step_nm" in raw:
        if "replug_s" not in raw or "replug_step_nm" not in raw:
            raise ScenarioError(f"{at}: replug_s and replug_step_nm go together")
        replug_s = _times(raw["replug_s"], f"{at} replug_s")
        if replug_s[0] < 0:
            raise ScenarioError(f"{at} replug_s: must be >= 0, got {replug_s[0]!r}")
        if not isinstance(raw["replug_step_nm"], list) or len(raw["replug_step_nm"]) != len(replug_s):
            raise ScenarioError(f"{at} replug_step_nm: needs {len(replug_s)} values, one per replug_s")
        steps = tuple(
            _in_range(v, f"{at} replug_step_nm[{i}]", (-MAX_REPLUG_STEP_NM, MAX_REPLUG_STEP_NM), "nm")
            for i, v in enumerate(raw["replug_step_nm"])
        )
    return DriftSettings(**switches, **numbers, replug_s=replug_s, replug_step_nm=steps)


def _concentration(value: object, where: str) -> float:
    return _number(value, where, minimum=0.0, maximum=MAX_CONCENTRATION_G_PER_L)


def _of_type(value: object, kind: type[_T], where: str, what: str) -> _T:
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: must be {what}, not {shorten(repr(value))}")
    return value


def _parse(data: dict, where: str) -> Scenario:
    allowed = {
        "name",
        "description",
        "duration_s",
        "repeat",
        "base",
        "peak",
        "table",
        "lab",
        "solution",
        "drift",
        "process",
        "cascade",
    }
    unknown = set(data) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    for key in ("name", "description"):
        _of_type(data.get(key, ""), str, f"{where} {key}", "a string")
    base = {
        _element(el, f"{where} [base]"): _concentration(v, f"{where} [base] {el}")
        for el, v in _of_type(data.get("base", {}), dict, f"{where} [base]", "a table").items()
    }
    peaks = []
    for i, raw in enumerate(_of_type(data.get("peak", []), list, f"{where} [[peak]]", "an array of tables")):
        at = f"{where} [[peak]] #{i + 1}"
        _of_type(raw, dict, at, "a table")
        sigma_s = _number(raw.get("sigma_s"), f"{at} sigma_s", positive=True)
        peaks.append(
            Peak(
                element=_element(raw.get("element"), at),
                center_s=_number(raw.get("center_s"), f"{at} center_s"),
                sigma_s=sigma_s,
                tail_sigma_s=_number(raw.get("tail_sigma_s", sigma_s), f"{at} tail_sigma_s", positive=True),
                height_g_per_L=_concentration(raw.get("height_g_per_L"), f"{at} height_g_per_L"),
            )
        )
    table_time_s: tuple[float, ...] = ()
    table: dict[str, tuple[float, ...]] = {}
    if "table" in data:
        raw = dict(_of_type(data["table"], dict, f"{where} [table]", "a table"))
        times = raw.pop("time_s", None)
        if not isinstance(times, list) or not times:
            raise ScenarioError(f"{where} [table]: needs a non-empty list time_s")
        table_time_s = tuple(_number(t, f"{where} [table] time_s") for t in times)
        if any(b <= a for a, b in zip(table_time_s, table_time_s[1:])):
            raise ScenarioError(f"{where} [table]: time_s must increase strictly")
        for el, values in raw.items():
            el = _element(el, f"{where} [table]")
            if not isinstance(values, list) or len(values) != len(table_time_s):
                raise ScenarioError(f"{where} [table] {el}: needs {len(table_time_s)} values, one per time_s")
            table[el] = tuple(_concentration(v, f"{where} [table] {el}") for v in values)
    duration = data.get("duration_s")
    repeat = data.get("repeat", False)
    if not isinstance(repeat, bool):
        raise ScenarioError(f"{where}: repeat must be true or false")
    if repeat and duration is None:
        raise ScenarioError(f"{where}: repeat = true needs duration_s")
    process = _parse_process(data.get("process", {}), where)
    cascade = _parse_cascade(data["cascade"], process["process"], where) if "cascade" in data else None
    return Scenario(
        name=str(data.get("name", Path(where).stem)),
        description=str(data.get("description", "")),
        duration_s=None if duration is None else _number(duration, f"{where} duration_s", positive=True),
        repeat=repeat,
        base=base,
        peaks=tuple(peaks),
        table_time_s=table_time_s,
        table=table,
        lab=_parse_lab(data["lab"], where) if "lab" in data else None,
        solution=_parse_solution(data["solution"], where) if "solution" in data else None,
        drift=_parse_drift(data["drift"], where) if "drift" in data else None,
        **process,
        cascade=cascade,
    )


_QUANTITY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def _parse_process(raw: object, where: str) -> dict:
    """The ``[process]`` section: ``process_time_s`` and ``process`` (quantity -> values) for :class:`Scenario`."""
    at = f"{where} [process]"
    raw = dict(_of_type(raw, dict, at, "a table"))
    times = _times(raw.pop("time_s"), f"{at} time_s") if "time_s" in raw else None
    process = {}
    for name, value in raw.items():
        if not _QUANTITY_NAME.fullmatch(name):
            raise ScenarioError(f"{at}: {shorten(repr(name))} is no quantity name (letters, digits and _)")
        process[name] = _series(value, f"{at} {name}", times, _finite)
    return {"process_time_s": times or (0.0,), "process": process}


def _parse_cascade(raw: object, process: dict[str, tuple[float, ...]], where: str) -> CascadeChemistry:
    """The ``[cascade]`` section (its pH is ``[process] pH``, already read into ``process``)."""
    at = f"{where} [cascade]"
    raw = _of_type(raw, dict, at, "a table")
    defaults = CascadeChemistry()
    _check_keys(
        raw,
        {
            "feed_g_per_L",
            "reference_distribution_ratio",
            "reference_pH",
            "stages",
            "organic_to_aqueous_flow",
            "strip_to_feed_flow",
            "residence_time_s",
        },
        at,
    )

    def per_element(key: str, read, default) -> dict[str, float]:
        if key not in raw:
            return dict(default)
        table = _of_type(raw[key], dict, f"{at} {key}", "a table of element = number")
        if not table:
            raise ScenarioError(f"{at} {key}: names no element")
        return {_element(el, f"{at} {key}"): read(v, f"{at} {key} {el}") for el, v in table.items()}

    feed = per_element("feed_g_per_L", _concentration, defaults.feed_g_per_L)
    ratios = per_element(
        "reference_distribution_ratio",
        lambda v, w: _number(v, w, positive=True, maximum=MAX_CASCADE_RATIO),
        defaults.reference_distribution_ratio,
    )
    if set(feed) != set(ratios):
        raise ScenarioError(
            f"{at}: feed_g_per_L and reference_distribution_ratio must name the same elements "
            f"(feed: {', '.join(sorted(feed))}; ratios: {', '.join(sorted(ratios))})"
        )
    stages = raw.get("stages", defaults.stages)
    if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= MAX_CASCADE_STAGES:
        raise ScenarioError(
            f"{at} stages: must be a whole number 1 to {MAX_CASCADE_STAGES}, got {shorten(repr(stages))}"
        )
    flows = {
        key: _number(raw.get(key, getattr(defaults, key)), f"{at} {key}", positive=True, maximum=MAX_CASCADE_RATIO)
        for key in ("organic_to_aqueous_flow", "strip_to_feed_flow")
    }
    residence = _number(raw.get("residence_time_s", defaults.residence_time_s), f"{at} residence_time_s", minimum=0.0)
    reference_pH = _in_range(
        raw.get("reference_pH", defaults.reference_pH), f"{at} reference_pH", CASCADE_PH_RANGE, "(pH)"
    )
    if "pH" not in process:
        raise ScenarioError(f"{at}: needs [process] pH, the feed's pH (a number, or one per [process] time_s)")
    low, high = CASCADE_PH_RANGE
    for value in process["pH"]:
        if not low <= value <= high:
            raise ScenarioError(
                f"{at}: [process] pH must stay within {low:g} to {high:g} for the cascade, got {value!r}"
            )
    return CascadeChemistry(
        feed_g_per_L=feed,
        reference_distribution_ratio=ratios,
        reference_pH=reference_pH,
        stages=stages,
        organic_to_aqueous_flow=flows["organic_to_aqueous_flow"],
        strip_to_feed_flow=flows["strip_to_feed_flow"],
        residence_time_s=residence,
    )


def load_scenario(name_or_path: str | os.PathLike) -> Scenario:
    """Read and check a scenario file; any mistake raises :class:`ScenarioError` naming file and key."""
    path = find_scenario(name_or_path)
    try:
        data = read_small_toml_file(path)
    except UnreadableFileError as error:
        raise ScenarioError(str(error)) from None
    return _parse(data, str(path))


def parse_concentrations(text: str) -> dict[str, float]:
    """Read ``El=g/L,El=g/L,...`` (empty text = water, no solutes); elements must be unique."""
    result: dict[str, float] = {}
    text = text.strip()
    if not text:
        return result
    for item in text.split(","):
        symbol, sep, value = item.strip().partition("=")
        symbol = symbol.strip()
        if not sep:
            raise ScenarioError(f"expected El=g/L, got {item.strip()!r}")
        el = _element(symbol, "concentration list")
        if el in result:
            raise ScenarioError(f"element {el} given twice")
        try:
            number = float(value)
        except ValueError:
            raise ScenarioError(f"{el}: not a number: {value.strip()!r}") from None
        result[el] = _concentration(number, f"concentration of {el}")
    return result


def format_concentrations(concentrations: dict[str, float]) -> str:
    """Write ``El=g/L,...`` in periodic-table order with 6 significant digits (inverse of parse)."""
    return ",".join(f"{el}={concentrations[el]:.6g}" for el in KNOWN_ELEMENTS if el in concentrations)
