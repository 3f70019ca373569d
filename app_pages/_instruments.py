"""Every instrument of a trial of several instruments (format 2.0), followed incrementally (no Streamlit).

A station of the older form (one furnace, one spectrometer, one stream) is drawn by the Live page's own
traces (:mod:`app_pages._follow`). A trial with more — furnace zones, sensors, several spectrometers or
analysed streams — gets an :class:`InstrumentsFollower` beside them: one set of traces per temperature
controller (temperature, setpoint, working setpoint, output), per sensor channel, and per analysed stream
(purity, and the cascade's Nd/Pr mass ratio), and the separation factor between every two streams,
``(Nd/Pr)_a / (Nd/Pr)_b`` by :func:`analysis.separation_factor`. Like the rest of the page it reads
each table's history once (decimated slices, or bounded blocks where a value is computed per row) and then
only the rows added since its marks.

A row whose ratio would be noise is not drawn but flagged: a concentration NaN or not positive, or the
runner's flags *no rare earths in the cell* (32, the total oxide below its quantitation limit) or
*analysis failed* (8). Rows of two streams are paired by time: each row of the first with the row of the
second nearest in time, no farther than the second stream's typical interval between spectra.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter, deque
from dataclasses import dataclass, field
from itertools import permutations

import numpy as np

from analysis import separation_factor
from daq import TrialReader
from daq.layout import FLAG_ANALYSIS_FAILED, FLAG_NO_RARE_EARTHS, table_key

from ._traces import MAX_POINTS, StreamingMinMax, Trace, seed_traces

__all__ = [
    "CASCADE_RATIO",
    "UNUSABLE_RATIO_FLAGS",
    "ZoneView",
    "SensorView",
    "StreamView",
    "SeparationView",
    "InstrumentsView",
    "InstrumentsFollower",
    "SeparationPairing",
    "has_several_instruments",
    "ratio_rows",
]

CASCADE_RATIO = ("Nd", "Pr")
"""The mass ratio the cascade view draws per sampling point (g/L of element over g/L of element)."""
UNUSABLE_RATIO_FLAGS = FLAG_NO_RARE_EARTHS | FLAG_ANALYSIS_FAILED
"""Spectrometer row flags whose concentrations make no ratio (no rare earths in the cell; analysis failed)."""
ZONE_COLUMNS = ("temperature", "setpoint", "working_setpoint", "output")
MAX_PAIRED_STREAMS = 8
"""Streams whose separation factors are computed pairwise (every ordered pair: at most 56)."""
_SEED_BLOCK_ROWS = 1 << 16
_PENDING_ROWS = 512  # rows of a stream waiting for the other stream's next row, at most
_INTERVALS = 64  # intervals between a stream's spectra kept to estimate its typical one


def has_several_instruments(instruments, streams) -> bool:
    """Whether a trial has more than a station of the older form: furnace zones, sensors, spectrometers, streams.

    A version-1 file and a 2.0 file of one temperature controller and one spectrometer (whatever their
    names) are drawn as they always were.
    """
    kinds = Counter(kind for _, kind in instruments)
    return (
        kinds["temperature_controller"] > 1
        or kinds["spectrometer"] > 1
        or kinds["sensor"] > 0
        or len(streams) > 1
        or any(kind not in ("temperature_controller", "spectrometer", "sensor") for kind in kinds)
    )


def ratio_rows(concentration: np.ndarray, flags: np.ndarray, columns: tuple[int, int]) -> tuple:
    """The mass ratio a/b of each row and whether it is unusable (NaN or non-positive concentration, flag 8 or 32).

    Returns ``(ratio, bad)``; ``ratio`` is NaN where ``bad``.
    """
    concentration = np.asarray(concentration, dtype=float)
    a = concentration[:, columns[0]]
    b = concentration[:, columns[1]]
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    usable &= (np.asarray(flags, dtype=np.int64) & UNUSABLE_RATIO_FLAGS) == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(usable, a / np.where(usable, b, 1.0), np.nan)
    return ratio, ~usable


# -- what a page draws ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneView:
    """One temperature controller: its traces (temperature, setpoint, working_setpoint, output) and latest row."""

    name: str
    traces: dict[str, Trace]
    latest: dict[str, float]
    rows: int


@dataclass(frozen=True)
class SensorView:
    """One sensor: its channels ``(name, units, long_name)`` in the map's order, a trace of each (its readings
    whose state is ok), the latest value and state of each, and the latest row's flag."""

    name: str
    channels: tuple[tuple[str, str, str], ...]
    traces: dict[str, Trace]
    latest: dict[str, float]
    rows: int
    not_ok: dict[str, int] = field(default_factory=dict)  # readings not drawn (state not ok), per channel


