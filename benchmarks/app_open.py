"""Benchmark: open a 24-hour trial in the app's code path; time it and measure memory.

    .venv/bin/python benchmarks/app_open.py            # generate, measure, print, update docs/performance.md
    .venv/bin/python benchmarks/app_open.py --served   # also serve it with `streamlit run` in headless Chromium
    .venv/bin/python benchmarks/app_open.py --hours 2 --no-doc

1. Writes a synthetic trial with :class:`daq.TrialWriter` (tests/_trial_factory.py):
   one furnace row per second (86,400 rows) and one 2048-pixel spectrum with
   its analysis every 10 s (8,640 spectra, ~70 MB of counts).
2. In a fresh Python process (what a new app server holds), times what the Live
   page does to open it: :class:`TrialFollower` first update (decimated slices,
   the latest spectrum and its refitted model, events), the four Plotly figures,
   and their JSON (what ``st.plotly_chart`` sends). Then one refresh tick. Peak
   RSS is the child's ``ru_maxrss`` and the highest RSS that psutil saw while
   sampling it.
3. ``--served``: the same file served by ``streamlit run app.py`` on 127.0.0.1,
   opened in Debian's headless Chromium; time from navigation to four drawn
   plots, and the server's RSS afterwards (psutil).

Targets (the design targets in docs/performance.md): open <= 2 s, memory < 500 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _report import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _bench import CHROMIUM, CHROMIUM_ARGS, serve_app  # noqa: E402 - tests/ is on the path from here on

OPEN_TARGET_S = 2.0
RSS_TARGET_MB = 500.0


def generate(path: Path, hours: float) -> dict:
    """Write the long trial; return its size and how long writing took."""
    from _trial_factory import write_trial

    started = time.perf_counter()
    write_trial(path, duration_s=hours * 3600.0, furnace_period_s=1.0, spectrum_period_s=10.0, pixels=2048)
    return {"generate_s": time.perf_counter() - started, "file_MB": path.stat().st_size / 1e6}


def measure(path: Path) -> dict:
    """In this (fresh) process: import, open as the Live page does, refresh once. Returns the figures."""
    started = time.perf_counter()
    import plotly.io

    from app_pages._figures import FigureCache, trial_figures
    from app_pages._follow import TrialFollower

    def sent(figures) -> int:
        """What st.plotly_chart does with each figure: to_dict, then JSON."""
        return sum(len(plotly.io.to_json(figure.to_dict(), validate=False)) for figure in figures.values())

    imported = time.perf_counter()
    cache = FigureCache()
    follower = TrialFollower(path)
    snapshot = follower.update()
    figures = trial_figures(snapshot, cache)
    payload = sent(figures)
    opened = time.perf_counter()
    sent(trial_figures(follower.update(), cache))
    refreshed = time.perf_counter()
    sent(trial_figures(follower.last_snapshot))  # every figure rebuilt (new furnace and analysis rows)
    rebuilt = time.perf_counter()
    points = max(len(trace.x) for figure in figures.values() for trace in figure.data if trace.x is not None)
    follower.close()
    return {
        "import_s": imported - started,
        "open_s": opened - imported,
        "refresh_s": refreshed - opened,
        "rebuild_s": rebuilt - refreshed,
        "furnace_rows": snapshot.rows["furnace"],
        "spectra": snapshot.rows["spectrometer"],
        "max_points_per_trace": points,
        "figures_json_kB": payload / 1e3,
        "ru_maxrss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_end_MB": psutil.Process().memory_info().rss / 1e6,
    }


def measure_in_child(path: Path) -> dict:
    """Run :func:`measure` in a new interpreter, sampling its RSS with psutil."""
    child = subprocess.Popen([sys.executable, __file__, "--measure", str(path)], stdout=subprocess.PIPE, text=True)
    peak = 0
    process = psutil.Process(child.pid)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.Error:
                return
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    stop.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"measurement failed with exit code {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    result["psutil_peak_rss_MB"] = peak / 1e6
    return result


def served(data_dir: Path) -> dict:
    """Serve the data folder with `streamlit run`, open the Live page in headless Chromium, measure."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        return {"served": f"skipped: {CHROMIUM} missing"}
    with serve_app(data_dir) as (url, server):
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            timings = []
            for _ in range(2):  # the first load also compiles the page's imports and loads plotly.js
                started = time.perf_counter()
                page.goto(url)
                page.locator(".js-plotly-plot .scatterlayer").nth(3).wait_for(timeout=60_000)
                timings.append(time.perf_counter() - started)
            browser.close()
        tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        rss = sum(p.memory_info().rss for p in tree)
        return {
            "served_first_load_s": timings[0],
            "served_second_load_s": timings[1],
            "served_server_rss_MB": rss / 1e6,
        }


