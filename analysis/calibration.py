"""Calibration from standards: per-pixel sensitivity by classical least squares (CLS).

Model of standard ``m`` (absorbance of M standards on P pixels, K analytes)::

    A[m, p] = sum_k C[m, k] * S[k, p] + sum_l beta[m, l] * B[p, l] + noise

``S`` (K, P) is the sensitivity in absorbance per g/L; ``B`` (P, L) is a
Legendre polynomial of order ``baseline_order`` in wavelength normalised to
[-1, 1]; ``beta`` is a baseline fitted **per standard** (lamp drift, cell
position and scattering differ between fillings of the cell, exactly as they do
between unknowns, where :func:`analysis.quantify` fits the baseline freely).
Eliminating ``beta`` projects every standard onto the (weighted) complement of
the baseline space; ``S`` is then an ordinary per-pixel regression on ``C`` and
comes out orthogonal to the baseline.

Pixels are weighted by the inverse of their noise variance, estimated from the
pixel-to-pixel differences of the standards' residuals (two passes, smoothed
along the spectrum): the blue end of a tungsten lamp is far noisier than its
red end. Optional curvature terms (``quadratic=``) add ``C[m, k]^2 * Q[k, p]``
for analytes whose strong bands bend away from Beer-Lambert. The calibration
also carries its own uncertainty (``sensitivity_variance_factor``) and the
model error seen in leave-one-out (``model_sigma_g_per_L``); decisions
0030-0037 in docs/decisions say why.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import numpy.typing as npt

from ._drift_terms import DriftNoise, drift_noise, drift_spectra, lorentzian_width_spectra
from ._model import _Model, model_arrays
from .elements import UnknownElementError, element
from .quantify import _first_fit

if TYPE_CHECKING:  # h5py is imported where a file is read or written
    import h5py

__all__ = ["Calibration", "CalibrationQuality", "Standards", "baseline_basis", "calibrate"]

FILE_FORMAT = "rem-daq calibration"
FILE_FORMAT_VERSION = 1
DETECTION_LIMIT_SIGMAS = 3.0
"""Detection limit = 3 standard deviations of the concentration estimated for a blank."""
MIN_SENSITIVITY_SIGNIFICANCE = 5.0
"""An analyte whose sensitivity is not this many sigmas above pure noise is refused."""
_RANK_TOLERANCE = 1e-10


def _software_version() -> str:
    try:
        return importlib.metadata.version("rem-daq")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _readonly(array: npt.ArrayLike, dtype: npt.DTypeLike = np.float64) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True, order="C")
    out.setflags(write=False)
    return out


def baseline_basis(wavelength_nm: npt.ArrayLike, order: int | None) -> npt.NDArray[np.float64]:
    """Baseline columns (P, order+1): Legendre polynomials of wavelength scaled to [-1, 1].

    ``order=None`` gives (P, 0): no baseline.
    """
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    if order is None:
        return np.zeros((wl.size, 0))
    span = wl.max() - wl.min()
    x = 2.0 * (wl - wl.min()) / span - 1.0 if span > 0 else np.zeros_like(wl)
    # float64 already (x is): asarray returns it as is, typed as such (numpy's stubs say floating)
    return np.asarray(np.polynomial.legendre.legvander(x, order), dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Standards:
    """The standards a calibration was made from (its provenance)."""

    names: tuple[str, ...]
    concentration_g_per_L: npt.NDArray[np.float64]  # (M, K)
    absorbance: npt.NDArray[np.float64]  # (M, P)


@dataclass(frozen=True, eq=False)
class CalibrationQuality:
    """How good a calibration is, in the units a chemist reads.

    - ``fit_residual_rms`` (M,): rms residual absorbance of each standard's fit.
    - ``loo_error_g_per_L`` (M, K): predicted minus true concentration of each
      standard when it is left out of the calibration (NaN when the remaining
      standards cannot calibrate every analyte).
    - ``loo_rmse_g_per_L`` (K,): leave-one-out root-mean-square error per analyte.
    - ``detection_limit_g_per_L`` (K,): 3 x the standard deviation of the
      concentration estimated for a blank measured like the standards.
    - ``calibrated_range_g_per_L`` (K, 2): lowest and highest standard concentration.
    - ``noise_absorbance`` (P,): estimated noise standard deviation per pixel (smoothed).
    - ``noise_scale_absorbance``: pooled noise of the standards (weighted).
    - ``sensitivity_significance`` (K,): how many standard deviations each
      fitted sensitivity's energy lies above what pure noise would give
      (chi-square test; ~N(0, 1) for an analyte with no band in range).
    - ``condition_number``: of the weighted model matrix [S^T | Q^T | B] with
      unit-norm columns (how distinct the spectra are; 1 = orthogonal).
    - ``residual_dof``: degrees of freedom of the residual.
    - ``warnings``: what the standards' design does not support (decision 0059):
      a curvature analyte whose product-like standards (>= 95 % of the total)
      leave gaps of more than a third of its range, or an impurity whose own
      curvature the design lets leak into a curvature analyte's terms. Empty
      when nothing was found; calibrations read from files older than the check
      have none.
    """

    fit_residual_rms: npt.NDArray[np.float64]
    loo_error_g_per_L: npt.NDArray[np.float64]
    loo_rmse_g_per_L: npt.NDArray[np.float64]
    detection_limit_g_per_L: npt.NDArray[np.float64]
    calibrated_range_g_per_L: npt.NDArray[np.float64]
    noise_absorbance: npt.NDArray[np.float64]
    noise_scale_absorbance: float
    sensitivity_significance: npt.NDArray[np.float64]
    condition_number: float
    residual_dof: float
    warnings: tuple[str, ...] = ()

    def summary(self, analytes: Iterable[str]) -> str:
        """A short text table: one line per analyte, then the design warnings (if any)."""
        lines = ["analyte  range g/L          LOO RMSE g/L  LOD g/L   significance"]
        for k, symbol in enumerate(analytes):
            low, high = self.calibrated_range_g_per_L[k]
            lines.append(
                f"{symbol:<8} {low:7.4g} .. {high:<7.4g}  {self.loo_rmse_g_per_L[k]:12.4g}  "
                f"{self.detection_limit_g_per_L[k]:8.3g}  {self.sensitivity_significance[k]:8.1f}"
            )
        lines.extend(f"warning: {text}" for text in self.warnings)
        return "\n".join(lines)


@dataclass(frozen=True, eq=False)
class Calibration:
    """What :func:`analysis.quantify` needs to turn absorbance into concentrations.

    ``sensitivity`` (K, P) is absorbance per g/L of each analyte; the baseline is a
    Legendre polynomial of ``baseline_order`` (None: no baseline). ``pixel_weight``
    (P,) is the relative inverse noise variance (mean 1; 0 = pixel not used).
    ``quadratic_analytes`` (Kq of the analytes) also have a curvature spectrum
    ``quadratic_sensitivity`` (Kq, P), absorbance per (g/L)^2: the departure from
    Beer-Lambert of strong bands (stray light, slit). In quantification its
    coefficient is a free variable, like the baseline, so the model stays linear.
    ``sensitivity_variance_factor`` G (K + Kq, K + Kq) carries the calibration's
    own uncertainty: a prediction at coefficients v has a per-pixel sensitivity
    error of variance ``v^T G v`` (absorbance^2, in weighted units).
    ``model_sigma_g_per_L`` (K,) is the part of the leave-one-out error that the
    noise does not explain (non-linearity such as stray light, and other model
    error); :func:`analysis.quantify` adds it in quadrature to every sigma.
    ``calibration_id`` is a hash of the model content (not of the timestamp).
    """

    analytes: tuple[str, ...]
    wavelength_nm: npt.NDArray[np.float64]
    sensitivity: npt.NDArray[np.float64]
    baseline_order: int | None
    pixel_weight: npt.NDArray[np.float64]
    sensitivity_variance_factor: npt.NDArray[np.float64]
    model_sigma_g_per_L: npt.NDArray[np.float64] | None = None
    quadratic_analytes: tuple[str, ...] = ()
    quadratic_sensitivity: npt.NDArray[np.float64] | None = None
    quality: CalibrationQuality | None = None
    standards: Standards | None = None
    created_utc: str = ""
    software_version: str = ""
    calibration_id: str = field(init=False)

    def __post_init__(self) -> None:
        analytes = _check_analytes(self.analytes)
        wl = _readonly(self.wavelength_nm)
        sens = _readonly(self.sensitivity)
        quadratic = tuple(self.quadratic_analytes)
        unknown = [a for a in quadratic if a not in analytes]
        if unknown or len(set(quadratic)) != len(quadratic):
            raise ValueError(f"quadratic_analytes {quadratic} must be distinct members of analytes {analytes}")
        curvature = _readonly(
            np.zeros((0, wl.size)) if self.quadratic_sensitivity is None else self.quadratic_sensitivity
        )
        if curvature.shape != (len(quadratic), wl.size) or not np.all(np.isfinite(curvature)):
            raise ValueError(
                f"quadratic_sensitivity has shape {curvature.shape}; expected (Kq, P) = "
                f"({len(quadratic)}, {wl.size}) of finite values"
            )
        n_calibrated = len(analytes) + len(quadratic)
        weight = _readonly(self.pixel_weight)
        gmat = _readonly(self.sensitivity_variance_factor)
        model_sigma = _readonly(
            np.zeros(len(analytes)) if self.model_sigma_g_per_L is None else self.model_sigma_g_per_L
        )
        if wl.ndim != 1 or not np.all(np.isfinite(wl)):
            raise ValueError(f"wavelength_nm must be a 1-D array of finite values; got shape {wl.shape}")
        if sens.shape != (len(analytes), wl.size):
            raise ValueError(f"sensitivity has shape {sens.shape}; expected (K, P) = ({len(analytes)}, {wl.size})")
        if not np.all(np.isfinite(sens)):
            raise ValueError("sensitivity contains NaN or inf")
        if weight.shape != wl.shape or not np.all(np.isfinite(weight)) or np.any(weight < 0):
            raise ValueError(f"pixel_weight must be (P,) = ({wl.size},) finite and >= 0")
        if not np.any(weight > 0):
            raise ValueError("pixel_weight is zero everywhere: no pixel to fit")
        if gmat.shape != (n_calibrated, n_calibrated):
            raise ValueError(
                f"sensitivity_variance_factor must be (K + Kq, K + Kq) = ({n_calibrated}, "
                f"{n_calibrated}); got {gmat.shape}"
            )
        if model_sigma.shape != (len(analytes),) or not np.all(np.isfinite(model_sigma)) or np.any(model_sigma < 0):
            raise ValueError(f"model_sigma_g_per_L must be (K,) finite and >= 0; got {model_sigma!r}")
        order = _check_baseline_order(self.baseline_order, int(np.count_nonzero(weight)))
        for name, value in (
            ("analytes", analytes),
            ("wavelength_nm", wl),
            ("sensitivity", sens),
            ("pixel_weight", weight),
            ("sensitivity_variance_factor", gmat),
            ("model_sigma_g_per_L", model_sigma),
            ("quadratic_analytes", quadratic),
            ("quadratic_sensitivity", curvature),
            ("baseline_order", order),
        ):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "calibration_id", self._content_hash())

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_sensitivity(
        cls,
        wavelength_nm: npt.ArrayLike,
        sensitivity: npt.ArrayLike,
        analytes: Sequence[str],
        baseline_order: int | None = 2,
        pixel_weight: npt.ArrayLike | None = None,
    ) -> Calibration:
        """A calibration from known sensitivities (e.g. a reference library), without standards.

        It has no quality report and no calibration uncertainty (G = 0).
        """
        wl = np.asarray(wavelength_nm, dtype=np.float64)
        weight = np.ones(wl.shape) if pixel_weight is None else np.asarray(pixel_weight, dtype=np.float64)
        k = len(tuple(analytes))
        return cls(
            analytes=tuple(analytes),
            wavelength_nm=wl,
            sensitivity=cast("npt.NDArray[np.float64]", sensitivity),  # __post_init__ makes it a float64 array
            baseline_order=baseline_order,
            pixel_weight=weight,
            sensitivity_variance_factor=np.zeros((k, k)),
            created_utc=_utc_now(),
            software_version=_software_version(),
        )

    # ------------------------------------------------------------------ model

    @property
    def n_pixels(self) -> int:
        return self.wavelength_nm.size

    def baseline(self) -> npt.NDArray[np.float64]:
        """The baseline columns B (P, L) of this calibration."""
        return baseline_basis(self.wavelength_nm, self.baseline_order)

    def drift_spectra(self) -> npt.NDArray[np.float64]:
        """D (2K, P): each analyte's shift spectrum (-dS/dl), then its width spectrum (s^2 d2S/dl2).

        A drift spectrum that is mostly the noise S carries (a weak or very broad
        band from noisy standards) is zero: it would fit noise, not drift.
        """
        return _usable_drift_spectra(
            self.wavelength_nm,
            self.sensitivity,
            self.pixel_weight,
            self.sensitivity_variance_factor,
            self.baseline_order,
        )

    def lorentzian_width_spectra(self) -> npt.NDArray[np.float64]:
        """H (K, P): each analyte's Lorentzian width spectrum, s(l) (-|d/dl|) S (decision 0069).

        What a change of the bands' Lorentzian (homogeneous) widths adds, which the
        width spectrum (exact for Gaussian bands) does not represent. quantify fits it,
        as a free column after the drift spectra, only for an analyte whose width
        coefficient the first fit finds significant. Zero for an analyte whose width
        spectrum is zero, or where it would be mostly the noise S carries.
        """
        return _usable_lorentzian_spectra(
            self.wavelength_nm,
            self.sensitivity,
            self.pixel_weight,
            self.sensitivity_variance_factor,
            self.baseline_order,
            self.drift_spectra(),
        )

    def design_matrix(self) -> npt.NDArray[np.float64]:
        """X = [S^T | Q^T | B | D^T] (P, K + Kq + L + 2K): analytes (>= 0), then free columns.

        The free columns are the curvature spectra, the baseline, and the drift
        spectra (wavelength shift and band width of each analyte, see
        :meth:`drift_spectra`), which are held at zero where they are degenerate.
        """
        quadratic = cast("npt.NDArray[np.float64]", self.quadratic_sensitivity)  # (Kq, P) after __post_init__
        return _design(self.sensitivity, quadratic, self.drift_spectra(), self.baseline())

    @cached_property
    def _model(self) -> _Model:
        return model_arrays(
            self.design_matrix(),
            self.pixel_weight,
            self.sensitivity_variance_factor,
            self.model_sigma_g_per_L,
            self._drift_noise,
        )

    @cached_property
    def _lorentzian_model(self) -> _Model:
        """The design matrix with the Lorentzian width spectra appended: the model of quantify's second fit."""
        return model_arrays(
            np.hstack([self.design_matrix(), self.lorentzian_width_spectra().T]),
            self.pixel_weight,
            self.sensitivity_variance_factor,
            self.model_sigma_g_per_L,
            self._drift_noise,
            lorentzian=True,
        )

    @cached_property
    def _lorentzian_usable(self) -> np.ndarray:
        """(K,) which analytes have a (nonzero) Lorentzian width spectrum."""
        K = len(self.analytes)
        return np.any(self._lorentzian_model.X[:, -K:] != 0, axis=0)

    @cached_property
    def _drift_noise(self) -> DriftNoise:
        """How S's noise passes into the drift spectra (computed once: quantify rebuilds models with it)."""
        return drift_noise(self.wavelength_nm, self.sensitivity)

    # ------------------------------------------------------------------ persistence

    def _content_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(
            ("|".join(self.analytes) + f"|{self.baseline_order}|" + "|".join(self.quadratic_analytes) + "|").encode()
        )
        for array in (
            self.wavelength_nm,
            self.sensitivity,
            self.pixel_weight,
            self.sensitivity_variance_factor,
            self.model_sigma_g_per_L,
            self.quadratic_sensitivity,
        ):
            digest.update(np.ascontiguousarray(array, dtype="<f8").tobytes())
        return "cal-" + digest.hexdigest()[:16]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write this calibration to an HDF5 file (layout in docs/analysis.md); overwrites ``path``."""
        _write(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        """Read a calibration written by :meth:`save`; checks the format and the content hash."""
        return _read(cls, path)


MAX_DRIFT_NOISE_FRACTION = 0.25
"""A drift spectrum whose expected noise energy exceeds this share of its energy is not used."""


def _usable_drift_spectra(
    wavelength_nm: np.ndarray, S: np.ndarray, w: np.ndarray, G: np.ndarray, baseline_order: int | None
) -> np.ndarray:
    D = drift_spectra(wavelength_nm, S)
    K = S.shape[0]
    if not np.any(G):
        return D
    gains = drift_noise(wavelength_nm, S)
    n_used = int(np.count_nonzero(w))
    n_baseline = 0 if baseline_order is None else baseline_order + 1
    variance = np.diag(G)[:K] * max(n_used - n_baseline, 0)  # per unit filter gain, summed over the pixels
    noise = np.r_[variance * gains.shift_gain, variance * np.diag(gains.width_gain)]
    energy = np.sum(w * D * D, axis=1)
    noisy = noise > MAX_DRIFT_NOISE_FRACTION * energy
    D[noisy] = 0.0
    return D


def _usable_lorentzian_spectra(
    wavelength_nm: np.ndarray,
    S: np.ndarray,
    w: np.ndarray,
    G: np.ndarray,
    baseline_order: int | None,
    drift: np.ndarray,
) -> np.ndarray:
    """Lorentzian width spectra, zero for an analyte without a usable width spectrum or where noise dominates."""
    L = lorentzian_width_spectra(wavelength_nm, S)
    K = S.shape[0]
    L[~np.any(drift[K:] != 0, axis=1)] = 0.0  # no width term, no width change to find
    if not np.any(G):
        return L
    gains = drift_noise(wavelength_nm, S)
    n_used = int(np.count_nonzero(w))
    n_baseline = 0 if baseline_order is None else baseline_order + 1
    noise = np.diag(G)[:K] * max(n_used - n_baseline, 0) * np.diag(gains.lorentzian_gain)
    L[noise > MAX_DRIFT_NOISE_FRACTION * np.sum(w * L * L, axis=1)] = 0.0
    return L


class _CalibrationArgs(TypedDict):
    """The keyword arguments of :class:`Calibration` that a calibration and its leave-one-out folds share."""

    analytes: tuple[str, ...]
    wavelength_nm: npt.NDArray[np.float64]
    baseline_order: int | None
    pixel_weight: npt.NDArray[np.float64]
    quadratic_analytes: tuple[str, ...]
    created_utc: str
    software_version: str


def _design(S: np.ndarray, Q: np.ndarray, D: np.ndarray, B: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.hstack([S.T, Q.T, B, D.T]))


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------------- validation


def _check_analytes(analytes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(analytes, str):
        raise ValueError(f"analytes must be a sequence of element symbols, not the string {analytes!r}")
    symbols = tuple(analytes)
    if not symbols:
        raise ValueError("analytes is empty: give at least one element symbol")
    for index, symbol in enumerate(symbols):
        try:
            element(symbol)
        except UnknownElementError as error:
            raise ValueError(f"analytes[{index}]: {error}") from None
    duplicates = sorted({s for s in symbols if symbols.count(s) > 1})
    if duplicates:
        raise ValueError(f"analytes lists {', '.join(duplicates)} more than once")
    return symbols


def _check_baseline_order(order, n_pixels: int) -> int | None:
    if order is None:
        return None
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 0:
        raise ValueError(f"baseline_order must be None or an integer >= 0; got {order!r}")
    if order + 1 > n_pixels // 4:
        raise ValueError(f"baseline_order {order} is too high for {n_pixels} usable pixels")
    return int(order)


def _describe_dependence(C: np.ndarray, analytes) -> str:
    """Name the analytes whose concentrations are linearly dependent across the standards."""
    zero = [a for k, a in enumerate(analytes) if not np.any(C[:, k])]
    if zero:
        return f"{', '.join(zero)} {'is' if len(zero) == 1 else 'are'} zero in every standard"
    _, sv, vt = np.linalg.svd(C / np.linalg.norm(C, axis=0), full_matrices=False)
    null = vt[-1]
    involved = [f"{null[k]:+.3g}*{a}" for k, a in enumerate(analytes) if abs(null[k]) > 0.05]
    return (
        f"the concentrations are linearly dependent across the standards "
        f"({' '.join(involved)} = 0 in every standard, relative to each analyte's scale)"
    )


# ---------------------------------------------------------------------- fitting


def _project_out_baseline(A: np.ndarray, B: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Rows of A minus their weighted least-squares fit by the columns of B."""
    if B.shape[1] == 0:
        return A.copy()
    BW = B * w[:, None]
    beta = np.linalg.solve(B.T @ BW, BW.T @ A.T)  # (L, M)
    return A - (B @ beta).T


