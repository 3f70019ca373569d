"""What is in the spectrometer's cell: a blank, a standard, or the process stream.

On a real bench a person fills the cell, so the program asks them and waits for
Enter. On the simulated bench the same steps are simulator commands (the ``SIM:``
namespace, which is not part of the instrument's dialect).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["Cell", "OperatorCell", "SimulatedCell"]


class Cell(Protocol):
    def load_blank(self) -> None: ...
    def load_standard(self, name: str, concentrations_g_per_L: Mapping[str, float]) -> None: ...
    def start_process_stream(self) -> None: ...


class OperatorCell:
    """A real bench: tell the operator what to put in the cell and wait until they confirm."""

    def __init__(self, ask: Callable[[str], object] = input):
        self._ask = ask

    def load_blank(self) -> None:
        self._ask("Fill the cell with the blank (matrix without rare earths), then press Enter: ")

    def load_standard(self, name: str, concentrations_g_per_L: Mapping[str, float]) -> None:
        contents = ", ".join(f"{el} {value:g} g/L" for el, value in concentrations_g_per_L.items()) or "blank"
        self._ask(f"Fill the cell with standard {name!r} ({contents}), then press Enter: ")

    def start_process_stream(self) -> None:
        self._ask("Connect the cell to the process stream, then press Enter: ")


class SimulatedCell:
    """The simulated bench: load standards and start the scenario with SIM: commands."""

    def __init__(self, spectrometer, scenario_loaded: bool):
        self._spectrometer = spectrometer
        self._scenario_loaded = scenario_loaded

    def load_blank(self) -> None:
        self._spectrometer.write("SIM:STAN")

    def load_standard(self, name: str, concentrations_g_per_L: Mapping[str, float]) -> None:
        self._spectrometer.write(
            "SIM:STAN " + ",".join(f"{el}={float(value):.9g}" for el, value in concentrations_g_per_L.items())
        )

    def start_process_stream(self) -> None:
        if self._scenario_loaded:
            self._spectrometer.write("SIM:SCEN:STAR")
