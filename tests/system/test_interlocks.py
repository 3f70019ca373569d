"""Interlocks end to end: each one stops (or flags) a real trial on the simulated bench, as events in the file.

Every test runs `python -m daq run` (the remdaq command) with a recipe written to
tmp_path, provokes the condition on the real simulator processes the runner
started (found with psutil as its children), and then reads the closed trial file
with the shared reader: exit code, /entry/exit_status, events, row flags, NaNs.

- furnace sensor break: SIGUSR1 to the furnace simulator (docs/instruments/furnace.md)
- furnace over the recipe's limit: [furnace] abort_above_C below a segment target
- lost instrument: SIGKILL of the spectrometer simulator; SIGSTOP/SIGCONT for a recovery
- spectrometer saturated: an integration time that clips the 16-bit detector, "flag" and "adjust"
- wall-clock limit

Flag bits (docs/trial-file.md): 1 read failed, 2 saturated, 4 instrument lost, 8 analysis failed.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
from _bench import QUICK_RECIPE, SIM_STATION, start_remdaq, stop_process

from daq import check_recipe_against_station, load_recipe, load_station, open_trial
from daq.layout import FLAG_NO_RARE_EARTHS
from drivers.sim.scenario import load_scenario

ALL_BUT_NO_RARE_EARTHS = 0xFF & ~int(FLAG_NO_RARE_EARTHS)  # a blank cell at the start is not a fault

pytestmark = pytest.mark.system

FLAG_READ_FAILED, FLAG_SATURATED, FLAG_LOST, FLAG_ANALYSIS_FAILED = 1, 2, 4, 8
FULL_SCALE_COUNTS = 65535  # the simulated detector is 16 bit

# A deadline only guards against a hang; no test asserts how long anything took.
DEADLINE_S = 60.0
POLL_S = 0.05

# The water blank peaks near 40 000 counts at 0.1 s (docs/instruments/spectrometer.md):
# 0.2 s clips a few hundred pixels of every spectrum (and of the blank); 0.1 s clips none.
SATURATING_INTEGRATION_S = 0.2
STEADY_SCENARIO = "nd-product-995"  # constant cell contents: Nd 20 g/L with traces of Pr, Sm, La
# Just above the water blank's full scale, single scans of the brightest pixels clip but an average of 512
# scans never reads exactly 65535 (docs/instruments/spectrometer.md: partially clipped pixels read below
# full scale). Measured on the simulator (default seed): 512-scan blank unsaturated up to ~0.1597 s,
# single-scan spectra with >= 5 saturated pixels from ~0.159 s. So a spectrum saturates during the trial.
BORDERLINE_INTEGRATION_S = 0.1592


# -- recipes --------------------------------------------------------------------------------------


def quick_recipe(tmp_path: Path, name: str, replace: dict[str, str]) -> Path:
    """seeds/recipes/quick.toml with exact text replacements (each must match, so a changed seed fails loudly)."""
    text = QUICK_RECIPE.read_text()
    for old, new in replace.items():
        assert old in text, f"{QUICK_RECIPE} no longer contains {old!r}"
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def short_recipe(
    tmp_path: Path,
    name: str,
    *,
    integration_time_s: float = 0.02,
    on_saturation: str = "flag",
    averages: int = 32,
    scenario: str | None = "pr-nd-elution",
    dwell_min: float = 5.0,
    duration_min: float | None = None,
    lost_instrument_abort_s: float = 30.0,
) -> Path:
    """A short complete trial (one 60 C segment, a few seconds of wall time at the sim bench's clock speed).

    ``scenario=None``: the water blank stays in the cell for the whole trial.
    """
    duration = f"duration_min = {duration_min:g}\n" if duration_min else ""
    scenario_line = f'scenario = "{scenario}"\n' if scenario else ""
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""\
[recipe]
title = "interlock test: {name}"
sample = "test"
operator = "pytest"
analytes = ["Nd", "Pr", "Sm", "Er", "Ho"]
target = "Nd"
wall_clock_limit_min = 5
lost_instrument_abort_s = {lost_instrument_abort_s:g}
{duration}{scenario_line}
[furnace]
cool_to_C = 25.0
cool_rate_C_per_min = 10.0

[[furnace.segments]]
ramp_C_per_min = 10.0
target_C = 60.0
dwell_min = {dwell_min:g}

[spectrometer]
integration_time_s = {integration_time_s:g}
averages = {averages}
reference_averages = 512
interval_s = 60.0
dark = "start"
reference = "start"
on_saturation = "{on_saturation}"
""")
    return path


