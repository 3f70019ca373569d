"""Ocean Insight array spectrometers over python-seabreeze: USB (pyusb) and Ethernet (OBP over TCP).

:class:`OceanSpectrometer` offers the same interface as :class:`~drivers.ScpiSpectrometer`
(:class:`~drivers.Spectrometer`), so check, calibration and the trial runner do
not care which one they hold. What Ocean devices do differently is handled here:

- **identity and calibration from the device**: model and serial number, the
  wavelength polynomial of whatever order the device stores, the detector's
  full scale, its integration-time limits (each asked of the device where it
  answers, else python-seabreeze's table for the model);
- **nonlinearity**: the device's correction polynomial is applied to each scan
  (python-seabreeze's convention: counts / P(counts), after subtracting the mean
  of the electric-dark pixels where the model has them, which is added back);
  :attr:`OceanSpectrometer.recorded_attributes` says so for the trial file;
- **averaging** in software, one scan at a time, each with its own deadline; a
  pixel that clipped in any scan reads exactly :attr:`full_scale_counts`;
- **darks** by the station's method, as Ocean devices mostly have no shutter:
  ``"lamp"`` (the lamp's TTL input on the spectrometer's lamp-enable line, OBP
  message 0x00110410), ``"shutter"`` (OBP 0x00110610, where the device has one) or
  ``"prompt"`` (an operator blocks the light path); a dark that looks lit is
  refused (:class:`DarkNotDark`), never returned;
- **Ethernet** (HDX, FX): ``tcp://HOST:PORT`` over
  :class:`drivers._obp_link.BoundedIPv4Transport` — bounded waits and whole-frame
  checks that python-seabreeze's own IPv4 transport lacks;
- **USB unplug**: ``NotConnected``; :meth:`OceanSpectrometer.reconnect` finds the
  device again by its serial number.
"""

from __future__ import annotations

import math
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

from ._errors import InstrumentError, LimitError, NotConnected, ProtocolError, ReadbackMismatch

__all__ = ["OceanSpectrometer", "DarkNotDark", "OceanResource", "parse_ocean_resource", "DARK_METHODS", "TCP_MODELS"]

DarkMethod = Literal["lamp", "shutter", "prompt"]
DARK_METHODS: tuple[DarkMethod, ...] = ("lamp", "shutter", "prompt")
#: Models python-seabreeze reaches over Ethernet (OBP over TCP).
TCP_MODELS = ("HDX", "FX")
WAVELENGTH_RANGE_NM = (150.0, 3000.0)  # any grating spectrometer's axis lies inside
AVERAGES_RANGE = (1, 1_000_000)
MAX_COEFFICIENTS = 16

# OBP message types the driver sends itself (Ocean's OBPMessageTypes); python-seabreeze sends the others.
GET_INTEGRATION_TIME_US = 0x00110000
GET_MINIMUM_INTEGRATION_TIME_US = 0x00110001
GET_MAXIMUM_INTEGRATION_TIME_US = 0x00110002
GET_MAXIMUM_ADC_COUNTS = 0x00101010
GET_WL_COEFF_COUNT = 0x00180100
GET_WL_COEFF = 0x00180101
SET_LAMP_ENABLE = 0x00110410
SET_SHUTTER = 0x00110610
_UNKNOWN_MESSAGE = 2  # OBP error: the device does not know this message type

#: A dark whose spread (95th - 5th percentile of its counts) exceeds this fraction of the last lit
#: spectrum's spread still carries the light: it is refused.
LIT_DARK_FRACTION = 0.25
_T = TypeVar("_T")


class DarkNotDark(InstrumentError):
    """A spectrum taken as a dark still shows the light: the lamp, shutter or operator did not block it."""


@dataclass(frozen=True)
class OceanResource:
    """Where an Ocean spectrometer is: on USB (the first one, or the one with ``serial``) or at host:port."""

    transport: Literal["usb", "tcp"]
    serial: str | None = None
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.transport == "tcp":
            return f"tcp://{self.host}:{self.port}"
        return f"usb:{self.serial}" if self.serial else "usb"


