"""Simulated UV-Vis-NIR array spectrometer speaking SCPI over TCP on 127.0.0.1.

Run as ``python -m drivers.sim.spectrometer [--port 0] [--pixels 2048]
[--speed FACTOR] [--seed N] [--scenario PATH]``. Prints the VISA resource
string ``TCPIP0::127.0.0.1::PORT::SOCKET`` alone on the first line of standard
output, then serves clients one at a time until SIGTERM (exit code 0).

Three layers, kept apart as on a real bench:

- the instrument (:class:`Instrument`): the SCPI dialect of
  ``hardware/maps/scpi-spectrometer.toml`` over the optics model of
  :mod:`drivers.sim._optics`;
- the bench (:class:`SimControl`): the ``SIM:`` namespace that loads standards,
  runs scenarios, tells the truth and the noise figure, sets the clock speed,
  arms line faults, switches absurd answers on and off, and switches and sets
  the bench drifts (wavelength axis with the spectrometer's temperature and
  fibre replugs, bands with the solution's temperature and matrix;
  :mod:`drivers.sim._bench_drift`). It is *not* part of the instrument dialect;
- the line (:class:`LineFaults`, :class:`Server`): the TCP socket, where
  garbled, truncated, over-long, huge-header, NaN-carrying, out-of-range,
  trickled, babbling, dropped, delayed or disconnected answers are injected,
  outside the instrument model.

Absurd answers (:attr:`Instrument.absurd_answers`) are the one fault inside the
instrument: a firmware that reports a pixel count, integration time, averages
or wavelength polynomial no detector can have, while it goes on measuring with
its real settings.

Simulated time runs at ``speed`` x wall time; exposures shorten with it.
"""

from __future__ import annotations

import argparse
import math
import re
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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
from ._optics import Optics, OpticsConfig
from .scenario import (
    MAX_SCENARIO_TIME_S,
    Scenario,
    ScenarioError,
    format_concentrations,
    load_scenario,
    parse_concentrations,
)

__all__ = ["Instrument", "SimControl", "LineFaults", "Server", "SimClock", "Cell", "ABSURD_QUANTITIES", "main"]

