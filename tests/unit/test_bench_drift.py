"""Bench drifts of the simulated spectrometer (drivers/sim/_bench_drift.py): physics, switches, truth, no I/O.

Stated model (docs/instruments/spectrometer.md, "Bench drifts"):
- axis: true pixel wavelength = nominal + k_T (T_spectrometer - T_cal) + fibre steps, k_T = 0.05 nm/C,
  the spectrometer following the lab with a first-order lag (1200 s);
- bands: FWHM x (1 + 0.003 dT), centre + 0.02 nm dT, area kept (dT = solution - 20 C);
- matrix: only the hypersensitive bands (Nd 575, Ho 451, Er 523 nm) change, by the complexed fraction
  f = b [L] / (1 + b [L]) of the complexed ion's change.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from drivers.sim._bench_drift import (
    CENTRE_NM_PER_C,
    K_T_NM_PER_C,
    MATRICES,
    REPLUG_STEP_RANGE_NM,
    SPECTROMETER_LAG_S,
    WIDTH_PER_C,
    BandChange,
    BenchDrift,
    LabHistory,
    Solution,
    band_change,
    changed_bands,
)
from drivers.sim._lanthanide_bands import BANDS, absorbance_per_cm
from drivers.sim._optics import MAX_WAVELENGTH_SHIFT_NM, Optics, OpticsConfig
from drivers.sim.scenario import load_scenario
from drivers.sim.spectrometer import Cell, Device, Instrument, LineFaults, SimControl

MIXTURE = {"Nd": 10.0, "Pr": 2.0, "Sm": 1.0, "Er": 1.0, "Ho": 1.0}


def absorbance(optics, sample, **drift):
    """Noise-free apparent absorbance: sample and blank seen through the same (possibly drifted) axis."""
    shift = {"wavelength_shift_nm": drift["wavelength_shift_nm"]} if "wavelength_shift_nm" in drift else {}
    return -np.log10(optics.signal_rate(sample, 0.0, **drift) / optics.signal_rate({}, 0.0, **shift))


# --- wavelength axis ----------------------------------------------------------------------------------
@pytest.mark.parametrize("shift_nm", [0.05, 0.2, -0.3, 1.0])
def test_a_drifted_axis_sees_the_undisturbed_spectrum_at_shifted_wavelengths(optics, shift_nm):
    """A(pixel i) with the axis drifted by d is the undisturbed A at lambda_i + d.

    Precision 3e-4 absorbance: the optics interpolate the slit-blurred light linearly on
    their 0.2 nm grid, which is 1.5e-4 at the top of the Nd 794 nm band (A 0.8); the
    shift itself changes A by up to 0.1 per nm here.
    """
    wavelength_nm = optics.wavelengths_nm
    undisturbed = absorbance(optics, MIXTURE)
    drifted = absorbance(optics, MIXTURE, wavelength_shift_nm=shift_nm)
    expected = CubicSpline(wavelength_nm, undisturbed)(wavelength_nm + shift_nm)
    inside = (wavelength_nm + shift_nm > wavelength_nm[0]) & (wavelength_nm + shift_nm < wavelength_nm[-1])
    assert np.max(np.abs(drifted - expected)[inside]) < 3e-4
    assert np.max(np.abs(drifted - undisturbed)) > 50 * 3e-4 * abs(shift_nm)  # the shift is far above that


def test_the_axis_shift_is_limited_to_what_the_fine_grid_holds(optics):
    optics.signal_rate(MIXTURE, 0.0, wavelength_shift_nm=MAX_WAVELENGTH_SHIFT_NM)
    for bad in (MAX_WAVELENGTH_SHIFT_NM + 0.01, math.nan, math.inf):
        with pytest.raises(ValueError, match="wavelength shift"):
            optics.signal_rate(MIXTURE, 0.0, wavelength_shift_nm=bad)


def test_axis_shift_is_k_T_times_the_spectrometer_temperature_above_T_cal_plus_replugs():
    drift = BenchDrift()
    drift.wavelength = True
    drift.lag_s = 0.0
    drift.lab.hold(100.0, 24.0)
    state = drift.state_at(200.0, Solution())
    assert K_T_NM_PER_C == 0.05
    assert state.spectrometer_C == 24.0 and state.axis_shift_nm == pytest.approx(0.05 * 4.0)
    drift.replug(0.12)
    assert drift.state_at(200.0, Solution()).axis_shift_nm == pytest.approx(0.32)
    drift.calibration_temperature_C = 24.0
    assert drift.state_at(200.0, Solution()).axis_shift_nm == pytest.approx(0.12)
    drift.wavelength = False
    state = drift.state_at(200.0, Solution())
    assert state.axis_shift_nm == 0.0 and state.fibre_shift_nm == pytest.approx(0.12)  # recorded, not applied


def test_a_random_replug_steps_by_005_to_03_nm_either_way_and_a_given_one_is_bounded():
    drift = BenchDrift(np.random.default_rng(5))
    steps = [drift.replug() for _ in range(200)]
    low, high = REPLUG_STEP_RANGE_NM
    assert all(low <= abs(s) <= high for s in steps)
    assert min(steps) < 0 < max(steps)
    assert drift.fibre_offset_nm == pytest.approx(sum(steps))
    for bad in (2.5, math.nan):
        with pytest.raises(ValueError):
            drift.replug(bad)


def test_the_spectrometer_follows_the_lab_with_a_first_order_lag():
    lab = LabHistory(20.0)
    lab.hold(1000.0, 24.0)  # a 4 C step
    for t in (0.0, 600.0, 1200.0, 3600.0, 10000.0):
        expected = 20.0 + 4.0 * (1.0 - math.exp(-max(0.0, t - 1000.0) / SPECTROMETER_LAG_S))
        assert lab.followed_at(t, SPECTROMETER_LAG_S) == pytest.approx(expected, abs=4.0 / 256)
    ramp = LabHistory(20.0)
    ramp.follow(0.0, lambda t: 20.0 + 1e-4 * t)  # 0.36 C/h: the follower trails by rate x lag
    assert ramp.followed_at(50000.0, 1200.0) == pytest.approx(20.0 + 1e-4 * (50000.0 - 1200.0), abs=2e-3)
    assert ramp.followed_at(50000.0, 0.0) == pytest.approx(25.0)


# --- band temperature ----------------------------------------------------------------------------------
def _moments(wavelength_nm, a):
    area = np.trapezoid(a, wavelength_nm)
    centre = np.trapezoid(a * wavelength_nm, wavelength_nm) / area
    sigma = math.sqrt(np.trapezoid(a * (wavelength_nm - centre) ** 2, wavelength_nm) / area)
    return area, centre, sigma


@pytest.mark.parametrize("temperature_C", [10.0, 30.0, 45.0])
def test_bands_broaden_0_3_percent_and_move_0_02_nm_per_C_keeping_their_area(temperature_C):
    grid = np.arange(380.0, 425.0, 0.005)  # Sm 402 nm alone: an isolated band
    change = band_change(Solution(temperature_C), temperature=True, matrix=False)
    before = _moments(grid, absorbance_per_cm(grid, {"Sm": 3.0}))
    after = _moments(grid, absorbance_per_cm(grid, {"Sm": 3.0}, changed_bands(change)))
    delta = temperature_C - 20.0
    assert WIDTH_PER_C == 0.003 and CENTRE_NM_PER_C == 0.02
    assert after[0] / before[0] == pytest.approx(1.0, abs=1e-9)
    assert after[1] - before[1] == pytest.approx(0.02 * delta, abs=1e-6)
    assert after[2] / before[2] == pytest.approx(1.0 + 0.003 * delta, abs=1e-6)


def test_temperature_changes_every_band_alike_hypersensitive_or_not():
    change = band_change(Solution(35.0, "nitrate"), temperature=True, matrix=False)
    assert change.hyper_amplitude_factor == 1.0 and change.hyper_width_factor == 1.0
    for old, new in zip(BANDS, changed_bands(change)):
        assert new.fwhm_nm / old.fwhm_nm == pytest.approx(1.045)
        assert new.center_nm - old.center_nm == pytest.approx(0.3)
        assert new.epsilon_L_per_mol_cm * new.fwhm_nm == pytest.approx(old.epsilon_L_per_mol_cm * old.fwhm_nm)


# --- matrix ----------------------------------------------------------------------------------------------
def test_the_hypersensitive_bands_are_nd_575_ho_451_er_523():
    assert {(b.element, b.center_nm) for b in BANDS if b.hypersensitive} == {
        ("Nd", 575.0),
        ("Ho", 451.0),
        ("Er", 523.0),
    }


@pytest.mark.parametrize("matrix", ["nitrate", "chloride"])
def test_only_the_hypersensitive_bands_change_with_the_matrix(matrix):
    change = band_change(Solution(20.0, matrix, 1.0), temperature=True, matrix=True)
    m = MATRICES[matrix]
    f = m.binding_L_per_mol / (1.0 + m.binding_L_per_mol)
    assert change.width_factor == 1.0 and change.centre_shift_nm == 0.0  # at 20 C
    assert change.hyper_amplitude_factor == pytest.approx(1.0 + (m.amplitude_complexed - 1.0) * f)
    for old, new in zip(BANDS, changed_bands(change)):
        assert (new != old) == old.hypersensitive
    grid = np.arange(350.0, 1000.0, 0.05)
    for element in ("Nd", "Pr", "Sm", "Er", "Ho", "Dy", "Tm", "Eu", "Yb"):
        reference = absorbance_per_cm(grid, {element: 5.0})
        changed = absorbance_per_cm(grid, {element: 5.0}, changed_bands(change))
        hyper = [b for b in BANDS if b.element == element and b.hypersensitive]
        if not hyper:
            assert np.array_equal(changed, reference), element
            continue
        (band,) = hyper
        near = np.abs(grid - band.center_nm) < 3.0 * band.fwhm_nm
        on_other_bands = np.zeros(grid.shape, dtype=bool)
        for other in BANDS:
            if other.element == element and not other.hypersensitive:
                on_other_bands |= np.abs(grid - other.center_nm) < other.fwhm_nm
        assert np.max(np.abs(changed - reference)[near]) > 0.01 * reference[near].max()
        assert on_other_bands.any() and not (on_other_bands & near).any()
        assert np.max(np.abs(changed - reference)[on_other_bands]) < 1e-9 * reference.max()


def test_nitrate_to_chloride_weakens_the_nd_575_band_13_percent_at_1_molar():
    nitrate = band_change(Solution(20.0, "nitrate", 1.0), temperature=False, matrix=True)
    chloride = band_change(Solution(20.0, "chloride", 1.0), temperature=False, matrix=True)
    perchlorate = band_change(Solution(20.0, "perchlorate", 1.0), temperature=False, matrix=True)
    assert perchlorate.neutral
    assert nitrate.hyper_amplitude_factor == pytest.approx(1.2)
    assert chloride.hyper_amplitude_factor / nitrate.hyper_amplitude_factor == pytest.approx(0.87, abs=0.005)
    weak = band_change(Solution(20.0, "nitrate", 0.1), temperature=False, matrix=True)
    assert 1.0 < weak.hyper_amplitude_factor < nitrate.hyper_amplitude_factor  # less acid, less complexed


def test_with_the_switches_off_the_solution_changes_nothing():
    assert band_change(Solution(60.0, "nitrate", 8.0), temperature=False, matrix=False) == BandChange()
    assert changed_bands(BandChange()) is BANDS


# --- switched off: bit-identical ------------------------------------------------------------------------
class FixedClock:
    """Simulated time that stands still (so spectra depend on nothing but the seed)."""

    speed = 1e6

    def __init__(self, now_s: float = 1000.0):
        self.t = now_s

    def now_s(self) -> float:
        return self.t


def make_device(seed: int = 3, clock=None):
    optics = Optics(OpticsConfig(), seed=seed)
    seeds = np.random.SeedSequence(seed).spawn(3)
    cell = Cell(BenchDrift(np.random.default_rng(seeds[2])))
    instrument = Instrument(optics, clock or FixedClock(), cell, np.random.default_rng(seeds[0]), serial="X")
    return Device(instrument, SimControl(instrument, LineFaults(np.random.default_rng(seeds[1]))))


def send(device, *commands: str) -> list[bytes]:
    """Run the commands; every answer's bytes; fail on any SCPI error."""
    answers = [a.data for command in commands for a in device.handle(command)]
    error = device.handle("SYST:ERR?")[0].data
    assert error == b'0,"No error"\n', error
    return answers