def station_with_spectrometer_timeout(tmp_path: Path, timeout_s: float) -> Path:
    """The shipped sim station with a shorter spectrometer timeout (so a hung instrument is noticed quickly)."""
    text = SIM_STATION.read_text()
    anchor = "max_integration_time_s = 10.0"
    assert anchor in text and "timeout_s" not in text
    path = tmp_path / "station.toml"
    path.write_text(text.replace(anchor, f"{anchor}\ntimeout_s = {timeout_s:g}"))
    return path


# -- running a trial --------------------------------------------------------------------------------


class RemdaqRun:
    """One `python -m daq run` on the simulated bench; output goes to files so no pipe can fill up."""

    def __init__(self, recipe: Path, data_dir: Path, calibration: Path, station: Path = SIM_STATION):
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._stdout = (data_dir / "remdaq.stdout").open("w+")
        self._stderr = (data_dir / "remdaq.stderr").open("w+")
        self.process = start_remdaq(
            "run",
            recipe,
            "--station",
            station,
            "--data-dir",
            data_dir,
            "--calibration",
            calibration,
            stdout=self._stdout,
            stderr=self._stderr,
        )
        self._signalled: list[psutil.Process] = []
        self._path: Path | None = None

    # output and state
    def stderr(self) -> str:
        self._stderr.flush()
        return (self.data_dir / "remdaq.stderr").read_text()

    def _tick(self) -> bool:
        """Wait one poll period, or less if the run exits; True while it runs."""
        try:
            self.process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            return True
        return False

    def wait_until(self, condition, what: str, timeout_s: float = DEADLINE_S):
        """Poll ``condition()`` until it returns something truthy; fail on the deadline or if the run ends first."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = condition()
            if value:
                return value
            running = self._tick()
            if not running:
                value = condition()
                if value:
                    return value
                raise AssertionError(
                    f"remdaq run exited ({self.process.returncode}) before {what}:\n{self.stderr()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s:g} s:\n{self.stderr()[-3000:]}")

    @property
    def path(self) -> Path:
        """The trial file, once the run has announced it on stdout ("trial file: PATH", printed at the end of
        start-up). Not by watching the folder: a reader that opens the file before its writer has started SWMR
        makes the writer's start_swmr_write fail ("unable to lock file, errno = 11")."""
        if self._path is None:

            def announced():
                lines = (self.data_dir / "remdaq.stdout").read_text().splitlines()
                return next(
                    (Path(line.removeprefix("trial file: ")) for line in lines if line.startswith("trial file: ")), None
                )

            self._path = self.wait_until(announced, "trial file announced on stdout")
            assert self._path.is_file() and self._path.parent == self.data_dir / "trials", self._path
        return self._path

    def _peek(self, read):
        try:
            with open_trial(self.path) as trial:
                return read(trial)
        except OSError:  # still being laid out
            return None

    def wait_for_rows(self, table: str, rows: int) -> int:
        """Rows of ``table`` a reader sees, once there are at least ``rows``."""

        def enough():
            seen = self._peek(lambda t: t.rows(table)) or 0
            return seen if seen >= rows else None

        return self.wait_until(enough, f"{rows} {table} rows")

    def wait_for_event(self, text: str) -> str:
        def find():
            messages = self._peek(lambda t: list(t.events()["message"])) or []
            return next((m for m in messages if text in m), None)

        return self.wait_until(find, f"event containing {text!r}")

    # the simulators the runner started
    def simulator(self, module: str) -> psutil.Process:
        def find():
            for child in psutil.Process(self.process.pid).children(recursive=True):
                try:
                    cmdline = child.cmdline()
                except psutil.NoSuchProcess:
                    continue
                if "-m" in cmdline[:-1] and cmdline[cmdline.index("-m") + 1] == module:
                    return child
            return None

        return self.wait_until(find, f"{module} process")

    def signal_simulator(self, module: str, signum: int) -> psutil.Process:
        child = self.simulator(module)
        self._signalled.append(child)
        child.send_signal(signum)
        return child

    def finish(self, timeout_s: float = 90.0) -> int:
        self.process.wait(timeout=timeout_s)
        return self.process.returncode

    def close(self) -> None:
        """After the test, pass or fail: nothing of ours left running or stopped."""
        for child in self._signalled:  # a stopped simulator would ignore the SIGTERM the runner sends it
            try:
                if child.is_running() and child.status() == psutil.STATUS_STOPPED:
                    child.send_signal(signal.SIGCONT)
            except psutil.NoSuchProcess:
                pass
        stop_process(self.process)  # it takes its simulators down (and the kernel does, if it must be killed)
        self._stdout.close()
        self._stderr.close()


