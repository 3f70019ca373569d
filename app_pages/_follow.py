"""Follow one trial file: read only what is new on each refresh, keep every trace at a bounded size.

A :class:`TrialFollower` lives in a Streamlit session (one per page). Its first
:meth:`~TrialFollower.update` draws the history from decimated slices
(:meth:`daq.TrialReader.decimated`: min/max per bucket); every later update
reads only the rows added since its marks (:meth:`daq.TrialReader.read_new`)
and folds them into the same buckets, doubling the bucket size whenever a trace
would exceed ``max_points`` buckets. Memory and work per refresh stay bounded
for any trial length. No Streamlit here, so the benchmark times exactly this
code path.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict, cast

import numpy as np

import analysis
from analysis import LACK_OF_FIT_LIMIT
from daq import TrialReader, open_trial
from daq.layout import FLAG_MODEL_MISMATCH
from daq.pipeline import LORENTZIAN_WIDTH, fit_coefficient_names

from ._instruments import InstrumentsFollower, InstrumentsView, has_several_instruments
from ._traces import MAX_POINTS, StreamingMinMax, Trace, seed_traces

__all__ = [
    "MAX_POINTS",
    "StreamingMinMax",
    "Trace",
    "SpectrumView",
    "Snapshot",
    "TrialFollower",
    "FitDesign",
    "StoredFit",
    "fitted_spectrum",
    "fit_design",
    "stored_fit_model",
    "AXIS_SHIFT",
]

FURNACE_COLUMNS = ("temperature", "setpoint", "working_setpoint", "output")
DEFAULT_BASELINE_ORDER = 2
AXIS_SHIFT = "axis shift since blank"
"""The fit coefficient whose column is made from the blank's own light, not from the calibration."""
_SEED_BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class SpectrumView:
    """One spectrum as the Live page draws it: absorbance with the fitted model, or raw counts."""

    index: int
    time_s: float
    wavelength_nm: np.ndarray
    counts: np.ndarray
    dark: np.ndarray | None
    reference: np.ndarray | None
    absorbance: np.ndarray | None = None
    model: np.ndarray | None = None  # the fit's model: analytes, curvature, baseline, drift, axis shift
    baseline: np.ndarray | None = None
    residual: np.ndarray | None = None
    residual_rms: float = math.nan  # of the model drawn
    stored_residual_rms: float = math.nan  # as the live analysis wrote it
    note: str = ""  # why only raw counts, or how the model was drawn
    model_source: str = ""  # "live fit": rebuilt from the row's stored coefficients; "refit": baseline fitted here


class LatestAnalysis(TypedDict, total=False):
    """The latest analysis row (Python scalars; empty before the first) and its spectrum's flag."""

    time: float
    purity: float
    purity_sigma: float
    concentration: np.ndarray
    residual_rms: float
    lack_of_fit: float
    flag: int


@dataclass
class Snapshot:
    """What a page draws after one update: state, latest values, decimated traces, events, spectrum."""

    path: Path
    metadata: dict
    state: str
    end_time: str
    heartbeat_time: str
    analytes: tuple[str, ...]
    analysis_attrs: dict
    rows: dict[str, int]
    furnace: dict[str, Trace]
    purity: Trace | None
    purity_band: Trace | None  # minimum = lowest purity - 2 sigma, maximum = highest purity + 2 sigma
    concentration: dict[str, Trace]
    latest_furnace: dict[str, float]
    latest_analysis: LatestAnalysis
    events: list[dict]
    spectrum: SpectrumView | None
    rows_read: dict[str, int] = field(default_factory=dict)  # rows read by this update, per table
    fit_recorded: bool = False  # the file records the fit's quality (format 1.1)
    lack_of_fit: Trace | None = None  # per analysed spectrum (None: not recorded, or none analysed yet)
    wavelength_shift: Trace | None = None  # nm, the common shift the drift terms imply
    mismatch: Trace | None = None  # lack of fit of the rows flagged model mismatch (NaN in buckets without one)
    mismatch_rows: int = 0  # spectra flagged model mismatch (flag bit 16) so far
    instruments: InstrumentsView | None = None  # every zone, sensor and stream (None: one furnace, one stream)

    @property
    def target(self) -> str:
        return self.analysis_attrs.get("target", "")

    @property
    def trial_id(self) -> str:
        return str(self.metadata.get("trial_id", "") or self.path.stem)