MIN_INTEGRATION_TIME_S = 0.001
MAX_INTEGRATION_TIME_S = 60.0
MAX_AVERAGES = 1000
DEFAULT_INTEGRATION_TIME_S = 0.1
_MAX_ERRORS = 16
_MAX_LINE_BYTES = 65536
_SCPI_NAN = 9.91e37
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
    """

    def __init__(self, drift: BenchDrift | None = None) -> None:
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
            return self.scenario.concentrations_at(now_s - self.scenario_start_s)
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


def _split_units(line: str) -> list[str]:
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


def _keyword(params: str, choices: dict[str, str]) -> str:
    word = params.strip().upper()
    if not word:
        raise ScpiFault(-109, "Missing parameter")
    if word not in choices:
        raise ScpiFault(-224, f"Illegal parameter value;{params.strip()}")
    return choices[word]


def _switch(params: str) -> bool:
    return _keyword(params, {"ON": "1", "OFF": "0", "1": "1", "0": "0"}) == "1"


def _ranged(params: str, bounds: tuple[float, float], what: str, unit: str) -> float:
    value = _number(params)
    low, high = bounds
    if not low <= value <= high:
        raise ScpiFault(-222, f"Data out of range;{what} {value:g} {unit} not in {low:g} to {high:g} {unit}")
    return value


def _number(params: str, keywords: dict[str, float] | None = None) -> float:
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


# --- the instrument ---------------------------------------------------------------------------
class Instrument:
    """The spectrometer as its SCPI dialect sees it: settings, shutter, trigger, data format, errors."""

    def __init__(self, optics: Optics, clock: SimClock, cell: Cell, rng: np.random.Generator, serial: str):
        self.optics, self.clock, self.cell, self.rng, self.serial = optics, clock, cell, rng, serial
        self.errors: deque[tuple[int, str]] = deque()
        self._pending: Answer | None = None
        #: Answers sent instead of the truth, by quantity (``ABSURD_QUANTITIES``); kept across *RST and
        #: connections (a firmware fault, not a setting) until SIM:ABS NONE.
        self.absurd_answers: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """*RST state."""
        self.integration_time_s = DEFAULT_INTEGRATION_TIME_S
        self.averages = 1
        self.shutter_open = True
        self.data_format = "REAL"
        self.byte_order = "SWAP"
        self._pending = None

    def push_error(self, code: int, message: str) -> None:
        if len(self.errors) >= _MAX_ERRORS - 1:
            if len(self.errors) == _MAX_ERRORS - 1:
                self.errors.append((-350, "Queue overflow"))
            return
        self.errors.append((code, message))

    def register(self, table: CommandTable) -> None:
        """Add the dialect's commands to ``table``."""
        pixels = self.optics.config.pixels
        table.add("*IDN", lambda p: f"REMDAQ,SIM-UVVISNIR-{pixels},{self.serial},0.1", query=True)
        table.add("*RST", lambda p: self.reset())
        table.add("*CLS", lambda p: self.errors.clear())
        table.add("*OPC", lambda p: "1", query=True)
        table.add("SYSTem:ERRor[:NEXT]", self._next_error, query=True)
        table.add("SENSe:DETector:PIXels", self._reported("PIX", lambda: str(pixels)), query=True)
        table.add("SENSe:INTegration:TIME", self._set_integration_time)
        table.add(
            "SENSe:INTegration:TIME", self._reported("ITIM", lambda: f"{self.integration_time_s:.9g}"), query=True
        )
        table.add("SENSe:AVERage:COUNt", self._set_averages)
        table.add("SENSe:AVERage:COUNt", self._reported("AVER", lambda: str(self.averages)), query=True)
        table.add(
            "CALCulate:WAVelength:COEFficients",
            self._reported("COEF", lambda: ",".join(f"{c:.12e}" for c in self.optics.coefficients)),
            query=True,
        )
        table.add("SOURce:SHUTter", self._set_shutter)
        table.add("SOURce:SHUTter", lambda p: "OPEN" if self.shutter_open else "CLOS", query=True)
        table.add("FORMat[:DATA]", self._set_format)
        table.add("FORMat[:DATA]", lambda p: "REAL,32" if self.data_format == "REAL" else "ASC", query=True)
        table.add("FORMat:BORDer", self._set_byte_order)
        table.add("FORMat:BORDer", lambda p: self.byte_order, query=True)
        table.add("INITiate[:IMMediate]", lambda p: self._initiate())
        table.add("FETCh:SPECtrum", self._fetch, query=True)
        table.add("MEASure:SPECtrum", self._measure, query=True)

    def _reported(self, quantity: str, truth: Callable[[], str]) -> Handler:
        """A query handler answering the truth, or the absurd answer switched on for ``quantity``."""

        def answer(params: str) -> str:
            absurd = self.absurd_answers.get(quantity)
            return truth() if absurd is None else absurd

        return answer

    def _next_error(self, params: str) -> str:
        code, message = self.errors.popleft() if self.errors else (0, "No error")
        return f'{code},"{message}"'

    def _set_integration_time(self, params: str) -> None:
        value = _number(params, {"MIN": MIN_INTEGRATION_TIME_S, "MAX": MAX_INTEGRATION_TIME_S})
        if not (MIN_INTEGRATION_TIME_S <= value <= MAX_INTEGRATION_TIME_S):
            raise ScpiFault(
                -222,
                f"Data out of range;integration time {value:g} s not in "
                f"{MIN_INTEGRATION_TIME_S:g}-{MAX_INTEGRATION_TIME_S:g} s",
            )
        self.integration_time_s = round(value, 6)  # 1 us resolution
        self._pending = None

    def _set_averages(self, params: str) -> None:
        text = params.strip()
        if not re.fullmatch(r"[+]?\d+", text):
            raise ScpiFault(-104 if text else -109, f"Data type error;{text}" if text else "Missing parameter")
        value = int(text)
        if not 1 <= value <= MAX_AVERAGES:
            raise ScpiFault(-222, f"Data out of range;averages {value} not in 1-{MAX_AVERAGES}")
        self.averages = value
        self._pending = None

    def _set_shutter(self, params: str) -> None:
        self.shutter_open = (
            _keyword(params, {"OPEN": "OPEN", "CLOS": "CLOS", "CLOSE": "CLOS", "CLOSED": "CLOS"}) == "OPEN"
        )
        self._pending = None

    def _set_format(self, params: str) -> None:
        text = re.sub(r"\s+", "", params.upper())
        if text in ("REAL", "REAL,32"):
            self.data_format = "REAL"
        elif text in ("ASC", "ASCII"):
            self.data_format = "ASC"
        elif not text:
            raise ScpiFault(-109, "Missing parameter")
        else:
            raise ScpiFault(-224, f"Illegal parameter value;{params.strip()} (REAL,32 or ASCii)")

    def _set_byte_order(self, params: str) -> None:
        self.byte_order = _keyword(params, {"NORM": "NORM", "NORMAL": "NORM", "SWAP": "SWAP", "SWAPPED": "SWAP"})

    def _initiate(self) -> None:
        exposure_s = self.integration_time_s * self.averages
        mid_s = self.clock.now_s() + exposure_s / 2.0
        rate = None
        if self.shutter_open:
            rate = self.optics.signal_rate(
                self.cell.concentrations_at(mid_s), mid_s, **self.cell.optics_arguments(mid_s)
            )
        counts = self.optics.read_out(rate, self.integration_time_s, self.averages, self.rng)
        ready = time.monotonic() + exposure_s / self.clock.speed
        self._pending = Answer(self._encode(counts), is_spectrum=True, ready_wall_s=ready)

    def _fetch(self, params: str) -> Answer:
        if self._pending is None:
            raise ScpiFault(-230, "Data corrupt or stale;no acquisition since the last change (INIT first)")
        return self._pending

    def _measure(self, params: str) -> Answer:
        self._initiate()
        return self._fetch(params)

    def _encode(self, counts: np.ndarray) -> bytes:
        if self.data_format == "ASC":
            return (",".join(f"{v:.2f}" for v in counts) + "\n").encode("ascii")
        payload = counts.astype("<f4" if self.byte_order == "SWAP" else ">f4").tobytes()
        length = str(len(payload)).encode("ascii")
        return b"#" + str(len(length)).encode("ascii") + length + payload + b"\n"


