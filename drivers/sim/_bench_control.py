"""The bench around a simulated spectrometer, shared by its wire protocols: clock, cell, SIM: namespace.

Both simulators (``drivers.sim.spectrometer``, SCPI on one socket, and
``drivers.sim.ocean``, Ocean Binary Protocol with a separate text control port)
sit over the same physics (:mod:`._optics`, :mod:`._bench_drift`,
:mod:`.scenario`) and the same bench. This module holds what they share:

- :class:`SimClock` (simulated time at a speed factor) and :class:`Cell` (what
  is in the flow cell, with the bench drifts);
- the SCPI-style text layer: :class:`CommandTable` (header patterns to handlers),
  the parameter parsers (:func:`parse_number` ...), :class:`ScpiFault`,
  :class:`ErrorQueue` and :class:`Device` (program message in, answers out);
- :class:`SimControl`: the ``SIM:`` namespace (standards, scenarios, truth,
  noise figure, line faults, absurd answers, clock speed, bench drifts, the
  cascade's sampling point and its truth).

The instrument and its line faults stay with each simulator: :class:`SimControl`
asks of them only what :class:`BenchInstrument` and :class:`FaultLine` say.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ._bench_drift import (
    ACID_RANGE_MOL_PER_L,
    K_T_RANGE_NM_PER_C,
    LAB_TEMPERATURE_RANGE_C,
    LAG_RANGE_S,
    MATRICES,
    SOLUTION_TEMPERATURE_RANGE_C,
    BenchDrift,
    DriftState,
    Solution,
    matrix_name,
)
from ._optics import Optics
from .scenario import (
    MAX_SCENARIO_TIME_S,
    SAMPLING_POINTS,
    Scenario,
    ScenarioError,
    format_concentrations,
    load_scenario,
    parse_concentrations,
)

__all__ = [
    "ABSURD_QUANTITIES",
    "Answer",
    "BenchInstrument",
    "Cell",
    "CommandTable",
    "Device",
    "ErrorQueue",
    "FaultLine",
    "Handler",
    "ScpiFault",
    "SimClock",
    "SimControl",
    "TextInstrument",
    "parse_keyword",
    "parse_number",
    "parse_ranged",
    "parse_switch",
    "split_units",
]

MAX_ERRORS = 16
SCPI_NAN = 9.91e37

#: Quantities whose answer SIM:ABSurd can replace: short form -> (accepted forms, what it is).
ABSURD_QUANTITIES = {
    "PIX": (("PIX", "PIXELS"), "pixel count (SENS:DET:PIX?)"),
    "ITIM": (("ITIM", "ITIME"), "integration time (SENS:INT:TIME?)"),
    "AVER": (("AVER", "AVERAGES"), "averages (SENS:AVER:COUN?)"),
    "COEF": (("COEF", "COEFFICIENTS"), "wavelength coefficients (CALC:WAV:COEF?)"),
}


class ScpiFault(Exception):
    """An SCPI error to put in the error queue (code, message)."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclass
class Answer:
    """One answer to send: bytes, whether it is a spectrum, and the wall time it is ready."""

    data: bytes
    is_spectrum: bool = False
    ready_wall_s: float = 0.0


# --- clock and cell --------------------------------------------------------------------------
class SimClock:
    """Simulated seconds since start; runs at ``speed`` times wall time."""

    def __init__(self, speed: float = 1.0):
        self._speed = self._check(speed)
        self._wall0 = time.monotonic()
        self._sim0 = 0.0

    @staticmethod
    def _check(speed: float) -> float:
        if not (math.isfinite(speed) and 1e-3 <= speed <= 1e6):
            raise ValueError(f"speed factor must be within 0.001-1e6, got {speed!r}")
        return float(speed)

    @property
    def speed(self) -> float:
        return self._speed

    def now_s(self) -> float:
        """Simulated time (s)."""
        return self._sim0 + self._speed * (time.monotonic() - self._wall0)

    def set_speed(self, speed: float) -> None:
        """Change the speed factor without a jump in simulated time."""
        speed = self._check(speed)
        self._sim0, self._wall0, self._speed = self.now_s(), time.monotonic(), speed


