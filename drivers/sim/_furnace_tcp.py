"""The simulated furnace controllers as a Modbus TCP server (or an RTU-to-TCP gateway with units behind it).

Our own MBAP framing around the instrument's PDUs (:func:`drivers.sim.furnace.answer_pdu`),
independent of the client library (decision 0011): each request is
``transaction id, protocol 0, length, unit id, PDU``; the answer echoes the
transaction id and unit id. A unit id the server does not serve gets exception
0B (gateway target device failed to respond), as a gateway gives; a frame with
another protocol id or a length outside 2..254 closes that connection.
"""

from __future__ import annotations

import selectors
import socket
import struct
from collections.abc import Callable

__all__ = ["MbapServer", "mbap_answers"]

_GATEWAY_TARGET_FAILED = 0x0B
_MAX_CONNECTIONS = 16


def mbap_answers(buffer: bytearray, answer: Callable[[int, bytes], bytes | None]) -> list[bytes] | None:
    """Take every whole MBAP frame off ``buffer``; the answer frames, or None if the stream is not Modbus TCP.

    ``answer(unit, pdu)`` gives the response PDU, or None for a unit not served.
    """
    out = []
    while len(buffer) >= 7:
        tid, protocol, length = struct.unpack(">HHH", buffer[:6])
        if protocol != 0 or not 2 <= length <= 254:
            return None
        if len(buffer) < 6 + length:
            break
        unit, pdu = buffer[6], bytes(buffer[7 : 6 + length])
        del buffer[: 6 + length]
        response = answer(unit, pdu)
        if response is None:
            response = bytes((pdu[0] | 0x80, _GATEWAY_TARGET_FAILED))
        out.append(struct.pack(">HHHB", tid, 0, len(response) + 1, unit) + response)
    return out


class MbapServer:
    """A listening socket on ``host:port`` (0: any free port) and its client connections, served from a selector."""

    def __init__(self, selector: selectors.BaseSelector, host: str, port: int, answer) -> None:
        self.selector, self.answer = selector, answer
        self.listener = socket.create_server((host, port), reuse_port=False)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ, self._accept)
        self._buffers: dict[socket.socket, bytearray] = {}

    @property
    def address(self) -> str:
        host, port = self.listener.getsockname()[:2]
        return f"tcp://{host}:{port}"

    def _accept(self, _sock) -> bool:
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return False
        if len(self._buffers) >= _MAX_CONNECTIONS:
            conn.close()
            return False
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffers[conn] = bytearray()
        self.selector.register(conn, selectors.EVENT_READ, self._serve)
        return False

    def _serve(self, conn: socket.socket) -> bool:
        """Read what a connection sent and answer it; True if a request was answered."""
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return False
        buffer = self._buffers[conn]
        buffer += data
        answers = mbap_answers(buffer, self.answer)
        if answers is None:
            self._drop(conn)
            return False
        for frame in answers:
            try:
                conn.sendall(frame)  # small frames on a local socket: the buffer takes them
            except OSError:
                self._drop(conn)
                break
        return bool(answers)

    def _drop(self, conn: socket.socket) -> None:
        self._buffers.pop(conn, None)
        try:
            self.selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def close(self) -> None:
        for conn in list(self._buffers):
            self._drop(conn)
        self.selector.unregister(self.listener)
        self.listener.close()
