"""The trial runner in-process, on fake instruments: interlocks, lost instruments, saturation, shutdown, stop.

Each test runs a whole :class:`daq.runner.TrialRunner` (its furnace and spectrometer
threads, the real trial writer, catalog and analysis) against the fakes of
:mod:`_fake_bench`, given through the runner's ``bench_factory``: no simulator
process, no wire protocol. The runner's experiment clock runs 10 000 times real time
(a spectrum every 1 ms of wall time), so a trial takes milliseconds. Nothing sleeps
to synchronise and nothing asserts a duration: a test scripts *when* things happen in
polls and spectra (``at_poll``, ``at_spectrum``) and holds the furnace program
until the spectra it needs are taken (``hold_program_until_spectrum``).
The closed trial file is read back with the shared reader.

Flag bits (docs/trial-file.md): 1 read failed, 2 saturated, 4 instrument lost, 8 analysis failed.
What the runner must do: docs/user-guide.md, "Run a trial" and its interlocks.
"""

from __future__ import annotations

import math
import signal
import threading

import numpy as np
import pytest
from _fake_bench import (
    BASE_INTEGRATION_S,
    STREAM_G_PER_L,
    fake_recipe,
    fake_station,
    journal_writer_close,
    make_runner,
    read_trial,
)
from pydantic import ValidationError

from daq.layout import FLAG_ANALYSIS_FAILED, FLAG_LOST, FLAG_READ_FAILED, FLAG_SATURATED

LONG_DWELL = ((10.0, 60.0, 600.0),)  # one segment; only an abort ends it early (or the held furnace)


@pytest.fixture
def fake_runner(tmp_path, synthetic_calibration, fake_bench):
    """``fake_runner(recipe, station=None, **options)``: a TrialRunner on ``fake_bench``, not yet run."""

    def runner(recipe, station=None, **options):
        return make_runner(
            recipe, station or fake_station(), fake_bench, tmp_path / "data", synthetic_calibration, **options
        )

    return runner


def furnace_journal(bench) -> list[str]:
    return [w for w in bench.journal.of("furnace") if not w.endswith("no answer")]


# -- the plain trial --------------------------------------------------------------------------------------------