SPECTRA = (
    "SIM:STAN Nd=5,Pr=1,Ho=0.5,Er=0.5,Sm=0.3;SENS:AVER:COUN 4",
    "MEAS:SPEC?",
    "SIM:STAN",
    "MEAS:SPEC?",
    "SOUR:SHUT CLOS;MEAS:SPEC?",
)
#: SHA-256 of those three spectrum answers from the simulator before the bench drifts existed (seed 3).
BEFORE_DRIFTS = (
    "6cec4d1dea813554be06814b25e40f6e7e58f62ec9f1d3b2c584e2a7c1c92719",
    "bdc88eb9be01f9e613d87494aa9d9be5154da4cbb5e0b32bfdbb1208ac896bb2",
    "67558a8328f20b9999f60073fc570a94248136c3fd9587f34d2e6d88a80be897",
)


@pytest.mark.parametrize(
    "setup",
    [
        (),
        ("SIM:LAB:TEMP 35", "SIM:SOL:TEMP 60", "SIM:SOL:MATR NITR,6", "SIM:FIBR:REPL 0.25", "SIM:DRIF:KT 0.2"),
        ("SIM:DRIF ON",),  # on, but nothing has moved yet: 20 C everywhere, perchlorate, no replug
    ],
    ids=["default", "drifts-off-bench-disturbed", "drifts-on-nothing-moved"],
)
def test_drifts_off_or_at_rest_give_the_spectra_of_before_bit_for_bit(setup):
    device = make_device()
    send(device, *setup)
    digests = tuple(hashlib.sha256(answer).hexdigest() for answer in send(device, *SPECTRA))
    assert digests == BEFORE_DRIFTS


