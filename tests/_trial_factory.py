"""Synthetic trial files for the app's tests and benchmark, written with the real :class:`daq.TrialWriter`.

The numbers look like a bench's (a furnace ramping to a dwell, Nd/Pr bands in
the spectra, an elution in which Nd2O3 purity rises), but they come from closed
formulas here, not from the simulators, so a test can predict what the app must
show. The stored concentrations are the truth the spectra were made from, so
the app's refitted model matches the measured absorbance up to the noise.

- :func:`write_trial` writes a whole trial (closed with an exit status, or left
  "interrupted" without a clean end).
- :class:`LiveTrial` keeps appending rows from a thread while a test reads the
  file (a trial being run).
- :func:`wait_for_rows` waits until a SWMR reader sees rows (a deadline, no sleep).
- :func:`cascade_metadata` and :func:`write_cascade_trial`: a trial file of format 2.0 with three furnace
  zones, two spectrometers of different pixel counts, two sensors and two analysed streams.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

import analysis
from analysis import oxide_factor
from daq import TrialMetadata, TrialWriter, open_trial
from daq.layout import FinalStatus
from daq.pipeline import fit_coefficient_names, fit_coefficient_units
from daq.store import ControllerRecord, SensorRecord, SpectrometerRecord, StreamRecord, writer_lock_path

__all__ = [
    "ANALYTES",
    "PIXELS",
    "LiveTrial",
    "SyntheticBench",
    "CASCADE_ORDER",
    "cascade_metadata",
    "cascade_rows",
    "corrupt_trial",
    "half_created_trial",
    "metadata",
    "trials_folder",
    "wait_for_rows",
    "write_calibration",
    "write_cascade_trial",
    "write_trial",
]

PIXELS = 256
ANALYTES = ("Nd", "Pr")
_BANDS = {  # centre nm, width nm, absorbance per g/L (a caricature of the f-f bands)
    "Nd": ((575.0, 6.0, 0.030), (740.0, 8.0, 0.018), (794.0, 7.0, 0.022)),
    "Pr": ((444.0, 5.0, 0.035), (469.0, 5.0, 0.012), (482.0, 5.0, 0.010), (589.0, 4.0, 0.008)),
}
FULL_SCALE = 65535.0
BASELINE_ORDER = 2
TRUTH_COEFFICIENTS = (
    tuple(f"P{i}" for i in range(BASELINE_ORDER + 1))
    + ("axis shift since blank",)
    + tuple(f"shift {a}" for a in ANALYTES)
    + tuple(f"width {a}" for a in ANALYTES)
)
"""The fit coefficients of a trial analysed with the true sensitivities (baseline order 2, no quadratic terms)."""


def trials_folder(data_dir: Path) -> Path:
    """DATA/trials, created: where the runner puts trial files."""
    folder = Path(data_dir) / "trials"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sensitivity(wavelength_nm: np.ndarray, analytes=ANALYTES) -> np.ndarray:
    """(K, P) absorbance per g/L: Gaussian bands per analyte."""
    rows = []
    for symbol in analytes:
        row = np.zeros_like(wavelength_nm)
        for centre, width, height in _BANDS.get(symbol, ()):
            row += height * np.exp(-0.5 * ((wavelength_nm - centre) / width) ** 2)
        rows.append(row)
    return np.array(rows)


def metadata(
    trial_id: str = "T1",
    *,
    pixels: int = PIXELS,
    sample: str = "NdPr lot 7",
    target: str = "Nd",
    title: str = "synthetic elution",
    start_time: str | None = None,
    calibration: analysis.Calibration | None = None,
    calibration_file: str | Path = "",
) -> TrialMetadata:
    """Metadata of a synthetic Nd/Pr trial, with the calibration it used (or the true sensitivities)."""
    wavelength = np.linspace(350.0, 1000.0, pixels)
    kwargs = {} if start_time is None else {"start_time": start_time}
    if calibration is not None:
        calibration_id, sens = calibration.calibration_id, np.asarray(calibration.sensitivity)
        names, units = fit_coefficient_names(calibration), fit_coefficient_units(calibration)
    else:
        calibration_id, sens = "cal-synthetic-truth", sensitivity(wavelength)
        names = TRUTH_COEFFICIENTS
        units = tuple(
            "absorbance"
            if n.startswith("P")
            else "nm"
            if n.startswith("axis")
            else "g/L nm"
            if n.startswith("shift")
            else "g/L"
            for n in names
        )
    return TrialMetadata(
        trial_id=trial_id,
        title=title,
        sample=sample,
        operator="tester",
        target=target,
        analytes=ANALYTES,
        wavelength_nm=wavelength,
        covered_elements=ANALYTES,
        calibration_id=calibration_id,
        calibration_file=str(calibration_file),
        calibration_arrays={"sensitivity": (sens, "absorbance per g/L"), "wavelength": (wavelength, "nm")},
        fit_coefficient_names=names,
        fit_coefficient_units=units,
        software_version="test",
        **kwargs,
    )


def write_calibration(path: Path, *, pixels: int = PIXELS, seed: int = 3) -> analysis.Calibration:
    """Calibrate from synthetic standards (blank, singles, mixtures) with :func:`analysis.calibrate`; save it."""
    wavelength = np.linspace(350.0, 1000.0, pixels)
    truth = sensitivity(wavelength)
    names = ("blank", "Nd-20", "Pr-10", "mix-A", "mix-B", "mix-C")
    concentration = np.array([[0, 0], [20, 0], [0, 10], [10, 5], [5, 8], [15, 1]], dtype=float)
    rng = np.random.default_rng(seed)
    x = np.linspace(-1.0, 1.0, pixels)
    drift = 0.01 + 0.004 * rng.random((len(names), 1)) * x + 0.002 * rng.random((len(names), 1)) * x**2
    absorbance = concentration @ truth + drift + rng.normal(0.0, 1e-3, (len(names), pixels))
    calibration = analysis.calibrate(
        wavelength, absorbance, concentration, ANALYTES, baseline_order=2, standard_names=names
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    calibration.save(path)
    return calibration


class SyntheticBench:
    """Closed-form furnace and spectra as functions of experiment time (seconds)."""

    def __init__(self, pixels: int = PIXELS, *, elution_s: float = 600.0, seed: int = 7):
        self.wavelength = np.linspace(350.0, 1000.0, pixels)
        self.sensitivity = sensitivity(self.wavelength)
        self.elution_s = elution_s
        self.rng = np.random.default_rng(seed)
        lamp = 52000.0 * np.exp(-0.5 * ((self.wavelength - 640.0) / 260.0) ** 2) + 1500.0
        self.dark = np.full(pixels, 900.0, dtype=np.float32)
        self.reference = (self.dark + lamp).astype(np.float32)

    # -- furnace -----------------------------------------------------------------------------

    def furnace(self, t: np.ndarray) -> dict[str, np.ndarray]:
        """Furnace rows at times ``t``: ramp 10 degC/min to 250 degC, dwell; a lagging process value."""
        t = np.asarray(t, dtype=float)
        setpoint = np.full_like(t, 250.0)
        working = np.minimum(250.0, 25.0 + t / 6.0)
        temperature = working - 8.0 * (1 - np.exp(-t / 120.0)) * (working < 250.0) + 0.3 * np.sin(t / 17.0)
        output = np.clip(35.0 + 40.0 * (working < 250.0) + 3.0 * np.sin(t / 23.0), 0.0, 100.0)
        return dict(
            time=t,
            temperature=temperature,
            setpoint=setpoint,
            working_setpoint=working,
            output=output,
            status_word=np.zeros(len(t), dtype=np.uint16),
            flag=np.zeros(len(t), dtype=np.uint8),
        )

    # -- spectra and their analysis ----------------------------------------------------------

    def concentrations(self, t: np.ndarray) -> np.ndarray:
        """(N, 2) g/L of Nd and Pr: Pr washes out, Nd rises (an elution)."""
        t = np.asarray(t, dtype=float)
        progress = 1.0 - np.exp(-t / self.elution_s)
        nd = 8.0 + 6.0 * progress
        pr = 2.0 * (1.0 - progress) + 0.04
        return np.column_stack([nd, pr])

    def purity(self, concentration: np.ndarray) -> np.ndarray:
        """Nd2O3 / (Nd2O3 + Pr6O11) mass fraction."""
        nd = concentration[:, 0] * oxide_factor("Nd")
        pr = concentration[:, 1] * oxide_factor("Pr")
        return nd / (nd + pr)

    def spectra(self, t: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Spectrometer rows and their analysis rows at times ``t``."""
        t = np.asarray(t, dtype=float)
        n = len(t)
        concentration = self.concentrations(t)
        x = (self.wavelength - self.wavelength.mean()) / np.ptp(self.wavelength) * 2
        baseline = 0.01 + 0.004 * x + 0.003 * x**2
        absorbance = concentration @ self.sensitivity + baseline
        light = (self.reference - self.dark) * 10.0 ** (-absorbance)
        noise = self.rng.normal(0.0, 1.0, (n, len(self.wavelength))) * np.sqrt(np.maximum(light, 1.0)) * 0.3
        counts = np.minimum(self.dark + light + noise, FULL_SCALE).astype(np.float32)
        sigma = np.full_like(concentration, 0.02) + 0.005 * self.rng.random(concentration.shape)
        measured = concentration + self.rng.normal(0.0, 0.01, concentration.shape)
        purity = self.purity(measured)
        spectrometer = dict(
            time=t,
            counts=counts,
            integration_time=np.full(n, 0.02),
            averages=np.full(n, 4),
            saturated_pixels=np.zeros(n),
            dark_index=np.zeros(n),
            reference_index=np.zeros(n),
            flag=np.zeros(n, dtype=np.uint8),
        )
        # the fit as a calibration with the true bands would give it: lack of fit about 1, no shift,
        # the baseline's Legendre coefficients (P0 = mean, P1, P2 of 0.01 + 0.004 x + 0.003 x^2)
        lack_of_fit = 1.0 + self.rng.normal(0.0, 0.08, n)
        shift_nm = self.rng.normal(0.0, 0.002, n)
        legendre = np.array([0.01 + 0.001, 0.004, 0.002])  # x^2 = (2 P2 + P0) / 3
        coefficients = np.hstack(
            [
                np.tile(legendre, (n, 1)) + self.rng.normal(0.0, 2e-5, (n, 3)),
                self.rng.normal(0.0, 0.002, (n, 1)),  # the axis has not moved since the blank
                measured * shift_nm[:, None],
                self.rng.normal(0.0, 1e-3, (n, 2)),
            ]
        )
        analysis = dict(
            time=t,
            concentration=measured,
            sigma=sigma,
            purity=purity,
            purity_sigma=np.full(n, 0.0015),
            residual_rms=np.full(n, 0.0008),
            lack_of_fit=lack_of_fit,
            wavelength_shift=shift_nm,
            fit_coefficients=coefficients,
        )
        return spectrometer, analysis

    def start(self, writer: TrialWriter) -> None:
        """What the runner writes first: a start event, the dark and the blank reference."""
        writer.event(0.0, "info", "runner", "trial started on station synthetic")
        writer.append("dark", time=0.0, counts=self.dark, integration_time=0.02)
        writer.append("reference", time=0.0, counts=self.reference, integration_time=0.02)


