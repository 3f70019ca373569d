"""Generated mutations of the shipped station, recipe and standards files (issue 11: limits that are limits).

Every number, boolean and string leaf of every shipped file is replaced by values
a hostile tester would try (booleans for numbers, numbers for booleans, 0, -1,
+-1e308, inf, nan, huge integers, strings, very long strings, unknown map,
dialect and scenario names, a named pipe, a folder, a device, an oversized file),
every key and table is removed, tables are given the wrong type and unknown keys;
then a seeded sample of two or three mutations at once. Each mutated file must be

- accepted, with finite values within the physical bounds and the station's
  limits (the recipe and standards are checked against the shipped sim station), or
- refused with one ConfigError naming the mutated file and the mutated field,

and nothing may be started for a refused file: ``remdaq`` is run in-process on it
with the bench's simulator start and instrument connections replaced by a probe,
which must stay untouched (and is touched for accepted stations and standards,
so the probe is known to work). Each case is bounded by its own timeout.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

import daq.bench
from daq.calibration_run import check_standards_against_station, load_standards
from daq.cli import main
from daq.config import ConfigError, check_recipe_against_station, load_recipe, load_station

# about 5000 generated cases and a few `remdaq` child processes: a minute; not in `make test-fast`
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = {
    "station": sorted((ROOT / "hardware/stations").glob("*.toml")),
    "recipe": sorted((ROOT / "seeds/recipes").glob("*.toml")),
    "standards": sorted((ROOT / "seeds/standards").glob("*.toml")),
}
SIM_STATION = ROOT / "hardware/stations/sim.toml"
#: recipes that name the instruments of another station than sim.toml (zones, streams, sensors), and it
STATION_OF_RECIPE = {"cascade.toml": ROOT / "hardware/stations/sim-cascade.toml"}
SEED = 11
COMBINED_CASES = 150
CASE_TIMEOUT_S = 30

REMOVED = object()
#: Placeholders for paths made per case in tmp_path (a named pipe, a folder, an oversized file).
FIFO, FOLDER, OVERSIZED = "<fifo>.toml", "<folder>.toml", "<oversized>.toml"
HUGE_INT = 10**30
LONG_TEXT = "x" * 5000
NAMED_FILE_FIELDS = {"map", "dialect", "scenario"}
BAD_NAMES = [
    "foo",
    "no-such-thing.toml",
    "../../etc/passwd",
    "/dev/zero",
    "/dev/null.toml",
    "eurotherm-3200",
    "scpi-spectrometer",
    "pr-nd-elution",
    FIFO,
    FOLDER,
    OVERSIZED,
    "x" * 300,
    LONG_TEXT,
]


# -- writing TOML (the standard library only reads it) ---------------------------------------------

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else "inf"
            if value == math.inf
            else "-inf"
            if value == -math.inf
            else repr(value)
        )
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def _is_table_array(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(document: dict) -> str:
    """TOML text for a document: top-level tables as [tables] and [[arrays]], everything below inline."""
    lines = [
        f"{_key(k)} = {_value(v)}" for k, v in document.items() if not isinstance(v, dict) and not _is_table_array(v)
    ]
    for key, value in document.items():
        bodies = [value] if isinstance(value, dict) else value if _is_table_array(value) else []
        for body in bodies:
            lines.append(
                f"\n{'[' if isinstance(value, dict) else '[['}{_key(key)}{']' if isinstance(value, dict) else ']]'}"
            )
            lines += [f"{_key(k)} = {_value(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


# -- mutations ------------------------------------------------------------------------------------


def dotted(path: tuple) -> str:
    """A location as the error messages write it: furnace.segments[0].target_C."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


@dataclass(frozen=True)
class Mutation:
    """A set of changes to one shipped file; ``fields`` are the locations a refusal may name."""

    kind: str
    source: Path
    changes: tuple  # ((path, new value or REMOVED), ...)

    @property
    def fields(self) -> list[str]:
        """The changed locations; for an item removed from a list, the list. A table of ``[[instrument]]`` or
        ``[[connection]]`` is named by its name in the messages (``instrument[zone-2].address``), so both."""
        located = [path[:-1] if new is REMOVED and isinstance(path[-1], int) else path for path, new in self.changes]
        names = [dotted(path) for path in located]
        document = _read(self.source)
        for path in located:
            if len(path) >= 2 and path[0] in ("instrument", "connection") and isinstance(path[1], int):
                table = document.get(path[0], [])
                name = table[path[1]].get("name") if path[1] < len(table) and isinstance(table[path[1]], dict) else None
                if isinstance(name, str):
                    names.append(dotted((f"{path[0]}[{name}]", *path[2:])))
        return names

    @property
    def id(self) -> str:
        def show(value):
            if value is REMOVED:
                return "removed"
            text = repr(value)
            return text if len(text) <= 24 else f"{text[:12]}..{len(text)}ch"

        return f"{self.source.name}:" + "+".join(f"{dotted(p)}={show(v)}" for p, v in self.changes)


