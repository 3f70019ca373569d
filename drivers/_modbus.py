"""The Modbus protocol layer: one transaction policy (:class:`LinkBase`) over RTU (here) and TCP (``_modbus_tcp``).

Modbus RTU is minimalmodbus over pyserial, with the RTU line discipline (decision 0077 says why RTU stays on
minimalmodbus while TCP is pymodbus).

minimalmodbus builds each request and checks each answer: CRC, slave address,
function code, byte count (= what was asked), the echo of a write. RTU answers
carry no register address or transaction id, so this layer owns what
minimalmodbus cannot see (decision 0039):

- which bytes are the answer (:class:`RtuLine`, the port minimalmodbus talks
  through). Before a request, bytes on the line are discarded up to a
  3.5-character silence (minimalmodbus keeps that silence since the last
  answer). Bytes seen less than 3.5 characters after the request began (a
  slave waits that long after a request before it answers) are stale and are
  discarded with the rest of their frame, so an answer straddling the request
  boundary is never used. An answer is complete when it has its
  expected length and the line then stays silent for ``answer_guard_s`` (at
  least 3.5 characters); more bytes mean a late frame next to it, and the
  whole is refused. An exception answer to another function is refused too;
- answers still owed: a read that got no answer (or got a frame that was not
  its own) may be answered late, and that answer looks exactly like the
  answer to the next read of the same shape (function 3, same byte count).
  So the next read of that shape first waits, draining the line, until
  ``late_answer_s`` after the unanswered request, or until that many answers
  of its shape have come back and been discarded. Retries within one
  transaction do not wait: a late answer to an earlier attempt of the same
  request is as good as the last one's. A caller that checks a read another
  way (the status word, read twice and compared) passes ``fresh=False``;
- whether an answer is acceptable to the caller: ``check`` decodes the words
  and raises :class:`InvalidAnswer` (e.g. a value outside its register's
  range); that counts as a garbled answer;
- the serial port (opened by us, reopened after a loss);
- retries (decision 0012): a read is tried ``1 + retries`` times on no answer
  or a garbled or refused answer; a write only when the caller says it is
  idempotent; after a failed attempt, and after a success that needed a
  retry, the line is drained until the frame in progress has ended (answers
  later than that are owed answers, above);
- the error a caller sees: ``NotConnected`` (port lost, or no answer within the
  budget), ``ProtocolError`` (instrument refused the request, or only garbled
  or refused answers). A failed transaction never yields a value.
"""

from __future__ import annotations

import termios
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal, TypeVar, cast, overload

import minimalmodbus
import serial

from . import _modbus_bus
from ._errors import NotConnected, ProtocolError
from ._modbus_address import DEFAULT_TCP_PORT, is_tcp_port, parse_tcp_port

__all__ = [
    "Garbled",
    "InvalidAnswer",
    "LinkBase",
    "ModbusLink",
    "NoAnswer",
    "PortLost",
    "Refused",
    "RtuLine",
    "DEFAULT_TCP_PORT",
    "is_tcp_port",
    "parse_tcp_port",
    "open_link",
    "rtu_silence_s",
]

T = TypeVar("T")

#: Errors that mean the port itself is gone (unplugged adapter, closed pty).
_PORT_ERRORS = (serial.SerialException, OSError, termios.error, minimalmodbus.MasterReportedException)
_MAX_DRAIN_S = 2.0  # a line still babbling after this is broken, not merely late
_WAIT_STEP_S = 0.05  # while waiting out an owed answer, look this often whether it has come


class InvalidAnswer(Exception):
    """A well-formed answer whose content is not acceptable (raised by a caller's ``check``)."""


class AmbiguousAnswer(minimalmodbus.InvalidResponseError):
    """More bytes than the answer came back: a late frame next to the real one, or frames run together."""


class ForeignAnswer(minimalmodbus.InvalidResponseError):
    """An exception answer to another function code: not the answer to this request."""


_GARBLED = (
    minimalmodbus.InvalidResponseError,
    minimalmodbus.LocalEchoError,
    minimalmodbus.SlaveDeviceBusyError,
    InvalidAnswer,
)  # AmbiguousAnswer and ForeignAnswer are InvalidResponseErrors


