"""The trial file layout, declared once: the writer creates it, the reader and tests check it.

See docs/trial-file.md for the contract in prose. Each *table* is a group of
datasets that grow together along their first axis (one row per reading).

Since format 2.0 a trial has one group per instrument, ``/entry/instrument/<name>``,
and one analysis (NXprocess) per analysed spectrometer stream. :data:`TABLES`
are the tables of the *primary* instruments (the first of each kind) at the
paths of a station of the older form (instruments ``furnace`` and
``spectrometer``): the paths of every 1.x file. :func:`instrument_table`,
:func:`analysis_table` and :func:`sensor_table` give any instrument's or
stream's table; a table *key* names one: ``"furnace"``, ``"spectrometer"``,
``"dark"``, ``"reference"``, ``"analysis"`` and ``"events"`` are the primary
instrument's (the first stream's), ``"<table>:<instrument name>"`` another's
(:func:`table_key`, :func:`split_table_key`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from dataclasses import replace as _replace
from typing import Literal, get_args

from ._common import hdf5_text
from ._instrument_config import INSTRUMENT_NAME  # the station's rule for an instrument's name

__all__ = [
    "Column",
    "Table",
    "TABLES",
    "STATUS_TEXT_BYTES",
    "EXIT_STATUSES",
    "ExitStatus",
    "FinalStatus",
    "INTERRUPTED_STATUS",
    "ROW_FLAGS",
    "RowFlag",
    "FLAG_READ_FAILED",
    "FLAG_SATURATED",
    "FLAG_LOST",
    "FLAG_ANALYSIS_FAILED",
    "FILE_FORMAT",
    "FILE_FORMAT_VERSION",
    "FLAG_MODEL_MISMATCH",
    "FLAG_NO_RARE_EARTHS",
    "file_format_version",
    "table",
    "TARGET_ELEMENT_ATTR",
    "LEGACY_TARGET_ATTR",
    "PURITY_LINKS",
    "NEXUS_LINK_ATTR",
    "target_element",
    "DEFAULT_FULL_SCALE_COUNTS",
    "InstrumentKind",
    "INSTRUMENT_KINDS",
    "KIND_TABLES",
    "PRIMARY_TABLE_NAMES",
    "OLDER_FORM_NAMES",
    "SENSOR_STATES",
    "SENSOR_RESERVED_CHANNELS",
    "INSTRUMENT_NAMES_ATTR",
    "KIND_ATTR",
    "NAME_ATTR",
    "STREAM_ATTR",
    "CHANNELS_ATTR",
    "ANALYSIS_GROUP",
    "INSTRUMENT_GROUP",
    "group_name",
    "instrument_group",
    "analysis_group",
    "instrument_table",
    "analysis_table",
    "sensor_table",
    "table_key",
    "split_table_key",
    "READABLE_MAJOR_VERSIONS",
    "unknown_table_message",
]

FILE_FORMAT_VERSION = (2, 0)
"""The format this code writes (major, minor). A minor version only adds (except 1.2, which renamed
/entry/analysis@target to @target_element, see :func:`target_element`); a reader of 1.x reads every 1.y.
2.0: one group per instrument and one analysis per spectrometer stream; a station of the older form gets
exactly the paths of 1.2 (docs/trial-file.md, "Versions")."""
READABLE_MAJOR_VERSIONS = (1, 2)
"""Major versions this code reads (a file of a later major version is refused, never misread)."""
FILE_FORMAT = "rem-daq trial {}.{}".format(*FILE_FORMAT_VERSION)
"""The value of /entry@file_format this code writes."""

STATUS_TEXT_BYTES = 32
ExitStatus = Literal["running", "success", "aborted", "failed"]
"""What a writer sets /entry/exit_status to."""
FinalStatus = Literal["success", "aborted", "failed"]
"""How a trial ended, as its writer closes it."""
EXIT_STATUSES: tuple[ExitStatus, ...] = get_args(ExitStatus)
"""Values of /entry/exit_status a writer sets. "running" in a file nobody writes any more means interrupted."""

INTERRUPTED_STATUS = "interrupted"
"""The /entry/exit_status that `remdaq recover` writes into an interrupted trial (never a writer)."""

DEFAULT_FULL_SCALE_COUNTS = 65535.0
"""Full scale of a 16-bit detector: /entry/instrument/spectrometer@full_scale_counts when nothing else is known
(a spectrometer's own value is recorded; a file without the attribute is taken to have this one)."""


class RowFlag(enum.IntFlag):
    """Bits of the ``flag`` column of furnace and spectrometer rows (16 and 32: spectrometer rows, since 1.1)."""

    READ_FAILED = 1
    SATURATED = 2
    LOST = 4
    ANALYSIS_FAILED = 8
    MODEL_MISMATCH = 16
    NO_RARE_EARTHS = 32


ROW_FLAGS = {
    0: "ok",
    RowFlag.READ_FAILED: "read failed (values are NaN)",
    RowFlag.SATURATED: "saturated pixels (masked in the analysis)",
    RowFlag.LOST: "instrument lost (gap)",
    RowFlag.ANALYSIS_FAILED: "analysis failed (values are NaN)",
    RowFlag.MODEL_MISMATCH: "model mismatch: the calibration cannot represent this spectrum (lack of fit above the "
    "limit)",
    RowFlag.NO_RARE_EARTHS: "no rare earths in the cell (total oxide below the quantitation limit: no purity)",
}
"""What each bit of :class:`RowFlag` means, in words (as the file's ``flag`` column attributes say)."""

# The bits as plain ints, for numpy: an IntFlag is not a Python int to numpy's casting rules (NEP 50), so
# `uint8_array |= RowFlag.X` would not stay uint8.

FLAG_READ_FAILED = int(RowFlag.READ_FAILED)
FLAG_SATURATED = int(RowFlag.SATURATED)
FLAG_LOST = int(RowFlag.LOST)
FLAG_ANALYSIS_FAILED = int(RowFlag.ANALYSIS_FAILED)
FLAG_MODEL_MISMATCH = int(RowFlag.MODEL_MISMATCH)
FLAG_NO_RARE_EARTHS = int(RowFlag.NO_RARE_EARTHS)

TARGET_ELEMENT_ATTR = "target_element"
"""The /entry/analysis attribute naming the element whose oxide purity is computed (e.g. "Nd"), since 1.2."""
LEGACY_TARGET_ATTR = "target"
"""Where files before 1.2 kept the target element. In NeXus, ``target`` is the link attribute (an absolute
HDF5 path): NeXus tools (punx, nexusformat/NeXpy) took the element symbol for a broken link."""
NEXUS_LINK_ATTR = "target"
"""NeXus's link attribute: on a linked dataset, the absolute HDF5 path of the original (since 1.2)."""

PURITY_LINKS = {"purity": "/entry/analysis/purity", "time": "/entry/analysis/time"}
"""The datasets of the /entry/purity NXdata group: hard links to these originals (with NeXus ``target``)."""


def target_element(attrs) -> str:
    """The target element recorded in /entry/analysis attributes ``attrs`` of a file of any 1.x version ("" if none).

    A 1.2 file has ``target_element``; an older one has the symbol in ``target``. A ``target`` that is an
    absolute HDF5 path is a NeXus link attribute, never an element.
    """

    text = hdf5_text
    if TARGET_ELEMENT_ATTR in attrs:
        return text(attrs[TARGET_ELEMENT_ATTR]).strip()
    legacy = text(attrs.get(LEGACY_TARGET_ATTR, "")).strip()
    return "" if legacy.startswith("/") else legacy


def file_format_version(text: str) -> tuple[int, int]:
    """(major, minor) of a /entry@file_format text: "rem-daq trial 1" is (1, 0), "rem-daq trial 1.2" is (1, 2).

    Anything unparseable is (0, 0): treated as older than every optional column.
    """
    match = re.fullmatch(r"rem-daq trial (\d+)(?:\.(\d+))?", str(text).strip())
    if not match:
        return (0, 0)
    return (int(match.group(1)), int(match.group(2) or 0))


@dataclass(frozen=True)
class Column:
    """One growing dataset: name, dtype, per-row shape (may name a dimension), units.

    Column names are the dataset names; a sensor's channel columns are named by the channel
    (:func:`sensor_table`)."""

    name: str
    dtype: str
    units: str
    long_name: str
    row_shape: tuple[int | str, ...] = ()  # entries are ints or "pixels" / "analytes" / "coefficients"
    since: tuple[int, int] = (1, 0)
    """The file format version that added this column to a table that existed before it; (1, 0) for the
    columns a table was introduced with, whichever version introduced the table (:attr:`Table.since`). A column
    added after 1.0 is *optional*: a file of an older version has no such dataset and a reader gives NaN for it
    (see docs/trial-file.md, "Versions"), and a producer may leave it out of :meth:`daq.TrialWriter.append`
    (stored NaN)."""

    @property
    def optional(self) -> bool:
        """True for a column a file of an older 1.x version lacks."""
        return self.since > (1, 0)

    def shape(self, pixels: int, analytes: int, coefficients: int = 0) -> tuple[int, ...]:
        sizes = {"pixels": pixels, "analytes": analytes, "coefficients": coefficients}
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.row_shape)


