"""Plotly figures of a trial, built from a :class:`Snapshot` (no file access, no Streamlit).

Every figure keeps the user's zoom across refreshes (``uirevision`` = the trial),
and a decimated trace is drawn as its min/max envelope, so a spike one row wide
stays visible at any zoom-out.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis import LACK_OF_FIT_LIMIT, UnknownElementError, element

from ._follow import Snapshot, SpectrumView, Trace
from ._instruments import InstrumentsView, SeparationView

__all__ = [
    "time_unit",
    "compact",
    "envelope",
    "oxide_of",
    "furnace_figure",
    "purity_figure",
    "concentration_figure",
    "fit_figure",
    "spectrum_figure",
    "sensitivity_figure",
    "trial_figures",
    "FigureCache",
    "FIT_TITLE",
    "zones_figure",
    "sensor_figure",
    "cascade_purity_figure",
    "cascade_ratio_figure",
    "separation_figure",
    "separation_of",
    "comparison_figure",
    "units_label",
]

FIT_TITLE = "Lack of fit and wavelength shift"

_HEIGHT = 380
_COLOURS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
)


def time_unit(snapshot: Snapshot) -> tuple[float, str]:
    """Seconds per unit and the unit's name for the time axis: minutes up to 2 h, hours beyond."""
    latest = max(
        (
            trace.time_s[-1]
            for trace in (*snapshot.furnace.values(), snapshot.purity)
            if trace is not None and len(trace.time_s)
        ),
        default=0.0,
    )
    return (60.0, "min") if latest <= 7200 else (3600.0, "h")


def compact(values) -> np.ndarray:
    """Values as float32 unless their spread is so small next to their magnitude that float32 would show steps.

    Plotly sends arrays as base64 binary, so float32 halves what every refresh
    sends; float32 resolves 1e-7 of the magnitude, so with a spread above 1e-4
    of it a step stays below a thousandth of the plot's height.
    """
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    if finite.size:
        largest, spread = float(np.max(np.abs(finite))), float(np.ptp(finite))
        if spread and spread < 1e-4 * largest:
            return values
    return values.astype(np.float32)


def envelope(trace: Trace, scale: float = 1.0, per: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """x, y to draw: the values when a bucket is one row, else min and max of each bucket in turn."""
    x = compact(trace.time_s / per)
    if trace.bucket <= 1:
        return x, compact(trace.minimum * scale)
    return np.repeat(x, 2), compact(np.column_stack([trace.minimum, trace.maximum]).ravel() * scale)


def oxide_of(target: str) -> str:
    """The reported oxide of a target element (Nd -> Nd2O3), or the target itself if unknown."""
    try:
        return element(target).oxide
    except (UnknownElementError, KeyError, ValueError):
        return target or "target"


def _layout(fig: go.Figure, revision: str, title: str) -> go.Figure:
    """Common look; ``uirevision`` keeps the user's zoom while the data refreshes."""
    fig.update_layout(
        title=dict(text=title, x=0.0, y=0.98, yref="container", yanchor="top", font=dict(size=15)),
        height=_HEIGHT,
        margin=dict(l=10, r=10, t=64, b=10),
        uirevision=revision,
        hovermode="x unified",
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="right", x=1.0, font=dict(size=11)),
    )
    return fig


def _empty(snapshot_id: str, title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, snapshot_id, title)