def write_trial(
    path: Path,
    *,
    duration_s: float = 600.0,
    furnace_period_s: float = 1.0,
    spectrum_period_s: float = 10.0,
    pixels: int = PIXELS,
    exit_status: str | None = "success",
    meta: TrialMetadata | None = None,
    block_s: float = 3600.0,
    with_warning: bool = True,
) -> Path:
    """Write a whole trial; ``exit_status=None`` leaves it without a clean end (an interrupted trial).

    Rows are appended in blocks of ``block_s`` experiment seconds, so a 24-hour
    trial of 2048-pixel spectra is written without holding it in memory.
    """
    path = Path(path)
    meta = meta or metadata(path.stem, pixels=pixels)
    bench = SyntheticBench(pixels)
    writer = TrialWriter(path, meta, flush_interval_s=0.05)
    bench.start(writer)
    for block_start in np.arange(0.0, duration_s, block_s):
        block_stop = min(duration_s, block_start + block_s)
        writer.append("furnace", **bench.furnace(np.arange(block_start, block_stop, furnace_period_s)))
        spectra_t = np.arange(
            np.ceil(block_start / spectrum_period_s) * spectrum_period_s, block_stop, spectrum_period_s
        )
        for chunk in np.array_split(spectra_t, max(1, len(spectra_t) // 64)):
            if len(chunk):
                spectrometer, analysis = bench.spectra(chunk)
                writer.append("spectrometer", **spectrometer)
                writer.append("analysis", **_fit_columns(analysis, meta))
    if with_warning:
        writer.event(duration_s / 2, "warning", "spectrometer", "3 saturated pixels (masked in the fit)")
    if exit_status is None:
        _abandon(writer)
    else:
        writer.close(exit_status)
    return path


def _fit_columns(analysis: dict, meta: TrialMetadata) -> dict:
    """The analysis rows with as many fit coefficients as the trial's metadata names (NaN-padded or cut)."""
    wanted = len(meta.fit_coefficient_names)
    have = analysis["fit_coefficients"]
    if have.shape[1] != wanted:
        padded = np.full((len(have), wanted), np.nan)
        padded[:, : min(wanted, have.shape[1])] = have[:, :wanted]
        analysis = {**analysis, "fit_coefficients": padded}
    return analysis


def _abandon(writer: TrialWriter) -> None:
    """Leave the file as a killed process would: rows flushed, exit status "running", no writer lock held.

    The writer closes cleanly, then the clean-end mark is undone with h5py, so
    this helper depends only on the file layout, not on the writer's internals.
    """
    writer.close("aborted")
    with h5py.File(writer.path, "r+") as handle:
        handle["entry/exit_status"][()] = b"running"
        handle["entry/end_time"][()] = b""


class LiveTrial:
    """A trial being written: a thread appends a furnace row every tick and a spectrum every few ticks.

    Use as a context manager; the trial ends with ``exit_status`` on exit. The
    experiment clock runs ``seconds_per_tick`` per tick, so purity (which rises
    through the elution) changes with every spectrum.
    """

    def __init__(
        self,
        path: Path,
        *,
        tick_s: float = 0.05,
        seconds_per_tick: float = 2.0,
        spectrum_every: int = 3,
        history_s: float = 120.0,
        pixels: int = PIXELS,
        exit_status: str = "success",
        meta: TrialMetadata | None = None,
    ):
        self.path = Path(path)
        self.tick_s = tick_s
        self.seconds_per_tick = seconds_per_tick
        self.spectrum_every = spectrum_every
        self.exit_status = exit_status
        self.bench = SyntheticBench(pixels)
        self.meta = meta or metadata(self.path.stem, pixels=pixels)
        self.history_s = history_s
        self.ticks = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"live-trial-{self.path.name}", daemon=True)
        self.writer: TrialWriter | None = None

    def __enter__(self) -> LiveTrial:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Create the file, write a little history, and start appending."""
        self.writer = TrialWriter(self.path, self.meta, flush_interval_s=0.05)
        self.bench.start(self.writer)
        if self.history_s > 0:
            times = np.arange(0.0, self.history_s, self.seconds_per_tick)
            self.writer.append("furnace", **self.bench.furnace(times))
            spectrometer, analysis = self.bench.spectra(times[:: self.spectrum_every])
            self.writer.append("spectrometer", **spectrometer)
            self.writer.append("analysis", **_fit_columns(analysis, self.meta))
        self._thread.start()

    def _now_s(self) -> float:
        return self.history_s + self.ticks * self.seconds_per_tick

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.tick_s):  # pacing of the simulated bench, not a test's sync
                t = np.array([self._now_s()])
                self.writer.append("furnace", **self.bench.furnace(t))
                if self.ticks % self.spectrum_every == 0:
                    spectrometer, analysis = self.bench.spectra(t)
                    self.writer.append("spectrometer", **spectrometer)
                    self.writer.append("analysis", **_fit_columns(analysis, self.meta))
                if self.ticks == 20:
                    self.writer.event(float(t[0]), "warning", "furnace", "output above 70 % for 60 s")
                self.ticks += 1
        except BaseException as error:  # noqa: BLE001 - reported by stop()
            self.error = error

    def stop(self) -> None:
        """Stop appending and close the file with the exit status."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.writer is not None:
            self.writer.close(self.exit_status)
        if self.error is not None:
            raise RuntimeError(f"live trial writer failed: {self.error}") from self.error


def wait_for_rows(path: Path, table: str, rows: int, timeout_s: float = 15.0) -> int:
    """Block until a SWMR reader of ``path`` sees at least ``rows`` rows of ``table`` (deadline, no sleep)."""
    deadline = time.monotonic() + timeout_s
    with open_trial(path) as reader:
        while reader.rows(table) < rows:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{path.name}: {table} has {reader.rows(table)} of {rows} rows after {timeout_s} s"
                )
            threading.Event().wait(0.01)  # poll interval of a condition with a deadline
            reader.refresh()
        return reader.rows(table)


