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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._lanthanide_bands import KNOWN_ELEMENTS

__all__ = ["Scenario", "ScenarioError", "Peak", "load_scenario", "scenarios_dir", "find_scenario",
           "parse_concentrations", "format_concentrations"]


class ScenarioError(ValueError):
    """A scenario file (or a concentration list) that cannot be read; the message names the file and key."""


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
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    bundled = scenarios_dir() / f"{candidate.name.removesuffix('.toml')}.toml"
    if bundled.is_file():
        return bundled
    known = sorted(p.stem for p in scenarios_dir().glob("*.toml"))
    raise ScenarioError(f"scenario {str(name_or_path)!r} not found (looked for {candidate} and {bundled}); "
                        f"bundled scenarios: {', '.join(known) or 'none'}")


def _element(symbol: object, where: str) -> str:
    if symbol not in KNOWN_ELEMENTS:
        raise ScenarioError(f"{where}: unknown element {symbol!r} (known: {', '.join(KNOWN_ELEMENTS)})")
    return str(symbol)


def _number(value: object, where: str, *, minimum: float | None = None, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScenarioError(f"{where}: expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise ScenarioError(f"{where}: must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ScenarioError(f"{where}: must be >= {minimum:g}, got {value!r}")
    return float(value)


def _parse(data: dict, where: str) -> Scenario:
    allowed = {"name", "description", "duration_s", "repeat", "base", "peak", "table"}
    unknown = set(data) - allowed
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})")
    base = {_element(el, f"{where} [base]"): _number(v, f"{where} [base] {el}", minimum=0.0)
            for el, v in data.get("base", {}).items()}
    peaks = []
    for i, raw in enumerate(data.get("peak", [])):
        at = f"{where} [[peak]] #{i + 1}"
        sigma_s = _number(raw.get("sigma_s"), f"{at} sigma_s", positive=True)
        peaks.append(Peak(
            element=_element(raw.get("element"), at),
            center_s=_number(raw.get("center_s"), f"{at} center_s"),
            sigma_s=sigma_s,
            tail_sigma_s=_number(raw.get("tail_sigma_s", sigma_s), f"{at} tail_sigma_s", positive=True),
            height_g_per_L=_number(raw.get("height_g_per_L"), f"{at} height_g_per_L", minimum=0.0),
        ))
    table_time_s: tuple[float, ...] = ()
    table: dict[str, tuple[float, ...]] = {}
    if "table" in data:
        raw = dict(data["table"])
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
            table[el] = tuple(_number(v, f"{where} [table] {el}", minimum=0.0) for v in values)
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
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: not valid TOML: {error}") from None
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
        result[el] = _number(number, f"concentration of {el}", minimum=0.0)
    return result


def format_concentrations(concentrations: dict[str, float]) -> str:
    """Write ``El=g/L,...`` in periodic-table order with 6 significant digits (inverse of parse)."""
    return ",".join(f"{el}={concentrations[el]:.6g}" for el in KNOWN_ELEMENTS if el in concentrations)