_TCP = re.compile(r"tcp://(?P<host>[^:/\s]+):(?P<port>[0-9]{1,5})/?")
_SERIAL = re.compile(r"[A-Za-z0-9._-]{1,64}")


def parse_ocean_resource(resource: str, model: str | None = None) -> OceanResource:
    """The spectrometer location ``resource`` names (``usb``, ``usb:SERIAL``, ``tcp://HOST:PORT``);
    ValueError saying what is wrong otherwise. A TCP resource needs ``model`` HDX or FX."""
    text = resource.strip()
    if text.lower() == "usb":
        return OceanResource("usb")
    if text.lower().startswith("usb:"):
        serial = text[4:]
        if not _SERIAL.fullmatch(serial):
            raise ValueError(f"{resource!r}: a serial number is 1-64 letters, digits, '.', '_' or '-'")
        return OceanResource("usb", serial=serial)
    match = _TCP.fullmatch(text)
    if match:
        port = int(match["port"])
        if not 1 <= port <= 65535:
            raise ValueError(f"{resource!r}: TCP port {port} is not 1..65535")
        if model not in TCP_MODELS:
            raise ValueError(
                f"{resource!r}: an Ethernet spectrometer needs model = one of {', '.join(TCP_MODELS)} "
                f"(python-seabreeze reaches only those over TCP), got {model!r}"
            )
        return OceanResource("tcp", host=match["host"], port=port)
    raise ValueError(f"{resource!r}: expected 'usb', 'usb:SERIAL' or 'tcp://HOST:PORT'")


