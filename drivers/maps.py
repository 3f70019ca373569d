"""Find and read instrument maps (register maps, SCPI dialects) kept in ``hardware/maps``.

A map is a TOML file; another controller or spectrometer is a new map, not new
code. ``REMDAQ_HARDWARE_DIR`` points at another ``hardware`` folder; by default
the one beside the installed packages (the source checkout) is used.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

__all__ = ["hardware_dir", "find_map", "load_map"]


def hardware_dir() -> Path:
    """The folder holding ``stations/`` and ``maps/``."""
    configured = os.environ.get("REMDAQ_HARDWARE_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "hardware"


def find_map(name_or_path: str | os.PathLike) -> Path:
    """Resolve a map given as a path to a TOML file or as a bare name in ``hardware/maps``."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" and candidate.is_file():
        return candidate
    in_maps = hardware_dir() / "maps" / f"{candidate.name.removesuffix('.toml')}.toml"
    if in_maps.is_file():
        return in_maps
    known = sorted(p.stem for p in (hardware_dir() / "maps").glob("*.toml"))
    raise FileNotFoundError(
        f"instrument map {str(name_or_path)!r} not found (looked for {candidate} and {in_maps}); "
        f"known maps: {', '.join(known) or 'none'}"
    )


def load_map(name_or_path: str | os.PathLike) -> dict:
    """Read a map as a plain dict; a TOML syntax error names the file."""
    path = find_map(name_or_path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from None
