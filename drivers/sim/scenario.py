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
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._text_file import UnreadableFileError, is_regular_file, read_small_toml_file, shorten
from ._lanthanide_bands import KNOWN_ELEMENTS

__all__ = ["Scenario", "ScenarioError", "Peak", "load_scenario", "scenarios_dir", "find_scenario",
           "parse_concentrations", "format_concentrations"]


class ScenarioError(ValueError):
    """A scenario file (or a concentration list) that cannot be read; the message names the file and key."""


#: Largest concentration a scenario may put in the cell, g/L of element (far above any real solution).
MAX_CONCENTRATION_G_PER_L = 1000.0
#: Largest scenario time or width, s (about 30 years).
MAX_SCENARIO_TIME_S = 1e9


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

    @property
    def elements(self) -> tuple[str, ...]:
        """Every element the scenario ever puts in the cell, in periodic-table order."""
        present = set(self.base) | {p.element for p in self.peaks} | set(self.table)
        return tuple(el for el in KNOWN_ELEMENTS if el in present)

    def concentrations_at(self, time_s: float) -> dict[str, float]:
        """Element concentrations (g/L) at scenario time ``time_s``; never negative."""
        if self.repeat and self.duration_s:
            time_s = time_s % self.duration_s
        result = {el: 0.0 for el in self.elements}
        for el, value in self.base.items():
            result[el] += value
        for peak in self.peaks:
            result[peak.element] += peak.at(time_s)
        if self.table_time_s:
            for el, values in self.table.items():
                result[el] += float(np.interp(time_s, self.table_time_s, values))
        return {el: max(value, 0.0) for el, value in result.items()}


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
    raise ScenarioError(f"scenario {shorten(text)!r} not found (looked for {shorten(str(candidate))} and "
                        f"{shorten(str(bundled))}); bundled scenarios: {', '.join(known) or 'none'}")


def _element(symbol: object, where: str) -> str:
    if symbol not in KNOWN_ELEMENTS:
        raise ScenarioError(f"{where}: unknown element {symbol!r} (known: {', '.join(KNOWN_ELEMENTS)})")
    return str(symbol)


def _number(value: object, where: str, *, minimum: float | None = None, positive: bool = False,
            maximum: float = MAX_SCENARIO_TIME_S) -> float:
    """``value`` as a float if it is a finite number in range (not a boolean); a ScenarioError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{where}: expected a finite number, got {shorten(repr(value))}")
    if abs(value) > maximum:
        raise ScenarioError(f"{where}: must be at most {maximum:g} in magnitude, got {value!r}")
    if positive and value <= 0:
        raise ScenarioError(f"{where}: must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{where}: must be >= {minimum:g}, got {value!r}")
    return float(value)


def _concentration(value: object, where: str) -> float:
    return _number(value, where, minimum=0.0, maximum=MAX_CONCENTRATION_G_PER_L)


def _of_type(value: object, kind: type, where: str, what: str):
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: must be {what}, not {shorten(repr(value))}")
    return value


def _parse(data: dict, where: str) -> Scenario:
    allowed = {"name", "description", "duration_s", "repeat", "base", "peak", "table"}
    unknown = set(data) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    for key in ("name", "description"):
        _of_type(data.get(key, ""), str, f"{where} {key}", "a string")
    base = {_element(el, f"{where} [base]"): _concentration(v, f"{where} [base] {el}")
            for el, v in _of_type(data.get("base", {}), dict, f"{where} [base]", "a table").items()}
    peaks = []
    for i, raw in enumerate(_of_type(data.get("peak", []), list, f"{where} [[peak]]", "an array of tables")):
        at = f"{where} [[peak]] #{i + 1}"
        _of_type(raw, dict, at, "a table")
        sigma_s = _number(raw.get("sigma_s"), f"{at} sigma_s", positive=True)
        peaks.append(Peak(
            element=_element(raw.get("element"), at),
            center_s=_number(raw.get("center_s"), f"{at} center_s"),
            sigma_s=sigma_s,
            tail_sigma_s=_number(raw.get("tail_sigma_s", sigma_s), f"{at} tail_sigma_s", positive=True),
            height_g_per_L=_concentration(raw.get("height_g_per_L"), f"{at} height_g_per_L"),
        ))
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
    return Scenario(
        name=str(data.get("name", Path(where).stem)),
        description=str(data.get("description", "")),
        duration_s=None if duration is None else _number(duration, f"{where} duration_s", positive=True),
        repeat=repeat,
        base=base,
        peaks=tuple(peaks),
        table_time_s=table_time_s,
        table=table,
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
