"""Streamlit pieces shared by the pages: the data folder, a trial's follower, and the trial view.

Every failure a user can meet (no data folder, a file still being created, a
corrupt file, a refused path) becomes one clear message on the page; an
unexpected error is logged with its traceback on the server and shown as a
one-line error, never as a traceback in the browser.
"""

from __future__ import annotations

import functools
import logging
import math
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from analysis import LACK_OF_FIT_LIMIT
from daq import TrialFileError
from daq.layout import FLAG_MODEL_MISMATCH, FLAG_NO_RARE_EARTHS, ROW_FLAGS
from daq.store import utc_now, writer_is_alive

from ._calibration import calibration_loader
from ._figures import FigureCache, oxide_of, time_unit, trial_figures
from ._follow import Snapshot, TrialFollower
from ._instruments import InstrumentsView
from ._paths import (
    DataFolder,
    DataFolderError,
    OutsideDataFolder,
    list_trials,
    relative_name,
    resolve_data_folder,
    trial_path_from_query,
)

__all__ = [
    "REFRESH_S",
    "data_folder",
    "follower",
    "drop_follower",
    "live_updates",
    "show_trial",
    "render_snapshot",
    "trial_from_query",
    "report_unexpected",
    "guarded",
    "fmt",
]

log = logging.getLogger("remdaq.app")

REFRESH_S = 1.0
"""Seconds between refreshes of a running trial (st.fragment run_every)."""
_READ_ERRORS = (TrialFileError, OSError, KeyError, ValueError, RuntimeError)
"""What reading a missing, half-written or corrupt HDF5 file raises (h5py raises RuntimeError for some)."""
_FOLLOWERS = "remdaq_followers"
_FIGURES = "remdaq_figures"
_STATE_LOOK = {
    "running": ("success", "Running"),
    "success": ("info", "Ended: success"),
    "aborted": ("warning", "Ended: aborted (the events say why)"),
    "failed": ("error", "Ended: failed (the events say why)"),
    "interrupted": (
        "error",
        "Interrupted: the file has no clean end and no writer (the process was killed or "
        "the machine stopped); it shows the rows up to the last flush",
    ),
}


def fmt(value, spec: str = ".1f", suffix: str = "") -> str:
    """A number for a metric; an em dash for a missing or NaN value."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "—"
    return "—" if not math.isfinite(number) else f"{number:{spec}}{suffix}"


def report_unexpected(error: BaseException, what: str) -> None:
    """Log an unexpected error with its traceback on the server; show one line in the page."""
    log.exception("%s", what, exc_info=error)
    st.error(f"{what}: unexpected {type(error).__name__}: {error}. The details are in the app's log.")


def guarded(what: str):
    """Decorate a page body or fragment so an unexpected error is one line on the page, not a traceback."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - Streamlit's own rerun/stop are BaseExceptions, not caught
                report_unexpected(error, what)
                return None

        return wrapper

    return decorate


# -- the data folder -----------------------------------------------------------------------


def data_folder() -> DataFolder | None:
    """The data folder, with a sidebar note; a message and None when there is none to read."""
    try:
        folder = resolve_data_folder()
    except DataFolderError as error:
        st.error(f"Cannot find the data folder: {error}")
        return None
    st.sidebar.caption(f"Data folder: `{folder.path}` ({folder.source}). This monitor is read-only.")
    if not folder.path.is_dir():
        st.info(
            f"The data folder `{folder.path}` does not exist yet: no trial has been run here. "
            "Run one with `remdaq run`, or point `REMDAQ_DATA_DIR` at another folder."
        )
        return None
    return folder


def trial_from_query(folder: DataFolder) -> Path | None:
    """The trial named by ``?trial=`` (confined to the data folder), None if absent or refused (with a message)."""
    value = st.query_params.get("trial")
    if not value:
        return None
    try:
        path = trial_path_from_query(folder, value)
    except OutsideDataFolder as error:
        st.error(f"Refused `?trial={value}`: {error}.")
        return None
    if not path.is_file():
        st.warning(f"`?trial={value}`: there is no such trial file in the data folder.")
        return None
    return path


def trial_choices(folder: DataFolder) -> list[str]:
    """Trial files as the user names them (relative to the data folder), newest first."""
    return [relative_name(folder, path) for path in list_trials(folder)]


