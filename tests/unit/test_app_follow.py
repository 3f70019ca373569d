"""The follower behind the Live page: reads only new rows, keeps traces bounded, redraws the fitted spectrum."""

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _trial_factory import (LiveTrial, SyntheticBench, metadata, trials_folder, wait_for_rows,  # noqa: E402
                            write_calibration, write_trial)
from app_pages._figures import envelope, trial_figures  # noqa: E402
from app_pages._follow import StreamingMinMax, TrialFollower  # noqa: E402

from daq import TrialWriter  # noqa: E402


def test_streaming_min_max_keeps_extremes_and_stays_bounded():
    values = np.sin(np.arange(100_000) / 500.0)
    values[31_337] = 9.0
    values[77_777] = -9.0
    trace = StreamingMinMax(max_points=100)
    for start in range(0, len(values), 997):  # uneven blocks, as refreshes bring them
        block = slice(start, start + 997)
        trace.extend(np.arange(len(values), dtype=float)[block], values[block])
    result = trace.trace()
    assert len(result.time_s) <= 101 and result.rows == len(values)
    assert result.maximum.max() == 9.0 and result.minimum.min() == -9.0
    assert np.all(result.minimum <= result.maximum)
    assert np.all(np.diff(result.time_s) > 0)


def test_envelope_draws_raw_values_until_rows_are_bucketed():
    trace = StreamingMinMax(max_points=10)
    trace.extend(np.arange(5.0), np.arange(5.0))
    x, y = envelope(trace.trace())
    assert list(y) == [0, 1, 2, 3, 4]
    trace.extend(np.arange(5.0, 40.0), np.arange(5.0, 40.0))
    x, y = envelope(trace.trace())
    assert len(x) == 2 * len(trace.trace().time_s) and y.max() == 39.0


def test_follower_reads_only_new_rows_of_a_trial_being_written(tmp_path):
    with LiveTrial(trials_folder(tmp_path) / "live.h5") as live:
        wait_for_rows(live.path, "analysis", 24)
        follower = TrialFollower(live.path)
        first = follower.update()
        assert first.state == "running"
        seen = dict(follower.marks)
        assert first.rows_read["furnace"] == seen["furnace"] >= 60
        wait_for_rows(live.path, "analysis", seen["analysis"] + 2)
        second = follower.update()
        new_furnace = follower.marks["furnace"] - seen["furnace"]
        assert second.rows_read["furnace"] == new_furnace and 0 < new_furnace < seen["furnace"]
        assert second.rows_read["analysis"] == follower.marks["analysis"] - seen["analysis"] >= 2
        assert second.furnace["temperature"].rows == follower.marks["furnace"]
        assert second.purity.rows == follower.marks["analysis"]
        assert second.latest_analysis["time"] > first.latest_analysis["time"]
        follower.close()


def test_a_long_trial_is_drawn_from_bounded_traces(tmp_path):
    path = write_trial(trials_folder(tmp_path) / "long.h5", duration_s=30_000, spectrum_period_s=10, pixels=64)
    follower = TrialFollower(path, max_points=500)
    snapshot = follower.update()
    temperature = snapshot.furnace["temperature"]
    assert temperature.rows == 30_000 and len(temperature.time_s) <= 501
    bench = SyntheticBench(64)
    assert temperature.maximum.max() == pytest.approx(bench.furnace(np.arange(30_000.0))["temperature"].max())
    band = snapshot.purity_band
    assert np.all(band.minimum <= snapshot.purity.minimum[: len(band.minimum)] + 1e-12)
    figures = trial_figures(snapshot)
    for name, figure in figures.items():
        assert all(len(trace.x) <= 2 * 501 for trace in figure.data), name
    follower.close()


def test_latest_spectrum_is_redrawn_with_the_calibration_model(tmp_path):
    calibration_file = tmp_path / "calibrations" / "c.h5"
    calibration = write_calibration(calibration_file)
    path = write_trial(trials_folder(tmp_path) / "t.h5",
                       meta=metadata("t", calibration=calibration, calibration_file=calibration_file))
    follower = TrialFollower(path, calibration_loader=lambda attrs: calibration)
    spectrum = follower.update().spectrum
    assert spectrum.index == 59 and spectrum.model is not None
    signal = np.nanmax(spectrum.absorbance) - np.nanmin(spectrum.absorbance)
    assert spectrum.residual_rms < 0.02 * signal  # the model explains the spectrum up to its noise
    assert "pixel weights of calibration" in spectrum.note
    follower.close()


def test_spectrum_without_dark_or_reference_is_shown_as_raw_counts(tmp_path):
    path = trials_folder(tmp_path) / "raw.h5"
    writer = TrialWriter(path, metadata("raw"))
    spectrometer, analysis = SyntheticBench().spectra(np.array([0.0, 10.0]))
    writer.append("spectrometer", **spectrometer)
    writer.close("aborted")
    follower = TrialFollower(path)
    snapshot = follower.update()
    assert snapshot.spectrum.absorbance is None and "raw counts" in snapshot.spectrum.note
    assert snapshot.purity is None
    assert trial_figures(snapshot)["spectrum"].layout.title.text.endswith("(raw counts)")
    follower.close()


def test_figures_are_rebuilt_only_when_their_data_changed(tmp_path):
    from app_pages._figures import FigureCache

    path = write_trial(trials_folder(tmp_path) / "t.h5", duration_s=120, pixels=64)
    follower = TrialFollower(path)
    cache = FigureCache()
    first = trial_figures(follower.update(), cache)
    assert cache.builds == 4
    again = trial_figures(follower.update(), cache)  # a refresh of a closed trial: nothing new
    assert cache.builds == 4 and all(again[name] is first[name] for name in first)
    follower.close()


def test_figure_arrays_are_sent_as_float32_unless_that_would_show_steps():
    from app_pages._figures import compact

    assert compact(np.linspace(20.0, 250.0, 10)).dtype == np.float32
    nearly_constant = 1000.0 + np.linspace(0.0, 1e-3, 10)  # a spread of 1e-6 of the value
    assert compact(nearly_constant).dtype == np.float64
    assert compact(np.full(3, np.nan)).dtype == np.float32


def test_purity_band_is_drawn_within_0_and_100_percent(tmp_path):
    path = trials_folder(tmp_path) / "blank.h5"
    writer = TrialWriter(path, metadata("blank"))
    spectrometer, analysis = SyntheticBench().spectra(np.array([0.0, 10.0, 20.0]))
    analysis["purity_sigma"] = np.array([40.0, 0.5, 0.002])  # a near-zero total: sigma of a ratio explodes
    writer.append("spectrometer", **spectrometer)
    writer.append("analysis", **analysis)
    writer.close("success")
    follower = TrialFollower(path)
    band_traces = trial_figures(follower.update())["purity"].data[:2]
    follower.close()
    for trace in band_traces:
        assert np.nanmin(trace.y) >= 0.0 and np.nanmax(trace.y) <= 100.0