# --- the line ---------------------------------------------------------------------------------
class LineFaults:
    """One-shot faults on the next spectrum answer (or text answer, for a trickle), injected on the socket.

    The instrument always produced a correct answer; the line delivers something else. What the line
    did with the last faulted answer is kept in :attr:`last` (``SIM:FAUL:LAST?``).
    """

    KINDS = {
        "NONE": "NONE",
        "GARB": "GARBLE",
        "GARBLE": "GARBLE",
        "TRUN": "TRUNCATE",
        "TRUNCATE": "TRUNCATE",
        "LONG": "LONG",
        "HUGE": "HUGE",
        "NAN": "NAN",
        "RANG": "RANGE",
        "RANGE": "RANGE",
        "TRIC": "TRICKLE",
        "TRICKLE": "TRICKLE",
        "BABL": "BABBLE",
        "BABBLE": "BABBLE",
        "DROP": "DROP",
        "DEL": "DELAY",
        "DELAY": "DELAY",
        "DISC": "DISCONNECT",
        "DISCONNECT": "DISCONNECT",
    }
    HUGE_HEADER = b"#9999999999"  # declares 999 999 999 payload bytes
    DEFAULT_RANGE_VALUE = 1.0e6
    DEFAULT_TRICKLE = (64, 0.05)  # bytes per piece, seconds between pieces
    DEFAULT_BABBLE_S = 10.0
    BABBLE_INTERVAL_S = 0.01  # one byte of noise this often: never the 50 ms of quiet a driver drains for
    _USAGE = (
        "(GARB, TRUN, LONG, HUGE, NAN, RANG[,<counts>], TRIC[,<bytes>[,<s>[,SPEC|TEXT]]], BABL[,<s>], "
        "DROP, DEL,<s>, DISC, NONE)"
    )

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.kind = "NONE"
        self.args: tuple = ()
        self.on_text = False
        #: (kind, pieces sent, pieces in the whole answer) of the last answer a fault was applied to.
        self.last: tuple[str, int, int] = ("NONE", 0, 0)

    def arm(self, params: str) -> None:
        """``<kind>[,<arg>...]``: see ``_USAGE`` and docs/instruments/spectrometer.md."""
        kind_text, *args = [part.strip() for part in params.split(",")]
        kind = self.KINDS.get(kind_text.upper())
        if kind is None:
            raise ScpiFault(-224, f"Illegal parameter value;fault {params.strip()!s} {self._USAGE}")
        on_text = False
        if kind == "DELAY":
            if len(args) != 1:
                raise ScpiFault(-109 if not args else -108, "DEL needs exactly one argument: <s>")
            delay_s = _number(args[0])
            if not 0.0 <= delay_s <= 600.0:
                raise ScpiFault(-222, "Data out of range;delay 0-600 s")
            parsed: tuple = (delay_s,)
        elif kind == "RANGE":
            if len(args) > 1:
                raise ScpiFault(-108, "Parameter not allowed;RANG takes one value (counts)")
            value = _number(args[0]) if args else self.DEFAULT_RANGE_VALUE
            if abs(value) > 3.0e38:
                raise ScpiFault(-222, "Data out of range;RANG value must be a finite float32")
            parsed = (value,)
        elif kind == "BABBLE":
            if len(args) > 1:
                raise ScpiFault(-108, "Parameter not allowed;BABL takes one value (seconds)")
            seconds = _number(args[0]) if args else self.DEFAULT_BABBLE_S
            if not 0.0 < seconds <= 600.0:
                raise ScpiFault(-222, "Data out of range;babble 0-600 s")
            parsed = (seconds,)
        elif kind == "TRICKLE":
            if len(args) > 3:
                raise ScpiFault(-108, "Parameter not allowed;TRIC,<bytes>,<s>[,SPEC|TEXT]")
            piece_bytes, delay_s = self.DEFAULT_TRICKLE
            if len(args) >= 1:
                if not re.fullmatch(r"\d+", args[0]) or not 1 <= int(args[0]) <= 65536:
                    raise ScpiFault(-222, "Data out of range;trickle piece 1-65536 bytes")
                piece_bytes = int(args[0])
            if len(args) >= 2:
                delay_s = _number(args[1])
                if not 0.0 <= delay_s <= 60.0:
                    raise ScpiFault(-222, "Data out of range;trickle delay 0-60 s")
            if len(args) == 3:
                on_text = _keyword(args[2], {"SPEC": "SPEC", "SPECTRUM": "SPEC", "TEXT": "TEXT"}) == "TEXT"
            parsed = (piece_bytes, delay_s)
        else:
            if args:
                raise ScpiFault(-108, "Parameter not allowed")
            parsed = ()
        self.kind, self.args, self.on_text = kind, parsed, on_text

    def describe(self) -> str:
        """The armed fault with its arguments, as ``SIM:FAUL?`` answers it."""
        parts = [self.kind, *(f"{a:g}" for a in self.args)]
        if self.kind == "TRICKLE":
            parts.append("TEXT" if self.on_text else "SPEC")
        return ",".join(parts)

    def take(self, is_spectrum: bool) -> tuple[str, tuple]:
        """The armed fault if it applies to this answer (and disarm it), else ``("NONE", ())``."""
        if self.kind == "NONE" or (not is_spectrum and not self.on_text) or (is_spectrum and self.on_text):
            return "NONE", ()
        armed = (self.kind, self.args)
        self.kind, self.args, self.on_text = "NONE", (), False
        return armed

    def record(self, kind: str, sent: int, total: int) -> None:
        """Note what the line did with a faulted answer: ``sent`` of ``total`` pieces went out."""
        self.last = (kind, sent, total)

    def describe_last(self) -> str:
        """``<kind>,<pieces sent>,<pieces in the answer>`` of the last faulted answer (``SIM:FAUL:LAST?``)."""
        kind, sent, total = self.last
        return f"{kind},{sent},{total}"

    def corrupt(self, kind: str, args: tuple, data: bytes) -> bytes:
        """The bytes a faulty line delivers instead of ``data`` (a block with its terminator)."""
        if kind == "GARBLE":
            garbled = bytearray(data)
            n_digits = data[1] - 0x30 if len(data) > 1 and 0x31 <= data[1] <= 0x39 else 1
            where = int(self.rng.integers(0, 2 + n_digits))
            garbled[where] = int(self.rng.choice(list(b"!?@AZaz~ ")))
            return bytes(garbled)
        header = 2 + (data[1] - 0x30)
        if kind == "TRUNCATE":
            keep = header + (len(data) - header - 1) // 2
            return data[:keep] + data[-1:]
        if kind == "LONG":
            return data[:-1] + bytes(self.rng.integers(0, 256, 8, dtype=np.uint8)) + data[-1:]
        if kind == "HUGE":
            return self.HUGE_HEADER + data[header:]
        if kind in ("NAN", "RANGE"):
            value = np.nan if kind == "NAN" else args[0]
            values = (len(data) - header - 1) // 4
            at = header + 4 * int(self.rng.integers(0, values))
            return data[:at] + np.float32(value).astype("<f4").tobytes() + data[at + 4 :]
        return data


