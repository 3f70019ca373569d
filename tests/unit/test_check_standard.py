"""The shift-start check's parts without a bench: the check-standard file, the verdict rules, the operator prompt."""

import math
import os
from pathlib import Path

import pytest

from analysis.quantify import LACK_OF_FIT_LIMIT
from daq._check_standard import load_check_standard
from daq.calibration_check import SHIFT_LIMIT_NM, Z_LIMIT, AnalyteResult, operator_prompt, verdict_reasons
from daq.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "seeds/standards/check/check-nd-pr.toml"


def test_the_shipped_check_standard_loads():
    check = load_check_standard(SHIPPED)
    assert check.standard.elements == ("Nd", "Pr")
    assert list(check.standard.stated_g_per_L()) == [10.0, 2.0]
    assert list(check.standard.standard_uncertainty_g_per_L()) == pytest.approx([0.02, 0.006])
    assert check.integration_time_s == 0.02 and check.averages == 1000 and check.replicates == 3


def test_relative_uncertainty_and_coverage_factor(tmp_path):
    path = tmp_path / "check.toml"
    path.write_text(
        SHIPPED.read_text()
        .replace("uncertainty_g_per_L = { Nd = 0.02, Pr = 0.006 }", "certified_relative_uncertainty = 0.004")
        .replace("coverage_factor = 1 ", "coverage_factor = 2 ")
    )
    standard = load_check_standard(path).standard
    assert list(standard.standard_uncertainty_g_per_L()) == pytest.approx([0.02, 0.004])  # 0.4 % of 10 and 2, / 2


@pytest.mark.parametrize(
    "old, new, field, words",
    [
        ("{ Nd = 10.0, Pr = 2.0 }", "{}", "standard.concentrations_g_per_L", ["states no element"]),
        (
            "{ Nd = 10.0, Pr = 2.0 }",
            "{ Nd = 0.0, Pr = 0.0 }",
            "standard.concentrations_g_per_L",
            ["every element is 0"],
        ),
        ("{ Nd = 10.0, Pr = 2.0 }", "{ Nd = inf, Pr = 2.0 }", "standard.concentrations_g_per_L.Nd", ["finite"]),
        ("Pr = 0.006 }", "Pr = 0.006, Sm = 0.01 }", "standard.uncertainty_g_per_L", ["['Sm']", "does not state"]),
        ("Pr = 0.006 }", "Pr = true }", "standard.uncertainty_g_per_L.Pr", ["not a boolean"]),
        ("coverage_factor = 1 ", "coverage_factor = 5 ", "standard.coverage_factor", ["less than or equal to 3"]),
        ('name = "check-nd-pr"', 'nme = "check-nd-pr"', "standard.nme", ["unknown field"]),
        ("replicates = 3", "replicates = 3\nreference = 1", "check.reference", ["unknown field"]),
    ],
)
def test_mistakes_name_file_and_field(tmp_path, old, new, field, words):
    text = SHIPPED.read_text()
    assert old in text
    path = tmp_path / "check.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as error:
        load_check_standard(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ") and field in message, message
    for word in words:
        assert word in message


def test_only_a_small_regular_file_is_read(tmp_path):
    fifo = tmp_path / "check.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="named pipe"):
        load_check_standard(fifo)


# -- verdict rules ------------------------------------------------------------------------------


def nd(measured, sigma=0.03, stated=10.0, u=0.04):
    return AnalyteResult("Nd", measured, sigma, stated_g_per_L=stated, stated_uncertainty_g_per_L=u)


def test_z_is_the_bias_over_the_combined_uncertainty():
    a = nd(10.1)
    assert a.bias_g_per_L == pytest.approx(0.1) and a.combined_sigma_g_per_L == pytest.approx(0.05)
    assert a.z == pytest.approx(2.0)
    unstated = AnalyteResult("Sm", 0.01, 0.02)
    assert not unstated.stated and math.isnan(unstated.bias_g_per_L) and math.isnan(unstated.z)


@pytest.mark.parametrize(
    "analyte, lack_of_fit, shift_nm, starts",
    [
        (nd(10.0 + 0.999 * Z_LIMIT * 0.05), 1.0, 0.0, []),
        (nd(10.0 + 1.001 * Z_LIMIT * 0.05), 1.0, 0.0, ["Nd: bias +0.15"]),
        (nd(10.0 - 1.001 * Z_LIMIT * 0.05), 1.0, 0.0, ["Nd: bias -0.15"]),
        (nd(10.0, sigma=math.inf), 1.0, 0.0, ["Nd: no usable estimate"]),
        (nd(10.0), 0.999 * LACK_OF_FIT_LIMIT, 0.0, []),
        (nd(10.0), 1.001 * LACK_OF_FIT_LIMIT, 0.0, ["lack of fit 2"]),
        (nd(10.0), math.nan, 0.0, ["lack of fit: not computed"]),
        (nd(10.0), 1.0, -0.999 * SHIFT_LIMIT_NM, []),
        (nd(10.0), 1.0, 1.001 * SHIFT_LIMIT_NM, ["wavelength shift +0.250"]),
        (nd(10.0), 1.0, -1.001 * SHIFT_LIMIT_NM, ["wavelength shift -0.250"]),
        (nd(11.0), 9.0, 0.4, ["Nd: bias", "lack of fit", "wavelength shift"]),
        (AnalyteResult("Sm", 3.0, 0.01), 1.0, 0.0, []),  # an element the standard does not state is not judged
    ],
)
def test_verdict_rules(analyte, lack_of_fit, shift_nm, starts):
    reasons = verdict_reasons((analyte,), lack_of_fit, shift_nm)
    assert len(reasons) == len(starts), reasons
    for reason, start in zip(reasons, starts):
        assert reason.startswith(start), reasons


def test_a_failed_fit_is_a_reason():
    assert verdict_reasons((nd(10.0),), 1.0, 0.0, status=1)[0].startswith("the fit of the standard's spectrum")


# -- the operator prompt on a real bench: every wait bounded -------------------------------------


class Pipe:
    def __init__(self):
        self.read_fd, self.write_fd = os.pipe()

    def fileno(self):
        return self.read_fd

    def close(self):
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def pipe():
    p = Pipe()
    yield p
    p.close()


def test_the_prompt_returns_on_enter_one_line_at_a_time(pipe, capsys):
    ask = operator_prompt(timeout_s=5, stdin=pipe)
    os.write(pipe.write_fd, b"\nok\n")
    assert ask("Fill the cell with the blank, then press Enter: ") == ""
    assert ask("again: ") == "ok"
    assert "Fill the cell with the blank" in capsys.readouterr().err


def test_the_prompt_gives_up_after_its_timeout(pipe):
    with pytest.raises(TimeoutError, match="no answer from the operator within 0.2 s"):
        operator_prompt(timeout_s=0.2, stdin=pipe)("Fill the cell: ")


def test_the_prompt_says_when_nobody_can_answer(pipe):
    os.close(pipe.write_fd)
    with pytest.raises(RuntimeError, match="standard input closed"):
        operator_prompt(timeout_s=5, stdin=pipe)("Fill the cell: ")
