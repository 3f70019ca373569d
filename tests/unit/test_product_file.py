"""The product file beside a trial: what it links and keeps, that the raw file is never changed, the catalog.

Expected numbers come from the input files (the shipped example's TOML masses, the raw checksum computed
by reanalysis's own function), not typed in.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import pytest
from _trial_factory import LiveTrial, trials_folder, wait_for_rows, write_trial
from click.testing import CliRunner

from daq import Catalog, ConfigError, open_trial
from daq.cli import cli
from daq.product import (
    PRODUCT_FORMAT,
    ProductError,
    load_results,
    product_path,
    read_product,
    write_product,
)
from daq.reanalysis import raw_checksum

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds/icp"
EXAMPLE = SEEDS / "example-results.toml"


def _bytes_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def trial(tmp_path) -> Path:
    data = tmp_path / "data"
    path = write_trial(trials_folder(data) / "T-prod.h5", duration_s=300.0)
    with open_trial(path) as reader:
        Catalog(data).record(reader.summary())
    return path


def test_the_product_file_links_the_trial_and_its_raw_checksum_and_keeps_its_inputs(trial):
    before = _bytes_digest(trial)
    product = write_product(trial, EXAMPLE)
    assert product.path == trial.with_name("T-prod.product.json") == product_path(trial)
    assert _bytes_digest(trial) == before  # the raw trial file is never modified
    data = json.loads(product.path.read_text(encoding="utf-8"))  # standard JSON: no NaN
    assert data["file_format"] == PRODUCT_FORMAT
    assert data["trial_id"] == "T-prod" and data["trial_file"] == "T-prod.h5"
    assert data["raw_sha256"] == raw_checksum(trial)
    assert data["icp_file"]["text"] == (SEEDS / "example-nd2o3.csv").read_text(encoding="utf-8")
    assert data["icp_file"]["sha256"] == _bytes_digest(SEEDS / "example-nd2o3.csv")
    assert data["results_file"]["text"] == EXAMPLE.read_text(encoding="utf-8")
    assert read_product(product.path).data == data
    assert read_product(product.path).matches(trial)


def test_the_loss_on_ignition_is_computed_from_the_entered_masses(trial):
    entered = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["loi"]
    loi = write_product(trial, EXAMPLE).data["loi"]
    empty, before, after = entered["crucible_g"], entered["crucible_and_sample_g"], entered["crucible_and_ignited_g"]
    assert loi["percent"] == pytest.approx(100 * (before - after) / (before - empty))
    assert loi["sample_g"] == pytest.approx(before - empty)
    s = entered["balance_sigma_g"]
    # dLOI/d(before) = (after - empty)/(before - empty)^2, d/d(after) = -1/(before - empty), d/d(empty) = ...
    m = before - empty
    expected = 100 * s * ((after - empty) ** 2 / m**4 + 1 / m**2 + (before - after) ** 2 / m**4) ** 0.5
    assert loi["sigma_percent"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("masses", "field", "words"),
    [
        (
            "crucible_g = 20.0\ncrucible_and_sample_g = 19.0\ncrucible_and_ignited_g = 18.9",
            "crucible_and_sample_g",
            "not more than the empty crucible",
        ),
        (
            "crucible_g = 20.0\ncrucible_and_sample_g = 21.0\ncrucible_and_ignited_g = 21.1",
            "crucible_and_ignited_g",
            "more than before ignition",
        ),
        ("crucible_g = 20.0\ncrucible_and_sample_g = 21.0", "crucible_and_ignited_g", "missing required field"),
    ],
)
def test_wrong_loi_masses_are_refused_naming_the_field(masses, field, words, tmp_path):
    shutil.copy(SEEDS / "example-nd2o3.csv", tmp_path)
    path = tmp_path / "results.toml"
    path.write_text(f'[results]\nicp_file = "example-nd2o3.csv"\nsample_id = "ND-995-A"\n[loi]\n{masses}\n')
    with pytest.raises(ConfigError, match=rf"loi\.{field}: .*{words}"):
        load_results(path)


def test_a_results_file_naming_a_missing_icp_file_is_refused(tmp_path):
    path = tmp_path / "results.toml"
    path.write_text('[results]\nicp_file = "nowhere.csv"\n')
    with pytest.raises(ConfigError, match=r"results\.icp_file: no such file"):
        load_results(path)


def test_an_existing_product_is_kept_unless_replaced(trial):
    first = write_product(trial, EXAMPLE)
    with pytest.raises(ProductError, match="already exists"):
        write_product(trial, EXAMPLE)
    assert read_product(first.path).data == first.data
    second = write_product(trial, EXAMPLE, replace=True)
    assert second.data["created_utc"] >= first.data["created_utc"]
    assert not list(trial.parent.glob(".*partial*"))


def test_a_running_trial_cannot_be_certified(tmp_path):
    path = trials_folder(tmp_path / "data") / "live.h5"
    with LiveTrial(path, history_s=60.0):
        wait_for_rows(path, "analysis", 5)
        with pytest.raises(ProductError, match="still running"):
            write_product(path, EXAMPLE)
    assert not product_path(path).exists()


def test_a_file_that_is_not_a_product_is_refused(tmp_path):
    path = tmp_path / "x.product.json"
    path.write_text('{"file_format": "something else"}')
    with pytest.raises(ProductError, match="not a rem-daq product file"):
        read_product(path)
    path.write_text("{not json")
    with pytest.raises(ProductError, match="not a readable product file"):
        read_product(path)


def test_the_catalog_and_ls_know_which_trials_are_certified(trial):
    data = trial.parent.parent
    other = write_trial(trial.parent / "T-other.h5", duration_s=120.0)
    with open_trial(other) as reader:
        Catalog(data).record(reader.summary())
    done = CliRunner().invoke(cli, ["results", "add", str(trial), str(EXAMPLE)])
    assert done.exit_code == 0, done.output
    product = read_product(product_path(trial))
    entries = {e.trial_id: e for e in Catalog(data).entries()}
    assert entries["T-prod"].certified_purity == pytest.approx(product.purity)
    assert entries["T-other"].certified_purity is None
    listing = CliRunner().invoke(cli, ["ls", "--data-dir", str(data)])
    lines = {line.split()[0]: line for line in listing.output.splitlines()}
    assert f"certified {100 * product.purity:.3f}% (ICP)" in lines["T-prod"]
    assert "certified" not in lines["T-other"]
    # the catalog is an index: rebuilt from the files, it finds the product file again
    (data / "catalog.sqlite").unlink()
    rebuilt = {e.trial_id: e for e in Catalog(data).rebuild()}
    assert rebuilt["T-prod"].certified_purity == pytest.approx(product.purity)
    [indexed] = Catalog(data).products()
    assert indexed.trial_id == "T-prod" and indexed.raw_sha256 == product.raw_sha256
    assert indexed.bias == pytest.approx(product.agreement["difference"])


def test_results_add_takes_a_trial_id_in_the_data_folder(trial):
    data = trial.parent.parent
    done = CliRunner().invoke(cli, ["results", "add", "T-prod", str(EXAMPLE), "--data-dir", str(data)])
    assert done.exit_code == 0, done.output
    assert f"product file written: {product_path(trial)}" in done.output
