"""A bounded OBP-over-TCP link for python-seabreeze's pure-Python backend.

python-seabreeze's :class:`~seabreeze.pyseabreeze.transport.IPv4Transport` frames
nothing itself and bounds nothing: its socket has no timeout unless a caller
passes one, its read loop spins for ever when the peer closes mid-message, a
header that claims 4 GB makes it allocate 4 GB, a NACK on a command that asked
for an acknowledgement is swallowed, an unknown error code is a ``KeyError`` and
a wrong footer is an ``assert``. This transport keeps the library's protocol
layer (:class:`~seabreeze.pyseabreeze.protocol.OBPProtocol` builds every request
and unpacks every reply) and takes over the byte stream beneath it:

- every request and reply has a deadline (:attr:`BoundedIPv4Transport.deadline_s`,
  set by the driver per operation); a peer that closes, or a reply that does not
  arrive in time, raises :class:`~drivers.NotConnected`;
- each reply is read whole as one frame and checked before the library sees it:
  start bytes, protocol version, a length within :data:`MAX_FRAME_BYTES`, the
  footer, nothing left over after the footer; a NACK or a hardware exception
  raises :class:`OBPRefused` with the device's error code and its meaning;
  anything else malformed raises :class:`~drivers.ProtocolError`;
- a "deferred" NACK (error 255: the device says the answer will take time) is
  not an answer: the link waits for the real one within the same deadline.

Everything here is OBP as Ocean documents it (44-byte header, 16 bytes of
immediate data, 20-byte checksum and footer); the framing facts match
python-seabreeze's own constants, which the protocol tests check byte for byte.
"""

from __future__ import annotations

import math
import select
import socket
import struct
import time
from typing import Any

from seabreeze.pyseabreeze.protocol import OBPProtocol
from seabreeze.pyseabreeze.transport import IPv4Transport, IPv4TransportHandle

from ._errors import NotConnected, ProtocolError

__all__ = [
    "BoundedIPv4Transport",
    "OBPRefused",
    "MAX_FRAME_BYTES",
    "OBP_ERROR_MEANINGS",
    "check_reply_header",
]

HEADER_BYTES = 44
FOOTER_BYTES = 20  # 16 bytes of checksum, then the 4-byte footer
START_BYTES = 0xC0C1
PROTOCOL_VERSION = 0x1100
FOOTER = 0xC2C3C4C5
FLAG_NACK = 0x0008
FLAG_HW_EXCEPTION = 0x0010
ERROR_DEFERRED = 255
#: The largest reply accepted (header + payload + footer): a 4096-pixel spectrum of 32-bit values is 16 kB;
#: a header claiming more than this is a broken line, not a spectrometer.
MAX_FRAME_BYTES = 1 << 20
_HEADER = struct.Struct("<HHHHLL6sBB16sL")
_FOOTER = struct.Struct("<16sL")

#: OBP error numbers and what they mean (Ocean's OBP documentation; the same table python-seabreeze carries).
OBP_ERROR_MEANINGS = {
    0: "success",
    1: "invalid or unsupported protocol",
    2: "unknown message type",
    3: "bad checksum",
    4: "message too large",
    5: "payload length does not match message type",
    6: "payload data invalid",
    7: "device not ready for given message type",
    8: "unknown checksum type",
    9: "device reset unexpectedly",
    10: "too many buses",
    11: "out of memory",
    12: "command is valid, but desired information does not exist",
    13: "internal device error, may be unrecoverable",
    100: "could not decrypt properly",
    101: "firmware layout invalid",
    102: "data packet was wrong size",
    103: "hardware revision not compatible with firmware",
    104: "existing flash map not compatible with firmware",
    255: "operation deferred",
}


class OBPRefused(ProtocolError):
    """The device answered a request with a NACK (or a hardware exception) and an OBP error number."""

    def __init__(self, message_type: int, error: int):
        self.message_type, self.error = message_type, error
        meaning = OBP_ERROR_MEANINGS.get(error, "an error number OBP does not define")
        super().__init__(f"the spectrometer refused OBP message 0x{message_type:08X}: error {error} ({meaning})")


