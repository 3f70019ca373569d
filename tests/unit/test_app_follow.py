"""The follower behind the Live page: reads only new rows, keeps traces bounded, redraws the fitted spectrum."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from _trial_factory import (
    FULL_SCALE,
    LiveTrial,
    SyntheticBench,
    metadata,
    trials_folder,
    wait_for_rows,
    write_calibration,
    write_trial,
)

import analysis
from analysis.quantify import LACK_OF_FIT_LIMIT
from app_pages._figures import FIT_TITLE, envelope, fit_figure, trial_figures
from app_pages._follow import StreamingMinMax, TrialFollower
from daq import TrialWriter, open_trial
from daq.layout import FLAG_MODEL_MISMATCH, TABLES
from daq.pipeline import analyse_counts, fit_coefficient_names

ROOT = Path(__file__).resolve().parents[2]


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


def test_latest_spectrum_is_drawn_with_the_stored_fit(tmp_path):
    # the factory's fit coefficients are those of the true sensitivities, which the file stores as its calibration
    path = write_trial(trials_folder(tmp_path) / "t.h5")
    follower = TrialFollower(path)
    spectrum = follower.update().spectrum
    assert spectrum.index == 59 and spectrum.model is not None and spectrum.model_source == "live fit"
    signal = np.nanmax(spectrum.absorbance) - np.nanmin(spectrum.absorbance)
    assert spectrum.residual_rms < 0.02 * signal  # the model explains the spectrum up to its noise
    assert np.allclose(spectrum.baseline, spectrum.baseline[0], atol=0.01)  # the bench's gentle baseline
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
    assert cache.builds == 5 and set(first) == {"furnace", "purity", "concentration", "fit", "spectrum"}
    again = trial_figures(follower.update(), cache)  # a refresh of a closed trial: nothing new
    assert cache.builds == 5 and all(again[name] is first[name] for name in first)
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


# -- the fit: lack of fit over time, and the spectrum model the live fit used -------------------------------------


def _spec(figure) -> dict:
    """A figure as the browser receives it (what st.plotly_chart sends)."""
    return json.loads(figure.to_json())


def _append_spectra(
    writer: TrialWriter,
    bench: SyntheticBench,
    times,
    *,
    flagged=(),
    lack_of_fit=5.0,
    analysis_rows: bool = True,
    spectrometer_rows: bool = True,
) -> None:
    """Synthetic spectra and their analysis rows; rows at positions ``flagged`` are a model mismatch."""
    spectrometer, rows = bench.spectra(np.asarray(times, dtype=float))
    for i in flagged:
        spectrometer["flag"][i] |= FLAG_MODEL_MISMATCH
        rows["lack_of_fit"][i] = lack_of_fit
    if spectrometer_rows:
        writer.append("spectrometer", **spectrometer)
    if analysis_rows:
        writer.append("analysis", **rows)


def test_the_follower_reads_lack_of_fit_and_mismatch_flags_incrementally(tmp_path):
    path = trials_folder(tmp_path) / "fit.h5"
    bench = SyntheticBench()
    writer = TrialWriter(path, metadata("fit"), flush_interval_s=0.05)
    try:
        bench.start(writer)
        _append_spectra(writer, bench, np.arange(10) * 10.0, flagged=(3, 4))
        wait_for_rows(path, "analysis", 10)
        wait_for_rows(path, "spectrometer", 10)
        follower = TrialFollower(path)
        first = follower.update()
        assert first.fit_recorded and first.rows_read["fit"] == follower.marks["fit"] == 10
        assert first.lack_of_fit.rows == 10 and first.mismatch_rows == 2
        with open_trial(path) as reader:
            stored = reader.read("analysis", 0, 10, columns=("lack_of_fit", "wavelength_shift"))
        np.testing.assert_array_equal(first.lack_of_fit.minimum, stored["lack_of_fit"])
        np.testing.assert_array_equal(first.wavelength_shift.maximum, stored["wavelength_shift"])
        assert list(np.flatnonzero(np.isfinite(first.mismatch.maximum))) == [3, 4]

        _append_spectra(writer, bench, 100.0 + np.arange(6) * 10.0, flagged=(5,), lack_of_fit=9.0)
        wait_for_rows(path, "analysis", 16)
        wait_for_rows(path, "spectrometer", 16)
        second = follower.update()
        assert second.rows_read["fit"] == 6 and follower.marks["fit"] == 16  # only the new rows
        assert second.lack_of_fit.rows == 16 and second.mismatch_rows == 3
        assert second.mismatch.maximum[15] == 9.0 and second.lack_of_fit.time_s[15] == 150.0

        figure = _spec(fit_figure(second))
        assert figure["layout"]["title"]["text"].startswith(FIT_TITLE)
        assert "3 spectra flagged model mismatch" in figure["layout"]["title"]["text"]
        limit = [shape for shape in figure["layout"]["shapes"] if shape.get("y0") == LACK_OF_FIT_LIMIT]
        assert limit and limit[0]["y1"] == LACK_OF_FIT_LIMIT  # the limit line is drawn
        names = [trace["name"] for trace in figure["data"]]
        assert names == ["lack of fit", "model mismatch (flag 16)", "wavelength shift"]
        markers = fit_figure(second).data[1]
        assert len(markers.x) == 3 and sorted(np.round(markers.y, 6)) == [5.0, 5.0, 9.0]
        follower.close()
    finally:
        writer.close("success")


def test_fit_traces_wait_for_the_flags_of_their_spectra(tmp_path):
    """An analysis row whose spectrum row (with its flag) is not there yet is folded in on a later update."""
    path = trials_folder(tmp_path) / "lag.h5"
    bench = SyntheticBench()
    writer = TrialWriter(path, metadata("lag"), flush_interval_s=0.05)
    try:
        bench.start(writer)
        times = np.arange(5) * 10.0
        _append_spectra(writer, bench, times[:3], analysis_rows=False)
        _append_spectra(writer, bench, times, spectrometer_rows=False)
        wait_for_rows(path, "analysis", 5)
        wait_for_rows(path, "spectrometer", 3)
        follower = TrialFollower(path)
        first = follower.update()
        assert first.purity.rows == 5 and first.lack_of_fit.rows == 3 and follower.marks["fit"] == 3
        _append_spectra(writer, bench, times[3:], flagged=(1,), analysis_rows=False)
        wait_for_rows(path, "spectrometer", 5)
        second = follower.update()
        assert second.rows_read["fit"] == 2 and second.lack_of_fit.rows == 5 and second.mismatch_rows == 1
        follower.close()
    finally:
        writer.close("success")


def _shifted_counts(bench: SyntheticBench, counts: np.ndarray, shift_nm: float) -> np.ndarray:
    """Spectra measured on a wavelength axis that moved by ``shift_nm`` since the blank (lamp and bands alike)."""
    wl = bench.wavelength
    return np.array([np.interp(wl + shift_nm, wl, row) for row in counts], dtype=np.float32)


def _broadened_counts(bench: SyntheticBench, counts: np.ndarray, half_width_px: float) -> np.ndarray:
    """The spectra with every band's absorbance broadened by a Lorentzian of ``half_width_px`` pixels."""
    net = bench.reference.astype(float) - bench.dark
    absorbance = -np.log10((counts.astype(float) - bench.dark) / net)
    offsets = np.arange(-30, 31)
    kernel = 1.0 / (1.0 + (offsets / half_width_px) ** 2)
    broadened = np.array([np.convolve(row, kernel / kernel.sum(), mode="same") for row in absorbance])
    return (bench.dark + net * 10.0**-broadened).astype(np.float32)


