"""OBP framing of the simulated Ocean HDX (drivers/sim/_obp_frames.py), checked against python-seabreeze's own.

pyseabreeze is the client the driver runs on: the requests it builds must decode
to what it meant, and the replies the simulator builds must pass its header and
footer checks and give back the data.
"""

from __future__ import annotations

import hashlib
import struct

import pytest
from seabreeze.pyseabreeze.protocol import OBPProtocol
from seabreeze.pyseabreeze.transport import IPv4Transport

from drivers.sim._obp_frames import (
    CHECKSUM_MD5,
    FOOTER_VALUE,
    HEADER_BYTES,
    MIN_MESSAGE_BYTES,
    START_BYTES,
    Flag,
    Frame,
    FrameError,
    ObpError,
    decode,
    decode_header,
    encode,
    response,
)

SET_ITIME_USEC = 0x00110010
GET_SERIAL_NUMBER_LENGTH = 0x00000101
GET_SPECTRUM_NOW_HDX = 0x00101000


class _ReplayTransport(IPv4Transport):
    """pyseabreeze's IPv4 transport with the socket replaced by a byte buffer: what was queued is read back."""

    def __init__(self) -> None:
        super().__init__(OBPProtocol)
        self.sent = bytearray()
        self.incoming = bytearray()

    def write(self, data: bytes, timeout_ms: int | None = None, **kwargs) -> int:
        self.sent += data
        return len(data)

    def read(self, size: int | None = None, timeout_ms: int | None = None, mode: str | None = None, **kwargs) -> bytes:
        size = 64 if size is None else size
        assert len(self.incoming) >= size, "pyseabreeze would wait for bytes that never come"
        data = bytes(self.incoming[:size])
        del self.incoming[:size]
        return data


@pytest.fixture
def pyseabreeze():
    """An OBPProtocol over a replay transport, and the transport (kept alive here: the protocol holds a weak proxy)."""
    transport = _ReplayTransport()
    return OBPProtocol(transport), transport


# --- requests as pyseabreeze builds them -------------------------------------------------------------
@pytest.mark.parametrize("request_ack", [True, False])
def test_a_request_encodes_to_exactly_the_bytes_pyseabreeze_sends(pyseabreeze, request_ack):
    protocol, _ = pyseabreeze
    data = struct.pack("<L", 100_000)
    theirs = protocol._construct_outgoing_message(SET_ITIME_USEC, data, request_ack=request_ack)
    flags = int(Flag.REQUEST_ACK) if request_ack else 0
    ours = encode(Frame(SET_ITIME_USEC, data, flags=flags))
    assert ours == theirs
    assert decode(theirs) == Frame(SET_ITIME_USEC, data, flags=flags)


def test_data_longer_than_16_bytes_travel_as_payload_exactly_as_pyseabreeze_sends_them(pyseabreeze):
    protocol, _ = pyseabreeze
    data = bytes(range(40))
    theirs = protocol._construct_outgoing_message(0x00ABCDEF, data, request_ack=True)
    assert encode(Frame(0x00ABCDEF, data, flags=int(Flag.REQUEST_ACK))) == theirs
    header = decode_header(theirs)
    assert header.immediate_length == 0 and header.bytes_remaining == 40 + 20
    assert len(theirs) == MIN_MESSAGE_BYTES + 40
    assert decode(theirs).data == data


def test_the_exact_bytes_of_one_request():
    message = encode(Frame(SET_ITIME_USEC, struct.pack("<I", 100_000), flags=int(Flag.REQUEST_ACK)))
    expected = (
        bytes.fromhex("c1c0 0011 0400 0000")  # start bytes, version 0x1100, flags REQUEST_ACK, no error
        + bytes.fromhex("10001100 00000000")  # message type 0x00110010, regarding 0
        + bytes(6)  # reserved
        + bytes.fromhex("00 04")  # no checksum, 4 immediate bytes
        + struct.pack("<I", 100_000)
        + bytes(12)  # the rest of the 16 immediate bytes
        + bytes.fromhex("14000000")  # bytes remaining: 20, the footer
        + bytes(16)  # no checksum
        + bytes.fromhex("c5c4c3c2")  # footer 0xC2C3C4C5
    )
    assert message == expected and len(message) == 64


# --- replies as pyseabreeze reads them -----------------------------------------------------------------
def test_the_exact_bytes_of_one_reply():
    request = Frame(GET_SERIAL_NUMBER_LENGTH, regarding=0x01020304)
    message = encode(response(request, b"\x08"))
    expected = (
        bytes.fromhex("c1c0 0011 0100 0000")  # flags RESPONSE_TO_REQUEST (no ACK asked for), no error
        + bytes.fromhex("01010000 04030201")  # message type 0x00000101, the request's regarding
        + bytes(6)
        + bytes.fromhex("00 01 08")  # one immediate byte: 8
        + bytes(15)
        + bytes.fromhex("14000000")
        + bytes(16)
        + bytes.fromhex("c5c4c3c2")
    )
    assert message == expected