def _cls(A, C, B, w):
    """Sensitivity (K, P) and residuals (M, P) of the per-standard-baseline CLS fit."""
    A_proj = _project_out_baseline(A, B, w)
    S, *_ = np.linalg.lstsq(C, A_proj, rcond=None)
    return S, A_proj - C @ S


def _smooth(values: np.ndarray, used: np.ndarray, half_width: int) -> np.ndarray:
    kernel = np.ones(2 * half_width + 1)
    total = np.convolve(np.where(used, values, 0.0), kernel, mode="same")
    count = np.convolve(used.astype(float), kernel, mode="same")
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def _pixel_noise_variance(E, used, dof_per_pixel):
    """Noise variance per pixel from the residuals' pixel-to-pixel differences (unsmoothed).

    Noise is independent from pixel to pixel; model misfit (a band that is not
    quite linear in concentration, say) is smooth along the spectrum. Half the
    mean squared first difference sees the former and hardly the latter, so the
    weights of a region are not lowered by misfit that unknowns at lower
    concentrations do not have.
    """
    step_ok = used[1:] & used[:-1]
    step = np.where(step_ok, np.sum(np.diff(E, axis=1) ** 2, axis=0) / (2.0 * dof_per_pixel), 0.0)
    total = np.zeros(E.shape[1])
    count = np.zeros(E.shape[1])
    for side in (slice(1, None), slice(None, -1)):  # each pixel: mean of its left and right steps
        total[side] += step
        count[side] += step_ok
    plain = np.sum(E * E, axis=0) / dof_per_pixel
    return np.where(count > 0, total / np.maximum(count, 1), plain)