class OceanSpectrometer:
    """An Ocean Insight spectrometer: identity, wavelength axis, settings and spectra over python-seabreeze.

    Opens the connection at once (raises :class:`~drivers.NotConnected` if nothing answers,
    :class:`~drivers.ProtocolError` if the device answers absurdly). Use as a context manager or
    call :meth:`close`. ``dark_prompt`` is called with an instruction for the operator when
    ``dark_method`` is ``"prompt"``; it returns once the operator has done it (the caller bounds the wait).
    """

    def __init__(
        self,
        resource: str,
        *,
        model: str | None = None,
        timeout_s: float = 5.0,
        min_integration_time_s: float = 0.0,
        max_integration_time_s: float = math.inf,
        max_averages: int = 100_000,
        dark_method: DarkMethod = "lamp",
        dark_prompt: Callable[[str], object] | None = None,
        light_settle_s: float = 0.0,
        nonlinearity_correction: bool = True,
    ):
        self.location = parse_ocean_resource(resource, model)
        if not (timeout_s > 0.0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if not (0.0 <= min_integration_time_s <= max_integration_time_s):
            raise ValueError(
                f"need 0 <= min_integration_time_s <= max_integration_time_s, "
                f"got {min_integration_time_s!r}, {max_integration_time_s!r}"
            )
        if (
            isinstance(max_averages, bool)
            or not isinstance(max_averages, int)
            or not AVERAGES_RANGE[0] <= max_averages <= AVERAGES_RANGE[1]
        ):
            raise ValueError(
                f"max_averages must be an integer {AVERAGES_RANGE[0]}-{AVERAGES_RANGE[1]}, got {max_averages!r}"
            )
        if dark_method not in DARK_METHODS:
            raise ValueError(f"dark_method must be one of {', '.join(DARK_METHODS)}, got {dark_method!r}")
        if dark_method == "prompt" and dark_prompt is None:
            raise ValueError("dark_method 'prompt' needs a dark_prompt to ask the operator with")
        if not (0.0 <= light_settle_s <= 60.0):
            raise ValueError(f"light_settle_s must be 0-60 s, got {light_settle_s!r}")
        self.resource = resource
        self.model = model
        self.timeout_s = float(timeout_s)
        self.station_min_integration_time_s = float(min_integration_time_s)
        self.station_max_integration_time_s = float(max_integration_time_s)
        self.max_averages = max_averages
        self.dark_method: DarkMethod = dark_method
        self.light_settle_s = float(light_settle_s)
        self.nonlinearity_correction = bool(nonlinearity_correction)
        self._dark_prompt = dark_prompt
        self._lock = threading.RLock()
        self._device: Any = None
        self._serial = ""
        self._model_name = ""
        self._pixels = 0
        self._coefficients: tuple[float, ...] = ()
        self._wavelengths_nm = np.empty(0)
        self._nonlinearity: tuple[float, ...] = ()
        self._electric_dark: tuple[int, ...] = ()
        self._max_adc_counts = 0.0
        self._full_scale_counts = 0.0
        self._spectrum_feature: Any = None
        self._device_limits_us = (0, 0)
        self.min_integration_time_s = 0.0
        self.max_integration_time_s = 0.0
        self._integration_time_s = math.nan
        self._wanted_integration_time_s: float | None = None
        self._averages = 1
        self._light_on: bool | None = None
        self._last_lit: np.ndarray | None = None
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    # --- public API -------------------------------------------------------------------------
    @property
    def ident(self) -> str:
        """``Ocean Insight,MODEL,SERIAL``, read at connection."""
        return f"Ocean Insight,{self._model_name},{self._serial}" if self._model_name else ""

    @property
    def serial_number(self) -> str:
        """The device's serial number (how reconnect() finds it again)."""
        return self._serial

    @property
    def pixels(self) -> int:
        """Number of detector pixels (values per spectrum)."""
        return self._pixels

    @property
    def wavelengths_nm(self) -> np.ndarray:
        """Wavelength (nm) of each pixel, from the device's own polynomial over pixel index."""
        return self._wavelengths_nm.copy()

    @property
    def wavelength_coefficients(self) -> tuple[float, ...]:
        """The device's wavelength polynomial, constant term first, of the order the device stores."""
        return self._coefficients

    @property
    def full_scale_counts(self) -> float:
        """Counts of a saturated pixel in the returned spectra (the device's maximum ADC count,
        linearised when the nonlinearity correction is on)."""
        return self._full_scale_counts

    @property
    def nonlinearity_coefficients(self) -> tuple[float, ...]:
        """The device's nonlinearity polynomial, constant term first (empty if it stores none)."""
        return self._nonlinearity

    @property
    def electric_dark_pixels(self) -> tuple[int, ...]:
        """Indices of the detector's masked (electric-dark) pixels; empty where the model has none."""
        return self._electric_dark

    @property
    def recorded_attributes(self) -> dict[str, str | float | int]:
        """What the trial file records about how these counts were made."""
        return {
            "driver": "ocean",
            "model": self._model_name,
            "serial_number": self._serial,
            "nonlinearity_corrected": int(self._corrects_nonlinearity()),
            "nonlinearity_coefficients": ", ".join(f"{c:.9g}" for c in self._nonlinearity),
            "electric_dark_pixels": ", ".join(str(i) for i in self._electric_dark),
            "dark_method": self.dark_method,
            "averaging": "software, one scan at a time",
            "wavelength_coefficients": ", ".join(f"{c:.12g}" for c in self._coefficients),
        }

    @property
    def connected(self) -> bool:
        """True while a session is open (False after a NotConnected, until reconnect())."""
        return self._device is not None

    @property
    def integration_time_s(self) -> float:
        """Integration time (s) per scan, as the device reports it."""
        return self._integration_time_s

    @integration_time_s.setter
    def integration_time_s(self, value: float) -> None:
        with self._lock:
            seconds = self._checked_integration_time(value)
            self._wanted_integration_time_s = seconds
            self._apply_integration_time(seconds)

    @property
    def averages(self) -> int:
        """Number of scans averaged (in software) into one spectrum."""
        return self._averages

    @averages.setter
    def averages(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise LimitError(f"averages must be an integer, got {value!r}")
        if not AVERAGES_RANGE[0] <= int(value) <= self.max_averages:
            raise LimitError(f"averages {value} not in {AVERAGES_RANGE[0]}-{self.max_averages}; nothing was changed")
        self._averages = int(value)

    def acquire(self) -> np.ndarray:
        """One lit spectrum: counts (float64, one per pixel), linearised, averaged over :attr:`averages` scans."""
        with self._lock:
            self._set_light(True)
            counts = self._averaged_scans()
            self._last_lit = counts
            return counts

    def dark(self) -> np.ndarray:
        """One dark spectrum by the station's method; the light is restored after. Raises :class:`DarkNotDark`
        (and returns nothing) if the spectrum still shows the light."""
        with self._lock:
            if self._last_lit is None:
                self.acquire()  # the lit reference a dark is judged against
            lit = self._last_lit
            assert lit is not None
            self._set_light(False)
            try:
                counts = self._averaged_scans()
            finally:
                if self._device is not None:
                    self._set_light(True)
            self._refuse_lit_dark(counts, lit)
            return counts

    def saturated(self, counts: np.ndarray, margin_counts: float = 0.0) -> np.ndarray:
        """Boolean mask of pixels at (or within ``margin_counts`` of) full scale.

        A pixel that clipped in any scan of an average reads exactly full scale, so no margin is needed
        for spectra from this driver; the margin is for others'.
        """
        return np.asarray(counts) >= self.full_scale_counts - margin_counts

    def reconnect(self) -> None:
        """Close the session (if any) and open a new one to the same device (by serial number); the
        integration time set through this driver is re-applied."""
        with self._lock:
            self._drop()
            self._connect()

    def close(self) -> None:
        """Close the session. Safe to call twice; reconnect() opens a new one."""
        with self._lock:
            self._drop()

    def __enter__(self) -> OceanSpectrometer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<OceanSpectrometer {self.location} {self.ident!r} {self._pixels} px, {state}>"

    # --- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        from . import _ocean_device

        known_serial = self._serial or self.location.serial
        device = _ocean_device.open_device(self.location, self.model, known_serial, self.timeout_s)
        self._device = device
        try:
            self._read_identity(known_serial)
            self._read_calibration()
            self._read_limits()
            if self._wanted_integration_time_s is not None:
                self._apply_integration_time(self._checked_integration_time(self._wanted_integration_time_s))
            else:
                self._read_integration_time()
            self._light_on = None
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        device, self._device = self._device, None
        if device is not None:
            from . import _ocean_device

            _ocean_device.close_device(device)

    def _read_identity(self, known_serial: str | None) -> None:
        device = self._device
        model = str(device.model)
        serial = str(device.serial_number).strip("\x00 ")  # read by the library when it opened the device
        if self.model is not None and model.upper() != self.model.upper():
            raise ProtocolError(f"{self.location}: the device is a {model}, the station says {self.model}")
        if not serial or serial == "?" or not serial.isprintable():
            raise ProtocolError(f"{self.location}: the device reports an unreadable serial number {serial!r}")
        if known_serial and serial != known_serial:
            raise ProtocolError(
                f"{self.location}: the spectrometer that answers has serial number {serial!r}, not {known_serial!r}"
            )
        self._model_name, self._serial = model, serial

    def _read_calibration(self) -> None:
        feature = self._device.f.spectrometer
        if self._speaks_obp():
            pixels = int(feature._spectrum_length)  # the model's pixel count, from the library's device table
            coefficients = self._stored_wavelength_coefficients()
        else:  # older protocols: the library reads the EEPROM's cubic and returns only the axis
            library_axis = np.asarray(self._io(feature.get_wavelengths, "reading the wavelength calibration"))
            pixels = int(library_axis.size)
            index = np.arange(pixels, dtype=np.float64)
            coefficients = list(np.polynomial.polynomial.polyfit(index, library_axis, 3))
        if not 16 <= pixels <= 65536:
            raise ProtocolError(f"{self.location}: the device has {pixels} pixels (expected 16-65536)")
        axis = np.polynomial.polynomial.polyval(np.arange(pixels, dtype=np.float64), coefficients)
        low, high = WAVELENGTH_RANGE_NM
        if not (np.all(np.isfinite(axis)) and np.all(np.diff(axis) > 0) and low <= axis[0] and axis[-1] <= high):
            raise ProtocolError(
                f"{self.location}: the wavelength polynomial {tuple(coefficients)} gives an axis "
                f"{axis[0]:.6g}..{axis[-1]:.6g} nm that is not increasing within {low:g}-{high:g} nm"
            )
        self._pixels, self._coefficients, self._wavelengths_nm = pixels, tuple(coefficients), axis
        self._nonlinearity = self._stored_nonlinearity()
        dark_pixels = tuple(int(i) for i in feature.get_electric_dark_pixel_indices())
        if any(not 0 <= i < pixels for i in dark_pixels):
            raise ProtocolError(f"{self.location}: electric-dark pixel indices {dark_pixels} beyond {pixels} pixels")
        self._electric_dark = dark_pixels
        self._max_adc_counts = self._device_full_scale(float(feature.get_maximum_intensity()))
        self._full_scale_counts = self._linearised_full_scale()
        self._spectrum_feature = feature

    def _stored_wavelength_coefficients(self) -> list[float]:
        """The polynomial the device stores: OBP asks for the count, then each coefficient."""
        count = _unpack_one(
            "<B", self._query(GET_WL_COEFF_COUNT, (), "reading the wavelength coefficient count"), "coefficient count"
        )
        if not 1 <= count <= MAX_COEFFICIENTS:
            raise ProtocolError(f"{self.location}: the device stores {count} wavelength coefficients (1-16 expected)")
        coefficients = []
        for index in range(count):
            payload = self._query(GET_WL_COEFF, (index,), f"reading wavelength coefficient {index}")
            value = _unpack_one("<f", payload, f"wavelength coefficient {index}")
            if not math.isfinite(value):
                raise ProtocolError(f"{self.location}: wavelength coefficient {index} is {value!r}")
            coefficients.append(value)
        return coefficients

    def _stored_nonlinearity(self) -> tuple[float, ...]:
        feature = getattr(self._device.f, "nonlinearity_coefficients", None)
        if feature is None:
            return ()
        values = self._io(feature.get_nonlinearity_coefficients, "reading the nonlinearity coefficients")
        coefficients = tuple(float(v) for v in values)
        if len(coefficients) > MAX_COEFFICIENTS or not all(math.isfinite(c) for c in coefficients):
            raise ProtocolError(f"{self.location}: unusable nonlinearity coefficients {coefficients}")
        response = np.polynomial.polynomial.polyval(np.linspace(0.0, self._max_adc_counts or 65535.0, 64), coefficients)
        if coefficients and response.min() <= 0:
            raise ProtocolError(f"{self.location}: nonlinearity coefficients {coefficients} give a response <= 0")
        return coefficients

    def _device_full_scale(self, library_value: float) -> float:
        if self._speaks_obp():
            payload = self._optional_query(GET_MAXIMUM_ADC_COUNTS, "reading the maximum ADC count")
            if payload is not None:
                library_value = float(_unpack_one("<L", payload, "maximum ADC count"))
        if not 1.0 <= library_value <= 2.0**32:
            raise ProtocolError(f"{self.location}: the device reports a full scale of {library_value!r} counts")
        return library_value

    def _read_limits(self) -> None:
        low_us, high_us = (int(v) for v in self._device.f.spectrometer.get_integration_time_micros_limits())
        if self._speaks_obp():
            low = self._optional_query(GET_MINIMUM_INTEGRATION_TIME_US, "reading the shortest integration time")
            high = self._optional_query(GET_MAXIMUM_INTEGRATION_TIME_US, "reading the longest integration time")
            if low is not None:
                low_us = max(low_us, _unpack_one("<L", low, "shortest integration time"))
            if high is not None:
                high_us = min(high_us, _unpack_one("<L", high, "longest integration time"))
        if not 0 < low_us < high_us:
            raise ProtocolError(f"{self.location}: the device's integration limits {low_us}..{high_us} us are absurd")
        self._device_limits_us = (low_us, high_us)
        # python-seabreeze accepts low <= t < high: the longest settable time is one microsecond short of it
        self.min_integration_time_s = max(low_us * 1e-6, self.station_min_integration_time_s)
        self.max_integration_time_s = min((high_us - 1) * 1e-6, self.station_max_integration_time_s)
        if self.min_integration_time_s > self.max_integration_time_s:
            raise LimitError(
                f"{self.location}: the station's integration limits "
                f"{self.station_min_integration_time_s:g}-{self.station_max_integration_time_s:g} s "
                f"do not overlap the device's {low_us * 1e-6:g}-{high_us * 1e-6:g} s"
            )

    # --- settings -----------------------------------------------------------------------------
    def _checked_integration_time(self, value: float) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise LimitError(f"integration time must be a number of seconds, got {value!r}") from None
        if not (math.isfinite(seconds) and self.min_integration_time_s <= seconds <= self.max_integration_time_s):
            raise LimitError(
                f"integration time {seconds:g} s not in {self.min_integration_time_s:g}-"
                f"{self.max_integration_time_s:g} s (device and station limits); nothing was sent"
            )
        return seconds

    def _apply_integration_time(self, seconds: float) -> None:
        micros = round(seconds * 1e6)
        feature = self._connected().f.spectrometer
        self._io(lambda: feature.set_integration_time_micros(micros), f"setting the integration time to {micros} us")
        self._read_integration_time(expected_us=micros)

    def _read_integration_time(self, expected_us: int | None = None) -> None:
        payload = self._optional_query(GET_INTEGRATION_TIME_US, "reading back the integration time")
        if payload is None:  # the device cannot tell: it acknowledged the setting, which is all it offers
            if expected_us is not None:
                self._integration_time_s = expected_us / 1e6
            return
        micros = _unpack_one("<L", payload, "integration time")
        if expected_us is not None and micros != expected_us:
            self._integration_time_s = micros / 1e6
            raise ReadbackMismatch(
                f"{self.location}: integration time set to {expected_us} us, the device reports {micros} us"
            )
        self._integration_time_s = micros / 1e6

    def _set_light(self, on: bool) -> None:
        if self._light_on == on:
            return
        if self.dark_method == "prompt":
            if self._light_on is not None or not on:
                assert self._dark_prompt is not None
                self._dark_prompt(
                    "Unblock the light path to the spectrometer, then press Enter"
                    if on
                    else "Block the light path to the spectrometer (lamp shutter closed or lamp off), then press Enter"
                )
        else:
            message = SET_LAMP_ENABLE if self.dark_method == "lamp" else SET_SHUTTER
            what = "lamp-enable line" if self.dark_method == "lamp" else "shutter"
            try:  # lamp: 1 = on; shutter: 1 = open
                self._send(message, (int(on),), f"switching the {what} {'on' if on else 'off'}")
            except ProtocolError as error:
                if getattr(error, "error", None) == _UNKNOWN_MESSAGE:
                    raise InstrumentError(
                        f"{self.location}: the {self._model_name} has no {what} (OBP error 2, unknown message): "
                        f"set spectrometer.dark = 'prompt' (or the method this bench is wired for) in the station"
                    ) from None
                raise
            if self.light_settle_s:
                threading.Event().wait(self.light_settle_s)  # the lamp's warm-up/decay, a bounded physical wait
        self._light_on = on

    # --- spectra ------------------------------------------------------------------------------
    def _averaged_scans(self) -> np.ndarray:
        self._connected()
        feature = self._spectrum_feature
        total = np.zeros(self._pixels)
        clipped = np.zeros(self._pixels, dtype=bool)
        exposure_s = self._integration_time_s if math.isfinite(self._integration_time_s) else 0.0
        for _ in range(self._averages):
            raw = np.asarray(self._io(feature.get_intensities, "reading a spectrum", extra_s=exposure_s), dtype=float)
            if raw.shape != (self._pixels,):
                raise ProtocolError(f"{self.location}: a spectrum of {raw.size} values, not {self._pixels}")
            highest = raw.max()  # python-seabreeze unpacks unsigned 16-bit counts: never negative, never NaN
            if highest > self._max_adc_counts:
                raise ProtocolError(
                    f"{self.location}: a spectrum with counts up to {highest:g}, above the device's maximum "
                    f"ADC count {self._max_adc_counts:g}"
                )
            clipped |= raw >= self._max_adc_counts
            total += self._linearised(raw)
        counts = total / self._averages
        counts[clipped] = self._full_scale_counts
        return counts

    def _corrects_nonlinearity(self) -> bool:
        return self.nonlinearity_correction and bool(self._nonlinearity)

    def _correction_at(self, counts: np.ndarray) -> np.ndarray:
        return np.polynomial.polynomial.polyval(counts, self._nonlinearity)

    def _linearised(self, raw: np.ndarray) -> np.ndarray:
        if not self._corrects_nonlinearity():
            return raw
        offset = float(np.mean(raw[list(self._electric_dark)])) if self._electric_dark else 0.0
        signal = raw - offset
        return signal / self._correction_at(signal) + offset

    def _linearised_full_scale(self) -> float:
        if not self._corrects_nonlinearity() or not self._max_adc_counts:
            return self._max_adc_counts
        return float(self._max_adc_counts / self._correction_at(np.array([self._max_adc_counts]))[0])

    def _refuse_lit_dark(self, dark: np.ndarray, lit: np.ndarray) -> None:
        dark_spread = float(np.percentile(dark, 95) - np.percentile(dark, 5))
        lit_spread = float(np.percentile(lit, 95) - np.percentile(lit, 5))
        if lit_spread > 0.02 * self.full_scale_counts and dark_spread > LIT_DARK_FRACTION * lit_spread:
            raise DarkNotDark(
                f"{self.location}: the dark spectrum still shows the light (spread {dark_spread:.0f} counts "
                f"against {lit_spread:.0f} lit; dark method {self.dark_method!r}): check that the "
                f"{'lamp TTL line is wired to the spectrometer' if self.dark_method == 'lamp' else 'light is blocked'}"
                "; the dark was not kept"
            )

    # --- protocol -----------------------------------------------------------------------------
    def _speaks_obp(self) -> bool:
        from . import _ocean_device

        return _ocean_device.speaks_obp(self._connected())

    def _query(self, message_type: int, payload: tuple, what: str) -> bytes:
        from . import _ocean_device

        device = self._connected()
        return self._io(lambda: _ocean_device.obp_query(device, message_type, payload), what)

    def _send(self, message_type: int, payload: tuple, what: str) -> None:
        from . import _ocean_device

        device = self._connected()
        self._io(lambda: _ocean_device.obp_send(device, message_type, payload), what)

    def _optional_query(self, message_type: int, what: str) -> bytes | None:
        """The device's answer, or None if it does not know the message (OBP error 2)."""
        try:
            return self._query(message_type, (), what)
        except ProtocolError as error:
            if getattr(error, "error", None) == _UNKNOWN_MESSAGE:
                return None
            raise

    def _connected(self) -> Any:
        if self._device is None:
            raise NotConnected(f"{self.location}: not connected; call reconnect()")
        return self._device

    def _io(self, operation: Callable[[], _T], what: str, extra_s: float = 0.0) -> _T:
        """Run one library call within the deadline, turning what can go wrong into the driver's errors."""
        from . import _ocean_device

        device = self._connected()
        try:
            return _ocean_device.bounded_call(device, operation, self.timeout_s + extra_s)
        except NotConnected as error:
            self._drop()
            raise NotConnected(f"{self.location}: {error} ({what})") from None
        except ProtocolError as error:
            if getattr(error, "error", None) is not None:  # a NACK: a whole frame, the line is in step
                raise
            if not _ocean_device.drain(device):
                self._drop()
                raise NotConnected(
                    f"{self.location}: {error} ({what}); the line did not go quiet, session closed"
                ) from None
            raise ProtocolError(f"{self.location}: {error} ({what})") from None


def _unpack_one(fmt: str, payload: bytes, what: str) -> Any:
    try:
        return struct.unpack(fmt, payload)[0]
    except struct.error:
        raise ProtocolError(f"{what}: a reply of {len(payload)} bytes, not {struct.calcsize(fmt)}") from None
