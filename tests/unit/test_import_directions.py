"""The import directions of docs/decisions/0001-layout.md hold in the source."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "drivers": {"daq", "analysis", "app", "streamlit", "h5py"},
    "analysis": {"daq", "drivers", "app", "streamlit"},
    "daq": {"app", "streamlit"},
}


def imported_top_level_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_only_what_the_layout_allows(package):
    sources = sorted((ROOT / package).rglob("*.py"))
    assert sources, f"no sources in {package}/"
    offenders = {str(p.relative_to(ROOT)): sorted(imported_top_level_names(p) & FORBIDDEN[package])
                 for p in sources}
    assert {k: v for k, v in offenders.items() if v} == {}
