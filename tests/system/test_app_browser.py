"""The app as a user sees it: `streamlit run app.py` on 127.0.0.1, driven by Debian's headless Chromium.

A thread writes a live trial while the browser watches the Live page; the purity
shown must change without a page reload. Screenshots go to test-artifacts/.
Without /usr/bin/chromium the test is skipped, except in CI, where it fails.
"""

import os
import re

import numpy as np
import pytest
from _bench import CHROMIUM, CHROMIUM_ARGS, ROOT, serve_app
from _trial_factory import (
    FULL_SCALE,
    LiveTrial,
    SyntheticBench,
    metadata,
    trials_folder,  # noqa: E402
    wait_for_rows,
    write_calibration,
)

from daq.layout import FLAG_MODEL_MISMATCH  # noqa: E402
from daq.pipeline import analyse_counts  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.system, pytest.mark.browser]
PLOTS = 5  # furnace, purity, concentrations, lack of fit, spectrum
LACK_OF_FIT_TITLE = "Lack of fit and wavelength shift"


class FittedBench(SyntheticBench):
    """The synthetic bench whose analysis rows are the real fit's (daq.pipeline.analyse_counts), as the runner
    stores them: the spectrum model the page rebuilds from the stored coefficients is the live fit's."""

    def __init__(self, calibration, **kwargs):
        super().__init__(**kwargs)
        self.calibration = calibration

    def spectra(self, t):
        spectrometer, rows = super().spectra(t)
        result = analyse_counts(spectrometer["counts"], self.dark, self.reference, self.calibration, "Nd", FULL_SCALE)
        spectrometer["flag"] |= np.where(result.model_mismatch, FLAG_MODEL_MISMATCH, 0).astype(np.uint8)
        rows.update(
            concentration=result.concentration_g_per_L,
            sigma=result.sigma_g_per_L,
            purity=result.purity,
            purity_sigma=result.purity_sigma,
            residual_rms=result.residual_rms,
            lack_of_fit=result.lack_of_fit,
            wavelength_shift=result.wavelength_shift_nm,
            fit_coefficients=result.free_coefficients,
        )
        return spectrometer, rows


