"""Trials: the catalog as a table with filters; the purity curves of several trials overlaid; a trial opened with
the Live page's plots; its summary as CSV; its report (PDF, HTML) with its certified results; the live - ICP bias
of the certified trials as a control chart."""

import sqlite3
from datetime import date
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app_pages._catalog import STATUSES, Filters, entry_path, file_summary, trial_table
from app_pages._compare import FIRST_STREAM, purity_curve, trial_streams
from app_pages._export import analysis_csv, summary_csv
from app_pages._figures import comparison_figure
from app_pages._paths import OutsideDataFolder, confine, relative_name
from app_pages._view import REFRESH_S, data_folder, follower, guarded, live_updates, show_trial, trial_from_query
from daq import Catalog, TrialFileError
from daq.product import AGREEMENT_SIGMAS, bias_chart
from daq.store import writer_is_alive

ANY = "any"
EACH_FIRST_STREAM = "each trial's first stream"
_READ_ERRORS = (TrialFileError, OSError, KeyError, ValueError, RuntimeError)


@st.cache_data(max_entries=4096, show_spinner=False)
def _cached_summary(path: str, mtime_ns: int, size: int) -> dict:
    """A file's summary, read again only when the file changed (mtime or size)."""
    return file_summary(Path(path))


def _summary(path: Path) -> dict:
    stat = path.stat()
    return _cached_summary(str(path), stat.st_mtime_ns, stat.st_size)


@st.cache_data(max_entries=1024, show_spinner=False)
def _cached_curve(path: str, mtime_ns: int, size: int, stream: str):
    """One trial's purity curve, read again only when the file changed."""
    return purity_curve(Path(path), stream)


