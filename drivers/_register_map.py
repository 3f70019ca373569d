"""A controller's Modbus register map, read from ``hardware/maps/<name>.toml`` and checked.

Shared by the Eurotherm driver and the furnace simulator, so that both speak
exactly what the map says. A map error is a ``MapError`` (a ``ValueError``):
one ``file: field: problem`` line per problem, all problems of the file at once.

The file is checked against a schema (:class:`MapDocument`, decision 0058):
every key is known (a misspelt one is ``unknown key``), every value has its
type and range; then the rules between fields (:func:`_rule_problems`). A map
may ``extends = "<map>"`` another and state only what differs: tables merge key
by key, other values replace, and what says which instruments a map is for
(``instrument.family``, ``models``, ``ident_codes``) is never inherited.
A station names a map, or a model that exactly one map covers
(:func:`resolve_register_map`): a new controller is a new map, not new code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator

from ._schema import NO_CONTROL_CHARACTERS, Description, Name, StrictModel, field_error, problems
from .maps import MapError, deep_merge, effective_document, find_map, find_parent_map, known_maps, load_map

__all__ = [
    "Register",
    "RegisterMap",
    "MapDocument",
    "ModelNotCovered",
    "STATUS_FLAGS",
    "OPTIONAL_STATUS_FLAGS",
    "PROGRAM_STATES",
    "ProgrammerLayout",
    "SEGMENT_FIELDS",
    "WatchdogSpec",
    "REQUIRED_REGISTERS",
    "NOT_INHERITED",
    "load_register_map",
    "register_map_models",
    "resolve_register_map",
]

#: A flag of the status word (a FurnaceStatus field).
StatusFlag = Literal[
    "alarm_1",
    "alarm_2",
    "alarm_3",
    "alarm_4",
    "manual",
    "sensor_break",
    "loop_break",
    "heater_fail",
    "tuning",
    "program_end",
    "pv_out_of_range",
    "dc_module_fault",
    "segment_sync",
    "remote_input_break",
    "new_alarm",
    "ramp_running",
    "remote_sp_fail",
]
#: Flags every map must place in the status word (FurnaceStatus fields).
STATUS_FLAGS: tuple[str, ...] = get_args(StatusFlag)[:11]
#: Flags a map may place too (the 2400's bits 11-13, the 3200's 12-14); False where a map has none.
OPTIONAL_STATUS_FLAGS: tuple[str, ...] = get_args(StatusFlag)[11:]

#: A value of the programmer status register a map may name.
ProgramState = Literal["reset", "run", "hold", "holdback", "complete"]
#: Values of the programmer status register a map may name ([program_status]).
PROGRAM_STATES: tuple[str, ...] = get_args(ProgramState)

#: Keys of [instrument] a map never inherits from the map it extends: which instruments it is for.
NOT_INHERITED = ("family", "models", "ident_codes")

#: Registers the driver uses by name (``status_word`` unless the map has ``[status_registers]``;
#: ``decimal_places`` where a register has ``decimals = "display"``).
REQUIRED_REGISTERS = (
    "process_value",
    "target_setpoint",
    "output_power",
    "working_setpoint",
    "setpoint_rate_limit",
    "ident",
    "auto_manual",
)


@dataclass(frozen=True)
class Register:
    """One named parameter: where it is, how it is encoded, who may write it."""

    name: str
    address: int
    access: str  # "r" or "rw"
    kind: str  # "analog" (scaled value in units), "word" (raw 16-bit) or "time" (a duration, minutes; see below)
    decimals: int | str | None  # analog in the integer area: int, or "display"
    units: str = ""
    minimum: float | None = None
    maximum: float | None = None
    eeprom: bool = False
    description: str = ""

    @property
    def writable(self) -> bool:
        return self.access == "rw"

    @property
    def is_time(self) -> bool:
        """A duration (programmer dwell): minutes to the driver; in the float area a 32-bit signed integer count
        of milliseconds, most significant word first (decision 0087)."""
        return self.kind == "time"

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is in this register's ``[min, max]``: accepted on a write, valid on a read."""
        return (self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)

    @property
    def valid_range(self) -> str:
        """``[min, max]`` for messages, e.g. ``0..100 percent``."""
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{low}..{high} {self.units}".rstrip()


