"""Find and read instrument maps (register maps, SCPI dialects) kept in ``hardware/maps``.

A map is a TOML file; another controller or spectrometer is a new map, not new
code. ``REMDAQ_HARDWARE_DIR`` points at another ``hardware`` folder; by default
the one beside the installed packages (the source checkout) is used. A map is
read as untrusted input (:mod:`drivers._text_file`): only a small regular file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._text_file import UnreadableFileError, is_regular_file, read_small_toml_file, shorten

__all__ = ["MapError", "hardware_dir", "maps_dir", "known_maps", "find_map", "load_map"]


class MapError(ValueError):
    """A map that cannot be found, read or understood; the message names the map or its file."""


def hardware_dir() -> Path:
    """The folder holding ``stations/`` and ``maps/``."""
    configured = os.environ.get("REMDAQ_HARDWARE_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "hardware"


def maps_dir() -> Path:
    """The folder of the maps that can be named without a path."""
    return hardware_dir() / "maps"


def known_maps(required_table: str | None = None) -> list[str]:
    """Names of the readable maps in :func:`maps_dir`; only those with ``required_table`` if given."""
    names = []
    for path in sorted(maps_dir().glob("*.toml")):
        if required_table is not None:
            try:
                if not isinstance(read_small_toml_file(path).get(required_table), dict):
                    continue
            except UnreadableFileError:
                continue
        names.append(path.stem)
    return names


def find_map(name_or_path: str | os.PathLike, kind: str = "instrument map",
             required_table: str | None = None) -> Path:
    """Resolve a map given as a path to a TOML file or as a bare name in ``hardware/maps``.

    ``kind`` ("register map", "SCPI dialect") and ``required_table`` (the table
    every map of that kind has) only shape the error: a :class:`MapError` listing
    the known maps of that kind, or saying why a path cannot be used.
    """
    text = os.fspath(name_or_path)
    candidate = Path(name_or_path)
    try:
        if candidate.suffix == ".toml" and is_regular_file(candidate):
            return candidate
        in_maps = maps_dir() / f"{candidate.name.removesuffix('.toml')}.toml"
        if is_regular_file(in_maps):
            return in_maps
    except UnreadableFileError as error:
        raise MapError(f"{kind} {shorten(text)!r}: {error.problem}") from None
    raise MapError(f"no {kind} {shorten(text)!r} (known: {', '.join(known_maps(required_table)) or 'none'})")


def load_map(name_or_path: str | os.PathLike) -> dict:
    """Read a map as a plain dict; any problem (not found, not a small regular file, bad TOML) is a MapError."""
    path = find_map(name_or_path)
    try:
        return read_small_toml_file(path)
    except UnreadableFileError as error:
        raise MapError(str(error)) from None
