"""A trial whose writer was killed (kill -9) opens in h5dump after `remdaq recover`, its raw data unchanged."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import h5py
import pytest
from _bench import ROOT, run_remdaq
from _damaged_files import table_digests
from _trial_factory import LiveTrial, trials_folder, wait_for_rows

from daq import Catalog, open_trial
from daq.reader import check_file
from daq.recovery import RecoveryError, recover_trial

pytestmark = pytest.mark.system

_WRITER = """
import sys, threading
sys.path.insert(0, {tests!r})
from pathlib import Path
from _trial_factory import LiveTrial
live = LiveTrial(Path({path!r}), tick_s=0.02)
live.start()
threading.Event().wait()  # until killed
"""


def h5dump() -> str:
    """Debian's h5dump, an HDF5 reader independent of h5py; required in CI."""
    found = shutil.which("h5dump")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("h5dump is missing: `.ci/run` installs hdf5-tools")
    pytest.skip("h5dump is missing (apt-get install hdf5-tools)")


@pytest.fixture
def killed_trial(tmp_path):
    """A trial file whose writer process was killed with SIGKILL after writing rows; (data folder, path)."""
    data = tmp_path / "data"
    path = trials_folder(data) / "killed.h5"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER.format(tests=str(ROOT / "tests"), path=str(path))])
    try:
        deadline = time.monotonic() + 60
        while not path.exists():  # the child imports numpy, h5py... before it creates the file
            assert writer.poll() is None, "the writer process died before creating its file"
            assert time.monotonic() < deadline, "the writer process did not create its file"
            threading.Event().wait(0.05)  # poll interval of a condition with a deadline
        wait_for_rows(path, "analysis", 60, timeout_s=60)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    return data, path


def test_a_killed_trial_is_refused_by_h5dump_then_recovered_with_its_raw_data_unchanged(killed_trial):
    data, path = killed_trial
    dump = h5dump()
    assert subprocess.run([dump, "-H", str(path)], capture_output=True, timeout=60).returncode != 0
    assert check_file(path).needs_recovery
    with open_trial(path) as trial:
        assert trial.state == "interrupted"
        rows_before = trial.rows("analysis")
    before = table_digests(path)
    assert Catalog(data).rebuild()[0].needs_recovery
    assert "needs `remdaq recover`" in run_remdaq("ls", "--data-dir", str(data)).stdout

    result = run_remdaq("recover", str(path))
    assert result.returncode == 0, result.stderr
    assert "recovered" in result.stdout

    dumped = subprocess.run([dump, str(path)], capture_output=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr.decode(errors="replace")[-2000:]
    assert table_digests(path) == before
    with h5py.File(path, "r") as handle:  # h5py without SWMR, as any HDF5 tool opens it
        assert handle["entry/exit_status"][()] == b"interrupted"
        assert handle["entry/analysis/purity"].shape[0] == rows_before
        assert "writer had died" in handle["entry"].attrs["recovery"]
        assert handle["entry"].attrs["recovered_time"].endswith("+00:00")
    with open_trial(path) as trial:
        assert trial.state == "interrupted"
        assert not trial.integrity.needs_recovery
    entry = Catalog(data).entries()[0]  # the command updated the catalog of the file's data folder
    assert entry.status == "interrupted" and not entry.needs_recovery

    again = run_remdaq("recover", str(path))
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert table_digests(path) == before


def test_a_trial_being_written_is_not_recovered(tmp_path):
    path = trials_folder(tmp_path) / "live.h5"
    with LiveTrial(path) as live:
        wait_for_rows(live.path, "furnace", 5)
        with pytest.raises(RecoveryError, match="still writing"):
            recover_trial(path)
        assert check_file(path).writer_flags_set  # untouched
    with open_trial(path) as trial:
        assert trial.state == "success"


def test_recover_refuses_a_damaged_file_and_leaves_it_as_it_was(tmp_path):
    path = tmp_path / "not-a-trial.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    before = path.read_bytes()
    result = run_remdaq("recover", str(path))
    assert result.returncode == 1
    assert "not recovered" in result.stderr and "damaged" in result.stderr
    assert "Traceback" not in result.stderr
    assert path.read_bytes() == before
