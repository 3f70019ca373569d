"""What every spectrometer driver offers, written down once.

Check, calibration and the trial runner use a spectrometer only through this
interface, so they do not care which driver they hold (:class:`~drivers.ScpiSpectrometer`
over SCPI/VISA, :class:`~drivers.OceanSpectrometer` over python-seabreeze).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Spectrometer", "spectrometer_members"]


def spectrometer_members() -> tuple[str, ...]:
    """The public names of the interface (for checks that a class offers it: every name, on the class)."""
    return tuple(name for name in vars(Spectrometer) if not name.startswith("_"))


class Spectrometer(Protocol):
    """An array spectrometer: identity, wavelength axis, bounded settings, lit and dark spectra.

    Errors are :class:`~drivers.InstrumentError` subclasses: ``NotConnected`` when the instrument is gone
    (call :meth:`reconnect`), ``ProtocolError`` when it answered something malformed (nothing is returned),
    ``LimitError`` for a setting outside the limits (nothing was sent), ``ReadbackMismatch`` when a setting
    did not take.
    """

    min_integration_time_s: float
    max_integration_time_s: float
    max_averages: int

    @property
    def ident(self) -> str:
        """Model and serial number, as the instrument states them."""
        ...

    @property
    def pixels(self) -> int:
        """Number of values per spectrum."""
        ...

    @property
    def wavelengths_nm(self) -> np.ndarray:
        """Wavelength (nm) of each pixel, from the instrument's own calibration polynomial."""
        ...

    @property
    def wavelength_coefficients(self) -> tuple[float, ...]:
        """The instrument's wavelength polynomial over pixel index, constant term first (nm, nm/px, ...)."""
        ...

    @property
    def full_scale_counts(self) -> float:
        """Counts of a saturated pixel in the spectra this driver returns."""
        ...

    @property
    def recorded_attributes(self) -> dict[str, str | float | int]:
        """What the trial file records about how these counts were made (driver, corrections, dark method)."""
        ...

    @property
    def connected(self) -> bool:
        """True while a session is open."""
        ...

    @property
    def integration_time_s(self) -> float:
        """Integration time (s) per scan, as the instrument reports it; setting it sends, then reads it back."""
        ...

    @integration_time_s.setter
    def integration_time_s(self, value: float) -> None: ...

    @property
    def averages(self) -> int:
        """Number of scans averaged into one spectrum."""
        ...

    @averages.setter
    def averages(self, value: int) -> None: ...

    def acquire(self) -> np.ndarray:
        """One lit spectrum: counts (float64, one per pixel), averaged as set."""
        ...

    def dark(self) -> np.ndarray:
        """One dark spectrum (no light on the detector), averaged as set; never a lit one."""
        ...

    def saturated(self, counts: np.ndarray, margin_counts: float = 0.0) -> np.ndarray:
        """Boolean mask of the pixels of ``counts`` at (or within ``margin_counts`` of) full scale."""
        ...

    def reconnect(self) -> None:
        """Close the session (if any) and open a new one to the same instrument; settings are re-applied."""
        ...

    def close(self) -> None:
        """Close the session; safe to call twice."""
        ...