def furnace_figure(snapshot: Snapshot) -> go.Figure:
    """Temperature, target and working setpoint (degC) above the heater output (%), vs time."""
    view = snapshot.instruments
    title = f"Furnace {view.zones[0].name}" if view is not None and len(view.zones) > 1 else "Furnace"
    if not snapshot.rows.get("furnace"):
        return _empty(snapshot.trial_id, title, "no furnace readings yet")
    per, unit = time_unit(snapshot)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    styles = {
        "temperature": ("temperature", "#d62728", "solid"),
        "setpoint": ("setpoint", "#7f7f7f", "dash"),
        "working_setpoint": ("working SP", "#ff7f0e", "dot"),
    }
    for column, (name, colour, dash) in styles.items():
        x, y = envelope(snapshot.furnace[column], per=per)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=name,
                mode="lines",
                line=dict(color=colour, dash=dash, width=1.5),
                hovertemplate="%{y:.1f} degC",
            ),
            row=1,
            col=1,
        )
    x, y = envelope(snapshot.furnace["output"], per=per)
    fig.add_trace(
        go.Scatter(
            x=x, y=y, name="output", mode="lines", line=dict(color="#1f77b4", width=1), hovertemplate="%{y:.1f} %"
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="degC", row=1, col=1)
    fig.update_yaxes(title_text="output %", row=2, col=1, rangemode="tozero")
    fig.update_xaxes(title_text=f"time ({unit})", row=2, col=1)
    return _layout(fig, snapshot.trial_id, title)


def purity_figure(snapshot: Snapshot) -> go.Figure:
    """Purity of the target oxide (%) vs time, with its 2-sigma band."""
    oxide = oxide_of(snapshot.target)
    covered = snapshot.analysis_attrs.get("covered_elements", "")
    title = f"{oxide} purity" + (f" (of {covered})" if covered else "")
    if snapshot.instruments is not None and snapshot.instruments.cascade:
        title = f"{snapshot.instruments.streams[0].name}: {title}"  # the first stream's, among several
    band = snapshot.purity_band  # set together with the purity
    if snapshot.purity is None or band is None or not snapshot.purity.rows:
        return _empty(snapshot.trial_id, title, "no analysed spectra yet")
    per, unit = time_unit(snapshot)
    x_band = compact(band.time_s / per)
    fig = go.Figure()
    # a mass fraction lies in [0, 1]: the band is drawn inside it (near a zero total its sigma is huge)
    upper = compact(np.clip(band.maximum * 100, 0.0, 100.0))
    lower = compact(np.clip(band.minimum * 100, 0.0, 100.0))
    fig.add_trace(
        go.Scatter(
            x=x_band, y=upper, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip", name="+2 sigma"
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x_band,
            y=lower,
            mode="lines",
            line=dict(width=0),
            fill="tonexty",
            fillcolor="rgba(31,119,180,0.2)",
            name="2 sigma band",
            hoverinfo="skip",
        )
    )
    x, y = envelope(snapshot.purity, scale=100.0, per=per)
    fig.add_trace(
        go.Scatter(
            x=x, y=y, name="purity", mode="lines", line=dict(color="#1f77b4", width=1.5), hovertemplate="%{y:.2f} %"
        )
    )
    fig.update_yaxes(title_text="% (mass fraction of REO)")
    fig.update_xaxes(title_text=f"time ({unit})")
    return _layout(fig, snapshot.trial_id, title)


def concentration_figure(snapshot: Snapshot) -> go.Figure:
    """Element concentrations (g/L) vs time, one trace per analyte."""
    title = "Concentrations"
    if not snapshot.rows.get("analysis"):
        return _empty(snapshot.trial_id, title, "no analysed spectra yet")
    per, unit = time_unit(snapshot)
    fig = go.Figure()
    for i, (analyte, trace) in enumerate(snapshot.concentration.items()):
        x, y = envelope(trace, per=per)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=analyte,
                mode="lines",
                line=dict(color=_COLOURS[i % len(_COLOURS)], width=1.5),
                hovertemplate="%{y:.3f} g/L",
            )
        )
    fig.update_yaxes(title_text="g/L (element)", rangemode="tozero")
    fig.update_xaxes(title_text=f"time ({unit})")
    return _layout(fig, snapshot.trial_id, title)


