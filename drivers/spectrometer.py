"""Array spectrometer over SCPI/VISA (pyvisa + pyvisa-py): LAN socket, USB-TMC or serial.

The command strings come from a dialect map in ``hardware/maps`` (default
``scpi-spectrometer``), so another instrument is a new map, not new code.

Error contract (see docs/instruments/spectrometer.md):

- :class:`~drivers.LimitError`: a setting outside the configured limits; nothing was sent.
  Also raised by :meth:`ScpiSpectrometer.acquire` / ``dark`` when the instrument
  was set outside the limits behind the driver's back; nothing was measured.
- :class:`ScpiError` (an :class:`~drivers.InstrumentError`): the instrument's
  ``SYST:ERR?`` queue reported errors after a setting or command.
- :class:`~drivers.ReadbackMismatch`: a setting read back differently.
- :class:`~drivers.ProtocolError`: a malformed or physically absurd answer
  (block framing, length, non-finite or out-of-range values, unreadable text,
  a pixel count, integration time, averages or wavelength axis no detector
  has). The line is drained; the session stays open.
- :class:`~drivers.NotConnected`: no whole answer by its deadline, or the socket
  is gone. The session is closed (a late answer could otherwise be taken for the
  next one); every later call raises NotConnected until
  :meth:`ScpiSpectrometer.reconnect`.

Every answer has one deadline, not one timeout per read: ``timeout_s`` after the
query was sent (plus the exposure, for a spectrum). An instrument that trickles
its answer in small pieces cannot hold the caller longer than that
(decision 0038).
"""

from __future__ import annotations

import math
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar, cast

import numpy as np
import pyvisa
from pyvisa import constants
from pyvisa.errors import VisaIOError

from . import _ieee_block
from ._errors import InstrumentError, LimitError, NotConnected, ProtocolError
from ._scpi_dialect import MAX_PIXELS, ScpiDialect, load_dialect
from ._settings import ScpiSetting, scpi_settings

if TYPE_CHECKING:
    from pyvisa.resources import MessageBasedResource

__all__ = [
    "ScpiSpectrometer",
    "ScpiError",
    "PIXEL_COUNT_RANGE",
    "INTEGRATION_TIME_RANGE_S",
    "AVERAGES_RANGE",
    "WAVELENGTH_RANGE_NM",
]

# Physical ranges of what an array spectrometer can answer. An answer outside them is a ProtocolError:
# no detector has it, so it is a firmware, line or configuration fault, never data.
PIXEL_COUNT_RANGE = (1, MAX_PIXELS)
INTEGRATION_TIME_RANGE_S = (1e-6, 3600.0)
AVERAGES_RANGE = (1, 1_000_000)
WAVELENGTH_RANGE_NM = (150.0, 3000.0)  # deep UV to short-wave IR: any grating spectrometer's axis lies inside

_T = TypeVar("_T")
_ERROR_ANSWER = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$')
_INTEGER = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_MAX_ERROR_READS = 32
_MAX_TEXT_ANSWER_BYTES = 1 << 20  # a text answer longer than this is refused (memory bound within the deadline)
_TEXT_CHUNK_BYTES = 4096
_GENERIC_READ_BYTES = 1024  # per read where the driver cannot see the socket: how far one read may overrun
_DRAIN_IDLE_S = 0.05
_DRAIN_MAX_S = 2.0


class ScpiError(InstrumentError):
    """The instrument reported errors in its SYST:ERR? queue after a command."""

    def __init__(self, command: str, errors: list[tuple[int, str]]):
        self.command = command
        self.errors = errors
        listed = "; ".join(f'{code},"{text}"' for code, text in errors)
        super().__init__(f"instrument reported after {command!r}: {listed}")


# --- checks of what the instrument answers -------------------------------------------------------
def _shown(answer: str, limit: int = 60) -> str:
    return repr(answer[:limit]) + ("..." if len(answer) > limit else "")


def integer_answer(answer: str, what: str, low: int, high: int) -> int:
    """The integer in a text answer, or ProtocolError naming the answer and the range ``low``-``high``."""
    text = answer.strip()
    expected = f"expected an integer within {low}-{high}"
    if not _INTEGER.fullmatch(text) or len(text) > 20:
        raise ProtocolError(f"{what}: instrument answered {_shown(answer)}, {expected}")
    value = int(text)
    if not low <= value <= high:
        raise ProtocolError(f"{what}: instrument answered {_shown(answer)}, {expected}")
    return value