def _live_analysed_trial(
    path: Path,
    calibration: analysis.Calibration,
    *,
    calibration_file="",
    shift_nm=0.3,
    spectra: int = 6,
    lorentzian_px: float | None = None,
):
    """A trial whose analysis rows are what the runner stores (daq.pipeline.analyse_counts of its spectra).

    Returns the path and the live fit's model of the last spectrum, from analysis.Quantification.model_absorbance.
    """
    bench = SyntheticBench()
    times = np.arange(spectra) * 10.0
    spectrometer, _ = bench.spectra(times)
    spectrometer["counts"] = _shifted_counts(bench, spectrometer["counts"], shift_nm)
    if lorentzian_px is not None:
        spectrometer["counts"] = _broadened_counts(bench, spectrometer["counts"], lorentzian_px)
    result = analyse_counts(spectrometer["counts"], bench.dark, bench.reference, calibration, "Nd", FULL_SCALE)
    writer = TrialWriter(
        path, metadata(path.stem, calibration=calibration, calibration_file=calibration_file), flush_interval_s=0.05
    )
    bench.start(writer)
    writer.append("spectrometer", **spectrometer)
    writer.append(
        "analysis",
        time=times,
        concentration=result.concentration_g_per_L,
        sigma=result.sigma_g_per_L,
        purity=result.purity,
        purity_sigma=result.purity_sigma,
        residual_rms=result.residual_rms,
        lack_of_fit=result.lack_of_fit,
        wavelength_shift=result.wavelength_shift_nm,
        fit_coefficients=result.free_coefficients,
    )
    writer.close("success")
    live = analysis.quantify_counts(
        spectrometer["counts"], bench.dark, bench.reference, calibration, saturation_counts=FULL_SCALE
    )
    net_reference = bench.reference.astype(float) - bench.dark.astype(float)
    return path, live.model_absorbance(calibration, reference=net_reference)[-1], result


