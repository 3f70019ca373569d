"""Every instrument of a trial of several, the cascade view and the comparison of trials (AppTest and follower).

Files of format 2.0 from ``write_cascade_trial`` (three zones, two spectrometers of different pixel counts, two
sensors, two streams) and variants of it written here, a trial of the older form, the version-1.2 fixture, and a
real trial of the simulated cascade bench (`remdaq calibrate` and `remdaq run` on a faster-clock copy of
hardware/stations/sim-cascade.toml), whose separation factor the app computes is compared with the scenario's
truth.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path
from typing import cast

import numpy as np
import plotly.graph_objects as go
import pytest
from _bench import ROOT
from _trial_factory import (
    CASCADE_ORDER,
    cascade_metadata,
    cascade_rows,
    metadata,
    trials_folder,
    wait_for_rows,
    write_cascade_trial,
    write_trial,
)
from streamlit.testing.v1 import AppTest

from analysis import separation_factor
from app_pages._figures import FigureCache
from app_pages._follow import TrialFollower
from app_pages._instruments import SeparationPairing
from daq import TrialWriter, open_trial
from daq.layout import FLAG_ANALYSIS_FAILED, FLAG_NO_RARE_EARTHS

sys.path.insert(0, str(ROOT / "tests" / "system"))  # the real trial and its truth: shared with the browser test
from test_app_cascade_browser import run_cascade_trial, separation_against_truth  # noqa: E402

PRIMARY_CHARTS = ["chart-furnace", "chart-purity", "chart-concentration", "chart-fit", "chart-spectrum"]
CASCADE_CHARTS = ["chart-cascade-purity", "chart-cascade-ratio", "chart-separation"]


def live_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update(query or {})
    return at.run()


def trials_page(query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update(query or {})
    return at.switch_page("app_pages/trials.py").run()


def assert_no_traceback(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> dict[str, dict]:
    return {str(chart.key): json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def values(array) -> np.ndarray:
    """A figure array as sent: a plain list, or Plotly's base64 typed array."""
    import base64

    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).astype(float)
    return np.array([math.nan if v is None else float(v) for v in array])


def title(figure: dict) -> str:
    return figure["layout"]["title"]["text"]


# -- files of several instruments written here --------------------------------------------------------------


def flagged_cascade_trial(path: Path, rows: int = 8) -> Path:
    """``write_cascade_trial``'s layout with a cascade in its numbers: the strip Nd-rich, the raffinate Pr-rich.

    raffinate (Nd, Pr): Nd 0.5 + 0.1 t, Pr 2 g/L; strip (Nd, Pr, Sm): Nd 12 + t, Pr 3, Sm 0.1 g/L; both
    analysed at the same times. Flagged: strip row 2 (no rare earths in the cell, flag 32, purity NaN), strip
    row 6 (Nd 0: no ratio), raffinate row 5 (analysis failed, flag 8: concentrations NaN).
    """
    columns = cascade_rows(rows)
    t = np.arange(rows, dtype=float)
    raffinate, strip = columns["analysis"], columns["analysis:strip"]
    raffinate["concentration"] = np.column_stack([0.5 + 0.1 * t, np.full(rows, 2.0)])
    strip["concentration"] = np.column_stack([12.0 + t, np.full(rows, 3.0), np.full(rows, 0.1)])
    strip["purity"][2] = math.nan
    columns["spectrometer:strip"]["flag"][2] = FLAG_NO_RARE_EARTHS
    strip["concentration"][6, 0] = 0.0
    raffinate["concentration"][5] = math.nan
    raffinate["purity"][5] = math.nan
    columns["spectrometer"]["flag"][5] = FLAG_ANALYSIS_FAILED
    writer = TrialWriter(path, cascade_metadata(path.stem), flush_interval_s=0.05)
    for key, table in columns.items():
        writer.append(key, **table)
    writer.close("success")
    return path


def one_furnace_v2_trial(path: Path) -> Path:
    """A trial of format 2.0 of one temperature controller and one spectrometer with the new form's names."""
    meta = replace(metadata(path.stem), furnace_name="zone-1", spectrometer_name="flow-cell")
    return write_trial(path, duration_s=120, meta=meta)


# -- a page of a trial of several instruments ----------------------------------------------------------------