def test_drifts_off_the_optics_are_the_undisturbed_ones_bit_for_bit(optics):
    plain = optics.signal_rate(MIXTURE, 1234.0)
    assert np.array_equal(optics.signal_rate(MIXTURE, 1234.0, wavelength_shift_nm=0.0, bands=None), plain)
    assert np.array_equal(optics.signal_rate(MIXTURE, 1234.0, bands=changed_bands(BandChange())), plain)


def test_a_drift_switched_on_changes_the_spectrum():
    device = make_device()
    send(device, "SIM:DRIF:WAV ON", "SIM:FIBR:REPL 0.2")
    digests = tuple(hashlib.sha256(answer).hexdigest() for answer in send(device, *SPECTRA))
    assert digests[0] != BEFORE_DRIFTS[0] and digests[1] != BEFORE_DRIFTS[1]
    assert digests[2] == BEFORE_DRIFTS[2]  # the dark does not see the light path


# --- the SIM: commands and the truth -----------------------------------------------------------------------
def truth(device) -> dict:
    (answer,) = send(device, "SIM:TRUT:DRIF?")
    items = dict(item.split("=") for item in answer.decode().strip().split(","))
    return {k: (v if k == "MATRIX" else float(v)) for k, v in items.items()}


def test_every_drift_has_a_setter_a_query_and_its_truth():
    device = make_device()
    assert send(device, "SIM:DRIF?", "SIM:DRIF:WAV?", "SIM:DRIF:BAND?", "SIM:DRIF:MATR?") == [
        b"0,0,0\n",
        b"0\n",
        b"0\n",
        b"0\n",
    ]
    send(device, "SIM:DRIF:WAV ON", "SIM:DRIF:BANDS 1", "SIM:DRIFT:MATRIX ON")
    assert send(device, "SIM:DRIF?") == [b"1,1,1\n"]
    send(
        device,
        "SIM:LAB:LAG 0",
        "SIM:LAB:TEMP 23",
        "SIM:SOL:TEMP 30",
        "SIM:SOL:MATR CHL,2",
        "SIM:FIBR:REPL -0.1",
        "SIM:DRIF:KT 0.06",
        "SIM:DRIF:TCAL 21",
    )
    assert send(
        device,
        "SIM:LAB:TEMP?;SIM:SPEC:TEMP?;SIM:SOL:TEMP?;SIM:SOL:MATR?;SIM:FIBR?;SIM:DRIF:KT?;SIM:DRIF:TCAL?;SIM:LAB:LAG?",
    ) == [b"23;23;30;CHLORIDE,2;-0.1;0.06;21;0\n"]
    t = truth(device)
    assert t["AXIS_NM"] == pytest.approx(0.06 * 2 - 0.1) and t["THERMAL_NM"] == pytest.approx(0.12)
    assert t["APPARENT_NM"] == pytest.approx(0.02 * 10 - 0.02)
    assert (t["LAB_C"], t["SPEC_C"], t["SOL_C"], t["MATRIX"], t["ACID_MOL_PER_L"]) == (23, 23, 30, "CHLORIDE", 2)
    assert t["WIDTH_FACTOR"] == pytest.approx(1.03) and t["CENTRE_NM"] == pytest.approx(0.2)
    f = 0.8 * 2 / (1 + 0.8 * 2)
    assert t["HYPER_AMPLITUDE_FACTOR"] == pytest.approx(1 + 0.10 * f)
    assert t["HYPER_WIDTH_FACTOR"] == pytest.approx(1 + 0.03 * f)
    assert (t["WAV"], t["BAND"], t["MATR"], t["CLIPPED"]) == (1, 1, 1, 0)
    send(device, "SIM:DRIF OFF")
    t = truth(device)
    assert t["AXIS_NM"] == 0 and t["WIDTH_FACTOR"] == 1 and t["HYPER_AMPLITUDE_FACTOR"] == 1
    assert t["THERMAL_NM"] == pytest.approx(0.12) and t["FIBRE_NM"] == pytest.approx(-0.1)