@dataclass(frozen=True)
class RegisterMap:
    """A checked register map; see hardware/maps/eurotherm-2400.toml for the format.

    ``maker`` and the model the ident register reads name the instrument
    (``Eurotherm.ident``); ``models`` are the model names a station may give
    for this map; ``description`` is documentation only.
    """

    name: str
    path: Path
    family: str
    area: str  # "integer" or "float": where analog values are exchanged
    float_base: int
    single_write_function: int
    registers: Mapping[str, Register]
    live_setpoint: str
    target_setpoint: str
    status_bits: Mapping[str, int]
    ident_codes: Mapping[int, str]
    program_status: Mapping[str, int]
    input_range_C: tuple[float, float]
    maker: str = ""
    models: tuple[str, ...] = ()
    description: str = ""
    #: ``[setpoint] select``: the register that selects the remote (live) setpoint, and the value selecting it.
    remote_select: tuple[str, int] | None = None
    #: ``[status_registers]``: flag -> word register (nonzero = set), for a controller without a status word.
    status_registers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: ``[configuration]``: settings the driver checks before it relies on them.
    configuration: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    watchdog: WatchdogSpec | None = None
    programmer: ProgrammerLayout | None = None

    def __getitem__(self, name: str) -> Register:
        return self.registers[name]

    def get(self, name: str) -> Register | None:
        """The register ``name``, or None if this map has none."""
        return self.registers.get(name)

    def float_address(self, register: Register) -> int:
        """First Modbus address of ``register`` in the IEEE float area."""
        return self.float_base + 2 * register.address

    def by_address(self) -> dict[int, Register]:
        """Registers keyed by integer-area address (for a responder)."""
        return {reg.address: reg for reg in self.registers.values()}

    def blocks(self, names) -> list[tuple[Register, ...]]:
        """The registers ``names`` as runs of adjacent mapped addresses, each one read request.

        Two wanted registers share a run when every address between them is in
        the map (those in between are read too, and not used); in the float
        area only analog registers (a word register is not in the float area).
        On the Eurotherm 2400/3200/EPC3000 maps the poll's PV, target SP,
        output and working SP (1, 2, 3 or 4, 5) are one run 1-5.
        """
        by_address = self.by_address()
        in_run = (
            (lambda a: a in by_address and by_address[a].kind == "analog")
            if self.area == "float"
            else (lambda a: a in by_address)
        )
        wanted = sorted(self.registers[name].address for name in names)
        runs: list[tuple[Register, ...]] = []
        start = previous = wanted[0]
        for address in wanted[1:]:
            joined = all(in_run(a) for a in range(previous + 1, address)) and in_run(address) == in_run(previous)
            if not joined:
                runs.append(tuple(by_address[a] for a in range(start, previous + 1)))
                start = address
            previous = address
        runs.append(tuple(by_address[a] for a in range(start, previous + 1)))
        return runs


@dataclass(frozen=True)
class WatchdogSpec:
    """``[watchdog]``: the controller's comms watchdog (register names): on comms loss it goes to a fallback SP."""

    timeout: str  # word register: seconds without comms before the watchdog trips (0 = off)
    flag: str  # word register: nonzero once tripped
    fallback_setpoint: str  # analog register: the setpoint the controller goes to when it trips
    rate_down: str | None = None  # analog register: the down-ramp rate limit it falls back at (if separate)
    description: str = ""


