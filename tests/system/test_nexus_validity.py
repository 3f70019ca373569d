"""Trial files and reanalysis results are valid NeXus, as NeXus's own tools judge them.

- punx (the NeXus validator, with the NXDL definitions its wheel ships: no
  download) reports 0 errors and 0 warnings;
- nexusformat (the library behind NeXpy) loads the file and prints its tree, the
  /entry/purity links resolved to their originals.

For a live trial (being written by `remdaq run`, read as SWMR readers read it), the
same trial finished, a trial whose `remdaq run` was killed (after `remdaq recover`;
before it, as h5dump, non-SWMR tools refuse it), and the reanalysis result of the
finished trial, and a trial file of format 2.0 with several instruments of each kind
(which h5dump reads too). Each check runs in its own process: HDF5 cannot open a file twice in
one process under SWMR, and punx's changes to h5py stay out of this one.
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import pytest
from _bench import QUICK_RECIPE, ROOT, SIM_STATION
from _trial_factory import CASCADE_ORDER, write_calibration, write_cascade_trial, write_trial

from daq import open_trial
from daq.layout import FILE_FORMAT, PURITY_LINKS

pytestmark = pytest.mark.system

_CHECK = r"""
import json, sys, types
path, swmr = sys.argv[1], sys.argv[2] == "swmr"
import h5py
import punx.validate
import nexusformat.nexus.tree
if swmr:  # both open with h5py.File(name, "r") (nexusformat keeps no swmr=True past its first open), and a file
    # being written opens only as a SWMR reader: their h5py, for this file, opens it as one
    class _H5pyForSWMR(types.ModuleType):
        def __getattr__(self, name):
            return getattr(h5py, name)
    swmr_h5py = _H5pyForSWMR("h5py")
    swmr_h5py.File = lambda name, mode="r", **kwargs: h5py.File(name, mode, swmr=True, **kwargs)
    punx.validate.h5py = nexusformat.nexus.tree.h5 = swmr_h5py
validator = punx.validate.Data_File_Validator()  # the default definitions, shipped in punx's wheel
validator.validate(path)
counts = {str(status): count for status, count in validator.finding_summary().items()}
bad = [f"{f.h5_address} {f.status} {f.test_name}: {f.comment}" for f in validator.validations
       if str(f.status) in ("ERROR", "WARN")]
definitions = validator.manager.nxdl_file_set.ref
validator.close()
from nexusformat.nexus import NXlink, nxload
root = nxload(path, "r")
tree = root.tree
links = {}
for name in ("purity", "time"):
    item = root["entry/purity"][name]
    links[name] = item.nxtarget if isinstance(item, NXlink) else None
signal = root["entry/purity"].nxsignal
result = {"counts": counts, "bad": bad, "definitions": definitions, "tree_lines": len(tree.splitlines()),
          "links": links, "signal": signal.nxname, "signal_rows": int(signal.shape[0]),
          "classes": {group.nxpath: group.nxclass for group in root.walk() if hasattr(group, "entries")}}
