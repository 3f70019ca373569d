"""`remdaq calibrate` when the spectrometer refuses a setting the station file allowed.

A station may state limits wider than its instrument's (a wrong `max_averages`);
the instrument's refusal then ends the calibration with one clear line naming the
command and the instrument's answer, and no calibration file is written.
"""

from __future__ import annotations

import pytest
from _bench import SIM_STATION, STANDARDS, run_remdaq

pytestmark = pytest.mark.system


def test_a_setting_the_instrument_refuses_ends_the_calibration_with_its_answer_and_writes_nothing(tmp_path):
    station = tmp_path / "station.toml"
    text = SIM_STATION.read_text()
    assert "max_averages = 1000" in text
    station.write_text(
        text.replace("max_averages = 1000", "max_averages = 5000").replace(
            'data_dir = "data"', f'data_dir = "{tmp_path / "data"}"'
        )
    )
    standards = tmp_path / "standards.toml"
    shipped = STANDARDS.read_text()
    assert "averages = 256" in shipped
    standards.write_text(shipped.replace("averages = 256", "averages = 4000", 1))
    out = tmp_path / "cal.h5"
    result = run_remdaq("calibrate", standards, "--station", station, "--out", out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "calibration FAILED, nothing written" in result.stderr
    assert "SENS:AVER:COUN 4000" in result.stderr and "averages 4000 not in 1-1000" in result.stderr
    assert not out.exists()
