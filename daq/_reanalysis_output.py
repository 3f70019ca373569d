"""Client side of reanalysis: result files (written under a temporary name, renamed when complete) and summary.csv.

Layout of a result file, format "rem-daq reanalysis 1.1" (docs/reanalysis.md is its prose)::

    /                          @default = "entry"
    /entry                     NXentry   @file_format @trial_id @title @sample @start_time @raw_file
    /entry/reanalysis          NXprocess program, version, date; provenance attributes (@target_element ...)
        analytes (K,) · time (N,) s · concentration (N,K) g/L · sigma (N,K) g/L · purity (N,) 1
        purity_sigma (N,) 1 · residual_rms (N,) absorbance · masked_pixels (N,) · flag (N,) uint8
        lack_of_fit (N,) 1 · wavelength_shift (N,) nm (added with trial format 1.1: read as NaN from an older result)
    /entry/reanalysis/calibration  NXdata  @signal = "sensitivity"; sensitivity (K,P), wavelength (P,)
    /entry/purity              NXdata  purity, time (hard links, each with NeXus @target = the original's path)

Result format 1 (before 1.1) named the target element ``@target`` (NeXus's link attribute) and kept the
calibration in an NXcollection; :func:`read_result` reads both.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import h5py
import numpy as np

from ._bounded_hdf5 import checked_member
from ._common import hdf5_text
from ._reanalysis_tasks import HASH_ROWS, BlockResult, TrialInfo
from .layout import LEGACY_TARGET_ATTR, TARGET_ELEMENT_ATTR, target_element
from .store import nexus_calibration_group, nexus_links

__all__ = [
    "RESULT_FORMAT",
    "RESULT_SUFFIX",
    "SUMMARY_COLUMNS",
    "ReanalysisResult",
    "ResultWriter",
    "parameters_json",
    "read_result",
    "remove_stale_partials",
    "result_identity",
    "result_path",
    "write_summary",
]

RESULT_FORMAT = "rem-daq reanalysis 1.1"
"""What this code writes; it reads every "rem-daq reanalysis 1.x" (1: before the target element was renamed)."""
_RESULT_FORMAT_PATTERN = re.compile(r"rem-daq reanalysis 1(\.\d+)?")
RESULT_SUFFIX = ".reanalysis.h5"
_PARTIAL = ".partial-"
SUMMARY_COLUMNS = (
    "trial",
    "sample",
    "final_purity",
    "mean_purity",
    "covered_elements",
    "rows",
    "status",
    "trial_state",
    "target",
    "calibration_id",
    "result_file",
    "raw_file",
    "message",
    "final_lack_of_fit",
    "model_mismatch_fraction",
)
NO_RARE_EARTHS = "no rare earths in the cell"
"""summary.csv's final_purity when no spectrum had a purity because the total oxide was below its quantitation limit."""

_COLUMNS = (  # name, dtype, units, long_name, per analyte
    ("time", "f8", "s", "time of the spectrum analysed (experiment clock of the trial)", False),
    ("concentration", "f8", "g/L", "element concentration", True),
    ("sigma", "f8", "g/L", "standard uncertainty of concentration", True),
    ("purity", "f8", "1", "target oxide / total measured rare-earth oxide (mass fraction)", False),
    ("purity_sigma", "f8", "1", "standard uncertainty of purity", False),
    ("residual_rms", "f8", "absorbance", "RMS residual of the fit", False),
    ("masked_pixels", "i4", "", "pixels left out of the fit (saturated, non-positive or non-finite)", False),
    (
        "flag",
        "u1",
        "",
        "row flags: 1 read failed live, 2 saturated pixels, 4 instrument lost, "
        "8 reanalysis failed, 16 dark or reference row missing, 32 no rare earths in the cell "
        "(total oxide below the quantitation limit: no purity), 64 model mismatch (lack of fit "
        "above the limit)",
        False,
    ),
    ("lack_of_fit", "f8", "1", "residual variance over the spectrum's own noise (about 1 when the model fits)", False),
    ("wavelength_shift", "f8", "nm", "common wavelength shift the fit's drift terms imply", False),
)
_ADDED_COLUMNS = ("lack_of_fit", "wavelength_shift")
"""Columns a result file written before they existed lacks; read back as NaN."""


