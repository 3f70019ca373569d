"""Throughput of the analysis: raw counts -> concentrations -> oxide purity, against a scipy loop.

Run: ``.venv/bin/python benchmarks/analysis_throughput.py [--spectra 100000] [--analytes 9]``

One run measures, on the same synthetic data (2048-px spectra, 9 analytes with
f-f-like bands, quadratic baseline, float32 counts as they come off the wire):

- the fused path ``quantify_counts`` + ``oxide_purity`` over all N spectra;
- the two-step path ``absorbance`` + ``quantify`` + ``oxide_purity``;
- a scipy loop (``absorbance`` per spectrum, ``scipy.optimize.nnls`` with the free
  baseline split into +/- columns, then purity) over a subset, scaled to spectra/s;
- ``scipy.optimize.lsq_linear(method="bvls")`` the same way, on a smaller subset;

and prints spectra/s and the ratios, the largest concentration difference
between the kernel and scipy on the subset (same weighted NNLS problem: the
calibration's errors-in-variables correction is left out for that check, and so
are the spectra that took quantify's second fit, whose design has more columns;
``second_fit_fraction`` says how many of all the spectra did), the
first-call (compile or cache-load) time, the CPU time per spectrum (which other
processes on the machine do not inflate) and the load average around the run.
It is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numba
import numpy as np
import scipy
from scipy.optimize import lsq_linear, nnls

import analysis

ANALYTES_12 = ("Pr", "Nd", "Sm", "Eu", "Dy", "Ho", "Er", "Tm", "Yb", "Tb", "Ce", "Gd")
BANDS = {  # centre nm, FWHM nm, absorbance per g/L (rounded literature-like values)
    "Pr": [(444, 8, 0.072), (469, 6, 0.031), (482, 5, 0.028), (589, 7, 0.013)],
    "Nd": [(575, 10, 0.050), (740, 12, 0.046), (794, 10, 0.082)],
    "Sm": [(402, 5, 0.023)],
    "Eu": [(394, 4, 0.018)],
    "Dy": [(351, 6, 0.017), (365, 6, 0.010), (910, 25, 0.014)],
    "Ho": [(451, 7, 0.025), (537, 6, 0.022), (641, 10, 0.015)],
    "Er": [(379, 6, 0.045), (523, 6, 0.019), (652, 8, 0.013)],
    "Tm": [(683, 10, 0.015), (790, 18, 0.011)],
    "Yb": [(975, 15, 0.012)],
    "Tb": [(487, 6, 0.004)],
    "Ce": [(355, 10, 0.010)],
    "Gd": [(360, 5, 0.003)],
}


def sensitivities(wavelength_nm, analytes):
    sigma = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    return np.array(
        [sum(h * np.exp(-0.5 * ((wavelength_nm - c) / (f * sigma)) ** 2) for c, f, h in BANDS[a]) for a in analytes]
    )


class Bench:
    """Synthetic detector: lamp x response, dark, shot and read noise, float32 counts."""

    def __init__(self, pixels, analytes, seed=0):
        self.rng = np.random.default_rng(seed)
        self.wavelength_nm = np.linspace(350.0, 1000.0, pixels)
        self.analytes = analytes
        self.S = sensitivities(self.wavelength_nm, analytes)
        self.lamp = 45000.0 * np.exp(-0.5 * ((self.wavelength_nm - 720.0) / 230.0) ** 2) + 1500.0
        self.dark = 1000.0 + 3.0 * self.rng.standard_normal(pixels)
        self.reference = self.dark + self.lamp
        self.basis = analysis.baseline_basis(self.wavelength_nm, 2)

    def counts(self, concentration, out=None, chunk=4096):
        N = len(concentration)
        out = np.empty((N, self.S.shape[1]), np.float32) if out is None else out
        for start in range(0, N, chunk):
            c = concentration[start : start + chunk]
            drift = self.rng.normal(0, 0.003, (len(c), 3)) @ self.basis.T
            signal = self.lamp * 10.0 ** -(c @ self.S + drift)
            noisy = signal + np.sqrt(signal / 2.0 + 36.0) * self.rng.standard_normal(signal.shape)
            out[start : start + chunk] = noisy + self.dark
        return out

    def calibration(self):
        """Calibrate from 2K + 1 synthetic standards (blank + random mixtures), 16x less noise."""
        K = len(self.analytes)
        C = np.vstack([np.zeros(K), self.rng.uniform(0, 5, (2 * K, K))])
        counts = np.mean([self.counts(C) for _ in range(16)], axis=0)
        A = analysis.absorbance(counts, self.dark, self.reference)
        return analysis.calibrate(self.wavelength_nm, A, C, self.analytes, baseline_order=2)

    def unknowns(self, N):
        """Nd products and mixtures: about half the minor analytes absent in each spectrum."""
        K = len(self.analytes)
        c = self.rng.uniform(0, 2.0, (N, K)) * (self.rng.random((N, K)) < 0.5)
        c[:, self.analytes.index("Nd")] = self.rng.uniform(2, 10, N)
        return c


def timed(function, repeats):
    """Result of the last call, wall times and process CPU times (all threads) of each call."""
    times, cpu = [], []
    result = None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return result, times, cpu


def scipy_loop(cal, counts, dark, reference, target, method):
    """Per spectrum: absorbance, weighted NNLS with free baseline, purity. Returns concentrations (n, K)."""
    X = cal.design_matrix()
    K = len(cal.analytes)
    root_w = np.sqrt(cal.pixel_weight)
    out = np.empty((len(counts), K))
    for i, row in enumerate(counts):
        y = analysis.absorbance(row, dark, reference)
        keep = np.isfinite(y) & (root_w > 0)
        A = X[keep] * root_w[keep, None]
        b = y[keep] * root_w[keep]
        if method == "nnls":
            split = np.hstack([A, -A[:, K:]])  # free baseline = difference of two non-negative parts
            v, _ = nnls(split, b, maxiter=50 * split.shape[1])
            conc = v[:K]
        else:
            lower = np.r_[np.zeros(K), np.full(X.shape[1] - K, -np.inf)]
            conc = lsq_linear(A, b, bounds=(lower, np.inf), method="bvls").x[:K]
        analysis.oxide_purity(conc, cal.analytes, target)
        out[i] = conc
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spectra", type=int, default=100_000)
    parser.add_argument("--pixels", type=int, default=2048)
    parser.add_argument("--analytes", type=int, default=9, choices=range(1, 13))
    parser.add_argument("--scipy-subset", type=int, default=1000)
    parser.add_argument("--bvls-subset", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()

    analytes = ANALYTES_12[: args.analytes] if "Nd" in ANALYTES_12[: args.analytes] else ("Nd",)
    bench = Bench(args.pixels, analytes)
    cal = bench.calibration()
    concentration = bench.unknowns(args.spectra)
    t0 = time.perf_counter()
    counts = bench.counts(concentration)
    generation_s = time.perf_counter() - t0

    start = time.perf_counter()
    analysis.quantify_counts(counts[:8], bench.dark, bench.reference, cal, saturation_counts=65535)
    analysis.quantify(analysis.absorbance(counts[:8], bench.dark, bench.reference), cal)
    first_call_s = time.perf_counter() - start

    def fused():
        q = analysis.quantify_counts(counts, bench.dark, bench.reference, cal, saturation_counts=65535)
        p = analysis.oxide_purity(
            q.concentration_g_per_L, cal.analytes, "Nd", q.sigma_g_per_L, cal.quality.detection_limit_g_per_L
        )
        return q, p

    def two_step():
        A = analysis.absorbance(counts, bench.dark, bench.reference, saturation_counts=65535)
        q = analysis.quantify(A, cal)
        analysis.oxide_purity(
            q.concentration_g_per_L, cal.analytes, "Nd", q.sigma_g_per_L, cal.quality.detection_limit_g_per_L
        )
        return q

    (q, _), fused_s, fused_cpu_s = timed(fused, args.repeats)
    _, two_step_s, _ = timed(two_step, max(1, args.repeats // 2))
    subset = counts[: args.scipy_subset]
    plain = analysis.Calibration.from_sensitivity(
        cal.wavelength_nm, cal.sensitivity, cal.analytes, baseline_order=2, pixel_weight=cal.pixel_weight
    )
    plain_fit = analysis.quantify_counts(subset, bench.dark, bench.reference, plain)
    plain_conc = plain_fit.concentration_g_per_L
    first_fit_only = ~np.any(plain_fit.lorentzian_width_coefficients != 0, axis=1)  # the problem scipy solves
    start = time.perf_counter()
    scipy_conc = scipy_loop(plain, subset, bench.dark, bench.reference, "Nd", "nnls")  # the same problem as plain
    nnls_s = time.perf_counter() - start
    start = time.perf_counter()
    scipy_loop(plain, counts[: args.bvls_subset], bench.dark, bench.reference, "Nd", "bvls")
    bvls_s = time.perf_counter() - start

    n = args.spectra
    best, median = n / min(fused_s), n / statistics.median(fused_s)
    nnls_rate, bvls_rate = args.scipy_subset / nnls_s, args.bvls_subset / bvls_s
    figures = {
        "spectra": n,
        "pixels": args.pixels,
        "analytes": len(analytes),
        "baseline_order": 2,
        "threads": numba.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "load_average_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "first_call_s": round(first_call_s, 3),
        "data_generation_s": round(generation_s, 1),
        "fused_spectra_per_s_best": round(best),
        "fused_spectra_per_s_median": round(median),
        "fused_cpu_us_per_spectrum": round(1e6 * statistics.median(fused_cpu_s) / n, 2),
        "fused_spectra_per_s_if_all_cores_free": round(os.cpu_count() * n / statistics.median(fused_cpu_s)),
        "two_step_spectra_per_s_best": round(n / min(two_step_s)),
        "scipy_nnls_loop_spectra_per_s": round(nnls_rate, 1),
        "scipy_bvls_loop_spectra_per_s": round(bvls_rate, 1),
        "ratio_vs_scipy_nnls_best": round(best / nnls_rate, 1),
        "ratio_vs_scipy_nnls_median": round(median / nnls_rate, 1),
        "ratio_vs_scipy_bvls_median": round(median / bvls_rate, 1),
        "max_difference_vs_scipy_relative": float(
            np.max(np.abs(plain_conc - scipy_conc)[first_fit_only]) / np.max(np.abs(scipy_conc))
        ),
        "second_fit_fraction": float(np.mean(np.any(q.lorentzian_width_coefficients != 0, axis=1))),
        "eiv_correction_shift_g_per_L_max": float(
            np.max(np.abs(q.concentration_g_per_L[: args.scipy_subset] - plain_conc))
        ),
        "status_ok_fraction": float(np.mean(q.status == 0)),
    }
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return figures


if __name__ == "__main__":
    main()