@dataclass(frozen=True)
class Table:
    """A group whose columns grow together, written in chunks of ``chunk_rows``."""

    name: str
    group: str
    nx_class: str
    chunk_rows: int
    columns: tuple[Column, ...]
    since: tuple[int, int] = (1, 0)
    """The file format version that introduced this kind of table (the sensor table: 2.0)."""

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(
            f"table {self.name!r} has no column {name!r}; columns: {', '.join(c.name for c in self.columns)}"
        )


TABLES = (
    Table(
        "furnace",
        "/entry/instrument/furnace",
        "NXenvironment",
        512,
        (
            Column("time", "f8", "s", "time since trial start (experiment clock)"),
            Column("temperature", "f8", "degC", "process value (thermocouple)"),
            Column("setpoint", "f8", "degC", "target setpoint"),
            Column("working_setpoint", "f8", "degC", "working setpoint (ramping)"),
            Column("output", "f8", "percent", "heater output"),
            Column("status_word", "u2", "", "controller status word (see instrument map)"),
            Column("flag", "u1", "", "row flags (see ROW_FLAGS)"),
        ),
    ),
    Table(
        "spectrometer",
        "/entry/instrument/spectrometer",
        "NXdetector",
        16,
        (
            Column("time", "f8", "s", "time since trial start at the end of the acquisition"),
            Column("counts", "f4", "counts", "raw detector counts", ("pixels",)),
            Column("integration_time", "f8", "s", "integration time"),
            Column("averages", "u4", "", "scans averaged"),
            Column("saturated_pixels", "u4", "", "pixels at full scale"),
            Column("dark_index", "i4", "", "row of dark used"),
            Column("reference_index", "i4", "", "row of reference used"),
            Column("flag", "u1", "", "row flags (see ROW_FLAGS)"),
        ),
    ),
    Table(
        "dark",
        "/entry/instrument/spectrometer/dark",
        "NXdata",
        4,
        (
            Column("time", "f8", "s", "time since trial start"),
            Column("counts", "f4", "counts", "dark counts (shutter closed)", ("pixels",)),
            Column("integration_time", "f8", "s", "integration time"),
        ),
    ),
    Table(
        "reference",
        "/entry/instrument/spectrometer/reference",
        "NXdata",
        4,
        (
            Column("time", "f8", "s", "time since trial start"),
            Column("counts", "f4", "counts", "blank reference counts (shutter open, blank in the cell)", ("pixels",)),
            Column("integration_time", "f8", "s", "integration time"),
        ),
    ),
    Table(
        "analysis",
        "/entry/analysis",
        "NXprocess",
        256,
        (
            Column("time", "f8", "s", "time of the spectrum analysed"),
            Column("concentration", "f8", "g/L", "element concentration", ("analytes",)),
            Column("sigma", "f8", "g/L", "standard uncertainty of concentration", ("analytes",)),
            Column("purity", "f8", "1", "target oxide / total measured rare-earth oxide (mass fraction)"),
            Column("purity_sigma", "f8", "1", "standard uncertainty of purity"),
            Column("residual_rms", "f8", "absorbance", "RMS residual of the fit"),
            Column(
                "lack_of_fit",
                "f8",
                "1",
                "residual variance over the spectrum's own noise (about 1 when the model fits)",
                since=(1, 1),
            ),
            Column("wavelength_shift", "f8", "nm", "common wavelength shift the fit's drift terms imply", since=(1, 1)),
            Column(
                "fit_coefficients",
                "f8",
                "",
                "free coefficients of the fit, one column per name in the column_names attribute",
                ("coefficients",),
                since=(1, 1),
            ),
        ),
    ),
    Table(
        "events",
        "/entry/events",
        "NXlog",
        64,
        (
            Column("time", "f8", "s", "time since trial start"),
            Column("level", "S8", "", "info, warning, error"),
            Column("source", "S16", "", "what raised it"),
            Column("message", "S240", "", "what happened (UTF-8)"),
        ),
    ),
)


