"""Drift spectra: what a small wavelength shift or band broadening adds to each analyte's spectrum.

Between calibration and measurement a CCD spectrometer's wavelength axis moves
by tenths of a nanometre (bench temperature, a replugged fibre) and Ln(III)
bands broaden or narrow with the solution's temperature and acidity. To first
order, an analyte at concentration c whose bands move by dl, and whose bands'
squared widths s_b^2 all grow by the same relative e (areas kept), absorbs

    c S(l - dl) ~ c S - (c dl) S'                  (shift)
    c S_e       ~ c S + (c e / 2) sum_b s_b^2 S_b''  (width; exact for Gaussian bands)

so the model gains, per analyte, a shift column -S' and a width column
s^2(l) S'' with free coefficients (like the baseline): the fit stays linear and
non-negative in c, and the drift no longer leaks into the concentrations.
s^2(l) is the squared width of the band nearest to l, read off S itself
(-S/S'' at each band's peak), so bands of different widths broaden in
proportion. The derivatives are taken from the calibrated S with a
Savitzky-Golay filter, on the calibration's own (possibly non-uniform) grid.

The width column is exact for Gaussian (inhomogeneous) broadening: S'' is the
generator of convolution with a Gaussian. Bands with Lorentzian wings broaden
differently: for a Voigt band (a Gaussian convolved with a Lorentzian of half
width g) a change of g adds ``dg * (-|d/dl|) S`` exactly, -|d/dl| being the
generator of convolution with a Lorentzian (the Cauchy semigroup; in Fourier
space multiplication by -|k|). Like S'', it needs neither the band centres nor
the band shape, and it commutes with the slit. :func:`lorentzian_width_spectra`
gives it per analyte, scaled per band by s(l) like the width spectrum;
quantify adds it for an analyte whose width change the first fit shows (decision 0069).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import savgol_coeffs, savgol_filter

__all__ = [
    "DriftNoise",
    "drift_spectra",
    "drift_noise",
    "lorentzian_width_spectra",
    "common_shift_nm",
    "reference_shift_spectrum",
]

_WINDOW_NM = 4.0  # smoothing window of the derivative filter: narrower than any f-f band
_MIN_WINDOW = 5
_PEAK_FRACTION = 0.05  # a local maximum above this fraction of the analyte's largest is a band
_REFERENCE_WINDOW_NM = 20.0  # the lamp, the detector's response, the water band: smooth over tens of nm


@dataclass(frozen=True)
class DriftNoise:
    """How white noise in S passes into its drift spectra (for the errors-in-variables correction).

    ``shift_gain``: |shift filter|^2 (per nm^2); ``width_centre`` (K,): the width
    filter's middle coefficient times the mean squared band width of each analyte
    (its correlation with S's own noise); ``width_gain`` (K, K): |width filter|^2
    times the mean product of two analytes' squared band widths. The same for the
    Lorentzian width filter (:func:`lorentzian_width_spectra`): ``lorentzian_centre`` (K,),
    ``lorentzian_gain`` (K, K), and ``width_lorentzian_gain`` (K, K), the two even
    filters' product (width spectrum of the row analyte, Lorentzian of the column one).
    The shift filter is odd: it correlates with neither S nor the even filters.
    """

    shift_gain: float
    width_centre: npt.NDArray[np.float64]
    width_gain: npt.NDArray[np.float64]
    lorentzian_centre: npt.NDArray[np.float64]
    lorentzian_gain: npt.NDArray[np.float64]
    width_lorentzian_gain: npt.NDArray[np.float64]


def _window(step_nm: float, n_pixels: int) -> int:
    pixels = int(round(_WINDOW_NM / step_nm)) if step_nm > 0 else _MIN_WINDOW
    pixels = max(_MIN_WINDOW, pixels | 1)
    return min(pixels, n_pixels - 1 if n_pixels % 2 == 0 else n_pixels)


def _filters(wavelength_nm: np.ndarray) -> tuple[int, int, float, np.ndarray]:
    dl = np.gradient(wavelength_nm)
    step = float(np.median(np.abs(dl)))
    window = _window(step, wavelength_nm.size)
    return window, min(3, window - 1), step, dl


def _derivatives(wavelength_nm: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed S, dS/dl and d2S/dl2 on the grid."""
    window, polyorder, _, dl = _filters(wavelength_nm)
    d2l = np.gradient(dl)
    # np.asarray: scipy's annotations allow an array-API array; a numpy input gives this very ndarray back
    smooth = np.asarray(savgol_filter(S, window, polyorder, axis=1, mode="interp"))
    first = savgol_filter(S, window, polyorder, deriv=1, axis=1, mode="interp")  # per pixel
    second = savgol_filter(S, window, polyorder, deriv=2, axis=1, mode="interp")
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(dl != 0, first / dl, 0.0)
        curvature = np.where(dl != 0, (second - slope * d2l) / dl**2, 0.0)
    return smooth, slope, curvature


def _squared_band_widths(wavelength_nm: np.ndarray, smooth: np.ndarray, curvature: np.ndarray) -> np.ndarray:
    """(K, P): the squared width (nm^2) of the band nearest each pixel, from -S/S'' at the band peaks."""
    K, P = smooth.shape
    out = np.ones((K, P))
    for k in range(K):
        s = smooth[k]
        top = np.max(s) if P else 0.0
        if not top > 0:
            continue
        inner = (s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:]) & (s[1:-1] > _PEAK_FRACTION * top) & (curvature[k, 1:-1] < 0)
        peaks = np.flatnonzero(inner) + 1
        if peaks.size == 0:
            continue
        widths2 = -s[peaks] / curvature[k, peaks]
        nearest = np.argmin(np.abs(wavelength_nm[:, None] - wavelength_nm[peaks][None, :]), axis=1)
        out[k] = widths2[nearest]
    return out


