"""The Calibration page (AppTest): the calibration in use with its quality report, or the trial's copy and why."""

import shutil
from pathlib import Path

import pytest
from _trial_factory import (
    LiveTrial,
    metadata,
    trials_folder,
    wait_for_rows,
    write_calibration,  # noqa: E402
    write_trial,
)
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("REMDAQ_DATA_DIR", str(data))
    monkeypatch.delenv("REMDAQ_STATION", raising=False)
    return data


@pytest.fixture(scope="module")
def calibration_source(tmp_path_factory):
    """One calibration made from synthetic standards (shared: calibrating runs the leave-one-out fits)."""
    path = tmp_path_factory.mktemp("calibration") / "nd-pr.h5"
    return path, write_calibration(path)


def install_calibration(data_dir: Path, source, name: str = "calibrations/nd-pr.h5") -> Path:
    target = data_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source[0], target)
    return target


def calibration_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params.update(query or {})
    at.switch_page("app_pages/calibration.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def text(at: AppTest) -> str:
    parts = [
        e.value
        for kind in (at.success, at.info, at.warning, at.error, at.subheader, at.caption, at.markdown)
        for e in kind
    ]
    return " | ".join(parts)


def test_the_calibration_in_use_shows_standards_and_quality(data_dir, calibration_source):
    file = install_calibration(data_dir, calibration_source)
    calibration = calibration_source[1]
    write_trial(trials_folder(data_dir) / "T.h5", meta=metadata("T", calibration=calibration, calibration_file=file))
    at = calibration_page()
    assert f"Calibration `{calibration.calibration_id}`" in at.subheader[0].value
    quality, standards = (table.value for table in at.dataframe)
    assert list(quality["analyte"]) == ["Nd", "Pr"]
    assert list(quality["leave-one-out RMSE g/L"]) == pytest.approx(list(calibration.quality.loo_rmse_g_per_L))
    assert list(quality["detection limit g/L"]) == pytest.approx(list(calibration.quality.detection_limit_g_per_L))
    assert list(standards["standard"]) == list(calibration.standards.names)
    assert "Nd LOO error g/L" in standards.columns and "fit residual RMS" in standards.columns
    assert len(at.get("plotly_chart")) == 3  # sensitivity, standards, errors
    assert "In use by trial `trials/T.h5` (success)" in text(at)


def test_the_calibration_of_a_running_trial_is_the_one_in_use(data_dir, calibration_source):
    file = install_calibration(data_dir, calibration_source)
    write_trial(trials_folder(data_dir) / "old.h5", meta=metadata("old"))  # another calibration, ended
    live = LiveTrial(
        trials_folder(data_dir) / "live.h5",
        meta=metadata("live", calibration=calibration_source[1], calibration_file=file),
    )
    with live:
        wait_for_rows(live.path, "analysis", 21)
        at = calibration_page()
        assert "In use by trial `trials/live.h5` (running)" in text(at)
        assert calibration_source[1].calibration_id in at.subheader[0].value


def test_a_missing_calibration_file_falls_back_to_the_trial_copy(data_dir, calibration_source):
    file = install_calibration(data_dir, calibration_source)
    write_trial(
        trials_folder(data_dir) / "T.h5", meta=metadata("T", calibration=calibration_source[1], calibration_file=file)
    )
    file.unlink()
    at = calibration_page()
    assert "no longer in the data folder" in at.warning[0].value
    assert "Showing the copy stored in the trial file" in at.warning[0].value
    assert len(at.get("plotly_chart")) == 1 and not at.dataframe


def test_a_calibration_outside_the_data_folder_is_not_opened(data_dir, calibration_source):
    outside = calibration_source[0]  # exists, readable, but not in the data folder
    write_trial(
        trials_folder(data_dir) / "T.h5",
        meta=metadata("T", calibration=calibration_source[1], calibration_file=outside),
    )
    at = calibration_page()
    assert "outside the data folder" in at.warning[0].value
    assert "Quality per analyte" not in text(at)


def test_a_replaced_calibration_file_is_not_taken_for_the_one_used(data_dir, calibration_source):
    file = install_calibration(data_dir, calibration_source)
    write_trial(trials_folder(data_dir) / "T.h5", meta=metadata("T", calibration_file=file))  # id of another one
    at = calibration_page()
    assert "now holds calibration" in at.warning[0].value


def test_any_calibration_file_of_the_data_folder_can_be_inspected(data_dir, calibration_source):
    install_calibration(data_dir, calibration_source, "calibrations/archive/first.h5")
    at = calibration_page()
    assert "No trials" in at.info[0].value
    at.selectbox(key="calibration-choice").select("calibrations/archive/first.h5").run()
    assert calibration_source[1].calibration_id in at.subheader[0].value
    at = calibration_page({"calibration": "calibrations/archive/first.h5"})
    assert calibration_source[1].calibration_id in at.subheader[0].value


def test_a_corrupt_calibration_file_is_a_message(data_dir):
    (data_dir / "calibrations").mkdir()
    (data_dir / "calibrations" / "broken.h5").write_bytes(b"not hdf5" * 50)
    at = calibration_page({"calibration": "calibrations/broken.h5"})
    assert "cannot be read as a calibration file" in at.error[0].value


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/ssl/x.h5", "calibrations/../../../y.h5"])
def test_path_traversal_in_the_query_is_refused(data_dir, value):
    at = calibration_page({"calibration": value})
    assert at.error[0].value.startswith("Refused")


def test_an_empty_data_folder_says_so(data_dir):
    at = calibration_page()
    assert "No trials" in at.info[0].value
