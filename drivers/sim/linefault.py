"""Line-fault injector: a relay between a serial client and a device's pty that breaks the line on purpose.

The relay creates its own pseudo-terminal and exposes it through a stable
symlink (like ``/dev/serial/by-id/...``); the client opens the symlink, the
relay forwards to the device path (e.g. the furnace simulator's pty). Faults
live on the line, outside any instrument model:

- per frame (one ``read`` chunk; on a pty a whole request or response), by
  probability from a seeded RNG or forced for the next N frames: ``drop``,
  ``truncate`` (a random proper prefix), ``corrupt`` (one byte XOR a non-zero
  mask, which a CRC-16 always catches), ``delay`` (held ``delay_s``, or a
  time drawn uniformly from a ``(low, high)`` range; later frames are not held
  back and may overtake it: a delayed answer arrives while the client waits
  for the answer to a later request, a "late answer");
- ``unplug("vanish")``: the pty is closed and the symlink removed, as when a
  USB adapter is pulled; ``unplug("silent")``: the port stays but nothing is
  relayed, as when the RS-485 pair is cut; ``replug()`` restores the line
  (a vanished port comes back as a new pty behind the same symlink).

Its truth: ``records`` lists every frame it saw (:class:`FrameRecord`: when,
which direction, what came in, which fault, what went out and when), so a
test can tell which answers were late, dropped or garbled, and by how much.

Runs in a thread of the calling process::

    with LineFaultInjector(sim.address, seed=1) as line:
        line.set_faults(corrupt=0.005, truncate=0.005)
        furnace = Eurotherm(line.port)
"""

from __future__ import annotations

import heapq
import os
import queue
import random
import selectors
import shutil
import tempfile
import threading
import time
import tty
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LineFaultInjector", "FrameRecord", "FAULT_KINDS", "DIRECTIONS"]

FAULT_KINDS = ("drop", "truncate", "corrupt", "delay")
DIRECTIONS = ("to_device", "to_client")


@dataclass
class FrameRecord:
    """What the relay did to one frame (one ``read`` chunk), in ``time.monotonic()`` seconds."""

    index: int  # 0, 1, 2 ... over both directions, in order of arrival
    direction: str  # "to_device" or "to_client"
    received_at: float
    received: bytes  # as it came in
    fault: str | None  # one of FAULT_KINDS, or None
    sent: bytes  # what it sends on (b"" when dropped)
    due_at: float | None  # when it is to go out (None when dropped)
    sent_at: float | None = None  # when it was written to the far side (None: dropped, or not yet, or lost)

    @property
    def delay_s(self) -> float:
        """How long the relay held it (the fault's delay, or its own latency)."""
        return 0.0 if self.sent_at is None else self.sent_at - self.received_at


