"""Dask side of reanalysis: the cluster (own LocalCluster or an existing scheduler) and the numba warm-up plugin.

Imported only when reanalysis runs on Dask, so ``daq`` imports without dask installed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator

import dask.config
from distributed import Client, Future, LocalCluster, WorkerPlugin, as_completed

from ._reanalysis_tasks import warm_up

__all__ = ["WARM_UP_PLUGIN", "DaskExecutor", "WarmUpPlugin", "cpu_count", "dask_client"]

WARM_UP_PLUGIN = "rem-daq-reanalysis-warm-up"
CONNECT_TIMEOUT_S = 30


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class WarmUpPlugin(WorkerPlugin):
    """Loads the analysis kernels from the numba cache once per worker, when it joins (off its event loop)."""

    def __init__(self):
        self.info: dict[str, object] = {}

    async def setup(self, worker) -> None:
        self.info = await asyncio.get_running_loop().run_in_executor(None, warm_up)


@contextlib.contextmanager
def dask_client(client=None, workers: int | None = None, scheduler: str | None = None):
    """A Dask client and a description of where it runs: ``client`` as given, a connection to
    ``scheduler``, or a LocalCluster of ``workers`` processes (one thread each) closed on exit."""
    if client is not None:
        yield client, f"dask client of {client.scheduler.address}"
        return
    if scheduler is not None:
        with Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False) as connected:
            yield connected, f"dask scheduler {scheduler}"
        return
    n = workers or cpu_count()
    numba_threads = max(1, cpu_count() // n)
    # processes: numpy, h5py and hashing hold the GIL; NUMBA_NUM_THREADS shares the cores between workers
    with _workers_ignore_ctrl_c(), _worker_environment(numba_threads):
        cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            # None (no dashboard) is documented; the type comes from the default ":8787"
            dashboard_address=None,  # pyright: ignore[reportArgumentType]
            # a worker's failure reaches the client as its task's exception; what the cluster logs besides
            # (e.g. a heartbeat that finds the scheduler gone while Ctrl-C closes it) is not for the terminal
            silence_logs=logging.CRITICAL,
        )
    with cluster, Client(cluster, set_as_default=False) as local:
        yield local, f"dask LocalCluster of {n} worker processes ({numba_threads} numba thread(s) each)"


@contextlib.contextmanager
def _worker_environment(numba_threads: int):
    """The environment the LocalCluster's worker processes are spawned with.

    ``NUMBA_NUM_THREADS`` and ``OMP_NUM_THREADS`` = ``numba_threads`` (numba is
    imported in a worker before Dask's ``env=`` is applied, so they must be there
    at spawn), and no ``MALLOC_TRIM_THRESHOLD_``: Dask's nanny sets it, which
    turns off glibc's adaptive mmap threshold, so every block's large arrays
    would be mmapped and page-faulted afresh (up to 25 % slower here). The
    nanny copies its spawn variables into this process's environment and lets
    existing ones win, so both the config and ``os.environ`` are set here and
    ``os.environ`` is restored afterwards.
    """
    wanted = {
        "NUMBA_NUM_THREADS": str(numba_threads),
        "OMP_NUM_THREADS": str(numba_threads),
        "MALLOC_TRIM_THRESHOLD_": None,
    }
    saved = {key: os.environ.get(key) for key in (*wanted, "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PYTHONHASHSEED")}
    for key, value in wanted.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{key}": value for key, value in wanted.items()}):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _workers_ignore_ctrl_c():
    """Start worker processes with SIGINT ignored: a Ctrl-C at the terminal reaches the whole process group,
    and it is this process that stops the run and closes the cluster (the workers would only print tracebacks)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the spawned workers
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class DaskExecutor:
    """Submits reanalysis tasks to a Dask client and hands back their futures as they complete.

    The interface of the in-process executor of :mod:`daq.reanalysis` (whose futures are
    :class:`concurrent.futures.Future`): ``start``, ``submit``, ``completed``, ``cancel``, ``close``.
    """

    def __init__(self, client, description: str):
        self.client = client
        self.description = description
        self._completed = as_completed([], loop=client.loop, with_results=False)
        self._plugin_registered = False

    def start(self, calibration):
        """Warm up every worker (numba cache) and place the calibration on them; return its future."""
        self.client.register_plugin(WarmUpPlugin(), name=WARM_UP_PLUGIN)
        self._plugin_registered = True
        return self.client.scatter(calibration, broadcast=True, hash=False)

    def submit(self, function, *args, key: str, **kwargs):
        future = self.client.submit(function, *args, key=key, pure=False, retries=0, **kwargs)
        self._completed.add(future)
        return future

    def completed(self, stop: Callable[[], bool] = lambda: False) -> Iterator[tuple[str, Future]]:
        """``(key, future)`` of each task as it finishes (in completion order), including those submitted
        while iterating.

        Raises KeyboardInterrupt as soon as ``stop()`` is true (checked at least every 0.1 s while waiting).
        """
        pending = self._completed
        while True:
            if stop():
                raise KeyboardInterrupt
            if pending.has_ready():
                for future in pending.next_batch(block=False):
                    yield future.key, future
            elif pending.is_empty():
                return
            else:
                # as_completed notifies this condition after queueing a finished future; checking again
                # while holding it means a notification cannot slip in between the check and the wait
                with pending.thread_condition:
                    if not pending.has_ready() and not pending.is_empty():
                        pending.thread_condition.wait(timeout=0.1)

    def cancel(self, futures) -> None:
        if futures:
            self.client.cancel(list(futures), force=True)

    def close(self, cancel=()) -> None:
        """Cancel what is left and detach the warm-up plugin."""
        self.cancel(cancel)
        if self._plugin_registered:
            with contextlib.suppress(Exception):
                self.client.unregister_worker_plugin(WARM_UP_PLUGIN)
