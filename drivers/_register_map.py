"""A controller's Modbus register map, read from ``hardware/maps/<name>.toml`` and checked.

Shared by the Eurotherm driver and the furnace simulator, so that both speak
exactly what the map says. A map error is a ``MapError`` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .maps import MapError, find_map, load_map

__all__ = ["Register", "RegisterMap", "STATUS_FLAGS", "REQUIRED_REGISTERS", "load_register_map"]

#: Flags every map must place in the status word (FurnaceStatus fields).
STATUS_FLAGS = (
    "alarm_1", "alarm_2", "alarm_3", "alarm_4", "manual", "sensor_break", "loop_break",
    "heater_fail", "tuning", "program_end", "pv_out_of_range",
)

#: Registers the driver uses by name.
REQUIRED_REGISTERS = (
    "process_value", "target_setpoint", "output_power", "working_setpoint", "setpoint_rate_limit",
    "status_word", "ident", "auto_manual", "decimal_places", "program_status",
)


@dataclass(frozen=True)
class Register:
    """One named parameter: where it is, how it is encoded, who may write it."""

    name: str
    address: int
    access: str                 # "r" or "rw"
    kind: str                   # "analog" (scaled value in units) or "word" (raw 16-bit)
    decimals: int | str | None  # analog in the integer area: int, or "display"
    units: str = ""
    minimum: float | None = None
    maximum: float | None = None
    eeprom: bool = False
    description: str = ""

    @property
    def writable(self) -> bool:
        return self.access == "rw"

    def in_range(self, value: float) -> bool:
        """Whether ``value`` is in this register's ``[min, max]``: accepted on a write, valid on a read."""
        return ((self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))

    @property
    def valid_range(self) -> str:
        """``[min, max]`` for messages, e.g. ``0..100 percent``."""
        low = "-inf" if self.minimum is None else f"{self.minimum:g}"
        high = "inf" if self.maximum is None else f"{self.maximum:g}"
        return f"{low}..{high} {self.units}".rstrip()


@dataclass(frozen=True)
class RegisterMap:
    """A checked register map; see hardware/maps/eurotherm-2400.toml for the format."""

    name: str
    path: Path
    family: str
    area: str                   # "integer" or "float": where analog values are exchanged
    float_base: int
    single_write_function: int
    registers: Mapping[str, Register]
    live_setpoint: str
    target_setpoint: str
    status_bits: Mapping[str, int]
    ident_codes: Mapping[int, str]
    program_status: Mapping[str, int]
    input_range_C: tuple[float, float]

    def __getitem__(self, name: str) -> Register:
        return self.registers[name]

    def float_address(self, register: Register) -> int:
        """First Modbus address of ``register`` in the IEEE float area."""
        return self.float_base + 2 * register.address

    def by_address(self) -> dict[int, Register]:
        """Registers keyed by integer-area address (for a responder)."""
        return {reg.address: reg for reg in self.registers.values()}

    def blocks(self, names) -> list[tuple[Register, ...]]:
        """The registers ``names`` as runs of adjacent mapped addresses, each one read request.

        Two wanted registers share a run when every address between them is in
        the map (those in between are read too, and not used). On both Eurotherm
        maps the poll's PV, target SP, output and working SP (1, 2, 3, 5) are
        one run 1-5.
        """
        by_address = self.by_address()
        wanted = sorted(self.registers[name].address for name in names)
        runs: list[tuple[Register, ...]] = []
        start = previous = wanted[0]
        for address in wanted[1:] + [None]:
            joined = address is not None and all(a in by_address for a in range(previous + 1, address))
            if not joined:
                runs.append(tuple(by_address[a] for a in range(start, previous + 1)))
                start = address
            previous = address
        return runs


def _fail(path: Path, message: str) -> MapError:
    return MapError(f"{path}: {message}")


def _table(path: Path, raw: dict, name: str, *, required: bool) -> dict:
    """The table ``[name]`` of a map file, refusing a missing required one or a value that is not a table."""
    if name not in raw:
        if required:
            raise _fail(path, f"missing table [{name}]")
        return {}
    if not isinstance(raw[name], dict):
        raise _fail(path, f"[{name}] must be a table, not {type(raw[name]).__name__}")
    return raw[name]


