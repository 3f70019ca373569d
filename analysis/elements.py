"""The rare-earth elements: atomic weights, trade oxides, and unit conversions.

Standard atomic weights are the IUPAC 2021 values (CIAAW, abridged to the
published digits); oxygen uses the conventional value 15.999. Oxide factors are
computed from these and the oxide formula, never typed in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

__all__ = [
    "Element",
    "ELEMENTS",
    "RARE_EARTHS",
    "OXYGEN_ATOMIC_WEIGHT",
    "UnknownElementError",
    "element",
    "oxide_factor",
    "formula_mass",
    "g_per_L_to_mol_per_L",
    "mol_per_L_to_g_per_L",
    "element_to_oxide_g_per_L",
    "oxide_to_element_g_per_L",
]

OXYGEN_ATOMIC_WEIGHT: float = 15.999  # IUPAC conventional value


class UnknownElementError(KeyError):
    """A symbol that is not one of the rare-earth elements known here."""

    def __init__(self, symbol: object) -> None:
        self.symbol = symbol
        super().__init__(symbol)

    def __str__(self) -> str:
        return f"unknown rare-earth element {self.symbol!r}; known symbols: {', '.join(RARE_EARTHS)}"


@dataclass(frozen=True)
class Element:
    """A rare-earth element and the oxide the trade reports it as."""

    symbol: str
    name: str
    atomic_number: int
    atomic_weight: float  # g/mol; for Pm the mass number of its longest-lived isotope
    oxide: str  # formula of the reported oxide, e.g. "Pr6O11"
    has_stable_isotope: bool = True

    @property
    def oxide_factor(self) -> float:
        """Mass of reported oxide per mass of element."""
        return oxide_factor(self.symbol)


_TABLE = [
    # symbol, name, Z, standard atomic weight (IUPAC 2021), oxide
    ("Sc", "scandium", 21, 44.955907, "Sc2O3"),
    ("Y", "yttrium", 39, 88.905838, "Y2O3"),
    ("La", "lanthanum", 57, 138.90547, "La2O3"),
    ("Ce", "cerium", 58, 140.116, "CeO2"),
    ("Pr", "praseodymium", 59, 140.90766, "Pr6O11"),
    ("Nd", "neodymium", 60, 144.242, "Nd2O3"),
    ("Pm", "promethium", 61, 145.0, "Pm2O3"),
    ("Sm", "samarium", 62, 150.36, "Sm2O3"),
    ("Eu", "europium", 63, 151.964, "Eu2O3"),
    ("Gd", "gadolinium", 64, 157.249, "Gd2O3"),
    ("Tb", "terbium", 65, 158.925354, "Tb4O7"),
    ("Dy", "dysprosium", 66, 162.500, "Dy2O3"),
    ("Ho", "holmium", 67, 164.930329, "Ho2O3"),
    ("Er", "erbium", 68, 167.259, "Er2O3"),
    ("Tm", "thulium", 69, 168.934219, "Tm2O3"),
    ("Yb", "ytterbium", 70, 173.045, "Yb2O3"),
    ("Lu", "lutetium", 71, 174.96669, "Lu2O3"),
]

ELEMENTS: MappingProxyType[str, Element] = MappingProxyType(
    {
        symbol: Element(symbol, name, z, weight, oxide, has_stable_isotope=(symbol != "Pm"))
        for symbol, name, z, weight, oxide in _TABLE
    }
)
"""Symbol -> :class:`Element`, ordered Sc, Y, then La..Lu."""

RARE_EARTHS: tuple[str, ...] = tuple(ELEMENTS)

_FORMULA_TERM = re.compile(r"([A-Z][a-z]?)(\d*)")


def element(symbol: str) -> Element:
    """The :class:`Element` for a symbol (case-sensitive, e.g. ``"Nd"``)."""
    try:
        return ELEMENTS[symbol]
    except (KeyError, TypeError):
        raise UnknownElementError(symbol) from None


def _parse_formula(formula: str) -> dict[str, int]:
    terms = _FORMULA_TERM.findall(formula)
    if "".join(f"{s}{n}" for s, n in terms) != formula or not terms:
        raise ValueError(f"cannot read chemical formula {formula!r}")
    counts: dict[str, int] = {}
    for symbol, count in terms:
        counts[symbol] = counts.get(symbol, 0) + (int(count) if count else 1)
    return counts


def formula_mass(formula: str) -> float:
    """Molar mass (g/mol) of a formula made of rare-earth elements and oxygen, e.g. ``"Pr6O11"``."""
    total = 0.0
    for symbol, count in _parse_formula(formula).items():
        weight = OXYGEN_ATOMIC_WEIGHT if symbol == "O" else element(symbol).atomic_weight
        total += count * weight
    return total


def oxide_factor(symbol: str) -> float:
    """Mass of the reported oxide per unit mass of the element (e.g. Nd -> Nd2O3: 1.1664)."""
    el = element(symbol)
    counts = _parse_formula(el.oxide)
    metal_mass = counts[symbol] * el.atomic_weight
    return formula_mass(el.oxide) / metal_mass


def g_per_L_to_mol_per_L(value_g_per_L: npt.ArrayLike, symbol: str) -> npt.NDArray[np.float64]:
    """Element mass concentration (g/L) to molar concentration (mol/L)."""
    return np.asarray(value_g_per_L, dtype=float) / element(symbol).atomic_weight


def mol_per_L_to_g_per_L(value_mol_per_L: npt.ArrayLike, symbol: str) -> npt.NDArray[np.float64]:
    """Molar concentration (mol/L) of an element to its mass concentration (g/L)."""
    return np.asarray(value_mol_per_L, dtype=float) * element(symbol).atomic_weight


def element_to_oxide_g_per_L(value_g_per_L: npt.ArrayLike, symbol: str) -> npt.NDArray[np.float64]:
    """Element g/L to g/L of its reported oxide (the oxide the element would calcine to)."""
    return np.asarray(value_g_per_L, dtype=float) * oxide_factor(symbol)


def oxide_to_element_g_per_L(value_g_per_L: npt.ArrayLike, symbol: str) -> npt.NDArray[np.float64]:
    """Reported-oxide g/L to element g/L."""
    return np.asarray(value_g_per_L, dtype=float) / oxide_factor(symbol)
