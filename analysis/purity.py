"""Element concentrations to oxide purity: the target's oxide over the total rare-earth oxide.

Policy for analytes below their detection limit (docs/decisions/0032): a
non-target analyte whose concentration is below its detection limit counts as
*not detected* and contributes 0 to the total oxide, because the non-negativity
constraint turns pure noise into small positive concentrations (about 0.4 sigma
on average per absent analyte) that would otherwise add up to a false impurity.
Its standard uncertainty still enters ``purity_sigma``, the censored entries
are reported in ``below_detection_limit``, and ``purity_lower_bound`` gives the
purity if every censored analyte were present at its detection limit (the worst
case the censoring can hide). The target is never censored. Without
``detection_limit_g_per_L`` nothing is censored.

Policy for a cell with (almost) no rare earths (a blank, the start of an
elution): a purity is a ratio, and a ratio of two numbers that are both noise is
noise anywhere between 0 and 1. When the total oxide is below its quantitation
limit, ten times the standard uncertainty of a blank's total oxide (from the
detection limits, which are three sigma of a blank; without them from
``sigma_g_per_L``), the purity is NaN and ``below_quantitation_limit`` says so:
"no rare earths in the cell". The limit is a blank's, not the spectrum's own
sigma, so a spectrum whose sigma is widened by a model mismatch is flagged as a
mismatch (by quantify), not misreported as empty.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .elements import UnknownElementError, element, oxide_factor

__all__ = ["PurityResult", "oxide_purity", "QUANTITATION_SIGMAS"]

QUANTITATION_SIGMAS = 10.0
"""The total oxide must be this many of its standard uncertainties for a purity to be given."""


@dataclass(frozen=True, eq=False)
class PurityResult:
    """Oxide purity per spectrum and what it covers.

    - ``purity`` (N,): fraction (0..1, not percent) of ``target_oxide`` in the
      total oxide of ``covered_elements``; NaN when a covered element's
      concentration is NaN or the total is zero.
    - ``purity_sigma`` (N,): first-order standard uncertainty (independent
      concentration errors); NaN when no sigma was given.
    - ``covered_elements``: the analytes the total is made of. Elements outside
      it (e.g. La, Ce, Gd, Y: no visible bands) are not seen by this purity.
    - ``below_detection_limit`` (N, K): analytes counted as not detected.
    - ``purity_lower_bound`` (N,): the purity if each of those were at its
      detection limit (equals ``purity`` when nothing was censored).
    - ``total_oxide_g_per_L`` (N,): the total oxide the purity refers to.
    - ``quantitation_limit_g_per_L`` (N,): total oxide below which no purity is
      given (NaN when neither sigmas nor detection limits were given).
    - ``below_quantitation_limit`` (N,): no rare earths to speak of in the cell:
      ``purity``, its sigma and lower bound are NaN.
    """

    purity: npt.NDArray[np.float64]
    purity_sigma: npt.NDArray[np.float64]
    covered_elements: tuple[str, ...]
    target: str
    target_oxide: str
    below_detection_limit: npt.NDArray[np.bool_]
    purity_lower_bound: npt.NDArray[np.float64]
    total_oxide_g_per_L: npt.NDArray[np.float64]
    quantitation_limit_g_per_L: npt.NDArray[np.float64]
    below_quantitation_limit: npt.NDArray[np.bool_]

    @property
    def purity_percent(self) -> npt.NDArray[np.float64]:
        """``purity`` in percent."""
        return 100.0 * self.purity


def _batch(value: npt.ArrayLike, name: str, K: int) -> npt.NDArray[np.float64]:
    data = np.asarray(value, dtype=np.float64)
    if data.ndim == 1:
        data = data[None, :]
    if data.ndim != 2 or data.shape[1] != K:
        raise ValueError(f"{name} has shape {np.shape(value)}; expected (K,) or (N, K) with K = {K} analytes")
    return data


def oxide_purity(
    concentration_g_per_L: npt.ArrayLike,
    analytes: Iterable[str],
    target: str,
    sigma_g_per_L: npt.ArrayLike | None = None,
    detection_limit_g_per_L: npt.ArrayLike | None = None,
) -> PurityResult:
    """Fraction of ``target``'s oxide in the total rare-earth oxide of ``analytes``, per spectrum.

    ``concentration_g_per_L`` (N, K) element concentrations (e.g.
    ``Quantification.concentration_g_per_L``); each is converted to its trade
    oxide (Nd -> Nd2O3, Pr -> Pr6O11, ...). ``sigma_g_per_L`` (N, K) gives
    ``purity_sigma``. ``detection_limit_g_per_L`` (K,) or (N, K), e.g. from
    ``Calibration.quality.detection_limit_g_per_L``: non-target analytes below
    it count as zero (see the module docstring).
    """
    symbols = tuple(analytes)
    for index, symbol in enumerate(symbols):
        try:
            element(symbol)
        except UnknownElementError as error:
            raise ValueError(f"analytes[{index}]: {error}") from None
    if target not in symbols:
        raise ValueError(f"target {target!r} is not among the analytes {', '.join(symbols)}")
    K = len(symbols)
    t = symbols.index(target)
    conc = _batch(concentration_g_per_L, "concentration_g_per_L", K)
    factor = np.array([oxide_factor(s) for s in symbols])
    censored = np.zeros(conc.shape, dtype=bool)
    limit = np.zeros(conc.shape)
    if detection_limit_g_per_L is not None:
        limit = np.broadcast_to(_batch(detection_limit_g_per_L, "detection_limit_g_per_L", K), conc.shape)
        with np.errstate(invalid="ignore"):
            censored = conc < limit
        censored[:, t] = False
    oxide = np.where(censored, 0.0, conc) * factor
    total = oxide.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        purity = np.where(total > 0, oxide[:, t] / np.where(total > 0, total, 1.0), np.nan)
    purity[~np.isfinite(total)] = np.nan
    hidden = np.sum(np.where(censored, limit, 0.0) * factor, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower_bound = np.where(hidden > 0, oxide[:, t] / (total + hidden), purity)
    blank_sigma = limit / 3.0 if detection_limit_g_per_L is not None else None  # detection limits are 3 sigma
    if sigma_g_per_L is None:
        purity_sigma = np.full(purity.shape, np.nan)
    else:
        sigma = _batch(sigma_g_per_L, "sigma_g_per_L", K)
        if sigma.shape != conc.shape:
            raise ValueError(f"sigma_g_per_L has shape {sigma.shape}; concentrations have {conc.shape}")
        # d purity / d c_t = f_t (1 - p) / T ;  d purity / d c_k = -f_k p / T  (k != t)
        with np.errstate(invalid="ignore", divide="ignore"):
            gradient = -factor[None, :] * purity[:, None] / total[:, None]
            gradient[:, t] = factor[t] * (1.0 - purity) / total
            purity_sigma = np.sqrt(np.sum((gradient * sigma) ** 2, axis=1))
        purity_sigma[~np.isfinite(purity)] = np.nan
    if blank_sigma is None and sigma_g_per_L is not None:
        blank_sigma = sigma
    if blank_sigma is None:
        quantitation_limit = np.full(purity.shape, np.nan)
        unquantified = np.zeros(purity.shape, dtype=bool)
    else:
        quantitation_limit = QUANTITATION_SIGMAS * np.sqrt(np.sum((factor * blank_sigma) ** 2, axis=1))
        with np.errstate(invalid="ignore"):
            unquantified = total < quantitation_limit
        for array in (purity, purity_sigma, lower_bound):
            array[unquantified] = np.nan
    return PurityResult(
        purity=purity,
        purity_sigma=purity_sigma,
        covered_elements=symbols,
        target=target,
        target_oxide=element(target).oxide,
        below_detection_limit=censored,
        purity_lower_bound=lower_bound,
        total_oxide_g_per_L=total,
        quantitation_limit_g_per_L=quantitation_limit,
        below_quantitation_limit=unquantified,
    )
