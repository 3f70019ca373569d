"""The Eurotherm driver over Modbus TCP: against our simulator (``--tcp``), against an independent pymodbus
TCP server loaded from each map, two units behind one gateway, and a gateway that is lost and comes back.

Conditions are polled with a deadline (no sleeps as synchronisation, no timing assertions).
"""

import asyncio
import os
import signal
import socket
import threading
import time

import pytest
from _map_server import device_from_map
from pymodbus.server import ModbusTcpServer

from drivers import Eurotherm, NotConnected, ProtocolError
from drivers._modbus import parse_tcp_port
from drivers._register_map import load_register_map
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

SPEED = 600.0
DEADLINE_S = 60.0


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("model", ["2400", "3200"])
def test_driver_and_simulator_over_tcp_ramp_and_safe_state(model):
    with start_simulator("drivers.sim.furnace", "--tcp", "--speed", str(SPEED), "--model", model) as sim:
        assert sim.address.startswith("tcp://127.0.0.1:")
        with Eurotherm(sim.address, model=model, timeout_s=0.5) as furnace:
            assert furnace.ident.startswith("Eurotherm 2408" if model == "2400" else "Eurotherm 3216")
            furnace.set_rate_limit(10.0)
            furnace.set_setpoint(200.0)
            assert furnace.setpoint_C == 200.0
            wait_for(lambda: furnace.read_all().working_setpoint_C >= 200.0, "the working SP to reach 200 C")
            furnace.safe_state()
            assert furnace.setpoint_C == 20.0
            assert furnace.line_counters.get("refused_answers", 0) == 0


@pytest.fixture(params=["eurotherm-2400", "eurotherm-3200", "eurotherm-epc3000", "eurotherm-nanodac"])
def independent_tcp_server(request):
    regmap = load_register_map(request.param)
    port = free_port()
    loop = asyncio.new_event_loop()
    started: list = []
    listening = threading.Event()

    async def serve():
        server = ModbusTcpServer([device_from_map(regmap, 1), device_from_map(regmap, 2)], address=("127.0.0.1", port))
        started.append(server)
        await server.serve_forever(background=True)
        listening.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    assert listening.wait(10), "pymodbus TCP server did not start"
    yield regmap, f"tcp://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(started[0].shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_driver_against_an_independent_pymodbus_tcp_server(independent_tcp_server):
    regmap, port = independent_tcp_server
    with Eurotherm(port, register_map=regmap.path, timeout_s=0.5) as furnace:
        reading = furnace.read_all()
        assert reading.temperature_C == pytest.approx(851.3, abs=1e-4)
        assert (reading.setpoint_C, reading.working_setpoint_C, reading.output_percent) == (850.0, 849.5, 42.5)
        if not regmap.status_registers:  # the nanodac has no status word: flags of their own, all clear here
            assert reading.status.alarm_1 and reading.status.program_end
        furnace.set_rate_limit(12.5)
        furnace.set_setpoint(450.5)
        assert (furnace.rate_limit_C_per_min, furnace.setpoint_C) == (12.5, 450.5)


def test_two_units_of_an_independent_server_are_two_controllers(independent_tcp_server):
    regmap, port = independent_tcp_server
    with (
        Eurotherm(port, address=1, register_map=regmap.path, timeout_s=0.5) as one,
        Eurotherm(port, address=2, register_map=regmap.path, timeout_s=0.5) as two,
    ):
        one.set_rate_limit(5.0)
        one.set_setpoint(300.0)
        assert (one.setpoint_C, two.setpoint_C) == (300.0, 850.0)


def test_a_refusal_over_tcp_is_a_protocol_error(independent_tcp_server, tmp_path):
    regmap, port = independent_tcp_server
    moved = tmp_path / "moved-ident.toml"
    moved.write_text(f'extends = "{regmap.path}"\n' + _identity(regmap) + "\n[registers.ident]\naddress = 123\n")
    with Eurotherm(port, register_map=moved, timeout_s=0.5) as furnace:
        with pytest.raises(ProtocolError, match="refused"):
            furnace.ident