def rtu_silence_s(baudrate: float) -> float:
    """The RTU inter-frame silence: 3.5 characters of 11 bits, and at least 1.75 ms (the spec above 19200 baud)."""
    return max(3.5 * 11 / baudrate, 0.00175)


class RtuLine:
    """A serial port seen through the RTU timing rules; handed to minimalmodbus in place of the port.

    The underlying port is opened with a timeout of one silence. A wait is a
    read with that wait as its timeout, and an empty read means the line was
    silent that long: on a scripted test port, which answers at once, nothing
    waits for real time.

    ``counters`` says what the rules discarded: ``stale_bytes`` (on the line
    before a request, or before it was fully sent) and ``ambiguous_answers``
    (more than one frame where one answer was due). Whole function-3 answers
    from ``address`` found among discarded bytes are told to ``on_answer_seen``
    (by their length): a late answer that has come can no longer be taken for another.
    """

    def __init__(
        self,
        port,
        *,
        address: int,
        silence_s: float,
        timeout_s: float,
        answer_guard_s: float,
        on_answer_seen: Callable[[int], None] = lambda length: None,
    ) -> None:
        self._port = port
        self.address = address
        self.silence_s = silence_s
        self.timeout_s = timeout_s
        self.answer_guard_s = answer_guard_s
        self.on_answer_seen = on_answer_seen
        self.counters: Counter = Counter()
        self.last_answer = b""  # what the last read() collected
        self._function = 0  # of the request last written

    # -- what minimalmodbus uses of a port ------------------------------------------------------
    @property
    def port(self) -> str:
        return self._port.port

    @property
    def baudrate(self):
        return self._port.baudrate

    @property
    def timeout(self):
        return self._port.timeout

    @property
    def is_open(self) -> bool:
        return self._port.is_open

    def open(self) -> None:
        self._port.open()

    def close(self) -> None:
        self._port.close()

    def reset_input_buffer(self) -> None:
        self._port.reset_input_buffer()

    def reset_output_buffer(self) -> None:
        self._port.reset_output_buffer()

    def flush(self) -> None:
        self._port.flush()

    def write(self, request: bytes) -> int:
        """Send a request on a quiet line; whatever arrived before it was sent is discarded.

        A slave answers only after 3.5 characters of silence following the
        request, so bytes on the line less than that long after the write
        began are stale (and so is the rest of their frame). They are looked
        for when ``write()`` returns: on a pty the request is then with the far
        side, on a UART it is queued and going out. Bytes seen later (this
        thread was held up) may be the answer: they are left to the framing rules.
        """
        if self._port.in_waiting:
            self._discard(self.silence_s)  # a late frame on the line: let it end, then talk
        self._function = request[1]
        earliest_answer = time.monotonic() + self.silence_s
        written = self._port.write(request)
        stale = self._port.in_waiting and time.monotonic() < earliest_answer
        self._port.flush()  # a UART: until the last bit has left
        if stale:
            self._discard(self.silence_s)  # arrived before its answer could have: stale, and its rest
        return written

    def read(self, size: int) -> bytes:
        """The answer: ``size`` bytes (or a 5-byte exception frame) followed by the answer guard's silence.

        Empty if nothing arrives within the timeout; short if the frame stops
        short; :class:`AmbiguousAnswer` if more bytes than one answer arrive.
        """
        answer = bytearray(self._port.read(size))  # most answers are in within a silence
        if len(answer) < size and not _is_exception_frame(answer):
            answer += self._read_for(self.timeout_s - self.silence_s, size - len(answer))  # early once complete
        if len(answer) >= size or _is_exception_frame(answer):
            while chunk := self._read_for(self.answer_guard_s):  # the answer guard: silence, or more bytes
                answer += chunk
        self.last_answer = bytes(answer)
        if _is_exception_frame(answer) and answer[1] & 0x7F != self._function:
            raise ForeignAnswer(
                f"an exception answer to function {answer[1] & 0x7F} where one to "
                f"{self._function} was due: {bytes(answer).hex(' ')}"
            )
        expected = 5 if _is_exception_frame(answer[:5]) else size
        if len(answer) > expected:
            self.counters["ambiguous_answers"] += 1
            lengths = [len(frame) for frame in _frames(answer, self.address) if frame[1] == 3]
            if expected in lengths:
                lengths.remove(expected)  # one of them may be the answer; the others were owed
            for length in lengths:
                self.on_answer_seen(length)
            raise AmbiguousAnswer(
                f"{len(answer)} bytes came back where one answer of {expected} was due "
                f"(a late frame next to the answer): {bytes(answer).hex(' ')}"
            )
        return bytes(answer)

    # -- draining --------------------------------------------------------------------------------
    def drain(self, quiet_s: float) -> None:
        """Read and discard until the line has been quiet for ``quiet_s``; ``ProtocolError`` if it never is."""
        self._discard(quiet_s)

    def wait_out(self, duration_s: float, still_waiting: Callable[[], bool]) -> None:
        """Read and discard for ``duration_s`` or until ``still_waiting()`` is false, then until quiet."""
        left_s, deadline = duration_s, time.monotonic() + duration_s
        pending = bytearray()
        while still_waiting() and left_s > 0 and time.monotonic() < deadline:
            step_s = min(_WAIT_STEP_S, left_s)
            chunk = self._read_for(step_s)
            left_s -= step_s
            self.counters["stale_bytes"] += len(chunk)
            self._seen(pending, chunk)
        self._discard(self.silence_s)

    def _discard(self, quiet_s: float) -> None:
        """Read and discard until the line has been quiet for ``quiet_s``."""
        deadline = time.monotonic() + _MAX_DRAIN_S
        pending = bytearray()
        while chunk := self._read_for(quiet_s):
            self.counters["stale_bytes"] += len(chunk)
            self._seen(pending, chunk)
            if time.monotonic() > deadline:
                raise ProtocolError(f"{self.port}: line keeps sending bytes; not a Modbus slave?")

    def _read_for(self, duration_s: float, size: int = 256) -> bytes:
        """What arrives within ``duration_s`` (returning early with ``size`` bytes); empty: that long a silence."""
        if duration_s <= self.silence_s:
            return self._port.read(size)  # the port's own timeout is one silence
        self._port.timeout = duration_s
        try:
            return self._port.read(size)
        finally:
            self._port.timeout = self.silence_s

    def _seen(self, pending: bytearray, chunk: bytes) -> None:
        """Report the whole answers among discarded bytes; an empty chunk (a silence) ends what is pending."""
        if not chunk:
            pending.clear()
            return
        pending += chunk
        frames = _frames(pending, self.address)
        for frame in frames:
            if frame[1] == 3:
                self.on_answer_seen(len(frame))
        del pending[: sum(len(frame) for frame in frames)]


