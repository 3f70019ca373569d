"""Line faults between ScpiSpectrometer and the simulator: what the driver raises, and how it recovers.

Malformed blocks -> ProtocolError, the session survives. Silence or a lost
socket -> NotConnected, the session is closed until reconnect(). No sockets
leak over repeated connect / fault / reconnect cycles.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from drivers import NotConnected, ProtocolError, ScpiSpectrometer
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

TIMEOUT_S = 0.5
SIM = "drivers.sim.spectrometer"


@pytest.fixture(scope="module")
def sim():
    with start_simulator(SIM, "--seed", "23", "--speed", "10") as process:
        yield process


@pytest.fixture
def spec(sim):
    with ScpiSpectrometer(sim.address, timeout_s=TIMEOUT_S) as s:
        for command in ("*RST", "SIM:FAUL NONE", "SIM:STAN"):
            s.write(command)
        s.integration_time_s = 0.001
        yield s


def open_descriptors() -> tuple[int, int]:
    """(all open file descriptors, of which sockets) of this process."""
    names = os.listdir("/proc/self/fd")
    sockets = 0
    for name in names:
        try:
            sockets += os.readlink(f"/proc/self/fd/{name}").startswith("socket:")
        except OSError:
            pass
    return len(names), sockets


@pytest.mark.parametrize("fault, reason", [
    ("GARB", "block"),  # '#', the digit count or a length digit replaced
    ("TRUN", "short block"),
    ("LONG", "trailing bytes"),
    ("NAN", "non-finite"),
])
def test_a_malformed_block_raises_protocol_error_and_the_session_survives(spec, fault, reason):
    spec.write(f"SIM:FAUL {fault}")
    with pytest.raises(ProtocolError, match=reason):
        spec.acquire()
    assert spec.connected
    assert spec.query("SIM:FAUL?") == "NONE"  # one-shot, and the line is in step again
    counts = spec.acquire()
    assert counts.shape == (spec.pixels,) and np.isfinite(counts).all()


@pytest.mark.parametrize("fault", ["DROP", "DISC"])
def test_silence_or_a_closed_socket_raises_not_connected_until_reconnect(spec, fault):
    spec.write(f"SIM:FAUL {fault}")
    with pytest.raises(NotConnected):
        spec.acquire()
    assert not spec.connected
    with pytest.raises(NotConnected, match="reconnect"):
        spec.acquire()
    spec.reconnect()
    assert spec.connected
    assert spec.integration_time_s == pytest.approx(0.001)  # settings re-applied
    assert spec.acquire().shape == (spec.pixels,)


def test_a_short_delay_is_only_slow_a_long_one_is_a_timeout(spec):
    spec.write(f"SIM:FAUL DEL,{TIMEOUT_S / 5}")
    assert spec.acquire().shape == (spec.pixels,)
    spec.write(f"SIM:FAUL DEL,{TIMEOUT_S * 20}")
    with pytest.raises(NotConnected, match="no answer in time"):
        spec.acquire()
    spec.reconnect()  # the simulator gives up the delayed answer when the client hangs up
    assert spec.acquire().shape == (spec.pixels,)


def test_a_dark_that_fails_leaves_the_shutter_open(spec):
    spec.write("SIM:FAUL NAN")
    with pytest.raises(ProtocolError):
        spec.dark()
    assert spec.query("SOUR:SHUT?") == "OPEN"


def test_lost_socket_then_the_instrument_comes_back_on_the_same_port():
    first = start_simulator(SIM, "--port", "0", "--speed", "10")
    port = first.address.split("::")[2]
    spec = ScpiSpectrometer(first.address, timeout_s=TIMEOUT_S)
    try:
        assert first.stop() == 0  # SIGTERM: the simulator exits cleanly and drops the socket
        with pytest.raises(NotConnected):
            spec.acquire()
        with pytest.raises(NotConnected):
            spec.reconnect()  # nobody listening
        with start_simulator(SIM, "--port", port, "--speed", "10") as second:
            assert second.address == first.address
            spec.reconnect()
            assert spec.acquire().shape == (spec.pixels,)
    finally:
        spec.close()


def test_closing_one_driver_leaves_another_drivers_session_alone(sim):
    with start_simulator(SIM, "--speed", "10") as other_sim:
        with ScpiSpectrometer(sim.address, timeout_s=TIMEOUT_S) as first:
            with ScpiSpectrometer(other_sim.address, timeout_s=TIMEOUT_S) as second:
                second.acquire()
            assert first.acquire().shape == (first.pixels,)


def test_no_sockets_leak_over_20_connect_fault_reconnect_cycles(sim):
    def cycle():
        with ScpiSpectrometer(sim.address, timeout_s=0.2) as spec:
            spec.integration_time_s = 0.001
            spec.acquire()
            spec.write("SIM:FAUL DISC")
            with pytest.raises(NotConnected):
                spec.acquire()
            spec.reconnect()
            spec.acquire()

    cycle()  # first use loads pyvisa's backends; count from here
    before = open_descriptors()
    for _ in range(20):
        cycle()
    assert open_descriptors() == before
