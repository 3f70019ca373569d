"""`remdaq report`: a demo product trial certified with the shipped example ICP file, as PDF and HTML.

The PDF is checked page by page as images (Debian's pdftoppm) and by text (pdftotext): every section is
on a page, each plot is drawn on the page whose text names it, and the numbers in the text are the ones
computed here from the input files (the CSV read with the csv module, the LOI from the TOML masses, the
live purity from the trial file, the raw checksum with reanalysis's function). pdftoppm and pdftotext
(poppler-utils) are required in CI; elsewhere the test is skipped without them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from _trial_factory import SyntheticBench, metadata, trials_folder, write_calibration
from click.testing import CliRunner
from PIL import Image
from streamlit.testing.v1 import AppTest

from analysis import oxide_factor
from daq import Catalog, TrialWriter, open_trial
from daq.cli import cli
from daq.product import product_path, read_product
from daq.reanalysis import raw_checksum
from daq.report import report_bytes, write_report

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds/icp"
EXAMPLE = SEEDS / "example-results.toml"
ND_PRODUCT_995 = tomllib.loads((ROOT / "seeds/scenarios/nd-product-995.toml").read_text())["base"]
SECTIONS = (
    "Certified results",
    "Furnace profile",
    "Purity over time",
    "Events and alarms",
    "Calibration and its quality",
    "ICP results",
    "Rare earths",
    "Non-rare-earth impurities (as oxides)",
    "Loss on ignition",
    "Agreement: live UV-Vis against ICP",
    "Bias across trials",
)
PLOTS = {  # a text of the plot's title -> a colour it is drawn in (RGB)
    "Furnace profile (dashed lines": (0xD6, 0x27, 0x28),
    "Purity over time with its 2 sigma band": (0x1F, 0x77, 0xB4),
    "Calibration: sensitivity of each analyte": (0x1F, 0x77, 0xB4),
    "Bias control chart": (0x2C, 0xA0, 0x2C),
}


def poppler(tool: str) -> str:
    """A poppler-utils tool; required in CI (`make test` installs poppler-utils)."""
    found = shutil.which(tool)
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"{tool} is missing: `make test` installs poppler-utils (Makefile SYSTEM_PACKAGES)")
    pytest.skip(f"{tool} is missing (apt-get install poppler-utils)")


class ProductBench(SyntheticBench):
    """The synthetic bench with a steady stream of the nd-product-995 scenario's Nd and Pr (g/L)."""

    def concentrations(self, t):
        return np.tile([ND_PRODUCT_995["Nd"], ND_PRODUCT_995["Pr"]], (len(np.atleast_1d(t)), 1))


def write_demo_product_trial(data: Path) -> Path:
    """The demo trial: 30 min of a 99.5 % Nd2O3 product stream, analysed with a calibration of the data folder."""
    calibration = write_calibration(data / "calibrations/demo.h5")
    path = trials_folder(data) / "20261130T080000Z-nd-product.h5"
    meta = metadata(
        path.stem,
        sample="Nd2O3 lot 995-A",
        title="Nd product, calcined at 900 C",
        calibration=calibration,
        calibration_file="calibrations/demo.h5",
        start_time="2026-11-30T08:00:00+00:00",
    )
    bench = ProductBench()
    writer = TrialWriter(path, meta, flush_interval_s=0.05)
    bench.start(writer)
    writer.append("furnace", **bench.furnace(np.arange(0.0, 1800.0, 2.0)))
    spectrometer, analysis = bench.spectra(np.arange(0.0, 1800.0, 20.0))
    wanted = len(meta.fit_coefficient_names)  # the calibration's fit names more coefficients than the truth's
    padded = np.full((len(analysis["time"]), wanted), np.nan)
    padded[:, : min(wanted, analysis["fit_coefficients"].shape[1])] = analysis["fit_coefficients"][:, :wanted]
    writer.append("spectrometer", **spectrometer)
    writer.append("analysis", **{**analysis, "fit_coefficients": padded})
    writer.event(600.0, "warning", "furnace", "output above 70 % for 60 s")
    writer.close("success")
    with open_trial(path) as reader:
        Catalog(data).record(reader.summary())
    return path