def _is_exception_frame(frame: bytes | bytearray) -> bool:
    return len(frame) == 5 and bool(frame[1] & 0x80)


def _frames(data: bytes | bytearray, address: int) -> list[bytes]:
    """Whole frames from ``address`` at the start of ``data``, one after another (each sized by its header)."""
    frames, at = [], 0
    while at + 5 <= len(data) and data[at] == address:
        function = data[at + 1]
        size = 5 + data[at + 2] if function in (3, 4) else 5 if function & 0x80 else 8 if function in (6, 16) else 0
        if not size or at + size > len(data):
            break
        frames.append(bytes(data[at : at + size]))
        at += size
    return frames


# -- the protocol layer: one transaction policy for every transport ------------------------------


class NoAnswer(Exception):
    """An attempt got no answer within the timeout (a transport's outcome, told to the policy)."""


class Garbled(Exception):
    """An attempt got an answer that cannot be used: damaged, ambiguous, not its own, or refused by ``check``.

    ``owed``: its own answer may still come (later than this one). ``refused``:
    a whole, well-formed answer that ``check`` refused (counted as ``refused_answers``).
    """

    def __init__(self, message: str, *, owed: bool, refused: bool = False) -> None:
        super().__init__(message)
        self.owed, self.refused = owed, refused


class Refused(Exception):
    """The instrument answered with a Modbus exception: it refuses the request."""


class PortLost(Exception):
    """The port or connection itself is gone (unplugged adapter, closed pty, connection refused or reset)."""


