"""Start a simulator process and learn where it listens.

Every simulator prints the address a client should open (a pty path, a VISA
resource string, ``tcp://host:port``) on the first line of its standard output,
then serves until SIGTERM. A simulator whose protocol has no room for the bench's
``SIM:`` commands (the Ocean OBP one) prints a second token on that line, after a
space: the VISA resource of its text control port. This module is how tests,
benchmarks and the simulated bench start one and stop it again.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

__all__ = ["SimulatorProcess", "SimulatorStartError", "start_simulator"]


class SimulatorStartError(RuntimeError):
    """A simulator process died or stayed silent instead of printing its address."""


@dataclass
class SimulatorProcess:
    """A running simulator: its client address, its control port (if it has one) and its process."""

    module: str
    #: What the instrument's client opens (the first token the simulator printed).
    address: str
    process: subprocess.Popen = field(repr=False)
    #: The VISA resource of the separate SIM: control port (the second token), ``None`` for one-port simulators.
    control: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> int:
        """Send SIGTERM, wait for the exit (SIGKILL after ``timeout_s``); return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return self.process.returncode

    def __enter__(self) -> SimulatorProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _die_with_parent() -> None:
    # Linux: the simulator gets SIGTERM when the process that started it dies, even by SIGKILL,
    # so a killed `remdaq run` never leaves simulators behind.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_simulator(
    module: str, *args: str, startup_timeout_s: float = 30.0, env: dict[str, str] | None = None
) -> SimulatorProcess:
    """Start ``python -m MODULE ARGS...`` and return it once it has printed its address (and control port).

    ``args`` go to the simulator unchanged, e.g. ``"--scenario", "pr-nd-cascade", "--sampling-point",
    "strip"`` for a spectrometer simulator at the strip liquor of a scenario's ``[cascade]``.

    Raises :class:`SimulatorStartError` with the process's stderr if it exits or
    prints nothing within ``startup_timeout_s``.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
        start_new_session=True,  # Ctrl-C at the terminal goes to our handler, not straight to the simulator
        preexec_fn=_die_with_parent,
    )
    assert process.stdout is not None  # stdout=PIPE
    deadline = time.monotonic() + startup_timeout_s
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                break
            if selector.select(timeout=min(remaining, 0.5)):
                chunk = os.read(process.stdout.fileno(), 1)
                if not chunk:
                    break
                line += chunk
    tokens = line.decode(errors="replace").split()
    if not tokens:
        process.kill()
        _, stderr = process.communicate()
        raise SimulatorStartError(
            f"simulator {module} printed no address within {startup_timeout_s:g} s "
            f"(exit code {process.returncode}); stderr:\n{stderr.decode(errors='replace')[-2000:]}"
        )
    return SimulatorProcess(
        module=module, address=tokens[0], process=process, control=tokens[1] if len(tokens) > 1 else None
    )
