"""Standards files: the shipped set loads; mistakes are named by file and field."""

from pathlib import Path

import numpy as np
import pytest

from daq.calibration_run import load_standards
from daq.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "seeds/standards").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_standards_are_well_posed(path):
    standards = load_standards(path)
    matrix = standards.concentration_matrix()
    assert matrix.shape == (len(standards.standards), len(standards.analytes))
    design = np.column_stack([matrix, np.ones(len(matrix))])
    assert np.linalg.matrix_rank(design) == len(standards.analytes) + 1  # analytes vary independently


@pytest.mark.parametrize("edit, field, words", [
    (('name = "Nd-20"\nconcentrations_g_per_L = { Nd = 20.0 }', 'name = "Nd-20"\nconcentrations_g_per_L = { Nd = -2.0 }'),
     "standard[1].concentrations_g_per_L.Nd", ["greater than or equal to 0"]),
    (('{ Nd = 20.0 }', '{ Fe = 20.0 }'), "standard[1].concentrations_g_per_L.Fe", ["'Nd'"]),
    (("averages = 256", "averages = 0"), "standards.averages", ["greater than or equal to 1"]),
    (('analytes = ["Nd", "Pr", "Sm", "Er", "Ho"]', 'analytes = ["Nd", "Pr", "Sm", "Er"]'),
     "standards", ["'Ho'", "not among analytes"]),
])
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
    path.write_text('[standards]\nanalytes = ["Nd", "Pr"]\nintegration_time_s = 0.02\n'
                    '[[standard]]\nname = "blank"\nconcentrations_g_per_L = {}\n')
    with pytest.raises(ConfigError, match="1 standards for 2 analytes: at least 3"):
        load_standards(path)