@pytest.mark.parametrize(
    "command, code",
    [
        ("SIM:DRIF:WAV MAYBE", -224),
        ("SIM:DRIF", -109),
        ("SIM:LAB:TEMP 80", -222),
        ("SIM:LAB:TEMP warm", -104),
        ("SIM:SOL:TEMP -5", -222),
        ("SIM:SOL:TEMP nan", -224),
        ("SIM:SOL:MATR SULPHATE", -224),
        ("SIM:SOL:MATR", -109),
        ("SIM:SOL:MATR NITR,20", -222),
        ("SIM:FIBR:REPL 3", -222),
        ("SIM:DRIF:KT 1", -222),
        ("SIM:LAB:LAG -1", -222),
        ("SIM:SCEN:STAR -5", -222),
    ],
)
def test_bad_drift_settings_are_scpi_errors(command, code):
    device = make_device()
    send(device, "SIM:SCEN lab-warms-4C")
    device.handle(command)
    error = device.handle("SYST:ERR?")[0].data.decode()
    assert error.startswith(f"{code},"), (command, error)


def test_a_running_scenario_owns_the_lab_and_the_solution_it_drives():
    device = make_device()
    send(device, "SIM:SCEN lab-warms-4C", "SIM:SCEN:STAR")
    for command in ("SIM:LAB:TEMP 22", "SIM:SOL:TEMP 25", "SIM:SOL:MATR NITR"):
        device.handle(command)
        assert device.handle("SYST:ERR?")[0].data.startswith(b"-221,"), command
    send(device, "SIM:SCEN:STOP", "SIM:LAB:TEMP 22", "SIM:SOL:TEMP 25")