def require_chromium() -> None:
    """Skip without Chromium on a workstation; fail in CI, where `.ci/run` installs it."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message + "; CI must run the browser test")
    pytest.skip(message)


@pytest.fixture
def served_app(tmp_path):
    """`streamlit run app.py` on a free port of 127.0.0.1 over a data folder; yields (url, data folder)."""
    require_chromium()
    data = tmp_path / "data"
    trials_folder(data)
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "app-browser-server.log"
    with open(log_path, "wb") as log, serve_app(data, log=log) as (url, _):
        yield url, data
    assert "Traceback" not in log_path.read_text(errors="replace"), f"the app logged a traceback: {log_path}"


def test_live_trial_in_chromium_updates_its_purity_without_reload(served_app):
    from playwright.sync_api import expect, sync_playwright

    url, data = served_app
    calibration_file = data / "calibrations" / "nd-pr.h5"
    calibration = write_calibration(calibration_file)
    meta = metadata(
        "browser-live",
        title="Pr/Nd elution, calcination to 250 °C",
        calibration=calibration,
        calibration_file=calibration_file,
    )
    live = LiveTrial(
        trials_folder(data) / "browser-live.h5", tick_s=0.1, seconds_per_tick=2.0, spectrum_every=3, meta=meta
    )
    live.bench = FittedBench(calibration)
    with live:
        wait_for_rows(live.path, "analysis", 21)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1500})
                page.goto(url)
                purity = page.get_by_test_id("stMetric").filter(has_text="Purity Nd2O3").get_by_test_id("stMetricValue")
                expect(purity).to_have_text(re.compile(r"^\d+\.\d\d %$"), timeout=TIMEOUT_MS)
                expect(page.get_by_text("Running", exact=False).first).to_be_visible(timeout=TIMEOUT_MS)
                expect(
                    page.get_by_text("trial `browser-live`", exact=False)
                    .or_(page.get_by_text("browser-live", exact=False))
                    .first
                ).to_be_visible()
                expect(page.locator(".js-plotly-plot")).to_have_count(PLOTS, timeout=TIMEOUT_MS)
                lack_of_fit = page.locator(".js-plotly-plot").filter(has_text=LACK_OF_FIT_TITLE)
                expect(lack_of_fit).to_have_count(1, timeout=TIMEOUT_MS)
                expect(lack_of_fit.get_by_text("limit 2", exact=False)).to_be_visible()
                page.evaluate("window.remdaqNoReload = 42")  # gone if the page reloads
                first = purity.inner_text()
                page.screenshot(path=str(ARTIFACTS / "app-live-1.png"), full_page=True)

                expect(purity).not_to_have_text(first, timeout=TIMEOUT_MS)
                second = purity.inner_text()
                assert second != first
                assert page.evaluate("window.remdaqNoReload") == 42, "the page reloaded to update"
                page.screenshot(path=str(ARTIFACTS / "app-live-2.png"), full_page=True)

                page.goto(f"{url}/trials?trial=browser-live")
                expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=TIMEOUT_MS)
                expect(page.get_by_text("Download summary (CSV)")).to_be_visible(timeout=TIMEOUT_MS)
                expect(page.locator(".js-plotly-plot")).to_have_count(PLOTS, timeout=TIMEOUT_MS)
                expect(page.locator(".js-plotly-plot").filter(has_text=LACK_OF_FIT_TITLE)).to_have_count(1)
                page.screenshot(path=str(ARTIFACTS / "app-trials.png"), full_page=True)

                page.goto(f"{url}/calibration")
                expect(page.get_by_text("In use by trial", exact=False)).to_be_visible(timeout=TIMEOUT_MS)
                expect(page.get_by_text(calibration.calibration_id).first).to_be_visible(timeout=TIMEOUT_MS)
                expect(page.get_by_text("Quality per analyte")).to_be_visible(timeout=TIMEOUT_MS)
                expect(page.locator(".js-plotly-plot .cartesianlayer")).to_have_count(3, timeout=TIMEOUT_MS)
                page.screenshot(path=str(ARTIFACTS / "app-calibration.png"), full_page=True)
                assert "Traceback" not in page.content()
            finally:
                browser.close()


def test_a_damaged_newest_trial_is_reported_and_the_good_trials_are_still_served(served_app):
    from _damaged_files import damaged_copies  # noqa: E402
    from _trial_factory import write_trial  # noqa: E402
    from playwright.sync_api import expect, sync_playwright

    url, data = served_app
    trials = trials_folder(data)
    for name in ("good-a", "good-b"):
        write_trial(trials / f"{name}.h5", meta=metadata(name, title=f"trial {name}"))
    scratch = data.parent / "sources"
    scratch.mkdir()
    copies = damaged_copies(
        lambda name: write_trial(scratch / f"{name}.h5", meta=metadata(name)), trials, metadata_flips=2, raw_flips=0
    )
    newest = copies[2].path  # truncated to 30 %: written last, touched now, so it is the newest file
    newest.touch()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1500})
            page.goto(url)
            expect(page.get_by_text("damaged", exact=False).first).to_be_visible(timeout=TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "app-damaged-live.png"), full_page=True)

            page.goto(f"{url}/trials")
            table = page.get_by_test_id("stDataFrame").first
            expect(table).to_be_visible(timeout=TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "app-damaged-trials.png"), full_page=True)

            page.goto(f"{url}/trials?trial=good-b")
            expect(page.locator(".js-plotly-plot")).to_have_count(PLOTS, timeout=TIMEOUT_MS)
            expect(page.locator(".js-plotly-plot").filter(has_text=LACK_OF_FIT_TITLE)).to_have_count(1)
            expect(page.get_by_text("Download summary (CSV)")).to_be_visible(timeout=TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "app-damaged-good-trial.png"), full_page=True)
            assert "Traceback" not in page.content()
        finally:
            browser.close()
