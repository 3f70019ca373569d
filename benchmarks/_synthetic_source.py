"""An in-process, unthrottled spectrometer for benchmarks: raw counts in blocks, as fast as numpy allows.

Not the simulated bench (drivers.sim talks SCPI over a socket and models the
optics in detail, at a few hundred spectra/s). This source keeps only what the
live analysis sees: a lamp-shaped blank on a 2048-pixel detector, a dark with a
bias and hot pixels, Gaussian f-f bands of K rare-earth analytes (Beer-Lambert),
a slow Legendre baseline drift, and noise of the right size (shot + read noise
of the blank, from a pre-drawn pool of normal deviates sliced at random offsets
so that noise costs no random-number generation per block).

Per block of n spectra it costs one (n, K + 3) x (K + 3, P) product, one exp
and a few multiply-adds over n x P float32 values, in cache-sized slices
(~6 us per 2048-px spectrum on one core). The concentrations follow a slow
"purification" trajectory (impurities fall, the target stays), so the fit sees
changing spectra. The calibration is made the way the lab makes one: standards
measured through the same source, then :func:`analysis.calibrate`.

Only numpy and the public ``analysis`` API are used; nothing from drivers.sim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticSource", "ANALYTES", "TARGET"]

# centre nm, FWHM nm, absorbance (1 cm) per g/L of the element: a caricature of the aquo-ion f-f bands
_BANDS = {
    "Nd": ((575.0, 10.0, 0.050), (740.0, 12.0, 0.046), (794.0, 10.0, 0.082)),
    "Pr": ((444.0, 8.0, 0.072), (469.0, 6.0, 0.031), (482.0, 5.0, 0.028), (589.0, 7.0, 0.013)),
    "Sm": ((402.0, 6.0, 0.060), (463.0, 6.0, 0.015)),
    "Er": ((379.0, 6.0, 0.045), (523.0, 6.0, 0.019), (652.0, 8.0, 0.013)),
    "Ho": ((451.0, 7.0, 0.025), (537.0, 6.0, 0.022), (641.0, 10.0, 0.015)),
    "Dy": ((351.0, 6.0, 0.017), (365.0, 6.0, 0.010), (910.0, 25.0, 0.014)),
    "Tm": ((683.0, 10.0, 0.015), (790.0, 18.0, 0.011)),
    "Eu": ((394.0, 4.0, 0.018),),
    "Yb": ((975.0, 15.0, 0.012),),
}
ANALYTES = ("Nd", "Pr", "Sm", "Er", "Ho", "Dy", "Tm")
TARGET = "Nd"
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))


@dataclass
class _Trajectory:
    """Concentrations (g/L) over the trial: the target steady, impurities decaying towards a floor."""

    start: np.ndarray  # (K,)
    floor: np.ndarray  # (K,)
    spectra_per_e_fold: float


class SyntheticSource:
    """Blocks of raw float32 counts (n, P) with the dark and blank reference they were measured against."""

    _SLICE = 64  # spectra per cache-sized slice of a block (64 x 2048 x 4 B = 512 kB)

    def __init__(
        self,
        pixels: int = 2048,
        analytes: tuple[str, ...] = ANALYTES,
        target: str = TARGET,
        seed: int = 0,
        full_scale_counts: float = 65535.0,
        noise_pool_values: int = 1 << 23,
        spectra_per_e_fold: float = 200_000.0,
    ):
        unknown = [a for a in analytes if a not in _BANDS]
        if unknown:
            raise ValueError(f"no synthetic bands for {unknown}; known: {', '.join(_BANDS)}")
        if target not in analytes:
            raise ValueError(f"target {target!r} is not among the analytes {analytes}")
        self.pixels = pixels
        self.analytes = tuple(analytes)
        self.target = target
        self.full_scale_counts = float(full_scale_counts)
        self._rng = np.random.default_rng(seed)
        wl = np.linspace(350.0, 1000.0, pixels)
        self.wavelength_nm = wl
        self.sensitivity = np.array([self._bands(wl, a) for a in self.analytes])  # (K, P) absorbance per g/L
        # detector: bias ~1000 counts with a fixed pattern, 1 % hot pixels
        bias = 1000.0 + 3.0 * self._rng.standard_normal(pixels)
        hot = self._rng.random(pixels) < 0.01
        self._dark_mean = bias + np.where(hot, 120.0, 6.0)
        # blank: a 3000 K lamp through a silicon detector, 45,000 counts at the brightest pixel
        x = 1.438777e7 / (wl * 3000.0)
        lamp = (wl / 1000.0) ** -5 / np.expm1(x)
        response = np.exp(-0.5 * ((wl - 600.0) / 220.0) ** 2) / (1.0 + np.exp(-(wl - 340.0) / 10.0))
        shape = lamp * response
        self._blank_signal = 45_000.0 * shape / shape.max() + 300.0  # + stray light: no pixel is dark
        variance = (self._blank_signal + self._dark_mean - 1000.0) / 2.0 + 36.0  # shot (2 e-/count) + read noise
        self._noise_std = np.sqrt(variance)
        self.dark = self._read(self._dark_mean, np.sqrt(36.0 + 3.0))
        self.reference = self._read(self._dark_mean + self._blank_signal, self._noise_std)
        # spectra take their noise from a pre-drawn pool (dark, reference and standards draw fresh noise)
        if noise_pool_values < 2 * self._SLICE * pixels:
            raise ValueError(f"noise_pool_values must be >= {2 * self._SLICE * pixels} (two slices)")
        self._pool = self._rng.standard_normal(noise_pool_values, dtype=np.float32)
        xs = np.linspace(-1.0, 1.0, pixels)
        self._legendre = np.array([np.ones(pixels), xs, 1.5 * xs * xs - 0.5])  # baseline drift shapes
        k = len(self.analytes)
        start = np.array([0.8 + 0.4 * i / max(1, k - 1) for i in range(k)])  # impurities ~1 g/L at the start
        floor = np.full(k, 0.02)
        t = self.analytes.index(target)
        start[t] = floor[t] = 25.0
        self._trajectory = _Trajectory(start, floor, float(spectra_per_e_fold))
        # band tails below 1e-12 would be float32 denormals, which make the block product 10x slower
        self._sensitivity32 = np.where(self.sensitivity > 1e-12, self.sensitivity, 0.0).astype(np.float32)
        self._dark32 = self._dark_mean.astype(np.float32)
        self._blank32 = self._blank_signal.astype(np.float32)
        self._std32 = self._noise_std.astype(np.float32)
        self._design32 = (-math.log(10.0) * np.vstack([self._sensitivity32, self._legendre])).astype(np.float32)
        self.produced = 0

    @staticmethod
    def _bands(wl: np.ndarray, symbol: str) -> np.ndarray:
        row = np.zeros_like(wl)
        for centre, fwhm, height in _BANDS[symbol]:
            row += height * np.exp(-0.5 * ((wl - centre) / (fwhm * _FWHM_TO_SIGMA)) ** 2)
        return row

    def _read(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """One read-out with fresh noise (float32, as the wire format)."""
        return (mean + std * self._rng.standard_normal(mean.shape)).astype(np.float32)

    # -- truth -----------------------------------------------------------------------

    def concentrations(self, first: int, n: int) -> np.ndarray:
        """True concentrations (n, K) g/L of spectra ``first .. first + n - 1``."""
        tr = self._trajectory
        index = first + np.arange(n)[:, None]
        return tr.floor + (tr.start - tr.floor) * np.exp(-index / tr.spectra_per_e_fold)

    # -- acquisition -------------------------------------------------------------------

    def block(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` raw spectra (n, P) float32 and their true concentrations (n, K)."""
        P = self.pixels
        conc = self.concentrations(self.produced, n)
        # one product gives -ln(10) x (analyte absorbance + baseline drift); worked in cache-sized slices
        coefficients = np.hstack([conc, 0.01 * self._rng.standard_normal((n, 3))]).astype(np.float32)
        counts = np.empty((n, P), dtype=np.float32)
        scratch = np.empty((self._SLICE, P), dtype=np.float32)
        pool = self._pool
        top = np.float32(self.full_scale_counts)
        for first in range(0, n, self._SLICE):
            rows = min(self._SLICE, n - first)
            out = counts[first : first + rows]
            np.matmul(coefficients[first : first + rows], self._design32, out=out)
            np.exp(out, out=out)  # transmission
            out *= self._blank32
            out += self._dark32
            offset = int(self._rng.integers(0, pool.size - rows * P + 1))
            noise = scratch[:rows]
            np.multiply(pool[offset : offset + rows * P].reshape(rows, P), self._std32, out=noise)
            out += noise
            np.minimum(out, top, out=out)
        self.produced += n
        return counts, conc

    # -- calibration -------------------------------------------------------------------

    def standards(self, averages: int = 1024) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
        """Absorbance (M, P) of a blank, each analyte alone, and three mixtures; their concentrations (M, K)."""
        import analysis

        k = len(self.analytes)
        rows, names = [np.zeros(k)], ["blank"]
        for i, symbol in enumerate(self.analytes):
            c = np.zeros(k)
            c[i] = 25.0 if symbol == self.target else 5.0
            rows.append(c)
            names.append(f"{symbol}-only")
        for m in range(3):
            c = np.array([(1.0 + ((m + i) % 3)) * 0.5 for i in range(k)])
            c[self.analytes.index(self.target)] = 10.0 + 5.0 * m
            rows.append(c)
            names.append(f"mix-{m + 1}")
        concentration = np.array(rows)
        absorbance = []
        for c in concentration:
            transmission = 10.0 ** -(c @ self.sensitivity)
            mean = self._dark_mean + self._blank_signal * transmission
            std = np.sqrt((mean - 1000.0).clip(0) / 2.0 + 36.0) / math.sqrt(averages)
            counts = self._read(mean, std)
            absorbance.append(analysis.absorbance(counts, self.dark, self.reference, self.full_scale_counts))
        return np.array(absorbance), concentration, tuple(names)

    def calibration(self):
        """An :class:`analysis.Calibration` from this source's standards (baseline order 2, noise weighting)."""
        import analysis

        absorbance, concentration, names = self.standards()
        return analysis.calibrate(
            self.wavelength_nm, absorbance, concentration, self.analytes, baseline_order=2, standard_names=names
        )