@dataclass(frozen=True)
class ProgrammerLayout:
    """``[programmer]``: the controller's own setpoint programmer, one program of ``segments`` segments.

    Segment ``n`` (1-based) field ``f`` is register ``segment_<n>_<f>`` at
    ``first_segment + (n - 1) * segment_stride + offset``; the loader adds
    those registers to the map. ``control`` is written ``run`` / ``reset``;
    ``status`` reads the map's ``[program_status]`` values.

    ``style`` says what a segment is (decision 0087):

    - ``"typed"`` (the 2400): each segment has a ``type`` (``segment_types``:
      end, rate, dwell) and ``target``, ``time_or_rate``, ``end_type``; a
      program ends in its end segment, whose ``end_type`` ``end_dwell`` dwells
      at the last setpoint;
    - ``"ramp_dwell"`` (the 3216P): every segment ramps to its ``target`` at
      its ``rate``, then dwells ``dwell``; the programmer runs all
      ``segments`` of them, then does what the program-wide register
      ``end_register`` says (``end_dwell``: stay at the last setpoint).
    """

    control: str
    run: int
    reset: int
    status: str
    first_segment: int
    segment_stride: int
    segments: int
    fields: tuple[str, ...]
    segment_types: Mapping[str, int]
    end_dwell: int  # value of end_type: stay at the last setpoint
    segment_number: str | None = None
    ramp_units: str | None = None  # register: 0 per second, 1 per minute, 2 per hour (must read per minute)
    dwell_units: str | None = None  # register: the unit of dwell times (must read minutes)
    minutes: int = 1  # the value of ramp_units / dwell_units meaning minutes
    description: str = ""
    style: str = "typed"  # "typed" or "ramp_dwell"
    end_register: str | None = None  # ramp_dwell: the program's end type (word register), written end_dwell

    def segment_register(self, number: int, field: str) -> str:
        return f"segment_{number}_{field}"


# -- the schema ---------------------------------------------------------------------------------

_WORD_MAX = 0xFFFF
#: Largest magnitude of an analog min/max (a float32 holds more; no controller range comes near).
_ANALOG_LIMIT = 1e9

Address = Annotated[int, Field(ge=0, le=_WORD_MAX)]
Bound = Annotated[float, Field(ge=-_ANALOG_LIMIT, le=_ANALOG_LIMIT)]
# Text fields as :func:`~drivers._schema.text` builds them, written out so that a type checker reads them.
_Units = Annotated[str, Field(min_length=0, max_length=40), NO_CONTROL_CHARACTERS]
_Label40 = Annotated[str, Field(min_length=1, max_length=40), NO_CONTROL_CHARACTERS]
_Label80 = Annotated[str, Field(min_length=1, max_length=80), NO_CONTROL_CHARACTERS]
_MapReference = Annotated[str, Field(min_length=1, max_length=4096), NO_CONTROL_CHARACTERS]


def _decimals(value: Any) -> Any:
    if value == "display" and isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 4:
        return value
    raise ValueError('must be an integer 0..4 or "display" (the decimal_places register)')


def _single_write_function(value: int) -> int:
    if value not in (6, 16):
        raise ValueError("must be 6 (write single register) or 16 (write multiple registers)")
    return value


