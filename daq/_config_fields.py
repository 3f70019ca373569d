"""Field types for station, recipe and standards files: every number has a type and a range.

A number is finite and of its declared type (a TOML ``true`` is not 1; an integer
is accepted where a float is wanted, a float never where an integer is wanted)
and has an upper bound. Text has a length limit and no control characters; a
path is non-empty text whose names fit a file system (255 bytes each).
Cross-field rules report the field as written in the file with :func:`field_error`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from annotated_types import GroupedMetadata
from pydantic import AfterValidator, BeforeValidator, Field
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

__all__ = [
    "number",
    "count",
    "one_of",
    "text",
    "PathText",
    "FilePath",
    "field_error",
    "FIELD_ERROR",
    "MAX_PATH_BYTES",
    "MAX_NAME_BYTES",
]

#: Longest path and longest single name in a path accepted in a config file (Linux PATH_MAX, NAME_MAX).
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255

#: Pydantic error type of :func:`field_error`; ``ctx["field"]`` is the field path below the model.
FIELD_ERROR = "config_field"


class _Constraints(GroupedMetadata):
    """Several pieces of pydantic metadata given as one ``Annotated`` argument, applied in order."""

    __slots__ = ("_parts",)

    def __init__(self, *parts: object):
        self._parts = parts

    def __iter__(self) -> Iterator[object]:
        return iter(self._parts)


def number(*, le: float, gt: float | None = None, ge: float | None = None) -> FieldInfo:
    """A finite float (an int is accepted, a boolean or string is not) with an upper bound ``le``.

    Use as ``Annotated[float, number(...)]``.
    """
    return Field(strict=True, allow_inf_nan=False, gt=gt, ge=ge, le=le)


def count(*, le: int, ge: int = 1) -> FieldInfo:
    """An integer (not a boolean, not a float) in ``ge..le``; use as ``Annotated[int, count(...)]``."""
    return Field(strict=True, ge=ge, le=le)


def one_of(*allowed: int) -> GroupedMetadata:
    """An integer (not a boolean, not a float) that is one of ``allowed``; use as ``Annotated[int, one_of(...)]``."""

    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return _Constraints(Field(strict=True), AfterValidator(check))


def _no_control_characters(allowed: str):
    def check(value: str) -> str:
        bad = sorted({c for c in value if (c < " " or c == "\x7f") and c not in allowed})
        if bad:
            raise ValueError(f"must not contain control characters (found {', '.join(map(repr, bad))})")
        return value

    return check


def text(*, max_length: int = 200, min_length: int = 0, multiline: bool = False) -> GroupedMetadata:
    """A string (not a number or boolean) of ``min_length..max_length`` characters, without control characters.

    ``multiline`` text may also hold line breaks and tabs. Use as ``Annotated[str, text(...)]``.
    """
    return _Constraints(
        Field(strict=True, min_length=min_length, max_length=max_length),
        AfterValidator(_no_control_characters("\n\t" if multiline else "")),
    )


def _usable_path_text(value: str) -> str:
    if not value:
        raise ValueError("must not be empty")
    if any(c < " " or c == "\x7f" for c in value):
        raise ValueError("must not contain control characters")
    if len(value.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValueError(f"is too long for a path (at most {MAX_PATH_BYTES} bytes)")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in value.split("/"))
    if longest > MAX_NAME_BYTES:
        raise ValueError(f"has a name of {longest} bytes; at most {MAX_NAME_BYTES} bytes a name are allowed")
    return value


def _path_from_text(value: object) -> object:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        return Path(_usable_path_text(value))
    return value  # pydantic refuses it as "not a valid path"


#: A file name, path, or name of a bundled file (map, dialect, serial port), kept as text.
PathText = Annotated[str, Field(strict=True), AfterValidator(_usable_path_text)]
#: A path, given as text in the file.
FilePath = Annotated[Path, BeforeValidator(_path_from_text)]


def field_error(field: tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error of a cross-field rule, located at ``field`` below the model raising it."""
    return PydanticCustomError(FIELD_ERROR, "{message}", {"field": field, "message": message})