def test_every_zone_sensor_and_stream_of_a_cascade_file_is_shown(data_dir):
    write_cascade_trial(trials_folder(data_dir) / "cascade.h5")
    at = live_page()
    assert_no_traceback(at)
    figures = charts(at)
    assert list(figures) == [
        *(f"live-{c}" for c in CASCADE_CHARTS),
        "live-chart-zones",
        "live-chart-sensor-feed-ph",
        "live-chart-sensor-strip_flow",
        *(f"live-{c}" for c in PRIMARY_CHARTS),
    ]
    table = at.dataframe[0].value  # every instrument in the station's order, with its latest values and units
    assert list(table["instrument"]) == list(CASCADE_ORDER)
    latest = dict(zip(table["instrument"], table["latest"]))
    rows = cascade_rows(5)
    assert latest["zone-3"] == "304.0 °C (setpoint 350.0 °C), output 30.0 %"
    assert latest["feed-ph"] == "pH 1.54 · conductivity 2.54 mS/cm"  # pH is dimensionless ("1")
    assert latest["strip_flow"] == "flow 11.54 L/h · mass 12.54 kg"
    assert latest["raffinate"] == f"purity Pr6O11 {100 * rows['analysis']['purity'][-1]:.2f} %"
    assert latest["strip"] == f"purity Nd2O3 {100 * rows['analysis:strip']['purity'][-1]:.2f} %"
    shown = metrics(at)
    assert shown["Purity Pr6O11 · raffinate"] == f"{100 * rows['analysis']['purity'][-1]:.2f} %"
    assert shown["Purity Nd2O3 · strip"] == f"{100 * rows['analysis:strip']['purity'][-1]:.2f} %"

    zones = figures["live-chart-zones"]  # one temperature trace per zone, its setpoint dashed beside it
    temperature = [trace for trace in zones["data"] if trace["name"] in ("zone-1", "zone-2", "zone-3")]
    assert [trace["name"] for trace in temperature] == ["zone-1", "zone-2", "zone-3"]
    for index, trace in enumerate(temperature):
        assert list(values(trace["y"])) == list(
            rows["furnace" if index == 0 else f"furnace:zone-{index + 1}"]["temperature"]
        )
    setpoints = {trace["name"]: trace for trace in zones["data"] if trace["name"].endswith("setpoint")}
    assert set(setpoints) == {"zone-1 setpoint", "zone-2 setpoint", "zone-3 setpoint"}
    assert all(trace["line"]["dash"] == "dash" for trace in setpoints.values())
    ph = figures["live-chart-sensor-feed-ph"]  # every channel in its own units
    assert title(ph) == (
        "Sensor feed-ph: pH, conductivity (mS/cm) · 4 reading(s) out of range or with a probe fault, not drawn"
    )
    assert [trace["name"] for trace in ph["data"]] == ["pH", "conductivity (mS/cm)"]
    pH = values(ph["data"][0]["y"])  # NaN, not drawn, unless the channel's state is ok (states 0, 1, 2, 0, 0)
    assert np.isnan(pH[1:3]).all() and list(pH[[0, 3, 4]]) == pytest.approx([1.5, 1.53, 1.54])
    assert ph["layout"]["yaxis2"]["title"]["text"] == "conductivity (mS/cm)"
    flow = figures["live-chart-sensor-strip_flow"]
    assert [trace["name"] for trace in flow["data"]] == ["flow (L/h)", "mass (kg)"]

    purity = figures["live-chart-cascade-purity"]  # every stream with its target oxide
    assert [trace["name"] for trace in purity["data"]] == ["raffinate · Pr6O11", "strip · Nd2O3"]
    assert list(values(purity["data"][1]["y"])) == pytest.approx(100 * rows["analysis:strip"]["purity"], rel=1e-6)
    assert title(figures["live-chart-furnace"]) == "Furnace zone-1"  # the primary zone's own plot
    assert title(figures["live-chart-purity"]).startswith("raffinate: Pr6O11 purity")