def drift_spectra(wavelength_nm: npt.ArrayLike, sensitivity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(2K, P): each analyte's shift spectrum -dS/dl (per nm), then its width spectrum s^2 d2S/dl2.

    Rows follow ``sensitivity``'s analyte order, shift rows first. A calibration
    with fewer than five pixels gets zero drift spectra (nothing to differentiate).
    """
    wavelength_nm = np.asarray(wavelength_nm, dtype=np.float64)
    S = np.asarray(sensitivity, dtype=np.float64)
    K, P = S.shape
    if P < _MIN_WINDOW:
        return np.zeros((2 * K, P))
    smooth, slope, curvature = _derivatives(wavelength_nm, S)
    widths2 = _squared_band_widths(wavelength_nm, smooth, curvature)
    return np.ascontiguousarray(np.vstack([-slope, widths2 * curvature]))


def _minus_abs_derivative(F: np.ndarray) -> np.ndarray:
    """-|d/du| of each row of F (per pixel), by FFT: the line through the end points taken out, zero padded.

    The line's own -|d/du| is zero; the padding (at least P zeros) keeps the 1/u^2 tails of the
    operator from wrapping around.
    """
    P = F.shape[-1]
    u = np.arange(P) / max(P - 1, 1)
    detrended = F - F[..., :1] - (F[..., -1:] - F[..., :1]) * u
    n = 1 << int(np.ceil(np.log2(2 * P)))
    k = 2.0 * np.pi * np.fft.rfftfreq(n)  # radians per pixel
    return np.fft.irfft(-k * np.fft.rfft(detrended, n, axis=-1), n, axis=-1)[..., :P]


def lorentzian_width_spectra(wavelength_nm: npt.ArrayLike, sensitivity: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(K, P): each analyte's Lorentzian width spectrum s(l) (-|d/dl|) S, in absorbance per g/L.

    What a relative change of the bands' Lorentzian widths adds (module docstring), with
    s(l) the width (nm) of the band nearest to l as for the width spectrum. Taken from
    the same smoothed S as the derivatives; zero for fewer than five pixels.
    """
    wavelength_nm = np.asarray(wavelength_nm, dtype=np.float64)
    S = np.asarray(sensitivity, dtype=np.float64)
    K, P = S.shape
    if P < _MIN_WINDOW:
        return np.zeros((K, P))
    smooth, _, curvature = _derivatives(wavelength_nm, S)
    widths2 = _squared_band_widths(wavelength_nm, smooth, curvature)
    dl = np.gradient(wavelength_nm)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_nm = np.where(dl != 0, _minus_abs_derivative(smooth) / np.abs(dl), 0.0)
    return np.ascontiguousarray(np.sqrt(widths2) * per_nm)


def _lorentzian_impulse_response(window: int, polyorder: int, step: float) -> np.ndarray:
    """The Lorentzian width filter (smoothing, then -|d/dl|) on a uniform grid of ``step`` nm, per nm,
    as an odd-length array centred on its middle element."""
    half = 4 * window  # the tails fall as 1/u^2: beyond a few windows they carry no energy to speak of
    impulse = np.zeros(2 * half + 1)
    impulse[half] = 1.0
    smooth = np.asarray(savgol_filter(impulse, window, polyorder, mode="constant"))
    return _minus_abs_derivative(smooth[None, :])[0] / step


def drift_noise(wavelength_nm: npt.ArrayLike, sensitivity: npt.ArrayLike) -> DriftNoise:
    """The filter gains of :class:`DriftNoise` for a calibration's grid and sensitivities."""
    wavelength_nm = np.asarray(wavelength_nm, dtype=np.float64)
    S = np.asarray(sensitivity, dtype=np.float64)
    K, P = S.shape
    if P < _MIN_WINDOW:
        zero = np.zeros((K, K))
        return DriftNoise(0.0, np.zeros(K), zero, np.zeros(K), zero, zero)
    window, polyorder, step, _ = _filters(wavelength_nm)
    first = savgol_coeffs(window, polyorder, deriv=1, use="dot") / step
    second = savgol_coeffs(window, polyorder, deriv=2, use="dot") / step**2
    lorentzian = _lorentzian_impulse_response(window, polyorder, step)
    middle = lorentzian.size // 2
    # the even filters' product: the width filter (symmetric) against the middle of the Lorentzian one
    overlap = float(second @ lorentzian[middle - window // 2 : middle + window // 2 + 1])
    smooth, _, curvature = _derivatives(wavelength_nm, S)
    widths2 = _squared_band_widths(wavelength_nm, smooth, curvature)
    widths = np.sqrt(widths2)
    return DriftNoise(
        shift_gain=float(first @ first),
        width_centre=float(second[window // 2]) * widths2.mean(axis=1),
        width_gain=float(second @ second) * (widths2 @ widths2.T) / P,
        lorentzian_centre=float(lorentzian[middle]) * widths.mean(axis=1),
        lorentzian_gain=float(lorentzian @ lorentzian) * (widths @ widths.T) / P,
        width_lorentzian_gain=overlap * (widths2 @ widths.T) / P,
    )


def common_shift_nm(
    concentration: npt.ArrayLike, shift_coefficients: npt.ArrayLike, shift_information: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """(N,) one wavelength shift per spectrum (nm) from the per-analyte shift coefficients (c dl).

    Each analyte k says dl_k = d_k / c_k with a precision proportional to
    ``shift_information[k] * c_k**2`` (its shift spectrum's weighted energy); the
    common shift is their precision-weighted mean. NaN where no analyte is present.
    """
    c = np.asarray(concentration, dtype=np.float64)
    d = np.asarray(shift_coefficients, dtype=np.float64)
    info = np.asarray(shift_information, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(np.isfinite(c) & np.isfinite(d), info * c * c, 0.0)
        numerator = np.sum(np.where(weight > 0, info * c * d, 0.0), axis=1)
        total = np.sum(weight, axis=1)
        return np.where(total > 0, numerator / total, np.nan)


def reference_shift_spectrum(wavelength_nm: npt.ArrayLike, net_reference: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """(P,) -d log10(R - D)/dl (per nm): what the blank's own light adds to an absorbance whose sample
    was measured on a wavelength axis moved by 1 nm from the blank's.

    A sample measured at axis offset d sees the lamp, the detector's response and the
    water band at l + d, the blank at l: its absorbance gains ``d * (-dlog10(R - D)/dl)``,
    which no band of the calibration represents. Pixels where R - D is not positive are
    interpolated over before smoothing (their weight is zero in the fit anyway).
    """
    wavelength_nm = np.asarray(wavelength_nm, dtype=np.float64)
    net = np.asarray(net_reference, dtype=np.float64)
    P = wavelength_nm.size
    good = np.isfinite(net) & (net > 0)
    if P < _MIN_WINDOW or good.sum() < _MIN_WINDOW:
        return np.zeros(P)
    log_reference = np.interp(np.arange(P), np.flatnonzero(good), np.log10(net[good]))
    dl = np.gradient(wavelength_nm)
    step = float(np.median(np.abs(dl)))
    window = max(_MIN_WINDOW, int(round(_REFERENCE_WINDOW_NM / step)) | 1) if step > 0 else _MIN_WINDOW
    window = min(window, P if P % 2 else P - 1)
    slope = np.asarray(savgol_filter(log_reference, window, min(3, window - 1), deriv=1, mode="interp"))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.ascontiguousarray(np.where(dl != 0, -slope / dl, 0.0))
