"""ICP CSV import: the shipped example, column mappings, units, detection limits, and bad files.

Every bad file gives an error naming the file and line (``file:line: problem``) and changes nothing: no
product file is written, the catalog and the raw trial file are as they were (checked through
`remdaq results add`).
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from pathlib import Path

import pytest
from _trial_factory import trials_folder, write_trial
from click.testing import CliRunner

from analysis import oxide_factor
from daq import Catalog, ConfigError, open_trial
from daq.cli import cli
from daq.icp import Digestion, IcpFileError, load_mapping, parse_line, read_icp_csv

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "seeds/icp"
HEADER = "Sample ID,Element,Concentration,Unit,RSD %,LOD"


def _csv(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "icp.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _shipped_rows(sample: str) -> list[dict[str, str]]:
    """The example file's rows of one sample, read with the csv module (not with daq.icp)."""
    with open(SEEDS / "example-nd2o3.csv", newline="", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("SAMPLE_NO,"))
    return [row for row in csv.DictReader(lines[header:]) if row["SAMPLE_NO"] == sample]


UNIT_MG_PER_KG = {"%": 1e4, "mg/kg": 1.0, "ug/g": 1.0, "ppm": 1.0}


def test_the_shipped_example_reads_with_its_mapping():
    icp = read_icp_csv(SEEDS / "example-nd2o3.csv", mapping=SEEDS / "mapping-lims.toml", sample_id="ND-995-A")
    assert icp.samples == ("BLANK-01", "QC-REE-50", "ND-995-A")
    rows = _shipped_rows("ND-995-A")
    for symbol in {r["ANALYTE"].split()[0] for r in rows}:
        mine = [r for r in rows if r["ANALYTE"].split()[0] == symbol]
        result = icp.element(symbol)
        assert result.lines == tuple(r["ANALYTE"] for r in mine)
        numbers = [r for r in mine if not r["RESULT"].startswith("<")]
        if numbers:
            values = [float(r["RESULT"]) * UNIT_MG_PER_KG[r["UNITS"]] for r in numbers]
            assert result.value_mg_per_kg == pytest.approx(sum(values) / len(values))
            u = math.sqrt(sum((v * float(r["RSD_PCT"]) / 100) ** 2 for v, r in zip(values, numbers))) / len(values)
            assert result.sigma_mg_per_kg == pytest.approx(u)
            assert result.oxide_mg_per_kg == pytest.approx(result.value_mg_per_kg * result.oxide_factor)
        else:
            assert result.below_detection_limit and result.oxide_mg_per_kg == 0.0
            limits = [
                float(r["RESULT"][1:]) if r["RESULT"][1:].strip() not in ("LOD", "") else float(r["MDL"]) for r in mine
            ]
            assert result.detection_limit_mg_per_kg == pytest.approx(min(limits))
    assert icp.element("Nd").oxide == "Nd2O3"
    assert icp.element("Fe").oxide == "Fe2O3" and not icp.element("Fe").rare_earth


def test_default_column_names_need_no_mapping(tmp_path):
    path = _csv(tmp_path, "S1,Nd 401.225,85.0,wt%,0.5,0.001", "S1,146Nd,2500,ppb,2.0,1")
    icp = read_icp_csv(path)
    assert icp.sample_id == "S1"
    nd = icp.element("Nd")
    assert nd.lines == ("Nd 401.225", "146Nd")
    # the two lines are averaged: 85 wt% is 850000 mg/kg, 2500 ppb (of the solid) is 2.5 mg/kg
    assert nd.value_mg_per_kg == pytest.approx((850000.0 + 2.5) / 2)


@pytest.mark.parametrize(
    ("label", "symbol"),
    [
        ("Nd 401.225", "Nd"),
        ("Nd401.225", "Nd"),
        ("Nd 401.225 nm", "Nd"),
        ("146Nd", "Nd"),
        ("Nd146", "Nd"),
        ("146Nd [He]", "Nd"),
        ("Nd (axial)", "Nd"),
        ("Pr", "Pr"),
        ("Fe 259.940", "Fe"),
        ("K 766.491", "K"),
        ("  Y 371.029 ", "Y"),
    ],
)
def test_line_labels(label, symbol):
    assert parse_line(label) == symbol


def test_solution_units_convert_with_the_digestion(tmp_path):
    path = _csv(tmp_path, "S1,Nd,42.5,mg/L,0.5,0.01", "S1,Pr,130,ug/L,1.0,0.5")
    digestion = Digestion(mass_g=0.1000, volume_mL=100.0, dilution=20.0)
    icp = read_icp_csv(path, digestion=digestion)
    # c (mg/L) x V (L) x dilution / m (kg)
    assert icp.element("Nd").value_mg_per_kg == pytest.approx(42.5 * 0.100 * 20.0 / 0.0001)
    assert icp.element("Pr").value_mg_per_kg == pytest.approx(0.130 * 0.100 * 20.0 / 0.0001)
    with pytest.raises(IcpFileError, match=rf"{path}:2: unit 'mg/L' is a concentration of the digest solution"):
        read_icp_csv(path)


def test_detection_limit_texts(tmp_path):
    path = _csv(tmp_path, "S1,Nd,99,%,0.5,0.001", "S1,Ce,<LOD,mg/kg,,5", "S1,Eu,< 0.5,mg/kg,,", "S1,Gd,n.d.,mg/kg,,2")
    icp = read_icp_csv(path)
    for symbol, limit in (("Ce", 5.0), ("Eu", 0.5), ("Gd", 2.0)):
        element = icp.element(symbol)
        assert element.below_detection_limit and element.detection_limit_mg_per_kg == limit
        assert math.isnan(element.value_mg_per_kg) and element.oxide_mg_per_kg == 0.0


