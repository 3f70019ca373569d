"""The simulated controller's own setpoint programmer and comms watchdog (pure Python, no I/O).

Programmer (as a map's [programmer] describes it), one program; run starts
the programmer setpoint at the working setpoint; reset hands the setpoint back
to the controller's local/remote one. By the map's ``style``:

- ``"typed"`` (the 2400): segments ``{"type", "target", "time_or_rate",
  "end_type"}`` by the map's segment type codes. A rate segment ramps the
  programmer setpoint to its target at its rate (per minute), a dwell segment
  holds it for its duration (minutes), an end segment ends the program: it
  dwells at the last setpoint for ever (end type "dwell") or resets.
- ``"ramp_dwell"`` (the 3216P): segments ``{"target", "rate", "dwell"}``; each
  ramps to its target at its rate (0: a step), then holds it for its dwell;
  after the last of ``count`` segments the program ends as the program-wide
  ``end_type`` says: ``end_dwell`` dwells at the last setpoint for ever, any
  other value resets (the simulator models no "off" or "SP2" end).

Watchdog (as the EPC3000 map describes it, [watchdog]): with a timeout set,
no request for that long (wall-clock seconds: comms run in real time, the
plant in simulated time) trips it: the flag is set and the controller leaves
the remote setpoint for its fallback setpoint. It stays tripped until the
timeout is written again (the driver re-arms it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Programmer", "Watchdog"]


@dataclass
class Programmer:
    """One program; ``advance`` moves the programmer setpoint ``setpoint_C`` along it."""

    types: dict[str, int]  # typed: "end", "rate", "dwell" -> the map's segment type codes
    end_dwell: int = 0
    segments: dict[int, dict[str, float]] = field(default_factory=dict)
    state: str = "reset"  # reset, run, complete
    segment: int = 0  # 1-based while running
    setpoint_C: float = 0.0
    style: str = "typed"  # or "ramp_dwell"
    count: int = 0  # ramp_dwell: the segments the programmer runs
    end_type: int = 0  # ramp_dwell: the program's end type (the map's end_register)
    _dwell_left_s: float = 0.0
    _ramping: bool = False  # ramp_dwell: in the segment's ramp (else its dwell)

    def field(self, number: int, name: str) -> float:
        return self.segments.get(number, {}).get(name, 0.0)

    def set_field(self, number: int, name: str, value: float) -> None:
        self.segments.setdefault(number, {})[name] = value

    def run(self, working_setpoint_C: float) -> None:
        if self.state == "run":
            return
        self.state, self.segment, self.setpoint_C = "run", 0, working_setpoint_C
        self._next()

    def reset(self) -> None:
        self.state, self.segment = "reset", 0

    @property
    def active(self) -> bool:
        """Whether the programmer's setpoint is the controller's (running, or ended dwelling at its last SP)."""
        return self.state in ("run", "complete")

    def _next(self) -> None:
        self.segment += 1
        if self.style == "ramp_dwell":
            if self.segment > self.count:
                self.segment = self.count
                self._end(self.end_type)
            else:
                self._ramping = True
            return
        kind = self._kind(self.segment)
        if kind == "dwell":
            self._dwell_left_s = 60.0 * self.field(self.segment, "time_or_rate")
        elif kind == "end" or kind is None:
            self._end(int(self.field(self.segment, "end_type")))

    def _end(self, end_type: int) -> None:
        if end_type == self.end_dwell:
            self.state = "complete"
        else:
            self.reset()

    def _kind(self, number: int) -> str | None:
        code = int(self.field(number, "type"))
        return next((kind for kind, value in self.types.items() if value == code), None)

    def advance(self, dt: float) -> None:
        """``dt`` simulated seconds of the running program."""
        if self.style == "ramp_dwell":
            self._advance_ramp_dwell(dt)
            return
        while self.state == "run" and dt > 1e-12:
            kind = self._kind(self.segment)
            if kind == "rate":
                target = self.field(self.segment, "target")
                rate = self.field(self.segment, "time_or_rate") / 60.0
                gap = target - self.setpoint_C
                needed_s = abs(gap) / rate if rate > 0 else 0.0
                if needed_s <= dt + 1e-9:
                    self.setpoint_C, dt = target, dt - needed_s
                    self._next()
                else:
                    self.setpoint_C += math.copysign(rate * dt, gap)
                    dt = 0.0
            elif kind == "dwell":
                if self._dwell_left_s <= dt:
                    dt -= self._dwell_left_s
                    self._next()
                else:
                    self._dwell_left_s -= dt
                    dt = 0.0
            else:
                self._next()

    def _ramp_to(self, target: float, rate_per_min: float, dt: float) -> float:
        """Move the programmer setpoint towards ``target``; the time left of ``dt`` once it is there, else 0."""
        rate = rate_per_min / 60.0
        gap = target - self.setpoint_C
        needed_s = abs(gap) / rate if rate > 0 else 0.0
        if needed_s <= dt + 1e-9:
            self.setpoint_C = target
            return max(0.0, dt - needed_s)
        self.setpoint_C += math.copysign(rate * dt, gap)
        return 0.0

    def _advance_ramp_dwell(self, dt: float) -> None:
        while self.state == "run" and dt > 1e-12:
            number = self.segment
            if self._ramping:
                target = self.field(number, "target")
                dt = self._ramp_to(target, self.field(number, "rate"), dt)
                if self.setpoint_C == target:
                    self._ramping, self._dwell_left_s = False, 60.0 * self.field(number, "dwell")
            elif self._dwell_left_s <= dt:
                dt -= self._dwell_left_s
                self._dwell_left_s = 0.0
                self._next()
            else:
                self._dwell_left_s -= dt
                dt = 0.0
        if self.state == "run" and not self._ramping and self._dwell_left_s <= 0.0:
            self._next()  # a segment without a dwell ends as its ramp does (also with no time left)


@dataclass
class Watchdog:
    """The comms watchdog: ``timeout_s`` of silence (wall clock) trips it; writing the timeout re-arms it."""

    timeout_s: float = 0.0  # 0 = off
    tripped: bool = False
    last_request_s: float | None = None

    def arm(self, timeout_s: float, now_s: float) -> None:
        self.timeout_s, self.tripped, self.last_request_s = timeout_s, False, now_s

    def request(self, now_s: float) -> None:
        self.last_request_s = now_s

    def check(self, now_s: float) -> bool:
        """Whether it trips now (True once, when it does)."""
        if self.tripped or self.timeout_s <= 0 or self.last_request_s is None:
            return False
        if now_s - self.last_request_s >= self.timeout_s:
            self.tripped = True
            return True
        return False
