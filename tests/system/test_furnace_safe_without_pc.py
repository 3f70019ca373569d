"""The furnace ends safe when the PC dies: `kill -9` of `remdaq run` mid-ramp, then the simulated controller
reaches its safe setpoint by itself, within the time docs/instruments/furnace.md states.

The test starts the simulator itself (so that it outlives the killed run; a simulator that `remdaq` starts
dies with it) and points a station at it with ``simulated = false``. It follows the run through the
simulator's truth file (out of band: no Modbus traffic of its own while the run owns the line), kills the run
once the controller is mid-ramp, then reads the controller's own state over Modbus: over the pty for the 2400,
over the EPC3000's fixed RS-485 port (a pty beside the TCP one) so that its reads do not feed the comms
watchdog of the Ethernet port. Every wait is a poll with a deadline; the only timing assertion is "reached
within the stated bound".

- EPC3000 (watchdog): safe within ``watchdog_s + (working SP - safe SP) / safe rate`` (docs); the safe rate
  is the station's maximum ramp (the driver's default).
- 2400 and 3216P (their own programmer): safe within the rest of the program, at most the whole program:
  every ramp and dwell, then the ramp to the safe setpoint at the recipe's cool rate (the 3216P's remaining
  segments are already at the safe setpoint and take no time).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import minimalmodbus
import pytest

from drivers import load_register_map
from drivers.sim.launch import start_simulator

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
SPEED = 300.0  # simulated seconds per wall second
SAFE_C, MAX_RAMP = 25.0, 20.0
TARGET_C, RAMP, DWELL_MIN, COOL_RATE = 600.0, 20.0, 5.0, 20.0
WATCHDOG_S = 3.0
MARGIN_S = 10.0  # for a loaded machine: start-up of the observer's reads, the poll step
START_DEADLINE_S = 90.0


def station(tmp_path: Path, port: str, model: str, map_name: str, **extra) -> Path:
    lines = "".join(f"{key} = {value}\n" for key, value in extra.items())
    path = tmp_path / "station.toml"
    path.write_text(
        f"""[station]
name = "external simulator"
data_dir = "{tmp_path / "data"}"

[furnace]
driver = "eurotherm"
simulated = false
port = "{port}"
address = 1
model = "{model}"
map = "{map_name}"
max_temperature_C = 1100.0
max_ramp_C_per_min = {MAX_RAMP}
safe_temperature_C = {SAFE_C}
poll_interval_s = 0.25
{lines}"""
    )
    return path


def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(
        f"""[recipe]
title = "killed mid-ramp"
sample = "none"
operator = "test"
analytes = ["Nd"]
target = "Nd"
lost_instrument_abort_s = 30

[furnace]
cool_to_C = {SAFE_C}
cool_rate_C_per_min = {COOL_RATE}

[[furnace.segments]]
ramp_C_per_min = {RAMP}
target_C = {TARGET_C}
dwell_min = {DWELL_MIN}
"""
    )
    return path


def start_run(tmp_path: Path, station_path: Path, calibration: Path) -> subprocess.Popen:
    out = (tmp_path / "remdaq.out").open("w")
    command = ["run", str(recipe(tmp_path)), "--station", str(station_path), "--calibration", str(calibration)]
    return subprocess.Popen(
        [sys.executable, "-m", "daq", *command],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def last_truth(path: Path) -> dict | None:
    """The simulator's last truth line (values as a read gives them), or None before the first."""
    if not path.exists():
        return None
    lines = path.read_text().splitlines()
    for line in reversed(lines):
        try:
            return json.loads(line)["values"]
        except (json.JSONDecodeError, KeyError):
            continue  # a line being written
    return None


