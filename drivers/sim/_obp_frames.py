"""Ocean Binary Protocol (OBP, version 0x1100) messages: encode and decode, as the simulated device sees them.

The simulator's side of the wire, written here from the message layout (the client
side is python-seabreeze's, whose framing the unit tests compare against). One
message, all little-endian:

========  =====  =====================================================================
offset    bytes  field
========  =====  =====================================================================
0         2      start bytes 0xC0C1 (on the wire C1 C0)
2         2      protocol version 0x1100
4         2      flags (:class:`Flag`)
6         2      error number (:class:`ObpError`; with the NACK flag)
8         4      message type
12        4      regarding (an identifier the host chooses; the reply carries it back)
16        6      reserved (zero)
22        1      checksum type (0 none, 1 MD5 of everything before the checksum)
23        1      immediate data length (0-16)
24        16     immediate data (zero-padded)
40        4      bytes remaining: payload + 20 footer bytes
44        n      payload (only when the data are longer than 16 bytes)
44+n      16     checksum (zero without one)
60+n      4      footer 0xC2C3C4C5
========  =====  =====================================================================

Data of up to 16 bytes travel as immediate data, longer data as payload
(:func:`encode` decides); a message is never shorter than 64 bytes.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

__all__ = [
    "CHECKSUM_MD5",
    "CHECKSUM_NONE",
    "FOOTER_BYTES",
    "FOOTER_VALUE",
    "HEADER_BYTES",
    "MAX_IMMEDIATE_BYTES",
    "MIN_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "START_BYTES",
    "Flag",
    "Frame",
    "FrameError",
    "Header",
    "ObpError",
    "decode",
    "decode_header",
    "encode",
    "response",
]

START_BYTES = 0xC0C1
PROTOCOL_VERSION = 0x1100
FOOTER_VALUE = 0xC2C3C4C5
CHECKSUM_NONE = 0
CHECKSUM_MD5 = 1
HEADER_BYTES = 44
FOOTER_BYTES = 20
MAX_IMMEDIATE_BYTES = 16
MIN_MESSAGE_BYTES = HEADER_BYTES + FOOTER_BYTES
_HEADER = struct.Struct("<HHHHII6sBB16sI")
_FOOTER = struct.Struct("<16sI")
_CHECKSUM_BYTES = 16
assert _HEADER.size == HEADER_BYTES and _FOOTER.size == FOOTER_BYTES


class Flag(IntFlag):
    """Bits of the header's flags field."""

    RESPONSE_TO_REQUEST = 0x0001
    ACK = 0x0002
    REQUEST_ACK = 0x0004
    NACK = 0x0008
    HW_EXCEPTION = 0x0010
    PROTOCOL_DEPRECATED = 0x0020


class ObpError(IntEnum):
    """Error numbers a device puts in a NACK (the ones this simulator uses, and 255)."""

    SUCCESS = 0
    INVALID_PROTOCOL = 1
    UNKNOWN_MESSAGE_TYPE = 2
    BAD_CHECKSUM = 3
    MESSAGE_TOO_LARGE = 4
    PAYLOAD_LENGTH = 5  # payload length does not match the message type
    PAYLOAD_INVALID = 6
    NOT_READY = 7
    UNKNOWN_CHECKSUM_TYPE = 8
    DEFERRED = 255  # operation deferred: neither ACK nor NACK yet


@dataclass(frozen=True)
class Frame:
    """One OBP message: what it is about and its data (immediate or payload: the encoder decides)."""

    message_type: int
    data: bytes = b""
    flags: int = 0
    error: int = 0
    regarding: int = 0
    checksum_type: int = CHECKSUM_NONE
    protocol_version: int = PROTOCOL_VERSION

    @property
    def wants_ack(self) -> bool:
        return bool(self.flags & Flag.REQUEST_ACK)


@dataclass(frozen=True)
class Header:
    """The 44 header bytes unpacked, nothing checked (:func:`decode` checks)."""

    start_bytes: int
    protocol_version: int
    flags: int
    error: int
    message_type: int
    regarding: int
    checksum_type: int
    immediate_length: int
    immediate_data: bytes
    bytes_remaining: int


class FrameError(Exception):
    """A message the device cannot take: the error number its NACK carries, and whether the stream is lost.

    ``out_of_sync``: the message's boundaries cannot be trusted (wrong start bytes or
    footer, impossible length), so nothing after it can be read either.
    """

    def __init__(self, error: int, message: str, *, out_of_sync: bool = False):
        super().__init__(message)
        self.error = error
        self.out_of_sync = out_of_sync


