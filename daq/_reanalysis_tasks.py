"""Worker side of reanalysis: look at a trial file, reanalyse one block of its rows, warm up numba.

These functions run on Dask workers (or in the calling process with
``workers=0``). Each one opens the raw trial file itself, read-only
(:class:`daq.TrialReader`: h5py mode ``"r"``, SWMR read so that an interrupted
file opens too), and reads only its own slice, so raw counts never travel
through the scheduler. What they return is small: metadata, digests, results.

The raw checksum (docs/reanalysis.md, "Raw checksum") is a sha256 tree so that
blocks can be hashed in parallel: one sha256 per :data:`HASH_ROWS` spectrometer
rows (a *leaf*), one over the wavelength, dark and reference tables (the
*header*), and one over those digests in order (:func:`combine_checksum`).
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import threading
from dataclasses import dataclass, field

import numpy as np

from .layout import RowFlag
from .reader import TrialFileError, TrialReader

__all__ = [
    "CHECKSUM_METHOD",
    "HASH_ROWS",
    "FLAG_ANALYSIS_FAILED",
    "FLAG_MODEL_MISMATCH",
    "FLAG_NO_DARK_OR_REFERENCE",
    "FLAG_NO_RARE_EARTHS",
    "RAW_FLAGS_KEPT",
    "ResultFlag",
    "BlockResult",
    "FileProblem",
    "TrialInfo",
    "analyse_block",
    "analyse_block_task",
    "combine_checksum",
    "inspect_trial",
    "inspect_trial_task",
    "warm_up",
]

HASH_ROWS = 1024
"""Spectrometer rows per checksum leaf; row blocks are whole multiples of it."""
CHECKSUM_METHOD = "rem-daq raw sha256 tree v1"


class ResultFlag(enum.IntFlag):
    """Bits of a reanalysis result's ``flag`` column (docs/reanalysis.md); the first three are the raw row's."""

    READ_FAILED = int(RowFlag.READ_FAILED)
    SATURATED = int(RowFlag.SATURATED)
    LOST = int(RowFlag.LOST)
    ANALYSIS_FAILED = 8
    """The reanalysis of this row raised (values NaN)."""
    NO_DARK_OR_REFERENCE = 16
    """The dark or reference row this spectrum names is not in the file (an interrupted trial); values NaN."""
    NO_RARE_EARTHS = 32
    """Total oxide below its quantitation limit: no rare earths in the cell, purity NaN (as bit 32 of a trial file)."""
    MODEL_MISMATCH = 64
    """Lack of fit above the limit (bit 16 of a trial file; 16 is taken here by NO_DARK_OR_REFERENCE)."""


RAW_FLAGS_KEPT = int(ResultFlag.READ_FAILED | ResultFlag.SATURATED | ResultFlag.LOST)
"""Row flags copied from the raw file: read failed, saturated pixels, instrument lost."""
FLAG_READ_FAILED = int(ResultFlag.READ_FAILED)  # a plain int for numpy (NEP 50)
FLAG_ANALYSIS_FAILED = int(ResultFlag.ANALYSIS_FAILED)  # a plain int for numpy (NEP 50)
FLAG_NO_DARK_OR_REFERENCE = int(ResultFlag.NO_DARK_OR_REFERENCE)  # a plain int for numpy (NEP 50)
FLAG_NO_RARE_EARTHS = int(ResultFlag.NO_RARE_EARTHS)  # a plain int for numpy (NEP 50)
FLAG_MODEL_MISMATCH = int(ResultFlag.MODEL_MISMATCH)  # a plain int for numpy (NEP 50)

_HEADER_READ_ROWS = 256
_ANALYSIS_ERRORS = (ValueError, FloatingPointError)  # what the live runner catches around analyse_counts


@dataclass(frozen=True)
class TrialInfo:
    """What reanalysis needs to know about a trial file before reading its spectra."""

    path: str
    trial_id: str
    title: str
    sample: str
    start_time: str
    state: str  # running, success, aborted, failed, interrupted
    target: str
    live_calibration_id: str
    live_calibration_file: str
    software_version: str
    rows: int  # spectrometer rows every column holds
    pixels: int
    dark_rows: int
    reference_rows: int
    wavelength_nm: np.ndarray = field(repr=False)
    header_sha256: str = ""  # wavelength, dark and reference counts ("" for a running trial: not read)
    file_bytes: int = 0  # bytes on disk when it was inspected
    stored_eof: int = 0  # bytes the file's superblock says it has (0: not recorded by an old format)
    full_scale_counts: float | None = None  # /entry/instrument/spectrometer@full_scale_counts (None: not recorded)


@dataclass
class BlockResult:
    """Results (or only checksum leaves) of spectrometer rows ``start:stop`` of one trial file."""

    path: str
    start: int
    stop: int
    leaves: list[bytes]  # sha256 digests, one per HASH_ROWS rows
    time: np.ndarray | None = None
    concentration: np.ndarray | None = None  # (n, K) g/L
    sigma: np.ndarray | None = None  # (n, K) g/L
    purity: np.ndarray | None = None
    purity_sigma: np.ndarray | None = None
    residual_rms: np.ndarray | None = None
    masked_pixels: np.ndarray | None = None
    lack_of_fit: np.ndarray | None = None
    wavelength_shift: np.ndarray | None = None  # nm
    flag: np.ndarray | None = None
    worker_pid: int = 0

    @property
    def rows(self) -> int:
        return self.stop - self.start


def _update_with_array(digest, array, dtype: str) -> None:
    digest.update(np.ascontiguousarray(array, dtype=dtype))  # the array's buffer, without a copy when it can


_OPEN_LOCKS: dict[str, threading.Lock] = {}
_OPEN_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _reading(path: str):
    """A TrialReader of ``path`` that no other thread of this process has open at the same time.

    HDF5 shares one file object between the handles a process opens on the same
    file; a SWMR refresh through one handle while another is open corrupts that
    shared metadata cache ("can't insert duplicate key"). Multi-threaded workers
    (``dask worker --nthreads 4``, an in-process LocalCluster) would do exactly
    that, so reads of one file take turns; hashing and analysis run outside.
    """
    key = os.path.realpath(path)
    with _OPEN_LOCKS_GUARD:
        lock = _OPEN_LOCKS.setdefault(key, threading.Lock())
    with lock, TrialReader(path) as trial:
        yield trial


def inspect_trial(path: str) -> TrialInfo:
    """Open a trial file, check it is one, and return its metadata, row counts and header digest.

    Raises :class:`daq.TrialFileError` for a file that is missing, corrupt or not
    a trial file. A running trial is returned without reading its tables.
    """
    with _reading(path) as trial:
        try:
            meta = trial.metadata
            attrs = trial.analysis_attrs
            state = trial.state
            wavelength = np.asarray(trial.wavelength_nm, dtype=np.float64)
            rows = trial.rows("spectrometer")
            dark_rows, reference_rows = trial.rows("dark"), trial.rows("reference")
            header = ""
            integrity = trial.integrity
            full_scale = trial.full_scale_counts
            if state != "running":
                header = _header_digest(trial, wavelength, dark_rows, reference_rows)
        except (KeyError, OSError, RuntimeError, ValueError) as error:
            raise TrialFileError(f"{path}: unreadable trial file: {error}") from None
    return TrialInfo(
        path=str(path),
        trial_id=str(meta.get("trial_id", "")) or os.path.splitext(os.path.basename(path))[0],
        title=str(meta.get("title", "")),
        sample=str(meta.get("sample", "")),
        start_time=str(meta.get("start_time", "")),
        state=state,
        target=attrs.get("target", ""),
        live_calibration_id=attrs.get("calibration_id", ""),
        live_calibration_file=attrs.get("calibration_file", ""),
        software_version=str(meta.get("software_version", "")),
        rows=int(rows),
        pixels=int(wavelength.size),
        dark_rows=int(dark_rows),
        reference_rows=int(reference_rows),
        wavelength_nm=wavelength,
        header_sha256=header,
        file_bytes=integrity.file_size,
        stored_eof=integrity.stored_eof or 0,
        full_scale_counts=full_scale,
    )


def _header_digest(trial: TrialReader, wavelength: np.ndarray, dark_rows: int, reference_rows: int) -> str:
    digest = hashlib.sha256()
    digest.update(b"wavelength\0")
    _update_with_array(digest, wavelength, "<f8")
    for name, rows in (("dark", dark_rows), ("reference", reference_rows)):
        digest.update(name.encode() + b"\0")
        counts = trial.dataset(name, "counts")
        for start in range(0, rows, _HEADER_READ_ROWS):
            _update_with_array(digest, counts[start : min(rows, start + _HEADER_READ_ROWS)], "<f4")
    return digest.hexdigest()


def combine_checksum(info: TrialInfo, leaves: list[bytes]) -> str:
    """The raw checksum of a trial: sha256 over its shape, header digest and row-leaf digests in order."""
    digest = hashlib.sha256()
    digest.update(
        f"{CHECKSUM_METHOD}\0{info.rows} {info.pixels} {info.dark_rows} {info.reference_rows} {HASH_ROWS}\0".encode()
    )
    digest.update(bytes.fromhex(info.header_sha256))
    for leaf in leaves:
        digest.update(leaf)
    return digest.hexdigest()


def _leaves(columns: dict[str, np.ndarray]) -> list[bytes]:
    n = len(columns["time"])
    leaves = []
    for start in range(0, n, HASH_ROWS):
        part = slice(start, min(n, start + HASH_ROWS))
        digest = hashlib.sha256()
        for name, dtype in (
            ("time", "<f8"),
            ("dark_index", "<i4"),
            ("reference_index", "<i4"),
            ("flag", "u1"),
            ("counts", "<f4"),
        ):
            _update_with_array(digest, columns[name][part], dtype)
        leaves.append(digest.digest())
    return leaves


def analyse_block(
    path: str,
    start: int,
    stop: int,
    calibration,
    target: str,
    saturation_counts: float | None,
    dark_rows: int,
    reference_rows: int,
    analyse: bool = True,
) -> BlockResult:
    """Read spectrometer rows ``start:stop`` of a trial file, hash them, and reanalyse them.

    Each spectrum is analysed by :func:`daq.pipeline.analyse_counts` against the
    dark row ``dark_index`` and reference row ``reference_index`` it was taken
    with, in runs of consecutive rows sharing both, exactly as the live runner
    did one spectrum at a time. Rows whose read failed live stay NaN; a run whose
    analysis raises is redone row by row and the failing rows are flagged.
    ``dark_rows`` / ``reference_rows`` are the table lengths seen by
    :func:`inspect_trial` (an index beyond them is a missing row).
    With ``analyse=False`` only the checksum leaves are computed.
    """
    if start % HASH_ROWS:
        raise ValueError(f"block start {start} is not a multiple of HASH_ROWS = {HASH_ROWS}")
    with _reading(path) as trial:
        try:
            columns = trial.read(
                "spectrometer", start, stop, columns=("time", "dark_index", "reference_index", "flag", "counts")
            )
            if len(columns["time"]) != stop - start:
                raise TrialFileError(
                    f"{path}: spectrometer rows {start}:{stop} expected, "
                    f"{len(columns['time'])} found (the file changed since it was inspected)"
                )
            if analyse:
                rows = _select_rows(columns, dark_rows, reference_rows)
                darks = _rows_of(trial, "dark", rows["dark_index"][rows["usable"]])
                references = _rows_of(trial, "reference", rows["reference_index"][rows["usable"]])
        except (KeyError, OSError, RuntimeError) as error:
            if isinstance(error, TrialFileError):
                raise
            raise TrialFileError(f"{path}: rows {start}:{stop} unreadable: {error}") from None
    leaves = _leaves(columns)
    if not analyse:
        return BlockResult(str(path), start, stop, leaves, worker_pid=os.getpid())
    result = _analyse(columns["counts"], rows, darks, references, calibration, target, saturation_counts)
    return BlockResult(
        str(path),
        start,
        stop,
        leaves,
        time=np.asarray(columns["time"], dtype=np.float64),
        worker_pid=os.getpid(),
        **result,
    )


def _select_rows(columns, dark_rows: int, reference_rows: int) -> dict[str, np.ndarray]:
    """Flags kept from the raw rows, and which rows can be analysed (read ok, dark and reference present)."""
    flag = (np.asarray(columns["flag"], dtype=np.uint8) & RAW_FLAGS_KEPT).astype(np.uint8)
    dark_index = np.asarray(columns["dark_index"], dtype=np.int64)
    reference_index = np.asarray(columns["reference_index"], dtype=np.int64)
    usable = (flag & FLAG_READ_FAILED) == 0
    missing = usable & (
        (dark_index < 0) | (dark_index >= dark_rows) | (reference_index < 0) | (reference_index >= reference_rows)
    )
    flag[missing] |= FLAG_NO_DARK_OR_REFERENCE
    return {"flag": flag, "usable": usable & ~missing, "dark_index": dark_index, "reference_index": reference_index}


def _analyse(
    counts: np.ndarray,
    rows: dict[str, np.ndarray],
    darks: dict[int, np.ndarray],
    references: dict[int, np.ndarray],
    calibration,
    target: str,
    saturation_counts,
) -> dict[str, np.ndarray]:
    from .pipeline import analyse_counts

    n, K = len(counts), len(calibration.analytes)
    out = {
        "concentration": np.full((n, K), np.nan),
        "sigma": np.full((n, K), np.nan),
        "purity": np.full(n, np.nan),
        "purity_sigma": np.full(n, np.nan),
        "residual_rms": np.full(n, np.nan),
        "masked_pixels": np.zeros(n, dtype=np.int32),
        "lack_of_fit": np.full(n, np.nan),
        "wavelength_shift": np.full(n, np.nan),
        "flag": rows["flag"],
    }
    if saturation_counts is not None and np.isinf(saturation_counts):
        saturation_counts = None  # no mask
    dark_index, reference_index = rows["dark_index"], rows["reference_index"]
    usable = np.flatnonzero(rows["usable"])
    if usable.size == 0:
        return out
    breaks = (
        np.flatnonzero(
            (np.diff(usable) != 1) | (np.diff(dark_index[usable]) != 0) | (np.diff(reference_index[usable]) != 0)
        )
        + 1
    )
    for run in np.split(usable, breaks):
        first, stop = int(run[0]), int(run[-1]) + 1
        dark, reference = darks[int(dark_index[first])], references[int(reference_index[first])]
        try:
            results = [
                (
                    first,
                    stop,
                    analyse_counts(counts[first:stop], dark, reference, calibration, target, saturation_counts),
                )
            ]
        except _ANALYSIS_ERRORS:
            results = []
            for row in range(first, stop):  # find the rows that fail; keep the others
                try:
                    results.append(
                        (
                            row,
                            row + 1,
                            analyse_counts(
                                counts[row : row + 1], dark, reference, calibration, target, saturation_counts
                            ),
                        )
                    )
                except _ANALYSIS_ERRORS:
                    out["flag"][row] |= FLAG_ANALYSIS_FAILED
        for a, b, result in results:
            out["concentration"][a:b] = result.concentration_g_per_L
            out["sigma"][a:b] = result.sigma_g_per_L
            out["purity"][a:b] = result.purity
            out["purity_sigma"][a:b] = result.purity_sigma
            out["residual_rms"][a:b] = result.residual_rms
            out["masked_pixels"][a:b] = result.masked_pixels
            out["lack_of_fit"][a:b] = result.lack_of_fit
            out["wavelength_shift"][a:b] = result.wavelength_shift_nm
            out["flag"][a:b] |= (
                np.where(_flagged(result.model_mismatch), FLAG_MODEL_MISMATCH, 0)
                | np.where(_flagged(result.below_quantitation_limit), FLAG_NO_RARE_EARTHS, 0)
            ).astype(np.uint8)
    return out


def _flagged(condition: np.ndarray | None) -> np.ndarray | bool:
    """A condition of a result for np.where: None (a result built without it) is False, as np.where takes it."""
    return False if condition is None else condition


def _rows_of(trial: TrialReader, table: str, indices: np.ndarray) -> dict[int, np.ndarray]:
    """The counts of the rows of ``table`` named in ``indices`` (each read once), by row index."""
    wanted = np.unique(indices)
    if wanted.size == 0:
        return {}
    dataset = trial.dataset(table, "counts")
    if wanted.size == 1:
        block = dataset[int(wanted[0]) : int(wanted[0]) + 1]
    else:
        block = dataset[wanted.tolist()]
    return {int(i): block[j] for j, i in enumerate(wanted)}


@dataclass(frozen=True)
class FileProblem:
    """What a task returns, instead of raising, when its trial file is unreadable (an expected outcome, not a bug)."""

    message: str


def inspect_trial_task(path: str) -> TrialInfo | FileProblem:
    """:func:`inspect_trial` as a task: an unreadable file comes back as a :class:`FileProblem`."""
    try:
        return inspect_trial(path)
    except TrialFileError as error:
        return FileProblem(str(error))


def analyse_block_task(*args, **kwargs) -> BlockResult | FileProblem:
    """:func:`analyse_block` as a task: an unreadable file comes back as a :class:`FileProblem`."""
    try:
        return analyse_block(*args, **kwargs)
    except TrialFileError as error:
        return FileProblem(str(error))


def warm_up() -> dict[str, object]:
    """Load (or compile once, into the numba cache) the analysis kernels in this process; say where from."""
    import numba

    import analysis

    return {"pid": os.getpid(), "numba_threads": numba.get_num_threads(), **analysis.warm_up_kernels()}
