"""The app is a read-only monitor: it imports daq and analysis, never drivers, and changes no file."""

import ast
import hashlib
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from _trial_factory import metadata, trials_folder, write_calibration, write_trial  # noqa: E402

from daq import Catalog  # noqa: E402

APP_SOURCES = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]


def imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_app_never_imports_the_drivers():
    offenders = {str(p.relative_to(ROOT)): "drivers" for p in APP_SOURCES if "drivers" in imported_top_level_names(p)}
    assert len(APP_SOURCES) > 5 and offenders == {}


def test_the_app_opens_no_file_for_writing():
    """Read-only monitor: no open(..., "w"), no h5py "r+"/"a"/"w", no write_* on paths, no TrialWriter."""
    forbidden = ('"w"', "'w'", '"a"', '"r+"', "write_text(", "write_bytes(", "TrialWriter", ".unlink(", "mkdir(")
    offenders = {str(p.relative_to(ROOT)): [f for f in forbidden if f in p.read_text()] for p in APP_SOURCES}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_visiting_every_page_changes_nothing_in_the_data_folder(tmp_path, monkeypatch):
    calibration_file = tmp_path / "calibrations" / "c.h5"
    calibration = write_calibration(calibration_file)
    write_trial(
        trials_folder(tmp_path) / "A.h5", meta=metadata("A", calibration=calibration, calibration_file=calibration_file)
    )
    write_trial(trials_folder(tmp_path) / "B.h5", exit_status=None)
    Catalog(tmp_path).rebuild()

    def state() -> dict:
        return {
            str(p.relative_to(tmp_path)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(tmp_path.rglob("*"))
            if p.is_file()
        }

    before = state()
    monkeypatch.setenv("REMDAQ_DATA_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    for page in ("app_pages/trials.py", "app_pages/calibration.py", "app_pages/live.py"):
        at.switch_page(page).run()
        assert not at.exception
    at.switch_page("app_pages/trials.py").run()
    at.selectbox(key="trials-open").select("trials/A.h5").run()
    assert not at.exception and len(at.get("plotly_chart")) == 5  # furnace, purity, concentrations, fit, spectrum
    assert state() == before
