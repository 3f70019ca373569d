"""One temperature controller in a trial: its program, its polls, its interlocks, its safe state.

A trial has one :class:`FurnaceZone` per temperature controller that runs the
recipe's program (every zone of a multi-zone furnace, each with its offset); the
trial runs :meth:`FurnaceZone.run` in a thread and :meth:`FurnaceZone.safe_state`
in its shutdown, for every zone, whatever happened.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING

from drivers import InstrumentError

from ._trial_context import instrument_table
from .layout import FLAG_LOST, FLAG_READ_FAILED
from .program import FurnaceProgramRunner

if TYPE_CHECKING:
    from ._trial_context import TrialContext
    from ._trial_plan import ZonePlan

__all__ = ["FurnaceZone", "SafeStateUnknown"]


class SafeStateUnknown(RuntimeError):
    """A zone whose safe state could not be confirmed (the error is its cause)."""


class FurnaceZone:
    """One temperature controller running its program."""

    def __init__(self, plan: ZonePlan, controller) -> None:
        self.plan = plan
        self.name = plan.controller.name
        self.controller = controller
        self.source = self.name[:16]  # the events table's source column
        # how messages name it: "furnace" on a one-furnace station, "furnace zone zone-2" on a furnace of zones
        self.what = "furnace" if self.name == "furnace" else f"furnace zone {self.name}"
        self.table = instrument_table("furnace", self.name)
        self.program_done = threading.Event()
        self.last_temperature_C = math.nan
        self.last_setpoint_C = math.nan
        self._safe_state_error: Exception | None = None
        self._made_safe = False

    @property
    def limit_C(self) -> float:
        """The over-temperature interlock: the program's ``abort_above_C``, else the station's maximum."""
        return self.plan.program.abort_above_C or self.plan.controller.max_temperature_C

    def run(self, trial: TrialContext, on_program_done) -> None:
        """Poll the controller and step its program until the trial stops (a thread's body)."""
        program = FurnaceProgramRunner(self.plan.program)
        interval_s = self.plan.controller.poll_interval_s
        lost_since = None
        next_poll = time.monotonic()
        furnace = self.controller
        while not trial.stop.is_set():
            now_s = trial.clock.now_s()
            try:
                reading = furnace.read_all()
            except InstrumentError as error:
                lost_since = trial.instrument_lost(self.source, error, lost_since, furnace)
                trial.file.append(
                    self.table,
                    time=now_s,
                    temperature=math.nan,
                    setpoint=math.nan,
                    working_setpoint=math.nan,
                    output=math.nan,
                    status_word=0,
                    flag=FLAG_READ_FAILED | FLAG_LOST,
                )
            else:
                if lost_since is not None:
                    trial.event(
                        "info", self.source, f"{self.source} answers again after {time.monotonic() - lost_since:.1f} s"
                    )
                    lost_since = None
                trial.file.append(
                    self.table,
                    time=now_s,
                    temperature=reading.temperature_C,
                    setpoint=reading.setpoint_C,
                    working_setpoint=reading.working_setpoint_C,
                    output=reading.output_percent,
                    status_word=reading.status.raw,
                    flag=FLAG_READ_FAILED if math.isnan(reading.temperature_C) else 0,
                )
                self.last_temperature_C = reading.temperature_C
                self.last_setpoint_C = reading.setpoint_C
                self._interlocks(trial, reading)
                if trial.stop.is_set():
                    return
                try:
                    step = program.step(furnace, reading.working_setpoint_C, now_s)
                except InstrumentError as error:
                    trial.event("warning", self.source, f"program write failed, retrying next poll: {error}")
                    step = None
                if step is not None:
                    trial.event(
                        "info", "program", step.message if self.plan.primary else f"{self.name}: {step.message}"
                    )
                if program.done and not self.program_done.is_set():
                    self.program_done.set()
                    on_program_done()
            next_poll += interval_s
            trial.stop.wait(max(0.0, next_poll - time.monotonic()))

    def _interlocks(self, trial: TrialContext, reading) -> None:
        status, limit_C, what = reading.status, self.limit_C, self.what
        if reading.temperature_C > limit_C:
            trial.event(
                "error",
                "interlock",
                f"{what} at {reading.temperature_C:.1f} C is above the limit {limit_C:g} C: aborting to safe state",
            )
            trial.request_abort(f"interlock: {what} over {limit_C:g} C")
        elif status.sensor_break:
            trial.event("error", "interlock", f"{what} reports sensor break: aborting to safe state")
            trial.request_abort(f"interlock: {what} sensor break")
        elif status.any_alarm:
            trial.event("error", "interlock", f"{what} alarm (status word 0x{status.raw:04x}): aborting")
            trial.request_abort(f"interlock: {what} alarm")

    def safe_state(self, trial: TrialContext) -> Exception | None:
        """Put the controller in its safe state, once; the error if that failed."""
        if not self._made_safe:
            self._made_safe = True
            what = self.what
            try:
                self.controller.safe_state()
                trial.event("info", self.source, f"{what} in safe state")
                trial.print(f"{what} in safe state")
            except Exception as error:  # noqa: BLE001 - record it; the controller's own alarm remains
                self._safe_state_error = error
                trial.event("error", self.source, f"could not put the {what} in its safe state: {error}")
        return self._safe_state_error
