"""Eurotherm 2400/3200-family furnace controller over Modbus RTU.

One declarative line per property over :mod:`drivers._modbus`; register
addresses, encoding and status bits come from a map in ``hardware/maps``.

Safety rules (docs/instruments/furnace.md): limits are checked before a byte
is sent; live setpoints go to the map's comms setpoint (RAM), never to the
EEPROM-backed SP1; every write is read back; the controller ramps by itself,
so a setpoint is only sent while its rate limit is on and within the station
limit. A failed read raises; it never returns a stale or a wrong number.

Reading the right register (decision 0039): RTU answers carry no register
address, so the driver makes answers it could confuse differ in shape. One
poll is the status word, then PV, target SP, output and working SP in one
block read (addresses 1-5, an answer no other request gets), then the status
word again; the two status words must agree, so an alarm or a sensor break
is only reported when the controller says it twice. Every value must lie in
its register's range from the map, else the answer is refused and retried.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from ._errors import InstrumentError, LimitError, NotConnected, ProtocolError, ReadbackMismatch
from ._modbus import InvalidAnswer, ModbusLink
from ._register_map import Register, resolve_register_map
from ._settings import ModbusParameter, ModbusValue

__all__ = ["Eurotherm", "FurnaceReading", "FurnaceStatus", "SensorFault"]

T = TypeVar("T")


class SensorFault(InstrumentError):
    """The controller reports sensor break or PV out of range: its PV is not a temperature."""


@dataclass(frozen=True)
class FurnaceStatus:
    """The controller's status word, decoded with the map's bit numbers."""

    raw: int
    alarm_1: bool = False
    alarm_2: bool = False
    alarm_3: bool = False
    alarm_4: bool = False
    manual: bool = False
    sensor_break: bool = False
    loop_break: bool = False
    heater_fail: bool = False
    tuning: bool = False
    program_end: bool = False
    pv_out_of_range: bool = False

    @classmethod
    def from_word(cls, raw: int, bits: dict[str, int]) -> FurnaceStatus:
        """Decode a 16-bit status word given ``{flag: bit number}``."""
        return cls(raw=raw, **{flag: bool(raw >> bit & 1) for flag, bit in bits.items() if flag in _STATUS_FIELDS})

    @property
    def any_alarm(self) -> bool:
        """Any alarm output, or a sensor, loop, heater or range fault."""
        return any(
            (
                self.alarm_1,
                self.alarm_2,
                self.alarm_3,
                self.alarm_4,
                self.sensor_break,
                self.loop_break,
                self.heater_fail,
                self.pv_out_of_range,
            )
        )


_STATUS_FIELDS = {f.name for f in fields(FurnaceStatus)} - {"raw"}


@dataclass(frozen=True)
class FurnaceReading:
    """One poll; ``temperature_C`` is NaN when the status says the PV is not valid."""

    temperature_C: float
    setpoint_C: float
    working_setpoint_C: float
    output_percent: float
    status: FurnaceStatus


#: The registers of one poll besides the status word (the map names the target setpoint).
_POLL_REGISTERS = ("process_value", "output_power", "working_setpoint")


class Eurotherm:
    """A Eurotherm-compatible furnace controller on a serial port (Modbus RTU, 8N1).

    ``register_map`` (a name in ``hardware/maps`` or a path) says how it speaks;
    without one, the map whose ``models`` list ``model`` is used (default model
    "2400"). Given both, ``model`` must be one of the map's models.
    ``max_temperature_C`` and ``max_rate_C_per_min`` are the station limits;
    ``safe_setpoint_C`` and ``safe_rate_C_per_min`` (default: the max rate)
    define :meth:`safe_state`. ``late_answer_s`` is how late an answer may
    still come after its request (default two timeouts; set it above the
    latest answer the line gives, decision 0039). ``answer_guard_s`` is the
    silence an answer must be followed by before it is used (default 3.5
    characters, at least 1.75 ms). ``serial_factory`` replaces
    ``serial.Serial`` (tests use a scripted port).
    """

    setpoint_C = ModbusValue(lambda m: m.target_setpoint, "Target setpoint the controller is heading for, C.")
    working_setpoint_C = ModbusValue("working_setpoint", "Working (rate-limited) setpoint in use now, C.")
    output_percent = ModbusValue("output_power", "Heater output, percent.")
    rate_limit_C_per_min = ModbusParameter(
        "setpoint_rate_limit",
        "Setpoint rate limit, C/min; 0 = off.",
        what="rate limit",
        unit="C/min",
        high="max_rate_C_per_min",
        off=0.0,
        off_allows="ramps",
    )
    _live_setpoint_C = ModbusParameter(
        lambda m: m.live_setpoint,
        "Live (comms) setpoint, C: set_setpoint writes it.",
        what="setpoint",
        unit="C",
        low="min_setpoint_C",
        high="max_temperature_C",
    )
    set_rate_limit = rate_limit_C_per_min.setter(
        "set_rate_limit", "value_C_per_min", "With the limit off the controller steps to a new setpoint at any rate."
    )

    def __init__(
        self,
        port: str,
        address: int = 1,
        baudrate: int = 9600,
        model: str | None = None,
        register_map: str | Path | None = None,
        max_temperature_C: float = 1200.0,
        max_rate_C_per_min: float = 20.0,
        timeout_s: float = 0.2,
        retries: int = 3,
        *,
        min_setpoint_C: float = 0.0,
        safe_setpoint_C: float = 20.0,
        safe_rate_C_per_min: float | None = None,
        late_answer_s: float | None = None,
        answer_guard_s: float | None = None,
        serial_factory=None,
    ) -> None:
        if model is None and register_map is None:
            model = "2400"
        self.register_map = resolve_register_map(model, register_map)
        if not max_rate_C_per_min > 0 or not max_temperature_C > min_setpoint_C:
            raise ValueError("need max_rate_C_per_min > 0 and max_temperature_C > min_setpoint_C")
        self.max_temperature_C, self.max_rate_C_per_min = max_temperature_C, max_rate_C_per_min
        self.min_setpoint_C = min_setpoint_C
        self.safe_setpoint_C = safe_setpoint_C
        self.safe_rate_C_per_min = min(safe_rate_C_per_min or max_rate_C_per_min, max_rate_C_per_min)
        if not 0 < self.safe_rate_C_per_min < math.inf:
            raise ValueError("safe_rate_C_per_min must be finite and > 0 (give it when max_rate_C_per_min is inf)")
        if not min_setpoint_C <= safe_setpoint_C <= max_temperature_C:
            raise ValueError(f"safe_setpoint_C {safe_setpoint_C} is outside {min_setpoint_C}..{max_temperature_C}")
        self._decimals: int | None = None
        poll = (*_POLL_REGISTERS, self.register_map.target_setpoint)
        self._poll_blocks = self.register_map.blocks(poll)
        self._block_of = {register.name: block for block in self._poll_blocks for register in block}
        self._link = ModbusLink(
            port,
            address,
            baudrate,
            timeout_s,
            retries,
            serial_factory,
            answer_guard_s=answer_guard_s,
            late_answer_s=late_answer_s,
        )
        self._link.on_reopen = self._forget_scaling
        self._link.open()

    # -- plain reads --------------------------------------------------------------
    @property
    def ident(self) -> str:
        """The map's maker and the model its ident register names: ``Eurotherm 2408 (ident 0x2480, ...)``."""
        m = self.register_map
        code = self._read_word(m["ident"])
        known = m.ident_codes.get(code) or f"{m.family}-family? unknown ident"
        return f"{m.maker} {known} (ident 0x{code:04X}, map {m.name})"

    @property
    def status(self) -> FurnaceStatus:
        """Alarms and faults decoded from the status word, read twice: both reads must agree."""
        return self._read_twice(self._read_status, "status word")

    @property
    def temperature_C(self) -> float:
        """Measured temperature (PV), C; :class:`SensorFault` on sensor break or PV out of range."""
        reading = self.read_all()
        if math.isnan(reading.temperature_C):
            status = reading.status
            raise SensorFault(
                f"PV not valid: sensor_break={status.sensor_break}, "
                f"pv_out_of_range={status.pv_out_of_range} (status 0x{status.raw:04X})"
            )
        return reading.temperature_C

    def read_all(self) -> FurnaceReading:
        """One poll for the trial runner: PV, target SP, working SP, output and status.

        Status word, the block of PV .. working SP, status word again. If the
        two status words differ (the status changed, or one answer was not
        the status word), or the PV is outside the sensor's span while the
        controller does not say so, the poll is read again (``1 + retries``
        polls at most, then :class:`ProtocolError`).
        """
        m = self.register_map
        pv_register = m["process_value"]
        problem = ""
        with self._link.lock:
            for _ in range(1 + self._link.retries):
                before = self._read_status()
                values: dict[str, float] = {}
                for block in self._poll_blocks:
                    values.update(self._read_block(block))
                status = self._read_status()  # after the values too: a break during their read is seen
                temperature = values["process_value"]
                pv_valid = not (status.sensor_break or status.pv_out_of_range)
                if status != before:
                    problem = f"status word 0x{before.raw:04X} before the values, 0x{status.raw:04X} after"
                elif pv_valid and not pv_register.in_range(temperature):
                    problem = (
                        f"PV reads {temperature!r}, outside {pv_register.valid_range}, and the status does not say so"
                    )
                else:
                    return FurnaceReading(
                        temperature if pv_valid else math.nan,
                        values[m.target_setpoint],
                        values["working_setpoint"],
                        values["output_power"],
                        status,
                    )
        raise ProtocolError(f"poll: no consistent reading in {1 + self._link.retries} polls: {problem}")

    # -- writes -------------------------------------------------------------------
    def set_setpoint(self, value_C: float) -> None:
        """Send a live setpoint (comms SP); the controller ramps to it at its rate limit.

        :class:`LimitError` before anything is written if the value is outside
        the station or instrument limits, or if the controller's rate limit is
        off or above ``max_rate_C_per_min`` (call :meth:`set_rate_limit` first).
        """
        live, value = type(self)._live_setpoint_C.check(self, value_C)
        with self._link.lock:
            self._require_rate_limit()
            self._write_setpoint(live, value)

    def safe_state(self) -> None:
        """Ramp down to ``safe_setpoint_C`` at <= ``safe_rate_C_per_min`` under automatic control.

        Steps, each read back: rate limit, live setpoint, auto mode. A failed
        step does not stop the next ones; the first error is raised at the end.
        On a dead line it raises :class:`NotConnected` (and stops trying).
        """
        errors: list[InstrumentError] = []
        steps = (
            lambda: self._write_analog(self.register_map["setpoint_rate_limit"], self.safe_rate_C_per_min),
            lambda: self._write_setpoint(self.register_map[self.register_map.live_setpoint], self.safe_setpoint_C),
            self._ensure_auto,
        )
        with self._link.lock:
            for step in steps:
                try:
                    step()
                except NotConnected:
                    raise
                except InstrumentError as error:
                    errors.append(error)
        if errors:
            raise errors[0]

    @property
    def line_counters(self) -> dict[str, int]:
        """What the RTU line rules discarded or refused so far (diagnostics; see decision 0039)."""
        return dict(self._link.line_counters())

    # -- connection -------------------------------------------------------------------
    def reconnect(self) -> None:
        """Close and reopen the serial port (``NotConnected`` if it is still gone)."""
        self._link.open()

    def close(self) -> None:
        """Close the serial port. The controller keeps running on its own."""
        self._link.close()

    def __enter__(self) -> Eurotherm:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Eurotherm(port={self._link.port!r}, address={self._link.address}, map={self.register_map.name!r})"

    # -- encoding ---------------------------------------------------------------------
    def _forget_scaling(self) -> None:
        self._decimals = None  # a reopened port may lead to another instrument

    def _decimals_of(self, register: Register) -> int:
        """Implied decimals of an integer-area register; "display" is read once per connection, twice."""
        decimals = register.decimals
        if decimals != "display":
            if decimals is None:  # a word register: as int(None) would, but saying why
                raise TypeError(f"{register.name} is not an analog register: it has no decimals")
            return int(decimals)
        if self._decimals is None:  # it scales everything: an answer that was not this register must not
            register = self.register_map["decimal_places"]
            self._decimals = self._read_twice(lambda: self._read_word(register), "decimal places")
        return self._decimals

    def _read_twice(self, read: Callable[[], T], what: str) -> T:
        """``read()`` until two reads in a row agree (``1 + retries`` pairs at most, then ``ProtocolError``)."""
        with self._link.lock:
            for _ in range(1 + self._link.retries):
                first, second = read(), read()
                if first == second:
                    return second
        raise ProtocolError(
            f"{what} read differently twice in a row, {1 + self._link.retries} times (last {first!r}, then {second!r})"
        )

    def _read_word(self, register: Register, *, fresh: bool = True) -> int:
        def check(words: list[int]) -> int:
            if not register.in_range(words[0]):
                raise InvalidAnswer(f"{register.name} reads {words[0]}, outside {register.valid_range}")
            return words[0]

        return self._link.read_registers(register.address, 1, f"read {register.name}", check, fresh=fresh)

    def _read_status(self) -> FurnaceStatus:
        """One read of the status word; callers read it twice and compare instead of waiting out late answers."""
        return FurnaceStatus.from_word(
            self._read_word(self.register_map["status_word"], fresh=False), dict(self.register_map.status_bits)
        )

    def _read_analog(self, register: Register) -> float:
        """One analog value: with its poll block if it has one (an answer of a shape no other request gets)."""
        return self._read_block(self._block_of.get(register.name, (register,)))[register.name]

    def _read_block(self, block: tuple[Register, ...]) -> dict[str, float]:
        """Adjacent analog registers in one request, each decoded and checked against its range.

        A PV outside the sensor's span is returned (only the poll can tell, from
        the status, whether that is a sensor fault or not this register's answer).
        """
        m = self.register_map
        first = block[0]
        names = "+".join(register.name for register in block)
        if m.area == "float":
            address, count = m.float_address(first), 2 * len(block)

            def decode(words: list[int]) -> list[float]:
                pairs = zip(words[0::2], words[1::2])
                return [struct.unpack(">f", struct.pack(">HH", high, low))[0] for high, low in pairs]
        else:
            address, count = first.address, len(block)
            scales = [10 ** self._decimals_of(register) for register in block]

            def decode(words: list[int]) -> list[float]:
                return [(word - 0x10000 if word & 0x8000 else word) / scale for word, scale in zip(words, scales)]

        def check(words: list[int]) -> dict[str, float]:
            values = dict(zip((register.name for register in block), decode(words)))
            for register in block:
                value = values[register.name]
                if not math.isfinite(value):
                    raise InvalidAnswer(f"{register.name} reads {value!r}, not a number")
                if register.name != "process_value" and not register.in_range(value):
                    raise InvalidAnswer(
                        f"{register.name} reads {value!r}, outside {register.valid_range}: "
                        "not an answer of this register"
                    )
            return values

        return self._link.read_registers(address, count, f"read {names}", check)

    def _quantize(self, register: Register, value: float) -> float:
        """The value as the instrument will store it (its resolution)."""
        if self.register_map.area == "float":
            return struct.unpack(">f", struct.pack(">f", value))[0]
        decimals = self._decimals_of(register)
        return round(value * 10**decimals) / 10**decimals

    def _write_analog(self, register: Register, value: float) -> None:
        """Write one analog register and read it back."""
        what = f"write {register.name}"
        if self.register_map.area == "float":
            words = list(struct.unpack(">HH", struct.pack(">f", value)))
            self._link.write_registers(self.register_map.float_address(register), words, what)
        else:
            raw = round(value * 10 ** self._decimals_of(register))
            if not -0x8000 <= raw <= 0x7FFF:
                raise LimitError(f"{what}: {value!r} does not fit a 16-bit register; nothing was sent")
            self._link.write_register(
                register.address, raw & 0xFFFF, what, functioncode=self.register_map.single_write_function
            )
        self._expect(register, self._quantize(register, value), register)

    def _expect(self, register: Register, expected: float, written: Register) -> None:
        actual = self._read_analog(register)
        if abs(actual - expected) > 1e-6 * max(1.0, abs(expected)):
            raise ReadbackMismatch(f"wrote {expected!r} to {written.name}, {register.name} reads back {actual!r}")

    # -- safety helpers -------------------------------------------------------------
    def _require_rate_limit(self) -> None:
        if not math.isfinite(self.max_rate_C_per_min):
            return
        rate = self.rate_limit_C_per_min
        if not 0 < rate <= self.max_rate_C_per_min:
            raise LimitError(
                f"controller rate limit is {rate:g} C/min (0 = off); it must be on and <= "
                f"{self.max_rate_C_per_min:g} C/min before a setpoint is sent: call set_rate_limit; "
                "no setpoint was written"
            )

    def _write_setpoint(self, live: Register, value_C: float) -> None:
        """Write the live setpoint, read it back, and check the controller uses it."""
        self._write_analog(live, value_C)
        target = self.register_map[self.register_map.target_setpoint]
        try:
            self._expect(target, self._quantize(live, value_C), live)
        except ReadbackMismatch as error:
            raise ReadbackMismatch(f"{error}: is the remote (comms) setpoint enabled on the controller?") from None

    def _ensure_auto(self) -> None:
        register = self.register_map["auto_manual"]
        if self._read_word(register) != 0:
            self._link.write_register(
                register.address, 0, "write auto_manual", functioncode=self.register_map.single_write_function
            )
            if self._read_word(register) != 0:
                raise ReadbackMismatch("wrote auto (0) to auto_manual; it reads back manual")
