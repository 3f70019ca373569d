"""Ingest benchmark: unthrottled spectra through live analysis into an HDF5 trial file, read live over SWMR.

    .venv/bin/python benchmarks/ingest.py                      # 200,000 spectra (~1.7 GB, deleted after)
    .venv/bin/python benchmarks/ingest.py --spectra 1000000    # the 1M-spectrum trial of the targets (~8.4 GB)
    .venv/bin/python benchmarks/ingest.py --spectra 50000 --stages-only
    .venv/bin/python benchmarks/ingest.py --analysis fused --max-queued-MB 64

What runs (2048-px float32 spectra, 7 analytes, target Nd; benchmarks/_synthetic_source.py):

1. stages, each on ``--stage-spectra`` spectra in blocks of ``--block``, ``--repeat`` times
   interleaved (median and best): the source alone; source + live analysis
   (:func:`daq.pipeline.analyse_counts` over the block, and the fused
   :func:`analysis.quantify_counts` for comparison); source + HDF5 without analysis (the
   writer alone, analysis rows of constants); and the runner's own path (one spectrum at a
   time: ``analyse_counts`` of one spectrum, one ``append`` per row, as daq/runner.py does).
2. the trial: a producer thread makes ``--spectra`` spectra block by block, analyses each
   block, and appends the spectrometer rows and the analysis rows to a :class:`daq.TrialWriter`
   (its own writer thread, SWMR). The ``time`` column holds each spectrum's acquisition time
   (CLOCK_MONOTONIC, which is system-wide, minus the trial's t0; the spectra of a block are
   spread evenly from the previous block's end to this one's, as a steady source would give).
   A reader in another process (:func:`daq.open_trial`, ``refresh()`` every ``--poll`` s,
   the app's path) reads the ``time`` column of new rows and takes latency = monotonic now
   after the refresh - acquisition time: an upper bound that includes up to one poll interval.
   RSS of the writing process (psutil) is sampled every ``--rss-every`` spectra with the
   writer's queue depth; the reader's RSS once a second. Also reported: CPU seconds per thread,
   the writer thread's wall time in write / flush / fsync (its methods wrapped, not changed),
   and the cores other processes used meanwhile (on a shared machine they decide the figures).
3. paced (``--paced RATE:SECONDS``, default 20:30): the same at a steady rate, one spectrum per
   ``analyse_counts`` and per ``append`` as the runner does: the latency a bench sees.
4. checks: rows written == rows produced for both tables (after close and re-open), time
   strictly increasing and equal in both tables, the sum of purities read back equals the
   sum produced, and the last block's counts read back bit for bit.

Prototypes of suggested changes (this process only; daq/ and analysis/ untouched):
``--analysis fused`` (the fused counts kernel called directly; daq.pipeline has used it since
2026-11-27, before that it built a float64 absorbance array), ``--analysis fused-nogil``
(that kernel compiled ``nogil``), ``--max-queued-MB`` (the writer's queue bound in bytes).

Disk: ~8.4 kB per spectrum; the free space is checked first and the run refused if short.
The trial file is deleted at the end unless ``--keep``. Prints a summary and, with
``--json FILE``, writes every figure. Targets (docs/performance.md): >= 10,000 spectra/s with no
drop, RSS flat over 1M spectra, a SWMR reader sees a row <= 1 s after acquisition.
"""

from __future__ import annotations

import os

# The synthetic source's one small matrix product must not wake OpenBLAS's thread pool: its spinning
# threads take the two cores from numba's analysis threads and the writer (measured: 5-10x slower stages).
# The acquisition and analysis code under test uses no BLAS. Set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json
import math
import multiprocessing as mp
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench import stop_process  # noqa: E402
from _synthetic_source import ANALYTES, TARGET, SyntheticSource  # noqa: E402

TARGET_RATE = 10_000.0
TARGET_LATENCY_S = 1.0
BYTES_PER_SPECTRUM_OVERHEAD = 8 * 4 + 4 * 4 + 1  # time, integration_time + averages, saturated, indices, flag


# --------------------------------------------------------------------------- analysis paths


def analysis_function(kind: str, calibration, source: SyntheticSource):
    """The live analysis of a block: ``counts -> SpectraResult``-like (concentration, sigma, purity, ...)."""
    import analysis
    from daq.pipeline import SpectraResult, analyse_counts

    saturation = source.full_scale_counts
    if kind == "pipeline":

        def run(counts):
            return analyse_counts(counts, source.dark, source.reference, calibration, TARGET, saturation)

        return run
    if kind == "fused":
        # The fused counts kernel and the purity step, called directly (what daq.pipeline does since
        # 2026-11-27; the comparison shows what the pipeline adds, and it was the prototype before that).
        limits = None if calibration.quality is None else calibration.quality.detection_limit_g_per_L

        def run(counts):
            q = analysis.quantify_counts(counts, source.dark, source.reference, calibration, saturation)
            p = analysis.oxide_purity(
                q.concentration_g_per_L,
                calibration.analytes,
                TARGET,
                sigma_g_per_L=q.sigma_g_per_L,
                detection_limit_g_per_L=limits,
            )
            return SpectraResult(
                q.concentration_g_per_L, q.sigma_g_per_L, p.purity, p.purity_sigma, q.residual_rms, q.n_masked_pixels
            )

        return run
    raise ValueError(f"unknown analysis {kind!r}")