def _with_curvature(calibration: analysis.Calibration) -> analysis.Calibration:
    """The calibration with a curvature term for Nd (a narrow band: not collinear with the sensitivities)."""
    wl = calibration.wavelength_nm
    G = np.zeros((3, 3))
    G[:2, :2] = calibration.sensitivity_variance_factor
    return analysis.Calibration(
        analytes=calibration.analytes,
        wavelength_nm=wl,
        sensitivity=calibration.sensitivity,
        baseline_order=calibration.baseline_order,
        pixel_weight=calibration.pixel_weight,
        sensitivity_variance_factor=G,
        model_sigma_g_per_L=calibration.model_sigma_g_per_L,
        quadratic_analytes=("Nd",),
        quadratic_sensitivity=-2e-4 * np.exp(-0.5 * ((wl - 578.0) / 3.0) ** 2)[None, :],
        quality=calibration.quality,
    )


@pytest.mark.parametrize("curvature", [False, True], ids=["linear", "curvature"])
def test_the_spectrum_model_is_the_live_fit_rebuilt_from_its_stored_coefficients(tmp_path, curvature):
    calibration = write_calibration(tmp_path / "calibrations" / "c.h5")
    if curvature:
        calibration = _with_curvature(calibration)
    path, live_model, result = _live_analysed_trial(trials_folder(tmp_path) / "t.h5", calibration)
    axis_shift = result.free_coefficients[-1, (1 if curvature else 0) + 3]
    assert abs(axis_shift) > 0.05  # the blank's own light is part of this model
    follower = TrialFollower(path, calibration_loader=lambda attrs: calibration)
    snapshot = follower.update()
    spectrum = snapshot.spectrum
    assert (
        spectrum.model_source == "live fit" and "live fit, rebuilt from this row's stored coefficients" in spectrum.note
    )
    np.testing.assert_allclose(spectrum.model, live_model, rtol=0, atol=1e-12 * np.max(np.abs(live_model)))
    assert spectrum.residual_rms == pytest.approx(spectrum.stored_residual_rms, rel=1e-9)
    assert "refit" not in trial_figures(snapshot)["spectrum"].layout.title.text
    follower.close()


