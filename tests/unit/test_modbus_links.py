"""The Modbus TCP transport under the one transaction policy, with a scripted pymodbus client (no network);
the shared bus of several units; a TCP port in a station file checked with file and field."""

from __future__ import annotations

from collections import deque

import pytest
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse

from daq.config import ConfigError, load_station
from drivers import NotConnected, ProtocolError
from drivers._modbus import InvalidAnswer
from drivers._modbus_bus import attach, attached_units, detach
from drivers._modbus_tcp import TcpLink


class ScriptedClient:
    """Stands in for ``ModbusTcpClient``: each read takes the next scripted outcome (a response or an error)."""

    script: deque = deque()
    made: list = []

    def __init__(self, host, port, timeout, retries):
        self.host, self.port, self.timeout, self.retries = host, port, timeout, retries
        self.socket = None  # nothing to drain
        self.requests: list = []
        ScriptedClient.made.append(self)

    def connect(self) -> bool:
        outcome = ScriptedClient.script[0] if ScriptedClient.script else None
        if outcome == "refuse connection":
            ScriptedClient.script.popleft()
            return False
        return True

    def close(self) -> None:
        pass

    def read_holding_registers(self, address, *, count, device_id):
        self.requests.append((address, count, device_id))
        outcome = ScriptedClient.script.popleft()
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def registers(*words):
    return ReadHoldingRegistersResponse(registers=list(words))


@pytest.fixture
def scripted():
    ScriptedClient.script, ScriptedClient.made = deque(), []
    links: list[TcpLink] = []

    def make(*outcomes, retries=2, address=1):
        ScriptedClient.script.extend(outcomes)
        link = TcpLink("tcp://plc.example:1502", address, 0.2, retries, client_factory=ScriptedClient)
        link.connect()
        links.append(link)
        return link

    yield make
    for link in links:
        link.close()


def test_a_read_goes_to_the_unit_id_and_returns_the_words(scripted):
    link = scripted(registers(4505))
    assert link.read_registers(1, 1, "read PV") == [4505]
    (client,) = ScriptedClient.made
    assert (client.host, client.port, client.retries, client.requests) == ("plc.example", 1502, 0, [(1, 1, 1)])


def test_no_answer_is_retried_then_the_answer_is_used(scripted):
    link = scripted(ModbusIOException("no response"), registers(7))
    assert link.read_registers(75, 1, "read status") == [7]


def test_no_answer_for_the_whole_budget_is_not_connected_and_the_connection_is_reopened(scripted):
    link = scripted(*[ModbusIOException("no response")] * 3, registers(1), retries=2)
    with pytest.raises(NotConnected, match="no answer from address 1 on tcp://plc.example:1502 in 3 attempts"):
        link.read_registers(75, 1, "read status")
    assert link.read_registers(75, 1, "read status") == [1]
    assert len(ScriptedClient.made) == 2  # reopened before the next transaction


def test_an_exception_response_is_a_protocol_error_without_retry(scripted):
    link = scripted(ExceptionResponse(3, 2))
    with pytest.raises(ProtocolError, match="instrument refused the request: Modbus exception 02"):
        link.read_registers(123, 1, "read ident")
    assert not ScriptedClient.script


def test_an_answer_the_check_refuses_is_read_again_and_counted(scripted):
    link = scripted(registers(900), registers(50))

    def check(words):
        if words[0] > 100:
            raise InvalidAnswer(f"{words[0]} is outside 0..100")
        return words[0]

    assert link.read_registers(3, 1, "read output", check) == 50
    assert link.line_counters()["refused_answers"] == 1


def test_a_short_answer_is_garbled_and_read_again(scripted):
    link = scripted(registers(1, 2), registers(1, 2, 3, 4, 5))
    assert link.read_registers(1, 5, "read block") == [1, 2, 3, 4, 5]


def test_a_lost_connection_is_not_connected_at_once(scripted):
    link = scripted(ConnectionException("reset by peer"), registers(3))
    with pytest.raises(NotConnected, match="lost"):
        link.read_registers(1, 1, "read PV")
    assert link.read_registers(1, 1, "read PV") == [3]


def test_a_gateway_that_cannot_be_reached_is_not_connected():
    ScriptedClient.script, ScriptedClient.made = deque(["refuse connection"]), []
    link = TcpLink("tcp://plc.example", 1, 0.2, 1, client_factory=ScriptedClient)
    try:
        with pytest.raises(NotConnected, match="cannot connect to tcp://plc.example"):
            link.connect()
    finally:
        link.close()


def test_two_units_behind_one_gateway_share_one_connection_and_one_lock(scripted):
    one = scripted(registers(1), address=1)
    two = scripted(registers(2), address=2)
    assert one.lock is two.lock and len(ScriptedClient.made) == 1
    assert (one.read_registers(1, 1, "unit 1"), two.read_registers(1, 1, "unit 2")) == ([1], [2])
    assert [request[2] for request in ScriptedClient.made[0].requests] == [1, 2]
    assert attached_units(("tcp", "tcp://plc.example:1502", ScriptedClient)) == {1, 2}


def test_units_of_one_bus_must_agree_on_its_settings():
    key = ("rtu", "/dev/ttyTEST", object)
    bus = attach(key, 1, {"baudrate": 9600})
    try:
        with pytest.raises(ValueError, match="baudrate 19200 \\(the bus has 9600\\)"):
            attach(key, 2, {"baudrate": 19200})
    finally:
        detach(bus, 1, lambda handle: None)
    assert attached_units(key) == set()


# -- a TCP port in a station file --------------------------------------------------------------------
STATION = """[station]
name = "t"

[furnace]
port = "{port}"
address = 1
map = "eurotherm-epc3000"
max_temperature_C = 1000.0
max_ramp_C_per_min = 10.0
{extra}
"""


@pytest.mark.parametrize(
    "port, extra, field, words",
    [
        ("tcp://plc:0", "", "furnace.port", "the TCP port must be a number 1..65535"),
        ("tcp://", "", "furnace.port", "no host name or address"),
        ("tcp://::1", "", "furnace.port", "brackets"),
        ("tcp://plc", "poll_interval_s = 2.0\nwatchdog_s = 5.0", "furnace.watchdog_s", "less than 3 poll intervals"),
    ],
)
def test_a_bad_tcp_port_or_watchdog_is_refused_naming_file_and_field(tmp_path, port, extra, field, words):
    path = tmp_path / "bench.toml"
    path.write_text(STATION.format(port=port, extra=extra))
    with pytest.raises(ConfigError) as refused:
        load_station(path)
    assert f"{path}: {field}: " in str(refused.value) and words in str(refused.value)


def test_a_tcp_station_loads_with_the_default_watchdog(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text(STATION.format(port="tcp://[fe80::1]:1502", extra=""))
    furnace = load_station(path).furnace
    assert furnace is not None and furnace.watchdog_or_default_s == 10.0