def _ident_code(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            raise ValueError('must be an integer such as "0x2480" or "9344"') from None
    return value


class RegisterSpec(StrictModel):
    """``[registers.<name>]``: one parameter of the controller."""

    address: Address
    access: Literal["r", "rw"] = "r"
    kind: Literal["analog", "word"] = "analog"
    decimals: Annotated[Any, AfterValidator(_decimals)] = None
    units: _Units = ""
    min: Bound | None = None
    max: Bound | None = None
    eeprom: bool = False
    description: Description = ""

    @model_validator(mode="after")
    def _kind_rules(self):
        if self.kind == "analog":
            if self.decimals is None:
                raise field_error(("decimals",), 'an analog register needs decimals 0..4 or "display"')
            if self.min is None or self.max is None:
                raise field_error(
                    ("min" if self.min is None else "max",),
                    "an analog register needs min and max (the valid range of what it reads)",
                )
        else:
            if self.decimals is not None:
                raise field_error(("decimals",), "only for analog registers (a word is a raw 16-bit value)")
            for key in ("min", "max"):
                value = getattr(self, key)
                if value is not None and not (float(value).is_integer() and 0 <= value <= _WORD_MAX):
                    raise field_error((key,), f"{value!r}: a word register's {key} must be an integer 0..65535")
        if self.min is not None and self.max is not None and not self.min <= self.max:
            raise field_error(("max",), f"{self.max:g} is below min {self.min:g} (need min <= max)")
        return self


class InstrumentSpec(StrictModel):
    """``[instrument]``: which controllers the map is for."""

    maker: _Label80
    family: _Label40
    models: Annotated[list[_Label40], Field(min_length=1, max_length=100)]
    description: Description = ""
    ident_codes: dict[Annotated[int, BeforeValidator(_ident_code), Field(ge=0, le=_WORD_MAX)], _Label40] = {}


class EncodingSpec(StrictModel):
    """``[encoding]``: where and how analog values are exchanged."""

    area: Literal["integer", "float"] = "integer"
    float_base: Address = 0x8000
    single_write_function: Annotated[int, AfterValidator(_single_write_function)] = 6


class InputRangeSpec(StrictModel):
    """``[input_range]``: the sensor's span, C."""

    low_C: Annotated[float, Field(ge=-273.15, le=3000.0)] = -200.0
    high_C: Annotated[float, Field(ge=-273.15, le=3000.0)] = 1372.0


class SetpointSpec(StrictModel):
    """``[setpoint]``: which registers are the live (written) and the target (read) setpoint.

    ``select``: the register that makes the live (remote) setpoint the active one,
    and ``select_remote`` the value that does (the driver writes it and reads it back).
    """

    live: Name
    target: Name
    select: Name | None = None
    select_remote: Annotated[int, Field(ge=0, le=_WORD_MAX)] = 1


class ConfigurationSpec(StrictModel):
    """``[configuration]``: controller settings the driver reads and refuses to work without.

    ``rate_units`` (a register) must read ``rate_units_per_minute``; ``rate_disable``
    (a register) nonzero means the rate limit is off whatever its value;
    ``comms_resolution`` (a register, integer area) reading ``integer_resolution``
    means values go over comms as whole units (no implied decimals).
    """

    rate_units: Name | None = None
    rate_units_per_minute: Annotated[int, Field(ge=0, le=_WORD_MAX)] = 1
    rate_disable: Name | None = None
    comms_resolution: Name | None = None
    integer_resolution: Annotated[int, Field(ge=0, le=_WORD_MAX)] = 1
    description: Description = ""


class WatchdogTable(StrictModel):
    """``[watchdog]``: the controller's comms watchdog (names of registers of this map)."""

    timeout: Name
    flag: Name
    fallback_setpoint: Name
    rate_down: Name | None = None
    description: Description = ""


class SegmentFieldSpec(StrictModel):
    """``[programmer.fields.<name>]``: one register of every segment, at ``offset`` within the segment."""

    offset: Annotated[int, Field(ge=0, le=63)]
    access: Literal["r", "rw"] = "rw"
    kind: Literal["analog", "word", "time"] = "word"
    decimals: Annotated[Any, AfterValidator(_decimals)] = None
    units: _Units = ""
    min: Bound | None = None
    max: Bound | None = None
    description: Description = ""


#: The fields of a segment, by ``[programmer] style``: required ones, and the kinds each may have.
SEGMENT_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    "typed": {"type": ("word",), "target": ("analog",), "time_or_rate": ("analog",), "end_type": ("word",)},
    "ramp_dwell": {"target": ("analog",), "rate": ("analog",), "dwell": ("analog", "time")},
}
_REQUIRED_FIELDS = {"typed": ("type", "target", "time_or_rate"), "ramp_dwell": ("target", "rate", "dwell")}


class ProgrammerTable(StrictModel):
    """``[programmer]``: the controller's own setpoint programmer (one program)."""

    style: Literal["typed", "ramp_dwell"] = "typed"
    control: Name
    run: Annotated[int, Field(ge=0, le=_WORD_MAX)]
    reset: Annotated[int, Field(ge=0, le=_WORD_MAX)]
    status: Name
    segment_number: Name | None = None
    ramp_units: Name | None = None
    dwell_units: Name | None = None
    minutes: Annotated[int, Field(ge=0, le=_WORD_MAX)] = 1
    first_segment: Address
    segment_stride: Annotated[int, Field(ge=1, le=64)]
    segments: Annotated[int, Field(ge=2, le=100)]
    fields: dict[Literal["type", "target", "time_or_rate", "end_type", "rate", "dwell"], SegmentFieldSpec]
    segment_types: dict[Literal["end", "rate", "dwell"], Annotated[int, Field(ge=0, le=_WORD_MAX)]] = {}
    end_dwell: Annotated[int, Field(ge=0, le=_WORD_MAX)] = 0
    end_register: Name | None = None
    description: Description = ""


