"""Simulated Eurotherm furnace controller: Modbus RTU on a pseudo-terminal.

    python -m drivers.sim.furnace [--address 1] [--speed FACTOR] [--model 2416] [--map PATH] [--truth FILE]

Prints the client's port path alone on the first line of stdout, then serves
until SIGTERM (exit code 0). Like an RTU slave it answers no sooner than 3.5
characters (1.75 ms) after a request. It answers FC 3, 4, 6 and 16 exactly as the
register map says (integer and float areas); exception 01 for other function
codes, 02 for an address not in the map or a write to a read-only register,
03 for a bad count or a value outside the register's min/max. Frames with a
bad CRC or for another address get no answer, as on a real bus.

Faults of the instrument itself are injected out of band, never on the wire:
SIGUSR1 breaks the thermocouple, SIGUSR2 mends it. Line faults belong to
:mod:`drivers.sim.linefault`. Simulated time = speed x wall time.

Its truth is out of band too: ``--truth FILE`` appends one JSON line per
request it answers, ``{"t": <time.monotonic()>, "sim_s": ..., "values": {register: value}}``,
each value as a read of that register at that moment gives it (scaled and
rounded as on the wire), so a test can check every number a client accepted.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import struct
import sys
import time
import tty

from .._register_map import Register, RegisterMap, resolve_register_map
from ._furnace_plant import FurnaceModel

__all__ = ["RegisterBank", "RtuResponder", "ModbusError", "crc16", "main"]

DISPLAY_DECIMALS = 1
INTER_FRAME_GAP_S = 0.02  # a partial frame older than this is line noise
TURNAROUND_S = 0.00175  # an RTU slave answers after 3.5 characters of silence, at least 1.75 ms


def crc16(data: bytes) -> bytes:
    """Modbus CRC-16 (poly 0xA001, init 0xFFFF), low byte first. Our own, independent of the client's."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes((crc & 0xFF, crc >> 8))