def check_reply_header(header: bytes) -> tuple[int, int, int, int]:
    """The flags, error number, message type and bytes remaining of a reply header, once it is known to be
    well formed; raises :class:`~drivers.ProtocolError` saying what is wrong otherwise."""
    if len(header) != HEADER_BYTES:
        raise ProtocolError(f"OBP reply header is {len(header)} bytes, not {HEADER_BYTES}")
    start, version, flags, error, message_type, _, _, _, immediate_length, _, remaining = _HEADER.unpack(header)
    if start != START_BYTES:
        raise ProtocolError(f"OBP reply starts with 0x{start:04X}, not 0x{START_BYTES:04X}: not an OBP frame")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"OBP reply has protocol version 0x{version:04X}, not 0x{PROTOCOL_VERSION:04X}")
    if immediate_length > 16:
        raise ProtocolError(f"OBP reply claims {immediate_length} bytes of immediate data (at most 16)")
    if not FOOTER_BYTES <= remaining <= MAX_FRAME_BYTES - HEADER_BYTES:
        raise ProtocolError(
            f"OBP reply claims {remaining} bytes after its header "
            f"(expected {FOOTER_BYTES}..{MAX_FRAME_BYTES - HEADER_BYTES})"
        )
    return flags, error, message_type, remaining


def _check_footer(frame: bytes) -> None:
    _, footer = _FOOTER.unpack(frame[-FOOTER_BYTES:])
    if footer != FOOTER:
        raise ProtocolError(
            f"OBP reply of {len(frame)} bytes ends with 0x{footer:08X}, not the footer 0x{FOOTER:08X}: "
            "its length does not match its header"
        )


