"""The numeric core: spectra -> element concentrations -> oxide purity.

Numbers in, numbers out. It knows no file layout and no instrument: it learns an
instrument's response only from calibration standards.
"""

from .elements import (
    ELEMENTS,
    OXYGEN_ATOMIC_WEIGHT,
    RARE_EARTHS,
    Element,
    UnknownElementError,
    element,
    element_to_oxide_g_per_L,
    formula_mass,
    g_per_L_to_mol_per_L,
    mol_per_L_to_g_per_L,
    oxide_factor,
    oxide_to_element_g_per_L,
)

__all__ = [
    "ELEMENTS",
    "OXYGEN_ATOMIC_WEIGHT",
    "RARE_EARTHS",
    "Element",
    "UnknownElementError",
    "element",
    "element_to_oxide_g_per_L",
    "formula_mass",
    "g_per_L_to_mol_per_L",
    "mol_per_L_to_g_per_L",
    "oxide_factor",
    "oxide_to_element_g_per_L",
]