def fit_figure(snapshot: Snapshot) -> go.Figure:
    """Lack of fit vs time with its limit and the spectra flagged model mismatch, above the wavelength shift."""
    title = FIT_TITLE
    if not snapshot.fit_recorded:
        return _empty(
            snapshot.trial_id,
            title,
            "not recorded: this file's format predates 1.1, which added the lack of fit and the wavelength shift",
        )
    shift = snapshot.wavelength_shift  # set together with the lack of fit
    if snapshot.lack_of_fit is None or shift is None or not snapshot.lack_of_fit.rows:
        return _empty(snapshot.trial_id, title, "no analysed spectra yet")
    per, unit = time_unit(snapshot)
    flagged = snapshot.mismatch_rows
    title += (
        f" · {flagged:,} {'spectrum' if flagged == 1 else 'spectra'} flagged model mismatch"
        if flagged
        else " · none flagged"
    )
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.65, 0.35], vertical_spacing=0.06)
    x, y = envelope(snapshot.lack_of_fit, per=per)
    fig.add_trace(
        go.Scatter(
            x=x, y=y, name="lack of fit", mode="lines", line=dict(color="#1f77b4", width=1.5), hovertemplate="%{y:.2f}"
        ),
        row=1,
        col=1,
    )
    mismatch = snapshot.mismatch
    if flagged and mismatch is not None:
        # one marker per bucket holding a flagged spectrum, at the highest lack of fit among its flagged rows
        shown = np.isfinite(mismatch.maximum)
        fig.add_trace(
            go.Scatter(
                x=compact(mismatch.time_s[shown] / per),
                y=compact(mismatch.maximum[shown]),
                name="model mismatch (flag 16)",
                mode="markers",
                marker=dict(color="#d62728", symbol="x", size=7),
                hovertemplate="mismatch %{y:.2f}",
            ),
            row=1,
            col=1,
        )
    fig.add_hline(
        y=LACK_OF_FIT_LIMIT,
        line=dict(color="#d62728", dash="dash", width=1),
        row=1,  # pyright: ignore[reportArgumentType]  # plotly infers str from the "all" default; int is valid
        col=1,  # pyright: ignore[reportArgumentType]  # plotly infers str from the "all" default; int is valid
        annotation_text=f"limit {LACK_OF_FIT_LIMIT:g}: model mismatch above",
        annotation_position="top left",
        annotation_font=dict(size=11, color="#d62728"),
    )
    x, y = envelope(shift, per=per)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            name="wavelength shift",
            mode="lines",
            line=dict(color="#9467bd", width=1.2),
            hovertemplate="%{y:.3f} nm",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="lack of fit (1 = noise)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="shift (nm)", row=2, col=1)
    fig.update_xaxes(title_text=f"time ({unit})", row=2, col=1)
    return _layout(fig, snapshot.trial_id, title)


def spectrum_figure(snapshot: Snapshot) -> go.Figure:
    """The latest spectrum: absorbance with its fitted model above the residual, or raw counts."""
    spectrum: SpectrumView | None = snapshot.spectrum
    if spectrum is None:
        return _empty(snapshot.trial_id, "Latest spectrum", "no spectra yet")
    per, unit = time_unit(snapshot)
    title = f"Spectrum #{spectrum.index + 1} at {spectrum.time_s / per:.1f} {unit}"
    wl = compact(spectrum.wavelength_nm)
    if spectrum.absorbance is None:
        fig = go.Figure()
        fig.add_trace(go.Scatter(x=wl, y=compact(spectrum.counts), name="counts", mode="lines", line=dict(width=1)))
        for name, values in (("dark", spectrum.dark), ("reference", spectrum.reference)):
            if values is not None:
                fig.add_trace(
                    go.Scatter(x=wl, y=compact(values), name=name, mode="lines", line=dict(width=1, dash="dot"))
                )
        fig.update_yaxes(title_text="counts")
        fig.update_xaxes(title_text="wavelength (nm)")
        return _layout(fig, snapshot.trial_id + "-spectrum", title + " (raw counts)")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.05)
    fig.add_trace(
        go.Scatter(
            x=wl, y=compact(spectrum.absorbance), name="measured", mode="lines", line=dict(color="#444444", width=1)
        ),
        row=1,
        col=1,
    )
    if spectrum.model is not None:
        refit = spectrum.model_source == "refit"
        fig.add_trace(
            go.Scatter(
                x=wl,
                y=compact(spectrum.model),
                name="model (refit here)" if refit else "model",
                mode="lines",
                line=dict(color="#d62728", width=1.2),
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=wl,
                y=compact(spectrum.baseline),
                name="baseline",
                mode="lines",
                line=dict(color="#2ca02c", width=1, dash="dot"),
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=wl, y=compact(spectrum.residual), name="residual", mode="lines", line=dict(color="#1f77b4", width=1)
            ),
            row=2,
            col=1,
        )
        rms = f"residual RMS {spectrum.residual_rms:.2g}" if math.isfinite(spectrum.residual_rms) else ""
        title += f" · {rms}" if rms else ""
        if refit:
            title += " · model refitted, not the live fit"
    fig.update_yaxes(title_text="absorbance", row=1, col=1)
    fig.update_yaxes(title_text="residual", row=2, col=1)
    fig.update_xaxes(title_text="wavelength (nm)", row=2, col=1)
    return _layout(fig, snapshot.trial_id + "-spectrum", title)


