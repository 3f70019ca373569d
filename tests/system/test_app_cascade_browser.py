"""A real trial of the simulated cascade bench, as a user sees it in Debian's headless Chromium.

`remdaq calibrate` and `remdaq run seeds/recipes/cascade.toml` on a faster-clock copy of
hardware/stations/sim-cascade.toml (three furnace zones and a pH sensor on one bus, spectrometers at the feed,
raffinate and strip of the scenario's Pr/Nd cascade), then `streamlit run app.py` over its data folder: the Live
page shows every instrument and the cascade view, and the separation factor it draws (read back from the
browser's own Plotly figure) agrees with the scenario's truth; the Trials page opens the trial and overlays its
purity curve. Screenshots and the server log go to test-artifacts/. Without /usr/bin/chromium the test is
skipped, except in CI, where it fails (as tests/system/test_app_browser.py).
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pytest
from _bench import CHROMIUM, CHROMIUM_ARGS, ROOT, run_remdaq, serve_app
from test_app_browser import require_chromium

from daq import open_trial

CASCADE_STATION = ROOT / "hardware/stations/sim-cascade.toml"
CASCADE_RECIPE = ROOT / "seeds/recipes/cascade.toml"
CASCADE_STANDARDS = ROOT / "seeds/standards/nd-pr-5.toml"
CASCADE_SCENARIO = "pr-nd-cascade"
CASCADE_SPEED = 1200.0
"""Simulated seconds per wall second for the real trial: its 4 h in about 20 s (the shipped 300: about 60 s)."""
ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.system, pytest.mark.browser]
PLOTS = 10  # cascade: purity, Nd/Pr, separation factor; zones; sensor feed-ph; the primary instruments' five
INSTRUMENT_TITLES = (
    "Purity per sampling point",
    "Nd/Pr mass ratio per sampling point",
    "Separation factor Nd/Pr: strip / raffinate",
    "Furnace zones",
    "Sensor feed-ph",
    "Furnace zone-1",
    "Lack of fit and wavelength shift",
)

_FIGURE_DATA = "(plot) => plot.data.map((trace) => ({name: trace.name, x: trace.x, y: trace.y}))"
"""A Plotly figure's traces as the browser holds them: arrays as lists, or as Plotly's typed-array specs."""


def _array(value) -> np.ndarray:
    """An array of a figure in the browser: a list, or ``{"dtype", "bdata"}`` (base64, as Plotly sends it)."""
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).astype(float)
    return np.array([np.nan if v is None else v for v in value or ()], dtype=float)


# -- a real trial of the simulated cascade bench, and its truth (tests/unit/test_app_cascade.py uses them too) --


def cascade_station(folder: Path, speed: float = CASCADE_SPEED) -> Path:
    """A copy of hardware/stations/sim-cascade.toml in ``folder`` with its clock at ``speed``."""
    text = CASCADE_STATION.read_text()
    old = "simulation_speed = 300.0"
    assert old in text, f"{CASCADE_STATION} no longer contains {old!r}"
    path = folder / f"sim-cascade-{speed:g}.toml"
    path.write_text(text.replace(old, f"simulation_speed = {speed:g}"))
    return path


def run_cascade_trial(data: Path, speed: float = CASCADE_SPEED) -> Path:
    """`remdaq calibrate` then `remdaq run seeds/recipes/cascade.toml` on the simulated cascade bench; the file."""
    station = cascade_station(data.parent, speed)
    calibration = data / "calibrations/demo-sim-cascade.h5"
    done = run_remdaq("calibrate", CASCADE_STANDARDS, "--station", station, "--out", calibration)
    assert done.returncode == 0, done.stderr
    done = run_remdaq("run", CASCADE_RECIPE, "--station", station, "--data-dir", data)
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1])
    assert path.is_file(), done.stdout
    return path


def stream_started_s(trial, stream: str) -> float:
    """When a stream's simulator started the scenario: its "process stream started" event (the primary
    spectrometer's events may say ``spectrometer``)."""
    events = trial.events()
    sources = {stream, "spectrometer"} if stream == trial.primary("spectrometer") else {stream}
    started = [
        float(t)
        for t, source, message in zip(events["time"], events["source"], events["message"])
        if source in sources and "process stream started" in message
    ]
    assert len(started) == 1, (stream, started)
    return started[0]