def _noise_variance(E, used, dof_per_pixel, scale):
    """Per-pixel noise variance for the weights, smoothed along the spectrum; None if noise-free."""
    raw = _pixel_noise_variance(E, used, dof_per_pixel)
    half_width = max(2, int(used.sum()) // 128)
    smooth = _smooth(raw, used, half_width)
    typical = np.median(smooth[used])
    if not np.isfinite(typical) or np.sqrt(typical) <= 1e-12 * max(scale, 1e-300):
        return None
    return np.where(used, np.maximum(smooth, 1e-4 * typical), np.inf)


def calibrate(
    wavelength_nm: npt.ArrayLike,
    standards_absorbance: npt.ArrayLike,
    standards_concentration_g_per_L: npt.ArrayLike,
    analytes: Iterable[str],
    baseline_order: int | None = 2,
    standard_names: Iterable[str] | None = None,
    *,
    weighting: str = "noise",
    quadratic: str | Iterable[str] = (),
) -> Calibration:
    """Calibrate the per-pixel sensitivity of each analyte from standards (classical least squares).

    ``standards_absorbance`` (M, P) on ``wavelength_nm`` (P,), with the
    reference measured on the blank (solvent in the cell); ``standards_concentration_g_per_L``
    (M, K) in the order of ``analytes`` (element symbols). Needs M >= K + 1
    standards whose concentrations are linearly independent; a blank is
    recommended (it costs nothing and pins the detection limits). The baseline
    (Legendre order ``baseline_order``, None = none) is fitted per standard.
    Pixels that are NaN in any standard are not used. ``weighting="noise"``
    weights pixels by their estimated inverse noise variance; ``"uniform"`` does not.
    ``quadratic`` names analytes whose strong bands depart from Beer-Lambert
    (stray light, slit): each gets a curvature spectrum fitted on its squared
    concentration (needs three or more distinct levels of it among the standards).

    Raises ValueError saying what is wrong and where.
    """
    symbols = _check_analytes(analytes)
    wl = np.asarray(wavelength_nm, dtype=np.float64)
    A = np.asarray(standards_absorbance, dtype=np.float64)
    C = np.asarray(standards_concentration_g_per_L, dtype=np.float64)
    if wl.ndim != 1 or wl.size < 2 or not np.all(np.isfinite(wl)):
        raise ValueError(f"wavelength_nm must be a 1-D array of >= 2 finite values; got shape {wl.shape}")
    if A.ndim != 2 or A.shape[1] != wl.size:
        raise ValueError(
            f"standards_absorbance has shape {A.shape}; expected (M, P) with P = {wl.size} "
            f"(the length of wavelength_nm)"
        )
    K = len(symbols)
    if C.ndim == 1 and K == 1:
        C = C[:, None]
    if C.ndim != 2 or C.shape != (A.shape[0], K):
        raise ValueError(
            f"standards_concentration_g_per_L has shape {C.shape}; expected (M, K) = "
            f"({A.shape[0]}, {K}) for {A.shape[0]} standards of {', '.join(symbols)}"
        )
    M = A.shape[0]
    names = _standard_names(standard_names, M)
    bad = np.argwhere(~np.isfinite(C) | (C < 0))
    if bad.size:
        m, k = bad[0]
        raise ValueError(
            f"standard {names[m]!r}: concentration of {symbols[k]} is {C[m, k]!r}; "
            f"concentrations must be finite and >= 0 g/L"
        )
    quad = tuple(quadratic) if not isinstance(quadratic, str) else (quadratic,)
    if any(a not in symbols for a in quad) or len(set(quad)) != len(quad):
        raise ValueError(f"quadratic {quad} must name distinct analytes among {', '.join(symbols)}")
    Cx = np.hstack([C, C[:, [symbols.index(a) for a in quad]] ** 2])
    terms = K + len(quad)
    if M < terms + 1:
        raise ValueError(
            f"too few standards: {K} analytes{f' and {len(quad)} quadratic terms' if quad else ''} "
            f"need at least {terms + 1} standards (one more than terms, for a residual and "
            f"leave-one-out), got {M}"
        )
    if weighting not in ("noise", "uniform"):
        raise ValueError(f"weighting must be 'noise' or 'uniform'; got {weighting!r}")
    sv = np.linalg.svd(C, compute_uv=False)
    if sv[-1] <= _RANK_TOLERANCE * max(sv[0], 1e-300):
        raise ValueError(
            f"rank-deficient standards: {_describe_dependence(C, symbols)}; "
            f"add standards that vary each analyte independently"
        )
    sv = np.linalg.svd(Cx / np.linalg.norm(Cx, axis=0), compute_uv=False)
    if sv[-1] <= 1e-8:
        raise ValueError(
            f"rank-deficient standards for the quadratic terms of {', '.join(quad)}: "
            f"{_describe_dependence(Cx, symbols + tuple(f'{a}^2' for a in quad))}; "
            f"each needs three or more distinct levels, not proportional to the others"
        )
    used = np.all(np.isfinite(A), axis=0)
    if not used.any():
        raise ValueError("every pixel is NaN in at least one standard: nothing to calibrate on")
    order = _check_baseline_order(baseline_order, int(used.sum()))
    A = np.where(used, A, 0.0)
    B = baseline_basis(wl, order)
    L = B.shape[1]
    n_used = int(used.sum())
    dof_total = (M - terms) * n_used - M * L
    if dof_total <= 0:
        raise ValueError("no residual degrees of freedom: more pixels or standards are needed")
    dof_per_pixel = dof_total / n_used

    w = used.astype(np.float64)
    S_all, E = _cls(A, Cx, B, w)
    if weighting == "noise":
        variance = _noise_variance(E, used, dof_per_pixel, float(np.max(np.abs(A))))
        if variance is not None:
            w = np.where(used, 1.0 / variance, 0.0)
            w /= w[used].mean()
            S_all, E = _cls(A, Cx, B, w)
    S_all[:, ~used] = 0.0
    E[:, ~used] = 0.0
    S = S_all[:K]

    s2 = float(np.sum(w * E * E) / dof_total)
    gram_inverse = np.asarray(np.linalg.inv(Cx.T @ Cx), dtype=np.float64)  # as is: float64 in, float64 out
    model = model_arrays(np.hstack([S_all.T, B]), w, s2 * gram_inverse)  # the standards' own model
    _check_model_rank(model, symbols + tuple(f"{a}^2" for a in quad))
    significance = _sensitivity_significance(S, w, gram_inverse[:K, :K], s2)
    weak = [
        f"{a} ({significance[k]:.1f} sigma)"
        for k, a in enumerate(symbols)
        if significance[k] < MIN_SENSITIVITY_SIGNIFICANCE
    ]
    if weak:
        raise ValueError(
            f"no absorbance above noise in this wavelength range for {', '.join(weak)}: "
            f"remove {'it' if len(weak) == 1 else 'them'} from analytes"
        )

    noise_raw = _pixel_noise_variance(E, used, dof_per_pixel)
    noise = np.where(used, np.sqrt(_smooth(noise_raw, used, max(2, n_used // 128))), np.nan)
    corrected = model.N - model.w.sum() * model.E_w
    scale = 1.0 / np.sqrt(np.diag(model.N))
    if np.linalg.eigvalsh(corrected * scale[:, None] * scale[None, :])[0] < 0.01:
        raise ValueError(
            "the calibrated sensitivities are mostly noise and cannot be separated: measure the "
            "standards with more averaging or at higher concentrations"
        )
    # detection limits as quantify will see a blank: with the drift terms free beside the baseline
    measuring = model_arrays(
        _design(S, S_all[K:], _usable_drift_spectra(wl, S, w, s2 * gram_inverse, order), B),
        w,
        s2 * gram_inverse,
        np.zeros(K),
        drift_noise(wl, S),
    )
    n_inverse = np.linalg.pinv(measuring.N - measuring.w.sum() * measuring.E_w, rcond=1e-12, hermitian=True)
    detection = DETECTION_LIMIT_SIGMAS * np.sqrt(s2 * np.diag(n_inverse)[:K])
    fit_rms = np.sqrt(np.sum(w * E * E, axis=1) / w.sum())
    calibrated_range = np.stack([C.min(axis=0), C.max(axis=0)], axis=1)
    noise_scale = float(np.sqrt(s2))
    condition_number = _scaled_condition_number(model.X * np.sqrt(w)[:, None])
    calibration_args = _CalibrationArgs(
        analytes=symbols,
        wavelength_nm=wl,
        baseline_order=order,
        pixel_weight=w,
        quadratic_analytes=quad,
        created_utc=_utc_now(),
        software_version=_software_version(),
    )
    loo, loo_sigma = _leave_one_out(A, C, Cx, B, w, s2, calibration_args)
    quality = CalibrationQuality(
        warnings=_design_warnings(C, symbols, quad),
        loo_error_g_per_L=_readonly(loo),
        loo_rmse_g_per_L=_readonly(
            np.sqrt(np.nanmean(loo * loo, axis=0)) if np.any(np.isfinite(loo)) else np.full(K, np.nan)
        ),
        fit_residual_rms=_readonly(fit_rms),
        detection_limit_g_per_L=_readonly(detection),
        calibrated_range_g_per_L=_readonly(calibrated_range),
        noise_absorbance=_readonly(noise),
        noise_scale_absorbance=noise_scale,
        sensitivity_significance=_readonly(significance),
        condition_number=condition_number,
        residual_dof=float(dof_total),
    )
    standards = Standards(
        names=names, concentration_g_per_L=_readonly(C), absorbance=_readonly(np.where(used, A, np.nan))
    )
    return Calibration(
        sensitivity=S,
        quadratic_sensitivity=S_all[K:],
        sensitivity_variance_factor=s2 * gram_inverse,
        model_sigma_g_per_L=_model_sigma(loo, loo_sigma),
        quality=quality,
        standards=standards,
        **calibration_args,
    )


PRODUCT_FRACTION = 0.95
"""A standard is product-like for analyte k when k is at least this share of its total g/L."""
MAX_PRODUCT_GAP_FRACTION = 1.0 / 3.0
"""Product-like standards of a curvature analyte may leave no gap wider than this share of its range."""
MAX_CURVATURE_LEAK = 0.1
"""Share of an impurity's curvature (at its top standard) that may reach a pure curvature-analyte composition."""


def _design_warnings(C: np.ndarray, symbols: tuple[str, ...], quadratic: tuple[str, ...]) -> tuple[str, ...]:
    """What the standards' design does not support, for each analyte with a curvature term (decision 0059).

    A curvature analyte k is what a product is made of (a strong band, a wide
    range). Two things put a product of k outside what the standards support:

    - **No bracketing**: between the levels of k's product-like standards (k at
      least PRODUCT_FRACTION of the total; the blank counts as level 0) and the
      top of k's range there is a gap wider than MAX_PRODUCT_GAP_FRACTION of the
      range. The model (linear plus k's curvature) is then only checked there by
      standards full of impurities, whose leave-one-out errors say nothing about
      a product.
    - **Curvature leak**: an analyte j without a curvature term bends too (narrow
      bands through the slit) by an amount that grows as c_j^2. Regressing c_j^2
      on the model's regressors shows how much of it the fit puts on k's columns:
      a pure-k composition at c carries (b_k c + b_kk c^2) / max(c_j)^2 of the
      curvature j has at its top standard, read as a j-shaped error. More than
      MAX_CURVATURE_LEAK of it is a warning.
    """
    messages = []
    total = C.sum(axis=1)
    regressors = np.hstack([C, C[:, [symbols.index(a) for a in quadratic]] ** 2])
    for q, symbol in enumerate(quadratic):
        k = symbols.index(symbol)
        top = float(C[:, k].max())
        product_like = (C[:, k] > 0) & (C[:, k] >= PRODUCT_FRACTION * total)
        levels = np.unique(np.r_[0.0, C[product_like, k]])
        points = np.r_[levels, top] if levels[-1] < top else levels
        gaps = np.diff(points)
        if gaps.size and gaps.max() > MAX_PRODUCT_GAP_FRACTION * top:
            widest = int(np.argmax(gaps))
            shown = ", ".join(f"{v:g}" for v in levels[1:]) or "none"
            messages.append(
                f"{symbol} products (>= {PRODUCT_FRACTION:.0%} {symbol}) between {points[widest]:g} and "
                f"{points[widest + 1]:g} g/L are outside what the standards support: product-like standards "
                f"of {symbol} only at {shown} g/L; their impurities may read off by more than their sigma. "
                f"Add standards of {symbol} with traces of the others in that range"
            )
        grid = np.linspace(0.0, top, 101)
        leaks = []
        for j, other in enumerate(symbols):
            if other in quadratic or not np.any(C[:, j]):
                continue
            coefficients, *_ = np.linalg.lstsq(regressors, C[:, j] ** 2, rcond=None)
            leak = np.abs(coefficients[k] * grid + coefficients[len(symbols) + q] * grid**2).max()
            leak /= float(C[:, j].max()) ** 2
            if leak > MAX_CURVATURE_LEAK:
                leaks.append(f"{other} {leak:.0%} (top standard {C[:, j].max():g} g/L)")
        if leaks:
            messages.append(
                f"the design lets the curvature the other analytes have at their top standards leak into the "
                f"{symbol} terms: {', '.join(leaks)}; they may read off in a {symbol} product by more than their "
                f"sigma. Bracket the products with standards of {symbol} with traces of the others, or lower "
                f"the others' top levels"
            )
    return tuple(messages)


def _standard_names(names: Iterable[str] | None, M: int) -> tuple[str, ...]:
    if names is None:
        return tuple(f"standard {m + 1}" for m in range(M))
    names = tuple(str(n) for n in names)
    if len(names) != M:
        raise ValueError(f"standard_names has {len(names)} names for {M} standards")
    return names


def _check_model_rank(model: _Model, symbols) -> None:
    """``symbols`` names the calibrated columns (analytes, then curvature terms)."""
    K = len(symbols)
    Xw = model.X * np.sqrt(model.w)[:, None]
    norms = np.linalg.norm(Xw, axis=0)
    sv, vt = np.linalg.svd(Xw / np.where(norms > 0, norms, 1.0), full_matrices=False)[1:]
    if sv[-1] <= _RANK_TOLERANCE * sv[0] or np.any(norms[:K] == 0):
        null = vt[-1]
        involved = [a for k, a in enumerate(symbols) if abs(null[k]) > 0.05] or list(symbols)
        raise ValueError(
            f"rank-deficient sensitivities: the spectra of {', '.join(involved)} cannot be told "
            f"apart from each other or from the baseline over the usable pixels"
        )


def _scaled_condition_number(Xw: np.ndarray) -> float:
    """Condition number of the model matrix with unit-norm columns (independent of units)."""
    norms = np.linalg.norm(Xw, axis=0)
    return float(np.linalg.cond(Xw / np.where(norms > 0, norms, 1.0)))


def _sensitivity_significance(S, w, gram_inverse, s2) -> np.ndarray:
    """z-score of ||S_k||_W^2 against the chi-square it would have if S_k were pure noise."""
    energy = np.sum(w * S * S, axis=1)
    n_used = np.count_nonzero(w)
    noise_energy = s2 * np.diag(gram_inverse) * n_used
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (energy / noise_energy - 1.0) / np.sqrt(2.0 / n_used)
    return np.where(noise_energy > 0, z, np.inf)


def _model_sigma(loo_error, loo_sigma) -> np.ndarray:
    """Leave-one-out error not explained by the quoted sigmas: sqrt(max(0, mean err^2 - mean sigma^2))."""
    usable = np.isfinite(loo_error) & np.isfinite(loo_sigma)
    count = usable.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = (np.where(usable, loo_error**2 - loo_sigma**2, 0.0).sum(axis=0)) / count
    return np.sqrt(np.where(count > 0, np.maximum(excess, 0.0), 0.0))


def _leave_one_out(
    A: np.ndarray,
    C: np.ndarray,
    Cx: np.ndarray,
    B: np.ndarray,
    w: np.ndarray,
    s2: float,
    calibration_args: _CalibrationArgs,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted minus true concentrations of each standard when left out, and the sigma quoted for it.

    NaN where the remaining standards cannot calibrate every analyte.
    """
    M, K = C.shape
    errors = np.full((M, K), np.nan)
    sigmas = np.full((M, K), np.nan)
    for m in range(M):
        keep = np.arange(M) != m
        Ck = Cx[keep]
        sv = np.linalg.svd(Ck / np.maximum(np.linalg.norm(Ck, axis=0), 1e-300), compute_uv=False)
        if Ck.shape[0] < Ck.shape[1] or sv[-1] <= 1e-8:
            continue
        S_all, _ = _cls(A[keep], Ck, B, w)
        if not np.all(np.any(S_all != 0, axis=1)):
            continue
        fold = Calibration(
            sensitivity=S_all[:K],
            quadratic_sensitivity=S_all[K:],
            sensitivity_variance_factor=s2 * np.linalg.inv(Ck.T @ Ck),
            **calibration_args,
        )
        result = _first_fit(A[m][None, :], fold)  # a standard's band widths are the calibration's
        errors[m] = result.concentration_g_per_L[0] - C[m]
        sigmas[m] = result.sigma_g_per_L[0]
    return errors, sigmas


# ---------------------------------------------------------------------- file format (HDF5)

_QUALITY_ARRAYS = {
    "fit_residual_rms": "absorbance",
    "loo_error_g_per_L": "g/L",
    "loo_rmse_g_per_L": "g/L",
    "detection_limit_g_per_L": "g/L",
    "calibrated_range_g_per_L": "g/L",
    "noise_absorbance": "absorbance",
    "sensitivity_significance": "1",
}
_QUALITY_SCALARS = ("noise_scale_absorbance", "condition_number", "residual_dof")


def _write(cal: Calibration, path: str | os.PathLike[str]) -> None:
    import h5py

    strings = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f.attrs.update(
            {
                "format": FILE_FORMAT,
                "format_version": FILE_FORMAT_VERSION,
                "calibration_id": cal.calibration_id,
                "created_utc": cal.created_utc,
                "software_version": cal.software_version,
                "baseline_order": -1 if cal.baseline_order is None else cal.baseline_order,
                "detection_limit_sigmas": DETECTION_LIMIT_SIGMAS,
            }
        )
        f.create_dataset("analytes", data=np.array(cal.analytes, dtype=object), dtype=strings)
        f.create_dataset("quadratic_analytes", data=np.array(cal.quadratic_analytes, dtype=object), dtype=strings)
        for name, units in (
            ("wavelength_nm", "nm"),
            ("sensitivity", "absorbance per g/L"),
            ("pixel_weight", "1"),
            ("sensitivity_variance_factor", "absorbance^2 per (g/L)^2"),
            ("model_sigma_g_per_L", "g/L"),
            ("quadratic_sensitivity", "absorbance per (g/L)^2"),
        ):
            f.create_dataset(name, data=getattr(cal, name)).attrs["units"] = units
        if cal.standards is not None:
            group = f.create_group("standards")
            group.create_dataset("names", data=np.array(cal.standards.names, dtype=object), dtype=strings)
            group.create_dataset("concentration_g_per_L", data=cal.standards.concentration_g_per_L).attrs["units"] = (
                "g/L"
            )
            group.create_dataset("absorbance", data=cal.standards.absorbance, compression="gzip", shuffle=True).attrs[
                "units"
            ] = "absorbance"
        if cal.quality is not None:
            group = f.create_group("quality")
            for name, units in _QUALITY_ARRAYS.items():
                group.create_dataset(name, data=getattr(cal.quality, name)).attrs["units"] = units
            for name in _QUALITY_SCALARS:
                group.attrs[name] = getattr(cal.quality, name)
            group.create_dataset("warnings", data=np.array(cal.quality.warnings, dtype=object), dtype=strings)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# h5py annotates a group's member as Group | Dataset | Datatype and an attribute as a union of arrays and
# Empty: what a file holds is known from its layout, not to the type checker (these read it as that layout)


def _group(node: h5py.Group, name: str) -> h5py.Group:
    return cast("h5py.Group", node[name])


def _dataset(node: h5py.Group, name: str) -> Any:
    """The whole content of dataset ``name`` (``node[name][()]``)."""
    return cast("h5py.Dataset", node[name])[()]


def _attribute(node: h5py.Group, name: str) -> Any:
    return node.attrs[name]


def _read(cls: type[Calibration], path: str | os.PathLike[str]) -> Calibration:
    import stat

    import h5py

    if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block HDF5's open until someone wrote to it
        raise OSError(f"{path}: not a regular file (a calibration is an HDF5 file written by `remdaq calibrate`)")
    with h5py.File(path, "r") as f:  # not SWMR: HDF5 checks the file's length and retries no checksum
        if _text(f.attrs.get("format", "")) != FILE_FORMAT:
            raise ValueError(f"{path}: not a rem-daq calibration file (format attribute missing or wrong)")
        version = int(_attribute(f, "format_version"))
        if version > FILE_FORMAT_VERSION:
            raise ValueError(
                f"{path}: calibration format version {version} is newer than this software "
                f"reads ({FILE_FORMAT_VERSION})"
            )
        order = int(_attribute(f, "baseline_order"))
        quality = standards = None
        if "quality" in f:
            group = _group(f, "quality")
            quality = CalibrationQuality(  # the members of _QUALITY_ARRAYS, then of _QUALITY_SCALARS
                fit_residual_rms=_readonly(_dataset(group, "fit_residual_rms")),
                loo_error_g_per_L=_readonly(_dataset(group, "loo_error_g_per_L")),
                loo_rmse_g_per_L=_readonly(_dataset(group, "loo_rmse_g_per_L")),
                detection_limit_g_per_L=_readonly(_dataset(group, "detection_limit_g_per_L")),
                calibrated_range_g_per_L=_readonly(_dataset(group, "calibrated_range_g_per_L")),
                noise_absorbance=_readonly(_dataset(group, "noise_absorbance")),
                sensitivity_significance=_readonly(_dataset(group, "sensitivity_significance")),
                noise_scale_absorbance=float(_attribute(group, "noise_scale_absorbance")),
                condition_number=float(_attribute(group, "condition_number")),
                residual_dof=float(_attribute(group, "residual_dof")),
                warnings=tuple(_text(t) for t in _dataset(group, "warnings")) if "warnings" in group else (),
            )
        if "standards" in f:
            group = _group(f, "standards")
            standards = Standards(
                names=tuple(_text(n) for n in _dataset(group, "names")),
                concentration_g_per_L=_readonly(_dataset(group, "concentration_g_per_L")),
                absorbance=_readonly(_dataset(group, "absorbance")),
            )
        cal = cls(
            analytes=tuple(_text(a) for a in _dataset(f, "analytes")),
            wavelength_nm=_dataset(f, "wavelength_nm"),
            sensitivity=_dataset(f, "sensitivity"),
            baseline_order=None if order < 0 else order,
            pixel_weight=_dataset(f, "pixel_weight"),
            sensitivity_variance_factor=_dataset(f, "sensitivity_variance_factor"),
            model_sigma_g_per_L=_dataset(f, "model_sigma_g_per_L"),
            quadratic_analytes=tuple(_text(a) for a in _dataset(f, "quadratic_analytes")),
            quadratic_sensitivity=_dataset(f, "quadratic_sensitivity"),
            quality=quality,
            standards=standards,
            created_utc=_text(f.attrs["created_utc"]),
            software_version=_text(f.attrs["software_version"]),
        )
        stored_id = _text(f.attrs["calibration_id"])
    if cal.calibration_id != stored_id:
        raise ValueError(
            f"{path}: content does not match its calibration_id {stored_id} "
            f"(recomputed {cal.calibration_id}): the file was edited or is corrupt"
        )
    return cal
