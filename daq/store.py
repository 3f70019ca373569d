"""Write one trial file: create it whole, start SWMR, append rows from a writer thread.

One process owns the file. Producers call :meth:`TrialWriter.append` from any
thread; a single writer thread buffers rows and writes them in blocks at most
every ``flush_interval_s`` (so SWMR readers see a row within that time), or as
soon as a whole chunk is buffered, flushes HDF5, and fsyncs every
``fsync_interval_s``. Datasets are uncompressed so a partly filled chunk can be
written and flushed safely. A killed process leaves a file readable up to the
last flush; its exit status stays "running", which readers report as interrupted.

Since format 2.0 a trial has every instrument of its station (temperature
controllers, spectrometers, sensors) and one analysis per analysed
spectrometer stream. :class:`TrialMetadata` describes the primary instruments
(the first of each kind) and the first stream with the fields it always had,
and the others with :class:`ControllerRecord`, :class:`SpectrometerRecord`,
:class:`SensorRecord` and :class:`StreamRecord`. Table keys: ``"furnace"``,
``"spectrometer"``, ``"dark"``, ``"reference"``, ``"analysis"``, ``"events"``
are the primary instrument's (first stream's) tables; ``"<table>:<instrument>"``
any instrument's (``"furnace:zone-2"``, ``"dark:strip"``, ``"analysis:strip"``,
``"sensor:feed-ph"``; ``"sensor"`` alone is the first sensor's).
"""

from __future__ import annotations

import errno
import fcntl
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ._common import utc_now, utc_now_iso
from .layout import (
    CHANNELS_ATTR,
    DEFAULT_FULL_SCALE_COUNTS,
    EXIT_STATUSES,
    FILE_FORMAT,
    INSTRUMENT_NAMES_ATTR,
    KIND_ATTR,
    KIND_TABLES,
    NAME_ATTR,
    NEXUS_LINK_ATTR,
    OLDER_FORM_NAMES,
    PURITY_LINKS,
    STATUS_TEXT_BYTES,
    STREAM_ATTR,
    TARGET_ELEMENT_ATTR,
    FinalStatus,
    InstrumentKind,
    Table,
    analysis_table,
    group_name,
    instrument_table,
    sensor_table,
    table,
    table_key,
    unknown_table_message,
)

__all__ = [
    "TrialMetadata",
    "ControllerRecord",
    "SpectrometerRecord",
    "SensorRecord",
    "StreamRecord",
    "TrialWriter",
    "StorageError",
    "utc_now",
    "utc_now_iso",
    "writer_lock_path",
    "writer_is_alive",
    "nexus_calibration_group",
    "nexus_links",
]


class StorageError(OSError):
    """The trial file could not be written (full disk, lost folder...); rows up to the last flush are kept."""


Attributes = Mapping[str, str | float | int]
"""An instrument's own attributes in its group (ident, driver, model, address, ...)."""
_RESERVED_ATTRIBUTES = frozenset({"NX_class", KIND_ATTR, NAME_ATTR, CHANNELS_ATTR})


@dataclass(frozen=True)
class ControllerRecord:
    """A temperature controller of the trial besides the primary one (e.g. ``zone-2`` of a tube furnace)."""

    name: str
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class SpectrometerRecord:
    """A spectrometer of the trial besides the primary one: its own pixels, wavelength axis and full scale."""

    name: str
    wavelength_nm: np.ndarray
    full_scale_counts: float = DEFAULT_FULL_SCALE_COUNTS
    attributes: Attributes = field(default_factory=dict)  # how its counts were made (driver, dark_method, ...)


@dataclass(frozen=True)
class SensorRecord:
    """A sensor of the trial (pH, conductivity, flow, mass): its channels as ``(name, units, long name)``."""

    name: str
    channels: tuple[tuple[str, str, str], ...]
    attributes: Attributes = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class StreamRecord:
    """One analysed spectrometer stream: which spectrometer, its target, analytes, calibration and fit."""

    spectrometer: str
    target: str
    analytes: tuple[str, ...]
    covered_elements: tuple[str, ...] = ()
    calibration_id: str = ""
    calibration_file: str = ""
    calibration_arrays: Mapping[str, tuple[np.ndarray, str]] = field(default_factory=dict)  # name -> (array, units)
    fit_coefficient_names: tuple[str, ...] = ()
    fit_coefficient_units: tuple[str, ...] = ()  # default: ""