class Cell:
    """What is in the flow cell: a loaded standard (water when empty) or a running scenario.

    Besides concentrations, the solution has a temperature, an acid matrix and an
    acidity (:attr:`solution`, set with ``SIM:SOL:...``; a scenario's ``[solution]``
    while it runs). The cell also carries the bench's drifts (:attr:`drift`),
    because a running scenario drives the lab's temperature and replugs the fibre:
    when it stops, what it drove is frozen as it is, like the concentrations.

    ``sampling_point`` (``"feed"``, ``"raffinate"``, ``"strip"``, or ``None``): where the cell
    is plumbed into a scenario's ``[cascade]``; a running scenario with one fills the cell with
    that point's solution (``Scenario.concentrations_at(t, sampling_point)``).
    """

    def __init__(self, drift: BenchDrift | None = None, sampling_point: str | None = None) -> None:
        if sampling_point is not None and sampling_point not in SAMPLING_POINTS:
            raise ValueError(f"sampling point must be one of {', '.join(SAMPLING_POINTS)}, got {sampling_point!r}")
        self.sampling_point = sampling_point
        self.standard: dict[str, float] = {}
        self.scenario: Scenario | None = None
        self.scenario_start_s: float | None = None
        self.drift = drift if drift is not None else BenchDrift()
        #: Temperature, matrix and acid of a loaded standard or a held cell.
        self.solution = Solution()

    @property
    def running(self) -> bool:
        return self.scenario is not None and self.scenario_start_s is not None

    def load_standard(self, concentrations: dict[str, float], now_s: float | None = None) -> None:
        if self.running and now_s is not None:
            self._leave_scenario(now_s)
        self.standard = dict(concentrations)
        self.scenario_start_s = None

    def start_scenario(self, now_s: float, elapsed_s: float = 0.0) -> None:
        """Run the loaded scenario as if it had started ``elapsed_s`` simulated seconds ago."""
        if self.scenario is None:
            raise ScpiFault(-221, "Settings conflict;no scenario loaded (SIM:SCEN <path>)")
        if self.running:
            self._leave_scenario(now_s)
        scenario = self.scenario
        start = self.scenario_start_s = now_s - elapsed_s
        if scenario.drift is not None:
            self.drift.apply(scenario.drift)
        if scenario.lab is not None:
            self.drift.lab.follow(start, lambda t: scenario.lab_temperature_at(t - start))

    def stop_scenario(self, now_s: float) -> None:
        if self.running:
            self.standard = self.concentrations_at(now_s)
            self._leave_scenario(now_s)
            self.scenario_start_s = None

    def _leave_scenario(self, now_s: float) -> None:
        """Freeze what the running scenario drove: the solution, the lab's temperature, its fibre replugs."""
        scenario, start_s = self.scenario, self.scenario_start_s
        assert scenario is not None and start_s is not None  # called only while a scenario runs
        self.solution = self.solution_at(now_s)
        if scenario.lab is not None:
            self.drift.lab.hold(now_s, self.drift.lab_temperature_at(now_s))
        self.drift.fibre_offset_nm += scenario.replug_offset_nm(now_s - start_s)

    def concentrations_at(self, now_s: float) -> dict[str, float]:
        """Element concentrations (g/L) in the cell at simulated time ``now_s``."""
        if self.scenario is not None and self.scenario_start_s is not None:
            return self.scenario.concentrations_at(now_s - self.scenario_start_s, self.sampling_point)
        return dict(self.standard)

    def solution_at(self, now_s: float) -> Solution:
        """Temperature, matrix and acid of the solution in the cell at simulated time ``now_s``."""
        scenario, start_s = self.scenario, self.scenario_start_s
        if scenario is not None and start_s is not None and scenario.solution is not None:  # running
            return scenario.solution_at(now_s - start_s, self.drift.lab_temperature_at(now_s), self.solution)
        return self.solution

    def scenario_fibre_nm(self, now_s: float) -> float:
        """Axis steps of the running scenario's fibre replugs so far (nm)."""
        scenario, start_s = self.scenario, self.scenario_start_s
        return scenario.replug_offset_nm(now_s - start_s) if scenario is not None and start_s is not None else 0.0

    @property
    def drives_lab(self) -> bool:
        return self.running and self.scenario is not None and self.scenario.lab is not None

    @property
    def drives_solution(self) -> bool:
        return self.running and self.scenario is not None and self.scenario.solution is not None

    def drift_state_at(self, now_s: float) -> DriftState:
        """The bench drifts at simulated time ``now_s`` (the truth of SIM:TRUT:DRIF?)."""
        return self.drift.state_at(now_s, self.solution_at(now_s), self.scenario_fibre_nm(now_s))

    def optics_arguments(self, now_s: float) -> dict:
        """What the drifts pass to ``Optics.signal_rate`` at ``now_s``: nothing while every drift is off."""
        return self.drift_state_at(now_s).optics_arguments() if self.drift.any_on else {}


