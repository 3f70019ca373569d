"""Descriptor-built settings (drivers/_settings.py, decision 0068): exact request/response pairs for each one.

SCPI: ``ScpiSpectrometer.integration_time_s`` and ``.averages`` against a TCP
instrument on 127.0.0.1 that replays exact (request, answer) lines through the
real pyvisa-py socket stack: every line the driver sends must be the next
expected one, else the replay closes the connection and the test fails naming
both. Modbus: ``Eurotherm.rate_limit_C_per_min`` / ``set_rate_limit``, the live
setpoint of ``set_setpoint`` and the read-only values, on the RTU replay line of
tests/unit/test_eurotherm_protocol.py (literal frames, CRC included).

For each: the exact traffic of a read and of a set, a refused value sends
nothing, a read-back mismatch is an error, and the docstring names units and limits.
"""

from __future__ import annotations

import math
import re
import socket
import sys
import threading
from collections import deque
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_eurotherm_protocol import (  # noqa: E402  (the RTU replay line and its literal frames)
    BLOCK,
    DECIMALS,
    RATE_DECIMALS,
    RATE_ENABLED,
    RATE_UNITS,
    READ_BLOCK,
    READ_RATE,
    READ_REMOTE,
    REMOTE_SELECTED,
    WORD_0,
    WORD_50,
    WORD_100,
    WORD_4500,
    WRITE_RATE_10,
    WRITE_REMOTE_450,
    RtuLine,
    furnace,
)

from drivers import Eurotherm, LimitError, ProtocolError, ReadbackMismatch, ScpiSpectrometer  # noqa: E402
from drivers._scpi_dialect import REQUIRED_COMMANDS, load_dialect  # noqa: E402
from drivers._settings import ModbusParameter, ModbusValue, ScpiSetting, scpi_settings  # noqa: E402
from drivers.spectrometer import ScpiError  # noqa: E402

# ================================================================================================
# SCPI: a replaying instrument on a TCP socket
# ================================================================================================
NO_ERROR = '0,"No error"'


class ScpiReplay:
    """A TCP instrument answering exact lines: ``(request, answer)``; ``answer`` None for a command without one.

    Serves one connection after another (``reconnect()`` opens a new one), the
    script running on across them. ``requests`` holds every line received;
    ``problems`` what went wrong (an unexpected line closes the connection).
    """

    def __init__(self, pairs=()) -> None:
        self.pairs: deque = deque(pairs)
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.address = f"TCPIP0::127.0.0.1::{self._server.getsockname()[1]}::SOCKET"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def expect(self, *pairs) -> None:
        self.pairs.extend(pairs)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        buffer = b""
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = line.decode("ascii")
                self.requests.append(request)
                if not self.pairs:
                    self.problems.append(f"unexpected line {request!r} (no request expected)")
                    return
                expected, answer = self.pairs.popleft()
                if request != expected:
                    self.problems.append(f"expected {expected!r}, driver sent {request!r}")
                    return
                if answer is not None:
                    conn.sendall(answer.encode("ascii") + b"\n")

    def close(self) -> None:
        self._server.close()

    def assert_done(self) -> None:
        assert not self.problems, self.problems
        assert not self.pairs, f"expected line(s) never sent: {list(self.pairs)}"


PIXELS = 16
COEFFICIENTS = "400,1,0,0"  # 400-415 nm


def connection(reapplied=(), clear_status=True, pixel_count=True):
    """The lines of a connection up to the settings read back: identity, pixels, axis, shutter, the settings
    made through the driver (``reapplied``), data format."""
    pairs = [("*CLS", None)] if clear_status else []
    pairs += [("*IDN?", "ACME,SPEC-16,0001,1.0")]
    pairs += [("SENS:DET:PIX?", str(PIXELS))] if pixel_count else []
    pairs += [
        ("CALC:WAV:COEF?", COEFFICIENTS),
        ("SOUR:SHUT OPEN", None),
        ("SYST:ERR?", NO_ERROR),
        *reapplied,
        ("FORM:DATA REAL,32", None),
        ("FORM:BORD SWAP", None),
        ("SYST:ERR?", NO_ERROR),
    ]
    return pairs