def test_a_preamble_before_the_header_and_semicolons(tmp_path):
    path = tmp_path / "semicolon.csv"
    path.write_text("Instrument;ICP-MS 7900\n\nSample ID;Element;Concentration;Unit;RSD %\nS1;Nd;80;%;1\n")
    icp = read_icp_csv(path)
    assert icp.element("Nd").value_mg_per_kg == pytest.approx(80 * 1e4)


BAD_FILES = {
    "missing columns": (
        ("Sample ID,Element,Concentration", "S1,Nd,85"),
        r":1: missing columns: unit .*RSD %",
    ),
    "unit that does not convert": ((HEADER, "S1,Nd,85,mol/L,1,0.1"), r":2: unit 'mol/L' does not convert"),
    "unknown element": (
        (HEADER, "S1,Nd,85,%,1,0.1", "S1,Xx 123.4,5,mg/kg,1,0.1"),
        r":3: unknown element 'Xx' in line 'Xx 123.4'",
    ),
    "unknown element symbol": (
        (HEADER, "S1,Nd,85,%,1,0.1", "S1,Hg 253.652,5,mg/kg,1,0.1"),
        r":3: unknown element 'Hg'",
    ),
    "negative value": ((HEADER, "S1,Nd,85,%,1,0.1", "S1,Fe,-3.2,mg/kg,4,0.5"), r":3: negative value -3.2"),
    "duplicate rows": (
        (HEADER, "S1,Nd 401.225,85,%,1,0.1", "S1,Pr,2400,mg/kg,1,1", "S1,Nd 401.225,85.1,%,1,0.1"),
        r":4: duplicate row: sample 'S1' line 'Nd 401.225' is also on line 2",
    ),
    "not a number": ((HEADER, "S1,Nd,eighty-five,%,1,0.1"), r":2: value 'eighty-five' is not a number"),
    "below the limit without a limit": (
        (HEADER, "S1,Nd,85,%,1,0.1", "S1,Ce,<LOD,mg/kg,,"),
        r":3: '<LOD' .*no detection limit",
    ),
    "no RSD": ((HEADER, "S1,Nd,85,%,,0.1"), r":2: no RSD %"),
    "negative RSD": ((HEADER, "S1,Nd,85,%,-1,0.1"), r":2: RSD %: Input should be greater than or equal to 0"),
    "empty": (("",), r":1: the file is empty"),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_a_bad_file_is_refused_with_file_and_line(case, tmp_path):
    lines, message = BAD_FILES[case]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(IcpFileError) as raised:
        read_icp_csv(path)
    assert any(problem.startswith(f"{path}:") for problem in raised.value.problems)
    assert raised.value.problems and re.search(message, str(raised.value)), str(raised.value)


def test_every_bad_row_is_reported_at_once(tmp_path):
    path = _csv(tmp_path, "S1,Nd,85,%,1,0.1", "S1,Fe,-1,mg/kg,1,1", "S1,Ca,12,furlongs,1,1", "S1,Zz,1,mg/kg,1,1")
    with pytest.raises(IcpFileError) as raised:
        read_icp_csv(path)
    assert [p.split(": ", 1)[0] for p in raised.value.problems] == [f"{path}:3", f"{path}:4", f"{path}:5"]


def test_a_file_of_several_samples_needs_the_sample_id(tmp_path):
    path = _csv(tmp_path, "S1,Nd,85,%,1,0.1", "S2,Nd,86,%,1,0.1")
    with pytest.raises(IcpFileError, match="2 samples .*'S1', 'S2'.*say which"):
        read_icp_csv(path)
    with pytest.raises(IcpFileError, match="no sample 'S3'"):
        read_icp_csv(path, sample_id="S3")
    assert read_icp_csv(path, sample_id="S2").element("Nd").value_mg_per_kg == pytest.approx(86e4)


def test_a_mapping_file_with_an_unknown_field_is_refused(tmp_path):
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[mapping]\nname = "x"\n[columns]\nsampel_id = "Probe"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"columns\.sampel_id: unknown field"):
        load_mapping(mapping)


def test_non_rare_earth_oxide_factors_come_from_the_formula():
    from analysis import OXYGEN_ATOMIC_WEIGHT
    from daq.icp import NON_REE_OXIDES

    oxide, factor = NON_REE_OXIDES["Al"]
    assert oxide == "Al2O3"
    assert factor == pytest.approx((2 * 26.981538 + 3 * OXYGEN_ATOMIC_WEIGHT) / (2 * 26.981538))
    assert oxide_factor("Nd") == pytest.approx((2 * 144.242 + 3 * OXYGEN_ATOMIC_WEIGHT) / (2 * 144.242))


# -- a bad file changes nothing ---------------------------------------------------------------------


def _folder_state(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


@pytest.mark.parametrize(
    "case", ["missing columns", "unit that does not convert", "unknown element", "negative value", "duplicate rows"]
)
def test_results_add_with_a_bad_icp_file_writes_nothing(case, tmp_path):
    data = tmp_path / "data"
    trial = write_trial(trials_folder(data) / "T1.h5", duration_s=120.0)
    with open_trial(trial) as reader:
        Catalog(data).record(reader.summary())
    lines, message = BAD_FILES[case]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "bad.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (inputs / "results.toml").write_text('[results]\nicp_file = "bad.csv"\n', encoding="utf-8")
    before = _folder_state(data)
    done = CliRunner().invoke(cli, ["results", "add", str(trial), str(inputs / "results.toml")])
    assert done.exit_code == 2, done.output
    assert re.search(message, done.output) and f"{inputs / 'bad.csv'}:" in done.output
    assert _folder_state(data) == before
    assert Catalog(data).entries()[0].certified_purity is None