def test_a_trial_on_the_fake_bench_runs_to_its_end_and_records_everything(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(5)
    outcome, trial = run_trial(fake_recipe())

    assert (outcome.exit_status, outcome.reason) == ("success", "program complete")
    assert trial.exit_status == "success" and trial.end_time
    assert len(fake_bench.opened) == 1  # the bench came from the factory: no simulator was started
    spectra, analysis = trial.tables["spectrometer"], trial.tables["analysis"]
    assert len(spectra["time"]) >= 5 and len(analysis["time"]) == len(spectra["time"])
    assert outcome.rows["spectrometer"] == len(spectra["time"])
    assert np.all(spectra["flag"] & (FLAG_READ_FAILED | FLAG_SATURATED | FLAG_LOST | FLAG_ANALYSIS_FAILED) == 0)
    assert np.all(np.diff(spectra["time"]) > 0)
    truth = [STREAM_G_PER_L["Nd"], STREAM_G_PER_L["Pr"]]
    assert np.allclose(np.median(analysis["concentration"], axis=0), truth, rtol=0.05)
    assert len(trial.tables["dark"]["time"]) == len(trial.tables["reference"]["time"]) == 1
    assert fake_bench.furnace.in_safe_state and trial.has("furnace in safe state")
    assert trial.messages[-1] == "trial success: program complete"


# -- interlocks -------------------------------------------------------------------------------------------------


def test_furnace_above_the_interlock_aborts_and_ends_in_its_safe_state(run_trial, fake_bench):
    # the controller ramps 5 C a poll towards 110 C: the PV passes the recipe's 100 C limit on the way
    outcome, trial = run_trial(fake_recipe(segments=((10.0, 110.0, 5.0),), abort_above_C=100.0))

    assert (outcome.exit_status, outcome.reason) == ("aborted", "interlock: furnace over 100 C")
    assert trial.exit_status == "aborted"
    interlock = [(level, m) for level, source, m in trial.events if source == "interlock"]
    assert interlock == [("error", "furnace at 105.0 C is above the limit 100 C: aborting to safe state")]
    assert trial.index("furnace at 105.0 C") < trial.index("furnace in safe state")
    assert trial.messages[-1] == "trial aborted: interlock: furnace over 100 C"
    assert not trial.has("program complete")
    # nothing more was sent to the furnace after the poll that tripped: only its safe state
    assert furnace_journal(fake_bench) == ["rate limit 10", "setpoint 110", "safe state", "close"]
    assert fake_bench.furnace.in_safe_state and fake_bench.furnace.setpoint_C == 25.0
    temperature = trial.tables["furnace"]["temperature"]
    assert temperature[-1] > 100.0 and np.all(temperature[:-1] <= 100.0)  # the tripping poll is kept


@pytest.mark.parametrize(
    "fault, reason", [("break_sensor", "interlock: furnace sensor break"), ("raise_alarm", "interlock: furnace alarm")]
)
def test_a_controller_fault_aborts_to_safe_state(run_trial, fake_bench, fault, reason):
    fake_bench.hold_program()
    fake_bench.furnace.at_poll(4, lambda furnace: getattr(furnace, fault)())
    outcome, trial = run_trial(fake_recipe(segments=LONG_DWELL))

    assert (outcome.exit_status, outcome.reason) == ("aborted", reason)
    assert [level for level, source, _ in trial.events if source == "interlock"] == ["error"]
    assert trial.messages[-1] == f"trial aborted: {reason}"
    assert fake_bench.furnace.in_safe_state
    furnace = trial.tables["furnace"]
    assert len(furnace["time"]) == 4 and np.all(np.isfinite(furnace["temperature"][:3]))
    if fault == "break_sensor":  # the controller answers: a bad reading, not a lost instrument
        assert math.isnan(furnace["temperature"][3]) and furnace["flag"][3] == FLAG_READ_FAILED
    else:
        assert furnace["flag"][3] == 0 and furnace["status_word"][3] == 0x0001


def test_the_wall_clock_limit_aborts(run_trial, fake_bench):
    fake_bench.hold_program()  # the program would never end
    outcome, trial = run_trial(fake_recipe(segments=LONG_DWELL, wall_clock_limit_min=0.001))  # 60 ms

    assert (outcome.exit_status, outcome.reason) == ("aborted", "wall-clock limit reached")
    assert trial.has("wall-clock limit 0.001 min reached") and fake_bench.furnace.in_safe_state


# -- a lost instrument ------------------------------------------------------------------------------------------


def test_a_spectrometer_lost_past_the_abort_time_aborts_with_the_reason(run_trial, fake_bench):
    fake_bench.hold_program()
    fake_bench.spectrometer.lose(3)  # never answers again
    outcome, trial = run_trial(fake_recipe(segments=LONG_DWELL, lost_instrument_abort_s=0.05))

    assert (outcome.exit_status, outcome.reason) == ("aborted", "spectrometer lost for more than 0.05 s")
    assert trial.exit_status == "aborted"
    lost = [m for m in trial.messages if m.startswith("spectrometer lost:")]
    assert len(lost) == 1  # one event when the gap opens, not one per retry
    assert (
        trial.index("spectrometer lost:")
        < trial.index("spectrometer lost for more than 0.05 s")
        < trial.index("furnace in safe state")
    )
    assert trial.messages[-1] == "trial aborted: spectrometer lost for more than 0.05 s"
    assert not trial.has("spectrometer answers again")
    assert "reconnect: no answer" in fake_bench.journal.of("spectrometer")  # it tried to reconnect

    flag, counts = trial.tables["spectrometer"]["flag"], trial.tables["spectrometer"]["counts"]
    assert len(flag) >= 3
    assert np.all(flag[:2] == 0) and np.all(np.isfinite(counts[:2]))
    assert np.all(flag[2:] == FLAG_READ_FAILED | FLAG_LOST) and np.all(np.isnan(counts[2:]))
    analysis = trial.tables["analysis"]
    assert len(analysis["time"]) == len(flag) and np.all(np.isnan(analysis["concentration"][2:]))
    assert fake_bench.furnace.in_safe_state


def test_a_spectrometer_that_answers_again_before_the_abort_time_recovers(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(9)
    fake_bench.spectrometer.lose(3, until_spectrum=6)  # spectra 3, 4, 5 get no answer
    outcome, trial = run_trial(fake_recipe(lost_instrument_abort_s=60.0))

    assert (outcome.exit_status, outcome.reason) == ("success", "program complete")
    assert trial.index("spectrometer lost:") < trial.index("spectrometer answers again after")
    assert not trial.has("spectrometer lost for more than")
    flag = trial.tables["spectrometer"]["flag"]
    assert list(flag[:6]) == [0, 0] + [FLAG_READ_FAILED | FLAG_LOST] * 3 + [0]
    assert np.all(flag[5:] == 0) and len(flag) >= 9
    assert np.all(np.isfinite(trial.tables["analysis"]["concentration"][5:]))


def test_a_furnace_lost_past_the_abort_time_aborts_and_its_safe_state_is_reported_as_failed(run_trial, fake_bench):
    fake_bench.furnace.lose(3)
    outcome, trial = run_trial(fake_recipe(segments=LONG_DWELL, lost_instrument_abort_s=0.05))

    # the abort's reason stays; the trial failed because the furnace could not be made safe
    assert (outcome.exit_status, outcome.reason) == ("failed", "furnace lost for more than 0.05 s")
    assert trial.exit_status == "failed"
    assert trial.has("furnace lost:") and trial.has("furnace lost for more than 0.05 s")
    assert trial.has("could not put the furnace in its safe state")
    assert trial.messages[-1] == "trial failed: furnace lost for more than 0.05 s"
    assert "safe state" in fake_bench.journal.of("furnace")  # it was tried
    furnace = trial.tables["furnace"]
    assert np.all(furnace["flag"][:2] == 0)
    assert np.all(furnace["flag"][2:] == FLAG_READ_FAILED | FLAG_LOST) and np.all(np.isnan(furnace["temperature"][2:]))


def test_a_furnace_that_answers_again_before_the_abort_time_recovers(run_trial, fake_bench):
    fake_bench.furnace.lose(3, until_poll=6)
    outcome, trial = run_trial(fake_recipe(lost_instrument_abort_s=60.0))

    assert (outcome.exit_status, outcome.reason) == ("success", "program complete")
    assert trial.index("furnace lost:") < trial.index("furnace answers again after")
    assert not trial.has("furnace lost for more than")
    assert list(trial.tables["furnace"]["flag"][:6]) == [0, 0] + [FLAG_READ_FAILED | FLAG_LOST] * 3 + [0]


# -- saturation policy (recipe [spectrometer] on_saturation: "flag" or "adjust") --------------------------------


def brighten_from(bench, n: int) -> None:
    """From trial spectrum ``n`` on, 1.5 times the light: at 0.02 s the brightest pixels clip, at 0.01 s none."""
    bench.spectrometer.at_spectrum(n, lambda spectrometer: setattr(spectrometer, "brightness", 1.5))


def test_the_schema_knows_two_saturation_policies():
    assert fake_recipe(spectrometer={"on_saturation": "flag"}).spectrometer.on_saturation == "flag"
    assert fake_recipe(spectrometer={"on_saturation": "adjust"}).spectrometer.on_saturation == "adjust"
    with pytest.raises(ValidationError):
        fake_recipe(spectrometer={"on_saturation": "abort"})  # there is no abort on saturation


def test_flag_marks_saturated_spectra_warns_and_keeps_the_integration_time(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(6)
    brighten_from(fake_bench, 3)
    outcome, trial = run_trial(fake_recipe(spectrometer={"on_saturation": "flag"}))

    assert outcome.exit_status == "success"
    spectra = trial.tables["spectrometer"]
    assert np.all(spectra["flag"][:2] == 0) and np.all(spectra["saturated_pixels"][:2] == 0)
    assert np.all(spectra["flag"][2:] == FLAG_SATURATED) and np.all(spectra["saturated_pixels"][2:] > 0)
    warnings = [m for level, source, m in trial.events if source == "spectrometer" and level == "warning"]
    assert len(warnings) == len(spectra["time"]) - 2
    assert all(m.endswith("saturated pixels (masked from the fit)") for m in warnings)
    assert fake_bench.spectrometer.integration_times == [BASE_INTEGRATION_S]  # set once, at startup
    assert np.all(spectra["integration_time"] == BASE_INTEGRATION_S)
    assert len(trial.tables["reference"]["time"]) == 1
    assert np.all(np.isfinite(trial.tables["analysis"]["concentration"]))  # clipped pixels are masked, not fitted


def test_adjust_halves_the_integration_time_takes_a_dark_and_scales_the_reference(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(6)
    brighten_from(fake_bench, 3)
    outcome, trial = run_trial(fake_recipe(spectrometer={"on_saturation": "adjust"}))

    assert outcome.exit_status == "success"
    half = BASE_INTEGRATION_S / 2
    assert fake_bench.spectrometer.integration_times == [BASE_INTEGRATION_S, half]
    spectra = trial.tables["spectrometer"]
    assert list(spectra["flag"][:3]) == [0, 0, FLAG_SATURATED]  # the spectrum that saturated is kept, flagged
    assert np.all(spectra["flag"][3:] == 0) and np.all(spectra["integration_time"][3:] == half)
    assert np.all(spectra["reference_index"][3:] == 1) and np.all(spectra["dark_index"][3:] == 1)
    reference, dark = trial.tables["reference"], trial.tables["dark"]
    assert list(reference["integration_time"]) == [BASE_INTEGRATION_S, half] and len(dark["time"]) == 2
    assert trial.has(
        f"{spectra['saturated_pixels'][2]} saturated pixels: integration time lowered to 0.01 s, "
        "new dark taken, reference scaled"
    )
    truth = [STREAM_G_PER_L["Nd"], STREAM_G_PER_L["Pr"]]  # the analysis stays valid at the new time
    assert np.allclose(trial.tables["analysis"]["concentration"][3:], truth, rtol=0.05)


def test_adjust_lowers_the_integration_time_while_the_blank_is_in_the_cell(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(3)
    outcome, trial = run_trial(fake_recipe(spectrometer={"on_saturation": "adjust", "integration_time_s": 0.04}))

    assert outcome.exit_status == "success"
    assert fake_bench.spectrometer.integration_times == [0.04, 0.02]
    assert trial.has("the blank saturated at 0.04 s: integration time lowered to 0.02 s")
    assert list(trial.tables["reference"]["integration_time"]) == [0.02]
    assert np.all(trial.tables["spectrometer"]["flag"] == 0)


def test_adjust_at_the_shortest_integration_time_only_warns(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(5)
    brighten_from(fake_bench, 3)
    station = fake_station(min_integration_time_s=BASE_INTEGRATION_S)
    outcome, trial = run_trial(fake_recipe(spectrometer={"on_saturation": "adjust"}), station)

    assert outcome.exit_status == "success"
    assert fake_bench.spectrometer.integration_times == [BASE_INTEGRATION_S]
    assert trial.has(
        f"{trial.tables['spectrometer']['saturated_pixels'][2]} saturated pixels at the shortest integration time"
    )
    assert np.all(trial.tables["spectrometer"]["flag"][2:] == FLAG_SATURATED)
    assert len(trial.tables["reference"]["time"]) == 1


# -- shutdown order ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["success", "aborted"])
def test_the_furnace_is_made_safe_before_the_file_is_closed(run_trial, fake_bench, monkeypatch, ending):
    journal_writer_close(monkeypatch, fake_bench.journal)
    recipe = fake_recipe(segments=((10.0, 110.0, 1.0),), abort_above_C=100.0 if ending == "aborted" else None)
    outcome, trial = run_trial(recipe)

    assert outcome.exit_status == ending
    entries = fake_bench.journal.entries
    assert entries.count(("furnace", "safe state")) == 1
    assert (
        fake_bench.journal.index("furnace", "safe state")
        < fake_bench.journal.index("furnace", "close")
        < fake_bench.journal.index("file", f"close {ending}")
    )
    assert entries[-1] == ("file", f"close {ending}")  # closed once, last
    # the file says how it ended and why, after the safe state
    assert trial.exit_status == ending and trial.end_time
    assert trial.index("furnace in safe state") < len(trial.messages) - 1
    assert trial.messages[-1] == f"trial {ending}: {outcome.reason}"


def test_a_stuck_spectrometer_does_not_delay_the_furnace_safe_state(run_trial, fake_bench, monkeypatch):
    journal_writer_close(monkeypatch, fake_bench.journal)
    released = threading.Event()
    fake_bench.furnace.on_safe_state.append(released.set)

    def hang_and_overheat(spectrometer):
        fake_bench.furnace.overshoot_C = 1200.0  # the next poll trips the station's 1100 C interlock
        released.wait(timeout=5.0)  # a spectrometer stuck in its timeout (released by the safe state)
        fake_bench.journal.add("spectrometer", "released")

    fake_bench.hold_program()
    fake_bench.spectrometer.at_spectrum(3, hang_and_overheat)
    outcome, trial = run_trial(fake_recipe(segments=LONG_DWELL))

    assert (outcome.exit_status, outcome.reason) == ("aborted", "interlock: furnace over 1100 C")
    journal = fake_bench.journal
    # the furnace went safe while the spectrometer was still stuck; the file was closed after both
    assert (
        journal.index("furnace", "safe state")
        < journal.index("spectrometer", "released")
        < journal.index("file", "close aborted")
    )


# -- a stop request ---------------------------------------------------------------------------------------------


def test_a_stop_request_ends_the_trial_as_aborted_keeping_everything_recorded(fake_runner, fake_bench):
    fake_bench.hold_program()
    runner = fake_runner(fake_recipe(segments=LONG_DWELL))
    fake_bench.spectrometer.at_spectrum(5, lambda _: runner.request_abort("stopped by the operator"))
    outcome = runner.run()
    trial = read_trial(outcome.path)

    assert (outcome.exit_status, outcome.reason) == ("aborted", "stopped by the operator")
    assert trial.exit_status == "aborted" and trial.end_time
    assert trial.messages[-1] == "trial aborted: stopped by the operator"
    assert trial.messages[0].startswith(f"trial {outcome.trial_id} started")
    for table in ("furnace", "spectrometer", "analysis", "dark", "reference"):
        assert len(trial.tables[table]["time"]) == outcome.rows[table], table
    assert outcome.rows["spectrometer"] >= 5 and outcome.rows["analysis"] == outcome.rows["spectrometer"]
    assert outcome.rows["furnace"] >= 1
    assert np.all(trial.tables["spectrometer"]["flag"] == 0)
    assert np.all(np.isfinite(trial.tables["analysis"]["concentration"]))
    assert fake_bench.furnace.in_safe_state


def test_ctrl_c_stops_the_trial_as_aborted_and_restores_the_signal_handler(fake_runner, fake_bench):
    before = signal.getsignal(signal.SIGINT)
    fake_bench.hold_program()
    runner = fake_runner(fake_recipe(segments=LONG_DWELL), handle_signals=True)
    fake_bench.spectrometer.at_spectrum(3, lambda _: signal.raise_signal(signal.SIGINT))
    outcome = runner.run()

    assert (outcome.exit_status, outcome.reason) == ("aborted", "stopped by SIGINT")
    assert read_trial(outcome.path).exit_status == "aborted"
    assert fake_bench.furnace.in_safe_state
    assert signal.getsignal(signal.SIGINT) is before


def test_a_refused_dark_mid_trial_keeps_the_last_good_dark_and_the_trial_goes_on(run_trial, fake_bench):
    fake_bench.hold_program_until_spectrum(8)
    fake_bench.spectrometer.at_spectrum(3, lambda s: setattr(s, "light_not_blocked", True))
    outcome, trial = run_trial(fake_recipe(spectrometer={"dark": "every", "dark_every_n": 2}))

    assert (outcome.exit_status, outcome.reason) == ("success", "program complete")
    refused = [m for m in trial.messages if m.startswith("dark refused, the previous one stays")]
    assert refused and "still shows the light" in refused[0]
    darks = fake_bench.journal.of("spectrometer").count("dark")
    assert len(trial.tables["dark"]["time"]) == darks  # only darks that were taken are stored
    flag = trial.tables["spectrometer"]["flag"]
    assert np.all(flag & (FLAG_READ_FAILED | FLAG_LOST) == 0)  # no spectrum lost to a refused dark