def number_answer(answer: str, what: str, low: float, high: float, unit: str = "") -> float:
    """The finite number in a text answer, or ProtocolError naming the answer and the range ``low``-``high``."""
    text = answer.strip()
    expected = f"expected a finite number within {low:g}-{high:g}{unit}"
    if not _NUMBER.fullmatch(text):
        raise ProtocolError(f"{what}: instrument answered {_shown(answer)}, {expected}")
    value = float(text)
    if not (math.isfinite(value) and low <= value <= high):
        raise ProtocolError(f"{what}: instrument answered {_shown(answer)}, {expected}")
    return value


def pixel_count_from(answer: str) -> int:
    """Pixel count from the answer to the pixel-count query; ProtocolError outside PIXEL_COUNT_RANGE."""
    return integer_answer(answer, "pixel count", *PIXEL_COUNT_RANGE)


def integration_time_from(answer: str) -> float:
    """Integration time (s) from the instrument's answer; ProtocolError unless in INTEGRATION_TIME_RANGE_S."""
    return number_answer(answer, "integration time", *INTEGRATION_TIME_RANGE_S, unit=" s")


def averages_from(answer: str) -> int:
    """Scans averaged, from the instrument's answer; ProtocolError outside AVERAGES_RANGE."""
    return integer_answer(answer, "averages", *AVERAGES_RANGE)


