"""Line faults and absurd answers between ScpiSpectrometer and the simulator: what the driver raises, how it recovers.

Malformed blocks and physically absurd answers -> ProtocolError, the session
survives. Silence, a block cut short, or a lost socket -> NotConnected, the
session is closed until reconnect(). No sockets leak over repeated connect /
fault / reconnect cycles. Trickled answers and deadlines: test_spectrometer_deadline.py.
"""

from __future__ import annotations

import os
import re
import socket

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


def sim_command(address: str, command: str) -> str:
    """Send one command on a bare socket, then SYST:ERR?, and return that answer.

    For switching the simulator's faults off when the driver cannot connect.
    The simulator serves one client at a time: no driver session may be open.
    """
    _, host, port, _ = address.split("::")
    with socket.create_connection((host, int(port)), timeout=10.0) as conn:
        conn.sendall(f"{command}\nSYST:ERR?\n".encode("ascii"))
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = conn.recv(1024)
            if not chunk:
                break
            answer += chunk
    return answer.decode("ascii").strip()


@pytest.fixture
def spec(sim):
    assert sim_command(sim.address, "SIM:ABS NONE").startswith("0,")  # whatever an earlier test left on
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


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("GARB", "block"),  # '#', the digit count or a length digit replaced
        ("LONG", "trailing bytes"),
        ("HUGE", "block declares 999999999 bytes"),  # refused from the header: the payload is never read
        ("NAN", "non-finite"),
        ("RANG,70000", "outside 0-65535"),  # over full scale: no 16-bit ADC reads that
        ("RANG,-5", "outside 0-65535"),
        ("RANG,3e38", "outside 0-65535"),
    ],
)
def test_a_malformed_block_raises_protocol_error_and_the_session_survives(spec, fault, reason):
    spec.write(f"SIM:FAUL {fault}")
    with pytest.raises(ProtocolError, match=reason):
        spec.acquire()
    assert spec.connected
    assert spec.query("SIM:FAUL?") == "NONE"  # one-shot, and the line is in step again
    counts = spec.acquire()
    assert counts.shape == (spec.pixels,) and np.isfinite(counts).all()


def test_a_block_cut_short_is_a_timeout_and_closes_the_session(spec):
    # Half the payload, then the terminator, then silence: at the deadline the driver cannot tell a
    # block that stopped short from one still on its way, so it resyncs the only safe way (decision 0038).
    spec.write("SIM:FAUL TRUN")
    with pytest.raises(NotConnected, match="not whole by its deadline"):
        spec.acquire()
    assert not spec.connected
    spec.reconnect()
    assert spec.query("SIM:FAUL:LAST?") == "TRUNCATE,1,1"
    assert spec.acquire().shape == (spec.pixels,)


def test_a_pixel_at_exactly_full_scale_is_data_flagged_saturated_not_refused(spec):
    spec.write("SIM:FAUL RANG,65535")
    counts = spec.acquire()
    assert counts.max() == spec.full_scale_counts
    assert spec.saturated(counts).sum() == 1  # decision 0024: raw counts, the caller flags them


# --- absurd answers (SIM:ABS): the instrument reports what no detector has -------------------------
ABSURD_AT_CONNECT = {
    "99999999999 pixels (was MemoryError)": ("PIX", "99999999999", "expected an integer within 1-65536"),
    "20 000 000 pixels (was accepted)": ("PIX", "20000000", "expected an integer within 1-65536"),
    "0 pixels": ("PIX", "0", "expected an integer within 1-65536"),
    "a fractional pixel count": ("PIX", "2048.5", "expected an integer within 1-65536"),
    "integration time 1e308 s (was accepted)": ("ITIM", "1e308", "finite number within 1e-06-3600 s"),
    "integration time -1 s": ("ITIM", "-1", "finite number within 1e-06-3600 s"),
    "integration time 0 s": ("ITIM", "0", "finite number within 1e-06-3600 s"),
    "integration time SCPI NaN": ("ITIM", "9.91E37", "finite number within 1e-06-3600 s"),
    "integration time not a number": ("ITIM", "NAN", "finite number within 1e-06-3600 s"),
    "0 averages": ("AVER", "0", "expected an integer within 1-1000000"),
    "-5 averages": ("AVER", "-5", "expected an integer within 1-1000000"),
    "a billion averages": ("AVER", "1000000000", "expected an integer within 1-1000000"),
    "coefficient 1e300": ("COEF", "350,1e300,0,0", "expected all within 150-3000 nm"),
    "axis turning back (non-monotonic)": ("COEF", "600,0.2,-0.0001,0", "expected it strictly monotonic"),
    "flat axis": ("COEF", "600,0,0,0", "expected it strictly monotonic"),
    "axis below 150 nm": ("COEF", "100,0.1,0,0", "expected all within 150-3000 nm"),
    "cubic overflowing to inf": ("COEF", "350,0.3,0,1e300", "non-finite wavelength axis"),
    "an infinite coefficient": ("COEF", "350,inf,0,0", "expected 4 numbers"),
    "three coefficients": ("COEF", "350,0.3,0", "expected 4 numbers"),
}


@pytest.mark.parametrize("quantity, answer, expected", ABSURD_AT_CONNECT.values(), ids=ABSURD_AT_CONNECT.keys())
def test_an_absurd_answer_at_connection_is_a_protocol_error_naming_it(sim, spec, quantity, answer, expected):
    spec.write(f"SIM:ABS {quantity},{answer}")
    assert spec.query("SIM:ABS?") == quantity and spec.query(f"SIM:ABS? {quantity}") == answer  # the truth
    spec.close()
    with pytest.raises(ProtocolError) as caught:
        ScpiSpectrometer(sim.address, timeout_s=TIMEOUT_S)
    message = str(caught.value)
    assert repr(answer) in message and expected in message  # what was received, and what was expected
    with pytest.raises(ProtocolError, match=re.escape(expected)):
        spec.reconnect()  # a driver that knew the instrument refuses it as well
    assert not spec.connected

    assert sim_command(sim.address, "SIM:ABS NONE").startswith("0,")
    spec.reconnect()
    assert spec.query("SIM:ABS?") == "NONE"
    assert spec.pixels == 2048 and spec.integration_time_s == pytest.approx(0.001)
    assert spec.acquire().shape == (spec.pixels,)


@pytest.mark.parametrize(
    "quantity, answer, expected",
    [
        ("ITIM", "1e308", "finite number within 1e-06-3600 s"),  # was accepted, then acquire() raised OverflowError
        ("ITIM", "-1", "finite number within 1e-06-3600 s"),
        ("AVER", "-5", "expected an integer within 1-1000000"),
    ],
)
def test_an_absurd_setting_read_back_before_a_spectrum_is_a_protocol_error(spec, quantity, answer, expected):
    spec.write(f"SIM:ABS {quantity},{answer}")  # a pass-through write: the driver re-reads its settings
    with pytest.raises(ProtocolError) as caught:
        spec.acquire()
    assert repr(answer) in str(caught.value) and expected in str(caught.value)
    assert spec.connected  # a complete, readable answer: the line is in step
    spec.write("SIM:ABS NONE")
    assert spec.acquire().shape == (spec.pixels,)


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