@st.cache_data(max_entries=4096, show_spinner=False)
def _cached_streams(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    return trial_streams(Path(path))


def _stat(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_mtime_ns, stat.st_size


def _comparison(folder, openable: dict) -> None:
    """Several trials chosen from the table, their purity curves overlaid (time since each one's start)."""
    if not openable:
        return
    choose, which = st.columns([3, 1])
    chosen = choose.multiselect(
        "Compare the purity of trials",
        list(openable),
        key="trials-compare",
        placeholder="choose trials to overlay their purity curves",
        format_func=lambda name: f"{openable[name].trial_id} · {openable[name].sample}",
    )
    if not chosen:
        return
    paths, unreadable = {}, []
    for name in chosen:
        try:
            paths[name] = confine(folder, name)  # the names came from the data folder; checked again all the same
        except OutsideDataFolder:
            unreadable.append(name)
    streams: dict[str, None] = {}
    for name, path in list(paths.items()):
        try:
            streams.update(dict.fromkeys(_cached_streams(*_stat(path))))
        except _READ_ERRORS:
            unreadable.append(name)
            del paths[name]
    stream = which.selectbox(
        "Stream",
        [EACH_FIRST_STREAM, *streams],
        key="trials-compare-stream",
        help="the analysed stream (spectrometer) whose purity is drawn; a trial of one spectrometer has one stream",
    )
    curves, without = [], []
    for name, path in paths.items():
        try:
            curve = _cached_curve(*_stat(path), FIRST_STREAM if stream == EACH_FIRST_STREAM else stream)
        except _READ_ERRORS:
            unreadable.append(name)
            continue
        if curve is None:
            without.append(openable[name].trial_id)
        else:
            curves.append(curve)
    title = f"Purity of {len(curves)} trial(s), " + (
        "each trial's first stream" if stream == EACH_FIRST_STREAM else f"stream {stream}"
    )
    st.plotly_chart(comparison_figure(curves, title), key="trials-chart-compare", config={"displaylogo": False})
    if without:
        st.caption(f"Without a stream `{stream}`: {', '.join(without)}.")
    if unreadable:
        st.warning(f"Cannot be read as trial files, left out: {', '.join(unreadable)}.")


def _filters() -> Filters:
    sample_col, status_col, dates_col, purity_col = st.columns(4)
    sample = sample_col.text_input("Sample contains", key="trials-filter-sample")
    status = status_col.selectbox("Status", [ANY, *STATUSES], key="trials-filter-status")
    dates = dates_col.date_input("Started between", value=[], key="trials-filter-dates", format="YYYY-MM-DD")
    min_percent = purity_col.number_input(
        "Final purity at least (%)", min_value=0.0, max_value=100.0, value=0.0, step=0.5, key="trials-filter-purity"
    )
    dates = tuple(d for d in (dates if isinstance(dates, (tuple, list)) else (dates,)) if isinstance(d, date))
    return Filters(
        sample=sample.strip(),
        status="" if status == ANY else status,
        since=dates[0] if dates else None,
        until=dates[-1] if dates else None,
        min_purity=min_percent / 100.0 if min_percent > 0 else None,
    )


def _certified_percent(entry) -> float | None:
    """Target oxide / TREO of the trial's product file, %, as the catalog records it (None: not certified)."""
    purity = getattr(entry, "certified_purity", None)
    return None if purity is None else round(100 * purity, 4)


def _table(folder, filters):
    """The filtered catalog as a table; returns the openable trials by name (relative to the data folder)."""
    try:
        table = trial_table(folder, filters, summaries=_summary)
    except (sqlite3.Error, OSError) as error:
        st.error(
            f"The catalog `{folder.catalog}` cannot be read: {error}. `remdaq catalog rebuild` recreates it "
            "from the trial files."
        )
        return {}
    if not table.from_catalog:
        st.info(
            "The data folder has no catalog yet, so this table is built from the trial files themselves. "
            "`remdaq catalog rebuild` creates the catalog."
        )
    if table.unlisted:
        st.warning(
            f"{len(table.unlisted)} trial file(s) are not in the catalog (for example "
            f"`{table.unlisted[0]}`): run `remdaq catalog rebuild` to list them."
        )
    openable = {}
    for entry in table.entries:
        path = entry_path(folder, entry)
        if path is not None and path.is_file():
            openable[relative_name(folder, path)] = entry
    if not table.entries:
        st.info("No trials match these filters." if filters != Filters() else f"No trials in `{folder.path}` yet.")
        return openable
    st.dataframe(
        pd.DataFrame(
            {
                "started (UTC)": [(e.start_time or "")[:19].replace("T", " ") for e in table.entries],
                "trial": [e.trial_id for e in table.entries],
                "sample": [e.sample for e in table.entries],
                "title": [e.title for e in table.entries],
                "status": [e.status for e in table.entries],
                "final purity %": [
                    None if e.final_purity is None else round(100 * e.final_purity, 3) for e in table.entries
                ],
                "certified purity % (ICP)": [_certified_percent(e) for e in table.entries],
                "target": [e.target for e in table.entries],
                "operator": [e.operator for e in table.entries],
            }
        ),
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(table.entries), 400),
    )
    return openable


def _bias_chart(folder) -> None:
    """The live - ICP purity bias of the certified trials, as an individuals control chart (docs/results.md)."""
    if not folder.catalog.is_file():
        return
    points = [
        (p.trial_id, p.start_time or p.created_utc, p.bias, p.combined_sigma or 0.0, bool(p.consistent))
        for p in Catalog(folder.path).products()
        if p.bias is not None
    ]
    if not points:
        return
    chart = bias_chart(points)
    figure = go.Figure(
        go.Scatter(
            x=list(chart.trial_ids),
            y=100 * chart.bias,
            mode="markers",
            error_y={"array": 100 * AGREEMENT_SIGMAS * chart.combined_sigma, "visible": True},
            marker={"color": ["#1f77b4" if ok else "#d62728" for ok in chart.consistent], "size": 9},
            name="live - ICP",
        )
    )
    figure.add_hline(y=100 * chart.centre, line_color="#2ca02c", annotation_text="centre")
    if chart.sigma == chart.sigma:  # limits need three trials (NaN otherwise)
        for limit in (chart.lower_limit, chart.upper_limit):
            figure.add_hline(y=100 * limit, line_dash="dash", line_color="#d62728")
    figure.update_layout(
        title="Live UV-Vis - ICP purity across certified trials (bars: 2 combined sigma; dashed: 3 sigma limits)",
        yaxis_title="bias (pp)",
        height=340,
        margin={"t": 50, "b": 40},
    )
    with st.expander(f"Bias control chart: {len(points)} certified trial(s)", expanded=False):
        st.plotly_chart(figure, key="trials-bias-chart", config={"displaylogo": False})


def _report(path: Path, kind: str) -> bytes:
    """The trial's report (daq.report, imported on first use: it loads matplotlib), made in memory."""
    from daq.report import report_bytes

    return report_bytes(path, kind)


@guarded("The Trials page")
def trials_page() -> None:
    """Filters, the table, and the trial opened from it (or from ``?trial=``)."""
    folder = data_folder()
    if folder is None:
        return
    openable = _table(folder, _filters())
    _bias_chart(folder)
    _comparison(folder, openable)
    pinned = trial_from_query(folder)
    names = list(openable)
    pinned_name = relative_name(folder, pinned) if pinned is not None else None
    if pinned_name is not None and pinned_name not in names:
        names.insert(0, pinned_name)  # a valid ?trial= opens even if the filters hide it

    def _pin() -> None:
        """Keep ?trial= in step with the selector (a shareable link to the trial)."""
        value = st.session_state["trials-open"]
        if value:
            st.query_params["trial"] = value
        else:
            st.query_params.pop("trial", None)

    chosen = st.selectbox(
        "Open a trial",
        names,
        index=names.index(pinned_name) if pinned_name in names else None,
        placeholder="choose a trial",
        key="trials-open",
        on_change=_pin,
        format_func=lambda name: (
            (f"{openable[name].trial_id} · {openable[name].sample} · {openable[name].status}")
            if name in openable
            else name
        ),
    )
    if not chosen:
        return
    try:
        path = confine(folder, chosen)  # the names came from the data folder; checked again all the same
    except OutsideDataFolder as error:
        st.error(f"Refused: {error}.")
        return
    running = writer_is_alive(path)
    updating = live_updates("trials") if running else False

    @st.fragment(run_every=REFRESH_S if updating else None)
    @guarded("The opened trial")
    def opened_trial() -> None:
        """The chosen trial with the Live page's plots, and its downloads."""
        snapshot = show_trial(folder, path, key="trials", frozen=running and not updating)
        if snapshot is None:
            return
        reader = follower(folder, "trials", path).reader
        left, right = st.columns(2)
        left.download_button(
            "Download summary (CSV)",
            summary_csv(reader, snapshot),
            file_name=f"{snapshot.trial_id}-summary.csv",
            mime="text/csv",
            on_click="ignore",
            key="trials-summary-csv",
        )
        right.download_button(
            "Download per-spectrum results (CSV)",
            lambda: analysis_csv(path),
            file_name=f"{snapshot.trial_id}-analysis.csv",
            mime="text/csv",
            on_click="ignore",
            key="trials-analysis-csv",
        )
        if not running:  # a report is of an ended trial (its raw checksum is final)
            pdf_column, html_column = st.columns(2)
            pdf_column.download_button(
                "Download report (PDF)",
                lambda: _report(path, "pdf"),
                file_name=f"{snapshot.trial_id}-report.pdf",
                mime="application/pdf",
                on_click="ignore",
                key="trials-report-pdf",
            )
            html_column.download_button(
                "Download report (HTML)",
                lambda: _report(path, "html"),
                file_name=f"{snapshot.trial_id}-report.html",
                mime="text/html",
                on_click="ignore",
                key="trials-report-html",
            )

    opened_trial()


st.title("Trials")
trials_page()