def table(name: str) -> Table:
    """The :class:`Table` of that name."""
    for t in TABLES:
        if t.name == name:
            return t
    raise KeyError(f"no table {name!r}; tables: {', '.join(t.name for t in TABLES)}")


# -- format 2.0: one group per instrument, one analysis per spectrometer stream --------------------------------

InstrumentKind = Literal["temperature_controller", "spectrometer", "sensor"]
"""``/entry/instrument/<name>@kind``: what an instrument of the trial is (the station's ``kind``)."""
INSTRUMENT_KINDS: tuple[InstrumentKind, ...] = get_args(InstrumentKind)

KIND_TABLES: dict[InstrumentKind, tuple[str, ...]] = {
    "temperature_controller": ("furnace",),
    "spectrometer": ("spectrometer", "dark", "reference"),
    "sensor": ("sensor",),
}
"""The tables each kind of instrument has (a spectrometer's analysis is its stream's, :func:`analysis_table`)."""

PRIMARY_TABLE_NAMES = ("furnace", "spectrometer", "dark", "reference", "analysis", "events")
"""Table keys without an instrument name: the primary instrument's (the first stream's) tables, as in 1.x."""

OLDER_FORM_NAMES: dict[InstrumentKind, str] = {"temperature_controller": "furnace", "spectrometer": "spectrometer"}
"""The primary instruments' names of a station of the older form, and of every 1.x file."""

