"""How a furnace program is made safe without the PC (decision 0079), against a furnace double that says how.

The driver's side is tested byte by byte (test_eurotherm_maps_protocol.py) and against the simulator
(tests/system/test_furnace_safe_without_pc.py); here the program runner's choices.
"""

from __future__ import annotations

import pytest

from daq.config import FurnaceProgram
from daq.program import FurnaceProgramRunner, ProgramRefused
from drivers import LimitError, NotConfigured


class Furnace:
    """Records what the runner asks; ``safety`` as a map would say it."""

    def __init__(self, safety: str):
        self.safety, self.calls = safety, []
        self.safe_setpoint_C, self.watchdog_s = 25.0, 10.0
        self.watchdog_tripped = False
        self.state = ("run", 1)
        self.refuse: Exception | None = None

    def prepare(self):
        self.calls.append("prepare")
        if self.refuse:
            raise self.refuse

    def arm_watchdog(self):
        self.calls.append("arm_watchdog")

    def load_program(self, segments, end_rate_C_per_min):
        self.calls.append(("load_program", [(s.ramp_C_per_min, s.target_C, s.dwell_min) for s in segments]))

    def run_program(self):
        self.calls.append("run_program")

    def program_state(self):
        return self.state

    def set_rate_limit(self, value):
        self.calls.append(("rate", value))

    def set_setpoint(self, value):
        self.calls.append(("setpoint", value))


def program() -> FurnaceProgram:
    segments = [
        {"ramp_C_per_min": 10.0, "target_C": 110.0, "dwell_min": 10.0},
        {"ramp_C_per_min": 5.0, "target_C": 450.0},
    ]
    return FurnaceProgram.model_validate({"segments": segments})


def test_a_controller_with_a_programmer_runs_the_whole_program_itself_and_the_pc_watches():
    furnace, runner = Furnace("programmer"), FurnaceProgramRunner(program())
    step = runner.step(furnace, 20.0, 0.0)
    assert furnace.calls == ["prepare", ("load_program", [(10.0, 110.0, 10.0), (5.0, 450.0, 0.0)]), "run_program"]
    assert "controller's programmer (3 segments" in step.message and runner.phase == "controller"
    furnace.state = ("run", 3)
    assert "segment 3" in runner.step(furnace, 300.0, 60.0).message and not runner.done
    furnace.state = ("run", 4)  # the ramp to the safe setpoint: the recipe's program is over
    assert runner.step(furnace, 400.0, 120.0).message == "program complete" and runner.done
    assert not [call for call in furnace.calls if call[0] in ("rate", "setpoint")]  # the PC wrote no segment


def test_a_controller_with_a_watchdog_is_armed_before_the_first_segment_and_a_trip_ends_the_program():
    furnace, runner = Furnace("watchdog"), FurnaceProgramRunner(program())
    step = runner.step(furnace, 20.0, 0.0)
    assert furnace.calls == ["prepare", "arm_watchdog", ("rate", 10.0), ("setpoint", 110.0)]
    assert step.message.startswith("comms watchdog armed (10 s; fallback 25 C); segment 1")
    assert runner.step(furnace, 50.0, 1.0) is None
    furnace.watchdog_tripped = True
    with pytest.raises(ProgramRefused, match="watchdog tripped .* not resumed"):
        runner.step(furnace, 50.0, 2.0)


def test_a_controller_with_neither_says_so_at_the_start():
    furnace, runner = Furnace("none"), FurnaceProgramRunner(program())
    step = runner.step(furnace, 20.0, 0.0)
    assert "if the PC dies the furnace holds the last target" in step.message
    assert furnace.calls[-2:] == [("rate", 10.0), ("setpoint", 110.0)]


@pytest.mark.parametrize(
    "error", [NotConfigured("configure the remote/comms setpoint"), LimitError("the programmer holds 16")]
)
def test_a_program_the_controller_cannot_take_is_refused_before_the_first_segment(error):
    furnace, runner = Furnace("programmer"), FurnaceProgramRunner(program())
    furnace.refuse = error
    with pytest.raises(ProgramRefused, match=str(error)):
        runner.step(furnace, 20.0, 0.0)
    assert furnace.calls == ["prepare"]
