"""Modbus TCP transport: pymodbus's synchronous client under the one transaction policy of :class:`LinkBase`.

``port = "tcp://HOST[:PORT]"`` (502 when omitted; ``[v6 address]`` in
brackets); the station's ``address`` is the unit id (a gateway passes it on as
the RTU address of the controller behind it). pymodbus builds each request
(MBAP header, transaction id) and checks each answer: an answer whose
transaction id or unit id is not the request's is skipped, so a late answer is
never taken for a later one's and no answer is ever owed. The retries, the
drain after a failed attempt, the reopen after a failed transaction and the
errors are :class:`~drivers._modbus.LinkBase`'s, the same as on RTU (decision 0077).

Controllers behind one gateway (or one TCP server with several unit ids)
share one connection and its lock (:mod:`drivers._modbus_bus`): a request and
its answer are never interleaved with another unit's.
"""

from __future__ import annotations

import logging
import select
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from . import _modbus_bus
from ._errors import NotConnected, ProtocolError
from ._modbus import Garbled, InvalidAnswer, LinkBase, NoAnswer, PortLost, Refused
from ._modbus_address import DEFAULT_TCP_PORT, parse_tcp_port

__all__ = ["DEFAULT_TCP_PORT", "TcpLink", "parse_tcp_port"]

T = TypeVar("T")

_MAX_DRAIN_S = 2.0  # a connection still sending after this is broken, not merely late
_DEFAULT_GUARD_S = 0.002  # after a failed attempt: how long the connection must be quiet to be drained
_BUSY = 6  # Modbus exception 06, slave device busy: try again, like a garbled answer

# pymodbus logs every timeout and refused connection at ERROR; without a handler Python prints them on stderr
# (the run's terminal). Our errors say the same with the station's words: a NullHandler keeps pymodbus quiet
# unless the application configures logging (then its records still propagate to the application's handlers).
logging.getLogger("pymodbus").addHandler(logging.NullHandler())


