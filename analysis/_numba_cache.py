"""Where numba keeps this package's compiled kernels, so that an installed package caches too.

numba's ``cache=True`` writes beside the source file (``__pycache__``). In a
package installed into a read-only site-packages that is impossible; numba then
tries ``~/.cache/numba`` and, when that fails too, raises at import time
("cannot cache function ...: no locator available"). This module picks the
location before a kernel is decorated, in this order:

1. ``NUMBA_CACHE_DIR`` when the user set it (numba's own rule, left alone);
2. ``__pycache__`` beside the source, when writable (source checkout, editable
   install, writable site-packages);
3. ``$XDG_CACHE_HOME/rem-daq/numba`` (default ``~/.cache/rem-daq/numba``);
4. ``<tempdir>/rem-daq-numba-<uid>``;
5. nowhere: the kernels are compiled without a cache (once per process).

Choices 3 and 4 are applied by setting ``numba.config.CACHE_DIR`` only while our
own kernels are decorated (numba binds a kernel to its cache directory at
decoration time), so other numba users in the process are not redirected.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numba
from numba.core import config as _numba_config

__all__ = ["cache_location", "njit_cached"]


def _configured_cache_dir() -> str:
    """numba's ``CACHE_DIR`` option (``""`` unless NUMBA_CACHE_DIR is set or a caller changed it)."""
    # numba.core.config fills in its options through globals() at import: invisible to a type checker
    return _numba_config.CACHE_DIR  # pyright: ignore[reportAttributeAccessIssue]  # set at run time by numba


def _set_configured_cache_dir(directory: str) -> None:
    _numba_config.CACHE_DIR = directory  # pyright: ignore[reportAttributeAccessIssue]  # set at run time by numba


def _writable_dir(path: Path) -> bool:
    """True when ``path`` exists or can be made, and a file can be created in it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
        return True
    except OSError:
        return False


def _user_cache_root() -> Path | None:
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg)
    home = os.environ.get("HOME") or os.path.expanduser("~")
    if not home or home == "~":
        return None
    return Path(home) / ".cache"


@functools.cache
def cache_location(source_file: str) -> tuple[str, str | None]:
    """Where kernels defined in ``source_file`` are cached: ``(kind, directory)``.

    ``kind`` is one of ``"NUMBA_CACHE_DIR"``, ``"in-tree"``, ``"user"``,
    ``"temp"`` or ``"none"`` (no cache; ``directory`` is then ``None``).
    """
    configured = _configured_cache_dir()
    if configured:
        return "NUMBA_CACHE_DIR", str(configured)
    in_tree = Path(source_file).resolve().parent / "__pycache__"
    if _writable_dir(in_tree):
        return "in-tree", str(in_tree)
    user_root = _user_cache_root()
    if user_root is not None:
        user_dir = user_root / "rem-daq" / "numba"
        if _writable_dir(user_dir):
            return "user", str(user_dir)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    temp_dir = Path(tempfile.gettempdir()) / f"rem-daq-numba-{uid}"
    if _writable_dir(temp_dir):
        return "temp", str(temp_dir)
    return "none", None


@contextlib.contextmanager
def _numba_cache_dir(directory: str) -> Iterator[None]:
    previous = _configured_cache_dir()
    _set_configured_cache_dir(directory)
    try:
        yield
    finally:
        _set_configured_cache_dir(previous)


def njit_cached(**options):
    """``numba.njit(cache=True, **options)`` with the cache placed by :func:`cache_location`."""

    def decorate(func):
        kind, directory = cache_location(inspect.getfile(func))
        if kind == "none" or directory is None:  # cache_location gives no directory only for "none"
            return numba.njit(cache=False, **options)(func)
        if kind in ("NUMBA_CACHE_DIR", "in-tree"):
            return numba.njit(cache=True, **options)(func)
        with _numba_cache_dir(directory):
            return numba.njit(cache=True, **options)(func)

    return decorate