def settings_read(integration_time="0.1", averages="1", get_time="SENS:INT:TIME?", get_averages="SENS:AVER:COUN?"):
    return [(get_time, integration_time), (get_averages, averages)]


@contextmanager
def spectrometer(*pairs, **kwargs):
    """A connected ScpiSpectrometer on a replay holding the connection's lines, then ``pairs``."""
    replay = ScpiReplay([*connection(), *settings_read(), *pairs])
    try:
        with ScpiSpectrometer(replay.address, timeout_s=2.0, **kwargs) as spec:
            yield spec, replay
        replay.assert_done()
    except Exception as error:
        if replay.problems:  # the driver sent what was not expected: say that, not what it then raised
            raise AssertionError(f"replay: {replay.problems}") from error
        raise
    finally:
        replay.close()


def set_time(text, readback, errors=(NO_ERROR,)):
    return [(f"SENS:INT:TIME {text}", None), *[("SYST:ERR?", e) for e in errors], ("SENS:INT:TIME?", readback)]


def set_averages(count, readback, errors=(NO_ERROR,)):
    return [(f"SENS:AVER:COUN {count}", None), *[("SYST:ERR?", e) for e in errors], ("SENS:AVER:COUN?", readback)]


# --- reading ----------------------------------------------------------------------------------------
def test_reading_a_setting_is_one_query_each_time():
    pairs = [("SENS:INT:TIME?", "0.25"), ("SENS:INT:TIME?", "+2.5E-1"), ("SENS:AVER:COUN?", "16")]
    with spectrometer(*pairs) as (spec, _):
        assert spec.integration_time_s == 0.25
        assert spec.integration_time_s == 0.25
        assert spec.averages == 16
        assert spec._integration_time_s == 0.25 and spec._averages == 16  # what the deadline of a spectrum uses


@pytest.mark.parametrize(
    "attribute, command, answer, words",
    [
        ("integration_time_s", "SENS:INT:TIME?", "1e308", "expected a finite number within 1e-06-3600 s"),
        ("integration_time_s", "SENS:INT:TIME?", "0", "expected a finite number within 1e-06-3600 s"),
        ("averages", "SENS:AVER:COUN?", "0", "expected an integer within 1-1000000"),
        ("averages", "SENS:AVER:COUN?", "4.0", "expected an integer within 1-1000000"),
    ],
)
def test_an_absurd_answer_to_a_setting_query_is_a_protocol_error(attribute, command, answer, words):
    with spectrometer((command, answer)) as (spec, _):
        with pytest.raises(ProtocolError, match=words):
            getattr(spec, attribute)
        assert spec.connected


# --- setting ------------------------------------------------------------------------------------------
def test_setting_the_integration_time_sends_it_checks_the_error_queue_and_reads_it_back():
    with spectrometer(*set_time("0.5", "0.5"), *set_time("0.0123456789", "0.0123456789")) as (spec, replay):
        spec.integration_time_s = 0.5
        spec.integration_time_s = 0.0123456789  # the dialect's {seconds:.9g}
        assert spec._integration_time_s == pytest.approx(0.0123456789)
    assert replay.requests[-3:] == ["SENS:INT:TIME 0.0123456789", "SYST:ERR?", "SENS:INT:TIME?"]


def test_setting_averages_sends_it_checks_the_error_queue_and_reads_it_back():
    with spectrometer(*set_averages(8, "8"), *set_averages(3, "3")) as (spec, _):
        spec.averages = 8
        spec.averages = np.int64(3)  # numpy integers are integers
        assert spec._averages == 3


