"""Furnace polling throughput: the Eurotherm driver against the bare library under it, on the same server.

    .venv/bin/python benchmarks/furnace_poll.py [--reads 3000] [--model 2400] [--transport rtu|tcp]

Starts the simulated furnace (on a pty for RTU, ``--tcp`` for TCP), then reads
the working setpoint (one Modbus transaction) N times with each client and
prints reads per second, time per transaction and the driver's overhead as a
ratio and in microseconds. Also prints full polls (read_all: three
transactions) per second. RTU: the bare client is minimalmodbus; both pay its
minimum inter-frame silence (1.75 ms above 19200 baud). TCP: the bare client is
pymodbus's ModbusTcpClient, the one the driver uses. The ratio shows what the
driver adds: map lookup, scaling, retry bookkeeping, lock (and on RTU the line rules).
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
    parser.add_argument("--transport", default="rtu", choices=["rtu", "tcp"])
    args = parser.parse_args()
    if args.transport == "tcp":
        tcp(args)
        return
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
    report(args, f"pty at {BAUD} baud", "bare minimalmodbus ", bare, driver, poll_s)


def tcp(args) -> None:
    """The same rounds over Modbus TCP: the driver against bare pymodbus on the simulator's TCP server."""
    from pymodbus.client import ModbusTcpClient

    from drivers._modbus import parse_tcp_port

    with start_simulator("drivers.sim.furnace", "--tcp", "--speed", "1", "--model", args.model) as sim:
        host, port = parse_tcp_port(sim.address)
        client = ModbusTcpClient(host, port=port, timeout=0.2, retries=0)
        client.connect()
        address, count = (5, 1) if args.model == "2400" else (0x8000 + 2 * 5, 2)

        def bare_read():
            response = client.read_holding_registers(address, count=count, device_id=1)
            assert not response.isError()
            return response.registers

        with Eurotherm(sim.address, model=args.model) as furnace:
            bare, driver = [], []
            for _ in range(3):  # interleaved rounds: both clients see the same machine load
                bare.append(per_read_s(bare_read, args.reads // 3))
                driver.append(per_read_s(lambda: furnace.working_setpoint_C, args.reads // 3))
            poll_s, _ = per_read_s(furnace.read_all, max(1, args.reads // 10))
        client.close()
    report(args, "Modbus TCP on 127.0.0.1", "bare pymodbus      ", bare, driver, poll_s)


def report(args, where: str, bare_name: str, bare, driver, poll_s: float) -> None:
    bare_s, bare_cpu = min(r[0] for r in bare), min(r[1] for r in bare)
    driver_s, driver_cpu = min(r[0] for r in driver), min(r[1] for r in driver)
    print(f"furnace poll benchmark: model {args.model}, {args.reads} reads each, {where}, best of 3 rounds")
    print(f"  {bare_name}: {1 / bare_s:8.0f} reads/s  {bare_s * 1e6:8.1f} us/transaction  {bare_cpu * 1e6:7.1f} us CPU")
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
