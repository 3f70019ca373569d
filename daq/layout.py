"""The trial file layout, declared once: the writer creates it, the reader and tests check it.

See docs/trial-file.md for the contract in prose. Each *table* is a group of
datasets that grow together along their first axis (one row per reading).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal, get_args

from ._common import hdf5_text

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
]

FILE_FORMAT_VERSION = (1, 2)
"""The format this code writes (major, minor). A minor version only adds (except 1.2, which renamed
/entry/analysis@target to @target_element, see :func:`target_element`); a reader of 1.x reads every 1.y."""
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
    """One growing dataset: name, dtype, per-row shape (may name a dimension), units."""

    name: str
    dtype: str
    units: str
    long_name: str
    row_shape: tuple[int | str, ...] = ()  # entries are ints or "pixels" / "analytes" / "coefficients"
    since: tuple[int, int] = (1, 0)
    """The file format version that added this column. A column added after 1.0 is *optional*: a file of an
    older version has no such dataset and a reader gives NaN for it (see docs/trial-file.md, "Versions"), and a
    producer may leave it out of :meth:`daq.TrialWriter.append` (stored NaN)."""

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