def _identity(regmap) -> str:
    codes = "\n".join(f'"0x{code:04X}" = "{model}"' for code, model in regmap.ident_codes.items())
    return (
        f'[instrument]\nfamily = "{regmap.family}"\nmodels = {list(regmap.models)!r}\n'.replace("'", '"')
        + f"[instrument.ident_codes]\n{codes}\n"
    )


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_two_units_on_one_link_share_it_without_interleaving(transport):
    """Two controllers behind one gateway (TCP) or on one RS-485 line (RTU), polled from two threads at once."""
    args = ["--address", "1,2", "--speed", "0", *(["--tcp"] if transport == "tcp" else [])]
    with start_simulator("drivers.sim.furnace", *args) as sim:
        with (
            Eurotherm(sim.address, address=1, timeout_s=0.5) as one,
            Eurotherm(sim.address, address=2, timeout_s=0.5) as two,
        ):
            for unit, target in ((one, 300.0), (two, 500.0)):
                unit.set_rate_limit(5.0)
                unit.set_setpoint(target)
            failures: list = []

            def poll(unit, target):
                try:
                    for _ in range(60):
                        assert unit.read_all().setpoint_C == target
                except BaseException as error:  # noqa: BLE001 - reported by the test thread
                    failures.append(error)

            threads = [threading.Thread(target=poll, args=(u, t)) for u, t in ((one, 300.0), (two, 500.0))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(DEADLINE_S)
            assert not any(thread.is_alive() for thread in threads)
            assert failures == []
            assert one._link.lock is two._link.lock  # one link, one lock
            counters = one.line_counters
            assert counters.get("ambiguous_answers", 0) == 0 and counters.get("refused_answers", 0) == 0


def _polls_until(furnace, error_type, limit: int) -> int:
    """How many polls until one raises ``error_type`` (at most ``limit``)."""
    for poll in range(1, limit + 1):
        try:
            furnace.read_all()
        except error_type:
            return poll
    return limit + 1


def test_a_lost_gateway_is_not_connected_within_two_polls_and_the_driver_reconnects():
    port = free_port()
    args = ["--tcp", "--port", str(port), "--address", "1,2", "--speed", "0"]
    sim = start_simulator("drivers.sim.furnace", *args)
    try:
        with Eurotherm(sim.address, address=2, timeout_s=0.3, retries=1) as furnace:
            furnace.read_all()
            sim.stop()  # the gateway is gone (powered off): connection reset, then refused
            assert _polls_until(furnace, NotConnected, 2) <= 2
            with pytest.raises(NotConnected):
                furnace.read_all()  # still gone: at once, never a number
            sim = start_simulator("drivers.sim.furnace", *args)  # back, on the same address
            assert wait_for(lambda: _answers(furnace), "the driver to reconnect").setpoint_C == 20.0
    finally:
        sim.stop()


def test_a_silent_gateway_is_not_connected_within_two_polls_and_the_driver_reconnects():
    with start_simulator("drivers.sim.furnace", "--tcp", "--speed", "0") as sim:
        with Eurotherm(sim.address, timeout_s=0.3, retries=1) as furnace:
            furnace.read_all()
            os.kill(sim.pid, signal.SIGSTOP)  # connected, but nothing answers (the cable behind the switch cut)
            try:
                assert _polls_until(furnace, NotConnected, 2) <= 2
            finally:
                os.kill(sim.pid, signal.SIGCONT)
            assert wait_for(lambda: _answers(furnace), "the driver to reconnect").temperature_C == pytest.approx(20.0)


def _answers(furnace):
    try:
        return furnace.read_all()
    except NotConnected:
        return None


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        ("tcp://", "no host"),
        ("tcp://host:0", "1..65535"),
        ("tcp://host:http", "1..65535"),
        ("tcp://::1:502", "brackets"),
        ("tcp://[::1", "brackets"),
    ],
)
def test_a_bad_tcp_port_is_refused_saying_why(port, problem):
    with pytest.raises(ValueError, match=problem):
        parse_tcp_port(port)


def test_tcp_port_defaults_to_502():
    assert parse_tcp_port("tcp://10.0.0.7") == ("10.0.0.7", 502)
    assert parse_tcp_port("tcp://[fe80::1]:1502") == ("fe80::1", 1502)
