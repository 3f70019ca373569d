"""Read trial files, live (SWMR, while they are written) or closed.

The app, `remdaq show`, reanalysis and scripts share this one reader. It reads
only what is asked: new rows since a mark, or decimated slices (min/max per
bucket) of long traces, never a whole long dataset for a plot.

It reads every format: 1.0, 1.1, 1.2 (one furnace, one spectrometer, one
analysis) and 2.0 (one group per instrument, one analysis per spectrometer
stream). Tables are named by keys: ``"furnace"``, ``"spectrometer"``, ``"dark"``,
``"reference"``, ``"analysis"``, ``"events"`` are the primary instrument's (the
first of its kind in the station) and the first stream's, as in a 1.x file;
``"<table>:<instrument>"`` any instrument's (``"furnace:zone-2"``,
``"analysis:strip"``, ``"sensor:feed-ph"``; ``"sensor"`` is the first sensor's).
A 1.x file has the instruments ``furnace`` and ``spectrometer`` and the stream
``spectrometer``. What describes an instrument or a stream (its attributes, a
spectrometer's wavelength axis, a stream's analytes and target, a sensor's
channels) is one call: :meth:`TrialReader.spectrometer`, :meth:`TrialReader.stream`,
:meth:`TrialReader.sensor`, :meth:`TrialReader.instrument`, each defaulting to
the primary one; the properties of 1.x (``wavelength_nm``, ``analytes``,
``target_element``, ...) are the primary ones'.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

import h5py
import numpy as np

from ._bounded_hdf5 import checked_member, open_for_reading
from ._common import hdf5_text
from ._superblock import SuperblockError, read_superblock
from .layout import (
    ANALYSIS_GROUP,
    CHANNELS_ATTR,
    FLAG_MODEL_MISMATCH,
    FLAG_NO_RARE_EARTHS,
    INSTRUMENT_GROUP,
    INSTRUMENT_KINDS,
    INSTRUMENT_NAMES_ATTR,
    KIND_ATTR,
    LEGACY_TARGET_ATTR,
    OLDER_FORM_NAMES,
    READABLE_MAJOR_VERSIONS,
    STREAM_ATTR,
    TABLES,
    TARGET_ELEMENT_ATTR,
    Table,
    analysis_group,
    analysis_table,
    file_format_version,
    instrument_group,
    instrument_table,
    sensor_table,
    table,
    table_key,
    target_element,
    unknown_table_message,
)
from .store import writer_is_alive

__all__ = [
    "TrialReader",
    "TrialFileError",
    "FileIntegrity",
    "Decimated",
    "Instrument",
    "InstrumentInfo",
    "SpectrometerInfo",
    "SensorChannel",
    "SensorInfo",
    "StreamInfo",
    "open_trial",
    "check_file",
    "NO_RARE_EARTHS",
    "NOT_RECORDED",
]

NO_RARE_EARTHS = "no rare earths in the cell"
"""What a purity that is NaN because the total oxide is below its quantitation limit is called."""
NOT_RECORDED = "not recorded"
"""What a value is called that the file's format version does not record (an optional column it lacks)."""


def _full_scale(attrs) -> float | None:
    """A spectrometer group's ``full_scale_counts`` (None: not recorded, or not a positive number)."""
    value = attrs.get("full_scale_counts")
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


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


class Instrument(NamedTuple):
    """One instrument of a trial: its name (as in the station) and kind; unpacks as ``(name, kind)``."""

    name: str
    kind: str  # temperature_controller | spectrometer | sensor


@dataclass(frozen=True)
class InstrumentInfo:
    """An instrument's group: name, kind, HDF5 path, and its attributes (text as str)."""

    name: str
    kind: str
    group: str
    attrs: dict[str, object]


@dataclass(frozen=True)
class SpectrometerInfo:
    """A spectrometer: its wavelength axis (P,) nm, the saturation level it records (None: not recorded)."""

    name: str
    group: str
    wavelength_nm: np.ndarray
    full_scale_counts: float | None
    attrs: dict[str, object]

    @property
    def pixels(self) -> int:
        return int(len(self.wavelength_nm))


@dataclass(frozen=True)
class SensorChannel:
    """One channel of a sensor: the name of its dataset (its state is ``<name>_state``), units, long name."""

    name: str
    units: str
    long_name: str


@dataclass(frozen=True)
class SensorInfo:
    """A sensor: its channels in the sensor map's order, and its attributes."""

    name: str
    group: str
    channels: tuple[SensorChannel, ...]
    attrs: dict[str, object]