def test_a_read_back_within_the_tolerance_is_kept_as_the_instrument_says():
    # 0.1 % of the value or 1 us, whichever is larger
    with spectrometer(*set_time("0.5", "0.5004"), *set_time("0.001", "0.001000999")) as (spec, _):
        spec.integration_time_s = 0.5
        assert spec._integration_time_s == 0.5004
        spec.integration_time_s = 0.001


@pytest.mark.parametrize(
    "attribute, value, pairs, message",
    [
        (
            "integration_time_s",
            0.5,
            set_time("0.5", "0.5006"),
            "integration time set to 0.5 s, instrument reads back 0.5006 s",
        ),
        (
            "integration_time_s",
            0.001,
            set_time("0.001", "0.0010011"),
            "integration time set to 0.001 s, instrument reads back 0.0010011 s",
        ),
        ("averages", 8, set_averages(8, "7"), "averages set to 8, instrument reads back 7"),
    ],
)
def test_a_read_back_mismatch_is_an_error_and_the_value_is_not_remembered(attribute, value, pairs, message):
    with spectrometer(*pairs, *connection(), *settings_read()) as (spec, replay):
        with pytest.raises(ReadbackMismatch) as caught:
            setattr(spec, attribute, value)
        assert str(caught.value) == message
        spec.reconnect()  # nothing to re-apply: the setting never took
    assert replay.connections == 2


@pytest.mark.parametrize(
    "attribute, value, command",
    [
        ("integration_time_s", 100.0, "SENS:INT:TIME 100"),
        ("averages", 500, "SENS:AVER:COUN 500"),
    ],
)
def test_an_error_in_the_queue_after_a_setting_is_a_scpi_error_before_any_read_back(attribute, value, command):
    errors = ('-222,"Data out of range"', '-221,"Settings conflict"', NO_ERROR)
    with spectrometer(
        (command, None),
        *[("SYST:ERR?", e) for e in errors],
        *connection(),
        *settings_read(),
        max_integration_time_s=120.0,
        max_averages=1000,
    ) as (spec, _):
        with pytest.raises(ScpiError) as caught:
            setattr(spec, attribute, value)
        assert caught.value.errors == [(-222, "Data out of range"), (-221, "Settings conflict")]
        assert caught.value.command == command
        spec.reconnect()  # not re-applied


@pytest.mark.parametrize(
    "attribute, value, error, message",
    [
        (
            "integration_time_s",
            0.0005,
            LimitError,
            "integration time 0.0005 s outside the limits 0.001-60 s; nothing sent",
        ),
        ("integration_time_s", 61.0, LimitError, "integration time 61.0 s outside the limits 0.001-60 s; nothing sent"),
        ("integration_time_s", -1, LimitError, "integration time -1 s outside the limits 0.001-60 s; nothing sent"),
        (
            "integration_time_s",
            math.nan,
            LimitError,
            "integration time nan s outside the limits 0.001-60 s; nothing sent",
        ),
        (
            "integration_time_s",
            math.inf,
            LimitError,
            "integration time inf s outside the limits 0.001-60 s; nothing sent",
        ),
        ("integration_time_s", "0.1", TypeError, "integration_time_s must be a number, got '0.1'"),
        ("integration_time_s", True, TypeError, "integration_time_s must be a number, got True"),
        ("integration_time_s", None, TypeError, "integration_time_s must be a number, got None"),
        ("averages", 0, LimitError, "averages must be within 1-100000, got 0; nothing sent"),
        ("averages", 100_001, LimitError, "averages must be within 1-100000, got 100001; nothing sent"),
        ("averages", -5, LimitError, "averages must be within 1-100000, got -5; nothing sent"),
        ("averages", 2.0, TypeError, "averages must be an integer, got 2.0"),
        ("averages", True, TypeError, "averages must be an integer, got True"),
    ],
)
def test_a_refused_value_sends_nothing(attribute, value, error, message):
    with spectrometer() as (spec, replay):
        sent = list(replay.requests)
        with pytest.raises(error) as caught:
            setattr(spec, attribute, value)
        assert str(caught.value) == message
        assert replay.requests == sent