@pytest.fixture
def remdaq_run(sim_calibration):
    runs: list[RemdaqRun] = []

    def start(recipe: Path, data_dir: Path, station: Path = SIM_STATION) -> RemdaqRun:
        run = RemdaqRun(recipe, data_dir, sim_calibration, station)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


@dataclass
class Trial:
    """What a closed trial file says, read with the shared reader."""

    exit_status: str
    state: str
    end_time: str
    events: list[tuple[float, str, str, str]]  # time, level, source, message
    furnace: dict[str, np.ndarray]
    spectrometer: dict[str, np.ndarray]
    analysis: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    dark: dict[str, np.ndarray]

    @property
    def messages(self) -> list[str]:
        return [e[3] for e in self.events]

    def events_with(self, text: str, source: str | None = None) -> list[tuple[float, str, str, str]]:
        return [e for e in self.events if text in e[3] and (source is None or e[2] == source)]

    def index(self, text: str) -> int:
        """Position in the event log of the first event containing ``text``."""
        return next(i for i, e in enumerate(self.events) if text in e[3])


def read_trial(path: Path) -> Trial:
    with open_trial(path) as trial:
        events = trial.events()
        return Trial(
            exit_status=trial.exit_status,
            state=trial.state,
            end_time=trial.end_time,
            events=list(zip(events["time"].tolist(), events["level"], events["source"], events["message"])),
            furnace=trial.read("furnace"),
            spectrometer=trial.read("spectrometer"),
            analysis=trial.read("analysis"),
            reference=trial.read("reference"),
            dark=trial.read("dark"),
        )


def run_to_end(start, recipe: Path, data_dir: Path) -> tuple[int, Trial, str]:
    run = start(recipe, data_dir)
    code = run.finish()
    return code, read_trial(run.path), run.stderr()


def assert_closed(trial: Trial, code: int, status: str, stderr: str) -> None:
    assert (code, trial.exit_status, trial.state) == (0 if status == "success" else 1, status, status), (
        f"exit code {code}, exit_status {trial.exit_status!r}; stderr:\n{stderr[-3000:]}"
    )
    assert trial.end_time, "no clean-end mark"
    assert not np.any(trial.spectrometer["flag"] & FLAG_ANALYSIS_FAILED), "a spectrum the analysis could not handle"
    assert "furnace in safe state" in trial.messages


# -- 1. furnace sensor break ----------------------------------------------------------------------------