# --- scenarios drive the bench -----------------------------------------------------------------------------
def test_lab_warms_4C_drifts_the_axis_0_2_nm_by_the_afternoon():
    clock = FixedClock(5000.0)
    device = make_device(clock=clock)
    send(device, "SIM:SCEN lab-warms-4C", "SIM:SCEN:STAR")
    t = truth(device)
    assert (t["WAV"], t["BAND"], t["MATR"]) == (1, 1, 0)
    assert t["LAB_C"] == 20.0 and t["AXIS_NM"] == pytest.approx(0.0, abs=1e-6)
    send(device, "SIM:SCEN:STAR 86400")  # as if it had run a day
    t = truth(device)
    assert t["LAB_C"] == 24.0 and t["SPEC_C"] == pytest.approx(24.0, abs=1e-3) and t["SOL_C"] == 24.0
    assert t["AXIS_NM"] == pytest.approx(0.2, abs=1e-4) and t["APPARENT_NM"] == pytest.approx(-0.12, abs=1e-4)
    assert t["WIDTH_FACTOR"] == pytest.approx(1.012)
    clock.t += 600.0
    send(device, "SIM:SCEN:STOP")  # the cell and the lab are frozen as they are
    clock.t += 50000.0
    t = truth(device)
    assert t["LAB_C"] == 24.0 and t["SOL_C"] == 24.0 and t["AXIS_NM"] == pytest.approx(0.2, abs=1e-4)


