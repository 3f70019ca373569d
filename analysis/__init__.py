"""The numeric core: spectra -> element concentrations -> oxide purity.

Numbers in, numbers out. It knows no file layout and no instrument: it learns an
instrument's response only from calibration standards.
"""

from ._drift_terms import reference_shift_spectrum
from ._warm_up import warm_up_kernels
from .absorbance import absorbance
from .calibration import Calibration, CalibrationQuality, Standards, baseline_basis, calibrate
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
from .purity import PurityResult, oxide_purity
from .quantify import LACK_OF_FIT_LIMIT, Quantification, kernel_cache_info, quantify, quantify_counts
from .separation import (
    decontamination_factor,
    distribution_ratio,
    extraction_percent,
    fenske_minimum_stages,
    recovery,
    separation_factor,
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
    # spectra -> concentrations -> purity
    "absorbance",
    "calibrate",
    "Calibration",
    "CalibrationQuality",
    "Standards",
    "baseline_basis",
    "quantify",
    "quantify_counts",
    "reference_shift_spectrum",
    "Quantification",
    "LACK_OF_FIT_LIMIT",
    "kernel_cache_info",
    "warm_up_kernels",
    "oxide_purity",
    "PurityResult",
    # separation metrics
    "distribution_ratio",
    "separation_factor",
    "extraction_percent",
    "recovery",
    "decontamination_factor",
    "fenske_minimum_stages",
]
