"""What is in the spectrometer's cell: a blank, a standard, or the process stream.

On a real bench a person fills the cell, so the program asks them and waits for
Enter. On the simulated bench the same steps are simulator commands (the ``SIM:``
namespace, which is not part of the instrument's dialect).
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections.abc import Callable, Mapping
from typing import Protocol

__all__ = ["Cell", "OperatorCell", "SimulatedCell", "operator_prompt", "OPERATOR_TIMEOUT_S"]

#: The longest the program waits for the operator's Enter (15 min) before it gives up.
OPERATOR_TIMEOUT_S = 900.0


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


def operator_prompt(timeout_s: float = OPERATOR_TIMEOUT_S, stdin=None, out=None) -> Callable[[str], str]:
    """An ``ask`` for :class:`OperatorCell` that waits at most ``timeout_s`` for the operator's Enter.

    Raises :class:`TimeoutError` when nobody answers in time and :class:`RuntimeError`
    when standard input is closed (no operator at the bench).
    """

    def ask(prompt: str) -> str:
        stream_in = stdin if stdin is not None else sys.stdin
        stream_out = out if out is not None else sys.stderr
        stream_out.write(prompt)
        stream_out.flush()
        if stream_in is None:
            raise RuntimeError("no standard input: on a real bench an operator must answer at the terminal")
        try:
            fd = stream_in.fileno()
        except (OSError, ValueError):
            raise RuntimeError(
                "standard input is not a terminal or a pipe: on a real bench an operator must answer at the terminal"
            ) from None
        deadline = time.monotonic() + timeout_s
        answer = b""
        while not answer.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(0.0, remaining))[0] if remaining > 0 else []
            if not ready:
                raise TimeoutError(f"no answer from the operator within {timeout_s:g} s: given up")
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError(
                    "standard input closed before the operator answered: on a real bench an operator must "
                    "answer at the terminal"
                )
            answer += chunk
        return answer.decode(errors="replace").strip()

    return ask
