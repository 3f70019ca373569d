"""Physical truth of the simulated tube furnace and its controller (pure Python, no I/O).

- plant: first order plus dead time, T' = (ambient + gain * u(t - dead_time) - T) / tau,
  integrated exactly over each step (u = heater output, percent);
- controller: PID (proportional band in C, integral and derivative times in s)
  with output limits and anti-windup, manual mode (bumpless), a fixed output on
  sensor break;
- setpoints: local SP1 (EEPROM, counted), SP2 and remote (comms) SP; the remote
  SP is the active one once received while remote is selected
  (``remote_selected``; a map with a select register starts in local); the
  working SP follows the active SP at the SP rate limit (0 = off, or
  ``rate_disabled``: steps), downwards at ``rate_down_C_per_min`` where the
  controller has a separate down rate;
- its own programmer and comms watchdog (:mod:`._furnace_programmer`): a
  running program's setpoint is the active one; a tripped watchdog sends the
  controller to its fallback setpoint (SP2), out of remote;
- programmer status: the rate-limited ramp is the simulator's one-segment
  program: ``reset`` with the limit off, ``run`` while ramping, ``complete``
  when the working SP has arrived (status bit program_end);
- alarms: 1 = full-scale high on PV, 2 = deviation high (PV - working SP),
  3 and 4 not configured; loop break when the output sits at its high limit
  for ``loop_break_s`` while the PV rises less than ``loop_break_rise_C``;
  heater fail when the heater is failed (``heater_failed``) and output is demanded.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from ._furnace_programmer import Programmer, Watchdog

__all__ = ["FurnaceModel", "PidParams", "PlantParams"]


@dataclass(frozen=True)
class PlantParams:
    """Tube furnace: 100 % output holds 1300 C (margin over its 1200 C rating)."""

    ambient_C: float = 20.0
    gain_C_per_percent: float = 12.8
    tau_s: float = 600.0
    dead_time_s: float = 30.0


@dataclass(frozen=True)
class PidParams:
    """PI(D) tuned for the default plant (SIMC, closed-loop time constant 2 x dead time)."""

    proportional_band_C: float = 190.0
    integral_s: float = 360.0
    derivative_s: float = 0.0
    output_low_percent: float = 0.0
    output_high_percent: float = 100.0
    sensor_break_output_percent: float = 0.0


class FurnaceModel:
    """Furnace plus controller; call :meth:`advance` with the simulated time."""

    step_s = 1.0
    loop_break_s = 600.0
    loop_break_rise_C = 2.0
    alarm_hysteresis_C = 1.0

    def __init__(
        self,
        plant: PlantParams | None = None,
        pid: PidParams | None = None,
        input_range_C: tuple[float, float] = (-200.0, 1372.0),
    ) -> None:
        self.plant, self.pid = plant or PlantParams(), pid or PidParams()
        self.input_range_C = input_range_C
        ambient = self.plant.ambient_C
        self.time_s = 0.0
        self.temperature_C = ambient  # true temperature of the tube
        self.local_setpoint_C = ambient
        self.remote_setpoint_C: float | None = None
        self.working_setpoint_C = ambient
        self.rate_limit_C_per_min = 0.0
        self.output_percent = 0.0
        self.manual = False
        self.manual_output_percent = 0.0
        self.sensor_break = False
        self.heater_failed = False
        self.alarm_1_setpoint_C = 1150.0
        self.alarm_2_setpoint_C = 50.0
        self.program = "reset"
        self.eeprom_writes = 0
        self.remote_selected = True
        self.rate_disabled = False
        self.rate_down_C_per_min: float | None = None  # None: the rate limit applies both ways
        self.setpoint_2_C = ambient
        self.sp2_selected = False
        self.programmer = Programmer(types={"end": 0, "rate": 1, "dwell": 3})
        self.watchdog = Watchdog()
        self._alarms = {"alarm_1": False, "alarm_2": False}
        self._integral = 0.0
        self._previous_pv = ambient
        self._heater_history: deque[tuple[float, float]] = deque([(-math.inf, 0.0)])
        self._saturated_since: tuple[float, float] | None = None  # (time, PV) when output hit its high limit
        self.loop_break = False

    # -- what the instrument shows ---------------------------------------------------
    @property
    def target_setpoint_C(self) -> float:
        """The active setpoint: a tripped watchdog's fallback (SP2), a running program's setpoint, SP2 when
        selected, the remote (comms) SP once received while remote is selected, else SP1."""
        if self.watchdog.tripped:
            return self.setpoint_2_C
        if self.programmer.active:
            return self.programmer.setpoint_C
        if self.sp2_selected:
            return self.setpoint_2_C
        if self.remote_selected and self.remote_setpoint_C is not None:
            return self.remote_setpoint_C
        return self.local_setpoint_C

    @property
    def pv_C(self) -> float:
        """Measured PV; a broken thermocouple reads upscale (input range high)."""
        return self.input_range_C[1] if self.sensor_break else self.temperature_C

    def flags(self) -> dict[str, bool]:
        """Status flags by name (the map gives their bits)."""
        low, high = self.input_range_C
        return {
            "alarm_1": self._alarms["alarm_1"],
            "alarm_2": self._alarms["alarm_2"],
            "alarm_3": False,
            "alarm_4": False,
            "manual": self.manual,
            "sensor_break": self.sensor_break,
            "loop_break": self.loop_break,
            "heater_fail": self.heater_failed and self.output_percent > 0.0,
            "tuning": False,
            "program_end": self.program == "complete" or self.programmer.state == "complete",
            "ramp_running": self.program == "run" or self.programmer.state == "run",
            "pv_out_of_range": not low <= self.pv_C <= high,
        }

    # -- what an operator or the comms can change --------------------------------------
    def set_local_setpoint(self, value_C: float) -> None:
        self.local_setpoint_C = value_C
        self.eeprom_writes += 1
        self._target_changed()

    def set_remote_setpoint(self, value_C: float) -> None:
        self.remote_setpoint_C = value_C
        self._target_changed()

    def set_rate_limit(self, value_C_per_min: float) -> None:
        self.rate_limit_C_per_min = value_C_per_min
        self._target_changed()

    def set_setpoint_2(self, value_C: float) -> None:
        self.setpoint_2_C = value_C
        self.eeprom_writes += 1
        self._target_changed()

    def select_remote(self, remote: bool) -> None:
        self.remote_selected = remote
        self._target_changed()

    def run_program(self) -> None:
        self.programmer.run(self.working_setpoint_C)

    def reset_program(self) -> None:
        self.programmer.reset()
        self._target_changed()

    def comms_request(self, wall_s: float) -> None:
        """A request reached the controller at wall-clock ``wall_s`` (the watchdog's clock)."""
        self.watchdog.request(wall_s)

    def watch_comms(self, wall_s: float) -> None:
        """Trip the watchdog after its timeout without a request: out of remote, to the fallback SP2."""
        if self.watchdog.check(wall_s):
            self.remote_selected, self.sp2_selected = False, True
            self._target_changed()

    def set_manual(self, manual: bool) -> None:
        if manual and not self.manual:
            self.manual_output_percent = self.output_percent  # bumpless
        self.manual = manual

    def _target_changed(self) -> None:
        if self.rate_limit_C_per_min <= 0:
            self.program = "reset"
        elif self.working_setpoint_C != self.target_setpoint_C:
            self.program = "run"

    # -- time ---------------------------------------------------------------------------
    def advance(self, to_time_s: float) -> None:
        """Integrate up to ``to_time_s`` in steps of at most ``step_s``."""
        while self.time_s < to_time_s:
            self._step(min(self.step_s, to_time_s - self.time_s))

    def _step(self, dt: float) -> None:
        self._ramp_working_setpoint(dt)
        self.output_percent = self._controller(dt)
        self._heat(dt)
        self.time_s += dt
        self._watch_loop()
        self._update_alarms()

    def _ramp_working_setpoint(self, dt: float) -> None:
        if self.programmer.state == "run":
            self.programmer.advance(dt)
        if self.programmer.active:
            self.working_setpoint_C = self.programmer.setpoint_C  # the programmer ramps
            return
        target, rate = self.target_setpoint_C, self.rate_limit_C_per_min
        if target < self.working_setpoint_C and self.rate_down_C_per_min is not None:
            rate = self.rate_down_C_per_min
        if self.rate_disabled:
            rate = 0.0
        if rate > 0:
            room = rate / 60.0 * dt
            gap = target - self.working_setpoint_C
            self.working_setpoint_C = (
                target if abs(gap) <= room + 1e-9 else self.working_setpoint_C + math.copysign(room, gap)
            )
        else:
            self.working_setpoint_C = target
        if self.program == "run" and self.working_setpoint_C == target:
            self.program = "complete"

    def _controller(self, dt: float) -> float:
        pid = self.pid
        low, high = pid.output_low_percent, pid.output_high_percent
        if self.sensor_break:
            return pid.sensor_break_output_percent
        pv = self.temperature_C
        gain = 100.0 / pid.proportional_band_C
        error = self.working_setpoint_C - pv
        proportional = gain * error
        derivative = -gain * pid.derivative_s * (pv - self._previous_pv) / dt if dt > 0 else 0.0
        self._previous_pv = pv
        if self.manual:
            self._integral = self.manual_output_percent - proportional - derivative  # bumpless return
            return max(low, min(high, self.manual_output_percent))
        integral = self._integral + gain * error * dt / pid.integral_s
        unclamped = proportional + integral + derivative
        if low <= unclamped <= high or (unclamped > high and error < 0) or (unclamped < low and error > 0):
            self._integral = integral  # integrate only when it does not wind up
        return max(low, min(high, proportional + self._integral + derivative))

    def _heat(self, dt: float) -> None:
        plant = self.plant
        heater = 0.0 if self.heater_failed else self.output_percent
        self._heater_history.append((self.time_s, heater))
        delayed_at = self.time_s - plant.dead_time_s
        history = self._heater_history
        while len(history) > 1 and history[1][0] <= delayed_at:
            history.popleft()
        steady = plant.ambient_C + plant.gain_C_per_percent * history[0][1]
        self.temperature_C = steady + (self.temperature_C - steady) * math.exp(-dt / plant.tau_s)

    def _watch_loop(self) -> None:
        if self.sensor_break or self.manual or self.output_percent < self.pid.output_high_percent:
            self._saturated_since, self.loop_break = None, False
            return
        if self._saturated_since is None:
            self._saturated_since = (self.time_s, self.temperature_C)
        since, pv_then = self._saturated_since
        if self.time_s - since >= self.loop_break_s:
            if self.temperature_C - pv_then < self.loop_break_rise_C:
                self.loop_break = True
            self._saturated_since = (self.time_s, self.temperature_C)

    def _update_alarms(self) -> None:
        pv, band = self.pv_C, self.alarm_hysteresis_C
        high_over = pv - self.alarm_1_setpoint_C
        deviation_over = pv - self.working_setpoint_C - self.alarm_2_setpoint_C
        for name, over in (("alarm_1", high_over), ("alarm_2", deviation_over)):
            self._alarms[name] = over > 0 or (self._alarms[name] and over > -band)