def test_furnace_sensor_break_aborts_to_safe_state_with_nan_rows(remdaq_run, tmp_path):
    run = remdaq_run(QUICK_RECIPE, tmp_path / "data")
    rows_before = run.wait_for_rows("furnace", 3)
    run.signal_simulator("drivers.sim.furnace", signal.SIGUSR1)  # the thermocouple breaks
    code = run.finish()
    trial = read_trial(run.path)

    assert_closed(trial, code, "aborted", run.stderr())
    interlocks = trial.events_with("sensor break", source="interlock")
    assert interlocks and interlocks[0][1] == "error", trial.events
    assert trial.index("sensor break") < trial.index("furnace in safe state")
    assert any(m.startswith("trial aborted") and "sensor break" in m for m in trial.messages)

    temperature, flag = trial.furnace["temperature"], trial.furnace["flag"]
    broken = np.flatnonzero(np.isnan(temperature))
    assert broken.size >= 1, "no furnace row after the break"
    first = int(broken[0])
    assert first >= rows_before  # rows already in the file before the signal were good readings
    assert np.all(np.isfinite(temperature[:first])) and np.all(flag[:first] == 0)
    assert np.all(np.isnan(temperature[first:])), "a number after the sensor broke"
    assert np.all(flag[first:] & FLAG_READ_FAILED), flag[first:]
    assert not np.any(flag[first:] & FLAG_LOST)  # the controller still answers: a bad reading, not a lost one


# -- 2. furnace over the recipe's limit -------------------------------------------------------------------


def test_furnace_over_the_recipes_limit_aborts(remdaq_run, tmp_path):
    recipe = quick_recipe(tmp_path, "over-limit", {"[furnace]\n": "[furnace]\nabort_above_C = 100.0\n"})
    loaded = load_recipe(recipe)  # a limit below a segment target (110 C) is valid config
    assert loaded.furnace.abort_above_C == 100.0 and loaded.furnace.segments[0].target_C == 110.0
    check_recipe_against_station(loaded, load_station(SIM_STATION))

    code, trial, stderr = run_to_end(remdaq_run, recipe, tmp_path / "data")

    assert_closed(trial, code, "aborted", stderr)
    interlocks = trial.events_with("above the limit 100 C", source="interlock")
    assert interlocks and interlocks[0][1] == "error", trial.events
    assert trial.index("above the limit 100 C") < trial.index("furnace in safe state")
    assert any(m.startswith("trial aborted") and "100 C" in m for m in trial.messages)
    assert "program complete" not in trial.messages

    temperature, flag = trial.furnace["temperature"], trial.furnace["flag"]
    assert temperature[-1] > 100.0  # the poll that tripped the interlock is in the file, as a valid reading
    assert np.all(temperature[:-1] <= 100.0)
    assert np.all(flag == 0)


# -- 3. lost instrument ----------------------------------------------------------------------------------


def test_killed_spectrometer_marks_the_gap_retries_and_aborts_after_the_set_time(remdaq_run, tmp_path):
    recipe = quick_recipe(tmp_path, "lost", {"lost_instrument_abort_s = 30": "lost_instrument_abort_s = 3"})
    run = remdaq_run(recipe, tmp_path / "data")
    rows_before = run.wait_for_rows("spectrometer", 5)
    run.signal_simulator("drivers.sim.spectrometer", signal.SIGKILL)
    code = run.finish()
    trial = read_trial(run.path)

    assert_closed(trial, code, "aborted", run.stderr())
    lost = trial.events_with("spectrometer lost:", source="spectrometer")
    assert len(lost) == 1 and lost[0][1] == "error", trial.events  # one event when the gap opens, not one per retry
    assert trial.events_with("spectrometer lost for more than 3 s", source="spectrometer")
    assert (
        trial.index("spectrometer lost:")
        < trial.index("spectrometer lost for more than 3 s")
        < trial.index("furnace in safe state")
    )
    assert any(m == "trial aborted: spectrometer lost for more than 3 s" for m in trial.messages)
    assert not trial.events_with("answers again")

    flag, counts = trial.spectrometer["flag"], trial.spectrometer["counts"]
    gap = np.flatnonzero(flag & FLAG_LOST)
    assert gap.size >= 2, f"the gap should be retried and marked at every scheduled spectrum: flags {flag}"
    first = int(gap[0])
    assert first >= rows_before
    assert np.all((flag[:first] & ALL_BUT_NO_RARE_EARTHS) == 0) and np.all(np.isfinite(counts[:first]))
    assert np.all(flag[first:] == FLAG_READ_FAILED | FLAG_LOST), flag  # a SIGKILLed instrument never comes back
    assert np.all(np.isnan(counts[first:]))
    assert np.all(trial.spectrometer["saturated_pixels"][first:] == 0)
    analysis = trial.analysis
    assert len(analysis["time"]) == len(flag)
    assert np.all(np.isnan(analysis["purity"][first:])) and np.all(np.isnan(analysis["concentration"][first:]))
    assert np.all(np.isfinite(analysis["concentration"][:first]))  # (purity may be NaN: nothing in the cell yet)
    # only the spectrometer is gone: the furnace went on being logged during the gap
    gap_start_s = trial.spectrometer["time"][first]
    during_gap = trial.furnace["time"] > gap_start_s
    assert during_gap.any() and np.all(trial.furnace["flag"][during_gap] == 0)


