"""In-process fake instruments for unit tests of :class:`daq.runner.TrialRunner` and its furnace program.

The fakes have the interface the runner uses of :class:`drivers.Eurotherm` and
:class:`drivers.ScpiSpectrometer` (and raise the drivers' errors: ``NotConnected``
for an instrument that stops answering, ``LimitError`` for a value outside the
limits), but no wire protocol, no simulator process and no timing of their own:
a test scripts what they do, poll by poll and spectrum by spectrum.

- :class:`FakeFurnace`: the controller ramps its working setpoint towards the
  setpoint by ``ramp_C_per_poll`` each poll; the PV follows the working setpoint
  (plus ``overshoot_C``). :meth:`FakeFurnace.at_poll` runs an action just before
  poll *n* is answered: lose the line, overshoot, break the sensor, raise an alarm.
- :class:`FakeSpectrometer`: spectra of the closed-form bench of
  :mod:`_trial_factory` (256 pixels, 350-1000 nm, Nd/Pr bands), light scaled by
  the integration time and ``brightness``, clipped at full scale. The cell holds
  the blank until the runner starts the process stream (``SIM:SCEN:STAR``, sent by
  the runner's ``SimulatedCell`` when the recipe names a scenario), then a steady
  stream of ``stream_g_per_L``. :meth:`FakeSpectrometer.at_spectrum` runs an
  action before trial spectrum *n* (the *n*-th acquisition of the stream).
- :class:`FakeBench`: both, and the ``bench_factory`` the runner is given;
  every call that matters is written to one :class:`Journal`, so a test can check
  the order of things across instruments and threads (and the trial file's close,
  with :func:`journal_writer_close`).

:func:`fake_station` and :func:`fake_recipe` make a simulated station (so the
runner uses the station's clock speed and the simulated cell: nothing waits for
an operator) with a clock 10 000 times real time: a 10-experiment-second
spectrum interval is 1 ms of wall time, one dwell minute 6 ms.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _trial_factory import ANALYTES, FULL_SCALE, PIXELS, SyntheticBench

from daq.bench import Bench
from daq.config import FurnaceConfig, Recipe, SpectrometerConfig, Station
from daq.runner import RunOptions, TrialRunner
from daq.store import TrialWriter
from drivers import DarkNotDark, LimitError, NotConnected
from drivers.eurotherm import FurnaceReading, FurnaceStatus

__all__ = [
    "FakeBench",
    "FakeMultiBench",
    "FakeSensor",
    "fake_multi_station",
    "FakeFurnace",
    "FakeSpectrometer",
    "Journal",
    "TrialFile",
    "fake_recipe",
    "fake_station",
    "journal_writer_close",
    "make_runner",
    "read_trial",
    "BASE_INTEGRATION_S",
    "SPEED",
    "STREAM_G_PER_L",
]

SPEED = 10000.0  # the highest simulation_speed a station may have
BASE_INTEGRATION_S = 0.02  # the blank peaks near 54 400 counts (of 65 535) at this integration time
STREAM_G_PER_L = {"Nd": 10.0, "Pr": 2.0}
STEADY_SCENARIO = "nd-product-995"  # named only so the runner starts the stream; the fake plays its own


class Journal:
    """What the instruments (and the trial file) were asked to do, in order, from any thread."""

    def __init__(self):
        self._entries: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def add(self, source: str, what: str) -> None:
        with self._lock:
            self._entries.append((source, what))

    @property
    def entries(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._entries)

    def index(self, source: str, what: str) -> int:
        """Position of the first entry ``(source, what)``; ValueError if there is none."""
        return self.entries.index((source, what))

    def of(self, source: str) -> list[str]:
        return [what for s, what in self.entries if s == source]


Action = Callable[[object], None]


class _Scripted:
    def __init__(self):
        self._script: dict[int, list[Action]] = {}

    def _at(self, n: int, action: Action) -> None:
        self._script.setdefault(int(n), []).append(action)

    def _play(self, n: int) -> None:
        for action in self._script.pop(n, []):
            action(self)


class FakeFurnace(_Scripted):
    """A furnace controller with the runner's view of :class:`drivers.Eurotherm`."""

    ident = "Eurotherm 2408 (fake, in-process)"

    def __init__(
        self,
        journal: Journal,
        *,
        temperature_C: float = 25.0,
        ramp_C_per_poll: float = 5.0,
        max_temperature_C: float = 1100.0,
        max_rate_C_per_min: float = 10.0,
        safe_setpoint_C: float = 25.0,
    ):
        super().__init__()
        self.journal = journal
        self.max_temperature_C, self.max_rate_C_per_min = max_temperature_C, max_rate_C_per_min
        self.safe_setpoint_C = safe_setpoint_C
        self.setpoint_C = self.working_setpoint_C = temperature_C
        self.ramp_C_per_poll = ramp_C_per_poll
        self.rate_limit_C_per_min = 0.0
        self.overshoot_C = 0.0
        self.status = FurnaceStatus(raw=0)
        self.lost = False
        self.polls = 0
        self.in_safe_state = False
        self.on_safe_state: list[Callable[[], None]] = []

    # -- scripting ------------------------------------------------------------------------
    def at_poll(self, n: int, action: Callable[[FakeFurnace], None]) -> None:
        """Run ``action(furnace)`` just before poll ``n`` (1-based, counting polls that got no answer)."""
        self._at(n, action)

    def lose(self, from_poll: int, until_poll: int | None = None) -> None:
        """No answer from poll ``from_poll`` on, until poll ``until_poll`` (None: never again)."""
        self.at_poll(from_poll, lambda f: setattr(f, "lost", True))
        if until_poll is not None:
            self.at_poll(until_poll, lambda f: setattr(f, "lost", False))

    def break_sensor(self) -> None:
        self.status = FurnaceStatus(raw=0x0020, sensor_break=True)

    def raise_alarm(self) -> None:
        self.status = FurnaceStatus(raw=0x0001, alarm_1=True)

    # -- the driver's interface -------------------------------------------------------------
    def _answer(self, what: str) -> None:
        if self.lost:
            self.journal.add("furnace", f"{what}: no answer")
            raise NotConnected(f"fake furnace: no answer to {what}")

    @property
    def temperature_C(self) -> float:
        return self.working_setpoint_C + self.overshoot_C

    def read_all(self) -> FurnaceReading:
        self.polls += 1
        self._play(self.polls)
        self._answer("read_all")
        step = self.setpoint_C - self.working_setpoint_C
        self.working_setpoint_C += math.copysign(min(abs(step), self.ramp_C_per_poll), step)
        pv_valid = not (self.status.sensor_break or self.status.pv_out_of_range)
        return FurnaceReading(
            self.temperature_C if pv_valid else math.nan, self.setpoint_C, self.working_setpoint_C, 40.0, self.status
        )

    def set_rate_limit(self, value_C_per_min: float) -> None:
        if not 0 < value_C_per_min <= self.max_rate_C_per_min:
            raise LimitError(f"rate limit {value_C_per_min:g} C/min outside 0-{self.max_rate_C_per_min:g}")
        self._answer("set_rate_limit")
        self.rate_limit_C_per_min = float(value_C_per_min)
        self.journal.add("furnace", f"rate limit {value_C_per_min:g}")

    def set_setpoint(self, value_C: float) -> None:
        if not 0 <= value_C <= self.max_temperature_C:
            raise LimitError(f"setpoint {value_C:g} C outside 0-{self.max_temperature_C:g}")
        if not 0 < self.rate_limit_C_per_min <= self.max_rate_C_per_min:
            raise LimitError("rate limit off or above the maximum: set it first")
        self._answer("set_setpoint")
        self.setpoint_C = float(value_C)
        self.journal.add("furnace", f"setpoint {value_C:g}")

    def safe_state(self) -> None:
        self.journal.add("furnace", "safe state")
        self._answer("safe_state")
        self.rate_limit_C_per_min = self.max_rate_C_per_min
        self.setpoint_C = self.safe_setpoint_C
        self.in_safe_state = True
        for callback in self.on_safe_state:
            callback()

    def reconnect(self) -> None:
        self._answer("reconnect")

    def close(self) -> None:
        self.journal.add("furnace", "close")