class BoundedIPv4Transport(IPv4Transport):
    """python-seabreeze's IPv4 transport with deadlines and whole-frame checks (see the module docstring).

    The driver sets :attr:`deadline_s` (seconds from now) before each operation; every read and write of
    that operation must finish by then.
    """

    def __init__(self, ipv4_protocol: type = OBPProtocol, connect_timeout_s: float = 5.0) -> None:
        super().__init__(ipv4_protocol=ipv4_protocol)
        self.connect_timeout_s = connect_timeout_s
        self._deadline = math.inf
        self._frame = b""  # the reply being handed to the protocol layer, in the pieces it asks for

    # --- deadline ------------------------------------------------------------------------------
    def set_deadline(self, seconds: float) -> None:
        """Every read and write from now on must finish within ``seconds``."""
        self._deadline = time.monotonic() + seconds

    def _remaining_s(self, what: str) -> float:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise NotConnected(f"no complete OBP reply within the deadline while {what}")
        return remaining

    # --- connection ----------------------------------------------------------------------------
    def open_device(self, device: IPv4TransportHandle) -> None:
        """Connect to ``device`` within :attr:`connect_timeout_s` (the library's own open has no timeout)."""
        if not isinstance(device, IPv4TransportHandle):
            raise TypeError("device needs to be an IPv4TransportHandle")
        host, port = device.get_address()
        try:
            connection = socket.create_connection((host, port), timeout=self.connect_timeout_s)
        except OSError as error:
            raise NotConnected(f"cannot connect to the spectrometer at {host}:{port}: {error}") from None
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        device.socket.close()
        device.socket = connection
        self._device = device
        self._opened = True
        self._frame = b""
        self._protocol = self._protocol_cls(self)

    @property
    def socket(self) -> socket.socket:
        if self._device is None:
            raise NotConnected("the spectrometer's connection is closed")
        return self._device.socket

    # --- bytes ---------------------------------------------------------------------------------
    def write(self, data: bytes, timeout_ms: int | None = None, **kwargs: Any) -> int:
        """Send one whole request (after discarding nothing: a stale byte before a request is an error)."""
        conn = self.socket
        self._refuse_stale_bytes(conn)
        self._frame = b""
        view = memoryview(data)
        while view:
            conn.settimeout(self._remaining_s("sending a request"))
            try:
                sent = conn.send(view)
            except TimeoutError:
                raise NotConnected("the spectrometer takes no more data: sending a request timed out") from None
            except OSError as error:
                raise NotConnected(f"the connection to the spectrometer broke while sending: {error}") from None
            view = view[sent:]
        return len(data)

    def read(self, size: int | None = None, timeout_ms: int | None = None, mode: str | None = None, **kwargs) -> bytes:
        """The next ``size`` bytes of the current reply (a new reply, read and checked whole, when none is
        pending); the library asks for the first 64 bytes, then for the rest."""
        if not self._frame:
            self._frame = self._read_frame()
        if size is None:
            size = HEADER_BYTES + FOOTER_BYTES
        piece, self._frame = self._frame[:size], self._frame[size:]
        if len(piece) < size:
            raise ProtocolError(f"the OBP layer asked for {size} bytes of a reply that had only {len(piece)} left")
        return piece

    def _read_frame(self) -> bytes:
        while True:
            header = self._receive(HEADER_BYTES, "waiting for a reply header")
            flags, error, message_type, remaining = check_reply_header(header)
            frame = header + self._receive(remaining, f"reading a reply of {HEADER_BYTES + remaining} bytes")
            _check_footer(frame)
            if flags & (FLAG_NACK | FLAG_HW_EXCEPTION) and error == ERROR_DEFERRED:
                continue  # the device will answer later: wait for that answer within the same deadline
            self._refuse_stale_bytes(self.socket, after_reply=True)
            if flags & (FLAG_NACK | FLAG_HW_EXCEPTION) or error:
                raise OBPRefused(message_type, error)
            return frame

    def _receive(self, count: int, what: str) -> bytes:
        conn = self.socket
        data = bytearray(count)
        view = memoryview(data)
        received = 0
        while received < count:
            conn.settimeout(self._remaining_s(f"{what} ({received} of {count} bytes received)"))
            try:
                got = conn.recv_into(view[received:], count - received)
            except TimeoutError:
                raise NotConnected(
                    f"no complete OBP reply within the deadline while {what} ({received} of {count} bytes received)"
                ) from None
            except OSError as error:
                raise NotConnected(f"the connection to the spectrometer broke while {what}: {error}") from None
            if got == 0:
                raise NotConnected(f"the spectrometer closed the connection while {what} ({received} of {count} bytes)")
            received += got
        return bytes(data)

    @staticmethod
    def _refuse_stale_bytes(conn: socket.socket, after_reply: bool = False) -> None:
        """Raise if bytes wait on the socket that no request asked for (a reply longer than its frame).

        Right after a reply, a closed connection is left for the next request to find: the reply is whole.
        """
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return
        try:
            extra = conn.recv(65536, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:
            raise NotConnected(f"the connection to the spectrometer broke: {error}") from None
        if not extra:
            if after_reply:
                return
            raise NotConnected("the spectrometer closed the connection")
        raise ProtocolError(f"{len(extra)} bytes arrived that belong to no OBP frame (a reply longer than its header)")

    def drain(self, idle_s: float = 0.05, max_s: float = 2.0) -> bool:
        """Discard what is left on the line after a malformed reply: True once it is quiet for ``idle_s``,
        False if the peer closed or kept sending for ``max_s`` (only a new connection is in step then)."""
        self._frame = b""
        conn = self.socket
        end = time.monotonic() + max_s
        while (remaining := end - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], min(idle_s, remaining))
            if not readable:
                return True
            try:
                if not conn.recv(65536):
                    return False
            except OSError:
                return False
        return False

    @property
    def default_timeout_ms(self) -> int:
        # The library adds this to the exposure when it waits for a spectrum; the deadline bounds it anyway.
        return int(max(1.0, min(self._deadline - time.monotonic(), 3600.0)) * 1000)
