"""Absorbance spectra to concentrations: non-negative analytes, free baseline, numba batch kernel."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from . import _nnls_kernel as _kernel
from ._drift_terms import common_shift_nm, reference_shift_spectrum
from ._model import _Model, model_arrays
from .absorbance import absorbance

if TYPE_CHECKING:  # calibration imports quantify (for its leave-one-out), never the other way round
    from .calibration import Calibration

__all__ = [
    "Quantification",
    "quantify",
    "quantify_counts",
    "LACK_OF_FIT_LIMIT",
    "kernel_cache_info",
    "STATUS_OK",
    "STATUS_TOO_FEW_PIXELS",
    "STATUS_DEGENERATE",
    "STATUS_MAX_ITER",
]

STATUS_OK = _kernel.STATUS_OK
STATUS_TOO_FEW_PIXELS = _kernel.STATUS_TOO_FEW_PIXELS
STATUS_DEGENERATE = _kernel.STATUS_DEGENERATE
STATUS_MAX_ITER = _kernel.STATUS_MAX_ITER

KKT_TOLERANCE = 1e-10
"""Stop when no held-at-zero analyte's scaled gradient exceeds this times sqrt(y^T W y)."""
PIVOT_TOLERANCE = 1e-12
"""A variable whose scaled Cholesky pivot falls below this is collinear with the free set."""
LACK_OF_FIT_LIMIT: float = 2.0
"""Above this lack of fit a spectrum is a model mismatch: the calibration cannot represent it."""
LORENTZIAN_TRIGGER_SIGMAS = 4.0
"""An analyte whose width coefficient is this many sigmas from zero is refitted with its Lorentzian width term."""
LORENTZIAN_TRIGGER_RELATIVE = 1e-6
"""A width coefficient below this share of its analyte's concentration calls for no refit (round-off, noise-free)."""


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
    - ``lack_of_fit`` (N,): the residual's variance over the spectrum's own noise
      (from the differences of neighbouring pixels' residuals): about 1 when the
      model fits; a smooth misfit raises it. Sigmas already grow with it (above 1).
    - ``model_mismatch`` (N,): ``lack_of_fit > LACK_OF_FIT_LIMIT``: the calibration
      cannot represent the spectrum (a new matrix, an unknown absorber); its
      concentrations are not to be trusted however small their sigma.
    - ``baseline_coefficients`` (N, L): Legendre coefficients of the baseline (absorbance).
    - ``quadratic_coefficients`` (N, Kq): free coefficients of the calibration's
      curvature spectra ((g/L)^2; about the square of the analyte's concentration).
    - ``shift_coefficients``, ``width_coefficients`` (N, K): free coefficients of
      the drift spectra (c times the band shift in nm; c times half the relative
      change of the bands' squared widths); ``wavelength_shift_nm`` (N,) the
      common shift they imply (NaN without analytes).
    - ``lorentzian_width_coefficients`` (N, K): coefficients of the Lorentzian width
      spectra (``Calibration.lorentzian_width_spectra``; about c times the relative
      change of the bands' Lorentzian widths), fitted in a second fit of the spectra
      whose width coefficient of that analyte is significant (decision 0069); 0 where
      the term was not used. Not part of ``free_coefficients``, which follow
      ``Calibration.design_matrix``.
    - ``reference_shift_nm`` (N,): how far the sample's wavelength axis had moved from
      the blank's (nm), from the blank's own light (a free column made from the
      reference; NaN when quantified without a reference).
    - ``n_masked_pixels`` (N,): pixels of the model left out of each spectrum's fit.
    - ``status`` (N,): 0 ok, 1 too few valid pixels, 2 baseline undetermined,
      3 active set did not settle (feasible but maybe not optimal).
    """

    analytes: tuple[str, ...]
    concentration_g_per_L: npt.NDArray[np.float64]
    sigma_g_per_L: npt.NDArray[np.float64]
    residual_rms: npt.NDArray[np.float64]
    lack_of_fit: npt.NDArray[np.float64]
    baseline_coefficients: npt.NDArray[np.float64]
    quadratic_coefficients: npt.NDArray[np.float64]
    shift_coefficients: npt.NDArray[np.float64]
    width_coefficients: npt.NDArray[np.float64]
    lorentzian_width_coefficients: npt.NDArray[np.float64]
    wavelength_shift_nm: npt.NDArray[np.float64]
    reference_shift_nm: npt.NDArray[np.float64]
    n_masked_pixels: npt.NDArray[np.int64]
    status: npt.NDArray[np.int8]
    calibration_id: str

    @property
    def free_coefficients(self) -> npt.NDArray[np.float64]:
        """(N, n - K) curvature, baseline, shift and width coefficients: the free columns of the design matrix."""
        return np.hstack(
            [self.quadratic_coefficients, self.baseline_coefficients, self.shift_coefficients, self.width_coefficients]
        )

    def model_absorbance(
        self, calibration: Calibration, reference: npt.ArrayLike | None = None
    ) -> npt.NDArray[np.float64]:
        """(N, P) the absorbance the fit describes (``design_matrix @ [c, free]`` plus the Lorentzian width
        terms), NaN where the fit failed.

        ``reference``: the blank's net counts (R - D) the spectra were quantified with, if any.
        """
        coefficients = np.hstack([self.concentration_g_per_L, self.free_coefficients])
        model = coefficients @ calibration.design_matrix().T
        if np.any(self.lorentzian_width_coefficients):
            model = model + self.lorentzian_width_coefficients @ calibration.lorentzian_width_spectra()
        if reference is not None:
            column = reference_shift_spectrum(calibration.wavelength_nm, reference)
            model = model + np.nan_to_num(self.reference_shift_nm)[:, None] * column[None, :]
        return model

    @property
    def model_mismatch(self) -> npt.NDArray[np.bool_]:
        """(N,) True where the lack of fit exceeds :data:`LACK_OF_FIT_LIMIT` (NaN counts as no verdict)."""
        with np.errstate(invalid="ignore"):
            return np.asarray(self.lack_of_fit > LACK_OF_FIT_LIMIT)

    def __len__(self) -> int:
        return self.concentration_g_per_L.shape[0]


def _as_batch(array: npt.ArrayLike, name: str, n_pixels: int, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    data = np.asarray(array)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] != n_pixels:
        raise ValueError(
            f"{name} has shape {np.shape(array)}; expected (P,) or (N, P) with P = {n_pixels} "
            f"(the calibration's wavelength grid)"
        )
    data = np.ascontiguousarray(data, dtype=dtype)
    # one kernel specialisation: writable C-contiguous arrays only
    return data if data.flags.writeable else data.copy()


def _check_calibration(calibration: object) -> None:
    """A clear TypeError for what is not a Calibration (checked by what quantify uses of it)."""
    if not all(hasattr(calibration, name) for name in ("_model", "analytes", "n_pixels", "design_matrix")):
        raise TypeError(f"calibration must be an analysis.Calibration, not {type(calibration).__name__}")


_MODELS_WITH_REFERENCE: OrderedDict[tuple[str, str, bool], _Model] = OrderedDict()
_MODELS_KEPT = 16  # a first and a second fit's model for each of the last eight blanks


def _model_for(
    calibration: Calibration,
    net_reference: np.ndarray | None,
    reference_ok: np.ndarray | None,
    lorentzian: bool = False,
) -> _Model:
    """The kernel arrays for this calibration: with pixels lost to the reference unweighted, and, with a
    reference, its shift column (free, optional) between the baseline and the drift columns.

    ``lorentzian``: the second fit's model, with the Lorentzian width spectra after the drift spectra.
    """
    base = calibration._lorentzian_model if lorentzian else calibration._model
    weights = base.w if reference_ok is None else np.where(reference_ok, base.w, 0.0)
    gains = calibration._drift_noise
    if net_reference is None:
        if reference_ok is None or reference_ok.all():
            return base
        return model_arrays(base.X, weights, base.G, calibration.model_sigma_g_per_L, gains, lorentzian)
    net_reference = np.ascontiguousarray(net_reference, dtype=np.float64)
    digest = hashlib.sha1(net_reference.tobytes() + weights.tobytes()).hexdigest()
    key = (calibration.calibration_id, digest, lorentzian)
    model = _MODELS_WITH_REFERENCE.get(key)
    if model is None:  # the same blank for a whole trial: its shift column is computed once
        column = reference_shift_spectrum(calibration.wavelength_nm, net_reference)
        K = len(calibration.analytes)
        at = base.X.shape[1] - (3 if lorentzian else 2) * K
        X = np.hstack([base.X[:, :at], column[:, None], base.X[:, at:]])
        model = model_arrays(X, weights, base.G, calibration.model_sigma_g_per_L, gains, lorentzian)
        _MODELS_WITH_REFERENCE[key] = model
        while len(_MODELS_WITH_REFERENCE) > _MODELS_KEPT:
            _MODELS_WITH_REFERENCE.popitem(last=False)
    else:
        _MODELS_WITH_REFERENCE.move_to_end(key)
    return model


@dataclass
class _Fit:
    """What one kernel call leaves: rows of the batch it was given."""

    conc: np.ndarray
    sigma: np.ndarray
    free: np.ndarray
    rms: np.ndarray
    lof: np.ndarray
    width_sigma: np.ndarray
    nmask: np.ndarray
    status: np.ndarray


def _call_kernel(
    kernel,
    batch: np.ndarray,
    extra_args: tuple[object, ...],
    model: _Model,
    K: int,
    n_optional: int,
    first_width: int,
    column_off: np.ndarray,
) -> _Fit:
    n_spectra = batch.shape[0]
    n = model.X.shape[1]
    fit = _Fit(
        conc=np.empty((n_spectra, K)),
        sigma=np.empty((n_spectra, K)),
        free=np.empty((n_spectra, n - K)),
        rms=np.empty(n_spectra),
        lof=np.empty(n_spectra),
        width_sigma=np.empty((n_spectra, K)),
        nmask=np.empty(n_spectra, np.int64),
        status=np.empty(n_spectra, np.int8),
    )
    if n_spectra:
        kernel(
            batch,
            *extra_args,
            model.X,
            model.XWt,
            model.Xs,
            model.w,
            model.sqrt_w,
            model.N,
            model.E_w,
            K,
            n - n_optional,  # first optional column: the reference shift and the drift columns are optional
            column_off,
            first_width,
            KKT_TOLERANCE,
            PIVOT_TOLERANCE,
            model.G,
            model.model_variance,
            fit.conc,
            fit.sigma,
            fit.free,
            fit.rms,
            fit.lof,
            fit.width_sigma,
            fit.nmask,
            fit.status,
        )
    return fit


def _lorentzian_needed(fit: _Fit, K: int, usable: np.ndarray) -> np.ndarray:
    """(N, K) which analytes' width change the first fit shows at LORENTZIAN_TRIGGER_SIGMAS or more.

    The width coefficient against its own sigma (the kernel's, like the analytes':
    from the fit's covariance, widened by the lack of fit); only present analytes
    (c > 0) with a usable Lorentzian width spectrum count.
    """
    width = fit.free[:, -K:]  # the first fit's last free columns are the width spectra
    with np.errstate(invalid="ignore"):
        found = np.abs(width) > LORENTZIAN_TRIGGER_SIGMAS * fit.width_sigma
        material = np.abs(width) > LORENTZIAN_TRIGGER_RELATIVE * fit.conc
        return found & material & (fit.conc > 0) & usable[None, :]


def _run(
    kernel,
    batch: np.ndarray,
    extra_args: tuple[object, ...],
    models: Callable[[bool], _Model],
    calibration: Calibration,
    n_reference: int = 0,
    second_fit: bool = True,
) -> Quantification:
    """Fit the batch; refit the spectra whose width change needs the Lorentzian width terms (decision 0069).

    ``models(lorentzian)`` gives the kernel arrays of the first (False) and the second (True) fit;
    ``second_fit=False`` keeps every spectrum's first fit.
    """
    K = len(calibration.analytes)
    model = models(False)
    n = model.X.shape[1]
    n_spectra = batch.shape[0]
    fit = _call_kernel(kernel, batch, extra_args, model, K, 2 * K + n_reference, n - K, np.zeros((0, n), np.uint8))
    lorentzian = np.zeros((n_spectra, K))
    usable = calibration._lorentzian_usable
    refit = second_fit and n_spectra > 0 and bool(usable.any())
    needed = _lorentzian_needed(fit, K, usable) if refit else np.zeros((0, K), bool)
    rows = np.flatnonzero(needed.any(axis=1)) if needed.size else np.zeros(0, np.int64)
    if rows.size:
        wide = models(True)
        column_off = np.zeros((rows.size, n + K), np.uint8)
        column_off[:, n:] = ~needed[rows]  # the Lorentzian width column of every analyte not found broadened
        subset = batch if rows.size == n_spectra else np.ascontiguousarray(batch[rows])  # no copy when all are
        second = _call_kernel(kernel, subset, extra_args, wide, K, 3 * K + n_reference, n - K, column_off)
        solved = (second.status == STATUS_OK) | (second.status == STATUS_MAX_ITER)
        rows, keep = rows[solved], np.flatnonzero(solved)
        fit.conc[rows] = second.conc[keep]
        fit.sigma[rows] = second.sigma[keep]
        fit.free[rows] = second.free[keep, : n - K]
        lorentzian[rows] = second.free[keep, n - K :]
        fit.rms[rows] = second.rms[keep]
        fit.lof[rows] = second.lof[keep]
        fit.status[rows] = second.status[keep]
    Kq = len(calibration.quadratic_analytes)
    drift = n - 3 * K  # position of the first drift coefficient among the free ones
    shift, width = fit.free[:, drift : drift + K], fit.free[:, drift + K :]
    reference_shift = fit.free[:, drift - 1].copy() if n_reference else np.full(n_spectra, np.nan)
    return Quantification(
        analytes=calibration.analytes,
        concentration_g_per_L=fit.conc,
        sigma_g_per_L=fit.sigma,
        residual_rms=fit.rms,
        lack_of_fit=fit.lof,
        baseline_coefficients=fit.free[:, Kq : drift - n_reference],
        quadratic_coefficients=fit.free[:, :Kq],
        shift_coefficients=shift,
        width_coefficients=width,
        lorentzian_width_coefficients=lorentzian,
        wavelength_shift_nm=common_shift_nm(fit.conc, shift, np.diag(model.N)[n - 2 * K : n - K]),
        reference_shift_nm=reference_shift,
        n_masked_pixels=fit.nmask,
        status=fit.status,
        calibration_id=calibration.calibration_id,
    )


def quantify(
    absorbance: npt.ArrayLike, calibration: Calibration, reference: npt.ArrayLike | None = None
) -> Quantification:
    """Concentrations (g/L) of the calibration's analytes in each absorbance spectrum.

    ``absorbance`` is (P,) or (N, P) on the calibration's wavelength grid; NaN or
    inf pixels (masked by :func:`analysis.absorbance`) are left out of that
    spectrum's fit. Fits ``y = S^T c + Q^T u + D^T d + B b`` by weighted least
    squares with ``c >= 0`` and the curvature ``u``, drift ``d`` (wavelength shift
    and band width per analyte) and baseline ``b`` free; a spectrum in which an
    analyte's width coefficient is significant (``LORENTZIAN_TRIGGER_SIGMAS``) is
    fitted again with that analyte's Lorentzian width spectrum as one more free
    column (``lorentzian_width_coefficients``; decision 0069). A spectrum with no
    usable pixel gives NaN, never zeros. ``reference`` (P,), the blank's net counts (R - D)
    the absorbance was computed against, adds the blank's shift column: a sample
    measured on a wavelength axis that moved since the blank then still fits
    (``reference_shift_nm``).
    """
    _check_calibration(calibration)
    Y = _as_batch(absorbance, "absorbance", calibration.n_pixels)
    net = None
    if reference is not None:
        net = np.asarray(reference, dtype=np.float64)
        if net.shape != (calibration.n_pixels,):
            raise ValueError(f"reference has shape {net.shape}; expected ({calibration.n_pixels},)")
    n_reference = 0 if net is None else 1
    return _run(
        _kernel.quantify_absorbance_batch,
        Y,
        (),
        lambda lorentzian: _model_for(calibration, net, None, lorentzian),
        calibration,
        n_reference,
    )


def _first_fit(absorbance: np.ndarray, calibration: Calibration) -> Quantification:
    """:func:`quantify` without the second fit: the model of the standards themselves, whose band widths
    are the calibration's by definition (its leave-one-out, :func:`analysis.calibrate`)."""
    Y = _as_batch(absorbance, "absorbance", calibration.n_pixels)
    return _run(
        _kernel.quantify_absorbance_batch,
        Y,
        (),
        lambda lorentzian: _model_for(calibration, None, None, lorentzian),
        calibration,
        0,
        second_fit=False,
    )


def quantify_counts(
    counts: npt.ArrayLike,
    dark: npt.ArrayLike,
    reference: npt.ArrayLike,
    calibration: Calibration,
    saturation_counts: float | None = None,
) -> Quantification:
    """Raw detector counts straight to concentrations: :func:`absorbance` fused into :func:`quantify`.

    ``counts`` (P,) or (N, P); ``dark`` and ``reference`` (P,) are shared by the
    whole batch. Pixels are masked exactly as :func:`analysis.absorbance` masks
    them; the result equals ``quantify(absorbance(counts, dark, reference,
    saturation_counts), calibration)`` to rounding. float32 counts (the wire
    format) and integer counts of up to 16 bits take the fused kernel, which never
    builds the absorbance array; other dtypes take exactly that two-step path.
    The reference also gives the fit its shift column (see :func:`quantify`).
    """
    _check_calibration(calibration)
    P = calibration.n_pixels
    raw = np.asarray(counts)
    fused = raw.dtype == np.float32 or (np.issubdtype(raw.dtype, np.integer) and raw.dtype.itemsize <= 2)
    D = np.array(dark, dtype=np.float64)
    R = np.array(reference, dtype=np.float64)
    for name, value in (("dark", D), ("reference", R)):
        if value.shape != (P,):
            raise ValueError(
                f"{name} has shape {value.shape}; expected ({P},): one spectrum for the batch "
                f"(use absorbance() then quantify() for per-spectrum dark/reference)"
            )
    saturation = np.inf if saturation_counts is None else float(saturation_counts)
    ref_signal = R - D
    with np.errstate(invalid="ignore"):
        ref_ok = np.isfinite(ref_signal) & (ref_signal > 0) & (R < saturation)
    net_reference = np.where(ref_ok, ref_signal, np.nan)  # the blank's light where it is usable
    if not fused:
        return quantify(absorbance(raw, dark, reference, saturation_counts), calibration, reference=net_reference)
    data = _as_batch(raw, "counts", P, dtype=np.float32)
    ln_reference = np.zeros(P)
    ln_reference[ref_ok] = np.log(ref_signal[ref_ok])
    result = _run(
        _kernel.quantify_counts_batch,
        data,
        (D, ln_reference, saturation),
        lambda lorentzian: _model_for(calibration, net_reference, ref_ok, lorentzian),
        calibration,
        1,
    )
    # Pixels lost to the reference are masked in every spectrum: count them as absorbance() would.
    result.n_masked_pixels[:] += int(np.count_nonzero(~ref_ok & (calibration.pixel_weight > 0)))
    return result


def kernel_cache_info() -> dict[str, object]:
    """Where this process's compiled analysis kernels come from: numba cache location, hits and misses.

    For a worker's warm-up report: ``numba_cache`` is the cache kind (see
    ``analysis._numba_cache.cache_location``), ``numba_cache_dir`` its folder,
    ``cache_hits`` / ``cache_misses`` the batch kernel's loads from and
    compilations into it so far in this process.
    """
    from ._numba_cache import cache_location

    kind, directory = cache_location(_kernel.__file__)
    stats = _kernel.quantify_absorbance_batch.stats
    return {
        "numba_cache": kind,
        "numba_cache_dir": directory,
        "cache_hits": sum(stats.cache_hits.values()),
        "cache_misses": sum(stats.cache_misses.values()),
    }