@dataclass
class TrialMetadata:
    """Everything known about a trial before its first reading.

    The fields up to ``extra`` describe the primary temperature controller and spectrometer (the first of each
    kind in the station) and the first analysed stream, as they always did; a trial of a station of the older
    form (one ``furnace``, one ``spectrometer``, one stream) needs nothing else. The fields after ``extra``
    add the primary instruments' names and every further instrument and stream.
    """

    trial_id: str
    title: str
    sample: str
    operator: str
    target: str
    analytes: tuple[str, ...]
    wavelength_nm: np.ndarray
    start_time: str = field(default_factory=utc_now_iso)
    recipe_text: str = ""
    station_text: str = ""
    software_version: str = ""
    clock_speed: float = 1.0
    full_scale_counts: float = DEFAULT_FULL_SCALE_COUNTS  # the spectrometer's saturation level
    spectrometer_attributes: dict[str, str | float | int] = field(default_factory=dict)  # how its counts were made
    covered_elements: tuple[str, ...] = ()
    calibration_id: str = ""
    calibration_file: str = ""
    calibration_arrays: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)  # name -> (array, units)
    fit_coefficient_names: tuple[str, ...] = ()  # the columns of /entry/analysis/fit_coefficients
    fit_coefficient_units: tuple[str, ...] = ()  # their units (default: "")
    extra: dict[str, str | float | int] = field(default_factory=dict)  # more /entry attributes
    furnace_name: str = OLDER_FORM_NAMES["temperature_controller"]  # the primary temperature controller
    furnace_attributes: Attributes = field(default_factory=dict)  # its group's attributes (ident, driver, ...)
    spectrometer_name: str = OLDER_FORM_NAMES["spectrometer"]  # the primary spectrometer
    stream_spectrometer: str = ""  # the spectrometer the first stream (the fields above) analyses; "": the primary
    controllers: tuple[ControllerRecord, ...] = ()  # further temperature controllers
    spectrometers: tuple[SpectrometerRecord, ...] = ()  # further spectrometers
    sensors: tuple[SensorRecord, ...] = ()  # every sensor
    streams: tuple[StreamRecord, ...] = ()  # further analysed streams, one per spectrometer at most
    instrument_order: tuple[str, ...] = ()  # the station's order of every name above; (): controllers,
    # spectrometers, sensors. The first of each kind in it must be the primary one.

    def all_controllers(self) -> tuple[ControllerRecord, ...]:
        """Every temperature controller, the primary one first."""
        return (ControllerRecord(self.furnace_name, dict(self.furnace_attributes)), *self.controllers)

    def all_spectrometers(self) -> tuple[SpectrometerRecord, ...]:
        """Every spectrometer, the primary one first."""
        primary = SpectrometerRecord(
            self.spectrometer_name,
            self.wavelength_nm,
            self.full_scale_counts,
            dict(self.spectrometer_attributes),
        )
        return (primary, *self.spectrometers)

    def all_streams(self) -> tuple[StreamRecord, ...]:
        """Every analysed stream, the first one (the fields of the older form) first."""
        first = StreamRecord(
            self.stream_spectrometer or self.spectrometer_name,
            self.target,
            tuple(self.analytes),
            tuple(self.covered_elements),
            self.calibration_id,
            self.calibration_file,
            dict(self.calibration_arrays),
            tuple(self.fit_coefficient_names),
            tuple(self.fit_coefficient_units),
        )
        return (first, *self.streams)

    def instruments(self) -> tuple[tuple[str, InstrumentKind], ...]:
        """(name, kind) of every instrument, in the station's order (``instrument_order``, else by kind)."""
        kinds: dict[str, InstrumentKind] = {}
        by_kind: tuple[tuple[tuple[ControllerRecord | SpectrometerRecord | SensorRecord, ...], InstrumentKind], ...]
        by_kind = (
            (self.all_controllers(), "temperature_controller"),
            (self.all_spectrometers(), "spectrometer"),
            (self.sensors, "sensor"),
        )
        for records, kind in by_kind:
            for record in records:
                if record.name in kinds:
                    raise ValueError(f"two instruments named {record.name!r}")
                kinds[record.name] = kind
        order = tuple(self.instrument_order) or tuple(kinds)
        if sorted(order) != sorted(kinds):
            raise ValueError(
                f"instrument_order {', '.join(order)} is not the trial's instruments {', '.join(kinds)} (each once)"
            )
        return tuple((name, kinds[name]) for name in order)


