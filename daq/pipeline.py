"""Raw counts to concentrations and purity: the one path that live analysis and reanalysis share.

Live analysis and offline reanalysis call :func:`analyse_counts` with the same
inputs, so a reanalysis with the live calibration reproduces the live numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import analysis

#: The name prefix of the second fit's Lorentzian width coefficients (the last K of the stored ones).
LORENTZIAN_WIDTH = "lorentzian width "

__all__ = [
    "LORENTZIAN_WIDTH",
    "SpectraResult",
    "analyse_counts",
    "covered_elements",
    "fit_coefficient_names",
    "fit_coefficient_units",
]


@dataclass(frozen=True)
class SpectraResult:
    """Per-spectrum results for N spectra and K calibrated analytes."""

    concentration_g_per_L: np.ndarray  # (N, K)
    sigma_g_per_L: np.ndarray  # (N, K)
    purity: np.ndarray  # (N,)
    purity_sigma: np.ndarray  # (N,)
    residual_rms: np.ndarray  # (N,)
    masked_pixels: np.ndarray  # (N,) pixels left out (saturated, non-positive or non-finite)
    # what the model can vouch for (analyse_counts always sets them; None only in a result built by hand)
    lack_of_fit: np.ndarray | None = None  # (N,) residual variance over the spectrum's own noise (~1: fits)
    model_mismatch: np.ndarray | None = None  # (N,) bool: lack_of_fit above analysis.quantify.LACK_OF_FIT_LIMIT
    wavelength_shift_nm: np.ndarray | None = None  # (N,) common shift the drift coefficients imply
    free_coefficients: np.ndarray | None = None  # (N, F) in the order of fit_coefficient_names(calibration)
    below_quantitation_limit: np.ndarray | None = None  # (N,) bool: no rare earths in the cell (purity NaN)


def covered_elements(calibration) -> tuple[str, ...]:
    """The elements a purity from this calibration covers (its analytes)."""
    return tuple(calibration.analytes)


def fit_coefficient_names(calibration) -> tuple[str, ...]:
    """Names of the free coefficients, in the order of ``Calibration.design_matrix()``'s free columns.

    Curvature of each quadratic analyte ("Nd^2"), the Legendre baseline terms
    ("P0".."P<order>"), how far the wavelength axis had moved since the blank
    ("axis shift since blank", nm), the shift of each analyte ("shift Nd"), its
    width ("width Nd"), and its Lorentzian width ("lorentzian width Nd": the second
    fit's term, 0 where a spectrum needed none; decision 0069).
    """
    order = calibration.baseline_order
    return (
        tuple(f"{a}^2" for a in calibration.quadratic_analytes)
        + tuple(f"P{i}" for i in range(0 if order is None else order + 1))
        + ("axis shift since blank",)
        + tuple(f"shift {a}" for a in calibration.analytes)
        + tuple(f"width {a}" for a in calibration.analytes)
        + tuple(f"{LORENTZIAN_WIDTH}{a}" for a in calibration.analytes)
    )


def fit_coefficient_units(calibration) -> tuple[str, ...]:
    """Units of the free coefficients, in the order of :func:`fit_coefficient_names`."""
    units = {"^": "(g/L)^2", "P": "absorbance", "a": "nm", "s": "g/L nm", "w": "g/L", "l": "g/L"}
    return tuple(units["^" if "^" in name else name[0]] for name in fit_coefficient_names(calibration))


def _detection_limits(calibration):
    quality = calibration.quality
    return None if quality is None else quality.detection_limit_g_per_L


def analyse_counts(counts, dark, reference, calibration, target: str, saturation_counts: float | None) -> SpectraResult:
    """Quantify raw spectra (N, P) against one dark and one reference (P,) with a calibration.

    Counts are taken as float32, the instrument's wire format and the trial file's
    storage type, so live analysis and reanalysis from the file see the same numbers.
    """
    counts32 = np.atleast_2d(np.asarray(counts, dtype=np.float32))
    result = analysis.quantify_counts(
        counts32,
        np.asarray(dark, dtype=np.float32),
        np.asarray(reference, dtype=np.float32),
        calibration,
        saturation_counts=saturation_counts,
    )
    purity = analysis.oxide_purity(
        result.concentration_g_per_L,
        calibration.analytes,
        target,
        sigma_g_per_L=result.sigma_g_per_L,
        detection_limit_g_per_L=_detection_limits(calibration),
    )
    return SpectraResult(
        result.concentration_g_per_L,
        result.sigma_g_per_L,
        purity.purity,
        purity.purity_sigma,
        result.residual_rms,
        result.n_masked_pixels,
        lack_of_fit=result.lack_of_fit,
        model_mismatch=np.asarray(result.model_mismatch, dtype=bool),
        # with nothing in the cell there are no bands to have moved: no shift, not noise
        wavelength_shift_nm=np.where(purity.below_quantitation_limit, np.nan, result.wavelength_shift_nm),
        free_coefficients=np.hstack(
            [
                result.quadratic_coefficients,
                result.baseline_coefficients,
                result.reference_shift_nm[:, None],
                result.shift_coefficients,
                result.width_coefficients,
                result.lorentzian_width_coefficients,
            ]
        ),
        below_quantitation_limit=np.asarray(purity.below_quantitation_limit, dtype=bool),
    )