def test_the_limits_are_the_instances_own():
    with spectrometer(
        *set_time("2", "2"),
        *set_averages(50, "50"),
        min_integration_time_s=0.005,
        max_integration_time_s=2.0,
        max_averages=50,
    ) as (spec, replay):
        sent = len(replay.requests)
        for bad in (0.004, 2.001):
            with pytest.raises(LimitError, match="outside the limits 0.005-2 s"):
                spec.integration_time_s = bad
        with pytest.raises(LimitError, match="within 1-50, got 51"):
            spec.averages = 51
        assert len(replay.requests) == sent
        spec.integration_time_s = 2.0
        spec.averages = 50


def test_reconnect_re_applies_what_was_set_integration_time_first_then_averages():
    pairs = [
        *set_averages(4, "4"),
        *set_time("0.02", "0.02"),
        *connection(reapplied=[*set_time("0.02", "0.02"), *set_averages(4, "4")]),
        *settings_read("0.02", "4"),
    ]
    with spectrometer(*pairs) as (spec, replay):
        spec.averages = 4
        spec.integration_time_s = 0.02
        spec.reconnect()
        assert (spec._integration_time_s, spec._averages) == (0.02, 4)
    assert replay.connections == 2


def test_the_commands_come_from_the_dialect(tmp_path):
    dialect = tmp_path / "acme.toml"
    dialect.write_text("""
[instrument]
pixels = 16
[commands]
identify = "*IDN?"
next_error = "SYST:ERR?"
wavelength_coefficients = "CALC:WAV:COEF?"
set_integration_time = "EXP {seconds:.3f}"
get_integration_time = "EXP?"
set_averages = "AVG {count}"
get_averages = "AVG?"
shutter_open = "SOUR:SHUT OPEN"
shutter_close = "SOUR:SHUT CLOS"
setup = ["FORM:DATA REAL,32", "FORM:BORD SWAP"]
measure = ["MEAS:SPEC?"]
""")
    replay = ScpiReplay(
        [
            *connection(clear_status=False, pixel_count=False),
            *settings_read(get_time="EXP?", get_averages="AVG?"),
            ("EXP 0.250", None),
            ("SYST:ERR?", NO_ERROR),
            ("EXP?", "0.25"),
            ("AVG 12", None),
            ("SYST:ERR?", NO_ERROR),
            ("AVG?", "12"),
            ("AVG?", "12"),
        ]
    )
    try:
        with ScpiSpectrometer(replay.address, timeout_s=2.0, dialect=dialect) as spec:
            spec.integration_time_s = 0.25
            spec.averages = 12
            assert spec.averages == 12
        replay.assert_done()
    finally:
        replay.close()


# --- the declarations -------------------------------------------------------------------------------
def test_the_spectrometers_settings_are_descriptors_in_reconnect_order_using_dialect_commands():
    settings = scpi_settings(ScpiSpectrometer)
    assert [s.name for s in settings] == ["integration_time_s", "averages"]
    for setting in settings:
        assert REQUIRED_COMMANDS[setting.get_key] == ()
        assert REQUIRED_COMMANDS[setting.set_key] == (setting.field,)
        assert setting.set_key in load_dialect("scpi-spectrometer").commands


@pytest.mark.parametrize(
    "attribute, words",
    [
        (
            "integration_time_s",
            [
                "Integration time (s) per scan",
                "``min_integration_time_s``..``max_integration_time_s`` (s)",
                "LimitError",
                "ReadbackMismatch",
                "ScpiError",
                "0.001 x the value or 1e-06 s",
            ],
        ),
        (
            "averages",
            [
                "Number of scans the instrument averages",
                "an integer within 1..``max_averages``",
                "LimitError",
                "read back exactly",
            ],
        ),
    ],
)
def test_the_docstrings_name_units_limits_and_errors(attribute, words):
    doc = getattr(ScpiSpectrometer, attribute).__doc__
    for word in words:
        assert word in doc