def wait_for(condition, what: str, deadline_s: float, run: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + deadline_s
    while True:
        value = condition()
        if value:
            return value
        if run is not None and run.poll() is not None:
            tail = log.read_text()[-3000:] if log else ""
            raise AssertionError(f"remdaq run exited ({run.returncode}) before {what}:\n{tail}")
        assert time.monotonic() < deadline, f"not {what} within {deadline_s:g} s" + (
            f":\n{log.read_text()[-3000:]}" if log else ""
        )


def kill_mid_ramp(run: subprocess.Popen, truth: Path, log: Path, running) -> dict:
    """Wait until the controller is mid-ramp under the run, then `kill -9` it; the truth at that moment."""
    values = wait_for(
        lambda: (v := last_truth(truth)) is not None and running(v) and 100.0 <= v["working_setpoint"] < 300.0 and v,
        "the controller mid-ramp",
        START_DEADLINE_S,
        run,
        log,
    )
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    assert run.returncode == -signal.SIGKILL
    return values


def rtu_client(port: str) -> minimalmodbus.Instrument:
    client = minimalmodbus.Instrument(port, 1)
    assert client.serial is not None
    client.serial.timeout = 0.5
    return client


def observed(read):
    """``read()``, or None while the line does not answer (the observer's own retry, with the poll deadline)."""
    try:
        return read()
    except (OSError, minimalmodbus.ModbusException):
        return None


def test_a_killed_run_leaves_the_epc3000_to_its_comms_watchdog(tmp_path, sim_calibration):
    truth = tmp_path / "truth.jsonl"
    sim = start_simulator(
        "drivers.sim.furnace", "--tcp", "--pty", "--model", "EPC3016", "--speed", f"{SPEED:g}", "--truth", str(truth)
    )
    try:
        assert sim.control is not None  # the fixed RS-485 port beside the TCP one
        path = station(tmp_path, sim.address, "EPC3016", "eurotherm-epc3000", watchdog_s=WATCHDOG_S)
        run = start_run(tmp_path, path, sim_calibration)
        try:
            at_kill = kill_mid_ramp(
                run,
                truth,
                tmp_path / "remdaq.out",
                lambda v: v["watchdog_timeout"] == WATCHDOG_S and v["remote_local_select"],
            )
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        killed = time.monotonic()
        regmap = load_register_map("eurotherm-epc3000")
        client = rtu_client(sim.control)
        wsp_at = regmap.float_address(regmap["working_setpoint"])
        # the docs' bound: the watchdog's timeout, then the fallback ramp at the safe rate from where it was
        bound_s = WATCHDOG_S + (at_kill["target_setpoint"] - SAFE_C) / MAX_RAMP * 60.0 / SPEED
        wsp = wait_for(
            lambda: (v := observed(lambda: client.read_float(wsp_at))) is not None and v <= SAFE_C + 0.01 and v,
            f"the EPC3000 at its safe setpoint {SAFE_C:g} C by itself",
            bound_s + MARGIN_S,
        )
        elapsed_s = time.monotonic() - killed
        assert wsp == pytest.approx(SAFE_C, abs=0.01)
        assert client.read_register(regmap["watchdog_flag"].address) == 1  # it was the watchdog
        assert client.read_register(regmap["remote_local_select"].address) == 0  # out of remote: on SP2
        assert struct.pack(">f", client.read_float(regmap.float_address(regmap["setpoint_2"]))) == struct.pack(
            ">f", SAFE_C
        )
        assert elapsed_s <= bound_s + MARGIN_S
    finally:
        sim.stop()


def test_a_killed_run_leaves_the_2400_running_the_program_in_its_own_programmer(tmp_path, sim_calibration):
    truth = tmp_path / "truth.jsonl"
    sim = start_simulator("drivers.sim.furnace", "--model", "2400", "--speed", f"{SPEED:g}", "--truth", str(truth))
    try:
        path = station(tmp_path, sim.address, "2408", "eurotherm-2400")
        run = start_run(tmp_path, path, sim_calibration)
        regmap = load_register_map("eurotherm-2400")
        running = regmap.program_status["run"]
        try:
            kill_mid_ramp(run, truth, tmp_path / "remdaq.out", lambda v: v["program_status"] == running)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        killed = time.monotonic()
        # the docs' bound: the rest of the program, at most all of it, ending with the ramp to the safe setpoint
        program_min = (TARGET_C - 20.0) / RAMP + DWELL_MIN + (TARGET_C - SAFE_C) / COOL_RATE
        bound_s = program_min * 60.0 / SPEED
        client = rtu_client(sim.address)  # the run's port is free again: the controller is ours to read
        complete = regmap.program_status["complete"]

        def safe():
            wsp = observed(lambda: client.read_register(regmap["working_setpoint"].address, 1, signed=True))
            state = observed(lambda: client.read_register(regmap["program_status"].address))
            return wsp is not None and state == complete and wsp <= SAFE_C and wsp

        wsp = wait_for(safe, f"the 2400 at its safe setpoint {SAFE_C:g} C by itself", bound_s + MARGIN_S)
        elapsed_s = time.monotonic() - killed
        assert wsp == SAFE_C
        assert client.read_register(regmap["target_setpoint"].address, 1) == SAFE_C  # and it stays there
        assert elapsed_s <= bound_s + MARGIN_S
    finally:
        sim.stop()


def test_a_killed_run_leaves_the_3216p_running_the_program_in_its_own_ramp_dwell_programmer(tmp_path, sim_calibration):
    truth = tmp_path / "truth.jsonl"
    sim = start_simulator("drivers.sim.furnace", "--model", "3216P", "--speed", f"{SPEED:g}", "--truth", str(truth))
    try:
        path = station(tmp_path, sim.address, "3216P", "eurotherm-3216p")
        run = start_run(tmp_path, path, sim_calibration)
        regmap = load_register_map("eurotherm-3216p")
        layout = regmap.programmer
        assert layout is not None and layout.style == "ramp_dwell" and layout.end_register is not None
        status = regmap[layout.status]  # T.STAT (23)
        running, complete = regmap.program_status["run"], regmap.program_status["complete"]
        try:
            at_kill = kill_mid_ramp(run, truth, tmp_path / "remdaq.out", lambda v: v[status.name] == running)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        killed = time.monotonic()
        assert at_kill[layout.end_register] == layout.end_dwell  # the run had set the end: dwell at the last SP
        # the docs' bound: the rest of the program, at most all of it, ending with the ramp to the safe setpoint
        program_min = (TARGET_C - 20.0) / RAMP + DWELL_MIN + (TARGET_C - SAFE_C) / COOL_RATE
        bound_s = program_min * 60.0 / SPEED
        client = rtu_client(sim.address)  # the run's port is free again: the controller is ours to read
        wsp_at = regmap.float_address(regmap["working_setpoint"])

        def safe():
            wsp = observed(lambda: client.read_float(wsp_at))
            state = observed(lambda: client.read_register(status.address))
            return wsp is not None and state == complete and wsp <= SAFE_C + 0.01 and wsp

        wsp = wait_for(safe, f"the 3216P at its safe setpoint {SAFE_C:g} C by itself", bound_s + MARGIN_S)
        elapsed_s = time.monotonic() - killed
        assert struct.pack(">f", wsp) == struct.pack(">f", SAFE_C)
        target_at = regmap.float_address(regmap["target_setpoint"])
        assert struct.pack(">f", client.read_float(target_at)) == struct.pack(">f", SAFE_C)  # and it stays there
        assert client.read_register(regmap[layout.end_register].address) == layout.end_dwell
        assert elapsed_s <= bound_s + MARGIN_S
    finally:
        sim.stop()