class MapDocument(StrictModel):
    """A register map file, with what it ``extends`` laid under it (:func:`_effective_document`)."""

    extends: _MapReference | None = None
    instrument: InstrumentSpec
    encoding: EncodingSpec = EncodingSpec()
    input_range: InputRangeSpec = InputRangeSpec()
    setpoint: SetpointSpec
    registers: Annotated[dict[Name, RegisterSpec], Field(min_length=1, max_length=1000)]
    status_bits: dict[StatusFlag, Annotated[int, Field(ge=0, le=15)]] = {}
    status_registers: dict[StatusFlag, Name] = {}
    program_status: dict[ProgramState, Annotated[int, Field(ge=0, le=_WORD_MAX)]] = {}
    configuration: ConfigurationSpec = ConfigurationSpec()
    watchdog: WatchdogTable | None = None
    programmer: ProgrammerTable | None = None


def _segment_specs(doc: MapDocument) -> list[tuple[str, RegisterSpec, int]]:
    """The registers of the programmer's segments: (name, spec, segment number) each."""
    table = doc.programmer
    if table is None:
        return []
    found = []
    for number in range(1, table.segments + 1):
        start = table.first_segment + (number - 1) * table.segment_stride
        for field_name, spec in table.fields.items():
            address = start + spec.offset
            if address > _WORD_MAX:
                continue  # reported with the layout
            values = spec.model_dump(exclude={"offset"})
            values["min"], values["max"] = spec.min, spec.max
            found.append(
                (f"segment_{number}_{field_name}", RegisterSpec.model_construct(address=address, **values), number)
            )
    return found


def _reference_problems(doc: MapDocument) -> list[tuple[str, str]]:
    """Names of registers in [setpoint], [configuration], [watchdog], [programmer], [status_registers]."""
    registers = doc.registers
    found: list[tuple[str, str]] = []

    def check(where: str, name: str | None, kind: str | None = None, writable: bool = False) -> None:
        if name is None:
            return
        register = registers.get(name)
        if register is None:
            found.append((where, f"{name!r} is not a register of this map"))
        elif kind is not None and register.kind != kind:
            found.append((where, f"{name!r} must be a{'n' if kind == 'analog' else ''} {kind} register"))
        elif writable and register.access != "rw":
            found.append((where, f'{name!r} must be writable (access = "rw"): the driver writes it'))

    check("setpoint.select", doc.setpoint.select, "word", writable=True)
    configuration = doc.configuration
    check("configuration.rate_units", configuration.rate_units, "word")
    check("configuration.rate_disable", configuration.rate_disable, "word")
    check("configuration.comms_resolution", configuration.comms_resolution, "word")
    if configuration.comms_resolution is not None and doc.encoding.area != "integer":
        found.append(("configuration.comms_resolution", "only for the integer area (the float area has no scaling)"))
    if doc.status_registers:
        for flag, name in doc.status_registers.items():
            check(f"status_registers.{flag}", name, "word")
        if "sensor_break" not in doc.status_registers:
            found.append(
                ("status_registers", "lacks sensor_break (a PV is only used when the controller says it is valid)")
            )
    watchdog = doc.watchdog
    if watchdog is not None:
        check("watchdog.timeout", watchdog.timeout, "word", writable=True)
        check("watchdog.flag", watchdog.flag, "word")
        check("watchdog.fallback_setpoint", watchdog.fallback_setpoint, "analog", writable=True)
        check("watchdog.rate_down", watchdog.rate_down, "analog", writable=True)
    table = doc.programmer
    if table is not None:
        check("programmer.control", table.control, "word", writable=True)
        check("programmer.status", table.status, "word")
        check("programmer.segment_number", table.segment_number, "word")
        check("programmer.ramp_units", table.ramp_units, "word", writable=True)
        check("programmer.dwell_units", table.dwell_units, "word", writable=True)
        style = table.style
        for needed in _REQUIRED_FIELDS[style]:
            if needed not in table.fields:
                found.append(("programmer.fields", f"lacks {needed} (a {style} segment has it)"))
        allowed = SEGMENT_FIELDS[style]
        for field_name, spec in table.fields.items():
            where = f"programmer.fields.{field_name}"
            if field_name not in allowed:
                found.append((where, f"not a field of a {style} segment (its fields: {', '.join(allowed)})"))
            elif spec.kind not in allowed[field_name]:
                found.append((f"{where}.kind", f"{spec.kind!r}: must be {' or '.join(map(repr, allowed[field_name]))}"))
            if spec.kind == "time" and doc.encoding.area != "float":
                found.append((f"{where}.kind", '"time" is a duration in the float area (encoding.area = "float")'))
            if spec.kind != "analog" and spec.decimals is not None:
                found.append((f"{where}.decimals", "only for analog fields"))
            if spec.kind == "time" and (spec.min is None or spec.max is None):
                found.append((where, "a time field needs min and max (minutes)"))
        if style == "typed":
            for needed in ("end", "rate", "dwell"):
                if needed not in table.segment_types:
                    found.append(("programmer.segment_types", f"lacks {needed}"))
            if table.end_register is not None:
                found.append(
                    ("programmer.end_register", "only for style ramp_dwell (a typed program ends in its end segment)")
                )
        else:
            if table.segment_types:
                found.append(("programmer.segment_types", "only for style typed (a ramp_dwell segment has no type)"))
            if table.end_register is None:
                found.append(("programmer.end_register", "missing: a ramp_dwell program ends as this register says"))
            check("programmer.end_register", table.end_register, "word", writable=True)
        for state in ("reset", "run", "complete"):
            if state not in doc.program_status:
                found.append(("program_status", f"lacks {state} (the programmer's status register reads it)"))
        for field_name, spec in table.fields.items():
            if spec.kind == "analog" and (spec.decimals is None or spec.min is None or spec.max is None):
                found.append((f"programmer.fields.{field_name}", "an analog field needs decimals, min and max"))
            if spec.offset >= table.segment_stride:
                found.append(
                    (
                        f"programmer.fields.{field_name}.offset",
                        f"{spec.offset} is not within a segment of {table.segment_stride}",
                    )
                )
        last = table.first_segment + table.segments * table.segment_stride - 1
        if last > _WORD_MAX:
            found.append(("programmer.segments", f"the last segment ends at {last}, beyond 65535"))
    return found