@dataclass(frozen=True)
class _Planned:
    """One table the writer creates: where and how, and the sizes of its per-row dimensions."""

    spec: Table
    pixels: int = 0
    analytes: int = 0
    coefficients: int = 0

    def row_shape(self, column) -> tuple[int, ...]:
        return column.shape(self.pixels, self.analytes, self.coefficients)


def _plan(metadata: TrialMetadata) -> tuple[dict[str, _Planned], dict[str, str]]:
    """Every table of the trial by its canonical key, and every key that names one (aliases included).

    ValueError for metadata that cannot be laid out (names, order, streams, fit coefficient units).
    """
    instruments = metadata.instruments()
    groups: dict[str, str] = {}
    for name, _ in instruments:
        group = group_name(name)  # ValueError: not an instrument name
        if group in groups:
            raise ValueError(
                f"instruments {groups[group]!r} and {name!r} would share the group {group!r} (a NeXus group name "
                "has _ for -): rename one"
            )
        groups[group] = name
    primary = {metadata.furnace_name: "temperature_controller", metadata.spectrometer_name: "spectrometer"}
    for kind in ("temperature_controller", "spectrometer"):
        first = next(name for name, k in instruments if k == kind)
        if primary.get(first) != kind:
            raise ValueError(
                f"the first {kind} in instrument_order is {first!r}, not the primary one "
                f"{metadata.furnace_name if kind == 'temperature_controller' else metadata.spectrometer_name!r}"
            )
    planned: dict[str, _Planned] = {}
    aliases: dict[str, str] = {}

    def add(key: str, entry: _Planned, *names: str) -> None:
        planned[key] = entry
        for alias in (key, *names):
            aliases[alias] = key

    spectrometers = {s.name: s for s in metadata.all_spectrometers()}
    for record in metadata.all_controllers():
        is_primary = record.name == metadata.furnace_name
        key = table_key("furnace", None if is_primary else record.name)
        add(key, _Planned(instrument_table("furnace", record.name)), table_key("furnace", record.name))
        _check_attributes(record.name, record.attributes)
    for record in spectrometers.values():
        is_primary = record.name == metadata.spectrometer_name
        pixels = int(len(record.wavelength_nm))
        for name in KIND_TABLES["spectrometer"]:
            key = table_key(name, None if is_primary else record.name)
            add(key, _Planned(instrument_table(name, record.name), pixels=pixels), table_key(name, record.name))
        _check_attributes(record.name, record.attributes)
    for index, record in enumerate(metadata.sensors):
        key = table_key("sensor", record.name)
        add(key, _Planned(sensor_table(record.name, tuple(record.channels))), *(("sensor",) if index == 0 else ()))
        _check_attributes(record.name, record.attributes)
    analysed: set[str] = set()
    for index, stream in enumerate(metadata.all_streams()):
        if stream.spectrometer not in spectrometers:
            raise ValueError(
                f"stream of {stream.spectrometer!r}: no such spectrometer; spectrometers: {', '.join(spectrometers)}"
            )
        if stream.spectrometer in analysed:
            raise ValueError(f"two streams of spectrometer {stream.spectrometer!r} (one analysis per spectrometer)")
        analysed.add(stream.spectrometer)
        units = tuple(stream.fit_coefficient_units) or ("",) * len(stream.fit_coefficient_names)
        if len(units) != len(stream.fit_coefficient_names):
            raise ValueError(
                f"stream of {stream.spectrometer!r}: {len(units)} fit coefficient units for "
                f"{len(stream.fit_coefficient_names)} names"
            )
        entry = _Planned(
            analysis_table(stream.spectrometer, first=index == 0),
            analytes=len(stream.analytes),
            coefficients=len(stream.fit_coefficient_names),
        )
        add(
            table_key("analysis", None if index == 0 else stream.spectrometer), entry, f"analysis:{stream.spectrometer}"
        )
    add("events", _Planned(table("events")))
    return planned, aliases