def test_pyseabreeze_reads_an_immediate_reply_and_a_payload_reply(pyseabreeze):
    protocol, transport = pyseabreeze
    spectrum = struct.pack("<" + "H" * 2068, *range(2068))
    transport.incoming += encode(response(Frame(GET_SERIAL_NUMBER_LENGTH), b"\x08"))
    transport.incoming += encode(response(Frame(GET_SPECTRUM_NOW_HDX), spectrum))
    assert protocol.query(GET_SERIAL_NUMBER_LENGTH) == b"\x08"
    assert protocol.query(GET_SPECTRUM_NOW_HDX) == spectrum
    assert struct.unpack("<" + "H" * 2068, spectrum) == tuple(range(2068))  # what get_intensities() does
    assert not transport.incoming


def test_pyseabreeze_takes_an_ack_and_raises_on_a_nack(pyseabreeze):
    protocol, transport = pyseabreeze
    request = decode(protocol._construct_outgoing_message(SET_ITIME_USEC, struct.pack("<L", 1), request_ack=True))
    ack = response(request)
    assert ack.flags == Flag.RESPONSE_TO_REQUEST | Flag.ACK and ack.error == 0
    transport.incoming += encode(ack)
    assert protocol.send(SET_ITIME_USEC, 100_000) > 0
    nack = response(Frame(GET_SERIAL_NUMBER_LENGTH), error=ObpError.UNKNOWN_MESSAGE_TYPE)
    assert nack.flags == Flag.RESPONSE_TO_REQUEST | Flag.NACK and nack.data == b""
    transport.incoming += encode(nack) + bytes(64)  # pyseabreeze drains 64 bytes after a bad header
    with pytest.raises(Exception, match="Unknown message type"):
        protocol.query(GET_SERIAL_NUMBER_LENGTH)


# --- round trips and refusals ------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [0, 1, 16, 17, 4136])
def test_round_trip_keeps_every_field_immediate_or_payload(length):
    frame = Frame(
        0x00180101,
        bytes((i * 7) % 256 for i in range(length)),
        flags=int(Flag.RESPONSE_TO_REQUEST | Flag.ACK),
        error=0,
        regarding=0xDEADBEEF,
    )
    message = encode(frame)
    assert decode(message) == frame
    header = decode_header(message)
    assert header.immediate_length == (length if length <= 16 else 0)
    assert len(message) == MIN_MESSAGE_BYTES + (length if length > 16 else 0)


def test_an_md5_checksum_is_written_and_checked():
    frame = Frame(0x100, b"HDX00011", checksum_type=CHECKSUM_MD5)
    message = encode(frame)
    assert message[-20:-4] == hashlib.md5(message[:-20]).digest()
    assert decode(message) == frame
    broken = bytearray(message)
    broken[30] ^= 0xFF
    with pytest.raises(FrameError) as caught:
        decode(bytes(broken))
    assert caught.value.error == ObpError.BAD_CHECKSUM and not caught.value.out_of_sync


def test_wrong_start_bytes_footer_or_length_lose_the_stream_and_a_wrong_version_does_not():
    good = encode(Frame(0x100))
    cases = {
        "start": (encode(Frame(0x100), start_bytes=0xC1C0), True),
        "footer": (encode(Frame(0x100), footer_value=0x12345678), True),
        "length": (encode(Frame(0x100), bytes_remaining=30), True),
        "version": (encode(Frame(0x100, protocol_version=0x1000)), False),
    }
    assert decode(good) == Frame(0x100)
    for name, (message, out_of_sync) in cases.items():
        with pytest.raises(FrameError) as caught:
            decode(message)
        assert caught.value.error == ObpError.INVALID_PROTOCOL, name
        assert caught.value.out_of_sync is out_of_sync, name


def test_unknown_checksum_type_and_immediate_length_over_16_are_refused():
    message = bytearray(encode(Frame(0x100)))
    message[22] = 7
    with pytest.raises(FrameError) as caught:
        decode(bytes(message))
    assert caught.value.error == ObpError.UNKNOWN_CHECKSUM_TYPE
    message = bytearray(encode(Frame(0x100)))
    message[23] = 17
    with pytest.raises(FrameError):
        decode(bytes(message))
    with pytest.raises(FrameError):
        decode(encode(Frame(0x100))[:40])


def test_the_constants_are_the_protocols():
    header = decode_header(encode(Frame(1)))
    assert header.start_bytes == START_BYTES == 0xC0C1 and header.protocol_version == 0x1100
    assert FOOTER_VALUE == 0xC2C3C4C5 and HEADER_BYTES == 44
    assert OBPProtocol.OBP.HEADER_START_BYTES == START_BYTES and OBPProtocol.OBP.FOOTER == FOOTER_VALUE
    assert {int(f) for f in Flag} == {
        OBPProtocol.OBP.FLAG_RESPONSE_TO_REQUEST,
        OBPProtocol.OBP.FLAG_ACK,
        OBPProtocol.OBP.FLAG_REQUEST_ACK,
        OBPProtocol.OBP.FLAG_NACK,
        OBPProtocol.OBP.FLAG_HW_EXCEPTION,
        OBPProtocol.OBP.FLAG_PROTOCOL_DEPRECATED,
    }
    assert all(OBPProtocol.OBP.ERROR_CODES[int(e)] for e in ObpError)
