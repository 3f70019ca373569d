"""Read trial files, live (SWMR, while they are written) or closed.

The app, `remdaq show`, reanalysis and scripts share this one reader. It reads
only what is asked: new rows since a mark, or decimated slices (min/max per
bucket) of long traces, never a whole long dataset for a plot.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from ._bounded_hdf5 import checked_member, open_for_reading
from ._common import hdf5_text
from ._superblock import SuperblockError, read_superblock
from .layout import (
    FLAG_MODEL_MISMATCH,
    FLAG_NO_RARE_EARTHS,
    LEGACY_TARGET_ATTR,
    TABLES,
    TARGET_ELEMENT_ATTR,
    file_format_version,
    table,
    target_element,
)
from .store import writer_is_alive

__all__ = [
    "TrialReader",
    "TrialFileError",
    "FileIntegrity",
    "Decimated",
    "open_trial",
    "check_file",
    "NO_RARE_EARTHS",
    "NOT_RECORDED",
]

NO_RARE_EARTHS = "no rare earths in the cell"
"""What a purity that is NaN because the total oxide is below its quantitation limit is called."""
NOT_RECORDED = "not recorded"
"""What a value is called that the file's format version does not record (an optional column it lacks)."""

_LIVE_EOF_WAIT_S = 2.0
"""How long a file with a live writer may look shorter than its superblock says (a flush in progress)."""


class TrialFileError(OSError):
    """Not a readable rem-daq trial file (missing, damaged, still being created, or another format)."""


_Node = TypeVar("_Node", h5py.Group, h5py.Dataset)


@dataclass(frozen=True)
class FileIntegrity:
    """What a file says about itself against what is on disk, checked before HDF5 reads it."""

    file_size: int  # bytes on disk
    stored_eof: int | None  # bytes the superblock says the file has (None: an old superblock without it)
    writer_flags_set: bool  # the file says a writer has it open (running, or killed: `remdaq recover`)
    writer_alive: bool  # a process on this machine holds the writer lock

    @property
    def ends_where_it_says(self) -> bool:
        """True unless the file is shorter than its superblock says (truncated)."""
        return self.stored_eof is None or self.file_size >= self.stored_eof

    @property
    def needs_recovery(self) -> bool:
        """True for an interrupted file that HDF5 tools other than SWMR readers refuse to open."""
        return self.writer_flags_set and not self.writer_alive


def check_file(path: str | os.PathLike) -> FileIntegrity:
    """Check a trial file's superblock and length before opening it; :class:`TrialFileError` if damaged."""
    path = Path(path)
    deadline = time.monotonic() + _LIVE_EOF_WAIT_S
    while True:
        try:
            superblock = read_superblock(path)
            size = os.stat(path).st_size
        except FileNotFoundError:
            raise TrialFileError(f"{path}: no such trial file") from None
        except SuperblockError as error:
            raise TrialFileError(str(error)) from None
        except OSError as error:
            raise TrialFileError(f"{path}: cannot be read: {error}") from None
        integrity = FileIntegrity(size, superblock.stored_eof, superblock.writer_flags_set, writer_is_alive(path))
        if integrity.ends_where_it_says:
            return integrity
        if not integrity.writer_alive or time.monotonic() > deadline:
            raise TrialFileError(
                f"{path}: damaged: the file is {size} bytes long, short of the "
                f"{superblock.stored_eof} bytes its superblock records (truncated)"
            )
        time.sleep(0.05)  # a live writer is between extending the file and writing the superblock


def _member(path: Path, parent: h5py.Group, name: str, kind: type[_Node]) -> _Node:
    """``parent[name]``, which the trial layout says is a ``kind``; :class:`TrialFileError` if it is not."""
    return checked_member(
        parent, name, kind, lambda problem: TrialFileError(f"{path}: damaged or not a rem-daq trial file: {problem}")
    )


def _walk_metadata(handle: h5py.File) -> None:
    """Read every object header and attribute, so damaged metadata is found at open, not later."""

    def visit(_name, node):
        for key in node.attrs:
            node.attrs[key]  # noqa: B018 - reading is the check

    handle.visititems(visit)
    for key in handle.attrs:
        handle.attrs[key]  # noqa: B018


def _damage_reported(method):
    """HDF5 errors while reading an opened file become TrialFileError naming the file."""

    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except TrialFileError:
            raise
        except (OSError, RuntimeError) as error:
            raise TrialFileError(f"{self.path}: damaged: {error}") from None

    return guarded