def leaves(node, path=()):
    """(path, value) of every table, array and value below ``node``, parents first."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield path + (key,), value
        yield from leaves(value, path + (key,))


def replacements(path: tuple, value) -> list:
    """The values a hostile tester would put at ``path`` instead of ``value``."""
    if isinstance(value, bool):
        return [1, 0, 1.0, "true", "yes", [value], REMOVED]
    if isinstance(value, (int, float)):
        return [
            True,
            False,
            0,
            -1,
            -1e308,
            1e308,
            math.inf,
            -math.inf,
            math.nan,
            HUGE_INT,
            2**63,
            -HUGE_INT,
            str(value),
            "",
            LONG_TEXT,
            [value],
            {"value": value},
            REMOVED,
        ]
    if isinstance(value, str):
        named = BAD_NAMES if path[-1] in NAMED_FILE_FIELDS else []
        return ["", LONG_TEXT, "\x00", 1, 1.5, True, math.inf, [value], *named, REMOVED]
    if isinstance(value, dict):
        return [REMOVED, 5, "table", [], {**value, "bogus_key": 1}, {}]
    if _is_table_array(value):
        return [REMOVED, [], 5, value[0], value[:1], value * 40]
    if isinstance(value, list):  # analytes, quadratic
        return [[], ["Fe"], "Nd", [1], [True], value + value[:1], [*value, *value, *value, *value], REMOVED]
    raise TypeError(value)


def scaled(path: tuple, value, rng: random.Random) -> list:
    """Plausible-looking numbers near and far from the shipped one (seeded): the limits decide."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return []
    factors = [rng.choice([1.5, 2, 3]), rng.choice([10, 100, 1000]), rng.uniform(0.01, 0.5)]
    return [type(value)(value * f) if isinstance(value, float) else int(value * f) + 1 for f in factors]


def single_mutations(kind: str, source: Path, rng: random.Random) -> list[Mutation]:
    document = _read(source)
    mutations = []
    for path, value in leaves(document):
        if path[-1] == "bogus_key":
            continue
        for new in replacements(path, value) + scaled(path, value, rng):
            mutations.append(Mutation(kind, source, ((path, new),)))
    for path, value in list(leaves(document)) + [((), document)]:
        if isinstance(value, dict) and value and path != () or (path == () and kind == "station"):
            extra = path + (("pyrometer",) if path == () else ("bogus_key",))
            mutations.append(Mutation(kind, source, ((extra, {"port": "x"} if path == () else 1),)))
    return mutations


