"""Eurotherm 2400/3200/EPC3000/nanodac furnace controller over Modbus RTU or Modbus TCP.

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
from ._modbus import InvalidAnswer, open_link
from ._modbus_unit import ModbusUnitDriver
from ._register_map import ProgrammerLayout, Register, resolve_register_map
from ._settings import ModbusParameter, ModbusValue

__all__ = ["Eurotherm", "FurnaceReading", "FurnaceStatus", "NotConfigured", "ProgramSegment", "SensorFault"]

T = TypeVar("T")


class SensorFault(InstrumentError):
    """The controller reports sensor break or PV out of range: its PV is not a temperature."""


class NotConfigured(InstrumentError):
    """The controller is not configured the way the driver needs (a commissioning step); nothing was written."""


@dataclass(frozen=True)
class ProgramSegment:
    """One segment of a furnace program as the controller's programmer runs it: ramp, then dwell."""

    ramp_C_per_min: float
    target_C: float
    dwell_min: float = 0.0


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
    dc_module_fault: bool = False
    segment_sync: bool = False
    remote_input_break: bool = False
    new_alarm: bool = False
    ramp_running: bool = False
    remote_sp_fail: bool = False

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
                self.dc_module_fault,
                self.remote_input_break,
                self.remote_sp_fail,  # the controller runs on its local SP: ours is not in use
            )
        )


_STATUS_FIELDS = {f.name for f in fields(FurnaceStatus)} - {"raw"}
#: Bit of each flag in the status word made up from a map's [status_registers] (its ``raw``).
_COMPOSED_BITS = {name: bit for bit, name in enumerate(f.name for f in fields(FurnaceStatus) if f.name != "raw")}


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
#: Rate limits: written and read only once the controller's rate units are checked (per minute).
_RATE_REGISTERS = ("setpoint_rate_limit", "setpoint_rate_limit_down")
#: A time register (``kind = "time"``) is minutes to the driver, milliseconds on the wire (decision 0087).
_MS_PER_MIN = 60_000


def _to_float_area(register: Register, value: float) -> list[int]:
    """The two words of ``value`` in the float area: IEEE-754 float32, or for a time an int32 of milliseconds."""
    if register.is_time:
        milliseconds = round(value * _MS_PER_MIN)
        if not -(2**31) <= milliseconds < 2**31:
            raise LimitError(f"write {register.name}: {value!r} min does not fit 32 bits of milliseconds")
        return list(struct.unpack(">HH", struct.pack(">i", milliseconds)))
    return list(struct.unpack(">HH", struct.pack(">f", value)))


def _from_float_area(register: Register, high: int, low: int) -> float:
    """The value of two float-area words (most significant first), in the register's units."""
    if register.is_time:
        return struct.unpack(">i", struct.pack(">HH", high, low))[0] / _MS_PER_MIN
    return struct.unpack(">f", struct.pack(">HH", high, low))[0]


