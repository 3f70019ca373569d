"""The app's data folder and path confinement: a user-given name never opens a file outside the data folder."""

from pathlib import Path

import pytest

from app_pages._paths import (
    DataFolder,
    DataFolderError,
    OutsideDataFolder,
    confine,
    list_trials,  # noqa: E402
    resolve_data_folder,
    running_trials,
    trial_path_from_query,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "data"
    (data / "trials").mkdir(parents=True)
    (data / "trials" / "T1.h5").write_bytes(b"")
    return DataFolder(data.resolve(), "test")


@pytest.mark.parametrize(
    "name",
    [
        "../secret.h5",
        "trials/../../secret.h5",
        "/etc/passwd",
        "/etc/../etc/shadow.h5",
        "..",
        "../..",
        "trials/T1.h5\x00.png",
        "",
        "   ",
        "trials/%2e%2e/x",
    ],
)
def test_names_that_lead_outside_or_are_not_trial_files_are_refused(folder, name):
    with pytest.raises(OutsideDataFolder):
        confine(folder, name)


def test_a_symlink_out_of_the_data_folder_is_refused(folder, tmp_path):
    outside = tmp_path / "elsewhere.h5"
    outside.write_bytes(b"")
    (folder.trials / "link.h5").symlink_to(outside)
    with pytest.raises(OutsideDataFolder, match="outside the data folder"):
        confine(folder, "trials/link.h5")
    assert folder.trials / "link.h5" not in list_trials(folder)


def test_names_inside_the_data_folder_resolve(folder):
    assert confine(folder, "trials/T1.h5") == folder.trials / "T1.h5"
    assert confine(folder, "./trials/sub/../T1.h5") == folder.trials / "T1.h5"
    assert confine(folder, str(folder.trials / "T1.h5")) == folder.trials / "T1.h5"


def test_query_value_is_a_path_or_a_trial_id(folder):
    assert trial_path_from_query(folder, "T1") == folder.trials / "T1.h5"
    assert trial_path_from_query(folder, "trials/T1.h5") == folder.trials / "T1.h5"
    with pytest.raises(OutsideDataFolder):
        trial_path_from_query(folder, "../../etc/passwd")


def test_data_folder_comes_from_the_environment_then_the_station_then_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    station = tmp_path / "bench.toml"
    station.write_text('[station]\nname = "b"\ndata_dir = "station-data"\n')
    chosen = resolve_data_folder({"REMDAQ_DATA_DIR": str(tmp_path / "d"), "REMDAQ_STATION": str(station)})
    assert chosen.path == (tmp_path / "d").resolve() and "REMDAQ_DATA_DIR" in chosen.source
    chosen = resolve_data_folder({"REMDAQ_STATION": str(station)})
    assert chosen.path == (tmp_path / "station-data").resolve() and "station" in chosen.source
    assert resolve_data_folder({}).path == (tmp_path / "data").resolve()


def test_a_bad_station_file_is_a_clear_error(tmp_path):
    station = tmp_path / "bad.toml"
    station.write_text("[station]\nname = 3\n")
    with pytest.raises(DataFolderError, match="REMDAQ_STATION.*bad.toml"):
        resolve_data_folder({"REMDAQ_STATION": str(station)})


def test_listing_an_absent_folder_is_empty(tmp_path):
    absent = DataFolder(tmp_path / "nothing", "test")
    assert list_trials(absent) == [] and running_trials(absent) == []
