"""The numba cache works for an installed package in a read-only site-packages.

The subprocess test copies the ``analysis`` package (it imports nothing else of
the project) into a fresh directory, makes it read-only, and runs a Python that
imports it from there and calls ``quantify``. As root a mode bit does not stop
writes, so the child then runs in a new user namespace (``unshare --user``),
where it keeps read access as owner but loses the override.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numba
import pytest
from numba.core import config as numba_config

import analysis
from analysis import _numba_cache

PACKAGE_DIR = Path(analysis.__file__).resolve().parent

CHILD = r"""
import json, sys
import numpy as np
import analysis
from analysis import _nnls_kernel
from analysis._numba_cache import cache_location
wl = np.linspace(400.0, 700.0, 64)
cal = analysis.Calibration.from_sensitivity(wl, np.exp(-0.5 * ((wl[None, :] - [[500.0], [600.0]]) / 10) ** 2),
                                            ("Nd", "Pr"), baseline_order=1)
result = analysis.quantify(np.array([1.0, 2.0]) @ cal.sensitivity + 0.01, cal)
stats = _nnls_kernel.quantify_absorbance_batch.stats
print(json.dumps({"file": analysis.__file__, "location": cache_location(_nnls_kernel.__file__),
                  "concentration": result.concentration_g_per_L[0].tolist(),
                  "hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


def _set_read_only(root: Path, read_only: bool) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        if read_only:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        else:
            path.chmod(mode | stat.S_IWUSR)


def _run_child(site: Path, home: Path) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("NUMBA_", "PYTHON", "XDG_"))}
    env.update(PYTHONPATH=str(site), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    command = [sys.executable, "-c", CHILD]
    if os.geteuid() == 0:
        probe = subprocess.run(["unshare", "--user", "true"], capture_output=True, text=True)
        assert probe.returncode == 0, (
            "as root this test needs `unshare --user` (util-linux) to drop the "
            f"permission override of root: {probe.stderr.strip()}"
        )
        command = ["unshare", "--user", *command]
    done = subprocess.run(command, env=env, cwd=home, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(300)  # two child Pythons, the first compiling every kernel cold: 10-70 s on two shared cores
def test_read_only_installed_package_caches_in_the_user_cache_dir():
    base = Path(tempfile.mkdtemp(prefix="remdaq-numba-cache-"))
    site = base / "site-packages"
    home = base / "home"
    try:
        shutil.copytree(PACKAGE_DIR, site / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
        home.mkdir()
        _set_read_only(site, True)
        before = sorted(p.relative_to(site) for p in site.rglob("*"))

        first = _run_child(site, home)
        assert Path(first["file"]).resolve().parent == (site / "analysis").resolve(), "imported the copy"
        kind, directory = first["location"]
        assert kind == "user" and Path(directory) == home / ".cache" / "rem-daq" / "numba"
        assert first["concentration"] == pytest.approx([1.0, 2.0], abs=1e-9)
        assert first["misses"] > 0 and first["hits"] == 0
        written = list(Path(directory).rglob("*.nbi"))
        assert any("quantify_absorbance_batch" in p.name for p in written), written
        assert sorted(p.relative_to(site) for p in site.rglob("*")) == before, "nothing written into site-packages"

        second = _run_child(site, home)
        assert second["hits"] > 0 and second["misses"] == 0, "the second process loads the cache"
        assert second["concentration"] == pytest.approx(first["concentration"], rel=1e-12)
    finally:
        if site.exists():
            _set_read_only(site, False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_locations(monkeypatch, tmp_path):
    """cache_location with chosen directories unwritable; its memo cleared before and after."""
    location = _numba_cache.cache_location
    location.cache_clear()
    monkeypatch.setattr(numba_config, "CACHE_DIR", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    blocked: set[Path] = set()
    real = _numba_cache._writable_dir

    def writable(path: Path) -> bool:
        return not any(path == b or b in path.parents for b in blocked) and real(path)

    monkeypatch.setattr(_numba_cache, "_writable_dir", writable)
    (tmp_path / "pkg").mkdir()
    source = tmp_path / "pkg" / "kernels.py"
    source.write_text("")
    yield source, blocked, tmp_path
    location.cache_clear()


def test_location_order(fresh_locations, monkeypatch):
    source, blocked, root = fresh_locations
    assert _numba_cache.cache_location(str(source)) == ("in-tree", str(root / "pkg" / "__pycache__"))
    _numba_cache.cache_location.cache_clear()
    blocked.add(root / "pkg")
    assert _numba_cache.cache_location(str(source)) == ("user", str(root / "xdg" / "rem-daq" / "numba"))
    _numba_cache.cache_location.cache_clear()
    blocked.add(root / "xdg")
    kind, directory = _numba_cache.cache_location(str(source))
    assert kind == "temp" and Path(directory).parent == root / "tmp"
    _numba_cache.cache_location.cache_clear()
    blocked.add(root / "tmp")
    assert _numba_cache.cache_location(str(source)) == ("none", None)
    _numba_cache.cache_location.cache_clear()
    monkeypatch.setattr(numba_config, "CACHE_DIR", str(root / "mine"))
    assert _numba_cache.cache_location(str(source)) == ("NUMBA_CACHE_DIR", str(root / "mine"))


def test_no_writable_location_compiles_without_cache(fresh_locations, monkeypatch):
    source, blocked, root = fresh_locations
    monkeypatch.setattr(_numba_cache, "cache_location", lambda _file: ("none", None))
    double = _numba_cache.njit_cached()(lambda x: 2 * x)
    assert double(21) == 42
    assert type(double._cache).__name__ == "NullCache"


def test_fallback_directory_is_used_only_while_decorating(fresh_locations, monkeypatch):
    source, blocked, root = fresh_locations
    monkeypatch.setattr(_numba_cache, "cache_location", lambda _file: ("user", str(root / "fallback")))

    def triple(x):
        return 3 * x

    kernel = _numba_cache.njit_cached()(triple)
    assert numba_config.CACHE_DIR == "", "numba's global setting is restored"
    assert kernel(2) == 6
    assert kernel.stats.cache_path.startswith(str(root / "fallback"))
    assert isinstance(kernel, numba.core.registry.CPUDispatcher)


COUNTS_CHILD = r"""
import json
import numpy as np
import analysis
from analysis import _nnls_kernel
wl = np.linspace(400.0, 700.0, 64)
cal = analysis.Calibration.from_sensitivity(wl, np.exp(-0.5 * ((wl[None, :] - [[500.0], [600.0]]) / 10) ** 2),
                                            ("Nd", "Pr"), baseline_order=1)
dark, reference = np.full(64, 100.0, np.float32), np.full(64, 30000.0, np.float32)
analysis.quantify_counts((dark + (reference - dark) * 0.5).astype(np.float32), dark, reference, cal,
                         saturation_counts=65535.0)
stats = _nnls_kernel.quantify_counts_batch.stats
print(json.dumps({"hits": sum(stats.cache_hits.values()), "misses": sum(stats.cache_misses.values())}))
"""


@pytest.mark.timeout(120)
def test_after_warm_up_a_new_process_compiles_nothing():
    """What `make` does after installing: warm_up_kernels fills the cache; a user's first fit then only loads."""
    info = analysis.warm_up_kernels()
    assert info["numba_cache"] != "none" and info["numba_cache_dir"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("NUMBA_DISABLE")}
    child = subprocess.run([sys.executable, "-c", COUNTS_CHILD], capture_output=True, text=True, env=env, timeout=110)
    assert child.returncode == 0, child.stderr
    stats = json.loads(child.stdout.strip().splitlines()[-1])
    assert stats == {"hits": 1, "misses": 0}
