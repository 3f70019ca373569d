"""Driver <-> simulated furnace over a pseudo-terminal (python -m drivers.sim.furnace).

The simulator runs at SPEED simulated seconds per wall second. Ramp-rate checks
bracket each read between wall-clock readings taken before the request and
after the answer, and scale by SPEED: the bounds hold however the machine is
loaded (no timing assertions, no sleeps as synchronisation).
"""

import math
import os
import signal
import time

import minimalmodbus
import pytest

from drivers import Eurotherm
from drivers.eurotherm import SensorFault
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

SPEED = 600.0  # 10 simulated minutes per wall second
DEADLINE_S = 60.0  # generous wall-clock deadline for conditions


def wait_for(condition, what: str, deadline_s: float = DEADLINE_S):
    """Poll ``condition()`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


@pytest.fixture(params=["2400", "3200"])
def furnace(request):
    with start_simulator("drivers.sim.furnace", "--speed", str(SPEED), "--model", request.param) as sim:
        with Eurotherm(sim.address, model=request.param, timeout_s=0.2) as driver:
            yield driver, sim


def test_identity_and_a_cold_furnace(furnace):
    driver, _ = furnace
    assert driver.ident.startswith("Eurotherm 2408" if driver.register_map.family == "2400" else "Eurotherm 3216")
    reading = driver.read_all()
    assert reading.temperature_C == pytest.approx(20.0, abs=0.5)
    assert not reading.status.any_alarm


def test_ramp_at_the_set_rate_working_setpoint_follows_then_pv_settles(furnace):
    driver, _ = furnace
    rate_C_per_min, target_C = 10.0, 200.0
    driver.set_rate_limit(rate_C_per_min)
    driver.set_setpoint(target_C)
    rate_C_per_wall_s = rate_C_per_min / 60.0 * SPEED
    resolution_C = 0.1
    samples = []
    while True:
        before = time.monotonic()
        working = driver.working_setpoint_C
        samples.append((before, time.monotonic(), working))
        if working >= target_C:
            break
        assert time.monotonic() - samples[0][0] < DEADLINE_S, "working setpoint never reached the target"
    assert len(samples) > 3, "ramp too fast to observe"
    for (b1, a1, w1), (b2, a2, w2) in zip(samples, samples[1:]):
        assert w2 >= w1 - resolution_C  # never backwards
        assert w2 - w1 <= rate_C_per_wall_s * (a2 - b1) + resolution_C  # never faster than the rate
        if w2 < target_C:
            assert w2 - w1 >= rate_C_per_wall_s * (b2 - a1) - resolution_C  # and no slower
    assert driver.setpoint_C == target_C
    assert wait_for(lambda: driver.status.program_end, "program end")
    wait_for(lambda: abs(driver.temperature_C - target_C) < 1.0, "PV to settle at the setpoint")
    assert 0.0 < driver.output_percent < 100.0


def test_sensor_break_on_command_and_mend(furnace):
    driver, sim = furnace
    os.kill(sim.pid, signal.SIGUSR1)
    status = wait_for(lambda: (s := driver.status).sensor_break and s, "sensor break flag")
    assert status.any_alarm
    reading = driver.read_all()
    assert math.isnan(reading.temperature_C) and reading.output_percent == 0.0
    with pytest.raises(SensorFault):
        driver.temperature_C
    os.kill(sim.pid, signal.SIGUSR2)
    wait_for(lambda: not driver.status.sensor_break, "sensor mended")
    assert driver.temperature_C == pytest.approx(20.0, abs=1.0)


def test_safe_state_ramps_down_under_automatic_control(furnace):
    driver, _ = furnace
    driver.set_rate_limit(20.0)
    driver.set_setpoint(300.0)
    wait_for(lambda: driver.working_setpoint_C >= 150.0, "heating up")
    driver.safe_state()
    assert driver.setpoint_C == driver.safe_setpoint_C
    assert driver.rate_limit_C_per_min == driver.safe_rate_C_per_min
    assert not driver.status.manual
    first = driver.working_setpoint_C
    wait_for(lambda: driver.working_setpoint_C < first - 10.0, "working setpoint ramping down")


def test_simulator_refuses_what_the_map_refuses(furnace):
    driver, sim = furnace
    bare = minimalmodbus.Instrument(sim.address, 1)
    bare.serial.baudrate, bare.serial.timeout = 9600, 0.1
    try:
        with pytest.raises(minimalmodbus.IllegalRequestError):
            bare.read_register(6)  # not in the map: exception 02
        with pytest.raises(minimalmodbus.IllegalRequestError):
            bare.write_register(1, 100, functioncode=6)  # PV is read-only: 02
        with pytest.raises(minimalmodbus.IllegalRequestError):
            bare.write_register(26, 13000, functioncode=6)  # 1300.0 C above the map's max: 03
        assert bare.read_register(122, functioncode=4) == bare.read_register(122, functioncode=3)
    finally:
        bare.serial.close()


def test_simulator_exits_cleanly_on_sigterm():
    sim = start_simulator("drivers.sim.furnace")
    assert sim.address.startswith("/dev/pts/")
    assert sim.stop() == 0
