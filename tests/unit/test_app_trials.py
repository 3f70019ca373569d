"""The Trials page (AppTest): catalog table and filters, opening a trial (also one being written), CSV summary."""

import csv
import io
import json
import sys
from datetime import date
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _trial_factory import LiveTrial, corrupt_trial, metadata, trials_folder, wait_for_rows, write_trial  # noqa: E402

from app_pages._export import analysis_csv, summary_csv  # noqa: E402
from app_pages._follow import TrialFollower  # noqa: E402
from daq import Catalog, open_trial  # noqa: E402


def trials_page(query: dict | None = None) -> AppTest:
    """The Trials page, run once."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.query_params.update(query or {})
    return at.switch_page("app_pages/trials.py").run()


def shown_trials(at: AppTest) -> list[str]:
    assert not at.exception, [e.message for e in at.exception]
    return list(at.dataframe[0].value["trial"]) if at.dataframe else []


def messages(at: AppTest) -> str:
    return " | ".join(e.value for kind in (at.success, at.info, at.warning, at.error) for e in kind)


@pytest.fixture
def three_trials(data_dir):
    """Three closed trials of different samples, dates, endings and purities, and a catalog of them."""
    folder = trials_folder(data_dir)
    write_trial(
        folder / "A.h5", duration_s=900, meta=metadata("A", sample="NdPr lot 7", start_time="2026-11-01T09:00:00+00:00")
    )
    write_trial(
        folder / "B.h5",
        duration_s=120,
        exit_status="aborted",
        meta=metadata("B", sample="NdPr lot 8", start_time="2026-11-05T09:00:00+00:00"),
    )
    write_trial(
        folder / "C.h5", duration_s=300, meta=metadata("C", sample="Sm cut 2", start_time="2026-11-09T09:00:00+00:00")
    )
    return data_dir


def test_catalog_table_and_its_filters(three_trials):
    Catalog(three_trials).rebuild()
    at = trials_page()
    assert shown_trials(at) == ["C", "B", "A"]
    assert "no catalog" not in messages(at)
    at.text_input(key="trials-filter-sample").input("NdPr").run()
    assert shown_trials(at) == ["B", "A"]
    at.selectbox(key="trials-filter-status").select("aborted").run()
    assert shown_trials(at) == ["B"]
    at.selectbox(key="trials-filter-status").select("any").run()
    at.date_input(key="trials-filter-dates").set_value((date(2026, 11, 1), date(2026, 11, 1))).run()
    assert shown_trials(at) == ["A"]
    at.date_input(key="trials-filter-dates").set_value(()).run()
    at.text_input(key="trials-filter-sample").input("").run()
    final = {e.trial_id: e.final_purity for e in Catalog(three_trials).entries()}
    at.number_input(key="trials-filter-purity").set_value(100 * final["A"] - 0.01).run()
    assert shown_trials(at) == ["A"]  # the longest elution reached the highest purity
    at.number_input(key="trials-filter-purity").set_value(99.99).run()
    assert shown_trials(at) == [] and "No trials match" in messages(at)


def test_without_a_catalog_the_table_is_built_from_the_files(three_trials):
    at = trials_page()
    assert shown_trials(at) == ["C", "B", "A"]
    assert "no catalog yet" in at.info[0].value
    assert not (three_trials / "catalog.sqlite").exists()  # the monitor writes nothing in the data folder
    at.selectbox(key="trials-filter-status").select("aborted").run()
    assert shown_trials(at) == ["B"]


def test_files_missing_from_the_catalog_are_pointed_out(three_trials):
    Catalog(three_trials).rebuild()
    write_trial(trials_folder(three_trials) / "D.h5", duration_s=60)
    at = trials_page()
    assert "not in the catalog" in at.warning[0].value and "trials/D.h5" in at.warning[0].value


def test_a_catalog_running_trial_without_writer_is_interrupted(three_trials):
    write_trial(
        trials_folder(three_trials) / "K.h5",
        exit_status=None,
        meta=metadata("K", start_time="2026-11-10T09:00:00+00:00"),
    )
    catalog = Catalog(three_trials)
    catalog.rebuild()
    with open_trial(trials_folder(three_trials) / "K.h5") as trial:  # as the runner recorded it at its start
        catalog.record({**trial.summary(), "state": "running"})
    at = trials_page()
    at.selectbox(key="trials-filter-status").select("interrupted").run()
    assert shown_trials(at) == ["K"]


def test_opening_a_trial_draws_it_and_offers_its_summary(three_trials):
    at = trials_page()
    at.selectbox(key="trials-open").select("trials/A.h5").run()
    assert not at.exception
    assert at.query_params["trial"] == "trials/A.h5"  # a shareable link to the opened trial
    figures = {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}
    assert list(figures) == [
        "trials-chart-furnace",
        "trials-chart-purity",
        "trials-chart-concentration",
        "trials-chart-fit",
        "trials-chart-spectrum",
    ]
    fit = figures["trials-chart-fit"]  # the lack of fit over the whole trial, with its limit
    assert fit["layout"]["title"]["text"].startswith("Lack of fit and wavelength shift")
    assert any(shape.get("y0") == 2.0 for shape in fit["layout"]["shapes"])
    assert [trace["name"] for trace in fit["data"]] == ["lack of fit", "wavelength shift"]
    assert figures["trials-chart-spectrum"]["data"][1]["name"] == "model"  # the live fit's, not a refit
    assert "Ended: success" in messages(at)
    labels = [b.label for b in at.download_button]
    assert labels == [
        "Download summary (CSV)",
        "Download per-spectrum results (CSV)",
        "Download report (PDF)",
        "Download report (HTML)",
    ]


def test_summary_and_results_csv(three_trials):
    path = trials_folder(three_trials) / "A.h5"
    follower = TrialFollower(path)
    snapshot = follower.update()
    rows = list(csv.DictReader(io.StringIO(summary_csv(follower.reader, snapshot))))
    follower.close()
    with open_trial(path) as trial:
        final = trial.read("analysis", trial.rows("analysis") - 1)["purity"][0]
        spectra = trial.rows("analysis")
    assert len(rows) == 1
    row = rows[0]
    assert row["trial_id"] == "A" and row["state"] == "success" and row["target_oxide"] == "Nd2O3"
    assert float(row["final_purity"]) == pytest.approx(final)
    assert float(row["final_purity_2sigma"]) == pytest.approx(0.003)
    assert float(row["max_temperature_C"]) > 100
    results = list(csv.DictReader(io.StringIO(analysis_csv(path))))
    assert len(results) == spectra and float(results[-1]["purity"]) == pytest.approx(final)
    assert {"Nd_g_per_L", "Pr_sigma_g_per_L"} <= set(results[0])


def test_a_trial_being_written_refreshes_when_opened(data_dir):
    with LiveTrial(trials_folder(data_dir) / "live.h5") as live:
        wait_for_rows(live.path, "analysis", 21)
        at = trials_page({"trial": "live"})
        assert not at.exception
        assert "Running" in at.success[0].value
        follower = at.session_state["remdaq_followers"]["trials"]
        before = follower.marks["analysis"]
        wait_for_rows(live.path, "analysis", before + 2)
        at.run()
        assert follower.last_read["analysis"] == follower.marks["analysis"] - before >= 2
        # the lack of fit is read incrementally too (up to the spectra whose flags are there)
        assert follower.last_read["fit"] >= 2 and follower.marks["fit"] <= follower.marks["analysis"]
        assert "trials-chart-fit" in [chart.key for chart in at.get("plotly_chart")]


def test_a_corrupt_file_is_listed_as_unreadable_and_opens_to_a_message(three_trials):
    corrupt_trial(trials_folder(three_trials) / "Z.h5")
    at = trials_page()
    table = at.dataframe[0].value
    assert "unreadable" in set(table["status"])
    at.selectbox(key="trials-open").select("trials/Z.h5").run()
    assert not at.exception
    assert "cannot be read as a trial file" in at.error[0].value


@pytest.mark.parametrize("value", ["../../etc/passwd", "/etc/hostname.h5", "trials/../../x.h5"])
def test_path_traversal_in_the_query_is_refused(three_trials, value):
    at = trials_page({"trial": value})
    assert not at.exception
    assert at.error[0].value.startswith("Refused")
    assert at.selectbox(key="trials-open").value is None


def test_an_empty_data_folder_says_so(data_dir):
    at = trials_page()
    assert shown_trials(at) == []
    assert "No trials in" in messages(at)
