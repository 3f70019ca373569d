"""Every fenced code block of README.md and docs/**/*.md runs as it stands, or the doc says why it cannot.

What each block is decides what is done with it (its fence's language):

- ``python``: written to ``example.py`` in a folder of its own (a copy of a
  prepared data folder: trial files and a calibration, see ``data_folder``)
  and run with this interpreter; exit status 0.
- ``sh``: the command lines (``remdaq ...`` or ``python -m daq ...``; anything
  else is refused) run with bash, one after another, against the simulated
  bench. The sh blocks of one file run in order in one folder of their own
  (the user guide calibrates in one block and runs a trial in a later one),
  which starts with ``hardware/`` and ``seeds/`` and nothing else; every
  command must exit 0.
- ``toml``: read by the project's loader for its kind (its first table).
- ``text``: not code (file layouts, format diagrams, usage synopses): nothing to run.

A block with another language, or none, fails the test: say what it is.
Placeholders of the docs (``<trial>``, ``NEW.h5``, the user's own station, a
serial port) are filled in by ``SUBSTITUTIONS`` below, each with its reason;
an entry no block uses fails the test.

A comment right before a block changes how it is taken:

- ``<!-- not-run: REASON -->``: not run here (serves until stopped, needs
  ``make`` and apt, a real instrument, several machines); reported as skipped
  with the file, line and reason (``pytest -rs``), never silently left out.
- ``<!-- run-with: NAME -->``: the python block is an excerpt that uses
  variables it does not define; ``PREAMBLES[NAME]`` defines them and is run
  first (the block itself is run unchanged).

The sh runs are slow mostly by waiting (README's trial is 2.5 h of simulated
time at the sim bench's 300x: 30 s of mostly sleep), so they start in
background threads when the module starts and overlap the python blocks.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
VENV_BIN = Path(sys.executable).parent
PYTHON_TIMEOUT_S = 120
COMMAND_TIMEOUT_S = 150

# ----------------------------------------------------------------------------------------------- the blocks

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|run-with)\s*:\s*(?P<value>.*?)\s*-->\s*$")
ANY_MARKER = re.compile(r"<!--\s*(not-run|run-with)\b")
LANGUAGES = {"python", "sh", "toml", "text"}


@dataclass
class Block:
    doc: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    def __str__(self) -> str:
        return self.where


def blocks_of(doc: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file, with the markers on the lines right before each."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence[0] * len(fence)) and lines[j].strip().strip(fence[0]) == ""
        ):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        markers: dict[str, str] = {}
        k = i - 1
        while k >= 0 and (MARKER.match(lines[k]) or not lines[k].strip()):
            found = MARKER.match(lines[k])
            if found:
                markers[found["kind"]] = found["value"]
            k -= 1
        language = (opening["info"].split() or [""])[0].lower()
        blocks.append(Block(doc, i + 1, language, "\n".join(body) + "\n", markers))
        i = j + 1
    return blocks


BLOCKS = [block for doc in DOCS for block in blocks_of(doc)]


def test_every_block_says_what_it_is():
    """A block without a known language would be left out without anyone noticing."""
    unknown = [f"{b.where}: ```{b.language or '(no language)'}" for b in BLOCKS if b.language not in LANGUAGES]
    assert not unknown, (
        f"give these blocks one of the languages {sorted(LANGUAGES)} (text: not code), or fix this test: {unknown}"
    )


def test_every_marker_belongs_to_a_block_and_has_a_reason():
    attached = sum(len(b.markers) for b in BLOCKS)
    written = sum(len(ANY_MARKER.findall(doc.read_text(encoding="utf-8"))) for doc in DOCS)
    assert attached == written, "a not-run/run-with marker is not directly above a code block"
    for block in BLOCKS:
        assert all(block.markers.values()), f"{block.where}: a marker without its reason or name"
        assert set(block.markers) != {"not-run", "run-with"}, f"{block.where}: not-run and run-with together"
        if "run-with" in block.markers:
            assert block.language == "python" and block.markers["run-with"] in PREAMBLES, block.where


# ---------------------------------------------------------------------------------- placeholders and preambles


@dataclass(frozen=True)
class Substitution:
    text: str  # as it appears in the docs
    value: str  # what replaces it; {trial} is filled in when the line runs, {furnace}/{spectrometer} by fixtures
    why: str


SUBSTITUTIONS = [
    Substitution(
        "data/trials/<trial>.h5", "{trial}", "<trial>: the trial file the run before made (the first in data/trials)"
    ),
    Substitution(
        "--calibration NEW.h5",
        "--calibration data/calibrations/demo.h5",
        "NEW.h5: the new calibration; here the one `remdaq calibrate` made in the same block",
    ),
    Substitution(
        "hardware/stations/my-bench.toml",
        "my-bench.toml",
        "the reader's own station: here the simulated bench at 10000x, so that the user guide's "
        "9.8 h calcination takes seconds (my-bench.toml, written by this test)",
    ),
    Substitution(
        "/srv/remdaq/data/calibrations/2026-11-27.h5",
        "data/calibrations/demo.h5",
        "the user guide's calibration, in the data folder, where its recipes look for it",
    ),
    Substitution(
        "remdaq ls [--sample NdPr] [--status success]",
        "remdaq ls --sample NdPr --status success",
        "[...]: optional options in a synopsis",
    ),
    Substitution(
        '"/dev/serial/by-id/usb-FTDI_..."',
        "{furnace!r}",
        "the furnace's serial port: here the pty of a simulated furnace",
    ),
    Substitution(
        '"TCPIP0::127.0.0.1::5025::SOCKET"',
        "{spectrometer!r}",
        "the spectrometer's VISA resource: here a simulated spectrometer on a free port",
    ),
]

PREAMBLES = {
    # docs/analysis.md: the summary of the analysis API, on synthetic spectra of five analytes
    "analysis-inputs": textwrap.dedent("""\
        import numpy as np

        rng = np.random.default_rng(0)
        wavelength_nm = np.linspace(350.0, 1000.0, 512)
        bands = {"Nd": [(575, 5, 0.050), (740, 6, 0.045), (794, 5, 0.080)],
                 "Pr": [(444, 4, 0.070), (469, 3, 0.030), (482, 3, 0.028), (589, 4, 0.013)],
                 "Sm": [(402, 3, 0.022)], "Er": [(379, 3, 0.045), (523, 3, 0.019), (652, 4, 0.013)],
                 "Ho": [(451, 4, 0.025), (537, 3, 0.022), (641, 5, 0.015)]}
        sensitivity = np.array([sum(h * np.exp(-0.5 * ((wavelength_nm - c) / w) ** 2) for c, w, h in b)
                                for b in bands.values()])
        standards_g_per_L = np.array([[0, 0, 0, 0, 0]] + [[10.0 if (n >> k) & 1 else 2.0 for k in range(5)]
                                                           for n in range(0, 32, 4)] + [[5, 1.5, 1.5, 1.5, 1.5]],
                                     dtype=float)
        standards_A = standards_g_per_L @ sensitivity + rng.normal(0.0, 4e-4, (len(standards_g_per_L), 512))
        dark = 900.0 + rng.normal(0.0, 3.0, 512)
        reference = dark + 50000.0 * np.exp(-0.5 * ((wavelength_nm - 650.0) / 250.0) ** 2) + 3000.0
        sample_g_per_L = np.array([[8.0, 2.0, 0.1, 0.1, 0.1], [9.0, 1.0, 0.0, 0.2, 0.0]])
        counts = dark + (reference - dark) * 10.0 ** -(sample_g_per_L @ sensitivity)
        # ---- the block, unchanged:
        """),
}


def substitute(code: str, values: dict[str, str]) -> str:
    for sub in SUBSTITUTIONS:
        if sub.text in code:
            code = code.replace(sub.text, sub.value.format(**values) if "{" in sub.value else sub.value)
    return code


def test_every_substitution_is_used():
    code = "".join(b.code for b in BLOCKS if "not-run" not in b.markers)
    unused = [s.text for s in SUBSTITUTIONS if s.text not in code]
    assert not unused, f"no block uses these substitutions any more; remove them: {unused}"


# --------------------------------------------------------------------------------------------- folders


def _bench_folder(where: Path) -> Path:
    """An empty working folder with the project's hardware/ and seeds/ (copies: nothing writes to the repo)."""
    where.mkdir(parents=True, exist_ok=True)
    for name in ("hardware", "seeds"):
        shutil.copytree(ROOT / name, where / name, ignore=shutil.ignore_patterns("__pycache__"))
    station = (ROOT / "hardware/stations/sim.toml").read_text(encoding="utf-8")
    fast, count = re.subn(r"(?m)^simulation_speed\s*=\s*[0-9.]+", "simulation_speed = 10000.0", station)
    assert count == 1, "sim.toml has no simulation_speed line any more: update my-bench.toml here"
    (where / "my-bench.toml").write_text(fast, encoding="utf-8")
    return where


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    """What the python examples read: data/trials with two small synthetic trials (one under the name the
    trial-file guide opens) and data/calibrations/2026-12.h5, the calibration they were analysed with."""
    from _trial_factory import metadata, trials_folder, write_calibration, write_trial

    folder = tmp_path_factory.mktemp("docs-data")
    calibration_file = folder / "data/calibrations/2026-12.h5"
    calibration = write_calibration(calibration_file)
    trials = trials_folder(folder / "data")
    for stem in ("20261127T101500Z-quick-demo", "20261128T083000Z-nd-pr-elution"):
        write_trial(
            trials / f"{stem}.h5",
            duration_s=300.0,
            meta=metadata(stem, calibration=calibration, calibration_file="calibrations/2026-12.h5"),
        )
    return folder


