"""Helpers for tests (and benchmarks): the shipped simulated bench, recipes and standards, the `remdaq` command
and the app as child processes, stopping a child process, and the simulator's concentration text."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIM_STATION = ROOT / "hardware/stations/sim.toml"
CASCADE_STATION = ROOT / "hardware/stations/sim-cascade.toml"
CASCADE_RECIPE = ROOT / "seeds/recipes/cascade.toml"
STANDARDS = ROOT / "seeds/standards/nd-pr-5.toml"
QUICK_RECIPE = ROOT / "seeds/recipes/quick.toml"

FAST_SPEED, FAST_POLL_INTERVAL_S = 1200.0, 0.05
"""The clock and furnace poll of :func:`fast_sim_station`: the quick recipe's 3 h of experiment in about 9 s
of wall time (37 s at the shipped station's 300), with the same spectra (the recipe schedules them in
experiment time) and about 90 furnace rows instead of 150 (a poll of the simulated 9600-baud line takes
about 0.1 s)."""


def sim_station(
    folder: Path, *, speed: float, poll_interval_s: float | None = None, station: Path = SIM_STATION
) -> Path:
    """A copy of a shipped simulated station (default sim.toml), in ``folder``, with its clock at ``speed``
    simulated seconds per wall second (and every Modbus instrument polled every ``poll_interval_s`` wall
    seconds, if given)."""
    text = station.read_text()
    changes = {"simulation_speed = 300.0": f"simulation_speed = {speed:g}"}
    if poll_interval_s is not None:
        changes["poll_interval_s = 0.25"] = f"poll_interval_s = {poll_interval_s:g}"
    for old, new in changes.items():
        assert old in text, f"{station} no longer contains {old!r}"
        text = text.replace(old, new)
    path = folder / (
        f"{station.stem}-{speed:g}.toml"
        if poll_interval_s is None
        else f"{station.stem}-{speed:g}-{poll_interval_s:g}.toml"
    )
    path.write_text(text)
    return path


def fast_sim_station(folder: Path) -> Path:
    """The simulated station on a faster clock (:data:`FAST_SPEED`), for tests that need whole trials on the
    simulated bench but not the wall time of the shipped station's clock."""
    return sim_station(folder, speed=FAST_SPEED, poll_interval_s=FAST_POLL_INTERVAL_S)


def remdaq_command(*args) -> list[str]:
    """The argument list of `remdaq ARGS` as this interpreter runs it (``python -m daq ARGS``)."""
    return [sys.executable, "-m", "daq", *map(str, args)]


def start_remdaq(*args, **popen) -> subprocess.Popen:
    """Start `remdaq ARGS` from the project root: no stdin, unbuffered output to text pipes (``popen`` overrides)."""
    options = dict(
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return subprocess.Popen(remdaq_command(*args), **{**options, **popen})


def run_remdaq(*args, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    """Run `remdaq ARGS` from the project root to its end, output captured as text; killed after ``timeout_s``
    (raising :class:`subprocess.TimeoutExpired`: a deadline against a hang, not a measurement)."""
    return subprocess.run(
        remdaq_command(*args), cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s
    )


def stop_process(process: subprocess.Popen | BaseProcess, timeout_s: float = 10.0) -> int | None:
    """End a child process that may still run: SIGTERM, up to ``timeout_s`` for it to exit, then SIGKILL; reaped.

    For a :class:`subprocess.Popen` (a server, a scheduler) or a :mod:`multiprocessing` process; one that has
    already exited is only reaped. Returns its exit code (negative: the signal that ended it). As
    :meth:`drivers.sim.launch.SimulatorProcess.stop` ends a simulator.
    """
    if isinstance(process, subprocess.Popen):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode
    if process.is_alive():
        process.terminate()
        process.join(timeout_s)
        if process.is_alive():
            process.kill()
    process.join()
    return process.exitcode


CHROMIUM = Path("/usr/bin/chromium")
"""Debian's Chromium, which the browser test and the app benchmark drive (headless, through Playwright)."""
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_app(
    data_dir: Path, *, log=subprocess.DEVNULL, timeout_s: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """`streamlit run app.py` over ``data_dir`` on a free port of 127.0.0.1 (output to ``log``), for the block.

    Yields ``(url, server process)`` once the server answers its health check (RuntimeError if it exits or
    does not answer within ``timeout_s``); stopped with :func:`stop_process` at the end.
    """
    port = free_port()
    env = {**os.environ, "REMDAQ_DATA_DIR": str(data_dir)}
    env.pop("REMDAQ_STATION", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "app.py"),
            "--server.port",
            str(port),
            "--server.address",
            "127.0.0.1",
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, server, timeout_s)
        yield url, server
    finally:
        stop_process(server, timeout_s=10)


def _wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    """Poll the server's health endpoint until it answers (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.returncode} before serving {url}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"streamlit did not serve {url} within {timeout_s:g} s")
        threading.Event().wait(0.1)  # poll interval of a condition with a deadline


def format_concentrations(analytes, concentration_g_per_L) -> str:
    """``Nd=12,Pr=0.06``: the simulator's ``SIM:STAN`` argument (zero concentrations left out)."""
    return ",".join(f"{a}={c:.6g}" for a, c in zip(analytes, concentration_g_per_L) if c > 0)


def parse_concentrations(analytes, text: str) -> np.ndarray:
    """The concentrations (g/L) of ``analytes`` in a ``SIM:TRUT?`` answer (absent ones 0)."""
    values = dict(item.split("=") for item in text.strip().strip('"').split(",") if item)
    return np.array([float(values.get(a, 0.0)) for a in analytes])
