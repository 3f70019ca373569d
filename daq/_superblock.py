"""The HDF5 superblock of a trial file: read it, check it, clear its writer flags.

A trial file is untrusted input. Before HDF5 is given a file, the superblock (the
first bytes of an HDF5 file) tells what the file says about itself: its stored
end of file, whether a writer still has it open, and a checksum over those bytes.
HDF5 skips its own end-of-file check for SWMR readers, so a truncated file is
found here, in microseconds, not by HDF5 retrying reads for minutes.

Only superblock versions 2 and 3 (what ``libver="v110"`` writes) carry a checksum
and writer flags; older versions are checked for their signature only and left to
HDF5's own checks.
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Superblock", "SuperblockError", "read_superblock", "clear_writer_flags", "lookup3"]

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SEARCH_OFFSETS = (0, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)  # a user block is a power of two >= 512
_FLAGS_OFFSET = 11  # signature (8), version, size of offsets, size of lengths, then the consistency flags
WRITE_FLAGS = 0b101  # bit 0: open for writing, bit 2: open for SWMR writing (superblock version 3)
_MASK = 0xFFFFFFFF


class SuperblockError(OSError):
    """The file is not HDF5, or its superblock is damaged."""


@dataclass(frozen=True)
class Superblock:
    """What an HDF5 file's superblock says about the file."""

    offset: int  # where the superblock starts (after a user block, if any)
    version: int
    flags: int  # file consistency flags (versions 2 and 3), 0 for older versions
    stored_eof: int | None  # bytes the file must have, None for versions 0 and 1

    @property
    def writer_flags_set(self) -> bool:
        """True when the file says a writer has it open (still running, or killed before closing it)."""
        return bool(self.flags & WRITE_FLAGS)


def _rotate(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, the checksum HDF5 puts on its metadata."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    position = 0
    while length > 12:
        x, y, z = struct.unpack_from("<3I", data, position)
        a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
        a = ((a - c) & _MASK) ^ _rotate(c, 4)
        c = (c + b) & _MASK
        b = ((b - a) & _MASK) ^ _rotate(a, 6)
        a = (a + c) & _MASK
        c = ((c - b) & _MASK) ^ _rotate(b, 8)
        b = (b + a) & _MASK
        a = ((a - c) & _MASK) ^ _rotate(c, 16)
        c = (c + b) & _MASK
        b = ((b - a) & _MASK) ^ _rotate(a, 19)
        a = (a + c) & _MASK
        c = ((c - b) & _MASK) ^ _rotate(b, 4)
        b = (b + a) & _MASK
        length -= 12
        position += 12
    if length == 0:
        return c
    tail = data[position:] + bytes(12 - length)
    x, y, z = struct.unpack("<3I", tail)
    a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
    c ^= b
    c = (c - _rotate(b, 14)) & _MASK
    a ^= c
    a = (a - _rotate(c, 11)) & _MASK
    b ^= a
    b = (b - _rotate(a, 25)) & _MASK
    c ^= b
    c = (c - _rotate(b, 16)) & _MASK
    a ^= c
    a = (a - _rotate(c, 4)) & _MASK
    b ^= a
    b = (b - _rotate(a, 14)) & _MASK
    c ^= b
    c = (c - _rotate(b, 24)) & _MASK
    return c


def _check_regular(path: Path) -> os.stat_result:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as error:
        raise SuperblockError(f"{path}: cannot be read: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SuperblockError(f"{path}: not a regular file")
    return info


def _parse(path: Path, head: bytes, offset: int) -> Superblock:
    """The superblock in ``head`` (the file's bytes from ``offset`` on)."""
    if len(head) < 12:
        raise SuperblockError(f"{path}: damaged: the file ends inside its superblock")
    version = head[8]
    if version in (0, 1):
        return Superblock(offset, version, 0, None)
    if version not in (2, 3):
        raise SuperblockError(f"{path}: damaged: unknown HDF5 superblock version {version}")
    size_of_offsets = head[9]
    if size_of_offsets not in (2, 4, 8):
        raise SuperblockError(f"{path}: damaged: superblock gives {size_of_offsets}-byte addresses")
    body_length = 12 + 4 * size_of_offsets
    body = head[: body_length + 4]
    if len(body) < body_length + 4:
        raise SuperblockError(f"{path}: damaged: the file ends inside its superblock")
    (stored_checksum,) = struct.unpack_from("<I", body, body_length)
    if lookup3(body[:body_length]) != stored_checksum:
        raise SuperblockError(f"{path}: damaged: the superblock checksum does not match its bytes")
    code = {2: "<H", 4: "<I", 8: "<Q"}[size_of_offsets]
    # the end-of-file address counts the user block, as HDF5's own truncation check does
    stored_eof = struct.unpack_from(code, body, 12 + 2 * size_of_offsets)[0]
    return Superblock(offset, version, body[_FLAGS_OFFSET], stored_eof)


def read_superblock(path: str | os.PathLike) -> Superblock:
    """The superblock of an HDF5 file; :class:`SuperblockError` for a non-HDF5 or damaged one."""
    path = Path(path)
    info = _check_regular(path)
    with open(path, "rb") as handle:
        for offset in _SEARCH_OFFSETS:
            if offset + 8 > info.st_size:
                break
            handle.seek(offset)
            head = handle.read(64)
            if head[:8] == SIGNATURE:
                return _parse(path, head, offset)
    raise SuperblockError(f"{path}: not an HDF5 file (no HDF5 signature)")


def clear_writer_flags(path: str | os.PathLike) -> Superblock:
    """Clear the "open for writing" flags of a file whose writer is dead, as ``h5clear -s`` does.

    Rewrites only the flags byte and the superblock checksum; the caller makes sure
    no process writes the file. Returns the superblock as it was before.
    """
    path = Path(path)
    before = read_superblock(path)
    if before.version not in (2, 3) or not before.writer_flags_set:
        return before
    with open(path, "r+b") as handle:
        handle.seek(before.offset)
        head = bytearray(handle.read(64))
        size_of_offsets = head[9]
        body_length = 12 + 4 * size_of_offsets
        head[_FLAGS_OFFSET] &= ~WRITE_FLAGS & 0xFF
        struct.pack_into("<I", head, body_length, lookup3(bytes(head[:body_length])))
        handle.seek(before.offset)
        handle.write(head[: body_length + 4])
        handle.flush()
        os.fsync(handle.fileno())
    return before
