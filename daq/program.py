"""Run a furnace program the way the controller is meant to be used.

The controller ramps by itself: for each segment we write the rate limit and the
target once (the live setpoint goes to the comms setpoint, which does not wear
the controller's EEPROM), then watch the working setpoint reach the target, then
hold for the dwell. We never step the setpoint from the PC.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import FurnaceProgram

__all__ = ["ProgramStep", "FurnaceProgramRunner"]

RAMP_DONE_TOLERANCE_C = 0.5


@dataclass(frozen=True)
class ProgramStep:
    """What the program did on one poll, for the event log (None when nothing changed)."""

    message: str


class FurnaceProgramRunner:
    """A state machine advanced once per furnace poll; it writes only when a segment starts."""

    def __init__(self, program: FurnaceProgram):
        self.program = program
        self.segment = -1
        self.phase = "start"  # start, ramp, dwell, done
        self._dwell_end_s = 0.0

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def describe(self) -> str:
        if self.phase in ("start", "done"):
            return self.phase
        segment = self.program.segments[self.segment]
        return f"segment {self.segment + 1}/{len(self.program.segments)} {self.phase} to {segment.target_C:g} C"

    def step(self, furnace, working_setpoint_C: float, now_s: float) -> ProgramStep | None:
        """Advance on a fresh reading; may write rate limit and setpoint to ``furnace``."""
        if self.phase == "start":
            return self._start_segment(furnace, 0)
        if self.phase == "ramp":
            target = self.program.segments[self.segment].target_C
            if abs(working_setpoint_C - target) <= RAMP_DONE_TOLERANCE_C:
                self.phase = "dwell"
                self._dwell_end_s = now_s + 60.0 * self.program.segments[self.segment].dwell_min
                return ProgramStep(
                    f"segment {self.segment + 1}: reached {target:g} C, dwell "
                    f"{self.program.segments[self.segment].dwell_min:g} min"
                )
            return None
        if self.phase == "dwell" and now_s >= self._dwell_end_s:
            if self.segment + 1 < len(self.program.segments):
                return self._start_segment(furnace, self.segment + 1)
            self.phase = "done"
            return ProgramStep("program complete")
        return None

    def _start_segment(self, furnace, index: int) -> ProgramStep:
        segment = self.program.segments[index]
        # rate first, so the controller never sees the new target without its ramp
        furnace.set_rate_limit(segment.ramp_C_per_min)
        furnace.set_setpoint(segment.target_C)
        self.segment, self.phase = index, "ramp"
        return ProgramStep(f"segment {index + 1}: ramp {segment.ramp_C_per_min:g} C/min to {segment.target_C:g} C")
