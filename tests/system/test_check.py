"""`remdaq check`: identity and one reading per instrument, or a clear reason why not."""

import subprocess
import sys

import pytest

from _bench import ROOT, SIM_STATION

pytestmark = pytest.mark.system


def check(station):
    return subprocess.run([sys.executable, "-m", "daq", "check", "--station", str(station)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_check_on_the_simulated_bench_reports_both_instruments():
    result = check(SIM_STATION)
    assert result.returncode == 0, result.stderr
    assert "furnace (simulated): OK  Eurotherm" in result.stdout
    assert "PV 20.0 C" in result.stdout  # a cold furnace at ambient
    assert "spectrometer (simulated): OK" in result.stdout
    assert "2048 px" in result.stdout and "nm" in result.stdout


def test_check_says_why_an_absent_bench_cannot_be_reached(tmp_path):
    station = tmp_path / "absent.toml"
    station.write_text((ROOT / "hardware/stations/example-bench.toml").read_text()
                       .replace("192.168.10.21", "127.0.0.1").replace("5025", "9"))
    result = check(station)
    assert result.returncode == 1
    assert "furnace: FAILED  NotConnected" in result.stderr and "/dev/serial/by-id/" in result.stderr
    assert "spectrometer: FAILED  NotConnected" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_with_a_broken_station_file_names_file_and_field(tmp_path):
    station = tmp_path / "broken.toml"
    station.write_text(SIM_STATION.read_text().replace("max_ramp_C_per_min = 10.0", "max_ramp_C_per_min = -1"))
    result = check(station)
    assert result.returncode == 2
    assert str(station) in result.stderr and "furnace.max_ramp_C_per_min" in result.stderr
