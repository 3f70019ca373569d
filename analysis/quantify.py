"""Absorbance spectra to concentrations: non-negative analytes, free baseline, numba batch kernel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _nnls_kernel as _kernel
from .absorbance import absorbance
from .calibration import Calibration, model_arrays

__all__ = ["Quantification", "quantify", "quantify_counts",
           "STATUS_OK", "STATUS_TOO_FEW_PIXELS", "STATUS_DEGENERATE", "STATUS_MAX_ITER"]

STATUS_OK = _kernel.STATUS_OK
STATUS_TOO_FEW_PIXELS = _kernel.STATUS_TOO_FEW_PIXELS
STATUS_DEGENERATE = _kernel.STATUS_DEGENERATE
STATUS_MAX_ITER = _kernel.STATUS_MAX_ITER

KKT_TOLERANCE = 1e-10
"""Stop when no held-at-zero analyte's scaled gradient exceeds this times sqrt(y^T W y)."""
PIVOT_TOLERANCE = 1e-12
"""A variable whose scaled Cholesky pivot falls below this is collinear with the free set."""


@dataclass(frozen=True, eq=False)
class Quantification:
    """Concentrations of a batch of N spectra, one column per analyte.

    - ``concentration_g_per_L`` (N, K): >= 0; NaN when the spectrum (or the
      analyte's pixels) had nothing usable left after masking.
    - ``sigma_g_per_L`` (N, K): standard uncertainty from the residual (and the
      calibration's own uncertainty); ``inf`` for an analyte that cannot be told
      apart from the others over the valid pixels; NaN when there is no residual
      degree of freedom.
    - ``residual_rms`` (N,): weighted rms residual absorbance over valid pixels.
    - ``baseline_coefficients`` (N, L): Legendre coefficients of the baseline (absorbance).
    - ``quadratic_coefficients`` (N, Kq): free coefficients of the calibration's
      curvature spectra ((g/L)^2; about the square of the analyte's concentration).
    - ``n_masked_pixels`` (N,): pixels of the model left out of each spectrum's fit.
    - ``status`` (N,): 0 ok, 1 too few valid pixels, 2 baseline undetermined,
      3 active set did not settle (feasible but maybe not optimal).
    """

    analytes: tuple[str, ...]
    concentration_g_per_L: np.ndarray
    sigma_g_per_L: np.ndarray
    residual_rms: np.ndarray
    baseline_coefficients: np.ndarray
    quadratic_coefficients: np.ndarray
    n_masked_pixels: np.ndarray
    status: np.ndarray
    calibration_id: str

    def __len__(self) -> int:
        return self.concentration_g_per_L.shape[0]


def _as_batch(array, name: str, n_pixels: int, dtype=np.float64) -> np.ndarray:
    data = np.asarray(array)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] != n_pixels:
        raise ValueError(f"{name} has shape {np.shape(array)}; expected (P,) or (N, P) with P = {n_pixels} "
                         f"(the calibration's wavelength grid)")
    data = np.ascontiguousarray(data, dtype=dtype)
    # one kernel specialisation: writable C-contiguous arrays only
    return data if data.flags.writeable else data.copy()


def _run(kernel, leading_args, model, calibration: Calibration, n_spectra: int) -> Quantification:
    K = len(calibration.analytes)
    n = model.X.shape[1]
    conc = np.empty((n_spectra, K))
    sigma = np.empty((n_spectra, K))
    base = np.empty((n_spectra, n - K))
    rms = np.empty(n_spectra)
    nmask = np.empty(n_spectra, np.int64)
    status = np.empty(n_spectra, np.int8)
    if n_spectra:
        kernel(*leading_args, model.X, model.XWt, model.w, model.N, model.E_w, K, KKT_TOLERANCE, PIVOT_TOLERANCE,
               model.G, model.model_variance, conc, sigma, base, rms, nmask, status)
    Kq = len(calibration.quadratic_analytes)
    return Quantification(analytes=calibration.analytes, concentration_g_per_L=conc, sigma_g_per_L=sigma,
                          residual_rms=rms, baseline_coefficients=base[:, Kq:], quadratic_coefficients=base[:, :Kq],
                          n_masked_pixels=nmask, status=status, calibration_id=calibration.calibration_id)


def quantify(absorbance, calibration: Calibration) -> Quantification:
    """Concentrations (g/L) of the calibration's analytes in each absorbance spectrum.

    ``absorbance`` is (P,) or (N, P) on the calibration's wavelength grid; NaN or
    inf pixels (masked by :func:`analysis.absorbance`) are left out of that
    spectrum's fit. Fits ``y = S^T c + B b`` by weighted least squares with
    ``c >= 0`` and the baseline ``b`` free. A spectrum with no usable pixel gives
    NaN, never zeros.
    """
    if not isinstance(calibration, Calibration):
        raise TypeError(f"calibration must be an analysis.Calibration, not {type(calibration).__name__}")
    Y = _as_batch(absorbance, "absorbance", calibration.n_pixels)
    return _run(_kernel.quantify_absorbance_batch, (Y,), calibration._model, calibration, Y.shape[0])


def quantify_counts(counts, dark, reference, calibration: Calibration,
                    saturation_counts: float | None = None) -> Quantification:
    """Raw detector counts straight to concentrations: :func:`absorbance` fused into :func:`quantify`.

    ``counts`` (P,) or (N, P); ``dark`` and ``reference`` (P,) are shared by the
    whole batch. Pixels are masked exactly as :func:`analysis.absorbance` masks
    them; the result equals ``quantify(absorbance(counts, dark, reference,
    saturation_counts), calibration)`` to rounding. float32 counts (the wire
    format) and integer counts of up to 16 bits take the fused kernel, which never
    builds the absorbance array; other dtypes take exactly that two-step path.
    """
    if not isinstance(calibration, Calibration):
        raise TypeError(f"calibration must be an analysis.Calibration, not {type(calibration).__name__}")
    P = calibration.n_pixels
    raw = np.asarray(counts)
    fused = raw.dtype == np.float32 or (np.issubdtype(raw.dtype, np.integer) and raw.dtype.itemsize <= 2)
    if not fused:
        return quantify(absorbance(raw, dark, reference, saturation_counts), calibration)
    data = _as_batch(raw, "counts", P, dtype=np.float32)
    D = np.array(dark, dtype=np.float64)
    R = np.array(reference, dtype=np.float64)
    for name, value in (("dark", D), ("reference", R)):
        if value.shape != (P,):
            raise ValueError(f"{name} has shape {value.shape}; expected ({P},): one spectrum for the batch "
                             f"(use absorbance() then quantify() for per-spectrum dark/reference)")
    saturation = np.inf if saturation_counts is None else float(saturation_counts)
    ref_signal = R - D
    with np.errstate(invalid="ignore"):
        ref_ok = np.isfinite(ref_signal) & (ref_signal > 0) & (R < saturation)
    ln_reference = np.zeros(P)
    ln_reference[ref_ok] = np.log(ref_signal[ref_ok])
    model = calibration._model
    if not ref_ok.all():
        model = model_arrays(model.X, np.where(ref_ok, model.w, 0.0), model.G, calibration.model_sigma_g_per_L)
    result = _run(_kernel.quantify_counts_batch, (data, D, ln_reference, saturation),
                  model, calibration, data.shape[0])
    # Pixels lost to the reference are masked in every spectrum: count them as absorbance() would.
    result.n_masked_pixels[:] += int(np.count_nonzero(~ref_ok & (calibration.pixel_weight > 0)))
    return result