class SimControl:
    """The SIM: namespace: the bench around the instrument. Not part of the instrument dialect."""

    def __init__(self, instrument: Instrument, faults: LineFaults):
        self.instrument, self.faults = instrument, faults
        self.clock, self.cell, self.optics = instrument.clock, instrument.cell, instrument.optics

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
        table.add("SIM:DRIFt", lambda p: drift.set_all(_switch(p)))
        table.add("SIM:DRIFt", lambda p: f"{int(drift.wavelength)},{int(drift.bands)},{int(drift.matrix)}", query=True)
        for header, name in (
            ("SIM:DRIFt:WAVelength", "wavelength"),
            ("SIM:DRIFt:BANDs", "bands"),
            ("SIM:DRIFt:MATRix", "matrix"),
        ):
            table.add(header, lambda p, name=name: setattr(drift, name, _switch(p)))
            table.add(header, lambda p, name=name: str(int(getattr(drift, name))), query=True)
        table.add(
            "SIM:DRIFt:KT", lambda p: setattr(drift, "k_T_nm_per_C", _ranged(p, K_T_RANGE_NM_PER_C, "k_T", "nm/C"))
        )
        table.add("SIM:DRIFt:KT", lambda p: f"{drift.k_T_nm_per_C:.9g}", query=True)
        table.add(
            "SIM:DRIFt:TCAL",
            lambda p: setattr(drift, "calibration_temperature_C", _ranged(p, LAB_TEMPERATURE_RANGE_C, "T_cal", "C")),
        )
        table.add("SIM:DRIFt:TCAL", lambda p: f"{drift.calibration_temperature_C:.9g}", query=True)
        table.add("SIM:LAB:TEMPerature", self._set_lab_temperature)
        table.add("SIM:LAB:TEMPerature", lambda p: f"{drift.lab_temperature_at(self.clock.now_s()):.9g}", query=True)
        table.add("SIM:LAB:LAG", lambda p: setattr(drift, "lag_s", _ranged(p, LAG_RANGE_S, "lag", "s")))
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

    def _start_scenario(self, params: str) -> None:
        elapsed_s = _ranged(params, (0.0, MAX_SCENARIO_TIME_S), "scenario time", "s") if params.strip() else 0.0
        self.cell.start_scenario(self.clock.now_s(), elapsed_s)

    def _set_lab_temperature(self, params: str) -> None:
        temperature = _ranged(params, LAB_TEMPERATURE_RANGE_C, "lab temperature", "C")
        if self.cell.drives_lab:
            raise ScpiFault(-221, "Settings conflict;the running scenario sets the lab temperature")
        self.cell.drift.lab.hold(self.clock.now_s(), temperature)

    def _set_solution_temperature(self, params: str) -> None:
        temperature = _ranged(params, SOLUTION_TEMPERATURE_RANGE_C, "solution temperature", "C")
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
            _ranged(acid_text, ACID_RANGE_MOL_PER_L, "acid", "mol/L")
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
        step = _number(params) if params.strip() else None
        try:
            self.cell.drift.replug(step)
        except ValueError as error:
            raise ScpiFault(-222, f"Data out of range;{error}") from None

    @staticmethod
    def _absurd_quantity(text: str) -> str:
        word = text.strip().upper()
        for quantity, (forms, _) in ABSURD_QUANTITIES.items():
            if word in forms:
                return quantity
        raise ScpiFault(-224, f"Illegal parameter value;{text.strip()} (PIX, ITIM, AVER, COEF or NONE)")

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
        wavelength_nm = _number(params)
        now = self.clock.now_s()
        inst = self.instrument
        drifts = self.cell.optics_arguments(now)
        sample = self.optics.signal_rate(self.cell.concentrations_at(now), now, **drifts)
        blank = self.optics.signal_rate({}, now, wavelength_shift_nm=drifts.get("wavelength_shift_nm", 0.0))
        std = self.optics.absorbance_noise_std(sample, blank, inst.integration_time_s, inst.averages)
        pixel = int(np.argmin(np.abs(self.optics.wavelengths_nm - wavelength_nm)))
        value = std[pixel]
        return f"{value:.6g}" if math.isfinite(value) else f"{_SCPI_NAN:g}"

    def _set_speed(self, params: str) -> None:
        try:
            self.clock.set_speed(_number(params))
        except ValueError as error:
            raise ScpiFault(-222, f"Data out of range;{error}") from None


