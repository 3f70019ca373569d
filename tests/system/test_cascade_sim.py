"""Simulated spectrometers at the three sampling points of the Pr/Nd cascade (seeds/scenarios/pr-nd-cascade.toml).

Three SCPI simulators (feed, raffinate, strip) and one Ocean HDX (strip) play the
same scenario in four processes, each started with ``--sampling-point``; the real
drivers (drivers.ScpiSpectrometer over pyvisa-py, drivers.OceanSpectrometer over
python-seabreeze) measure them. Their truths (``SIM:TRUT:CASC? <s>``) must agree
with each other to the last digit and with the chemistry computed here from the
scenario file's numbers by drivers/sim/_cascade.py; the spectra must show the
strip liquor richer in Nd than the raffinate.

The simulators run at real speed, so every process stays within the scenario's
first hour (pH 1.45, the cascade settled) while the spectra are taken; the
truths at other times are asked for those times, not waited for.
"""

from __future__ import annotations

import importlib.util
import math
import os
import socket
import tomllib
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest

from drivers import OceanSpectrometer, ScpiSpectrometer
from drivers.sim._cascade import CascadeChemistry
from drivers.sim.launch import SimulatorProcess, start_simulator

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "seeds/scenarios/pr-nd-cascade.toml"
POINTS = ("feed", "raffinate", "strip")
SPEED = "1"  # real time: scenario time stays in the first, settled hour during the module
#: Scenario times asked of every simulator: settled at pH 1.45, mid-ramp, the ramp's end, one residence
#: time later, the second ramp, the end, and long after it (settled at pH 1.50).
TIMES_S = (0.0, 1800.0, 3630.0, 3660.0, 4860.0, 9000.0, 9030.0, 14400.0, 1.0e6)
RAMP_END_S = 3660.0
ND_BAND_NM, PR_BAND_NM = 794.0, 444.0  # the strongest Nd band; a Pr band where Nd does not absorb


def require(module: str, package: str) -> None:
    """A Python package the test drives the simulators with; required in CI (pyproject's dependencies)."""
    if importlib.util.find_spec(module) is not None:
        return
    message = f"{package} is missing (python module {module}): pip install -e '.[dev]'"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must run the cascade simulator test")
    pytest.skip(message)


