"""Simulated furnace physics and controller (drivers/sim/_furnace_plant.py), no I/O."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.sim._furnace_plant import FurnaceModel, PlantParams


def test_full_power_settles_at_ambient_plus_gain():
    model = FurnaceModel()
    model.set_manual(True)
    model.manual_output_percent = 100.0
    model.advance(10 * model.plant.tau_s)
    assert model.temperature_C == pytest.approx(20.0 + 12.8 * 100, abs=1.0)


def test_dead_time_delays_the_response_to_heat():
    model = FurnaceModel(PlantParams(dead_time_s=30.0))
    model.set_manual(True)
    model.manual_output_percent = 50.0
    model.advance(29.0)
    assert model.temperature_C == 20.0
    model.advance(40.0)
    assert model.temperature_C > 20.0


def test_working_setpoint_ramps_at_the_rate_limit_and_program_completes():
    model = FurnaceModel()
    model.set_rate_limit(10.0)
    model.set_remote_setpoint(300.0)
    assert model.program == "run"
    model.advance(60.0)
    assert model.working_setpoint_C == pytest.approx(30.0)
    assert not model.flags()["program_end"]
    model.advance(28 * 60.0)
    assert model.working_setpoint_C == 300.0
    assert model.program == "complete" and model.flags()["program_end"]


def test_rate_limit_off_steps_the_working_setpoint():
    model = FurnaceModel()
    model.set_remote_setpoint(500.0)
    model.advance(1.0)
    assert model.working_setpoint_C == 500.0 and model.program == "reset"


def test_pid_holds_the_setpoint_with_output_inside_its_limits():
    model = FurnaceModel()
    model.set_rate_limit(10.0)
    model.set_remote_setpoint(450.0)
    outputs = []
    for second in range(0, 4 * 3600, 10):
        model.advance(second)
        outputs.append(model.output_percent)
    assert model.temperature_C == pytest.approx(450.0, abs=0.5)
    assert min(outputs) >= 0.0 and max(outputs) <= 100.0
    assert 0.0 < model.output_percent < 100.0


def test_sensor_break_reads_upscale_cuts_output_and_sets_flags():
    model = FurnaceModel()
    model.set_remote_setpoint(300.0)
    model.advance(600.0)
    model.sensor_break = True
    model.advance(601.0)
    flags = model.flags()
    assert model.output_percent == 0.0 and model.pv_C == 1372.0
    assert flags["sensor_break"] and flags["alarm_1"]


def test_manual_mode_is_bumpless_and_flagged():
    model = FurnaceModel()
    model.set_remote_setpoint(300.0)
    model.advance(300.0)
    before = model.output_percent
    model.set_manual(True)
    model.set_remote_setpoint(20.0)
    model.advance(400.0)
    assert model.output_percent == before and model.flags()["manual"]


def test_failed_heater_gives_loop_break_and_heater_fail():
    model = FurnaceModel()
    model.heater_failed = True
    model.set_remote_setpoint(800.0)
    model.advance(model.loop_break_s + 5.0)
    flags = model.flags()
    assert flags["loop_break"] and flags["heater_fail"]


def test_deviation_alarm_when_pv_is_far_above_working_setpoint():
    model = FurnaceModel()
    model.set_remote_setpoint(450.0)
    model.advance(3 * 3600.0)
    assert not model.flags()["alarm_2"]
    model.set_remote_setpoint(20.0)  # rate limit off: the working SP steps down
    model.advance(3 * 3600.0 + 1)
    assert model.flags()["alarm_2"]


def test_only_local_setpoint_writes_count_as_eeprom_writes():
    model = FurnaceModel()
    for value in (100.0, 200.0, 300.0):
        model.set_remote_setpoint(value)
    model.set_local_setpoint(50.0)
    assert model.eeprom_writes == 1
    assert model.target_setpoint_C == 300.0  # the comms SP stays active


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.5, 50.0), target=st.floats(25.0, 1200.0), minutes=st.floats(0.0, 120.0))
def test_working_setpoint_never_moves_faster_than_the_rate(rate, target, minutes):
    model = FurnaceModel()
    model.set_rate_limit(rate)
    model.set_remote_setpoint(target)
    model.advance(minutes * 60.0)
    expected = min(target, 20.0 + rate * minutes)
    assert model.working_setpoint_C == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert math.isfinite(model.temperature_C)


# -- the controller's own programmer and comms watchdog (issue 15) ------------------------------------
def _program(model: FurnaceModel, *segments: dict) -> None:
    for number, fields in enumerate(segments, start=1):
        for name, value in fields.items():
            model.programmer.set_field(number, name, value)


def test_the_programmer_runs_ramp_dwell_and_a_last_ramp_to_the_safe_setpoint_then_dwells_there():
    model = FurnaceModel()
    rate, dwell, end = 1, 3, 0  # the 2400 map's segment types
    _program(
        model,
        {"type": rate, "target": 200.0, "time_or_rate": 10.0},
        {"type": dwell, "time_or_rate": 30.0},
        {"type": rate, "target": 25.0, "time_or_rate": 5.0},
        {"type": end, "end_type": 0},
    )
    model.run_program()
    model.advance(60.0 * 10)  # 10 min at 10 C/min from 20 C
    assert model.programmer.segment == 1 and model.working_setpoint_C == pytest.approx(120.0)
    model.advance(60.0 * (18 + 30))  # to 200 C, then the dwell
    assert model.programmer.segment == 3
    model.advance(60.0 * (18 + 30 + 40))  # 175 C down at 5 C/min: 35 min
    assert model.programmer.state == "complete" and model.target_setpoint_C == 25.0
    assert model.working_setpoint_C == 25.0 and model.flags()["program_end"]
    model.advance(60.0 * 600)  # and it stays there
    assert model.working_setpoint_C == 25.0


def test_a_reset_programmer_hands_back_to_the_remote_setpoint():
    model = FurnaceModel()
    model.set_remote_setpoint(30.0)
    _program(model, {"type": 1, "target": 500.0, "time_or_rate": 10.0}, {"type": 0, "end_type": 0})
    model.run_program()
    model.advance(600.0)
    assert model.target_setpoint_C == pytest.approx(120.0)
    model.reset_program()
    assert model.programmer.state == "reset" and model.target_setpoint_C == 30.0


def test_the_watchdog_trips_after_its_timeout_without_requests_and_falls_back_to_sp2():
    model = FurnaceModel()
    model.remote_selected = True
    model.set_remote_setpoint(900.0)
    model.set_setpoint_2(25.0)
    model.watchdog.arm(10.0, now_s=100.0)
    model.comms_request(105.0)
    model.watch_comms(114.0)  # 9 s after the last request
    assert not model.watchdog.tripped and model.target_setpoint_C == 900.0
    model.watch_comms(115.0)
    assert model.watchdog.tripped and not model.remote_selected and model.target_setpoint_C == 25.0
    model.comms_request(116.0)  # comms back: it stays on the fallback until re-armed
    assert model.target_setpoint_C == 25.0


def test_the_fallback_ramps_down_at_the_down_rate_where_the_controller_has_one():
    model = FurnaceModel()
    model.working_setpoint_C = 500.0
    model.rate_down_C_per_min, model.rate_limit_C_per_min = 10.0, 2.0
    model.set_setpoint_2(25.0)
    model.sp2_selected = True
    model.advance(60.0)
    assert model.working_setpoint_C == pytest.approx(490.0)  # 10 C/min down, not the 2 C/min up rate