class ModbusError(Exception):
    """A request the instrument refuses with a Modbus exception code."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class RegisterBank:
    """The furnace model seen through a register map: what each address reads and accepts."""

    def __init__(self, register_map: RegisterMap, model: FurnaceModel, decimals: int = DISPLAY_DECIMALS) -> None:
        self.map, self.model, self.decimals = register_map, model, decimals
        self._by_address = register_map.by_address()
        m = model
        self._get = {
            "process_value": lambda: m.pv_C,
            "target_setpoint": lambda: m.target_setpoint_C,
            "output_power": lambda: m.output_percent,
            "working_output": lambda: m.output_percent,
            "working_setpoint": lambda: m.working_setpoint_C,
            "alarm_1_setpoint": lambda: m.alarm_1_setpoint_C,
            "alarm_2_setpoint": lambda: m.alarm_2_setpoint_C,
            "program_status": lambda: register_map.program_status.get(m.program, 0),
            "setpoint_1": lambda: m.local_setpoint_C,
            "remote_setpoint": lambda: m.target_setpoint_C,
            "setpoint_rate_limit": lambda: m.rate_limit_C_per_min,
            "status_word": self._status_word,
            "ident": lambda: next(iter(register_map.ident_codes), 0),
            "instrument_mode": lambda: 0,
            "auto_manual": lambda: int(m.manual),
            "decimal_places": lambda: decimals,
        }
        self._set = {
            "target_setpoint": m.set_local_setpoint,
            "setpoint_1": m.set_local_setpoint,
            "remote_setpoint": m.set_remote_setpoint,
            "setpoint_rate_limit": m.set_rate_limit,
            "alarm_1_setpoint": lambda v: setattr(m, "alarm_1_setpoint_C", v),
            "alarm_2_setpoint": lambda v: setattr(m, "alarm_2_setpoint_C", v),
            "auto_manual": lambda v: m.set_manual(bool(v)),
        }
        unknown = [
            r.name
            for r in register_map.registers.values()
            if r.name not in self._get or (r.writable and r.name not in self._set)
        ]
        if unknown:
            raise ValueError(f"{register_map.path}: the simulator does not model {', '.join(unknown)}")

    def served_values(self) -> dict[str, float | int]:
        """Every register as a read would give it now, in engineering units (the simulator's truth)."""
        values: dict[str, float | int] = {}
        for register in self.map.registers.values():
            value = self._get[register.name]()
            if register.kind != "analog":
                values[register.name] = int(value) & 0xFFFF
            elif self.map.area == "float":
                values[register.name] = struct.unpack(">f", struct.pack(">f", value))[0]
            else:
                scale = 10 ** self._decimals(register)
                values[register.name] = max(-0x8000, min(0x7FFF, round(value * scale))) / scale
        return values

    def _status_word(self) -> int:
        flags = self.model.flags()
        return sum(1 << bit for name, bit in self.map.status_bits.items() if flags.get(name))

    def _locate(self, address: int, count: int) -> tuple[list[Register], bool]:
        """Registers covered by a request, and whether it is in the float area."""
        if not 1 <= count <= 125:
            raise ModbusError(3)
        is_float = address >= self.map.float_base
        if is_float:
            offset = address - self.map.float_base
            if offset % 2 or count % 2:
                raise ModbusError(2)
            addresses = [offset // 2 + i for i in range(count // 2)]
        else:
            addresses = list(range(address, address + count))
        try:
            return [self._by_address[a] for a in addresses], is_float
        except KeyError:
            raise ModbusError(2) from None

    def read(self, address: int, count: int) -> list[int]:
        """Words for FC3/FC4."""
        registers, is_float = self._locate(address, count)
        words: list[int] = []
        for register in registers:
            value = self._get[register.name]()
            if is_float:
                words.extend(struct.unpack(">HH", struct.pack(">f", value)))
            elif register.kind == "analog":
                scaled = round(value * 10 ** self._decimals(register))
                words.append(max(-0x8000, min(0x7FFF, scaled)) & 0xFFFF)
            else:
                words.append(int(value) & 0xFFFF)
        return words

    def write(self, address: int, words: list[int]) -> None:
        """Apply FC6/FC16 data; all values are checked before any is applied."""
        registers, is_float = self._locate(address, len(words))
        values = []
        for i, register in enumerate(registers):
            if not register.writable:
                raise ModbusError(2)
            if is_float:
                value = struct.unpack(">f", struct.pack(">HH", words[2 * i], words[2 * i + 1]))[0]
            else:
                word = words[i]
                signed = word - 0x10000 if word & 0x8000 else word
                value = signed / 10 ** self._decimals(register) if register.kind == "analog" else word
            if value != value or not register.in_range(value):
                raise ModbusError(3)
            values.append(value)
        for register, value in zip(registers, values):
            self._set[register.name](value)

    def _decimals(self, register: Register) -> int:
        if register.decimals == "display":
            return self.decimals
        if register.decimals is None:  # a word register: as int(None) would, but saying why
            raise TypeError(f"{register.name} is not an analog register: it has no decimals")
        return int(register.decimals)


class RtuResponder:
    """Turns a byte stream of requests into response frames for one slave address."""

    def __init__(self, bank: RegisterBank, address: int) -> None:
        self.bank, self.address = bank, address
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add received bytes; return the responses to every complete valid frame."""
        self.buffer += data
        responses = []
        while len(self.buffer) >= 2:
            length = self._frame_length(0)
            if length is not None and len(self.buffer) < length:
                break  # wait for the rest
            if length is not None and self._valid_at(0):
                request = bytes(self.buffer[:length])
                del self.buffer[:length]
                if request[0] == self.address:
                    responses.append(self._answer(request[:-2]))
                continue
            if length is None and not any(self._valid_at(i) for i in range(1, len(self.buffer) - 1)):
                break  # maybe a frame of an unknown function: decided at the next silence
            del self.buffer[0]  # resynchronise one byte at a time
        return responses

    def _valid_at(self, offset: int) -> bool:
        length = self._frame_length(offset)
        if length is None or len(self.buffer) < offset + length:
            return False
        frame = bytes(self.buffer[offset : offset + length])
        return crc16(frame[:-2]) == frame[-2:]

    def gap(self) -> list[bytes]:
        """The line went quiet: a whole valid frame of unknown function gets exception 01; rest is noise."""
        request, self.buffer = bytes(self.buffer), bytearray()
        if len(request) >= 4 and crc16(request[:-2]) == request[-2:] and request[0] == self.address:
            return [self._frame(bytes((self.address, request[1] | 0x80, 1)))]
        return []

    def _frame_length(self, offset: int) -> int | None:
        if len(self.buffer) < offset + 2:
            return None
        function = self.buffer[offset + 1]
        if function in (3, 4, 6):
            return 8
        if function == 16:
            return 9 + self.buffer[offset + 6] if len(self.buffer) >= offset + 7 else None
        return None  # unknown function: its length is only known at the next silence

    def _answer(self, pdu: bytes) -> bytes:
        address, function = pdu[0], pdu[1]
        try:
            start, count_or_value = struct.unpack(">HH", pdu[2:6])
            if function in (3, 4):
                words = self.bank.read(start, count_or_value)
                return self._frame(bytes((address, function, 2 * len(words))) + struct.pack(f">{len(words)}H", *words))
            if function == 6:
                self.bank.write(start, [count_or_value])
                return self._frame(pdu)
            count, byte_count = count_or_value, pdu[6]
            if byte_count != 2 * count or len(pdu) != 7 + byte_count or not 1 <= count <= 123:
                raise ModbusError(3)
            self.bank.write(start, list(struct.unpack(f">{count}H", pdu[7:])))
            return self._frame(pdu[:6])
        except ModbusError as error:
            return self._frame(bytes((address, function | 0x80, error.code)))

    @staticmethod
    def _frame(pdu: bytes) -> bytes:
        return pdu + crc16(pdu)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    assert __doc__ is not None  # this module has a docstring (python -OO drops it, and this check too)
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.furnace", description=__doc__.split("\n")[0])
    parser.add_argument("--address", type=int, default=1, help="Modbus slave address (default 1)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second (default 1)")
    parser.add_argument(
        "--model",
        default=None,
        help="controller model: the map in hardware/maps that lists it (default 2400 without --map)",
    )
    parser.add_argument(
        "--map", default=None, help="register map name or path (--model, if given, must be one of its models)"
    )
    parser.add_argument(
        "--truth",
        default=None,
        metavar="FILE",
        help="append the truth (every register) as a JSON line per answered request",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.address <= 247 or args.speed < 0:
        parser.error("--address must be 1..247 and --speed >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Serve one simulated controller until SIGTERM or SIGINT."""
    args = _parse(argv)
    register_map = resolve_register_map(args.model or (None if args.map else "2400"), args.map)
    model = FurnaceModel(input_range_C=register_map.input_range_C)
    bank = RegisterBank(register_map, model)
    responder = RtuResponder(bank, args.address)
    truth = open(args.truth, "a", encoding="utf-8") if args.truth else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGUSR1, lambda *_: setattr(model, "sensor_break", True))
    signal.signal(signal.SIGUSR2, lambda *_: setattr(model, "sensor_break", False))

    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline, before any client opens it
    os.set_blocking(master, False)
    print(os.ttyname(slave), flush=True)
    started = time.monotonic()
    last_byte = started
    outgoing: list[tuple[float, bytes]] = []  # (when it may go, response), in order
    with selectors.DefaultSelector() as selector:
        selector.register(master, selectors.EVENT_READ)
        while not stop:
            wait_s = INTER_FRAME_GAP_S if responder.buffer else 0.05
            if outgoing:
                wait_s = max(0.0, min(wait_s, outgoing[0][0] - time.monotonic()))
            events = selector.select(wait_s)
            now = time.monotonic()
            model.advance((now - started) * args.speed)
            responses = []
            if events:
                try:
                    data = os.read(master, 4096)
                except (BlockingIOError, InterruptedError):
                    data = b""
                if data:
                    last_byte = now
                    responses = responder.feed(data)
            elif responder.buffer and now - last_byte >= INTER_FRAME_GAP_S:
                responses = responder.gap()
            if truth is not None and responses:
                truth.write(
                    json.dumps({"t": now, "sim_s": model.time_s, "values": bank.served_values()}, separators=(",", ":"))
                    + "\n"
                )
            outgoing.extend((now + TURNAROUND_S, response) for response in responses)
            while outgoing and outgoing[0][0] <= time.monotonic():
                try:
                    os.write(master, outgoing.pop(0)[1])
                except BlockingIOError:
                    pass  # nobody reads the line: the answer is lost, as on a real bus
    os.close(master)
    os.close(slave)
    if truth is not None:
        truth.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
