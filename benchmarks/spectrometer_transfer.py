"""Spectra per second through ScpiSpectrometer vs a bare socket client, on the same simulator.

Run: ``.venv/bin/python benchmarks/spectrometer_transfer.py [--seconds 3] [--pixels 2048]``.
The simulator runs with a huge clock speed factor and 1 ms integration, so
exposure time is negligible and what is measured is the round trip: command,
simulated read-out, block transfer, parsing. The ratio driver/bare is the cost
of pyvisa-py plus the driver's strict checks. A script that prints, not a test.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers import ScpiSpectrometer  # noqa: E402
from drivers.sim.launch import start_simulator  # noqa: E402


def through_driver(address: str, seconds: float) -> tuple[float, int]:
    """Spectra/s with ScpiSpectrometer.acquire()."""
    with ScpiSpectrometer(address) as spec:
        spec.integration_time_s = 0.001
        spec.averages = 1
        spec.acquire()  # warm up
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            spec.acquire()
            count += 1
        return count / elapsed, spec.pixels


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    chunks, remaining = [], count
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 16))
        if not chunk:
            raise ConnectionError("simulator closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def through_bare_socket(address: str, seconds: float, pixels: int) -> float:
    """Spectra/s with a minimal socket client: send MEAS:SPEC?, read the block, np.frombuffer."""
    _, host, port, _ = address.split("::")
    with socket.create_connection((host, int(port))) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"FORM:DATA REAL,32;:FORM:BORD SWAP;:SENS:INT:TIME 0.001;:SENS:AVER:COUN 1\n")

        def one() -> np.ndarray:
            sock.sendall(b"MEAS:SPEC?\n")
            header = _recv_exactly(sock, 2)
            length = int(_recv_exactly(sock, header[1] - 0x30))
            payload = _recv_exactly(sock, length + 1)
            return np.frombuffer(payload[:-1], dtype="<f4").astype(np.float64)

        assert one().shape == (pixels,)
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            one()
            count += 1
        return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per client")
    parser.add_argument("--pixels", type=int, default=2048)
    args = parser.parse_args()
    with start_simulator("drivers.sim.spectrometer", "--speed", "1000000", "--pixels", str(args.pixels)) as sim:
        driver_rate, pixels = through_driver(sim.address, args.seconds)
        bare_rate = through_bare_socket(sim.address, args.seconds, pixels)
    print(f"spectrometer transfer, {pixels} px float32 blocks, simulator on 127.0.0.1")
    print(f"  driver (pyvisa-py + strict checks): {driver_rate:8.0f} spectra/s  ({1e6 / driver_rate:7.1f} us each)")
    print(f"  bare socket client:                 {bare_rate:8.0f} spectra/s  ({1e6 / bare_rate:7.1f} us each)")
    print(f"  ratio driver/bare: {driver_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
