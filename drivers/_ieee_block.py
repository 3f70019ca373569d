"""Strict reader of IEEE 488.2 definite-length arbitrary blocks of float32 little-endian values.

A block is ``#`` + one digit n (1-9) + n ASCII digits giving the payload length
L + L payload bytes + the message terminator. Anything else is a
:class:`~drivers.ProtocolError` that says what was wrong; no partial or
"best effort" data is ever returned. Indefinite-length blocks (``#0``) are
refused: their end cannot be told from data.

The driver reads a block from the line with :func:`read_block` in three steps
(``#n``, the n digits, then L bytes + terminator). The declared length L is
checked against the expected number of values (:func:`check_declared_length`)
*before* the payload is read, so a header announcing a gigabyte is refused
after reading at most 11 bytes, and nothing is allocated for it. The whole
message then goes to :func:`parse_block`, which checks it again from the first
byte: one function decides what is data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._errors import ProtocolError

__all__ = ["VALUE_BYTES", "digit_count", "payload_length", "check_declared_length", "read_block", "parse_block"]

VALUE_BYTES = 4  # float32
_DTYPE = np.dtype("<f4")
_DIGITS = frozenset(b"0123456789")


def _show(data: bytes, limit: int = 24) -> str:
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")


def digit_count(start: bytes) -> int:
    """Number of length digits announced by the first two bytes ``#n`` of a block."""
    if len(start) < 2:
        raise ProtocolError(f"block too short for a header: {_show(start)} (need '#' and a digit)")
    if start[0:1] != b"#":
        raise ProtocolError(f"missing '#' at the start of the block: got {_show(start)}")
    if start[1] not in _DIGITS:
        raise ProtocolError(f"bad block header: '#' must be followed by a digit 1-9, got {_show(start[1:2])}")
    count = start[1] - 0x30
    if count == 0:
        raise ProtocolError("indefinite-length block ('#0') refused: only definite-length blocks are data")
    return count


def payload_length(digits: bytes) -> int:
    """Payload length (bytes) from the n length digits of a block header."""
    if not digits or any(byte not in _DIGITS for byte in digits):
        raise ProtocolError(f"bad length digits in block header: {_show(digits)} (ASCII digits only)")
    return int(digits.decode("ascii"))


def check_declared_length(length: int, n_values: int) -> None:
    """ProtocolError unless a header's declared payload ``length`` is exactly one float32 per value."""
    expected_length = n_values * VALUE_BYTES
    if length != expected_length:
        detail = (
            f"{length // VALUE_BYTES} values"
            if length % VALUE_BYTES == 0
            else f"a length that is not a multiple of {VALUE_BYTES}"
        )
        raise ProtocolError(
            f"block declares {length} bytes ({detail}); expected {expected_length} bytes: "
            f"exactly one float32 per pixel for {n_values} pixels"
        )


def read_block(read: Callable[[int, str], bytes], n_values: int, terminator: bytes = b"\n") -> np.ndarray:
    """Read one block through ``read(count, what)`` and return its values (as :func:`parse_block`).

    ``read`` must return exactly ``count`` bytes (or raise); ``what`` names the part
    of the block being read, for its error messages. It is asked for ``#n`` (2
    bytes), then the n length digits, and only when the declared length is the
    expected ``n_values * 4`` for the payload and terminator: never more than
    ``11 + 4 * n_values + len(terminator)`` bytes in all.
    """
    start = read(2, "the block header '#n'")
    digits = read(digit_count(start), "the length digits of the block header")
    length = payload_length(digits)
    check_declared_length(length, n_values)
    body = read(length + len(terminator), f"the {length} payload bytes and the terminator")
    return parse_block(start + digits + body, n_values, terminator)


def parse_block(message: bytes, n_values: int, terminator: bytes = b"\n") -> np.ndarray:
    """Values (float64, shape ``(n_values,)``) of one complete block message, or ProtocolError.

    ``message`` runs from ``#`` to the end of the terminator. It must hold exactly
    ``n_values`` finite float32 little-endian values followed by exactly ``terminator``.
    """
    message = bytes(message)
    n = digit_count(message[:2])
    header_end = 2 + n
    if len(message) < header_end:
        raise ProtocolError(f"block header cut short: announced {n} length digits, message is {_show(message)}")
    length = payload_length(message[2:header_end])
    check_declared_length(length, n_values)
    body = message[header_end:]
    if len(body) < length + len(terminator):
        raise ProtocolError(
            f"short block: header declares {length} payload bytes + terminator "
            f"{terminator!r}, only {len(body)} bytes follow the header"
        )
    payload, tail = body[:length], body[length:]
    if tail != terminator:
        raise ProtocolError(
            f"trailing bytes after the {length}-byte payload: expected terminator "
            f"{terminator!r}, got {_show(tail)} ({len(tail)} bytes; block longer than declared?)"
        )
    values = np.frombuffer(payload, dtype=_DTYPE)
    finite = np.isfinite(values)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ProtocolError(
            f"{bad.size} non-finite value(s) in block (first at pixel {bad[0]}: "
            f"{float(values[bad[0]])}); counts must be finite"
        )
    return values.astype(np.float64)