def test_the_cascade_view_draws_ratio_and_separation_factor_and_flags_rows_without_a_ratio(data_dir):
    path = flagged_cascade_trial(trials_folder(data_dir) / "flagged.h5")
    at = live_page()
    assert_no_traceback(at)
    figures = charts(at)
    t = np.arange(8, dtype=float)
    ratio_strip, ratio_raffinate = (12.0 + t) / 3.0, (0.5 + 0.1 * t) / 2.0
    ratio_strip[[2, 6]] = np.nan
    ratio_raffinate[5] = np.nan

    ratio = figures["live-chart-cascade-ratio"]
    assert title(ratio) == "Nd/Pr mass ratio per sampling point · 3 flagged (NaN or no rare earths), not drawn"
    lines = {trace["name"]: values(trace["y"]) for trace in ratio["data"] if trace["mode"] == "lines"}
    np.testing.assert_allclose(lines["strip"], ratio_strip, rtol=1e-6)
    np.testing.assert_allclose(lines["raffinate"], ratio_raffinate, rtol=1e-6)
    marks = {trace["name"]: values(trace["x"]) for trace in ratio["data"] if trace["mode"] == "markers"}
    assert marks.keys() == {"strip: flagged", "raffinate: flagged"}
    np.testing.assert_allclose(marks["strip: flagged"], (t[[2, 6]] + 0.5) / 60, rtol=1e-6)  # at their rows' times
    np.testing.assert_allclose(marks["raffinate: flagged"], (t[[5]] + 0.5) / 60, rtol=1e-6)
    assert ratio["layout"]["yaxis"]["type"] == "log"

    # the default pair: the Nd-richest (strip) over the Pr-richest (raffinate)
    assert at.selectbox(key="live-separation-pair").value == "strip / raffinate"
    separation = figures["live-chart-separation"]
    assert (
        title(separation) == "Separation factor Nd/Pr: strip / raffinate · 3 flagged (NaN or no rare earths), not drawn"
    )
    drawn = values(separation["data"][0]["y"])
    expected = separation_factor(ratio_strip, ratio_raffinate)  # NaN where either side was flagged
    np.testing.assert_allclose(drawn, expected, rtol=1e-6)
    assert np.isnan(drawn[[2, 5, 6]]).all() and np.isfinite(drawn[[0, 1, 3, 4, 7]]).all()
    flagged = next(trace for trace in separation["data"] if trace["mode"] == "markers")
    np.testing.assert_allclose(values(flagged["x"]), (t[[2, 5, 6]] + 0.5) / 60, rtol=1e-6)
    assert metrics(at)["Separation factor strip / raffinate"] == f"{expected[7]:.3f}"
    assert metrics(at)["Purity Nd2O3 · strip"] == f"{100 * cascade_rows(8)['analysis:strip']['purity'][7]:.2f} %"

    # another pair, then the reverse: the user's choice stays
    at.selectbox(key="live-separation-pair").select("raffinate / strip").run()
    assert_no_traceback(at)
    reverse = charts(at)["live-chart-separation"]
    assert title(reverse).startswith("Separation factor Nd/Pr: raffinate / strip")
    np.testing.assert_allclose(values(reverse["data"][0]["y"]), 1 / expected, rtol=1e-6)
    at.run()
    assert at.selectbox(key="live-separation-pair").value == "raffinate / strip"
    with open_trial(path) as trial:  # nothing of this was invented: the page's rows are the file's
        assert trial.rows("analysis:strip") == 8


def test_a_last_spectrum_without_rare_earths_reads_so_for_its_stream(data_dir):
    path = trials_folder(data_dir) / "empty-strip.h5"
    columns = cascade_rows(5)
    columns["spectrometer:strip"]["flag"][-1] = FLAG_NO_RARE_EARTHS
    columns["analysis:strip"]["purity"][-1] = math.nan
    writer = TrialWriter(path, cascade_metadata(path.stem), flush_interval_s=0.05)
    for key, table in columns.items():
        writer.append(key, **table)
    writer.close("success")
    at = live_page()
    assert_no_traceback(at)
    assert metrics(at)["Purity Nd2O3 · strip"] == "no rare earths"
    table = at.dataframe[0].value
    row = table[table["instrument"] == "strip"].iloc[0]
    assert row["latest"] == "purity Nd2O3 no rare earths" and "no rare earths" in row["latest row flagged"]


