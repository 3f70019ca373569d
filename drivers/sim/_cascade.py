"""A Pr/Nd counter-current solvent-extraction cascade, for the simulated cascade bench (issue: station of instruments).

The chemistry, stated so that every number below can be checked against it:

- **System**: P507 (HEH/EHP, 2-ethylhexyl phosphonic acid mono-2-ethylhexyl ester) in kerosene, not
  saponified, against a chloride feed of Pr and Nd. Extraction is cation exchange,
  ``Ln3+(aq) + 3 (HA)2(org) <=> Ln(HA2)3(org) + 3 H+(aq)``, so at a fixed free-extractant
  concentration the distribution ratio of each lanthanide goes as ``D = D_ref * 10**(3 (pH - pH_ref))``.
- **Selectivity**: the heavier Nd extracts better than Pr; the separation factor
  ``beta_Nd/Pr = D_Nd / D_Pr`` is about 1.5 for P507 in chloride media and does not depend on pH
  (both ions exchange three protons). The organic phase therefore carries Nd: the loaded strip
  liquor (the organic stripped with hydrochloric acid) is Nd-rich, the raffinate Pr-rich.
- **Cascade**: ``stages`` ideal counter-current extraction stages at organic/aqueous flow ratio
  ``theta``. With the extraction factor ``E = D theta`` of an element, the fraction of the feed that
  leaves in the raffinate is Kremser's ``(E - 1) / (E**(stages + 1) - 1)`` (``1 / (stages + 1)`` at
  ``E = 1``); the rest is extracted and stripped completely into a strip liquor whose flow is
  ``strip_to_feed_flow`` times the feed's. Mass balance closes exactly.
- **Dynamics**: when the feed pH changes, each sampling point moves to its new steady state with
  a first-order lag (``residence_time_s``: the mixer-settlers' hold-up over the flow; 0: at once).
  The feed itself does not lag.

Sampling points: ``feed``, ``raffinate``, ``strip`` (loaded strip liquor). Concentrations in g/L.

Two ways to follow the cascade in time:

- :class:`CascadeState`: step by step, the pH held over each step (for a caller that owns the clock);
- :class:`CascadeHistory`: the points as a pure function of time for a whole pH history
  (``pH_at(t)`` and the times where its piecewise-linear schedule bends), what the scenario files
  use (:mod:`drivers.sim.scenario`). It starts settled at ``pH_at(0)`` and integrates
  ``dc/dt = (c_ss(pH(t)) - c) / residence_time_s`` over a fixed grid from t = 0: the schedule's
  bends, and on every ramp steps of at most ``MAX_PH_STEP`` pH. Between two grid times the steady
  state is taken linear in time and the lag solved exactly over it, so while the pH holds the answer
  is exact, and on a ramp it is within the steady state's curvature over 0.001 pH (a few parts in
  a million). Grid states are cached as they are first needed; the value at a time never depends on
  which times were asked before, so two processes with the same schedule agree to the last bit.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["CascadeChemistry", "SAMPLING_POINTS", "CascadeState", "CascadeHistory", "MAX_PH_STEP"]

SAMPLING_POINTS = ("feed", "raffinate", "strip")
#: Largest pH change between two grid times of :class:`CascadeHistory` on a ramp of the pH schedule.
MAX_PH_STEP = 0.001
#: The points that lag behind the pH (the feed is what comes in).
_LAGGING = ("raffinate", "strip")


@dataclass(frozen=True)
class CascadeChemistry:
    """The stated chemistry and flowsheet of the cascade (module docstring)."""

    feed_g_per_L: Mapping[str, float] = field(default_factory=lambda: {"Pr": 6.0, "Nd": 18.0})
    #: Distribution ratio of each element at ``reference_pH`` (Pr below 1, Nd above: they split).
    reference_distribution_ratio: Mapping[str, float] = field(default_factory=lambda: {"Pr": 0.80, "Nd": 1.20})
    reference_pH: float = 1.5
    protons_exchanged: int = 3
    stages: int = 8
    organic_to_aqueous_flow: float = 1.0
    strip_to_feed_flow: float = 0.5
    residence_time_s: float = 1200.0

    def __post_init__(self) -> None:
        if set(self.feed_g_per_L) != set(self.reference_distribution_ratio):
            raise ValueError("feed and distribution ratios must name the same elements")
        if any(v < 0 for v in self.feed_g_per_L.values()) or any(
            v <= 0 for v in self.reference_distribution_ratio.values()
        ):
            raise ValueError("feed concentrations must be >= 0 and distribution ratios > 0")
        if not (self.stages >= 1 and self.organic_to_aqueous_flow > 0 and self.strip_to_feed_flow > 0):
            raise ValueError("stages >= 1 and positive flow ratios are required")
        if not self.residence_time_s >= 0:
            raise ValueError("the residence time must be >= 0 s")

    def distribution_ratio(self, element: str, pH: float) -> float:
        """D of ``element`` at the feed's ``pH`` (dimensionless)."""
        return self.reference_distribution_ratio[element] * 10.0 ** (self.protons_exchanged * (pH - self.reference_pH))

    def separation_factor(self, a: str = "Nd", b: str = "Pr") -> float:
        """beta_a/b = D_a / D_b, the same at every pH (both exchange the same number of protons)."""
        return self.reference_distribution_ratio[a] / self.reference_distribution_ratio[b]

    def raffinate_fraction(self, element: str, pH: float) -> float:
        """Fraction of the feed's ``element`` leaving in the raffinate (Kremser, ideal stages)."""
        extraction = self.distribution_ratio(element, pH) * self.organic_to_aqueous_flow
        n = self.stages
        if math.isclose(extraction, 1.0, rel_tol=1e-12):
            return 1.0 / (n + 1)
        if extraction <= 0.0:  # D so small that it underflowed: nothing is extracted
            return 1.0
        x = math.log(extraction)
        if (n + 1) * x < 700.0:  # (E - 1) / (E**(n+1) - 1), without cancellation near E = 1
            return math.expm1(x) / math.expm1((n + 1) * x)
        inverse = 1.0 / extraction  # the same expression, written so that E**(n+1) cannot overflow
        return (1.0 - inverse) * inverse**n / (1.0 - inverse ** (n + 1))

    def steady_state(self, pH: float) -> dict[str, dict[str, float]]:
        """Concentrations (g/L) at each sampling point once the cascade has settled at ``pH``.

        The raffinate has the feed's flow; the strip liquor ``strip_to_feed_flow`` times it.
        """
        raffinate, strip = {}, {}
        for element, feed in self.feed_g_per_L.items():
            fraction = self.raffinate_fraction(element, pH)
            raffinate[element] = feed * fraction
            strip[element] = feed * (1.0 - fraction) / self.strip_to_feed_flow
        return {"feed": dict(self.feed_g_per_L), "raffinate": raffinate, "strip": strip}