def expected_numbers(trial: Path) -> dict[str, str]:
    """The numbers the report must show, from the input files, formatted as the report's tables do."""
    with open(SEEDS / "example-nd2o3.csv", newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SAMPLE_NO,"))
    rows = [r for r in csv.DictReader(lines[header:]) if r["SAMPLE_NO"] == "ND-995-A"]
    scale = {"%": 1e4, "mg/kg": 1.0, "ug/g": 1.0, "ppm": 1.0}
    values: dict[str, list[float]] = {}
    for r in rows:
        if not r["RESULT"].startswith("<"):
            values.setdefault(r["ANALYTE"].split()[0], []).append(float(r["RESULT"]) * scale[r["UNITS"]])
    mean = {e: sum(v) / len(v) for e, v in values.items()}
    ree = {e: m * oxide_factor(e) for e, m in mean.items() if e in ("Nd", "Pr", "Sm", "La")}
    treo = sum(ree.values())
    loi = tomllib.loads(EXAMPLE.read_text())["loi"]
    loi_percent = (
        100
        * (loi["crucible_and_sample_g"] - loi["crucible_and_ignited_g"])
        / (loi["crucible_and_sample_g"] - loi["crucible_g"])
    )
    with open_trial(trial) as reader:
        purity = reader.read("analysis")["purity"]
        meta = reader.metadata
    return {
        "Nd mg/kg": f"{mean['Nd']:.0f}",
        "Pr mg/kg": f"{mean['Pr']:.1f}",
        "Fe mg/kg": f"{mean['Fe']:.1f}",
        "TREO %": f"{treo / 1e4:.3f}",
        "Nd2O3/TREO %": f"{100 * ree['Nd'] / treo:.4f}",
        "Nd2O3/(Nd2O3+Pr6O11) %": f"{100 * ree['Nd'] / (ree['Nd'] + ree['Pr']):.4f}",
        "LOI %": f"{loi_percent:.3f}",
        "live purity %": f"{100 * float(np.mean(purity[-5:])):.4f}",  # no row is flagged: the last five
        "raw checksum": raw_checksum(trial),
        "trial id": str(meta["trial_id"]),
        "sample": str(meta["sample"]),
        "operator": str(meta["operator"]),
        "analyst": "A. Petrova",
    }


def page_texts(pdf: Path) -> list[str]:
    pdftotext = poppler("pdftotext")
    count = int(
        re.search(
            r"Pages:\s+(\d+)",
            subprocess.run([poppler("pdfinfo"), str(pdf)], capture_output=True, text=True, check=True).stdout,
        ).group(1)
    )
    texts = []
    for page in range(1, count + 1):
        done = subprocess.run(
            [pdftotext, "-f", str(page), "-l", str(page), str(pdf), "-"], capture_output=True, text=True, check=True
        )
        texts.append(" ".join(done.stdout.split()))
    return texts


def page_images(pdf: Path, folder: Path) -> list[np.ndarray]:
    subprocess.run([poppler("pdftoppm"), "-r", "60", "-png", str(pdf), str(folder / "page")], check=True)
    files = sorted(folder.glob("page-*.png"), key=lambda p: int(p.stem.split("-")[-1]))
    return [np.asarray(Image.open(f).convert("RGB"), dtype=int) for f in files]


def has_colour(image: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40, pixels: int = 15) -> bool:
    return int(np.count_nonzero(np.all(np.abs(image - np.array(rgb)) <= tolerance, axis=-1))) >= pixels


def coloured_pixels(image: np.ndarray) -> int:
    return int(np.count_nonzero(image.max(axis=-1) - image.min(axis=-1) > 60))


@pytest.fixture(scope="module")
def certified(tmp_path_factory):
    data = tmp_path_factory.mktemp("report") / "data"
    trial = write_demo_product_trial(data)
    before = hashlib.sha256(trial.read_bytes()).hexdigest()
    done = CliRunner().invoke(cli, ["results", "add", str(trial), str(EXAMPLE)])
    assert done.exit_code == 0, done.output
    return data, trial, before


def _report(trial: Path, out: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "daq", "report", trial.stem, "--out", str(out), "--data-dir", str(trial.parent.parent)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_pdf_report_page_by_page(certified, tmp_path):
    data, trial, before = certified
    pdf = tmp_path / "report.pdf"
    done = _report(trial, pdf)
    texts = page_texts(pdf)
    images = page_images(pdf, tmp_path)
    assert f"report written: {pdf} ({len(texts)} pages)" in done.stdout
    assert "page 1 of" in done.stderr  # progress, page by page
    assert len(images) == len(texts) >= 3
    for number, (text, image) in enumerate(zip(texts, images), start=1):
        height, width, _ = image.shape
        assert height / width == pytest.approx(297 / 210, rel=0.01), f"page {number} is not A4 portrait"
        assert f"page {number} of {len(texts)}" in text
        ink = np.count_nonzero(image.min(axis=-1) < 200) / image[..., 0].size
        assert ink > 0.005, f"page {number} is (almost) blank"
        drawn = [title for title in PLOTS if title in text]
        for title in drawn:
            assert has_colour(image, PLOTS[title]), f"page {number}: the plot {title!r} is named but not drawn"
        if not drawn:
            assert coloured_pixels(image) < 20, f"page {number}: colour without a plot"
    # every section once, in order, over the pages
    joined = " ".join(texts)
    positions = [joined.find(section) for section in SECTIONS]
    assert -1 not in positions, [s for s, p in zip(SECTIONS, positions) if p < 0]
    assert positions == sorted(positions)
    assert all(any(title in text for text in texts) for title in PLOTS)
    # the numbers are the files'
    for what, number in expected_numbers(trial).items():
        assert number in joined, f"{what} {number} is not in the report"
    assert "consistent: live - ICP" in joined
    assert hashlib.sha256(trial.read_bytes()).hexdigest() == before  # the raw file is never modified


def test_the_html_report_has_the_same_numbers_and_plots(certified, tmp_path):
    _data, trial, before = certified
    out = tmp_path / "report.html"
    _report(trial, out)
    page = out.read_text(encoding="utf-8")
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    for what, number in expected_numbers(trial).items():
        assert number in text, f"{what} {number} is not in the HTML report"
    assert page.count('<img alt="') == len(PLOTS)
    assert all(section in text for section in SECTIONS)
    assert hashlib.sha256(trial.read_bytes()).hexdigest() == before


def test_a_report_without_certified_results_says_so(tmp_path):
    data = tmp_path / "data"
    trial = write_demo_product_trial(data)
    pdf = tmp_path / "plain.pdf"
    pages = write_report(trial, pdf)
    assert pages is not None
    text = " ".join(page_texts(pdf))
    assert "Certified results: none. no product file" in text
    assert "No certified results." in text and "No loss on ignition was entered." in text
    assert raw_checksum(trial) in text


def test_a_report_with_a_results_file_evaluates_it_without_storing(certified, tmp_path):
    _data, trial, _before = certified
    out = tmp_path / "evaluated.html"
    write_report(trial, out, results=EXAMPLE)
    assert "evaluated for this report, not stored" in out.read_text(encoding="utf-8")


def test_a_report_to_an_unknown_format_is_refused(certified, tmp_path):
    _data, trial, _before = certified
    done = CliRunner().invoke(cli, ["report", str(trial), "--out", str(tmp_path / "report.docx")])
    assert done.exit_code == 2
    assert "written as .pdf or .html" in done.output
    assert not (tmp_path / "report.docx").exists()


def test_the_trials_page_offers_the_same_report_and_the_bias_chart(certified, monkeypatch, tmp_path):
    data, trial, before = certified
    monkeypatch.setenv("REMDAQ_DATA_DIR", str(data))
    monkeypatch.delenv("REMDAQ_STATION", raising=False)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).switch_page("app_pages/trials.py").run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    certified_column = dict(zip(table["trial"], table["certified purity % (ICP)"]))
    product = read_product(product_path(trial))
    assert certified_column[trial.stem] == pytest.approx(round(100 * product.purity, 4))
    at.selectbox(key="trials-open").select(f"trials/{trial.name}").run()
    assert not at.exception, [e.message for e in at.exception]
    labels = [b.label for b in at.download_button]
    assert {"Download report (PDF)", "Download report (HTML)"} <= set(labels)
    charts = {chart.key: json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}
    assert list(charts["trials-bias-chart"]["data"][0]["x"]) == [trial.stem]
    # what the PDF button downloads: the same report, made in memory
    pdf = tmp_path / "download.pdf"
    pdf.write_bytes(report_bytes(trial, "pdf"))
    joined = " ".join(page_texts(pdf))
    for what, number in expected_numbers(trial).items():
        assert number in joined, f"{what} {number} is not in the downloaded report"
    assert hashlib.sha256(trial.read_bytes()).hexdigest() == before