def fitted_spectrum(
    measured: np.ndarray,
    concentration: np.ndarray,
    sensitivity: np.ndarray,
    wavelength_nm: np.ndarray,
    baseline_order: int | None = DEFAULT_BASELINE_ORDER,
    pixel_weight: np.ndarray | None = None,
):
    """The model c @ S plus the baseline that best fits what the analytes leave, and the residual.

    The trial file stores the concentrations but not the live fit's baseline.
    With the concentrations fixed, the best (weighted least-squares) baseline is
    the one the live fit found, so it is fitted again here with the
    calibration's baseline basis (:func:`analysis.baseline_basis`) and pixel
    weights when the calibration file is at hand, uniform weights otherwise.
    Returns (model, baseline, residual, residual RMS over the unmasked pixels).
    """
    analytes_part = np.asarray(concentration, dtype=float) @ np.asarray(sensitivity, dtype=float)
    rest = measured - analytes_part
    weight = np.ones_like(rest) if pixel_weight is None else np.asarray(pixel_weight, dtype=float)
    valid = np.isfinite(rest) & (weight > 0)
    basis = analysis.baseline_basis(wavelength_nm, baseline_order)
    baseline = np.zeros_like(measured)
    if basis.shape[1]:
        baseline[:] = np.nan
        if valid.sum() > basis.shape[1]:
            root = np.sqrt(weight[valid])
            coefficients, *_ = np.linalg.lstsq(basis[valid] * root[:, None], rest[valid] * root, rcond=None)
            baseline = basis @ coefficients
    model = analytes_part + baseline
    residual = np.where(valid, measured - model, np.nan)
    used = valid & np.isfinite(residual)
    rms = (
        float(np.sqrt(np.sum(weight[used] * residual[used] ** 2) / np.sum(weight[used]))) if used.any() else math.nan
    )  # weighted, as the live fit's residual_rms
    return model, baseline, residual, rms


@dataclass(frozen=True)
class FitDesign:
    """How a trial's stored fit coefficients map onto spectra (see :func:`fit_design`)."""

    matrix: np.ndarray  # (P, K + free columns used): [S | Q | B | shift | width], without the axis shift
    used: tuple[int, ...]  # the stored coefficients that multiply the matrix's free columns, in its order
    axis_shift: int  # the stored coefficient of the blank's own column
    baseline_terms: tuple[int, ...]  # the stored coefficients P0..P<order>
    baseline_basis: np.ndarray  # (P, order + 1)
    omitted: tuple[str, ...]  # coefficients left out (curvature terms whose spectra the file does not hold)
    source: str  # where the design came from, for the page's note


@dataclass(frozen=True)
class StoredFit:
    """The model a live fit used, rebuilt from its stored coefficients (see :func:`stored_fit_model`)."""

    model: np.ndarray  # (P,) absorbance
    baseline: np.ndarray  # (P,) the Legendre baseline part of it
    omitted: tuple[str, ...]
    source: str


def _legendre_order(names) -> int | None:
    """The baseline order the coefficient names imply ("P0".."P<order>"; None without any)."""
    terms = [name for name in names if len(name) > 1 and name[0] == "P" and name[1:].isdigit()]
    return len(terms) - 1 if terms else None


