"""The Modbus sensor driver against the simulated sensors (python -m drivers.sim.furnace --sensor ADDRESS:MAP) over
a pty (RTU) and over TCP, beside a simulated Eurotherm on the same line, and against an independent pymodbus TCP
server loaded from each shipped sensor map.

Every value the driver returns is checked against the simulator's truth (``--truth``: one JSON line per answered
request) taken during its read. Conditions are polled with a deadline (no sleeps as synchronisation, no timing
assertions).
"""

import asyncio
import json
import math
import textwrap
import threading
import time

import pytest
from _bench import free_port
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers import Eurotherm, ModbusSensor, NotConnected, ProtocolError, load_sensor_map
from drivers.sim.launch import start_simulator
from drivers.sim.linefault import LineFaultInjector
from drivers.sim.scenario import load_scenario

pytestmark = pytest.mark.system

SPEED = 600.0  # 10 simulated minutes per wall second
DEADLINE_S = 60.0
SHIPPED = ["balance", "conductivity-transmitter", "flow-meter", "ph-transmitter"]
SCENARIO = textwrap.dedent("""\
    name = "pH ramp"
    description = "the raffinate's pH rises from 2 to 9 in an hour; the stream flows at 12 L/h"

    [process]
    time_s = [0, 3600]
    pH = [2.0, 9.0]
    temperature_C = [20.0, 30.0]
    flow_L_per_h = 12.0
    """)


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S):
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


@pytest.fixture
def scenario_file(tmp_path):
    path = tmp_path / "ph-ramp.toml"
    path.write_text(SCENARIO)
    return path


class Readings:
    """The driver's readings, each with the wall-clock interval it was taken in (to find the truth of that time)."""

    def __init__(self, sensor: ModbusSensor, address: int) -> None:
        self.sensor, self.address = sensor, address
        self.taken: list[tuple[float, float, object]] = []

    def read(self):
        before = time.monotonic()
        reading = self.sensor.read()
        self.taken.append((before, time.monotonic(), reading))
        return reading


def truth_lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def unit_truth(record: dict, address: int) -> dict:
    return record["units"][str(address)] if "units" in record else record["values"]


def check_against_truth(readings: Readings, truth: list[dict]) -> int:
    """Every channel of every reading is what the simulator served during it: the value a truth record of that
    interval holds, or NaN with the state the truth says. Returns how many readings were checked."""
    for before, after, reading in readings.taken:
        during = [unit_truth(r, readings.address) for r in truth if before <= r["t"] <= after]
        assert during, "no truth record during a read"
        for name in reading:
            got = reading[name]
            if got.state == "ok":
                assert any(t[f"{name}.state"] == "ok" and t[name] == got.value for t in during), (name, got, during)
            else:
                assert math.isnan(got.value)
                assert any(t[f"{name}.state"] == got.state for t in during), (name, got, during)
    return len(readings.taken)


# -- the driver and the simulator ----------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["rtu", "tcp"])
def test_a_sensor_and_a_controller_on_one_simulated_line_and_the_ph_follows_the_scenario(
    transport, scenario_file, tmp_path
):
    truth = tmp_path / "truth.jsonl"
    args = ["--sensor", "2:ph-transmitter", "--sensor", "3:flow-meter", "--scenario", str(scenario_file)]
    args += ["--speed", str(SPEED), "--truth", str(truth), *(["--tcp"] if transport == "tcp" else [])]
    scenario = load_scenario(scenario_file)
    with start_simulator("drivers.sim.furnace", *args) as sim:
        with (
            Eurotherm(sim.address, address=1, timeout_s=0.5) as furnace,
            ModbusSensor(sim.address, 2, "ph-transmitter", timeout_s=0.5) as probe,
            ModbusSensor(sim.address, 3, "flow-meter", timeout_s=0.5) as meter,
        ):
            assert probe._link.lock is furnace._link.lock is meter._link.lock  # one line, one lock
            ph, flow = Readings(probe, 2), Readings(meter, 3)
            furnace.set_rate_limit(10.0)
            furnace.set_setpoint(100.0)
            wait_for(lambda: ph.read()["pH"].value >= 8.9, "the simulated pH to rise to 9")
            assert flow.read()["flow_L_per_h"].value == pytest.approx(12.0, abs=1.0)  # FC 4, float32 little; noise 0.2
            assert furnace.read_all().setpoint_C == 100.0
            assert probe.line_counters.get("refused_answers", 0) == 0
    values = [reading["pH"].value for _, _, reading in ph.taken]
    assert all(b >= a - 0.1 for a, b in zip(values, values[1:]))  # upwards (noise: one count, 0.01 pH)
    records = truth_lines(truth)
    assert check_against_truth(ph, records) == len(values) and check_against_truth(flow, records) == 1
    for record in records:  # what it read is the scenario's value at the simulated time, and noise
        served = unit_truth(record, 2)
        assert served["pH.true"] == pytest.approx(scenario.process_at("pH", record["sim_s"]))
        assert abs(served["pH"] - served["pH.true"]) < 0.08 and served["pH.fault"] == "none"


