"""The Eurotherm driver against an independent Modbus RTU server (pymodbus), loaded from the register map.

socat links two pseudo-terminals back to back; pymodbus serves one end in a
thread, the driver opens the other. Nothing of our simulator is involved, so
this checks the driver's framing, addressing and encoding against another
implementation of the protocol.
"""

import asyncio
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers import Eurotherm, ProtocolError
from drivers._register_map import load_register_map

pytestmark = pytest.mark.system

VALUES = {  # what the independent server holds, in engineering units
    "process_value": 851.3,
    "target_setpoint": 850.0,
    "output_power": 42.5,
    "working_output": 42.5,
    "working_setpoint": 849.5,
    "alarm_1_setpoint": 1150.0,
    "alarm_2_setpoint": 50.0,
    "program_status": 2,
    "setpoint_1": 850.0,
    "remote_setpoint": 850.0,
    "setpoint_rate_limit": 5.0,
    "status_word": 0x0201,
    "instrument_mode": 0,
    "auto_manual": 0,
    "decimal_places": 1,
}


def _words(regmap, register, value) -> list[int]:
    if register.kind == "word":
        return [int(value)]
    if regmap.area == "float":
        return list(struct.unpack(">HH", struct.pack(">f", value)))
    decimals = 1 if register.decimals == "display" else register.decimals
    return [round(value * 10**decimals) & 0xFFFF]


def _device(regmap) -> SimDevice:
    """The map's registers as pymodbus holding registers; the comms SP is the active SP."""
    blocks = []
    for register in regmap.registers.values():
        value = next(iter(regmap.ident_codes)) if register.name == "ident" else VALUES[register.name]
        address = (
            regmap.float_address(register) if regmap.area == "float" and register.kind == "analog" else register.address
        )
        blocks.append(
            SimData(
                address,
                values=_words(regmap, register, value),
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

    return SimDevice(1, simdata=blocks, action=remote_sp_is_active)


@pytest.fixture
def pty_pair(tmp_path):
    client, server = tmp_path / "client", tmp_path / "server"
    socat = subprocess.Popen(
        [shutil.which("socat"), f"pty,raw,echo=0,link={client}", f"pty,raw,echo=0,link={server}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not (client.exists() and server.exists()):
        assert socat.poll() is None and time.monotonic() < deadline, "socat did not create the pty pair"
        time.sleep(0.01)  # polling for a condition, with a deadline
    yield str(client), str(server)
    socat.terminate()
    socat.wait(5)


@pytest.fixture(params=["eurotherm-2400", "eurotherm-3200"])
def independent_server(request, pty_pair):
    regmap = load_register_map(request.param)
    client, server_port = pty_pair
    device = _device(regmap)
    loop = asyncio.new_event_loop()
    started: list = []
    listening = threading.Event()

    async def serve():
        server = ModbusSerialServer(device, framer=FramerType.RTU, port=server_port, baudrate=9600)
        started.append(server)
        await server.serve_forever(background=True)
        listening.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    assert listening.wait(10), "pymodbus server did not start"
    yield regmap, client
    asyncio.run_coroutine_threadsafe(started[0].shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_driver_reads_every_property_from_an_independent_server(independent_server):
    regmap, port = independent_server
    with Eurotherm(port, register_map=regmap.path, timeout_s=0.5) as furnace:
        reading = furnace.read_all()
        assert reading.temperature_C == pytest.approx(851.3, abs=1e-4)
        assert (reading.setpoint_C, reading.working_setpoint_C) == (850.0, 849.5)
        assert reading.output_percent == 42.5
        assert reading.status.alarm_1 and reading.status.program_end and not reading.status.sensor_break
        assert furnace.rate_limit_C_per_min == 5.0
        assert furnace.ident.startswith(f"Eurotherm {next(iter(regmap.ident_codes.values()))} ")


def test_driver_writes_and_reads_back_on_an_independent_server(independent_server):
    regmap, port = independent_server
    with Eurotherm(port, register_map=regmap.path, timeout_s=0.5) as furnace:
        furnace.set_rate_limit(12.5)
        furnace.set_setpoint(450.5)
        assert furnace.rate_limit_C_per_min == 12.5
        assert furnace.setpoint_C == 450.5


def test_independent_server_refusal_is_a_protocol_error(independent_server, tmp_path):
    regmap, port = independent_server
    text = Path(regmap.path).read_text()
    if "[registers.ident]\naddress = 122" in text:
        text = text.replace("[registers.ident]\naddress = 122", "[registers.ident]\naddress = 123")
    else:  # a map that extends another states only what differs: the moved ident is one more difference
        assert "[registers.ident]" not in text
        text += "\n[registers.ident]\naddress = 123\n"
    moved = tmp_path / "moved-ident.toml"
    moved.write_text(text)
    with Eurotherm(port, register_map=moved, timeout_s=0.5) as furnace:
        with pytest.raises(ProtocolError):
            furnace.ident  # 123 is not served: exception 02 from pymodbus