# --- SCPI parsing ----------------------------------------------------------------------------
Handler = Callable[[str], "Answer | str | None"]


def _compile(pattern: str) -> tuple[tuple[frozenset[str], bool], ...]:
    """'SYSTem:ERRor[:NEXT]' -> nodes, each with its accepted forms (short, long) and optional flag."""
    nodes = []
    for token in pattern.replace("[:", ":[").split(":"):
        optional = token.startswith("[")
        word = token.strip("[]")
        short = "".join(ch for ch in word if ch.isupper() or ch in "*")
        nodes.append((frozenset({short, word.upper()}), optional))
    return tuple(nodes)


def _matches(nodes, tokens) -> bool:
    if not nodes:
        return not tokens
    (forms, optional), rest = nodes[0], nodes[1:]
    if tokens and tokens[0] in forms and _matches(rest, tokens[1:]):
        return True
    return optional and _matches(rest, tokens)


def split_units(line: str) -> list[str]:
    """Split a program message at ';' outside double quotes."""
    units, current, quoted = [], [], False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            units.append("".join(current))
            current = []
        else:
            current.append(ch)
    units.append("".join(current))
    return [u.strip() for u in units if u.strip()]


class CommandTable:
    """Header patterns -> handlers, for commands and queries."""

    def __init__(self) -> None:
        self._entries: list[tuple[tuple, bool, Handler]] = []

    def add(self, pattern: str, handler: Handler, query: bool = False) -> None:
        self._entries.append((_compile(pattern), query, handler))

    def find(self, header: str) -> Handler | None:
        query = header.endswith("?")
        tokens = header.rstrip("?").lstrip(":").upper().split(":")
        for nodes, is_query, handler in self._entries:
            if is_query == query and _matches(nodes, tokens):
                return handler
        return None


def parse_keyword(params: str, choices: dict[str, str]) -> str:
    """The value ``choices`` gives the (upper-cased) keyword ``params``; -109 if missing, -224 if not a choice."""
    word = params.strip().upper()
    if not word:
        raise ScpiFault(-109, "Missing parameter")
    if word not in choices:
        raise ScpiFault(-224, f"Illegal parameter value;{params.strip()}")
    return choices[word]


def parse_switch(params: str) -> bool:
    """``ON``/``OFF``/``1``/``0`` as a bool."""
    return parse_keyword(params, {"ON": "1", "OFF": "0", "1": "1", "0": "0"}) == "1"


def parse_ranged(params: str, bounds: tuple[float, float], what: str, unit: str) -> float:
    """A number (see :func:`parse_number`) within ``bounds``, else -222 naming ``what`` and ``unit``."""
    value = parse_number(params)
    low, high = bounds
    if not low <= value <= high:
        raise ScpiFault(-222, f"Data out of range;{what} {value:g} {unit} not in {low:g} to {high:g} {unit}")
    return value


def parse_number(params: str, keywords: dict[str, float] | None = None) -> float:
    """A finite number with an optional ``S``/``MS``/``US`` suffix (in seconds then), or one of ``keywords``."""
    text = params.strip().upper()
    if not text:
        raise ScpiFault(-109, "Missing parameter")
    if keywords and text in keywords:
        return keywords[text]
    scale = 1.0
    for suffix, factor in (("MS", 1e-3), ("US", 1e-6), ("S", 1.0)):
        if text.endswith(suffix):
            text, scale = text[: -len(suffix)].strip(), factor
            break
    try:
        value = float(text) * scale
    except ValueError:
        raise ScpiFault(-104, f"Data type error;{params.strip()}") from None
    if not math.isfinite(value):
        raise ScpiFault(-224, f"Illegal parameter value;{params.strip()}")
    return value


