"""Shared fixtures for system tests: the simulated bench and a calibration made on it."""

from pathlib import Path

import pytest
from _bench import SIM_STATION, STANDARDS


@pytest.fixture(scope="session")
def sim_calibration(tmp_path_factory) -> Path:
    """A calibration measured on the simulated bench from the shipped standards (made once per session)."""
    from daq.calibration_run import calibrate_station, load_standards
    from daq.config import load_station

    out = tmp_path_factory.mktemp("calibration") / "sim.h5"
    calibrate_station(load_station(SIM_STATION), load_standards(STANDARDS), out)
    return out