def _optional_number(path: Path, where: str, value: object) -> float | None:
    """``value`` if it is absent (None) or a finite number; a map error naming ``where`` otherwise."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value)):
        raise _fail(path, f"{where} must be a finite number, not {value!r}")
    return value


def _register(path: Path, name: str, raw: dict) -> Register:
    if not isinstance(raw, dict):
        raise _fail(path, f"register {name!r} must be a table such as [registers.{name}]")
    try:
        address = raw["address"]
    except KeyError:
        raise _fail(path, f"register {name!r} has no address") from None
    if not isinstance(address, int) or not 0 <= address < 0x8000:
        raise _fail(path, f"register {name!r}: address {address!r} is not in 0..32767")
    access = raw.get("access", "r")
    kind = raw.get("kind", "analog")
    decimals = raw.get("decimals")
    if access not in ("r", "rw"):
        raise _fail(path, f"register {name!r}: access must be 'r' or 'rw', not {access!r}")
    if kind not in ("analog", "word"):
        raise _fail(path, f"register {name!r}: kind must be 'analog' or 'word', not {kind!r}")
    if kind == "analog" and not (decimals == "display" or (isinstance(decimals, int) and 0 <= decimals <= 4)):
        raise _fail(path, f"register {name!r}: analog needs decimals 0..4 or 'display', not {decimals!r}")
    low, high = raw.get("min"), raw.get("max")
    if kind == "analog" and (low is None or high is None):
        raise _fail(path, f"register {name!r}: analog needs min and max (the valid range of what it reads)")
    if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in (low, high)) \
            or (low is not None and high is not None and not low <= high):
        raise _fail(path, f"register {name!r}: min {low!r} and max {high!r} must be numbers with min <= max")
    return Register(
        name=name, address=address, access=access, kind=kind,
        decimals=decimals if kind == "analog" else None, units=raw.get("units", ""),
        minimum=_optional_number(path, f"register {name!r}: min", raw.get("min")),
        maximum=_optional_number(path, f"register {name!r}: max", raw.get("max")),
        eeprom=bool(raw.get("eeprom", False)),
        description=raw.get("description", ""),
    )


def load_register_map(name_or_path: str | os.PathLike) -> RegisterMap:
    """Load and check a register map given by name (``eurotherm-2400``) or path."""
    path = find_map(name_or_path, kind="register map", required_table="registers")
    raw = load_map(path)
    regs_raw = _table(path, raw, "registers", required=True)
    setpoint = _table(path, raw, "setpoint", required=True)
    bits = dict(_table(path, raw, "status_bits", required=True))
    encoding = _table(path, raw, "encoding", required=False)
    instrument = _table(path, raw, "instrument", required=False)
    span = _table(path, raw, "input_range", required=False)
    program_status = _table(path, raw, "program_status", required=False)
    if not isinstance(instrument.get("ident_codes", {}), dict):
        raise _fail(path, "[instrument.ident_codes] must be a table")
    float_base = _optional_number(path, "[encoding] float_base", encoding.get("float_base", 0x8000))
    low_C = _optional_number(path, "[input_range] low_C", span.get("low_C", -200.0))
    high_C = _optional_number(path, "[input_range] high_C", span.get("high_C", 1372.0))
    registers = {name: _register(path, name, spec) for name, spec in regs_raw.items()}
    for name in REQUIRED_REGISTERS:
        if name not in registers:
            raise _fail(path, f"required register {name!r} is missing")
    addresses = [reg.address for reg in registers.values()]
    if len(set(addresses)) != len(addresses):
        raise _fail(path, "two registers share an address")
    live, target = setpoint.get("live"), setpoint.get("target")
    for role, reg_name in (("live", live), ("target", target)):
        if reg_name not in registers:
            raise _fail(path, f"[setpoint] {role} = {reg_name!r} is not a register")
    if not registers[live].writable or registers[live].eeprom:
        raise _fail(path, f"live setpoint {live!r} must be writable and not EEPROM-backed")
    missing_flags = [flag for flag in STATUS_FLAGS if flag not in bits]
    if missing_flags:
        raise _fail(path, f"[status_bits] lacks {', '.join(missing_flags)}")
    if any(not isinstance(b, int) or not 0 <= b <= 15 for b in bits.values()) or len(set(bits.values())) != len(bits):
        raise _fail(path, "[status_bits] must be distinct bit numbers 0..15")
    area = encoding.get("area", "integer")
    if area not in ("integer", "float"):
        raise _fail(path, f"[encoding] area must be 'integer' or 'float', not {area!r}")
    single_write = encoding.get("single_write_function", 6)
    if single_write not in (6, 16):
        raise _fail(path, "[encoding] single_write_function must be 6 or 16")
    try:
        ident_codes = {int(code, 0): model for code, model in instrument.get("ident_codes", {}).items()}
    except ValueError:
        raise _fail(path, "[instrument.ident_codes] keys must be integers such as \"0x2480\"") from None
    return RegisterMap(
        name=path.stem, path=path, family=str(instrument.get("family", "")),
        area=area, float_base=int(float_base), single_write_function=single_write,
        registers=MappingProxyType(registers), live_setpoint=live, target_setpoint=target,
        status_bits=MappingProxyType(bits), ident_codes=MappingProxyType(ident_codes),
        program_status=MappingProxyType(dict(program_status)),
        input_range_C=(float(low_C), float(high_C)),
    )