def _check_attributes(name: str, attributes: Attributes) -> None:
    reserved = sorted(_RESERVED_ATTRIBUTES & set(attributes))
    if reserved:
        raise ValueError(f"instrument {name!r}: attributes {', '.join(reserved)} are the layout's, not an instrument's")


_STOP = object()

FREE_SPACE_RESERVE_BYTES = 256 * 1024
"""Kept free on the data disk so the file can always be closed with its exit status."""


def writer_lock_path(path: Path) -> Path:
    """The sidecar file a live writer keeps locked; readers test the lock to tell running from interrupted."""
    return path.with_name(path.name + ".writing")


def _hold_writer_lock(path: Path) -> int:
    lock_path = writer_lock_path(path)
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as error:
        raise StorageError(f"{path}: cannot create the writer lock {lock_path.name}: {error}") from error
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FileExistsError(f"{path}: another process is writing this trial") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def writer_is_alive(path: Path) -> bool:
    """True while a process holds the writer lock of this trial file (on this machine)."""
    lock_path = writer_lock_path(Path(path))
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _group(parent: h5py.Group, name: str) -> h5py.Group:
    """``parent[name]``, a group the writer created; :class:`StorageError` if the file holds something else there."""
    node = parent[name]
    if not isinstance(node, h5py.Group):
        raise StorageError(f"{parent.file.filename}: {name} is not an HDF5 group, unlike the trial layout")
    return node


def _dataset(parent: h5py.Group, name: str) -> h5py.Dataset:
    """``parent[name]``, a dataset the writer created; :class:`StorageError` if the file holds something else there."""
    node = parent[name]
    if not isinstance(node, h5py.Dataset):
        raise StorageError(f"{parent.file.filename}: {name} is not an HDF5 dataset, unlike the trial layout")
    return node


def nexus_calibration_group(parent: h5py.Group, arrays: dict[str, tuple[np.ndarray, str]]) -> h5py.Group:
    """Create ``parent/calibration``: the calibration's arrays, as a NeXus NXdata group (since trial format 1.2).

    ``sensitivity`` (K, P) is the signal; ``wavelength_indices`` says that ``wavelength`` (P,) spans its last
    dimension (no ``axes`` attribute: its placeholder "." for the analyte dimension is refused by punx). Before
    1.2 this was an NXcollection, whose content NeXus validators report as "non-NeXus content".
    """
    group = parent.create_group("calibration")
    group.attrs["NX_class"] = "NXdata"
    for name, (array, units) in arrays.items():
        dataset = group.create_dataset(name, data=np.asarray(array))
        dataset.attrs["units"] = units
        dataset.attrs["long_name"] = {
            "sensitivity": "absorbance per g/L of each analyte (rows) at each pixel",
            "wavelength": "wavelength of each pixel of the calibration",
        }.get(name, name)
    if "sensitivity" in group:
        group.attrs["signal"] = "sensitivity"
        sensitivity = _dataset(group, "sensitivity")
        if (
            "wavelength" in group
            and sensitivity.ndim >= 1
            and _dataset(group, "wavelength").shape == sensitivity.shape[-1:]
        ):
            group.attrs["wavelength_indices"] = np.int32(sensitivity.ndim - 1)
    return group


def nexus_links(handle: h5py.File, group: h5py.Group, links: dict[str, str]) -> None:
    """Hard-link ``links`` (name -> absolute path of the original) into ``group``, each with NeXus's ``target``.

    The ``target`` attribute (the original's absolute path) is what tells a NeXus reader that the dataset at
    another path is a link to it; it is set on the dataset itself, so it is seen at both paths.
    """
    for name, original in links.items():
        dataset = handle[original]
        dataset.attrs[NEXUS_LINK_ATTR] = original
        group[name] = dataset


def _release_writer_lock(path: Path, fd: int) -> None:
    try:
        writer_lock_path(path).unlink(missing_ok=True)
    finally:
        os.close(fd)