def release_gil_in_counts_kernel() -> None:
    """Prototype of the suggested analysis/_nnls_kernel.py change: the fused batch kernel with ``nogil=True``.

    numba kernels hold the GIL for their whole run unless compiled with ``nogil=True``; the writer thread
    then cannot run its Python (queue, concatenation, h5py calls) while a block is analysed. This wraps
    the shipped kernel in a ``nogil`` function (identical numbers) and puts it where
    :func:`analysis.quantify_counts` looks it up, in this process only.
    """
    import numba

    from analysis import _nnls_kernel

    shipped = _nnls_kernel.quantify_counts_batch

    @numba.njit(nogil=True)
    def quantify_counts_batch_nogil(
        counts,
        dark,
        ln_reference,
        saturation,
        X,
        XWt,
        w,
        N_full,
        E_w,
        K,
        tol_rel,
        tau,
        G,
        model_var,
        out_conc,
        out_sigma,
        out_base,
        out_rms,
        out_nmask,
        out_status,
    ):
        shipped(
            counts,
            dark,
            ln_reference,
            saturation,
            X,
            XWt,
            w,
            N_full,
            E_w,
            K,
            tol_rel,
            tau,
            G,
            model_var,
            out_conc,
            out_sigma,
            out_base,
            out_rms,
            out_nmask,
            out_status,
        )

    _nnls_kernel.quantify_counts_batch = quantify_counts_batch_nogil


# --------------------------------------------------------------------------- the trial file

# --------------------------------------------------------------------------- the trial file


def trial_metadata(source: SyntheticSource, calibration, trial_id: str):
    from daq import TrialMetadata

    return TrialMetadata(
        trial_id=trial_id,
        title="ingest benchmark",
        sample="synthetic",
        operator="benchmark",
        target=TARGET,
        analytes=tuple(calibration.analytes),
        wavelength_nm=source.wavelength_nm,
        covered_elements=tuple(calibration.analytes),
        calibration_id=calibration.calibration_id,
        calibration_arrays={
            "sensitivity": (calibration.sensitivity, "absorbance per g/L"),
            "wavelength": (np.asarray(calibration.wavelength_nm), "nm"),
        },
        software_version="benchmark",
        extra={"simulated": True},
    )


class _Constants:
    """Per-row constant columns of a block, built once per block size and shared (never mutated)."""

    def __init__(self):
        self._cache: dict[int, dict] = {}

    def spectrometer(self, n: int) -> dict:
        if n not in self._cache:
            self._cache[n] = {
                "integration_time": np.full(n, 0.001),
                "averages": np.ones(n, np.uint32),
                "saturated_pixels": np.zeros(n, np.uint32),
                "dark_index": np.zeros(n, np.int32),
                "reference_index": np.zeros(n, np.int32),
                "flag": np.zeros(n, np.uint8),
            }
        return self._cache[n]


def append_block(writer, times, counts, result, constants: _Constants) -> None:
    """One block: spectrometer rows, then the analysis rows (what the runner appends per spectrum)."""
    n = len(times)
    writer.append("spectrometer", time=times, counts=counts, **constants.spectrometer(n))
    writer.append(
        "analysis",
        time=times,
        concentration=result.concentration_g_per_L,
        sigma=result.sigma_g_per_L,
        purity=result.purity,
        purity_sigma=result.purity_sigma,
        residual_rms=result.residual_rms,
    )


def check_disk(folder: Path, spectra: int, pixels: int, analytes: int) -> tuple[float, float]:
    """(needed, free) bytes; raises SystemExit with a clear message when the folder is too small."""
    per_spectrum = pixels * 4 + BYTES_PER_SPECTRUM_OVERHEAD + (2 * analytes + 3) * 8 + 8
    needed = spectra * per_spectrum * 1.05 + 256e6
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise SystemExit(
            f"not enough free space in {folder}: {spectra:,} spectra need about {needed / 1e9:.1f} GB "
            f"({per_spectrum / 1e3:.1f} kB per spectrum + 5 % + 256 MB), {free / 1e9:.1f} GB free. "
            f"Use --out on a larger filesystem or fewer --spectra."
        )
    return needed, free


# --------------------------------------------------------------------------- the SWMR reader (child process)