@pytest.mark.parametrize("calibration_at_hand", [True, False], ids=["calibration-file", "trial-copy"])
def test_a_spectrum_refitted_with_lorentzian_widths_is_drawn_with_that_term(tmp_path, calibration_at_hand):
    """The second fit's Lorentzian width coefficients are stored with the others, and the drawn model has them."""
    calibration = write_calibration(tmp_path / "calibrations" / "c.h5")
    path, live_model, result = _live_analysed_trial(trials_folder(tmp_path) / "t.h5", calibration, lorentzian_px=1.0)
    names = fit_coefficient_names(calibration)
    lorentzian = [i for i, name in enumerate(names) if name.startswith("lorentzian width ")]
    assert len(lorentzian) == len(calibration.analytes)
    assert np.any(result.free_coefficients[-1, lorentzian] != 0)  # this spectrum needed the second fit
    loader = (lambda attrs: calibration) if calibration_at_hand else None
    follower = TrialFollower(path, calibration_loader=loader) if loader else TrialFollower(path)
    spectrum = follower.update().spectrum
    assert spectrum.model_source == "live fit"
    np.testing.assert_allclose(spectrum.model, live_model, rtol=0, atol=1e-12 * np.max(np.abs(live_model)))
    follower.close()


def _drop_lorentzian_columns(path: Path, K: int) -> None:
    """Make ``path`` look like a file from before the second fit: no Lorentzian width coefficients stored."""
    import h5py

    with h5py.File(path, "r+") as handle:
        old = handle["/entry/analysis/fit_coefficients"]
        data, attrs = old[:, :-K], dict(old.attrs)
        del handle["/entry/analysis/fit_coefficients"]
        new = handle["/entry/analysis"].create_dataset("fit_coefficients", data=data)
        for key, value in attrs.items():
            if key in ("column_names", "column_units"):  # ", "-joined, one per column
                text = value.decode() if isinstance(value, bytes) else str(value)
                value = ", ".join(text.split(", ")[:-K])
            new.attrs[key] = value


def test_a_file_from_before_the_second_fit_is_still_drawn_with_its_live_model(tmp_path):
    """Trial files written before decision 0069 store no Lorentzian width coefficients: the same design without
    those columns draws them exactly."""
    calibration = write_calibration(tmp_path / "calibrations" / "c.h5")
    path, live_model, result = _live_analysed_trial(trials_folder(tmp_path) / "old.h5", calibration, shift_nm=0.05)
    assert not np.any(result.free_coefficients[:, -len(calibration.analytes) :])  # no second fit was needed
    _drop_lorentzian_columns(path, len(calibration.analytes))
    with open_trial(path) as trial:
        names = tuple(trial.fit_coefficient_names)
    assert names and not any(name.startswith("lorentzian width ") for name in names)
    for follower in (TrialFollower(path, calibration_loader=lambda attrs: calibration), TrialFollower(path)):
        spectrum = follower.update().spectrum
        assert spectrum.model_source == "live fit"
        np.testing.assert_allclose(spectrum.model, live_model, rtol=0, atol=1e-12 * np.max(np.abs(live_model)))
        follower.close()


def test_without_the_calibration_file_the_model_comes_from_the_trials_copy_of_the_sensitivity(tmp_path):
    calibration = write_calibration(tmp_path / "calibrations" / "c.h5")
    path, live_model, _ = _live_analysed_trial(trials_folder(tmp_path) / "t.h5", calibration)
    follower = TrialFollower(path)  # no calibration loader: the file is not at hand
    spectrum = follower.update().spectrum
    assert spectrum.model_source == "live fit" and "copy of the sensitivity" in spectrum.note
    # no curvature terms: the drift spectra derive from S alone, so the model is the live one exactly
    np.testing.assert_allclose(spectrum.model, live_model, rtol=0, atol=1e-12 * np.max(np.abs(live_model)))
    follower.close()

    curved = _with_curvature(calibration)
    path, live_model, _ = _live_analysed_trial(trials_folder(tmp_path) / "curved.h5", curved)
    follower = TrialFollower(path)
    spectrum = follower.update().spectrum
    assert spectrum.model_source == "live fit" and "without its curvature terms (Nd^2" in spectrum.note
    assert not np.allclose(spectrum.model, live_model)  # the curvature spectrum is only in the calibration file
    follower.close()