@dataclass(frozen=True)
class StreamView:
    """One analysed stream: target, purity, the cascade's mass ratio (None: the stream lacks Nd or Pr)."""

    name: str  # its spectrometer
    key: str  # its analysis table
    target: str
    covered_elements: str
    purity: Trace
    ratio: Trace | None
    ratio_flagged: Trace | None  # 1.0 in buckets holding a flagged row, NaN elsewhere
    flagged_rows: int
    rows: int  # analysis rows drawn (those whose spectrometer flag is there)
    latest: dict[str, float]  # time, purity, purity_sigma, flag of the latest row drawn


@dataclass(frozen=True)
class SeparationView:
    """The separation factor ``(a/b at enriched) / (a/b at depleted)`` at the enriched stream's row times."""

    enriched: str
    depleted: str
    factor: Trace
    flagged: Trace  # 1.0 in buckets holding a flagged pair, NaN elsewhere
    flagged_rows: int
    unpaired_rows: int
    rows: int
    latest_time_s: float = math.nan  # the latest drawn value and its time
    latest: float = math.nan


@dataclass(frozen=True)
class InstrumentsView:
    """Every instrument of a trial as drawn after one update."""

    instruments: tuple[tuple[str, str], ...]
    zones: tuple[ZoneView, ...]
    sensors: tuple[SensorView, ...]
    streams: tuple[StreamView, ...]
    separations: dict[tuple[str, str], SeparationView] = field(default_factory=dict)
    ratio: tuple[str, str] = CASCADE_RATIO
    spectra: dict[str, int] = field(default_factory=dict)  # rows of every spectrometer, by name

    @property
    def cascade(self) -> bool:
        """Whether there is a cascade to draw: more than one analysed stream."""
        return len(self.streams) > 1

    def default_pair(self) -> tuple[str, str] | None:
        """(enriched, depleted): the stream richest in Nd relative to Pr and the poorest (median ratio so far).

        Before two streams have a usable ratio: a stream whose target is Pr is the depleted one and the last
        other stream the enriched one. None without two streams that measure both elements.
        """
        capable = [s for s in self.streams if s.ratio is not None]
        if len(capable) < 2:
            return None
        medians = {}
        for stream in capable:
            trace = stream.ratio
            values = np.concatenate([trace.minimum, trace.maximum]) if trace is not None else np.empty(0)
            values = values[np.isfinite(values)]
            if values.size:
                medians[stream.name] = float(np.median(values))
        if len(medians) >= 2:
            ranked = sorted(medians, key=lambda n: medians[n])  # stable: ties keep the streams' order
            return ranked[-1], ranked[0]
        depleted = next((s.name for s in capable if s.target == self.ratio[1]), capable[0].name)
        enriched = next(s.name for s in reversed(capable) if s.name != depleted)
        return enriched, depleted


# -- following ------------------------------------------------------------------------------------------------


class _TableTraces:
    """Traces of some columns of one table: seeded from decimated slices, then only the new rows."""

    def __init__(self, key: str, columns: tuple[str, ...], max_points: int):
        self.key = key
        self.columns = columns
        self.max_points = max_points
        self.traces = {column: StreamingMinMax(max_points) for column in columns}
        self.mark: int | None = None

    def update(self, reader: TrialReader, rows: int) -> int:
        """Read up to row ``rows``; returns the rows read."""
        if self.mark is None:
            self.mark = rows
            return seed_traces(
                reader, self.key, rows, [(self.traces[c], c, None) for c in self.columns], self.max_points
            )
        if rows <= self.mark:
            return 0
        new = reader.read(self.key, self.mark, rows, columns=("time", *self.columns))
        for column in self.columns:
            self.traces[column].extend(new["time"], new[column])
        read, self.mark = rows - self.mark, rows
        return read

    def snapshot(self) -> dict[str, Trace]:
        return {column: trace.trace() for column, trace in self.traces.items()}


