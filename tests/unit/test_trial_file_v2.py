"""Trial file format 2.0: one group per instrument, one analysis per spectrometer stream; version-1 files stay
first-class (a version-1.2 file kept as a fixture, written by the version-1.2 writer, reads as before)."""

import importlib.util
import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from _trial_factory import (
    CASCADE_ORDER,
    cascade_metadata,
    cascade_rows,
    metadata,
    write_cascade_trial,
)

from daq.layout import FILE_FORMAT, TABLES
from daq.reader import TrialFileError, open_trial
from daq.store import (
    ControllerRecord,
    SensorRecord,
    SpectrometerRecord,
    StreamRecord,
    TrialWriter,
    writer_lock_path,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE = FIXTURES / "trial-format-1.2.h5"
KINDS = {
    "zone-1": "temperature_controller",
    "zone-2": "temperature_controller",
    "zone-3": "temperature_controller",
    "raffinate": "spectrometer",
    "strip": "spectrometer",
    "feed-ph": "sensor",
    "strip_flow": "sensor",
}


def _fixture_script():
    spec = importlib.util.spec_from_file_location("make_trial_format_1_2", FIXTURES / "make_trial_format_1_2.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cascade(tmp_path_factory):
    return write_cascade_trial(tmp_path_factory.mktemp("cascade") / "cascade.h5")


def assert_rows_equal(read: dict, written: dict) -> None:
    assert set(read) == set(written)
    for name, values in written.items():
        got = read[name]
        if got.dtype == object:
            assert list(got) == list(values), name
        else:
            np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(values, dtype=float), err_msg=name)


# -- a multi-instrument trial ------------------------------------------------------------------------------------


def test_a_multi_instrument_trial_round_trips_through_writer_and_reader(cascade):
    written = cascade_rows()
    with open_trial(cascade) as trial:
        assert trial.format_version == (2, 0)
        assert trial.instruments() == tuple((name, KINDS[name]) for name in CASCADE_ORDER)
        assert [name for name, _ in trial.instruments()] == list(CASCADE_ORDER)  # the station's order, not HDF5's
        assert trial.streams() == ("raffinate", "strip")
        assert set(trial.tables()) == set(written) | {"events"}
        for key, columns in written.items():
            assert trial.rows(key) == len(columns["time"]), key
            assert_rows_equal(trial.read(key), columns)
        # each spectrometer its own pixels, wavelength axis, full scale and attributes
        raffinate, strip = trial.spectrometer("raffinate"), trial.spectrometer("strip")
        assert (raffinate.pixels, strip.pixels) == (40, 24)
        assert trial.read("spectrometer:strip")["counts"].shape == (5, 24)
        assert trial.read("dark:strip")["counts"].shape == (1, 24)
        np.testing.assert_array_equal(strip.wavelength_nm, np.linspace(450.0, 900.0, 24))
        assert (raffinate.full_scale_counts, strip.full_scale_counts) == (65535.0, 16383.0)
        assert strip.attrs["model"] == "HDX" and strip.attrs["driver"] == "ocean"
        assert trial.instrument("zone-3").attrs["ident"] == "EUROTHERM,2404,3"
        assert trial.instrument("zone-2").attrs["address"] == 2
        # each stream its own analytes, target, calibration and fit coefficients
        first, second = trial.stream("raffinate"), trial.stream("strip")
        assert (first.key, second.key) == ("analysis", "analysis:strip")
        assert (first.target_element, second.target_element) == ("Pr", "Nd")
        assert (first.analytes, second.analytes) == (("Nd", "Pr"), ("Nd", "Pr", "Sm"))
        assert second.fit_coefficient_names == ("P0", "P1", "P2", "axis shift since blank")
        assert second.fit_coefficient_units == ("absorbance", "absorbance", "absorbance", "nm")
        assert second.attrs["calibration_id"] == "cal-strip" and second.attrs["target"] == "Nd"
        assert second.attrs["covered_elements"] == "Nd, Pr, Sm"
        assert trial.calibration_arrays("strip")["sensitivity"].shape == (3, 24)
        assert trial.calibration_arrays()["sensitivity"].shape == (2, 40)
        assert trial.read("analysis:strip")["fit_coefficients"].shape == (5, 4)
        # sensors: channels with their units, a state per channel
        feed = trial.sensor("feed-ph")
        assert [(c.name, c.units, c.long_name) for c in feed.channels] == [
            ("pH", "1", "pH of the feed"),
            ("conductivity", "mS/cm", "conductivity of the feed"),
        ]
        assert [(c.name, c.units) for c in trial.sensor("strip_flow").channels] == [("flow", "L/h"), ("mass", "kg")]
        assert list(trial.read("sensor:feed-ph")["pH_state"]) == [0, 1, 2, 0, 0]
        assert trial.dataset("sensor:strip_flow", "mass").attrs["units"] == "kg"
        # the other table methods take the same keys
        trace = trial.decimated("furnace:zone-3", "temperature", max_points=2)
        assert trace.rows == 5 and trace.maximum.max() == 304.0
        rows, mark = trial.read_new("analysis:strip", 3, columns=("purity",))
        assert mark == 5 and list(rows["purity"]) == pytest.approx([0.86, 0.88])
        assert trial.has_column("sensor:feed-ph", "conductivity_state")
        summary = trial.summary()
        assert summary["instruments"] == ", ".join(CASCADE_ORDER)
        assert summary["streams"] == "raffinate, strip"
        assert summary["target:strip"] == "Nd" and summary["final_purity:strip"] == pytest.approx(0.88)
        assert trial.fit_summary("strip")["model_mismatch_fraction"] == 0.0
        assert [str(m) for m in trial.events()["source"]] == ["runner", "feed-ph"]


def test_remdaq_show_and_the_catalog_read_a_multi_instrument_file(cascade, tmp_path):
    from click.testing import CliRunner

    from daq.catalog import Catalog
    from daq.cli import cli

    result = CliRunner().invoke(cli, ["show", str(cascade)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert f"instruments       {', '.join(CASCADE_ORDER)}" in lines and "streams           raffinate, strip" in lines
    assert "target            Pr" in lines and "final_purity      0.68" in lines
    (tmp_path / "trials").mkdir()
    shutil.copyfile(cascade, tmp_path / "trials" / cascade.name)
    (entry,) = Catalog(tmp_path).rebuild()
    assert (entry.target, entry.status) == ("Pr", "success") and entry.final_purity == pytest.approx(0.68)


def test_default_keys_and_properties_mean_the_primary_instruments_and_the_first_stream(cascade):
    with open_trial(cascade) as trial:
        for bare, named in (
            ("furnace", "furnace:zone-1"),
            ("spectrometer", "spectrometer:raffinate"),
            ("dark", "dark:raffinate"),
            ("reference", "reference:raffinate"),
            ("analysis", "analysis:raffinate"),
            ("sensor", "sensor:feed-ph"),
        ):
            assert trial.table_spec(bare) == trial.table_spec(named)
            assert_rows_equal(trial.read(bare), cascade_rows()[named if bare == "sensor" else bare])
        assert trial.primary("temperature_controller") == "zone-1"
        assert trial.primary("spectrometer") == "raffinate" and trial.primary("sensor") == "feed-ph"
        np.testing.assert_array_equal(trial.wavelength_nm, trial.spectrometer("raffinate").wavelength_nm)
        assert trial.spectrometer().name == "raffinate" and trial.sensor().name == "feed-ph"
        assert trial.full_scale_counts == 65535.0
        assert trial.analytes == ("Nd", "Pr") == trial.stream().analytes
        assert trial.target_element == "Pr" == trial.summary()["target"]
        assert (
            trial.analysis_attrs["stream"] == "raffinate" and trial.analysis_attrs["calibration_id"] == "cal-raffinate"
        )
        assert trial.fit_coefficient_names == ("P0", "P1")
        assert trial.summary()["final_purity"] == pytest.approx(0.68)
        assert trial.summary()["furnace_rows"] == trial.rows("furnace:zone-1") == 5


def test_the_writer_counts_rows_by_today_s_names_for_the_primary_instruments(tmp_path):
    writer = TrialWriter(tmp_path / "c.h5", cascade_metadata())
    assert set(writer.rows_written) == set(cascade_rows()) | {"events"}
    assert (
        writer.canonical_key("furnace:zone-1") == "furnace" and writer.canonical_key("analysis:raffinate") == "analysis"
    )
    assert writer.canonical_key("sensor") == "sensor:feed-ph"
    writer.append("furnace:zone-1", **{k: v[0] for k, v in cascade_rows()["furnace"].items()})
    writer.append("sensor", **cascade_rows()["sensor:feed-ph"])
    writer.close("success")
    assert writer.rows_written["furnace"] == 1 and writer.rows_written["sensor:feed-ph"] == 5
    older = TrialWriter(tmp_path / "old.h5", metadata("old"))
    assert set(older.rows_written) == {t.name for t in TABLES}  # a station of the older form: today's keys
    older.close("success")


def test_the_file_has_one_group_per_instrument_in_the_station_s_order(cascade):
    with h5py.File(cascade, "r") as handle:
        assert handle["entry"].attrs["file_format"] == FILE_FORMAT == "rem-daq trial 2.0"
        instrument = handle["entry/instrument"]
        assert instrument.attrs["names"] == ",".join(CASCADE_ORDER)
        nx_class = {
            "temperature_controller": "NXenvironment",
            "spectrometer": "NXdetector",
            "sensor": "NXsensor",
        }
        for name in CASCADE_ORDER:
            group = instrument[name.replace("-", "_")]  # a NeXus name has no "-": the name is in @name
            assert group.attrs["name"] == name and group.attrs["kind"] == KINDS[name]
            assert group.attrs["NX_class"] == nx_class[KINDS[name]]
        assert set(instrument) == {name.replace("-", "_") for name in CASCADE_ORDER}
        assert set(instrument["zone_2"]) == {c.name for c in TABLES[0].columns}  # exactly today's furnace columns
        assert set(instrument["strip"]) == {c.name for c in TABLES[1].columns} | {"wavelength", "dark", "reference"}
        assert instrument["strip"].attrs["full_scale_counts"] == 16383.0
        assert instrument["feed_ph"].attrs["channels"] == "pH,conductivity"
        assert set(instrument["feed_ph"]) == {"time", "pH", "pH_state", "conductivity", "conductivity_state", "flag"}
        assert instrument["feed_ph/pH_state"].dtype == np.uint8 and instrument["feed_ph/pH"].dtype == np.float64
        assert handle["entry/analysis"].attrs["stream"] == "raffinate"
        assert handle["entry/analysis_strip"].attrs["stream"] == "strip"
        assert handle["entry/analysis_strip"].attrs["target_element"] == "Nd"
        assert handle["entry/analysis_strip/analytes"][()].tolist() == [b"Nd", b"Pr", b"Sm"]
        assert handle["entry/purity/purity"] == handle["entry/analysis/purity"]  # the first stream's
        assert "analysis_raffinate" not in handle["entry"]


def test_every_dataset_of_a_multi_instrument_file_has_units(cascade):
    datasets = []

    def visit(name, node):
        if isinstance(node, h5py.Dataset):
            datasets.append(name)
            assert "units" in node.attrs, f"{name} has no units"

    with h5py.File(cascade, "r") as handle:
        handle.visititems(visit)
    assert len(datasets) > 80 and "entry/instrument/strip_flow/flow" in datasets


def test_rows_of_every_instrument_become_visible_to_a_swmr_reader_before_close(tmp_path):
    path = tmp_path / "live.h5"
    writer = TrialWriter(path, cascade_metadata(), flush_interval_s=0.05)
    rows = cascade_rows()
    with open_trial(path) as reader:
        assert reader.state == "running" and reader.rows("sensor:strip_flow") == 0
        for key in ("furnace:zone-3", "sensor:strip_flow", "spectrometer:strip", "analysis:strip"):
            writer.append(key, **rows[key])
        deadline = time.monotonic() + 10.0
        while min(reader.rows(k) for k in ("furnace:zone-3", "sensor:strip_flow", "analysis:strip")) < 5:
            assert time.monotonic() < deadline, "rows of the further instruments never became visible"
            reader.refresh()
        assert list(reader.read("sensor:strip_flow")["flow"]) == pytest.approx(list(rows["sensor:strip_flow"]["flow"]))
        writer.close("success")


def test_optional_columns_left_out_of_a_further_stream_are_stored_nan_of_its_shape(tmp_path):
    path = tmp_path / "c.h5"
    writer = TrialWriter(path, cascade_metadata())
    row = {k: v for k, v in cascade_rows(2)["analysis:strip"].items() if k not in ("lack_of_fit", "fit_coefficients")}
    writer.append("analysis:strip", **row)
    writer.close("success")
    with open_trial(path) as trial:
        rows = trial.read("analysis:strip")
        assert rows["fit_coefficients"].shape == (2, 4) and np.all(np.isnan(rows["fit_coefficients"]))
        assert np.all(np.isnan(rows["lack_of_fit"])) and rows["concentration"].shape == (2, 3)


def test_the_first_stream_may_analyse_another_spectrometer_than_the_primary_one(tmp_path):
    path = tmp_path / "feed-first.h5"
    meta = metadata("feed-first", pixels=32)
    meta.spectrometer_name = "feed"  # primary spectrometer, not analysed
    meta.spectrometers = (SpectrometerRecord("raffinate", np.linspace(400.0, 800.0, 32)),)
    meta.stream_spectrometer = "raffinate"
    writer = TrialWriter(path, meta)
    flags = np.array([16, 0, 16, 0], dtype=np.uint8)
    rows = cascade_rows(4)["spectrometer"]
    writer.append("spectrometer:raffinate", **{**rows, "counts": np.ones((4, 32)), "flag": flags})
    writer.close("success")
    with open_trial(path) as trial:
        assert trial.streams() == ("raffinate",)
        assert trial.stream().spectrometer == "raffinate" and trial.stream("raffinate").key == "analysis"
        assert trial.rows("spectrometer") == 0  # the primary spectrometer's
        assert trial.summary()["spectra"] == 4  # the first stream's spectrometer's
        assert trial.fit_summary()["model_mismatch_fraction"] == 0.5
    with h5py.File(path, "r") as handle:
        assert handle["entry/analysis"].attrs["stream"] == "raffinate"


# -- a station of the older form: exactly today's paths --------------------------------------------------------


def _paths_and_attributes(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}

    def visit(name, node) -> None:  # visititems stops at the first visit that returns something
        found[name] = set(node.attrs)

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
        found["/"] = set(handle.attrs)
    return found


def test_a_2_0_file_of_an_older_form_station_has_the_paths_of_a_1_2_file(tmp_path):
    """The fixture's own script, run with today's writer: the same groups, datasets and values at the same paths;
    2.0 adds four attributes and says 2.0."""
    new = tmp_path / "new.h5"
    _fixture_script().main(new)
    old, now = _paths_and_attributes(FIXTURE), _paths_and_attributes(new)
    assert set(now) == set(old)  # every group and dataset at today's path, nothing more
    added = {name: now[name] - old[name] for name in now if now[name] != old[name]}
    assert added == {
        "entry/instrument": {"names"},
        "entry/instrument/furnace": {"kind", "name"},
        "entry/instrument/spectrometer": {"kind", "name"},
        "entry/analysis": {"stream"},
    }
    with h5py.File(new, "r") as handle, h5py.File(FIXTURE, "r") as fixture:
        assert handle["entry/instrument"].attrs["names"] == "furnace,spectrometer"
        assert handle["entry/analysis"].attrs["stream"] == "spectrometer"
        assert handle["entry"].attrs["file_format"] == "rem-daq trial 2.0"
        for name, node in _datasets(fixture).items():
            if name not in ("entry/end_time", "entry/heartbeat_time"):
                assert handle[name].dtype == node.dtype and handle[name].shape == node.shape, name
                np.testing.assert_array_equal(handle[name][()], node[()], err_msg=name)
                assert dict(handle[name].attrs) == dict(node.attrs), name
    with open_trial(new) as trial, open_trial(FIXTURE) as fixture:
        assert trial.instruments() == fixture.instruments()
        assert trial.streams() == fixture.streams() == ("spectrometer",)
        assert trial.tables() == fixture.tables() == tuple(t.name for t in TABLES)
        ignore = ("file", "end_time")
        assert {k: v for k, v in trial.summary().items() if k not in ignore} == {
            k: v for k, v in fixture.summary().items() if k not in ignore
        }  # nothing new for `remdaq show` or the catalog to say


def _datasets(handle: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def visit(name, node) -> None:
        if isinstance(node, h5py.Dataset):
            found[name] = node

    handle.visititems(visit)
    return found


# -- the version-1.2 fixture, written by the version-1.2 writer ---------------------------------------------------


def test_the_version_1_2_fixture_reads_through_every_public_method_as_before():
    script = _fixture_script()
    written = script.fixture_rows()
    with open_trial(FIXTURE) as trial:
        assert trial.format_version == (1, 2)
        assert trial.state == trial.exit_status == "success" and trial.end_time and trial.heartbeat_time
        assert not trial.integrity.needs_recovery
        meta = trial.metadata
        assert meta["trial_id"] == script.TRIAL_ID and meta["start_time"] == script.START_TIME
        assert meta["file_format"] == "rem-daq trial 1.2" and meta["furnace_ident"] == script.EXTRA["furnace_ident"]
        assert meta["simulated"] and meta["software_version"] == "0.0-fixture"
        # the 1.x layout seen as instruments and streams
        assert trial.instruments() == (("furnace", "temperature_controller"), ("spectrometer", "spectrometer"))
        assert trial.streams() == ("spectrometer",)
        assert trial.tables() == ("furnace", "spectrometer", "dark", "reference", "analysis", "events")
        for name, columns in written.items():
            assert trial.rows(name) == len(columns["time"])
            assert_rows_equal(trial.read(name), columns)
            assert_rows_equal(trial.read(f"{name}:{'furnace' if name == 'furnace' else 'spectrometer'}"), columns)
            for column in columns:
                assert trial.has_column(name, column)
                assert trial.dataset(name, column).shape[0] == len(columns["time"])
        rows, mark = trial.read_new("furnace", 4, columns=("temperature",))
        assert mark == 6 and list(rows["temperature"]) == [33.0, 35.0]
        trace = trial.decimated("analysis", "concentration", max_points=2, component=1)
        assert trace.rows == 4 and trace.maximum.max() == pytest.approx(2.0 - 0.25 * 0.5)
        events = trial.events()
        assert [tuple(events[k][i] for k in ("time", "level", "source", "message")) for i in range(2)] == [
            tuple(e) for e in script.EVENTS
        ]
        np.testing.assert_array_equal(trial.wavelength_nm, script.wavelength())
        assert trial.full_scale_counts == 60000.0
        assert trial.analytes == script.ANALYTES and trial.target_element == "Nd"
        attrs = trial.analysis_attrs
        assert attrs["target"] == attrs["target_element"] == "Nd" and attrs["calibration_id"] == "cal-fixture"
        assert attrs["calibration_file"] == "/calibrations/cal-fixture.h5" and attrs["covered_elements"] == "Nd, Pr"
        assert trial.fit_coefficient_names == script.FIT_COEFFICIENT_NAMES
        calibration = trial.calibration_arrays()
        np.testing.assert_array_equal(calibration["sensitivity"], script.sensitivity())
        np.testing.assert_array_equal(calibration["wavelength"], script.wavelength())
        summary = {k: v for k, v in trial.summary().items() if k not in ("file", "end_time")}
        assert summary == {  # what the version-1.2 reader said of this file
            "trial_id": script.TRIAL_ID,
            "title": "format 1.2 fixture",
            "sample": "NdPr lot F",
            "operator": "fixture",
            "start_time": script.START_TIME,
            "state": "success",
            "target": "Nd",
            "covered_elements": "Nd, Pr",
            "furnace_rows": 6,
            "spectra": 4,
            "events": 2,
            "final_purity": 0.9,
            "needs_recovery": False,
            "final_purity_note": "",
            "final_lack_of_fit": 0.9,
            "model_mismatch_fraction": 0.25,
            "fit_recorded": True,
        }
        # the 2.0 accessors, on a 1.x file
        spectrometer = trial.spectrometer()
        assert spectrometer.name == "spectrometer" and spectrometer.pixels == script.PIXELS
        assert spectrometer.attrs["driver"] == "scpi" and spectrometer.full_scale_counts == 60000.0
        stream = trial.stream("spectrometer")
        assert stream.key == "analysis" and stream.target_element == "Nd"
        assert stream.fit_coefficient_units == script.FIT_COEFFICIENT_UNITS
        assert trial.instrument("furnace").kind == "temperature_controller"
        assert trial.primary("spectrometer") == "spectrometer"


def test_the_version_1_2_fixture_shows_catalogs_and_reanalyses_as_before(tmp_path):
    from click.testing import CliRunner

    from daq.catalog import Catalog
    from daq.cli import cli

    trials = tmp_path / "trials"
    trials.mkdir()
    copy = trials / FIXTURE.name
    shutil.copyfile(FIXTURE, copy)
    result = CliRunner().invoke(cli, ["show", str(copy)])
    assert result.exit_code == 0, result.output
    lines = [line.split(None, 1) for line in result.output.splitlines()]
    shown = {parts[0]: parts[1] if len(parts) > 1 else "" for parts in lines if parts}
    assert shown["target"] == "Nd" and shown["spectra"] == "4" and shown["final_purity"] == "0.9"
    assert "instruments" not in shown
    assert "über 70 %" in result.output
    (entry,) = Catalog(tmp_path).rebuild()
    assert (entry.trial_id, entry.status, entry.target) == (_fixture_script().TRIAL_ID, "success", "Nd")
    assert entry.final_purity == pytest.approx(0.9)


# -- clear errors ----------------------------------------------------------------------------------------------


def test_unknown_table_keys_are_clear_errors(cascade, tmp_path):
    with open_trial(cascade) as trial:
        for key in ("oven", "furnace:zone-9", "events:zone-1", "analysis:zone-1", "sensor:raffinate"):
            with pytest.raises(KeyError, match=rf"no table '{key}' in this trial; tables: furnace, furnace:zone-2"):
                trial.rows(key)
        with pytest.raises(KeyError, match="no table 'dark:zone-2'"):
            trial.read("dark:zone-2")
        with pytest.raises(KeyError, match="table 'sensor' has no column 'pressure'"):
            trial.has_column("sensor:feed-ph", "pressure")
        with pytest.raises(KeyError, match=r"no analysed stream 'feed-ph'.*streams: raffinate, strip"):
            trial.stream("feed-ph")
        with pytest.raises(KeyError, match="'zone-1' is a temperature_controller, not a spectrometer"):
            trial.spectrometer("zone-1")
        with pytest.raises(KeyError, match="no instrument 'zone-9'"):
            trial.instrument("zone-9")
    with open_trial(FIXTURE) as trial:
        with pytest.raises(KeyError, match="no sensor in this trial"):
            trial.sensor()
        with pytest.raises(KeyError, match="no table 'furnace:zone-2'"):
            trial.read("furnace:zone-2")
    writer = TrialWriter(tmp_path / "w.h5", cascade_metadata())
    with pytest.raises(KeyError, match=r"no table 'sensor:ph' in this trial; tables: .*sensor:feed-ph"):
        writer.append("sensor:ph", time=0.0)
    with pytest.raises(ValueError, match=r"table sensor:feed-ph: missing columns \['conductivity'"):
        writer.append("sensor:feed-ph", time=0.0, pH=7.0, pH_state=0, flag=0)
    writer.close("success")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"controllers": (ControllerRecord("zone-1"),)}, "two instruments named 'zone-1'"),
        ({"controllers": (ControllerRecord("zone_1"),)}, "would share the group 'zone_1'"),
        ({"controllers": (ControllerRecord("Zone 2"),)}, "'Zone 2' is not an instrument name"),
        ({"instrument_order": ("zone-1", "strip", "raffinate")}, "is not the trial's instruments"),
        (
            {"instrument_order": ("zone-2", "zone-1", "zone-3", "raffinate", "feed-ph", "strip", "strip_flow")},
            "the first temperature_controller in instrument_order is 'zone-2', not the primary one 'zone-1'",
        ),
        ({"streams": (StreamRecord("zone-2", "Nd", ("Nd",)),)}, "stream of 'zone-2': no such spectrometer"),
        ({"streams": (StreamRecord("raffinate", "Nd", ("Nd",)),)}, "two streams of spectrometer 'raffinate'"),
        (
            {
                "streams": (
                    StreamRecord(
                        "strip", "Nd", ("Nd",), fit_coefficient_names=("a", "b"), fit_coefficient_units=("x",)
                    ),
                )
            },
            "1 fit coefficient units for 2 names",
        ),
        ({"sensors": (SensorRecord("ph", (("time", "s", ""),)),)}, "a channel may not be named 'time'"),
        ({"sensors": (SensorRecord("ph", (("name", "", ""),)),)}, "a channel may not be named 'name'"),
        ({"sensors": (SensorRecord("ph", (("pH-1", "1", ""),)),)}, "channel 'pH-1' is not a channel name"),
        ({"sensors": (SensorRecord("ph", (("a", "1", ""), ("a", "1", ""))),)}, "two columns named 'a'"),
        ({"sensors": (SensorRecord("ph", ()),)}, "sensor 'ph': no channels"),
        ({"furnace_attributes": {"kind": "oven"}}, "attributes kind are the layout's"),
    ],
)
def test_metadata_that_cannot_be_laid_out_is_refused_before_anything_is_created(tmp_path, change, message):
    meta = cascade_metadata()
    meta.instrument_order = ()  # by kind, unless the change says
    for key, value in change.items():
        setattr(meta, key, value)
    path = tmp_path / "refused.h5"
    with pytest.raises(ValueError, match=message):
        TrialWriter(path, meta)
    assert list(tmp_path.iterdir()) == [] and not writer_lock_path(path).exists()


def test_a_file_of_a_later_major_version_is_refused_not_misread(cascade, tmp_path):
    path = tmp_path / "later.h5"
    shutil.copyfile(cascade, path)
    with h5py.File(path, "r+") as handle:
        handle["entry"].attrs["file_format"] = "rem-daq trial 3.0"
    with pytest.raises(TrialFileError, match=r"format 3\.0 is newer than this rem-daq reads \(1\.x, 2\.x\)"):
        open_trial(path)


def test_a_2_0_file_without_its_instrument_names_is_damaged(cascade, tmp_path):
    path = tmp_path / "no-names.h5"
    shutil.copyfile(cascade, path)
    with h5py.File(path, "r+") as handle:
        del handle["entry/instrument"].attrs["names"]
    with pytest.raises(TrialFileError, match="damaged trial file: /entry/instrument has no @names"):
        open_trial(path)