class Eurotherm(ModbusUnitDriver):
    """A Eurotherm-compatible furnace controller on a serial port (Modbus RTU, 8N1) or at ``tcp://HOST[:PORT]``
    (Modbus TCP; ``address`` is the unit id). Controllers on one port share its link (decision 0078).

    ``register_map`` (a name in ``hardware/maps`` or a path) says how it speaks;
    without one, the map whose ``models`` list ``model`` is used (default model
    "2400"). Given both, ``model`` must be one of the map's models.
    ``max_temperature_C`` and ``max_rate_C_per_min`` are the station limits;
    ``safe_setpoint_C`` and ``safe_rate_C_per_min`` (default: the max rate)
    define :meth:`safe_state`. ``late_answer_s`` is how late an answer may
    still come after its request (default two timeouts; set it above the
    latest answer the line gives, decision 0039). ``watchdog_s`` is the comms
    watchdog's timeout :meth:`arm_watchdog` writes (decision 0079). ``answer_guard_s`` is the
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
        watchdog_s: float = 10.0,
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
        if not 1.0 <= watchdog_s <= 3600.0:
            raise ValueError(f"watchdog_s must be 1..3600 s, not {watchdog_s!r}")
        self.watchdog_s = watchdog_s
        self._decimals: int | None = None
        self._whole_units: bool | None = None  # integer area, comms resolution integer: no implied decimals
        self._checked: set[str] = set()  # configuration checked on this connection
        poll = (*_POLL_REGISTERS, self.register_map.target_setpoint)
        self._poll_blocks = self.register_map.blocks(poll)
        self._block_of = {register.name: block for block in self._poll_blocks for register in block}
        self._link = open_link(
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
        m = self.register_map
        live = m[m.live_setpoint]
        steps: list[Callable[[], object]] = [
            lambda: self._write_analog(m["setpoint_rate_limit"], self.safe_rate_C_per_min),
            lambda: self._write_setpoint(live, self.safe_setpoint_C),
            self._ensure_auto,
        ]
        if m.programmer is not None:
            # the live SP made safe first (a running program's SP is the target until then), then the programmer
            # reset hands over to it, then the target is checked
            steps[1:2] = [
                lambda: (self._select_remote_setpoint(), self._write_analog(live, self.safe_setpoint_C)),
                self._reset_program_for_safe_state,
            ]
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

    def _reset_program_for_safe_state(self) -> None:
        self.reset_program()
        self._expect(
            self.register_map[self.register_map.target_setpoint],
            self._quantize(self.register_map[self.register_map.live_setpoint], self.safe_setpoint_C),
            self.register_map[self.register_map.live_setpoint],
        )

    def __repr__(self) -> str:
        return f"Eurotherm(port={self._link.port!r}, address={self._link.address}, map={self.register_map.name!r})"

    # -- encoding ---------------------------------------------------------------------
    def _forget_scaling(self) -> None:
        self._decimals = None  # a reopened port may lead to another instrument
        self._whole_units = None
        self._checked = set()

    def _decimals_of(self, register: Register) -> int:
        """Implied decimals of an integer-area register; "display" is read once per connection, twice.

        With the map's comms resolution register reading integer, every value
        goes over comms in whole units: no implied decimals (read once per
        connection, twice, before anything is scaled).
        """
        if register.decimals is not None and self._integer_resolution():
            return 0
        decimals = register.decimals
        if decimals != "display":
            if decimals is None:  # a word register: as int(None) would, but saying why
                raise TypeError(f"{register.name} is not an analog register: it has no decimals")
            return int(decimals)
        if self._decimals is None:  # it scales everything: an answer that was not this register must not
            register = self.register_map["decimal_places"]
            self._decimals = self._read_twice(lambda: self._read_word(register), "decimal places")
        return self._decimals

    def _integer_resolution(self) -> bool:
        name = self.register_map.configuration.get("comms_resolution")
        if name is None or self.register_map.area != "integer":
            return False
        if self._whole_units is None:
            register = self.register_map[name]
            value = self._read_twice(lambda: self._read_word(register), "comms resolution")
            self._whole_units = value == self.register_map.configuration["integer_resolution"]
        return bool(self._whole_units)

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
        """One read of the status word; callers read it twice and compare instead of waiting out late answers.

        A map with ``[status_registers]`` (no status word) reads each flag's
        register; ``raw`` is then a word made up of those flags (bit = the
        flag's place among the FurnaceStatus fields).
        """
        m = self.register_map
        if m.status_registers:
            flags = {flag: self._read_word(m[name], fresh=False) != 0 for flag, name in m.status_registers.items()}
            raw = sum(1 << _COMPOSED_BITS[flag] for flag, on in flags.items() if on)
            return FurnaceStatus(raw=raw, **flags)
        return FurnaceStatus.from_word(self._read_word(m["status_word"], fresh=False), dict(m.status_bits))

    def _read_analog(self, register: Register) -> float:
        """One analog value: with its poll block if it has one (an answer of a shape no other request gets)."""
        if register.name in _RATE_REGISTERS:
            self._check_rate_units()
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
                pairs = zip(block, words[0::2], words[1::2])
                return [_from_float_area(register, high, low) for register, high, low in pairs]
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
        if register.is_time:
            return round(value * _MS_PER_MIN) / _MS_PER_MIN
        if self.register_map.area == "float":
            return struct.unpack(">f", struct.pack(">f", value))[0]
        decimals = self._decimals_of(register)
        return round(value * 10**decimals) / 10**decimals

    def _write_analog(self, register: Register, value: float) -> None:
        """Write one analog register and read it back.

        A rate limit is written only in the units the driver means (per
        minute, checked first), and a rate limit written is switched on (the
        map's rate-disable flag cleared and read back).
        """
        if register.name in _RATE_REGISTERS:
            self._check_rate_units()
        self._write_value(register, value)
        if register.name == "setpoint_rate_limit" and value > 0:
            self._enable_rate_limit()

    def _write_value(self, register: Register, value: float) -> None:
        what = f"write {register.name}"
        if self.register_map.area == "float":
            words = _to_float_area(register, value)
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

    def _write_word(self, register: Register, word: int) -> None:
        """Write one word register and read it back."""
        if not register.in_range(word):
            raise LimitError(f"{register.name} := {word}: outside {register.valid_range}; nothing was sent")
        self._link.write_register(
            register.address, word, f"write {register.name}", functioncode=self.register_map.single_write_function
        )
        actual = self._read_word(register)
        if actual != word:
            raise ReadbackMismatch(f"wrote {word} to {register.name}, it reads back {actual}")

    # -- configuration the driver relies on --------------------------------------------
    def _check_rate_units(self) -> None:
        """The rate limit is per minute, as every rate the driver writes: else :class:`NotConfigured`."""
        name = self.register_map.configuration.get("rate_units")
        if name is None or "rate_units" in self._checked:
            return
        register = self.register_map[name]
        units = self._read_twice(lambda: self._read_word(register), "rate units")
        wanted = self.register_map.configuration["rate_units_per_minute"]
        if units != wanted:
            raise NotConfigured(
                f"the controller's setpoint rate units ({name}, register {register.address}) read {units}, "
                f"not {wanted} (per minute): configure the SP rate units to per minute; no rate was written"
            )
        self._checked.add("rate_units")

    def _rate_limit_disabled(self) -> bool:
        name = self.register_map.configuration.get("rate_disable")
        return name is not None and self._read_word(self.register_map[name]) != 0

    def _enable_rate_limit(self) -> None:
        name = self.register_map.configuration.get("rate_disable")
        if name is not None and self._rate_limit_disabled():
            self._write_word(self.register_map[name], 0)

    def _select_remote_setpoint(self) -> None:
        """Make the live (remote) setpoint the active one, once per connection; :class:`NotConfigured` if the
        controller does not take it (a commissioning step)."""
        select = self.register_map.remote_select
        if select is None or "remote_select" in self._checked:
            return
        name, value = select
        register = self.register_map[name]
        if self._read_word(register) != value:
            try:
                self._write_word(register, value)
            except (ProtocolError, ReadbackMismatch) as error:
                raise NotConfigured(
                    f"cannot select the remote setpoint ({name} := {value}, register {register.address}): {error}; "
                    f"configure the remote/comms setpoint ({self.register_map.live_setpoint}) in the controller "
                    "(commissioning) so that it can be selected; no setpoint was written"
                ) from None
        self._checked.add("remote_select")

    def prepare(self) -> None:
        """Check, before a program's first segment, what the driver relies on: rate units per minute, comms
        resolution read, remote setpoint selected. :class:`NotConfigured` says what to configure."""
        with self._link.lock:
            self._check_rate_units()
            self._integer_resolution()
            self._select_remote_setpoint()

    # -- safe without the PC -------------------------------------------------------------
    @property
    def safety(self) -> str:
        """How this controller ends safe when the PC dies: ``"watchdog"`` (its comms watchdog goes to a
        fallback setpoint), ``"programmer"`` (it runs the program itself, ending at the safe setpoint) or
        ``"none"`` (it holds the last target; docs/instruments/furnace.md)."""
        m = self.register_map
        return "watchdog" if m.watchdog else "programmer" if m.programmer else "none"

    def arm_watchdog(self) -> None:
        """Set the comms watchdog: fallback setpoint := ``safe_setpoint_C``, its down rate := the safe rate,
        timeout := ``watchdog_s``; each read back. With no request for that long the controller goes to the
        fallback setpoint by itself."""
        watchdog = self.register_map.watchdog
        if watchdog is None:
            raise NotConfigured(f"map {self.register_map.name} has no [watchdog]: this controller has none")
        m = self.register_map
        with self._link.lock:
            self._write_analog(m[watchdog.fallback_setpoint], self.safe_setpoint_C)
            if watchdog.rate_down is not None:
                self._write_analog(m[watchdog.rate_down], self.safe_rate_C_per_min)
            self._write_word(m[watchdog.timeout], max(1, math.ceil(self.watchdog_s)))

    @property
    def watchdog_tripped(self) -> bool:
        """Whether the comms watchdog has tripped (the controller went to its fallback setpoint)."""
        watchdog = self.register_map.watchdog
        return watchdog is not None and self._read_word(self.register_map[watchdog.flag]) != 0

    def load_program(self, segments: list[ProgramSegment], end_rate_C_per_min: float | None = None) -> int:
        """Write ``segments`` into the controller's programmer, then a last ramp to ``safe_setpoint_C`` at
        ``end_rate_C_per_min`` (default the safe rate) and an end that dwells there; return the number
        (1-based) of the controller segment that ramps to the safe setpoint: the trial's program is over when
        the programmer reaches it.

        The map's ``[programmer] style`` says how (decision 0087): ``typed`` (2400) writes a rate segment per
        recipe segment, a dwell segment where it has a dwell, the ramp to the safe setpoint and an end segment
        whose end type dwells; ``ramp_dwell`` (3216P) writes a ramp-then-dwell segment per recipe segment,
        the ramp to the safe setpoint, every remaining segment at the safe setpoint (the programmer runs them
        all), and the program's end type := dwell. Limits are checked for every segment before anything is
        written (:class:`LimitError`); the program is reset first (a running program cannot be edited); every
        register is read back. A programmer without ramp units of its own ramps in the setpoint rate units,
        which are checked first (per minute)."""
        layout = self._programmer()
        end_rate = self.safe_rate_C_per_min if end_rate_C_per_min is None else end_rate_C_per_min
        m = self.register_map
        if layout.style == "ramp_dwell":
            plan = self._ramp_dwell_plan(list(segments), end_rate)
            cool = len(segments) + 1
        else:
            typed = self._program_plan(list(segments), end_rate)
            cool = len(typed) - 1
        with self._link.lock:
            self.reset_program()
            if layout.ramp_units is None:
                self._check_rate_units()
            for name, value in (("program_number", 1), ("program_cycles", 1)):
                if name in m.registers:
                    self._write_word(m[name], value)
            for name in (layout.ramp_units, layout.dwell_units):
                if name is not None:
                    self._write_word(m[name], layout.minutes)
            if layout.style == "ramp_dwell":
                for number, values in enumerate(plan, start=1):
                    for field_name in ("target", "rate", "dwell"):
                        self._write_analog(m[layout.segment_register(number, field_name)], values[field_name])
                assert layout.end_register is not None  # the schema requires it for ramp_dwell
                self._write_word(m[layout.end_register], layout.end_dwell)
                return cool
            for number, (kind, target, value) in enumerate(typed, start=1):
                self._write_word(m[layout.segment_register(number, "type")], layout.segment_types[kind])
                if kind == "end":
                    if "end_type" in layout.fields:
                        self._write_word(m[layout.segment_register(number, "end_type")], layout.end_dwell)
                    continue
                if kind == "rate":
                    self._write_analog(m[layout.segment_register(number, "target")], target)
                self._write_analog(m[layout.segment_register(number, "time_or_rate")], value)
        return cool

    def _check_program_segment(self, number: int, segment: ProgramSegment) -> None:
        if not 0 < segment.ramp_C_per_min <= self.max_rate_C_per_min:
            raise LimitError(
                f"program segment {number}: ramp {segment.ramp_C_per_min:g} C/min is outside "
                f"0..{self.max_rate_C_per_min:g} C/min (0 would step); nothing was written"
            )
        if not self.min_setpoint_C <= segment.target_C <= self.max_temperature_C:
            raise LimitError(
                f"program segment {number}: target {segment.target_C:g} C is outside "
                f"{self.min_setpoint_C:g}..{self.max_temperature_C:g} C; nothing was written"
            )

    def _check_end_rate(self, end_rate: float) -> None:
        if not 0 < end_rate <= self.max_rate_C_per_min:
            raise LimitError(f"program end: ramp {end_rate:g} C/min is outside 0..{self.max_rate_C_per_min:g} C/min")

    def _ramp_dwell_plan(self, segments: list[ProgramSegment], end_rate: float) -> list[dict[str, float]]:
        """{target, rate, dwell} per controller segment of a ramp_dwell programmer, all of them; LimitError
        before anything is sent."""
        layout = self._programmer()
        for number, segment in enumerate(segments, start=1):
            self._check_program_segment(number, segment)
        self._check_end_rate(end_rate)
        if len(segments) + 1 > layout.segments:
            raise LimitError(
                f"the program needs {len(segments) + 1} controller segments (a ramp and dwell per segment, then "
                f"the ramp to the safe setpoint), the programmer holds {layout.segments}; nothing was written"
            )
        plan = [{"target": s.target_C, "rate": s.ramp_C_per_min, "dwell": s.dwell_min} for s in segments]
        # the ramp to the safe setpoint, then every remaining segment stays there (the programmer runs them all)
        plan += [{"target": self.safe_setpoint_C, "rate": end_rate, "dwell": 0.0}] * (layout.segments - len(plan))
        for number, values in enumerate(plan, start=1):
            for field_name, value in values.items():
                register = self.register_map[layout.segment_register(number, field_name)]
                if not register.in_range(value):
                    raise LimitError(
                        f"program segment {number} ({field_name}): {value:g} is outside {register.valid_range}; "
                        "nothing was written"
                    )
        return plan

    def _program_plan(self, segments: list[ProgramSegment], end_rate: float) -> list[tuple[str, float, float]]:
        """(kind, target, rate or minutes) per controller segment of a typed programmer; LimitError before
        anything is sent."""
        layout = self._programmer()
        plan: list[tuple[str, float, float]] = []
        for number, segment in enumerate(segments, start=1):
            self._check_program_segment(number, segment)
            plan.append(("rate", segment.target_C, segment.ramp_C_per_min))
            if segment.dwell_min > 0:
                plan.append(("dwell", segment.target_C, segment.dwell_min))
        self._check_end_rate(end_rate)
        plan += [("rate", self.safe_setpoint_C, end_rate), ("end", self.safe_setpoint_C, 0.0)]
        if len(plan) > layout.segments:
            raise LimitError(
                f"the program needs {len(plan)} controller segments (a ramp per segment, a dwell where it has one, "
                f"the ramp to the safe setpoint and the end), the programmer holds {layout.segments}; "
                "nothing was written"
            )
        for number, (kind, _, value) in enumerate(plan, start=1):
            register = self.register_map[layout.segment_register(number, "time_or_rate")]
            if kind != "end" and not register.in_range(value):
                raise LimitError(
                    f"program segment {number} ({kind}): {value:g} is outside {register.valid_range}; "
                    "nothing was written"
                )
        return plan

    def run_program(self) -> None:
        """Start the loaded program; the status must then read run (else :class:`ReadbackMismatch`)."""
        layout = self._programmer()
        with self._link.lock:
            register = self.register_map[layout.control]
            self._link.write_register(
                register.address, layout.run, "run program", functioncode=self.register_map.single_write_function
            )
            state, _ = self.program_state()
            if state not in ("run", "holdback", "complete"):
                raise ReadbackMismatch(f"wrote run ({layout.run}) to {layout.control}; the programmer reads {state}")

    def reset_program(self) -> None:
        """Reset the programmer (the controller returns to its local/remote setpoint); read back."""
        layout = self._programmer()
        with self._link.lock:
            if self.program_state()[0] == "reset":
                return
            register = self.register_map[layout.control]
            self._link.write_register(
                register.address, layout.reset, "reset program", functioncode=self.register_map.single_write_function
            )
            state, _ = self.program_state()
            if state != "reset":
                raise ReadbackMismatch(
                    f"wrote reset ({layout.reset}) to {layout.control}; the programmer reads {state}"
                )

    def program_state(self) -> tuple[str, int]:
        """The programmer's state (a name of the map's [program_status], or ``"unknown <n>"``) and segment."""
        layout = self._programmer()
        m = self.register_map
        with self._link.lock:
            code = self._read_word(m[layout.status])
            segment = self._read_word(m[layout.segment_number]) if layout.segment_number else 0
        names = {value: name for name, value in m.program_status.items()}
        return names.get(code, f"unknown {code}"), segment

    def _programmer(self) -> ProgrammerLayout:
        layout = self.register_map.programmer
        if layout is None:
            raise NotConfigured(f"map {self.register_map.name} has no [programmer]: this controller has none")
        return layout

    # -- safety helpers -------------------------------------------------------------
    def _require_rate_limit(self) -> None:
        if not math.isfinite(self.max_rate_C_per_min):
            return
        if self._rate_limit_disabled():
            name = self.register_map.configuration["rate_disable"]
            raise LimitError(
                f"controller rate limit is disabled ({name}, register {self.register_map[name].address}); "
                "call set_rate_limit (it enables it); no setpoint was written"
            )
        rate = self.rate_limit_C_per_min
        if not 0 < rate <= self.max_rate_C_per_min:
            raise LimitError(
                f"controller rate limit is {rate:g} C/min (0 = off); it must be on and <= "
                f"{self.max_rate_C_per_min:g} C/min before a setpoint is sent: call set_rate_limit; "
                "no setpoint was written"
            )

    def _write_setpoint(self, live: Register, value_C: float) -> None:
        """Select the remote setpoint (once per connection), write the live setpoint, read it back, and check
        the controller uses it."""
        self._select_remote_setpoint()
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