def separation_against_truth(
    path: Path, time_s: np.ndarray, factor: np.ndarray, enriched="strip", depleted="raffinate"
):
    """Each drawn separation factor (at the enriched stream's row times) against the scenario's truth.

    Returns ``(truth, tolerance, sigma)``, per point:

    - truth: ``load_scenario("pr-nd-cascade").cascade_truth_at(s).separation_factor(enriched, depleted)`` at the
      row's scenario time ``s`` (row time minus its stream's "process stream started" event);
    - sigma: the factor's 1-sigma uncertainty from the four measured concentrations' sigmas, to first order
      ``sigma_F / F = sqrt(sum_i (sigma_i / c_i)^2)`` over Nd and Pr at both points (two spectrometers,
      independent; the Nd/Pr covariance within one fit is not stored and is left out: their bands barely
      overlap);
    - tolerance: ``k sigma`` with ``k`` the normal quantile that keeps the chance of any of the N points
      falling outside below 0.1 % (Bonferroni: ``k = Phi^-1(1 - 0.001 / 2N)``, 4.6 for 240 points), plus how
      far the truth itself moved between the two paired spectra (a few seconds to half an interval apart).
    """
    from drivers.sim.scenario import load_scenario

    scenario = load_scenario(CASCADE_SCENARIO)
    with open_trial(path) as trial:
        a, b = trial.read(trial.stream(enriched).key), trial.read(trial.stream(depleted).key)
        analytes = trial.stream(enriched).analytes, trial.stream(depleted).analytes
        start_a, start_b = stream_started_s(trial, enriched), stream_started_s(trial, depleted)
    rows_a = np.array([np.argmin(np.abs(a["time"] - t)) for t in time_s])
    assert np.allclose(a["time"][rows_a], time_s, atol=0.05)  # drawn at the enriched stream's row times (float32)
    rows_b = np.array([np.argmin(np.abs(b["time"] - t)) for t in time_s])  # the app's pairing: nearest row
    relative = np.zeros(len(time_s))
    for rows, table, names in ((rows_a, a, analytes[0]), (rows_b, b, analytes[1])):
        for element in ("Nd", "Pr"):
            k = names.index(element)
            relative += (table["sigma"][rows, k] / table["concentration"][rows, k]) ** 2
    sigma = np.abs(factor) * np.sqrt(relative)
    scenario_a, scenario_b = a["time"][rows_a] - start_a, b["time"][rows_b] - start_b
    truth, moved = np.empty(len(time_s)), np.empty(len(time_s))
    for i, (s_a, s_b) in enumerate(zip(scenario_a, scenario_b)):
        at_a = scenario.cascade_truth_at(float(s_a))
        truth[i] = at_a.separation_factor(enriched=enriched, depleted=depleted)
        high, low = at_a.concentrations[enriched], scenario.cascade_truth_at(float(s_b)).concentrations[depleted]
        moved[i] = abs(truth[i] - (high["Nd"] / high["Pr"]) / (low["Nd"] / low["Pr"]))
    k = NormalDist().inv_cdf(1 - 0.001 / (2 * len(time_s)))
    return truth, k * sigma + moved, sigma


@pytest.fixture
def served_cascade(tmp_path):
    """A finished sim-cascade trial in a data folder, served by `streamlit run app.py`; yields (url, trial file)."""
    require_chromium()
    data = tmp_path / "data"
    path = run_cascade_trial(data)
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "app-cascade-browser-server.log"
    with open(log_path, "wb") as log, serve_app(data, log=log) as (url, _):
        yield url, path
    assert "Traceback" not in log_path.read_text(errors="replace"), f"the app logged a traceback: {log_path}"


def test_a_sim_cascade_trial_in_chromium_shows_every_instrument_and_the_separation_factor(served_cascade):
    from playwright.sync_api import expect, sync_playwright

    url, path = served_cascade
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 4400})  # the whole page in one screenshot
            page.goto(url)
            plots = page.locator(".js-plotly-plot")
            expect(plots).to_have_count(PLOTS, timeout=TIMEOUT_MS)
            for text in INSTRUMENT_TITLES:
                expect(plots.filter(has_text=text)).to_have_count(1, timeout=TIMEOUT_MS)
            zones = plots.filter(has_text="Furnace zones")
            for zone in ("zone-1", "zone-2", "zone-3"):  # one trace each, named in the legend
                expect(zones.locator(".legendtext", has_text=zone)).to_have_count(1)
            ph = plots.filter(has_text="Sensor feed-ph")
            expect(ph.get_by_text("electrode_mV (mV)").first).to_be_visible()  # every channel, with units
            cascade = plots.filter(has_text="Purity per sampling point")
            for stream in ("feed · Nd2O3", "raffinate · Pr6O11", "strip · Nd2O3"):
                expect(cascade.locator(".legendtext", has_text=stream)).to_have_count(1)
            metrics = page.get_by_test_id("stMetric")
            for label in ("Purity Nd2O3 · feed", "Purity Pr6O11 · raffinate", "Purity Nd2O3 · strip"):
                value = metrics.filter(has_text=label).get_by_test_id("stMetricValue")
                expect(value).to_have_text(re.compile(r"^\d+\.\d\d %$"), timeout=TIMEOUT_MS)
            expect(metrics.filter(has_text="Separation factor strip / raffinate")).to_have_count(1)
            expect(page.get_by_text("Ended: success", exact=False).first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "app-cascade-live.png"), full_page=True)

            # the separation factor as the browser draws it, against the scenario's truth
            separation = plots.filter(has_text="Separation factor Nd/Pr: strip / raffinate").element_handle()
            assert separation is not None
            line = next(
                t for t in separation.evaluate(_FIGURE_DATA) if t["name"] == "(Nd/Pr)_strip / (Nd/Pr)_raffinate"
            )
            hours, factor = _array(line["x"]), _array(line["y"])
            drawn = np.isfinite(factor)
            assert drawn.sum() >= 200
            time_s = hours[drawn] * 3600.0  # the axis is in hours for a 4 h trial
            truth, tolerance, sigma = separation_against_truth(path, time_s, factor[drawn])
            error = np.abs(factor[drawn] - truth)
            assert np.all(error <= tolerance + 1e-6 * truth), np.max(error / tolerance)  # + float32 of the drawing
            assert truth.max() / truth.min() > 2

            page.goto(f"{url}/trials?trial={path.stem}")
            expect(page.get_by_text("Download summary (CSV)")).to_be_visible(timeout=TIMEOUT_MS)
            expect(plots).to_have_count(PLOTS, timeout=TIMEOUT_MS)
            page.get_by_test_id("stMultiSelect").first.click()
            page.get_by_role("option").filter(has_text=path.stem).first.click()
            page.keyboard.press("Escape")
            compared = plots.filter(has_text="Purity of 1 trial(s)")
            expect(compared).to_have_count(1, timeout=TIMEOUT_MS)
            expect(plots).to_have_count(PLOTS + 1, timeout=TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "app-cascade-trials.png"), full_page=True)
            assert "Traceback" not in page.content()
        finally:
            browser.close()