INSTRUMENT_GROUP = "/entry/instrument"
ANALYSIS_GROUP = "/entry/analysis"
INSTRUMENT_NAMES_ATTR = "names"
"""``/entry/instrument@names``: the instruments' names in the station's order, comma-separated (since 2.0)."""
KIND_ATTR = "kind"
"""An instrument group's kind (:data:`INSTRUMENT_KINDS`), since 2.0."""
NAME_ATTR = "name"
"""An instrument group's instrument name (which may hold ``-``, which a NeXus group name may not), since 2.0."""
STREAM_ATTR = "stream"
"""An analysis group's spectrometer (the stream it analyses), since 2.0."""
CHANNELS_ATTR = "channels"
"""A sensor group's channel names, in the sensor map's order, comma-separated."""

SENSOR_STATES = ("ok", "out_of_range", "probe_fault")
"""What ``<channel>_state`` codes mean: 0 a measurement, 1 out of the valid range, 2 the probe says it is faulty
(the value is NaN unless 0)."""
SENSOR_CHANNEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
"""A sensor channel's name (as a sensor map's ``ChannelName``): the name of its dataset."""
SENSOR_RESERVED_CHANNELS = frozenset(
    {"time", "flag", "model", "name", "short_name", "attached_to", "measurement", "type", "run_control"}
    | {"external_field_brief", "external_field_full", "value_log", "value_deriv1", "value_deriv2", "geometry"}
)
"""Names no channel may have: the sensor table's own columns, and the fields NeXus's NXsensor defines as
something other than a number."""


def group_name(name: str) -> str:
    """The HDF5 group name of instrument ``name``: the name with ``-`` written ``_``.

    NeXus names (punx's relaxed rule) are letters, digits, ``_`` and ``.``: ``zone-1`` would be an ERROR to
    NeXus validators, so its group is ``zone_1`` and the name itself is the group's ``@name``. Two instruments
    whose names differ only there (``zone-1``, ``zone_1``) cannot be in one trial (the writer refuses).
    """
    if not INSTRUMENT_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an instrument name (lower-case letters, digits, - and _, starting with a letter, "
            "at most 40 characters)"
        )
    return name.replace("-", "_")


