"""Detector counts to absorbance, with bad pixels masked as NaN."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["absorbance"]


def absorbance(
    counts: npt.ArrayLike, dark: npt.ArrayLike, reference: npt.ArrayLike, saturation_counts: float | None = None
) -> npt.NDArray[np.float64]:
    """Absorbance ``A = -log10((S - D) / (R - D))`` of sample counts S against reference R and dark D.

    ``counts`` is one spectrum (P,) or a batch (N, P); ``dark`` and ``reference``
    are (P,) (shared by the batch) or the shape of ``counts``. Returns float64 of
    the shape of ``counts``. A pixel is NaN (masked, never a number) when S or R
    is saturated (``>= saturation_counts``), when ``S - D <= 0`` or
    ``R - D <= 0``, or when any input is NaN or infinite there.
    """
    S = np.asarray(counts, dtype=np.float64)
    if S.ndim not in (1, 2):
        raise ValueError(f"counts must be (P,) or (N, P); got shape {S.shape}")
    P = S.shape[-1]
    arrays: dict[str, npt.NDArray[np.float64]] = {}
    for name, value in (("dark", dark), ("reference", reference)):
        data = np.asarray(value, dtype=np.float64)
        if data.shape not in ((P,), S.shape):
            raise ValueError(f"{name} has shape {data.shape}; expected ({P},) or {S.shape} like counts")
        arrays[name] = data
    D, R = arrays["dark"], arrays["reference"]
    signal = S - D
    ref_signal = R - D
    with np.errstate(invalid="ignore"):
        ref_valid = np.isfinite(ref_signal) & (ref_signal > 0)
        valid = np.isfinite(signal) & (signal > 0) & ref_valid
        if saturation_counts is not None:
            ref_valid &= R < saturation_counts
            valid &= (S < saturation_counts) & ref_valid
    # log of each term rather than of the ratio: no overflow or underflow of S/R; the
    # reference's log is taken once per pixel when it is shared by the batch
    A = np.full(signal.shape, np.nan)
    np.log10(signal, out=A, where=valid)
    ref_log = np.log10(np.where(ref_valid, ref_signal, 1.0))
    np.subtract(ref_log, A, out=A, where=valid)
    return A