class TcpLink(LinkBase):
    """One unit (unit id ``address``) at a Modbus TCP server or gateway; thread-safe with its bus."""

    def __init__(
        self,
        port: str,
        address: int,
        timeout_s: float,
        retries: int,
        *,
        answer_guard_s: float | None = None,
        client_factory: Callable[..., Any] = ModbusTcpClient,
    ) -> None:
        if not 1 <= address <= 247:
            raise ValueError(f"Modbus unit id (address) must be 1..247, not {address}")
        if retries < 0 or timeout_s <= 0:
            raise ValueError("retries must be >= 0 and timeout_s > 0")
        self.host, self.tcp_port = parse_tcp_port(port)
        self.port, self.address, self.timeout_s, self.retries = port, address, timeout_s, retries
        self.answer_guard_s = _DEFAULT_GUARD_S if answer_guard_s is None else max(0.0, answer_guard_s)
        self._factory = client_factory
        self._bus_key = ("tcp", f"tcp://{self.host}:{self.tcp_port}", client_factory)
        self._bus_settings = {"timeout_s": timeout_s}
        self._bus: _modbus_bus.Bus | None = None
        self._attach()
        self._generation = -1
        self.on_reopen: Callable[[], None] | None = None
        self.counters: Counter = Counter()

    def _attach(self) -> _modbus_bus.Bus:
        if self._bus is None:
            self._bus = _modbus_bus.attach(self._bus_key, self.address, self._bus_settings)
            self.lock = self._bus.lock
        return self._bus

    # -- connection -------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        bus = self._bus
        return bus is not None and bus.handle is not None and self._generation == bus.generation

    def _connect_client(self):
        client = self._factory(self.host, port=self.tcp_port, timeout=self.timeout_s, retries=0)
        try:
            connected = client.connect()
        except (OSError, ModbusException) as error:
            _close_quietly(client)
            raise PortLost(str(error)) from error
        if not connected:
            _close_quietly(client)
            raise PortLost(f"cannot connect to {self.host}:{self.tcp_port} within {self.timeout_s:g} s")
        return client

    def open(self) -> None:
        """(Re)connect for every unit behind this server or gateway; ``NotConnected`` if it cannot be reached."""
        bus = self._attach()
        with self.lock:
            try:
                bus.replace(self._connect_client, _close_quietly)
            except PortLost as error:
                raise NotConnected(f"cannot connect to {self.port}: {error}") from None
            self._adopt()

    def _use_open_port(self) -> None:
        self._adopt()

    def _adopt(self) -> None:
        assert self._bus is not None
        self._generation = self._bus.generation
        if self.on_reopen is not None:
            self.on_reopen()

    def _ensure_open(self) -> None:
        if not self.is_open:
            self.connect()

    def close(self) -> None:
        """Leave the connection (the last unit out closes it); the next transaction reconnects."""
        self.release()

    def release(self) -> None:
        bus = self._bus
        if bus is None:
            return
        with bus.lock:
            self._bus, self._generation = None, -1
        _modbus_bus.detach(bus, self.address, _close_quietly)

    def _drop(self) -> None:
        bus = self._bus
        if bus is not None:
            bus.drop(_close_quietly)

    def line_counters(self) -> Counter:
        with self.lock:
            return Counter(self.counters)

    @property
    def _client(self):
        if self._bus is None or self._bus.handle is None:  # dropped during this transaction (server closed it)
            raise PortLost("the connection was closed")
        return self._bus.handle

    # -- one attempt ----------------------------------------------------------------------
    def _answer(self, response, what: str):
        if response is None:
            raise NoAnswer(f"{what}: no answer")
        if response.isError():
            code = getattr(response, "exception_code", None)
            if code == _BUSY:
                raise Garbled(f"{what}: slave device busy (exception 06)", owed=False)
            raise Refused(f"Modbus exception {code:02d}" if isinstance(code, int) else str(response))
        return response

    def _read_words(self, address: int, count: int, function: Literal[3, 4] = 3) -> list[int]:
        read = self._client.read_input_registers if function == 4 else self._client.read_holding_registers
        response = self._answer(read(address, count=count, device_id=self.address), "")
        words = list(response.registers)
        if len(words) != count:
            raise Garbled(f"{len(words)} registers came back where {count} were asked", owed=False)
        return words

    def _write_word(self, address: int, word: int) -> None:
        response = self._answer(self._client.write_register(address, word, device_id=self.address), "")
        if (getattr(response, "address", address), list(getattr(response, "registers", [word]))[:1]) != (
            address,
            [word],
        ):
            raise Garbled(f"write echo {response} is not the request (register {address} := {word})", owed=False)

    def _write_words(self, address: int, words: list[int]) -> None:
        response = self._answer(self._client.write_registers(address, words, device_id=self.address), "")
        if (getattr(response, "address", address), getattr(response, "count", len(words))) != (address, len(words)):
            raise Garbled(f"write answer {response} is not the request ({len(words)} at {address})", owed=False)

    def _attempt(self, operation: Callable[[], T], answer_length: int | None) -> T:
        try:
            return operation()
        except (NoAnswer, Garbled, Refused):
            raise
        except InvalidAnswer as error:
            raise Garbled(str(error), owed=False, refused=True) from error  # no answer is owed on TCP
        except ConnectionException as error:
            raise PortLost(str(error)) from error
        except ModbusIOException as error:
            if "decode" in str(error).lower():
                raise Garbled(str(error), owed=False) from error
            raise NoAnswer(str(error)) from error  # pymodbus: no answer within the timeout
        except ModbusException as error:
            raise Garbled(str(error), owed=False) from error
        except (OSError, ValueError) as error:  # a socket gone under pymodbus (select on a closed fd)
            raise PortLost(str(error)) from error

    def _drain(self) -> None:
        """Discard what the connection holds until it has been quiet for the answer guard (bounded)."""
        bus = self._bus
        sock: socket.socket | None = getattr(bus.handle, "socket", None) if bus is not None else None
        if sock is None:
            return
        deadline = time.monotonic() + _MAX_DRAIN_S
        try:
            while select.select([sock], [], [], self.answer_guard_s)[0]:
                chunk = sock.recv(4096)
                if not chunk:
                    self._drop()  # the server closed the connection
                    return
                self.counters["stale_bytes"] += len(chunk)
                if time.monotonic() > deadline:
                    self._drop()
                    raise ProtocolError(f"{self.port}: the connection keeps sending bytes; not a Modbus server?")
        except (OSError, ValueError):
            self._drop()


def _close_quietly(client) -> None:
    try:
        client.close()
    except (OSError, ModbusException):
        pass