def _read(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def all_mutations() -> list[Mutation]:
    rng = random.Random(SEED)
    singles = [m for kind, paths in SHIPPED.items() for source in paths for m in single_mutations(kind, source, rng)]
    combined = []
    by_source: dict[Path, list[Mutation]] = {}
    for mutation in singles:
        by_source.setdefault(mutation.source, []).append(mutation)
    sources = sorted(by_source)
    for _ in range(COMBINED_CASES):
        pool = by_source[rng.choice(sources)]
        picked = rng.sample(pool, rng.choice([2, 3]))
        paths = [p for m in picked for p, _ in m.changes]
        nested = any(a != b and (a[: len(b)] == b or b[: len(a)] == a) for a in paths for b in paths)
        shifting = any(new is REMOVED and isinstance(path[-1], int) for m in picked for path, new in m.changes)
        if nested or shifting or len(set(paths)) < len(paths):
            continue  # one change inside another, or a removed list item that renumbers the others
        combined.append(Mutation(picked[0].kind, picked[0].source, tuple(c for m in picked for c in m.changes)))
    return singles + combined


MUTATIONS = all_mutations()


def apply(document: dict, mutation: Mutation, places: dict[str, str]) -> dict:
    mutated = copy.deepcopy(document)
    for path, new in mutation.changes:
        parent = mutated
        for part in path[:-1]:
            parent = parent[part]
        if new is REMOVED:
            del parent[path[-1]]
        else:
            parent[path[-1]] = places.get(new, new) if isinstance(new, str) else copy.deepcopy(new)
    return mutated


@pytest.fixture
def places(tmp_path) -> dict[str, str]:
    """Real paths for the placeholders: a named pipe, a folder and a file just over the 1 MiB limit."""
    os.mkfifo(tmp_path / "pipe.toml")
    (tmp_path / "folder.toml").mkdir()
    (tmp_path / "big.toml").write_text("#" * (1 << 20) + "\n")
    return {
        FIFO: str(tmp_path / "pipe.toml"),
        FOLDER: str(tmp_path / "folder.toml"),
        OVERSIZED: str(tmp_path / "big.toml"),
    }


# -- what must hold of an accepted file -----------------------------------------------------------


def assert_all_numbers_finite(value, where="") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert_all_numbers_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            assert_all_numbers_finite(item, f"{where}[{index}]")
    elif isinstance(value, float):
        assert math.isfinite(value), where


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def assert_sane_station(station) -> None:
    assert_all_numbers_finite(station.model_dump())
    assert isinstance(station.name, str) and 1 <= len(station.name) <= 200
    assert 0 < station.simulation_speed <= 10000
    furnace, spectrometer = station.furnace, station.spectrometer
    if furnace is not None:
        assert type(furnace.address) is int and 1 <= furnace.address <= 247
        assert type(furnace.baudrate) is int and furnace.baudrate in (
            1200,
            2400,
            4800,
            9600,
            19200,
            38400,
            57600,
            115200,
        )
        assert type(furnace.simulated) is bool
        assert is_number(furnace.max_temperature_C) and 0 < furnace.max_temperature_C <= 1372  # the map's input range
        assert is_number(furnace.max_ramp_C_per_min) and 0 < furnace.max_ramp_C_per_min <= 100
        assert is_number(furnace.safe_temperature_C) and 0 <= furnace.safe_temperature_C < furnace.max_temperature_C
        assert is_number(furnace.poll_interval_s) and 0 < furnace.poll_interval_s <= 60
        assert furnace.simulated or furnace.port
    if spectrometer is not None:
        assert type(spectrometer.pixels) is int and 16 <= spectrometer.pixels <= 16384
        assert type(spectrometer.simulated) is bool
        assert 0 < spectrometer.min_integration_time_s < spectrometer.max_integration_time_s <= 3600
        assert is_number(spectrometer.timeout_s) and 0 < spectrometer.timeout_s <= 3600
        assert spectrometer.simulated or spectrometer.resource


def assert_sane_recipe(recipe, station) -> None:
    assert_all_numbers_finite(recipe.model_dump())
    assert len(set(recipe.analytes)) == len(recipe.analytes) and recipe.target in recipe.analytes
    assert 0 < recipe.wall_clock_limit_min <= 30 * 24 * 60 and 0 < recipe.lost_instrument_abort_s <= 86400
    assert recipe.duration_min is None or 0 < recipe.duration_min <= 30 * 24 * 60
    assert recipe.furnace is not None or recipe.duration_min is not None
    if recipe.furnace is not None:
        limits = station.furnace
        for segment in recipe.furnace.segments:
            assert is_number(segment.target_C) and 0 <= segment.target_C <= limits.max_temperature_C
            assert is_number(segment.ramp_C_per_min) and 0 < segment.ramp_C_per_min <= limits.max_ramp_C_per_min
            assert is_number(segment.dwell_min) and 0 <= segment.dwell_min <= 30 * 24 * 60
        assert 0 <= recipe.furnace.cool_to_C < limits.max_temperature_C
        assert 0 < recipe.furnace.cool_rate_C_per_min <= limits.max_ramp_C_per_min
        abort = recipe.furnace.abort_above_C
        assert abort is None or 0 < abort <= limits.max_temperature_C
    if recipe.spectrometer is not None:
        schedule, limits = recipe.spectrometer, station.spectrometer
        assert limits.min_integration_time_s <= schedule.integration_time_s <= limits.max_integration_time_s
        assert type(schedule.averages) is int and 1 <= schedule.averages <= 10000
        assert schedule.reference_averages is None or type(schedule.reference_averages) is int
        assert is_number(schedule.interval_s) and 0 <= schedule.interval_s <= 86400
        assert type(schedule.dark_every_n) is int and 1 <= schedule.dark_every_n <= 1_000_000


def assert_sane_standards(standards, station) -> None:
    assert_all_numbers_finite(standards.model_dump())
    limits = station.spectrometer
    assert limits.min_integration_time_s <= standards.integration_time_s <= limits.max_integration_time_s
    assert type(standards.averages) is int and 1 <= standards.averages <= 10000
    assert type(standards.replicates) is int and 1 <= standards.replicates <= 100
    assert standards.baseline_order is None or type(standards.baseline_order) is int
    assert len(standards.standards) >= len(standards.analytes) + 1
    for standard in standards.standards:
        assert all(is_number(g) and 0 <= g <= 1000 for g in standard.concentrations_g_per_L.values())
        assert set(standard.concentrations_g_per_L) <= set(standards.analytes)


# -- the bench probe: what would have been started or connected --------------------------------------


class BenchProbe:
    """Stands in for the bench's simulator start and instrument connections; records each attempt."""

    class Touched(RuntimeError):
        """Raised instead of starting or connecting anything (a RuntimeError, as a failed start is)."""

    def __init__(self, monkeypatch):
        self.attempts: list[str] = []
        for name in ("start_simulator", "connect_furnace", "connect_spectrometer"):
            monkeypatch.setattr(daq.bench, name, self._recorder(name))

    def _recorder(self, name):
        def record(*args, **kwargs):
            self.attempts.append(name)
            raise BenchProbe.Touched(f"{name} called by the test's bench probe")

        return record


@pytest.fixture
def probe(monkeypatch) -> BenchProbe:
    return BenchProbe(monkeypatch)


def run_remdaq(*args) -> int:
    """``remdaq ARGS`` in this process; its exit code."""
    with pytest.raises(SystemExit) as exited:
        main([str(a) for a in args])
    return exited.value.code


def assert_refusal_names_file_and_field(message: str, path: Path, mutation: Mutation) -> None:
    assert str(path) in message, message
    assert any(field in message for field in mutation.fields), (mutation.fields, message)
    assert "Traceback" not in message


# -- the cases ------------------------------------------------------------------------------------


def _write(tmp_path: Path, mutation: Mutation, places) -> Path:
    path = tmp_path / f"mutated-{mutation.source.name}"
    path.write_text(to_toml(apply(_read(mutation.source), mutation, places)))
    return path


def station_for(mutation: Mutation) -> Path:
    """The station a mutated recipe or standards file is checked against: its own, else sim.toml."""
    return STATION_OF_RECIPE.get(mutation.source.name, SIM_STATION)


def load_checked(kind: str, path: Path, station_path: Path = SIM_STATION):
    """A mutated file loaded as ``remdaq`` loads it (a recipe or standards checked against ``station_path``);
    raises ConfigError for a refused one."""
    if kind == "station":
        return load_station(path)
    station = load_station(station_path)
    if kind == "recipe":
        recipe = load_recipe(path)
        check_recipe_against_station(recipe, station)
        return recipe
    standards = load_standards(path)
    check_standards_against_station(standards, station)
    return standards


def test_there_are_several_hundred_distinct_deterministic_mutations():
    assert len(MUTATIONS) >= 500
    assert len({m.id for m in MUTATIONS}) > 0.95 * len(MUTATIONS)
    assert [m.id for m in all_mutations()] == [m.id for m in MUTATIONS]  # seeded: the same every run
    assert {m.kind for m in MUTATIONS} == {"station", "recipe", "standards"}


def test_the_unmutated_files_survive_the_round_trip_through_the_writer(tmp_path):
    for kind, paths in SHIPPED.items():
        for source in paths:
            assert _read(source) == _read(_write(tmp_path, Mutation(kind, source, ()), {}))


@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize("mutation", [m for m in MUTATIONS if m.kind == "station"], ids=lambda m: m.id)
def test_a_mutated_station_is_sane_or_refused_before_anything_starts(mutation, tmp_path, places, probe, capsys):
    path = _write(tmp_path, mutation, places)
    try:
        station = load_checked("station", path)
    except ConfigError as error:
        assert_refusal_names_file_and_field(str(error), path, mutation)
        assert run_remdaq("check", "--station", path) == 2
        assert probe.attempts == []
        assert_refusal_names_file_and_field(capsys.readouterr().err, path, mutation)
        return
    assert_sane_station(station)
    assert run_remdaq("check", "--station", path) == 1  # every instrument FAILED: the probe refused them
    assert probe.attempts  # validation passed, so the bench was asked to start or connect


@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize("mutation", [m for m in MUTATIONS if m.kind == "recipe"], ids=lambda m: m.id)
def test_a_mutated_recipe_is_sane_or_refused_before_anything_starts(mutation, tmp_path, places, probe, capsys):
    path = _write(tmp_path, mutation, places)
    station = station_for(mutation)
    try:
        recipe = load_checked("recipe", path, station)
    except ConfigError as error:
        assert_refusal_names_file_and_field(str(error), path, mutation)
        assert run_remdaq("run", path, "--station", station, "--data-dir", tmp_path / "data") == 2
        assert probe.attempts == []
        assert_refusal_names_file_and_field(capsys.readouterr().err, path, mutation)
        return
    assert_sane_recipe(recipe, load_station(station))


@pytest.mark.timeout(CASE_TIMEOUT_S)
@pytest.mark.parametrize("mutation", [m for m in MUTATIONS if m.kind == "standards"], ids=lambda m: m.id)
def test_a_mutated_standards_file_is_sane_or_refused_before_anything_starts(mutation, tmp_path, places, probe, capsys):
    path = _write(tmp_path, mutation, places)
    out = tmp_path / "calibration.h5"
    try:
        standards = load_checked("standards", path)
    except ConfigError as error:
        assert_refusal_names_file_and_field(str(error), path, mutation)
        assert run_remdaq("calibrate", path, "--station", SIM_STATION, "--out", out) == 2
        assert probe.attempts == [] and not out.exists()
        assert_refusal_names_file_and_field(capsys.readouterr().err, path, mutation)
        return
    assert_sane_standards(standards, load_station(SIM_STATION))
    with pytest.raises(BenchProbe.Touched):
        main(["calibrate", str(path), "--station", str(SIM_STATION), "--out", str(out)])
    assert probe.attempts == ["start_simulator"]


def test_both_outcomes_occur_for_every_kind_of_file(tmp_path, places):
    """Guards the generator: a mutation set that is all refused (or all accepted) would test little.

    The mutations of each kind are loaded here, in their (seeded) order, until both outcomes have
    occurred: the same every run, whichever of the cases above run with it.
    """
    outcomes: dict[str, set[str]] = {kind: set() for kind in SHIPPED}
    for mutation in MUTATIONS:
        seen = outcomes[mutation.kind]
        if len(seen) == 2:
            continue
        try:
            load_checked(mutation.kind, _write(tmp_path, mutation, places), station_for(mutation))
        except ConfigError:
            seen.add("refused")
        else:
            seen.add("accepted")
    assert outcomes == {kind: {"accepted", "refused"} for kind in SHIPPED}


# -- end to end, in a separate remdaq process ---------------------------------------------------------

_PROBED_REMDAQ = """\
import sys
from pathlib import Path
import daq.bench
from drivers.sim.launch import SimulatorStartError

def refuse_to_start(module, *args, **kwargs):
    Path(sys.argv[1]).write_text(module)  # the marker: a simulator would have started now
    raise SimulatorStartError(f"{module}: not started by the test")

daq.bench.start_simulator = refuse_to_start
from daq.cli import main
main(sys.argv[2:])
"""


def probed_remdaq(tmp_path: Path, *args) -> tuple[subprocess.CompletedProcess, Path]:
    marker = tmp_path / "simulator-started"
    result = subprocess.run(
        [sys.executable, "-c", _PROBED_REMDAQ, str(marker), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, marker


@pytest.mark.parametrize(
    "old, new, field",
    [
        (
            'map = "eurotherm-2400"',
            'map = "foo"',
            "furnace.map: no register map 'foo' "
            "(known: eurotherm-2400, eurotherm-3200, eurotherm-3216p, eurotherm-epc3000, eurotherm-nanodac)",
        ),
        (
            'dialect = "scpi-spectrometer"',
            'dialect = "bar"',
            "spectrometer.dialect: no SCPI dialect 'bar' (known: scpi-spectrometer)",
        ),
        (
            "max_temperature_C = 1100.0",
            "max_temperature_C = inf",
            "furnace.max_temperature_C: Input should be a finite number",
        ),
        ("address = 1", "address = true", "furnace.address: expected a number, not a boolean"),
    ],
)
@pytest.mark.timeout(60)  # a `remdaq check` child process: 3-5 s on two shared cores
def test_remdaq_check_refuses_a_bad_station_cleanly_and_starts_no_simulator(tmp_path, old, new, field):
    text = SIM_STATION.read_text()
    assert old in text
    station = tmp_path / "station.toml"
    station.write_text(text.replace(old, new, 1))
    result, marker = probed_remdaq(tmp_path, "check", "--station", station)
    assert result.returncode == 2, result.stderr
    assert f"error: {station}: {field}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.timeout(60)  # a `remdaq check` child process that starts a simulator
def test_the_process_probe_sees_a_simulator_start_for_a_good_station(tmp_path):
    """The control for the test above: with the shipped station the marker is written."""
    result, marker = probed_remdaq(tmp_path, "check", "--station", SIM_STATION)
    assert result.returncode == 1 and "not started by the test" in result.stderr
    assert marker.read_text() in ("drivers.sim.furnace", "drivers.sim.spectrometer")
