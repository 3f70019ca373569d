"""The trial report: furnace, live purity, events, calibration, and (when certified) ICP, LOI and agreement.

:func:`write_report` writes a PDF (A4, matplotlib's PdfPages) or a self-contained HTML page, chosen by the
output's suffix; :func:`report_bytes` gives the same for a download (the app's Trials page). The
certified results come from the trial's product file (``<trial>.product.json``, :mod:`daq.product`), or
from a product file or results TOML given with ``results=`` (a results TOML is evaluated, not stored).
docs/results.md, "The report", lists the sections.
"""

from __future__ import annotations

import io
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis import Calibration

from ._common import software_version, utc_now_iso
from ._report_blocks import Block, Heading, PageContent, Paragraph, Plot, Table, render_html, render_pdf
from .product import (
    AGREEMENT_SIGMAS,
    CONTROL_SIGMAS,
    BiasChart,
    Product,
    ProductError,
    bias_chart,
    build_product_data,
    load_results,
    product_path,
    product_points,
    read_product,
)
from .reader import open_trial

__all__ = ["ReportError", "TrialReport", "gather", "report_blocks", "report_bytes", "write_report"]

_PLOT_POINTS = 3000
_MAX_EVENT_ROWS = 120
_COLOURS = {"temperature": "#d62728", "setpoint": "#7f7f7f", "working": "#ff7f0e", "purity": "#1f77b4"}


class ReportError(ValueError):
    """A report cannot be made (no such trial, an unreadable results file); says what and where."""


@dataclass
class TrialReport:
    """Everything a report shows, read once from the trial file, its product and the catalog."""

    path: Path
    metadata: dict[str, Any]
    summary: dict[str, Any]
    analysis_attrs: dict[str, str]
    analytes: tuple[str, ...]
    raw_sha256: str
    furnace: dict[str, np.ndarray]
    purity: dict[str, np.ndarray]
    events: dict[str, np.ndarray]
    sensitivity: np.ndarray | None
    wavelength_nm: np.ndarray | None
    calibration: Calibration | None
    calibration_problem: str
    product: Product | None
    product_source: str
    product_problem: str
    chart: BiasChart | None
    created_utc: str


