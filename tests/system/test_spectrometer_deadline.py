"""Every answer has one deadline, not one timeout per read: trickled answers against the real pyvisa-py stack.

The simulator's trickle fault (SIM:FAUL TRIC,<bytes>,<s>[,TEXT]) sends the next
answer in small pieces, each well within the driver's timeout, the whole far
beyond it. Before decision 0038 such a spectrum came back whole after seconds
with a 0.5 s timeout; now the driver gives up at the answer's deadline with its
timeout error (NotConnected, session closed, decision 0022), and the simulator
tells how many pieces it got out before the driver hung up (SIM:FAUL:LAST?).
No test here measures time: they assert on the error, the driver's state and
the simulator's count of pieces.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers import LimitError, NotConnected, ScpiSpectrometer
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

TIMEOUT_S = 0.5
PIECE_DELAY_S = 0.05  # each piece arrives 10x sooner than the timeout ...
SPECTRUM_PIECE_BYTES = 64  # ... but a 2048-px spectrum takes 129 pieces: 6.4 s, 13x the timeout
TEXT_PIECE_DELAY_S = 0.1  # *IDN? (38 bytes) one byte at a time: 3.8 s


@pytest.fixture(scope="module")
def sim():
    with start_simulator("drivers.sim.spectrometer", "--seed", "31", "--speed", "10") as process:
        yield process


@pytest.fixture
def spec(sim):
    with ScpiSpectrometer(sim.address, timeout_s=TIMEOUT_S) as s:
        for command in ("*RST", "SIM:FAUL NONE", "SIM:ABS NONE", "SIM:STAN"):
            s.write(command)
        s.integration_time_s = 0.001
        yield s


def block_pieces(pixels: int, piece_bytes: int) -> int:
    """Pieces of a float32 block of ``pixels`` values (header '#4' + 4 digits, payload, terminator)."""
    return math.ceil((2 + len(str(4 * pixels)) + 4 * pixels + 1) / piece_bytes)


def last_fault(spec) -> tuple[str, int, int]:
    """(kind, pieces sent, pieces in the whole answer) of the simulator's last faulted answer."""
    kind, sent, total = spec.query("SIM:FAUL:LAST?").split(",")
    return kind, int(sent), int(total)


def test_a_trickled_spectrum_fails_at_its_deadline_with_the_timeout_error(spec):
    assert PIECE_DELAY_S < TIMEOUT_S < block_pieces(spec.pixels, SPECTRUM_PIECE_BYTES) * PIECE_DELAY_S / 10
    spec.write(f"SIM:FAUL TRIC,{SPECTRUM_PIECE_BYTES},{PIECE_DELAY_S}")
    assert spec.query("SIM:FAUL?") == f"TRICKLE,{SPECTRUM_PIECE_BYTES},{PIECE_DELAY_S:g},SPEC"
    with pytest.raises(NotConnected, match="not whole by its deadline") as caught:
        spec.acquire()
    assert "bytes arrived" in str(caught.value) and "reconnect" in str(caught.value)
    assert not spec.connected  # decision 0022: the rest of the answer must not be read as the next one
    with pytest.raises(NotConnected, match="reconnect"):
        spec.acquire()

    spec.reconnect()
    kind, sent, total = last_fault(spec)
    assert kind == "TRICKLE" and total == block_pieces(spec.pixels, SPECTRUM_PIECE_BYTES)
    assert 0 < sent < total  # the driver hung up with most of the answer still to come
    assert spec.integration_time_s == pytest.approx(0.001)  # settings re-applied
    counts = spec.acquire()
    assert counts.shape == (spec.pixels,) and np.isfinite(counts).all()


def test_a_trickled_text_answer_fails_at_its_deadline_too(spec):
    # Both units in one message: the fault is armed, then the *IDN? answer is the next text answer.
    with pytest.raises(NotConnected, match="not whole by its deadline"):
        spec.query(f"SIM:FAUL TRIC,1,{TEXT_PIECE_DELAY_S},TEXT;*IDN?")
    assert not spec.connected
    spec.reconnect()
    kind, sent, total = last_fault(spec)
    assert kind == "TRICKLE" and total == len(spec.ident) + 1
    assert 0 < sent < total
    assert spec.query("*IDN?") == spec.ident


def test_an_answer_in_pieces_that_is_whole_by_its_deadline_is_data(spec):
    pieces = block_pieces(spec.pixels, 1000)
    spec.write("SIM:FAUL TRIC,1000,0.01")  # 9 pieces, well within the deadline
    counts = spec.acquire()
    assert counts.shape == (spec.pixels,) and np.isfinite(counts).all() and np.median(counts) > 1000
    assert last_fault(spec) == ("TRICKLE", pieces, pieces)
    assert spec.connected


def test_a_line_that_never_goes_quiet_after_a_malformed_answer_closes_the_session(spec):
    # Noise instead of the block: refused at once (no '#'), then the drain never sees 50 ms of quiet.
    # Giving up after 2 s with the session open would leave the rest to be read as the next answer.
    spec.write("SIM:FAUL BABL,30")
    with pytest.raises(NotConnected, match="did not go quiet") as caught:
        spec.acquire()
    assert "missing '#'" in str(caught.value)  # what was wrong in the first place
    assert not spec.connected
    spec.reconnect()
    kind, sent, total = last_fault(spec)
    assert kind == "BABBLE" and 0 < sent < total
    assert spec.acquire().shape == (spec.pixels,)


def test_where_the_driver_cannot_see_the_socket_each_read_gets_only_the_time_left(spec, monkeypatch):
    # As on USB-TMC or serial: reads go through VISA, each given the time left to the deadline and at
    # most 1 KiB, so a trickle still ends in the timeout error, if up to one read later (decision 0038).
    monkeypatch.setattr(spec, "_socket", lambda: None)
    assert spec.acquire().shape == (spec.pixels,)
    spec.write(f"SIM:FAUL TRIC,{SPECTRUM_PIECE_BYTES},{PIECE_DELAY_S}")
    with pytest.raises(NotConnected):
        spec.acquire()
    assert not spec.connected
    spec.reconnect()
    kind, sent, total = last_fault(spec)
    assert kind == "TRICKLE" and sent < total
    assert spec.acquire().shape == (spec.pixels,)


def test_a_setting_made_behind_the_drivers_back_beyond_its_limits_is_not_measured(sim):
    # The exposure (and so the deadline of a spectrum) stays within the driver's limits.
    with ScpiSpectrometer(sim.address, timeout_s=TIMEOUT_S, max_integration_time_s=1.0, max_averages=100) as spec:
        spec.write("SENS:INT:TIME 5")
        with pytest.raises(LimitError, match="integration time 5 s is outside the limits"):
            spec.acquire()
        spec.integration_time_s = 0.001
        spec.write("SENS:AVER:COUN 500")
        with pytest.raises(LimitError, match="averages 500 scans"):
            spec.dark()
        assert spec.query("SOUR:SHUT?") == "OPEN"
        with pytest.raises(LimitError):
            spec.averages = 101  # nothing sent
        spec.averages = 100
        assert spec.acquire().shape == (spec.pixels,)
        spec.write("*RST")
