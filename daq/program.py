"""Run a furnace program the way the controller is meant to be used, and so that it ends safe without the PC.

The controller ramps by itself (decision 0042). How the program's safe end is
made independent of the PC depends on the controller (decision 0079;
``furnace.safety``, from its register map):

- ``"programmer"`` (2400, 3216P): the whole program is loaded into the
  controller's own programmer, with a last ramp to the safe setpoint and an
  end that dwells there, and the controller runs it. How the program is laid
  into its segments is the map's (``[programmer] style``, decision 0087): the
  driver's ``load_program`` returns the controller segment that ramps to the
  safe setpoint. The PC watches: each poll reads the programmer's state and
  segment, and the program is done when the controller has begun that ramp.
  Killed PC, pulled cable: the controller finishes the program and ends at
  the safe setpoint by itself.
- ``"watchdog"`` (EPC3000): the comms watchdog is armed (fallback setpoint :=
  safe setpoint) before the first segment; then for each segment we write the
  rate limit and the target once, watch the working setpoint reach the target,
  and time the dwell. With no request for the watchdog's timeout the
  controller goes to the fallback setpoint by itself; each poll then checks
  the watchdog has not tripped (after a trip the program is not resumed).
- ``"none"`` (3200, nanodac): as with the watchdog, without one; the program
  start says that the furnace holds the last target if the PC dies.

A furnace without these members (a test double) is run the ``"none"`` way, without the warning.
A program the controller cannot take (too many segments, a controller not
configured for the remote setpoint) is refused before the first segment:
:class:`ProgramRefused`, which is not an instrument error, so the trial fails
with the message instead of retrying every poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from drivers import InstrumentError, LimitError, NotConfigured, NotConnected, ProgramSegment

from .config import FurnaceProgram

__all__ = ["ProgramRefused", "ProgramStep", "FurnaceProgramRunner"]

RAMP_DONE_TOLERANCE_C = 0.5


@dataclass(frozen=True)
class ProgramStep:
    """What the program did on one poll, for the event log (None when nothing changed)."""

    message: str


class ProgramRefused(RuntimeError):
    """The controller cannot run this program as the station needs (said before the first segment)."""


class FurnaceProgramRunner:
    """A state machine advanced once per furnace poll; it writes only when a segment (or the program) starts."""

    def __init__(self, program: FurnaceProgram):
        self.program = program
        self.segment = -1
        self.phase = "start"  # start, ramp, dwell, controller, done
        self.mode = "pc"  # pc: the PC starts each segment; controller: the controller's programmer runs it all
        self._dwell_end_s = 0.0
        self._controller_segment = 0
        self._cool_segment = 0  # the controller segment that ramps to the safe setpoint
        self._watchdog = False  # armed: each poll checks it has not tripped

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def describe(self) -> str:
        if self.phase in ("start", "done"):
            return self.phase
        if self.phase == "controller":
            return f"controller programmer segment {self._controller_segment}/{self._cool_segment + 1}"
        segment = self.program.segments[self.segment]
        return f"segment {self.segment + 1}/{len(self.program.segments)} {self.phase} to {segment.target_C:g} C"

    def step(self, furnace, working_setpoint_C: float, now_s: float) -> ProgramStep | None:
        """Advance on a fresh reading; may write to ``furnace``."""
        if self.phase == "start":
            return self._start(furnace)
        if self.phase == "controller":
            return self._watch_controller(furnace)
        if self._watchdog and furnace.watchdog_tripped:
            raise ProgramRefused(
                "the controller's comms watchdog tripped (the link was lost for longer than its timeout): it went "
                f"to its fallback setpoint {furnace.safe_setpoint_C:g} C; the program is not resumed"
            )
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

    # -- start -------------------------------------------------------------------------------
    def _start(self, furnace) -> ProgramStep:
        safety = getattr(furnace, "safety", None)  # None: a furnace that does not say (a test double)
        try:
            prepare = getattr(furnace, "prepare", None)
            if prepare is not None:
                prepare()
            if safety == "programmer":
                return self._load_into_controller(furnace)
            if safety == "watchdog":
                furnace.arm_watchdog()
                self._watchdog = True
                first = self._start_segment(furnace, 0)
                return ProgramStep(
                    f"comms watchdog armed ({furnace.watchdog_s:g} s; fallback {furnace.safe_setpoint_C:g} C); "
                    + first.message
                )
        except NotConnected:
            raise  # the line: retried next poll, as any lost reading
        except InstrumentError as error:
            if isinstance(error, (LimitError, NotConfigured)):
                raise ProgramRefused(f"the furnace cannot run this program safely: {error}") from None
            raise
        first = self._start_segment(furnace, 0)
        if safety is None:
            return first
        return ProgramStep(
            "this controller has neither a comms watchdog nor a programmer the driver uses: if the PC dies the "
            "furnace holds the last target (docs/instruments/furnace.md); " + first.message
        )

    def _load_into_controller(self, furnace) -> ProgramStep:
        segments = [ProgramSegment(s.ramp_C_per_min, s.target_C, s.dwell_min) for s in self.program.segments]
        cool = furnace.load_program(segments, end_rate_C_per_min=self.program.cool_rate_C_per_min)
        furnace.run_program()
        if isinstance(cool, int) and not isinstance(cool, bool) and cool >= 1:
            self._cool_segment = cool  # the driver's: the segment that ramps to the safe setpoint (1-based)
        else:  # a furnace that does not say (a test double): a segment per ramp and per dwell, as the 2400's
            self._cool_segment = sum(1 + (s.dwell_min > 0) for s in self.program.segments) + 1
        used = self._cool_segment - 1
        self.mode, self.phase, self._controller_segment = "controller", "controller", 1
        return ProgramStep(
            f"program loaded into the controller's programmer ({used} segments, then a ramp at "
            f"{self.program.cool_rate_C_per_min:g} C/min to {furnace.safe_setpoint_C:g} C and an end that dwells "
            "there); the controller runs it and ends safe by itself"
        )

    def _watch_controller(self, furnace) -> ProgramStep | None:
        state, segment = furnace.program_state()
        if (state == "run" and segment >= self._cool_segment) or state == "complete":
            self.phase = "done"
            return ProgramStep("program complete")  # the controller is ramping to its safe setpoint
        if state == "reset":
            self.phase = "done"
            return ProgramStep("the controller's programmer was reset (not by this run): program ended")
        if segment != self._controller_segment and segment > 0:
            self._controller_segment = segment
            return ProgramStep(f"controller programmer: segment {segment} of {self._cool_segment + 1} ({state})")
        return None

    def _start_segment(self, furnace, index: int) -> ProgramStep:
        segment = self.program.segments[index]
        # rate first, so the controller never sees the new target without its ramp
        furnace.set_rate_limit(segment.ramp_C_per_min)
        furnace.set_setpoint(segment.target_C)
        self.segment, self.phase = index, "ramp"
        return ProgramStep(f"segment {index + 1}: ramp {segment.ramp_C_per_min:g} C/min to {segment.target_C:g} C")
