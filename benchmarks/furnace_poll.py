"""Furnace polling throughput: the Eurotherm driver against a bare minimalmodbus client on the same pty.

    .venv/bin/python benchmarks/furnace_poll.py [--reads 3000] [--model 2400]

Starts the simulated furnace, then reads the working setpoint (one Modbus
transaction) N times with each client and prints reads per second, time per
transaction and the driver's overhead as a ratio and in microseconds. Also
prints full polls (read_all: five transactions) per second. Both clients pay
minimalmodbus's minimum inter-frame silence (1.75 ms above 19200 baud), so the
ratio shows what the driver adds: map lookup, scaling, retry bookkeeping, lock.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import minimalmodbus  # noqa: E402
import serial  # noqa: E402

from drivers import Eurotherm  # noqa: E402
from drivers.sim.launch import start_simulator  # noqa: E402

BAUD = 115200


def per_read_s(read, count: int) -> tuple[float, float]:
    """Wall and CPU seconds per call of ``read``."""
    read()  # warm up (first use reads decimal places)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        read()
    return (time.perf_counter() - wall) / count, (time.process_time() - cpu) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=3000)
    parser.add_argument("--model", default="2400", choices=["2400", "3200"])
    args = parser.parse_args()
    with start_simulator("drivers.sim.furnace", "--speed", "1", "--model", args.model) as sim:
        port = serial.Serial(sim.address, BAUD, timeout=0.2)
        client = minimalmodbus.Instrument(port, 1)
        if args.model == "2400":

            def bare_read():
                return client.read_register(5, 1, signed=True)
        else:

            def bare_read():
                return client.read_float(0x8000 + 2 * 5)

        with Eurotherm(sim.address, model=args.model, baudrate=BAUD) as furnace:
            bare, driver = [], []
            for _ in range(3):  # interleaved rounds: both clients see the same machine load
                bare.append(per_read_s(bare_read, args.reads // 3))
                driver.append(per_read_s(lambda: furnace.working_setpoint_C, args.reads // 3))
            poll_s, _ = per_read_s(furnace.read_all, max(1, args.reads // 10))
        port.close()
    bare_s, bare_cpu = min(r[0] for r in bare), min(r[1] for r in bare)
    driver_s, driver_cpu = min(r[0] for r in driver), min(r[1] for r in driver)
    print(f"furnace poll benchmark: model {args.model}, {args.reads} reads each, pty at {BAUD} baud, best of 3 rounds")
    print(
        f"  bare minimalmodbus : {1 / bare_s:8.0f} reads/s  {bare_s * 1e6:8.1f} us/transaction  "
        f"{bare_cpu * 1e6:7.1f} us CPU"
    )
    print(
        f"  Eurotherm driver   : {1 / driver_s:8.0f} reads/s  {driver_s * 1e6:8.1f} us/transaction  "
        f"{driver_cpu * 1e6:7.1f} us CPU"
    )
    print(
        f"  driver / bare      : wall {driver_s / bare_s:6.3f}x (overhead {(driver_s - bare_s) * 1e6:+.1f} us), "
        f"CPU {driver_cpu / bare_cpu:6.3f}x (overhead {(driver_cpu - bare_cpu) * 1e6:+.1f} us)"
    )
    print(f"  read_all (3 transactions): {1 / poll_s:8.1f} polls/s")


if __name__ == "__main__":
    main()