def sensitivity_figure(
    wavelength_nm: np.ndarray, sensitivity: np.ndarray, analytes, key: str, title: str = "Sensitivity"
) -> go.Figure:
    """A calibration's sensitivity (absorbance per g/L) vs wavelength, one trace per analyte."""
    fig = go.Figure()
    for i, analyte in enumerate(analytes):
        fig.add_trace(
            go.Scatter(
                x=wavelength_nm,
                y=sensitivity[i],
                name=str(analyte),
                mode="lines",
                line=dict(color=_COLOURS[i % len(_COLOURS)], width=1.2),
            )
        )
    fig.update_yaxes(title_text="absorbance per g/L")
    fig.update_xaxes(title_text="wavelength (nm)")
    return _layout(fig, key, title)


# -- every instrument of a trial of several (format 2.0) ---------------------------------------------------


def units_label(name: str, units: str) -> str:
    """A channel with its units for an axis (``pH`` for a dimensionless "1", ``flow (L/h)``)."""
    return name if units in ("", "1") else f"{name} ({units})"


def _colour(i: int) -> str:
    return _COLOURS[i % len(_COLOURS)]


def zones_figure(snapshot: Snapshot) -> go.Figure:
    """Every temperature controller: temperature (solid) and setpoint (dashed) per zone above each one's output."""
    view = snapshot.instruments
    title = "Furnace zones: temperature and setpoint (dashed)"
    if view is None or not any(zone.rows for zone in view.zones):
        return _empty(snapshot.trial_id + "-zones", title, "no furnace readings yet")
    per, unit = time_unit(snapshot)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3], vertical_spacing=0.06)
    for i, zone in enumerate(view.zones):
        for column, dash, legend in (("temperature", "solid", True), ("setpoint", "dash", False)):
            x, y = envelope(zone.traces[column], per=per)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    name=zone.name if legend else f"{zone.name} setpoint",
                    legendgroup=zone.name,
                    showlegend=legend,
                    mode="lines",
                    line=dict(color=_colour(i), dash=dash, width=1.5 if legend else 1.0),
                    hovertemplate="%{y:.1f} degC",
                ),
                row=1,
                col=1,
            )
        x, y = envelope(zone.traces["output"], per=per)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=f"{zone.name} output",
                legendgroup=zone.name,
                showlegend=False,
                mode="lines",
                line=dict(color=_colour(i), width=1),
                hovertemplate="%{y:.1f} %",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="degC", row=1, col=1)
    fig.update_yaxes(title_text="output %", row=2, col=1, rangemode="tozero")
    fig.update_xaxes(title_text=f"time ({unit})", row=2, col=1)
    return _layout(fig, snapshot.trial_id + "-zones", title)


def sensor_figure(snapshot: Snapshot, name: str) -> go.Figure:
    """One sensor: each channel vs time in its own units (NaN, not drawn, where its state was not ok)."""
    view = snapshot.instruments
    sensor = next((s for s in view.sensors if s.name == name), None) if view is not None else None
    title = f"Sensor {name}"
    if sensor is None or not sensor.rows or not sensor.channels:
        return _empty(f"{snapshot.trial_id}-sensor-{name}", title, "no readings yet")
    title += ": " + ", ".join(units_label(channel, units) for channel, units, _ in sensor.channels)
    not_ok = sum(sensor.not_ok.values())
    if not_ok:
        title += f" · {not_ok:,} reading(s) out of range or with a probe fault, not drawn"
    per, unit = time_unit(snapshot)
    rows = len(sensor.channels)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.05 if rows > 1 else 0.0)
    for i, (channel, units, long_name) in enumerate(sensor.channels):
        x, y = envelope(sensor.traces[channel], per=per)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=units_label(channel, units),
                mode="lines",
                line=dict(color=_colour(i), width=1.5),
                hovertemplate="%{y:.4g}" + ("" if units in ("", "1") else f" {units}") + f"<extra>{long_name}</extra>",
            ),
            row=i + 1,
            col=1,
        )
        fig.update_yaxes(title_text=units_label(channel, units), row=i + 1, col=1)
    fig.update_xaxes(title_text=f"time ({unit})", row=rows, col=1)
    return _layout(fig, f"{snapshot.trial_id}-sensor-{name}", title)


