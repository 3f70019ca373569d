"""Array spectrometer over SCPI/VISA (pyvisa + pyvisa-py): LAN socket, USB-TMC or serial.

The command strings come from a dialect map in ``hardware/maps`` (default
``scpi-spectrometer``), so another instrument is a new map, not new code.

Error contract (see docs/instruments/spectrometer.md):

- :class:`~drivers.LimitError`: a setting outside the configured limits; nothing was sent.
- :class:`ScpiError` (an :class:`~drivers.InstrumentError`): the instrument's
  ``SYST:ERR?`` queue reported errors after a setting or command.
- :class:`~drivers.ReadbackMismatch`: a setting read back differently.
- :class:`~drivers.ProtocolError`: a malformed answer (block framing, length,
  non-finite values, unreadable text). The line is drained; the session stays open.
- :class:`~drivers.NotConnected`: no answer in time or the socket is gone. The
  session is closed (a late answer could otherwise be taken for the next one);
  every later call raises NotConnected until :meth:`ScpiSpectrometer.reconnect`.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from typing import Callable, TypeVar

import numpy as np
import pyvisa
from pyvisa import constants
from pyvisa.errors import VisaIOError

from . import _ieee_block
from ._errors import InstrumentError, LimitError, NotConnected, ProtocolError, ReadbackMismatch
from ._scpi_dialect import ScpiDialect, load_dialect

__all__ = ["ScpiSpectrometer", "ScpiError"]

_T = TypeVar("_T")
_ERROR_ANSWER = re.compile(r'^\s*([+-]?\d+)\s*,\s*"(.*)"\s*$')
_MAX_ERROR_READS = 32
_DRAIN_IDLE_S = 0.05
_DRAIN_MAX_S = 2.0


class ScpiError(InstrumentError):
    """The instrument reported errors in its SYST:ERR? queue after a command."""

    def __init__(self, command: str, errors: list[tuple[int, str]]):
        self.command = command
        self.errors = errors
        listed = "; ".join(f'{code},"{text}"' for code, text in errors)
        super().__init__(f"instrument reported after {command!r}: {listed}")


class ScpiSpectrometer:
    """An array spectrometer: identity, wavelength axis, settings and raw spectra over SCPI.

    Opens the connection at once (raises :class:`~drivers.NotConnected` if the
    instrument does not answer). Use as a context manager or call :meth:`close`.
    """

    def __init__(self, resource: str, visa_library: str = "@py", dialect: str = "scpi-spectrometer",
                 timeout_s: float = 5.0, min_integration_time_s: float = 0.001,
                 max_integration_time_s: float = 60.0):
        if not (0.0 < min_integration_time_s <= max_integration_time_s) or not math.isfinite(max_integration_time_s):
            raise ValueError(f"need 0 < min_integration_time_s <= max_integration_time_s, got "
                             f"{min_integration_time_s!r}, {max_integration_time_s!r}")
        if not (timeout_s > 0.0 and math.isfinite(timeout_s)):
            raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        self.resource = resource
        self.visa_library = visa_library
        self.timeout_s = float(timeout_s)
        self.min_integration_time_s = float(min_integration_time_s)
        self.max_integration_time_s = float(max_integration_time_s)
        self._dialect: ScpiDialect = load_dialect(dialect)
        self._lock = threading.RLock()
        self._rm: pyvisa.ResourceManager | None = None
        self._res = None
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
    def connected(self) -> bool:
        """True while a session is open (False after a NotConnected, until reconnect())."""
        return self._res is not None

    @property
    def integration_time_s(self) -> float:
        """Integration time (s) per scan, as the instrument reports it."""
        with self._lock:
            value = self._parse_float(self._query(self._dialect.command("get_integration_time")), "integration time")
            self._integration_time_s = value
            return value

    @integration_time_s.setter
    def integration_time_s(self, seconds: float) -> None:
        value = self._real(seconds, "integration_time_s")
        if not (math.isfinite(value) and self.min_integration_time_s <= value <= self.max_integration_time_s):
            raise LimitError(f"integration time {seconds!r} s outside the limits "
                             f"{self.min_integration_time_s:g}-{self.max_integration_time_s:g} s; nothing sent")
        with self._lock:
            self._apply_integration_time(value)
            self._wanted_integration_time_s = value

    @property
    def averages(self) -> int:
        """Number of scans the instrument averages into one spectrum."""
        with self._lock:
            value = self._parse_int(self._query(self._dialect.command("get_averages")), "averages")
            self._averages = value
            return value

    @averages.setter
    def averages(self, count: int) -> None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)):
            raise TypeError(f"averages must be an integer, got {count!r}")
        if count < 1:
            raise LimitError(f"averages must be >= 1, got {count}; nothing sent")
        with self._lock:
            self._apply_averages(int(count))
            self._wanted_averages = int(count)

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

    def __enter__(self) -> "ScpiSpectrometer":
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
            self._res = self._rm.open_resource(
                self.resource, read_termination=d.read_termination, write_termination=d.write_termination,
                timeout=self._ms(self.timeout_s), open_timeout=self._ms(self.timeout_s))
        except Exception as error:
            self._res = None
            raise NotConnected(f"cannot open {self.resource}: {error}") from error
        try:
            self._set_no_delay()
            if "clear_status" in d.commands:
                self._write(d.command("clear_status"))
            self._ident = self._query(d.command("identify"))
            pixels = d.fixed_pixels or self._parse_int(self._query(d.command("pixel_count")), "pixel count")
            if pixels < 1:
                raise ProtocolError(f"instrument reports {pixels} pixels")
            if self._pixels and pixels != self._pixels:
                raise InstrumentError(f"pixel count changed from {self._pixels} to {pixels} across reconnect: "
                                      "a different instrument?")
            self._pixels = pixels
            self._coefficients = self._read_coefficients()
            index = np.arange(pixels, dtype=np.float64)
            c0, c1, c2, c3 = self._coefficients
            self._wavelengths_nm = c0 + index * (c1 + index * (c2 + index * c3))
            self._set_shutter(True)
            if self._wanted_integration_time_s is not None:
                self._apply_integration_time(self._wanted_integration_time_s)
            if self._wanted_averages is not None:
                self._apply_averages(self._wanted_averages)
            self._refresh_settings()
        except BaseException:
            self._drop()
            raise

    def _read_coefficients(self) -> tuple[float, float, float, float]:
        answer = self._query(self._dialect.command("wavelength_coefficients"))
        try:
            values = tuple(float(part) for part in answer.split(","))
        except ValueError:
            raise ProtocolError(f"wavelength coefficients are not numbers: {answer!r}") from None
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ProtocolError(f"expected 4 finite wavelength coefficients c0..c3, got {answer!r}")
        return values  # type: ignore[return-value]

    def _drop(self) -> None:
        res, self._res = self._res, None
        self._shutter_open = False
        if res is not None:
            try:
                res.close()
            except Exception:
                pass

    # --- settings -----------------------------------------------------------------------------
    def _apply_integration_time(self, value: float) -> None:
        command = self._dialect.command("set_integration_time", seconds=value)
        self._write(command)
        self._check_errors(command)
        readback = self._parse_float(self._query(self._dialect.command("get_integration_time")), "integration time")
        if abs(readback - value) > max(1e-6, 1e-3 * value):
            raise ReadbackMismatch(f"integration time set to {value:g} s, instrument reads back {readback:g} s")
        self._integration_time_s = readback

    def _apply_averages(self, count: int) -> None:
        command = self._dialect.command("set_averages", count=count)
        self._write(command)
        self._check_errors(command)
        readback = self._parse_int(self._query(self._dialect.command("get_averages")), "averages")
        if readback != count:
            raise ReadbackMismatch(f"averages set to {count}, instrument reads back {readback}")
        self._averages = readback

    def _refresh_settings(self) -> None:
        """Re-assert the data format and re-read the settings (after connecting or a pass-through write)."""
        d = self._dialect
        for command in d.setup:
            self._write(command)
        self._check_errors("data format setup")
        self._integration_time_s = self._parse_float(self._query(d.command("get_integration_time")), "integration time")
        self._averages = self._parse_int(self._query(d.command("get_averages")), "averages")
        self._settings_known = True

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
        commands = self._dialect.measure
        for command in commands[:-1]:
            self._write(command)
        self._write(commands[-1])
        exposure_s = self._integration_time_s * self._averages if math.isfinite(self._integration_time_s) else 0.0
        return self._read_block(self.timeout_s + exposure_s)

    def _read_block(self, timeout_s: float) -> np.ndarray:
        res = self._connected_resource()
        n_values = self._pixels
        terminator = self._dialect.read_termination.encode("ascii")
        res.timeout = self._ms(timeout_s)
        try:
            start = self._io(lambda: res.read_bytes(2))
            framed = False  # True once the whole block, terminator included, came off the line
            try:
                digits_count = _ieee_block.digit_count(start)
                digits = self._read_in_block(res, digits_count, "the length digits")
                length = _ieee_block.payload_length(digits)
                if length != n_values * _ieee_block.VALUE_BYTES:
                    _ieee_block.parse_block(start + digits, n_values, terminator)  # raises with the reason
                body = self._read_in_block(res, length + len(terminator), f"{length} payload bytes")
                framed = body.endswith(terminator)
                return _ieee_block.parse_block(start + digits + body, n_values, terminator)
            except ProtocolError:
                if not framed:
                    self._drain()
                raise
        finally:
            if self._res is not None:
                self._res.timeout = self._ms(self.timeout_s)

    def _read_in_block(self, res, count: int, what: str) -> bytes:
        """Read the rest of a block that has begun: a timeout here is a short block, unless the socket died."""
        try:
            return self._io(lambda: res.read_bytes(count), drop_on_timeout=False)
        except _Timeout:
            if self._peer_closed():
                self._drop()
                raise NotConnected(f"{self.resource}: connection lost in the middle of a block "
                                   f"(waiting for {what}); call reconnect()") from None
            raise ProtocolError(f"short block: {what} announced by the header did not all arrive within "
                                f"{res.timeout / 1000:g} s") from None

    def _drain(self) -> None:
        """Discard whatever is left on the line after a malformed answer."""
        res = self._res
        if res is None:
            return
        if self._peer_closed():
            self._drop()
            return
        deadline = time.monotonic() + _DRAIN_MAX_S
        res.timeout = self._ms(_DRAIN_IDLE_S)
        try:
            while time.monotonic() < deadline:
                res.read_raw()
        except (VisaIOError, OSError):
            pass
        finally:
            if self._res is not None:
                res.timeout = self._ms(self.timeout_s)

    # --- transport ------------------------------------------------------------------------------
    def _connected_resource(self):
        if self._res is None:
            raise NotConnected(f"{self.resource}: not connected; call reconnect()")
        return self._res

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
        self._write(command)
        res = self._connected_resource()
        raw = self._io(lambda: res.read_raw())
        terminator = self._dialect.read_termination.encode("ascii")
        if not raw.endswith(terminator):
            self._drain()
            raise ProtocolError(f"answer to {command!r} not terminated by {terminator!r}: {raw[:40]!r}")
        try:
            return raw[: len(raw) - len(terminator)].decode("ascii").strip()
        except UnicodeDecodeError:
            self._drain()
            raise ProtocolError(f"answer to {command!r} is not ASCII text: {raw[:40]!r}") from None

    def _socket(self) -> socket.socket | None:
        """The TCP socket under a pyvisa-py SOCKET session, or None (other backends, USB, serial)."""
        res = self._res
        try:
            sock = getattr(res.visalib.sessions[res.session], "interface", None)
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

    # --- parsing helpers ------------------------------------------------------------------------
    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(math.ceil(seconds * 1000.0)))

    @staticmethod
    def _real(value: object, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a number, got {value!r}")
        return float(value)

    @staticmethod
    def _parse_float(answer: str, what: str) -> float:
        try:
            value = float(answer)
        except ValueError:
            raise ProtocolError(f"{what}: expected a number, got {answer!r}") from None
        if not math.isfinite(value):
            raise ProtocolError(f"{what}: expected a finite number, got {answer!r}")
        return value

    @staticmethod
    def _parse_int(answer: str, what: str) -> int:
        try:
            return int(answer.strip().lstrip("+"))
        except ValueError:
            raise ProtocolError(f"{what}: expected an integer, got {answer!r}") from None


class _Timeout(Exception):
    """Internal: a read timed out inside a block (decided by the caller)."""