class ErrorQueue:
    """The SCPI error queue: at most ``MAX_ERRORS`` entries, the last one ``-350,"Queue overflow"`` when full."""

    def __init__(self) -> None:
        self._errors: deque[tuple[int, str]] = deque()

    def __len__(self) -> int:
        return len(self._errors)

    def push(self, code: int, message: str) -> None:
        if len(self._errors) >= MAX_ERRORS - 1:
            if len(self._errors) == MAX_ERRORS - 1:
                self._errors.append((-350, "Queue overflow"))
            return
        self._errors.append((code, message))

    def clear(self) -> None:
        self._errors.clear()

    def next_answer(self) -> str:
        """``SYSTem:ERRor?``: the oldest error as ``<code>,"<message>"`` (and remove it), or ``0,"No error"``."""
        code, message = self._errors.popleft() if self._errors else (0, "No error")
        return f'{code},"{message}"'


# --- the SIM: namespace ----------------------------------------------------------------------
class BenchInstrument(Protocol):
    """What :class:`SimControl` needs of the simulated instrument it sits beside."""

    clock: SimClock
    cell: Cell
    optics: Optics
    #: Answers sent instead of the truth, by quantity (keys of ``ABSURD_QUANTITIES``).
    absurd_answers: dict[str, str]

    @property
    def integration_time_s(self) -> float: ...

    @property
    def averages(self) -> int: ...


class FaultLine(Protocol):
    """What :class:`SimControl` needs of a simulator's line faults (``SIM:FAULt``)."""

    def arm(self, params: str) -> None: ...

    def describe(self) -> str: ...

    def describe_last(self) -> str: ...