def _stream_label(name: str, target: str) -> str:
    return f"{name} · {oxide_of(target)}"


def cascade_purity_figure(snapshot: Snapshot) -> go.Figure:
    """The purity of each stream's target oxide (%) vs time, one trace per sampling point."""
    view = snapshot.instruments
    title = "Purity per sampling point (each stream's target oxide)"
    if view is None or not any(stream.rows for stream in view.streams):
        return _empty(snapshot.trial_id + "-cascade-purity", title, "no analysed spectra yet")
    per, unit = time_unit(snapshot)
    fig = go.Figure()
    for i, stream in enumerate(view.streams):
        x, y = envelope(stream.purity, scale=100.0, per=per)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=_stream_label(stream.name, stream.target),
                mode="lines",
                line=dict(color=_colour(i), width=1.5),
                hovertemplate="%{y:.2f} %",
            )
        )
    fig.update_yaxes(title_text="% (mass fraction of REO)")
    fig.update_xaxes(title_text=f"time ({unit})")
    return _layout(fig, snapshot.trial_id + "-cascade-purity", title)


def _flag_strip(fig: go.Figure, label: str, trace: Trace, per: float, colour: str) -> None:
    """Markers in the figure's lower strip where rows were flagged (one per bucket holding a flagged row)."""
    shown = np.isfinite(trace.maximum)
    if not shown.any():
        return
    fig.add_trace(
        go.Scatter(
            x=compact(trace.time_s[shown] / per),
            y=[label] * int(shown.sum()),
            name=f"{label}: flagged",
            mode="markers",
            marker=dict(color=colour, symbol="x", size=7),
            showlegend=False,
            hovertemplate="flagged: NaN or no rare earths<extra>" + label + "</extra>",
        ),
        row=2,
        col=1,
    )


def cascade_ratio_figure(snapshot: Snapshot) -> go.Figure:
    """The cascade's mass ratio (Nd/Pr) per sampling point vs time (log scale); flagged rows marked below."""
    view = snapshot.instruments
    a, b = view.ratio if view is not None else ("Nd", "Pr")
    title = f"{a}/{b} mass ratio per sampling point"
    streams = [s for s in view.streams if s.ratio is not None] if view is not None else []
    if not streams or not any(s.rows for s in streams):
        message = "no analysed spectra yet" if streams else f"no stream measures both {a} and {b}"
        return _empty(snapshot.trial_id + "-cascade-ratio", title, message)
    flagged = sum(s.flagged_rows for s in streams)
    title += f" · {flagged:,} flagged (NaN or no rare earths), not drawn" if flagged else " · none flagged"
    per, unit = time_unit(snapshot)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.86, 0.14], vertical_spacing=0.04)
    for i, stream in enumerate(view.streams if view is not None else ()):
        if stream.ratio is None:
            continue
        x, y = envelope(stream.ratio, per=per)
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=stream.name,
                mode="lines",
                line=dict(color=_colour(i), width=1.5),
                hovertemplate="%{y:.4g}",
            ),
            row=1,
            col=1,
        )
        if stream.ratio_flagged is not None:
            _flag_strip(fig, stream.name, stream.ratio_flagged, per, _colour(i))
    fig.update_yaxes(title_text=f"{a}/{b} (g/g of element)", type="log", row=1, col=1)
    fig.update_yaxes(showgrid=False, row=2, col=1, categoryorder="array", categoryarray=[s.name for s in streams])
    fig.update_xaxes(title_text=f"time ({unit})", row=2, col=1)
    return _layout(fig, snapshot.trial_id + "-cascade-ratio", title)


def separation_of(view: InstrumentsView, pair: tuple[str, str] | None) -> SeparationView | None:
    """The separation factor of ``pair`` (enriched, depleted), or of the view's default pair."""
    pair = pair if pair in view.separations else view.default_pair()
    return view.separations.get(pair) if pair is not None else None