def test_each_fault_is_seen_by_the_driver_and_told_by_the_truth(scenario_file, tmp_path):
    truth = tmp_path / "truth.jsonl"
    faults = [
        "2:pH:drift=6@600",  # 6 pH per simulated hour from 10 simulated minutes on
        "3:pH:stuck@600",
        "4:flow_L_per_h:out_of_range@600",
        "5:mass_kg:probe_fault@600",
    ]
    args = ["--sensor", "2:ph-transmitter", "--sensor", "3:ph-transmitter", "--sensor", "4:flow-meter"]
    args += ["--sensor", "5:balance", "--scenario", str(scenario_file), "--speed", str(SPEED), "--truth", str(truth)]
    args += [option for fault in faults for option in ("--sensor-fault", fault)]
    with start_simulator("drivers.sim.furnace", *args) as sim:
        drifting, stuck, meter, scale = (
            Readings(ModbusSensor(sim.address, address, name, timeout_s=0.5), address)
            for address, name in ((2, "ph-transmitter"), (3, "ph-transmitter"), (4, "flow-meter"), (5, "balance"))
        )
        try:
            last: list[float] = []

            def stuck_for_five_reads() -> bool:
                last.append(stuck.read()["pH"].value)
                return len(last) >= 5 and len(set(last[-5:])) == 1

            wait_for(stuck_for_five_reads, "the stuck pH to send one value five times")
            wait_for(lambda: meter.read()["flow_L_per_h"].state == "out_of_range", "the flow out of range")
            wait_for(lambda: scale.read()["mass_kg"].state == "probe_fault", "the balance's probe fault")
            assert scale.taken[-1][2]["gross_mass_kg"].state == "probe_fault"  # the same status bits

            def drifted_past_the_process() -> bool:  # the true pH never exceeds 9; with the drift it leaves 0..14
                ph = drifting.read()["pH"]
                return ph.state == "out_of_range" or ph.value >= 9.5

            wait_for(drifted_past_the_process, "the drifting pH to pass the true 9")
        finally:
            for readings in (drifting, stuck, meter, scale):
                readings.sensor.close()
    records = truth_lines(truth)
    for readings in (drifting, stuck, meter, scale):
        check_against_truth(readings, records)
    at = {address: [unit_truth(r, address) for r in records] for address in (2, 3, 4, 5)}
    late = [r for r in records if r["sim_s"] >= 700]
    assert {unit_truth(r, 3)["pH.fault"] for r in late} == {"stuck"}
    frozen = {unit_truth(r, 3)["pH"] for r in late}
    assert len(frozen) == 1 and len({unit_truth(r, 3)["pH.true"] for r in late}) > 10  # the process went on
    assert {unit_truth(r, 4)["flow_L_per_h.state"] for r in late} == {"out_of_range"}
    assert {unit_truth(r, 5)["mass_kg.fault"] for r in late} == {"probe_fault"}
    assert {unit_truth(r, 5)["status.4"] for r in late} == {1 << 7}  # the map's first fault bit
    drift = [(t["pH"] - t["pH.true"], t["pH.drift"]) for t in at[2] if t["pH.fault"] == "drift" and t["pH"] < 14]
    assert drift and all(abs(seen - told) < 0.08 for seen, told in drift)  # the value is off by the drift told
    assert max(told for _, told in drift) > 0.5
    early = [r for r in records if r["sim_s"] < 600]
    assert all(unit_truth(r, a)[f"{c}.fault"] == "none" for r in early for a, c in ((2, "pH"), (4, "flow_L_per_h")))


def test_a_lost_gateway_is_not_connected_and_the_sensor_reconnects(scenario_file):
    port = free_port()
    args = ["--tcp", "--port", str(port), "--sensor", "2:ph-transmitter", "--scenario", str(scenario_file)]
    sim = start_simulator("drivers.sim.furnace", *args)
    try:
        with ModbusSensor(sim.address, 2, "ph-transmitter", timeout_s=0.3, retries=1) as probe:
            assert probe.read().ok
            sim.stop()  # the gateway is gone: connection reset, then refused
            with pytest.raises(NotConnected):
                probe.read()
            with pytest.raises(NotConnected):
                probe.read()  # still gone: at once, never a number
            sim = start_simulator("drivers.sim.furnace", *args)
            assert wait_for(lambda: _answers(probe), "the sensor to reconnect")["pH"].value == pytest.approx(
                2.0, abs=0.5
            )
    finally:
        sim.stop()


