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
  a first-order lag (``residence_time_s``: the mixer-settlers' hold-up over the flow).

Sampling points: ``feed``, ``raffinate``, ``strip`` (loaded strip liquor). Concentrations in g/L.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CascadeChemistry", "SAMPLING_POINTS", "CascadeState"]

SAMPLING_POINTS = ("feed", "raffinate", "strip")


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
        if extraction > 1.0:  # the same expression, written so that E**(n+1) cannot overflow
            return (1.0 - 1.0 / extraction) / (extraction**n - 1.0 / extraction)
        return (extraction - 1.0) / (extraction ** (n + 1) - 1.0)

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
        settled = 1.0 - math.exp(-(time_s - self.time_s) / self.chemistry.residence_time_s)
        for point in ("raffinate", "strip"):
            for element, value in target[point].items():
                now = self.concentrations[point][element]
                self.concentrations[point][element] = now + (value - now) * settled
        self.concentrations["feed"] = target["feed"]
        self.time_s, self.pH = time_s, pH
        return {point: dict(values) for point, values in self.concentrations.items()}