class _SensorTraces:
    """A sensor's channels: a trace of each, drawn only where the channel's state is ok (0), in bounded blocks."""

    def __init__(self, key: str, channels: tuple[str, ...], max_points: int):
        self.key = key
        self.channels = channels
        self.max_points = max_points
        self.traces = {channel: StreamingMinMax(max_points) for channel in channels}
        self.not_ok = dict.fromkeys(channels, 0)  # readings out of range or with a probe fault, per channel
        self.mark: int | None = None

    def update(self, reader: TrialReader, rows: int) -> int:
        """Read up to row ``rows``; returns the rows read."""
        if self.mark is None:
            self.mark = 0
            for trace in self.traces.values():
                trace.bucket = max(1, -(-rows // self.max_points))
        start = self.mark
        columns = ("time", *self.channels, *(f"{channel}_state" for channel in self.channels))
        for block in range(start, rows, _SEED_BLOCK_ROWS):
            new = reader.read(self.key, block, min(rows, block + _SEED_BLOCK_ROWS), columns=columns)
            for channel in self.channels:
                ok = np.asarray(new[f"{channel}_state"]) == 0
                self.not_ok[channel] += int(np.count_nonzero(~ok))
                self.traces[channel].extend(new["time"], np.where(ok, new[channel], np.nan))
        self.mark = max(start, rows)
        return self.mark - start

    def snapshot(self) -> dict[str, Trace]:
        return {channel: trace.trace() for channel, trace in self.traces.items()}


def _latest(reader: TrialReader, key: str, rows: int, columns: tuple[str, ...]) -> dict[str, float]:
    """The last row of a table as Python numbers (empty when it has none)."""
    if not rows:
        return {}
    last = reader.read(key, rows - 1, rows, columns=columns)
    out = {}
    for name, values in last.items():
        value = values[0]
        out[name] = value.item() if isinstance(value, np.generic) else value
    return out


def _joined(old: tuple, new: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``(time, ratio, bad)`` followed by more."""
    return (
        np.concatenate([old[0], np.asarray(new[0], dtype=float)]),
        np.concatenate([old[1], np.asarray(new[1], dtype=float)]),
        np.concatenate([old[2], np.asarray(new[2], dtype=bool)]),
    )


class SeparationPairing:
    """The separation factor of stream A over stream B, row by row of A, fed rows as they come.

    Each row of A is paired with the row of B nearest in time, no farther than B's typical interval between
    rows (the median of its last intervals); a row of A waits for B's next row (which may be flushed later)
    until the trial ends, or until :data:`_PENDING_ROWS` rows of A wait. A pair with an unusable ratio on
    either side is flagged, a row without a pair counted as unpaired; neither is drawn.
    """

    def __init__(self, max_points: int = MAX_POINTS):
        self.factor = StreamingMinMax(max_points)
        self.flagged = StreamingMinMax(max_points)
        self.flagged_rows = 0
        self.unpaired_rows = 0
        self.rows = 0
        self.latest_time_s = math.nan
        self.latest = math.nan
        self._a = (np.empty(0), np.empty(0), np.empty(0, bool))  # time, ratio, bad: waiting for B
        self._b = (np.empty(0), np.empty(0), np.empty(0, bool))  # B's rows that a waiting row may pair with
        self._b_intervals: deque[float] = deque(maxlen=_INTERVALS)
        self._b_last = math.nan

    def set_bucket(self, bucket: int) -> None:
        """The bucket size to start with (a first read of many rows: no repeated coarsening)."""
        self.factor.bucket = self.flagged.bucket = max(1, int(bucket))

    def feed(self, a_rows: tuple, b_rows: tuple, final: bool) -> None:
        """Add rows ``(time, ratio, bad)`` of A and of B; pair what can be paired (everything when ``final``)."""
        b_time = np.asarray(b_rows[0], dtype=float)
        if b_time.size:
            previous = np.concatenate([[self._b_last], b_time]) if math.isfinite(self._b_last) else b_time
            self._b_intervals.extend(np.diff(previous).tolist())
            self._b_last = float(b_time[-1])
        self._a = _joined(self._a, a_rows)
        self._b = _joined(self._b, b_rows)
        self._pair(final)

    def _max_gap(self) -> float:
        intervals = [i for i in self._b_intervals if i > 0]
        return float(np.median(intervals)) if intervals else math.inf

    def _pair(self, final: bool) -> None:
        a_time, a_ratio, a_bad = self._a
        b_time, b_ratio, b_bad = self._b
        if not a_time.size:
            return
        if final:
            ready = a_time.size
        else:
            ready = int(np.searchsorted(a_time, b_time[-1], side="right")) if b_time.size else 0
            ready = max(ready, a_time.size - _PENDING_ROWS)  # B has stopped: give up waiting
        if not ready:
            return
        t, ratio, bad = a_time[:ready], a_ratio[:ready], a_bad[:ready]
        if b_time.size:
            after = np.clip(np.searchsorted(b_time, t), 0, b_time.size - 1)
            before = np.clip(after - 1, 0, b_time.size - 1)
            nearest = np.where(np.abs(b_time[before] - t) <= np.abs(b_time[after] - t), before, after)
            paired = np.abs(b_time[nearest] - t) <= self._max_gap()
            flagged = paired & (bad | b_bad[nearest])
            with np.errstate(divide="ignore", invalid="ignore"):
                factor = np.where(paired & ~flagged, separation_factor(ratio, b_ratio[nearest]), np.nan)
            keep = int(before[-1])  # B's rows before the last paired one are no one's nearest any more
        else:
            paired = np.zeros(ready, bool)
            flagged = paired
            factor = np.full(ready, np.nan)
            keep = 0
        self.factor.extend(t, factor)
        drawn = np.flatnonzero(np.isfinite(factor))
        if drawn.size:
            self.latest_time_s, self.latest = float(t[drawn[-1]]), float(factor[drawn[-1]])
        self.flagged.extend(t, np.where(flagged, 1.0, np.nan))
        self.flagged_rows += int(np.count_nonzero(flagged))
        self.unpaired_rows += int(np.count_nonzero(~paired))
        self.rows += ready
        self._a = (a_time[ready:], a_ratio[ready:], a_bad[ready:])
        self._b = (b_time[keep:], b_ratio[keep:], b_bad[keep:])


class _StreamFollower:
    """One analysed stream: purity and the cascade's ratio per row, up to the rows whose flags are there."""

    def __init__(self, reader: TrialReader, name: str, max_points: int, ratio: tuple[str, str]):
        info = reader.stream(name)
        self.name = name
        self.key = info.key
        self.spectrometer_key = table_key("spectrometer", name)
        self.target = info.target_element
        self.covered = info.attrs.get("covered_elements", "")
        analytes = tuple(info.analytes)
        self.columns = (analytes.index(ratio[0]), analytes.index(ratio[1])) if set(ratio) <= set(analytes) else None
        self.purity = StreamingMinMax(max_points)
        self.ratio = StreamingMinMax(max_points) if self.columns else None
        self.flagged = StreamingMinMax(max_points) if self.columns else None
        self.flagged_rows = 0
        self.mark = 0
        self.max_points = max_points

    def stop(self, reader: TrialReader) -> int:
        """Rows that can be drawn: analysis rows whose spectrometer rows (and flags) are there too."""
        return min(reader.rows(self.key), reader.rows(self.spectrometer_key))

    def set_bucket(self, rows: int) -> None:
        bucket = max(1, -(-rows // self.max_points))
        for trace in (self.purity, self.ratio, self.flagged):
            if trace is not None:
                trace.bucket = bucket

    def take(self, reader: TrialReader, stop: int) -> tuple:
        """Fold rows ``mark:stop`` into the traces; returns them as ``(time, ratio, bad)`` for the pairings."""
        start, self.mark = self.mark, max(self.mark, stop)
        if stop <= start:
            return np.empty(0), np.empty(0), np.empty(0, bool)
        columns = ("time", "purity") + (("concentration",) if self.columns else ())
        rows = reader.read(self.key, start, stop, columns=columns)
        self.purity.extend(rows["time"], rows["purity"])
        if self.columns is None or self.ratio is None or self.flagged is None:
            return rows["time"], np.full(len(rows["time"]), np.nan), np.ones(len(rows["time"]), bool)
        flags = reader.read(self.spectrometer_key, start, stop, columns=("flag",))["flag"]
        ratio, bad = ratio_rows(rows["concentration"], flags, self.columns)
        self.ratio.extend(rows["time"], ratio)
        self.flagged.extend(rows["time"], np.where(bad, 1.0, np.nan))
        self.flagged_rows += int(np.count_nonzero(bad))
        return rows["time"], ratio, bad

    def view(self, reader: TrialReader) -> StreamView:
        latest = _latest(reader, self.key, self.mark, ("time", "purity", "purity_sigma"))
        if self.mark:
            flag = reader.read(self.spectrometer_key, self.mark - 1, self.mark, columns=("flag",))["flag"][0]
            latest["flag"] = int(flag)
        return StreamView(
            name=self.name,
            key=self.key,
            target=self.target,
            covered_elements=self.covered,
            purity=self.purity.trace(),
            ratio=self.ratio.trace() if self.ratio is not None else None,
            ratio_flagged=self.flagged.trace() if self.flagged is not None else None,
            flagged_rows=self.flagged_rows,
            rows=self.mark,
            latest=latest,
        )


class InstrumentsFollower:
    """Every zone, sensor and stream of one open trial, and the separation factors between its streams."""

    def __init__(self, reader: TrialReader, max_points: int = MAX_POINTS, ratio: tuple[str, str] = CASCADE_RATIO):
        self.reader = reader
        self.max_points = max_points
        self.ratio = ratio
        self.instruments = tuple((i.name, i.kind) for i in reader.instruments())
        self.zones = [
            _TableTraces(table_key("furnace", name), ZONE_COLUMNS, max_points)
            for name, kind in self.instruments
            if kind == "temperature_controller"
        ]
        self.zone_names = [name for name, kind in self.instruments if kind == "temperature_controller"]
        self.sensors = []
        for name, kind in self.instruments:
            if kind != "sensor":
                continue
            info = reader.sensor(name)
            channels = tuple((c.name, c.units, c.long_name) for c in info.channels)
            self.sensors.append(
                (name, channels, _SensorTraces(table_key("sensor", name), tuple(c[0] for c in channels), max_points))
            )
        self.streams = [_StreamFollower(reader, name, max_points, ratio) for name in reader.streams()]
        capable = [s.name for s in self.streams if s.columns is not None][:MAX_PAIRED_STREAMS]
        self.pairings = {pair: SeparationPairing(max_points) for pair in permutations(capable, 2)}
        self._seeded = False
        self.last_read: dict[str, int] = {}

    def update(self, final: bool) -> InstrumentsView:
        """Read what is new in every table (``final``: the trial has ended, pair every row still waiting)."""
        reader, read = self.reader, {}
        for zone in self.zones:
            read[zone.key] = zone.update(reader, reader.rows(zone.key))
        for _, _, sensor in self.sensors:
            read[sensor.key] = sensor.update(reader, reader.rows(sensor.key))
        stops = {stream.name: stream.stop(reader) for stream in self.streams}
        if not self._seeded:
            for stream in self.streams:
                stream.set_bucket(stops[stream.name])
            for (enriched, _), pairing in self.pairings.items():
                pairing.set_bucket(max(1, -(-stops[enriched] // self.max_points)))
            block = _SEED_BLOCK_ROWS
            self._seeded = True
        else:
            block = max(stops.values(), default=0) + 1
        starts = {stream.name: stream.mark for stream in self.streams}
        for stream in self.streams:
            read[stream.key] = stops[stream.name] - starts[stream.name]
        # in lock-step blocks, so the rows of one stream waiting for another's stay bounded
        while True:
            taken = {
                stream.name: stream.take(reader, min(stops[stream.name], stream.mark + block))
                for stream in self.streams
            }
            done = all(stream.mark >= stops[stream.name] for stream in self.streams)
            for (a, b), pairing in self.pairings.items():
                pairing.feed(taken[a], taken[b], final and done)
            if done:
                break
        self.last_read = read
        return self.view()

    def view(self) -> InstrumentsView:
        reader = self.reader
        zones = tuple(
            ZoneView(
                name=name,
                traces=zone.snapshot(),
                latest=_latest(reader, zone.key, zone.mark or 0, ("time", *ZONE_COLUMNS, "flag")),
                rows=zone.mark or 0,
            )
            for name, zone in zip(self.zone_names, self.zones)
        )
        sensors = []
        for name, channels, traces in self.sensors:
            columns = ("time", *(c[0] for c in channels), *(f"{c[0]}_state" for c in channels), "flag")
            sensors.append(
                SensorView(
                    name=name,
                    channels=channels,
                    traces=traces.snapshot(),
                    latest=_latest(reader, traces.key, traces.mark or 0, columns),
                    rows=traces.mark or 0,
                    not_ok=dict(traces.not_ok),
                )
            )
        separations = {
            pair: SeparationView(
                enriched=pair[0],
                depleted=pair[1],
                factor=pairing.factor.trace(),
                flagged=pairing.flagged.trace(),
                flagged_rows=pairing.flagged_rows,
                unpaired_rows=pairing.unpaired_rows,
                rows=pairing.rows,
                latest_time_s=pairing.latest_time_s,
                latest=pairing.latest,
            )
            for pair, pairing in self.pairings.items()
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            streams = tuple(stream.view(reader) for stream in self.streams)
        return InstrumentsView(
            instruments=self.instruments,
            zones=zones,
            sensors=tuple(sensors),
            streams=streams,
            separations=separations,
            ratio=self.ratio,
            spectra={
                name: reader.rows(table_key("spectrometer", name))
                for name, kind in self.instruments
                if kind == "spectrometer"
            },
        )
