"""The app's data folder, and the only way a user-given name becomes a file path: confined to that folder.

No Streamlit here: these functions are tested on their own and reused by every page.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from daq import ConfigError, load_station
from daq.catalog import CATALOG_FILE, TRIALS_FOLDER
from daq.store import writer_is_alive, writer_lock_path

__all__ = [
    "DataFolder",
    "DataFolderError",
    "OutsideDataFolder",
    "resolve_data_folder",
    "confine",
    "trial_path_from_query",
    "list_trials",
    "running_trials",
    "relative_name",
]


class DataFolderError(RuntimeError):
    """The data folder cannot be determined (a bad station file) or used."""


class OutsideDataFolder(ValueError):
    """A user-given path that leads outside the data folder, or is not a trial file."""


@dataclass(frozen=True)
class DataFolder:
    """Where trial files are, and where that setting came from (shown to the user)."""

    path: Path  # resolved
    source: str

    @property
    def trials(self) -> Path:
        return self.path / TRIALS_FOLDER

    @property
    def catalog(self) -> Path:
        return self.path / CATALOG_FILE


def resolve_data_folder(environ: Mapping[str, str] | None = None) -> DataFolder:
    """The data folder, as the CLI finds it: $REMDAQ_DATA_DIR, else the $REMDAQ_STATION file's, else ./data.

    A relative station ``data_dir`` is taken from the working folder, as for ``remdaq``.
    """
    environ = os.environ if environ is None else environ
    if environ.get("REMDAQ_DATA_DIR"):
        return DataFolder(Path(environ["REMDAQ_DATA_DIR"]).expanduser().resolve(), "$REMDAQ_DATA_DIR")
    if environ.get("REMDAQ_STATION"):
        station_path = Path(environ["REMDAQ_STATION"]).expanduser()
        try:
            station = load_station(station_path)
        except ConfigError as error:
            raise DataFolderError(f"$REMDAQ_STATION: {error}") from None
        return DataFolder(Path(station.data_dir).expanduser().resolve(), f"station {station_path}")
    return DataFolder(Path("data").resolve(), "default ./data")


def confine(folder: DataFolder, name: str, *, suffix: str = ".h5") -> Path:
    """The file a user-given ``name`` (relative to the data folder) means, if it is inside the data folder.

    Symbolic links and ``..`` are resolved first, so neither can lead out. Only
    files ending in ``suffix`` are allowed. Raises :class:`OutsideDataFolder`.
    """
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise OutsideDataFolder("no file name given")
    root = folder.path.resolve()
    candidate = Path(name.strip())  # "~" is not expanded: it is just a name inside the folder
    if not candidate.is_absolute():
        candidate = root / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root):
        raise OutsideDataFolder(f"{name!r} is outside the data folder; only files inside it can be opened")
    if suffix and resolved.suffix != suffix:
        raise OutsideDataFolder(f"{name!r} is not a {suffix} file")
    return resolved


def trial_path_from_query(folder: DataFolder, value: str) -> Path:
    """A ``?trial=`` value: a path relative to the data folder, or a trial id (a file in trials/)."""
    value = (value or "").strip()
    if value and "/" not in value and "\\" not in value and not value.endswith(".h5"):
        value = f"{TRIALS_FOLDER}/{value}.h5"
    return confine(folder, value)


def relative_name(folder: DataFolder, path: Path) -> str:
    """How a file inside the data folder is named to the user (and in ``?trial=``)."""
    try:
        return str(Path(path).resolve().relative_to(folder.path))
    except ValueError:
        return Path(path).name


def list_trials(folder: DataFolder) -> list[Path]:
    """Trial files under DATA/trials (resolved, inside the data folder), newest first by modification time."""
    if not folder.trials.is_dir():
        return []
    found = []
    for path in folder.trials.rglob("*.h5"):
        try:
            resolved = path.resolve()
            if resolved.is_relative_to(folder.path) and resolved.is_file():
                found.append((resolved.stat().st_mtime, resolved))
        except OSError:  # vanished between listing and stat
            continue
    return [path for _, path in sorted(found, key=lambda item: (item[0], str(item[1])), reverse=True)]


def running_trials(folder: DataFolder) -> list[Path]:
    """Trial files whose writer is alive (holds the ``.writing`` lock), newest first.

    Looks only at the lock files, so it is cheap enough to run every refresh.
    """
    if not folder.trials.is_dir():
        return []
    live = []
    for lock in folder.trials.rglob("*.h5.writing"):
        trial = lock.with_name(lock.name[: -len(".writing")])
        try:
            if writer_lock_path(trial) == lock and trial.is_file() and writer_is_alive(trial):
                resolved = trial.resolve()
                if resolved.is_relative_to(folder.path):
                    live.append((resolved.stat().st_mtime, resolved))
        except OSError:
            continue
    return [path for _, path in sorted(live, key=lambda item: (item[0], str(item[1])), reverse=True)]