# -- followers (one per page and session) ----------------------------------------------------


def follower(folder: DataFolder, key: str, path: Path) -> TrialFollower:
    """This session's follower of ``path`` for page ``key``; a new one when the page switched trial."""
    followers = st.session_state.setdefault(_FOLLOWERS, {})
    current = followers.get(key)
    if current is not None and current.path == path:
        return current
    drop_follower(key)
    followers[key] = TrialFollower(path, calibration_loader=calibration_loader(folder))
    return followers[key]


def drop_follower(key: str) -> None:
    """Close and forget the follower of page ``key`` (it is reopened on the next refresh)."""
    st.session_state.get(_FIGURES, {}).pop(key, None)
    current = st.session_state.get(_FOLLOWERS, {}).pop(key, None)
    if current is not None:
        try:
            current.close()
        except Exception:  # noqa: BLE001 - closing a broken file must not break the page
            log.warning("closing %s failed", current.path, exc_info=True)


# -- the trial view ----------------------------------------------------------------------------


def live_updates(key: str) -> bool:
    """The "Live updates" switch of a page: off freezes the view so a zoomed plot keeps its zoom.

    Streamlit draws a Plotly figure whose data changed as a new chart, which resets
    the zoom of that chart; while updates are paused nothing is redrawn.
    """
    return st.toggle(
        "Live updates",
        value=True,
        key=f"{key}-live-updates",
        help="Switch off to zoom into a plot: each refresh redraws the plots whose data changed, "
        "which resets their zoom. Switch on again to follow the trial.",
    )


def show_trial(folder: DataFolder, path: Path, key: str, frozen: bool = False) -> Snapshot | None:
    """Read what is new in a trial and draw it; a message instead when the file cannot be read.

    ``frozen`` draws the last snapshot again without reading (live updates paused).
    """
    name = relative_name(folder, path)
    current = st.session_state.get(_FOLLOWERS, {}).get(key)
    if frozen and current is not None and current.path == path and current.last_snapshot is not None:
        st.info(
            "Live updates are paused: this is the trial as it was when they were paused.",
            icon=":material/pause_circle:",
        )
        render_snapshot(folder, current.last_snapshot, key, frozen=True)
        return current.last_snapshot
    opened = False
    try:
        trial = follower(folder, key, path)
        opened = True
        snapshot = trial.update()
    except _READ_ERRORS as error:
        drop_follower(key)
        if not path.exists():
            st.warning(f"`{name}` no longer exists.")
        elif not opened and writer_is_alive(path):
            st.info(f"`{name}` is still being created by its writer; it will appear on the next refresh.")
        elif not opened:
            st.error(
                f"`{name}` cannot be read as a trial file: it is corrupt, truncated, or not a rem-daq trial "
                f"file. ({type(error).__name__}: {error})"
            )
        else:
            st.error(
                f"Reading `{name}` failed: {type(error).__name__}: {error}. The file may be damaged; the page "
                "opens it again on the next refresh."
            )
        return None
    except Exception as error:  # noqa: BLE001 - never a traceback in the page
        drop_follower(key)
        report_unexpected(error, f"Reading {name}")
        return None
    try:
        render_snapshot(folder, snapshot, key)
    except Exception as error:  # noqa: BLE001 - never a traceback in the page
        drop_follower(key)
        report_unexpected(error, f"Drawing {name}")
        return None
    return snapshot


def _state_banner(snapshot: Snapshot, frozen: bool = False) -> None:
    kind, text = _STATE_LOOK.get(snapshot.state, ("warning", f"State: {snapshot.state}"))
    if snapshot.state == "running" and frozen:
        text += f" · last write {snapshot.heartbeat_time}"
    elif snapshot.state == "running":
        age = _age_s(snapshot.heartbeat_time)
        limit = max(5.0, 10 * float(snapshot.metadata.get("flush_interval_s", 0.5) or 0.5))
        if age is not None and age > limit:
            kind, text = "warning", f"Running, but nothing written for {age:.0f} s: the writer may be stalled"
        elif age is not None:
            text += f" · last write {age:.1f} s ago"
    elif snapshot.end_time:
        text += f" · ended {snapshot.end_time}"
    icon = {
        "success": ":material/sensors:",
        "info": ":material/flag:",
        "warning": ":material/warning:",
        "error": ":material/error:",
    }[kind]
    getattr(st, kind)(text, icon=icon)


