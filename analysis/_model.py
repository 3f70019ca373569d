"""The arrays the quantification kernels work on, built from a design matrix and pixel weights.

Private: shared by :mod:`analysis.calibration` (which builds them for a
calibration) and :mod:`analysis.quantify` (which rebuilds them when a spectrum
batch loses pixels to its reference), so that neither imports the other's module.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._drift_terms import DriftNoise

__all__ = ["_Model", "model_arrays"]


@dataclass(frozen=True)
class _Model:
    X: np.ndarray  # (P, n) = [S^T | Q^T | B | D^T], D: shift, width (and Lorentzian width) spectra
    XWt: np.ndarray  # (n, P) = (W X)^T
    Xs: np.ndarray  # (P, n) = sqrt(W) X
    w: np.ndarray  # (P,)
    sqrt_w: np.ndarray  # (P,)
    N: np.ndarray  # (n, n) = X^T W X
    E_w: np.ndarray  # (n, n): expected noise energy of S per unit pixel weight (calibrated block)
    G: np.ndarray  # (K + Kq, K + Kq)
    model_variance: np.ndarray  # (K,) (g/L)^2


def model_arrays(
    X: np.ndarray,
    w: np.ndarray,
    G: np.ndarray,
    model_sigma: np.ndarray | None = None,
    drift_gains: DriftNoise | None = None,
    lorentzian: bool = False,
) -> _Model:
    """Arrays the quantification kernels use for design ``X`` (P, n), weights ``w`` (P,) and G (K + Kq, K + Kq).

    ``G`` is the per-pixel covariance factor of the sensitivity error (weighted
    units); its expected energy over the used pixels, ``(P_used - L) * G``, is
    what noise in S adds to ``S W S^T``; ``E_w`` is that per unit pixel weight.
    With ``drift_gains`` (:func:`analysis._drift_terms.drift_noise`) the
    last 2K columns of X are the analytes' drift spectra, derived from S (the last
    3K with ``lorentzian``: shift, width and Lorentzian width spectra): they carry
    S's noise through the derivative filters, and their share of that energy is
    part of ``E_w`` too.
    """
    # fresh writable C arrays: numba compiles a kernel per array type, read-only included
    X = np.array(X, dtype=np.float64, order="C")
    w = np.array(w, dtype=np.float64, order="C")
    G = np.array(G, dtype=np.float64, order="C")
    n_calibrated = G.shape[0]  # analytes and curvature terms: the columns calibrated from the standards
    n_model_sigma = n_calibrated if model_sigma is None else len(model_sigma)
    n_drift = 0 if drift_gains is None else (3 if lorentzian else 2) * n_model_sigma
    XW = X * w[:, None]
    N = X.T @ XW
    N = 0.5 * (N + N.T)
    E_w = np.zeros_like(N)
    n_used = int(np.count_nonzero(w))
    if n_used and w.sum() > 0:
        n_baseline = X.shape[1] - n_calibrated - n_drift
        energy = max(n_used - n_baseline, 0) / w.sum()
        E_w[:n_calibrated, :n_calibrated] = energy * G
        if n_drift and drift_gains is not None:  # n_drift > 0 only with drift_gains
            _add_drift_noise(E_w, G, n_model_sigma, drift_gains, energy, lorentzian)
            unused = ~np.any(X != 0.0, axis=0)  # a drift spectrum set to zero carries no noise either
            E_w[unused, :] = 0.0
            E_w[:, unused] = 0.0
    model_variance = np.zeros(n_calibrated) if model_sigma is None else np.array(model_sigma, np.float64) ** 2
    model_variance = np.ascontiguousarray(model_variance)
    sqrt_w = np.sqrt(w)
    return _Model(
        X=X,
        XWt=np.ascontiguousarray(XW.T),
        Xs=np.ascontiguousarray(X * sqrt_w[:, None]),
        w=w,
        sqrt_w=sqrt_w,
        N=np.ascontiguousarray(N),
        E_w=E_w,
        G=G,
        model_variance=model_variance,
    )


def _add_drift_noise(
    E_w: np.ndarray, G: np.ndarray, K: int, gains: DriftNoise, energy: float, lorentzian: bool = False
) -> None:
    """The drift columns' share of the noise energy: S's noise through the shift and width filters (and the Lorentzian).

    The shift filter is odd (no correlation with S's own noise, nor with the
    even filters'); the width and Lorentzian width filters are even and correlate
    with S through their middle coefficients, and with each other.
    """
    n = E_w.shape[0]
    calibrated = np.arange(G.shape[0])
    first = n - (3 if lorentzian else 2) * K
    shift = np.arange(first, first + K)
    width = np.arange(first + K, first + 2 * K)
    G_K = G[:K, :K]
    E_w[np.ix_(shift, shift)] = energy * gains.shift_gain * G_K
    E_w[np.ix_(width, width)] = energy * gains.width_gain * G_K
    cross = energy * G[:, :K] * gains.width_centre[None, :]  # calibrated columns x width columns
    E_w[np.ix_(calibrated, width)] = cross
    E_w[np.ix_(width, calibrated)] = cross.T
    if lorentzian:
        wide = np.arange(first + 2 * K, n)
        E_w[np.ix_(wide, wide)] = energy * gains.lorentzian_gain * G_K
        cross = energy * G[:, :K] * gains.lorentzian_centre[None, :]
        E_w[np.ix_(calibrated, wide)] = cross
        E_w[np.ix_(wide, calibrated)] = cross.T
        both = energy * gains.width_lorentzian_gain * G_K  # width of row analyte x Lorentzian of column one
        E_w[np.ix_(width, wide)] = both
        E_w[np.ix_(wide, width)] = both.T