def test_calibrated_20C_used_30C_and_matrix_change_drive_the_solution():
    clock = FixedClock(100.0)
    device = make_device(clock=clock)
    t = truth(device)
    assert t["SOL_C"] == 20.0  # the standards' temperature
    send(device, "SIM:SCEN calibrated-20C-used-30C", "SIM:SCEN:STAR")
    t = truth(device)
    assert (t["SOL_C"], t["BAND"], t["AXIS_NM"]) == (30.0, 1, 0.0)
    assert t["WIDTH_FACTOR"] == pytest.approx(1.03) and t["CENTRE_NM"] == pytest.approx(0.2)
    send(device, "SIM:STAN", "SIM:SOL:TEMP 20", "SIM:SCEN matrix-change", "SIM:SCEN:STAR 7199")
    assert truth(device)["MATRIX"] == "NITRATE" and truth(device)["HYPER_AMPLITUDE_FACTOR"] == pytest.approx(1.2)
    send(device, "SIM:SCEN:STAR 7200")
    t = truth(device)
    assert t["MATRIX"] == "CHLORIDE" and t["HYPER_AMPLITUDE_FACTOR"] == pytest.approx(1 + 0.1 * 0.8 / 1.8)


def test_scenario_replugs_step_the_axis_and_stay_when_it_stops(tmp_path):
    path = tmp_path / "replug.toml"
    path.write_text(
        "[base]\nNd = 1.0\n[drift]\nwavelength = true\nreplug_s = [100, 200]\nreplug_step_nm = [0.1, -0.25]\n"
    )
    clock = FixedClock(0.0)
    device = make_device(clock=clock)
    send(device, f"SIM:SCEN {path}", "SIM:SCEN:STAR")
    assert truth(device)["FIBRE_NM"] == 0.0
    clock.t = 150.0
    assert truth(device)["FIBRE_NM"] == pytest.approx(0.1) and send(device, "SIM:FIBR?") == [b"0.1\n"]
    clock.t = 250.0
    send(device, "SIM:SCEN:STOP")
    clock.t = 1000.0
    assert truth(device)["AXIS_NM"] == pytest.approx(-0.15)
    assert load_scenario(path).replug_offset_nm(150.0) == pytest.approx(0.1)


def test_a_shift_beyond_the_optics_range_is_clipped_and_the_truth_says_so():
    device = make_device()
    send(device, "SIM:DRIF:WAV ON", "SIM:LAB:LAG 0", "SIM:DRIF:KT 0.5", "SIM:LAB:TEMP 30")
    t = truth(device)
    assert t["THERMAL_NM"] == pytest.approx(5.0) and t["AXIS_NM"] == MAX_WAVELENGTH_SHIFT_NM and t["CLIPPED"] == 1
    send(device, "MEAS:SPEC?")


def test_the_instrument_keeps_reporting_its_stored_wavelength_coefficients():
    device = make_device()
    (before,) = send(device, "CALC:WAV:COEF?")
    send(device, "SIM:DRIF ON", "SIM:LAB:LAG 0", "SIM:LAB:TEMP 30", "SIM:FIBR:REPL 0.3")
    assert truth(device)["AXIS_NM"] == pytest.approx(0.8)
    assert send(device, "CALC:WAV:COEF?") == [before]  # it does not know it drifted
