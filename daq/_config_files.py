"""Reading a TOML config file into a validated model, with every problem as ``file: field: problem``.

Shared by station, recipe and standards files: :class:`ConfigError` (what the
user sees), :func:`load_toml_model` (a main table and named sub-tables) and
:func:`table_problems` (one table validated on its own, its problems under a
prefix, as for each ``[[instrument]]`` of a station).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from drivers import UnreadableFileError, read_small_toml_file, shorten

from ._config_fields import FIELD_ERROR

__all__ = ["ConfigError", "Strict", "read_toml", "validation_problems", "load_toml_model", "validate_table"]

_Model = TypeVar("_Model", bound=BaseModel)


class ConfigError(ValueError):
    """A station or recipe file is unreadable or wrong; the message names file and field."""

    def __init__(self, path: str | os.PathLike, problems: list[str]):
        self.path = Path(path)
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        where = shorten(str(self.path), 512)
        super().__init__(
            f"{where}: {len(problems)} problem(s):\n{lines}" if len(problems) > 1 else f"{where}: {problems[0]}"
        )


class Strict(BaseModel):
    """A file's table: unknown fields refused, values frozen once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_toml(path: Path) -> dict:
    try:
        return read_small_toml_file(path)
    except UnreadableFileError as error:
        raise ConfigError(path, [error.problem]) from None


def _field_name(location: tuple) -> str:
    name = ""
    for part in location:
        if isinstance(part, int):
            name += f"[{part}]"
        elif isinstance(part, str) and part != "[key]" and not part.startswith(("function-", "literal[")):
            name += f".{part}" if name else part
    return name or "(top level)"


def _describe(value: object) -> str:
    """A value from a file as an error message shows it: short, a long text by its start and length."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and len(value) > 60:
        return f"a text of {len(value)} characters starting {value[:40]!r}"
    return shorten(repr(value))


def validation_problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field below the model, message) for each validation error, in the words of the file."""
    problems = []
    for item in error.errors():
        location = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        value = item.get("input")
        if item["type"] == FIELD_ERROR:
            location += tuple(item.get("ctx", {})["field"])
        elif item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling)"
        elif item["type"] == "missing":
            message = "missing required field"
        elif item["type"] in ("float_type", "int_type") and isinstance(value, bool):
            message = f"expected a number, not a boolean (got {_describe(value)})"
        elif item["type"] == "path_type":
            message = f"expected a path as text (got {_describe(value)})"
        elif (
            "input" in item
            and item["type"] not in ("missing", "model_type", FIELD_ERROR)
            and not isinstance(value, dict)
        ):
            message += f" (got {_describe(value)})"
        problems.append((_field_name(location), message))
    return problems


def load_toml_model(
    path: str | os.PathLike,
    model: type[_Model],
    main_table: str,
    main_hint: str,
    sub_tables: dict[str, str],
    unknown: str = "unknown table",
) -> _Model:
    """Read a TOML file made of one main table and named sub-tables, and validate it as ``model``.

    Fields of the main table become the model's fields; each sub-table goes into the
    model field ``sub_tables[name]``. Every problem names the file and the field as
    written in the file (``main_table.field`` or ``sub_table.field``).
    """
    path = Path(path)
    raw = read_toml(path)
    main = raw.pop(main_table, None)
    problems = [
        f"{name}: {unknown}; allowed: {', '.join([main_table, *sub_tables])}" for name in raw if name not in sub_tables
    ]
    if main is None:
        problems.insert(0, f"{main_table}: missing [{main_table}] table ({main_hint})")
    elif not isinstance(main, dict):
        problems.insert(0, f"{main_table}: must be a [{main_table}] table ({main_hint}), not {shorten(repr(main))}")
    else:
        problems += [
            f"{main_table}.{name}: unknown field (check the spelling)"
            for name in main
            if name == "source" or name in sub_tables.values()
        ]
    if problems or not isinstance(main, dict):  # main is a table whenever there are no problems
        raise ConfigError(path, problems)
    try:
        return model.model_validate({**main, **{sub_tables[k]: v for k, v in raw.items()}, "source": path})
    except ValidationError as error:
        sub_fields = {field_name: table_name for table_name, field_name in sub_tables.items()}
        located = []
        for head, message in validation_problems(error):
            root = head.split(".", 1)[0].split("[", 1)[0]
            if head == "(top level)":
                head = main_table
            elif root in sub_fields:
                head = sub_fields[root] + head[len(root) :]
            else:
                head = f"{main_table}.{head}"
            located.append(f"{head}: {message}")
        raise ConfigError(path, located) from None


def validate_table(model: type[_Model], table: dict, prefix: str, **given) -> _Model | list[str]:
    """``table`` validated as ``model`` (with the loader's ``given`` fields), or its ``prefix.field: problem`` lines."""
    try:
        return model.model_validate({**table, **given})
    except ValidationError as error:
        return [
            f"{prefix}: {message}" if head == "(top level)" else f"{prefix}.{head}: {message}"
            for head, message in validation_problems(error)
        ]