def separation_figure(snapshot: Snapshot, pair: tuple[str, str] | None = None) -> go.Figure:
    """The separation factor (a/b at the enriched point) / (a/b at the depleted point) vs time.

    Computed with :func:`analysis.separation_factor` from the measured concentrations, each row of the
    enriched stream with the depleted stream's row nearest in time; flagged pairs are marked below.
    """
    view = snapshot.instruments
    if view is None:
        return _empty(snapshot.trial_id + "-separation", "Separation factor", "one stream: no cascade")
    a, b = view.ratio
    separation = separation_of(view, pair)
    if separation is None:
        return _empty(
            snapshot.trial_id + "-separation",
            "Separation factor",
            f"needs two streams that measure both {a} and {b}",
        )
    enriched, depleted = separation.enriched, separation.depleted
    title = f"Separation factor {a}/{b}: {enriched} / {depleted}"
    if not separation.rows:
        return _empty(snapshot.trial_id + "-separation", title, "no paired spectra yet")
    notes = []
    if separation.flagged_rows:
        notes.append(f"{separation.flagged_rows:,} flagged (NaN or no rare earths), not drawn")
    if separation.unpaired_rows:
        notes.append(f"{separation.unpaired_rows:,} without a {depleted} spectrum near in time")
    title += " · " + ("; ".join(notes) if notes else "none flagged")
    per, unit = time_unit(snapshot)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.86, 0.14], vertical_spacing=0.04)
    x, y = envelope(separation.factor, per=per)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            name=f"({a}/{b})_{enriched} / ({a}/{b})_{depleted}",
            mode="lines",
            line=dict(color="#2ca02c", width=1.5),
            hovertemplate="%{y:.3f}",
        ),
        row=1,
        col=1,
    )
    _flag_strip(fig, "flagged", separation.flagged, per, "#d62728")
    fig.add_hline(
        y=1.0,
        line=dict(color="#7f7f7f", dash="dot", width=1),
        row=1,  # pyright: ignore[reportArgumentType]  # plotly infers str from the "all" default; int is valid
        col=1,  # pyright: ignore[reportArgumentType]  # plotly infers str from the "all" default; int is valid
        annotation_text="1: no separation",
        annotation_position="bottom left",
        annotation_font=dict(size=11, color="#7f7f7f"),
    )
    fig.update_yaxes(title_text="separation factor", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(showgrid=False, showticklabels=False, row=2, col=1)
    fig.update_xaxes(title_text=f"time ({unit})", row=2, col=1)
    return _layout(fig, snapshot.trial_id + "-separation", title)


def comparison_figure(curves, title: str, key: str = "trials-compare") -> go.Figure:
    """Purity curves of several trials overlaid, time since each trial's start on x.

    ``curves``: objects with ``label``, ``time_s``, ``minimum``, ``maximum`` and ``bucket`` (a decimated
    purity, as fractions).
    """
    fig = go.Figure()
    longest = max((float(c.time_s[-1]) for c in curves if len(c.time_s)), default=0.0)
    per, unit = (60.0, "min") if longest <= 7200 else (3600.0, "h")
    for i, curve in enumerate(curves):
        x, y = envelope(
            Trace(curve.time_s, curve.minimum, curve.maximum, curve.bucket, len(curve.time_s)), scale=100.0, per=per
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                name=curve.label,
                mode="lines",
                line=dict(color=_colour(i), width=1.5),
                hovertemplate="%{y:.2f} %",
            )
        )
    fig.update_yaxes(title_text="% (mass fraction of REO)")
    fig.update_xaxes(title_text=f"time since start ({unit})")
    return _layout(fig, key, title)


def trial_figures(snapshot: Snapshot, cache: FigureCache | None = None) -> dict[str, go.Figure]:
    """Every figure of a trial view, by name (what the Live and Trials pages draw).

    With a ``cache``, a figure is built again only when what it draws changed.
    """
    return (cache or FigureCache()).figures(snapshot)


