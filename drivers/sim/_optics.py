"""Optics and detector of the simulated UV-Vis-NIR spectrometer.

Light path: tungsten-halogen lamp (Planck at about 3000 K, with slow drift of
colour temperature and intensity) -> 1 cm flow cell (water plus the dissolved
Ln(III) ions, Beer-Lambert) -> grating and entrance slit (Gaussian slit
function, 1.5 nm FWHM, applied to the *intensity* on a fine wavelength grid, as a
real instrument does) -> detector (silicon response, photo-response
non-uniformity, spectrally flat stray light) -> read-out (bias, dark current
proportional to integration time, shot and read noise, 16-bit ADC that clips at
65535 in each scan before averaging). The detector can be made nonlinear, as a real
CCD is (:meth:`Optics.read_out` ``nonlinear=True``): its response droops towards
full scale, m = L (1 - a L) in each scan before the ADC, with a = 4 % / 65535 by
default (:attr:`OpticsConfig.nonlinearity_at_full_scale`); its correction, in
Ocean Insight's convention, is :meth:`Optics.nonlinearity_coefficients`. The SCPI
simulator's detector stays linear.

The wavelength axis is a polynomial of any order over the pixel index
(:attr:`OpticsConfig.wavelength_coefficients`; by default the cubic of
:func:`wavelength_coefficients`): the coefficients an instrument stores *are* its
nominal axis (:func:`fit_wavelength_coefficients` fits one of another order).

Numbers are meant to look like a small fibre spectrometer (Flame/USB2000+ class)
on a lamp and flow cell: a water blank peaks at about 40 000 counts at 100 ms.

Bench drifts (:mod:`._bench_drift`) enter :meth:`Optics.signal_rate` as two
optional arguments: ``wavelength_shift_nm``, by which the *true* wavelength of
every pixel differs from the nominal axis (the coefficients the instrument
reports do not change), and ``bands``, the band table as the solution's
temperature and matrix changed it. Without them (or with a zero shift and no
bands) the computation is the undisturbed one, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._lanthanide_bands import absorbance_per_cm

__all__ = [
    "OpticsConfig",
    "Optics",
    "wavelength_coefficients",
    "fit_wavelength_coefficients",
    "polynomial_nm",
    "MAX_WAVELENGTH_SHIFT_NM",
    "MAX_NONLINEARITY_AT_FULL_SCALE",
]

# Base wavelength polynomial for a 2048-px detector: lambda(i) = c0 + c1 i + c2 i^2 + c3 i^3.
_C0_NM, _C2_NM, _C3_NM = 350.0, -1.5e-5, 2.0e-10
_LAST_BASE_PIXEL = 2047
_C1_NM = (1000.0 - _C0_NM - _C2_NM * _LAST_BASE_PIXEL**2 - _C3_NM * _LAST_BASE_PIXEL**3) / _LAST_BASE_PIXEL
_SECOND_RADIATION_CONSTANT_NM_K = 1.438777e7  # h c / k in nm K
_FWHM_TO_SIGMA = 1.0 / (2.0 * math.sqrt(2.0 * math.log(2.0)))
#: Largest axis shift the optics model holds (nm): the fine grid extends this far beyond the pixels
#: with the slit's full width to spare. A bench drift is clipped to it (and says so in its truth).
MAX_WAVELENGTH_SHIFT_NM = 3.0
#: Largest droop of the detector's response at full scale the model accepts (the response must stay monotonic).
MAX_NONLINEARITY_AT_FULL_SCALE = 0.2
#: Catalan numbers C_0..C_7: sqrt(1 - 4x) = 1 - 2 sum_k C_(k-1) x^k (the nonlinearity correction's series).
_CATALAN = (1, 1, 2, 5, 14, 42, 132, 429)


def wavelength_coefficients(pixels: int) -> tuple[float, float, float, float]:
    """Cubic wavelength polynomial (nm over pixel index) spanning about 350-1000 nm for any pixel count."""
    if pixels < 16:
        raise ValueError(f"a detector needs at least 16 pixels, not {pixels}")
    scale = _LAST_BASE_PIXEL / (pixels - 1)
    return (_C0_NM, _C1_NM * scale, _C2_NM * scale**2, _C3_NM * scale**3)


def polynomial_nm(coefficients: tuple[float, ...], index: np.ndarray) -> np.ndarray:
    """Wavelength (nm) of each pixel ``index`` on the axis sum_k c_k i^k (``coefficients`` c_0 first), by Horner."""
    if not coefficients:
        raise ValueError("a wavelength polynomial needs at least one coefficient")
    acc = np.full(index.shape, float(coefficients[-1]))
    for c in reversed(coefficients[:-1]):
        acc = acc * index + c
    return acc


def fit_wavelength_coefficients(wavelength_nm: np.ndarray, order: int) -> tuple[float, ...]:
    """Least-squares polynomial of ``order`` over pixel index through ``wavelength_nm`` (c_0 first, power basis)."""
    if not 1 <= order <= 10:
        raise ValueError(f"wavelength polynomial order must be 1-10, got {order}")
    index = np.arange(len(wavelength_nm), dtype=float)
    fit = np.polynomial.Polynomial.fit(index, np.asarray(wavelength_nm, dtype=float), order)
    coefficients = fit.convert().coef  # power basis in the raw pixel index
    return tuple(float(c) for c in np.pad(coefficients, (0, order + 1 - len(coefficients))))


@dataclass(frozen=True)
class OpticsConfig:
    """Every physical constant of the simulated bench in one place."""

    pixels: int = 2048
    #: The nominal axis sum_k c_k i^k (nm; c_0 first, any order); ``None``: the cubic of wavelength_coefficients().
    wavelength_coefficients: tuple[float, ...] | None = None
    lamp_temperature_K: float = 3000.0
    blank_peak_rate_counts_per_s: float = 4.0e5  # water blank, brightest pixel, lamp at nominal temperature
    path_length_cm: float = 1.0
    slit_fwhm_nm: float = 1.5
    stray_light_fraction: float = 5.0e-4
    bias_counts: float = 1000.0
    dark_current_counts_per_s: float = 60.0
    hot_pixel_fraction: float = 0.01
    hot_pixel_factor: float = 20.0
    read_noise_counts: float = 6.0
    electrons_per_count: float = 2.0
    prnu_fraction: float = 0.005
    full_scale_counts: float = 65535.0
    #: Fraction by which the response droops at full scale when the detector is nonlinear (read_out(nonlinear=True)).
    nonlinearity_at_full_scale: float = 0.04
    lamp_drift_K: float = 4.0
    lamp_drift_period_s: float = 5400.0
    intensity_drift_fraction: float = 0.002
    intensity_drift_period_s: float = 2700.0
    water_band_center_nm: float = 970.0  # O-H overtone of the water in the cell (cancels against a water blank)
    water_band_fwhm_nm: float = 70.0
    water_band_absorbance_per_cm: float = 0.19
    fine_step_nm: float = 0.2
    scans_per_chunk: int = 64


def _detector_response(wavelength_nm: np.ndarray) -> np.ndarray:
    """Relative response of grating + silicon CCD + fused-silica optics (dimensionless, about 0-0.75)."""
    silicon = 0.75 * np.exp(-0.5 * ((wavelength_nm - 600.0) / 220.0) ** 2)
    uv_cutoff = 1.0 / (1.0 + np.exp(-(wavelength_nm - 340.0) / 10.0))
    return silicon * uv_cutoff


def _planck_relative(wavelength_nm: np.ndarray, temperature_K: float) -> np.ndarray:
    x = _SECOND_RADIATION_CONSTANT_NM_K / (wavelength_nm * temperature_K)
    return (wavelength_nm / 1000.0) ** -5 / np.expm1(x)


@dataclass
class Optics:
    """The instrument model: expected photon rates, dark, one (averaged) read-out, and its noise."""

    config: OpticsConfig = field(default_factory=OpticsConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        cfg = self.config
        if cfg.pixels < 16:
            raise ValueError(f"a detector needs at least 16 pixels, not {cfg.pixels}")
        if not 0.0 <= cfg.nonlinearity_at_full_scale <= MAX_NONLINEARITY_AT_FULL_SCALE:
            raise ValueError(
                f"nonlinearity at full scale must be 0-{MAX_NONLINEARITY_AT_FULL_SCALE:g}, "
                f"got {cfg.nonlinearity_at_full_scale!r}"
            )
        self.coefficients: tuple[float, ...] = (
            tuple(float(c) for c in cfg.wavelength_coefficients)
            if cfg.wavelength_coefficients is not None
            else wavelength_coefficients(cfg.pixels)
        )
        index = np.arange(cfg.pixels, dtype=float)
        self.wavelengths_nm = polynomial_nm(self.coefficients, index)
        if not (np.all(np.isfinite(self.wavelengths_nm)) and np.all(np.diff(self.wavelengths_nm) > 0)):
            raise ValueError("the wavelength polynomial must rise monotonically over the pixels")
        sigma_nm = cfg.slit_fwhm_nm * _FWHM_TO_SIGMA
        margin_nm = 6.0 * sigma_nm + 2.0
        self._fine_nm = np.arange(
            self.wavelengths_nm[0] - margin_nm, self.wavelengths_nm[-1] + margin_nm, cfg.fine_step_nm
        )
        half = int(math.ceil(4.0 * sigma_nm / cfg.fine_step_nm))
        offsets = np.arange(-half, half + 1) * cfg.fine_step_nm
        kernel = np.exp(-0.5 * (offsets / sigma_nm) ** 2)
        self._kernel = kernel / kernel.sum()
        self._response = _detector_response(self._fine_nm)
        water = cfg.water_band_absorbance_per_cm * np.exp(
            -0.5 * ((self._fine_nm - cfg.water_band_center_nm) / (cfg.water_band_fwhm_nm * _FWHM_TO_SIGMA)) ** 2
        )
        self._water_absorbance = water * cfg.path_length_cm
        # Fixed patterns of this particular detector (the seed is its serial number).
        rng = np.random.default_rng(self.seed)
        self._prnu = 1.0 + cfg.prnu_fraction * rng.standard_normal(cfg.pixels)
        self._bias = cfg.bias_counts + 3.0 * rng.standard_normal(cfg.pixels)
        hot = rng.random(cfg.pixels) < cfg.hot_pixel_fraction
        self._dark_rate = cfg.dark_current_counts_per_s * np.where(hot, cfg.hot_pixel_factor, 1.0)
        self._dark_rate *= 1.0 + 0.1 * rng.standard_normal(cfg.pixels).clip(-3, 3)
        nominal = self._light_at_pixels(np.zeros_like(self._fine_nm), cfg.lamp_temperature_K, 1.0)
        self._rate_scale = cfg.blank_peak_rate_counts_per_s / nominal.max()

    # --- light ---------------------------------------------------------------------------
    def lamp_state(self, time_s: float) -> tuple[float, float]:
        """Lamp colour temperature (K) and relative intensity at simulated time ``time_s``."""
        cfg = self.config
        temperature_K = cfg.lamp_temperature_K + cfg.lamp_drift_K * math.sin(
            2 * math.pi * time_s / cfg.lamp_drift_period_s
        )
        intensity = 1.0 + cfg.intensity_drift_fraction * math.sin(
            2 * math.pi * time_s / cfg.intensity_drift_period_s + 1.0
        )
        return temperature_K, intensity

    def true_wavelengths_nm(self, wavelength_shift_nm: float = 0.0) -> np.ndarray:
        """The wavelength each pixel really sees (nm) when the axis has drifted by ``wavelength_shift_nm``."""
        shift = float(wavelength_shift_nm)
        if not (math.isfinite(shift) and abs(shift) <= MAX_WAVELENGTH_SHIFT_NM):
            raise ValueError(
                f"wavelength shift must be finite and within +-{MAX_WAVELENGTH_SHIFT_NM:g} nm, "
                f"got {wavelength_shift_nm!r}"
            )
        return self.wavelengths_nm if shift == 0.0 else self.wavelengths_nm + shift

    def _light_at_pixels(
        self,
        sample_absorbance_fine: np.ndarray,
        temperature_K: float,
        intensity: float,
        wavelength_shift_nm: float = 0.0,
    ) -> np.ndarray:
        through_cell = _planck_relative(self._fine_nm, temperature_K) * self._response * intensity
        through_cell *= 10.0 ** -(self._water_absorbance + sample_absorbance_fine)
        blurred = np.convolve(through_cell, self._kernel, mode="same")
        at_pixels = np.interp(self.true_wavelengths_nm(wavelength_shift_nm), self._fine_nm, blurred)
        stray = self.config.stray_light_fraction * at_pixels.mean()
        return at_pixels + stray

    def signal_rate(
        self, concentrations_g_per_L: dict[str, float], time_s: float, *, wavelength_shift_nm: float = 0.0, bands=None
    ) -> np.ndarray:
        """Expected photo-signal (counts/s per pixel, dark excluded) with this solution in the cell.

        ``wavelength_shift_nm``: true minus nominal wavelength of every pixel (the axis drift);
        ``bands``: the band table to use instead of the undisturbed one (``None``).
        """
        sample = absorbance_per_cm(self._fine_nm, concentrations_g_per_L, bands) * self.config.path_length_cm
        temperature_K, intensity = self.lamp_state(time_s)
        light = self._light_at_pixels(sample, temperature_K, intensity, wavelength_shift_nm)
        return light * self._rate_scale * self._prnu

    # --- detector response ---------------------------------------------------------------
    def nonlinear_counts(self, linear_counts: np.ndarray) -> np.ndarray:
        """Counts the nonlinear detector gives where a linear one would give ``linear_counts`` (before the ADC).

        m = L (1 - a L) with a = droop / full scale: a few per cent low towards full
        scale, monotonic; from the L at which m reaches full scale on, the output stays
        there (the ADC clips it).
        """
        cfg = self.config
        a = cfg.nonlinearity_at_full_scale / cfg.full_scale_counts
        if a == 0.0:
            return np.array(linear_counts, dtype=float)
        saturating_counts = (1.0 - math.sqrt(1.0 - 4.0 * a * cfg.full_scale_counts)) / (2.0 * a)
        linear = np.minimum(linear_counts, saturating_counts)
        return linear * (1.0 - a * linear)

    def nonlinearity_coefficients(self, order: int = 7) -> tuple[float, ...]:
        """Correction polynomial of the nonlinear detector, c_0 first, in Ocean Insight's convention.

        ``linear = m / sum_k c_k m^k`` on raw counts m (python-seabreeze's
        ``Spectrometer.intensities(correct_nonlinearity=True)``). For m = L (1 - a L) the
        exact divisor is (1 + sqrt(1 - 4 a m)) / 2 = 1 - sum_k C_(k-1) (a m)^k (C: Catalan
        numbers); at order 7 the remainder is below 1e-8 over the 16-bit range.
        """
        if not 1 <= order <= len(_CATALAN):
            raise ValueError(f"nonlinearity order must be 1-{len(_CATALAN)}, got {order}")
        a = self.config.nonlinearity_at_full_scale / self.config.full_scale_counts
        return (1.0, *(-_CATALAN[k - 1] * a**k for k in range(1, order + 1)))

    # --- read-out ------------------------------------------------------------------------
    def mean_counts(self, signal_rate: np.ndarray | None, integration_time_s: float) -> np.ndarray:
        """Expected counts of one scan (bias + dark + signal, before clipping); ``None`` = shutter closed."""
        counts = self._bias + self._dark_rate * integration_time_s
        if signal_rate is not None:
            counts = counts + signal_rate * integration_time_s
        return counts

    def scan_variance(self, signal_rate: np.ndarray | None, integration_time_s: float) -> np.ndarray:
        """Variance (counts^2) of one scan: shot noise of signal and dark electrons, read noise, ADC step."""
        cfg = self.config
        electrons_counts = self._dark_rate * integration_time_s
        if signal_rate is not None:
            electrons_counts = electrons_counts + signal_rate * integration_time_s
        return electrons_counts / cfg.electrons_per_count + cfg.read_noise_counts**2 + 1.0 / 12.0

    def read_out(
        self,
        signal_rate: np.ndarray | None,
        integration_time_s: float,
        averages: int,
        rng: np.random.Generator,
        *,
        nonlinear: bool = False,
    ) -> np.ndarray:
        """Average of ``averages`` scans, each digitised and clipped to the 16-bit range.

        ``nonlinear``: each scan goes through the detector's drooping response
        (:meth:`nonlinear_counts`) before the ADC; off, the detector is linear.
        """
        cfg = self.config
        mean = self.mean_counts(signal_rate, integration_time_s)
        std = np.sqrt(self.scan_variance(signal_rate, integration_time_s))
        total = np.zeros(cfg.pixels)
        remaining = averages
        while remaining > 0:
            n = min(remaining, cfg.scans_per_chunk)
            scans = mean + std * rng.standard_normal((n, cfg.pixels))
            if nonlinear:
                scans = self.nonlinear_counts(scans)
            np.rint(scans, out=scans)
            np.clip(scans, 0.0, cfg.full_scale_counts, out=scans)
            total += scans.sum(axis=0)
            remaining -= n
        return total / averages

    def absorbance_noise_std(
        self, sample_rate: np.ndarray, blank_rate: np.ndarray, integration_time_s: float, averages: int
    ) -> np.ndarray:
        """Expected std of A = -log10((S-D)/(R-D)) per pixel for one sample S, blank R and dark D.

        Each of S, R, D is one read-out at these settings; D is shared, so its
        noise enters both terms. ``inf`` where S or R would clip or carry no light.
        """
        var_s = self.scan_variance(sample_rate, integration_time_s) / averages
        var_r = self.scan_variance(blank_rate, integration_time_s) / averages
        var_d = self.scan_variance(None, integration_time_s) / averages
        s = sample_rate * integration_time_s
        r = blank_rate * integration_time_s
        with np.errstate(divide="ignore", invalid="ignore"):
            var_a = (var_s / s**2 + var_r / r**2 + var_d * (1.0 / s - 1.0 / r) ** 2) / math.log(10.0) ** 2
            std = np.sqrt(var_a)
        clipped = (self.mean_counts(sample_rate, integration_time_s) >= self.config.full_scale_counts) | (
            self.mean_counts(blank_rate, integration_time_s) >= self.config.full_scale_counts
        )
        std[clipped | (s <= 0) | (r <= 0)] = np.inf
        return std