class Simulators:
    """Simulated instruments, started when a block first needs one, stopped at the end of the module."""

    def __init__(self):
        self._running = {}

    def address(self, which: str) -> str:
        if which not in self._running:
            from drivers.sim.launch import start_simulator

            self._running[which] = start_simulator(
                f"drivers.sim.{which}", *(("--port", "0") if which == "spectrometer" else ())
            )
        return self._running[which].address

    def stop(self) -> None:
        for simulator in self._running.values():
            simulator.stop()


@pytest.fixture(scope="module")
def simulators():
    running = Simulators()
    yield running
    running.stop()


# ---------------------------------------------------------------------------------------------- sh blocks

SH_DOCS = sorted({b.doc for b in BLOCKS if b.language == "sh" and "not-run" not in b.markers}, key=str)
COMMAND = re.compile(r"^(remdaq|python -m daq)(\s|$)")


def command_lines(block: Block) -> list[str]:
    """The block's commands: continuation lines joined, blank lines and comment-only lines left out."""
    joined = re.sub(r"\\\n\s*", " ", block.code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def run_sh_doc(doc: Path, folder: Path) -> tuple[list[str], list[tuple[str, float]]]:
    """Run the sh blocks of ``doc`` in order in ``folder``: what went wrong (nothing: all fine), and
    how long each command took."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "NO_COLOR": "1"}
    env.pop("REMDAQ_DATA_DIR", None)
    env.pop("REMDAQ_STATION", None)
    timings: list[tuple[str, float]] = []
    for block in (b for b in BLOCKS if b.doc == doc and b.language == "sh" and "not-run" not in b.markers):
        for line in command_lines(block):
            if not COMMAND.match(line):
                return [
                    f"{block.where}: `{line}` is not a remdaq command: mark the block <!-- not-run: why -->"
                ], timings
            trials = sorted((folder / "data/trials").glob("*.h5"))
            command = substitute(
                line,
                {"trial": shlex.quote(str(trials[0].relative_to(folder))) if trials else "data/trials/NO-TRIAL-YET.h5"},
            )
            started = time.monotonic()
            try:
                done = subprocess.run(
                    ["bash", "-c", command],
                    cwd=folder,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=COMMAND_TIMEOUT_S,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                return [f"{block.where}: `{command}` did not end within {COMMAND_TIMEOUT_S} s"], timings
            timings.append((command, time.monotonic() - started))
            if done.returncode != 0:
                return [
                    f"{block.where}: `{command}` exited {done.returncode} after {timings[-1][1]:.1f} s\n"
                    f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
                ], timings
    return [], timings


@pytest.fixture(scope="module", autouse=True)
def sh_runs(request, tmp_path_factory):
    """Start the sh runs of the selected sh tests in background threads as soon as the module starts."""
    wanted = sorted(
        {
            item.callspec.params["doc"]
            for item in request.session.items
            if getattr(item, "originalname", "") == "test_sh_blocks_of_a_file_run" and item.module.__name__ == __name__
        },
        key=str,
    )
    pool = ThreadPoolExecutor(max_workers=max(1, len(wanted)), thread_name_prefix="docs-sh")
    futures: dict[Path, Future] = {}
    for doc in wanted:
        folder = _bench_folder(tmp_path_factory.mktemp(f"sh-{doc.stem}"))
        futures[doc] = pool.submit(run_sh_doc, doc, folder)
    yield futures
    pool.shutdown(wait=True, cancel_futures=True)


# -------------------------------------------------------------------------------------------- other blocks

RUN_HERE = [b for b in BLOCKS if b.language in ("python", "toml") and "not-run" not in b.markers]
NOT_RUN = [b for b in BLOCKS if "not-run" in b.markers]


@pytest.mark.parametrize("block", RUN_HERE, ids=str)
def test_block_runs(block, data_folder, simulators, tmp_path):
    if block.language == "toml":
        return check_toml(block, tmp_path)
    code = block.code
    values = {}
    for which in ("furnace", "spectrometer"):
        if any(s.value.startswith("{" + which) and s.text in code for s in SUBSTITUTIONS):
            values[which] = simulators.address(which)
    code = substitute(code, values)
    preamble = PREAMBLES[block.markers["run-with"]] if "run-with" in block.markers else ""
    shutil.copytree(data_folder / "data", tmp_path / "data")
    script = tmp_path / "example.py"
    script.write_text(preamble + code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PYTHON_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, (
        f"{block.where} exited {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )


def check_toml(block: Block, tmp_path: Path) -> None:
    """A toml block is a file of one of the kinds the project reads, and its loader accepts it."""
    from daq._check_standard import load_check_standard
    from daq.calibration_run import load_standards
    from daq.config import load_recipe, load_station
    from drivers import load_sensor_map

    loaders = {
        "check": load_check_standard,
        "standards": load_standards,
        "recipe": load_recipe,
        "station": load_station,
        "sensor": load_sensor_map,  # a sensor map (docs/instruments/sensors.md)
    }
    first = next(iter(tomllib.loads(block.code)), None)
    assert first in loaders, f"{block.where}: a toml block whose first table is {first!r}: which file is it?"
    path = tmp_path / "example.toml"
    path.write_text(block.code, encoding="utf-8")
    loaders[first](path)


@pytest.mark.parametrize("block", NOT_RUN, ids=str)
def test_a_block_that_is_not_run_says_why(block):
    """A block marked not-run is listed here by name, and its marker gives the reason in words."""
    reason = block.markers["not-run"].strip()
    assert len(reason.split()) >= 3, f"{block.where}: `<!-- not-run: ... -->` needs a reason, got {reason!r}"


# --------------------------------------------------------------------------- reanalyze from an unguarded script

UNGUARDED = """\
import daq
from pathlib import Path

with open("runs.txt", "a") as runs:   # one line each time this script's top level runs
    runs.write("ran\\n")
report = daq.reanalyze(sorted(Path("data/trials").glob("*.h5")), calibration="data/calibrations/2026-12.h5",
                       out_dir="reanalysis", workers=2)
print(report.counts())
"""


def test_reanalyze_on_its_own_cluster_works_from_a_script_without_a_main_guard(data_folder, tmp_path):
    """Its LocalCluster's spawned workers do not re-run the script (they would call reanalyze again)."""
    shutil.copytree(data_folder / "data", tmp_path / "data")
    (tmp_path / "unguarded.py").write_text(UNGUARDED, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "unguarded.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PYTHON_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "{'reanalysed': 2}" in done.stdout
    assert (tmp_path / "runs.txt").read_text() == "ran\n"  # the workers never ran the script
    assert len(list((tmp_path / "reanalysis").glob("*.reanalysis.h5"))) == 2


def test_reanalyze_called_while_a_spawned_child_imports_the_script_says_what_to_add(data_folder, tmp_path):
    """A process the script spawns itself re-runs its top level, reanalyze included: one line says why."""
    shutil.copytree(data_folder / "data", tmp_path / "data")
    (tmp_path / "unguarded.py").write_text(
        UNGUARDED.replace("workers=2", "workers=0")
        + textwrap.dedent("""\
        import multiprocessing
        child = multiprocessing.get_context("spawn").Process(target=print)
        child.start()
        child.join()
        print("child exit code", child.exitcode)
        """),
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "unguarded.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=PYTHON_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "child exit code 1" in done.stdout
    last = done.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("RuntimeError: reanalyze was called while a child process was importing the main script")
        and 'if __name__ == "__main__":' in last
    ), done.stderr[-2000:]
    assert (tmp_path / "runs.txt").read_text() == "ran\nran\n"  # the child ran the top level up to the call


# ------------------------------------------------------------------------- last: the sh runs started at the top


@pytest.mark.parametrize("doc", SH_DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_sh_blocks_of_a_file_run(doc, sh_runs):
    """Defined last, so that the python blocks run while these wait (mostly) for the simulated bench."""
    problems, timings = sh_runs[doc].result(timeout=600)
    print("\n".join(f"{seconds:6.1f} s  {command}" for command, seconds in timings))
    assert not problems, "\n".join(problems)