print("RESULT " + json.dumps(result))
"""


def _require(module: str) -> None:
    """A NeXus tool the tests need: installed by `make test` (pyproject's dev extra); required in CI."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{module} is missing: `make test` installs it (pyproject.toml [dev])")
        pytest.skip(f"{module} is missing (pip install -e '.[dev]')")


def nexus_check(path: Path, *, swmr: bool = False) -> dict:
    """punx's findings and nexusformat's reading of ``path``, from a process of their own."""
    _require("punx")
    _require("nexusformat")
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, str(path), "swmr" if swmr else "plain"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"{path.name}: {done.stderr[-3000:]}"
    line = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def assert_valid_nexus(result: dict, links: dict[str, str]) -> None:
    assert result["bad"] == [], "\n".join(result["bad"])
    assert result["counts"]["ERROR"] == 0 and result["counts"]["WARN"] == 0
    assert result["counts"]["OK"] > 100  # punx did look at the file
    assert result["tree_lines"] > 50
    assert result["links"] == links  # /entry/purity's datasets are links to their originals
    assert result["signal"] == "purity"


def remdaq(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "daq", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_trial_file(data_dir: Path, process: subprocess.Popen, timeout_s: float = 60.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        files = list((data_dir / "trials").glob("*.h5")) if (data_dir / "trials").is_dir() else []
        if files:
            return files[0]
        assert process.poll() is None, f"remdaq run exited early: {process.communicate()}"
        threading.Event().wait(0.05)  # poll interval of a condition with a deadline
    raise AssertionError("no trial file appeared")


def wait_for_rows(path: Path, table: str, rows: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with open_trial(path) as trial:
                seen = trial.rows(table)
        except OSError:
            seen = 0  # still being laid out
        if seen >= rows:
            return seen
        assert time.monotonic() < deadline, f"{path}: {table} has {seen} of {rows} rows"
        threading.Event().wait(0.05)


@pytest.fixture(scope="module")
def runner_trial(sim_calibration, tmp_path_factory):
    """A `remdaq run` of the quick recipe on the simulated bench: checked while it runs, then finished.

    Returns (the finished file, the check made while the runner was writing it).
    """
    _require("punx")
    _require("nexusformat")
    data_dir = tmp_path_factory.mktemp("data")
    process = remdaq(
        "run", QUICK_RECIPE, "--station", SIM_STATION, "--data-dir", data_dir, "--calibration", sim_calibration
    )
    try:
        path = wait_for_trial_file(data_dir, process)
        wait_for_rows(path, "analysis", 5)
        with open_trial(path) as trial:
            assert trial.state == "running"
        live = nexus_check(path, swmr=True)
        with open_trial(path) as trial:
            assert trial.state == "running", "the trial ended before its live file was checked"
        stdout, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert Path(stdout.strip().splitlines()[-1]) == path
    return path, live


def test_a_live_trial_is_valid_nexus_to_swmr_readers(runner_trial):
    _, live = runner_trial
    assert_valid_nexus(live, PURITY_LINKS)
    assert live["signal_rows"] >= 5
    assert live["classes"]["/entry/analysis/calibration"] == "NXdata"


def test_a_finished_trial_is_valid_nexus_and_punx_validate_says_so(runner_trial):
    path, _ = runner_trial
    with h5py.File(path, "r") as handle:
        assert handle["entry"].attrs["file_format"] == FILE_FORMAT == "rem-daq trial 2.0"
        assert handle["entry/analysis"].attrs["target_element"] == "Nd"
        assert "target" not in handle["entry/analysis"].attrs
    result = nexus_check(path)
    assert_valid_nexus(result, PURITY_LINKS)
    with open_trial(path) as trial:
        assert result["signal_rows"] == trial.rows("analysis") > 50
    # the command a person runs, with its own summary table
    punx = Path(sys.executable).with_name("punx")
    assert punx.is_file(), "punx's console script is missing beside python"
    report = subprocess.run([str(punx), "validate", str(path)], capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-2000:]
    counts = dict(re.findall(r"^(ERROR|WARN)\s+(\d+)\s", report.stdout, re.MULTILINE))
    assert counts == {"ERROR": "0", "WARN": "0"}, report.stdout[-3000:]


def test_a_killed_trial_is_valid_nexus_and_after_remdaq_recover_to_every_reader(sim_calibration, tmp_path):
    process = remdaq(
        "run",
        QUICK_RECIPE,
        "--station",
        SIM_STATION,
        "--data-dir",
        tmp_path,
        "--calibration",
        sim_calibration,
        "--flush-interval",
        0.2,
    )
    try:
        path = wait_for_trial_file(tmp_path, process)
        wait_for_rows(path, "analysis", 5)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    with open_trial(path) as trial:
        assert trial.state == "interrupted" and trial.integrity.needs_recovery
    # what its writer flushed is valid NeXus to a SWMR reader; other readers refuse the file, as h5dump does
    assert_valid_nexus(nexus_check(path, swmr=True), PURITY_LINKS)
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")
    recovered = subprocess.run(
        [sys.executable, "-m", "daq", "recover", str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert recovered.returncode == 0 and "recovered" in recovered.stdout, recovered.stderr
    result = nexus_check(path)
    assert_valid_nexus(result, PURITY_LINKS)
    with open_trial(path) as trial:
        assert trial.state == "interrupted" and result["signal_rows"] == trial.rows("analysis") >= 5


def test_a_reanalysis_result_is_valid_nexus(runner_trial, sim_calibration, tmp_path):
    from daq.reanalysis import read_result, reanalyze

    path, _ = runner_trial
    report = reanalyze([path], sim_calibration, tmp_path, workers=0, progress=False)
    outcome = report.outcomes[0]
    assert outcome.status == "reanalysed", outcome.message
    with h5py.File(outcome.result_file, "r") as handle:
        process = handle["entry/reanalysis"]
        assert process.attrs["target_element"] == "Nd" and "target" not in process.attrs
        assert handle["entry"].attrs["file_format"] == "rem-daq reanalysis 1.1"
    result = nexus_check(outcome.result_file)
    assert_valid_nexus(result, {"purity": "/entry/reanalysis/purity", "time": "/entry/reanalysis/time"})
    assert result["classes"]["/entry/reanalysis/calibration"] == "NXdata"
    read = read_result(outcome.result_file)
    assert read.provenance["target_element"] == read.provenance["target"] == "Nd"
    assert result["signal_rows"] == len(read.purity) > 50


def test_a_reanalysis_result_of_format_1_still_reads(tmp_path):
    """A result written before 1.1: the target in @target, the calibration an NXcollection, links without @target."""
    from daq.reanalysis import read_result, reanalyze

    trial = write_trial(tmp_path / "T.h5", duration_s=200.0)
    calibration = write_calibration(tmp_path / "cal.h5")
    report = reanalyze([trial], calibration, tmp_path / "out", workers=0, progress=False)
    path = report.outcomes[0].result_file
    new = read_result(path)
    with h5py.File(path, "r+") as handle:
        handle["entry"].attrs["file_format"] = "rem-daq reanalysis 1"
        process = handle["entry/reanalysis"]
        process.attrs["target"] = process.attrs["target_element"]
        del process.attrs["target_element"]
        process["calibration"].attrs["NX_class"] = "NXcollection"
        for name in ("purity", "time"):
            del process[name].attrs["target"]
    old = read_result(path)
    assert old.provenance["target"] == old.provenance["target_element"] == "Nd"
    assert old.final_purity == new.final_purity and len(old.purity) == len(new.purity) == 20
    again = reanalyze([trial], calibration, tmp_path / "out", workers=0, progress=False)
    assert again.outcomes[0].status == "up-to-date"  # an old result is still recognised as the same result


def test_a_multi_instrument_trial_is_valid_nexus_and_h5dump_reads_it(tmp_path):
    """Format 2.0: three furnace zones (NXenvironment), two spectrometers (NXdetector), two sensors (NXsensor)
    and two analysed streams (NXprocess), one group each."""
    path = write_cascade_trial(tmp_path / "cascade.h5")
    result = nexus_check(path)
    assert_valid_nexus(result, PURITY_LINKS)
    groups = {name: name.replace("-", "_") for name in CASCADE_ORDER}  # NeXus names have no "-"
    classes = result["classes"]
    assert {classes[f"/entry/instrument/{groups[name]}"] for name in ("zone-1", "zone-2", "zone-3")} == {
        "NXenvironment"
    }
    assert classes["/entry/instrument/raffinate"] == classes["/entry/instrument/strip"] == "NXdetector"
    assert classes["/entry/instrument/feed_ph"] == classes["/entry/instrument/strip_flow"] == "NXsensor"
    assert classes["/entry/analysis"] == classes["/entry/analysis_strip"] == "NXprocess"
    assert classes["/entry/analysis_strip/calibration"] == classes["/entry/instrument/strip/dark"] == "NXdata"
    h5dump = shutil.which("h5dump")
    if h5dump is None:
        if os.environ.get("CI") == "true":
            pytest.fail("h5dump is missing: `.ci/run` installs hdf5-tools")
        pytest.skip("h5dump is missing (apt-get install hdf5-tools)")
    header = subprocess.run([h5dump, "-H", str(path)], capture_output=True, text=True, timeout=120, check=True).stdout
    for group in (*groups.values(), "analysis_strip"):
        assert f'GROUP "{group}"' in header
    values = subprocess.run(
        [h5dump, "-d", "/entry/instrument/feed_ph/pH", "-a", "/entry/instrument/feed_ph/pH/units", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "1.5, 1.51, 1.52, 1.53, 1.54" in values and '"1"' in values