def wavelength_axis_from(answer: str, pixels: int) -> tuple[tuple[float, float, float, float], np.ndarray]:
    """Coefficients c0..c3 and the wavelength (nm) of each pixel, from the answer to the coefficients query.

    ProtocolError unless there are 4 finite numbers and the cubic over pixel index
    0..pixels-1 is finite, strictly monotonic and within WAVELENGTH_RANGE_NM.
    """
    parts = answer.split(",")
    if len(parts) != 4 or not all(_NUMBER.fullmatch(part.strip()) for part in parts):
        raise ProtocolError(
            f"wavelength coefficients: instrument answered {_shown(answer)}, expected 4 numbers c0,c1,c2,c3"
        )
    coefficients = tuple(float(part) for part in parts)
    if not all(math.isfinite(c) for c in coefficients):
        raise ProtocolError(
            f"wavelength coefficients: instrument answered {_shown(answer)}, expected 4 finite numbers c0,c1,c2,c3"
        )
    c0, c1, c2, c3 = coefficients
    index = np.arange(pixels, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        wavelengths_nm = c0 + index * (c1 + index * (c2 + index * c3))
    low, high = WAVELENGTH_RANGE_NM
    said = f"wavelength coefficients {_shown(answer)} give"
    if not np.isfinite(wavelengths_nm).all():
        raise ProtocolError(
            f"{said} a non-finite wavelength axis over pixels 0-{pixels - 1}; "
            f"expected wavelengths within {low:g}-{high:g} nm"
        )
    outside = (wavelengths_nm < low) | (wavelengths_nm > high)
    if outside.any():
        raise ProtocolError(
            f"{said} wavelengths {wavelengths_nm.min():.6g}-{wavelengths_nm.max():.6g} nm "
            f"over pixels 0-{pixels - 1}; expected all within {low:g}-{high:g} nm"
        )
    steps = np.diff(wavelengths_nm)
    if not ((steps > 0).all() or (steps < 0).all()):
        direction = np.sign(steps[0])
        first_bad = 0 if direction == 0 else int(np.flatnonzero(np.sign(steps) != direction)[0])
        raise ProtocolError(
            f"{said} a wavelength axis that turns or stalls between pixels {first_bad} and "
            f"{first_bad + 1}; expected it strictly monotonic over pixels 0-{pixels - 1}"
        )
    return coefficients, wavelengths_nm  # type: ignore[return-value]


def check_counts(counts: np.ndarray, full_scale_counts: float) -> None:
    """ProtocolError if any count lies outside 0..full scale.

    Exactly full scale is a saturated pixel: it is data, returned unchanged and
    flagged by :meth:`ScpiSpectrometer.saturated` (decision 0024). Above full
    scale or below zero is no reading the detector's ADC can give.
    """
    outside = ~((counts >= 0.0) & (counts <= full_scale_counts))
    if outside.any():
        bad = np.flatnonzero(outside)
        raise ProtocolError(
            f"{bad.size} count(s) outside 0-{full_scale_counts:g} (first at pixel {bad[0]}: "
            f"{float(counts[bad[0]]):g}); a {full_scale_counts:g}-count detector reads 0 to "
            "full scale, full scale meaning saturated"
        )


class _Deadline:
    """The moment (time.monotonic) by which a whole answer must have arrived."""

    __slots__ = ("seconds", "at")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def remaining_s(self) -> float:
        return self.at - time.monotonic()


class ScpiSpectrometer:
    """An array spectrometer: identity, wavelength axis, settings and raw spectra over SCPI.

    Opens the connection at once (raises :class:`~drivers.NotConnected` if the
    instrument does not answer, :class:`~drivers.ProtocolError` if it answers
    absurdly). Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        resource: str,
        visa_library: str = "@py",
        dialect: str = "scpi-spectrometer",
        timeout_s: float = 5.0,
        min_integration_time_s: float = 0.001,
        max_integration_time_s: float = 60.0,
        max_averages: int = 100_000,
    ):
        shortest, longest = INTEGRATION_TIME_RANGE_S
        if not (shortest <= min_integration_time_s <= max_integration_time_s <= longest):
            raise ValueError(
                f"need {shortest:g} <= min_integration_time_s <= max_integration_time_s <= "
                f"{longest:g}, got {min_integration_time_s!r}, {max_integration_time_s!r}"
            )
        if (
            isinstance(max_averages, bool)
            or not isinstance(max_averages, int)
            or not AVERAGES_RANGE[0] <= max_averages <= AVERAGES_RANGE[1]
        ):
            raise ValueError(
                f"max_averages must be an integer {AVERAGES_RANGE[0]}-{AVERAGES_RANGE[1]}, got {max_averages!r}"
            )
        if not (timeout_s > 0.0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.resource = resource
        self.visa_library = visa_library
        self.timeout_s = float(timeout_s)
        self.min_integration_time_s = float(min_integration_time_s)
        self.max_integration_time_s = float(max_integration_time_s)
        self.max_averages = max_averages
        self._dialect: ScpiDialect = load_dialect(dialect)
        fixed = self._dialect.fixed_pixels
        if fixed is not None and not PIXEL_COUNT_RANGE[0] <= fixed <= PIXEL_COUNT_RANGE[1]:
            raise ValueError(
                f"dialect {self._dialect.name!r} fixes {fixed} pixels; "
                f"expected {PIXEL_COUNT_RANGE[0]}-{PIXEL_COUNT_RANGE[1]}"
            )
        self._lock = threading.RLock()
        self._rm: pyvisa.ResourceManager | None = None
        self._res: MessageBasedResource | None = None
        self._ident = ""
        self._pixels = 0
        self._coefficients: tuple[float, ...] = ()
        self._wavelengths_nm = np.empty(0)
        self._integration_time_s = math.nan
        self._averages = 1
        self._wanted_integration_time_s: float | None = None
        self._wanted_averages: int | None = None
        self._shutter_open = False
        self._settings_known = False
        try:
            self._connect()
        except BaseException:
            self.close()
            raise

    # --- public API -------------------------------------------------------------------------
    @property
    def ident(self) -> str:
        """The instrument's ``*IDN?`` answer, read at connection."""
        return self._ident

    @property
    def pixels(self) -> int:
        """Number of detector pixels (values per spectrum)."""
        return self._pixels

    @property
    def wavelengths_nm(self) -> np.ndarray:
        """Wavelength (nm) of each pixel, from the instrument's cubic polynomial over pixel index."""
        return self._wavelengths_nm.copy()

    @property
    def wavelength_coefficients(self) -> tuple[float, ...]:
        """The instrument's polynomial coefficients c0..c3 (nm, nm/px, nm/px^2, nm/px^3)."""
        return self._coefficients

    @property
    def full_scale_counts(self) -> float:
        """Counts of a saturated pixel (65535 for a 16-bit detector)."""
        return self._dialect.full_scale_counts

    @property
    def recorded_attributes(self) -> dict[str, str | float | int]:
        """What the trial file records about how these counts were made."""
        return {
            "driver": "scpi",
            "dialect": self._dialect.name,
            "averaging": "in the instrument",
            "dark_method": "shutter",
            "wavelength_coefficients": ", ".join(f"{c:.12g}" for c in self._coefficients),
        }

    @property
    def connected(self) -> bool:
        """True while a session is open (False after a NotConnected, until reconnect())."""
        return self._res is not None

    if TYPE_CHECKING:  # what the two declarative settings offer, as a type checker matches them to Spectrometer

        @property
        def integration_time_s(self) -> float: ...
        @integration_time_s.setter
        def integration_time_s(self, value: float) -> None: ...
        @property
        def averages(self) -> int: ...
        @averages.setter
        def averages(self, value: int) -> None: ...
    else:
        integration_time_s = ScpiSetting(
            "integration_time",
            "seconds",
            integration_time_from,
            unit="s",
            low="min_integration_time_s",
            high="max_integration_time_s",
            relative_tolerance=1e-3,
            absolute_tolerance=1e-6,
            doc="Integration time (s) per scan, as the instrument reports it.",
        )
        averages = ScpiSetting(
            "averages",
            "count",
            averages_from,
            integer=True,
            low=AVERAGES_RANGE[0],
            high="max_averages",
            doc="Number of scans the instrument averages into one spectrum.",
        )

    def acquire(self) -> np.ndarray:
        """One spectrum with the shutter open: raw counts (float64, one per pixel), averaged as set."""
        with self._lock:
            if not self._shutter_open:
                self._set_shutter(True)
            return self._measure()

    def dark(self) -> np.ndarray:
        """One spectrum with the shutter closed (dark counts); the shutter is opened again after."""
        with self._lock:
            self._set_shutter(False)
            try:
                return self._measure()
            finally:
                if self._res is not None:
                    self._set_shutter(True)

    def saturated(self, counts: np.ndarray, margin_counts: float = 0.0) -> np.ndarray:
        """Boolean mask of pixels at (or within ``margin_counts`` of) full scale.

        With averaging, a pixel that clipped in some scans only reads below full
        scale; a margin catches those.
        """
        return np.asarray(counts) >= self.full_scale_counts - margin_counts

    def write(self, command: str) -> None:
        """Send one command that has no answer, then check SYST:ERR? (raises ScpiError).

        For vendor commands outside the dialect and the simulator's ``SIM:`` namespace.
        The driver re-reads its settings before the next spectrum, in case the
        command changed them (``*RST``, say).
        """
        with self._lock:
            self._settings_known = False
            self._shutter_open = False
            self._write(command)
            self._check_errors(command)

    def query(self, command: str) -> str:
        """Send one query and return its text answer (stripped). Not for block answers."""
        with self._lock:
            return self._query(command)

    def reconnect(self) -> None:
        """Close the session (if any) and open a new one; settings made through this driver are re-applied."""
        with self._lock:
            self._drop()
            self._connect()

    def close(self) -> None:
        """Close the session. Safe to call twice; reconnect() opens a new one.

        The VISA resource manager is left open: pyvisa shares one per VISA
        library, so closing it would close every other session of this process.
        """
        with self._lock:
            self._drop()

    def __enter__(self) -> ScpiSpectrometer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<ScpiSpectrometer {self.resource} {self._ident!r} {self._pixels} px, {state}>"

    # --- connection ---------------------------------------------------------------------------
    def _connect(self) -> None:
        d = self._dialect
        try:
            if self._rm is None:
                self._rm = pyvisa.ResourceManager(self.visa_library)
            # a SCPI instrument's session (TCPIP, USB INSTR, ASRL) is message-based: pyvisa types every one a Resource
            self._res = cast(
                "MessageBasedResource",
                self._rm.open_resource(
                    self.resource,
                    read_termination=d.read_termination,
                    write_termination=d.write_termination,
                    timeout=self._ms(self.timeout_s),
                    open_timeout=self._ms(self.timeout_s),
                ),
            )
        except Exception as error:
            self._res = None
            raise NotConnected(f"cannot open {self.resource}: {error}") from error
        try:
            self._set_no_delay()
            if "clear_status" in d.commands:
                self._write(d.command("clear_status"))
            self._ident = self._query(d.command("identify"))
            pixels = d.fixed_pixels or pixel_count_from(self._query(d.command("pixel_count")))
            if self._pixels and pixels != self._pixels:
                raise InstrumentError(
                    f"pixel count changed from {self._pixels} to {pixels} across reconnect: a different instrument?"
                )
            self._pixels = pixels
            self._coefficients, self._wavelengths_nm = wavelength_axis_from(
                self._query(d.command("wavelength_coefficients")), pixels
            )
            self._set_shutter(True)
            for setting in scpi_settings(type(self)):  # integration time, then averages
                setting.reapply(self)
            self._refresh_settings()
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        res, self._res = self._res, None
        self._shutter_open = False
        if res is not None:
            try:
                res.close()
            except Exception:
                pass

    # --- settings -----------------------------------------------------------------------------
    def _refresh_settings(self) -> None:
        """Re-assert the data format and re-read the settings (after connecting or a pass-through write)."""
        d = self._dialect
        for command in d.setup:
            self._write(command)
        self._check_errors("data format setup")
        for setting in scpi_settings(type(self)):
            setting.read(self)
        self._settings_known = True

    def _check_settings_within_limits(self) -> None:
        """LimitError if the instrument was set (front panel, pass-through) outside this driver's limits.

        Keeps every exposure, and so every spectrum's deadline, within what the
        station allows. The readback tolerance of the setters applies.
        """
        seconds, low, high = self._integration_time_s, self.min_integration_time_s, self.max_integration_time_s
        if not (low - max(1e-6, 1e-3 * low) <= seconds <= high + max(1e-6, 1e-3 * high)):
            raise LimitError(
                f"the instrument's integration time {seconds:g} s is outside the limits "
                f"{low:g}-{high:g} s; nothing measured (set integration_time_s)"
            )
        if self._averages > self.max_averages:
            raise LimitError(
                f"the instrument averages {self._averages} scans, more than the limit "
                f"{self.max_averages}; nothing measured (set averages)"
            )

    def _set_shutter(self, is_open: bool) -> None:
        command = self._dialect.command("shutter_open" if is_open else "shutter_close")
        self._shutter_open = False
        self._write(command)
        self._check_errors(command)
        self._shutter_open = is_open

    def _check_errors(self, after: str) -> None:
        errors: list[tuple[int, str]] = []
        for _ in range(_MAX_ERROR_READS):
            answer = self._query(self._dialect.command("next_error"))
            match = _ERROR_ANSWER.match(answer)
            if not match:
                raise ProtocolError(f"unreadable answer to {self._dialect.command('next_error')!r}: {answer!r}")
            code, text = int(match.group(1)), match.group(2)
            if code == 0:
                break
            errors.append((code, text))
        if errors:
            raise ScpiError(after, errors)

    # --- data -----------------------------------------------------------------------------------
    def _measure(self) -> np.ndarray:
        if not self._settings_known:
            self._refresh_settings()
        self._check_settings_within_limits()
        deadline = _Deadline(self.timeout_s + self._integration_time_s * self._averages)
        for command in self._dialect.measure:
            self._write(command)
        return self._read_block(deadline)

    def _read_block(self, deadline: _Deadline) -> np.ndarray:
        """The block answering the measure query, read whole by ``deadline`` (else NotConnected)."""
        terminator = self._dialect.read_termination.encode("ascii")
        pieces: list[bytes] = []

        def read(count: int, what: str) -> bytes:
            data = bytearray()
            while len(data) < count:
                try:
                    data += self._receive(count - len(data), deadline)
                except _Timeout:
                    received = sum(map(len, pieces)) + len(data)
                    raise self._late(deadline, "the spectrum", received, what) from None
            pieces.append(bytes(data))
            return pieces[-1]

        try:
            counts = _ieee_block.read_block(read, self._pixels, terminator)
        except ProtocolError as error:
            # The whole block came off the line (header, payload, terminator): nothing to drain.
            framed = len(pieces) == 3 and pieces[-1].endswith(terminator)
            raise self._malformed(error, drain=not framed) from error
        check_counts(counts, self.full_scale_counts)
        return counts

    def _read_text(self, command: str, deadline: _Deadline) -> str:
        """The text answer to ``command`` (terminator stripped), read whole by ``deadline`` (else NotConnected)."""
        terminator = self._dialect.read_termination.encode("ascii")
        raw = bytearray()
        while True:
            try:
                chunk = self._receive(_TEXT_CHUNK_BYTES, deadline)
            except _Timeout:
                raise self._late(
                    deadline, f"the answer to {command!r}", len(raw), f"its terminator {terminator!r}"
                ) from None
            search_from = max(0, len(raw) - len(terminator) + 1)
            raw += chunk
            end = raw.find(terminator, search_from) if terminator else len(raw)
            if end >= 0:
                break
            if len(raw) > _MAX_TEXT_ANSWER_BYTES:
                raise self._malformed(
                    ProtocolError(
                        f"answer to {command!r} longer than {_MAX_TEXT_ANSWER_BYTES} bytes without its terminator "
                        f"{terminator!r}: {bytes(raw[:40])!r}..."
                    )
                )
        extra = raw[end + len(terminator) :]
        if extra:
            raise self._malformed(
                ProtocolError(f"answer to {command!r} followed by {len(extra)} unexpected bytes: {bytes(extra[:40])!r}")
            )
        try:
            return raw[:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise self._malformed(
                ProtocolError(f"answer to {command!r} is not ASCII text: {bytes(raw[:40])!r}"), drain=False
            ) from None

    def _late(self, deadline: _Deadline, what: str, received: int, waiting_for: str) -> NotConnected:
        """Close the session after ``what`` was not whole by its deadline; the NotConnected to raise."""
        closed = self._peer_closed()
        self._drop()
        if closed:
            reason = "the instrument closed the connection"
        elif received == 0:
            reason = f"no answer in time ({deadline.seconds:g} s)"
        else:
            reason = (
                f"{what} was not whole by its deadline ({deadline.seconds:g} s after the command): "
                f"{received} bytes arrived, still waiting for {waiting_for} (a short or trickled answer)"
            )
        return NotConnected(f"{self.resource}: {reason}; session closed, call reconnect()")

    def _malformed(self, error: ProtocolError, drain: bool = True) -> InstrumentError:
        """The error to raise for a malformed answer, after draining the rest of it from the line.

        The ProtocolError itself when the line went quiet (in step again, session
        open); NotConnected when the line was lost or bytes kept coming for the
        whole drain (only a new connection is in step then).
        """
        if not drain or self._drain():
            return error
        lost = NotConnected(
            f"{self.resource}: {error}; the line did not go quiet after it, session closed, call reconnect()"
        )
        lost.__cause__ = error
        return lost

    def _drain(self) -> bool:
        """Discard what is left on the line: read until it is quiet for 50 ms, for at most 2 s.

        True when it went quiet. False when the session was closed: lost, or still
        sending after 2 s.
        """
        if self._res is None:
            return False
        end = time.monotonic() + _DRAIN_MAX_S
        try:
            while time.monotonic() < end:
                try:
                    self._receive(65536, _Deadline(_DRAIN_IDLE_S))
                except _Timeout:
                    return True
        except NotConnected:
            return False
        self._drop()
        return False

    # --- transport ------------------------------------------------------------------------------
    def _connected_resource(self):
        if self._res is None:
            raise NotConnected(f"{self.resource}: not connected; call reconnect()")
        return self._res

    def _receive(self, max_bytes: int, deadline: _Deadline) -> bytes:
        """1 to ``max_bytes`` bytes from the instrument, waiting no later than ``deadline``.

        Raises :class:`_Timeout` at the deadline (the caller decides what that
        means) and NotConnected (session closed) if the line is lost. On a
        pyvisa-py LAN socket the driver waits on the socket itself, so the
        deadline holds however the bytes trickle in; elsewhere each VISA read is
        given only the time left and at most 1 KiB (decision 0038).
        """
        res = self._connected_resource()
        sock = self._socket()
        pending = self._pyvisa_pending(res) if sock is not None else None
        if sock is None or pending is None:
            return self._receive_through_visa(res, max_bytes, deadline)
        if pending:  # bytes pyvisa-py had already taken off the socket
            data = bytes(pending[:max_bytes])
            del pending[:max_bytes]
            return data
        while (remaining := deadline.remaining_s()) > 0:
            try:
                readable, _, _ = select.select([sock], [], [], remaining)
                if not readable:
                    continue
                data = sock.recv(max_bytes)
            except (OSError, ValueError) as error:
                self._drop()
                raise NotConnected(f"{self.resource}: connection lost ({error}); call reconnect()") from error
            if not data:
                self._drop()
                raise NotConnected(f"{self.resource}: the instrument closed the connection; call reconnect()")
            return data
        raise _Timeout()

    def _receive_through_visa(self, res, max_bytes: int, deadline: _Deadline) -> bytes:
        """:meth:`_receive` for sessions whose socket the driver cannot see (USB-TMC, serial, other VISA)."""
        while (remaining := deadline.remaining_s()) > 0:
            res.timeout = self._ms(remaining)
            count = min(max_bytes, _GENERIC_READ_BYTES)
            try:
                with res.ignore_warning(constants.StatusCode.success_max_count_read):  # as pyvisa's read_bytes
                    data, _ = self._io(lambda count=count: res.visalib.read(res.session, count), drop_on_timeout=False)
            finally:
                if self._res is not None:
                    res.timeout = self._ms(self.timeout_s)
            if data:
                return data
        raise _Timeout()

    @staticmethod
    def _pyvisa_pending(res) -> bytearray | None:
        """pyvisa-py's buffer of bytes read from the socket but not yet returned, or None if there is none."""
        try:
            pending = getattr(res.visalib.sessions[res.session], "_pending_buffer", None)
        except Exception:
            return None
        return pending if isinstance(pending, bytearray) else None

    def _io(self, operation: Callable[[], _T], drop_on_timeout: bool = True) -> _T:
        try:
            return operation()
        except VisaIOError as error:
            if error.error_code == constants.StatusCode.error_timeout:
                if not drop_on_timeout:
                    raise _Timeout() from error
                closed = self._peer_closed()
                self._drop()
                reason = "the instrument closed the connection" if closed else "no answer in time"
                raise NotConnected(f"{self.resource}: {reason}; session closed, call reconnect()") from error
            self._drop()
            raise NotConnected(f"{self.resource}: VISA I/O error {error}; session closed") from error
        except pyvisa.errors.Error as error:  # e.g. InvalidSession: the session was closed under us
            self._drop()
            raise NotConnected(f"{self.resource}: VISA session unusable ({error}); call reconnect()") from error
        except OSError as error:
            self._drop()
            raise NotConnected(f"{self.resource}: connection lost ({error}); call reconnect()") from error

    def _write(self, command: str) -> None:
        res = self._connected_resource()
        if self._peer_closed():  # a socket the instrument closed between calls: say so now, not after a timeout
            self._drop()
            raise NotConnected(f"{self.resource}: the instrument closed the connection; call reconnect()")
        self._io(lambda: res.write(command))

    def _query(self, command: str) -> str:
        deadline = _Deadline(self.timeout_s)
        self._write(command)
        return self._read_text(command, deadline)

    def _socket(self) -> socket.socket | None:
        """The TCP socket under a pyvisa-py SOCKET session, or None (other backends, USB, serial)."""
        res = self._res
        if res is None:  # not connected (as the AttributeError below would say)
            return None
        try:
            # sessions: pyvisa-py's table of open sessions, not in pyvisa's VisaLibraryBase (caught if absent)
            sock = getattr(res.visalib.sessions[res.session], "interface", None)  # pyright: ignore[reportAttributeAccessIssue]
        except Exception:
            return None
        return sock if isinstance(sock, socket.socket) else None

    def _set_no_delay(self) -> None:
        # Command + SYST:ERR? are two small writes in a row: with Nagle's algorithm the second waits
        # for the delayed ACK of the first (40 ms). pyvisa-py cannot set VI_ATTR_TCPIP_NODELAY
        # (it raises UnknownAttribute), so set it on the socket when there is one.
        sock = self._socket()
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def _peer_closed(self) -> bool | None:
        """True if the TCP peer has closed the socket, False if it is open, None if unknown (not a socket)."""
        sock = self._socket() if self._res is not None else None
        if sock is None:
            return None
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(math.ceil(seconds * 1000.0)))


class _Timeout(Exception):
    """Internal: an answer's deadline passed while reading it (decided by the caller)."""
