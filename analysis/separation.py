"""Separation metrics of solvent extraction and ion exchange (numpy, broadcasting).

Concentrations may be in any unit as long as both arguments of a ratio share it
(the result is dimensionless); g/L is what :func:`analysis.quantify` gives.
Divisions by zero give ``inf`` or NaN, never an exception, so a whole table can
be computed at once.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "distribution_ratio",
    "separation_factor",
    "extraction_percent",
    "recovery",
    "decontamination_factor",
    "fenske_minimum_stages",
]


def _f(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    return np.asarray(x, dtype=np.float64)


def _ratio(numerator: npt.ArrayLike, denominator: npt.ArrayLike) -> npt.NDArray[np.float64]:
    with np.errstate(divide="ignore", invalid="ignore"):
        return _f(numerator) / _f(denominator)


def distribution_ratio(organic_g_per_L: npt.ArrayLike, aqueous_g_per_L: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Distribution ratio ``D = [M]org / [M]aq`` of one element at equilibrium (dimensionless).

    Both concentrations of the same element, in the same unit.
    """
    return _ratio(organic_g_per_L, aqueous_g_per_L)


def separation_factor(
    distribution_ratio_a: npt.ArrayLike, distribution_ratio_b: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Separation factor ``beta_A/B = D_A / D_B`` (dimensionless; > 1 when A extracts better)."""
    return _ratio(distribution_ratio_a, distribution_ratio_b)


def extraction_percent(
    distribution_ratio_value: npt.ArrayLike, organic_to_aqueous_volume_ratio: npt.ArrayLike = 1.0
) -> npt.NDArray[np.float64]:
    """Percent of an element extracted in one contact: ``E = 100 D theta / (1 + D theta)``.

    ``theta = V_org / V_aq`` (dimensionless). Result in percent (0..100).
    """
    d_theta = _f(distribution_ratio_value) * _f(organic_to_aqueous_volume_ratio)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.where(np.isinf(d_theta), 100.0, 100.0 * d_theta / (1.0 + d_theta))


def recovery(
    product_g_per_L: npt.ArrayLike,
    product_volume_L: npt.ArrayLike,
    feed_g_per_L: npt.ArrayLike,
    feed_volume_L: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Recovery of an element into a product stream: ``R = c_p V_p / (c_f V_f)`` (fraction, 0..1).

    Concentrations of the element in g/L, volumes in L (or flows in L/h for a
    continuous circuit: the ratio is the same).
    """
    return _ratio(_f(product_g_per_L) * _f(product_volume_L), _f(feed_g_per_L) * _f(feed_volume_L))


def decontamination_factor(
    feed_impurity_g_per_L: npt.ArrayLike,
    feed_target_g_per_L: npt.ArrayLike,
    product_impurity_g_per_L: npt.ArrayLike,
    product_target_g_per_L: npt.ArrayLike,
) -> npt.NDArray[np.float64]:
    """Decontamination factor ``DF = (c_imp / c_target)_feed / (c_imp / c_target)_product`` (dimensionless).

    How many times the impurity-to-target ratio falls from feed to product;
    ``inf`` when the product holds no impurity at all.
    """
    feed = _ratio(feed_impurity_g_per_L, feed_target_g_per_L)
    product = _ratio(product_impurity_g_per_L, product_target_g_per_L)
    return _ratio(feed, product)


def fenske_minimum_stages(
    separation_factor_value: npt.ArrayLike, extract_ratio: npt.ArrayLike, raffinate_ratio: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """Fenske minimum number of ideal stages (total reflux): ``N = ln(r_E / r_R) / ln(beta)``.

    ``extract_ratio`` r_E and ``raffinate_ratio`` r_R are the ratios A/B (A = the
    better-extracted element, ``beta = D_A / D_B``) in the extract and raffinate
    products (any common unit). Dimensionless stages, not rounded up; ``inf`` when
    ``beta == 1`` and the ratios differ. Raises ValueError for ``beta <= 0``.
    """
    beta = _f(separation_factor_value)
    if np.any(beta <= 0):
        raise ValueError("separation factor must be > 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(_ratio(extract_ratio, raffinate_ratio)) / np.log(beta)
