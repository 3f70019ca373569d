"""analysis.absorbance: A = -log10((S - D) / (R - D)), bad pixels NaN and never a number."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from analysis import absorbance


def test_transmission_of_one_tenth_is_absorbance_one():
    dark = np.array([100.0, 100.0, 100.0])
    reference = np.array([10100.0, 20100.0, 1100.0])
    counts = dark + (reference - dark) * np.array([0.1, 1.0, 0.01])
    assert np.allclose(absorbance(counts, dark, reference), [1.0, 0.0, 2.0], rtol=0, atol=1e-14)


def test_batch_keeps_the_shape_of_counts_and_accepts_per_spectrum_dark_and_reference():
    rng = np.random.default_rng(0)
    counts = rng.uniform(2000, 30000, (4, 7))
    dark = np.full(7, 1000.0)
    reference = np.full(7, 40000.0)
    shared = absorbance(counts, dark, reference)
    per_spectrum = absorbance(counts, np.tile(dark, (4, 1)), np.tile(reference, (4, 1)))
    assert shared.shape == (4, 7) and shared.dtype == np.float64
    assert np.array_equal(shared, per_spectrum)
    assert np.allclose(shared, -np.log10((counts - dark) / (reference - dark)), rtol=1e-13)


@pytest.mark.parametrize(
    "sample, dark, reference, why",
    [
        (65535.0, 100.0, 30000.0, "sample saturated"),
        (70000.0, 100.0, 30000.0, "sample above full scale"),
        (20000.0, 100.0, 65535.0, "reference saturated"),
        (100.0, 100.0, 30000.0, "sample not above dark"),
        (50.0, 100.0, 30000.0, "sample below dark"),
        (20000.0, 100.0, 100.0, "reference not above dark"),
        (20000.0, 100.0, 90.0, "reference below dark"),
        (np.nan, 100.0, 30000.0, "sample NaN"),
        (np.inf, 100.0, 30000.0, "sample inf"),
        (20000.0, np.nan, 30000.0, "dark NaN"),
        (20000.0, 100.0, np.nan, "reference NaN"),
        (20000.0, -np.inf, 30000.0, "dark -inf"),
    ],
)
def test_bad_pixels_are_nan(sample, dark, reference, why):
    counts = np.array([sample, 20000.0])
    a = absorbance(counts, np.array([dark, 100.0]), np.array([reference, 30000.0]), saturation_counts=65535)
    assert np.isnan(a[0]), why
    assert np.isfinite(a[1]), "a good neighbour pixel stays a number"


def test_without_saturation_level_high_counts_are_kept():
    a = absorbance(np.array([65535.0]), np.array([0.0]), np.array([65535.0]))
    assert a[0] == 0.0


def test_tiny_signals_give_large_finite_absorbance_not_overflow():
    a = absorbance(np.array([1e-300, 5e-324]), np.zeros(2), np.array([1e300, 1e300]))
    assert np.all(np.isfinite(a))
    assert np.allclose(a, [600.0, 300.0 - np.log10(5e-324)], rtol=1e-12)


@pytest.mark.parametrize("dark_shape", [(3,), (2, 3)])
def test_shape_mismatch_is_a_value_error_naming_the_argument(dark_shape):
    with pytest.raises(ValueError, match="dark"):
        absorbance(np.ones((2, 4)), np.ones(dark_shape), np.ones(4))
    with pytest.raises(ValueError, match="counts"):
        absorbance(np.ones((2, 2, 4)), np.ones(4), np.ones(4))


counts_arrays = hnp.arrays(
    np.float64,
    st.tuples(st.integers(1, 5), st.integers(1, 40)),
    elements=st.one_of(st.floats(-1e3, 7e4, allow_nan=False), st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 65535.0])),
)


@settings(max_examples=200, deadline=None)
@given(
    counts=counts_arrays,
    dark_level=st.floats(0, 2000),
    reference_level=st.floats(-10, 7e4),
    saturation=st.one_of(st.none(), st.floats(1e3, 7e4)),
)
def test_a_pixel_is_a_number_exactly_when_it_is_valid(counts, dark_level, reference_level, saturation):
    P = counts.shape[1]
    dark = np.full(P, dark_level)
    reference = np.full(P, reference_level)
    a = absorbance(counts, dark, reference, saturation_counts=saturation)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(counts) & (counts - dark > 0) & (reference - dark > 0)
        if saturation is not None:
            valid &= (counts < saturation) & (reference < saturation)
    assert np.array_equal(np.isfinite(a), valid)
    assert not np.any(np.isinf(a))
    if valid.any():
        expected = np.log10(reference_level - dark_level) - np.log10(counts[valid] - dark_level)
        assert np.allclose(a[valid], expected, rtol=1e-12, atol=1e-12)