class LinkBase:
    """The transaction policy of every Modbus transport; the driver sees only this interface.

    A transport (:class:`ModbusLink` for RTU, :class:`drivers._modbus_tcp.TcpLink`)
    makes one attempt at a time (:meth:`_attempt`, which tells its outcome as
    :class:`NoAnswer`, :class:`Garbled`, :class:`Refused` or :class:`PortLost`),
    drains its line (:meth:`_drain`) and keeps the port. This class owns what
    is the same on every transport (decision 0012, 0039, 0077):

    - a read is tried ``1 + retries`` times on no answer or a garbled or
      refused answer; a write only when the caller says it is idempotent;
    - after a failed attempt, and after a success that needed a retry, the
      line is drained until the frame in progress has ended;
    - answers still owed are waited out before the next read of their shape
      (on RTU; a TCP answer carries its transaction id, so it has none);
    - after a failed transaction the port is closed and reopened before the
      next one (the adapter may have been swapped, the gateway restarted);
    - the error: ``NotConnected`` (port lost, or no answer within the budget),
      ``ProtocolError`` (the instrument refused, or only garbled answers). A
      failed transaction never yields a value.

    Units on one bus or gateway share the bus's ``lock`` (:mod:`drivers._modbus_bus`).
    """

    port: str
    address: int
    retries: int
    lock: threading.RLock
    counters: Counter
    on_reopen: Callable[[], None] | None

    # -- what a transport provides ---------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        raise NotImplementedError

    def open(self) -> None:
        """(Re)open the port for every unit on it; ``NotConnected`` if it cannot be opened."""
        raise NotImplementedError

    def connect(self) -> None:
        """Use the bus's open port (this unit's view of it rebuilt if it had none), or open it."""
        bus = self._attach()
        with self.lock:
            if bus.handle is None:
                self.open()
            elif not self.is_open:
                self._use_open_port()

    def _attach(self) -> _modbus_bus.Bus:
        raise NotImplementedError

    def _use_open_port(self) -> None:
        """Take the bus's port, opened by another unit on it, for this unit's transactions."""
        raise NotImplementedError

    def close(self) -> None:
        """Leave the port (the last unit on it closes it); the next transaction opens it again."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def line_counters(self) -> Counter:
        """What the line rules discarded or refused so far."""
        raise NotImplementedError

    def _ensure_open(self) -> None:
        raise NotImplementedError

    def _attempt(self, operation: Callable[[], T], answer_length: int | None) -> T:
        raise NotImplementedError

    def _drain(self) -> None:
        raise NotImplementedError

    def _drop(self) -> None:
        """Close the port after a failed transaction: every unit on it reopens before its next one."""
        raise NotImplementedError

    def _wait_out_owed(self, answer_length: int) -> None:
        """Before a fresh read: wait out answers of its shape still owed (a transport without them: nothing)."""

    def _note_owed(self, answer_length: int, owed: int, last_sent: float) -> None:
        """After a read: ``owed`` answers of its shape may still come until ``late_answer_s`` after ``last_sent``."""

    # -- the transactions the driver makes -------------------------------------------------------
    @overload
    def read_registers(
        self,
        address: int,
        count: int,
        what: str,
        check: None = None,
        *,
        fresh: bool = True,
        function: Literal[3, 4] = 3,
    ) -> list[int]: ...
    @overload
    def read_registers(
        self,
        address: int,
        count: int,
        what: str,
        check: Callable[[list[int]], T],
        *,
        fresh: bool = True,
        function: Literal[3, 4] = 3,
    ) -> T: ...
    def read_registers(
        self,
        address: int,
        count: int,
        what: str,
        check: Callable[[list[int]], T] | None = None,
        *,
        fresh: bool = True,
        function: Literal[3, 4] = 3,
    ) -> T | list[int]:
        """Read ``count`` holding registers (FC3) or input registers (``function=4``); return ``check(words)``,
        or the words.

        ``check`` may raise :class:`InvalidAnswer`: that answer is refused and
        the read retried like one that came back garbled. ``fresh``: first wait
        out any answer of this length still owed to an unanswered read.
        """

        def read():
            words = self._read_words(address, count, function)
            return words if check is None else check(words)

        return self._transact(read, what, retry=True, answer_length=5 + 2 * count, fresh=fresh)

    def write_register(
        self, address: int, word: int, what: str, *, functioncode: int = 6, idempotent: bool = True
    ) -> None:
        """Write one 16-bit word (FC6, or FC16 with one register)."""
        if functioncode == 16:
            self.write_registers(address, [word], what, idempotent=idempotent)
            return
        self._transact(lambda: self._write_word(address, word), what, retry=idempotent)

    def write_registers(self, address: int, words: list[int], what: str, *, idempotent: bool = True) -> None:
        """Write consecutive 16-bit words with FC16."""
        self._transact(lambda: self._write_words(address, list(words)), what, retry=idempotent)

    def _read_words(self, address: int, count: int, function: Literal[3, 4] = 3) -> list[int]:
        raise NotImplementedError

    def _write_word(self, address: int, word: int) -> None:
        raise NotImplementedError

    def _write_words(self, address: int, words: list[int]) -> None:
        raise NotImplementedError

    def _transact(
        self,
        operation: Callable[[], T],
        what: str,
        *,
        retry: bool,
        answer_length: int | None = None,
        fresh: bool = False,
    ) -> T:
        with self.lock:
            self._ensure_open()  # lazily after a loss: NotConnected if the port is still gone
            if fresh and answer_length is not None:
                self._wait_out_owed(answer_length)
            attempts = 1 + (self.retries if retry else 0)
            silent = garbled = owed = 0
            last: Exception | None = None
            last_sent = time.monotonic()
            try:
                for _ in range(attempts):
                    last_sent = time.monotonic()
                    try:
                        result = self._attempt(operation, answer_length)
                    except NoAnswer as error:
                        silent, owed, last = silent + 1, owed + 1, error
                    except Garbled as error:
                        garbled, owed, last = garbled + 1, owed + error.owed, error
                        if error.refused:
                            self.counters["refused_answers"] += 1
                    except Refused as error:
                        raise ProtocolError(f"{what}: instrument refused the request: {error}") from error
                    except ProtocolError:
                        self._drop()  # raised by the line: it never went quiet
                        raise
                    except PortLost as error:
                        self._drop()
                        raise NotConnected(f"{what}: port {self.port} lost: {error}") from error
                    else:
                        if silent or garbled:
                            self._drain()  # a retry was answered: a second answer may be on its way
                        return result
                    self._drain()  # before the next attempt: swallow a late answer to this one
            finally:
                if answer_length is not None and owed:
                    self._note_owed(answer_length, owed, last_sent)
            self._drop()  # reopen before the next transaction: the adapter may have been swapped
            if garbled:
                raise ProtocolError(
                    f"{what}: no valid answer from address {self.address} on {self.port} "
                    f"in {attempts} attempts ({garbled} garbled or refused, {silent} silent): "
                    f"{last}"
                )
            raise NotConnected(f"{what}: no answer from address {self.address} on {self.port} in {attempts} attempts")


def open_link(
    port: str,
    address: int,
    baudrate: int,
    timeout_s: float,
    retries: int,
    serial_factory: Callable[..., serial.Serial] | None = None,
    *,
    answer_guard_s: float | None = None,
    late_answer_s: float | None = None,
) -> LinkBase:
    """The link to unit ``address`` at ``port``: Modbus TCP for ``tcp://HOST[:PORT]``, else RTU on a serial port.

    Opened (``NotConnected`` if the port cannot be opened). Units at the same
    port share one bus (its port and its lock).
    """
    if is_tcp_port(port):
        if serial_factory is not None:
            raise ValueError(f"{port}: serial_factory is for a serial port, not for Modbus TCP")
        from ._modbus_tcp import TcpLink  # pymodbus only for whoever uses TCP

        link: LinkBase = TcpLink(port, address, timeout_s, retries, answer_guard_s=answer_guard_s)
    else:
        link = ModbusLink(
            port,
            address,
            baudrate,
            timeout_s,
            retries,
            serial_factory,
            answer_guard_s=answer_guard_s,
            late_answer_s=late_answer_s,
        )
    try:
        link.connect()
    except BaseException:
        link.release()
        raise
    return link


class ModbusLink(LinkBase):
    """One Modbus RTU slave on one serial port; thread-safe, one transaction at a time on the whole bus.

    Slaves on one RS-485 port share the port and its lock (:mod:`drivers._modbus_bus`):
    their frames never interleave. ``answer_guard_s`` is the silence that must
    follow an answer before it is used (default: the RTU silence, 3.5
    characters, at least 1.75 ms). ``late_answer_s`` is how late an answer may
    still come after its request (default two timeouts): set it above the
    latest answer the line gives.
    """

    def __init__(
        self,
        port: str,
        address: int,
        baudrate: int,
        timeout_s: float,
        retries: int,
        serial_factory: Callable[..., serial.Serial] | None = None,
        *,
        answer_guard_s: float | None = None,
        late_answer_s: float | None = None,
    ) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"Modbus address must be 1..247, not {address}")
        if retries < 0 or timeout_s <= 0:
            raise ValueError("retries must be >= 0 and timeout_s > 0")
        self.port, self.address, self.baudrate = port, address, baudrate
        self.timeout_s, self.retries = timeout_s, retries
        self.silence_s = rtu_silence_s(baudrate)
        self.answer_guard_s = max(self.silence_s, answer_guard_s or 0.0)
        self.late_answer_s = 2 * timeout_s if late_answer_s is None else late_answer_s
        if self.late_answer_s < 0:
            raise ValueError("late_answer_s must be >= 0")
        self._owed: dict[int, list[float]] = {}  # answer length -> until when each unanswered read's may come
        self._factory = serial_factory or serial.Serial
        self._bus_key = ("rtu", port, self._factory)
        self._bus_settings = {"baudrate": baudrate}  # the port's; each unit keeps its own timeouts
        self._bus: _modbus_bus.Bus | None = None
        self._attach()
        self._line: RtuLine | None = None
        self._instrument: minimalmodbus.Instrument | None = None
        self._generation = -1  # of the bus handle the line is built on
        self.on_reopen: Callable[[], None] | None = None  # told when a new port was opened
        self.counters: Counter = Counter()  # what the line rules discarded, over every port opened

    def _attach(self) -> _modbus_bus.Bus:
        if self._bus is None:
            self._bus = _modbus_bus.attach(self._bus_key, self.address, self._bus_settings)
            self.lock = self._bus.lock  # held for one transaction or a read-back sequence, by every unit on the bus
        return self._bus

    # -- port -----------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._instrument is not None and self._bus is not None and self._generation == self._bus.generation

    def open(self) -> None:
        """(Re)open the serial port (8N1) for every unit on it; ``NotConnected`` if it cannot be opened."""
        bus = self._attach()
        with self.lock:
            self._forget_line()
            try:
                bus.replace(self._open_port, _close_quietly)
            except (serial.SerialException, OSError, ValueError) as error:
                raise NotConnected(f"cannot open {self.port}: {error}") from error
            self._build_line()

    def _use_open_port(self) -> None:
        self._forget_line()
        self._build_line()

    def _open_port(self):
        return self._factory(
            port=self.port,
            baudrate=self.baudrate,
            bytesize=8,
            parity="N",
            stopbits=1,
            timeout=self.silence_s,
            write_timeout=max(1.0, self.timeout_s),
        )

    def _build_line(self) -> None:
        bus = self._attach()
        line = RtuLine(
            bus.handle,
            address=self.address,
            silence_s=self.silence_s,
            timeout_s=self.timeout_s,
            answer_guard_s=self.answer_guard_s,
            on_answer_seen=self._answer_seen,
        )
        # RtuLine stands in for the serial.Serial minimalmodbus takes (the calls it makes, nothing more)
        instrument = minimalmodbus.Instrument(cast(serial.Serial, line), self.address, mode=minimalmodbus.MODE_RTU)
        instrument.clear_buffers_before_each_transaction = False  # RtuLine drains, and counts what it drops
        instrument.precalculate_read_size = True
        self._line, self._instrument, self._generation = line, instrument, bus.generation
        if self.on_reopen is not None:
            self.on_reopen()

    def _forget_line(self) -> None:
        line, self._line, self._instrument = self._line, None, None
        if line is not None:
            self.counters.update(line.counters)

    def close(self) -> None:
        """Close the port; safe to call twice and on a port that is already gone.

        Alone on the bus, the port is closed; with other units on it, this unit
        leaves it (the last one out closes it). The next transaction opens it again.
        """
        self.release()

    def release(self) -> None:
        """Leave the bus (the last unit out closes the port)."""
        bus = self._bus
        if bus is None:
            return
        with bus.lock:
            self._forget_line()
            self._bus = None
        _modbus_bus.detach(bus, self.address, _close_quietly)

    def _drop(self) -> None:
        bus = self._bus
        with self.lock:
            self._forget_line()
            if bus is not None:
                bus.drop(_close_quietly)

    def _ensure_open(self) -> None:
        if not self.is_open:
            self.connect()

    def line_counters(self) -> Counter:
        """What the line rules did so far: ``stale_bytes``, ``ambiguous_answers``, ``refused_answers``,
        ``waits_for_owed_answers``."""
        with self.lock:
            total = Counter(self.counters)
            if self._line is not None:
                total.update(self._line.counters)
            return total

    # -- one attempt ----------------------------------------------------------------
    def _read_words(self, address: int, count: int, function: Literal[3, 4] = 3) -> list[int]:
        assert self._instrument is not None  # _transact opened it
        return self._instrument.read_registers(address, count, functioncode=function)

    def _write_word(self, address: int, word: int) -> None:
        assert self._instrument is not None
        self._instrument.write_register(address, word, 0, functioncode=6, signed=False)

    def _write_words(self, address: int, words: list[int]) -> None:
        assert self._instrument is not None
        self._instrument.write_registers(address, words)

    def _attempt(self, operation: Callable[[], T], answer_length: int | None) -> T:
        try:
            return operation()
        except minimalmodbus.NoResponseError as error:
            raise NoAnswer(str(error)) from error
        except AmbiguousAnswer as error:
            raise Garbled(str(error), owed=False) from error  # its answer came, next to another one
        except InvalidAnswer as error:
            raise Garbled(str(error), owed=True, refused=True) from error  # a whole answer, not its own
        except _GARBLED as error:  # its answer damaged, unless it began as another's
            owed = answer_length is not None and not self._began_as_own(answer_length)
            raise Garbled(str(error), owed=owed) from error
        except minimalmodbus.SlaveReportedException as error:
            raise Refused(str(error)) from error
        except ProtocolError:
            raise
        except _PORT_ERRORS as error:
            raise PortLost(str(error)) from error

    def _note_owed(self, answer_length: int, owed: int, last_sent: float) -> None:
        # Which of its requests the answers still owed belong to is unknown: any may come
        # until late_answer_s after the last one.
        self._still_owed(answer_length)  # forget those that can no longer come
        self._owed.setdefault(answer_length, []).extend([last_sent + self.late_answer_s] * owed)

    def _began_as_own(self, answer_length: int) -> bool:
        """Whether the last bytes read begin as this read's answer would (address, function 3, byte count)."""
        got = self._line.last_answer if self._line is not None else b""
        return len(got) >= 3 and tuple(got[:3]) == (self.address, 3, answer_length - 5)

    def _answer_seen(self, answer_length: int) -> None:
        """A whole answer of this length came back outside its transaction: one owed answer is no longer owed."""
        owed = self._owed.get(answer_length)
        if owed:
            owed.remove(min(owed))  # the latest deadline stays: it covers whichever request this answered

    def _still_owed(self, answer_length: int) -> bool:
        now = time.monotonic()
        owed = self._owed.get(answer_length, [])
        owed[:] = [until for until in owed if until > now]
        return bool(owed)

    def _wait_out_owed(self, answer_length: int) -> None:
        """Drain until no unanswered read's answer of this length can still come (``late_answer_s``)."""
        if self._line is None or not self._still_owed(answer_length):
            return
        self.counters["waits_for_owed_answers"] += 1
        remaining_s = max(self._owed[answer_length]) - time.monotonic()
        try:
            self._line.wait_out(remaining_s, lambda: self._still_owed(answer_length))
        except ProtocolError:
            self._drop()
            raise
        except _PORT_ERRORS as error:
            self._drop()
            raise NotConnected(f"port {self.port} lost: {error}") from error

    def _drain(self) -> None:
        """Read and discard until the frame in progress has ended (the line quiet for one answer guard)."""
        line = self._line
        if line is None:
            return
        try:
            line.drain(self.answer_guard_s)
        except ProtocolError:
            self._drop()
            raise
        except _PORT_ERRORS as error:
            self._drop()
            raise NotConnected(f"port {self.port} lost: {error}") from error


def _close_quietly(port) -> None:
    try:
        port.close()
    except (serial.SerialException, OSError, termios.error):
        pass