@dataclass
class CascadeState:
    """The cascade in time: each sampling point lags towards the steady state of the current pH."""

    chemistry: CascadeChemistry
    pH: float
    time_s: float = 0.0
    concentrations: dict[str, dict[str, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.concentrations = self.chemistry.steady_state(self.pH)

    def advance(self, time_s: float, pH: float) -> dict[str, dict[str, float]]:
        """Move to ``time_s`` (not backwards) with the feed at ``pH`` since the last call; the concentrations."""
        if time_s < self.time_s:
            raise ValueError(f"time goes forward only: {time_s} s after {self.time_s} s")
        target = self.chemistry.steady_state(pH)
        tau = self.chemistry.residence_time_s
        settled = 1.0 - math.exp(-(time_s - self.time_s) / tau) if tau > 0 else 1.0
        for point in ("raffinate", "strip"):
            for element, value in target[point].items():
                now = self.concentrations[point][element]
                self.concentrations[point][element] = now + (value - now) * settled
        self.concentrations["feed"] = target["feed"]
        self.time_s, self.pH = time_s, pH
        return {point: dict(values) for point, values in self.concentrations.items()}


class CascadeHistory:
    """The sampling points as a deterministic function of time for one pH schedule (module docstring).

    ``pH_at(t)``: the feed's pH at time ``t`` (s), piecewise-linear between ``bends`` (the times of
    its schedule) and holding outside them; the cascade starts settled at ``pH_at(0)``. Times before
    0 are the start.
    """

    def __init__(self, chemistry: CascadeChemistry, pH_at: Callable[[float], float], bends: Iterable[float]):
        self.chemistry = chemistry
        self.pH_at = pH_at
        self._elements = tuple(chemistry.feed_g_per_L)
        self._bends = sorted({float(t) for t in bends if t > 0.0})
        self._next_bend = 0  # index into _bends of the next segment to lay on the grid
        first = self._flat_steady_state(pH_at(0.0))
        #: Grid times and, at each, (the lagging points' concentrations, their steady state), flattened.
        self._times: list[float] = [0.0]
        self._states: list[tuple[float, ...]] = [first]
        self._targets: list[tuple[float, ...]] = [first]
        self._lock = threading.Lock()

    def _flat_steady_state(self, pH: float) -> tuple[float, ...]:
        state = self.chemistry.steady_state(pH)
        return tuple(state[point][el] for point in _LAGGING for el in self._elements)

    def _lag(self, start: float, state, target, next_time: float | None, next_target, time_s: float):
        """The lagging points at ``time_s`` from grid time ``start``, the steady state linear in time to the next."""
        h = time_s - start
        tau = self.chemistry.residence_time_s
        decay = math.exp(-h / tau) if tau > 0 else 0.0
        values = []
        for i, (c, g) in enumerate(zip(state, target)):
            slope = 0.0 if next_time is None else (next_target[i] - g) / (next_time - start)
            # exact solution of dc/dt = (g + slope (t - start) - c) / tau from c at start
            values.append(g + slope * (h - tau) + (c - g + slope * tau) * decay)
        return tuple(values)

    def _extend_to(self, time_s: float) -> None:
        """Lay the grid (and its states) up to the first grid time at or after ``time_s``, or to the last bend."""
        while self._times[-1] < time_s and self._next_bend < len(self._bends):
            end = self._bends[self._next_bend]
            self._next_bend += 1
            start = self._times[-1]
            if end <= start:
                continue
            change = abs(self.pH_at(end) - self.pH_at(start))
            steps = max(1, math.ceil(change / MAX_PH_STEP - 1e-9))
            for k in range(1, steps + 1):
                t = end if k == steps else start + (end - start) * k / steps
                target = self._flat_steady_state(self.pH_at(t))
                before = self._times[-1]
                state = self._lag(before, self._states[-1], self._targets[-1], t, target, t)
                self._times.append(t)
                self._states.append(state)
                self._targets.append(target)

    def at(self, time_s: float) -> dict[str, dict[str, float]]:
        """Concentrations (g/L) at each sampling point at ``time_s``."""
        time_s = max(float(time_s), 0.0)
        with self._lock:
            self._extend_to(time_s)
            i = bisect.bisect_right(self._times, time_s) - 1
            start, state, target = self._times[i], self._states[i], self._targets[i]
            if i + 1 < len(self._times):
                next_time, next_target = self._times[i + 1], self._targets[i + 1]
            else:  # past the last bend: the pH holds
                next_time, next_target = None, target
        values = self._lag(start, state, target, next_time, next_target, time_s)
        n = len(self._elements)
        result = {"feed": dict(self.chemistry.feed_g_per_L)}
        for j, point in enumerate(_LAGGING):
            result[point] = {el: max(values[j * n + k], 0.0) for k, el in enumerate(self._elements)}
        return result
