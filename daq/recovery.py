"""Make an interrupted trial file readable by every HDF5 tool: `remdaq recover FILE...`.

A killed writer leaves its file readable by SWMR readers (rem-daq, h5py with
``swmr=True``) but marked "open for writing" in its superblock, which other tools
(h5dump, HDFView, h5py without SWMR) refuse. Recovery clears that mark once the
writer is known dead (its lock is free), as ``h5clear -s`` would, then records in
the file that it did so: ``/entry/exit_status`` becomes "interrupted" and
``/entry`` gets ``recovered_time`` and ``recovery`` attributes. The raw datasets
(rows up to the last flush) are not touched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py

from ._common import software_version
from ._superblock import clear_writer_flags
from .layout import INTERRUPTED_STATUS
from .reader import TrialFileError, check_file, open_trial
from .store import utc_now_iso, writer_is_alive, writer_lock_path

__all__ = ["RecoveryError", "RecoveryResult", "recover_trial"]


class RecoveryError(OSError):
    """The file cannot be recovered now (a writer holds it, or it is damaged)."""


@dataclass(frozen=True)
class RecoveryResult:
    """What recovery found and did for one file."""

    path: Path
    action: str  # "recovered", or "nothing to do" for a file that ended cleanly or was recovered before
    rows: dict[str, int]  # rows per table as last flushed

    def describe(self) -> str:
        """One line for the operator."""
        counts = ", ".join(f"{name} {count}" for name, count in self.rows.items() if count)
        return f"{self.path}: {self.action} ({counts or 'no rows'})"


def _rows_and_status(path: Path) -> tuple[dict[str, int], str, str]:
    with open_trial(path) as trial:
        return {key: trial.rows(key) for key in trial.tables()}, trial.exit_status, trial.heartbeat_time


def recover_trial(path: str | os.PathLike) -> RecoveryResult:
    """Clear the writer's mark of an interrupted trial and record it; refuse while a writer is alive."""
    path = Path(path)
    integrity = check_file(path)  # TrialFileError for a damaged or truncated file: nothing is written to it
    if writer_is_alive(path):
        raise RecoveryError(
            f"{path}: a process is still writing this trial (its writer lock is held); "
            "recover it only after that process has ended"
        )
    rows, status, heartbeat = _rows_and_status(path)
    if not integrity.writer_flags_set and status != "running":
        return RecoveryResult(path, "nothing to do", rows)
    clear_writer_flags(path)
    try:
        with h5py.File(path, "r+") as handle:
            entry = handle["entry"]
            if not isinstance(entry, h5py.Group):
                raise TrialFileError(f"{path}: damaged or not a rem-daq trial file: /entry is not an HDF5 group")
            if status == "running":
                # end_time: the writer's last sign of life
                for name, text in (("exit_status", INTERRUPTED_STATUS), ("end_time", heartbeat)):
                    dataset = entry[name]
                    if not isinstance(dataset, h5py.Dataset):
                        raise TrialFileError(
                            f"{path}: damaged or not a rem-daq trial file: /entry/{name} is not an HDF5 dataset"
                        )
                    dataset[()] = text.encode()
            entry.attrs["recovered_time"] = utc_now_iso()
            entry.attrs["recovery"] = (
                f"remdaq recover {software_version()}: the writer had died (its lock was free) leaving the file "
                f"marked open for writing with exit status {status!r}; the mark was cleared and the raw "
                f"datasets left as last flushed ({', '.join(f'{k} {v}' for k, v in rows.items())} rows)"
            )
    except (OSError, RuntimeError) as error:
        raise RecoveryError(
            f"{path}: the writer's mark was cleared but the record could not be written: {error}"
        ) from None
    writer_lock_path(path).unlink(missing_ok=True)  # the dead writer's sidecar
    return RecoveryResult(path, "recovered", rows)
