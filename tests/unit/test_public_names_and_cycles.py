"""What the import contracts of pyproject.toml (lint-imports) cannot say: names and cycles.

The import directions themselves are import-linter contracts (`make lint`;
tests/unit/test_import_contracts.py shows each can fail). Here: `daq` and the app
take from `analysis` and `drivers` only names those packages export (``__all__``),
not only their public modules; and the modules of `analysis` import each other
without a cycle.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _runtime_relative_imports(path: Path) -> set[str]:
    """Modules of the same package imported at run time (``from .x import``), not under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    return {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module and id(node) not in guarded
    }


def test_analysis_modules_import_each_other_without_a_cycle():
    modules = {p.stem: _runtime_relative_imports(p) for p in (ROOT / "analysis").glob("*.py")}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(m == goal or (m not in seen and reaches(m, goal, seen | {m})) for m in modules.get(start, ()))

    cycles = sorted(name for name in modules if reaches(name, name, {name}))
    assert cycles == [], f"import cycles through {cycles}"


def _package_imports(path: Path, package: str) -> list[str]:
    """What a module takes from ``package``: ``package.x`` module imports and ``from package[.x] import y`` names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    taken = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            taken += [alias.name for alias in node.names if alias.name.startswith(f"{package}.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == package:
                taken += [f"{package}:{alias.name}" for alias in node.names]
            elif node.module.startswith(f"{package}."):
                taken.append(node.module)
    return taken


# daq reaches the simulated bench's public modules through daq/bench.py (tested below)
ALLOWED_SUBMODULES = {"drivers": {"drivers.sim.launch", "drivers.sim.scenario"}, "analysis": set()}


@pytest.mark.parametrize("used", ["analysis", "drivers"])
@pytest.mark.parametrize("package", ["daq", "app_pages"])
def test_daq_and_the_app_use_only_the_public_names_of_other_packages(package, used):
    import importlib

    public = importlib.import_module(used).__all__
    sources = sorted((ROOT / package).rglob("*.py")) + ([ROOT / "app.py"] if package == "app_pages" else [])
    offenders = {}
    for path in sources:
        wrong = [
            name
            for name in _package_imports(path, used)
            if not (name.startswith(f"{used}:") and name.split(":")[1] in public)
            and name not in ALLOWED_SUBMODULES[used]
        ]
        if wrong:
            offenders[str(path.relative_to(ROOT))] = wrong
    assert offenders == {}