class FakeSpectrometer(_Scripted):
    """A flow-cell spectrometer with the runner's view of :class:`drivers.ScpiSpectrometer`."""

    ident = "FAKE,UV-VIS-NIR,0,in-process"
    recorded_attributes = {"driver": "fake", "dark_method": "shutter"}

    def __init__(
        self,
        journal: Journal,
        *,
        pixels: int = PIXELS,
        stream_g_per_L: dict | None = None,
        min_integration_time_s: float = 0.001,
        max_integration_time_s: float = 10.0,
        seed: int = 5,
    ):
        super().__init__()
        self.journal = journal
        self._model = SyntheticBench(pixels)
        self._rng = np.random.default_rng(seed)
        self.min_integration_time_s, self.max_integration_time_s = min_integration_time_s, max_integration_time_s
        self.full_scale_counts = FULL_SCALE
        self.stream_g_per_L = dict(STREAM_G_PER_L if stream_g_per_L is None else stream_g_per_L)
        self.brightness = 1.0
        self.lost = False
        self.light_not_blocked = False  # True: every dark is refused (a lamp whose TTL line is not wired)
        self.in_cell = "nothing"
        self.commands: list[str] = []
        self.integration_times: list[float] = []  # every value set, in order
        self._integration_time_s = BASE_INTEGRATION_S
        self._averages = 1
        self.spectra = 0  # acquisitions of the process stream

    # -- scripting ------------------------------------------------------------------------
    def at_spectrum(self, n: int, action: Callable[[FakeSpectrometer], None]) -> None:
        """Run ``action(spectrometer)`` before trial spectrum ``n`` (1-based, after the stream started)."""
        self._at(n, action)

    def lose(self, from_spectrum: int, until_spectrum: int | None = None) -> None:
        """No answer from spectrum ``from_spectrum`` on, until ``until_spectrum`` (None: never again)."""
        self.at_spectrum(from_spectrum, lambda s: setattr(s, "lost", True))
        if until_spectrum is not None:
            self.at_spectrum(until_spectrum, lambda s: setattr(s, "lost", False))

    # -- the driver's interface -------------------------------------------------------------
    def _answer(self, what: str) -> None:
        if self.lost:
            self.journal.add("spectrometer", f"{what}: no answer")
            raise NotConnected(f"fake spectrometer: no answer to {what}")

    @property
    def wavelengths_nm(self) -> np.ndarray:
        return self._model.wavelength.copy()

    @property
    def pixels(self) -> int:
        return self._model.wavelength.size

    @property
    def integration_time_s(self) -> float:
        return self._integration_time_s

    @integration_time_s.setter
    def integration_time_s(self, seconds: float) -> None:
        if not self.min_integration_time_s <= seconds <= self.max_integration_time_s:
            raise LimitError(f"integration time {seconds!r} s outside the limits")
        self._answer("integration time")
        self._integration_time_s = float(seconds)
        self.integration_times.append(float(seconds))
        self.journal.add("spectrometer", f"integration time {seconds:g}")

    @property
    def averages(self) -> int:
        return self._averages

    @averages.setter
    def averages(self, count: int) -> None:
        self._answer("averages")
        self._averages = int(count)

    def write(self, command: str) -> None:
        self._answer(command)
        self.commands.append(command)
        if command == "SIM:STAN":
            self.in_cell = "blank"
        elif command == "SIM:SCEN:STAR":
            self.in_cell = "stream"

    def dark(self) -> np.ndarray:
        self._answer("dark")
        if self.light_not_blocked:
            self.journal.add("spectrometer", "dark refused")
            raise DarkNotDark("fake spectrometer: the dark still shows the light; the dark was not kept")
        self.journal.add("spectrometer", "dark")
        noise = self._rng.normal(0.0, 2.0, self.pixels)
        return (self._model.dark + noise).astype(float)

    def acquire(self) -> np.ndarray:
        if self.in_cell == "stream":
            self.spectra += 1
            self._play(self.spectra)
        self._answer("acquire")
        model = self._model
        absorbance = np.zeros(self.pixels)
        if self.in_cell == "stream":
            x = (model.wavelength - model.wavelength.mean()) / np.ptp(model.wavelength) * 2
            concentration = np.array([self.stream_g_per_L.get(a, 0.0) for a in ANALYTES])
            absorbance = concentration @ model.sensitivity + 0.01 + 0.004 * x + 0.003 * x**2
        light = (
            (model.reference - model.dark)
            * self.brightness
            * self._integration_time_s
            / BASE_INTEGRATION_S
            * 10.0 ** (-absorbance)
        )
        noise = self._rng.normal(0.0, 1.0, self.pixels) * np.sqrt(np.maximum(light, 1.0)) * 0.3
        counts = np.minimum(model.dark + light + noise, self.full_scale_counts)
        if self.in_cell == "stream":
            self.journal.add("spectrometer", f"spectrum {self.spectra}")
        return counts

    def saturated(self, counts: np.ndarray, margin_counts: float = 0.0) -> np.ndarray:
        return np.asarray(counts) >= self.full_scale_counts - margin_counts

    def reconnect(self) -> None:
        self._answer("reconnect")

    def close(self) -> None:
        self.journal.add("spectrometer", "close")