_Node = TypeVar("_Node", h5py.Group, h5py.Dataset)


def _member(path: Path, parent: h5py.Group, name: str, kind: type[_Node]) -> _Node:
    """``parent[name]``, which the result layout says is a ``kind``; ValueError (not a result file) if it is not."""
    return checked_member(
        parent, name, kind, lambda problem: ValueError(f"{path}: not a rem-daq reanalysis result: {problem}")
    )


def _is_result(handle: h5py.File) -> bool:
    return "entry" in handle and bool(
        _RESULT_FORMAT_PATTERN.fullmatch(hdf5_text(handle["entry"].attrs.get("file_format", "")).strip())
    )


def _nexus_attrs(attrs: dict[str, object]) -> dict[str, object]:
    """Provenance attributes as stored: the target element as ``target_element``, never NeXus's ``target``."""
    attrs = dict(attrs)
    if LEGACY_TARGET_ATTR in attrs:
        attrs.setdefault(TARGET_ELEMENT_ATTR, attrs.pop(LEGACY_TARGET_ATTR))
    return attrs


def result_path(out_dir: Path, trial_id: str) -> Path:
    """Where the result of trial ``trial_id`` goes in ``out_dir``."""
    return Path(out_dir) / f"{trial_id}{RESULT_SUFFIX}"


