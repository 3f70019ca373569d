"""What an instrument's loop in a trial needs of the trial, and how it names its tables in the file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import threading

    from .clock import ExperimentClock
    from .store import TrialWriter

__all__ = ["TrialContext", "instrument_table"]


class TrialContext(Protocol):
    """The trial as its instruments' loops see it (:class:`daq.runner.TrialRunner` is one)."""

    clock: ExperimentClock
    stop: threading.Event

    @property
    def file(self) -> TrialWriter: ...
    def event(self, level: str, source: str, message: str) -> None: ...
    def print(self, text: str) -> None: ...
    def request_abort(self, reason: str) -> None: ...
    def instrument_lost(self, name: str, error: Exception, lost_since: float | None, instrument) -> float: ...


def instrument_table(table: str, name: str) -> str:
    """The trial file's key of one instrument's table (``furnace:zone-2``, ``analysis:strip``): it names the
    table of that instrument whether or not it is the primary one (whose table the bare name means too)."""
    return f"{table}:{name}"
