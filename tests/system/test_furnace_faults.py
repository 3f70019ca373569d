"""Driver robustness on a faulty line: simulator <-> line-fault injector <-> driver, all over ptys.

The simulator runs with --speed 0 (a frozen plant) so that every register has
a known value and any wrong number accepted by the driver is detectable.
"""

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from drivers import Eurotherm, InstrumentError, LimitError, NotConnected
from drivers.sim.launch import start_simulator
from drivers.sim.linefault import LineFaultInjector

pytestmark = pytest.mark.system

FAST = dict(baudrate=115200, timeout_s=0.05, retries=3)  # a pty has no baud rate: short timeouts
SETPOINT_C, RATE_C_PER_MIN = 450.0, 7.5


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def simulator():
    with start_simulator("drivers.sim.furnace", "--speed", "0") as sim:
        yield sim


@pytest.fixture
def line(simulator):
    with LineFaultInjector(simulator.address, seed=20240611) as injector:
        yield injector


@pytest.fixture
def furnace(line):
    with Eurotherm(line.port, **FAST) as driver:
        driver.set_rate_limit(RATE_C_PER_MIN)
        driver.set_setpoint(SETPOINT_C)
        yield driver


READS, READ_LINKS = 4_000, 4


def read_through_bad_frames(index: int) -> tuple[int, list, Counter]:
    """``READS / READ_LINKS`` single-register reads of every kind through a line with 1 % bad frames, on a link
    of its own (simulator, injector, driver): the reads that succeeded, the wrong values, the faults injected."""
    with (
        start_simulator("drivers.sim.furnace", "--speed", "0") as simulator,
        LineFaultInjector(simulator.address, seed=20240611 + index) as line,
        Eurotherm(line.port, **FAST) as furnace,
    ):
        furnace.set_rate_limit(RATE_C_PER_MIN)
        furnace.set_setpoint(SETPOINT_C)
        expected = {  # distinct known values: a misrouted or garbled answer would show
            "setpoint_C": SETPOINT_C,
            "rate_limit_C_per_min": RATE_C_PER_MIN,
            "working_setpoint_C": 20.0,
            "output_percent": 0.0,
            "ident": furnace.ident,
        }
        names = list(expected)
        line.set_faults(corrupt=0.005, truncate=0.005)
        succeeded, wrong = 0, []
        for i in range(READS // READ_LINKS):
            name = names[i % len(names)]
            try:
                value = getattr(furnace, name)
            except InstrumentError:
                continue
            succeeded += 1
            if value != expected[name]:
                wrong.append((index, i, name, value))
        return succeeded, wrong, Counter(line.faults)


def test_4000_reads_with_1_percent_bad_frames_accept_no_wrong_value():
    """Single-register reads of every kind; the 12,000-poll test (test_furnace_wrong_register) adds late answers.

    The reads are shared by four links read at the same time (one thread each): a read spends its time
    waiting for its line's silences (about 6 ms, 0.5 ms of it CPU), so four lines take a quarter of the time
    of one, with the same reads, faults and checks.
    """
    with ThreadPoolExecutor(max_workers=READ_LINKS) as pool:
        results = list(pool.map(read_through_bad_frames, range(READ_LINKS)))
    succeeded = sum(ok for ok, _, _ in results)
    wrong = [w for _, link_wrong, _ in results for w in link_wrong]
    faults = sum((link_faults for _, _, link_faults in results), Counter())
    injected = sum(faults.values())
    assert wrong == []
    assert succeeded >= READS - 4, f"only {succeeded} of {READS} reads succeeded within the retry budget"
    assert injected >= 40, f"only {injected} faults were injected"
    assert {kind for _, kind in faults} == {"corrupt", "truncate"}


def test_answers_delayed_past_the_timeout_are_retried_never_mistaken(line):
    timeout_s = 0.06
    with Eurotherm(line.port, **{**FAST, "timeout_s": timeout_s}) as furnace:
        furnace.set_rate_limit(RATE_C_PER_MIN)
        furnace.set_setpoint(SETPOINT_C)
        # late by 1.33 timeouts: after the client gave up on it; the next read of its shape waits it out
        # (late_answer_s, 2 timeouts by default), a read of another shape refuses it by its length
        line.set_faults(delay=0.1, delay_s=timeout_s * 4 / 3, direction="to_client")
        values = {"setpoint_C": SETPOINT_C, "rate_limit_C_per_min": RATE_C_PER_MIN}
        for i in range(200):
            name = list(values)[i % 2]
            try:
                value = getattr(furnace, name)
            except InstrumentError:
                continue
            assert value == values[name], f"read {i}: {name} = {value}, a late answer was taken for this one"
    assert line.faults[("to_client", "delay")] >= 5
    assert furnace.line_counters["waits_for_owed_answers"] >= 1


@pytest.mark.parametrize("mode", ["vanish", "silent"])
def test_unplug_is_not_connected_within_two_polls_and_recovers(furnace, line, mode):
    assert furnace.read_all().setpoint_C == SETPOINT_C
    line.unplug(mode)
    outcomes = []
    for _ in range(2):
        try:
            furnace.read_all()
            outcomes.append("reading")
        except NotConnected:
            outcomes.append("not connected")
    assert "not connected" in outcomes
    line.replug()
    assert furnace.read_all().setpoint_C == SETPOINT_C


def test_20_unplug_cycles_leak_no_file_descriptors(furnace, line):
    def cycle():
        line.unplug("vanish")
        with pytest.raises(NotConnected):
            furnace.read_all()
        line.replug()
        assert furnace.read_all().setpoint_C == SETPOINT_C

    cycle()  # warm up: first-use allocations (imports, caches) are not leaks
    before = open_fds()
    for _ in range(20):
        cycle()
    assert open_fds() == before


def test_refused_values_leave_the_line_silent(furnace, line):
    before = line.bytes_from_client
    for call, value in [
        ("set_setpoint", 1250.0),
        ("set_setpoint", -1.0),
        ("set_setpoint", float("nan")),
        ("set_rate_limit", 21.0),
        ("set_rate_limit", 0.0),
        ("set_rate_limit", -3.0),
    ]:
        with pytest.raises(LimitError):
            getattr(furnace, call)(value)
    assert furnace.ident  # one 8-byte request; its answer proves the relay has seen everything before it
    assert line.bytes_from_client == before + 8
