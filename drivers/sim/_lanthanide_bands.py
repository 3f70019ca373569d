"""f-f absorption bands of aqueous Ln(III) ions in 350-1000 nm: the simulator's chemical truth.

Positions are the literature band maxima of the aquo ions (dilute perchlorate or
chloride solution, room temperature); widths and peak molar absorptivities are
approximate literature values (Carnall's aquo-ion spectra and the usual
analytical tables, rounded). Each band is a Gaussian in wavelength. Only the
bands named in the design are modelled; La, Ce(III), Gd, Lu, Y (and Sc, Tb,
whose few visible bands are very weak) are transparent here.

Three bands are *hypersensitive* (``Band.hypersensitive``): Nd 575 nm
(4I9/2 -> 4G5/2, 2G7/2), Ho 451 nm (5I8 -> 5G6) and Er 523 nm (4I15/2 -> 2H11/2).
Their intensity and shape follow the ligands around the ion (nitrate, chloride,
acidity) far more than the other f-f bands do; the table holds them for the
aquo ion (perchlorate). The simulator's bench drifts (:mod:`._bench_drift`)
change them, and every band's width and position with the solution's
temperature, through :func:`absorbance_per_cm`'s ``bands`` argument.

The analysis package never imports this module: it learns these numbers only
from calibration standards, as a real lab does. For the same reason the atomic
weights below are the simulator's own copy (IUPAC 2021, abridged), not the
analysis package's table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Band",
    "BANDS",
    "HYPERSENSITIVE_BANDS",
    "ATOMIC_WEIGHTS",
    "KNOWN_ELEMENTS",
    "molar_g_per_L",
    "absorbance_per_cm",
]


@dataclass(frozen=True)
class Band:
    """One f-f band: centre, full width at half maximum, peak molar absorptivity, hypersensitive or not."""

    element: str
    center_nm: float
    fwhm_nm: float
    epsilon_L_per_mol_cm: float
    hypersensitive: bool = False


# element -> ((centre nm, FWHM nm, peak epsilon L/mol/cm), ...)
_TABLE: dict[str, tuple[tuple[float, float, float], ...]] = {
    "Nd": ((575.0, 10.0, 7.2), (740.0, 12.0, 6.6), (794.0, 10.0, 11.8)),
    "Pr": ((444.0, 8.0, 10.2), (469.0, 6.0, 4.4), (482.0, 5.0, 4.0), (589.0, 7.0, 1.9)),
    "Sm": ((402.0, 5.0, 3.4),),
    "Er": ((379.0, 6.0, 7.5), (523.0, 6.0, 3.2), (652.0, 8.0, 2.1)),
    "Ho": ((451.0, 7.0, 4.2), (537.0, 6.0, 3.6), (641.0, 10.0, 2.4)),
    "Dy": ((351.0, 6.0, 2.7), (365.0, 6.0, 1.6), (910.0, 25.0, 2.3)),
    "Tm": ((683.0, 10.0, 2.5), (790.0, 18.0, 1.8)),
    "Eu": ((394.0, 4.0, 2.8),),
    "Yb": ((975.0, 15.0, 2.0),),
}

#: (element, centre nm) of the hypersensitive bands in the table.
HYPERSENSITIVE_BANDS: frozenset[tuple[str, float]] = frozenset({("Nd", 575.0), ("Ho", 451.0), ("Er", 523.0)})

BANDS: tuple[Band, ...] = tuple(
    Band(element, center, fwhm, epsilon, (element, center) in HYPERSENSITIVE_BANDS)
    for element, bands in _TABLE.items()
    for center, fwhm, epsilon in bands
)

ATOMIC_WEIGHTS: dict[str, float] = {
    "Sc": 44.955907,
    "Y": 88.905838,
    "La": 138.90547,
    "Ce": 140.116,
    "Pr": 140.90766,
    "Nd": 144.242,
    "Pm": 145.0,
    "Sm": 150.36,
    "Eu": 151.964,
    "Gd": 157.249,
    "Tb": 158.925354,
    "Dy": 162.500,
    "Ho": 164.930329,
    "Er": 167.259,
    "Tm": 168.934219,
    "Yb": 173.045,
    "Lu": 174.96669,
}

KNOWN_ELEMENTS = tuple(ATOMIC_WEIGHTS)

_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


def molar_g_per_L(symbol: str, g_per_L: float) -> float:
    """Element mass concentration (g/L) to mol/L."""
    return g_per_L / ATOMIC_WEIGHTS[symbol]


def absorbance_per_cm(
    wavelength_nm: np.ndarray, concentrations_g_per_L: dict[str, float], bands: tuple[Band, ...] | None = None
) -> np.ndarray:
    """Decadic absorbance of 1 cm of solution (Beer-Lambert sum over all bands), before the slit.

    ``bands``: the band list to use instead of :data:`BANDS` (the table as a bench drift changed it).
    """
    wavelength_nm = np.asarray(wavelength_nm, dtype=float)
    total = np.zeros_like(wavelength_nm)
    ascending = wavelength_nm.ndim == 1 and bool(np.all(np.diff(wavelength_nm) > 0))
    for band in BANDS if bands is None else bands:
        c_g_per_L = concentrations_g_per_L.get(band.element, 0.0)
        if c_g_per_L <= 0.0:
            continue
        sigma_nm = band.fwhm_nm * _FWHM_TO_SIGMA
        peak = band.epsilon_L_per_mol_cm * molar_g_per_L(band.element, c_g_per_L)
        # Evaluate within +-8 sigma only (the rest is below 1e-13 of the peak): much faster on a fine grid.
        window = (
            slice(*np.searchsorted(wavelength_nm, [band.center_nm - 8 * sigma_nm, band.center_nm + 8 * sigma_nm]))
            if ascending
            else slice(None)
        )
        total[window] += peak * np.exp(-0.5 * ((wavelength_nm[window] - band.center_nm) / sigma_nm) ** 2)
    return total
