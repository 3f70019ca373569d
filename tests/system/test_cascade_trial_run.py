"""A whole trial on the simulated cascade bench through `remdaq run`: every instrument, one group each.

`hardware/stations/sim-cascade.toml` (three furnace zones and the feed-pH transmitter on
one simulated bus, three spectrometers at the feed, raffinate and strip liquor of the
scenario's Pr/Nd cascade) runs `seeds/recipes/cascade.toml` on a faster clock: the real
simulators, drivers, runner and writer. The file is then read by h5dump (an independent
reader) and by h5py, and what it holds is compared with the scenario's truth.
"""

from __future__ import annotations

import shutil
import subprocess

import h5py
import numpy as np
import pytest
from _bench import CASCADE_RECIPE, CASCADE_STATION, STANDARDS, run_remdaq, sim_station

from daq import open_trial
from drivers.sim.scenario import load_scenario

pytestmark = pytest.mark.system

SPEED, POLL_S = 1200.0, 0.05
ZONE_TARGETS_C = {"zone-1": 815.0, "zone-2": 800.0, "zone-3": 815.0}  # 800 C with the end zones' +15 C


@pytest.fixture(scope="module")
def cascade_trial(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cascade")
    station = sim_station(folder, speed=SPEED, poll_interval_s=POLL_S, station=CASCADE_STATION)
    data = folder / "data"
    calibration = data / "calibrations/demo-sim-cascade.h5"  # where the recipe's streams look for it
    made = run_remdaq("calibrate", STANDARDS, "--station", station, "--out", calibration, timeout_s=300)
    assert made.returncode == 0, made.stderr[-3000:]
    done = run_remdaq("run", CASCADE_RECIPE, "--station", station, "--data-dir", data, timeout_s=300)
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    (path,) = sorted((data / "trials").glob("*.h5"))
    return path, done


def test_the_trial_succeeds_with_every_instrument_in_a_group_of_its_own(cascade_trial):
    path, done = cascade_trial
    assert "trial success: program complete" in done.stderr
    with open_trial(path) as trial:
        assert trial.exit_status == "success"
        names = [i.name for i in trial.instruments()]
        assert names == ["zone-1", "zone-2", "zone-3", "feed-ph", "feed", "raffinate", "strip"]
        assert trial.streams() == ("feed", "raffinate", "strip")
        groups = {name: trial.instrument(name).group for name in names}
        assert len(set(groups.values())) == len(names)
        for name in names:
            table = {"temperature_controller": "furnace", "spectrometer": "spectrometer", "sensor": "sensor"}
            assert trial.rows(f"{table[trial.instrument(name).kind]}:{name}") > 0, name


def test_h5dump_reads_the_whole_file_and_lists_one_group_per_instrument(cascade_trial):
    path, _ = cascade_trial
    h5dump = shutil.which("h5dump")
    assert h5dump, "h5dump (Debian hdf5-tools) is needed: the Makefile installs it"
    listing = subprocess.run([h5dump, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    groups = {line.split()[-1] for line in listing.stdout.splitlines() if line.strip().startswith("group")}
    for group in ("zone_1", "zone_2", "zone_3", "feed_ph", "feed", "raffinate", "strip"):
        assert f"/entry/instrument/{group}" in groups
    assert {"/entry/analysis", "/entry/analysis_raffinate", "/entry/analysis_strip"} <= groups
    whole = subprocess.run([h5dump, "-H", str(path)], capture_output=True, text=True, timeout=120)
    assert whole.returncode == 0 and "HDF5" in whole.stdout, whole.stderr


def test_every_dataset_carries_units(cascade_trial):
    path, _ = cascade_trial
    missing = []
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, node: (
                missing.append(name) if isinstance(node, h5py.Dataset) and "units" not in node.attrs else None
            )
        )
        assert handle["/entry/instrument/feed_ph/pH"].attrs["units"] in ("1", b"1")
        assert handle["/entry/instrument/zone_2/temperature"].attrs["units"] in ("degC", b"degC")
    assert missing == []


def test_each_zone_ran_the_program_with_its_offset_and_went_safe(cascade_trial):
    path, done = cascade_trial
    with open_trial(path) as trial:
        for zone, target_C in ZONE_TARGETS_C.items():
            setpoint = trial.read(f"furnace:{zone}")["setpoint"]
            assert np.nanmax(setpoint) == pytest.approx(target_C, abs=0.5), zone
    for message in (
        "furnace zone zone-1 in safe state",
        "furnace zone zone-2 in safe state",
        "furnace zone zone-3 in safe state",
    ):
        assert message in done.stderr


def test_the_sensor_and_the_streams_follow_the_scenarios_cascade(cascade_trial):
    path, _ = cascade_trial
    scenario = load_scenario("pr-nd-cascade")
    with open_trial(path) as trial:
        ph = trial.read("sensor:feed-ph")
        events = trial.events()
        # the scenario started with the process streams (the sensors' too, by the simulated bench's signal)
        started = [t for t, m in zip(events["time"], events["message"]) if "process stream started" in m]
        analyses = {name: trial.read(f"analysis:{name}") for name in trial.streams()}
        analytes = {name: trial.stream(name).analytes for name in trial.streams()}
    # the transmitter reads the scenario's feed pH (0.01 pH resolution, the simulator's noise below it); a row's
    # time is taken as its read starts, and the read ends before the next row's: the pH it read is the process
    # pH somewhere in between (the feed pH is ramped over a minute at each change)
    scenario_s = ph["time"] - started[0]
    truth = np.array([scenario.process_at("pH", t) for t in scenario_s])
    low, high = np.minimum(truth[:-1], truth[1:]) - 0.03, np.maximum(truth[:-1], truth[1:]) + 0.03
    assert np.all(ph["pH_state"] == 0)
    assert np.all((ph["pH"][:-1] >= low) & (ph["pH"][:-1] <= high))
    assert np.ptp(truth) == pytest.approx(0.10) and np.ptp(ph["pH"]) >= 0.08  # the trial saw the pH step
    # over the last hour the cascade has settled at pH 1.50: the strip is Nd-rich, the raffinate Pr-rich,
    # and the measured separation factor between them is the scenario's within the rows' own scatter
    late = analyses["strip"]["time"] > analyses["strip"]["time"][-1] - 3600.0
    ratio = {}
    for name in ("strip", "raffinate"):
        rows = analyses[name]
        nd, pr = analytes[name].index("Nd"), analytes[name].index("Pr")
        ratio[name] = rows["concentration"][late, nd] / rows["concentration"][late, pr]
    assert np.median(ratio["strip"]) > 1.0 > np.median(ratio["raffinate"])
    measured = np.median(ratio["strip"]) / np.median(ratio["raffinate"])
    expected = scenario.cascade_truth_at(float(analyses["strip"]["time"][-1] - started[0])).separation_factor(
        enriched="strip", depleted="raffinate"
    )
    spread = measured * np.hypot(*(np.std(ratio[n]) / np.median(ratio[n]) for n in ("strip", "raffinate")))
    assert abs(measured - expected) <= 3 * spread, (measured, expected, spread)
