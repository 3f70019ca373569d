"""End-to-end accuracy of the analysis against the simulated spectrometer, through its wire protocol only.

The simulator runs as its own process; this test talks to it with the real
driver and the simulator's bench commands: ``SIM:STAN Nd=2.0,Pr=0.5`` fills the
cell, ``SIM:TRUT?`` tells what is really in it. The analysis learns the
instrument only from standards measured here, as a lab does; nothing of the
simulator's physics is imported. Every test runs on both benches, with the same
thresholds: the SCPI spectrometer (SCPI over TCP, pyvisa-py; bench commands on
the same line) and the Ocean HDX (OBP over TCP through python-seabreeze, averages
taken in software, nonlinearity corrected, darks with the lamp off; bench
commands on the simulator's control port) — one physics, two wire protocols,
the same accuracy.

Measurement plan (what a careful lab does):
- dark and water-blank reference with 1000 averages;
- ten standards: blank, a two-level 2^(5-2) fractional factorial (0.2 and 1.0 of
  each analyte's range; every standard a mixture, the design matrix well
  conditioned) and a centre point, 1000 averages each;
- 50 unknown mixtures from a Latin hypercube over the calibrated box, 32 averages
  (routine measurements);
- ten Nd2O3 products at 99.5 % purity, 1000 averages (release measurements).

Two choices of calibration model, both from what the standards show:
- the lamp drifts in colour temperature between the reference and each
  spectrum; its effect is close to 1/wavelength and steepest in the blue, where
  the Sm and Er bands are, so the baseline is a cubic (``baseline_order=3``)
  instead of the default quadratic;
- the strong Nd bands (absorbance above 1 at 15 g/L) bend away from
  Beer-Lambert (stray light, slit); without a curvature term for Nd
  (``quadratic=("Nd",)``) the leave-one-out error of Nd is several times its
  noise and the misfit leaks into the weak Sm band, which is what limits purity.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from _bench import format_concentrations, parse_concentrations

import analysis
from daq.bench import SimulatorControl
from drivers import OceanSpectrometer, ScpiSpectrometer, Spectrometer
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

ANALYTES = ("Nd", "Pr", "Sm", "Er", "Ho")
RANGE_G_PER_L = np.array([15.0, 3.0, 3.0, 3.0, 3.0])
SPEED = {"scpi": 200.0, "ocean": 2000.0}  # simulated seconds per wall second (Ocean: one request per scan)
INTEGRATION_TIME_S = 0.12  # water blank peaks near 48 000 of 65 535 counts
BASELINE_ORDER = 3


class Bench:
    """The spectrometer, its dark and reference, and the cell commands of the simulator (``control``)."""

    def __init__(self, spectrometer: Spectrometer, control: ScpiSpectrometer | SimulatorControl):
        self.spec = spectrometer
        self.control = control
        self.spec.integration_time_s = INTEGRATION_TIME_S
        self.rereference()
        self.wavelength_nm = self.spec.wavelengths_nm
        self.saturation = self.spec.full_scale_counts

    def rereference(self) -> None:
        """Water blank in the cell, then a fresh dark and reference (1000 averages), as before a release."""
        self.control.write("SIM:STAN")
        self.spec.averages = 1000
        self.dark = self.spec.dark()
        self.reference = self.spec.acquire()

    def measure(self, concentration_g_per_L, averages: int) -> tuple[np.ndarray, np.ndarray]:
        """Fill the cell, return (absorbance, true concentrations as the simulator reports them)."""
        self.control.write(f"SIM:STAN {format_concentrations(ANALYTES, concentration_g_per_L)}".rstrip())
        truth = parse_concentrations(ANALYTES, self.control.query("SIM:TRUT?"))
        self.spec.averages = averages
        counts = self.spec.acquire()
        return analysis.absorbance(counts, self.dark, self.reference, saturation_counts=self.saturation), truth


def standards_design() -> np.ndarray:
    """Blank, 2^(5-2) fractional factorial (generators D = AB, E = AC) at 0.2 / 1.0 of range, centre."""
    runs = [np.zeros(5)]
    for a, b, c in itertools.product((0, 1), repeat=3):
        runs.append(RANGE_G_PER_L * np.where([a, b, c, a ^ b, a ^ c], 1.0, 0.2))
    runs.append(0.5 * RANGE_G_PER_L)
    return np.array(runs)


def latin_hypercube(rng, n: int) -> np.ndarray:
    strata = np.stack([rng.permutation(n) for _ in ANALYTES], axis=1)
    return (strata + rng.random((n, len(ANALYTES)))) / n * RANGE_G_PER_L


@pytest.fixture(scope="module", params=["scpi", "ocean"])
def bench(request):
    driver = request.param
    module = {"scpi": "drivers.sim.spectrometer", "ocean": "drivers.sim.ocean"}[driver]
    with start_simulator(module, "--port", "0", "--seed", "21", "--speed", str(SPEED[driver])) as sim:
        if driver == "scpi":
            with ScpiSpectrometer(sim.address, timeout_s=30.0) as spectrometer:
                yield Bench(spectrometer, spectrometer)
        else:
            assert sim.control is not None
            control = SimulatorControl(sim.control)
            try:
                with OceanSpectrometer(sim.address, model="HDX", timeout_s=30.0, max_averages=1000) as spectrometer:
                    yield Bench(spectrometer, control)
            finally:
                control.close()


@pytest.fixture(scope="module")
def calibration(bench):
    design = standards_design()
    measured = [bench.measure(c, averages=1000) for c in design]
    absorbance = np.array([a for a, _ in measured])
    truth = np.array([t for _, t in measured])
    assert np.allclose(truth, design, rtol=1e-5), "the simulator holds what was loaded"
    return analysis.calibrate(
        bench.wavelength_nm,
        absorbance,
        truth,
        ANALYTES,
        baseline_order=BASELINE_ORDER,
        quadratic=("Nd",),
        standard_names=[f"S{i:02d}" for i in range(len(design))],
    )


@pytest.fixture(scope="module")
def unknowns(bench, calibration):
    rng = np.random.default_rng(2024)
    measured = [bench.measure(c, averages=32) for c in latin_hypercube(rng, 50)]
    truth = np.array([t for _, t in measured])
    result = analysis.quantify(np.array([a for a, _ in measured]), calibration)
    return truth, result


def test_calibration_is_sound(calibration):
    quality = calibration.quality
    assert np.array_equal(quality.calibrated_range_g_per_L[:, 1], RANGE_G_PER_L)
    assert np.all(quality.detection_limit_g_per_L < 0.01 * RANGE_G_PER_L)
    assert np.all(quality.loo_rmse_g_per_L < 0.02 * RANGE_G_PER_L)
    assert quality.condition_number < 1e4


def test_rmsep_is_within_two_percent_of_each_calibrated_range(calibration, unknowns):
    truth, result = unknowns
    assert np.all(result.status == 0) and np.all(result.n_masked_pixels == 0)
    rmsep = np.sqrt(np.mean((result.concentration_g_per_L - truth) ** 2, axis=0))
    span = np.diff(calibration.quality.calibrated_range_g_per_L, axis=1)[:, 0]
    assert np.all(rmsep <= 0.02 * span), dict(zip(ANALYTES, np.round(100 * rmsep / span, 3)))


def test_two_sigma_intervals_contain_the_truth_for_90_to_99_percent(unknowns):
    truth, result = unknowns
    inside = np.abs(result.concentration_g_per_L - truth) <= 2 * result.sigma_g_per_L
    assert 0.90 <= inside.mean() <= 0.99, inside.mean(axis=0)
    assert np.all(inside.mean(axis=0) >= 0.80), "no analyte is much over-confident"


def test_nd2o3_purity_within_a_tenth_of_a_point_at_995(bench, calibration):
    """Nd2O3 products of 99.5 % purity: Pr the main impurity (Pr/Nd split), with Er or Ho beside it.

    Each impurity present is at 0.15 % or more of the oxide: three trace
    impurities at 0.1 % each would sit near their detection limits, where the
    purity can be off by their sum (docs/analysis.md, detection-limit policy).
    Sm, the weakest absorber, is tested apart below.
    """
    errors_pp, sigmas_pp, _ = _measure_products(
        bench, calibration, [(1.0, 0, 0, 0), (0.5, 0, 0.5, 0), (0.5, 0, 0, 0.5), (0.6, 0, 0.2, 0.2)] * 2
    )
    assert np.all(np.abs(errors_pp) <= 0.1), np.round(errors_pp, 3)
    assert np.all(sigmas_pp <= 0.15)  # informative: the drift terms cost some precision (decision 0047)


def test_trace_samarium_is_inside_the_stated_purity_bounds(bench, calibration):
    """Sm at 0.15-0.2 % of the oxide sits near its detection limit in UV-Vis.

    Below the limit it counts as absent (the policy), so the purity may read high by
    up to Sm's share; the result then says so: the truth lies between
    ``purity_lower_bound`` and ``purity`` (within 2 sigma).
    """
    errors_pp, sigmas_pp, results = _measure_products(bench, calibration, [(0.6, 0.4, 0, 0), (0.7, 0.3, 0, 0)] * 2)
    for error_pp, sigma_pp, (purity, lower_bound, truth) in zip(errors_pp, sigmas_pp, results):
        assert lower_bound - 2 * sigma_pp / 100 <= truth <= purity + 2 * sigma_pp / 100, (error_pp, sigma_pp)
        assert abs(error_pp) <= 0.25  # never off by more than Sm's whole share


def _measure_products(bench, calibration, shares):
    """Measure Nd2O3 products at 99.5 % with the given impurity shares (Pr, Sm, Er, Ho); errors in pp."""
    rng = np.random.default_rng(7)
    factor = np.array([analysis.oxide_factor(a) for a in ANALYTES])
    errors, sigmas, results = [], [], []
    for share in shares:
        nd = rng.uniform(8.0, 14.0)
        impurity_oxide = nd * factor[0] * (0.005 / 0.995) * np.array(share)
        bench.rereference()  # a release measurement is bracketed by its own blank: the lamp drifts
        absorbance, truth = bench.measure(np.r_[nd, impurity_oxide / factor[1:]], averages=1000)
        true_purity = analysis.oxide_purity(truth, ANALYTES, "Nd").purity[0]
        assert true_purity == pytest.approx(0.995, abs=1e-6)
        q = analysis.quantify(absorbance, calibration)
        purity = analysis.oxide_purity(
            q.concentration_g_per_L,
            ANALYTES,
            "Nd",
            sigma_g_per_L=q.sigma_g_per_L,
            detection_limit_g_per_L=calibration.quality.detection_limit_g_per_L,
        )
        assert purity.target_oxide == "Nd2O3" and purity.covered_elements == ANALYTES
        errors.append(purity.purity[0] - true_purity)
        sigmas.append(purity.purity_sigma[0])
        results.append((purity.purity[0], purity.purity_lower_bound[0], true_purity))
    return 100 * np.array(errors), 100 * np.array(sigmas), results


def test_a_blank_reads_as_nothing(bench, calibration):
    """Measured like the standards, a blank stays under the detection limits; a quick one under 3 sigma.

    Like the standards (and the products), it is measured right after its own blank reference: the lamp's
    colour drifts with simulated time, and how much of it has passed since the last reference depends on
    how long the tests before took on this machine (seen: Sm 1.2 x its limit on a loaded machine).
    """
    bench.rereference()
    careful, truth = bench.measure(np.zeros(5), averages=1000)
    quick, _ = bench.measure(np.zeros(5), averages=32)
    assert not truth.any()
    q = analysis.quantify(np.array([careful, quick]), calibration)
    # the limit is the 3-sigma quantile of a blank's reading; 10 % above it is a 3.3-sigma event
    assert np.all(q.concentration_g_per_L[0] <= 1.1 * calibration.quality.detection_limit_g_per_L)
    assert np.all(q.concentration_g_per_L[1] <= 3 * q.sigma_g_per_L[1])
