"""Spectra per second through each spectrometer driver vs a bare client of the same wire, on the same simulator.

Run: ``.venv/bin/python benchmarks/spectrometer_transfer.py [--seconds 3] [--pixels 2048]``.
The simulators run with a huge clock speed factor and the shortest integration,
so exposure time is negligible and what is measured is the round trip: command,
simulated read-out, transfer, parsing. Two pairs:

- SCPI: ScpiSpectrometer vs a bare socket client (the cost of pyvisa-py plus the
  driver's strict checks);
- Ocean HDX (OBP over TCP): OceanSpectrometer vs bare python-seabreeze
  (``get_intensities`` on a device from ``SeaBreezeAPI``): the cost of the
  bounded transport, the whole-frame checks and the nonlinearity correction.

Ratios driver/bare are printed (target >= 0.8 for the Ocean path). A script that prints, not a test.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers import OceanSpectrometer, ScpiSpectrometer  # noqa: E402
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


HDX_SHORTEST_INTEGRATION_US = 6000


def _rate(acquire, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        acquire()
        count += 1
    return count / elapsed


def ocean_rates(address: str, seconds: float, rounds: int = 10) -> tuple[float, float, float, int]:
    """(driver spectra/s, bare python-seabreeze spectra/s, median ratio of the rounds, pixels).

    Both clients are connected to the one simulator at once (it serves several) and take turns, ``rounds``
    times, so that a machine whose load changes during the run affects both alike; the ratio is the median
    of the per-round ratios.
    """
    from seabreeze.pyseabreeze.api import SeaBreezeAPI
    from seabreeze.pyseabreeze.transport import IPv4Transport

    host, port = address.removeprefix("tcp://").split(":")
    api = SeaBreezeAPI(initialize=False)
    if (host, int(port)) not in IPv4Transport.devices_ip_port:
        api.add_ipv4_device_location("HDX", host, int(port))
    device = next(d for d in api.list_devices() if d.model == "HDX")
    device.open()
    try:
        bare = device.f.spectrometer
        bare.set_integration_time_micros(HDX_SHORTEST_INTEGRATION_US)
        with OceanSpectrometer(address, model="HDX", dark_method="lamp") as spec:
            spec.integration_time_s = HDX_SHORTEST_INTEGRATION_US * 1e-6
            spec.acquire()  # warm up (and the lamp on)
            bare.get_intensities()
            driver_rates, bare_rates = [], []
            for _ in range(rounds):
                driver_rates.append(_rate(spec.acquire, seconds / rounds))
                bare_rates.append(_rate(bare.get_intensities, seconds / rounds))
            ratios = np.array(driver_rates) / np.array(bare_rates)
            return float(np.median(driver_rates)), float(np.median(bare_rates)), float(np.median(ratios)), spec.pixels
    finally:
        device.close()


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
    with start_simulator("drivers.sim.ocean", "--speed", "1000000") as sim:
        ocean_rate, seabreeze_rate, ocean_ratio, ocean_pixels = ocean_rates(sim.address, args.seconds)
    print(f"Ocean HDX transfer, {ocean_pixels} px uint16 OBP frames, simulator on 127.0.0.1")
    for label, rate in (("driver (bounded transport + checks)", ocean_rate), ("bare python-seabreeze", seabreeze_rate)):
        print(f"  {label + ':':37s} {rate:8.0f} spectra/s ({1e6 / rate:7.1f} us each)")
    print(f"  ratio driver/bare: {ocean_ratio:.2f}, median of 10 alternating rounds (target >= 0.8)")


if __name__ == "__main__":
    main()