def test_every_table_of_a_cascade_being_written_is_read_only_where_it_is_new(tmp_path):
    path = trials_folder(tmp_path) / "growing.h5"
    columns = cascade_rows(10)
    writer = TrialWriter(path, cascade_metadata(path.stem), flush_interval_s=0.05)
    growing = [key for key in columns if not key.startswith(("dark", "reference"))]
    try:
        for key, table in columns.items():
            part = table if key.startswith(("dark", "reference")) else {c: v[:6] for c, v in table.items()}
            writer.append(key, **part)
        for key in growing:
            wait_for_rows(path, key, 6)
        follower = TrialFollower(path)
        first = follower.update().instruments
        assert follower.instruments is not None and first is not None
        seeded = dict(follower.instruments.last_read)
        assert set(seeded) == {
            "furnace:zone-1",
            "furnace:zone-2",
            "furnace:zone-3",
            "sensor:feed-ph",
            "sensor:strip_flow",
            "analysis",
            "analysis:strip",
        }
        assert set(seeded.values()) == {6}
        assert [zone.rows for zone in first.zones] == [6, 6, 6] and first.separations[("strip", "raffinate")].rows == 6

        for key in growing:
            writer.append(key, **{c: v[6:] for c, v in columns[key].items()})
        for key in growing:
            wait_for_rows(path, key, 10)
        second = follower.update().instruments
        assert second is not None
        assert follower.instruments.last_read == {key: 4 for key in seeded}  # only the 4 new rows of each
        assert [zone.rows for zone in second.zones] == [6 + 4] * 3
        assert [sensor.traces[sensor.channels[0][0]].rows for sensor in second.sensors] == [10, 10]
        assert [stream.purity.rows for stream in second.streams] == [10, 10]
        assert second.separations[("strip", "raffinate")].rows == 10
        np.testing.assert_array_equal(
            second.zones[1].traces["temperature"].minimum, columns["furnace:zone-2"]["temperature"]
        )
        third = follower.update().instruments  # nothing new: nothing read
        assert third is not None
        assert set(follower.instruments.last_read.values()) == {0} and third.zones[2].rows == 10
        follower.close()
    finally:
        writer.close("success")


def test_separation_pairs_each_row_with_the_nearest_row_of_the_other_stream_as_rows_arrive():
    rng = np.random.default_rng(5)
    a_time = np.arange(40) * 60.0 + rng.uniform(-10, 10, 40)
    b_time = np.arange(40) * 60.0 + 25.0 + rng.uniform(-4, 4, 40)
    b_time = np.delete(b_time, [17, 18, 19])  # B lost three spectra: the rows of A near them have no partner
    a_ratio, b_ratio = 4.0 + rng.random(40), 0.5 + rng.random(b_time.size)
    a_bad, b_bad = np.zeros(40, bool), np.zeros(b_time.size, bool)
    a_bad[3], b_bad[30] = True, True

    nearest = np.array([np.argmin(np.abs(b_time - t)) for t in a_time])
    gap = np.abs(b_time[nearest] - a_time)
    paired = gap <= np.median(np.diff(b_time[b_time <= a_time.max() + 60]))
    flagged = paired & (a_bad | b_bad[nearest])
    expected = np.where(paired & ~flagged, a_ratio / b_ratio[nearest], np.nan)

    at_once = SeparationPairing()
    at_once.feed((a_time, a_ratio, a_bad), (b_time, b_ratio, b_bad), final=True)
    arriving = SeparationPairing()  # B's rows come later than A's, in uneven pieces, as flushes bring them
    cuts_a, cuts_b = [0, 7, 8, 21, 33, 40], [0, 3, 9, 19, 28, 33]
    for (a0, a1), (b0, b1) in zip(zip(cuts_a, cuts_a[1:]), zip(cuts_b, cuts_b[1:])):
        arriving.feed(
            (a_time[a0:a1], a_ratio[a0:a1], a_bad[a0:a1]), (b_time[b0:b1], b_ratio[b0:b1], b_bad[b0:b1]), final=False
        )
    waiting = int(np.count_nonzero(a_time > b_time[32]))
    assert arriving.rows == 40 - waiting and waiting > 0  # the last rows of A wait for B's next row
    none = (np.empty(0), np.empty(0), np.empty(0, bool))
    arriving.feed(none, (b_time[33:], b_ratio[33:], b_bad[33:]), final=False)
    arriving.feed(none, none, final=True)
    for pairing in (at_once, arriving):
        trace = pairing.factor.trace()
        np.testing.assert_array_equal(trace.time_s, a_time)
        np.testing.assert_allclose(trace.minimum, expected, rtol=1e-12)
        assert pairing.flagged_rows == int(flagged.sum()) >= 2  # a flagged row of B may be nearest to two of A
        assert pairing.unpaired_rows == int((~paired).sum()) > 0
    assert np.isnan(expected[~paired]).all()