class Device:
    """Instrument + SIM namespace behind one command table: program message in, answers out."""

    def __init__(self, instrument: Instrument, control: SimControl):
        self.instrument = instrument
        self.table = CommandTable()
        instrument.register(self.table)
        control.register(self.table)

    def handle(self, line: str) -> list[Answer]:
        """Execute one program message; errors go to the error queue, as SCPI wants (no answer)."""
        texts: list[str] = []
        answers: list[Answer] = []
        for unit in _split_units(line):
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


class Server:
    """TCP server on 127.0.0.1: one client at a time, line faults applied to spectrum answers."""

    def __init__(self, port: int, device: Device, faults: LineFaults):
        self.device, self.faults = device, faults
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.listener.listen(8)

    @property
    def resource(self) -> str:
        """The VISA resource string a client opens."""
        return f"TCPIP0::127.0.0.1::{self.listener.getsockname()[1]}::SOCKET"

    def serve_forever(self) -> None:
        while True:
            conn, _ = self.listener.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._serve(conn)

    def close(self) -> None:
        self.listener.close()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while (end := buffer.find(b"\n")) >= 0:
                line = bytes(buffer[:end]).decode("ascii", errors="replace").strip()
                del buffer[: end + 1]
                for answer in self.device.handle(line):
                    if not self._send(conn, answer):
                        return
            if len(buffer) > _MAX_LINE_BYTES:
                return

    def _send(self, conn: socket.socket, answer: Answer) -> bool:
        """Send one answer through the (possibly faulty) line; False when the connection is over."""
        if answer.ready_wall_s and not _wait_until(conn, answer.ready_wall_s):
            return False
        data = answer.data
        kind, args = self.faults.take(answer.is_spectrum)
        if kind == "NONE":
            return _send_all(conn, data)
        self.faults.record(kind, 0, 1)
        if kind == "DROP":
            return True
        if kind == "DISCONNECT":
            return False
        if kind == "DELAY" and not _wait_until(conn, time.monotonic() + args[0]):
            return False
        if kind == "TRICKLE":
            return self._trickle(conn, data, *args)
        if kind == "BABBLE":
            return self._babble(conn, *args)
        if data.startswith(b"#"):
            data = self.faults.corrupt(kind, args, data)
        if not _send_all(conn, data):
            return False
        self.faults.record(kind, 1, 1)
        return True

    def _trickle(self, conn: socket.socket, data: bytes, piece_bytes: int, delay_s: float) -> bool:
        """Send ``data`` in pieces of ``piece_bytes`` with ``delay_s`` between them; stop if the client hangs up."""
        pieces = [data[i : i + piece_bytes] for i in range(0, len(data), piece_bytes)]
        for index, piece in enumerate(pieces):
            if index and not _wait_until(conn, time.monotonic() + delay_s):
                return False
            if not _send_all(conn, piece):
                return False
            self.faults.record("TRICKLE", index + 1, len(pieces))
        return True

    def _babble(self, conn: socket.socket, seconds: float) -> bool:
        """Noise instead of the answer: a byte (never '#') every 10 ms for ``seconds``, until the client hangs up."""
        interval_s = self.faults.BABBLE_INTERVAL_S
        total = max(1, int(round(seconds / interval_s)))
        noise = self.faults.rng.choice(list(b"!?@AZaz~ 0123456789"), size=total).astype(np.uint8).tobytes()
        for index in range(total):
            if index and not _wait_until(conn, time.monotonic() + interval_s):
                return False
            if not _send_all(conn, noise[index : index + 1]):
                return False
            self.faults.record("BABBLE", index + 1, total)
        return True