@pytest.fixture(scope="module")
def file_numbers() -> dict:
    """The scenario file as TOML, read here (not through drivers/sim/scenario.py)."""
    return tomllib.loads(SCENARIO.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def chemistry(file_numbers) -> CascadeChemistry:
    return CascadeChemistry(**file_numbers["cascade"])


@pytest.fixture(scope="module")
def scpi_sims():
    require("pyvisa_py", "pyvisa-py")
    with ExitStack() as stack:
        sims = {
            point: stack.enter_context(
                start_simulator(
                    "drivers.sim.spectrometer",
                    *("--scenario", str(SCENARIO), "--sampling-point", point, "--seed", str(41 + i), "--speed", SPEED),
                )
            )
            for i, point in enumerate(POINTS)
        }
        yield sims


@pytest.fixture(scope="module")
def ocean_sim():
    require("seabreeze", "seabreeze (python-seabreeze)")
    with start_simulator(
        "drivers.sim.ocean", "--scenario", str(SCENARIO), "--sampling-point", "strip", "--seed", "44", "--speed", SPEED
    ) as sim:
        yield sim


class Control:
    """A plain-socket client of a text port (the Ocean simulator's control port): one line out, one back."""

    def __init__(self, resource: str | None):
        assert resource is not None, "the simulator printed no control port"
        _, host, port, _ = resource.split("::")
        self.sock = socket.create_connection((host, int(port)), timeout=10.0)
        self.lines = self.sock.makefile("rb")

    def query(self, command: str) -> str:
        self.sock.sendall(command.encode("ascii") + b"\n")
        line = self.lines.readline()
        assert line.endswith(b"\n"), f"no answer to {command!r}"
        return line.decode("ascii").strip()

    def write(self, command: str) -> None:
        self.sock.sendall(command.encode("ascii") + b"\n")
        assert self.query("SYST:ERR?") == '0,"No error"', command

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


@pytest.fixture(scope="module")
def ocean_control(ocean_sim: SimulatorProcess):
    control = Control(ocean_sim.control)
    yield control
    control.close()


def key_values(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(","))


def numbers(text: str) -> dict[str, float]:
    return {key: float(value) for key, value in key_values(text).items() if key != "POINT"}


def concentrations(text: str) -> dict[str, float]:
    return {el: float(v) for el, v in (item.split("=") for item in text.split(",") if item)}


def all_truths(scpi_sims, ocean_control, time_s: float) -> dict[str, str]:
    """``SIM:TRUT:CASC? <s>`` of every simulator, by who answered."""
    answers = {}
    for point, sim in scpi_sims.items():
        with ScpiSpectrometer(sim.address, timeout_s=5.0) as spec:
            answers[point] = spec.query(f"SIM:TRUT:CASC? {time_s:.3f}")
    answers["ocean strip"] = ocean_control.query(f"SIM:TRUT:CASC? {time_s:.3f}")
    return answers


# --- truths -------------------------------------------------------------------------------------------
def test_each_simulator_holds_its_sampling_points_solution(scpi_sims, ocean_control):
    for point, sim in scpi_sims.items():
        with ScpiSpectrometer(sim.address, timeout_s=5.0) as spec:
            assert spec.query("SIM:SAMP?") == point.upper()
            name, running, _ = spec.query("SIM:SCEN?").split(",")
            assert (name, running) == ('"Pr/Nd cascade"', "1")
            truth = key_values(spec.query("SIM:TRUT:CASC?"))  # now: within the first, settled hour
            cell = concentrations(spec.query("SIM:TRUT?"))
        assert truth["POINT"] == point.upper() and truth["CASCADE"] == "1" and float(truth["PH"]) == 1.45
        assert set(cell) == {"Pr", "Nd"}
        for element, value in cell.items():
            assert value == pytest.approx(float(truth[f"{point.upper()}_{element.upper()}"]), rel=1e-5)
    assert ocean_control.query("SIM:SAMP?") == "STRIP"
    ocean_truth = key_values(ocean_control.query("SIM:TRUT:CASC?"))
    ocean_cell = concentrations(ocean_control.query("SIM:TRUT?"))
    assert ocean_truth["POINT"] == "STRIP"
    assert ocean_cell["Nd"] == pytest.approx(float(ocean_truth["STRIP_ND"]), rel=1e-5)


def test_the_truths_of_separate_processes_agree_exactly(scpi_sims, ocean_control):
    for time_s in TIMES_S:
        answers = all_truths(scpi_sims, ocean_control, time_s)
        points = {who: key_values(answer).pop("POINT") for who, answer in answers.items()}
        assert points == {"feed": "FEED", "raffinate": "RAFFINATE", "strip": "STRIP", "ocean strip": "STRIP"}
        without_point = {answer.split(",", 1)[1] for answer in answers.values()}
        assert len(without_point) == 1, (time_s, answers)  # the same digits from all four


def test_the_truths_are_the_stated_chemistry(scpi_sims, ocean_control, file_numbers, chemistry):
    process = file_numbers["process"]
    flow = chemistry.strip_to_feed_flow
    truths = {}
    for time_s in TIMES_S:
        with ScpiSpectrometer(scpi_sims["strip"].address, timeout_s=5.0) as spec:
            truths[time_s] = truth = numbers(spec.query(f"SIM:TRUT:CASC? {time_s:.3f}"))
        pH = float(np.interp(time_s, process["time_s"], process["pH"]))  # what the pH sensor reads
        assert truth["PH"] == pytest.approx(pH, rel=1e-9)
        for element in ("Pr", "Nd"):
            assert truth[f"D_{element.upper()}"] == pytest.approx(chemistry.distribution_ratio(element, pH), rel=1e-8)
            assert truth[f"FEED_{element.upper()}"] == chemistry.feed_g_per_L[element]
        assert truth["BETA_ND_PR"] == pytest.approx(1.5, rel=1e-8)
        separation = (truth["STRIP_ND"] / truth["STRIP_PR"]) / (truth["RAFFINATE_ND"] / truth["RAFFINATE_PR"])
        assert truth["SEPARATION_ND_PR"] == pytest.approx(separation, rel=1e-7)
        assert truth["STRIP_ND"] / truth["STRIP_PR"] > 3.0 > truth["RAFFINATE_ND"] / truth["RAFFINATE_PR"]
    assert truths[9000.0]["D_ND"] / truths[0.0]["D_ND"] == pytest.approx(10 ** (3 * 0.1), rel=1e-8)
    for time_s, pH in ((0.0, 1.45), (1800.0, 1.45), (1.0e6, 1.50)):  # settled: Kremser, and the mass balance
        steady = chemistry.steady_state(pH)
        for element in ("Pr", "Nd"):
            up = element.upper()
            for point in ("raffinate", "strip"):
                assert truths[time_s][f"{point.upper()}_{up}"] == pytest.approx(steady[point][element], rel=1e-8)
            balance = truths[time_s][f"RAFFINATE_{up}"] + truths[time_s][f"STRIP_{up}"] * flow
            assert balance == pytest.approx(truths[time_s][f"FEED_{up}"], rel=1e-8)
    # after the ramp the pH holds at 1.55: each point is e**-1 of the way left one residence time on
    target = chemistry.steady_state(1.55)
    later = RAMP_END_S + chemistry.residence_time_s
    assert later in truths
    for point in ("raffinate", "strip"):
        for element in ("Pr", "Nd"):
            key, goal = f"{point.upper()}_{element.upper()}", target[point][element]
            left = (truths[later][key] - goal) / (truths[RAMP_END_S][key] - goal)
            assert left == pytest.approx(math.exp(-1.0), rel=1e-6)


# --- spectra ------------------------------------------------------------------------------------------
def absorbance_at(axis: np.ndarray, absorbance: np.ndarray, wavelength_nm: float) -> float:
    return float(absorbance[int(np.argmin(np.abs(axis - wavelength_nm)))])


def measure_scpi(sim: SimulatorProcess) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(axis, absorbance, true concentrations) of the point's solution against a water blank."""
    with ScpiSpectrometer(sim.address, timeout_s=5.0) as spec:
        spec.integration_time_s = 0.1
        spec.averages = 8
        spec.write("SIM:STAN")  # a water blank (stops the scenario) ...
        dark, blank = spec.dark(), spec.acquire()
        spec.write("SIM:SCEN:STAR 600")  # ... and the point's solution again, ten minutes in
        sample = spec.acquire()
        truth = concentrations(spec.query("SIM:TRUT?"))
        return spec.wavelengths_nm, -np.log10((sample - dark) / (blank - dark)), truth


@pytest.fixture(scope="module")
def scpi_spectra(scpi_sims):
    return {point: measure_scpi(sim) for point, sim in scpi_sims.items()}


def test_the_strip_absorbs_more_at_the_nd_band_than_the_raffinate(scpi_spectra):
    nd = {point: absorbance_at(axis, a, ND_BAND_NM) for point, (axis, a, _) in scpi_spectra.items()}
    pr = {point: absorbance_at(axis, a, PR_BAND_NM) for point, (axis, a, _) in scpi_spectra.items()}
    assert nd["strip"] > 3.0 * nd["raffinate"] > 0.0
    assert nd["strip"] / pr["strip"] > 2.0 * nd["raffinate"] / pr["raffinate"]  # Nd/Pr: strip over raffinate
    truth = {point: c for point, (_, _, c) in scpi_spectra.items()}
    # Pr does not absorb at 794 nm: the band follows Nd alone, point to point
    for point in ("feed", "strip"):
        assert nd[point] / nd["raffinate"] == pytest.approx(truth[point]["Nd"] / truth["raffinate"]["Nd"], rel=0.05)


def test_an_ocean_spectrometer_at_the_strip_sees_the_strip(ocean_sim, ocean_control, scpi_spectra):
    with OceanSpectrometer(ocean_sim.address, model="HDX", timeout_s=5.0) as spectrometer:
        spectrometer.averages = 8
        ocean_control.write("SIM:STAN")
        dark, blank = spectrometer.dark(), spectrometer.acquire()  # the dark with the lamp off (its TTL line)
        ocean_control.write("SIM:SCEN:STAR 600")
        sample = spectrometer.acquire()
        axis = spectrometer.wavelengths_nm
    truth = concentrations(ocean_control.query("SIM:TRUT?"))
    strip_axis, strip_a, strip_truth = scpi_spectra["strip"]
    raffinate_axis, raffinate_a, _ = scpi_spectra["raffinate"]
    assert truth == strip_truth  # the same solution as the SCPI spectrometer at the strip
    ocean_nd = absorbance_at(axis, -np.log10((sample - dark) / (blank - dark)), ND_BAND_NM)
    assert ocean_nd > 3.0 * absorbance_at(raffinate_axis, raffinate_a, ND_BAND_NM)
    assert ocean_nd == pytest.approx(absorbance_at(strip_axis, strip_a, ND_BAND_NM), rel=0.05)
