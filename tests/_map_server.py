"""An independent Modbus server (pymodbus) holding what a register map describes, for driver tests.

Nothing of our simulator is involved: the server's framing, addressing and
encoding are pymodbus's, its register contents come from the map and VALUES.
"""

from __future__ import annotations

import struct

from pymodbus.simulator import DataType, SimData, SimDevice

__all__ = ["VALUES", "device_from_map", "words_of"]

VALUES = {  # what the independent server holds, in engineering units
    "process_value": 851.3,
    "target_setpoint": 850.0,
    "output_power": 42.5,
    "working_output": 42.5,
    "working_setpoint": 849.5,
    "alarm_1_setpoint": 1150.0,
    "alarm_2_setpoint": 50.0,
    "setpoint_1": 850.0,
    "remote_setpoint": 850.0,
    "setpoint_rate_limit": 5.0,
    "status_word": 0x0201,
    "instrument_mode": 0,
    "auto_manual": 0,
    "decimal_places": 1,
    "manual_output": 0.0,
    "remote_local_select": 1,  # the remote SP selected
    "setpoint_rate_units": 1,  # per minute
    "comms_resolution": 0,  # full resolution: implied decimals
    "rate_limit_disable": 0,
    "program_status": 1,  # reset (the 2400's programmer)
}


def words_of(regmap, register, value) -> list[int]:
    """``value`` of ``register`` as the map puts it on the wire (display decimals: 1)."""
    if register.kind == "word":
        return [int(value)]
    if regmap.area == "float":
        return list(struct.unpack(">HH", struct.pack(">f", value)))
    decimals = 1 if register.decimals == "display" else register.decimals
    return [round(value * 10**decimals) & 0xFFFF]


def device_from_map(regmap, device_id: int = 1, values: dict | None = None) -> SimDevice:
    """The map's registers as pymodbus holding registers; the comms SP is the active SP.

    ``values`` (engineering units by register name) override VALUES; a register
    named in neither reads its map's ``min`` (0 for a word without one).
    """
    held = {**VALUES, **(values or {})}
    blocks = []
    for register in regmap.registers.values():
        if register.name == "ident":
            value = next(iter(regmap.ident_codes), 0)
        else:
            value = held.get(register.name, register.minimum if register.minimum is not None else 0)
        address = (
            regmap.float_address(register) if regmap.area == "float" and register.kind == "analog" else register.address
        )
        blocks.append(
            SimData(
                address,
                values=words_of(regmap, register, value),
                datatype=DataType.REGISTERS,
                readonly=not register.writable,
            )
        )
    live = regmap[regmap.live_setpoint]
    target = regmap[regmap.target_setpoint]
    live_at, target_at = (
        (regmap.float_address(live), regmap.float_address(target))
        if regmap.area == "float"
        else (live.address, target.address)
    )

    async def remote_sp_is_active(function_code, start, address, count, registers, values):
        if values and address == live_at:  # a real controller's target SP reads the remote SP in use
            registers[target_at - start : target_at - start + len(values)] = values
        return None

    return SimDevice(device_id, simdata=blocks, action=remote_sp_is_active)