def _send_all(conn: socket.socket, data: bytes) -> bool:
    """Send ``data``; False when the connection is gone."""
    try:
        conn.sendall(data)
    except OSError:
        return False
    return True


def _wait_until(conn: socket.socket, deadline_wall_s: float) -> bool:
    """Wait until the deadline; False at once if the client hangs up meanwhile."""
    while (remaining := deadline_wall_s - time.monotonic()) > 0:
        readable, _, _ = select.select([conn], [], [], remaining)
        if not readable:
            continue
        try:
            if conn.recv(1, socket.MSG_PEEK) == b"":
                return False
        except OSError:
            return False
        time.sleep(max(0.0, deadline_wall_s - time.monotonic()))  # more commands queued: just wait
        break
    return True


class _Shutdown(BaseException):
    pass


def _shutdown(signum, frame):
    raise _Shutdown()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: serve the simulated spectrometer until SIGTERM."""
    assert __doc__ is not None  # this module has a docstring (python -OO drops it, and this check too)
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.spectrometer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--pixels", type=int, default=2048, help="detector pixels (e.g. 2048, 3648)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--seed", type=int, default=0, help="seed of the detector's fixed pattern and noise")
    parser.add_argument("--scenario", help="scenario file or bundled name to start at once")
    args = parser.parse_args(argv)
    seeds = np.random.SeedSequence(args.seed).spawn(3)
    try:
        if not 16 <= args.pixels <= 16384:
            raise ValueError(f"--pixels must be 16-16384, got {args.pixels}")
        clock = SimClock(args.speed)
        cell = Cell(BenchDrift(np.random.default_rng(seeds[2])))
        if args.scenario:
            cell.scenario = load_scenario(args.scenario)
            cell.start_scenario(clock.now_s())
        optics = Optics(OpticsConfig(pixels=args.pixels), seed=args.seed)
    except (ValueError, ScenarioError) as error:
        print(f"spectrometer simulator: {error}", file=sys.stderr)
        return 2
    instrument = Instrument(optics, clock, cell, np.random.default_rng(seeds[0]), serial=f"SIM{args.seed:05d}")
    faults = LineFaults(np.random.default_rng(seeds[1]))
    server = Server(args.port, Device(instrument, SimControl(instrument, faults)), faults)
    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    try:
        print(server.resource, flush=True)
        server.serve_forever()
    except _Shutdown:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
