"""Standards files: the shipped set loads; mistakes are named by file and field."""

import os
from pathlib import Path

import numpy as np
import pytest

from daq.calibration_run import check_standards_against_station, load_standards
from daq.config import ConfigError, load_station

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "seeds/standards").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_standards_are_well_posed(path):
    standards = load_standards(path)
    matrix = standards.concentration_matrix()
    assert matrix.shape == (len(standards.standards), len(standards.analytes))
    design = np.column_stack([matrix, np.ones(len(matrix))])
    assert np.linalg.matrix_rank(design) == len(standards.analytes) + 1  # analytes vary independently


@pytest.mark.parametrize(
    "edit, field, words",
    [
        (
            (
                'name = "Nd-20"\nconcentrations_g_per_L = { Nd = 20.0 }',
                'name = "Nd-20"\nconcentrations_g_per_L = { Nd = -2.0 }',
            ),
            "standard[1].concentrations_g_per_L.Nd",
            ["greater than or equal to 0"],
        ),
        (("{ Nd = 20.0 }", "{ Fe = 20.0 }"), "standard[1].concentrations_g_per_L.Fe", ["'Nd'"]),
        (("averages = 256", "averages = 0"), "standards.averages", ["greater than or equal to 1"]),
        (
            ('analytes = ["Nd", "Pr", "Sm", "Er", "Ho"]', 'analytes = ["Nd", "Pr", "Sm", "Er"]'),
            "standards",
            ["'Ho'", "not among analytes"],
        ),
    ],
)
def test_bad_standards_file_names_file_and_field(tmp_path, edit, field, words):
    old, new = edit
    text = SHIPPED[0].read_text()
    assert old in text
    path = tmp_path / "standards.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_standards(path)
    message = str(error.value)
    assert str(path) in message and field in message
    for word in words:
        assert word in message


def test_too_few_standards_for_the_analytes(tmp_path):
    path = tmp_path / "few.toml"
    path.write_text(
        '[standards]\nanalytes = ["Nd", "Pr"]\nintegration_time_s = 0.02\n'
        '[[standard]]\nname = "blank"\nconcentrations_g_per_L = {}\n'
    )
    with pytest.raises(ConfigError, match="1 standards for 2 analytes: at least 3"):
        load_standards(path)


# -- issue 11: every number has a type and a range; only small regular files are read ----------------


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ("averages = 256", "averages = true", "standards.averages", ["not a boolean"]),
        ("averages = 256", "averages = 1e6", "standards.averages", ["integer"]),
        ("integration_time_s = 0.02", "integration_time_s = inf", "standards.integration_time_s", ["finite"]),
        ("integration_time_s = 0.02", "integration_time_s = true", "standards.integration_time_s", ["not a boolean"]),
        ("replicates = 2", "replicates = 2.0", "standards.replicates", ["integer"]),
        ("{ Nd = 20.0 }", "{ Nd = 1e308 }", "standard[1].concentrations_g_per_L.Nd", ["less than or equal to 1000"]),
        ("{ Nd = 20.0 }", "{ Nd = nan }", "standard[1].concentrations_g_per_L.Nd", ["finite"]),
        ('quadratic = ["Nd"]', 'quadratic = ["Nd", "Nd"]', "standards.quadratic", ["repeats"]),
        ('name = "Nd-20"', f'name = "{"n" * 5000}"', "standard[1].name", ["at most 200 characters"]),
    ],
)
def test_standards_numbers_are_typed_and_bounded(tmp_path, old, new, field, words):
    text = SHIPPED[0].read_text()
    assert old in text
    path = tmp_path / "standards.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_standards(path)
    message = str(error.value)
    assert str(path) in message and field in message and len(error.value.problems) == 1
    for word in words:
        assert word in message


def test_standards_outside_the_station_integration_range_are_refused_before_measuring(tmp_path):
    path = tmp_path / "standards.toml"
    path.write_text(SHIPPED[0].read_text().replace("integration_time_s = 0.02", "integration_time_s = 20", 1))
    with pytest.raises(
        ConfigError,
        match=r"standards.integration_time_s: 20 s is outside the station's range "
        r"0.001-10 s",
    ):
        check_standards_against_station(load_standards(path), load_station(ROOT / "hardware/stations/sim.toml"))


def test_more_averages_than_the_station_spectrometer_can_do_are_refused_before_measuring(tmp_path):
    path = tmp_path / "standards.toml"
    text = SHIPPED[0].read_text()
    assert "averages = 256" in text
    path.write_text(text.replace("averages = 256", "averages = 4000", 1))
    with pytest.raises(ConfigError, match=r"standards.averages: 4000 is above the station's max_averages 1000"):
        check_standards_against_station(load_standards(path), load_station(ROOT / "hardware/stations/sim.toml"))


def test_a_recipe_asking_more_averages_than_the_spectrometer_can_do_is_refused(tmp_path):
    from daq.config import check_recipe_against_station, load_recipe

    recipe = tmp_path / "quick.toml"
    text = (ROOT / "seeds/recipes/quick.toml").read_text()
    assert "reference_averages = 512" in text
    recipe.write_text(text.replace("reference_averages = 512", "reference_averages = 5000"))
    station = load_station(ROOT / "hardware/stations/sim.toml")
    with pytest.raises(
        ConfigError,
        match=r"spectrometer.reference_averages: 5000 is above the station's "
        r"max_averages 1000",
    ):
        check_recipe_against_station(load_recipe(recipe), station)


@pytest.mark.timeout(20)
def test_a_pipe_or_oversized_file_as_standards_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is a named pipe \\(FIFO\\), not a regular file"):
        load_standards(fifo)
    big = tmp_path / "big.toml"
    big.write_text(SHIPPED[0].read_text() + "#" * (1 << 20))
    with pytest.raises(ConfigError, match="bytes; at most 1048576 bytes are allowed"):
        load_standards(big)
