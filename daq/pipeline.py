"""Raw counts to concentrations and purity: the one path that live analysis and reanalysis share.

Live analysis and offline reanalysis call :func:`analyse_counts` with the same
inputs, so a reanalysis with the live calibration reproduces the live numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import analysis

__all__ = ["SpectraResult", "analyse_counts", "covered_elements"]


@dataclass(frozen=True)
class SpectraResult:
    """Per-spectrum results for N spectra and K calibrated analytes."""

    concentration_g_per_L: np.ndarray  # (N, K)
    sigma_g_per_L: np.ndarray  # (N, K)
    purity: np.ndarray  # (N,)
    purity_sigma: np.ndarray  # (N,)
    residual_rms: np.ndarray  # (N,)
    masked_pixels: np.ndarray  # (N,) pixels left out (saturated, non-positive or non-finite)


def covered_elements(calibration) -> tuple[str, ...]:
    """The elements a purity from this calibration covers (its analytes)."""
    return tuple(calibration.analytes)


def _detection_limits(calibration):
    quality = calibration.quality
    return None if quality is None else quality.detection_limit_g_per_L


def analyse_counts(counts, dark, reference, calibration, target: str,
                   saturation_counts: float | None) -> SpectraResult:
    """Quantify raw spectra (N, P) against one dark and one reference (P,) with a calibration.

    Counts are taken as float32, the instrument's wire format and the trial file's
    storage type, so live analysis and reanalysis from the file see the same numbers.
    """
    counts32 = np.atleast_2d(np.asarray(counts, dtype=np.float32))
    result = analysis.quantify_counts(counts32, np.asarray(dark, dtype=np.float32),
                                      np.asarray(reference, dtype=np.float32), calibration,
                                      saturation_counts=saturation_counts)
    purity = analysis.oxide_purity(result.concentration_g_per_L, calibration.analytes, target,
                                   sigma_g_per_L=result.sigma_g_per_L,
                                   detection_limit_g_per_L=_detection_limits(calibration))
    return SpectraResult(result.concentration_g_per_L, result.sigma_g_per_L, purity.purity,
                         purity.purity_sigma, result.residual_rms, result.n_masked_pixels)
