"""The one place that touches python-seabreeze's pure-Python backend (pyseabreeze).

Opens a device on USB (pyusb) or over TCP (with :class:`drivers._obp_link.BoundedIPv4Transport`
under the library's OBP protocol layer), sends the OBP messages the library has
no feature for, and turns the library's exceptions into the driver's
(:class:`~drivers.NotConnected`, :class:`~drivers.ProtocolError`). Enumerating
IPv4 devices through the library is avoided: it multicasts and then opens every
registered address without a timeout.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from seabreeze.pyseabreeze.devices import SeaBreezeDevice
from seabreeze.pyseabreeze.exceptions import SeaBreezeError
from seabreeze.pyseabreeze.protocol import OBPProtocol
from seabreeze.pyseabreeze.transport import IPv4Transport, IPv4TransportHandle, USBTransport

from ._errors import NotConnected, ProtocolError
from ._obp_link import BoundedIPv4Transport

__all__ = ["open_device", "close_device", "bounded_call", "drain", "speaks_obp", "obp_query", "obp_send"]

_T = TypeVar("_T")
_EXTRA_MESSAGE_FORMATS = {
    0x00110000: "",  # GET_INTEGRATION_TIME_US
    0x00110001: "",  # GET_MINIMUM_INTEGRATION_TIME_US
    0x00110002: "",  # GET_MAXIMUM_INTEGRATION_TIME_US
    0x00101010: "",  # GET_MAXIMUM_ADC_COUNTS
    0x00110410: "<B",  # SET_LAMP_ENABLE
    0x00110610: "<B",  # SET_SHUTTER
}


def _usb_errors() -> tuple[type[BaseException], ...]:
    from seabreeze.pyseabreeze.transport import USBTransportDeviceInUse, USBTransportError

    try:
        import usb.core

        return (usb.core.USBError, USBTransportError, USBTransportDeviceInUse)
    except ImportError:
        return (USBTransportError, USBTransportDeviceInUse)


def _resolve(host: str) -> str:
    try:
        return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
    except OSError as error:
        raise NotConnected(f"cannot resolve the spectrometer's host {host!r}: {error}") from None


def _open_tcp(location, model: str, timeout_s: float) -> Any:
    address = _resolve(location.host)
    # The library finds a device's model in a process-wide registry of addresses, and its discovery later opens
    # every registered address (without a timeout): the address is registered only while the device is built.
    registry = IPv4Transport.devices_ip_port
    key = (address, location.port)
    previous = registry.pop(key, None)
    IPv4Transport.register_model(model, ipv4_address=address, ipv4_port=location.port)
    try:
        device = SeaBreezeDevice(IPv4TransportHandle(address, location.port))
    finally:
        registry.pop(key, None)
        if previous is not None:
            registry[key] = previous  # someone else's registration (python-seabreeze used directly) stays
    transport = BoundedIPv4Transport(OBPProtocol, connect_timeout_s=timeout_s)
    device._transport = transport  # the library's own IPv4 transport has no bounds (see drivers._obp_link)
    transport.set_deadline(timeout_s)
    try:
        device.open()
    except (NotConnected, ProtocolError):
        transport.close_device()
        raise
    except Exception as error:
        transport.close_device()
        raise ProtocolError(f"{location}: opening the device failed: {type(error).__name__}: {error}") from None
    _add_messages(device)
    return device


def _open_usb(location, model: str | None, serial: str | None) -> Any:
    found = []
    try:
        handles = list(USBTransport.list_devices())
    except Exception as error:  # pyusb without a backend (libusb missing), permissions
        raise NotConnected(
            f"{location}: cannot list USB devices ({type(error).__name__}: {error}); on Linux install libusb-1.0 "
            "and the udev rule of docs/instruments/ocean.md"
        ) from None
    for handle in handles:
        try:
            device = SeaBreezeDevice(handle)
            device.open()
        except _usb_errors():
            continue  # in use by another process, or gone while listing
        if (serial is None or device.serial_number == serial) and (model is None or device.model == model):
            _add_messages(device)
            return device
        found.append(f"{device.model} {device.serial_number}")
        device.close()
    wanted = " ".join(part for part in (model, f"serial {serial}" if serial else None) if part) or "Ocean spectrometer"
    others = f" (found: {', '.join(found)})" if found else " (none found: is it plugged in, and readable by this user?)"
    raise NotConnected(f"{location}: no {wanted} on USB{others}")


def open_device(location, model: str | None, serial: str | None, timeout_s: float) -> Any:
    """An open python-seabreeze device at ``location`` (an :class:`drivers.ocean.OceanResource`)."""
    if location.transport == "tcp":
        assert model is not None  # parse_ocean_resource requires it
        return _open_tcp(location, model, timeout_s)
    return _open_usb(location, model, serial)


def close_device(device: Any) -> None:
    """Close ``device``; never raises."""
    try:
        device.close()
    except Exception:
        pass


def _add_messages(device: Any) -> None:
    protocol = device._transport.protocol
    if isinstance(protocol, OBPProtocol):
        # on this device's protocol instance only: the class's table stays the library's
        protocol.msgs = {**type(protocol).msgs, **{k: struct.Struct(f).pack for k, f in _EXTRA_MESSAGE_FORMATS.items()}}


def speaks_obp(device: Any) -> bool:
    """True if ``device`` talks OBP (the messages this driver adds exist only there)."""
    return isinstance(device._transport.protocol, OBPProtocol)


def obp_query(device: Any, message_type: int, payload: tuple) -> bytes:
    """Send an OBP request and return its reply's data."""
    return device._transport.protocol.query(message_type, payload)


def obp_send(device: Any, message_type: int, payload: tuple) -> None:
    """Send an OBP command that asks for an acknowledgement; a NACK raises (see drivers._obp_link)."""
    device._transport.protocol.send(message_type, payload, request_ack=True)


def bounded_call(device: Any, operation: Callable[[], _T], seconds: float) -> _T:
    """Run ``operation`` (a library call on ``device``) within ``seconds`` where the transport can bound it,
    mapping the library's exceptions to the driver's."""
    transport = device._transport
    if isinstance(transport, BoundedIPv4Transport):
        transport.set_deadline(seconds)
    try:
        return operation()
    except (NotConnected, ProtocolError):
        raise
    except _usb_errors() as error:
        raise NotConnected(f"USB: {error}") from None
    except (SeaBreezeError, struct.error, AssertionError, KeyError, ValueError) as error:
        raise ProtocolError(f"malformed reply ({type(error).__name__}: {error})") from None
    except RuntimeError as error:  # the library's "device not opened" and friends
        raise NotConnected(str(error)) from None
    except OSError as error:
        raise NotConnected(f"{type(error).__name__}: {error}") from None


def drain(device: Any) -> bool:
    """After a malformed reply: True once the line is quiet again (see BoundedIPv4Transport.drain)."""
    transport = device._transport
    if isinstance(transport, BoundedIPv4Transport):
        try:
            return transport.drain()
        except NotConnected:
            return False
    return True
