"""Small helpers several daq modules need, each written once: UTC time stamps, the software version, HDF5 text.

Public through :mod:`daq.store` (``utc_now``, ``utc_now_iso``), which the app reads too;
the rest is for daq's own modules.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version

import numpy as np

__all__ = ["hdf5_text", "software_version", "utc_now", "utc_now_iso"]


def utc_now() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def utc_now_iso() -> str:
    """Current UTC time, ISO 8601 with offset, to the microsecond (every time stamp daq writes)."""
    return utc_now().isoformat()


@functools.cache
def software_version() -> str:
    """The version of the installed rem-daq ("unknown" when it runs from a tree that is not installed)."""
    try:
        return version("rem-daq")
    except PackageNotFoundError:
        return "unknown"


def hdf5_text(value) -> str:
    """An HDF5 string attribute or scalar dataset value as text: bytes decoded as UTF-8 (undecodable bytes
    replaced, a fixed-length string's NUL padding dropped), a 0-d array by its item, anything else by ``str``."""
    if isinstance(value, bytes):
        return value.rstrip(b"\0").decode("utf-8", errors="replace")
    if isinstance(value, np.ndarray) and value.shape == ():
        return hdf5_text(value[()])
    return str(value)