class FigureCache:
    """The figures of one page, each rebuilt only when its data changed (building a figure costs tens of ms)."""

    _BUILDERS = {
        "furnace": furnace_figure,
        "purity": purity_figure,
        "spectrum": spectrum_figure,
        "concentration": concentration_figure,
        "fit": fit_figure,
    }

    def __init__(self):
        self._figures: dict[str, tuple[tuple, go.Figure]] = {}
        self.builds = 0  # figures built so far (for tests and the benchmark)

    def figures(self, snapshot: Snapshot) -> dict[str, go.Figure]:
        """The five figures of ``snapshot``."""
        unit = time_unit(snapshot)
        analysed = snapshot.purity.rows if snapshot.purity is not None else 0
        fitted = snapshot.lack_of_fit.rows if snapshot.lack_of_fit is not None else 0
        signatures = {
            "furnace": (snapshot.path, snapshot.furnace["temperature"].rows, unit),
            "purity": (snapshot.path, analysed, unit),
            "spectrum": (snapshot.path, snapshot.spectrum.index if snapshot.spectrum is not None else -1, unit),
            "concentration": (snapshot.path, analysed, unit),
            "fit": (snapshot.path, snapshot.fit_recorded, fitted, snapshot.mismatch_rows, unit),
        }
        for name, signature in signatures.items():
            cached = self._figures.get(name)
            if cached is None or cached[0] != signature:
                self._figures[name] = (signature, self._BUILDERS[name](snapshot))
                self.builds += 1
        return {name: self._figures[name][1] for name in signatures}

    def instrument_figures(self, snapshot: Snapshot, pair: tuple[str, str] | None = None) -> dict[str, go.Figure]:
        """The figures of every instrument of a trial of several (none for a station of the older form).

        ``zones`` (more than one temperature controller), ``sensor:<name>`` per sensor, and with more than
        one stream the cascade view: ``cascade-purity``, ``cascade-ratio`` and ``separation`` (of ``pair``,
        (enriched, depleted), else the default pair).
        """
        view = snapshot.instruments
        if view is None:
            return {}
        unit = time_unit(snapshot)
        builders: dict[str, tuple[tuple, Callable[[], go.Figure]]] = {}
        if len(view.zones) > 1:
            builders["zones"] = ((tuple(z.rows for z in view.zones),), lambda: zones_figure(snapshot))
        for sensor in view.sensors:
            builders[f"sensor:{sensor.name}"] = ((sensor.rows,), lambda name=sensor.name: sensor_figure(snapshot, name))
        if view.cascade:
            analysed = tuple(s.rows for s in view.streams)
            builders["cascade-purity"] = ((analysed,), lambda: cascade_purity_figure(snapshot))
            builders["cascade-ratio"] = ((analysed,), lambda: cascade_ratio_figure(snapshot))
            separation = separation_of(view, pair)
            shown = (separation.enriched, separation.depleted, separation.rows) if separation is not None else None
            builders["separation"] = ((shown,), lambda: separation_figure(snapshot, pair))
        out = {}
        for name, (signature, build) in builders.items():
            signature = (snapshot.path, unit, *signature)
            cached = self._figures.get(name)
            if cached is None or cached[0] != signature:
                self._figures[name] = (signature, build())
                self.builds += 1
            out[name] = self._figures[name][1]
        return out


def standards_figure(wavelength_nm: np.ndarray, names, absorbance: np.ndarray, key: str) -> go.Figure:
    """The standards' absorbance spectra, one trace per standard."""
    fig = go.Figure()
    for m, name in enumerate(names):
        fig.add_trace(
            go.Scatter(
                x=wavelength_nm,
                y=absorbance[m],
                name=str(name),
                mode="lines",
                line=dict(color=_COLOURS[m % len(_COLOURS)], width=1),
            )
        )
    fig.update_yaxes(title_text="absorbance")
    fig.update_xaxes(title_text="wavelength (nm)")
    return _layout(fig, key, "Standards")


def standards_error_figure(names, analytes, loo_error: np.ndarray, fit_residual_rms: np.ndarray, key: str) -> go.Figure:
    """Leave-one-out error per standard and analyte (g/L) above each standard's fit residual RMS."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.08)
    labels = [str(n) for n in names]
    for k, analyte in enumerate(analytes):
        fig.add_trace(
            go.Bar(x=labels, y=loo_error[:, k], name=f"{analyte} LOO error", marker_color=_COLOURS[k % len(_COLOURS)]),
            row=1,
            col=1,
        )
    fig.add_trace(go.Bar(x=labels, y=fit_residual_rms, name="fit residual RMS", marker_color="#7f7f7f"), row=2, col=1)
    fig.update_yaxes(title_text="predicted - true g/L", row=1, col=1)
    fig.update_yaxes(title_text="absorbance", row=2, col=1)
    fig.update_layout(barmode="group")
    return _layout(fig, key, "Leave-one-out error and fit residual per standard")
