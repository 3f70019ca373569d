"""Where a Modbus controller is: a serial port (RTU) or ``tcp://HOST[:PORT]`` (Modbus TCP); no I/O, no imports.

Read by the driver and by the station check (``daq.config``), so a bad
address is refused when the station is loaded, with the field that holds it.
"""

from __future__ import annotations

import ipaddress

__all__ = ["DEFAULT_TCP_PORT", "is_tcp_port", "parse_tcp_port"]

#: The Modbus TCP port when ``tcp://HOST`` gives none.
DEFAULT_TCP_PORT = 502


def parse_tcp_port(port: str) -> tuple[str, int]:
    """``tcp://HOST[:PORT]`` -> (host, port); ValueError saying what is wrong otherwise."""
    if not port.startswith("tcp://"):
        raise ValueError(f"{port!r}: a Modbus TCP port is tcp://HOST[:PORT]")
    rest = port.removeprefix("tcp://")
    if rest.startswith("["):  # [v6 address]:port
        host, bracket, after = rest[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(f"{port!r}: an IPv6 host is written in brackets, tcp://[::1]:502")
        number = after[1:] if after else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{port!r}: {host!r} is not an IPv6 address") from None
    else:
        host, _, number = rest.partition(":")
        if ":" in number:
            raise ValueError(f"{port!r}: an IPv6 host is written in brackets, tcp://[::1]:502")
    if not host or any(c in host for c in "/ @?#"):
        raise ValueError(f"{port!r}: no host name or address after tcp:// (tcp://HOST[:PORT])")
    if not number:
        return host, DEFAULT_TCP_PORT
    if not number.isdigit() or not 1 <= int(number) <= 65535:
        raise ValueError(f"{port!r}: the TCP port must be a number 1..65535, not {number!r}")
    return host, int(number)


def is_tcp_port(port: str) -> bool:
    """Whether a station's ``port`` names a Modbus TCP server or gateway (``tcp://HOST[:PORT]``)."""
    return str(port).startswith("tcp://")