def _as_format_1_0(source: Path, target: Path) -> Path:
    """A copy of ``source`` as format 1.0 wrote it: without the columns 1.1 added (so no fit coefficients)."""
    added = [(t.group, c.name) for t in TABLES for c in t.columns if c.optional]
    with h5py.File(source, "r") as old, h5py.File(target, "w", libver=("v110", "v110")) as new:
        for key, value in old.attrs.items():
            new.attrs[key] = value
        old.copy(old["entry"], new, "entry")
        for group, name in added:
            del new[group][name]
        new["entry"].attrs["file_format"] = "rem-daq trial 1"
        del new["entry/purity/purity"], new["entry/purity/time"]
        new["entry/purity/purity"] = new["entry/analysis/purity"]
        new["entry/purity/time"] = new["entry/analysis/time"]
    return target


def test_a_format_1_0_file_is_drawn_with_a_refitted_model_and_says_so(tmp_path):
    calibration = write_calibration(tmp_path / "calibrations" / "c.h5")
    source, _, _ = _live_analysed_trial(tmp_path / "new.h5", calibration)
    path = _as_format_1_0(source, trials_folder(tmp_path) / "old.h5")
    follower = TrialFollower(path, calibration_loader=lambda attrs: calibration)
    snapshot = follower.update()
    spectrum = snapshot.spectrum
    assert spectrum.model_source == "refit" and spectrum.model is not None
    assert "Model refitted here, not the live fit" in spectrum.note and "format 1.0" in spectrum.note
    assert f"pixel weights of calibration {calibration.calibration_id}" in spectrum.note
    signal = np.nanmax(spectrum.absorbance) - np.nanmin(spectrum.absorbance)
    assert spectrum.residual_rms < 0.05 * signal  # the old redraw: concentrations fixed, the baseline refitted
    figures = trial_figures(snapshot)
    assert "model refitted, not the live fit" in figures["spectrum"].layout.title.text
    assert [trace.name for trace in figures["spectrum"].data][1] == "model (refit here)"
    assert not snapshot.fit_recorded and snapshot.lack_of_fit is None and follower.marks["fit"] == 0
    assert "not recorded" in figures["fit"].layout.annotations[0].text
    again = follower.update()  # later refreshes of a 1.0 file read nothing of the fit either
    assert again.rows_read.get("fit", 0) == 0 and again.purity.rows == 6
    follower.close()


def test_a_row_without_fit_coefficients_is_drawn_with_a_refit_and_says_why(tmp_path):
    path = trials_folder(tmp_path) / "producer.h5"
    bench = SyntheticBench()
    writer = TrialWriter(path, metadata("producer"), flush_interval_s=0.05)
    bench.start(writer)
    spectrometer, rows = bench.spectra(np.arange(3) * 10.0)
    for column in ("lack_of_fit", "wavelength_shift", "fit_coefficients"):  # a producer that leaves them out
        del rows[column]
    writer.append("spectrometer", **spectrometer)
    writer.append("analysis", **rows)
    writer.close("success")
    follower = TrialFollower(path)
    snapshot = follower.update()
    assert snapshot.spectrum.model_source == "refit" and "records no fit coefficients" in snapshot.spectrum.note
    assert snapshot.fit_recorded and snapshot.lack_of_fit.rows == 3  # recorded as NaN: drawn as gaps
    assert "model refitted" in trial_figures(snapshot)["spectrum"].layout.title.text
    follower.close()


def test_coefficient_names_that_describe_no_design_are_not_guessed():
    from app_pages._follow import fit_design

    wl = np.linspace(350.0, 1000.0, 64)
    S = SyntheticBench(64).sensitivity
    assert fit_design(("P0", "P1", "P2"), ("Nd", "Pr"), wl, S) is None  # no axis shift column
    assert (
        fit_design(
            ("P0", "axis shift since blank", "shift Pr", "shift Nd", "width Nd", "width Pr"), ("Nd", "Pr"), wl, S
        )
        is None
    )  # another order than the design's
    design = fit_design(
        ("Nd^2", "P0", "P1", "axis shift since blank", "shift Nd", "shift Pr", "width Nd", "width Pr"),
        ("Nd", "Pr"),
        wl,
        S,
    )
    assert design.omitted == ("Nd^2",) and design.used == (1, 2, 4, 5, 6, 7) and design.matrix.shape == (64, 8)
