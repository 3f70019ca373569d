"""The furnace program: segments sent in order, each rate limit before its target, once; the controller ramps.

:class:`daq.program.FurnaceProgramRunner` is stepped by hand here, poll by poll
with explicit times (no threads, no clock), against the fake furnace of
:mod:`_fake_bench`, whose journal records every write. The last tests run the
program inside a whole :class:`daq.runner.TrialRunner` on the fake bench
(docs/user-guide.md: "the furnace program runs on the controller (rate limit +
target per segment; the controller ramps)"; decision: we never step the setpoint
from the PC).
"""

from __future__ import annotations

import pytest
from _fake_bench import FakeFurnace, Journal, fake_recipe, fake_station, make_runner

from daq.config import ConfigError, FurnaceProgram
from daq.program import RAMP_DONE_TOLERANCE_C, FurnaceProgramRunner
from drivers import NotConnected


def program(*segments) -> FurnaceProgram:
    return FurnaceProgram.model_validate(
        {"segments": [{"ramp_C_per_min": r, "target_C": t, "dwell_min": d} for r, t, d in segments]}
    )


@pytest.fixture
def furnace() -> FakeFurnace:
    return FakeFurnace(Journal())


def writes(furnace: FakeFurnace) -> list[str]:
    return furnace.journal.of("furnace")


def test_the_first_poll_sends_the_first_segment_rate_first(furnace):
    runner = FurnaceProgramRunner(program((10.0, 110.0, 10.0), (5.0, 450.0, 90.0)))
    assert (runner.phase, runner.describe(), runner.done) == ("start", "start", False)

    step = runner.step(furnace, 25.0, 0.0)

    assert step is not None and step.message == "segment 1: ramp 10 C/min to 110 C"
    assert writes(furnace) == ["rate limit 10", "setpoint 110"]
    assert runner.describe() == "segment 1/2 ramp to 110 C"


def test_the_controller_ramps_alone_and_the_dwell_starts_when_its_working_setpoint_arrives(furnace):
    runner = FurnaceProgramRunner(program((10.0, 110.0, 10.0), (5.0, 450.0, 0.0)))
    runner.step(furnace, 25.0, 0.0)
    for t, working in enumerate((30.0, 60.0, 90.0, 110.0 - RAMP_DONE_TOLERANCE_C - 0.1), start=1):
        assert runner.step(furnace, working, 60.0 * t) is None  # still ramping: nothing is written
    assert writes(furnace) == ["rate limit 10", "setpoint 110"]

    step = runner.step(furnace, 110.0 - RAMP_DONE_TOLERANCE_C, 300.0)

    assert step is not None and step.message == "segment 1: reached 110 C, dwell 10 min"
    assert runner.describe() == "segment 1/2 dwell to 110 C"
    assert runner.step(furnace, 110.0, 300.0 + 599.0) is None  # the dwell is 600 s from arrival
    assert writes(furnace) == ["rate limit 10", "setpoint 110"]


def test_segments_follow_in_order_and_the_program_completes_once(furnace):
    runner = FurnaceProgramRunner(program((10.0, 110.0, 1.0), (5.0, 450.0, 0.0), (10.0, 200.0, 2.0)))
    messages = []
    for now_s, working in ((0, 25), (10, 110), (70, 110), (80, 450), (81, 450), (90, 200), (209, 200), (210, 200)):
        step = runner.step(furnace, float(working), float(now_s))
        messages.append(step.message if step else None)

    assert messages == [
        "segment 1: ramp 10 C/min to 110 C",
        "segment 1: reached 110 C, dwell 1 min",
        "segment 2: ramp 5 C/min to 450 C",
        "segment 2: reached 450 C, dwell 0 min",
        "segment 3: ramp 10 C/min to 200 C",
        "segment 3: reached 200 C, dwell 2 min",
        None,
        "program complete",
    ]
    assert writes(furnace) == [
        "rate limit 10",
        "setpoint 110",
        "rate limit 5",
        "setpoint 450",
        "rate limit 10",
        "setpoint 200",
    ]  # a cooling segment is sent the same way
    assert runner.done and runner.describe() == "done"
    assert runner.step(furnace, 200.0, 10_000.0) is None and len(writes(furnace)) == 6  # nothing after the end


def test_a_failed_write_leaves_the_segment_unstarted_and_the_next_poll_sends_it_again(furnace):
    runner = FurnaceProgramRunner(program((10.0, 110.0, 1.0)))
    furnace.lost = True
    with pytest.raises(NotConnected):
        runner.step(furnace, 25.0, 0.0)
    assert runner.phase == "start"
    furnace.lost = False

    step = runner.step(furnace, 25.0, 1.0)
    assert step is not None and step.message == "segment 1: ramp 10 C/min to 110 C"
    assert writes(furnace) == ["set_rate_limit: no answer", "rate limit 10", "setpoint 110"]