class SimControl:
    """The SIM: namespace: the bench around the instrument. Not part of the instrument dialect.

    ``absurd_quantities``: the quantities ``SIM:ABSurd`` may replace (a subset of
    ``ABSURD_QUANTITIES``: those the instrument's protocol has an answer for).
    """

    def __init__(
        self,
        instrument: BenchInstrument,
        faults: FaultLine,
        absurd_quantities: Mapping[str, tuple[tuple[str, ...], str]] = ABSURD_QUANTITIES,
    ):
        self.instrument, self.faults = instrument, faults
        self.clock, self.cell, self.optics = instrument.clock, instrument.cell, instrument.optics
        self.absurd_quantities = dict(absurd_quantities)

    def register(self, table: CommandTable) -> None:
        """Add the SIM: commands to ``table``."""
        table.add("SIM:STANdard", lambda p: self.cell.load_standard(self._concentrations(p), self.clock.now_s()))
        table.add("SIM:STANdard", lambda p: format_concentrations(self.cell.standard), query=True)
        table.add("SIM:SCENario", self._load_scenario)
        table.add("SIM:SCENario", self._scenario_state, query=True)
        table.add("SIM:SCENario:STARt", self._start_scenario)
        table.add("SIM:SCENario:STOP", lambda p: self.cell.stop_scenario(self.clock.now_s()))
        table.add(
            "SIM:TRUTh", lambda p: format_concentrations(self.cell.concentrations_at(self.clock.now_s())), query=True
        )
        table.add("SIM:NOISe", self._noise, query=True)
        table.add("SIM:FAULt", self.faults.arm)
        table.add("SIM:FAULt", lambda p: self.faults.describe(), query=True)
        table.add("SIM:FAULt:LAST", lambda p: self.faults.describe_last(), query=True)
        table.add("SIM:ABSurd", self._set_absurd)
        table.add("SIM:ABSurd", self._absurd_state, query=True)
        table.add("SIM:SPEed", self._set_speed)
        table.add("SIM:SPEed", lambda p: f"{self.clock.speed:g}", query=True)
        table.add("SIM:TIME", lambda p: f"{self.clock.now_s():.6f}", query=True)
        self._register_drifts(table)

    # --- bench drifts (drivers/sim/_bench_drift.py) ---------------------------------------------------
    def _register_drifts(self, table: CommandTable) -> None:
        drift = self.cell.drift
        table.add("SIM:DRIFt", lambda p: drift.set_all(parse_switch(p)))
        table.add("SIM:DRIFt", lambda p: f"{int(drift.wavelength)},{int(drift.bands)},{int(drift.matrix)}", query=True)
        for header, name in (
            ("SIM:DRIFt:WAVelength", "wavelength"),
            ("SIM:DRIFt:BANDs", "bands"),
            ("SIM:DRIFt:MATRix", "matrix"),
        ):
            table.add(header, lambda p, name=name: setattr(drift, name, parse_switch(p)))
            table.add(header, lambda p, name=name: str(int(getattr(drift, name))), query=True)
        table.add(
            "SIM:DRIFt:KT", lambda p: setattr(drift, "k_T_nm_per_C", parse_ranged(p, K_T_RANGE_NM_PER_C, "k_T", "nm/C"))
        )
        table.add("SIM:DRIFt:KT", lambda p: f"{drift.k_T_nm_per_C:.9g}", query=True)
        table.add(
            "SIM:DRIFt:TCAL",
            lambda p: setattr(
                drift, "calibration_temperature_C", parse_ranged(p, LAB_TEMPERATURE_RANGE_C, "T_cal", "C")
            ),
        )
        table.add("SIM:DRIFt:TCAL", lambda p: f"{drift.calibration_temperature_C:.9g}", query=True)
        table.add("SIM:LAB:TEMPerature", self._set_lab_temperature)
        table.add("SIM:LAB:TEMPerature", lambda p: f"{drift.lab_temperature_at(self.clock.now_s()):.9g}", query=True)
        table.add("SIM:LAB:LAG", lambda p: setattr(drift, "lag_s", parse_ranged(p, LAG_RANGE_S, "lag", "s")))
        table.add("SIM:LAB:LAG", lambda p: f"{drift.lag_s:.9g}", query=True)
        table.add(
            "SIM:SPECtrometer:TEMPerature",
            lambda p: f"{drift.spectrometer_temperature_at(self.clock.now_s()):.9g}",
            query=True,
        )
        table.add("SIM:SOLution:TEMPerature", self._set_solution_temperature)
        table.add(
            "SIM:SOLution:TEMPerature",
            lambda p: f"{self.cell.solution_at(self.clock.now_s()).temperature_C:.9g}",
            query=True,
        )
        table.add("SIM:SOLution:MATRix", self._set_matrix)
        table.add("SIM:SOLution:MATRix", self._matrix_state, query=True)
        table.add("SIM:FIBRe:REPLug", self._replug)
        table.add(
            "SIM:FIBRe",
            lambda p: f"{drift.fibre_offset_nm + self.cell.scenario_fibre_nm(self.clock.now_s()):.9g}",
            query=True,
        )
        table.add("SIM:TRUTh:DRIFt", lambda p: self.cell.drift_state_at(self.clock.now_s()).format(), query=True)
        table.add("SIM:SAMPling", self._set_sampling_point)
        table.add("SIM:SAMPling", lambda p: (self.cell.sampling_point or "none").upper(), query=True)
        table.add("SIM:TRUTh:CASCade", self._cascade_truth, query=True)

    # --- the cascade's sampling point (drivers/sim/_cascade.py) ---------------------------------------
    def _set_sampling_point(self, params: str) -> None:
        """``FEED``, ``RAFFinate``, ``STRip`` (or the full names) or ``NONE``: where the cell is plumbed."""
        choices = {"NONE": ""}
        for point in SAMPLING_POINTS:
            choices[point.upper()] = point
        choices.update({"RAFF": "raffinate", "STR": "strip"})
        word = params.strip().upper()
        if word and word not in choices:
            raise ScpiFault(-224, f"Illegal parameter value;{params.strip()} (FEED, RAFF, STR or NONE)")
        self.cell.sampling_point = parse_keyword(params, choices) or None

    def _cascade_truth(self, params: str) -> str:
        """The cascade's truth now (the running scenario), or at scenario time ``<s>`` (the loaded one).

        ``POINT=<point>,CASCADE=0`` when the loaded scenario has none; keys in docs/instruments/spectrometer.md.
        """
        cell = self.cell
        head = f"POINT={(cell.sampling_point or 'none').upper()}"
        scenario = cell.scenario
        if scenario is None or scenario.cascade is None:
            return f"{head},CASCADE=0"
        if params.strip():
            time_s = parse_ranged(params, (-MAX_SCENARIO_TIME_S, MAX_SCENARIO_TIME_S), "scenario time", "s")
        elif cell.scenario_start_s is not None:
            time_s = self.clock.now_s() - cell.scenario_start_s
        else:
            raise ScpiFault(-221, "Settings conflict;no scenario running (SIM:TRUT:CASC? <s>: at scenario time s)")
        truth = scenario.cascade_truth_at(time_s)
        items: list[tuple[str, float | int]] = [("CASCADE", 1), ("SCENARIO_S", time_s), ("PH", truth.pH)]
        elements = list(scenario.cascade.feed_g_per_L)
        items += [(f"D_{el.upper()}", truth.distribution_ratio[el]) for el in elements]
        if "Nd" in elements and "Pr" in elements:
            items += [("BETA_ND_PR", truth.beta("Nd", "Pr")), ("SEPARATION_ND_PR", truth.separation_factor())]
        for point in SAMPLING_POINTS:
            items += [(f"{point.upper()}_{el.upper()}", truth.concentrations[point].get(el, 0.0)) for el in elements]
        return ",".join([head, *(f"{k}={v:.9g}" if isinstance(v, float) else f"{k}={v}" for k, v in items)])

    def _start_scenario(self, params: str) -> None:
        elapsed_s = parse_ranged(params, (0.0, MAX_SCENARIO_TIME_S), "scenario time", "s") if params.strip() else 0.0
        self.cell.start_scenario(self.clock.now_s(), elapsed_s)

    def _set_lab_temperature(self, params: str) -> None:
        temperature = parse_ranged(params, LAB_TEMPERATURE_RANGE_C, "lab temperature", "C")
        if self.cell.drives_lab:
            raise ScpiFault(-221, "Settings conflict;the running scenario sets the lab temperature")
        self.cell.drift.lab.hold(self.clock.now_s(), temperature)

    def _set_solution_temperature(self, params: str) -> None:
        temperature = parse_ranged(params, SOLUTION_TEMPERATURE_RANGE_C, "solution temperature", "C")
        if self.cell.drives_solution:
            raise ScpiFault(-221, "Settings conflict;the running scenario sets the solution")
        self.cell.solution = Solution(temperature, self.cell.solution.matrix, self.cell.solution.acid_mol_per_L)

    def _set_matrix(self, params: str) -> None:
        """``<matrix>[,<acid mol/L>]``: PERC, CHL or NITR (or the full names); the acid stays if not given."""
        name_text, _, acid_text = params.partition(",")
        if not name_text.strip():
            raise ScpiFault(-109, "Missing parameter;SIM:SOL:MATR <PERC|CHL|NITR>[,<acid mol/L>]")
        name = matrix_name(name_text)
        if name is None:
            raise ScpiFault(-224, f"Illegal parameter value;{name_text.strip()} ({', '.join(MATRICES)})")
        acid = (
            parse_ranged(acid_text, ACID_RANGE_MOL_PER_L, "acid", "mol/L")
            if acid_text.strip()
            else self.cell.solution.acid_mol_per_L
        )
        if self.cell.drives_solution:
            raise ScpiFault(-221, "Settings conflict;the running scenario sets the solution")
        self.cell.solution = Solution(self.cell.solution.temperature_C, name, acid)

    def _matrix_state(self, params: str) -> str:
        solution = self.cell.solution_at(self.clock.now_s())
        return f"{solution.matrix.upper()},{solution.acid_mol_per_L:.9g}"

    def _replug(self, params: str) -> None:
        step = parse_number(params) if params.strip() else None
        try:
            self.cell.drift.replug(step)
        except ValueError as error:
            raise ScpiFault(-222, f"Data out of range;{error}") from None

    def _absurd_quantity(self, text: str) -> str:
        word = text.strip().upper()
        for quantity, (forms, _) in self.absurd_quantities.items():
            if word in forms:
                return quantity
        raise ScpiFault(-224, f"Illegal parameter value;{text.strip()} ({', '.join(self.absurd_quantities)} or NONE)")

    def _set_absurd(self, params: str) -> None:
        """``<quantity>,<answer>``: answer ``<answer>`` verbatim to that query from now on; ``NONE``: the truth."""
        quantity_text, _, answer = params.partition(",")
        if quantity_text.strip().upper() == "NONE" and not answer.strip():
            self.instrument.absurd_answers.clear()
            return
        quantity = self._absurd_quantity(quantity_text)
        answer = answer.strip()
        if not answer:
            raise ScpiFault(-109, "Missing parameter;SIM:ABS <quantity>,<answer>")
        if not answer.isascii() or not answer.isprintable():
            raise ScpiFault(-224, "Illegal parameter value;the absurd answer must be printable ASCII")
        self.instrument.absurd_answers[quantity] = answer

    def _absurd_state(self, params: str) -> str:
        """No argument: the quantities answered absurdly (``PIX,COEF``) or ``NONE``; with one: its answer."""
        absurd = self.instrument.absurd_answers
        if params.strip():
            return absurd.get(self._absurd_quantity(params), "NONE")
        return ",".join(absurd) if absurd else "NONE"

    @staticmethod
    def _concentrations(params: str) -> dict[str, float]:
        try:
            return parse_concentrations(params.strip().strip('"'))
        except ScenarioError as error:
            raise ScpiFault(-224, f"Illegal parameter value;{error}") from None

    def _load_scenario(self, params: str) -> None:
        path = params.strip().strip('"')
        if not path:
            raise ScpiFault(-109, "Missing parameter")
        try:
            scenario = load_scenario(path)
        except ScenarioError as error:
            code = -256 if "not found" in str(error) else -224
            raise ScpiFault(
                code, f"File name not found;{error}" if code == -256 else f"Illegal parameter value;{error}"
            ) from None
        self.cell.stop_scenario(self.clock.now_s())  # the cell keeps what it holds until the new one starts
        self.cell.scenario = scenario

    def _scenario_state(self, params: str) -> str:
        cell = self.cell
        if cell.scenario is None:
            return '"",0,0'
        start_s = cell.scenario_start_s
        running = start_s is not None
        elapsed = self.clock.now_s() - start_s if start_s is not None else 0.0
        return f'"{cell.scenario.name}",{int(running)},{elapsed:.3f}'

    def _noise(self, params: str) -> str:
        wavelength_nm = parse_number(params)
        now = self.clock.now_s()
        inst = self.instrument
        drifts = self.cell.optics_arguments(now)
        sample = self.optics.signal_rate(self.cell.concentrations_at(now), now, **drifts)
        blank = self.optics.signal_rate({}, now, wavelength_shift_nm=drifts.get("wavelength_shift_nm", 0.0))
        std = self.optics.absorbance_noise_std(sample, blank, inst.integration_time_s, inst.averages)
        pixel = int(np.argmin(np.abs(self.optics.wavelengths_nm - wavelength_nm)))
        value = std[pixel]
        return f"{value:.6g}" if math.isfinite(value) else f"{SCPI_NAN:g}"

    def _set_speed(self, params: str) -> None:
        try:
            self.clock.set_speed(parse_number(params))
        except ValueError as error:
            raise ScpiFault(-222, f"Data out of range;{error}") from None