@dataclass(frozen=True)
class Decimated:
    """A long trace reduced to buckets: time at each bucket's start, min and max of the values."""

    time_s: np.ndarray
    minimum: np.ndarray
    maximum: np.ndarray
    rows: int  # rows the trace had


_text = hdf5_text


class TrialReader:
    """An open trial file. Use as a context manager; call :meth:`refresh` to see new rows of a live file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.integrity = check_file(self.path)
        swmr = self.integrity.writer_alive or self.integrity.writer_flags_set
        try:
            self._file = open_for_reading(self.path, swmr=swmr)
        except (OSError, RuntimeError) as error:  # h5py raises RuntimeError for some corrupt superblocks
            raise TrialFileError(
                f"{self.path}: cannot be opened as a trial file (damaged, or still being created): {error}"
            ) from None
        try:
            if not self.integrity.writer_alive:
                _walk_metadata(self._file)
            entry = self._file["entry"] if "entry" in self._file else None
            if not isinstance(entry, h5py.Group) or "exit_status" not in entry:
                raise TrialFileError(f"{self.path}: not a rem-daq trial file (no /entry/exit_status)")
            self.format_version = file_format_version(_text(self._file["entry"].attrs.get("file_format", "")))
            """(major, minor) of the file's format; a column added after it reads as NaN."""
            self._absent = {
                (spec.name, c.name)
                for spec in TABLES
                for c in spec.columns
                if c.optional and c.name not in self._group(spec.group)
            }
            missing = [
                f"{spec.group}/{c.name}"
                for spec in TABLES
                for c in spec.columns
                if not c.optional and c.name not in self._group(spec.group)
            ]
            if missing:
                raise TrialFileError(f"{self.path}: damaged or incomplete trial file: no {', '.join(missing)}")
            self.refresh()
        except TrialFileError:
            self._file.close()
            raise
        except (KeyError, OSError, RuntimeError) as error:
            self._file.close()
            raise TrialFileError(f"{self.path}: damaged or incomplete trial file: {error}") from None

    def _group(self, name: str) -> h5py.Group:
        """The group at ``name`` (a path from the file's root); :class:`TrialFileError` if it is something else."""
        return _member(self.path, self._file, name, h5py.Group)

    def _dataset(self, name: str) -> h5py.Dataset:
        """The dataset at ``name`` (a path from the file's root); :class:`TrialFileError` if it is something else."""
        return _member(self.path, self._file, name, h5py.Dataset)

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrialReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @_damage_reported
    def refresh(self) -> None:
        """See what the writer has flushed since the last refresh."""
        if not self._file.swmr_mode:
            return  # a closed file does not grow
        for spec in TABLES:
            group = self._group(spec.group)
            for column in spec.columns:
                if (spec.name, column.name) not in self._absent:
                    _member(self.path, group, column.name, h5py.Dataset).refresh()
        entry = self._group("entry")
        for name in ("exit_status", "end_time", "heartbeat_time"):
            _member(self.path, entry, name, h5py.Dataset).refresh()

    # -- metadata and state -----------------------------------------------------------

    @property
    def metadata(self) -> dict[str, object]:
        """The /entry attributes (title, trial_id, start_time, operator, sample, recipe, ...)."""
        return {
            key: (_text(value) if isinstance(value, (bytes, str)) else value)
            for key, value in self._file["entry"].attrs.items()
        }

    @property
    def exit_status(self) -> str:
        """As written: running, success, aborted or failed."""
        return _text(self._dataset("entry/exit_status")[()])

    @property
    def end_time(self) -> str:
        return _text(self._dataset("entry/end_time")[()])

    @property
    def heartbeat_time(self) -> str:
        return _text(self._dataset("entry/heartbeat_time")[()])

    @property
    def state(self) -> str:
        """running, success, aborted, failed, or interrupted (no clean-end mark and no live writer)."""
        status = self.exit_status
        if status != "running":
            return status
        return "running" if writer_is_alive(self.path) else "interrupted"

    @property
    def wavelength_nm(self) -> np.ndarray:
        return self._dataset("entry/instrument/spectrometer/wavelength")[()]

    @property
    def full_scale_counts(self) -> float | None:
        """The detector's saturation level the file records (None: not recorded)."""
        value = self._file["entry/instrument/spectrometer"].attrs.get("full_scale_counts")
        if value is None:
            return None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    @property
    def analytes(self) -> tuple[str, ...]:
        return tuple(_text(a) for a in self._dataset("entry/analysis/analytes")[()])

    @property
    def target_element(self) -> str:
        """The element whose oxide purity the trial computes (e.g. "Nd"), in a file of any 1.x version.

        ``/entry/analysis@target_element`` since 1.2; in older files the symbol is in ``@target``.
        """
        return target_element(self._file["entry/analysis"].attrs)

    @property
    def analysis_attrs(self) -> dict[str, str]:
        """The /entry/analysis attributes as text, the target element under both of its names.

        ``target_element`` (the attribute since format 1.2) and ``target`` (its name before 1.2, kept here so
        code written against older files reads every file alike) both hold the element symbol.
        """
        attrs = {k: _text(v) for k, v in self._file["entry/analysis"].attrs.items()}
        element = self.target_element
        attrs[TARGET_ELEMENT_ATTR] = attrs[LEGACY_TARGET_ATTR] = element
        return attrs

    def has_column(self, table_name: str, column: str) -> bool:
        """Whether the file records this column (False for a column added after the file's format version)."""
        table(table_name).column(column)
        return (table_name, column) not in self._absent

    @property
    def fit_coefficient_names(self) -> tuple[str, ...]:
        """The names of the columns of /entry/analysis/fit_coefficients (empty when not recorded)."""
        if not self.has_column("analysis", "fit_coefficients"):
            return ()
        text = _text(self._file["entry/analysis/fit_coefficients"].attrs.get("column_names", ""))
        return tuple(name.strip() for name in text.split(",")) if text.strip() else ()

    @_damage_reported
    def calibration_arrays(self) -> dict[str, np.ndarray]:
        """The copy of the calibration used live, as stored in /entry/analysis/calibration."""
        group = self._group("entry/analysis/calibration")
        return {name: _member(self.path, group, name, h5py.Dataset)[()] for name in group.keys()}

    # -- rows -----------------------------------------------------------------------

    @_damage_reported
    def rows(self, table_name: str) -> int:
        """Rows of a table that every column already holds (columns grow one after another)."""
        spec = table(table_name)
        group = self._group(spec.group)
        return min(
            _member(self.path, group, c.name, h5py.Dataset).shape[0]
            for c in spec.columns
            if (spec.name, c.name) not in self._absent
        )

    def dataset(self, table_name: str, column: str) -> h5py.Dataset:
        """The h5py dataset of one column, for slicing it yourself (KeyError: the file does not record it)."""
        spec = table(table_name)
        declared = spec.column(column)
        if (table_name, column) in self._absent:
            raise KeyError(
                f"{self.path}: {spec.group}/{column} {NOT_RECORDED}: the file's format "
                f"{'.'.join(map(str, self.format_version))} predates it (added in "
                f"{'.'.join(map(str, declared.since))})"
            )
        return _member(self.path, self._group(spec.group), column, h5py.Dataset)

    @_damage_reported
    def read(
        self, table_name: str, start: int = 0, stop: int | None = None, columns: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        """Rows ``start:stop`` of a table as {column: array}; text columns come back as str.

        A column the file does not record (added after its format version) comes back as NaN.
        """
        spec = table(table_name)
        available = self.rows(table_name)
        stop = available if stop is None else min(stop, available)
        start = min(max(start, 0), stop)
        names = columns or tuple(c.name for c in spec.columns)
        group = self._group(spec.group)
        out = {}
        for name in names:
            column = spec.column(name)
            if (table_name, name) in self._absent:
                out[name] = np.full((stop - start, *column.shape(0, len(self.analytes), 0)), np.nan)
                continue
            values = _member(self.path, group, name, h5py.Dataset)[start:stop]
            if values.dtype.kind == "S":
                values = np.array([_text(v) for v in values], dtype=object)
            out[name] = values
        return out

    def read_new(
        self, table_name: str, mark: int, columns: tuple[str, ...] | None = None
    ) -> tuple[dict[str, np.ndarray], int]:
        """Rows added since ``mark`` (a row count from an earlier call; 0 at first) and the new mark."""
        stop = self.rows(table_name)
        return self.read(table_name, mark, stop, columns), stop

    @_damage_reported
    def decimated(
        self,
        table_name: str,
        column: str,
        max_points: int = 2000,
        start: int = 0,
        stop: int | None = None,
        component: int | None = None,
    ) -> Decimated:
        """Min/max per bucket of one column over rows ``start:stop``, at most ``max_points`` buckets.

        Reads the column in strided blocks, so memory stays bounded for any trial length.
        ``component`` picks one entry of a per-row vector (e.g. one analyte's concentration).
        """
        total = self.rows(table_name)
        stop = total if stop is None else min(stop, total)
        start = min(max(start, 0), stop)
        count = stop - start
        group = self._group(table(table_name).group)
        if count == 0 or (table_name, column) in self._absent:
            empty = np.empty(0)
            return Decimated(empty, empty, empty, 0)
        values_ds = _member(self.path, group, column, h5py.Dataset)
        time_ds = _member(self.path, group, "time", h5py.Dataset)
        bucket = max(1, -(-count // max_points))
        buckets = -(-count // bucket)
        minimum = np.empty(buckets)
        maximum = np.empty(buckets)
        block_rows = max(bucket, (1 << 20) // bucket * bucket)  # ~1M rows per read, whole buckets
        out = 0
        for block_start in range(start, stop, block_rows):
            block_stop = min(stop, block_start + block_rows)
            values = (
                values_ds[block_start:block_stop] if component is None else values_ds[block_start:block_stop, component]
            )
            values = np.asarray(values, dtype=float)
            n_full = len(values) // bucket
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bucket is NaN
                if n_full:
                    shaped = values[: n_full * bucket].reshape(n_full, bucket)
                    minimum[out : out + n_full] = np.nanmin(shaped, axis=1)
                    maximum[out : out + n_full] = np.nanmax(shaped, axis=1)
                    out += n_full
                if len(values) % bucket:
                    rest = values[n_full * bucket :]
                    minimum[out], maximum[out] = np.nanmin(rest), np.nanmax(rest)
                    out += 1
        time_s = time_ds[start:stop:bucket]
        return Decimated(np.asarray(time_s[:buckets], dtype=float), minimum[:buckets], maximum[:buckets], count)

    def events(self, start: int = 0) -> dict[str, np.ndarray]:
        """The event log (time, level, source, message) from row ``start``."""
        return self.read("events", start)

    @_damage_reported
    def summary(self) -> dict[str, object]:
        """A short account of the trial: identity, state, rows, final and mean purity."""
        meta = self.metadata
        purity_rows = self.rows("analysis")
        purity = self.dataset("analysis", "purity")[max(0, purity_rows - 1) : purity_rows] if purity_rows else []
        fit = self.fit_summary()
        return {
            "file": str(self.path),
            "trial_id": meta.get("trial_id", ""),
            "title": meta.get("title", ""),
            "sample": meta.get("sample", ""),
            "operator": meta.get("operator", ""),
            "start_time": meta.get("start_time", ""),
            "end_time": self.end_time,
            "state": self.state,
            "target": self.target_element,
            "covered_elements": self.analysis_attrs.get("covered_elements", ""),
            "furnace_rows": self.rows("furnace"),
            "spectra": self.rows("spectrometer"),
            "events": self.rows("events"),
            "final_purity": float(purity[-1]) if len(purity) else float("nan"),
            "needs_recovery": self.integrity.needs_recovery,
            **fit,
        }

    @_damage_reported
    def fit_summary(self) -> dict[str, object]:
        """What the model vouches for at the end and over the trial (a format 1.1 file; else "not recorded").

        - ``final_purity_note``: "no rare earths in the cell" when the last spectrum's purity is NaN because
          the total oxide was below its quantitation limit (flag 32), else "".
        - ``final_lack_of_fit``: the last spectrum's lack of fit (NaN: not recorded or not computed).
        - ``model_mismatch_fraction``: the fraction of spectra flagged model mismatch (flag 16), NaN when the
          file's format does not record the flag (before 1.1) or there are no spectra.
        """
        recorded = self.format_version >= (1, 1)
        spectra = self.rows("spectrometer")
        flags = self.dataset("spectrometer", "flag")[:spectra] if recorded and spectra else np.zeros(0, np.uint8)
        analysed = self.rows("analysis")
        lack = math.nan
        if analysed and self.has_column("analysis", "lack_of_fit"):
            lack = float(self.dataset("analysis", "lack_of_fit")[analysed - 1])
        last = min(analysed, flags.size) - 1  # the spectrum of the last analysis row
        last_flag = int(flags[last]) if last >= 0 else 0
        return {
            "final_purity_note": NO_RARE_EARTHS if last_flag & FLAG_NO_RARE_EARTHS else "",
            "final_lack_of_fit": lack,
            "model_mismatch_fraction": (
                float(np.count_nonzero(flags & FLAG_MODEL_MISMATCH)) / flags.size if flags.size else math.nan
            ),
            "fit_recorded": recorded,
        }


def open_trial(path: str | os.PathLike) -> TrialReader:
    """Open a trial file for reading (works while it is still being written)."""
    return TrialReader(path)
