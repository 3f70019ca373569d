"""The Live page (AppTest): a trial being written, ended and interrupted trials, and every kind of bad input."""

import json
from pathlib import Path

import pytest
from _trial_factory import (
    LiveTrial,
    corrupt_trial,
    half_created_trial,
    trials_folder,  # noqa: E402
    wait_for_rows,
    write_trial,
)
from streamlit.testing.v1 import AppTest

from daq import open_trial  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def live_page(query: dict | None = None) -> AppTest:
    """The app's default page (Live), run once."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params.update(query or {})
    return at.run()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def messages(at: AppTest) -> str:
    return " | ".join(e.value for kind in (at.success, at.info, at.warning, at.error) for e in kind)


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def charts(at: AppTest) -> dict[str, dict]:
    """The Plotly figures the page sent, by chart key, as the browser receives them."""
    return {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


CHARTS = [
    "live-chart-furnace",
    "live-chart-purity",
    "live-chart-concentration",
    "live-chart-fit",
    "live-chart-spectrum",
]


def test_a_missing_data_folder_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("REMDAQ_DATA_DIR", str(tmp_path / "not-yet"))
    at = live_page()
    assert_no_traceback(at)
    assert "does not exist yet" in at.info[0].value


def test_an_empty_data_folder_says_so(data_dir):
    at = live_page()
    assert_no_traceback(at)
    assert "No trial files" in at.info[0].value


def test_live_page_follows_a_trial_being_written(data_dir):
    with LiveTrial(trials_folder(data_dir) / "live.h5") as live:
        wait_for_rows(live.path, "analysis", 21)
        at = live_page()
        assert_no_traceback(at)
        assert "Running" in at.success[0].value
        follower = at.session_state["remdaq_followers"]["live"]
        first = dict(follower.marks)
        spectra_before = int(metric(at, "Spectra").replace(",", ""))
        assert list(charts(at)) == CHARTS
        fit = charts(at)["live-chart-fit"]
        assert fit["layout"]["title"]["text"].startswith("Lack of fit and wavelength shift")
        assert [trace["name"] for trace in fit["data"]] == ["lack of fit", "wavelength shift"]

        wait_for_rows(live.path, "analysis", first["analysis"] + 3)
        at.run()  # what the fragment's run_every does in the browser
        assert_no_traceback(at)
        assert at.session_state["remdaq_followers"]["live"] is follower  # same open file, not reopened
        assert follower.last_read["analysis"] == follower.marks["analysis"] - first["analysis"] >= 3
        assert follower.last_read["furnace"] == follower.marks["furnace"] - first["furnace"] > 0
        assert int(metric(at, "Spectra").replace(",", "")) > spectra_before
        with open_trial(live.path) as reader:  # the purity shown is the newest row the page read
            shown = reader.read("analysis", follower.marks["analysis"] - 1, follower.marks["analysis"])["purity"][0]
        assert metric(at, "Purity Nd2O3") == f"{shown * 100:.2f} %"
        # the lack of fit is read incrementally too, up to the spectra whose flags are there
        assert first["analysis"] + 3 <= follower.marks["fit"] <= follower.marks["analysis"]
        assert follower.last_snapshot.lack_of_fit.rows == follower.marks["fit"]
    at.run()
    assert "Ended: success" in messages(at)


def test_pausing_live_updates_freezes_the_view_until_resumed(data_dir):
    with LiveTrial(trials_folder(data_dir) / "live.h5") as live:
        wait_for_rows(live.path, "analysis", 21)
        at = live_page()
        follower = at.session_state["remdaq_followers"]["live"]
        at.toggle(key="live-live-updates").set_value(False).run()
        frozen = dict(follower.marks)
        wait_for_rows(live.path, "analysis", frozen["analysis"] + 2)
        at.run()
        assert_no_traceback(at)
        assert follower.marks == frozen and "paused" in messages(at)
        at.toggle(key="live-live-updates").set_value(True).run()
        assert follower.marks["analysis"] >= frozen["analysis"] + 2 and "paused" not in messages(at)


def test_an_interrupted_trial_is_shown_as_such(data_dir):
    write_trial(trials_folder(data_dir) / "killed.h5", exit_status=None)
    at = live_page()
    assert_no_traceback(at)
    assert "Interrupted" in at.error[0].value
    assert "No trial is running now" in at.info[0].value
    assert metric(at, "Spectra") == "60"


def test_a_corrupt_newest_file_is_a_message_not_a_traceback(data_dir):
    write_trial(trials_folder(data_dir) / "good.h5")
    corrupt_trial(trials_folder(data_dir) / "zz-corrupt.h5")
    at = live_page()
    assert_no_traceback(at)
    assert "cannot be read as a trial file" in at.error[0].value
    at = live_page({"trial": "good"})  # the others stay reachable
    assert_no_traceback(at)
    assert "Ended: success" in messages(at)


@pytest.mark.parametrize("partial_layout", [False, True], ids=["empty", "layout-begun"])
def test_a_file_still_being_created_waits_for_its_writer(data_dir, partial_layout):
    with half_created_trial(trials_folder(data_dir) / "new.h5", partial_layout):
        at = live_page()
        assert_no_traceback(at)
        assert "still being created" in messages(at)


@pytest.mark.parametrize(
    "value",
    ["../../../etc/passwd", "/etc/hostname", "trials/../../outside.h5", "trials/../../../../../../../../etc/passwd"],
)
def test_path_traversal_in_the_query_is_refused(data_dir, value):
    (data_dir.parent / "outside.h5").write_bytes(b"")
    write_trial(trials_folder(data_dir) / "good.h5")
    at = live_page({"trial": value})
    assert_no_traceback(at)
    assert at.error and at.error[0].value.startswith("Refused")
    assert "Ended: success" in messages(at)  # it falls back to the newest trial in the data folder


def test_a_trial_named_in_the_query_is_pinned(data_dir):
    write_trial(trials_folder(data_dir) / "older.h5", duration_s=300)
    write_trial(trials_folder(data_dir) / "newer.h5")
    at = live_page({"trial": "trials/older.h5"})
    assert_no_traceback(at)
    assert at.selectbox(key="live-trial").value == "trials/older.h5"
    assert metric(at, "Spectra") == "30"


def test_an_unexpected_error_is_one_line_on_the_page(data_dir, monkeypatch):
    from app_pages import _follow

    write_trial(trials_folder(data_dir) / "good.h5")

    def broken_update(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(_follow.TrialFollower, "update", broken_update)
    at = live_page()
    assert_no_traceback(at)
    assert "unexpected ZeroDivisionError: a bug" in at.error[0].value


def _trial_whose_last_spectrum_is_flagged(path: Path, flag: int, purity: float, lack_of_fit: float) -> Path:
    """A closed synthetic trial whose last spectrum the runner flagged (model mismatch, or an empty cell)."""
    import numpy as np
    from _trial_factory import SyntheticBench, metadata

    from daq import TrialWriter

    bench = SyntheticBench()
    writer = TrialWriter(path, metadata(path.stem), flush_interval_s=0.05)
    bench.start(writer)
    times = np.arange(0.0, 120.0, 10.0)
    spectrometer, analysis = bench.spectra(times)
    spectrometer["flag"][-1] = flag
    analysis["purity"][-1] = purity
    analysis["lack_of_fit"][-1] = lack_of_fit
    writer.append("furnace", **bench.furnace(times))
    writer.append("spectrometer", **spectrometer)
    writer.append("analysis", **analysis)
    writer.close("success")
    return path


def test_an_empty_cell_reads_no_rare_earths_not_a_noisy_purity(data_dir):
    from daq.layout import FLAG_NO_RARE_EARTHS

    _trial_whose_last_spectrum_is_flagged(trials_folder(data_dir) / "blank.h5", FLAG_NO_RARE_EARTHS, float("nan"), 1.0)
    at = live_page()
    assert_no_traceback(at)
    assert metric(at, "Purity Nd2O3") == "no rare earths"
    assert "Model mismatch" not in messages(at)


def test_a_model_mismatch_is_a_warning_beside_the_purity(data_dir):
    from daq.layout import FLAG_MODEL_MISMATCH

    _trial_whose_last_spectrum_is_flagged(trials_folder(data_dir) / "mismatch.h5", FLAG_MODEL_MISMATCH, 0.93, 7.4)
    at = live_page()
    assert_no_traceback(at)
    assert "Model mismatch: lack of fit 7.4 (limit 2)" in messages(at)
    assert metric(at, "Purity Nd2O3") == "93.00 %"
    fit = charts(at)["live-chart-fit"]  # the flagged spectrum is marked on the lack-of-fit plot, above the limit
    assert "1 spectrum flagged model mismatch" in fit["layout"]["title"]["text"]
    assert any(shape.get("y0") == 2.0 == shape.get("y1") for shape in fit["layout"]["shapes"])
    marked = next(trace for trace in fit["data"] if trace["name"] == "model mismatch (flag 16)")
    assert _values(marked["x"]) == [pytest.approx(110.0 / 60)] and _values(marked["y"]) == [pytest.approx(7.4)]


def _values(array) -> list[float]:
    """A figure array as sent: a plain list, or Plotly's base64 typed array."""
    import base64

    import numpy as np

    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).astype(float).tolist()
    return [float(v) for v in array]


def test_a_format_1_0_trial_shows_a_refitted_model_and_no_lack_of_fit(data_dir, tmp_path):
    from test_app_follow import _as_format_1_0

    source = write_trial(tmp_path / "new.h5")
    _as_format_1_0(source, trials_folder(data_dir) / "old.h5")
    at = live_page()
    assert_no_traceback(at)
    assert metric(at, "Spectra") == "60" and list(charts(at)) == CHARTS
    fit = charts(at)["live-chart-fit"]
    assert "not recorded" in fit["layout"]["annotations"][0]["text"]
    assert "model refitted, not the live fit" in charts(at)["live-chart-spectrum"]["layout"]["title"]["text"]
    assert any("Model refitted here" in caption.value and "format 1.0" in caption.value for caption in at.caption)
