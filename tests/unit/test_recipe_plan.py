"""A recipe resolved against a station of named instruments: zones with offsets, streams, sensor limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from daq.config import ConfigError, check_recipe_against_station, load_recipe, load_station

ROOT = Path(__file__).resolve().parents[2]
CASCADE = (ROOT / "seeds/recipes/cascade.toml").read_text()
STATION = load_station(ROOT / "hardware/stations/sim-cascade.toml")


def plan_of(tmp_path: Path, text: str):
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return check_recipe_against_station(load_recipe(path), STATION)


def test_every_zone_runs_the_program_moved_by_its_offset_and_each_stream_has_its_target(tmp_path):
    plan = plan_of(tmp_path, CASCADE)
    targets = {zone.controller.name: [s.target_C for s in zone.program.segments] for zone in plan.zones}
    assert targets == {"zone-1": [125.0, 815.0], "zone-2": [110.0, 800.0], "zone-3": [125.0, 815.0]}
    assert all(zone.program.cool_to_C == 25.0 for zone in plan.zones)  # the cool-down is not moved
    assert [zone.primary for zone in plan.zones] == [True, False, False]
    assert [(s.spectrometer.name, s.target, s.primary) for s in plan.streams] == [
        ("feed", "Nd", True),
        ("raffinate", "Pr", False),
        ("strip", "Nd", False),
    ]
    assert all(s.schedule.interval_s == 60.0 and s.analytes[0] == "Nd" for s in plan.streams)
    assert [(limit.sensor.name, limit.limit.channel) for limit in plan.limits] == [("feed-ph", "pH")]
    assert [sensor.name for sensor in plan.sensors] == ["feed-ph"]


def test_a_stream_may_set_its_own_schedule(tmp_path):
    text = CASCADE.replace('target = "Pr"\n', 'target = "Pr"\ninterval_s = 30.0\naverages = 64\n')
    raffinate = plan_of(tmp_path, text).streams[1]
    assert (raffinate.schedule.interval_s, raffinate.schedule.averages) == (30.0, 64)
    assert raffinate.schedule.integration_time_s == 0.02  # the rest from [spectrometer]


def test_without_zones_the_program_runs_on_every_controller(tmp_path):
    plan = plan_of(tmp_path, CASCADE.replace('zones = ["zone-1", "zone-2", "zone-3"]\n', ""))
    assert [zone.controller.name for zone in plan.zones] == ["zone-1", "zone-2", "zone-3"]


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            'zones = ["zone-1", "zone-2", "zone-3"]',
            'zones = ["zone-1", "zone-4"]',
            [
                "furnace.zones: 'zone-4' is not a temperature controller of station",
                "(zone-1, zone-2, zone-3)",
            ],
        ),
        (
            'zones = ["zone-1", "zone-2", "zone-3"]',
            'zones = ["zone-1", "zone-2"]',
            ["furnace.offset_C.zone-3: 'zone-3' does not run the program (furnace.zones: zone-1, zone-2)"],
        ),
        ("zone-3 = 15.0", "zone-3 = 300.0", ["furnace.offset_C.zone-3", "less than or equal to 200"]),
        (
            'spectrometer = "strip"',
            'spectrometer = "product"',
            ["stream[2].spectrometer: 'product' is not a spectrometer of station", "(feed, raffinate, strip)"],
        ),
        ('spectrometer = "strip"', 'spectrometer = "raffinate"', ["stream[2].spectrometer: 'raffinate' has a stream"]),
        ('target = "Pr"', 'target = "La"', ["stream[1].target: 'La' is not among analytes"]),
        (
            'instrument = "feed-ph"',
            'instrument = "zone-1"',
            ["limit[0].instrument: 'zone-1' is not a sensor of station", "(feed-ph)"],
        ),
        (
            'channel = "pH"',
            'channel = "ORP"',
            ["limit[0].channel: feed-ph (ph-transmitter) has no channel 'ORP' (temperature_C, pH, electrode_mV)"],
        ),
        ("min = 1.2", "min = 2.5", ["limit[0].min: 2.5 must be below limit[0].max 1.9"]),
        ("min = 1.2\nmax = 1.9\n", "", ["limit[0].max: a limit needs min, max or both"]),
        ('action = "abort"', 'action = "shrug"', ["limit[0].action", "'abort' or 'warn'"]),
        (
            "interval_s = 60.0",
            "interval_s = 60.0\n\n[[stream]]\nspectrometer = 'feed'\nx = 1\n",
            ["stream[0].x: unknown field"],
        ),
    ],
)
def test_each_mistake_names_the_recipe_field(tmp_path, old, new, words):
    assert old in CASCADE
    with pytest.raises(ConfigError) as caught:
        plan_of(tmp_path, CASCADE.replace(old, new, 1))
    for word in words:
        assert word in str(caught.value)


def test_a_zone_offset_that_takes_a_target_above_the_zones_maximum_is_refused(tmp_path):
    with pytest.raises(ConfigError) as caught:
        plan_of(tmp_path, CASCADE.replace("target_C = 800.0", "target_C = 1090.0"))
    assert caught.value.problems == [
        "furnace.segments[1].target_C: 1105 C on zone-1 (with its offset +15 C) is above the station's "
        f"instrument[zone-1].max_temperature_C 1100 C ({STATION.source})",
        "furnace.segments[1].target_C: 1105 C on zone-3 (with its offset +15 C) is above the station's "
        f"instrument[zone-3].max_temperature_C 1100 C ({STATION.source})",
    ]


def test_streams_need_the_schedule_they_default_to(tmp_path):
    start = CASCADE.index("[spectrometer]")
    end = CASCADE.index("[[stream]]")
    with pytest.raises(ConfigError, match=r"spectrometer: \[\[stream\]\] tables need a \[spectrometer\] schedule"):
        plan_of(tmp_path, CASCADE[:start] + CASCADE[end:])