def _age_s(iso: str) -> float | None:
    try:
        then = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return max(0.0, (utc_now() - then).total_seconds())


def _flags_text(flag: float | None) -> str:
    if flag is None:
        return ""
    try:
        bits = int(flag)
    except (TypeError, ValueError):
        return ""
    return ", ".join(text for bit, text in ROW_FLAGS.items() if bit and bits & bit)


def render_snapshot(folder: DataFolder, snapshot: Snapshot, key: str, frozen: bool = False) -> None:
    """The trial view: identity, state, latest values, (a trial of several instruments: every instrument, the
    cascade view, every zone and sensor), furnace, purity, concentrations, lack of fit, spectrum, events."""
    meta = snapshot.metadata
    st.subheader(str(meta.get("title") or snapshot.trial_id))
    st.caption(
        " · ".join(
            part
            for part in (
                f"trial `{snapshot.trial_id}`",
                f"sample **{meta.get('sample', '')}**",
                f"operator {meta.get('operator', '')}",
                f"started {meta.get('start_time', '')}",
                f"file `{relative_name(folder, snapshot.path)}`",
                "simulated bench" if meta.get("simulated") else "",
            )
            if part
        )
    )
    _state_banner(snapshot, frozen)

    furnace, analysis = snapshot.latest_furnace, snapshot.latest_analysis
    oxide = oxide_of(snapshot.target)
    columns = st.columns(5)
    columns[0].metric(
        "Temperature",
        fmt(furnace.get("temperature"), ".1f", " °C"),
        help="process value of the furnace controller (latest row)",
    )
    columns[1].metric(
        "Setpoint",
        fmt(furnace.get("setpoint"), ".1f", " °C"),
        help=f"target; working setpoint {fmt(furnace.get('working_setpoint'), '.1f', ' °C')}",
    )
    columns[2].metric("Heater output", fmt(furnace.get("output"), ".1f", " %"))
    purity, sigma = analysis.get("purity"), analysis.get("purity_sigma")
    spectrum_flag = int(analysis.get("flag") or 0)
    empty_cell = bool(spectrum_flag & FLAG_NO_RARE_EARTHS)
    columns[3].metric(
        f"Purity {oxide}",
        "no rare earths" if empty_cell else fmt(purity * 100 if purity is not None else None, ".2f", " %"),
        help=(
            "the total oxide in the cell is below its quantitation limit (a blank, the start "
            "of an elution): a purity would be noise"
            if empty_cell
            else f"mass fraction of {oxide} in the measured rare-earth oxide of "
            f"{snapshot.analysis_attrs.get('covered_elements', 'the covered elements')}; "
            f"± 2σ = {fmt(2 * sigma * 100 if sigma is not None else None, '.2f', ' %')}"
        ),
    )
    per, unit = time_unit(snapshot)
    columns[4].metric(
        "Spectra",
        f"{snapshot.rows.get('spectrometer', 0):,}",
        help=f"latest analysed at {fmt((analysis.get('time') or math.nan) / per, '.1f', ' ' + unit)}",
    )
    flags = _flags_text(furnace.get("flag"))
    if flags:
        st.warning(f"Latest furnace reading flagged: {flags}")
    if spectrum_flag & FLAG_MODEL_MISMATCH:
        st.warning(
            f"Model mismatch: lack of fit {fmt(analysis.get('lack_of_fit'), '.1f')} (limit "
            f"{LACK_OF_FIT_LIMIT:g}). The calibration cannot represent the latest spectrum (a new acid "
            "matrix, an unknown absorber?): its purity is not to be trusted; recalibrate."
        )
    if furnace:
        st.caption(
            f"Furnace status word 0x{int(furnace.get('status_word', 0)):04x} · "
            f"{snapshot.rows.get('furnace', 0):,} furnace rows · target {snapshot.target or '?'} · "
            f"calibration `{snapshot.analysis_attrs.get('calibration_id', '') or '?'}`"
        )

    caches = st.session_state.setdefault(_FIGURES, {})
    cache = caches.setdefault(key, FigureCache())
    if snapshot.instruments is not None:
        _every_instrument(snapshot, key, cache)
    figures = trial_figures(snapshot, cache)
    if snapshot.instruments is not None:
        zones, streams = snapshot.instruments.zones, snapshot.instruments.streams
        st.markdown(
            f"**Primary instruments** · furnace `{zones[0].name if zones else '?'}`, first stream "
            f"`{streams[0].name if streams else '?'}`: its purity, concentrations, fit and latest spectrum"
        )
    left, right = st.columns(2)
    left.plotly_chart(figures["furnace"], key=f"{key}-chart-furnace", config={"displaylogo": False})
    right.plotly_chart(figures["purity"], key=f"{key}-chart-purity", config={"displaylogo": False})
    left, right = st.columns(2)
    left.plotly_chart(figures["concentration"], key=f"{key}-chart-concentration", config={"displaylogo": False})
    right.plotly_chart(figures["fit"], key=f"{key}-chart-fit", config={"displaylogo": False})  # under the purity
    st.plotly_chart(figures["spectrum"], key=f"{key}-chart-spectrum", config={"displaylogo": False})
    if snapshot.spectrum is not None and snapshot.spectrum.note:
        st.caption(snapshot.spectrum.note)
    _events(snapshot, per, unit)


