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
    """The trial view: identity, state, latest values, furnace, purity, concentrations, lack of fit, spectrum,
    events."""
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
    figures = trial_figures(snapshot, caches.setdefault(key, FigureCache()))
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
