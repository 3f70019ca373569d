"""Trial file 1.1: the whole fit is stored per spectrum, and what the model cannot vouch for is flagged.

A trial's spectrum path (:class:`daq._stream.SpectrometerStream`, as the runner drives it) is
driven here with spectra made from closed formulas: some with an absorber the
calibration does not know (a model mismatch), some blanks (no rare earths). The
file is written by the real :class:`daq.TrialWriter` and read back by the real
reader and the `remdaq` command line. Old-format (1.0) files are built with h5py
from the committed layout minus the columns 1.1 added.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import h5py
import numpy as np
import pytest
from _trial_factory import FULL_SCALE, SyntheticBench, metadata, trials_folder, write_calibration, write_trial
from click.testing import CliRunner

import analysis
from daq import Catalog, open_trial
from daq._stream import Episode, SpectrometerStream
from daq._trial_plan import StreamPlan
from daq.cli import cli
from daq.config import SpectrometerConfig, SpectrometerSchedule
from daq.layout import FILE_FORMAT, FLAG_MODEL_MISMATCH, FLAG_NO_RARE_EARTHS, TABLES, file_format_version
from daq.pipeline import analyse_counts, fit_coefficient_names
from daq.reanalysis import read_result, reanalyze
from daq.store import TrialWriter

UNKNOWN_BAND_NM = 520.0  # no analyte of the calibration absorbs here


class _Clock:
    def __init__(self):
        self.t = 0.0

    def now_s(self) -> float:
        return self.t


def _counts(bench: SyntheticBench, rng, concentration, unknown: float = 0.0, full_scale: float = FULL_SCALE):
    wl = bench.wavelength
    x = (wl - wl.mean()) / np.ptp(wl) * 2
    absorbance = (
        np.asarray(concentration, dtype=float) @ bench.sensitivity
        + 0.01
        + 0.004 * x
        + 0.003 * x**2
        + unknown * np.exp(-0.5 * ((wl - UNKNOWN_BAND_NM) / 15.0) ** 2)
    )
    light = (bench.reference - bench.dark) * 10.0 ** (-absorbance)
    counts = bench.dark + light + rng.normal(0.0, 1.0, wl.size) * np.sqrt(light) * 0.3
    return np.minimum(counts, full_scale).astype(np.float32)


class _Trial:
    """The trial as a stream sees it: a clock the test sets, the file, events kept in a list."""

    def __init__(self, writer: TrialWriter):
        self.clock = _Clock()
        self.stop = threading.Event()
        self.file = writer
        self.events: list[tuple[str, str, str]] = []

    def event(self, level: str, source: str, message: str) -> None:
        self.events.append((level, source, message))
        self.file.event(self.clock.now_s(), level, source, message)

    def print(self, text: str) -> None:
        pass

    def request_abort(self, reason: str) -> None:
        raise AssertionError(f"no abort expected: {reason}")

    def instrument_lost(self, name, error, lost_since, instrument) -> float:
        raise AssertionError(f"no lost instrument expected: {name}: {error}")


def _stream(path: Path, calibration, bench: SyntheticBench) -> tuple[SpectrometerStream, _Trial]:
    """A stream past its startup, writing to ``path``: only its spectrum path is exercised."""
    config = SpectrometerConfig(name="spectrometer", simulated=True, pixels=bench.wavelength.size)
    schedule = SpectrometerSchedule(integration_time_s=0.02, averages=4)
    plan = StreamPlan(config, schedule, tuple(calibration.analytes), "Nd", None, True, "spectrometer")
    stream = SpectrometerStream(plan, calibration, path.with_suffix(".cal.h5"))
    stream.saturation = FULL_SCALE
    stream._dark, stream._reference = bench.dark.astype(float), bench.reference.astype(float)
    trial = _Trial(TrialWriter(path, metadata(path.stem, calibration=calibration), flush_interval_s=0.05))
    bench.start(trial.file)  # the start event, the dark and the blank reference
    return stream, trial


# spectra of one trial: (concentration Nd, Pr g/L, unknown absorber absorbance)
PLAN = [((0.0, 0.0), 0.0)] * 4 + [((10.0, 2.0), 0.0)] * 6 + [((10.0, 2.0), 0.04)] * 5 + [((11.0, 1.5), 0.0)] * 6
MISMATCH_ROWS = list(range(10, 15))
BLANK_ROWS = list(range(4))


@pytest.fixture(scope="module")
def live_trial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    calibration = write_calibration(folder / "cal.h5")
    bench = SyntheticBench()
    rng = np.random.default_rng(11)
    path = trials_folder(folder / "data") / "mismatch.h5"
    stream, trial = _stream(path, calibration, bench)
    for i, (concentration, unknown) in enumerate(PLAN):
        trial.clock.t = 10.0 * (i + 1)
        stream._append_spectrum(trial, _counts(bench, rng, concentration, unknown), 0, 0)
    trial.file.close("success")
    return path, calibration


def test_flags_are_on_exactly_the_rows_the_model_cannot_vouch_for(live_trial):
    path, calibration = live_trial
    with open_trial(path) as trial:
        flag = trial.read("spectrometer")["flag"]
        rows = trial.read("analysis")
        names = trial.fit_coefficient_names
    assert list(np.flatnonzero(flag & FLAG_MODEL_MISMATCH)) == MISMATCH_ROWS
    assert list(np.flatnonzero(flag & FLAG_NO_RARE_EARTHS)) == BLANK_ROWS
    assert np.all(np.isnan(rows["purity"][BLANK_ROWS])) and np.all(np.isfinite(rows["purity"][4:]))
    fitting = [i for i in range(len(PLAN)) if i not in MISMATCH_ROWS]
    assert np.all(rows["lack_of_fit"][MISMATCH_ROWS] > 2) and np.all(rows["lack_of_fit"][fitting] < 2)
    assert abs(np.median(rows["lack_of_fit"][fitting]) - 1.0) < 0.3
    assert (
        names
        == fit_coefficient_names(calibration)
        == (
            *("P0", "P1", "P2", "axis shift since blank", "shift Nd", "shift Pr", "width Nd", "width Pr"),
            *("lorentzian width Nd", "lorentzian width Pr"),
        )
    )
    assert rows["fit_coefficients"].shape == (len(PLAN), len(names))
    assert np.all(np.abs(rows["wavelength_shift"][4:]) < 0.2)  # no shift in these spectra
    assert np.all(np.isnan(rows["wavelength_shift"][BLANK_ROWS]))  # no bands in the cell: no shift to estimate


def test_stored_fit_reproduces_the_measured_absorbance(live_trial):
    path, calibration = live_trial
    with open_trial(path) as trial:
        rows = trial.read("analysis", 6, 7)
        counts = trial.read("spectrometer", 6, 7)["counts"]
        dark, reference = trial.read("dark")["counts"][0], trial.read("reference")["counts"][0]
    fit = rows["fit_coefficients"]
    axis = fit_coefficient_names(calibration).index("axis shift since blank")
    # docs/trial-file.md: the Lorentzian width columns follow the design matrix's free columns
    design = np.hstack([calibration.design_matrix(), calibration.lorentzian_width_spectra().T])
    model = np.hstack([rows["concentration"], np.delete(fit, axis, axis=1)]) @ design.T
    model += fit[:, [axis]] * analysis.reference_shift_spectrum(calibration.wavelength_nm, reference - dark)
    measured = -np.log10((counts - dark) / (reference - dark))
    assert np.sqrt(np.mean((model - measured) ** 2)) < 3 * rows["residual_rms"][0] + 1e-3


def test_one_event_per_start_and_end_not_one_per_spectrum(live_trial):
    path, _ = live_trial
    with open_trial(path) as trial:
        events = trial.events()
    analysis_events = [
        (lv, m) for lv, s, m in zip(events["level"], events["source"], events["message"]) if s == "analysis"
    ]
    warnings = [m for lv, m in analysis_events if lv == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith("model mismatch: lack of fit ")
    assert "(limit 2): the calibration cannot represent these spectra" in warnings[0]
    assert "recalibrate; purity not to be trusted" in warnings[0]
    infos = [m for lv, m in analysis_events if lv == "info"]
    assert [m.split(":")[0] for m in infos] == [
        "no rare earths in the cell",
        "rare earths in the cell",
        "model mismatch over",
    ]


def test_episode_near_its_limit_reports_once():
    episode = Episode(start_after=1, end_after=3)
    flicker = [True, False, True, False, False, True, None, False, False, False, False]
    changes = [episode.update(v) for v in flicker]
    assert [c for c in changes if c] == ["start", "end"]
    assert changes.index("end") == 9  # the third fitting spectrum in a row


def test_show_says_no_rare_earths_and_reports_the_fit(tmp_path):
    calibration = write_calibration(tmp_path / "cal.h5")
    bench = SyntheticBench()
    rng = np.random.default_rng(5)
    path = trials_folder(tmp_path / "data") / "blank.h5"
    stream, trial = _stream(path, calibration, bench)
    for i, (concentration, unknown) in enumerate([((10.0, 2.0), 0.04)] + [((0.0, 0.0), 0.0)] * 3):
        trial.clock.t = 10.0 * (i + 1)
        stream._append_spectrum(trial, _counts(bench, rng, concentration, unknown), 0, 0)
    trial.file.close("success")
    result = CliRunner().invoke(cli, ["show", str(path)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line and not line.startswith(" ")}
    assert lines["final_purity"].split(None, 1)[1] == "no rare earths in the cell"
    assert float(lines["final_lack_of_fit"].split()[1]) < 2
    assert lines["model_mismatch_fraction"].split()[1] == "0.25"
    Catalog(tmp_path / "data").rebuild()
    listing = CliRunner().invoke(cli, ["ls", "--data-dir", str(tmp_path / "data")])
    assert listing.exit_code == 0 and "no rare earths in the cell" in listing.output


# -- files of format 1.0 -----------------------------------------------------------------------------


def _downgrade_to_1_0(source: Path, target: Path) -> Path:
    """A copy of ``source`` as format 1.0 wrote it: the committed layout minus the columns 1.1 added."""
    added = [(t.group, c.name) for t in TABLES for c in t.columns if c.optional]
    with h5py.File(source, "r") as old, h5py.File(target, "w", libver=("v110", "v110")) as new:
        for key, value in old.attrs.items():
            new.attrs[key] = value
        old.copy(old["entry"], new, "entry")  # hard links (entry/purity) are copied as datasets; rebuilt below
        for group, name in added:
            del new[group][name]
        new["entry"].attrs["file_format"] = "rem-daq trial 1"
        del new["entry/purity/purity"], new["entry/purity/time"]
        new["entry/purity/purity"] = new["entry/analysis/purity"]
        new["entry/purity/time"] = new["entry/analysis/time"]
    return target


@pytest.fixture(scope="module")
def old_trial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("old")
    data = folder / "data"
    new = write_trial(folder / "new.h5", duration_s=200.0, pixels=256)
    return _downgrade_to_1_0(new, trials_folder(data) / "old.h5"), data


def test_format_versions():
    assert FILE_FORMAT == "rem-daq trial 2.0"
    assert (
        file_format_version("rem-daq trial 1")
        == (1, 0)
        < file_format_version("rem-daq trial 1.1")
        == (1, 1)
        < file_format_version("rem-daq trial 1.2")
        == (1, 2)
        < file_format_version(FILE_FORMAT)
        == (2, 0)
    )
    assert file_format_version("something else") == (0, 0)


def test_old_file_reads_as_before_with_fit_not_recorded(old_trial):
    path, _ = old_trial
    with open_trial(path) as trial:
        assert trial.format_version == (1, 0)
        assert not trial.has_column("analysis", "lack_of_fit")
        rows = trial.read("analysis")
        assert trial.rows("analysis") == 20 and np.all(np.isfinite(rows["purity"]))
        assert np.all(np.isnan(rows["lack_of_fit"])) and rows["fit_coefficients"].shape == (20, 0)
        assert trial.fit_coefficient_names == ()
        summary = trial.summary()
        assert math.isnan(summary["final_lack_of_fit"]) and summary["fit_recorded"] is False
        with pytest.raises(KeyError, match="not recorded"):
            trial.dataset("analysis", "wavelength_shift")
    result = CliRunner().invoke(cli, ["show", str(path)])
    assert result.exit_code == 0, result.output
    assert "final_lack_of_fit not recorded" in result.output
    assert "model_mismatch_fraction not recorded" in result.output


def test_old_file_is_catalogued_and_reanalysed(old_trial, tmp_path):
    path, data = old_trial
    entries = Catalog(data).rebuild()
    assert [(e.file, e.status) for e in entries] == [("trials/old.h5", "success")] and entries[0].final_purity
    calibration = write_calibration(tmp_path / "cal.h5")
    report = reanalyze([path], calibration, tmp_path / "out", workers=0, progress=False)
    outcome = report.outcomes[0]
    assert outcome.status == "reanalysed" and 0.5 < outcome.final_purity < 1
    result = read_result(outcome.result_file)
    assert np.all(np.isfinite(result.lack_of_fit)) and result.provenance["saturation_counts"] == FULL_SCALE


def test_new_factory_files_carry_plausible_fit_values(tmp_path):
    path = write_trial(tmp_path / "t.h5", duration_s=300.0)
    with open_trial(path) as trial:
        rows = trial.read("analysis")
        assert trial.metadata["file_format"] == FILE_FORMAT
        assert abs(np.mean(rows["lack_of_fit"]) - 1.0) < 0.1
        assert rows["fit_coefficients"].shape == (30, len(trial.fit_coefficient_names)) == (30, 8)
    with h5py.File(path, "r") as handle:
        attrs = handle["entry/analysis/fit_coefficients"].attrs
        assert attrs["column_names"].startswith("P0, P1, P2, axis shift since blank, shift Nd")
        assert handle["entry/analysis/lack_of_fit"].attrs["units"] == "1"
        assert handle["entry/analysis/wavelength_shift"].attrs["units"] == "nm"


def test_writer_stores_left_out_optional_columns_as_nan(tmp_path):
    writer = TrialWriter(tmp_path / "t.h5", metadata("t"))
    writer.append(
        "analysis",
        time=0.0,
        concentration=np.ones(2),
        sigma=np.ones(2),
        purity=0.9,
        purity_sigma=0.01,
        residual_rms=0.001,
    )
    writer.close("success")
    with open_trial(tmp_path / "t.h5") as trial:
        rows = trial.read("analysis")
    assert rows["purity"][0] == 0.9 and math.isnan(rows["lack_of_fit"][0])
    assert np.all(np.isnan(rows["fit_coefficients"][0]))


# -- reanalysis takes the saturation level from the file -------------------------------------------------------


def test_reanalysis_masks_at_the_full_scale_the_file_records(tmp_path):
    full_scale = 4095.0
    calibration = write_calibration(tmp_path / "cal.h5")
    bench = SyntheticBench()
    scale = 3000.0 / float(np.max(bench.reference - bench.dark))
    bench.dark = np.full_like(bench.dark, 100.0)
    bench.reference = np.minimum(bench.dark + (SyntheticBench().reference - 900.0) * scale, 3900.0).astype(np.float32)
    rng = np.random.default_rng(2)
    meta = metadata("small", calibration=calibration)
    meta.full_scale_counts = full_scale
    writer = TrialWriter(trials_folder(tmp_path / "data") / "small.h5", meta, flush_interval_s=0.05)
    bench.start(writer)
    for i in range(4):
        counts = _counts(bench, rng, (10.0, 2.0), full_scale=full_scale)
        counts[40:45] = full_scale  # clipped at this detector's full scale
        live = analyse_counts(counts, bench.dark, bench.reference, calibration, "Nd", full_scale)
        writer.append(
            "spectrometer",
            time=float(i),
            counts=counts,
            integration_time=0.02,
            averages=4,
            saturated_pixels=5,
            dark_index=0,
            reference_index=0,
            flag=2,
        )
        writer.append(
            "analysis",
            time=float(i),
            concentration=live.concentration_g_per_L[0],
            sigma=live.sigma_g_per_L[0],
            purity=live.purity[0],
            purity_sigma=live.purity_sigma[0],
            residual_rms=live.residual_rms[0],
        )
    writer.close("success")
    report = reanalyze([writer.path], calibration, tmp_path / "out", workers=0, progress=False)
    result = read_result(report.outcomes[0].result_file)
    assert np.all(result.masked_pixels == 5)
    assert result.provenance["saturation_counts"] == full_scale
    assert "trial file" in result.provenance["saturation_counts_source"]
    given = reanalyze(
        [writer.path], calibration, tmp_path / "out2", workers=0, progress=False, saturation_counts=65535.0
    )
    again = read_result(given.outcomes[0].result_file)
    assert np.all(again.masked_pixels == 0) and "given" in again.provenance["saturation_counts_source"]


def test_row_flags_are_one_enumeration_with_a_description_per_bit():
    from daq import layout
    from daq.layout import ROW_FLAGS, RowFlag

    assert set(ROW_FLAGS) == {0, *(int(bit) for bit in RowFlag)}
    assert all(ROW_FLAGS[bit] for bit in RowFlag)
    assert (layout.FLAG_READ_FAILED, layout.FLAG_SATURATED, layout.FLAG_LOST, layout.FLAG_ANALYSIS_FAILED) == (
        1,
        2,
        4,
        8,
    )
    flags = np.zeros(3, dtype=np.uint8)
    flags[1] |= FLAG_MODEL_MISMATCH  # plain ints: numpy keeps the column's uint8
    assert flags.dtype == np.uint8 and list(flags) == [0, int(RowFlag.MODEL_MISMATCH), 0]