def _rule_problems(doc: MapDocument) -> list[tuple[str, str]]:
    """The rules between fields of a document whose every field is valid: (field, problem) each."""
    found: list[tuple[str, str]] = []
    registers = doc.registers
    required: list[str] = list(REQUIRED_REGISTERS)
    if not doc.status_registers:
        required.append("status_word")
    if doc.encoding.area == "integer" and any(r.decimals == "display" for r in registers.values()):
        required.append("decimal_places")
    for name in required:
        if name not in registers:
            found.append(("registers", f"required register {name!r} is missing"))
    found += _reference_problems(doc)
    owner: dict[int, str] = {}
    base = doc.encoding.float_base
    every = {**registers, **{name: spec for name, spec, _ in _segment_specs(doc)}}
    for reg_name, register in every.items():
        where = f"registers.{reg_name}.address" if reg_name in registers else f"programmer.fields ({reg_name})"
        if register.address in owner:
            found.append(
                (
                    where,
                    f"{register.address} is also the address of {owner[register.address]}: "
                    "two registers share an address",
                )
            )
        owner.setdefault(register.address, reg_name)
        if register.address >= base:
            found.append(
                (where, f"{register.address} must be below encoding.float_base {base} (the float area starts there)")
            )
        elif base + 2 * register.address + 1 > _WORD_MAX:
            found.append((where, f"its float-area address {base} + 2 x {register.address} is beyond 65535"))
    for role in ("live", "target"):
        reg_name = getattr(doc.setpoint, role)
        if reg_name not in registers:
            found.append((f"setpoint.{role}", f"{reg_name!r} is not a register of this map"))
    live = registers.get(doc.setpoint.live)
    if live is not None and (live.access != "rw" or live.eeprom):
        found.append(
            (
                "setpoint.live",
                f"{doc.setpoint.live!r} must be writable and not EEPROM-backed (live setpoints are written often)",
            )
        )
    missing = [flag for flag in STATUS_FLAGS if flag not in doc.status_bits]
    if doc.status_registers:
        if doc.status_bits:
            found.append(("status_bits", "give status_bits (a status word) or status_registers, not both"))
    elif missing:
        found.append(("status_bits", f"lacks {', '.join(missing)}"))
    by_bit: dict[int, str] = {}
    for flag, bit in doc.status_bits.items():
        if bit in by_bit:
            found.append((f"status_bits.{flag}", f"bit {bit} is also {by_bit[bit]}: need distinct bit numbers"))
        by_bit.setdefault(bit, flag)
    models = doc.instrument.models
    for model in sorted({m for m in models if models.count(m) > 1}):
        found.append(("instrument.models", f"lists {model!r} more than once"))
    for code, model in doc.instrument.ident_codes.items():
        if model not in models:
            found.append(
                (
                    f"instrument.ident_codes.0x{code:04X}",
                    f"model {model!r} is not in instrument.models ({', '.join(models)})",
                )
            )
    if not doc.input_range.low_C < doc.input_range.high_C:
        found.append(
            ("input_range.high_C", f"{doc.input_range.high_C:g} must be above low_C {doc.input_range.low_C:g}")
        )
    return found


