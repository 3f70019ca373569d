"""The import contracts of pyproject.toml (run by `make lint`) hold, and each of them can fail.

Each case copies the four packages and pyproject.toml into a temporary folder, adds
one forbidden import to one module of the copy, and runs lint-imports there: the
contract that forbids it must be reported broken, naming the import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("drivers", "analysis", "daq", "app_pages")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _copy_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy is found before the installed packages
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=110
    )


def test_the_tree_keeps_every_contract(tmp_path):
    result = _lint_imports(_copy_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "contract, module, line, reported",
    [
        (
            "drivers imports nothing of the project",
            "drivers/_errors.py",
            "import analysis",
            "drivers._errors -> analysis",
        ),
        ("analysis imports nothing of the project", "analysis/elements.py", "import daq", "analysis.elements -> daq"),
        (
            "daq and the app use only the packages' public names",
            "daq/check.py",
            "import analysis.quantify",
            "daq.check -> analysis.quantify",
        ),
        (
            "daq and the app use only the packages' public names",
            "daq/runner.py",
            "import drivers.sim.launch",
            "daq.runner -> drivers.sim.launch",
        ),  # the simulated bench is reached through daq.bench alone
        (
            "the app reads through daq and analysis only",
            "app_pages/_view.py",
            "import drivers",
            "app_pages._view -> drivers",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(tmp_path, contract, module, line, reported):
    tree = _copy_tree(tmp_path)
    path = tree / module
    text = path.read_text()
    head, sep, rest = text.partition("\nfrom __future__ import annotations\n")
    path.write_text(head + sep + line + "  # added by the test\n" + rest if sep else line + "\n" + text)
    result = _lint_imports(tree)
    assert result.returncode != 0
    assert f"{contract} BROKEN" in result.stdout
    assert reported in result.stdout, result.stdout