class TextInstrument(Protocol):
    """What :class:`Device` needs of the instrument whose text commands it executes."""

    def register(self, table: CommandTable) -> None: ...

    def push_error(self, code: int, message: str) -> None: ...


class Device:
    """Instrument + SIM namespace behind one command table: program message in, answers out."""

    def __init__(self, instrument: TextInstrument, control: SimControl):
        self.instrument = instrument
        self.table = CommandTable()
        instrument.register(self.table)
        control.register(self.table)

    def handle(self, line: str) -> list[Answer]:
        """Execute one program message; errors go to the error queue, as SCPI wants (no answer)."""
        texts: list[str] = []
        answers: list[Answer] = []
        for unit in split_units(line):
            header, _, params = unit.partition(" ")
            handler = self.table.find(header.strip())
            if handler is None:
                self.instrument.push_error(-113, f"Undefined header;{header.strip()[:40]}")
                continue
            try:
                result = handler(params)
            except ScpiFault as fault:
                self.instrument.push_error(fault.code, fault.message.replace('"', "'"))
                continue
            except Exception as error:  # a simulator bug must not kill the session
                self.instrument.push_error(-300, f"Device-specific error;{type(error).__name__}: {error}"[:200])
                continue
            if isinstance(result, Answer):
                self._flush(texts, answers)
                answers.append(result)
            elif isinstance(result, str):
                texts.append(result)
        self._flush(texts, answers)
        return answers

    @staticmethod
    def _flush(texts: list[str], answers: list[Answer]) -> None:
        """Text answers of one message go out as one line, joined by ';' (SCPI response message)."""
        if texts:
            answers.append(Answer((";".join(texts) + "\n").encode("ascii")))
            texts.clear()
