"""Compile the analysis kernels ahead of use: at installation and in workers before their first task."""

from __future__ import annotations

import numpy as np

from .calibration import Calibration
from .quantify import kernel_cache_info, quantify, quantify_counts

__all__ = ["warm_up_kernels"]


def warm_up_kernels() -> dict[str, object]:
    """Compile the analysis kernels into numba's cache (or load them from it) now, not at a user's first fit.

    For installation (``make`` runs it) and for workers before their first task;
    both entry points are built, absorbance and raw counts. Returns
    :func:`kernel_cache_info` afterwards.
    """
    wavelength_nm = np.linspace(400.0, 700.0, 64)
    bands = np.exp(-0.5 * ((wavelength_nm[None, :] - np.array([[500.0], [600.0]])) / 10.0) ** 2)
    calibration = Calibration.from_sensitivity(wavelength_nm, bands, ("Nd", "Pr"), baseline_order=1)
    absorbance_ = np.array([1.0, 0.5]) @ calibration.sensitivity + 0.01
    quantify(absorbance_, calibration)
    dark, reference = np.full(64, 100.0, dtype=np.float32), np.full(64, 30000.0, dtype=np.float32)
    counts = (dark + (reference - dark) * 10.0**-absorbance_).astype(np.float32)
    quantify_counts(counts, dark, reference, calibration, saturation_counts=65535.0)
    return kernel_cache_info()
