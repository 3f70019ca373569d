"""One sensor in a trial: its readings into the file, and the recipe's limits on its channels.

Every sensor of the station is logged (a row per poll: each channel's value, or
NaN with its state when it is no measurement). A ``[[limit]]`` on a channel acts
when the reading has been outside its range, or no measurement at all, for
``after_s`` experiment seconds: ``abort`` stops the trial to its safe state,
``warn`` makes one event at the start and one at the end of each excursion.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from drivers import InstrumentError

from .layout import FLAG_LOST, FLAG_READ_FAILED, SENSOR_STATES

if TYPE_CHECKING:
    from ._instrument_config import SensorConfig
    from ._trial_context import TrialContext
    from ._trial_plan import LimitPlan

__all__ = ["SensorLog", "STATE_CODES", "sensor_table"]

#: The code of each channel state in the file's ``<channel>_state`` columns (its index in the layout's list).
STATE_CODES = {state: code for code, state in enumerate(SENSOR_STATES)}


def sensor_table(name: str) -> str:
    """The trial file's key of a sensor's table."""
    return f"sensor:{name}"


class _LimitWatch:
    """One limit's excursion: since when the channel has been outside, and whether the limit acted."""

    def __init__(self, plan: LimitPlan) -> None:
        self.plan = plan
        self.outside_since_s: float | None = None
        self.acted = False

    def describe(self) -> str:
        limit = self.plan.limit
        if limit.min is not None and limit.max is not None:
            return f"{limit.min:g}-{limit.max:g}"
        return f">= {limit.min:g}" if limit.min is not None else f"<= {limit.max:g}"

    def outside(self, value: float) -> bool:
        limit = self.plan.limit
        return (
            math.isnan(value)
            or (limit.min is not None and value < limit.min)
            or (limit.max is not None and value > limit.max)
        )


class SensorLog:
    """Poll one sensor, record each reading, act on its limits."""

    def __init__(self, config: SensorConfig, sensor, limits: tuple[LimitPlan, ...]) -> None:
        self.config = config
        self.name = config.name
        self.sensor = sensor
        self.table = sensor_table(config.name)
        self.source = config.name[:16]
        self.channels = dict(sensor.channels)  # name -> units
        self._watches = [_LimitWatch(plan) for plan in limits if plan.sensor.name == config.name]
        self.last: dict[str, float] = {}

    def run(self, trial: TrialContext) -> None:
        """Poll on the station's interval until the trial stops (a thread's body)."""
        lost_since = None
        next_poll = time.monotonic()
        while not trial.stop.is_set():
            now_s = trial.clock.now_s()
            try:
                reading = self.sensor.read()
            except InstrumentError as error:
                lost_since = trial.instrument_lost(self.source, error, lost_since, self.sensor)
                row = {name: math.nan for name in self.channels}
                states = {f"{name}_state": 0 for name in self.channels}
                trial.file.append(self.table, time=now_s, **row, **states, flag=FLAG_READ_FAILED | FLAG_LOST)
            else:
                if lost_since is not None:
                    trial.event(
                        "info", self.source, f"{self.source} answers again after {time.monotonic() - lost_since:.1f} s"
                    )
                    lost_since = None
                row = {name: reading[name].value for name in self.channels}
                states = {
                    f"{name}_state": STATE_CODES.get(reading[name].state, STATE_CODES["probe_fault"])
                    for name in self.channels
                }
                flag = 0 if reading.ok else FLAG_READ_FAILED
                trial.file.append(self.table, time=now_s, **row, **states, flag=flag)
                self.last = row
            self._check_limits(trial, row, now_s)
            next_poll += self.config.poll_interval_s
            trial.stop.wait(max(0.0, next_poll - time.monotonic()))

    def _check_limits(self, trial: TrialContext, row: dict[str, float], now_s: float) -> None:
        for watch in self._watches:
            limit = watch.plan.limit
            value = row[limit.channel]
            units = self.channels.get(limit.channel, "")
            units = "" if units == "1" else units  # a pH has no unit
            shown = "no measurement" if math.isnan(value) else f"{value:.4g} {units}".rstrip()
            what = f"{self.name} {limit.channel} {shown}, limit {watch.describe()} {units}".rstrip()
            if not watch.outside(value):
                if watch.acted and limit.action == "warn":
                    trial.event("info", "interlock", f"{self.name} {limit.channel} back within {watch.describe()}")
                watch.outside_since_s, watch.acted = None, False
                continue
            if watch.outside_since_s is None:
                watch.outside_since_s = now_s
            if watch.acted or now_s - watch.outside_since_s < limit.after_s:
                continue
            watch.acted = True
            if limit.action == "abort":
                trial.event("error", "interlock", f"{what}: aborting to safe state")
                trial.request_abort(f"interlock: {self.name} {limit.channel} outside {watch.describe()}")
            else:
                trial.event("warning", "interlock", f"{what} ({watch.plan.where}: warn only)")
