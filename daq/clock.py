"""The experiment clock: seconds since trial start, sped up on a simulated bench."""

from __future__ import annotations

import threading
import time

__all__ = ["ExperimentClock"]


class ExperimentClock:
    """Experiment time = ``speed`` x wall time since :meth:`start` (speed 1 on a real bench)."""

    def __init__(self, speed: float = 1.0):
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = float(speed)
        self._start = time.monotonic()

    def start(self) -> None:
        self._start = time.monotonic()

    def now_s(self) -> float:
        """Experiment seconds since start."""
        return (time.monotonic() - self._start) * self.speed

    def wait_until(self, experiment_s: float, stop: threading.Event) -> bool:
        """Wait until the clock reads ``experiment_s`` or ``stop`` is set; True if stopped."""
        remaining_wall_s = (experiment_s - self.now_s()) / self.speed
        if remaining_wall_s <= 0:
            return stop.is_set()
        return stop.wait(remaining_wall_s)