# -- files of the older form and of one furnace look as they always did ---------------------------------------


@pytest.mark.parametrize("kind", ["older-form", "one-furnace-2.0", "format-1.2-fixture"])
def test_a_trial_of_one_furnace_and_one_spectrometer_shows_what_it_always_showed(data_dir, kind):
    path = trials_folder(data_dir) / f"{kind}.h5"
    if kind == "older-form":
        write_trial(path, duration_s=120)
    elif kind == "one-furnace-2.0":
        one_furnace_v2_trial(path)
    else:
        shutil.copy(ROOT / "tests/fixtures/trial-format-1.2.h5", path)
    with open_trial(path) as trial:
        assert len(trial.instruments()) == 2 and len(trial.streams()) == 1
        names = [name for name, _ in trial.instruments()]
    follower = TrialFollower(path)
    assert follower.instruments is None and follower.update().instruments is None
    assert follower.last_snapshot is not None and FigureCache().instrument_figures(follower.last_snapshot) == {}
    follower.close()
    at = live_page()
    assert not at.exception, [e.message for e in at.exception]
    assert list(charts(at)) == [f"live-{c}" for c in PRIMARY_CHARTS]
    assert not any("instrument" in table.value.columns for table in at.dataframe)  # no table of instruments
    assert not any(" · " in m.label for m in at.metric)  # no metric per stream
    assert title(charts(at)["live-chart-furnace"]) == "Furnace"
    assert (kind == "one-furnace-2.0") == (names == ["zone-1", "flow-cell"])


# -- the Trials page: overlaid purity curves --------------------------------------------------------------------


def test_the_trials_page_overlays_the_purity_curves_of_the_chosen_trials(data_dir):
    folder = trials_folder(data_dir)
    write_trial(folder / "A.h5", duration_s=900, meta=metadata("A", start_time="2026-11-01T09:00:00+00:00"))
    write_trial(folder / "B.h5", duration_s=300, meta=metadata("B", start_time="2026-11-02T09:00:00+00:00"))
    write_cascade_trial(folder / "cascade.h5")
    at = trials_page()
    assert_no_traceback(at)
    assert "trials-chart-compare" not in charts(at)  # nothing chosen, nothing drawn
    at.multiselect(key="trials-compare").select("trials/A.h5").select("trials/cascade.h5").run()
    assert_no_traceback(at)
    figure = charts(at)["trials-chart-compare"]
    assert title(figure) == "Purity of 2 trial(s), each trial's first stream"
    assert [trace["name"] for trace in figure["data"]] == ["A · Nd2O3", "cascade · raffinate · Pr6O11"]
    with open_trial(folder / "A.h5") as trial:
        a = trial.read("analysis", columns=("time", "purity"))
    np.testing.assert_allclose(values(figure["data"][0]["x"]), a["time"] / 60, rtol=1e-6)  # time since start
    np.testing.assert_allclose(values(figure["data"][0]["y"]), 100 * a["purity"], rtol=1e-6)
    assert figure["layout"]["xaxis"]["title"]["text"] == "time since start (min)"

    at.selectbox(key="trials-compare-stream").select("strip").run()  # a named stream: only trials that have it
    assert_no_traceback(at)
    figure = charts(at)["trials-chart-compare"]
    assert [trace["name"] for trace in figure["data"]] == ["cascade · strip · Nd2O3"]
    np.testing.assert_allclose(
        values(figure["data"][0]["y"]), 100 * cascade_rows(5)["analysis:strip"]["purity"], rtol=1e-6
    )
    assert any("Without a stream `strip`: A" in caption.value for caption in at.caption)
    at.selectbox(key="trials-open").select("trials/cascade.h5").run()  # opening one draws every instrument too
    assert_no_traceback(at)
    assert {f"trials-{c}" for c in CASCADE_CHARTS} <= set(charts(at)) and "trials-chart-compare" in charts(at)


