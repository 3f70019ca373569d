"""The calibration a trial used: its file in the data folder (read with analysis.Calibration), or the trial's copy."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import analysis

from ._paths import DataFolder, OutsideDataFolder, confine, relative_name

__all__ = ["CalibrationSource", "load_calibration", "trial_calibration", "calibration_loader", "list_calibrations"]

CALIBRATIONS_FOLDER = "calibrations"


@functools.lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int, size: int) -> analysis.Calibration:
    return analysis.Calibration.load(path)


def load_calibration(path: Path) -> analysis.Calibration:
    """A calibration file, read once per version of the file (it is immutable, so it is shared)."""
    stat = path.stat()
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@dataclass
class CalibrationSource:
    """A trial's calibration: the file's content when it can be read, and why not otherwise."""

    calibration: analysis.Calibration | None
    path: Path | None  # inside the data folder
    name: str  # as recorded in the trial, or relative to the data folder
    problem: str  # empty when ``calibration`` is the file the trial recorded


def trial_calibration(folder: DataFolder, analysis_attrs: dict) -> CalibrationSource:
    """Find and read the calibration file a trial recorded, if it is inside the data folder and unchanged."""
    recorded = str(analysis_attrs.get("calibration_file", "") or "")
    expected_id = str(analysis_attrs.get("calibration_id", "") or "")
    if not recorded:
        return CalibrationSource(None, None, "", "the trial records no calibration file")
    try:
        path = confine(folder, recorded)
    except OutsideDataFolder:
        return CalibrationSource(
            None,
            None,
            recorded,
            "the recorded calibration file is outside the data folder, so this app does not open it",
        )
    name = relative_name(folder, path)
    if not path.is_file():
        return CalibrationSource(None, path, name, "the recorded calibration file is no longer in the data folder")
    try:
        calibration = load_calibration(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        return CalibrationSource(None, path, name, f"the calibration file cannot be read: {error}")
    if expected_id and calibration.calibration_id != expected_id:
        return CalibrationSource(
            None,
            path,
            name,
            f"the file now holds calibration {calibration.calibration_id}, not {expected_id} that the trial used",
        )
    return CalibrationSource(calibration, path, name, "")


def calibration_loader(folder: DataFolder):
    """A loader for :class:`TrialFollower`: the trial's calibration, or None when it cannot be used."""

    def load(analysis_attrs: dict):
        return trial_calibration(folder, analysis_attrs).calibration

    return load


def list_calibrations(folder: DataFolder) -> list[Path]:
    """Calibration files under DATA/calibrations (inside the data folder), newest first."""
    root = folder.path / CALIBRATIONS_FOLDER
    if not root.is_dir():
        return []
    found = []
    for path in root.rglob("*.h5"):
        try:
            resolved = path.resolve()
            if resolved.is_relative_to(folder.path) and resolved.is_file():
                found.append((resolved.stat().st_mtime, resolved))
        except OSError:
            continue
    return [path for _, path in sorted(found, key=lambda item: (item[0], str(item[1])), reverse=True)]


def matches_trial_copy(calibration: analysis.Calibration, arrays: dict) -> bool:
    """True when the trial's stored sensitivity is the calibration's (same shape and values)."""
    stored = arrays.get("sensitivity")
    return (
        stored is not None
        and np.shape(stored) == calibration.sensitivity.shape
        and np.allclose(stored, calibration.sensitivity, rtol=1e-12, atol=0)
    )