def instrument_group(name: str) -> str:
    """``/entry/instrument/<group name>`` of instrument ``name``."""
    return f"{INSTRUMENT_GROUP}/{group_name(name)}"


def analysis_group(spectrometer: str, first: bool) -> str:
    """The analysis group of the stream of ``spectrometer``: ``/entry/analysis`` for the first stream,
    ``/entry/analysis_<group name>`` for each further one."""
    return ANALYSIS_GROUP if first else f"{ANALYSIS_GROUP}_{group_name(spectrometer)}"


def instrument_table(name: str, instrument: str) -> Table:
    """Table ``name`` (furnace, spectrometer, dark, reference) of instrument ``instrument``, at its group."""
    spec = table(name)
    base = instrument_group(instrument)
    if name in ("dark", "reference"):
        return _replace(spec, group=f"{base}/{name}")
    if name not in ("furnace", "spectrometer"):
        raise KeyError(
            f"table {name!r} belongs to no instrument; instrument tables: furnace, spectrometer, dark, "
            "reference (and sensor: daq.layout.sensor_table)"
        )
    return _replace(spec, group=base)


def analysis_table(spectrometer: str, first: bool) -> Table:
    """The analysis table of the stream of ``spectrometer`` (the first stream's at /entry/analysis)."""
    return _replace(table("analysis"), group=analysis_group(spectrometer, first))


def sensor_table(instrument: str, channels: tuple[tuple[str, str, str], ...]) -> Table:
    """The table of sensor ``instrument`` with ``channels`` ((name, units, long name), ...), since 2.0.

    Columns: ``time`` (s), then per channel its value (f8, the channel's units) and ``<channel>_state``
    (u1, :data:`SENSOR_STATES`), then ``flag`` (u1, :class:`RowFlag`).
    """
    columns = [Column("time", "f8", "s", "time since trial start (experiment clock)")]
    seen = {"time", "flag"}
    if not channels:
        raise ValueError(f"sensor {instrument!r}: no channels")
    for entry in channels:
        channel, units, long_name = entry
        if not SENSOR_CHANNEL_NAME.fullmatch(channel):
            raise ValueError(
                f"sensor {instrument!r}: channel {channel!r} is not a channel name (letters, digits and _, "
                "starting with a letter, at most 64 characters)"
            )
        if channel in SENSOR_RESERVED_CHANNELS:
            raise ValueError(f"sensor {instrument!r}: a channel may not be named {channel!r} (reserved)")
        state = f"{channel}_state"
        for column in (channel, state):
            if column in seen:
                raise ValueError(f"sensor {instrument!r}: two columns named {column!r}")
            seen.add(column)
        columns.append(Column(channel, "f8", str(units), str(long_name or channel)))
        columns.append(
            Column(state, "u1", "", f"state of {channel}: 0 ok, 1 out of range, 2 probe fault (value NaN unless 0)")
        )
    columns.append(Column("flag", "u1", "", "row flags (see ROW_FLAGS)"))
    return Table("sensor", instrument_group(instrument), "NXsensor", 512, tuple(columns), since=(2, 0))


def table_key(name: str, instrument: str | None = None) -> str:
    """The key of table ``name`` of ``instrument``: ``"furnace"`` (primary), ``"furnace:zone-2"`` (another)."""
    return name if instrument is None else f"{name}:{instrument}"


def split_table_key(key: str) -> tuple[str, str | None]:
    """``"furnace:zone-2"`` -> ("furnace", "zone-2"); ``"furnace"`` -> ("furnace", None): the primary's."""
    name, sep, instrument = str(key).partition(":")
    return name, (instrument if sep else None)


def unknown_table_message(key: str, known) -> str:
    """What a table key that names no table of a trial is told: the key and the trial's keys."""
    return (
        f"no table {key!r} in this trial; tables: {', '.join(known)} (another instrument's than the primary "
        "one: '<table>:<instrument name>')"
    )
