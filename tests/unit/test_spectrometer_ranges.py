"""What the spectrometer driver accepts from an instrument: physical ranges, or ProtocolError naming both sides.

Each check either returns the value the answer states, or raises
ProtocolError whose message holds what was received and what was expected.
The edges of every range are tested from both sides.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import ProtocolError
from drivers.spectrometer import (
    AVERAGES_RANGE,
    INTEGRATION_TIME_RANGE_S,
    PIXEL_COUNT_RANGE,
    WAVELENGTH_RANGE_NM,
    ScpiSpectrometer,
    averages_from,
    check_counts,
    integration_time_from,
    pixel_count_from,
    wavelength_axis_from,
)

# The simulator's own cubic for 2048 px (350-1000 nm), written out here.
GOOD_COEFFICIENTS = "3.5e+02,3.474048184833e-01,-1.5e-05,2.0e-10"


def refused(check, *args) -> str:
    with pytest.raises(ProtocolError) as caught:
        check(*args)
    return str(caught.value)


def test_the_ranges_are_the_physical_ones_stated_in_the_decision():
    assert PIXEL_COUNT_RANGE == (1, 65536)
    assert INTEGRATION_TIME_RANGE_S == (1e-6, 3600.0)
    assert AVERAGES_RANGE == (1, 1_000_000)
    assert WAVELENGTH_RANGE_NM == (150.0, 3000.0)


# --- pixel count ---------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, pixels", [("1", 1), ("2048", 2048), ("+3648", 3648), (" 65536 ", 65536)])
def test_a_pixel_count_in_range_is_taken(answer, pixels):
    assert pixel_count_from(answer) == pixels


@pytest.mark.parametrize(
    "answer", ["0", "-1", "65537", "20000000", "99999999999", "9" * 5000, "2048.0", "2e3", "", "abc", "1_024", "٢٠٤٨"]
)
def test_a_pixel_count_out_of_range_or_not_an_integer_is_refused_naming_both(answer):
    message = refused(pixel_count_from, answer)
    assert "pixel count" in message and "expected an integer within 1-65536" in message
    assert repr(answer[:60]) in message


# --- integration time ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, seconds", [("0.1", 0.1), ("1e-06", 1e-6), ("3600", 3600.0), ("+2.5E-3", 0.0025), (".5", 0.5)]
)
def test_an_integration_time_in_range_is_taken(answer, seconds):
    assert integration_time_from(answer) == seconds


@pytest.mark.parametrize(
    "answer",
    [
        "1e308",
        "1e309",
        "-1",
        "0",
        "-0",
        "9.99e-7",
        "3600.001",
        "9.91E37",
        "nan",
        "inf",
        "-inf",
        "",
        "0.1 s",
        "1_0",
        "0x10",
    ],
)
def test_an_integration_time_not_finite_or_out_of_range_is_refused_naming_both(answer):
    message = refused(integration_time_from, answer)
    assert "integration time" in message and "expected a finite number within 1e-06-3600 s" in message
    assert repr(answer) in message


# --- averages ------------------------------------------------------------------------------------
@pytest.mark.parametrize("answer, count", [("1", 1), ("16", 16), ("1000000", 1_000_000)])
def test_averages_in_range_are_taken(answer, count):
    assert averages_from(answer) == count


@pytest.mark.parametrize("answer", ["0", "-5", "1000001", "4.0", "", "many"])
def test_averages_below_one_or_unbounded_are_refused_naming_both(answer):
    message = refused(averages_from, answer)
    assert "averages" in message and "expected an integer within 1-1000000" in message and repr(answer) in message


# --- wavelength axis -----------------------------------------------------------------------------
def test_a_physical_cubic_gives_its_axis():
    coefficients, axis = wavelength_axis_from(GOOD_COEFFICIENTS, 2048)
    assert coefficients == (350.0, 3.474048184833e-01, -1.5e-05, 2.0e-10)
    index = np.arange(2048)
    np.testing.assert_allclose(axis, 350.0 + 3.474048184833e-01 * index - 1.5e-05 * index**2 + 2.0e-10 * index**3)
    assert axis[0] == pytest.approx(350.0) and axis[-1] == pytest.approx(1000.0, abs=0.1)


def test_a_decreasing_axis_is_monotonic_too():
    _, axis = wavelength_axis_from("1000,-0.3,0,0", 2048)
    assert np.all(np.diff(axis) < 0)


def test_a_single_pixel_axis_within_range_is_taken():
    assert wavelength_axis_from("500,0,0,0", 1)[1].tolist() == [500.0]


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("350,1e300,0,0", "expected all within 150-3000 nm"),
        ("350,0.3,0,1e300", "non-finite wavelength axis"),
        ("1e308,1e308,1e308,1e308", "non-finite wavelength axis"),
        ("100,0.3,0,0", "expected all within 150-3000 nm"),  # starts below 150 nm
        ("2900,0.3,0,0", "expected all within 150-3000 nm"),  # runs past 3000 nm
        ("600,0.2,-0.0001,0", "turns or stalls between pixels 1000 and 1001"),  # peak at pixel 1000
        ("600,0,0,0", "turns or stalls between pixels 0 and 1"),
        ("350,nan,0,0", "expected 4 numbers"),
        ("350,inf,0,0", "expected 4 numbers"),
        ("350,0.3,0", "expected 4 numbers"),
        ("350,0.3,0,0,0", "expected 4 numbers"),
        ("350;0.3;0;0", "expected 4 numbers"),
        ("", "expected 4 numbers"),
    ],
)
def test_an_absurd_wavelength_polynomial_is_refused_naming_it(answer, expected):
    message = refused(wavelength_axis_from, answer, 2048)
    assert "wavelength coefficients" in message and repr(answer) in message and expected in message


@settings(max_examples=300, deadline=None)
@given(
    coefficients=st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
    pixels=st.integers(1, 4096),
)
def test_fuzz_an_axis_is_either_refused_or_finite_monotonic_and_in_range(coefficients, pixels):
    answer = ",".join(repr(c) for c in coefficients)
    try:
        _, axis = wavelength_axis_from(answer, pixels)
    except ProtocolError:
        return
    assert all(math.isfinite(c) for c in coefficients)
    assert axis.shape == (pixels,) and np.isfinite(axis).all()
    assert ((axis >= 150.0) & (axis <= 3000.0)).all()
    steps = np.diff(axis)
    assert (steps > 0).all() or (steps < 0).all()


# --- counts ----------------------------------------------------------------------------------------
def test_counts_from_zero_to_exactly_full_scale_are_data():
    check_counts(np.array([0.0, 1000.5, 65534.0, 65535.0]), 65535.0)  # 65535: saturated, flagged by the caller


@pytest.mark.parametrize("bad", [65535.5, 65536.0, 70000.0, 3e38, -0.5, -5.0, math.nan])
def test_counts_beyond_full_scale_or_below_zero_are_refused(bad):
    counts = np.full(8, 1000.0)
    counts[5] = bad
    message = refused(check_counts, counts, 65535.0)
    assert "outside 0-65535" in message and "pixel 5" in message


# --- limits the driver is built with (checked before anything is opened) -----------------------------
NOWHERE = "TCPIP0::127.0.0.1::9::SOCKET"  # never reached: these fail before connecting


@pytest.mark.parametrize(
    "arguments",
    [
        dict(min_integration_time_s=1e-7),  # shorter than any instrument answer the driver would accept
        dict(max_integration_time_s=7200.0),
        dict(min_integration_time_s=2.0, max_integration_time_s=1.0),
        dict(max_averages=0),
        dict(max_averages=2_000_000),
        dict(max_averages=True),
        dict(max_averages=10.0),
        dict(timeout_s=0.0),
        dict(timeout_s=math.inf),
    ],
)
def test_limits_outside_the_physical_ranges_are_refused_at_construction(arguments):
    with pytest.raises(ValueError):
        ScpiSpectrometer(NOWHERE, **arguments)