def corrupt_trial(path: Path) -> Path:
    """A ``.h5`` file that is not HDF5 at all (a truncated copy, a disk error)."""
    Path(path).write_bytes(b"\x89HDF\r\n\x1a\n" + b"garbage" * 200)
    return Path(path)


@contextmanager
def half_created_trial(path: Path, partial_layout: bool = False):
    """A trial file still being created: its writer holds the lock; the file is empty, or (``partial_layout``)
    an HDF5 file whose layout is only begun (an /entry group, nothing else)."""
    path = Path(path)
    fd = os.open(writer_lock_path(path), os.O_CREAT | os.O_RDWR, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    if partial_layout:
        with h5py.File(path, "w") as handle:
            handle.create_group("entry").attrs["title"] = "being laid out"
    else:
        path.write_bytes(b"")
    try:
        yield path
    finally:
        os.close(fd)
        writer_lock_path(path).unlink(missing_ok=True)


# -- a trial of format 2.0 with several instruments of each kind -------------------------------------------------

CASCADE_ORDER = ("zone-1", "zone-2", "zone-3", "raffinate", "feed-ph", "strip", "strip_flow")
"""The instruments of :func:`cascade_metadata`, in the station's order (kinds interleaved, one name with _)."""
_RAFFINATE_PIXELS, _STRIP_PIXELS = 40, 24
_STRIP_ANALYTES = ("Nd", "Pr", "Sm")
_STRIP_COEFFICIENTS = ("P0", "P1", "P2", "axis shift since blank")
_SENSOR_CHANNELS = {
    "feed-ph": (("pH", "1", "pH of the feed"), ("conductivity", "mS/cm", "conductivity of the feed")),
    "strip_flow": (("flow", "L/h", "strip liquor flow"), ("mass", "kg", "strip liquor collected")),
}


def cascade_metadata(trial_id: str = "cascade") -> TrialMetadata:
    """A station of the new form: furnace zones zone-1..3, spectrometers raffinate (40 pixels, analysed first,
    target Pr) and strip (24 pixels, 3 analytes, target Nd), sensors feed-ph and strip_flow."""
    raffinate_nm = np.linspace(400.0, 800.0, _RAFFINATE_PIXELS)
    strip_nm = np.linspace(450.0, 900.0, _STRIP_PIXELS)
    return TrialMetadata(
        trial_id=trial_id,
        title="cascade",
        sample="PrNd feed 3",
        operator="tester",
        target="Pr",
        analytes=ANALYTES,
        wavelength_nm=raffinate_nm,
        software_version="test",
        full_scale_counts=65535.0,
        spectrometer_attributes={"driver": "scpi", "dark_method": "shutter", "ident": "SIM,SPEC,1"},
        covered_elements=ANALYTES,
        calibration_id="cal-raffinate",
        calibration_file="/cal/raffinate.h5",
        calibration_arrays={
            "sensitivity": (sensitivity(raffinate_nm), "absorbance per g/L"),
            "wavelength": (raffinate_nm, "nm"),
        },
        fit_coefficient_names=("P0", "P1"),
        fit_coefficient_units=("absorbance", "absorbance"),
        furnace_name="zone-1",
        furnace_attributes={"driver": "eurotherm", "ident": "EUROTHERM,2404,1", "address": 1},
        spectrometer_name="raffinate",
        controllers=(
            ControllerRecord("zone-2", {"driver": "eurotherm", "ident": "EUROTHERM,2404,2", "address": 2}),
            ControllerRecord("zone-3", {"driver": "eurotherm", "ident": "EUROTHERM,2404,3", "address": 3}),
        ),
        spectrometers=(
            SpectrometerRecord("strip", strip_nm, 16383.0, {"driver": "ocean", "model": "HDX", "dark_method": "lamp"}),
        ),
        sensors=tuple(
            SensorRecord(name, channels, {"driver": "modbus", "map": f"{name}-map"})
            for name, channels in _SENSOR_CHANNELS.items()
        ),
        streams=(
            StreamRecord(
                "strip",
                "Nd",
                _STRIP_ANALYTES,
                covered_elements=_STRIP_ANALYTES,
                calibration_id="cal-strip",
                calibration_file="/cal/strip.h5",
                calibration_arrays={
                    "sensitivity": (np.ones((3, _STRIP_PIXELS)), "absorbance per g/L"),
                    "wavelength": (strip_nm, "nm"),
                },
                fit_coefficient_names=_STRIP_COEFFICIENTS,
                fit_coefficient_units=("absorbance", "absorbance", "absorbance", "nm"),
            ),
        ),
        instrument_order=CASCADE_ORDER,
    )


def cascade_rows(rows: int = 5) -> dict[str, dict[str, np.ndarray]]:
    """Rows for every table of :func:`cascade_metadata`, by table key (closed formulas: each table its own)."""
    t = np.arange(rows, dtype=float)
    out: dict[str, dict[str, np.ndarray]] = {}
    for index, key in enumerate(("furnace", "furnace:zone-2", "furnace:zone-3")):
        out[key] = dict(
            time=t,
            temperature=100.0 * (index + 1) + t,
            setpoint=np.full(rows, 100.0 * (index + 1) + 50),
            working_setpoint=100.0 * (index + 1) + 2 * t,
            output=np.full(rows, 10.0 * (index + 1)),
            status_word=np.full(rows, index, dtype=np.uint16),
            flag=np.zeros(rows, dtype=np.uint8),
        )
    for key, pixels, analytes, coefficients, level in (
        ("", _RAFFINATE_PIXELS, len(ANALYTES), 2, 1000.0),
        (":strip", _STRIP_PIXELS, len(_STRIP_ANALYTES), len(_STRIP_COEFFICIENTS), 3000.0),
    ):
        out[f"spectrometer{key}"] = dict(
            time=t + 0.5,
            counts=np.full((rows, pixels), level, dtype=np.float32) + t[:, None].astype(np.float32),
            integration_time=np.full(rows, 0.1),
            averages=np.full(rows, 2, dtype=np.uint32),
            saturated_pixels=np.zeros(rows, dtype=np.uint32),
            dark_index=np.zeros(rows, dtype=np.int32),
            reference_index=np.zeros(rows, dtype=np.int32),
            flag=np.zeros(rows, dtype=np.uint8),
        )
        out[f"dark{key}"] = dict(
            time=np.array([0.0]), counts=np.full((1, pixels), level / 10), integration_time=np.array([0.1])
        )
        out[f"reference{key}"] = dict(
            time=np.array([0.1]), counts=np.full((1, pixels), level * 20), integration_time=np.array([0.1])
        )
        out[f"analysis{key}"] = dict(
            time=t + 0.5,
            concentration=np.full((rows, analytes), level / 1000) + t[:, None],
            sigma=np.full((rows, analytes), 0.01),
            purity=0.5 + 0.1 * t / rows + level / 1e4,
            purity_sigma=np.full(rows, 0.001),
            residual_rms=np.full(rows, 1e-3),
            lack_of_fit=np.ones(rows),
            wavelength_shift=np.zeros(rows),
            fit_coefficients=np.arange(rows * coefficients, dtype=float).reshape(rows, coefficients) + level,
        )
    for index, (name, channels) in enumerate(_SENSOR_CHANNELS.items()):
        columns: dict[str, np.ndarray] = {"time": t + 0.25}
        for number, (channel, _, _) in enumerate(channels):
            columns[channel] = 1.5 + index * 10 + number + 0.01 * t
            columns[f"{channel}_state"] = np.array([0, 1, 2, 0, 0][:rows] + [0] * (rows - 5), dtype=np.uint8)
        columns["flag"] = np.zeros(rows, dtype=np.uint8)
        out[f"sensor:{name}"] = columns
    return out


def write_cascade_trial(path: Path, rows: int = 5, exit_status: FinalStatus = "success") -> Path:
    """Write :func:`cascade_metadata`'s trial with :func:`cascade_rows` in every table, and two events."""
    writer = TrialWriter(path, cascade_metadata(Path(path).stem), flush_interval_s=0.05)
    for key, columns in cascade_rows(rows).items():
        writer.append(key, **columns)
    writer.event(0.0, "info", "runner", "trial started on station cascade")
    writer.event(1.0, "warning", "feed-ph", "pH out of range")
    writer.close(exit_status)
    return Path(path)
