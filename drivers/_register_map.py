"""A controller's Modbus register map, read from ``hardware/maps/<name>.toml`` and checked.

Shared by the Eurotherm driver and the furnace simulator, so that both speak
exactly what the map says. A map error is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from .maps import find_map, load_map

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
        """Whether the instrument accepts ``value`` for this register (its min/max)."""
        return ((self.minimum is None or value >= self.minimum)
                and (self.maximum is None or value <= self.maximum))


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


def _fail(path: Path, message: str) -> ValueError:
    return ValueError(f"{path}: {message}")


def _register(path: Path, name: str, raw: dict) -> Register:
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
    return Register(
        name=name, address=address, access=access, kind=kind,
        decimals=decimals if kind == "analog" else None, units=raw.get("units", ""),
        minimum=raw.get("min"), maximum=raw.get("max"), eeprom=bool(raw.get("eeprom", False)),
        description=raw.get("description", ""),
    )


def load_register_map(name_or_path: str | os.PathLike) -> RegisterMap:
    """Load and check a register map given by name (``eurotherm-2400``) or path."""
    path = find_map(name_or_path)
    raw = load_map(path)
    try:
        regs_raw = raw["registers"]
        setpoint = raw["setpoint"]
        encoding = raw.get("encoding", {})
        bits = dict(raw["status_bits"])
    except KeyError as missing:
        raise _fail(path, f"missing table [{missing.args[0]}]") from None
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
        ident_codes = {int(code, 0): model for code, model in raw.get("instrument", {}).get("ident_codes", {}).items()}
    except ValueError:
        raise _fail(path, "[instrument.ident_codes] keys must be integers such as \"0x2480\"") from None
    span = raw.get("input_range", {})
    return RegisterMap(
        name=path.stem, path=path, family=str(raw.get("instrument", {}).get("family", "")),
        area=area, float_base=int(encoding.get("float_base", 0x8000)), single_write_function=single_write,
        registers=MappingProxyType(registers), live_setpoint=live, target_setpoint=target,
        status_bits=MappingProxyType(bits), ident_codes=MappingProxyType(ident_codes),
        program_status=MappingProxyType(dict(raw.get("program_status", {}))),
        input_range_C=(float(span.get("low_C", -200.0)), float(span.get("high_C", 1372.0))),
    )
