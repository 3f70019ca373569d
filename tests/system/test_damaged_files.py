"""Damaged trial files in a folder of good ones: every reader reports them at once and goes on with the rest.

The bound on time is pytest-timeout's (a reader that hung on one file would fail
the test, not slow it); nothing here measures how fast a reader is.
"""

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from _damaged_files import damaged_copies, table_digests  # noqa: E402
from _trial_factory import metadata, trials_folder, write_calibration, write_trial  # noqa: E402

from daq import Catalog, TrialFileError, open_trial, reanalyze  # noqa: E402
from daq.cli import cli  # noqa: E402

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

GOOD = ("good-a", "good-b", "good-c")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A data folder: three good trials and damaged copies of others; the damaged ones' sources kept aside."""
    data = tmp_path_factory.mktemp("data")
    trials = trials_folder(data)
    sources = tmp_path_factory.mktemp("sources")
    for name in GOOD:
        write_trial(trials / f"{name}.h5", meta=metadata(name))
    damaged = damaged_copies(lambda name: write_trial(sources / f"{name}.h5", meta=metadata(name)), trials)
    return data, damaged


def test_each_damaged_file_is_refused_or_reads_exactly_as_its_source(folder):
    _data, damaged = folder
    refused = []
    for copy in damaged:
        try:
            digests = table_digests(copy.path)
        except TrialFileError as error:
            assert str(copy.path) in str(error)
            assert "damaged" in str(error) or "not an HDF5 file" in str(error), error
            refused.append(copy)
            continue
        assert not copy.must_be_refused, f"{copy.path.name} was read as if whole"
        if copy.kind == "metadata":  # undetected metadata damage must not change what is read
            assert digests == table_digests(copy.source), f"{copy.path.name} reads other values than its source"
    kinds = {copy.kind for copy in refused}
    assert {"truncated", "superblock", "metadata"} <= kinds


def test_a_truncated_file_says_how_short_it_is(folder):
    _data, damaged = folder
    truncated = next(copy for copy in damaged if copy.kind == "truncated")
    size, whole = truncated.path.stat().st_size, truncated.source.stat().st_size
    with pytest.raises(TrialFileError, match=f"{size} bytes long, short of the {whole} bytes"):
        open_trial(truncated.path)


def test_remdaq_show_reports_damage_as_a_message_and_shows_good_files(folder):
    data, damaged = folder
    runner = CliRunner()
    for copy in damaged:
        if not copy.must_be_refused:
            continue
        result = runner.invoke(cli, ["show", str(copy.path)])
        assert result.exit_code != 0
        assert isinstance(result.exception, TrialFileError)  # main() turns it into one line on stderr
    good = runner.invoke(cli, ["show", str(data / "trials" / "good-a.h5")])
    assert good.exit_code == 0, good.output
    assert "success" in good.output


def test_catalog_rebuild_lists_the_good_trials_and_the_damaged_as_unreadable(folder):
    data, damaged = folder
    entries = Catalog(data).rebuild()
    by_file = {Path(entry.file).stem: entry for entry in entries}
    for name in GOOD:
        assert by_file[name].status == "success"
        assert by_file[name].trial_id == name
    for copy in damaged:
        if copy.must_be_refused:
            assert by_file[copy.path.stem].status == "unreadable"
            assert "damaged" in by_file[copy.path.stem].title or "not an HDF5" in by_file[copy.path.stem].title
    listed = CliRunner().invoke(cli, ["ls", "--data-dir", str(data)])
    assert listed.exit_code == 0
    for name in GOOD:
        assert name in listed.output


def test_reanalysis_fails_the_damaged_files_and_reanalyses_the_good_ones(folder, tmp_path):
    data, damaged = folder
    calibration = write_calibration(tmp_path / "cal.h5")
    report = reanalyze([data / "trials"], calibration, tmp_path / "out", workers=0, progress=False)
    outcomes = {outcome.raw_file.stem: outcome for outcome in report.outcomes}
    for name in GOOD:
        assert outcomes[name].status == "reanalysed", outcomes[name].message
    for copy in damaged:
        outcome = outcomes[copy.path.stem]
        if copy.must_be_refused:
            assert outcome.status == "failed"
            assert "damaged" in outcome.message or "not an HDF5 file" in outcome.message
        assert outcome.result_file is None or outcome.status.startswith("reanalysed")
    assert not any(Path(o.result_file).stem.startswith("truncated") for o in report.outcomes if o.result_file)
