"""Pydantic schemas for instrument map files, with errors in the words of the file: ``field: problem``.

The same rules as station files (``daq/_config_fields.py``; ``drivers`` may not
import ``daq``, so the few pieces are here): every key is known (an unknown one
is ``unknown key``, with the keys allowed there), every number has a type and a
range (a TOML ``true`` is not 1; an integer is accepted where a float is wanted,
never the reverse; no inf or nan), text is bounded and free of control
characters. :func:`problems` turns a ``ValidationError`` into one
``(field, problem)`` pair per error, all of them, with fields written as in the
file (``registers.process_value.min``).
"""

from __future__ import annotations

import re
import types
import typing
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from ._text_file import shorten

__all__ = [
    "StrictModel",
    "text",
    "name",
    "Description",
    "Name",
    "NO_CONTROL_CHARACTERS",
    "field_error",
    "problems",
    "FIELD_ERROR",
]

#: Pydantic error type of :func:`field_error`; ``ctx["field"]`` is the field path below the model raising it.
FIELD_ERROR = "map_field"

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class StrictModel(BaseModel):
    """A table of a map file: unknown keys refused, values of exactly their type, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _no_control_characters(value: str) -> str:
    bad = sorted({c for c in value if c < " " or c == "\x7f"})
    if bad:
        raise ValueError(f"must not contain control characters (found {', '.join(map(repr, bad))})")
    return value


#: The check of :func:`text`, for a text type written out (``Annotated[str, Field(...), NO_CONTROL_CHARACTERS]``):
#: a type checker reads a written-out ``Annotated`` as ``str``, never a call such as ``text(...)``.
NO_CONTROL_CHARACTERS = AfterValidator(_no_control_characters)


def text(*, max_length: int = 200, min_length: int = 0) -> Any:
    """A string of ``min_length..max_length`` characters without control characters."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length), NO_CONTROL_CHARACTERS]


def name(*, max_length: int = 64) -> Any:
    """A name such as a register name: lower-case letters, digits and ``_``, starting with a letter."""
    return Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", min_length=1, max_length=max_length)]


#: ``text(max_length=500)``: a description, documentation only.
Description = Annotated[str, Field(min_length=0, max_length=500), NO_CONTROL_CHARACTERS]
#: ``name()``: a name such as a register name.
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", min_length=1, max_length=64)]


def field_error(field: tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error of a cross-field rule, located at ``field`` below the model raising it."""
    return PydanticCustomError(FIELD_ERROR, "{message}", {"field": field, "message": message})


def _key_text(part: str | int) -> str:
    return str(part) if isinstance(part, int) or _BARE_KEY.match(part) else f'"{part}"'


def field_name(location: tuple) -> str:
    """A pydantic location as the file writes it: ``registers.process_value.min``, ``models[0]``."""
    written = ""
    for part in location:
        if isinstance(part, int):
            written += f"[{part}]"
        elif part != "[key]" and not part.startswith(("function-", "literal[")):
            written += f".{_key_text(part)}" if written else _key_text(part)
    return written or "(top level)"


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str) and len(value) > 60:
        return f"a text of {len(value)} characters starting {value[:40]!r}"
    return shorten(repr(value))


def _unwrap(annotation: Any) -> list[Any]:
    """The types an annotation may hold (Annotated and unions taken apart)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _model_at(root: type[BaseModel], location: tuple) -> type[BaseModel] | None:
    """The model class of the table at ``location`` below ``root`` (None if it is not a table of a model)."""
    current: list[Any] = [root]
    for part in location:
        following: list[Any] = []
        for candidate in current:
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                field = candidate.model_fields.get(part) if isinstance(part, str) else None
                if field is not None:
                    following += _unwrap(field.annotation)
            elif typing.get_origin(candidate) is dict:
                following += _unwrap(typing.get_args(candidate)[1])
        current = following
    models = [c for c in current if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if models else None


def _allowed(root: type[BaseModel], location: tuple) -> str:
    model = _model_at(root, location)
    return f"; allowed: {', '.join(model.model_fields)}" if model is not None else ""


def _context(item: ErrorDetails) -> dict[str, Any]:
    """The ``ctx`` of an error whose type always has one (a KeyError, as indexing gives, if it has not)."""
    context = item.get("ctx")
    if context is None:
        raise KeyError("ctx")
    return context


def problems(error: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """``(field, problem)`` for each error of validating a document as ``root``, in the words of the file."""
    found = []
    for item in error.errors():
        location = tuple(item["loc"])
        kind = item["type"]
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if kind == FIELD_ERROR:
            location += tuple(_context(item)["field"])
        elif kind == "extra_forbidden":
            message = f"unknown key (check the spelling{_allowed(root, location[:-1])})"
        elif kind == "literal_error" and location and location[-1] == "[key]":
            message = f"unknown key (check the spelling; allowed: {_context(item)['expected']})"
        elif kind == "missing":
            message = "missing required key"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            message = f"must be a table (got {_describe(value)})"
        elif kind in ("float_type", "int_type") and isinstance(value, bool):
            message = f"expected a number, not a boolean (got {_describe(value)})"
        elif "input" in item and not isinstance(value, dict):
            message += f" (got {_describe(value)})"
        found.append((field_name(location), message))
    return found