def encode(
    frame: Frame,
    *,
    start_bytes: int = START_BYTES,
    footer_value: int = FOOTER_VALUE,
    bytes_remaining: int | None = None,
) -> bytes:
    """The bytes of ``frame``; the keyword arguments break the framing on purpose (line faults).

    ``bytes_remaining``: the value written into the header instead of the true one.
    """
    data = bytes(frame.data)
    immediate, payload = (data, b"") if len(data) <= MAX_IMMEDIATE_BYTES else (b"", data)
    remaining = len(payload) + FOOTER_BYTES
    header = _HEADER.pack(
        start_bytes,
        frame.protocol_version,
        frame.flags,
        frame.error,
        frame.message_type,
        frame.regarding,
        b"",
        frame.checksum_type,
        len(immediate),
        immediate,
        remaining if bytes_remaining is None else bytes_remaining,
    )
    body = header + payload
    checksum = hashlib.md5(body).digest() if frame.checksum_type == CHECKSUM_MD5 else b""
    return body + _FOOTER.pack(checksum, footer_value)


def decode_header(header: bytes) -> Header:
    """Unpack the first 44 bytes of a message (``ValueError`` if there are fewer)."""
    if len(header) < HEADER_BYTES:
        raise ValueError(f"an OBP header has {HEADER_BYTES} bytes, got {len(header)}")
    fields = _HEADER.unpack(header[:HEADER_BYTES])
    start, version, flags, error, message_type, regarding, _, checksum_type, immediate_length, immediate, remaining = (
        fields
    )
    return Header(
        start, version, flags, error, message_type, regarding, checksum_type, immediate_length, immediate, remaining
    )


def decode(message: bytes) -> Frame:
    """The frame in one complete message (header, payload, footer); :class:`FrameError` if it is malformed."""
    if len(message) < MIN_MESSAGE_BYTES:
        raise FrameError(
            ObpError.INVALID_PROTOCOL, f"a message has at least {MIN_MESSAGE_BYTES} bytes, got {len(message)}"
        )
    header = decode_header(message)
    if header.start_bytes != START_BYTES:
        raise FrameError(
            ObpError.INVALID_PROTOCOL, f"start bytes 0x{header.start_bytes:04X}, not 0xC0C1", out_of_sync=True
        )
    if header.bytes_remaining != len(message) - HEADER_BYTES:
        raise FrameError(
            ObpError.INVALID_PROTOCOL,
            f"bytes remaining {header.bytes_remaining}, but {len(message) - HEADER_BYTES} follow the header",
            out_of_sync=True,
        )
    checksum, footer = _FOOTER.unpack(message[-FOOTER_BYTES:])
    if footer != FOOTER_VALUE:
        raise FrameError(ObpError.INVALID_PROTOCOL, f"footer 0x{footer:08X}, not 0xC2C3C4C5", out_of_sync=True)
    if header.protocol_version != PROTOCOL_VERSION:
        raise FrameError(ObpError.INVALID_PROTOCOL, f"protocol version 0x{header.protocol_version:04X}, not 0x1100")
    if header.checksum_type not in (CHECKSUM_NONE, CHECKSUM_MD5):
        raise FrameError(ObpError.UNKNOWN_CHECKSUM_TYPE, f"checksum type {header.checksum_type}")
    if header.checksum_type == CHECKSUM_MD5 and checksum != hashlib.md5(message[:-FOOTER_BYTES]).digest():
        raise FrameError(ObpError.BAD_CHECKSUM, "MD5 checksum does not match")
    payload = message[HEADER_BYTES:-FOOTER_BYTES]
    if header.immediate_length > MAX_IMMEDIATE_BYTES:
        raise FrameError(ObpError.INVALID_PROTOCOL, f"immediate data length {header.immediate_length} > 16")
    if header.immediate_length and payload:
        raise FrameError(ObpError.INVALID_PROTOCOL, "immediate data and a payload in one message")
    data = header.immediate_data[: header.immediate_length] if header.immediate_length else payload
    return Frame(
        message_type=header.message_type,
        data=data,
        flags=header.flags,
        error=header.error,
        regarding=header.regarding,
        checksum_type=header.checksum_type,
        protocol_version=header.protocol_version,
    )


def response(request: Frame, data: bytes = b"", error: int = ObpError.SUCCESS) -> Frame:
    """The device's reply to ``request``: same message type and regarding, flagged as a response.

    ACK when the request asked for one and succeeded; NACK with ``error`` when it failed.
    """
    flags = Flag.RESPONSE_TO_REQUEST
    if error:
        flags |= Flag.NACK
    elif request.wants_ack:
        flags |= Flag.ACK
    return Frame(
        message_type=request.message_type,
        data=b"" if error else data,
        flags=int(flags),
        error=int(error),
        regarding=request.regarding,
    )
