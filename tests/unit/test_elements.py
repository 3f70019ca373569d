"""Element data: oxide factors computed from IUPAC atomic weights, conversions, errors."""

import math

import numpy as np
import pytest

import analysis

# Independent check values: standard atomic weights (IUPAC 2021) and formulas typed
# here, not taken from analysis.elements.
IUPAC = {
    "La": 138.90547,
    "Ce": 140.116,
    "Pr": 140.90766,
    "Nd": 144.242,
    "Sm": 150.36,
    "Eu": 151.964,
    "Gd": 157.25,
    "Tb": 158.925354,
    "Dy": 162.500,
    "Ho": 164.930329,
    "Er": 167.259,
    "Tm": 168.934219,
    "Yb": 173.045,
    "Lu": 174.9668,
    "Y": 88.905838,
    "Sc": 44.955908,
}
O_WEIGHT = 15.9994
OXIDES = {
    "La": (2, 3),
    "Ce": (1, 2),
    "Pr": (6, 11),
    "Nd": (2, 3),
    "Sm": (2, 3),
    "Eu": (2, 3),
    "Gd": (2, 3),
    "Tb": (4, 7),
    "Dy": (2, 3),
    "Ho": (2, 3),
    "Er": (2, 3),
    "Tm": (2, 3),
    "Yb": (2, 3),
    "Lu": (2, 3),
    "Y": (2, 3),
    "Sc": (2, 3),
}
TRADE_FACTORS = {"La": 1.1728, "Ce": 1.2284, "Pr": 1.2082, "Nd": 1.1664, "Tb": 1.1762, "Y": 1.2699}


@pytest.mark.parametrize("symbol", sorted(OXIDES))
def test_oxide_factor_matches_independent_computation(symbol):
    metal, oxygen = OXIDES[symbol]
    expected = (metal * IUPAC[symbol] + oxygen * O_WEIGHT) / (metal * IUPAC[symbol])
    assert analysis.oxide_factor(symbol) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("symbol, factor", sorted(TRADE_FACTORS.items()))
def test_oxide_factor_matches_trade_tables(symbol, factor):
    assert analysis.oxide_factor(symbol) == pytest.approx(factor, abs=1e-4)


def test_every_rare_earth_is_listed_with_its_trade_oxide():
    assert set(analysis.RARE_EARTHS) == set(OXIDES) | {"Pm"}
    assert analysis.element("Pr").oxide == "Pr6O11"
    assert analysis.element("Tb").oxide == "Tb4O7"
    assert analysis.element("Ce").oxide == "CeO2"
    assert not analysis.element("Pm").has_stable_isotope


def test_formula_mass_of_neodymium_oxide():
    assert analysis.formula_mass("Nd2O3") == pytest.approx(2 * 144.242 + 3 * 15.999)


@pytest.mark.parametrize("bad", ["Xx", "nd", "", None, "O"])
def test_unknown_symbol_names_the_symbol(bad):
    with pytest.raises(analysis.UnknownElementError) as error:
        analysis.oxide_factor(bad)
    assert repr(bad) in str(error.value)
    assert "known symbols" in str(error.value)


def test_molar_and_oxide_conversions_round_trip():
    grams = np.array([0.0, 1.0, 12.5])
    moles = analysis.g_per_L_to_mol_per_L(grams, "Nd")
    assert moles[1] == pytest.approx(1 / 144.242)
    np.testing.assert_allclose(analysis.mol_per_L_to_g_per_L(moles, "Nd"), grams)
    oxide = analysis.element_to_oxide_g_per_L(grams, "Pr")
    assert oxide[1] == pytest.approx(analysis.oxide_factor("Pr"))
    np.testing.assert_allclose(analysis.oxide_to_element_g_per_L(oxide, "Pr"), grams)
    assert math.isnan(float(analysis.element_to_oxide_g_per_L(float("nan"), "La")))
