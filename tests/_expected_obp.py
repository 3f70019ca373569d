"""Expected-protocol harness for OBP over TCP: a loopback peer that replays exact request/reply bytes.

The peer accepts one connection on 127.0.0.1 and walks its script: each request
the client sends must be exactly the next expected one (a mismatch is recorded
with both frames in hex and the connection is closed, so the client fails at
once); then the scripted reply bytes are sent. A reply of ``None`` is silence
(the client's deadline must end the wait); :data:`CLOSE` closes the connection.
The frames are built here from the OBP layout in Ocean's documentation,
independently of the driver and of python-seabreeze.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

__all__ = ["CLOSE", "ExpectedOBPPeer", "expected_obp", "request", "reply"]

CLOSE = b"<close>"
_HEADER = struct.Struct("<HHHHLL6sBB16sL")
FLAG_RESPONSE = 0x0001
FLAG_ACK = 0x0002
FLAG_REQUEST_ACK = 0x0004
FLAG_NACK = 0x0008


def _frame(message_type: int, data: bytes, flags: int, error: int = 0) -> bytes:
    if len(data) <= 16:
        head = _HEADER.pack(0xC0C1, 0x1100, flags, error, message_type, 0, b"", 0, len(data), data, 20)
        return head + bytes(16) + struct.pack("<L", 0xC2C3C4C5)
    head = _HEADER.pack(0xC0C1, 0x1100, flags, error, message_type, 0, b"", 0, 0, b"", 20 + len(data))
    return head + data + bytes(16) + struct.pack("<L", 0xC2C3C4C5)


def request(message_type: int, data: bytes = b"", ack: bool = False) -> bytes:
    """The bytes of a host request (``ack``: the host asks for an acknowledgement)."""
    return _frame(message_type, data, FLAG_REQUEST_ACK if ack else 0)


def reply(message_type: int, data: bytes = b"", *, ack: bool = False, error: int = 0) -> bytes:
    """The bytes of a device reply; ``error`` != 0 makes it a NACK with that error number."""
    flags = FLAG_RESPONSE | (FLAG_ACK if ack and not error else 0) | (FLAG_NACK if error else 0)
    return _frame(message_type, data, flags, error)


class ExpectedOBPPeer:
    """The scripted device; ``port`` is where it listens, ``mismatch`` what went wrong (if anything)."""

    def __init__(self, pairs: Iterable[tuple[bytes, bytes | None]]):
        self.pairs = list(pairs)
        self.done = 0
        self.mismatch = ""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._listener.settimeout(10.0)
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10.0)
            for index, (expected, answer) in enumerate(self.pairs):
                got = b""
                try:
                    while len(got) < len(expected):
                        chunk = conn.recv(len(expected) - len(got))
                        if not chunk:
                            self.mismatch = f"request {index}: client closed after {len(got)} bytes"
                            return
                        got += chunk
                except OSError as error:
                    self.mismatch = f"request {index}: {error}"
                    return
                if got != expected:
                    self.mismatch = f"request {index}:\n expected {expected.hex(' ')}\n      got {got.hex(' ')}"
                    return
                self.done = index + 1
                if answer is None:
                    self._stop.wait(30.0)  # silence until the client gives up (closes) or the test ends
                    return
                if answer == CLOSE:
                    return
                conn.sendall(answer)
            self._refuse_extra_requests(conn)

    def _refuse_extra_requests(self, conn: socket.socket) -> None:
        """After the script: any further byte from the client is a request nobody expected."""
        conn.settimeout(0.05)
        while not self._stop.is_set():
            try:
                extra = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if extra:
                self.mismatch = f"unexpected request after the script: {extra.hex(' ')}"
            return

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5.0)

    def assert_done(self) -> None:
        """Fail if a request differed or the client did not send every expected request."""
        assert not self.mismatch, self.mismatch
        assert self.done == len(self.pairs), f"only {self.done} of {len(self.pairs)} expected requests were sent"


@contextmanager
def expected_obp(pairs: Iterable[tuple[bytes, bytes | None]]) -> Iterator[ExpectedOBPPeer]:
    """A scripted OBP device for the duration of the block (see the module docstring)."""
    peer = ExpectedOBPPeer(pairs)
    try:
        yield peer
    finally:
        peer.close()
