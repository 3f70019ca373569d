"""Simulated Ocean Insight HDX spectrometer speaking Ocean Binary Protocol (OBP) over TCP on 127.0.0.1.

Run as ``python -m drivers.sim.ocean [--port 0] [--control-port 0] [--speed FACTOR]
[--seed N] [--scenario PATH] [--sampling-point NAME] [--wavelength-order 3]``
(``--sampling-point feed|raffinate|strip``: the point of a scenario's ``[cascade]``
whose solution flows through the cell, as for the SCPI simulator). Prints one line on standard
output, ``tcp://127.0.0.1:OBPPORT TCPIP0::127.0.0.1::CONTROLPORT::SOCKET`` (the OBP
address, a space, the VISA resource of the control port), then serves until SIGTERM
(exit code 0). Any number of clients on either port at once.

One physics, two wire protocols: the optics, bench drifts, scenarios and ``SIM:``
namespace are those of the SCPI simulator (:mod:`drivers.sim.spectrometer`,
:mod:`drivers.sim._bench_control`). Three layers, as there:

- the instrument (:class:`HdxInstrument`): the OBP messages python-seabreeze
  sends an HDX (2068 pixels, 6 ms-10 s, 16 bit) plus those a driver adds
  (:class:`MessageType`). One scan per spectrum request at the current
  integration time (no averaging on the device). The detector is nonlinear
  (default on, ``SIM:NONL``) and the device stores the 7th-order correction, in
  Ocean's convention; it stores its wavelength polynomial (``--wavelength-order``)
  as float32, and the physics uses exactly those float32 values. The lamp's TTL
  line is wired to the spectrometer (``SET_LAMP_ENABLE``; on at power-on): with
  the lamp off a spectrum is dark (bias, dark current, noise);
- the bench (:class:`OceanBench` + :class:`~drivers.sim._bench_control.SimControl`)
  on a separate text **control port**, because OBP has no room for ``SIM:``
  commands (docs/decisions/0071-ocean-simulator-two-ports.md): ``*IDN?``,
  ``*CLS``, ``*OPC?``, ``SYSTem:ERRor?``, every ``SIM:`` command of the SCPI
  simulator, and ``SIM:LAMP?`` (does the lamp shine), ``SIM:LAMP:WIRed ON|OFF``
  and ``?`` (is its TTL input connected; if not, the lamp stays on whatever the
  spectrometer sends), ``SIM:NONLinearity ON|OFF`` and ``?``, ``SIM:UNPLug <s>``,
  ``SIM:UNPL?`` (wall seconds until it is back), ``SIM:CONNections?`` (open OBP
  connections);
- the line (:class:`ObpFaults`, :class:`ObpServer`): one-shot faults armed with
  ``SIM:FAULt`` and applied to the next spectrum reply (or, with a trailing
  ``,ANY``, to the next reply of any kind), outside the instrument model.

OBP replies: a reply carries the request's message type and regarding field, the
flag RESPONSE_TO_REQUEST, ACK when the request asked for one (REQUEST_ACK) and
succeeded. A query always gets its data; a command (set) gets a reply only when it
asked for an ACK. An error always gets a NACK with its error number, asked for or
not: unknown message type 2, payload of the wrong length 5, invalid value 6 (an
integration time outside 6000-10000000 us, a trigger mode other than 0, a lamp
value other than 0/1, a coefficient index past the count), protocol version not
0x1100 1, unknown checksum type 8, bad MD5 checksum 3. A message whose boundaries
cannot be trusted (wrong start bytes or footer, bytes-remaining below 20 or
contradicting the message) gets a NACK 1 and then the connection is **closed**:
nothing after it could be read in step; one that announces more than 64 KiB gets
NACK 4 and is closed too.

``SIM:UNPLug <s>``: the analogue of pulling the USB cable. Every OBP connection is
reset (TCP RST: a blocked read fails at once instead of seeing an orderly end), the
device loses its settings (integration time 100 ms, trigger mode 0, lamp on: the
power-on state), and for ``s`` wall seconds new OBP connections are refused (the
port stops listening); then the device is back on the same port with the same
serial. ``s`` = 0: a power blip (connections reset, settings lost, no refusal).

Simulated time runs at ``speed`` x wall time; exposures shorten with it.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum

import numpy as np

from ._bench_control import (
    Cell,
    CommandTable,
    Device,
    ErrorQueue,
    ScpiFault,
    SimClock,
    SimControl,
    parse_ranged,
    parse_switch,
)
from ._bench_drift import BenchDrift
from ._obp_frames import (
    FOOTER_BYTES,
    HEADER_BYTES,
    START_BYTES,
    Flag,
    Frame,
    FrameError,
    ObpError,
    decode,
    decode_header,
    encode,
    response,
)
from ._optics import Optics, OpticsConfig, fit_wavelength_coefficients, wavelength_coefficients
from .scenario import SAMPLING_POINTS, ScenarioError, load_scenario

__all__ = [
    "HdxInstrument",
    "MessageType",
    "ObpFaults",
    "ObpNack",
    "ObpServer",
    "OceanBench",
    "ControlServer",
    "Reply",
    "build_instrument",
    "main",
]

MODEL = "HDX"
PIXELS = 2068
MIN_INTEGRATION_TIME_US = 6000
MAX_INTEGRATION_TIME_US = 10_000_000
DEFAULT_INTEGRATION_TIME_US = 100_000
MAX_ADC_COUNTS = 65535
SATURATION_LEVEL_COUNTS = 65535  # the 16-bit ADC clips before the pixels' wells fill
NONLINEARITY_ORDER = 7
USB_VENDOR_ID = 0x2457
USB_PRODUCT_ID = 0x2003
MAX_WAVELENGTH_ORDER = 7
MAX_UNPLUG_S = 3600.0
#: A request announcing more bytes than this after its header is refused (NACK 4) and its connection closed.
MAX_REQUEST_REMAINING_BYTES = 65536
_U32_MAX = 0xFFFFFFFF
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_MAX_CONTROL_LINE_BYTES = 65536
#: What SIM:ABSurd can replace on this instrument (OBP has no pixel-count or averages message).
OCEAN_ABSURD_QUANTITIES = {
    "ITIM": (("ITIM", "ITIME"), "integration time (GET_INTEGRATION_TIME_US 0x00110000), an integer"),
    "COEF": (("COEF", "COEFFICIENTS"), "wavelength coefficients (0x00180100/0x00180101), numbers separated by commas"),
}


class MessageType(IntEnum):
    """The OBP message types the simulated HDX answers (Ocean's OBPMessageTypes codes)."""

    GET_SERIAL_NUMBER = 0x00000100
    GET_SERIAL_NUMBER_LENGTH = 0x00000101
    GET_USB_VENDOR_ID = 0x00000E00
    GET_USB_PRODUCT_ID = 0x00000E01
    GET_ORIGINAL_DEVICE_STRING = 0x00000E11
    GET_SPECTRUM_NOW_HDX = 0x00101000
    GET_MAXIMUM_ADC_COUNTS = 0x00101010
    GET_SATURATION_LEVEL = 0x001010A0
    GET_RAW_SPECTRUM_NOW = 0x00101100
    GET_INTEGRATION_TIME_US = 0x00110000
    GET_MINIMUM_INTEGRATION_TIME_US = 0x00110001
    GET_MAXIMUM_INTEGRATION_TIME_US = 0x00110002
    SET_INTEGRATION_TIME_US = 0x00110010
    SET_TRIGGER_MODE = 0x00110110
    SET_LAMP_ENABLE = 0x00110410
    GET_WAVELENGTH_COEFFICIENT_COUNT = 0x00180100
    GET_WAVELENGTH_COEFFICIENT = 0x00180101
    GET_NONLINEARITY_COEFFICIENT_COUNT = 0x00181100
    GET_NONLINEARITY_COEFFICIENT = 0x00181101


SPECTRUM_MESSAGES = frozenset({MessageType.GET_SPECTRUM_NOW_HDX, MessageType.GET_RAW_SPECTRUM_NOW})


class ObpNack(Exception):
    """A request the device refuses: the error number of its NACK."""

    def __init__(self, error: int, message: str = ""):
        super().__init__(error, message)
        self.error = error


@dataclass(frozen=True)
class Reply:
    """What the device sends for one request: a frame (``None``: nothing), and when it may go out."""

    frame: Frame | None
    is_spectrum: bool = False
    ready_wall_s: float = 0.0


def _u8(value: int) -> bytes:
    return struct.pack("<B", value)


def _u16(value: int) -> bytes:
    return struct.pack("<H", value)


def _u32(value: int) -> bytes:
    return struct.pack("<I", value)


def _f32(value: float) -> bytes:
    return struct.pack("<f", value)


def float32_rounded(values: tuple[float, ...] | list[float]) -> tuple[float, ...]:
    """``values`` as the float32 numbers a device stores (and a client reads back exactly)."""
    return tuple(float(np.float32(v)) for v in values)


# --- the instrument ---------------------------------------------------------------------------
class HdxInstrument:
    """The HDX as OBP sees it: settings, the lamp line, stored calibrations, one scan per spectrum request."""

    averages = 1  # the device takes one scan per request; averaging is the driver's business

    def __init__(
        self,
        optics: Optics,
        clock: SimClock,
        cell: Cell,
        rng: np.random.Generator,
        serial: str,
        nonlinearity_coefficients: tuple[float, ...],
    ):
        if optics.config.pixels != PIXELS:
            raise ValueError(f"an {MODEL} has {PIXELS} pixels, the optics {optics.config.pixels}")
        self.optics, self.clock, self.cell, self.rng, self.serial = optics, clock, cell, rng, serial
        #: The stored calibrations, float32 as on the device; the optics' axis is exactly this polynomial.
        self.wavelength_coefficients = float32_rounded(optics.coefficients)
        if self.wavelength_coefficients != tuple(optics.coefficients):
            raise ValueError("the optics' axis must be the float32 polynomial the device stores (float32_rounded)")
        self.nonlinearity_coefficients = float32_rounded(nonlinearity_coefficients)
        #: The detector's response droops towards full scale (SIM:NONL); a real one does.
        self.nonlinear = True
        #: Whether the lamp's TTL input is connected to the spectrometer (SIM:LAMP:WIR); if not, it stays on.
        self.lamp_wired = True
        #: Answers sent instead of the truth (SIM:ABS ITIM|COEF); a firmware fault, kept over power cycles.
        self.absurd_answers: dict[str, str] = {}
        #: Message type -> (request data bytes, handler: data or None for a command); None: a spectrum.
        self._messages: dict[int, tuple[int, Callable[[bytes], bytes | None] | None]] = {
            MessageType.GET_SPECTRUM_NOW_HDX: (0, None),
            MessageType.GET_RAW_SPECTRUM_NOW: (0, None),
            MessageType.GET_SERIAL_NUMBER: (0, lambda d: self.serial.encode("ascii")),
            MessageType.GET_SERIAL_NUMBER_LENGTH: (0, lambda d: _u8(len(self.serial))),
            MessageType.GET_USB_VENDOR_ID: (0, lambda d: _u16(USB_VENDOR_ID)),
            MessageType.GET_USB_PRODUCT_ID: (0, lambda d: _u16(USB_PRODUCT_ID)),
            MessageType.GET_ORIGINAL_DEVICE_STRING: (0, lambda d: MODEL.encode("ascii")),
            MessageType.GET_MAXIMUM_ADC_COUNTS: (0, lambda d: _u32(MAX_ADC_COUNTS)),
            MessageType.GET_SATURATION_LEVEL: (0, lambda d: _u32(SATURATION_LEVEL_COUNTS)),
            MessageType.GET_INTEGRATION_TIME_US: (0, lambda d: _u32(self._reported_integration_time_us())),
            MessageType.GET_MINIMUM_INTEGRATION_TIME_US: (0, lambda d: _u32(MIN_INTEGRATION_TIME_US)),
            MessageType.GET_MAXIMUM_INTEGRATION_TIME_US: (0, lambda d: _u32(MAX_INTEGRATION_TIME_US)),
            MessageType.SET_INTEGRATION_TIME_US: (4, self._set_integration_time),
            MessageType.SET_TRIGGER_MODE: (1, self._set_trigger_mode),
            MessageType.SET_LAMP_ENABLE: (1, self._set_lamp),
            MessageType.GET_WAVELENGTH_COEFFICIENT_COUNT: (0, lambda d: _u8(len(self._reported_coefficients()))),
            MessageType.GET_WAVELENGTH_COEFFICIENT: (
                1,
                lambda d: _f32(self._coefficient(self._reported_coefficients(), d)),
            ),
            MessageType.GET_NONLINEARITY_COEFFICIENT_COUNT: (0, lambda d: _u8(len(self.nonlinearity_coefficients))),
            MessageType.GET_NONLINEARITY_COEFFICIENT: (
                1,
                lambda d: _f32(self._coefficient(self.nonlinearity_coefficients, d)),
            ),
        }
        self.power_on()

    def power_on(self) -> None:
        """The state after power-up (and after SIM:UNPL): integration time 100 ms, trigger mode 0, lamp on."""
        self.integration_time_us = DEFAULT_INTEGRATION_TIME_US
        self.trigger_mode = 0
        #: The spectrometer's lamp-enable TTL output (SET_LAMP_ENABLE); high at power-on.
        self.lamp_line = True
        self._detector_free_wall_s = 0.0

    @property
    def lamp_on(self) -> bool:
        """Whether the lamp shines: as the TTL line says, or always when the line is not wired to it."""
        return self.lamp_line or not self.lamp_wired

    @property
    def integration_time_s(self) -> float:
        return self.integration_time_us * 1e-6

    # --- requests ------------------------------------------------------------------------------
    def handle(self, request: Frame) -> Reply:
        """The reply to one well-formed request (NACK on any error; nothing for an un-ACKed command)."""
        entry = self._messages.get(request.message_type)
        if entry is None:
            return Reply(response(request, error=ObpError.UNKNOWN_MESSAGE_TYPE))
        request_bytes, handler = entry
        if len(request.data) != request_bytes:
            return Reply(response(request, error=ObpError.PAYLOAD_LENGTH))
        if handler is None:
            data, ready_wall_s = self.acquire()
            return Reply(response(request, data), is_spectrum=True, ready_wall_s=ready_wall_s)
        try:
            data = handler(request.data)
        except ObpNack as nack:
            return Reply(response(request, error=nack.error))
        if data is None:  # a command: an answer only if it asked for an ACK
            return Reply(response(request) if request.wants_ack else None)
        return Reply(response(request, data))

    def acquire(self) -> tuple[bytes, float]:
        """One scan at the current integration time: its 2068 little-endian uint16, and when it is read out (wall)."""
        exposure_s = self.integration_time_s
        wall_now = time.monotonic()
        start_wall_s = max(wall_now, self._detector_free_wall_s)  # one exposure at a time
        start_s = self.clock.now_s() + (start_wall_s - wall_now) * self.clock.speed
        mid_s = start_s + exposure_s / 2.0
        rate = None
        if self.lamp_on:
            rate = self.optics.signal_rate(
                self.cell.concentrations_at(mid_s), mid_s, **self.cell.optics_arguments(mid_s)
            )
        counts = self.optics.read_out(rate, exposure_s, 1, self.rng, nonlinear=self.nonlinear)
        ready_wall_s = start_wall_s + exposure_s / self.clock.speed
        self._detector_free_wall_s = ready_wall_s
        return counts.astype("<u2").tobytes(), ready_wall_s

    def _set_integration_time(self, data: bytes) -> None:
        (value,) = struct.unpack("<I", data)
        if not MIN_INTEGRATION_TIME_US <= value <= MAX_INTEGRATION_TIME_US:
            raise ObpNack(ObpError.PAYLOAD_INVALID, f"integration time {value} us")
        self.integration_time_us = value

    def _set_trigger_mode(self, data: bytes) -> None:
        if data[0] != 0:
            raise ObpNack(ObpError.PAYLOAD_INVALID, f"trigger mode {data[0]} (only 0, normal)")
        self.trigger_mode = 0

    def _set_lamp(self, data: bytes) -> None:
        if data[0] not in (0, 1):
            raise ObpNack(ObpError.PAYLOAD_INVALID, f"lamp enable {data[0]} (0 or 1)")
        self.lamp_line = data[0] == 1

    @staticmethod
    def _coefficient(coefficients: tuple[float, ...], data: bytes) -> float:
        index = data[0]
        if index >= len(coefficients):
            raise ObpNack(ObpError.PAYLOAD_INVALID, f"coefficient {index} of {len(coefficients)}")
        return coefficients[index]

    # --- absurd answers (SIM:ABS) ----------------------------------------------------------------
    def _reported_integration_time_us(self) -> int:
        absurd = self.absurd_answers.get("ITIM")
        if absurd is None:
            return self.integration_time_us
        try:
            value = float(absurd)
        except ValueError:
            return _U32_MAX
        return int(min(max(value, 0.0), _U32_MAX)) if math.isfinite(value) else _U32_MAX

    def _reported_coefficients(self) -> tuple[float, ...]:
        absurd = self.absurd_answers.get("COEF")
        if absurd is None:
            return self.wavelength_coefficients
        values = []
        for text in absurd.split(",")[:255]:
            try:
                value = float(text)
            except ValueError:  # not a number at all: the firmware sends NaN
                value = math.nan
            if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
                value = math.copysign(math.inf, value)  # what float32 makes of it
            values.append(value)
        return tuple(values)


def build_instrument(
    seed: int, speed: float, wavelength_order: int, scenario: str | None, sampling_point: str | None = None
) -> HdxInstrument:
    """The HDX of ``seed`` (its detector's fixed patterns, noise and serial) on a fresh bench.

    ``sampling_point``: the point of the scenario's ``[cascade]`` whose solution is in the cell.
    """
    if not 1 <= wavelength_order <= MAX_WAVELENGTH_ORDER:
        raise ValueError(f"--wavelength-order must be 1-{MAX_WAVELENGTH_ORDER}, got {wavelength_order}")
    seeds = np.random.SeedSequence(seed).spawn(3)
    clock = SimClock(speed)
    cell = Cell(BenchDrift(np.random.default_rng(seeds[2])), sampling_point=sampling_point)
    if scenario:
        cell.scenario = load_scenario(scenario)
        cell.start_scenario(clock.now_s())
    cubic = wavelength_coefficients(PIXELS)
    if wavelength_order == 3:
        stored = float32_rounded(cubic)
    else:
        nominal = Optics(OpticsConfig(pixels=PIXELS, wavelength_coefficients=cubic), seed=seed).wavelengths_nm
        stored = float32_rounded(fit_wavelength_coefficients(nominal, wavelength_order))
    optics = Optics(OpticsConfig(pixels=PIXELS, wavelength_coefficients=stored), seed=seed)
    return HdxInstrument(
        optics,
        clock,
        cell,
        np.random.default_rng(seeds[0]),
        serial=f"{MODEL}{seed % 100000:05d}",
        nonlinearity_coefficients=optics.nonlinearity_coefficients(NONLINEARITY_ORDER),
    )


# --- the line ---------------------------------------------------------------------------------
class ObpFaults:
    """One-shot faults on the next OBP spectrum reply (``,ANY``: the next reply of any kind).

    The instrument always produced a correct reply (the scan was taken, the setting
    made); the line delivers something else. ``SIM:FAUL:LAST?`` answers
    ``<kind>,<bytes sent>,<bytes of the true reply>`` for the last faulted reply.
    """

    KINDS = {
        "NONE": "NONE",
        "SHORT": "SHORT",
        "LONG": "LONG",
        "NACK": "NACK",
        "HEAD": "HEADER",
        "HEADER": "HEADER",
        "VERS": "VERSION",
        "VERSION": "VERSION",
        "FOOT": "FOOTER",
        "FOOTER": "FOOTER",
        "LENG": "LENGTH",
        "LENGTH": "LENGTH",
        "CLOS": "CLOSE",
        "CLOSE": "CLOSE",
        "DROP": "DROP",
        "DEL": "DELAY",
        "DELAY": "DELAY",
        "TRIC": "TRICKLE",
        "TRICKLE": "TRICKLE",
    }
    WRONG_START_BYTES = 0xC1C0  # the two start bytes swapped
    WRONG_PROTOCOL_VERSION = 0x1000
    WRONG_FOOTER = 0xC5C4C3C2  # the footer's bytes reversed
    DEFAULT_LONG_BYTES = 16
    DEFAULT_LENGTH_PIXELS = PIXELS - 1
    DEFAULT_TRICKLE = (64, 0.05)  # bytes per piece, seconds between pieces
    _USAGE = (
        "(SHORT, LONG[,<bytes>], NACK,<code>, HEAD, VERS, FOOT, LENG[,<pixels>], CLOS,<bytes>, DROP, DEL,<s>, "
        "TRIC[,<bytes>[,<s>]], NONE; then optionally SPEC or ANY)"
    )

    def __init__(self) -> None:
        self.kind = "NONE"
        self.args: tuple = ()
        self.any_reply = False
        #: (kind, bytes sent, bytes of the true reply) of the last faulted reply.
        self.last: tuple[str, int, int] = ("NONE", 0, 0)

    def arm(self, params: str) -> None:
        """``<kind>[,<arg>...][,SPEC|ANY]``: see ``_USAGE`` and the module docstring."""
        kind_text, *args = [part.strip() for part in params.split(",")]
        kind = self.KINDS.get(kind_text.upper())
        if kind is None:
            raise ScpiFault(-224, f"Illegal parameter value;fault {params.strip()} {self._USAGE}")
        any_reply = False
        if args and args[-1].upper() in ("SPEC", "SPECTRUM", "ANY"):
            any_reply = args.pop().upper() == "ANY"
        self.kind, self.args, self.any_reply = kind, self._parse(kind, args), any_reply

    def _parse(self, kind: str, args: list[str]) -> tuple:
        if kind == "NACK":
            return (self._integer(args, "NACK,<code>", 0, 0xFFFF, None),)
        if kind == "CLOSE":
            return (self._integer(args, "CLOS,<bytes>", 0, 1 << 24, None),)
        if kind == "LONG":
            return (self._integer(args, "LONG[,<bytes>]", 1, 65536, self.DEFAULT_LONG_BYTES),)
        if kind == "LENGTH":
            return (self._integer(args, "LENG[,<pixels>]", 0, 4 * PIXELS, self.DEFAULT_LENGTH_PIXELS),)
        if kind == "DELAY":
            if len(args) != 1:
                raise ScpiFault(-109 if not args else -108, "DEL needs exactly one argument: <s>")
            return (parse_ranged(args[0], (0.0, 600.0), "delay", "s"),)
        if kind == "TRICKLE":
            if len(args) > 2:
                raise ScpiFault(-108, "Parameter not allowed;TRIC[,<bytes>[,<s>]]")
            piece_bytes, delay_s = self.DEFAULT_TRICKLE
            if args:
                piece_bytes = self._integer(args[:1], "TRIC,<bytes>", 1, 65536, None)
            if len(args) == 2:
                delay_s = parse_ranged(args[1], (0.0, 60.0), "trickle delay", "s")
            return (piece_bytes, delay_s)
        if args:
            raise ScpiFault(-108, f"Parameter not allowed;{kind} takes no argument")
        return ()

    @staticmethod
    def _integer(args: list[str], usage: str, low: int, high: int, default: int | None) -> int:
        if not args:
            if default is None:
                raise ScpiFault(-109, f"Missing parameter;{usage}")
            return default
        if len(args) > 1:
            raise ScpiFault(-108, f"Parameter not allowed;{usage}")
        if not re.fullmatch(r"[+]?\d+", args[0]):
            raise ScpiFault(-104, f"Data type error;{args[0]} ({usage})")
        value = int(args[0])
        if not low <= value <= high:
            raise ScpiFault(-222, f"Data out of range;{usage}: {value} not in {low}-{high}")
        return value

    def describe(self) -> str:
        """The armed fault with its arguments and target, as ``SIM:FAUL?`` answers it."""
        if self.kind == "NONE":
            return "NONE"
        return ",".join([self.kind, *(f"{a:g}" for a in self.args), "ANY" if self.any_reply else "SPEC"])

    def take(self, is_spectrum: bool) -> tuple[str, tuple]:
        """The armed fault if it applies to this reply (and disarm it), else ``("NONE", ())``."""
        if self.kind == "NONE" or not (is_spectrum or self.any_reply):
            return "NONE", ()
        armed = (self.kind, self.args)
        self.kind, self.args, self.any_reply = "NONE", (), False
        return armed

    def record(self, kind: str, sent_bytes: int, true_bytes: int) -> None:
        self.last = (kind, sent_bytes, true_bytes)

    def describe_last(self) -> str:
        """``<kind>,<bytes sent>,<bytes of the true reply>`` (``SIM:FAUL:LAST?``)."""
        kind, sent, total = self.last
        return f"{kind},{sent},{total}"

    def corrupt(self, kind: str, args: tuple, frame: Frame, is_spectrum: bool) -> bytes:
        """The bytes the faulty line delivers instead of ``frame`` (kinds that change bytes, not timing)."""
        if kind == "SHORT":
            whole = encode(frame)
            return whole[: HEADER_BYTES + (len(whole) - HEADER_BYTES) // 2]
        if kind == "LONG":
            whole = encode(frame)
            extra = bytes(range(256)) * (args[0] // 256 + 1)
            return whole[:-FOOTER_BYTES] + extra[: args[0]] + whole[-FOOTER_BYTES:]
        if kind == "NACK":
            flags = Flag.RESPONSE_TO_REQUEST | Flag.NACK
            return encode(Frame(frame.message_type, flags=int(flags), error=args[0], regarding=frame.regarding))
        if kind == "HEADER":
            return encode(frame, start_bytes=self.WRONG_START_BYTES)
        if kind == "VERSION":
            return encode(replace(frame, protocol_version=self.WRONG_PROTOCOL_VERSION))
        if kind == "FOOTER":
            return encode(frame, footer_value=self.WRONG_FOOTER)
        if kind == "LENGTH":
            data = frame.data
            if is_spectrum:
                pixels = np.frombuffer(data, dtype="<u2")
                resized = np.resize(pixels, args[0]) if args[0] else pixels[:0]
                data = resized.astype("<u2").tobytes()
            else:
                data = data[:-1] if data else b"\x00"
            return encode(replace(frame, data=data))
        return encode(frame)


# --- the servers ------------------------------------------------------------------------------
def _listening_socket(port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` (0: any free port), bound now: no connection is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as a vanished device leaves it."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class ObpServer:
    """The OBP port: requests in, replies out through the (possibly faulty) line; unplugging."""

    def __init__(self, instrument: HdxInstrument, faults: ObpFaults, port: int):
        self.instrument, self.faults = instrument, faults
        self._sock: socket.socket | None = _listening_socket(port)
        self.port: int = self._sock.getsockname()[1]
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task] = {}
        self._replug: asyncio.Task | None = None
        self._starting: asyncio.Task | None = None
        self._plugged_in_wall_s = 0.0

    @property
    def address(self) -> str:
        """Where a client connects: ``tcp://127.0.0.1:PORT``."""
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        """Serve the listening socket."""
        sock = self._sock
        assert sock is not None
        server = await asyncio.start_server(self._serve, sock=sock)
        if self._sock is sock:
            self._server = server
        else:  # unplugged (or closed) while it was starting
            server.close()

    def close(self) -> None:
        """Stop listening and reset every connection (at exit)."""
        self._stop_listening()
        for writer in list(self._connections):
            _reset(writer)

    def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()  # at once: connections are refused from now on
        elif self._sock is not None and self._starting is None:
            self._sock.close()
        # a start under way (self._starting) closes its server itself when it sees the socket gone
        self._server = self._sock = None

    # --- unplugging ----------------------------------------------------------------------------
    def unplug(self, seconds: float) -> None:
        """Reset every connection, lose the settings, refuse connections for ``seconds``.

        ``seconds`` = 0: a power blip while plugged in; while unplugged, back at once.
        """
        for writer, task in list(self._connections.items()):
            _reset(writer)
            task.cancel()
        self._connections.clear()
        self.instrument.power_on()
        if self._replug is not None:
            self._replug.cancel()
            self._replug = None
        if seconds <= 0.0:
            if self._sock is None and self._server is None:
                self._plug_in()
            return
        self._stop_listening()
        self._plugged_in_wall_s = time.monotonic() + seconds
        self._replug = asyncio.get_running_loop().create_task(self._plug_in_after(seconds))

    def unplugged_s(self) -> float:
        """Wall seconds until the device is back (0 only once it listens again)."""
        if self._replug is None:
            return 0.0
        return max(0.001, self._plugged_in_wall_s - time.monotonic())

    def _plug_in(self) -> bool:
        """Listen again on the same port (at once: connections queue from now on); False if the port is taken."""
        try:
            self._sock = _listening_socket(self.port)
        except OSError as error:
            print(f"ocean simulator: cannot listen on port {self.port} again: {error}", file=sys.stderr)
            return False
        self._starting = asyncio.get_running_loop().create_task(self.start())
        self._starting.add_done_callback(self._started)
        return True

    def _started(self, task: asyncio.Task) -> None:
        if self._starting is task:
            self._starting = None

    async def _plug_in_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        while not self._plug_in():  # another process took the port meanwhile: try again
            await asyncio.sleep(0.1)
        self._replug = None

    # --- one connection ------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(writer, None)
            if not writer.is_closing():
                writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one request and send its reply; False when the connection is over."""
        head = await reader.readexactly(HEADER_BYTES)
        header = decode_header(head)
        as_request = Frame(header.message_type, flags=header.flags, regarding=header.regarding)
        if header.start_bytes != START_BYTES or header.bytes_remaining < FOOTER_BYTES:
            return await self._refuse(writer, as_request, ObpError.INVALID_PROTOCOL)
        if header.bytes_remaining > MAX_REQUEST_REMAINING_BYTES:
            return await self._refuse(writer, as_request, ObpError.MESSAGE_TOO_LARGE)
        message = head + await reader.readexactly(header.bytes_remaining)
        try:
            request = decode(message)
        except FrameError as error:
            if error.out_of_sync:
                return await self._refuse(writer, as_request, error.error)
            return await self._send(writer, Reply(response(as_request, error=error.error)))
        reply = self.instrument.handle(request)
        return await self._send(writer, reply) if reply.frame is not None else True

    async def _refuse(self, writer: asyncio.StreamWriter, request: Frame, error: int) -> bool:
        """NACK a message whose boundaries cannot be trusted, then close: the stream is out of step."""
        writer.write(encode(response(request, error=error)))
        await writer.drain()
        return False

    async def _send(self, writer: asyncio.StreamWriter, reply: Reply) -> bool:
        """Send one reply through the (possibly faulty) line; False when the connection is over."""
        assert reply.frame is not None
        if reply.ready_wall_s:
            await asyncio.sleep(max(0.0, reply.ready_wall_s - time.monotonic()))
        true_bytes = encode(reply.frame)
        kind, args = self.faults.take(reply.is_spectrum)
        if kind == "NONE":
            writer.write(true_bytes)
            await writer.drain()
            return True
        self.faults.record(kind, 0, len(true_bytes))
        if kind == "DROP":
            return True
        if kind == "CLOSE":
            writer.write(true_bytes[: args[0]])
            await writer.drain()
            self.faults.record(kind, min(args[0], len(true_bytes)), len(true_bytes))
            writer.close()
            return False
        if kind == "DELAY":
            await asyncio.sleep(args[0])
            writer.write(true_bytes)
            await writer.drain()
            self.faults.record(kind, len(true_bytes), len(true_bytes))
            return True
        if kind == "TRICKLE":
            return await self._trickle(writer, true_bytes, *args)
        data = self.faults.corrupt(kind, args, reply.frame, reply.is_spectrum)
        writer.write(data)
        await writer.drain()
        self.faults.record(kind, len(data), len(true_bytes))
        return True

    async def _trickle(self, writer: asyncio.StreamWriter, data: bytes, piece_bytes: int, delay_s: float) -> bool:
        sent = 0
        while sent < len(data):
            if sent:
                await asyncio.sleep(delay_s)
            if writer.is_closing():
                return False
            writer.write(data[sent : sent + piece_bytes])
            await writer.drain()
            sent = min(len(data), sent + piece_bytes)
            self.faults.record("TRICKLE", sent, len(data))
        return True


class OceanBench:
    """The control port's own commands: identity, error queue, and the SIM: commands only this bench has."""

    def __init__(self, instrument: HdxInstrument, obp: ObpServer):
        self.instrument, self.obp = instrument, obp
        self.errors = ErrorQueue()

    def push_error(self, code: int, message: str) -> None:
        self.errors.push(code, message)

    def register(self, table: CommandTable) -> None:
        """Add the commands to ``table``."""
        inst = self.instrument
        table.add("*IDN", lambda p: f"REMDAQ,SIM-OCEAN-{MODEL}-BENCH,{inst.serial},0.1", query=True)
        table.add("*CLS", lambda p: self.errors.clear())
        table.add("*OPC", lambda p: "1", query=True)
        table.add("SYSTem:ERRor[:NEXT]", lambda p: self.errors.next_answer(), query=True)
        table.add("SIM:LAMP", lambda p: str(int(inst.lamp_on)), query=True)
        table.add("SIM:LAMP:WIRed", lambda p: setattr(inst, "lamp_wired", parse_switch(p)))
        table.add("SIM:LAMP:WIRed", lambda p: str(int(inst.lamp_wired)), query=True)
        table.add("SIM:NONLinearity", lambda p: setattr(inst, "nonlinear", parse_switch(p)))
        table.add("SIM:NONLinearity", lambda p: str(int(inst.nonlinear)), query=True)
        table.add("SIM:UNPLug", lambda p: self.obp.unplug(parse_ranged(p, (0.0, MAX_UNPLUG_S), "unplug", "s")))
        table.add("SIM:UNPLug", lambda p: f"{self.obp.unplugged_s():.3f}", query=True)
        table.add("SIM:CONNections", lambda p: str(self.obp.connections), query=True)


class ControlServer:
    """The text control port: one program message per line, answers as the SCPI simulator gives them."""

    def __init__(self, device: Device, port: int):
        self.device = device
        self._sock: socket.socket | None = _listening_socket(port)
        self.port: int = self._sock.getsockname()[1]
        self._server: asyncio.Server | None = None

    @property
    def resource(self) -> str:
        """The VISA resource string a text client opens."""
        return f"TCPIP0::127.0.0.1::{self.port}::SOCKET"

    async def start(self) -> None:
        assert self._sock is not None
        self._server = await asyncio.start_server(self._serve, sock=self._sock, limit=_MAX_CONTROL_LINE_BYTES)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        elif self._sock is not None:
            self._sock.close()
        self._server = self._sock = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                answers = self.device.handle(line.decode("ascii", errors="replace").strip())
                await asyncio.sleep(0)  # let what the commands did take effect first (SIM:UNPL: the resets)
                for answer in answers:
                    writer.write(answer.data)
                await writer.drain()
        except (ValueError, ConnectionError, asyncio.CancelledError):  # ValueError: a line over the limit
            pass
        finally:
            writer.close()


async def _serve_until_terminated(obp: ObpServer, control: ControlServer) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await obp.start()
    await control.start()
    print(f"{obp.address} {control.resource}", flush=True)
    await stop.wait()
    obp.close()
    control.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: serve the simulated HDX (OBP port and control port) until SIGTERM."""
    assert __doc__ is not None  # this module has a docstring (python -OO drops it, and this check too)
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.ocean", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="OBP TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--control-port", type=int, default=0, help="SIM: control port on 127.0.0.1 (0: any free)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second")
    parser.add_argument("--seed", type=int, default=0, help="seed of the detector's fixed pattern, noise and serial")
    parser.add_argument("--scenario", help="scenario file or bundled name to start at once")
    parser.add_argument(
        "--sampling-point",
        choices=SAMPLING_POINTS,
        help="the point of the scenario's [cascade] whose solution flows through the cell",
    )
    parser.add_argument(
        "--wavelength-order",
        type=int,
        default=3,
        help=f"order of the stored wavelength polynomial (1-{MAX_WAVELENGTH_ORDER})",
    )
    args = parser.parse_args(argv)
    try:
        instrument = build_instrument(
            args.seed, args.speed, args.wavelength_order, args.scenario, sampling_point=args.sampling_point
        )
        faults = ObpFaults()
        obp = ObpServer(instrument, faults, args.port)
        control = ControlServer(
            Device(OceanBench(instrument, obp), SimControl(instrument, faults, OCEAN_ABSURD_QUANTITIES)),
            args.control_port,
        )
    except (ValueError, ScenarioError, OSError) as error:
        print(f"ocean simulator: {error}", file=sys.stderr)
        return 2
    return asyncio.run(_serve_until_terminated(obp, control))


if __name__ == "__main__":
    sys.exit(main())