def reader_main(path: str, t0: float, poll_s: float, conn) -> None:
    """Follow the trial like the app does; send back latency percentiles and what it saw."""
    from daq import open_trial

    deadline = time.monotonic() + 30
    while True:
        try:
            reader = open_trial(path)
            break
        except Exception:  # noqa: BLE001 - the file may not be there yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    marks = {"spectrometer": 0, "analysis": 0}
    latencies = {name: [] for name in marks}
    refresh_s = []
    polls = 0
    with reader:
        while True:
            time.sleep(poll_s)
            started = time.monotonic()
            reader.refresh()
            now_mono = time.monotonic()
            refresh_s.append(now_mono - started)
            now = now_mono - t0
            polls += 1
            for name in marks:
                stop = reader.rows(name)
                if stop > marks[name]:
                    acquired = reader.dataset(name, "time")[marks[name] : stop]
                    latencies[name].append((now - acquired).astype(np.float32))
                    marks[name] = stop
            if reader.exit_status != "running":
                reader.refresh()
                if all(reader.rows(name) == marks[name] for name in marks):
                    break
    out = {
        "polls": polls,
        "rows_seen": marks,
        "rss_MB": psutil.Process().memory_info().rss / 1e6,
        "refresh_ms": _percentiles(np.array(refresh_s) * 1e3),
    }
    for name, parts in latencies.items():
        values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        out[f"latency_{name}_s"] = _percentiles(values)
    conn.send(out)
    conn.close()


