"""Find and read instrument maps (register maps, SCPI dialects) kept in ``hardware/maps``.

A map is a TOML file; another controller or spectrometer is a new map, not new
code. ``REMDAQ_HARDWARE_DIR`` points at another ``hardware`` folder; by default
the one beside the installed packages (the source checkout) is used. A map is
read as untrusted input (:mod:`drivers._text_file`): only a small regular file.

A map may say ``extends = "<name or path>"`` (register maps do, decision 0058):
:func:`find_parent_map` finds the parent and :func:`deep_merge` lays the child
over it (tables merge key by key, every other value replaces).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ._text_file import UnreadableFileError, is_regular_file, read_small_toml_file, shorten

__all__ = [
    "effective_document",
    "MapError",
    "MAX_EXTENDS_DEPTH",
    "hardware_dir",
    "maps_dir",
    "known_maps",
    "find_map",
    "load_map",
    "find_parent_map",
    "deep_merge",
]

#: Most maps in one ``extends`` chain, the map itself included (a guard against runaway chains).
MAX_EXTENDS_DEPTH = 8


class MapError(ValueError):
    """A map that cannot be found, read or understood; the message names the map or its file.

    A map file that is read but wrong is reported with :meth:`in_file`: ``path`` is
    the file, ``problems`` its ``field: problem`` lines (all of them, not only the
    first), and the message is one ``path: field: problem`` line per problem.
    """

    def __init__(self, message: str, *, path: Path | None = None, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.path = path
        self.problems = tuple(problems)

    @classmethod
    def in_file(cls, path: str | os.PathLike, problems) -> MapError:
        """The error of the map file ``path``; ``problems`` are ``(field, problem)`` pairs."""
        lines = tuple(f"{field}: {problem}" for field, problem in problems)
        where = shorten(os.fspath(path), 512)
        return cls("\n".join(f"{where}: {line}" for line in lines), path=Path(path), problems=lines)


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
    return [
        path.stem
        for path in sorted(maps_dir().glob("*.toml"))
        if required_table is None or _has_table(path, required_table)
    ]


def _has_table(path: Path, table: str) -> bool:
    """Whether the map ``path``, or a map it extends, has the table ``[table]`` (False if unreadable)."""
    seen: set[Path] = set()
    for _ in range(MAX_EXTENDS_DEPTH):
        try:
            document = read_small_toml_file(path)
        except UnreadableFileError:
            return False
        if isinstance(document.get(table), dict):
            return True
        parent = document.get("extends")
        if not isinstance(parent, str) or path.resolve() in seen:
            return False
        seen.add(path.resolve())
        try:
            path = find_parent_map(path, parent)
        except MapError:
            return False
    return False


def find_map(name_or_path: str | os.PathLike, kind: str = "instrument map", required_table: str | None = None) -> Path:
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


def find_parent_map(
    child: str | os.PathLike, name: str, kind: str = "instrument map", required_table: str | None = None
) -> Path:
    """The map that ``extends = name`` in the map file ``child`` names.

    A name ending in ``.toml`` is a path, relative to the child's folder; a bare
    name is looked up beside the child first, then in :func:`maps_dir`. A
    :class:`MapError` (without the child's file: the caller adds it) otherwise.
    """
    folder = Path(child).parent
    try:
        if name.endswith(".toml"):
            candidate = folder / name
            if is_regular_file(candidate):
                return candidate
        elif "/" not in name and name not in ("", ".", ".."):
            for candidate in (folder / f"{name}.toml", maps_dir() / f"{name}.toml"):
                if is_regular_file(candidate):
                    return candidate
    except UnreadableFileError as error:
        raise MapError(f"{kind} {shorten(name)!r}: {error.problem}") from None
    raise MapError(
        f"no {kind} {shorten(name)!r} beside this file or in {shorten(str(maps_dir()))} "
        f"(known: {', '.join(known_maps(required_table)) or 'none'})"
    )


def deep_merge(parent: dict, child: dict) -> dict:
    """``child`` laid over ``parent``: a table in both is merged key by key (recursively); any other value
    of the child (text, number, boolean, array, or a table where the parent has none) replaces the parent's."""
    merged = dict(parent)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def effective_document(
    path: Path,
    *,
    read: Callable[[Path], dict],
    find_parent: Callable[[Path, str], Path],
    validate: Callable[[Path, dict], object],
    inherit: Callable[[dict, dict], dict],
    kind: str,
    chain: tuple[Path, ...] = (),
) -> dict:
    """The content of the map file ``path`` with what it ``extends`` laid under it: ``inherit(parent, own)``.

    A parent must be a complete, valid map by itself (``validate``): its problems are reported with its own
    file. ``chain`` holds the files already on the way (a cycle, or a chain longer than
    :data:`MAX_EXTENDS_DEPTH`, is a :class:`MapError` of the ``extends`` field).
    """
    raw = read(path)
    chain = (*chain, path.resolve())
    if "extends" not in raw:
        return raw
    parent_name = raw["extends"]
    if not isinstance(parent_name, str) or not parent_name:
        raise MapError.in_file(path, [("extends", f"must be the name or path of a {kind} (got {parent_name!r:.60})")])
    try:
        parent_path = find_parent(path, parent_name)
    except MapError as error:
        raise MapError.in_file(path, [("extends", str(error))]) from None
    if parent_path.resolve() in chain:
        names = " -> ".join(p.stem for p in (*chain, parent_path))
        raise MapError.in_file(path, [("extends", f"a cycle: {names}")])
    if len(chain) >= MAX_EXTENDS_DEPTH:
        raise MapError.in_file(path, [("extends", f"more than {MAX_EXTENDS_DEPTH} maps in one extends chain")])
    parent = effective_document(
        parent_path, read=read, find_parent=find_parent, validate=validate, inherit=inherit, kind=kind, chain=chain
    )
    validate(parent_path, parent)
    return inherit(parent, raw)