def report(figures: dict, hours: float) -> str:
    """The "App" section of docs/performance.md."""
    ok_open = "meets" if figures["open_s"] <= OPEN_TARGET_S else "MISSES"
    peak = max(figures["ru_maxrss_MB"], figures["psutil_peak_rss_MB"])
    ok_rss = "meets" if peak < RSS_TARGET_MB else "MISSES"
    lines = [
        "## App",
        "",
        f"`benchmarks/app_open.py` ({time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}): a {hours:g}-hour trial, {figures['furnace_rows']:,} furnace rows "
        f"(1/s) and {figures['spectra']:,} spectra of 2048 px (1 per 10 s), {figures['file_MB']:.0f} MB, "
        f"written in {figures['generate_s']:.1f} s. Opened in a fresh process by the Live page's code path "
        "(`TrialFollower.update()`: decimated slices, latest spectrum with its refitted model, events; the four "
        "Plotly figures and their JSON). The OS file cache is warm (the file was just written).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| open (read + figures + JSON) | {figures['open_s']:.2f} s | <= {OPEN_TARGET_S:g} s ({ok_open}) |",
        f"| one refresh tick afterwards, nothing new (figures cached) | {figures['refresh_s'] * 1000:.0f} ms | "
        "< 1 s refresh |",
        f"| building and sending all four figures again (new rows everywhere) | {figures['rebuild_s'] * 1000:.0f} ms "
        "| < 1 s refresh |",
        f"| Python imports of the page (once per server) | {figures['import_s']:.2f} s | |",
        f"| peak RSS of that process (ru_maxrss / psutil sampled) | {figures['ru_maxrss_MB']:.0f} MB / "
        f"{figures['psutil_peak_rss_MB']:.0f} MB | < {RSS_TARGET_MB:g} MB ({ok_rss}) |",
        f"| points per trace, at most | {figures['max_points_per_trace']:,} | a few thousand |",
        f"| JSON sent for the four figures | {figures['figures_json_kB']:.0f} kB | |",
    ]
    if "served_first_load_s" in figures:
        lines += [
            f"| served: `streamlit run` + headless Chromium, navigation to 4 drawn plots (first / second load) | "
            f"{figures['served_first_load_s']:.1f} s / {figures['served_second_load_s']:.1f} s | |",
            f"| served: streamlit server RSS after two sessions | {figures['served_server_rss_MB']:.0f} MB | "
            f"< {RSS_TARGET_MB:g} MB |",
        ]
    lines += ["", "Reproduce: `.venv/bin/python benchmarks/app_open.py --served`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=24.0, help="trial length (default 24)")
    parser.add_argument("--served", action="store_true", help="also serve it in headless Chromium")
    parser.add_argument("--no-doc", action="store_true", help="do not update docs/performance.md")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure)))
        return
    with tempfile.TemporaryDirectory(prefix="remdaq-app-bench-") as scratch:
        data = Path(scratch)
        (data / "trials").mkdir()
        path = data / "trials" / f"bench-{args.hours:g}h.h5"
        print(f"writing a {args.hours:g}-hour trial to {path} ...", flush=True)
        figures = generate(path, args.hours)
        figures.update(measure_in_child(path))
        if args.served:
            figures.update(served(data))
    for name, value in figures.items():
        print(f"{name:28s} {value:10.3f}" if isinstance(value, float) else f"{name:28s} {value}")
    section = report(figures, args.hours)
    print()
    print(section)
    if not args.no_doc:
        write_section(section)
        print(f"updated {ROOT / 'docs' / 'performance.md'}")


if __name__ == "__main__":
    main()