def _percentiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    q = np.percentile(values, [50, 90, 99, 99.9])
    return {
        "n": int(len(values)),
        "p50": float(q[0]),
        "p90": float(q[1]),
        "p99": float(q[2]),
        "p99.9": float(q[3]),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


# --------------------------------------------------------------------------- stages


def stage_source(source: SyntheticSource, spectra: int, block: int) -> float:
    started = time.perf_counter()
    done = 0
    while done < spectra:
        n = min(block, spectra - done)
        source.block(n)
        done += n
    return spectra / (time.perf_counter() - started)


def stage_analysis(source: SyntheticSource, analyse, spectra: int, block: int) -> float:
    started = time.perf_counter()
    done = 0
    while done < spectra:
        n = min(block, spectra - done)
        counts, _ = source.block(n)
        analyse(counts)
        done += n
    return spectra / (time.perf_counter() - started)


def stage_writer_only(
    source: SyntheticSource, calibration, spectra: int, block: int, folder: Path, flush_interval_s: float
) -> float:
    """Source + HDF5, no analysis (analysis rows of constants): what the writer alone sustains."""
    from daq import TrialWriter
    from daq.pipeline import SpectraResult

    k = len(calibration.analytes)
    constants = _Constants()
    results: dict[int, SpectraResult] = {}
    path = folder / f"ingest-writer-only-{os.getpid()}.h5"
    writer = TrialWriter(path, trial_metadata(source, calibration, "writer-only"), flush_interval_s=flush_interval_s)
    try:
        started = time.perf_counter()
        done = 0
        while done < spectra:
            n = min(block, spectra - done)
            counts, _ = source.block(n)
            if n not in results:
                results[n] = SpectraResult(
                    np.full((n, k), 0.1),
                    np.full((n, k), 0.01),
                    np.full(n, 0.99),
                    np.full(n, 0.001),
                    np.full(n, 0.001),
                    np.zeros(n, int),
                )
            times = np.arange(done, done + n, dtype=float)
            append_block(writer, times, counts, results[n], constants)
            done += n
        writer.close("success")
        rate = spectra / (time.perf_counter() - started)
    finally:
        if not writer._closed:  # noqa: SLF001 - benchmark cleanup after a failure
            writer.close("failed")
        path.unlink(missing_ok=True)
    return rate


def stage_runner_path(
    source: SyntheticSource, calibration, spectra: int, folder: Path, flush_interval_s: float
) -> dict:
    """One spectrum at a time, as daq/runner.py's _append_spectrum does: analyse one, append two rows."""
    from daq import TrialWriter
    from daq.pipeline import analyse_counts

    counts_block, _ = source.block(spectra)
    path = folder / f"ingest-runner-path-{os.getpid()}.h5"
    writer = TrialWriter(path, trial_metadata(source, calibration, "runner-path"), flush_interval_s=flush_interval_s)
    saturation = source.full_scale_counts
    analyse_s = 0.0
    try:
        started = time.perf_counter()
        for i in range(spectra):
            counts = counts_block[i]
            t = time.perf_counter()
            result = analyse_counts(counts, source.dark, source.reference, calibration, TARGET, saturation)
            analyse_s += time.perf_counter() - t
            writer.append(
                "spectrometer",
                time=float(i),
                counts=counts,
                integration_time=0.001,
                averages=1,
                saturated_pixels=0,
                dark_index=0,
                reference_index=0,
                flag=0,
            )
            writer.append(
                "analysis",
                time=float(i),
                concentration=result.concentration_g_per_L[0],
                sigma=result.sigma_g_per_L[0],
                purity=result.purity[0],
                purity_sigma=result.purity_sigma[0],
                residual_rms=result.residual_rms[0],
            )
        writer.close("success")
        elapsed = time.perf_counter() - started
    finally:
        if not writer._closed:  # noqa: SLF001
            writer.close("failed")
        path.unlink(missing_ok=True)
    return {
        "spectra_per_s": spectra / elapsed,
        "analyse_one_us": analyse_s / spectra * 1e6,
        "total_per_spectrum_us": elapsed / spectra * 1e6,
    }


# --------------------------------------------------------------------------- the trial


def run_trial(
    source: SyntheticSource,
    calibration,
    analyse,
    spectra: int,
    block: int,
    path: Path,
    poll_s: float,
    rss_every: int,
    flush_interval_s: float,
    numba_threads: int | None = None,
    max_queued_MB: float | None = None,
    rate: float | None = None,
    quiet: bool = False,
) -> dict:
    """One trial; ``rate`` (spectra/s) paces the source instead of running it flat out."""
    from daq import TrialWriter

    process = psutil.Process()
    constants = _Constants()
    t0 = time.monotonic()
    bound = {"max_queued_bytes": int(max_queued_MB * 1e6)} if max_queued_MB else {}
    writer = TrialWriter(
        path, trial_metadata(source, calibration, f"ingest-{spectra}"), flush_interval_s=flush_interval_s, **bound
    )
    timings = WriterTimings(writer)
    cpu = ThreadCpu(process)
    cpu.names[writer._thread.native_id] = "writer"  # noqa: SLF001
    ctx = mp.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    reader = ctx.Process(target=reader_main, args=(str(path), t0, poll_s, child_end), name="swmr-reader")
    reader.start()
    reader_rss = []
    reader_cpu = [0.0]
    stop_sampling = threading.Event()

    def sample_reader() -> None:
        try:
            child = psutil.Process(reader.pid)
            while not stop_sampling.wait(1.0):
                rss_now = child.memory_info().rss
                if rss_now:  # 0 once the reader has exited
                    reader_rss.append(rss_now)
                times = child.cpu_times()
                reader_cpu[0] = times.user + times.system
        except psutil.Error:
            pass

    sampler = threading.Thread(target=sample_reader, daemon=True)
    sampler.start()
    time.sleep(1.0)  # let the reader import and open the file, so that it sees the first rows arrive
    rss: list[tuple[int, float, float, int]] = []  # (spectra, seconds, RSS bytes, writer queue items)
    state = {
        "produced": 0,
        "purity_sum": 0.0,
        "purity_nan": 0,
        "analysis_s": 0.0,
        "source_s": 0.0,
        "append_s": 0.0,
        "error": None,
        "last_counts": None,
        "last_times": None,
    }

    def produce() -> None:
        try:
            if numba_threads:
                import numba

                numba.set_num_threads(numba_threads)  # per thread: this one's parallel kernels
            previous = time.monotonic() - t0
            next_sample = 0
            paced_start = time.monotonic()
            while state["produced"] < spectra:
                n = min(block, spectra - state["produced"])
                if rate:
                    due = paced_start + (state["produced"] + n) / rate
                    time.sleep(max(0.0, due - time.monotonic()))
                a = time.perf_counter()
                counts, _ = source.block(n)
                now = time.monotonic() - t0
                times = previous + (now - previous) * np.arange(1, n + 1) / n
                previous = now
                b = time.perf_counter()
                result = analyse(counts)
                c = time.perf_counter()
                append_block(writer, times, counts, result, constants)
                d = time.perf_counter()
                state["source_s"] += b - a
                state["analysis_s"] += c - b
                state["append_s"] += d - c
                state["purity_sum"] += float(np.nansum(result.purity))
                state["purity_nan"] += int(np.isnan(result.purity).sum())
                state["produced"] += n
                if state["produced"] >= next_sample or state["produced"] == spectra:
                    rss.append(
                        (state["produced"], time.monotonic() - t0, process.memory_info().rss, writer._queue.qsize())
                    )  # noqa: SLF001 - the queue depth explains RSS
                    next_sample += rss_every
            state["last_counts"], state["last_times"] = counts.copy(), times
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            state["error"] = error

    machine_busy0, process_cpu0 = _busy_seconds(), _cpu_seconds(process)
    started = time.perf_counter()
    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    cpu.names[producer.native_id] = "producer"
    last_print = time.monotonic()
    while producer.is_alive():
        cpu.sample()
        producer.join(0.25)
        if not quiet and time.monotonic() - last_print >= 10:
            last_print = time.monotonic()
            done = state["produced"]
            print(
                f"  {done:,} spectra, {done / (time.perf_counter() - started):,.0f}/s, "
                f"RSS {process.memory_info().rss / 1e6:,.0f} MB",
                flush=True,
            )
    produced_s = time.perf_counter() - started
    cpu.sample()
    writer.close("success" if state["error"] is None else "failed")
    elapsed = time.perf_counter() - started
    machine_busy, process_cpu = _busy_seconds() - machine_busy0, _cpu_seconds(process) - process_cpu0
    if state["error"] is not None:
        stop_process(reader, timeout_s=5)
        raise state["error"]
    reader_out = parent_end.recv() if parent_end.poll(120) else {"error": "reader sent nothing in 120 s"}
    reader.join(30)  # it ends by itself once it has seen the closed file and sent its figures
    stop_process(reader, timeout_s=5)  # one that has not is not left behind
    stop_sampling.set()
    sampler.join()
    out = {
        "spectra": spectra,
        "block": block,
        "elapsed_s": elapsed,
        "spectra_per_s": spectra / elapsed,
        "producer_done_s": produced_s,
        "close_s": elapsed - produced_s,
        "producer_source_s": state["source_s"],
        "producer_analysis_s": state["analysis_s"],
        "producer_append_s": state["append_s"],
        "rows_written_by_writer": dict(writer.rows_written),
        "reader": reader_out,
        "file_GB": path.stat().st_size / 1e9,
        "thread_cpu_s": cpu.totals(),
        "writer_steps": timings.summary(),
        "cores_used": {
            "this process": process_cpu / elapsed,
            "SWMR reader": reader_cpu[0] / elapsed,
            "other processes": max(0.0, machine_busy - process_cpu - reader_cpu[0]) / elapsed,
        },
        "reader_rss_MB": {"first": reader_rss[0] / 1e6, "last": reader_rss[-1] / 1e6, "max": max(reader_rss) / 1e6}
        if reader_rss
        else {},
        "rss_samples": [(s, round(t, 3), round(r / 1e6, 1), q) for s, t, r, q in rss],
    }
    out["rss_MB"] = rss_summary(rss)
    out["checks"] = verify(path, spectra, state)
    return out


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _busy_seconds() -> float:
    """CPU seconds spent by everything on the machine (all cores), not idle or waiting for I/O."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.25, window_s: float = 3.0) -> float:
    """Wait (up to ``max_wait_s``) until other processes use under ``threshold_cores`` over ``window_s``.

    For shared machines: returns the cores other processes used in the last window.
    """
    me = psutil.Process()
    deadline = time.monotonic() + max_wait_s
    while True:
        busy0, mine0 = _busy_seconds(), _cpu_seconds(me)
        time.sleep(window_s)
        others = max(0.0, (_busy_seconds() - busy0) - (_cpu_seconds(me) - mine0)) / window_s
        if others < threshold_cores or time.monotonic() >= deadline:
            return others


class ThreadCpu:
    """CPU seconds (user + system) per thread, sampled while they live (a finished thread's time is gone)."""

    def __init__(self, process: psutil.Process):
        self.process = process
        self.names: dict[int, str] = {threading.main_thread().native_id: "main"}
        self.seconds: dict[int, float] = {}

    def sample(self) -> None:
        for t in self.process.threads():
            self.seconds[t.id] = t.user_time + t.system_time

    def totals(self) -> dict:
        out = {"producer": 0.0, "writer": 0.0, "main": 0.0, "other (numba workers, h5py, reader pipe)": 0.0}
        for tid, seconds in self.seconds.items():
            out[self.names.get(tid, "other (numba workers, h5py, reader pipe)")] += seconds
        return out


class WriterTimings:
    """Wall time the writer thread spends in each step: measured by wrapping its methods on this instance.

    Observation only: the wrapped methods run unchanged (``_write``: build blocks and h5py writes,
    ``flush``: H5Fflush for SWMR visibility, ``_fsync``: flush + os.fsync).
    """

    def __init__(self, writer):
        self.steps = {"write": [], "flush": [], "fsync": []}
        writer._write = self._timed(writer._write, "write")  # noqa: SLF001
        writer._fsync = self._timed(writer._fsync, "fsync")  # noqa: SLF001
        writer._file.flush = self._timed(writer._file.flush, "flush")  # noqa: SLF001

    def _timed(self, method, name):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.steps[name].append(time.perf_counter() - started)

        return timed

    def summary(self) -> dict:
        return {
            name: {
                "calls": len(v),
                "total_s": float(sum(v)),
                "max_s": float(max(v)) if v else 0.0,
                "median_ms": float(statistics.median(v) * 1e3) if v else 0.0,
            }
            for name, v in self.steps.items()
        }


def rss_summary(samples) -> dict:
    values = [r / 1e6 for _, _, r, _ in samples]
    if not values:
        return {}
    tenth = values[len(values) // 10 :]
    spectra = np.array([s for s, *_ in samples][len(values) // 10 :], dtype=float)
    slope = float(np.polyfit(spectra, tenth, 1)[0] * 1e5) if len(tenth) >= 3 else float("nan")
    return {
        "first": values[0],
        "median": statistics.median(values),
        "last": values[-1],
        "max": max(values),
        "after_10pct_min": min(tenth),
        "after_10pct_max": max(tenth),
        "slope_after_10pct_MB_per_100k_spectra": slope,
        "max_queue_items": max(q for *_, q in samples),
    }


def verify(path: Path, spectra: int, state: dict) -> dict:
    """No row dropped, none duplicated, nothing changed on the way."""
    from daq import open_trial

    with open_trial(path) as trial:
        rows = {name: trial.rows(name) for name in ("spectrometer", "analysis")}
        t_spec = trial.dataset("spectrometer", "time")[:]
        t_ana = trial.dataset("analysis", "time")[:]
        purity = trial.dataset("analysis", "purity")[:]
        n_last = len(state["last_times"])
        last_counts = trial.dataset("spectrometer", "counts")[spectra - n_last : spectra]
        status = trial.state
    checks = {
        "rows": rows,
        "no_row_dropped": rows["spectrometer"] == spectra and rows["analysis"] == spectra,
        "time_strictly_increasing": bool(np.all(np.diff(t_spec) > 0)),
        "times_equal_in_both_tables": bool(np.array_equal(t_spec, t_ana)),
        "purity_sum_matches": bool(math.isclose(float(np.nansum(purity)), state["purity_sum"], rel_tol=1e-9)),
        "purity_nan": int(np.isnan(purity).sum()),
        "purity_nan_produced": state["purity_nan"],
        "last_block_counts_identical": bool(np.array_equal(last_counts, state["last_counts"])),
        "last_block_times_identical": bool(np.array_equal(t_spec[spectra - n_last :], state["last_times"])),
        "state": status,
    }
    checks["ok"] = (
        all(
            checks[k]
            for k in (
                "no_row_dropped",
                "time_strictly_increasing",
                "times_equal_in_both_tables",
                "purity_sum_matches",
                "last_block_counts_identical",
                "last_block_times_identical",
            )
        )
        and status == "success"
    )
    return checks


# --------------------------------------------------------------------------- main


def machine() -> dict:
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_avg_before": os.getloadavg(),
        "ram_GB": psutil.virtual_memory().total / 1e9,
    }


def print_summary(figures: dict) -> None:
    m = figures["machine"]
    print(
        f"\n== ingest benchmark ({m['date']}, {m['machine']}, {m['cpus']} CPUs, Python {m['python']}, "
        f"load before {m['load_avg_before'][0]:.2f}) =="
    )
    for label, runs in figures.get("stages", {}).items():
        if isinstance(runs[0], dict):
            rates = [r["spectra_per_s"] for r in runs]
            one = statistics.median(r["analyse_one_us"] for r in runs)
            total = statistics.median(r["total_per_spectrum_us"] for r in runs)
            extra = f"   (analyse one spectrum {one:.0f} us, all per spectrum {total:.0f} us)"
        else:
            rates, extra = runs, ""
        print(f"  {label:48s} median {statistics.median(rates):>9,.0f}/s, best {max(rates):>9,.0f}/s{extra}")
    trial = figures.get("trial")
    if trial:
        ok = "meets" if trial["spectra_per_s"] >= TARGET_RATE else "MISSES"
        print(
            f"  trial: {trial['spectra']:,} spectra, block {trial['block']}, analysis {figures['analysis']}: "
            f"{trial['spectra_per_s']:,.0f} spectra/s end to end ({ok} >= {TARGET_RATE:,.0f}); "
            f"{trial['elapsed_s']:.1f} s ({trial['close_s']:.2f} s of it closing); file {trial['file_GB']:.2f} GB"
        )
        busy = trial["producer_done_s"]
        print(
            f"  producer thread time: source {trial['producer_source_s'] / busy:.0%}, "
            f"analysis {trial['producer_analysis_s'] / busy:.0%}, append (incl. waiting on a full queue) "
            f"{trial['producer_append_s'] / busy:.0%}"
        )
        print(
            "  cores used during the trial (of "
            + str(m["cpus"])
            + "): "
            + ", ".join(f"{k} {v:.2f}" for k, v in trial["cores_used"].items())
        )
        cpu = trial["thread_cpu_s"]
        print(
            "  CPU seconds by thread: "
            + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
            + f" over {trial['elapsed_s']:.1f} s wall"
        )
        print(
            "  writer thread wall time: "
            + "; ".join(
                f"{k} {v['total_s']:.1f} s in {v['calls']} calls "
                f"(median {v['median_ms']:.1f} ms, max {v['max_s'] * 1e3:.0f} ms)"
                for k, v in trial["writer_steps"].items()
            )
        )
        print(f"  checks: {json.dumps(trial['checks'])}")
        r = trial["rss_MB"]
        print(
            f"  RSS MB (writer process): first {r['first']:.0f}, median {r['median']:.0f}, last {r['last']:.0f}, "
            f"max {r['max']:.0f}; after the first 10 %: {r['after_10pct_min']:.0f}..{r['after_10pct_max']:.0f}, "
            f"trend {r['slope_after_10pct_MB_per_100k_spectra']:+.1f} MB per 100k spectra; "
            f"writer queue max {r['max_queue_items']} items"
        )
        reader = trial["reader"]
        for name in ("spectrometer", "analysis"):
            lat = reader.get(f"latency_{name}_s", {})
            if lat:
                print(
                    f"  latency {name:12s} acquisition -> SWMR reader: p50 {lat['p50'] * 1e3:.0f} ms, "
                    f"p90 {lat['p90'] * 1e3:.0f} ms, p99 {lat['p99'] * 1e3:.0f} ms, p99.9 {lat['p99.9'] * 1e3:.0f} "
                    f"ms, max {lat['max'] * 1e3:.0f} ms over {lat['n']:,} rows"
                )
        print(
            f"  reader: {reader.get('polls')} polls, refresh {reader.get('refresh_ms', {}).get('p50', 0):.1f} ms "
            f"median, rows seen {reader.get('rows_seen')}, RSS {trial['reader_rss_MB']}"
        )
    paced = figures.get("paced")
    if paced:
        print(
            f"  paced at {paced['rate']:g} spectra/s, one spectrum per append: {paced['spectra']:,} spectra, "
            f"checks ok: {paced['checks']['ok']}"
        )
        for name in ("spectrometer", "analysis"):
            lat = paced["reader"].get(f"latency_{name}_s", {})
            if lat:
                print(
                    f"    latency {name:12s} p50 {lat['p50'] * 1e3:.0f} ms, p90 {lat['p90'] * 1e3:.0f} ms, "
                    f"p99 {lat['p99'] * 1e3:.0f} ms, max {lat['max'] * 1e3:.0f} ms"
                )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spectra",
        type=int,
        default=200_000,
        help="spectra in the trial (default 200,000; the target's figure is 1,000,000)",
    )
    parser.add_argument("--block", type=int, default=1024, help="spectra per block (default 1024)")
    parser.add_argument("--out", type=Path, help="folder for the trial file (default: the system temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the trial file")
    parser.add_argument(
        "--analysis",
        choices=("pipeline", "fused", "fused-nogil"),
        default="pipeline",
        help="live analysis in the trial: daq.pipeline.analyse_counts as it is in the tree "
        "(default), the fused analysis.quantify_counts kernel + oxide_purity called here "
        "directly, or that kernel compiled nogil (prototype of a kernel change)",
    )
    parser.add_argument(
        "--max-queued-MB", type=float, help="the writer's queue bound in MB (default: TrialWriter's, 64 MB)"
    )
    parser.add_argument("--numba-threads", type=int, help="numba threads of the producer thread (default: all)")
    parser.add_argument("--stage-spectra", type=int, default=100_000, help="spectra per stage (default 100,000)")
    parser.add_argument(
        "--runner-spectra", type=int, default=5_000, help="spectra for the one-at-a-time runner path (default 5,000)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each stage; median and best reported (3)")
    parser.add_argument("--stages-only", action="store_true", help="measure the stages, not the trial")
    parser.add_argument("--no-stages", action="store_true", help="the trial only")
    parser.add_argument(
        "--paced",
        default="20:30",
        metavar="RATE:SECONDS",
        help="after the trial, latency at a steady RATE spectra/s for SECONDS, one spectrum per "
        "analyse + append as the runner does (default 20:30; '' to skip)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on a shared machine: before each measurement wait up to SECONDS for other processes "
        "to use < 0.25 core (default 0: do not wait)",
    )
    parser.add_argument("--poll", type=float, default=0.05, help="SWMR reader poll interval, s (default 0.05)")
    parser.add_argument("--flush-interval", type=float, default=0.5, help="TrialWriter flush_interval_s (0.5)")
    parser.add_argument("--rss-every", type=int, help="sample RSS every N spectra (default spectra / 200)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args()

    folder = args.out or Path(tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    source = SyntheticSource()
    needed, free = check_disk(folder, 0 if args.stages_only else args.spectra, source.pixels, len(ANALYTES))
    print(f"{folder}: {free / 1e9:.1f} GB free, this run needs about {needed / 1e9:.1f} GB", flush=True)
    figures = {
        "machine": machine(),
        "analysis": args.analysis,
        "pixels": source.pixels,
        "analytes": list(ANALYTES),
        "block": args.block,
    }
    calibration = source.calibration()
    analysers = {kind: analysis_function(kind, calibration, source) for kind in ("pipeline", "fused")}
    warm, _ = source.block(args.block)
    for analyse in analysers.values():  # numba kernels load from cache or compile here, not in a measurement
        analyse(warm)
        analyse(warm[:1])

    a, b = analysers["pipeline"](warm), analysers["fused"](warm)
    figures["fused_vs_pipeline"] = {
        "max_abs_purity_diff": float(np.nanmax(np.abs(a.purity - b.purity))),
        "max_conc_diff_over_sigma": float(
            np.nanmax(np.abs(a.concentration_g_per_L - b.concentration_g_per_L) / a.sigma_g_per_L)
        ),
        "masked_pixels_equal": bool(np.array_equal(a.masked_pixels, b.masked_pixels)),
    }
    print(f"fused kernel vs daq.pipeline.analyse_counts on one block: {figures['fused_vs_pipeline']}", flush=True)

    if not args.no_stages:
        stage_n = args.stage_spectra
        print(f"stages ({stage_n:,} spectra each, block {args.block}) ...", flush=True)
        stages: dict[str, list] = {}
        for repeat in range(args.repeat):  # interleaved, so that a burst of load elsewhere hits all stages alike
            runs = {
                "source alone": lambda: stage_source(source, stage_n, args.block),
                "source + analysis (daq.pipeline.analyse_counts)": lambda: stage_analysis(
                    source, analysers["pipeline"], stage_n, args.block
                ),
                "source + analysis (fused quantify_counts)": lambda: stage_analysis(
                    source, analysers["fused"], stage_n, args.block
                ),
                "source + HDF5, no analysis": lambda: stage_writer_only(
                    source, calibration, stage_n, args.block, folder, args.flush_interval
                ),
                "runner path: 1 spectrum per analyse + append": lambda: stage_runner_path(
                    source, calibration, args.runner_spectra, folder, args.flush_interval
                ),
            }
            for label, run in runs.items():
                if args.quiet_wait:
                    wait_for_quiet(args.quiet_wait)
                stages.setdefault(label, []).append(run())
            print(f"  repeat {repeat + 1}/{args.repeat} done (load {os.getloadavg()[0]:.2f})", flush=True)
        figures["stages"] = stages
        figures["stage_spectra"] = stage_n

    if not args.stages_only:
        path = folder / f"ingest-{args.spectra}-{os.getpid()}.h5"
        rss_every = args.rss_every or max(args.block, args.spectra // 200)
        print(
            f"trial: {args.spectra:,} spectra of {source.pixels} px -> {path} (analysis: {args.analysis}) ...",
            flush=True,
        )
        analyse = analysers["fused" if args.analysis == "fused-nogil" else args.analysis]
        if args.analysis == "fused-nogil":
            reference = analyse(warm)
            release_gil_in_counts_kernel()
            check = analyse(warm)  # compiles the wrapper here; same numbers as the shipped kernel
            if not np.array_equal(check.concentration_g_per_L, reference.concentration_g_per_L, equal_nan=True):
                raise SystemExit("the nogil wrapper changed the numbers")
        if args.quiet_wait:
            others = wait_for_quiet(args.quiet_wait)
            print(f"  other processes used {others:.2f} cores just before the trial", flush=True)
        figures["numba_threads"] = args.numba_threads
        figures["max_queued_MB"] = args.max_queued_MB
        try:
            figures["trial"] = run_trial(
                source,
                calibration,
                analyse,
                args.spectra,
                args.block,
                path,
                args.poll,
                rss_every,
                args.flush_interval,
                args.numba_threads,
                args.max_queued_MB,
            )
        finally:
            if not args.keep:
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".writing").unlink(missing_ok=True)
        if args.paced:
            rate, seconds = (float(v) for v in args.paced.split(":"))
            paced_n = max(1, int(rate * seconds))
            path = folder / f"ingest-paced-{os.getpid()}.h5"
            print(
                f"paced: {paced_n:,} spectra at {rate:g}/s, one per analyse + append (the runner's way) ...", flush=True
            )
            try:
                figures["paced"] = run_trial(
                    source,
                    calibration,
                    analyse,
                    paced_n,
                    1,
                    path,
                    args.poll,
                    max(1, paced_n // 50),
                    args.flush_interval,
                    rate=rate,
                    quiet=True,
                )
                figures["paced"]["rate"] = rate
            finally:
                path.unlink(missing_ok=True)
                path.with_name(path.name + ".writing").unlink(missing_ok=True)
        figures["machine"]["load_avg_after"] = os.getloadavg()

    print_summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    runs = [figures[k] for k in ("trial", "paced") if k in figures]
    return 0 if all(run["checks"]["ok"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