# ================================================================================================
# Modbus: the Eurotherm's parameters on the RTU replay line
# ================================================================================================
WRITE_RATE_0 = "01 06 00 23 00 00 78 00"  # FC6 35 := 0


@pytest.mark.parametrize(
    "attribute, value",
    [
        ("setpoint_C", 450.0),
        ("working_setpoint_C", 432.1),
        ("output_percent", 65.5),
    ],
)
def test_read_only_values_are_read_with_their_block(attribute, value):
    with furnace(DECIMALS + [(READ_BLOCK, BLOCK)]) as f:
        assert getattr(f, attribute) == value


def test_the_rate_limit_is_read_from_its_register():
    with furnace(RATE_DECIMALS + [(READ_RATE, WORD_50)]) as f:
        assert f.rate_limit_C_per_min == 5.0


def test_set_rate_limit_writes_and_reads_back_positional_or_by_keyword():
    pairs = RATE_DECIMALS + ([(WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_100)] + RATE_ENABLED) * 2
    with furnace(pairs) as f:
        f.set_rate_limit(10.0)
        f.set_rate_limit(value_C_per_min=10)


def test_a_rate_limit_read_back_mismatch_is_an_error():
    with furnace(RATE_DECIMALS + [(WRITE_RATE_10, WRITE_RATE_10), (READ_RATE, WORD_50)]) as f:
        with pytest.raises(
            ReadbackMismatch, match="wrote 10.0 to setpoint_rate_limit, setpoint_rate_limit reads back 5.0"
        ):
            f.set_rate_limit(10.0)


def test_rate_limit_off_is_accepted_when_the_station_has_no_rate_limit():
    with furnace(
        RATE_DECIMALS + [(WRITE_RATE_0, WRITE_RATE_0), (READ_RATE, WORD_0)],
        max_rate_C_per_min=math.inf,
        safe_rate_C_per_min=10.0,
    ) as f:
        f.set_rate_limit(0.0)


@pytest.mark.parametrize(
    "call, value, message",
    [
        ("set_rate_limit", 20.5, "rate limit 20.5 C/min is above the limit 20 C/min; nothing was sent"),
        ("set_rate_limit", 0.0, "rate limit 0 (off) would allow ramps above 20 C/min; nothing was sent"),
        ("set_rate_limit", -1.0, "rate limit -1.0 C/min is not a finite value >= 0; nothing was sent"),
        ("set_rate_limit", math.nan, "rate limit nan C/min is not a finite value >= 0; nothing was sent"),
        ("set_rate_limit", math.inf, "rate limit inf C/min is not a finite value >= 0; nothing was sent"),
        ("set_setpoint", 1200.1, "setpoint 1200.1 C is outside 0..1200 C; nothing was sent"),
        ("set_setpoint", -5.0, "setpoint -5.0 C is outside 0..1200 C; nothing was sent"),
        ("set_setpoint", math.nan, "setpoint nan C is outside 0..1200 C; nothing was sent"),
    ],
)
def test_a_refused_parameter_value_sends_nothing(call, value, message):
    line = RtuLine([])
    with furnace(line) as f:
        with pytest.raises(LimitError) as caught:
            getattr(f, call)(value)
        assert str(caught.value) == message
    assert bytes(line.written) == b""


def test_the_register_range_narrows_the_station_limit():
    line = RtuLine([])
    with furnace(line, max_rate_C_per_min=math.inf, safe_rate_C_per_min=10.0) as f:
        with pytest.raises(LimitError, match="rate limit 1000 C/min is above the limit 999.9 C/min"):
            f.set_rate_limit(1000.0)  # the map's max for register 35
    assert bytes(line.written) == b""