def fit_design(
    names, analytes, wavelength_nm, sensitivity, calibration: analysis.Calibration | None = None
) -> FitDesign | None:
    """The design matrix the live fit used, for coefficients stored under ``names`` (``@column_names``).

    ``calibration.design_matrix()`` when the calibration file is at hand and its
    coefficient names are the stored ones. Without it, the design is rebuilt from the
    trial's copy of the sensitivity (``analysis.Calibration.from_sensitivity`` with the
    baseline order the names imply): exact too, since the drift spectra derive from S
    alone and a drift column the live calibration held at zero has a zero coefficient,
    except for curvature terms ("Nd^2"), whose spectra only the calibration file holds;
    they are left out and named in ``omitted``. None when the names describe no such design.
    """
    names, analytes = tuple(names), tuple(analytes)
    if names.count(AXIS_SHIFT) != 1:
        return None
    # files before the second fit (decision 0069) store no Lorentzian width coefficients: the design is the same
    # without those columns
    lorentzian = tuple(f"{LORENTZIAN_WIDTH}{a}" for a in analytes)
    with_lorentzian = names[-len(lorentzian) :] == lorentzian if lorentzian else False

    def stored(model_names: tuple[str, ...]) -> tuple[str, ...]:
        return model_names if with_lorentzian else tuple(n for n in model_names if not n.startswith(LORENTZIAN_WIDTH))

    def with_columns(calibration_: analysis.Calibration) -> np.ndarray:
        matrix_ = calibration_.design_matrix()
        return np.hstack([matrix_, calibration_.lorentzian_width_spectra().T]) if with_lorentzian else matrix_

    if (
        calibration is not None
        and tuple(calibration.analytes) == analytes
        and stored(fit_coefficient_names(calibration)) == names
        and np.shape(calibration.wavelength_nm) == np.shape(wavelength_nm)
    ):
        matrix, first, omitted = with_columns(calibration), 0, ()
        order = calibration.baseline_order
        source = f"the design matrix of calibration {calibration.calibration_id}"
    else:
        order = _legendre_order(names)
        try:
            rebuilt = analysis.Calibration.from_sensitivity(wavelength_nm, sensitivity, analytes, baseline_order=order)
        except (ValueError, TypeError):
            return None
        curvature = tuple(name for name in names if name.endswith("^2") and name[:-2] in analytes)
        if names[: len(curvature)] != curvature or names[len(curvature) :] != stored(fit_coefficient_names(rebuilt)):
            return None
        matrix, first, omitted = with_columns(rebuilt), len(curvature), curvature
        source = "the trial's copy of the sensitivity (the calibration file is not at hand)"
    axis = names.index(AXIS_SHIFT)
    used = tuple(i for i in range(first, len(names)) if i != axis)
    if matrix.shape[1] != len(analytes) + len(used):
        return None
    terms = tuple(names.index(f"P{i}") for i in range(0 if order is None else order + 1))  # the names checked
    return FitDesign(
        matrix=matrix,
        used=used,
        axis_shift=axis,
        baseline_terms=terms,
        baseline_basis=analysis.baseline_basis(wavelength_nm, order),
        omitted=omitted,
        source=source,
    )


def stored_fit_model(concentration, coefficients, design: FitDesign, wavelength_nm, net_reference) -> StoredFit:
    """The live fit's model of one spectrum from its stored concentrations and fit coefficients.

    As docs/trial-file.md gives it: ``[c, free without the axis shift] @ design_matrix().T
    + axis_shift * analysis.reference_shift_spectrum(wavelength, R - D)``, ``net_reference``
    being the blank's usable net counts (R - D, NaN where the live fit could not use it).
    """
    c = np.nan_to_num(np.asarray(concentration, dtype=float))  # an analyte the fit could not use counted 0
    v = np.nan_to_num(np.asarray(coefficients, dtype=float))  # e.g. no axis shift without a reference
    model = np.concatenate([c, v[list(design.used)]]) @ design.matrix.T
    model = model + v[design.axis_shift] * analysis.reference_shift_spectrum(wavelength_nm, net_reference)
    baseline = design.baseline_basis @ v[list(design.baseline_terms)]
    return StoredFit(model=model, baseline=baseline, omitted=design.omitted, source=design.source)


def _residual(measured: np.ndarray, model: np.ndarray, pixel_weight: np.ndarray | None):
    """The residual (NaN on masked pixels) and its weighted RMS, as the live fit's ``residual_rms``."""
    weight = np.ones_like(measured) if pixel_weight is None else np.asarray(pixel_weight, dtype=float)
    valid = np.isfinite(measured) & np.isfinite(model) & (weight > 0)
    residual = np.where(valid, measured - model, np.nan)
    rms = (
        float(np.sqrt(np.sum(weight[valid] * residual[valid] ** 2) / np.sum(weight[valid])))
        if valid.any()
        else math.nan
    )
    return residual, rms