# -- a real trial of the simulated cascade bench ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_cascade_trial(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("cascade") / "data"
    return run_cascade_trial(data)


@pytest.mark.slow
@pytest.mark.timeout(300)  # `remdaq calibrate` and the 4 h trial on the simulated bench: about 35 s of wall time
def test_the_separation_factor_of_a_sim_cascade_trial_agrees_with_the_scenarios_truth(sim_cascade_trial):
    follower = TrialFollower(sim_cascade_trial)
    snapshot = follower.update()
    view = snapshot.instruments
    assert view is not None and view.default_pair() == ("strip", "raffinate")  # Nd-richest over Pr-richest
    separation = view.separations[("strip", "raffinate")]
    trace = separation.factor
    assert trace.bucket == 1 and separation.unpaired_rows == 0 and separation.flagged_rows == 0
    drawn = np.isfinite(trace.minimum)
    time_s, factor = trace.time_s[drawn], trace.minimum[drawn]
    assert len(factor) >= 200  # a spectrum a minute for 4 h, the first ones before rare earths were seen excepted

    truth, tolerance, sigma = separation_against_truth(sim_cascade_trial, time_s, factor)
    order = np.argsort(np.abs(factor - truth) / tolerance)[::-1][:5]
    worst = [
        (round(t / 3600, 2), round(f, 3), round(x, 3), round(s, 4))
        for t, f, x, s in zip(time_s[order], factor[order], truth[order], sigma[order])
    ]
    assert np.all(np.abs(factor - truth) <= tolerance), worst
    assert np.mean(np.abs(factor - truth) <= 2 * sigma) >= 0.9, worst  # the sigmas are not inflated to pass
    assert truth.max() / truth.min() > 2  # the pH steps moved it: from about 3 to above 8
    assert np.median(sigma / factor) < 0.03  # and the measurement resolves that

    figure = FigureCache().instrument_figures(snapshot, ("strip", "raffinate"))["separation"]
    line = cast(go.Scatter, figure.data[0])  # what the page draws is what was compared
    np.testing.assert_allclose(np.asarray(line.y, dtype=float)[drawn], factor, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(line.x, dtype=float)[drawn] * 3600, time_s, rtol=1e-6)
    follower.close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_app_shows_every_instrument_of_a_sim_cascade_trial(sim_cascade_trial, data_dir):
    shutil.copy(sim_cascade_trial, trials_folder(data_dir) / sim_cascade_trial.name)
    at = live_page()
    assert_no_traceback(at)
    with open_trial(sim_cascade_trial) as trial:
        instruments = [name for name, _ in trial.instruments()]
        channels = [(c.name, c.units) for c in trial.sensor("feed-ph").channels]
        final = {
            name: trial.read(trial.stream(name).key, columns=("purity",))["purity"][-1] for name in trial.streams()
        }
    assert instruments == ["zone-1", "zone-2", "zone-3", "feed-ph", "feed", "raffinate", "strip"]
    assert list(at.dataframe[0].value["instrument"]) == instruments
    figures = charts(at)
    assert list(figures) == [
        *(f"live-{c}" for c in CASCADE_CHARTS),
        "live-chart-zones",
        "live-chart-sensor-feed-ph",
        *(f"live-{c}" for c in PRIMARY_CHARTS),
    ]
    zones = [trace["name"] for trace in figures["live-chart-zones"]["data"] if trace.get("showlegend", True)]
    assert zones == ["zone-1", "zone-2", "zone-3"]
    assert ("pH", "1") in channels
    assert [trace["name"] for trace in figures["live-chart-sensor-feed-ph"]["data"]] == [
        name if units in ("", "1") else f"{name} ({units})" for name, units in channels
    ]
    assert [trace["name"] for trace in figures["live-chart-cascade-purity"]["data"]] == [
        "feed · Nd2O3",
        "raffinate · Pr6O11",
        "strip · Nd2O3",
    ]
    assert title(figures["live-chart-separation"]).startswith("Separation factor Nd/Pr: strip / raffinate")
    shown = metrics(at)
    for label, stream in (
        ("Purity Nd2O3 · feed", "feed"),
        ("Purity Pr6O11 · raffinate", "raffinate"),
        ("Purity Nd2O3 · strip", "strip"),
    ):
        assert shown[label] == f"{100 * final[stream]:.2f} %"