def test_set_setpoint_writes_the_live_setpoint_through_its_parameter_and_reads_back_both():
    pairs = RATE_ENABLED + RATE_DECIMALS + [(READ_RATE, WORD_50)] + REMOTE_SELECTED
    pairs += [
        (WRITE_REMOTE_450, WRITE_REMOTE_450),
        (READ_REMOTE, WORD_4500),
        (READ_BLOCK, BLOCK),
    ]
    with furnace(pairs) as f:
        f.set_setpoint(450)


def test_3200_set_rate_limit_writes_a_float_and_reads_it_back():
    write = ("01 10 80 46 00 02 04 41 20 00 00 03 85", "01 10 80 46 00 02 89 DD")  # rate @0x8046 := 10.0
    pairs = RATE_UNITS + [write, ("01 03 80 46 00 02 0C 1E", "01 03 04 41 20 00 00 EF C5")]  # reads 10.0
    with furnace(pairs, model="3200") as f:
        f.set_rate_limit(10.0)
    mismatch = RATE_UNITS + [write, ("01 03 80 46 00 02 0C 1E", "01 03 04 41 10 00 00 EF CA")]  # reads 9.0
    with furnace(mismatch, model="3200") as f:
        with pytest.raises(ReadbackMismatch):
            f.set_rate_limit(10.0)


@pytest.mark.parametrize(
    "attribute, words",
    [
        ("setpoint_C", "read-only"),
        ("rate_limit_C_per_min", "not set by assignment; call set_rate_limit()"),
    ],
)
def test_assigning_a_parameter_is_an_error_and_sends_nothing(attribute, words):
    line = RtuLine([])
    with furnace(line) as f:
        with pytest.raises(AttributeError, match=re.escape(words)):
            setattr(f, attribute, 100.0)
    assert bytes(line.written) == b""


def test_the_modbus_declarations_and_their_docstrings():
    assert isinstance(vars(Eurotherm)["setpoint_C"], ModbusValue)
    assert isinstance(vars(Eurotherm)["rate_limit_C_per_min"], ModbusParameter)
    rate = Eurotherm.rate_limit_C_per_min.__doc__
    assert rate.startswith("Setpoint rate limit, C/min; 0 = off.")
    for words in (
        "``setpoint_rate_limit``",
        "at most ``max_rate_C_per_min`` C/min",
        "min..max in the map",
        "0 (off) only when ``max_rate_C_per_min`` is infinite",
        "LimitError",
        "ReadbackMismatch",
    ):
        assert words in rate
    setter = Eurotherm.set_rate_limit.__doc__
    assert setter.startswith("Set the rate limit, C/min") and "at any rate" in setter
    assert Eurotherm.set_rate_limit.__qualname__ == "Eurotherm.set_rate_limit"
    assert Eurotherm.output_percent.__doc__.startswith("Heater output, percent.")
    assert "``output_power``" in Eurotherm.output_percent.__doc__


def test_scpi_setting_is_a_descriptor_with_its_own_doc():
    setting = ScpiSetting("exposure", "seconds", float, unit="s", low=0.1, high=2, doc="Exposure.")

    class Owner:
        exposure_s = setting

    assert Owner.exposure_s is setting and setting.cache == "_exposure_s" and setting.wanted == "_wanted_exposure_s"
    assert "a number within 0.1..2 (s)" in setting.__doc__


def test_the_scpi_driver_offers_the_spectrometer_interface_and_records_how_it_counts():
    from drivers._spectrometer_interface import spectrometer_members

    assert {"acquire", "dark", "integration_time_s", "recorded_attributes"} <= set(spectrometer_members())
    assert [name for name in spectrometer_members() if not hasattr(ScpiSpectrometer, name)] == []
    with spectrometer() as (spec, _):
        assert spec.recorded_attributes["driver"] == "scpi"
        assert spec.recorded_attributes["dark_method"] == "shutter"
