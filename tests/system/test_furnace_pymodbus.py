"""The Eurotherm driver against an independent Modbus RTU server (pymodbus), loaded from the register map.

socat links two pseudo-terminals back to back; pymodbus serves one end in a
thread, the driver opens the other. Nothing of our simulator is involved, so
this checks the driver's framing, addressing and encoding against another
implementation of the protocol.
"""

import asyncio
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from _bench import stop_process
from _map_server import device_from_map
from pymodbus import FramerType
from pymodbus.server import ModbusSerialServer

from drivers import Eurotherm, ProtocolError
from drivers._register_map import load_register_map

pytestmark = pytest.mark.system


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
    stop_process(socat, timeout_s=5)


@pytest.fixture(params=["eurotherm-2400", "eurotherm-3200"])
def independent_server(request, pty_pair):
    regmap = load_register_map(request.param)
    client, server_port = pty_pair
    device = device_from_map(regmap)
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