def test_an_unplugged_rs485_adapter_is_not_connected_and_the_sensor_reconnects_when_replugged(scenario_file):
    args = ["--sensor", "2:ph-transmitter", "--scenario", str(scenario_file), "--speed", "0"]
    with start_simulator("drivers.sim.furnace", *args) as sim, LineFaultInjector(sim.address, seed=1) as line:
        with ModbusSensor(line.port, 2, "ph-transmitter", timeout_s=0.2, retries=1) as probe:
            assert probe.read()["pH"].value == pytest.approx(2.0, abs=0.05)  # --speed 0: scenario time 0
            line.unplug("vanish")
            with pytest.raises(NotConnected):
                probe.read()
            line.replug()
            assert wait_for(lambda: _answers(probe), "the sensor to reconnect").ok


def _answers(sensor):
    try:
        return sensor.read()
    except NotConnected:
        return None


def test_a_sensor_alone_needs_no_controller_address():
    with start_simulator("drivers.sim.furnace", "--sensor", "1:conductivity-transmitter", "--tcp") as sim:
        with ModbusSensor(sim.address, 1, "conductivity-transmitter", timeout_s=0.5) as probe:
            reading = probe.read()
            assert reading["conductivity_mS_per_cm"].value == pytest.approx(50.0, abs=0.2)  # the map's default
            assert reading["temperature_C"].value == pytest.approx(20.0, abs=0.05)
            with Eurotherm(sim.address, address=1, timeout_s=0.5) as furnace:
                with pytest.raises(ProtocolError, match="refused"):  # no controller at 1: the sensor's map only
                    furnace.ident


# -- an independent server (pymodbus), loaded from each map ---------------------------------------------------------
def _value_for(channel) -> float:
    return channel.simulated_default if channel.simulated_default is not None else channel.valid_min + 1.0


def device_from_sensor_map(sensor_map, unit: int) -> SimDevice:
    """The map's channels as pymodbus holding (FC 3) or input (FC 4) registers, each holding ``_value_for`` it;
    status words read 0. Holding and input registers are apart, as on a device that has both."""
    areas: dict[int, list[SimData]] = {3: [], 4: []}
    statuses: set[tuple[int, int]] = set()
    for channel in sensor_map.channels:
        areas[channel.function].append(
            SimData(channel.register, values=channel.encode(_value_for(channel)), datatype=DataType.REGISTERS)
        )
        if channel.status_register is not None and (channel.function, channel.status_register) not in statuses:
            statuses.add((channel.function, channel.status_register))
            areas[channel.function].append(SimData(channel.status_register, values=[0], datatype=DataType.REGISTERS))
    bits = [SimData(0, values=False, datatype=DataType.BITS)]
    unused = SimData(60000, values=[0], datatype=DataType.REGISTERS)  # an area the map does not use
    return SimDevice(unit, simdata=(bits, list(bits), areas[3] or [unused], areas[4] or [unused]))


@pytest.fixture
def independent_server():
    maps = {name: load_sensor_map(name) for name in SHIPPED}
    units = {name: unit for unit, name in enumerate(SHIPPED, start=2)}
    port = free_port()
    loop = asyncio.new_event_loop()
    started: list = []
    listening = threading.Event()

    async def serve():
        devices = [device_from_sensor_map(maps[name], unit) for name, unit in units.items()]
        server = ModbusTcpServer(devices, address=("127.0.0.1", port))
        started.append(server)
        await server.serve_forever(background=True)
        listening.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(serve()), loop.run_forever()), daemon=True)
    thread.start()
    assert listening.wait(10), "pymodbus TCP server did not start"
    yield maps, units, f"tcp://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(started[0].shutdown(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_every_shipped_map_against_an_independent_pymodbus_server(independent_server):
    maps, units, port = independent_server
    for name, unit in units.items():
        with ModbusSensor(port, unit, name, timeout_s=0.5) as sensor:
            reading = sensor.read()
        for channel in maps[name].channels:
            expected = channel.decode(channel.encode(_value_for(channel)))
            assert reading[channel.name].value == pytest.approx(expected, rel=1e-6), (name, channel.name)
            assert reading[channel.name].state == "ok" and reading[channel.name].units == channel.units
