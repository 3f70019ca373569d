"""The trial runner on a station of named instruments, in-process on fakes: zones, streams, sensors.

As in test_trial_runner.py, a whole :class:`daq.runner.TrialRunner` runs against the fakes
of :mod:`_fake_bench` (three furnace zones, two spectrometers, a pH sensor), the real
writer and the real analysis; the closed file is read back with the shared reader. Each
zone's interlock and each sensor limit is provoked here; what happens is scripted in
polls, reads and spectra, never in time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _fake_bench import (
    BASE_INTEGRATION_S,
    STEADY_SCENARIO,
    STREAM_G_PER_L,
    FakeMultiBench,
    fake_multi_station,
    make_runner,
)

from daq import open_trial
from daq.config import Recipe
from daq.layout import FLAG_LOST, FLAG_READ_FAILED

ZONES = ("zone-1", "zone-2", "zone-3")
SPECTROMETERS = ("raffinate", "strip")


def recipe(
    *, offsets=None, limits=(), abort_above_C=None, target_C=60.0, dwell_min=600.0, streams=True, **fields
) -> Recipe:
    """A recipe for the fake multi bench: one segment to ``target_C`` on every zone, two streams, ``limits``."""
    furnace: dict = {
        "segments": [{"ramp_C_per_min": 10.0, "target_C": target_C, "dwell_min": dwell_min}],
        "cool_to_C": 25.0,
        "cool_rate_C_per_min": 10.0,
        "offset_C": dict(offsets or {}),
    }
    if abort_above_C is not None:
        furnace["abort_above_C"] = abort_above_C
    data = {
        "title": "fake multi-instrument trial",
        "sample": "NdPr",
        "operator": "unit test",
        "analytes": ["Nd", "Pr"],
        "target": "Nd",
        "scenario": STEADY_SCENARIO,
        "furnace": furnace,
        "spectrometer": {"integration_time_s": BASE_INTEGRATION_S, "averages": 4, "interval_s": 10.0},
        "limits": list(limits),
        **fields,
    }
    if streams:
        data["streams"] = [{"spectrometer": "raffinate", "target": "Pr"}, {"spectrometer": "strip"}]
    return Recipe.model_validate(data)


@pytest.fixture
def bench():
    return FakeMultiBench(ZONES, SPECTROMETERS, {"feed-ph": {"pH": 1.5, "temperature_C": 21.0, "electrode_mV": 0.0}})


@pytest.fixture
def run(tmp_path, synthetic_calibration, bench):
    """``run(recipe)``: the trial on the fake multi bench to its end; (outcome, open trial reader)."""
    station = fake_multi_station(ZONES, SPECTROMETERS, ("feed-ph",))
    readers = []

    def run_recipe(the_recipe: Recipe):
        if the_recipe.streams:  # each further stream names its calibration: the synthetic one here
            streams = [s.model_copy(update={"calibration": synthetic_calibration}) for s in the_recipe.streams]
            the_recipe = the_recipe.model_copy(update={"streams": tuple(streams)})
        runner = make_runner(the_recipe, station, bench, tmp_path / "data", synthetic_calibration)
        outcome = runner.run()
        reader = open_trial(outcome.path)
        readers.append(reader)
        return outcome, reader

    yield run_recipe
    for reader in readers:
        reader.close()


def hold_every_zone_until_spectrum(bench: FakeMultiBench, n: int, streamed: tuple[str, ...] = SPECTROMETERS) -> None:
    """No zone reaches its target until every ``streamed`` spectrometer has taken spectrum ``n``: each of their
    streams has >= n spectra."""
    for zone in bench.zones.values():
        zone.ramp_C_per_poll = 0.0
    waiting = set(streamed)

    def reached(spectrometer) -> None:
        waiting.discard(next(name for name, s in bench.spectrometers.items() if s is spectrometer))
        if not waiting:
            for zone in bench.zones.values():
                zone.ramp_C_per_poll = math.inf

    for name in streamed:
        bench.spectrometers[name].at_spectrum(n, reached)


def events_of(reader, source: str | None = None) -> list[str]:
    events = reader.events()
    return [m for s, m in zip(events["source"], events["message"]) if source is None or s == source]


def test_every_instrument_is_recorded_in_its_own_table_and_every_zone_ends_safe(run, bench):
    hold_every_zone_until_spectrum(bench, 5)
    outcome, trial = run(recipe(offsets={"zone-1": 10.0, "zone-3": 10.0}, dwell_min=1.0))

    assert (outcome.exit_status, outcome.reason) == ("success", "program complete")
    assert [i.name for i in trial.instruments()] == [*ZONES, *SPECTROMETERS, "feed-ph"]
    assert trial.streams() == SPECTROMETERS
    for zone, target in zip(ZONES, (70.0, 60.0, 70.0)):  # the offsets moved the end zones' targets
        assert bench.zones[zone].in_safe_state, zone
        assert f"setpoint {target:g}" in bench.journal.of(zone)
        assert trial.rows(f"furnace:{zone}") > 0
    for name, target in zip(SPECTROMETERS, ("Pr", "Nd")):
        rows = trial.read(f"analysis:{name}")
        assert trial.rows(f"spectrometer:{name}") == len(rows["time"]) >= 5
        assert trial.stream(name).target_element == target
        truth = [STREAM_G_PER_L["Nd"], STREAM_G_PER_L["Pr"]]
        assert np.allclose(np.median(rows["concentration"], axis=0), truth, rtol=0.05)
    ph = trial.read("sensor:feed-ph")
    assert len(ph["time"]) > 0 and np.all(ph["pH"] == 1.5) and np.all(ph["pH_state"] == 0)
    assert trial.sensor("feed-ph").channels[0].name in ("pH", "temperature_C", "electrode_mV")
    safe = [m for m in events_of(trial) if m.endswith("in safe state")]
    assert sorted(safe) == [
        "furnace zone zone-1 in safe state",
        "furnace zone zone-2 in safe state",
        "furnace zone zone-3 in safe state",
    ]


@pytest.mark.parametrize("hot_zone", ZONES)
def test_each_zone_over_its_limit_aborts_the_trial_and_every_zone_goes_safe(run, bench, hot_zone):
    # every zone ramps 5 C a poll towards 45 C, below the 50 C interlock; one overshoots it at its 3rd poll
    bench.zones[hot_zone].at_poll(3, lambda zone: setattr(zone, "overshoot_C", 40.0))
    outcome, trial = run(recipe(abort_above_C=50.0, target_C=45.0))

    assert (outcome.exit_status, outcome.reason) == ("aborted", f"interlock: furnace zone {hot_zone} over 50 C")
    interlock = events_of(trial, "interlock")
    assert len(interlock) == 1 and interlock[0].startswith(f"furnace zone {hot_zone} at ")
    assert all(zone.in_safe_state for zone in bench.zones.values())
    temperature = trial.read(f"furnace:{hot_zone}")["temperature"]
    assert temperature[-1] > 50.0  # the tripping poll is kept


def test_a_ph_outside_its_limit_aborts_after_its_delay_and_every_zone_goes_safe(run, bench):
    sensor = bench.sensors["feed-ph"]
    sensor.at_read(4, lambda s: s.values.update(pH=2.4))
    limit = {"instrument": "feed-ph", "channel": "pH", "min": 1.2, "max": 1.9, "action": "abort", "after_s": 0}
    outcome, trial = run(recipe(limits=[limit]))

    assert (outcome.exit_status, outcome.reason) == ("aborted", "interlock: feed-ph pH outside 1.2-1.9")
    assert events_of(trial, "interlock") == ["feed-ph pH 2.4, limit 1.2-1.9: aborting to safe state"]
    ph = trial.read("sensor:feed-ph")["pH"]
    assert list(ph[:3]) == [1.5, 1.5, 1.5] and ph[-1] == 2.4
    assert all(zone.in_safe_state for zone in bench.zones.values())


def test_a_warning_limit_reports_the_excursion_once_each_way_and_the_trial_goes_on(run, bench):
    hold_every_zone_until_spectrum(bench, 6)
    sensor = bench.sensors["feed-ph"]
    for read in range(3, 7):
        sensor.at_read(read, lambda s: s.values.update(pH=2.0))
    sensor.at_read(7, lambda s: s.values.update(pH=1.5))
    limit = {"instrument": "feed-ph", "channel": "pH", "max": 1.9, "action": "warn"}
    outcome, trial = run(recipe(limits=[limit], dwell_min=1.0))

    assert outcome.exit_status == "success"
    assert events_of(trial, "interlock") == [
        "feed-ph pH 2, limit <= 1.9 (limit[0]: warn only)",
        "feed-ph pH back within <= 1.9",
    ]


def test_a_probe_fault_is_no_measurement_flagged_and_a_limit_acts_on_it(run, bench):
    sensor = bench.sensors["feed-ph"]
    sensor.at_read(3, lambda s: s.states.update(pH="probe_fault"))
    limit = {"instrument": "feed-ph", "channel": "pH", "min": 1.2, "max": 1.9}
    outcome, trial = run(recipe(limits=[limit]))

    assert outcome.reason == "interlock: feed-ph pH outside 1.2-1.9"
    assert events_of(trial, "interlock") == ["feed-ph pH no measurement, limit 1.2-1.9: aborting to safe state"]
    rows = trial.read("sensor:feed-ph")
    assert math.isnan(rows["pH"][-1]) and rows["pH_state"][-1] == 2 and rows["flag"][-1] & FLAG_READ_FAILED
    assert rows["temperature_C_state"][-1] == 0 and rows["temperature_C"][-1] == 21.0


def test_a_lost_sensor_is_a_gap_of_flagged_rows_and_aborts_after_the_lost_instrument_time(run, bench):
    bench.sensors["feed-ph"].at_read(3, lambda s: setattr(s, "lost", True))
    outcome, trial = run(recipe(lost_instrument_abort_s=0.05))

    assert outcome.reason == "feed-ph lost for more than 0.05 s"
    rows = trial.read("sensor:feed-ph")
    lost = rows["flag"] & (FLAG_READ_FAILED | FLAG_LOST) == (FLAG_READ_FAILED | FLAG_LOST)
    assert not lost[:2].any() and lost[2:].all() and np.all(np.isnan(rows["pH"][2:]))
    assert all(zone.in_safe_state for zone in bench.zones.values())


def test_without_streams_the_schedule_runs_on_the_first_spectrometer_and_the_others_are_recorded_idle(run, bench):
    hold_every_zone_until_spectrum(bench, 3, streamed=("raffinate",))
    outcome, trial = run(recipe(streams=False, dwell_min=1.0))

    assert outcome.exit_status == "success"
    assert trial.streams() == ("raffinate",)
    assert trial.rows("spectrometer:raffinate") >= 3 and trial.rows("spectrometer:strip") == 0
    assert bench.spectrometers["strip"].spectra == 0