class FakeSensor(_Scripted):
    """A Modbus sensor with the runner's view of :class:`drivers.ModbusSensor`: ``values`` per channel
    (a test changes them, or scripts changes with :meth:`at_read`); ``states`` per channel (default ok)."""

    def __init__(self, journal: Journal, name: str, channels: dict[str, str], values: dict[str, float]):
        super().__init__()
        self.journal, self.name = journal, name
        self.identity = f"fake sensor {name} (in-process)"
        self.channels = dict(channels)  # name -> units
        self.values = dict(values)
        self.states = {channel: "ok" for channel in channels}
        self.reads = 0
        self.lost = False

    def at_read(self, n: int, action: Callable[[FakeSensor], None]) -> None:
        """Run ``action(sensor)`` before read ``n`` (1-based) is answered."""
        self._at(n, action)

    def read(self):
        from drivers import ChannelReading, SensorReading

        self.reads += 1
        self._play(self.reads)
        if self.lost:
            self.journal.add(self.name, "no answer")
            raise NotConnected(f"fake sensor {self.name}: no answer")
        channels = {
            name: ChannelReading(
                self.values[name] if self.states[name] == "ok" else math.nan,
                units,
                self.states[name],  # type: ignore[arg-type]
            )
            for name, units in self.channels.items()
        }
        return SensorReading(channels)

    def reconnect(self) -> None:
        if self.lost:
            raise NotConnected(f"fake sensor {self.name}: no answer")

    def close(self) -> None:
        self.journal.add(self.name, "close")