def test_hung_spectrometer_that_answers_again_before_the_abort_time_recovers(remdaq_run, tmp_path):
    # a 1 s instrument timeout (station) so the hang is noticed at once; the trial lasts 60 experiment
    # minutes (12 s of wall time) whatever the furnace does, so there is room to come back
    station = station_with_spectrometer_timeout(tmp_path, 1.0)
    recipe = short_recipe(
        tmp_path, "hang", dwell_min=2.0, duration_min=60.0, lost_instrument_abort_s=30.0, scenario=STEADY_SCENARIO
    )  # a steady Nd product: every good spectrum has a purity
    run = remdaq_run(recipe, tmp_path / "data", station)
    run.wait_for_rows("spectrometer", 5)
    spectrometer = run.signal_simulator("drivers.sim.spectrometer", signal.SIGSTOP)
    run.wait_for_event("spectrometer lost")
    spectrometer.send_signal(signal.SIGCONT)
    run.wait_for_event("answers again")
    code = run.finish()
    trial = read_trial(run.path)

    assert_closed(trial, code, "success", run.stderr())
    assert trial.index("spectrometer lost:") < trial.index("answers again")
    assert not trial.events_with("lost for more than")
    assert "program complete" in trial.messages

    flag, counts, purity = trial.spectrometer["flag"], trial.spectrometer["counts"], trial.analysis["purity"]
    concentration = trial.analysis["concentration"]
    gap = np.flatnonzero(flag & FLAG_LOST)
    assert gap.size >= 1, f"the hang left no marked gap: flags {flag}"
    assert np.all(flag[gap] == FLAG_READ_FAILED | FLAG_LOST)
    assert np.all(np.isnan(counts[gap])) and np.all(np.isnan(purity[gap])) and np.all(np.isnan(concentration[gap]))
    after = np.arange(int(gap[-1]) + 1, len(flag))
    assert after.size >= 3, "too few spectra after the recovery"
    assert np.all(flag[after] == 0) and np.all(np.isfinite(counts[after]))
    assert np.all(np.isfinite(concentration[after])) and np.all(np.isfinite(purity[after]))
    good = np.setdiff1d(np.arange(len(flag)), gap)
    assert np.all(flag[good] == 0)


# -- 4. saturation --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saturated_trials(sim_calibration, tmp_path_factory) -> dict[str, tuple[int, Trial, str]]:
    """Saturating recipes, each run once for the tests below.

    flag, adjust: a steady Nd product in the cell at SATURATING_INTEGRATION_S (the blank clips too).
    adjust-mid-trial: the water blank stays in the cell (no scenario); at BORDERLINE_INTEGRATION_S the
    512-scan blank is not saturated (no pixel clipped in every scan) but single-scan spectra are.
    """
    recipes = {
        "flag": dict(integration_time_s=SATURATING_INTEGRATION_S, on_saturation="flag", scenario=STEADY_SCENARIO),
        "adjust": dict(integration_time_s=SATURATING_INTEGRATION_S, on_saturation="adjust", scenario=STEADY_SCENARIO),
        "adjust-mid-trial": dict(
            integration_time_s=BORDERLINE_INTEGRATION_S, on_saturation="adjust", scenario=None, averages=1
        ),
    }
    runs = {}
    try:
        for name, options in recipes.items():  # all at once: each waits mostly for its simulated clock
            folder = tmp_path_factory.mktemp(f"saturation-{name}")
            recipe = short_recipe(folder, f"saturation-{name}", **options)
            runs[name] = RemdaqRun(recipe, folder / "data", sim_calibration)
        return {name: (run.finish(), read_trial(run.path), run.stderr()) for name, run in runs.items()}
    finally:
        for run in runs.values():
            run.close()