def _strided(trial, table: str, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    rows = trial.rows(table)
    step = max(1, -(-rows // _PLOT_POINTS))
    dataset = {c: trial.dataset(table, c) for c in columns}
    return {c: np.asarray(d[0:rows:step], dtype=float) for c, d in dataset.items()}


def _data_dir_of(path: Path) -> Path | None:
    return path.parent.parent if path.parent.name == "trials" else None


def _calibration(trial_path: Path, attrs: dict[str, str]) -> tuple[Calibration | None, str]:
    recorded = attrs.get("calibration_file", "")
    if not recorded:
        return None, "the trial records no calibration file"
    candidates = [Path(recorded)] if Path(recorded).is_absolute() else []
    data_dir = _data_dir_of(trial_path)
    if data_dir is not None and not Path(recorded).is_absolute():
        candidates.append(data_dir / recorded)
    for candidate in candidates:
        if candidate.is_file():
            try:
                calibration = Calibration.load(candidate)
            except (OSError, ValueError, KeyError) as error:
                return None, f"{candidate}: unreadable ({error})"
            if attrs.get("calibration_id") and calibration.calibration_id != attrs["calibration_id"]:
                return None, (
                    f"{candidate} is not the calibration the trial used (its id is {calibration.calibration_id}, "
                    f"the trial's {attrs['calibration_id']})"
                )
            return calibration, ""
    return None, f"calibration file {recorded} not found beside the data folder: its quality cannot be shown"


def _product(trial_path: Path, results: Path | None) -> tuple[Product | None, str, str]:
    """(product, where it came from, why there is none)."""
    if results is None:
        beside = product_path(trial_path)
        if not beside.exists():
            return None, "", f"no product file ({beside.name}): `remdaq results add` certifies the trial"
        return read_product(beside), f"product file {beside.name}", ""
    if results.suffix == ".json":
        return read_product(results), f"product file {results}", ""
    data = build_product_data(trial_path, load_results(results))
    return Product(results, data), f"results file {results} (evaluated for this report, not stored)", ""


def _chart(trial_path: Path, product: Product | None, start_time: str) -> BiasChart | None:
    products: dict[str, Product] = {}
    starts: dict[str, str] = {}
    data_dir = _data_dir_of(trial_path)
    if data_dir is not None and (data_dir / "catalog.sqlite").is_file():
        from .catalog import Catalog, CatalogError

        try:
            catalog = Catalog(data_dir)
            starts = {e.trial_id: e.start_time for e in catalog.entries()}
            for entry in catalog.products():
                try:
                    products[entry.trial_id] = read_product(data_dir / entry.file)
                except ProductError:
                    continue
        except CatalogError:
            pass
    if product is not None:
        products[product.trial_id] = product
        starts.setdefault(product.trial_id, start_time)
    points = product_points(products.values(), starts)
    return bias_chart(points) if points else None


def gather(
    trial_path: str | os.PathLike,
    results: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> TrialReport:
    """Read what the report of a trial shows (the trial file is only read)."""
    from .reanalysis import raw_checksum

    say = progress or (lambda _message: None)
    path = Path(trial_path)
    say(f"reading {path}")
    with open_trial(path) as trial:
        metadata = trial.metadata
        summary = trial.summary()
        attrs = trial.analysis_attrs
        analytes = trial.analytes
        furnace = _strided(trial, "furnace", ("time", "temperature", "setpoint", "working_setpoint"))
        purity = _strided(trial, "analysis", ("time", "purity", "purity_sigma"))
        events = trial.events()
        try:
            arrays = trial.calibration_arrays()
        except (OSError, KeyError):
            arrays = {}
        wavelength = np.asarray(trial.wavelength_nm, dtype=float)
    say("checksumming the raw trial file")
    checksum = raw_checksum(path)
    calibration, calibration_problem = _calibration(path, attrs)
    try:
        product, source, problem = _product(path, Path(results) if results is not None else None)
    except ProductError as error:
        raise ReportError(str(error)) from None
    if product is not None and product.raw_sha256 != checksum:
        problem = (
            f"the {source} records raw checksum {product.raw_sha256}, the trial file now has {checksum}: "
            "the results are not this trial's (or the file was changed)"
        )
    say("reading the catalog's certified trials")
    return TrialReport(
        path=path,
        metadata=metadata,
        summary=summary,
        analysis_attrs=attrs,
        analytes=analytes,
        raw_sha256=checksum,
        furnace=furnace,
        purity=purity,
        events=events,
        sensitivity=np.asarray(arrays["sensitivity"], dtype=float) if "sensitivity" in arrays else None,
        wavelength_nm=np.asarray(arrays.get("wavelength", wavelength), dtype=float),
        calibration=calibration,
        calibration_problem=calibration_problem,
        product=product,
        product_source=source,
        product_problem=problem,
        chart=_chart(path, product, str(metadata.get("start_time", ""))),
        created_utc=utc_now_iso(),
    )


# -- formatting ------------------------------------------------------------------------------------


def _pct(fraction: float, digits: int = 4) -> str:
    return "-" if fraction is None or not math.isfinite(fraction) else f"{100 * fraction:.{digits}f}"


def _num(value: float | None, spec: str = ".4g") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _mg(value: float | None) -> str:
    """mg/kg with as many digits as a certificate gives."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if abs(value) < 1e5 else f"{value:.0f}"


def _time_axis(seconds: np.ndarray) -> tuple[float, str]:
    latest = float(np.nanmax(seconds)) if seconds.size else 0.0
    return (60.0, "min") if latest <= 7200 else (3600.0, "h")


# -- plots -----------------------------------------------------------------------------------------


def _event_lines(ax, report: TrialReport, scale: float) -> None:
    for t, level in zip(report.events["time"], report.events["level"]):
        if level in ("warning", "error"):
            ax.axvline(t / scale, color="#ff7f0e" if level == "warning" else "#d62728", lw=0.8, ls="--", alpha=0.7)


def _furnace_plot(report: TrialReport) -> Plot:
    def draw(figure, rect) -> None:
        ax = figure.add_axes(rect)
        f = report.furnace
        scale, unit = _time_axis(f["time"])
        ax.plot(f["time"] / scale, f["temperature"], color=_COLOURS["temperature"], lw=1.2, label="temperature")
        ax.plot(f["time"] / scale, f["setpoint"], color=_COLOURS["setpoint"], lw=0.9, ls=":", label="setpoint")
        ax.plot(f["time"] / scale, f["working_setpoint"], color=_COLOURS["working"], lw=0.9, label="working setpoint")
        _event_lines(ax, report, scale)
        ax.set_xlabel(f"time since start ({unit})")
        ax.set_ylabel("temperature (°C)")
        ax.set_title("Furnace profile (dashed lines: warnings and errors)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)

    return Plot("Furnace profile", draw, 3.1)


def _purity_plot(report: TrialReport) -> Plot:
    def draw(figure, rect) -> None:
        ax = figure.add_axes(rect)
        p = report.purity
        scale, unit = _time_axis(p["time"])
        t = p["time"] / scale
        ax.fill_between(
            t,
            100 * (p["purity"] - 2 * p["purity_sigma"]),
            100 * (p["purity"] + 2 * p["purity_sigma"]),
            color=_COLOURS["purity"],
            alpha=0.25,
            lw=0,
            label="2 sigma band",
        )
        ax.plot(t, 100 * p["purity"], color=_COLOURS["purity"], lw=1.0, label="live UV-Vis purity")
        agreement = report.product.agreement if report.product is not None else None
        if agreement and agreement.get("icp_purity") is not None:
            icp, u = 100 * agreement["icp_purity"], 100 * (agreement.get("icp_sigma") or 0.0)
            ax.axhspan(icp - 2 * u, icp + 2 * u, color="#2ca02c", alpha=0.2, lw=0)
            ax.axhline(icp, color="#2ca02c", lw=1.2, label="ICP (same elements), 2 sigma")
            times = np.asarray(agreement.get("live_time_s") or [], dtype=float)
            if times.size:
                ax.axvspan(times.min() / scale, times.max() / scale, color="#9467bd", alpha=0.15, lw=0)
        _event_lines(ax, report, scale)
        ax.set_xlabel(f"time since start ({unit})")
        ax.set_ylabel(f"{report.summary.get('target', '')} oxide purity (%)")
        ax.set_title("Purity over time with its 2 sigma band (shaded violet: the rows compared with ICP)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)

    return Plot("Purity over time", draw, 3.3)


def _sensitivity_plot(report: TrialReport) -> Plot:
    def draw(figure, rect) -> None:
        ax = figure.add_axes(rect)
        assert report.sensitivity is not None and report.wavelength_nm is not None
        for k, analyte in enumerate(report.analytes[: len(report.sensitivity)]):
            ax.plot(report.wavelength_nm, report.sensitivity[k], lw=0.9, label=analyte)
        ax.set_xlabel("wavelength (nm)")
        ax.set_ylabel("absorbance per g/L")
        ax.set_title("Calibration: sensitivity of each analyte (the trial's copy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)

    return Plot("Calibration sensitivities", draw, 2.7)


def _chart_plot(chart: BiasChart, trial_id: str) -> Plot:
    def draw(figure, rect) -> None:
        ax = figure.add_axes(rect)
        x = np.arange(len(chart.bias))
        colours = ["#1f77b4" if ok else "#d62728" for ok in chart.consistent]
        ax.errorbar(
            x, 100 * chart.bias, yerr=100 * AGREEMENT_SIGMAS * chart.combined_sigma, fmt="none", ecolor="#999", lw=0.8
        )
        ax.scatter(x, 100 * chart.bias, c=colours, s=22, zorder=3)
        if trial_id in chart.trial_ids:
            i = chart.trial_ids.index(trial_id)
            ax.scatter([i], [100 * chart.bias[i]], s=90, facecolors="none", edgecolors="k", zorder=4)
        ax.axhline(0.0, color="#555", lw=0.6)
        if math.isfinite(chart.centre):
            ax.axhline(100 * chart.centre, color="#2ca02c", lw=1.0, label="centre (mean bias)")
        if math.isfinite(chart.sigma):
            for limit in (chart.lower_limit, chart.upper_limit):
                ax.axhline(100 * limit, color="#d62728", lw=0.9, ls="--")
        ax.set_xticks(x, [t[-18:] for t in chart.trial_ids], rotation=12, ha="right", fontsize=6)
        ax.set_ylabel("live - ICP purity (pp)")
        ax.set_title(
            f"Bias control chart: live - ICP across trials (bars {AGREEMENT_SIGMAS:g} sigma; "
            f"dashed +-{CONTROL_SIGMAS:g} sigma limits; circled: this trial)"
        )
        ax.grid(alpha=0.3)

    return Plot("Bias control chart", draw, 3.2)


# -- the blocks ------------------------------------------------------------------------------------


def _station_and_recipe(metadata: dict[str, Any]) -> tuple[str, str]:
    names = []
    for key, table in (("station", "station"), ("recipe", "recipe")):
        try:
            parsed = tomllib.loads(str(metadata.get(key, "")))
            names.append(str(parsed.get(table, {}).get("name" if key == "station" else "title", "")))
        except tomllib.TOMLDecodeError:
            names.append("")
    return names[0], names[1]


def _identity(report: TrialReport) -> Table:
    m, s = report.metadata, report.summary
    station, recipe = _station_and_recipe(m)
    rows = [
        ("trial id", str(s.get("trial_id", ""))),
        ("title", str(s.get("title", ""))),
        ("sample", str(s.get("sample", ""))),
        ("operator", str(s.get("operator", ""))),
        ("started (UTC)", str(s.get("start_time", ""))),
        ("ended (UTC)", str(s.get("end_time", "")) or "-"),
        ("state", str(s.get("state", ""))),
        ("station", station or "-"),
        ("recipe", recipe or "-"),
        ("target", str(s.get("target", ""))),
        ("analytes / covered", f"{', '.join(report.analytes)} / {s.get('covered_elements', '')}"),
        ("trial file", report.path.name),
        ("raw checksum (sha256 tree)", report.raw_sha256),
        ("software (trial)", str(m.get("software_version", "")) or "-"),
        ("software (report)", f"rem-daq {software_version()}"),
        ("report made (UTC)", report.created_utc),
    ]
    return Table(("field", "value"), rows)


def _summary_blocks(report: TrialReport) -> list[Block]:
    product = report.product
    if product is None:
        return [Paragraph(f"Certified results: none. {report.product_problem}")]
    d = product.data
    target_oxide = d.get("target_oxide", "")
    rows = [
        (f"{target_oxide} / TREO (ICP)", _pct(product.purity), _pct(product.purity_sigma), "%"),
        ("TREO", _pct(d["treo"]["mg_per_kg"] / 1e6, 3), _pct((d["treo"]["sigma_mg_per_kg"] or 0.0) / 1e6, 3), "%"),
    ]
    loi = d.get("loi")
    if loi:
        rows.append(("loss on ignition", _num(loi["percent"], ".3f"), _num(loi["sigma_percent"], ".3f"), "%"))
    agreement = product.agreement
    blocks: list[Block] = [Table(("result", "value", "u (k=1)", "unit"), rows, right=(1, 2))]
    if agreement:
        blocks.append(Paragraph(f"Live UV-Vis against ICP: {agreement['verdict']}."))
    blocks.append(Paragraph(f"Results from the {report.product_source}."))
    if report.product_problem:
        blocks.append(Paragraph(f"WARNING: {report.product_problem}"))
    return blocks


def _events_blocks(report: TrialReport) -> list[Block]:
    e = report.events
    levels = list(e["level"])
    alarms = sum(level in ("warning", "error") for level in levels)
    blocks: list[Block] = [
        Paragraph(
            f"{len(levels)} event(s), of which {alarms} warning(s) or error(s) (alarms); "
            f"{levels.count('error')} error(s)."
        )
    ]
    keep = [i for i, level in enumerate(levels) if level in ("warning", "error")]
    infos = [i for i, level in enumerate(levels) if level not in ("warning", "error")]
    keep = sorted(keep + infos[: max(0, _MAX_EVENT_ROWS - len(keep))])
    rows = [(f"{e['time'][i]:.1f}", str(e["level"][i]), str(e["source"][i]), str(e["message"][i])) for i in keep]
    if rows:
        blocks.append(Table(("time s", "level", "source", "message"), rows, right=(0,)))
    if len(keep) < len(levels):
        blocks.append(Paragraph(f"{len(levels) - len(keep)} info event(s) not listed (`remdaq show` lists all)."))
    return blocks


def _calibration_blocks(report: TrialReport) -> list[Block]:
    attrs = report.analysis_attrs
    blocks: list[Block] = [
        Table(
            ("field", "value"),
            [
                ("calibration id", attrs.get("calibration_id", "") or "-"),
                ("calibration file", attrs.get("calibration_file", "") or "-"),
            ],
        )
    ]
    calibration = report.calibration
    if calibration is None or calibration.quality is None:
        blocks.append(Paragraph(f"Quality: not available: {report.calibration_problem or 'no quality report'}."))
    else:
        q = calibration.quality
        rows = [
            (
                symbol,
                f"{q.calibrated_range_g_per_L[k][0]:.4g} .. {q.calibrated_range_g_per_L[k][1]:.4g}",
                _num(float(q.loo_rmse_g_per_L[k])),
                _num(float(q.detection_limit_g_per_L[k]), ".3g"),
                _num(float(q.sensitivity_significance[k]), ".1f"),
            )
            for k, symbol in enumerate(calibration.analytes)
        ]
        blocks.append(Table(("analyte", "range g/L", "LOO RMSE g/L", "LOD g/L", "significance"), rows, right=(2, 3, 4)))
        blocks.append(
            Paragraph(
                f"Condition number {q.condition_number:.3g}; noise {q.noise_scale_absorbance:.3g} absorbance; "
                f"calibration made {calibration.created_utc or '-'}."
            )
        )
        blocks.extend(Paragraph(f"Calibration warning: {w}") for w in q.warnings)
    if report.sensitivity is not None and report.wavelength_nm is not None:
        blocks.append(_sensitivity_plot(report))
    return blocks


def _element_rows(rows: list[dict[str, Any]], treo_mg_per_kg: float | None, rare_earths: bool) -> list[tuple]:
    out = []
    for r in rows:
        below = bool(r["below_detection_limit"])
        value = f"< {_mg(r['detection_limit_mg_per_kg'])}" if below else _mg(r["value_mg_per_kg"])
        oxide = f"< {_mg(r['detection_limit_mg_per_kg'] * r['oxide_factor'])}" if below else _mg(r["oxide_mg_per_kg"])
        cells = [
            r["element"],
            ", ".join(r["lines"]),
            value,
            "-" if below else _mg(r["sigma_mg_per_kg"]),
            r["oxide"],
            oxide,
        ]
        if rare_earths:
            share = r["oxide_mg_per_kg"] / treo_mg_per_kg if treo_mg_per_kg and not below else math.nan
            cells.append("n.d." if below else _pct(share))
        out.append(tuple(cells))
    return out


def _icp_blocks(report: TrialReport) -> list[Block]:
    product = report.product
    if product is None:
        return [Paragraph(f"No certified results. {report.product_problem}")]
    d = product.data
    icp = d["icp_file"]
    blocks: list[Block] = [
        Table(
            ("field", "value"),
            [
                ("sample id", str(d.get("sample_id", ""))),
                ("method", str(d.get("method", "")) or "-"),
                ("laboratory", str(d.get("laboratory", "")) or "-"),
                ("analyst", str(d.get("analyst", "")) or "-"),
                ("analysed on", str(d.get("analysed_on", "")) or "-"),
                ("ICP file", f"{icp['name']} (sha256 {icp['sha256']})"),
                ("column mapping", str(icp.get("mapping", ""))),
                ("samples in the file", ", ".join(icp.get("samples", []))),
            ],
        ),
        Paragraph(
            "Mass fractions of the solid as analysed, mg/kg; u is the standard uncertainty from the RSD; "
            "'<' values are below the detection limit and count 0 in the totals."
        ),
        Heading("Rare earths", 2),
    ]
    treo = d["treo"]["mg_per_kg"]
    header = ("element", "lines", "mg/kg", "u mg/kg", "oxide", "oxide mg/kg", "% of TREO")
    rows = _element_rows(product.table("rare_earths"), treo, True)
    rows.append(("TREO", "", "", "", "", _mg(treo), _pct(1.0, 2)))
    blocks.append(Table(header, rows, right=(2, 3, 5, 6)))
    purity = d["purity"]
    blocks.append(
        Paragraph(
            f"{d['target_oxide']} / TREO = {_pct(product.purity)} % (u = {_pct(product.purity_sigma)} %, "
            f"k = 1); with every rare earth below its detection limit at the limit: "
            f"{_pct(purity.get('lower_bound') if purity.get('lower_bound') is not None else math.nan)} %. "
            f"TREO = {_pct(treo / 1e6, 3)} % of the solid."
        )
    )
    blocks.append(Heading("Non-rare-earth impurities (as oxides)", 2))
    impurities = product.table("impurities")
    if impurities:
        blocks.append(Table(header[:-1], _element_rows(impurities, None, False), right=(2, 3, 5)))
        blocks.append(Paragraph(f"Sum of non-rare-earth oxides: {_mg(d.get('non_ree_oxides_mg_per_kg'))} mg/kg."))
    else:
        blocks.append(Paragraph("The ICP file reports no non-rare-earth element."))
    return blocks


def _loi_blocks(report: TrialReport) -> list[Block]:
    loi = report.product.data.get("loi") if report.product is not None else None
    if not loi:
        return [Paragraph("No loss on ignition was entered.")]
    rows = [
        ("crucible, empty", _num(loi["crucible_g"], ".5f"), "g"),
        ("crucible + sample, before ignition", _num(loi["crucible_and_sample_g"], ".5f"), "g"),
        ("crucible + residue, after ignition", _num(loi["crucible_and_ignited_g"], ".5f"), "g"),
        ("sample", _num(loi["sample_g"], ".5f"), "g"),
        ("ignition", f"{_num(loi['temperature_C'], '.0f')} °C, {_num(loi['duration_h'], '.3g')} h", ""),
        ("loss on ignition", _num(loi["percent"], ".3f"), "%"),
        ("u (k=1), from the weighings", _num(loi["sigma_percent"], ".3f"), "%"),
    ]
    return [
        Table(("", "value", "unit"), rows, right=(1,)),
        Paragraph(
            "Entered masses (the station has no balance instrument yet). LOI = (before - after) / "
            f"(before - empty); each weighing has u = {_num(loi['balance_sigma_g'], '.4g')} g."
        ),
    ]


def _agreement_blocks(report: TrialReport) -> list[Block]:
    agreement = report.product.agreement if report.product is not None else None
    blocks: list[Block] = []
    if not agreement:
        note = report.product.data.get("agreement_note", "") if report.product is not None else ""
        blocks.append(
            Paragraph(f"No agreement: {note}." if note else "No agreement: the trial has no certified results.")
        )
    else:
        rows_used = agreement.get("live_rows") or []
        times = agreement.get("live_time_s") or []
        blocks.append(
            Table(
                ("", "purity %", "u (k=1) %", "elements"),
                [
                    (
                        "live UV-Vis (end of trial)",
                        _pct(agreement["live_purity"]),
                        _pct(agreement["live_sigma"]),
                        ", ".join(agreement.get("covered_elements", [])),
                    ),
                    (
                        "ICP, same elements",
                        _pct(agreement["icp_purity"]),
                        _pct(agreement["icp_sigma"]),
                        ", ".join(agreement.get("icp_elements", [])),
                    ),
                    ("difference live - ICP", _pct(agreement["difference"]), _pct(agreement["combined_sigma"]), ""),
                    ("ICP over TREO (certificate)", _pct(agreement["icp_treo_purity"]), "", "all rare earths"),
                ],
                right=(1, 2),
            )
        )
        span = f"{times[0]:.0f} .. {times[-1]:.0f} s" if times else "-"
        blocks.append(
            Paragraph(
                f"Live purity: the mean of the last {len(rows_used)} analysed spectra without a flag "
                f"(analysis rows {', '.join(str(r) for r in rows_used)}; {span}); its u is the larger of their "
                "rms purity sigma and their scatter. "
                f"Rule: {agreement['rule']}. Verdict: {agreement['verdict']}."
            )
        )
        missing = agreement.get("missing_elements") or []
        if missing:
            blocks.append(Paragraph(f"Covered live but not in the ICP file (left out): {', '.join(missing)}."))
        coverage = (agreement.get("icp_purity") or math.nan) - (agreement.get("icp_treo_purity") or math.nan)
        blocks.append(
            Paragraph(
                f"Rare earths the spectrometer cannot see make the live number read {_pct(coverage, 3)} pp above the "
                "certificate's (ICP over the same elements minus ICP over TREO)."
            )
        )
    chart = report.chart
    if chart is not None and chart.bias.size:
        blocks.append(Heading("Bias across trials", 2))
        blocks.append(_chart_plot(chart, str(report.summary.get("trial_id", ""))))
        limits = (
            f"centre {_pct(chart.centre, 3)} pp, control limits {_pct(chart.lower_limit, 3)} .. "
            f"{_pct(chart.upper_limit, 3)} pp (sigma from the mean moving range / 1.128)"
            if math.isfinite(chart.sigma)
            else f"centre {_pct(chart.centre, 3)} pp; no control limits with fewer than 3 certified trials"
        )
        blocks.append(Paragraph(f"{len(chart.bias)} certified trial(s): {limits}."))
        blocks.append(
            Table(
                ("trial", "started (UTC)", "bias pp", "2 sigma pp", "consistent"),
                [
                    (t, s[:19], _pct(b, 3), _pct(AGREEMENT_SIGMAS * c, 3), "yes" if ok else "NO")
                    for t, s, b, c, ok in zip(
                        chart.trial_ids, chart.start_times, chart.bias, chart.combined_sigma, chart.consistent
                    )
                ],
                right=(2, 3),
            )
        )
    return blocks


def report_blocks(report: TrialReport) -> list[Block]:
    """The report's content, in order."""
    s = report.summary
    blocks: list[Block] = [
        Heading(f"Trial report {s.get('trial_id', '')}"),
        Paragraph(f"{s.get('title', '')} - sample {s.get('sample', '')}, operator {s.get('operator', '')}."),
        _identity(report),
        Heading("Certified results", 2),
        *_summary_blocks(report),
        Heading("Furnace profile"),
    ]
    if report.furnace["time"].size:
        f = report.furnace
        blocks.append(_furnace_plot(report))
        blocks.append(
            Paragraph(
                f"{s.get('furnace_rows', 0)} furnace readings; maximum temperature {np.nanmax(f['temperature']):.1f} "
                f"°C; highest setpoint {np.nanmax(f['setpoint']):.1f} °C."
            )
        )
    else:
        blocks.append(Paragraph("No furnace readings."))
    blocks.append(Heading("Purity over time"))
    if report.purity["time"].size:
        blocks.append(_purity_plot(report))
    final = s.get("final_purity")
    blocks.append(
        Paragraph(
            f"{s.get('spectra', 0)} spectra; final live purity {_pct(final if final is not None else math.nan)} %."
        )
    )
    blocks += [Heading("Events and alarms"), *_events_blocks(report)]
    blocks += [Heading("Calibration and its quality"), *_calibration_blocks(report)]
    blocks += [Heading("ICP results"), *_icp_blocks(report)]
    blocks += [Heading("Loss on ignition"), *_loi_blocks(report)]
    blocks += [Heading("Agreement: live UV-Vis against ICP"), *_agreement_blocks(report)]
    return blocks


def write_report(
    trial_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    results: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[PageContent] | None:
    """Write the report of a trial to ``out`` (``.pdf`` or ``.html``); for a PDF, what each page holds."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".pdf", ".html", ".htm"):
        raise ReportError(f"{out}: the report is written as .pdf or .html, not {out.suffix or 'without a suffix'}")
    report = gather(trial_path, results, progress)
    blocks = report_blocks(report)
    footer, title = _titles(report)
    if suffix == ".pdf":
        return render_pdf(blocks, out, footer=footer, title=title, progress=progress)
    text = render_html(blocks, footer=footer, title=title, progress=progress)
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return None


def _titles(report: TrialReport) -> tuple[str, str]:
    trial_id = report.summary.get("trial_id", "")
    return f"rem-daq report · trial {trial_id} · raw sha256 {report.raw_sha256[:16]}…", f"Trial report {trial_id}"


def report_bytes(trial_path: str | os.PathLike, kind: str = "pdf", results: str | os.PathLike | None = None) -> bytes:
    """The report as bytes (``kind`` "pdf" or "html"), for a download; made in memory, no file is written."""
    if kind not in ("pdf", "html"):
        raise ReportError(f"a report is a pdf or an html page, not {kind!r}")
    report = gather(trial_path, results)
    footer, title = _titles(report)
    if kind == "html":
        return render_html(report_blocks(report), footer=footer, title=title).encode("utf-8")
    buffer = io.BytesIO()
    render_pdf(report_blocks(report), buffer, footer=footer, title=title)
    return buffer.getvalue()