# -- loading ------------------------------------------------------------------------------------


def _validate(path: Path, document: dict) -> MapDocument:
    """``document`` (the effective content of the map file ``path``) checked; a MapError with every problem."""
    if "registers" not in document:  # another kind of map (a SCPI dialect): one message, not one per key
        raise MapError.in_file(
            path,
            [
                (
                    "registers",
                    "missing table [registers]: not a register map (a register map has one, or extends a map that has)",
                )
            ],
        )
    try:
        checked = MapDocument.model_validate(document)
    except ValidationError as error:
        raise MapError.in_file(path, problems(error, MapDocument)) from None
    found = _rule_problems(checked)
    if found:
        raise MapError.in_file(path, found)
    return checked


def _inherit(parent: dict, own: dict) -> dict:
    """A map laid over the map it extends (the parent's identity keys not inherited)."""
    if isinstance(parent.get("instrument"), dict):
        parent["instrument"] = {key: value for key, value in parent["instrument"].items() if key not in NOT_INHERITED}
    return deep_merge(parent, own)


def _effective_document(path: Path) -> dict:
    """The content of the map file ``path`` with what it extends laid under it."""
    return effective_document(
        path,
        read=load_map,
        find_parent=lambda child, name: find_parent_map(child, name, "register map", "registers"),
        validate=_validate,
        inherit=_inherit,
        kind="register map",
    )


def _register_map(path: Path, doc: MapDocument) -> RegisterMap:
    registers = {
        reg_name: Register(
            name=reg_name,
            address=spec.address,
            access=spec.access,
            kind=spec.kind,
            decimals=spec.decimals if spec.kind == "analog" else None,
            units=spec.units,
            minimum=spec.min,
            maximum=spec.max,
            eeprom=spec.eeprom,
            description=spec.description,
        )
        for reg_name, spec in doc.registers.items()
    }
    for reg_name, spec, number in _segment_specs(doc):
        registers[reg_name] = Register(
            name=reg_name,
            address=spec.address,
            access=spec.access,
            kind=spec.kind,
            decimals=spec.decimals if spec.kind == "analog" else None,
            units=spec.units,
            minimum=spec.min,
            maximum=spec.max,
            description=f"programmer segment {number}: {spec.description}".rstrip(": "),
        )
    instrument = doc.instrument
    watchdog = doc.watchdog
    table = doc.programmer
    return RegisterMap(
        name=path.stem,
        path=path,
        family=instrument.family,
        area=doc.encoding.area,
        float_base=doc.encoding.float_base,
        single_write_function=doc.encoding.single_write_function,
        registers=MappingProxyType(registers),
        live_setpoint=doc.setpoint.live,
        target_setpoint=doc.setpoint.target,
        status_bits=MappingProxyType({key: value for key, value in doc.status_bits.items()}),
        ident_codes=MappingProxyType(dict(instrument.ident_codes)),
        program_status=MappingProxyType({key: value for key, value in doc.program_status.items()}),
        input_range_C=(float(doc.input_range.low_C), float(doc.input_range.high_C)),
        maker=instrument.maker,
        models=tuple(instrument.models),
        description=instrument.description,
        remote_select=(doc.setpoint.select, doc.setpoint.select_remote) if doc.setpoint.select else None,
        status_registers=MappingProxyType({str(flag): name for flag, name in doc.status_registers.items()}),
        configuration=MappingProxyType(doc.configuration.model_dump(exclude={"description"})),
        watchdog=None
        if watchdog is None
        else WatchdogSpec(
            watchdog.timeout, watchdog.flag, watchdog.fallback_setpoint, watchdog.rate_down, watchdog.description
        ),
        programmer=None
        if table is None
        else ProgrammerLayout(
            control=table.control,
            run=table.run,
            reset=table.reset,
            status=table.status,
            first_segment=table.first_segment,
            segment_stride=table.segment_stride,
            segments=table.segments,
            fields=tuple(table.fields),
            segment_types=MappingProxyType({str(kind): code for kind, code in table.segment_types.items()}),
            end_dwell=table.end_dwell,
            style=table.style,
            end_register=table.end_register,
            segment_number=table.segment_number,
            ramp_units=table.ramp_units,
            dwell_units=table.dwell_units,
            minutes=table.minutes,
            description=table.description,
        ),
    )