class LineFaultInjector:
    """Relay between ``port`` (a symlink it owns) and ``device`` that injects line faults."""

    def __init__(
        self, device: str, link: str | os.PathLike | None = None, *, seed: int = 0, keep_records: int = 100_000
    ) -> None:
        self.device = device
        if link:
            self._own_dir = None
            self.link = Path(link)
        else:
            self._own_dir = tempfile.mkdtemp(prefix="remdaq-line-")
            self.link = Path(self._own_dir) / "ttyFURNACE"
        self._rng = random.Random(seed)
        self._rates: dict[str, dict[str, float]] = {d: dict.fromkeys(FAULT_KINDS, 0.0) for d in DIRECTIONS}
        self.delay_s: float | tuple[float, float] = 0.05
        self._forced: dict[str, deque[str]] = {d: deque() for d in DIRECTIONS}
        self.faults: Counter = Counter()  # (direction, kind) -> frames affected
        self.frames: Counter = Counter()  # direction -> frames seen
        self.bytes_from_client = 0  # every byte the client sent, relayed or not
        self.records: deque[FrameRecord] = deque(maxlen=keep_records)  # the relay's truth, frame by frame
        self._commands: queue.Queue = queue.Queue()
        self._selector = selectors.DefaultSelector()
        self._wake_r: int | None
        self._wake_w: int | None
        self._wake_r, self._wake_w = os.pipe()  # None once stopped
        self._pending: list[tuple[float, int, int, FrameRecord]] = []  # heap of (due, seq, fd, record)
        self._seq = 0
        self._device_fd: int | None = None
        self._client_fds: tuple[int, int] | None = None  # (master, slave) of our pty
        self._relaying = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> str:
        """The path a client opens (a symlink to the current pty)."""
        return str(self.link)

    def start(self) -> LineFaultInjector:
        """Open the device, create the client pty and start relaying."""
        self._device_fd = os.open(self.device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._device_fd)
        self._selector.register(self._device_fd, selectors.EVENT_READ, "device")
        assert self._wake_r is not None, "a stopped LineFaultInjector cannot be started again"
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._plug()
        self._thread = threading.Thread(target=self._run, name=f"linefault {self.link}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop relaying and release every file descriptor and the symlink."""
        if self._thread is not None:
            self._do(lambda: None, stop=True)
            self._thread.join(5.0)
            self._thread = None
        self._unplug_vanish()
        for fd in (self._device_fd, self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._device_fd = self._wake_r = self._wake_w = None
        self._selector.close()
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self) -> LineFaultInjector:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- configuration (any thread) -----------------------------------------------------------
    def set_faults(
        self,
        *,
        drop: float = 0.0,
        truncate: float = 0.0,
        corrupt: float = 0.0,
        delay: float = 0.0,
        delay_s: float | tuple[float, float] | None = None,
        direction: str = "both",
    ) -> None:
        """Per-frame fault probabilities for ``to_device``, ``to_client`` or ``both`` directions.

        ``delay_s`` is how long a delayed frame is held: seconds, or ``(low, high)``
        for a time drawn uniformly per frame (it applies to both directions).
        """
        rates = {"drop": drop, "truncate": truncate, "corrupt": corrupt, "delay": delay}
        if any(not 0 <= p <= 1 for p in rates.values()) or sum(rates.values()) > 1:
            raise ValueError("fault probabilities must be in 0..1 and sum to at most 1")
        if delay_s is not None:
            low, high = delay_s if isinstance(delay_s, tuple) else (delay_s, delay_s)
            if not 0 <= low <= high:
                raise ValueError("delay_s must be >= 0, or a range (low, high) with 0 <= low <= high")

        def apply():
            for d in self._directions(direction):
                self._rates[d] = rates
            if delay_s is not None:
                self.delay_s = delay_s

        self._do(apply)

    def clear_faults(self) -> None:
        """No more random or forced faults."""

        def apply():
            for d in DIRECTIONS:
                self._rates[d] = dict.fromkeys(FAULT_KINDS, 0.0)
                self._forced[d].clear()

        self._do(apply)

    def inject(self, kind: str, direction: str = "to_client", count: int = 1) -> None:
        """Force ``kind`` on the next ``count`` frames in ``direction``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        self._do(lambda: [self._forced[d].extend([kind] * count) for d in self._directions(direction)])

    def unplug(self, mode: str = "vanish") -> None:
        """Pull the line: ``vanish`` (port disappears) or ``silent`` (port stays, nothing relayed)."""
        if mode not in ("vanish", "silent"):
            raise ValueError("mode must be 'vanish' or 'silent'")
        self._do(self._unplug_vanish if mode == "vanish" else lambda: setattr(self, "_relaying", False))

    def replug(self) -> None:
        """Put the line back (a vanished port reappears behind the same symlink)."""

        def apply():
            if self._client_fds is None:
                self._plug()
            self._relaying = True

        self._do(apply)

    @property
    def plugged(self) -> bool:
        return self._client_fds is not None and self._relaying

    # -- relay thread ------------------------------------------------------------------------
    def _do(self, action, stop: bool = False) -> None:
        if self._thread is None or not self._thread.is_alive():
            action()
            return
        done = threading.Event()
        box: list = []
        self._commands.put((action, done, box, stop))
        assert self._wake_w is not None  # open while the relay thread runs: stop() closes it after the thread
        os.write(self._wake_w, b"!")
        if not done.wait(5.0):
            raise TimeoutError("line-fault relay did not answer")
        if box:
            raise box[0]

    def _run(self) -> None:
        while True:
            timeout = max(0.0, self._pending[0][0] - time.monotonic()) if self._pending else None
            for key, _ in self._selector.select(timeout):
                if key.data == "wake":
                    assert self._wake_r is not None  # stop() clears it after the thread has ended
                    os.read(self._wake_r, 512)
                    if self._run_commands():
                        return
                else:
                    self._pump(key.fd, key.data)
            self._release_due()

    def _run_commands(self) -> bool:
        stop = False
        while not self._commands.empty():
            action, done, box, stop_now = self._commands.get()
            try:
                action()
            except Exception as error:  # handed back to the caller
                box.append(error)
            stop = stop or stop_now
            done.set()
        return stop

    def _pump(self, fd: int, source: str) -> None:
        try:
            data = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            return
        if source == "client":
            self.bytes_from_client += len(data)
        if not self._relaying or self._client_fds is None:
            return
        direction = "to_device" if source == "client" else "to_client"
        self.frames[direction] += 1
        received_at = time.monotonic()
        kind, sent, delay_s = self._fault(direction, data)
        due_at = received_at + delay_s if sent else None
        record = FrameRecord(self._seq, direction, received_at, data, kind, sent, due_at)
        self.records.append(record)
        if sent:
            target = self._device_fd if direction == "to_device" else self._client_fds[0]
            assert target is not None  # the device is open while the relay runs (start() to stop())
            heapq.heappush(self._pending, (received_at + delay_s, self._seq, target, record))
        self._seq += 1

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._pending and self._pending[0][0] <= now:
            _, _, fd, record = heapq.heappop(self._pending)
            live = {self._device_fd, self._client_fds[0] if self._client_fds else None}
            if fd in live:
                try:
                    os.write(fd, record.sent)
                    record.sent_at = time.monotonic()
                except OSError:
                    pass  # nobody reads that side: lost, as on a real line

    def _fault(self, direction: str, data: bytes) -> tuple[str | None, bytes, float]:
        """(fault kind or None, bytes to send, delay before sending them)."""
        forced = self._forced[direction]
        kind = forced.popleft() if forced else self._draw(direction)
        if kind is None:
            return None, data, 0.0
        self.faults[(direction, kind)] += 1
        if kind == "drop":
            return kind, b"", 0.0
        if kind == "truncate":
            return kind, data[: self._rng.randint(1, len(data) - 1)] if len(data) > 1 else b"", 0.0
        if kind == "corrupt":
            i = self._rng.randrange(len(data))
            return kind, data[:i] + bytes([data[i] ^ self._rng.randint(1, 255)]) + data[i + 1 :], 0.0
        low, high = self.delay_s if isinstance(self.delay_s, tuple) else (self.delay_s, self.delay_s)
        return kind, data, self._rng.uniform(low, high)

    def _draw(self, direction: str) -> str | None:
        r = self._rng.random()
        for kind, p in self._rates[direction].items():
            if r < p:
                return kind
            r -= p
        return None

    # -- the client's pty ----------------------------------------------------------------
    def _plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._client_fds = (master, slave)
        self._selector.register(master, selectors.EVENT_READ, "client")
        temporary = self.link.with_name(self.link.name + ".new")
        if temporary.is_symlink():
            temporary.unlink()
        os.symlink(os.ttyname(slave), temporary)
        os.replace(temporary, self.link)

    def _unplug_vanish(self) -> None:
        if self.link.is_symlink():
            self.link.unlink()
        if self._client_fds is not None:
            master, slave = self._client_fds
            self._client_fds = None
            self._selector.unregister(master)
            os.close(master)
            os.close(slave)

    @staticmethod
    def _directions(direction: str) -> tuple[str, ...]:
        if direction == "both":
            return DIRECTIONS
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'both' or one of {DIRECTIONS}")
        return (direction,)