def test_saturation_flag_marks_rows_and_warns(saturated_trials):
    code, trial, stderr = saturated_trials["flag"]

    assert_closed(trial, code, "success", stderr)
    assert trial.events_with("blank reference has", source="spectrometer")
    spectra = trial.spectrometer
    flag, saturated = spectra["flag"], spectra["saturated_pixels"]
    assert len(flag) >= 3
    assert np.all(flag == FLAG_SATURATED), flag  # saturated, nothing else: the analysis still ran
    assert np.all(saturated > 0)
    assert np.all(np.max(spectra["counts"], axis=1) >= FULL_SCALE_COUNTS)
    assert np.all(spectra["integration_time"] == pytest.approx(SATURATING_INTEGRATION_S))
    warnings = trial.events_with("saturated pixels (masked from the fit)", source="spectrometer")
    assert len(warnings) == len(flag) and all(w[1] == "warning" for w in warnings)
    assert sorted(int(w[3].split()[0]) for w in warnings) == sorted(saturated.tolist())
    assert not trial.events_with("integration time lowered")
    # masked pixels, not a lost spectrum: every spectrum analysed
    assert np.all(np.isfinite(trial.analysis["concentration"])) and np.all(np.isfinite(trial.analysis["purity"]))


def assert_integration_time_lowered(trial: Trial, recipe_time_s: float) -> np.ndarray:
    """What "adjust" must leave in the file, wherever the runner lowers the time; returns the settled rows."""
    lowered = trial.events_with("integration time lowered to", source="spectrometer")
    assert lowered and all(e[1] == "warning" for e in lowered), trial.events
    spectra = trial.spectrometer
    flag, saturated, integration = spectra["flag"], spectra["saturated_pixels"], spectra["integration_time"]
    assert np.all(integration <= recipe_time_s * (1 + 1e-6)) and np.all(np.diff(integration) <= 0), integration
    assert integration[-1] < recipe_time_s
    assert f"lowered to {integration[-1]:g} s" in lowered[-1][3]
    settled = integration == integration[-1]
    assert settled.sum() >= 3
    assert np.all((flag[settled] & ALL_BUT_NO_RARE_EARTHS) == 0) and np.all(saturated[settled] == 0), (flag, saturated)
    assert np.all(np.max(spectra["counts"][settled], axis=1) < FULL_SCALE_COUNTS)
    # every spectrum points at a dark and a reference taken (or scaled) to its own integration time
    assert np.array_equal(trial.reference["integration_time"][spectra["reference_index"]], integration)
    assert np.array_equal(trial.dark["integration_time"][spectra["dark_index"]], integration)
    assert np.all(np.diff(trial.reference["integration_time"]) <= 0)
    return settled


def test_saturation_adjust_lowers_the_integration_time(saturated_trials):
    code, trial, stderr = saturated_trials["adjust"]

    assert_closed(trial, code, "success", stderr)
    assert_integration_time_lowered(trial, SATURATING_INTEGRATION_S)