class TrialWriter:
    """The single writer of one trial file."""

    def __init__(
        self,
        path: str | os.PathLike,
        metadata: TrialMetadata,
        *,
        flush_interval_s: float = 0.5,
        fsync_interval_s: float = 5.0,
        max_queued_bytes: int = 64 * 1024 * 1024,
    ):
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self.fsync_interval_s = fsync_interval_s
        self._tables, self._keys = _plan(metadata)  # ValueError before anything is created
        self.rows_written = {key: 0 for key in self._tables}
        """Rows written so far per table, by canonical key (the primary's tables by today's names)."""
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue()
        # bounded in bytes, not items: one item may be a block of thousands of spectra
        self.max_queued_bytes = int(max_queued_bytes)
        self._queued_bytes = 0
        self._room = threading.Condition()
        self._fsync_wanted = threading.Event()
        self._fsync_thread: threading.Thread | None = None
        self._closed = False
        self._lock_fd = _hold_writer_lock(self.path)
        try:
            self._file = self._create(metadata)
        except BaseException:
            _release_writer_lock(self.path, self._lock_fd)
            raise
        self._thread = threading.Thread(target=self._run, name=f"trial-writer-{self.path.name}", daemon=True)
        self._thread.start()
        self._fsync_thread = threading.Thread(
            target=self._sync_in_background, daemon=True, name=f"trial-fsync-{self.path.name}"
        )
        self._fsync_thread.start()

    # -- creation -----------------------------------------------------------------

    def _create(self, metadata: TrialMetadata) -> h5py.File:
        if self.path.exists():
            raise FileExistsError(f"{self.path}: a trial file of that name exists; raw files are never overwritten")
        # Laid out under a hidden name and renamed once SWMR is on: a reader (the app, a script) that
        # opened the file before SWMR started would make starting SWMR fail on the file lock.
        creating = self.path.with_name(f".{self.path.name}.creating")
        try:
            handle = h5py.File(creating, "w", libver=("v110", "v110"))
        except OSError as error:
            raise StorageError(f"{self.path}: cannot create the trial file: {error}") from error
        try:
            self._create_layout(handle, metadata)
            handle.flush()
            handle.swmr_mode = True  # nothing may be created after this line
            os.link(creating, self.path)  # unlike rename, never replaces a file that appeared meanwhile
            creating.unlink()
        except OSError as error:
            handle.close()
            creating.unlink(missing_ok=True)
            raise StorageError(f"{self.path}: cannot lay out the trial file: {error}") from error
        except BaseException:
            handle.close()
            creating.unlink(missing_ok=True)
            raise
        return handle

    def _create_layout(self, handle: h5py.File, metadata: TrialMetadata) -> None:
        handle.attrs["default"] = "entry"
        entry = handle.create_group("entry")
        entry.attrs.update(
            {
                "NX_class": "NXentry",
                "default": "purity",
                "title": metadata.title,
                "trial_id": metadata.trial_id,
                "start_time": metadata.start_time,
                "operator": metadata.operator,
                "sample": metadata.sample,
                "recipe": metadata.recipe_text,
                "station": metadata.station_text,
                "software_version": metadata.software_version,
                "clock_speed": float(metadata.clock_speed),
                "flush_interval_s": float(self.flush_interval_s),
                "file_format": FILE_FORMAT,
            }
        )
        for key, value in metadata.extra.items():
            entry.attrs[key] = value
        for name, initial in (("exit_status", "running"), ("end_time", ""), ("heartbeat_time", utc_now_iso())):
            dataset = entry.create_dataset(name, shape=(), dtype=f"S{STATUS_TEXT_BYTES}")
            dataset[()] = initial.encode()
            dataset.attrs["units"] = ""
        entry["exit_status"].attrs["allowed"] = ", ".join(EXIT_STATUSES)
        instrument = entry.create_group("instrument")
        instrument.attrs["NX_class"] = "NXinstrument"
        order = metadata.instruments()
        instrument.attrs[INSTRUMENT_NAMES_ATTR] = ",".join(name for name, _ in order)
        controllers = {c.name: c for c in metadata.all_controllers()}
        spectrometers = {s.name: s for s in metadata.all_spectrometers()}
        sensors = {s.name: s for s in metadata.sensors}
        for name, kind in order:
            if kind == "temperature_controller":
                group = self._create_table(handle, self._planned("furnace", name, metadata.furnace_name))
                attributes = controllers[name].attributes
            elif kind == "spectrometer":
                record = spectrometers[name]
                for table_name in KIND_TABLES["spectrometer"]:
                    self._create_table(handle, self._planned(table_name, name, metadata.spectrometer_name))
                group = _group(handle, self._planned("spectrometer", name, metadata.spectrometer_name).spec.group)
                wavelength = group.create_dataset("wavelength", data=np.asarray(record.wavelength_nm, dtype="f8"))
                wavelength.attrs.update({"units": "nm", "long_name": "wavelength of each pixel"})
                group.attrs["full_scale_counts"] = float(record.full_scale_counts)
                attributes = record.attributes
            else:
                planned = self._tables[table_key("sensor", name)]
                group = self._create_table(handle, planned)
                group.attrs[CHANNELS_ATTR] = ",".join(channel for channel, _, _ in sensors[name].channels)
                attributes = sensors[name].attributes
            group.attrs[KIND_ATTR] = kind
            group.attrs[NAME_ATTR] = name
            for key, value in attributes.items():
                group.attrs[key] = value
        for index, stream in enumerate(metadata.all_streams()):
            planned = self._tables[table_key("analysis", None if index == 0 else stream.spectrometer)]
            self._create_stream(handle, planned, stream)
        self._create_table(handle, self._tables["events"])
        purity = entry.create_group("purity")
        purity.attrs.update({"NX_class": "NXdata", "signal": "purity", "axes": ["time"]})
        nexus_links(handle, purity, PURITY_LINKS)

    def _planned(self, table_name: str, instrument: str, primary: str) -> _Planned:
        return self._tables[table_key(table_name, None if instrument == primary else instrument)]

    def _create_stream(self, handle: h5py.File, planned: _Planned, stream: StreamRecord) -> None:
        analysis = self._create_table(handle, planned)
        analysis.attrs.update(
            {
                STREAM_ATTR: stream.spectrometer,
                TARGET_ELEMENT_ATTR: stream.target,
                "target_oxide": "",
                "covered_elements": ", ".join(stream.covered_elements),
                "calibration_id": stream.calibration_id,
                "calibration_file": stream.calibration_file,
            }
        )
        analytes = analysis.create_dataset("analytes", data=np.array([a.encode() for a in stream.analytes], dtype="S3"))
        analytes.attrs.update({"units": "", "long_name": "element symbols, in the order of concentration columns"})
        nexus_calibration_group(analysis, dict(stream.calibration_arrays))
        names = tuple(stream.fit_coefficient_names)
        units = tuple(stream.fit_coefficient_units) or ("",) * len(names)
        coefficients = analysis["fit_coefficients"]
        coefficients.attrs["column_names"] = ", ".join(names)
        coefficients.attrs["column_units"] = ", ".join(units)

    def _create_table(self, handle: h5py.File, planned: _Planned) -> h5py.Group:
        table = planned.spec
        group = handle.require_group(table.group)
        group.attrs["NX_class"] = table.nx_class
        for column in table.columns:
            row_shape = planned.row_shape(column)
            # HDF5 refuses a chunk dimension of 0 (no fit coefficients): such a dimension may grow to 1
            dataset = group.create_dataset(
                column.name,
                shape=(0, *row_shape),
                maxshape=(None, *(max(1, d) for d in row_shape)),
                chunks=(table.chunk_rows, *(max(1, d) for d in row_shape)),
                dtype=column.dtype,
                fillvalue=(np.nan if column.dtype.startswith("f") else None),
            )
            dataset.attrs["units"] = column.units
            dataset.attrs["long_name"] = column.long_name
        return group

    # -- producers ----------------------------------------------------------------

    def tables(self) -> tuple[str, ...]:
        """The canonical key of every table of this trial (``"furnace"``, ..., ``"furnace:zone-2"``, ...)."""
        return tuple(self._tables)

    def canonical_key(self, table: str) -> str:
        """The canonical key of the table ``table`` names (``"furnace:zone-1"`` -> ``"furnace"`` when zone-1 is
        the primary controller); KeyError naming the trial's tables for a key that names none."""
        try:
            return self._keys[table]
        except KeyError:
            raise KeyError(f"{self.path}: {unknown_table_message(table, self._tables)}") from None

    def append(self, table: str, **columns) -> None:
        """Queue one row (scalars / per-row arrays) or a block of rows (leading axis = rows) for ``table``.

        ``table`` is a table key: ``"furnace"``, ``"spectrometer"``, ``"dark"``, ``"reference"``,
        ``"analysis"``, ``"events"`` (the primary instrument's, the first stream's) or
        ``"<table>:<instrument>"`` (any instrument's: ``"furnace:zone-2"``, ``"analysis:strip"``,
        ``"sensor:feed-ph"``); KeyError for a key that names no table of this trial.
        Every column is required except the optional ones (added after format 1.0,
        ``Column.since``), which are stored NaN when left out.
        Blocks when the writer falls behind (no row is ever dropped); raises
        :class:`StorageError` once the writer has failed.
        """
        if self.error is not None:
            raise StorageError(f"{self.path}: the trial file can no longer be written: {self.error}") from self.error
        if self._closed:
            raise RuntimeError(f"{self.path}: writer is closed")
        key = self.canonical_key(table)
        planned = self._tables[key]
        spec = planned.spec
        missing = {c.name for c in spec.columns if not c.optional} - columns.keys()
        extra = columns.keys() - {c.name for c in spec.columns}
        if missing or extra:
            raise ValueError(f"table {table}: missing columns {sorted(missing)}, unknown columns {sorted(extra)}")
        left_out = [c for c in spec.columns if c.optional and c.name not in columns]
        if left_out:
            columns = dict(columns)
            first = spec.columns[0]
            value = np.asarray(columns[first.name])
            rows = () if value.ndim == len(first.row_shape) else (len(value),)
            for column in left_out:
                shape = rows + planned.row_shape(column)
                columns[column.name] = np.full(shape, np.nan)
        self._put((key, columns))

    def event(self, time_s: float, level: str, source: str, message: str) -> None:
        """Record an event (info / warning / error) in /entry/events."""
        encoded = message.encode("utf-8")[:240]
        self.append("events", time=time_s, level=level.encode()[:8], source=source.encode()[:16], message=encoded)

    def _put(self, item) -> None:
        nbytes = sum(np.asarray(value).nbytes for value in item[1].values())
        with self._room:
            while self._queued_bytes and self._queued_bytes + nbytes > self.max_queued_bytes:
                if self.error is not None or not self._thread.is_alive():
                    raise StorageError(f"{self.path}: writer stopped: {self.error}") from self.error
                self._room.wait(0.5)
            self._queued_bytes += nbytes
        self._queue.put((item, nbytes))

    def _taken(self, nbytes: int) -> None:
        with self._room:
            self._queued_bytes -= nbytes
            self._room.notify_all()

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        buffers: dict[str, list[dict]] = {key: [] for key in self._tables}
        buffered_rows = {key: 0 for key in self._tables}
        next_flush = time.monotonic() + self.flush_interval_s
        next_fsync = time.monotonic() + self.fsync_interval_s
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=max(0.0, next_flush - time.monotonic()))
            except queue.Empty:
                item = None
            whole_chunk = False
            while item is not None:
                if item is _STOP:
                    stopping = True
                    break
                (name, columns), nbytes = item
                self._taken(nbytes)
                buffers[name].append(columns)
                buffered_rows[name] += self._rows_in(name, columns)
                whole_chunk |= buffered_rows[name] >= self._tables[name].spec.chunk_rows * 4
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            now = time.monotonic()
            if stopping or whole_chunk or now >= next_flush:
                try:
                    self._check_free_space(buffered_rows)
                    self._write(buffers)
                    _dataset(self._file, "/entry/heartbeat_time")[()] = utc_now_iso().encode()
                    self._file.flush()
                    if now >= next_fsync:
                        self._fsync_wanted.set()  # the disk sync runs beside us: it can take a second
                        next_fsync = now + self.fsync_interval_s
                except BaseException as error:  # a full disk, a lost folder: stop, keep what is flushed
                    self.error = error
                    return
                for name in buffers:
                    buffers[name] = []
                    buffered_rows[name] = 0
                next_flush = time.monotonic() + self.flush_interval_s

    def _rows_in(self, name: str, columns: dict) -> int:
        first = self._tables[name].spec.columns[0]
        value = np.asarray(columns[first.name])
        return 1 if value.ndim == len(first.row_shape) else len(value)

    def _check_free_space(self, buffered_rows: dict[str, int]) -> None:
        # HDF5 can crash (not just fail) when the disk fills in the middle of a write, so
        # refuse to start a write that would leave less than the reserve for closing the file.
        needed = FREE_SPACE_RESERVE_BYTES
        for name, rows in buffered_rows.items():
            if not rows:
                continue
            planned = self._tables[name]
            spec = planned.spec
            stored = self.rows_written[name]
            new_chunks = -(-(stored + rows) // spec.chunk_rows) - -(-stored // spec.chunk_rows)
            for column in spec.columns:
                row_bytes = np.dtype(column.dtype).itemsize * int(np.prod(planned.row_shape(column)))
                needed += new_chunks * spec.chunk_rows * row_bytes
        stats = os.statvfs(self.path.parent)
        free = stats.f_bavail * stats.f_frsize
        if free < needed:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device for the trial file: {free / 1e6:.2f} MB free, "
                f"{needed / 1e6:.2f} MB needed for the next rows and closing the file; "
                f"rows up to the last flush are kept",
                str(self.path.parent),
            )

    def _write(self, buffers: dict[str, list[dict]]) -> None:
        for name, rows in buffers.items():
            if not rows:
                continue
            spec = self._tables[name].spec
            group = _group(self._file, spec.group)
            for column in spec.columns:
                row_ndim = len(column.row_shape)
                parts = [np.asarray(row[column.name], dtype=column.dtype) for row in rows]
                block = np.concatenate([p[np.newaxis] if p.ndim == row_ndim else p for p in parts])
                dataset = _dataset(group, column.name)
                start = dataset.shape[0]
                dataset.resize(start + len(block), axis=0)
                dataset[start:] = block
            self.rows_written[name] += len(block)

    def _sync_in_background(self) -> None:
        while self._fsync_wanted.wait() and not self._closed:
            self._fsync_wanted.clear()
            try:
                os.fsync(self._fd())
            except OSError as error:
                self.error = self.error or error
                return

    def _fd(self) -> int:
        fd = self._file.id.get_vfd_handle()
        return fd if isinstance(fd, int) else int(fd)

    def _fsync(self) -> None:
        self._file.flush()
        os.fsync(self._fd())

    # -- closing --------------------------------------------------------------------

    def close(self, exit_status: FinalStatus) -> None:
        """Write what is buffered, mark the clean end with ``exit_status``, and close the file."""
        if exit_status not in EXIT_STATUSES[1:]:
            raise ValueError(f"exit status {exit_status!r}; allowed: {', '.join(EXIT_STATUSES[1:])}")
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self._fsync_wanted.set()
        if self._fsync_thread is not None:  # set in __init__: a writer that exists has one
            self._fsync_thread.join()
        try:
            # after a write error the file still says how it ended, if the disk lets us
            _dataset(self._file, "/entry/end_time")[()] = utc_now_iso().encode()
            _dataset(self._file, "/entry/exit_status")[()] = (exit_status if self.error is None else "failed").encode()
            self._fsync()
        except Exception as error:  # noqa: BLE001 - the disk may refuse even this
            self.error = self.error or error
        finally:
            try:
                self._file.close()
            except Exception as error:  # noqa: BLE001 - a full disk can fail the final flush too
                self.error = self.error or error
            _release_writer_lock(self.path, self._lock_fd)
        if self.error is not None:
            raise StorageError(
                f"{self.path}: trial file closed after a write error; rows up to the last flush are kept: {self.error}"
            ) from self.error

    @property
    def failed(self) -> bool:
        """True once the writer thread has stopped on an error."""
        return self.error is not None