class FakeMultiBench:
    """Several fake furnace zones, spectrometers and sensors by name, and the ``bench_factory`` for them.

    Every fake writes to one journal, each under its instrument's name.
    """

    def __init__(self, zones: tuple[str, ...], spectrometers: tuple[str, ...], sensors: dict[str, dict[str, float]]):
        self.journal = Journal()
        self.zones = {name: FakeFurnace(self.journal) for name in zones}
        for name, zone in self.zones.items():
            zone.journal = _Named(self.journal, name)
        self.spectrometers = {name: FakeSpectrometer(_Named(self.journal, name)) for name in spectrometers}
        self.sensors = {
            name: FakeSensor(self.journal, name, {channel: "1" for channel in values}, values)
            for name, values in sensors.items()
        }
        self.opened: list[Station] = []

    def __call__(self, station: Station, *, scenario: Path | None = None) -> Bench:
        self.opened.append(station)
        first_zone = next(iter(self.zones.values()), None)
        first_spectrometer = next(iter(self.spectrometers.values()), None)
        return Bench(
            station,
            furnace=first_zone,
            spectrometer=first_spectrometer,
            scenario=scenario,
            sim_control=first_spectrometer,
            controllers=dict(self.zones),
            spectrometers=dict(self.spectrometers),
            sensors=dict(self.sensors),
            sim_controls=dict(self.spectrometers),
        )