# -- the program inside a trial ----------------------------------------------------------------------------------


def test_a_trial_sends_each_segment_once_in_order_with_its_rate_limit(run_trial, fake_bench):
    segments = ((10.0, 60.0, 1.0), (5.0, 110.0, 0.0), (10.0, 40.0, 1.0))
    outcome, trial = run_trial(fake_recipe(segments=segments))

    assert (outcome.exit_status, outcome.reason) == ("success", "program complete")
    assert fake_bench.journal.of("furnace") == [
        "rate limit 10",
        "setpoint 60",
        "rate limit 5",
        "setpoint 110",
        "rate limit 10",
        "setpoint 40",
        "safe state",
        "close",
    ]
    program_events = [m for _, source, m in trial.events if source == "program"]
    assert program_events == [
        "segment 1: ramp 10 C/min to 60 C",
        "segment 1: reached 60 C, dwell 1 min",
        "segment 2: ramp 5 C/min to 110 C",
        "segment 2: reached 110 C, dwell 0 min",
        "segment 3: ramp 10 C/min to 40 C",
        "segment 3: reached 40 C, dwell 1 min",
        "program complete",
    ]
    assert trial.index("program complete") < trial.index("furnace in safe state")
    working = trial.tables["furnace"]["working_setpoint"]
    assert working.max() == 110.0 and working[-1] == 40.0  # the controller's ramp, as logged each poll


def test_a_program_write_that_fails_is_retried_on_the_next_poll(run_trial, fake_bench):
    furnace = fake_bench.furnace
    furnace.at_poll(1, lambda f: setattr(f, "fail_next_write", True))
    set_setpoint = furnace.set_setpoint

    def flaky_set_setpoint(value_C):
        if getattr(furnace, "fail_next_write", False):
            furnace.fail_next_write = False
            raise NotConnected("fake furnace: no answer to set_setpoint")
        set_setpoint(value_C)

    furnace.set_setpoint = flaky_set_setpoint
    outcome, trial = run_trial(fake_recipe(segments=((10.0, 60.0, 0.5),)))

    assert outcome.exit_status == "success"
    assert trial.has("program write failed, retrying next poll: fake furnace: no answer to set_setpoint")
    assert fake_bench.journal.of("furnace")[:3] == ["rate limit 10", "rate limit 10", "setpoint 60"]


@pytest.mark.parametrize(
    "segment, field",
    [((10.0, 1200.0, 1.0), "furnace.segments[0].target_C"), ((20.0, 100.0, 1.0), "furnace.segments[0].ramp_C_per_min")],
)
def test_a_segment_beyond_the_station_limits_is_refused_before_any_instrument_is_touched(
    tmp_path, synthetic_calibration, fake_bench, segment, field
):
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        make_runner(
            fake_recipe(segments=(segment,)), fake_station(), fake_bench, tmp_path / "data", synthetic_calibration
        )
    assert fake_bench.opened == [] and fake_bench.journal.entries == []


# -- a controller's own programmer: the driver says which segment ends the trial's program ------------------------


class ProgrammerFurnace:
    """A furnace whose programmer lays a recipe out as a ramp-dwell one does (the 3216P): a segment per recipe
    segment, then the ramp to the safe setpoint, whose number ``load_program`` returns."""

    safety, safe_setpoint_C = "programmer", 25.0

    def __init__(self) -> None:
        self.state: tuple[str, int] = ("reset", 0)
        self.loaded: list = []

    def prepare(self) -> None:
        pass

    def load_program(self, segments, end_rate_C_per_min):
        self.loaded = [(s.ramp_C_per_min, s.target_C, s.dwell_min) for s in segments]
        return len(segments) + 1

    def run_program(self) -> None:
        self.state = ("run", 1)

    def program_state(self) -> tuple[str, int]:
        return self.state


def test_the_program_ends_when_the_controller_begins_the_segment_the_driver_names_not_a_2400_count():
    furnace = ProgrammerFurnace()
    runner = FurnaceProgramRunner(program((10.0, 110.0, 10.0), (5.0, 450.0, 30.0)))

    step = runner.step(furnace, 20.0, 0.0)

    assert furnace.loaded == [(10.0, 110.0, 10.0), (5.0, 450.0, 30.0)]
    assert step is not None
    assert step.message.startswith("program loaded into the controller's programmer (2 segments, then a ramp")
    furnace.state = ("run", 2)  # the recipe's second segment (a 2400 would count it as its third)
    step = runner.step(furnace, 300.0, 60.0)
    assert step is not None and step.message == "controller programmer: segment 2 of 4 (run)"
    assert not runner.done
    furnace.state = ("run", 3)  # the ramp to the safe setpoint: the trial's program is over
    step = runner.step(furnace, 450.0, 120.0)
    assert step is not None and step.message == "program complete" and runner.done