def _partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}{_PARTIAL}{socket.gethostname()}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(out_dir: Path) -> list[Path]:
    """Delete temporary files (results, summary) left in ``out_dir`` by a reanalysis on this host that was killed."""
    removed = []
    host = socket.gethostname()
    for path in Path(out_dir).glob(f".*{_PARTIAL}{host}-*"):
        try:
            pid = int(path.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


class ResultWriter:
    """One result file being written: created under a temporary name, filled block by block, renamed at the end."""

    def __init__(self, final_path: Path, info: TrialInfo, calibration, attrs: dict[str, object]):
        self.final_path = Path(final_path)
        self.temp_path = _partial_path(self.final_path)
        self.rows = info.rows
        self.rows_written = 0
        self._file = h5py.File(self.temp_path, "w", libver=("v110", "v110"))
        try:
            self._create(info, calibration, attrs)
        except BaseException:
            self.abandon()
            raise

    def _create(self, info: TrialInfo, calibration, attrs: dict[str, object]) -> None:
        handle = self._file
        handle.attrs["default"] = "entry"
        entry = handle.create_group("entry")
        entry.attrs.update(
            {
                "NX_class": "NXentry",
                "default": "purity",
                "file_format": RESULT_FORMAT,
                "trial_id": info.trial_id,
                "title": info.title,
                "sample": info.sample,
                "start_time": info.start_time,
                "raw_file": str(info.path),
            }
        )
        process = entry.create_group("reanalysis")
        process.attrs["NX_class"] = "NXprocess"
        process.attrs.update(_nexus_attrs(attrs))
        for name, value in (
            ("program", "rem-daq reanalyze (daq.reanalysis)"),
            ("version", str(attrs.get("software_version", ""))),
        ):
            process.create_dataset(name, data=value, dtype=h5py.string_dtype()).attrs["units"] = ""
        analytes = process.create_dataset(
            "analytes", data=np.array([a.encode() for a in calibration.analytes], dtype="S3")
        )
        analytes.attrs.update({"units": "", "long_name": "element symbols, in the order of concentration columns"})
        K = len(calibration.analytes)
        chunk_rows = max(1, min(HASH_ROWS, self.rows))
        for name, dtype, units, long_name, per_analyte in _COLUMNS:
            shape = (self.rows, K) if per_analyte else (self.rows,)
            chunks = (chunk_rows, K) if per_analyte else (chunk_rows,)
            dataset = process.create_dataset(
                name,
                shape=shape,
                dtype=dtype,
                chunks=chunks if self.rows else None,
                compression="gzip" if self.rows else None,
                fillvalue=np.nan if dtype.startswith("f") else 0,
            )
            dataset.attrs.update({"units": units, "long_name": long_name})
        nexus_calibration_group(
            process,
            {
                "sensitivity": (np.asarray(calibration.sensitivity), "absorbance per g/L"),
                "wavelength": (np.asarray(calibration.wavelength_nm), "nm"),
            },
        )
        purity = entry.create_group("purity")
        purity.attrs.update({"NX_class": "NXdata", "signal": "purity", "axes": ["time"]})
        nexus_links(handle, purity, {"purity": "/entry/reanalysis/purity", "time": "/entry/reanalysis/time"})

    def write_block(self, block: BlockResult) -> None:
        """Write one block's results at its rows."""
        process = _member(self.temp_path, self._file, "entry/reanalysis", h5py.Group)
        rows = slice(block.start, block.stop)
        for name, *_ in _COLUMNS:
            _member(self.temp_path, process, name, h5py.Dataset)[rows] = getattr(block, name)
        self.rows_written += block.rows

    def finish(self, attrs: dict[str, object], date: str) -> Path:
        """Add the last provenance attributes and the date (ISO 8601 UTC), close, fsync, rename; return the path."""
        process = _member(self.temp_path, self._file, "entry/reanalysis", h5py.Group)
        process.attrs.update(_nexus_attrs(attrs))
        process.create_dataset("date", data=date, dtype=h5py.string_dtype()).attrs["units"] = ""
        if self.rows_written != self.rows:
            raise RuntimeError(f"{self.final_path}: {self.rows_written} of {self.rows} rows written")
        self._file.close()
        with open(self.temp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.temp_path, self.final_path)
        directory = os.open(self.final_path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return self.final_path

    def abandon(self) -> None:
        """Close and delete the temporary file (Ctrl-C, a failed block): nothing half-written is left."""
        try:
            if self._file.id.valid:
                self._file.close()
        finally:
            self.temp_path.unlink(missing_ok=True)


@dataclass(frozen=True)
class ReanalysisResult:
    """A result file read back: per-spectrum arrays and the provenance attributes."""

    path: Path
    trial_id: str
    sample: str
    analytes: tuple[str, ...]
    time: np.ndarray
    concentration: np.ndarray  # (N, K) g/L
    sigma: np.ndarray  # (N, K) g/L
    purity: np.ndarray
    purity_sigma: np.ndarray
    residual_rms: np.ndarray
    masked_pixels: np.ndarray
    flag: np.ndarray
    provenance: dict[str, object]
    lack_of_fit: np.ndarray | None = None  # (N,) NaN in a result file written before the column existed
    wavelength_shift: np.ndarray | None = None  # (N,) nm

    @property
    def final_lack_of_fit(self) -> float:
        """The last finite lack of fit (NaN when there is none)."""
        values = np.asarray(self.lack_of_fit, dtype=float)
        finite = values[np.isfinite(values)]
        return float(finite[-1]) if finite.size else math.nan

    @property
    def model_mismatch_fraction(self) -> float:
        """The fraction of spectra flagged model mismatch (NaN without spectra)."""
        from ._reanalysis_tasks import FLAG_MODEL_MISMATCH

        return float(np.count_nonzero(self.flag & FLAG_MODEL_MISMATCH)) / self.flag.size if self.flag.size else math.nan

    @property
    def final_purity_note(self) -> str:
        """ "no rare earths in the cell" when no spectrum had a purity because of that (flag 32), else ""."""
        from ._reanalysis_tasks import FLAG_NO_RARE_EARTHS

        if math.isnan(self.final_purity) and np.any(self.flag & FLAG_NO_RARE_EARTHS):
            return NO_RARE_EARTHS
        return ""

    @property
    def final_purity(self) -> float:
        """The last finite purity (NaN when there is none)."""
        finite = self.purity[np.isfinite(self.purity)]
        return float(finite[-1]) if finite.size else math.nan

    @property
    def mean_purity(self) -> float:
        """The mean of the finite purities (NaN when there is none)."""
        finite = self.purity[np.isfinite(self.purity)]
        return float(finite.mean()) if finite.size else math.nan

    def frame(self):
        """The results as a pandas DataFrame: time, purity, purity_sigma, residual_rms, flag, then c_X and sigma_X."""
        import pandas as pd

        data = {
            "time_s": self.time,
            "purity": self.purity,
            "purity_sigma": self.purity_sigma,
            "residual_rms": self.residual_rms,
            "masked_pixels": self.masked_pixels,
            "flag": self.flag,
            "lack_of_fit": self.lack_of_fit,
            "wavelength_shift_nm": self.wavelength_shift,
        }
        for k, symbol in enumerate(self.analytes):
            data[f"c_{symbol}_g_per_L"] = self.concentration[:, k]
            data[f"sigma_{symbol}_g_per_L"] = self.sigma[:, k]
        return pd.DataFrame(data)


def _attr_value(value):
    if isinstance(value, (bytes, np.bytes_)):
        return hdf5_text(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_result(path: str | os.PathLike) -> ReanalysisResult:
    """Read a reanalysis result file (arrays and provenance)."""
    path = Path(path)
    with h5py.File(path, "r") as handle:
        if not _is_result(handle):
            raise ValueError(
                f"{path}: not a rem-daq reanalysis result (file_format is not {RESULT_FORMAT!r} or an earlier 1.x)"
            )
        entry = _member(path, handle, "entry", h5py.Group)
        process = _member(path, entry, "reanalysis", h5py.Group)
        arrays = {name: _member(path, process, name, h5py.Dataset)[()] for name, *_ in _COLUMNS if name in process}
        for name in _ADDED_COLUMNS:
            arrays.setdefault(name, np.full(len(arrays["time"]), np.nan))
        provenance: dict[str, object] = {
            key: _attr_value(value) for key, value in process.attrs.items() if key != "NX_class"
        }
        # the target element under both names: "target_element" as stored since 1.1, "target" as before
        provenance[TARGET_ELEMENT_ATTR] = provenance[LEGACY_TARGET_ATTR] = target_element(process.attrs)
        return ReanalysisResult(
            path=path,
            trial_id=hdf5_text(entry.attrs["trial_id"]),
            sample=hdf5_text(entry.attrs.get("sample", "")),
            analytes=tuple(hdf5_text(a) for a in _member(path, process, "analytes", h5py.Dataset)[()]),
            provenance=provenance,
            **arrays,
        )


def result_identity(path: Path) -> dict[str, object] | None:
    """The provenance of an existing result file that decides whether it is up to date; None if unreadable."""
    try:
        with h5py.File(path, "r") as handle:
            if not _is_result(handle):
                return None
            attrs = handle["entry/reanalysis"].attrs
            return {
                key: _attr_value(attrs[key])
                for key in (
                    "calibration_id",
                    "raw_sha256",
                    "raw_header_sha256",
                    "raw_rows",
                    "parameters",
                    "raw_trial_id",
                )
                if key in attrs
            }
    except (OSError, KeyError, ValueError):
        return None


def parameters_json(parameters: dict[str, object]) -> str:
    """The parameters that decide the results, as canonical JSON (compared to tell a result up to date)."""
    return json.dumps(parameters, sort_keys=True)


def _number(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.9g}"


def write_summary(path: Path, outcomes) -> Path:
    """Write summary.csv (one row per trial file of the run) under a temporary name, then rename it."""
    path = Path(path)
    temp = path.with_name(f".{path.name}{_PARTIAL}{socket.gethostname()}-{os.getpid()}")
    with open(temp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for o in outcomes:
            final_purity = _number(o.final_purity) or getattr(o, "final_purity_note", "")
            writer.writerow(
                [
                    o.trial_id,
                    o.sample,
                    final_purity,
                    _number(o.mean_purity),
                    " ".join(o.covered_elements),
                    o.rows,
                    o.status,
                    o.trial_state,
                    o.target,
                    o.calibration_id,
                    "" if o.result_file is None else str(o.result_file),
                    str(o.raw_file),
                    o.message,
                    _number(o.final_lack_of_fit),
                    _number(o.model_mismatch_fraction),
                ]
            )
    os.replace(temp, path)
    return path
