"""Open an HDF5 file for reading so that a damaged one fails in milliseconds, never hangs.

A SWMR reader retries a metadata read whose checksum fails, because a writer may
be rewriting that piece at the same moment. HDF5's default is 100 attempts with a
doubling back-off: on a damaged file that is hours inside the library, holding
h5py's global lock, so every other h5py call of the process (every page of the
app) waits too. Here SWMR readers get a few attempts (a few milliseconds of back-off
in all, enough for a writer's in-place rewrite), and closed files are opened
without SWMR, where HDF5 also checks that the file is as long as it says.

h5py does not expose ``H5Pset_metadata_read_attempts``; it is called through
ctypes on the HDF5 library h5py itself loaded.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import h5py
from h5py import h5f, h5p  # pyright: ignore[reportAttributeAccessIssue]  # compiled modules, no stubs

__all__ = ["open_for_reading", "SWMR_READ_ATTEMPTS", "checked_member"]

_Node = TypeVar("_Node", h5py.Group, h5py.Dataset)


def checked_member(parent: h5py.Group, name: str, kind: type[_Node], problem: Callable[[str], Exception]) -> _Node:
    """``parent[name]``, which a layout says is a ``kind``; raises ``problem("/path is not an HDF5 kind")`` if not."""
    node = parent[name]
    if not isinstance(node, kind):
        where = f"{(parent.name or '').rstrip('/')}/{name.lstrip('/')}"
        raise problem(f"{where} is not an HDF5 {kind.__name__.lower()}")
    return node


SWMR_READ_ATTEMPTS = 12
"""Metadata read attempts of a SWMR reader (HDF5's default is 100, hours of back-off on a damaged file)."""


@lru_cache(maxsize=1)
def _hdf5_library() -> ctypes.CDLL | None:
    """The libhdf5 that h5py loaded (found in this process's memory map), or None off Linux."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rsplit(maxsplit=1)[-1]
                name = os.path.basename(path)
                if name.startswith("libhdf5") and not name.startswith("libhdf5_hl") and ".so" in name:
                    library = ctypes.CDLL(path)
                    library.H5Pset_metadata_read_attempts.argtypes = (ctypes.c_int64, ctypes.c_uint)
                    library.H5Pset_metadata_read_attempts.restype = ctypes.c_int
                    return library
    except (OSError, AttributeError):
        return None
    return None


def _access_list(read_attempts: int) -> h5p.PropFAID:
    fapl = h5p.create(h5p.FILE_ACCESS)
    library = _hdf5_library()
    if library is None or library.H5Pset_metadata_read_attempts(fapl.id, read_attempts) < 0:
        raise RuntimeError(
            "cannot bound HDF5's metadata read attempts (libhdf5 not found in this process); "
            "refusing to open a file for SWMR reading without that bound"
        )
    return fapl


def open_for_reading(path: str | os.PathLike, *, swmr: bool) -> h5py.File:
    """An h5py File, read-only; ``swmr`` for a file a writer may still be growing (or left open)."""
    name = os.fsencode(os.fspath(path))
    if swmr:
        fid = h5f.open(name, h5f.ACC_RDONLY | h5f.ACC_SWMR_READ, fapl=_access_list(SWMR_READ_ATTEMPTS))
    else:
        fid = h5f.open(name, h5f.ACC_RDONLY, fapl=_access_list(1))
    return h5py.File(fid)
