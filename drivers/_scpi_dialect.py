"""The SCPI dialect a spectrometer speaks, read from ``hardware/maps/<name>.toml``.

Checked once, when the driver is built, so that a mistyped map fails with the
file and key named instead of at the first acquisition.
"""

from __future__ import annotations

import math
import os
import string
from dataclasses import dataclass

from .maps import MapError, find_map, load_map

MAX_PIXELS = 65536
"""Most pixels a spectrometer may have (array detectors have up to a few thousand)."""

__all__ = ["ScpiDialect", "load_dialect"]

_REQUIRED_COMMANDS = {
    "identify": (), "next_error": (), "wavelength_coefficients": (),
    "set_integration_time": ("seconds",), "get_integration_time": (),
    "set_averages": ("count",), "get_averages": (),
    "shutter_open": (), "shutter_close": (),
}
_OPTIONAL_COMMANDS = {"reset": (), "clear_status": (), "pixel_count": ()}


@dataclass(frozen=True)
class ScpiDialect:
    """Command strings and framing of one instrument family."""

    name: str
    read_termination: str
    write_termination: str
    full_scale_counts: float
    fixed_pixels: int | None
    commands: dict[str, str]
    setup: tuple[str, ...]
    measure: tuple[str, ...]

    def command(self, key: str, **fields) -> str:
        """The command string for ``key`` with its fields filled in."""
        return self.commands[key].format(**fields)


def _fields(template: str, where: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as error:  # e.g. a lone "{"
        raise MapError(f"{where}: {template!r} is not a valid format string ({error})") from None


def _table(data: dict, name: str, path) -> dict:
    """The optional table ``[name]`` of a dialect file; a value that is not a table is a MapError."""
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise MapError(f"{path}: [{name}] must be a table, not {type(value).__name__}")
    return value


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise MapError(f"{where}: expected a list of command strings, got {value!r}")
    return tuple(value)


def load_dialect(name_or_path: str | os.PathLike) -> ScpiDialect:
    """Load and check a dialect map; a missing or malformed entry raises MapError (a ValueError) naming file and key."""
    path = find_map(name_or_path, kind="SCPI dialect", required_table="commands")
    data = load_map(path)
    instrument = _table(data, "instrument", path)
    connection = _table(data, "connection", path)
    raw_commands = _table(data, "commands", path)
    commands: dict[str, str] = {}
    for key, needed in {**_REQUIRED_COMMANDS, **_OPTIONAL_COMMANDS}.items():
        template = raw_commands.get(key)
        if template is None:
            if key in _REQUIRED_COMMANDS:
                raise MapError(f"{path}: [commands] lacks {key!r}")
            continue
        if not isinstance(template, str) or not template.strip():
            raise MapError(f"{path}: [commands] {key} must be a non-empty string")
        if _fields(template, f"{path}: [commands] {key}") != set(needed):
            raise MapError(f"{path}: [commands] {key} = {template!r} must use exactly the fields "
                           f"{sorted(needed) or 'none'}")
        commands[key] = template
    measure = _string_list(raw_commands.get("measure"), f"{path}: [commands] measure")
    if not measure or not measure[-1].rstrip().endswith("?"):
        raise MapError(f"{path}: [commands] measure must end with a query (the block answer), got {measure!r}")
    fixed_pixels = instrument.get("pixels")
    if fixed_pixels is not None and (isinstance(fixed_pixels, bool) or not isinstance(fixed_pixels, int)
                                     or not 1 <= fixed_pixels <= MAX_PIXELS):
        raise MapError(f"{path}: [instrument] pixels must be an integer 1..{MAX_PIXELS}")
    if fixed_pixels is None and "pixel_count" not in commands:
        raise MapError(f"{path}: give either [commands] pixel_count or [instrument] pixels")
    full_scale = instrument.get("full_scale_counts", 65535)
    if (isinstance(full_scale, bool) or not isinstance(full_scale, (int, float)) or not math.isfinite(full_scale)
            or full_scale <= 0):
        raise MapError(f"{path}: [instrument] full_scale_counts must be a positive finite number")
    return ScpiDialect(
        name=path.stem,
        read_termination=str(connection.get("read_termination", "\n")),
        write_termination=str(connection.get("write_termination", "\n")),
        full_scale_counts=float(full_scale),
        fixed_pixels=fixed_pixels,
        commands=commands,
        setup=_string_list(raw_commands.get("setup", []), f"{path}: [commands] setup") if raw_commands.get("setup") else (),
        measure=measure,
    )