class TrialFollower:
    """An open trial file, and what one page has already read of it."""

    def __init__(
        self, path: str | Path, *, max_points: int = MAX_POINTS, max_events: int = 500, calibration_loader=None
    ):
        """Open ``path``; ``calibration_loader(analysis_attrs)`` may return the :class:`analysis.Calibration`
        the trial used (for the baseline order and pixel weights of the spectrum's fit), or None."""
        self.path = Path(path)
        self.max_points = max_points
        self.reader: TrialReader = open_trial(self.path)
        try:
            self._metadata = self.reader.metadata
            self._analytes = self.reader.analytes
            self._analysis_attrs = self.reader.analysis_attrs
            self._wavelength = self.reader.wavelength_nm
            self._calibration = self.reader.calibration_arrays()
            self._full_scale = self.reader.full_scale_counts
            self._fit_recorded = self.reader.has_column("analysis", "lack_of_fit")
            self._coefficient_names = self.reader.fit_coefficient_names
            self._format = ".".join(map(str, self.reader.format_version))
            self.instruments: InstrumentsFollower | None = (
                InstrumentsFollower(self.reader, max_points)
                if has_several_instruments(self.reader.instruments(), self.reader.streams())
                else None
            )
        except BaseException:
            self.reader.close()
            raise
        self.calibration = calibration_loader(self._analysis_attrs) if calibration_loader else None
        self.marks: dict[str, int] | None = None  # rows already read per table; None until seeded
        self._furnace = {name: StreamingMinMax(max_points) for name in FURNACE_COLUMNS}
        self._purity = StreamingMinMax(max_points)
        self._band = StreamingMinMax(max_points)
        self._concentration = [StreamingMinMax(max_points) for _ in self._analytes]
        self._lack_of_fit = StreamingMinMax(max_points)
        self._shift = StreamingMinMax(max_points)
        self._mismatch = StreamingMinMax(max_points)  # the lack of fit of flagged rows, NaN elsewhere
        self._mismatch_rows = 0
        self._events: deque[dict] = deque(maxlen=max_events)
        self._spectrum: SpectrumView | None = None
        self._design: tuple | None = None  # (calibration id or None, FitDesign or None), built on first use
        self.updates = 0
        self.last_read: dict[str, int] = {}  # rows each table gave on the last update
        self.last_snapshot: Snapshot | None = None

    def close(self) -> None:
        """Close the file."""
        self.reader.close()

    # -- reading ------------------------------------------------------------------------

    def update(self) -> Snapshot:
        """See what the writer flushed, read only the new rows, and return what to draw."""
        reader = self.reader
        reader.refresh()
        rows = {
            name: reader.rows(name) for name in ("furnace", "spectrometer", "analysis", "events", "dark", "reference")
        }
        if self.marks is None:
            rows_read = self._seed(rows)
        else:
            rows_read = self._read_new(rows)
        state = reader.state
        instruments = self.instruments.update(final=state != "running") if self.instruments is not None else None
        self.updates += 1
        self.last_read = rows_read
        self.last_snapshot = Snapshot(
            path=self.path,
            metadata=self._metadata,
            state=state,
            end_time=reader.end_time,
            heartbeat_time=reader.heartbeat_time,
            analytes=self._analytes,
            analysis_attrs=self._analysis_attrs,
            rows=rows,
            furnace={name: trace.trace() for name, trace in self._furnace.items()},
            purity=self._purity.trace() if rows["analysis"] else None,
            purity_band=self._band.trace() if rows["analysis"] else None,
            concentration={a: t.trace() for a, t in zip(self._analytes, self._concentration)},
            latest_furnace=self._latest("furnace", rows["furnace"], FURNACE_COLUMNS + ("time", "flag", "status_word")),
            latest_analysis=cast(  # the row's columns as read: the reader's rows are untyped
                LatestAnalysis,
                {
                    **self._latest(
                        "analysis",
                        rows["analysis"],
                        ("time", "purity", "purity_sigma", "concentration", "residual_rms", "lack_of_fit"),
                    ),
                    **self._latest_analysed_flag(rows),
                },
            ),
            events=list(self._events),
            spectrum=self._latest_spectrum(rows),
            rows_read=rows_read,
            fit_recorded=self._fit_recorded,
            mismatch_rows=self._mismatch_rows,
            instruments=instruments,
            **self._fit_traces(),
        )
        return self.last_snapshot

    def _fit_traces(self) -> dict:
        if not (self._fit_recorded and self.marks is not None and self.marks.get("fit")):
            return {}
        return {
            "lack_of_fit": self._lack_of_fit.trace(),
            "wavelength_shift": self._shift.trace(),
            "mismatch": self._mismatch.trace(),
        }

    def _seed(self, rows: dict[str, int]) -> dict[str, int]:
        """First read: decimated slices of the history (whole buckets), then the few rows after them."""
        reader = self.reader
        marks = {"furnace": rows["furnace"], "analysis": rows["analysis"], "events": rows["events"]}
        read = {}
        # furnace: whole buckets from TrialReader.decimated, the partial last bucket as raw rows
        read["furnace"] = self._seed_table(
            "furnace", marks["furnace"], [(self._furnace[name], name, None) for name in FURNACE_COLUMNS]
        )
        read["analysis"] = self._seed_table(
            "analysis",
            marks["analysis"],
            [(self._purity, "purity", None)]
            + [(trace, "concentration", k) for k, trace in enumerate(self._concentration)],
        )
        self._seed_band(marks["analysis"])
        marks["fit"] = self._seed_fit(min(rows["analysis"], rows["spectrometer"]))
        read["fit"] = marks["fit"]
        first_event = max(0, marks["events"] - (self._events.maxlen or 0))
        self._add_events(reader.read("events", first_event, marks["events"]))
        read["events"] = marks["events"] - first_event
        self.marks = marks
        return read

    def _seed_table(self, table: str, stop: int, traces: list) -> int:
        """Seed several traces of one table; returns the rows it took to do so (decimated rows count once)."""
        return seed_traces(self.reader, table, stop, traces, self.max_points)

    def _seed_band(self, stop: int) -> None:
        """Seed the purity +- 2 sigma band, computed row by row in bounded blocks (exact, not from min/max)."""
        self._band.bucket = max(1, -(-stop // self.max_points))
        block = max(self._band.bucket, _SEED_BLOCK_ROWS // self._band.bucket * self._band.bucket)
        for start in range(0, stop, block):
            rows = self.reader.read(
                "analysis", start, min(stop, start + block), columns=("time", "purity", "purity_sigma")
            )
            self._add_band(rows)

    def _seed_fit(self, stop: int) -> int:
        """Seed the lack of fit, shift and model-mismatch traces in bounded blocks (the flags are per row)."""
        if not self._fit_recorded:
            return 0
        bucket = max(1, -(-stop // self.max_points))
        for trace in (self._lack_of_fit, self._shift, self._mismatch):
            trace.bucket = bucket
        block = max(bucket, _SEED_BLOCK_ROWS // bucket * bucket)
        for start in range(0, stop, block):
            self._add_fit(start, min(stop, start + block))
        return stop

    def _add_fit(self, start: int, stop: int) -> int:
        """Fold analysis rows ``start:stop`` (and their spectra's flags) into the fit traces; returns the rows."""
        if stop <= start:
            return 0
        rows = self.reader.read("analysis", start, stop, columns=("time", "lack_of_fit", "wavelength_shift"))
        flags = self.reader.read("spectrometer", start, stop, columns=("flag",))["flag"]
        flagged = (np.asarray(flags, dtype=np.int64) & FLAG_MODEL_MISMATCH) != 0
        lack = np.asarray(rows["lack_of_fit"], dtype=float)
        self._lack_of_fit.extend(rows["time"], lack)
        self._shift.extend(rows["time"], rows["wavelength_shift"])
        marked = np.where(np.isfinite(lack), lack, LACK_OF_FIT_LIMIT)  # a flag without a number: on the limit
        self._mismatch.extend(rows["time"], np.where(flagged, marked, np.nan))
        self._mismatch_rows += int(np.count_nonzero(flagged))
        return stop - start

    def _add_band(self, rows: dict) -> None:
        two_sigma = 2.0 * rows["purity_sigma"]
        self._band.extend(rows["time"], rows["purity"] - two_sigma, rows["purity"] + two_sigma)

    def _read_new(self, rows: dict[str, int]) -> dict[str, int]:
        """Later reads: only the rows after the marks."""
        reader, read, marks = self.reader, {}, self.marks
        if marks is None:
            raise RuntimeError("read_new before the first read")  # update() seeds first
        new, marks["furnace"] = reader.read_new("furnace", marks["furnace"], columns=("time",) + FURNACE_COLUMNS)
        for name in FURNACE_COLUMNS:
            self._furnace[name].extend(new["time"], new[name])
        read["furnace"] = len(new["time"])
        new, marks["analysis"] = reader.read_new(
            "analysis", marks["analysis"], columns=("time", "purity", "purity_sigma", "concentration")
        )
        self._purity.extend(new["time"], new["purity"])
        self._add_band(new)
        for k, trace in enumerate(self._concentration):
            trace.extend(new["time"], new["concentration"][:, k])
        read["analysis"] = len(new["time"])
        if self._fit_recorded:  # a spectrum's flag may be flushed after its analysis row: up to both
            stop = min(marks["analysis"], rows["spectrometer"])
            read["fit"] = self._add_fit(marks["fit"], stop)
            marks["fit"] = max(marks["fit"], stop)
        new, marks["events"] = reader.read_new("events", marks["events"])
        self._add_events(new)
        read["events"] = len(new["time"])
        return read

    def _add_events(self, rows: dict) -> None:
        for i in range(len(rows["time"])):
            self._events.append(
                {
                    "time_s": float(rows["time"][i]),
                    "level": str(rows["level"][i]),
                    "source": str(rows["source"][i]),
                    "message": str(rows["message"][i]),
                }
            )

    def _latest_analysed_flag(self, rows: dict[str, int]) -> dict:
        """``{"flag": ...}`` of the spectrum the latest analysis row belongs to (empty before the first)."""
        index = min(rows["analysis"], rows["spectrometer"]) - 1
        if index < 0:
            return {}
        return {"flag": int(self.reader.read("spectrometer", index, index + 1, columns=("flag",))["flag"][0])}

    def _latest(self, table: str, rows: int, columns: tuple[str, ...]) -> dict:
        """The last row of a table (empty when there is none)."""
        if not rows:
            return {}
        last = self.reader.read(table, rows - 1, rows, columns=columns)
        out = {}
        for name, values in last.items():
            value = values[0]
            out[name] = value if np.ndim(value) else (value.item() if isinstance(value, np.generic) else value)
        return out

    # -- the latest spectrum ------------------------------------------------------------

    def _latest_spectrum(self, rows: dict[str, int]) -> SpectrumView | None:
        """The newest analysed spectrum (or the newest spectrum when none is analysed); read once per index."""
        if not rows["spectrometer"]:
            return None
        index = min(rows["spectrometer"], rows["analysis"]) - 1 if rows["analysis"] else rows["spectrometer"] - 1
        if self._spectrum is not None and self._spectrum.index == index:
            return self._spectrum
        self._spectrum = self._read_spectrum(index, rows, analysed=rows["analysis"] > index)
        return self._spectrum

    def _read_spectrum(self, index: int, rows: dict[str, int], analysed: bool) -> SpectrumView:
        reader = self.reader
        row = reader.read("spectrometer", index, index + 1, columns=("time", "counts", "dark_index", "reference_index"))
        counts = np.asarray(row["counts"][0], dtype=float)
        dark = self._table_row("dark", int(row["dark_index"][0]), rows["dark"])
        reference = self._table_row("reference", int(row["reference_index"][0]), rows["reference"])
        view = SpectrumView(  # the raw counts; each return below adds to them
            index=index,
            time_s=float(row["time"][0]),
            wavelength_nm=self._wavelength,
            counts=counts,
            dark=dark,
            reference=reference,
        )
        if dark is None or reference is None:
            return replace(view, note="raw counts: no dark or blank reference recorded for this spectrum")
        measured = analysis.absorbance(counts, dark, reference, self._full_scale)  # masked as the live fit did
        sensitivity = self._calibration.get("sensitivity")
        pixels, analytes = len(self._wavelength), len(self._analytes)
        if not analysed:
            return replace(view, absorbance=measured, note="not analysed yet: absorbance only")
        if sensitivity is None or np.shape(sensitivity) != (analytes, pixels):
            return replace(
                view,
                absorbance=measured,
                note="absorbance only: the file holds no calibration sensitivity matching "
                f"its {analytes} analytes x {pixels} pixels",
            )
        fit = reader.read("analysis", index, index + 1, columns=("concentration", "residual_rms", "fit_coefficients"))
        concentration = np.asarray(fit["concentration"][0], dtype=float)
        stored_rms = float(fit["residual_rms"][0])
        if not np.any(np.isfinite(concentration)):
            return replace(
                view,
                absorbance=measured,
                stored_residual_rms=stored_rms,
                note="absorbance only: the live analysis of this spectrum gave no concentrations "
                "(the analysis failed; the events say why)",
            )
        calibration = self.calibration
        if calibration is not None and not (
            np.shape(calibration.pixel_weight) == (pixels,) and tuple(calibration.analytes) == self._analytes
        ):
            calibration = None
        weight = None if calibration is None else calibration.pixel_weight
        coefficients = np.asarray(fit["fit_coefficients"][0], dtype=float)
        stored, why_not = None, f"this file (format {self._format}) does not record the live fit's coefficients"
        if self._coefficient_names and len(coefficients) == len(self._coefficient_names):
            why_not = "this spectrum's row records no fit coefficients"
            design = self._fit_design(sensitivity, calibration) if np.any(np.isfinite(coefficients)) else None
            if design is not None:
                stored = stored_fit_model(
                    concentration, coefficients, design, self._wavelength, self._net_reference(dark, reference)
                )
            elif np.any(np.isfinite(coefficients)):
                why_not = "its fit coefficient names describe no design this page can rebuild"
        if stored is not None:
            residual, rms = _residual(measured, stored.model, weight)
            note = f"Model = the live fit, rebuilt from this row's stored coefficients with {stored.source}"
            if stored.omitted:
                note += (
                    f"; without its curvature terms ({', '.join(stored.omitted)}: their spectra are only in "
                    "the calibration file), which the residual therefore includes"
                )
            return replace(
                view,
                absorbance=measured,
                model=stored.model,
                baseline=stored.baseline,
                residual=residual,
                residual_rms=rms,
                stored_residual_rms=stored_rms,
                note=note + ".",
                model_source="live fit",
            )
        if calibration is not None:
            order = calibration.baseline_order
            how = f"baseline (Legendre order {order}) and pixel weights of calibration {calibration.calibration_id}"
        else:
            order = DEFAULT_BASELINE_ORDER
            how = (
                f"baseline assumed Legendre order {order}, unweighted (the calibration file is not at hand, "
                "so the fit may differ slightly from the live one)"
            )
        model, baseline, residual, rms = fitted_spectrum(
            measured, np.nan_to_num(concentration), sensitivity, self._wavelength, order, weight
        )
        return replace(
            view,
            absorbance=measured,
            model=model,
            baseline=baseline,
            residual=residual,
            residual_rms=rms,
            stored_residual_rms=stored_rms,
            model_source="refit",
            note=f"Model refitted here, not the live fit ({why_not}): stored concentrations x "
            f"stored sensitivity + baseline refitted, without curvature or drift terms; "
            f"{how}.",
        )

    def _fit_design(self, sensitivity: np.ndarray, calibration) -> FitDesign | None:
        """The design of this trial's fit, built once (the names and the calibration do not change)."""
        key = None if calibration is None else calibration.calibration_id
        if self._design is None or self._design[0] != key:
            self._design = (
                key,
                fit_design(self._coefficient_names, self._analytes, self._wavelength, sensitivity, calibration),
            )
        return self._design[1]

    def _net_reference(self, dark: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The blank's net counts R - D where the live fit could use them (positive, below full scale), else NaN."""
        net = reference - dark
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(net) & (net > 0)
            if self._full_scale is not None:
                usable &= reference < self._full_scale
        return np.where(usable, net, np.nan)

    def _table_row(self, table: str, index: int, rows: int) -> np.ndarray | None:
        if not 0 <= index < rows:
            return None
        return np.asarray(self.reader.read(table, index, index + 1, columns=("counts",))["counts"][0], dtype=float)