class _Named:
    """A journal that files every entry under one instrument's name."""

    def __init__(self, journal: Journal, name: str):
        self._journal, self._name = journal, name

    def add(self, _source: str, what: str) -> None:
        self._journal.add(self._name, what)


def fake_multi_station(
    zones: tuple[str, ...], spectrometers: tuple[str, ...], sensors: tuple[str, ...], speed: float = SPEED
) -> Station:
    """A simulated station of named instruments (zones on one bus, sensors of the pH map) the fakes play."""
    from daq.config import ConnectionConfig, SensorConfig

    bus = ConnectionConfig(name="bus", simulated=True)
    instruments: list = [
        FurnaceConfig(
            name=name,
            where=f"instrument[{name}]",
            simulated=True,
            connection="bus",
            address=index + 1,
            max_temperature_C=1100.0,
            max_ramp_C_per_min=10.0,
            poll_interval_s=0.001,
        )
        for index, name in enumerate(zones)
    ]
    instruments += [
        SpectrometerConfig(
            name=name,
            where=f"instrument[{name}]",
            simulated=True,
            pixels=PIXELS,
            max_integration_time_s=10.0,
            max_averages=1000,
        )
        for name in spectrometers
    ]
    instruments += [
        SensorConfig(
            name=name,
            where=f"instrument[{name}]",
            simulated=True,
            connection="bus",
            address=100 + index,
            map="ph-transmitter",
            poll_interval_s=0.001,
        )
        for index, name in enumerate(sensors)
    ]
    return Station(name="fake-multi", simulation_speed=speed, connections=(bus,), instruments=tuple(instruments))


class FakeBench:
    """A fake furnace and spectrometer, and the ``bench_factory`` that hands them to the runner."""

    def __init__(self, *, furnace: bool = True, spectrometer: bool = True, **spectrometer_options):
        self.journal = Journal()
        self.furnace = FakeFurnace(self.journal) if furnace else None
        self.spectrometer = FakeSpectrometer(self.journal, **spectrometer_options) if spectrometer else None
        self.opened: list[Station] = []

    def __call__(self, station: Station, *, scenario: Path | None = None) -> Bench:
        self.opened.append(station)
        return Bench(
            station,
            furnace=self.furnace,
            spectrometer=self.spectrometer,
            scenario=scenario,
            sim_control=self.spectrometer,
        )

    def hold_program_until_spectrum(self, n: int) -> None:
        """The furnace stays where it is (the program waits in its first ramp) until trial spectrum ``n``.

        Then it reaches each target on the next poll, so the program ends soon after: a trial with this
        takes at least ``n`` spectra, whatever the threads' timing.
        """
        self.furnace.ramp_C_per_poll = 0.0
        self.spectrometer.at_spectrum(n, lambda _: setattr(self.furnace, "ramp_C_per_poll", math.inf))

    def hold_program(self) -> None:
        """The furnace never reaches its first target: the trial ends only by an abort (or its wall-clock limit)."""
        self.furnace.ramp_C_per_poll = 0.0


