"""Modbus RTU link: minimalmodbus over pyserial, with our own bounded-retry policy.

minimalmodbus does the framing, the CRC and the response checks. This layer owns:

- the serial port (opened by us, handed to minimalmodbus, reopened after a loss);
- retries: a read is tried ``1 + retries`` times on no answer or a garbled
  answer; a write is retried only when the caller says it is idempotent;
- after a failed attempt, and after a success that needed a retry, the line
  is drained until it has been quiet for one timeout, so that a late answer
  is not taken as the answer to a later request (RTU has no transaction id);
- the error a caller sees: ``NotConnected`` (port lost, or no answer within the
  budget), ``ProtocolError`` (instrument refused the request, or only garbled
  answers). A failed transaction never yields a value.
"""

from __future__ import annotations

import termios
import threading
import time
from typing import Callable

import minimalmodbus
import serial

from ._errors import NotConnected, ProtocolError

__all__ = ["ModbusLink"]

#: Errors that mean the port itself is gone (unplugged adapter, closed pty).
_PORT_ERRORS = (serial.SerialException, OSError, termios.error, minimalmodbus.MasterReportedException)
_GARBLED = (minimalmodbus.InvalidResponseError, minimalmodbus.LocalEchoError, minimalmodbus.SlaveDeviceBusyError)
_MAX_DRAIN_S = 2.0  # a line still babbling after this is broken, not merely late


class ModbusLink:
    """One Modbus RTU slave on one serial port; thread-safe, one transaction at a time."""

    def __init__(self, port: str, address: int, baudrate: int, timeout_s: float, retries: int,
                 serial_factory: Callable[..., serial.Serial] | None = None) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"Modbus address must be 1..247, not {address}")
        if retries < 0 or timeout_s <= 0:
            raise ValueError("retries must be >= 0 and timeout_s > 0")
        self.port, self.address, self.baudrate = port, address, baudrate
        self.timeout_s, self.retries = timeout_s, retries
        self._factory = serial_factory or serial.Serial
        self.lock = threading.RLock()  # held for one transaction or a read-back sequence
        self._serial = None
        self._instrument: minimalmodbus.Instrument | None = None
        self.on_reopen: Callable[[], None] | None = None  # told when a new port was opened

    # -- port -----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._instrument is not None

    def open(self) -> None:
        """Open the serial port (8N1); ``NotConnected`` if it cannot be opened."""
        with self.lock:
            self.close()
            try:
                port = self._factory(port=self.port, baudrate=self.baudrate, bytesize=8, parity="N",
                                     stopbits=1, timeout=self.timeout_s, write_timeout=max(1.0, self.timeout_s))
            except (serial.SerialException, OSError, ValueError) as error:
                raise NotConnected(f"cannot open {self.port}: {error}") from error
            try:
                instrument = minimalmodbus.Instrument(port, self.address, mode=minimalmodbus.MODE_RTU)
            except Exception:
                _close_quietly(port)
                raise
            instrument.clear_buffers_before_each_transaction = True
            instrument.precalculate_read_size = True
            self._serial, self._instrument = port, instrument
            if self.on_reopen is not None:
                self.on_reopen()

    def close(self) -> None:
        """Close the port; safe to call twice and on a port that is already gone."""
        with self.lock:
            port, self._serial, self._instrument = self._serial, None, None
            if port is not None:
                _close_quietly(port)

    # -- transactions -----------------------------------------------------------
    def read_registers(self, address: int, count: int, what: str) -> list[int]:
        """Read ``count`` holding registers (FC3) as unsigned 16-bit words."""
        return self._transact(lambda inst: inst.read_registers(address, count, functioncode=3),
                              what, retry=True)

    def write_register(self, address: int, word: int, what: str, *, functioncode: int = 6,
                       idempotent: bool = True) -> None:
        """Write one 16-bit word (FC6, or FC16 with one register)."""
        if functioncode == 16:
            self.write_registers(address, [word], what, idempotent=idempotent)
            return
        self._transact(lambda inst: inst.write_register(address, word, 0, functioncode=6, signed=False),
                       what, retry=idempotent)

    def write_registers(self, address: int, words: list[int], what: str, *, idempotent: bool = True) -> None:
        """Write consecutive 16-bit words with FC16."""
        self._transact(lambda inst: inst.write_registers(address, list(words)), what, retry=idempotent)

    def _transact(self, operation, what: str, *, retry: bool):
        with self.lock:
            if self._instrument is None:
                self.open()  # lazily after a loss: NotConnected if the port is still gone
            attempts = 1 + (self.retries if retry else 0)
            silent = garbled = 0
            last: Exception | None = None
            for _ in range(attempts):
                try:
                    result = operation(self._instrument)
                except minimalmodbus.NoResponseError as error:
                    silent, last = silent + 1, error
                except _GARBLED as error:
                    garbled, last = garbled + 1, error
                except minimalmodbus.SlaveReportedException as error:
                    raise ProtocolError(f"{what}: instrument refused the request: {error}") from error
                except _PORT_ERRORS as error:
                    self.close()
                    raise NotConnected(f"{what}: port {self.port} lost: {error}") from error
                else:
                    if silent or garbled:
                        self._drain()  # a retry was answered: a second answer may be on its way
                    return result
                self._drain()  # before the next attempt: swallow a late answer to this one
            self.close()  # reopen before the next transaction: the adapter may have been swapped
            if garbled:
                raise ProtocolError(f"{what}: no valid answer from address {self.address} on {self.port} "
                                    f"in {attempts} attempts ({garbled} garbled, {silent} silent): {last}")
            raise NotConnected(f"{what}: no answer from address {self.address} on {self.port} "
                               f"in {attempts} attempts")

    def _drain(self) -> None:
        """Read and discard until the line has been quiet for one timeout."""
        port = self._serial
        if port is None:
            return
        deadline = time.monotonic() + _MAX_DRAIN_S
        try:
            while port.read(max(1, port.in_waiting)):
                if time.monotonic() > deadline:
                    self.close()
                    raise ProtocolError(f"{self.port}: line keeps sending bytes; not a Modbus slave?")
            port.reset_input_buffer()
        except _PORT_ERRORS as error:
            self.close()
            raise NotConnected(f"port {self.port} lost: {error}") from error


def _close_quietly(port) -> None:
    try:
        port.close()
    except (serial.SerialException, OSError, termios.error):
        pass