def _events(snapshot: Snapshot, per: float, unit: str) -> None:
    events = snapshot.events
    alarms = [e for e in events if e["level"] in ("warning", "error")]
    st.markdown(f"**Events and alarms** · {len(alarms)} alarm(s) of {snapshot.rows.get('events', 0)} event(s)")
    if not events:
        st.caption("no events")
        return
    icons = {"error": "ERROR", "warning": "WARNING", "info": "info"}  # alarms stand out in capitals
    table = pd.DataFrame(
        {
            f"time ({unit})": [round(e["time_s"] / per, 2) for e in reversed(events)],
            "level": [icons.get(e["level"], e["level"]) for e in reversed(events)],
            "source": [e["source"] for e in reversed(events)],
            "message": [e["message"] for e in reversed(events)],
        }
    )
    st.dataframe(table, hide_index=True, height=min(38 + 35 * len(table), 260), width="stretch")


# -- every instrument of a trial of several, and the cascade ------------------------------------------------

_KIND_NAMES = {"temperature_controller": "temperature controller", "spectrometer": "spectrometer", "sensor": "sensor"}
_CHANNEL_STATES = {0: "", 1: "out of range", 2: "probe fault"}


def _purity_text(latest: dict) -> str:
    """A stream's latest purity for a table or metric: percent, or "no rare earths" (flag 32)."""
    if int(latest.get("flag") or 0) & FLAG_NO_RARE_EARTHS:
        return "no rare earths"
    purity = latest.get("purity")
    return fmt(purity * 100 if purity is not None else None, ".2f", " %")


def _instrument_rows(view: InstrumentsView) -> pd.DataFrame:
    """One row per instrument, in the station's order: its kind, latest values (with units), rows, flags."""
    zones = {zone.name: zone for zone in view.zones}
    sensors = {sensor.name: sensor for sensor in view.sensors}
    streams = {stream.name: stream for stream in view.streams}
    rows = []
    for name, kind in view.instruments:
        latest, count, flags = "", 0, ""
        if name in zones:
            zone = zones[name]
            get = zone.latest.get
            latest = (
                f"{fmt(get('temperature'), '.1f', ' °C')} (setpoint {fmt(get('setpoint'), '.1f', ' °C')}), "
                f"output {fmt(get('output'), '.1f', ' %')}"
            )
            count, flags = zone.rows, _flags_text(zone.latest.get("flag"))
        elif name in sensors:
            sensor = sensors[name]
            parts = []
            for channel, units, _ in sensor.channels:
                state = _CHANNEL_STATES.get(int(sensor.latest.get(f"{channel}_state") or 0), "state?")
                value = fmt(sensor.latest.get(channel), ".4g", "" if units in ("", "1") else f" {units}")
                parts.append(f"{channel} {value}" + (f" ({state})" if state else ""))
            latest = " · ".join(parts)
            count, flags = sensor.rows, _flags_text(sensor.latest.get("flag"))
        elif name in streams:
            stream = streams[name]
            latest = f"purity {oxide_of(stream.target)} {_purity_text(stream.latest)}"
            count = view.spectra.get(name, stream.rows)
            flags = _flags_text(stream.latest.get("flag"))
        elif kind == "spectrometer":
            latest, count = "not analysed", view.spectra.get(name, 0)
        rows.append(
            {
                "instrument": name,
                "kind": _KIND_NAMES.get(kind, kind),
                "latest": latest,
                "rows": count,
                "latest row flagged": flags,
            }
        )
    return pd.DataFrame(rows)