def load_register_map(name_or_path: str | os.PathLike) -> RegisterMap:
    """Load and check a register map given by name (``eurotherm-2400``, in ``hardware/maps``) or path."""
    path = find_map(name_or_path, kind="register map", required_table="registers")
    return _register_map(path, _validate(path, _effective_document(path)))


# -- which map a station means --------------------------------------------------------------------


def register_map_models() -> dict[str, tuple[str, ...] | None]:
    """``{name: models}`` of every register map in ``hardware/maps`` (None for one that does not load)."""
    found: dict[str, tuple[str, ...] | None] = {}
    for map_name in known_maps("registers"):
        try:
            found[map_name] = load_register_map(map_name).models
        except (MapError, OSError):
            found[map_name] = None
    return found


class ModelNotCovered(MapError):
    """A model that the named map does not cover, or that not exactly one map in ``hardware/maps`` covers.

    ``model``; ``map_name`` (the map named, or None); ``covering`` (the maps that
    cover the model); ``listing``: the available maps and their models, for messages.
    """

    def __init__(
        self,
        model: str,
        map_name: str | None,
        available: dict[str, tuple[str, ...] | None],
        covers: tuple[str, ...] = (),
    ):
        self.model, self.map_name, self.covers = model, map_name, covers
        self.covering = [n for n, models in available.items() if models and model in models]
        self.listing = "available maps: " + (
            ", ".join(
                f"{n} ({', '.join(models)})" if models else f"{n} (does not load)" for n, models in available.items()
            )
            or "none"
        )
        if map_name is not None:
            message = (
                f"model {model!r} is not one that register map {map_name} covers ({', '.join(covers)}); {self.listing}"
            )
        elif self.covering:
            message = (
                f"model {model!r} is covered by several register maps ({', '.join(self.covering)}): name one of them"
            )
        else:
            message = f"no register map covers model {model!r}; {self.listing}"
        super().__init__(message)


def resolve_register_map(model: str | None = None, register_map: str | os.PathLike | None = None) -> RegisterMap:
    """The register map of a controller: ``register_map`` (name or path) if given, else the map covering ``model``.

    With both, ``model`` must be one of the map's ``models``. With only ``model``,
    exactly one map in ``hardware/maps`` must list it. :class:`ModelNotCovered`
    (a MapError) otherwise; a map that cannot be loaded is a MapError.
    """
    if register_map is not None:
        loaded = load_register_map(register_map)
        if model is not None and model not in loaded.models:
            raise ModelNotCovered(model, loaded.name, register_map_models(), loaded.models)
        return loaded
    if model is None:
        raise ValueError("resolve_register_map needs a model or a register map")
    available = register_map_models()
    covering = [n for n, models in available.items() if models and model in models]
    if len(covering) != 1:
        raise ModelNotCovered(model, None, available)
    return load_register_map(covering[0])
