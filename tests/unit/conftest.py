"""Unit tests: one part at a time, in-process, each in milliseconds to well under a second.

- Every unit test gets a per-test timeout of :data:`UNIT_TIMEOUT_S` (pytest-timeout; the
  project-wide 300 s of pyproject.toml stays for the system tests). A test that needs
  more says so with its own ``@pytest.mark.timeout(N)`` and why.
- ``slow``: the few unit tests that start child processes or sweep thousands of generated
  cases (the config-file mutations, numba's cache from a cold start). ``make test-fast``
  leaves them out (``-m "not slow"``); ``make test`` runs them.
- numba's kernels are loaded (compiled, on a fresh checkout) once before the first unit
  test, so that no test's timeout pays for the compilation.
- Shared fixtures: a calibration of the synthetic bench (made once a session), the fake
  bench of :mod:`_fake_bench` and a trial run on it, the app's data folder, the simulated optics.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT_TIMEOUT_S = 10
"""Seconds a unit test may take, setup and teardown included. The slowest unit tests outside ``slow`` take
up to about 3 s on this machine's two cores when they are shared with other work (load average 20)."""

#: Modules whose tests may take longer, and why (for a module being edited elsewhere; otherwise a test says
#: ``@pytest.mark.timeout(N)`` itself).
MODULE_TIMEOUTS_S = {
    # its module fixtures write and analyse 2900 live spectra (2-5 s), counted in its first test's limit
    "test_reanalysis.py": 30,
}

_UNIT_DIR = Path(__file__).resolve().parent


def _is_unit_test(item) -> bool:
    return _UNIT_DIR in Path(item.path).resolve().parents


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: a unit test left out of `make test-fast` (child processes, "
        "thousands of generated cases); `make test` runs it",
    )


def pytest_collection_modifyitems(config, items):
    # called with every collected item (system tests too, when both folders run): only ours get the limit
    for item in items:
        if _is_unit_test(item) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(MODULE_TIMEOUTS_S.get(Path(item.path).name, UNIT_TIMEOUT_S)))


def pytest_collection_finish(session):
    """Load numba's kernels for both entry points (absorbance and counts) before any unit test runs."""
    if not any(_is_unit_test(item) for item in session.items):
        return
    import analysis

    analysis.warm_up_kernels()


# -- the trial runner on the fake bench --------------------------------------------------------------------


@pytest.fixture(scope="session")
def synthetic_calibration(tmp_path_factory) -> Path:
    """A calibration file of the synthetic Nd/Pr bench (the fake spectrometer's wavelength axis)."""
    from _trial_factory import write_calibration

    path = tmp_path_factory.mktemp("calibration") / "synthetic.h5"
    write_calibration(path)
    return path


@pytest.fixture
def fake_bench():
    """A fake furnace and spectrometer (:class:`_fake_bench.FakeBench`), fresh for each test."""
    from _fake_bench import FakeBench

    return FakeBench()


@pytest.fixture
def run_trial(tmp_path, synthetic_calibration, fake_bench):
    """``run_trial(recipe, station=None, **options)``: run a trial on ``fake_bench`` to its end.

    Returns ``(outcome, trial file)``: the :class:`daq.runner.TrialOutcome` and the closed file as read
    back (:class:`_fake_bench.TrialFile`).
    """
    from _fake_bench import fake_station, make_runner, read_trial

    def run(recipe, station=None, **options):
        runner = make_runner(
            recipe, station or fake_station(), fake_bench, tmp_path / "data", synthetic_calibration, **options
        )
        outcome = runner.run()
        return outcome, read_trial(outcome.path)

    return run


# -- moved here from the test modules that shared them ---------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """The app's data folder (REMDAQ_DATA_DIR), no station named."""
    monkeypatch.setenv("REMDAQ_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("REMDAQ_STATION", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def optics():
    """The simulated spectrometer's optics with their defaults (seed 7)."""
    from drivers.sim._optics import Optics, OpticsConfig

    return Optics(OpticsConfig(), seed=7)
