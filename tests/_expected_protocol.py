"""Expected-protocol harness (PyMeasure style) for drivers on a serial line.

A scripted serial port replays exact (request, response) byte pairs: every
byte the driver writes must be the next expected request, or the test fails
at once with both frames in hex. A response of ``None`` (or ``b""``) is
silence, i.e. a timeout; a short or corrupted response tests the retry policy;
an exception instance as response is raised by ``write`` (a lost port).
Nothing waits for real time.

    with expected_protocol(Eurotherm, [("01 03 00 01 00 01 D5 CA", "01 03 02 11 99 F4 BE")]) as furnace:
        assert furnace.temperature_C == ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

Frame = bytes | str | None | BaseException

__all__ = ["ExpectedLine", "ExpectedPort", "expected_protocol", "frame"]


def frame(value: Frame) -> bytes:
    """Bytes from bytes or a hex string such as ``"01 03 00 01"``; ``None`` -> ``b""``."""
    if value is None:
        return b""
    if isinstance(value, BaseException):
        return value
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value)


class ExpectedLine:
    """The scripted line: a serial-port factory whose ports share one script."""

    def __init__(self, pairs: Iterable[tuple[Frame, Frame]]) -> None:
        self.pairs = deque((frame(request), frame(response)) for request, response in pairs)
        self.written = bytearray()  # every byte any port of this line was asked to send
        self.opened: list[dict] = []  # settings of each port opened

    def __call__(self, **settings) -> ExpectedPort:
        self.opened.append(settings)
        return ExpectedPort(self, settings)

    def assert_done(self) -> None:
        """Fail if the driver did not send every expected request."""
        if self.pairs:
            missing = ", ".join(request.hex(" ") for request, _ in self.pairs)
            raise AssertionError(f"{len(self.pairs)} expected request(s) never sent: {missing}")


class ExpectedPort:
    """A fake ``serial.Serial`` (the attributes minimalmodbus and the driver use)."""

    def __init__(self, line: ExpectedLine, settings: dict) -> None:
        self.line = line
        self.port = settings.get("port")
        self.baudrate = settings.get("baudrate", 9600)
        self.timeout = settings.get("timeout")
        self.is_open = True
        self._received = bytearray()

    def _expect(self, data: bytes):
        """Check ``data`` is the next expected request; return what the line answers to it (or raise it)."""
        assert self.is_open, "write on a closed port"
        self.line.written += data
        if not self.line.pairs:
            raise AssertionError(f"unexpected bytes sent: {data.hex(' ')} (no request expected)")
        request, response = self.line.pairs[0]
        if data != request:
            raise AssertionError(f"expected request {request.hex(' ')}, driver sent {data.hex(' ')}")
        self.line.pairs.popleft()
        if isinstance(response, BaseException):
            raise response
        return response

    def write(self, data: bytes) -> int:
        data = bytes(data)
        self._received += self._expect(data)
        return len(data)

    def read(self, size: int = 1) -> bytes:
        chunk = bytes(self._received[:size])
        del self._received[:size]
        return chunk

    @property
    def in_waiting(self) -> int:
        return len(self._received)

    def reset_input_buffer(self) -> None:
        self._received.clear()

    def reset_output_buffer(self) -> None:
        pass

    def flush(self) -> None:
        pass

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        self.is_open = False


@contextmanager
def expected_protocol(
    instrument_class, pairs: Iterable[tuple[Frame, Frame]] | ExpectedLine, port: str = "expected://line", **kwargs
) -> Iterator:
    """Make ``instrument_class(port, serial_factory=line, **kwargs)`` on a scripted line.

    On a clean exit, every expected request must have been sent.
    """
    line = pairs if isinstance(pairs, ExpectedLine) else ExpectedLine(pairs)
    instrument = instrument_class(port, serial_factory=line, **kwargs)
    try:
        yield instrument
    finally:
        instrument.close()
    line.assert_done()
