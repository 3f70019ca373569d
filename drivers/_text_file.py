"""Read a small text file that someone else wrote: a station, recipe, map, scenario or standards file.

Such a path may name anything: a named pipe (which blocks a plain ``open`` for
ever), a device (``/dev/zero`` never ends), a folder, a huge file, or a name too
long for the file system. Only a regular file of at most ``max_bytes`` is read;
everything else is refused at once with an :class:`UnreadableFileError` whose
message says what the path is and what is allowed. Nothing here blocks: the
kind of file is checked with ``os.stat`` before it is opened, and it is opened
with ``O_NONBLOCK`` in case it was swapped for a pipe in between.

Shared by ``drivers`` (maps, dialects, scenarios) and ``daq`` (station, recipe
and standards files), which may import ``drivers`` but not the other way round.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib

__all__ = [
    "MAX_TEXT_FILE_BYTES",
    "UnreadableFileError",
    "is_regular_file",
    "read_small_text_file",
    "read_small_toml_file",
    "shorten",
]

#: Largest station, recipe, map, scenario or standards file read (the shipped ones are a few kB).
MAX_TEXT_FILE_BYTES = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class UnreadableFileError(ValueError):
    """A path that is not a small regular text file; ``problem`` says why, without the path."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{shorten(os.fspath(path), 512)}: {problem}")


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to about ``limit`` characters for an error message, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}...{text[-limit // 4 :]} ({len(text)} characters)"


def _kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _os_problem(error: OSError | ValueError) -> str:
    if isinstance(error, ValueError):  # os.stat refuses a path with a NUL character
        return "the path contains a NUL character"
    if error.errno == errno.ENOENT:
        return "file not found"
    if error.errno == errno.EACCES or error.errno == errno.EPERM:
        return "cannot be read (permission denied)"
    if error.errno == errno.ENAMETOOLONG:
        return "the path or one of its names is too long for the file system (at most 255 bytes a name)"
    if error.errno == errno.ENOTDIR:
        return "a part of the path is not a folder"
    if error.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return f"cannot be read: {error.strerror or error}"


def is_regular_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file (for lookups); False if nothing is there.

    Raises :class:`UnreadableFileError` if something other than a regular file is
    there (a pipe, a device, a folder) or the path itself is unusable (too long, NUL
    character), so that a lookup never silently falls back past such a path.
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError) as error:
        if isinstance(error, OSError) and error.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        raise UnreadableFileError(path, _os_problem(error)) from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFileError(path, f"is {_kind_of(info.st_mode)}, not a regular file")
    return True


def _refuse_unless_small_regular(path, info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFileError(path, f"is {_kind_of(info.st_mode)}, not a regular file")
    if info.st_size > max_bytes:
        raise UnreadableFileError(path, f"is {info.st_size} bytes; at most {max_bytes} bytes are allowed")


def read_small_text_file(path: str | os.PathLike, *, max_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` of at most ``max_bytes``; never blocks.

    Raises :class:`UnreadableFileError` for anything else (missing, a pipe, a
    device, a folder, too big, not UTF-8, an unusable path).
    """
    try:
        info = os.stat(path)
    except (OSError, ValueError) as error:
        raise UnreadableFileError(path, _os_problem(error)) from None
    _refuse_unless_small_regular(path, info, max_bytes)
    try:  # O_NONBLOCK: should the file have become a pipe since the stat, opening it does not wait for a writer
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        raise UnreadableFileError(path, _os_problem(error)) from None
    try:
        _refuse_unless_small_regular(path, os.fstat(descriptor), max_bytes)  # swapped since the stat?
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(descriptor, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise UnreadableFileError(path, _os_problem(error)) from None
    finally:
        os.close(descriptor)
    if size > max_bytes:
        raise UnreadableFileError(path, f"grew beyond {max_bytes} bytes while being read")
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFileError(path, f"not UTF-8 text: {error}") from None


def read_small_toml_file(path: str | os.PathLike, *, max_bytes: int = MAX_TEXT_FILE_BYTES) -> dict:
    """The TOML document in the regular file ``path`` (see :func:`read_small_text_file`).

    Raises :class:`UnreadableFileError` also for invalid TOML, tables nested too
    deeply for the parser, and integers too long to convert.
    """
    text = read_small_text_file(path, max_bytes=max_bytes)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UnreadableFileError(path, f"not valid TOML: {error}") from None
    except RecursionError:
        raise UnreadableFileError(path, "not valid TOML here: arrays or tables nested too deeply") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise UnreadableFileError(path, f"not valid TOML here: {shorten(str(error), 120)}") from None
