"""Ingest benchmark: unthrottled spectra through live analysis into an HDF5 trial file, read live over SWMR.

    .venv/bin/python benchmarks/ingest.py                      # 200,000 spectra (~1.7 GB, deleted after)
    .venv/bin/python benchmarks/ingest.py --spectra 1000000    # the 1M-spectrum trial of the targets (~8.4 GB)
    .venv/bin/python benchmarks/ingest.py --spectra 50000 --stages-only
    .venv/bin/python benchmarks/ingest.py --analysis fused --max-queued-MB 64
    .venv/bin/python benchmarks/ingest.py --no-stages --streams 3 --controllers 3 --sensors 3   # a cascade station

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
5. several instruments (``--streams N`` > 1, ``--controllers N``, ``--sensors N``): after the
   single-stream trial, the same total of spectra split among N spectrometer streams (raffinate,
   strip, feed, ...), each in its own producer thread with its own source, analysis and
   ``spectrometer:NAME`` / ``analysis:NAME`` tables, while furnace zones ``zone-1..`` and sensors
   (feed-ph, strip-flow, raffinate-ph, ...) are polled from their own threads at
   ``--instrument-hz`` (default 1, 2, 4 Hz in turn), one row per poll, as daq/runner.py does, all
   into one TrialWriter (format 2.0); after the paced run, the same with every stream at RATE.
   The reader times every table. Reported per table: rows, rows/s, latency (p50 / p99 / max),
   the longest ``append`` and the latest poll; in total: spectra/s, rows/s, writer queue depth
   (items and MB), RSS; and the ratios to the single-stream runs of the same invocation. Checks
   per table: each stream's as in 4; each zone's and sensor's rows == rows produced, times
   strictly increasing, and its times and values read back exactly as produced.
   ``--one-producer`` (a control) makes every stream's blocks in turn from one thread.

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
import dataclasses
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
from dataclasses import dataclass
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
    import inspect

    import numba

    from analysis import _nnls_kernel

    shipped = _nnls_kernel.quantify_counts_batch
    # a wrapper of the kernel's own signature (which changes with the model), compiled nogil
    names = ", ".join(inspect.signature(shipped.py_func).parameters)
    namespace = {"shipped": shipped}
    exec(f"def quantify_counts_batch_nogil({names}):\n    shipped({names})\n", namespace)  # noqa: S102
    quantify_counts_batch_nogil = numba.njit(nogil=True)(namespace["quantify_counts_batch_nogil"])

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


def append_block(
    writer, times, counts, result, constants: _Constants, spectrometer: str = "spectrometer", analysis: str = "analysis"
) -> None:
    """One block: spectrometer rows, then the analysis rows (what the runner appends per spectrum), to the
    tables of one stream (``spectrometer:NAME``, ``analysis:NAME``; default: the primary ones)."""
    n = len(times)
    writer.append(spectrometer, time=times, counts=counts, **constants.spectrometer(n))
    writer.append(
        analysis,
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


def reader_main(
    path: str, t0: float, poll_s: float, conn, tables: tuple[str, ...] = ("spectrometer", "analysis"), ready=None
) -> None:
    """Follow the trial like the app does; send back latency percentiles per table and what it saw.

    ``tables``: the table keys to follow (every table's new rows are read at each poll, as the app's
    Live page does for every instrument). ``ready`` (an event) is set once the file is open for SWMR.
    """
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
    if ready is not None:
        ready.set()
    marks = {name: 0 for name in tables}
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
    out["latency_s"] = {}
    for name, parts in latencies.items():
        values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        out["latency_s"][name] = _percentiles(values)
        if name in ("spectrometer", "analysis"):
            out[f"latency_{name}_s"] = out["latency_s"][name]  # the single-stream run's keys, as before
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


@dataclass
class Stream:
    """One spectrometer stream of a trial: its source, live analysis, table keys and spectra to make."""

    name: str
    source: SyntheticSource
    analyse: object
    spectra: int
    spectrometer_key: str = "spectrometer"
    analysis_key: str = "analysis"


@dataclass
class Poller:
    """A temperature controller or a sensor polled at ``hz`` from its own thread, one row per poll (the runner's
    way: daq/_zone.py, daq/_sensor_log.py)."""

    name: str
    kind: str  # "controller" | "sensor"
    key: str  # its table key: furnace:<name> or sensor:<name>
    hz: float
    channels: tuple[tuple[str, str, str], ...] = ()  # a sensor's (name, units, long name)
    index: int = 0

    def row(self, n: int, now_s: float) -> dict:
        """Row ``n`` (closed formulas, so that what is read back can be compared with what was produced)."""
        if self.kind == "controller":
            setpoint = 750.0 + 25.0 * self.index
            return {
                "time": now_s,
                "temperature": setpoint - 5.0 + 0.001 * n,
                "setpoint": setpoint,
                "working_setpoint": setpoint - 2.0 + 0.0005 * n,
                "output": 40.0 + (n % 7),
                "status_word": self.index,
                "flag": 0,
            }
        row = {"time": now_s}
        for number, (channel, _, _) in enumerate(self.channels):
            row[channel] = 2.0 + self.index + 0.1 * number + 1e-4 * n
            row[f"{channel}_state"] = 0
        row["flag"] = 0
        return row

    @property
    def value_column(self) -> str:
        """The column whose every value is compared with what was produced."""
        return "temperature" if self.kind == "controller" else self.channels[0][0]


STREAM_NAMES = ("raffinate", "strip", "feed")
SENSOR_CHANNELS = (
    ("feed-ph", (("pH", "1", "pH of the feed"), ("conductivity", "mS/cm", "conductivity of the feed"))),
    ("strip-flow", (("flow", "L/h", "strip liquor flow"), ("mass", "kg", "strip liquor collected"))),
    ("raffinate-ph", (("pH", "1", "pH of the raffinate"),)),
)


def make_streams(count: int, spectra_each: int, first_source: SyntheticSource, calibration, kind: str) -> list[Stream]:
    """``count`` streams (raffinate, strip, feed, cell-4, ...), each its own source (another seed) and analysis.

    The first stream uses ``first_source``; the others get their own source with a smaller noise pool
    (8 MB instead of 32 MB: RSS grows by 2 x 8 MB + their dark/reference, not by the pool). One calibration
    serves them all: the bands are the same, each stream's own dark and blank reference are used.
    """
    streams = []
    for i in range(count):
        name = STREAM_NAMES[i] if i < len(STREAM_NAMES) else f"cell-{i + 1}"
        source = first_source if i == 0 else SyntheticSource(seed=100 + i, noise_pool_values=1 << 21)
        streams.append(
            Stream(
                name,
                source,
                analysis_function(kind, calibration, source),
                spectra_each,
                f"spectrometer:{name}",
                f"analysis:{name}",
            )
        )
    return streams


def make_pollers(controllers: int, sensors: int, rates_hz: tuple[float, ...]) -> list[Poller]:
    """Zones zone-1..N and sensors feed-ph, strip-flow, raffinate-ph, sensor-4, ...; rates assigned in turn."""
    pollers = []
    for i in range(controllers):
        pollers.append(Poller(f"zone-{i + 1}", "controller", f"furnace:zone-{i + 1}", 0.0, index=i))
    for i in range(sensors):
        name, channels = (
            SENSOR_CHANNELS[i] if i < len(SENSOR_CHANNELS) else (f"sensor-{i + 1}", (("value", "1", "reading"),))
        )
        pollers.append(Poller(name, "sensor", f"sensor:{name}", 0.0, channels, index=i))
    for i, poller in enumerate(pollers):
        poller.hz = rates_hz[i % len(rates_hz)]
    return pollers


def station_metadata(source: SyntheticSource, calibration, trial_id: str, streams: list[Stream], pollers: list[Poller]):
    """The trial's metadata, format 2.0: every stream's spectrometer and analysis, every zone and sensor."""
    from daq.store import ControllerRecord, SensorRecord, SpectrometerRecord, StreamRecord

    base = trial_metadata(source, calibration, trial_id)
    zones = [p for p in pollers if p.kind == "controller"]
    arrays = dict(base.calibration_arrays)
    more = {}
    if zones:
        more["furnace_name"] = zones[0].name
        more["furnace_attributes"] = {"driver": "benchmark"}
        more["controllers"] = tuple(ControllerRecord(z.name, {"driver": "benchmark"}) for z in zones[1:])
    return dataclasses.replace(
        base,
        spectrometer_name=streams[0].name,
        spectrometers=tuple(
            SpectrometerRecord(s.name, s.source.wavelength_nm, s.source.full_scale_counts) for s in streams[1:]
        ),
        sensors=tuple(SensorRecord(p.name, p.channels, {"driver": "benchmark"}) for p in pollers if p.kind == "sensor"),
        streams=tuple(
            StreamRecord(
                s.name,
                TARGET,
                tuple(calibration.analytes),
                covered_elements=tuple(calibration.analytes),
                calibration_id=calibration.calibration_id,
                calibration_arrays=arrays,
            )
            for s in streams[1:]
        ),
        **more,
    )


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
    streams: list[Stream] | None = None,
    pollers: list[Poller] = (),
    one_producer: bool = False,
) -> dict:
    """One trial; ``rate`` (spectra/s, per stream) paces the sources instead of running them flat out.

    Without ``streams``: the single-stream trial (one spectrometer, its analysis, ``spectra`` spectra from
    ``source`` through ``analyse``; tables ``spectrometer`` and ``analysis``, a file of the older form).
    With ``streams`` (and ``pollers``): every stream in its own producer thread and every poller in its own
    thread, all appending to one :class:`daq.TrialWriter`; ``source``, ``analyse`` and ``spectra`` are then
    the first stream's (unused). ``one_producer``: every stream's blocks in turn from one producer thread
    instead (a control: several tables, but no more producer threads than the single-stream run).
    """
    from daq import TrialWriter

    single = streams is None
    if single:
        streams = [Stream("spectrometer", source, analyse, spectra)]
        metadata = trial_metadata(source, calibration, f"ingest-{spectra}")
    else:
        metadata = station_metadata(source, calibration, f"ingest-multi-{spectra}", streams, list(pollers))
    total_spectra = sum(s.spectra for s in streams)
    process = psutil.Process()
    constants = _Constants()
    t0 = time.monotonic()
    bound = {"max_queued_bytes": int(max_queued_MB * 1e6)} if max_queued_MB else {}
    writer = TrialWriter(path, metadata, flush_interval_s=flush_interval_s, **bound)
    timings = WriterTimings(writer)
    cpu = ThreadCpu(process)
    cpu.names[writer._thread.native_id] = "writer"  # noqa: SLF001
    tables = tuple(k for s in streams for k in (s.spectrometer_key, s.analysis_key)) + tuple(p.key for p in pollers)
    ctx = mp.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    ready = ctx.Event()
    reader = ctx.Process(target=reader_main, args=(str(path), t0, poll_s, child_end, tables, ready), name="swmr-reader")
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
    # let the reader import and open the file, so that it sees the first rows arrive (on a loaded machine the
    # spawn and the imports can take longer than the 1 s this waited before)
    if not ready.wait(60):
        stop_process(reader, timeout_s=5)
        raise RuntimeError("the SWMR reader did not open the trial file in 60 s")
    # (spectra of all streams, seconds, RSS bytes, writer queue items, writer queue bytes)
    rss: list[tuple[int, float, float, int, int]] = []
    rss_lock = threading.Lock()
    next_sample = [0]
    states = {
        s.name: {
            "produced": 0,
            "purity_sum": 0.0,
            "purity_nan": 0,
            "analysis_s": 0.0,
            "source_s": 0.0,
            "append_s": 0.0,
            "append_max_s": 0.0,
            "error": None,
            "last_counts": None,
            "last_times": None,
            "done_s": None,
        }
        for s in streams
    }

    def sample_rss() -> None:
        with rss_lock:
            done = sum(st["produced"] for st in states.values())
            if done >= next_sample[0] or done == total_spectra:
                rss.append(
                    (
                        done,
                        time.monotonic() - t0,
                        process.memory_info().rss,
                        writer._queue.qsize(),
                        writer._queued_bytes,
                    )
                )  # noqa: SLF001 - the queue depth explains RSS
                next_sample[0] = done + rss_every

    def produce_block(stream: Stream) -> None:
        """The stream's next block: acquire, analyse, append its two tables."""
        state = states[stream.name]
        n = min(block, stream.spectra - state["produced"])
        if rate:
            due = state["paced_start"] + (state["produced"] + n) / rate
            time.sleep(max(0.0, due - time.monotonic()))
        a = time.perf_counter()
        counts, _ = stream.source.block(n)
        now = time.monotonic() - t0
        times = state["previous"] + (now - state["previous"]) * np.arange(1, n + 1) / n
        state["previous"] = now
        b = time.perf_counter()
        result = stream.analyse(counts)
        c = time.perf_counter()
        append_block(writer, times, counts, result, constants, stream.spectrometer_key, stream.analysis_key)
        d = time.perf_counter()
        state["source_s"] += b - a
        state["analysis_s"] += c - b
        state["append_s"] += d - c
        state["append_max_s"] = max(state["append_max_s"], d - c)
        state["purity_sum"] += float(np.nansum(result.purity))
        state["purity_nan"] += int(np.isnan(result.purity).sum())
        state["produced"] += n
        sample_rss()
        if state["produced"] == stream.spectra:
            state["last_counts"], state["last_times"] = counts.copy(), times
            state["done_s"] = time.perf_counter() - started

    def produce(mine: list[Stream]) -> None:
        """A producer thread: its streams' blocks in turn until each has made its spectra."""
        try:
            if numba_threads:
                import numba

                numba.set_num_threads(numba_threads)  # per thread: this one's parallel kernels
            for stream in mine:
                states[stream.name]["previous"] = time.monotonic() - t0
                states[stream.name]["paced_start"] = time.monotonic()
            while True:
                todo = [s for s in mine if states[s.name]["produced"] < s.spectra]
                if not todo:
                    return
                for stream in todo:
                    produce_block(stream)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            states[mine[0].name]["error"] = error

    stop_polling = threading.Event()
    polled = {
        p.name: {"times": [], "values": [], "append_max_s": 0.0, "late_max_s": 0.0, "error": None} for p in pollers
    }

    def poll(poller: Poller, phase: float) -> None:
        record = polled[poller.name]
        period = 1.0 / poller.hz
        next_poll = time.monotonic() + phase * period  # the instruments do not poll in step
        stop_polling.wait(max(0.0, next_poll - time.monotonic()))
        try:
            n = 0
            while not stop_polling.is_set():
                record["late_max_s"] = max(record["late_max_s"], time.monotonic() - next_poll)
                row = poller.row(n, time.monotonic() - t0)
                a = time.perf_counter()
                writer.append(poller.key, **row)
                record["append_max_s"] = max(record["append_max_s"], time.perf_counter() - a)
                record["times"].append(row["time"])
                record["values"].append(row[poller.value_column])
                n += 1
                next_poll += period
                stop_polling.wait(max(0.0, next_poll - time.monotonic()))
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            record["error"] = error

    machine_busy0, process_cpu0 = _busy_seconds(), _cpu_seconds(process)
    started = time.perf_counter()
    poll_threads = [
        threading.Thread(target=poll, args=(p, (i + 0.5) / max(1, len(pollers))), name=f"poll:{p.name}")
        for i, p in enumerate(pollers)
    ]
    if single or not one_producer:
        groups = [[s] for s in streams]  # one thread per stream, as the runner does
    else:
        groups = [list(streams)]  # the control: every stream's blocks in turn from one thread
    producers = [
        threading.Thread(target=produce, args=(g,), name="producer" if single else f"producer:{g[0].name}")
        for g in groups
    ]
    for thread in poll_threads + producers:
        thread.start()
        cpu.names[thread.native_id] = thread.name
    last_print = time.monotonic()
    while any(p.is_alive() for p in producers):
        cpu.sample()
        if not single:
            sample_rss()  # also between blocks: one block per stream can take long when paced
        alive = next((p for p in producers if p.is_alive()), None)
        if alive is not None:
            alive.join(0.25)
        if not quiet and time.monotonic() - last_print >= 10:
            last_print = time.monotonic()
            done = sum(st["produced"] for st in states.values())
            print(
                f"  {done:,} spectra, {done / (time.perf_counter() - started):,.0f}/s, "
                f"RSS {process.memory_info().rss / 1e6:,.0f} MB",
                flush=True,
            )
    produced_s = time.perf_counter() - started
    stop_polling.set()
    for thread in poll_threads:
        thread.join()
    cpu.sample()
    errors = [st["error"] for st in states.values() if st["error"] is not None]
    errors += [r["error"] for r in polled.values() if r["error"] is not None]
    writer.close("success" if not errors else "failed")
    elapsed = time.perf_counter() - started
    machine_busy, process_cpu = _busy_seconds() - machine_busy0, _cpu_seconds(process) - process_cpu0
    if errors:
        stop_process(reader, timeout_s=5)
        raise errors[0]
    reader_out = parent_end.recv() if parent_end.poll(120) else {"error": "reader sent nothing in 120 s"}
    reader.join(30)  # it ends by itself once it has seen the closed file and sent its figures
    stop_process(reader, timeout_s=5)  # one that has not is not left behind
    stop_sampling.set()
    sampler.join()
    out = {
        "spectra": total_spectra,
        "block": block,
        "elapsed_s": elapsed,
        "spectra_per_s": total_spectra / elapsed,
        "producer_done_s": produced_s,
        "close_s": elapsed - produced_s,
        "producer_source_s": sum(st["source_s"] for st in states.values()),
        "producer_analysis_s": sum(st["analysis_s"] for st in states.values()),
        "producer_append_s": sum(st["append_s"] for st in states.values()),
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
        "rss_samples": [(s, round(t, 3), round(r / 1e6, 1), q, round(b / 1e6, 1)) for s, t, r, q, b in rss],
    }
    out["rss_MB"] = rss_summary(rss)
    if single:
        out["checks"] = verify(path, spectra, states["spectrometer"])
        return out
    # several instruments: figures per table, and the checks per table
    latency = reader_out.get("latency_s", {})
    table_figures = {}
    for s in streams:
        st = states[s.name]
        for key in (s.spectrometer_key, s.analysis_key):
            table_figures[key] = {
                "rows": st["produced"],
                "rows_per_s": st["produced"] / elapsed,
                "rows_per_s_while_producing": st["produced"] / st["done_s"],
                "append_max_ms": st["append_max_s"] * 1e3,
                "latency_s": latency.get(key, {}),
            }
    for p in pollers:
        record = polled[p.name]
        table_figures[p.key] = {
            "hz": p.hz,
            "rows": len(record["times"]),
            "rows_per_s": len(record["times"]) / produced_s,
            "append_max_ms": record["append_max_s"] * 1e3,
            "poll_late_max_ms": record["late_max_s"] * 1e3,
            "latency_s": latency.get(p.key, {}),
        }
    out["tables"] = table_figures
    out["streams"] = {
        s.name: {"spectra": s.spectra, "spectra_per_s": s.spectra / elapsed, "done_s": states[s.name]["done_s"]}
        for s in streams
    }
    out["total_rows"] = sum(t["rows"] for t in table_figures.values())
    out["total_rows_per_s"] = out["total_rows"] / elapsed
    out["checks"] = verify_tables(path, streams, states, pollers, polled)
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
            name = self.names.get(tid, "other (numba workers, h5py, reader pipe)")
            name = "pollers (zones, sensors)" if name.startswith("poll:") else name
            out[name] = out.get(name, 0.0) + seconds
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
    values = [sample[2] / 1e6 for sample in samples]
    if not values:
        return {}
    tenth = values[len(values) // 10 :]
    spectra = np.array([sample[0] for sample in samples][len(values) // 10 :], dtype=float)
    slope = float(np.polyfit(spectra, tenth, 1)[0] * 1e5) if len(tenth) >= 3 else float("nan")
    return {
        "first": values[0],
        "median": statistics.median(values),
        "last": values[-1],
        "max": max(values),
        "after_10pct_min": min(tenth),
        "after_10pct_max": max(tenth),
        "slope_after_10pct_MB_per_100k_spectra": slope,
        "max_queue_items": max(sample[3] for sample in samples),
        "max_queued_MB": max(sample[4] for sample in samples) / 1e6,
    }


def verify(
    path: Path, spectra: int, state: dict, spectrometer: str = "spectrometer", analysis: str = "analysis", trial=None
) -> dict:
    """No row dropped, none duplicated, nothing changed on the way (one stream's two tables)."""
    from daq import open_trial

    if trial is None:
        with open_trial(path) as trial:
            return verify(path, spectra, state, spectrometer, analysis, trial)
    rows = {name: trial.rows(name) for name in (spectrometer, analysis)}
    t_spec = trial.dataset(spectrometer, "time")[:]
    t_ana = trial.dataset(analysis, "time")[:]
    purity = trial.dataset(analysis, "purity")[:]
    n_last = len(state["last_times"])
    last_counts = trial.dataset(spectrometer, "counts")[spectra - n_last : spectra]
    status = trial.state
    checks = {
        "rows": rows,
        "no_row_dropped": rows[spectrometer] == spectra and rows[analysis] == spectra,
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


def verify_tables(path: Path, streams: list[Stream], states: dict, pollers: list[Poller], polled: dict) -> dict:
    """The checks of a trial with several instruments, per table: each stream's as :func:`verify`; each zone's and
    sensor's rows == rows produced, times strictly increasing, and its times and values read back as produced."""
    from daq import open_trial

    out = {"streams": {}, "instruments": {}}
    with open_trial(path) as trial:
        for s in streams:
            out["streams"][s.name] = verify(
                path, s.spectra, states[s.name], s.spectrometer_key, s.analysis_key, trial=trial
            )
        for p in pollers:
            produced_t = np.array(polled[p.name]["times"], dtype=float)
            produced_v = np.array(polled[p.name]["values"], dtype=float)
            rows = trial.rows(p.key)
            t = trial.dataset(p.key, "time")[:]
            v = trial.dataset(p.key, p.value_column)[:]
            checks = {
                "rows": rows,
                "rows_produced": len(produced_t),
                "no_row_dropped": rows == len(produced_t),
                "time_strictly_increasing": bool(np.all(np.diff(t) > 0)),
                "times_read_back": bool(np.array_equal(t, produced_t)),
                f"{p.value_column}_read_back": bool(np.array_equal(v, produced_v)),
            }
            checks["ok"] = all(checks[k] for k in checks if k not in ("rows", "rows_produced"))
            out["instruments"][p.name] = checks
        out["state"] = trial.state
    out["ok"] = (
        all(c["ok"] for c in out["streams"].values())
        and all(c["ok"] for c in out["instruments"].values())
        and out["state"] == "success"
    )
    return out


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

    for label, key in (("trial with several instruments", "multi"), ("paced with several instruments", "paced_multi")):
        if key in figures:
            print_several(label, figures[key])
    for kind, c in figures.get("comparison", {}).items():
        rate, rss, items, mb = (
            c["spectra_per_s"],
            c["rss_max_MB"],
            c["writer_queue_max_items"],
            c["writer_queue_max_MB"],
        )
        refresh, others = c["reader_refresh_ms_p50"], c["cores_used_by_other_processes"]
        print(
            f"  {kind}, several instruments / single stream: spectra/s {c['spectra_per_s_ratio']:.2f} "
            f"({rate['multi']:,.0f} / {rate['single']:,.0f}), RSS max {c['rss_max_ratio']:.2f} "
            f"({rss['multi']:.0f} / {rss['single']:.0f} MB), writer queue max {items['multi']} / {items['single']} "
            f"items ({mb['multi']:.1f} / {mb['single']:.1f} MB), reader refresh p50 {refresh['multi']:.1f} / "
            f"{refresh['single']:.1f} ms; other processes used {others['multi']:.2f} / {others['single']:.2f} cores"
        )
        for table, r in c["latency_ratio"].items():
            print(f"    latency ratio {table:26s} " + ", ".join(f"{q} {v:.2f}" for q, v in r.items()))
        print(
            "    targets: "
            + "; ".join(f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v}" for k, v in c["targets"].items())
        )


def print_several(label: str, run: dict) -> None:
    """One trial with several instruments: per table and in total."""
    print(
        f"  {label}: {run['spectra']:,} spectra in {len(run['streams'])} streams, "
        f"{run['spectra_per_s']:,.0f} spectra/s in total, {run['total_rows']:,} rows "
        f"({run['total_rows_per_s']:,.0f} rows/s) in {run['elapsed_s']:.1f} s "
        f"({run['close_s']:.2f} s of it closing); checks ok: {run['checks']['ok']}"
    )
    r, refresh = run["rss_MB"], run["reader"].get("refresh_ms", {})
    print(
        f"    RSS MB: first {r['first']:.0f}, median {r['median']:.0f}, max {r['max']:.0f}, trend "
        f"{r['slope_after_10pct_MB_per_100k_spectra']:+.1f} MB per 100k spectra; writer queue max "
        f"{r['max_queue_items']} items, {r['max_queued_MB']:.1f} MB; other processes used "
        f"{run['cores_used']['other processes']:.2f} cores; reader refresh p50 "
        f"{refresh.get('p50', 0):.1f} ms, p99 {refresh.get('p99', 0):.1f} ms"
    )
    print(
        "    writer thread: "
        + "; ".join(
            f"{k} {v['total_s']:.1f} s in {v['calls']} calls "
            f"(median {v['median_ms']:.1f} ms, max {v['max_s'] * 1e3:.0f} ms)"
            for k, v in run["writer_steps"].items()
        )
    )
    for key, t in run["tables"].items():
        lat = t["latency_s"]
        extra = f", {t['hz']:g} Hz, poll late max {t['poll_late_max_ms']:.0f} ms" if "hz" in t else ""
        latency = (
            f"latency p50 {lat['p50'] * 1e3:.0f} ms, p99 {lat['p99'] * 1e3:.0f} ms, max {lat['max'] * 1e3:.0f} ms"
            if lat
            else "latency: no rows seen"
        )
        print(
            f"    {key:26s} {t['rows']:>8,} rows {t['rows_per_s']:>9,.1f} rows/s, {latency}, "
            f"append max {t['append_max_ms']:.0f} ms{extra}"
        )
    bad = {
        name: {k: v for k, v in c.items() if v is False}
        for group in ("streams", "instruments")
        for name, c in run["checks"][group].items()
        if not c["ok"]
    }
    if bad:
        print(f"    FAILED checks: {bad}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
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
    several = parser.add_argument_group(
        "several instruments",
        "with --streams > 1, --controllers or --sensors, the trial and the paced run are each made twice in "
        "this invocation: single-stream as above, then with every instrument (format 2.0, one writer), and "
        "compared",
    )
    several.add_argument(
        "--streams",
        type=int,
        default=1,
        help="spectrometer streams (raffinate, strip, feed, ...), each its own thread, spectrometer:NAME and "
        "analysis:NAME tables; the flat-out trial splits --spectra among them (same total as the "
        "single-stream run); paced, each stream runs at RATE (default 1)",
    )
    several.add_argument(
        "--controllers", type=int, default=0, help="temperature controllers zone-1..N, each its own thread (0)"
    )
    several.add_argument(
        "--sensors", type=int, default=0, help="sensors feed-ph, strip-flow, raffinate-ph, ..., each its own thread (0)"
    )
    several.add_argument(
        "--instrument-hz",
        default="1,2,4",
        help="poll rates of the controllers then the sensors, assigned in turn (default 1,2,4 Hz)",
    )
    several.add_argument(
        "--one-producer",
        action="store_true",
        help="a control: make every stream's blocks in turn from one producer thread (several tables, one "
        "producer thread as in the single-stream run) instead of one thread per stream",
    )
    several.add_argument(
        "--switch-interval-ms",
        type=float,
        help="a probe: sys.setswitchinterval for this process (Python's default 5 ms), how long a thread "
        "holding the GIL keeps it when another asks for it",
    )
    return parser.parse_args(argv)


def several_instruments(args: argparse.Namespace) -> bool:
    return args.streams > 1 or args.controllers > 0 or args.sensors > 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures = run(args)
    print_summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0 if checks_ok(figures) else 1


def checks_ok(figures: dict) -> bool:
    runs = [figures[k] for k in ("trial", "paced", "multi", "paced_multi") if k in figures]
    return all(run["checks"]["ok"] for run in runs)


def run(args: argparse.Namespace) -> dict:
    """Every measurement ``args`` asks for; the figures (what ``--json`` writes)."""
    if args.streams < 1 or args.controllers < 0 or args.sensors < 0:
        raise SystemExit("--streams >= 1, --controllers >= 0, --sensors >= 0")
    rates_hz = tuple(float(v) for v in args.instrument_hz.split(","))
    if args.switch_interval_ms:
        sys.setswitchinterval(args.switch_interval_ms / 1e3)
    if not rates_hz or min(rates_hz) <= 0:
        raise SystemExit("--instrument-hz: one or more rates > 0, comma-separated")

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
    if several_instruments(args):
        figures["several_instruments"] = {
            "streams": args.streams,
            "controllers": args.controllers,
            "sensors": args.sensors,
            "instrument_hz": rates_hz,
            "one_producer": args.one_producer,
            "switch_interval_s": sys.getswitchinterval(),
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
        if several_instruments(args):
            each = args.spectra // args.streams
            streams = make_streams(args.streams, each, source, calibration, args.analysis.replace("-nogil", ""))
            pollers = make_pollers(args.controllers, args.sensors, rates_hz)
            path = folder / f"ingest-multi-{args.spectra}-{os.getpid()}.h5"
            print(
                f"trial with several instruments: {args.streams} streams x {each:,} spectra, "
                f"{args.controllers} controllers, {args.sensors} sensors "
                f"({', '.join(f'{p.name} {p.hz:g} Hz' for p in pollers) or 'none'}) -> {path} ...",
                flush=True,
            )
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait)
            try:
                figures["multi"] = run_trial(
                    source,
                    calibration,
                    analyse,
                    each,
                    args.block,
                    path,
                    args.poll,
                    max(args.block, each * args.streams // 200),
                    args.flush_interval,
                    args.numba_threads,
                    args.max_queued_MB,
                    streams=streams,
                    pollers=pollers,
                    one_producer=args.one_producer,
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
            if several_instruments(args):
                streams = make_streams(args.streams, paced_n, source, calibration, args.analysis.replace("-nogil", ""))
                pollers = make_pollers(args.controllers, args.sensors, rates_hz)
                path = folder / f"ingest-paced-multi-{os.getpid()}.h5"
                print(
                    f"paced with several instruments: {args.streams} streams x {paced_n:,} spectra at {rate:g}/s "
                    f"each, {len(pollers)} other instruments ...",
                    flush=True,
                )
                try:
                    figures["paced_multi"] = run_trial(
                        source,
                        calibration,
                        analyse,
                        paced_n,
                        1,
                        path,
                        args.poll,
                        max(1, paced_n * args.streams // 50),
                        args.flush_interval,
                        rate=rate,
                        quiet=True,
                        streams=streams,
                        pollers=pollers,
                        one_producer=args.one_producer,
                    )
                    figures["paced_multi"]["rate"] = rate
                finally:
                    path.unlink(missing_ok=True)
                    path.with_name(path.name + ".writing").unlink(missing_ok=True)
        figures["machine"]["load_avg_after"] = os.getloadavg()
        if several_instruments(args):
            figures["comparison"] = {
                kind: compare(figures[single], figures[multi], paced=kind == "paced")
                for kind, single, multi in (("flat out", "trial", "multi"), ("paced", "paced", "paced_multi"))
                if single in figures and multi in figures
            }
    return figures


def compare(single: dict, multi: dict, paced: bool = False) -> dict:
    """Several instruments against the single-stream run of the same invocation: ratios (multi / single), and
    each table against the single-stream targets.

    Latency ratios: a ``spectrometer:*`` table against the single run's ``spectrometer``, an ``analysis:*``
    table against its ``analysis``, a zone's or a sensor's against its ``spectrometer`` table. ``paced``: the
    rate is the one set, so only the latency is held against its target.
    """
    single_latency = single["reader"].get("latency_s", {})
    out = {
        "spectra_per_s": {"single": single["spectra_per_s"], "multi": multi["spectra_per_s"]},
        "spectra_per_s_ratio": multi["spectra_per_s"] / single["spectra_per_s"],
        "rss_max_MB": {"single": single["rss_MB"]["max"], "multi": multi["rss_MB"]["max"]},
        "rss_max_ratio": multi["rss_MB"]["max"] / single["rss_MB"]["max"],
        "writer_queue_max_items": {
            "single": single["rss_MB"]["max_queue_items"],
            "multi": multi["rss_MB"]["max_queue_items"],
        },
        "writer_queue_max_MB": {"single": single["rss_MB"]["max_queued_MB"], "multi": multi["rss_MB"]["max_queued_MB"]},
        "reader_refresh_ms_p50": {
            "single": single["reader"].get("refresh_ms", {}).get("p50"),
            "multi": multi["reader"].get("refresh_ms", {}).get("p50"),
        },
        "cores_used_by_other_processes": {
            "single": single["cores_used"]["other processes"],
            "multi": multi["cores_used"]["other processes"],
        },
        "latency_ratio": {},
        "targets": {
            "no row dropped, checks ok": multi["checks"]["ok"],
            "RSS trend after the first 10 % (MB per 100k spectra)": multi["rss_MB"][
                "slope_after_10pct_MB_per_100k_spectra"
            ],
        },
    }
    if not paced:
        out["targets"]["total spectra/s >= 10,000"] = multi["spectra_per_s"] >= TARGET_RATE
    worst = 0.0
    for key, figures in multi["tables"].items():
        lat = figures["latency_s"]
        base = single_latency.get("analysis" if key.startswith("analysis") else "spectrometer", {})
        if lat and base:
            out["latency_ratio"][key] = {q: lat[q] / base[q] for q in ("p50", "p99", "max") if base[q] > 0}
        if lat:
            worst = max(worst, lat["max"])
    out["targets"]["every table's latency max <= 1 s"] = worst <= TARGET_LATENCY_S
    out["targets"]["worst latency max s"] = worst
    return out


if __name__ == "__main__":
    sys.exit(main())