@dataclass(frozen=True)
class StreamInfo:
    """One analysed spectrometer stream: its analysis group and table key, and what it analyses with.

    ``attrs`` are the group's attributes as text, the target element under both of its names
    (``target_element``, ``target``), as :attr:`TrialReader.analysis_attrs` gives them.
    """

    spectrometer: str
    group: str
    key: str  # "analysis" (the first stream) or "analysis:<spectrometer>"
    analytes: tuple[str, ...]
    target_element: str
    attrs: dict[str, str]
    fit_coefficient_names: tuple[str, ...]
    fit_coefficient_units: tuple[str, ...]


def _attr_value(value):
    return _text(value) if isinstance(value, (bytes, str)) else value


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated attribute as its names ("" -> ())."""
    return tuple(name.strip() for name in text.split(",")) if text.strip() else ()


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
            if self.format_version[0] not in (0, *READABLE_MAJOR_VERSIONS):
                raise TrialFileError(
                    f"{self.path}: trial file format {'.'.join(map(str, self.format_version))} is newer than this "
                    f"rem-daq reads ({', '.join(f'{major}.x' for major in READABLE_MAJOR_VERSIONS)}): update rem-daq"
                )
            self._discover()
            self._absent = {
                (key, c.name)
                for key, spec in self._tables.items()
                for c in spec.columns
                if c.optional and c.name not in self._group(spec.group)
            }
            missing = [
                f"{spec.group}/{c.name}"
                for spec in self._tables.values()
                for c in spec.columns
                if not c.optional and c.name not in self._group(spec.group)
            ]
            if missing:
                raise TrialFileError(f"{self.path}: damaged or incomplete trial file: no {', '.join(missing)}")
            self.refresh()
        except TrialFileError:
            self._file.close()
            raise
        except (KeyError, ValueError, OSError, RuntimeError) as error:
            self._file.close()
            raise TrialFileError(f"{self.path}: damaged or incomplete trial file: {error}") from None

    # -- what the file holds: instruments, streams, tables ------------------------------------

    def _discover(self) -> None:
        """Find the file's instruments, streams and tables (a 1.x file: furnace, spectrometer, one stream)."""
        self._tables: dict[str, Table] = {}
        self._keys: dict[str, str] = {}
        self._instruments: tuple[Instrument, ...]
        self._streams: dict[str, str] = {}  # spectrometer -> table key of its analysis

        def add(key: str, spec: Table, *aliases: str) -> None:
            self._tables[key] = spec
            for alias in (key, *aliases):
                self._keys[alias] = key

        if self.format_version[0] < 2:
            self._instruments = (
                Instrument(OLDER_FORM_NAMES["temperature_controller"], "temperature_controller"),
                Instrument(OLDER_FORM_NAMES["spectrometer"], "spectrometer"),
            )
            for spec in TABLES:
                owner = {"furnace": "furnace", "events": None, "analysis": "spectrometer"}.get(
                    spec.name, "spectrometer"
                )
                add(spec.name, spec, *(() if owner is None else (table_key(spec.name, owner),)))
            self._streams = {"spectrometer": "analysis"}
            return
        instruments = self._group(INSTRUMENT_GROUP)
        names = _names(_text(instruments.attrs.get(INSTRUMENT_NAMES_ATTR, "")))
        if not names:
            raise TrialFileError(f"{self.path}: damaged trial file: {INSTRUMENT_GROUP} has no @{INSTRUMENT_NAMES_ATTR}")
        found = []
        seen_kinds: set[str] = set()
        for name in names:
            group = self._group(instrument_group(name))
            kind = _text(group.attrs.get(KIND_ATTR, ""))
            found.append(Instrument(name, kind))
            primary = kind not in seen_kinds
            seen_kinds.add(kind)
            if kind == "temperature_controller":
                add(
                    table_key("furnace", None if primary else name),
                    instrument_table("furnace", name),
                    table_key("furnace", name),
                )
            elif kind == "spectrometer":
                for table_name in ("spectrometer", "dark", "reference"):
                    add(
                        table_key(table_name, None if primary else name),
                        instrument_table(table_name, name),
                        table_key(table_name, name),
                    )
            elif kind == "sensor":
                add(table_key("sensor", name), self._sensor_table(name, group), *(("sensor",) if primary else ()))
            # a kind a later 2.x adds is listed by instruments(), without tables this reader knows
        self._instruments = tuple(found)
        for kind in ("temperature_controller", "spectrometer"):
            if kind not in seen_kinds:
                raise TrialFileError(f"{self.path}: damaged or incomplete trial file: no {kind} in {INSTRUMENT_GROUP}")
        spectrometers = [i.name for i in found if i.kind == "spectrometer"]
        first = _text(self._group(ANALYSIS_GROUP).attrs.get(STREAM_ATTR, ""))
        if first not in spectrometers:
            raise TrialFileError(
                f"{self.path}: damaged trial file: {ANALYSIS_GROUP}@{STREAM_ATTR} {first!r} is none of the "
                f"spectrometers ({', '.join(spectrometers)})"
            )
        add("analysis", table("analysis"), table_key("analysis", first))
        self._streams[first] = "analysis"
        for name in spectrometers:
            path = analysis_group(name, first=False)
            if name == first or path not in self._file:
                continue
            add(table_key("analysis", name), analysis_table(name, first=False))
            self._streams[name] = table_key("analysis", name)
        add("events", table("events"))

    def _sensor_table(self, name: str, group: h5py.Group) -> Table:
        channels = []
        for channel in _names(_text(group.attrs.get(CHANNELS_ATTR, ""))):
            dataset = _member(self.path, group, channel, h5py.Dataset)
            channels.append(
                (channel, _text(dataset.attrs.get("units", "")), _text(dataset.attrs.get("long_name", channel)))
            )
        return sensor_table(name, tuple(channels))

    def _key(self, key: str) -> str:
        """The canonical key of the table ``key`` names; KeyError naming the file's tables if none."""
        try:
            return self._keys[key]
        except (KeyError, TypeError):
            raise KeyError(f"{self.path}: {unknown_table_message(key, self._tables)}") from None

    def _spec(self, key: str) -> Table:
        return self._tables[self._key(key)]

    def instruments(self) -> tuple[Instrument, ...]:
        """(name, kind) of every instrument, in the station's order; the first of each kind is the primary one.

        A 1.x file: ``(("furnace", "temperature_controller"), ("spectrometer", "spectrometer"))``.
        """
        return self._instruments

    def primary(self, kind: str) -> str:
        """The name of the primary (first) instrument of ``kind``; KeyError if the trial has none."""
        for instrument in self._instruments:
            if instrument.kind == kind:
                return instrument.name
        if kind not in INSTRUMENT_KINDS:
            raise KeyError(f"{kind!r} is no instrument kind; kinds: {', '.join(INSTRUMENT_KINDS)}")
        raise KeyError(f"{self.path}: no {kind} in this trial")

    def streams(self) -> tuple[str, ...]:
        """The analysed spectrometers' names, the first stream (``/entry/analysis``) first; 1.x: ("spectrometer",)."""
        return tuple(self._streams)

    def tables(self) -> tuple[str, ...]:
        """The canonical key of every table of the file (what :meth:`rows` and :meth:`read` take)."""
        return tuple(self._tables)

    def table_spec(self, key: str) -> Table:
        """The layout of the table ``key`` names, at its path in this file (its group, its columns)."""
        return self._spec(key)

    def _instrument_named(self, name: str | None, kind: str | None) -> Instrument:
        if name is None:
            if kind is None:
                raise TypeError("instrument(): give an instrument's name or a kind")
            name = self.primary(kind)
        for instrument in self._instruments:
            if instrument.name == name:
                if kind is not None and instrument.kind != kind:
                    raise KeyError(f"{self.path}: {name!r} is a {instrument.kind}, not a {kind}")
                return instrument
        raise KeyError(
            f"{self.path}: no instrument {name!r} in this trial; instruments: "
            f"{', '.join(i.name for i in self._instruments)}"
        )

    @_damage_reported
    def instrument(self, name: str | None = None, *, kind: str | None = None) -> InstrumentInfo:
        """Instrument ``name`` (default: the primary one of ``kind``): its kind, group and attributes."""
        found = self._instrument_named(name, kind)
        path = instrument_group(found.name)
        attrs: dict[str, object] = {key: _attr_value(value) for key, value in self._group(path).attrs.items()}
        return InstrumentInfo(found.name, found.kind, path, attrs)

    @_damage_reported
    def spectrometer(self, name: str | None = None) -> SpectrometerInfo:
        """Spectrometer ``name`` (default: the primary one): wavelength axis, full scale, attributes."""
        info = self.instrument(name, kind="spectrometer")
        group = self._group(info.group)
        wavelength = _member(self.path, group, "wavelength", h5py.Dataset)[()]
        return SpectrometerInfo(info.name, info.group, wavelength, _full_scale(group.attrs), info.attrs)

    @_damage_reported
    def sensor(self, name: str | None = None) -> SensorInfo:
        """Sensor ``name`` (default: the first one): its channels (name, units, long name) and attributes."""
        info = self.instrument(name, kind="sensor")
        spec = self._spec(table_key("sensor", info.name))
        channels = tuple(
            SensorChannel(c.name, c.units, c.long_name)
            for c in spec.columns
            if c.name not in ("time", "flag") and not c.name.endswith("_state")
        )
        return SensorInfo(info.name, info.group, channels, info.attrs)

    def _stream_key(self, stream: str | None) -> str:
        if stream is None:
            return "analysis"
        try:
            return self._streams[stream]
        except KeyError:
            raise KeyError(
                f"{self.path}: no analysed stream {stream!r} in this trial; streams: {', '.join(self._streams)}"
            ) from None

    def _stream_name(self, key: str) -> str:
        return next(name for name, k in self._streams.items() if k == key)

    @_damage_reported
    def stream(self, name: str | None = None) -> StreamInfo:
        """The analysed stream of spectrometer ``name`` (default: the first stream): analytes, target, fit."""
        key = self._stream_key(name)
        spec = self._tables[key]
        group = self._group(spec.group)
        attrs = {k: _text(v) for k, v in group.attrs.items()}
        element = target_element(group.attrs)
        attrs[TARGET_ELEMENT_ATTR] = attrs[LEGACY_TARGET_ATTR] = element
        analytes = tuple(_text(a) for a in _member(self.path, group, "analytes", h5py.Dataset)[()])
        names: tuple[str, ...] = ()
        units: tuple[str, ...] = ()
        if (key, "fit_coefficients") not in self._absent:
            coefficients = _member(self.path, group, "fit_coefficients", h5py.Dataset)
            names = _names(_text(coefficients.attrs.get("column_names", "")))
            units = _names(_text(coefficients.attrs.get("column_units", "")))
        return StreamInfo(self._stream_name(key), spec.group, key, analytes, element, attrs, names, units)

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
        for key, spec in self._tables.items():
            group = self._group(spec.group)
            for column in spec.columns:
                if (key, column.name) not in self._absent:
                    _member(self.path, group, column.name, h5py.Dataset).refresh()
        entry = self._group("entry")
        for name in ("exit_status", "end_time", "heartbeat_time"):
            _member(self.path, entry, name, h5py.Dataset).refresh()

    # -- metadata and state -----------------------------------------------------------

    @property
    def metadata(self) -> dict[str, object]:
        """The /entry attributes (title, trial_id, start_time, operator, sample, recipe, ...)."""
        return {key: _attr_value(value) for key, value in self._file["entry"].attrs.items()}

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
        """The primary spectrometer's wavelength axis (another's: ``spectrometer(name).wavelength_nm``)."""
        return self._dataset(self._tables["spectrometer"].group + "/wavelength")[()]

    @property
    def full_scale_counts(self) -> float | None:
        """The primary detector's saturation level the file records (None: not recorded)."""
        return _full_scale(self._file[self._tables["spectrometer"].group].attrs)

    @property
    def analytes(self) -> tuple[str, ...]:
        """The first stream's analytes (another's: ``stream(name).analytes``)."""
        return tuple(_text(a) for a in self._dataset(self._tables["analysis"].group + "/analytes")[()])

    @property
    def target_element(self) -> str:
        """The element whose oxide purity the trial computes (e.g. "Nd"), in a file of any version (first stream).

        ``/entry/analysis@target_element`` since 1.2; in older files the symbol is in ``@target``.
        """
        return target_element(self._file[self._tables["analysis"].group].attrs)

    @property
    def analysis_attrs(self) -> dict[str, str]:
        """The first stream's analysis attributes as text, the target element under both of its names.

        ``target_element`` (the attribute since format 1.2) and ``target`` (its name before 1.2, kept here so
        code written against older files reads every file alike) both hold the element symbol.
        Another stream's: ``stream(name).attrs``.
        """
        attrs = {k: _text(v) for k, v in self._file[self._tables["analysis"].group].attrs.items()}
        element = self.target_element
        attrs[TARGET_ELEMENT_ATTR] = attrs[LEGACY_TARGET_ATTR] = element
        return attrs

    def has_column(self, table_name: str, column: str) -> bool:
        """Whether the file records this column (False for a column added after the file's format version)."""
        key = self._key(table_name)
        self._tables[key].column(column)
        return (key, column) not in self._absent

    @property
    def fit_coefficient_names(self) -> tuple[str, ...]:
        """The names of the columns of the first stream's fit_coefficients (empty when not recorded)."""
        if not self.has_column("analysis", "fit_coefficients"):
            return ()
        text = _text(self._file[self._tables["analysis"].group + "/fit_coefficients"].attrs.get("column_names", ""))
        return _names(text)

    @_damage_reported
    def calibration_arrays(self, stream: str | None = None) -> dict[str, np.ndarray]:
        """The copy of the calibration used live by a stream (default: the first), as stored in its
        analysis group's ``calibration``."""
        group = self._group(self._tables[self._stream_key(stream)].group + "/calibration")
        return {name: _member(self.path, group, name, h5py.Dataset)[()] for name in group.keys()}

    # -- rows -----------------------------------------------------------------------

    @_damage_reported
    def rows(self, table_name: str) -> int:
        """Rows of a table that every column already holds (columns grow one after another)."""
        key = self._key(table_name)
        spec = self._tables[key]
        group = self._group(spec.group)
        return min(
            _member(self.path, group, c.name, h5py.Dataset).shape[0]
            for c in spec.columns
            if (key, c.name) not in self._absent
        )

    def dataset(self, table_name: str, column: str) -> h5py.Dataset:
        """The h5py dataset of one column, for slicing it yourself (KeyError: the file does not record it)."""
        key = self._key(table_name)
        spec = self._tables[key]
        declared = spec.column(column)
        if (key, column) in self._absent:
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
        key = self._key(table_name)
        spec = self._tables[key]
        available = self.rows(key)
        stop = available if stop is None else min(stop, available)
        start = min(max(start, 0), stop)
        names = columns or tuple(c.name for c in spec.columns)
        group = self._group(spec.group)
        out = {}
        for name in names:
            column = spec.column(name)
            if (key, name) in self._absent:
                analytes = len(_member(self.path, group, "analytes", h5py.Dataset)) if "analytes" in group else 0
                out[name] = np.full((stop - start, *column.shape(0, analytes, 0)), np.nan)
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
        key = self._key(table_name)
        self._tables[key].column(column)
        total = self.rows(key)
        stop = total if stop is None else min(stop, total)
        start = min(max(start, 0), stop)
        count = stop - start
        group = self._group(self._tables[key].group)
        if count == 0 or (key, column) in self._absent:
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
        """A short account of the trial: identity, state, rows, final and mean purity (of the first stream).

        A file with other instruments than a station of the older form (one ``furnace``, one
        ``spectrometer``, one stream) adds ``instruments`` and ``streams`` (names, comma-separated) and, per
        further stream, ``target:<spectrometer>`` and ``final_purity:<spectrometer>``.
        """
        meta = self.metadata
        fit = self.fit_summary()
        summary: dict[str, object] = {
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
            "spectra": self.rows(table_key("spectrometer", self.streams()[0])),
            "events": self.rows("events"),
            "final_purity": self._final_purity("analysis"),
            "needs_recovery": self.integrity.needs_recovery,
        }
        older_form = (
            Instrument("furnace", "temperature_controller"),
            Instrument("spectrometer", "spectrometer"),
        )
        if self._instruments != older_form or self.streams() != ("spectrometer",):
            summary["instruments"] = ", ".join(i.name for i in self._instruments)
            summary["streams"] = ", ".join(self.streams())
            for stream in self.streams()[1:]:
                summary[f"target:{stream}"] = self.stream(stream).target_element
                summary[f"final_purity:{stream}"] = self._final_purity(self._streams[stream])
        return {**summary, **fit}

    def _final_purity(self, key: str) -> float:
        rows = self.rows(key)
        return float(self.dataset(key, "purity")[rows - 1]) if rows else float("nan")

    @_damage_reported
    def fit_summary(self, stream: str | None = None) -> dict[str, object]:
        """What the model vouches for at the end and over the trial (a format 1.1 file; else "not recorded").

        Of one stream (default: the first), against its spectrometer's rows:

        - ``final_purity_note``: "no rare earths in the cell" when the last spectrum's purity is NaN because
          the total oxide was below its quantitation limit (flag 32), else "".
        - ``final_lack_of_fit``: the last spectrum's lack of fit (NaN: not recorded or not computed).
        - ``model_mismatch_fraction``: the fraction of spectra flagged model mismatch (flag 16), NaN when the
          file's format does not record the flag (before 1.1) or there are no spectra.
        """
        recorded = self.format_version >= (1, 1)
        key = self._stream_key(stream)
        spectrometer = table_key("spectrometer", self._stream_name(key))
        spectra = self.rows(spectrometer)
        flags = self.dataset(spectrometer, "flag")[:spectra] if recorded and spectra else np.zeros(0, np.uint8)
        analysed = self.rows(key)
        lack = math.nan
        if analysed and self.has_column(key, "lack_of_fit"):
            lack = float(self.dataset(key, "lack_of_fit")[analysed - 1])
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