def _pair_choice(view: InstrumentsView, key: str) -> tuple[str, str] | None:
    """The two streams whose separation factor is drawn: the user's choice, else the data's default.

    The default (the Nd-richest over the Pr-richest stream so far) is followed until the user picks a pair.
    """
    pairs = list(view.separations)
    if not pairs:
        return None
    labels = [f"{a} / {b}" for a, b in pairs]
    default = view.default_pair()
    default_label = labels[pairs.index(default)] if default in pairs else labels[0]
    widget, automatic = f"{key}-separation-pair", f"{key}-separation-pair-default"
    state = st.session_state
    if state.get(widget) not in labels or state.get(widget) == state.get(automatic):
        state[widget] = state[automatic] = default_label
    a, b = view.ratio
    choice = st.selectbox(
        "Separation factor between (enriched / depleted)",
        labels,
        key=widget,
        help=f"({a}/{b} at the first) / ({a}/{b} at the second), from the measured concentrations of each "
        "spectrum of the first stream and the second stream's spectrum nearest in time. Default: the stream "
        f"richest in {a} over the one richest in {b}.",
    )
    return pairs[labels.index(choice)] if choice in labels else None


def _every_instrument(snapshot: Snapshot, key: str, cache: FigureCache) -> None:
    """Every instrument's latest values, the cascade view (more than one stream), every zone and sensor."""
    view = snapshot.instruments
    if view is None:
        return
    st.markdown(f"**Every instrument** · {len(view.instruments)} in this trial")
    table = _instrument_rows(view)
    st.dataframe(table, hide_index=True, width="stretch", height=38 + 35 * len(table), key=f"{key}-instruments")
    pair = None
    if view.cascade:
        a, b = view.ratio
        st.markdown(f"**Cascade** · purity and {a}/{b} per sampling point, separation factor between two points")
        columns = st.columns(len(view.streams) + 1)
        for column, stream in zip(columns, view.streams):
            column.metric(
                f"Purity {oxide_of(stream.target)} · {stream.name}",
                _purity_text(stream.latest),
                help=f"{stream.name}: mass fraction of {oxide_of(stream.target)} in the measured rare-earth oxide "
                f"of {stream.covered_elements or 'the covered elements'} ({stream.rows:,} analysed spectra)",
            )
        pair = _pair_choice(view, key)
        separation = view.separations.get(pair) if pair is not None else None
        if separation is not None:
            columns[-1].metric(
                f"Separation factor {separation.enriched} / {separation.depleted}",
                fmt(separation.latest, ".3f"),
                help=f"({a}/{b})_{separation.enriched} / ({a}/{b})_{separation.depleted}, the latest pair "
                "of spectra not flagged",
            )
    figures = cache.instrument_figures(snapshot, pair)
    config = {"displaylogo": False}
    if view.cascade:
        left, right = st.columns(2)
        left.plotly_chart(figures["cascade-purity"], key=f"{key}-chart-cascade-purity", config=config)
        right.plotly_chart(figures["cascade-ratio"], key=f"{key}-chart-cascade-ratio", config=config)
        st.plotly_chart(figures["separation"], key=f"{key}-chart-separation", config=config)
        st.caption(
            "Rows whose concentrations make no ratio (NaN or not positive, no rare earths in the cell, analysis "
            "failed) are flagged (×) and not drawn. Separation factor by `analysis.separation_factor` from the "
            "measured concentrations."
        )
    others = [name for name in figures if name == "zones" or name.startswith("sensor:")]
    for start in range(0, len(others), 2):
        for column, name in zip(st.columns(2), others[start : start + 2]):
            chart = "zones" if name == "zones" else "sensor-" + name.split(":", 1)[1]
            column.plotly_chart(figures[name], key=f"{key}-chart-{chart}", config=config)