def test_saturation_during_the_trial_adjust_lowers_the_integration_time(saturated_trials):
    code, trial, stderr = saturated_trials["adjust-mid-trial"]

    assert_closed(trial, code, "success", stderr)
    blank = trial.reference["counts"][0]
    assert trial.reference["integration_time"][0] == pytest.approx(BORDERLINE_INTEGRATION_S)
    assert not np.any(blank >= FULL_SCALE_COUNTS), (
        "test set-up: the simulated blank now saturates at this integration time, so no spectrum can saturate "
        "mid-trial; pick BORDERLINE_INTEGRATION_S again (see its comment)"
    )
    spectra = trial.spectrometer
    flag, saturated, integration = spectra["flag"], spectra["saturated_pixels"], spectra["integration_time"]
    # kept, flagged, at the old time
    assert flag[0] & ALL_BUT_NO_RARE_EARTHS == FLAG_SATURATED and saturated[0] > 0, (flag, saturated)
    assert integration[0] == pytest.approx(BORDERLINE_INTEGRATION_S)
    settled = assert_integration_time_lowered(trial, BORDERLINE_INTEGRATION_S)
    lowered = trial.events_with("integration time lowered to", source="spectrometer")
    assert len(lowered) == int(np.count_nonzero(np.diff(integration))) == 1  # one event per change
    assert lowered[0][3].startswith(f"{saturated[0]} saturated pixels")
    assert len(trial.reference["time"]) == 2 and len(trial.dark["time"]) == 2  # a new dark and a rescaled blank
    assert np.all(spectra["reference_index"][settled] == 1) and np.all(spectra["dark_index"][settled] == 1)


def test_saturation_adjust_keeps_the_live_analysis_valid(saturated_trials):
    """After "adjust" the live numbers are as good as with "flag" (saturated pixels masked): same cell, same
    calibration, only the runner's handling differs.

    Catches a rescaled blank that un-masks pixels the blank itself clipped: they come out at about half of
    full scale, far below the true blank at the new time (negative absorbance over hundreds of pixels).
    """
    _, flagged, _ = saturated_trials["flag"]
    _, adjusted, _ = saturated_trials["adjust"]
    truth = load_scenario(STEADY_SCENARIO).concentrations_at(0.0)["Nd"]
    settled = adjusted.spectrometer["integration_time"] == adjusted.spectrometer["integration_time"][-1]

    nd_flagged = float(np.median(flagged.analysis["concentration"][:, 0]))
    nd_adjusted = float(np.median(adjusted.analysis["concentration"][settled, 0]))
    rms_flagged = float(np.median(flagged.analysis["residual_rms"]))
    rms_adjusted = float(np.median(adjusted.analysis["residual_rms"][settled]))
    assert abs(nd_flagged - truth) <= 0.2, f"control trial off the truth: Nd {nd_flagged:.3f} vs {truth:g} g/L"
    assert abs(nd_adjusted - truth) <= 0.2 and rms_adjusted <= 2 * rms_flagged, (
        f"after lowering the integration time Nd reads {nd_adjusted:.3f} g/L (truth {truth:g}, flag mode "
        f"{nd_flagged:.3f}) with residual rms {rms_adjusted:.4f} (flag mode {rms_flagged:.4f})"
    )


# -- 5. wall-clock limit ---------------------------------------------------------------------------------


def test_wall_clock_limit_aborts(remdaq_run, tmp_path):
    recipe = quick_recipe(tmp_path, "wall-clock", {"wall_clock_limit_min = 5": "wall_clock_limit_min = 0.1"})
    code, trial, stderr = run_to_end(remdaq_run, recipe, tmp_path / "data")

    assert_closed(trial, code, "aborted", stderr)
    limit = trial.events_with("wall-clock limit 0.1 min reached", source="runner")
    assert len(limit) == 1 and limit[0][1] == "error", trial.events
    assert trial.index("wall-clock limit 0.1 min reached") < trial.index("furnace in safe state")
    assert "trial aborted: wall-clock limit reached" in trial.messages
    assert "program complete" not in trial.messages
    spectrometer_flag = trial.spectrometer["flag"]
    assert spectrometer_flag.size > 0 and np.all((spectrometer_flag & ALL_BUT_NO_RARE_EARTHS) == 0)
    assert np.all(trial.furnace["flag"] == 0) and not math.isnan(float(trial.furnace["temperature"][-1]))
