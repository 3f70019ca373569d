"""Simulated Eurotherm furnace controller: Modbus RTU on a pseudo-terminal.

    python -m drivers.sim.furnace [--address 1[,2,...]] [--speed FACTOR] [--model 2416] [--map PATH] [--truth FILE]
                                  [--tcp [--host 127.0.0.1] [--port 0]]

Prints the client's port alone on the first line of stdout (the pty path, or
``tcp://127.0.0.1:PORT`` with ``--tcp``; with ``--tcp --pty`` the pty path of the
controller's fixed RS-485 port follows after a space), then serves
until SIGTERM (exit code 0). Like an RTU slave it answers no sooner than 3.5
characters (1.75 ms) after a request. It answers FC 3, 4, 6 and 16 exactly as the
register map says (integer and float areas); exception 01 for other function
codes, 02 for an address not in the map or a write to a read-only register,
03 for a bad count or a value outside the register's min/max. Frames with a
bad CRC or for another address get no answer, as on a real bus.

Faults of the instrument itself are injected out of band, never on the wire:
SIGUSR1 breaks the thermocouple, SIGUSR2 mends it; SIGRTMIN starts the sensors'
scenario again (the process stream starts now). Line faults belong to
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

__all__ = ["RegisterBank", "RtuResponder", "ModbusError", "answer_pdu", "crc16", "main"]

DISPLAY_DECIMALS = 1
INTER_FRAME_GAP_S = 0.02  # a partial frame older than this is line noise
TURNAROUND_S = 0.00175  # an RTU slave answers after 3.5 characters of silence, at least 1.75 ms
_MS_PER_MIN = 60_000  # a time register (kind "time", float area): int32 milliseconds on the wire, minutes here


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
        m.remote_selected = register_map.remote_select is None  # with a select register: local until selected
        if register_map.get("setpoint_rate_limit_down") is not None:
            m.rate_down_C_per_min = 0.0
        layout = register_map.programmer
        if layout is not None:
            m.programmer.types, m.programmer.end_dwell = dict(layout.segment_types), layout.end_dwell
            m.programmer.style, m.programmer.count = layout.style, layout.segments
        self.stored: dict[str, float] = {}  # registers that only hold what is written (units, program number)
        codes = register_map.program_status
        self._get = {
            "process_value": lambda: m.pv_C,
            "target_setpoint": lambda: m.target_setpoint_C,
            "output_power": lambda: m.output_percent,
            "working_output": lambda: m.output_percent,
            "manual_output": lambda: m.manual_output_percent,
            "working_setpoint": lambda: m.working_setpoint_C,
            "alarm_1_setpoint": lambda: m.alarm_1_setpoint_C,
            "alarm_2_setpoint": lambda: m.alarm_2_setpoint_C,
            "program_status": lambda: codes.get(m.programmer.state if layout else m.program, 0),
            "timer_status": lambda: 0,
            "setpoint_1": lambda: m.local_setpoint_C,
            "setpoint_2": lambda: m.setpoint_2_C,
            "setpoint_select": lambda: int(m.sp2_selected),
            "remote_setpoint": lambda: (
                m.target_setpoint_C
                if register_map.remote_select is None
                else (m.remote_setpoint_C if m.remote_setpoint_C is not None else m.local_setpoint_C)
            ),
            "remote_local_select": lambda: int(m.remote_selected),
            "setpoint_rate_limit": lambda: m.rate_limit_C_per_min,
            "setpoint_rate_limit_down": lambda: m.rate_down_C_per_min or 0.0,
            "rate_limit_disable": lambda: int(m.rate_disabled),
            "setpoint_rate_units": lambda: self.stored.get("setpoint_rate_units", 1),
            "comms_resolution": lambda: self.stored.get("comms_resolution", 0),
            "status_word": self._status_word,
            "loop_sensor_break": lambda: int(m.sensor_break),
            "loop_break_alarm": lambda: int(m.loop_break),
            "ident": lambda: next(iter(register_map.ident_codes), 0),
            "instrument_mode": lambda: 0,
            "auto_manual": lambda: int(m.manual),
            "decimal_places": lambda: decimals,
            "program_number": lambda: self.stored.get("program_number", 1),
            "program_segment": lambda: m.programmer.segment if m.programmer.state == "run" else 0,
            "program_ramp_units": lambda: self.stored.get("program_ramp_units", 1),
            "program_dwell_units": lambda: self.stored.get("program_dwell_units", 1),
            "program_cycles": lambda: self.stored.get("program_cycles", 1),
            "watchdog_timeout": lambda: m.watchdog.timeout_s,
            "watchdog_flag": lambda: int(m.watchdog.tripped),
        }
        self._set = {
            "target_setpoint": m.set_local_setpoint,
            "setpoint_1": m.set_local_setpoint,
            "setpoint_2": m.set_setpoint_2,
            "setpoint_select": lambda v: setattr(m, "sp2_selected", bool(v)),
            "remote_setpoint": m.set_remote_setpoint,
            "remote_local_select": lambda v: m.select_remote(bool(v)),
            "setpoint_rate_limit": m.set_rate_limit,
            "setpoint_rate_limit_down": lambda v: setattr(m, "rate_down_C_per_min", v),
            "rate_limit_disable": lambda v: setattr(m, "rate_disabled", bool(v)),
            "alarm_1_setpoint": lambda v: setattr(m, "alarm_1_setpoint_C", v),
            "alarm_2_setpoint": lambda v: setattr(m, "alarm_2_setpoint_C", v),
            "auto_manual": lambda v: m.set_manual(bool(v)),
            "program_status": self._program_control,
            "watchdog_timeout": lambda v: m.watchdog.arm(float(v), time.monotonic()),
            **{
                name: (lambda v, name=name: self.stored.__setitem__(name, v))
                for name in ("program_number", "program_ramp_units", "program_dwell_units", "program_cycles")
            },
        }
        if layout is not None:
            for number in range(1, layout.segments + 1):
                for field_name in layout.fields:
                    name = layout.segment_register(number, field_name)
                    self._get[name] = lambda n=number, f=field_name: m.programmer.field(n, f)
                    self._set[name] = lambda v, n=number, f=field_name: m.programmer.set_field(n, f, v)
            if layout.control != "program_status":
                self._set[layout.control] = self._program_control
            self._get[layout.status] = lambda: codes.get(m.programmer.state, 0)
            if layout.end_register is not None:  # ramp_dwell: the program's end type
                self._get[layout.end_register] = lambda: m.programmer.end_type
                self._set[layout.end_register] = lambda v: setattr(m.programmer, "end_type", int(v))
        unknown = [
            r.name
            for r in register_map.registers.values()
            if r.name not in self._get or (r.writable and r.name not in self._set)
        ]
        if unknown:
            raise ValueError(f"{register_map.path}: the simulator does not model {', '.join(unknown)}")

    def _program_control(self, value: float) -> None:
        layout = self.map.programmer
        if layout is None:
            raise ModbusError(2)
        if value == layout.run:
            self.model.run_program()
        elif value == layout.reset:
            self.model.reset_program()
        else:
            raise ModbusError(3)

    def served_values(self) -> dict[str, float | int]:
        """Every register as a read would give it now, in engineering units (the simulator's truth)."""
        values: dict[str, float | int] = {}
        for register in self.map.registers.values():
            value = self._get[register.name]()
            if register.is_time:  # minutes, as milliseconds on the wire give them
                values[register.name] = round(value * _MS_PER_MIN) / _MS_PER_MIN
            elif register.kind != "analog":
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
            if register.is_time and not is_float:
                raise ModbusError(2)  # a map describes a time in the float area only
            if register.is_time:
                words.extend(struct.unpack(">HH", struct.pack(">i", round(value * _MS_PER_MIN))))
            elif is_float:
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
            if not register.writable or (register.is_time and not is_float):
                raise ModbusError(2)
            if register.is_time:  # int32 milliseconds -> minutes
                value = struct.unpack(">i", struct.pack(">HH", words[2 * i], words[2 * i + 1]))[0] / _MS_PER_MIN
            elif is_float:
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


def answer_pdu(bank: RegisterBank, pdu: bytes) -> bytes:
    """The response PDU (function code first) to a request PDU, as this instrument answers it.

    Shared by the RTU responder (address + PDU + CRC) and the TCP one (MBAP
    header + unit id + PDU): one instrument, two framings.
    """
    function = pdu[0]
    try:
        if len(pdu) < 5:
            raise ModbusError(3)
        start, count_or_value = struct.unpack(">HH", pdu[1:5])
        if function in (3, 4):
            words = bank.read(start, count_or_value)
            return bytes((function, 2 * len(words))) + struct.pack(f">{len(words)}H", *words)
        if function == 6:
            bank.write(start, [count_or_value])
            return pdu[:5]
        if function != 16:
            raise ModbusError(1)
        count = count_or_value
        byte_count = pdu[5] if len(pdu) > 5 else -1
        if byte_count != 2 * count or len(pdu) != 6 + byte_count or not 1 <= count <= 123:
            raise ModbusError(3)
        bank.write(start, list(struct.unpack(f">{count}H", pdu[6:])))
        return pdu[:5]
    except ModbusError as error:
        return bytes((function | 0x80, error.code))


class RtuResponder:
    """Turns a byte stream of requests into response frames for the slave addresses it serves.

    ``bank`` is one instrument at ``address``, or ``{address: bank}`` for several
    controllers on one RS-485 line (each answers only its own address).
    """

    def __init__(self, bank: RegisterBank | dict[int, RegisterBank], address: int | None = None) -> None:
        if isinstance(bank, RegisterBank):
            if address is None:
                raise ValueError("RtuResponder: give the slave address of the bank")
            bank = {address: bank}
        self.banks = dict(bank)
        self.bank, self.address = next(iter(self.banks.values())), next(iter(self.banks))
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
                if request[0] in self.banks:
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
        if len(request) >= 4 and crc16(request[:-2]) == request[-2:] and request[0] in self.banks:
            return [self._frame(bytes((request[0], request[1] | 0x80, 1)))]
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
        address = pdu[0]
        self.banks[address].model.comms_request(time.monotonic())  # the watchdog's clock is the wall clock
        return self._frame(bytes((address,)) + answer_pdu(self.banks[address], pdu[1:]))

    @staticmethod
    def _frame(pdu: bytes) -> bytes:
        return pdu + crc16(pdu)


def _addresses(text: str) -> list[int]:
    """``"1"`` or ``"1,2,3"``: the slave addresses (unit ids) served, each 1..247, no repeats."""
    try:
        addresses = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give addresses 1..247 separated by commas, e.g. 1,2,3") from None
    if not all(1 <= a <= 247 for a in addresses) or len(set(addresses)) != len(addresses):
        raise argparse.ArgumentTypeError(f"{text!r}: each address must be 1..247 and given once")
    return addresses


def _parse(argv: list[str] | None) -> argparse.Namespace:
    assert __doc__ is not None  # this module has a docstring (python -OO drops it, and this check too)
    parser = argparse.ArgumentParser(prog="python -m drivers.sim.furnace", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--address",
        type=_addresses,
        default=None,
        help="Modbus slave address(es) or unit id(s) of the controllers: 1, or 1,2,3 for several on one line "
        "(default 1, or none if a --sensor is at 1)",
    )
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
    parser.add_argument(
        "--tcp", action="store_true", help="serve Modbus TCP on --host:--port instead of RTU on a pseudo-terminal"
    )
    parser.add_argument(
        "--pty",
        action="store_true",
        help="--tcp: serve RTU on a pseudo-terminal too (the controller's fixed RS-485 port beside its Ethernet "
        "option; its path is the second token of the address line); the comms watchdog watches TCP only",
    )
    parser.add_argument("--host", default="127.0.0.1", help="--tcp: address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="--tcp: TCP port (default 0: any free port)")
    parser.add_argument(
        "--sensor",
        type=_sensor_option,
        action="append",
        default=[],
        metavar="ADDRESS:MAP",
        help="a Modbus sensor on the same line or gateway, answering as its sensor map (hardware/sensors, or a path) "
        "says, e.g. 2:ph-transmitter (repeatable)",
    )
    parser.add_argument(
        "--scenario",
        default=None,
        metavar="NAME_OR_PATH",
        help="--sensor: the scenario whose [process] quantities the sensors' channels read (by channel name)",
    )
    parser.add_argument(
        "--sensor-fault",
        type=_sensor_fault_option,
        action="append",
        default=[],
        metavar="ADDRESS:CHANNEL:KIND[=RATE]@START_S[-END_S]",
        help="a sensor fault in simulated time: stuck, drift=UNITS_PER_HOUR, out_of_range or probe_fault, "
        "e.g. 2:pH:drift=0.5@600 (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.speed < 0:
        parser.error("--speed must be >= 0")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be 0..65535")
    if not args.tcp and (args.port or args.host != "127.0.0.1" or args.pty):
        parser.error("--host, --port and --pty are for --tcp")
    sensors = [address for address, _ in args.sensor]
    if len(set(sensors)) != len(sensors):
        parser.error("--sensor: each address must be given once")
    if args.address is None:
        args.address = [] if 1 in sensors else [1]
    if set(args.address) & set(sensors):
        parser.error(f"--address and --sensor share address(es) {sorted(set(args.address) & set(sensors))}")
    if (args.scenario or args.sensor_fault) and not args.sensor:
        parser.error("--scenario and --sensor-fault are for --sensor")
    return args


def _sensor_option(text: str) -> tuple[int, str]:
    from ._sensor_bank import parse_sensor

    try:
        return parse_sensor(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _sensor_fault_option(text: str):
    from ._sensor_bank import parse_sensor_fault

    try:
        return parse_sensor_fault(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _write_truth(truth, now: float, banks: dict[int, RegisterBank]) -> None:
    first = next(iter(banks.values()))
    record: dict = {"t": now, "sim_s": first.model.time_s, "values": first.served_values()}
    if len(banks) > 1:
        record["units"] = {str(address): bank.served_values() for address, bank in banks.items()}
    truth.write(json.dumps(record, separators=(",", ":")) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Serve the simulated controller(s) until SIGTERM or SIGINT."""
    args = _parse(argv)
    register_map = resolve_register_map(args.model or (None if args.map else "2400"), args.map)
    banks = {
        address: RegisterBank(register_map, FurnaceModel(input_range_C=register_map.input_range_C))
        for address in args.address
    }
    models = [bank.model for bank in banks.values()]  # the thermocouple signals break and mend these
    sensor_processes: list = []  # SIGRTMIN starts their scenario again
    if args.sensor:  # sensors on the same line or gateway, served by the same responders
        from ..maps import MapError
        from ._sensor_bank import sensor_banks
        from .scenario import ScenarioError, load_scenario

        try:
            scenario = load_scenario(args.scenario) if args.scenario else None
            sensors = sensor_banks(args.sensor, scenario, args.sensor_fault, ModbusError)
        except (MapError, ScenarioError, ValueError) as error:
            raise SystemExit(f"python -m drivers.sim.furnace: error: {error}") from None
        for address, sensor in sorted(sensors.items()):
            banks[address] = sensor  # type: ignore[assignment]  # a SensorBank answers as a RegisterBank does
            sensor_processes.append(sensor.model)
    clocks = [bank.model for bank in banks.values()]
    truth = open(args.truth, "a", encoding="utf-8") if args.truth else None
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    signal.signal(signal.SIGUSR1, lambda *_: [setattr(m, "sensor_break", True) for m in models])
    signal.signal(signal.SIGUSR2, lambda *_: [setattr(m, "sensor_break", False) for m in models])
    signal.signal(signal.SIGRTMIN, lambda *_: [process.restart_scenario() for process in sensor_processes])
    started = time.monotonic()

    def advance(now: float) -> None:
        for model in clocks:
            model.watch_comms(now)
            model.advance((now - started) * args.speed)

    try:
        if args.tcp:
            _serve_tcp(args, banks, advance, truth, stop)
        else:
            _serve_pty(banks, advance, truth, stop)
    finally:
        if truth is not None:
            truth.close()
    return 0


def _serve_tcp(args, banks: dict[int, RegisterBank], advance, truth, stop: list) -> None:
    from ._furnace_tcp import MbapServer

    def answer(unit: int, pdu: bytes) -> bytes | None:
        advance(time.monotonic())
        bank = banks.get(unit)
        if bank is None:
            return None
        bank.model.comms_request(time.monotonic())
        return answer_pdu(bank, pdu)

    with selectors.DefaultSelector() as selector:
        server = MbapServer(selector, args.host, args.port, answer)
        fixed = _FixedPort(selector, banks) if args.pty else None
        print(server.address + (f" {fixed.path}" if fixed else ""), flush=True)
        try:
            while not stop:
                wait_s = fixed.wait_s() if fixed else 0.05
                events = selector.select(wait_s)
                now = time.monotonic()
                advance(now)
                answered = False
                for key, _ in events:
                    answered |= key.data(key.fileobj)
                if fixed is not None:
                    answered |= fixed.tick(now)
                if truth is not None and answered:
                    _write_truth(truth, now, banks)
        finally:
            server.close()
            if fixed is not None:
                fixed.close()


class _FixedPort:
    """The controller's fixed RS-485 port beside the TCP one: RTU on a pty, not watched by the comms watchdog."""

    def __init__(self, selector: selectors.BaseSelector, banks: dict[int, RegisterBank]) -> None:
        self.responder = _UnwatchedResponder(banks)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.last_byte = time.monotonic()
        self.outgoing: list[tuple[float, bytes]] = []
        self.selector = selector
        selector.register(self.master, selectors.EVENT_READ, self._read)

    def wait_s(self) -> float:
        wait_s = INTER_FRAME_GAP_S if self.responder.buffer else 0.05
        if self.outgoing:
            wait_s = max(0.0, min(wait_s, self.outgoing[0][0] - time.monotonic()))
        return wait_s

    def _read(self, _fd) -> bool:
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, InterruptedError, OSError):
            return False
        if not data:
            return False
        now = time.monotonic()
        self.last_byte = now
        responses = self.responder.feed(data)
        self.outgoing.extend((now + TURNAROUND_S, response) for response in responses)
        return bool(responses)

    def tick(self, now: float) -> bool:
        answered = False
        if self.responder.buffer and now - self.last_byte >= INTER_FRAME_GAP_S:
            responses = self.responder.gap()
            self.outgoing.extend((now + TURNAROUND_S, response) for response in responses)
            answered = bool(responses)
        while self.outgoing and self.outgoing[0][0] <= time.monotonic():
            try:
                os.write(self.master, self.outgoing.pop(0)[1])
            except BlockingIOError:
                pass
        return answered

    def close(self) -> None:
        self.selector.unregister(self.master)
        os.close(self.master)
        os.close(self.slave)


class _UnwatchedResponder(RtuResponder):
    """An RTU responder whose requests do not feed the comms watchdog (another port of the controller)."""

    def _answer(self, pdu: bytes) -> bytes:
        address = pdu[0]
        return self._frame(bytes((address,)) + answer_pdu(self.banks[address], pdu[1:]))


def _serve_pty(banks: dict[int, RegisterBank], advance, truth, stop: list) -> None:
    responder = RtuResponder(banks)
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line discipline, before any client opens it
    os.set_blocking(master, False)
    print(os.ttyname(slave), flush=True)
    last_byte = time.monotonic()
    outgoing: list[tuple[float, bytes]] = []  # (when it may go, response), in order
    with selectors.DefaultSelector() as selector:
        selector.register(master, selectors.EVENT_READ)
        while not stop:
            wait_s = INTER_FRAME_GAP_S if responder.buffer else 0.05
            if outgoing:
                wait_s = max(0.0, min(wait_s, outgoing[0][0] - time.monotonic()))
            events = selector.select(wait_s)
            now = time.monotonic()
            advance(now)
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
                _write_truth(truth, now, banks)
            outgoing.extend((now + TURNAROUND_S, response) for response in responses)
            while outgoing and outgoing[0][0] <= time.monotonic():
                try:
                    os.write(master, outgoing.pop(0)[1])
                except BlockingIOError:
                    pass  # nobody reads the line: the answer is lost, as on a real bus
    os.close(master)
    os.close(slave)


if __name__ == "__main__":
    sys.exit(main())
