"""Simulated UV-Vis-NIR array spectrometer speaking SCPI over TCP on 127.0.0.1.

Run as ``python -m drivers.sim.spectrometer [--port 0] [--pixels 2048]
[--speed FACTOR] [--seed N] [--scenario PATH] [--sampling-point NAME]``.
``--sampling-point feed|raffinate|strip`` plumbs the flow cell into that point
of a scenario's ``[cascade]`` (``SIM:SAMP``, ``SIM:TRUT:CASC?``). Prints the VISA resource
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
  :mod:`drivers.sim._bench_drift`). It is *not* part of the instrument dialect.
  It lives in :mod:`drivers.sim._bench_control`, shared with the Ocean simulator
  (:mod:`drivers.sim.ocean`, the same physics behind another wire protocol);
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
import re
import select
import signal
import socket
import sys
import time
from collections.abc import Callable

import numpy as np

from ._bench_control import (
    ABSURD_QUANTITIES,
    Answer,
    Cell,
    CommandTable,
    Device,
    ErrorQueue,
    Handler,
    ScpiFault,
    SimClock,
    SimControl,
)
from ._bench_control import parse_keyword as _keyword
from ._bench_control import parse_number as _number
from ._bench_drift import BenchDrift
from ._optics import Optics, OpticsConfig
from .scenario import SAMPLING_POINTS, ScenarioError, load_scenario

__all__ = ["Instrument", "SimControl", "LineFaults", "Server", "SimClock", "Cell", "ABSURD_QUANTITIES", "main"]

MIN_INTEGRATION_TIME_S = 0.001
MAX_INTEGRATION_TIME_S = 60.0
MAX_AVERAGES = 1000
DEFAULT_INTEGRATION_TIME_S = 0.1
_MAX_LINE_BYTES = 65536


# --- the instrument ---------------------------------------------------------------------------
class Instrument:
    """The spectrometer as its SCPI dialect sees it: settings, shutter, trigger, data format, errors."""

    def __init__(self, optics: Optics, clock: SimClock, cell: Cell, rng: np.random.Generator, serial: str):
        self.optics, self.clock, self.cell, self.rng, self.serial = optics, clock, cell, rng, serial
        self.errors = ErrorQueue()
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
        self.errors.push(code, message)

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
        return self.errors.next_answer()

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
    parser.add_argument(
        "--sampling-point",
        choices=SAMPLING_POINTS,
        help="the point of the scenario's [cascade] whose solution flows through the cell",
    )
    args = parser.parse_args(argv)
    seeds = np.random.SeedSequence(args.seed).spawn(3)
    try:
        if not 16 <= args.pixels <= 16384:
            raise ValueError(f"--pixels must be 16-16384, got {args.pixels}")
        clock = SimClock(args.speed)
        cell = Cell(BenchDrift(np.random.default_rng(seeds[2])), sampling_point=args.sampling_point)
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