def fake_station(
    *,
    furnace: bool = True,
    spectrometer: bool = True,
    poll_interval_s: float = 0.001,
    max_temperature_C: float = 1100.0,
    min_integration_time_s: float = 0.001,
    speed: float = SPEED,
) -> Station:
    """A simulated station (the runner's clock runs at ``speed``) whose instruments the fakes play."""
    instruments: list = []
    if furnace:
        instruments.append(
            FurnaceConfig(
                name="furnace",
                simulated=True,
                max_temperature_C=max_temperature_C,
                max_ramp_C_per_min=10.0,
                safe_temperature_C=25.0,
                poll_interval_s=poll_interval_s,
            )
        )
    if spectrometer:
        instruments.append(
            SpectrometerConfig(
                name="spectrometer",
                simulated=True,
                pixels=PIXELS,
                min_integration_time_s=min_integration_time_s,
                max_integration_time_s=10.0,
                max_averages=1000,
            )
        )
    return Station(name="fake", simulation_speed=speed, instruments=tuple(instruments))


def fake_recipe(
    *, segments=((10.0, 60.0, 1.0),), abort_above_C: float | None = None, spectrometer: dict | bool = True, **fields
) -> Recipe:
    """A recipe for the fake bench: furnace ``segments`` (ramp C/min, target C, dwell min), or None for none.

    The spectrometer takes a spectrum every 10 experiment seconds at 0.02 s by default (``spectrometer``:
    fields to change, or False for no schedule). ``fields`` are recipe fields (``lost_instrument_abort_s``...).
    """
    data: dict = {
        "title": "fake bench trial",
        "sample": "NdPr",
        "operator": "unit test",
        "analytes": list(ANALYTES),
        "target": "Nd",
        "scenario": STEADY_SCENARIO,
        **fields,
    }
    if segments is not None:
        data["furnace"] = {
            "segments": [{"ramp_C_per_min": r, "target_C": t, "dwell_min": d} for r, t, d in segments],
            "cool_to_C": 25.0,
            "cool_rate_C_per_min": 10.0,
        }
        if abort_above_C is not None:
            data["furnace"]["abort_above_C"] = abort_above_C
    if spectrometer:
        data["spectrometer"] = {
            "integration_time_s": BASE_INTEGRATION_S,
            "averages": 4,
            "interval_s": 10.0,
            **(spectrometer if isinstance(spectrometer, dict) else {}),
        }
    return Recipe.model_validate(data)


def make_runner(
    recipe: Recipe, station: Station, bench: FakeBench, data_dir: Path, calibration: Path, **options
) -> TrialRunner:
    """A TrialRunner on the fake bench: no status lines, no signal handlers unless asked, quick main loop."""
    settings = {
        "status_stream": None,
        "status_interval_s": 0.005,
        "flush_interval_s": 0.02,
        "handle_signals": False,
        **options,
    }
    return TrialRunner(
        recipe, station, RunOptions(Path(data_dir), calibration=calibration, **settings), bench_factory=bench
    )


def journal_writer_close(monkeypatch, journal: Journal) -> None:
    """Write ``("file", "close <status>")`` to ``journal`` whenever a trial file is closed."""
    close = TrialWriter.close

    def journalled(self, exit_status: str) -> None:
        journal.add("file", f"close {exit_status}")
        return close(self, exit_status)

    monkeypatch.setattr(TrialWriter, "close", journalled)


@dataclass
class TrialFile:
    """What a closed trial file says, read back with the shared reader (:func:`daq.open_trial`)."""

    exit_status: str
    end_time: str
    events: list[tuple[str, str, str]]  # (level, source, message)
    tables: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def messages(self) -> list[str]:
        return [m for _, _, m in self.events]

    def index(self, start: str) -> int:
        """Position of the first event whose message starts with ``start``."""
        return next(i for i, m in enumerate(self.messages) if m.startswith(start))

    def has(self, start: str) -> bool:
        return any(m.startswith(start) for m in self.messages)


def read_trial(path: Path) -> TrialFile:
    from daq import open_trial

    with open_trial(path) as trial:
        events = trial.events()
        rows = list(zip(*(events[k] for k in ("level", "source", "message"))))
        tables = {name: trial.read(name) for name in ("furnace", "spectrometer", "analysis", "dark", "reference")}
        return TrialFile(
            trial.exit_status,
            trial.end_time,
            [tuple(str(v.decode() if isinstance(v, bytes) else v) for v in row) for row in rows],
            tables,
        )
