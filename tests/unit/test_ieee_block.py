"""The strict IEEE 488.2 block reader: a table of malformed blocks, then property-based fuzzing.

Contract: a message either is a well-formed definite-length block of exactly
n finite float32 little-endian values plus the terminator, and then its values
come back, or ProtocolError is raised. Never partial or repaired data. Read from
a line (read_block), the declared length is refused before the payload is read.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers import ProtocolError
from drivers._ieee_block import check_declared_length, digit_count, parse_block, payload_length, read_block

N = 4  # values per block in the table below


def block(values, digits: int | None = None, terminator: bytes = b"\n") -> bytes:
    """A well-formed block written here by hand (independently of the parser)."""
    payload = b"".join(struct.pack("<f", v) for v in values)
    length = str(len(payload))
    if digits is not None:
        length = length.zfill(digits)
    return b"#" + str(len(length)).encode() + length.encode() + payload + terminator


GOOD = block([1.0, 2.5, 65535.0, 0.0])
PAYLOAD = GOOD[3:-1]


def test_a_well_formed_block_gives_its_values_as_float64():
    values = parse_block(GOOD, N)
    assert values.dtype == np.float64
    assert values.tolist() == [1.0, 2.5, 65535.0, 0.0]


def test_length_field_may_carry_leading_zeros_up_to_nine_digits():
    assert parse_block(block([7.0] * N, digits=9), N).tolist() == [7.0] * N


def test_empty_terminator_means_the_block_ends_the_message():
    assert parse_block(GOOD[:-1], N, terminator=b"").tolist() == [1.0, 2.5, 65535.0, 0.0]


def test_the_result_is_a_copy_not_a_view_of_the_message():
    values = parse_block(GOOD, N)
    values[0] = -1.0
    assert parse_block(GOOD, N)[0] == 1.0


MALFORMED = {
    "empty message": (b"", "too short"),
    "only '#'": (b"#", "too short"),
    "missing '#'": (b"216" + PAYLOAD + b"\n", "missing '#'"),
    "leading whitespace": (b" " + GOOD, "missing '#'"),
    "ASCII data instead of a block": (b"1.0,2.5,65535.0,0.0\n", "missing '#'"),
    "indefinite length #0": (b"#0" + PAYLOAD + b"\n", "indefinite"),
    "digit count not a digit": (b"#A16" + PAYLOAD + b"\n", "digit 1-9"),
    "digit count is a space": (b"# 216" + PAYLOAD + b"\n", "digit 1-9"),
    "letter in the length digits": (b"#21x" + PAYLOAD + b"\n", "bad length digits"),
    "sign in the length digits": (b"#3+16" + PAYLOAD + b"\n", "bad length digits"),
    "space in the length digits": (b"#3 16" + PAYLOAD + b"\n", "bad length digits"),
    "header cut inside the length digits": (b"#41", "cut short"),
    "non-ASCII digit in the length": ("#2١6".encode() + PAYLOAD + b"\n", "bad length digits"),
    "short block: payload cut": (GOOD[:-5] + b"\n", "short block"),
    "short block: terminator missing": (GOOD[:-1], "short block"),
    "long block: extra value before terminator": (GOOD[:-1] + struct.pack("<f", 3.0) + b"\n", "trailing bytes"),
    "trailing bytes after the terminator": (GOOD + b"garbage", "trailing bytes"),
    "second block appended": (GOOD + GOOD, "trailing bytes"),
    "wrong terminator": (GOOD[:-1] + b"\r", "trailing bytes"),
    "CR LF terminator": (GOOD[:-1] + b"\r\n", "trailing bytes"),
    "too few values, consistent framing": (block([1.0, 2.0, 3.0]), "expected 16 bytes"),
    "too many values, consistent framing": (block([1.0] * 5), "expected 16 bytes"),
    "length not a multiple of 4": (b"#215" + PAYLOAD[:15] + b"\n", "not a multiple of 4"),
    "zero length": (b"#10\n", "expected 16 bytes"),
    "huge declared length": (b"#9999999999" + PAYLOAD + b"\n", "expected 16 bytes"),
    "NaN value": (block([1.0, float("nan"), 3.0, 4.0]), "non-finite"),
    "+inf value": (block([1.0, 2.0, float("inf"), 4.0]), "non-finite"),
    "-inf value": (block([float("-inf"), 2.0, 3.0, 4.0]), "non-finite"),
    "signalling NaN bit pattern": (b"#216" + PAYLOAD[:12] + b"\x01\x00\x80\x7f" + b"\n", "non-finite"),
}


@pytest.mark.parametrize("message, reason", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_block_raises_protocol_error_saying_what_is_wrong(message, reason):
    with pytest.raises(ProtocolError) as caught:
        parse_block(message, N)
    assert reason in str(caught.value)


def test_header_helpers_agree_with_the_whole_message_parser():
    assert digit_count(b"#2") == 2
    assert payload_length(b"16") == 16
    for start in (b"", b"#", b"X2", b"#0", b"#x"):
        with pytest.raises(ProtocolError):
            digit_count(start)
    for digits in (b"", b"1x", b"-1", b" 1"):
        with pytest.raises(ProtocolError):
            payload_length(digits)


def _is_well_formed(message: bytes, n_values: int, terminator: bytes) -> bool:
    """Independent statement of well-formedness: re-encode the values and compare byte for byte."""
    if not message.startswith(b"#") or len(message) < 2 or not (0x31 <= message[1] <= 0x39):
        return False
    n = message[1] - 0x30
    digits = message[2 : 2 + n]
    if len(digits) != n or not all(0x30 <= b <= 0x39 for b in digits):
        return False
    length = int(digits)
    payload = message[2 + n : 2 + n + length]
    if length != 4 * n_values or len(payload) != length or message[2 + n + length :] != terminator:
        return False
    return bool(np.isfinite(np.frombuffer(payload, "<f4")).all())


FUZZ_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ_SETTINGS
@given(message=st.binary(max_size=64), n_values=st.integers(1, 8), terminator=st.sampled_from([b"\n", b""]))
def test_fuzz_arbitrary_bytes_give_protocol_error_or_exactly_the_encoded_values(message, n_values, terminator):
    try:
        values = parse_block(message, n_values, terminator)
    except ProtocolError:
        assert not _is_well_formed(message, n_values, terminator)
        return
    assert _is_well_formed(message, n_values, terminator)
    assert values.shape == (n_values,) and np.isfinite(values).all()
    assert block(values.tolist(), digits=message[1] - 0x30, terminator=terminator) == message


finite_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def mutated_blocks(draw):
    """A valid block of 1-8 values, then one random insertion, deletion or byte change."""
    values = draw(st.lists(finite_float32, min_size=1, max_size=8))
    message = bytearray(block(values, digits=draw(st.integers(1, 9)) if draw(st.booleans()) else None))
    position = draw(st.integers(0, len(message)))
    edit = draw(st.sampled_from(["insert", "delete", "replace"]))
    byte = draw(st.integers(0, 255))
    if edit == "insert":
        message.insert(position, byte)
    elif position < len(message):
        if edit == "delete":
            del message[position]
        else:
            message[position] = byte
    return len(values), bytes(message)


@FUZZ_SETTINGS
@given(case=mutated_blocks())
def test_fuzz_mutated_blocks_never_yield_data_unless_still_well_formed(case):
    n_values, message = case
    try:
        values = parse_block(message, n_values)
    except ProtocolError:
        assert not _is_well_formed(message, n_values, b"\n")
        return
    # A changed payload byte can still be a valid float: without a checksum that is data, and must
    # be exactly what the bytes say.
    assert _is_well_formed(message, n_values, b"\n")
    assert block(values.tolist(), digits=message[1] - 0x30) == message


@FUZZ_SETTINGS
@given(values=st.lists(finite_float32, min_size=1, max_size=64))
def test_fuzz_valid_blocks_round_trip(values):
    assert parse_block(block(values), len(values)).tolist() == [float(np.float32(v)) for v in values]


# --- reading from a line: the declared length is checked before the payload is read ------------------
class RecordingLine:
    """Hands out a message's bytes on request, exactly as asked, and records each request."""

    def __init__(self, message: bytes):
        self.message, self.position, self.requests = message, 0, []

    def read(self, count: int, what: str) -> bytes:
        self.requests.append(count)
        if self.position + count > len(self.message):
            raise EOFError(f"the line ran dry waiting for {what}")  # stands in for the driver's timeout
        data = self.message[self.position : self.position + count]
        self.position += count
        return data


def test_read_block_reads_exactly_one_block_off_the_line():
    line = RecordingLine(GOOD + b"next answer")
    assert read_block(line.read, N).tolist() == [1.0, 2.5, 65535.0, 0.0]
    assert line.requests == [2, 2, 4 * N + 1]
    assert line.message[line.position :] == b"next answer"  # nothing of the next answer was taken


@pytest.mark.parametrize(
    "header, declared",
    [
        (b"#9999999999", 999_999_999),  # a gigabyte
        (b"#880000000", 80_000_000),  # 20 000 000 pixels of float32
        (b"#9000000020", 20),  # 5 values where 4 were expected
        (b"#212", 12),  # 3 values
    ],
)
def test_a_wrong_declared_length_is_refused_before_any_payload_is_read(header, declared):
    line = RecordingLine(header + PAYLOAD + b"\n")
    with pytest.raises(ProtocolError, match=f"block declares {declared} bytes"):
        read_block(line.read, N)
    assert line.requests == [2, len(header) - 2]  # '#n' and the digits, never the payload


def test_check_declared_length_accepts_exactly_four_bytes_per_value():
    check_declared_length(4 * 2048, 2048)
    for length in (0, 4 * 2048 - 4, 4 * 2048 + 4, 4 * 2048 + 1, 999_999_999):
        with pytest.raises(ProtocolError, match="expected 8192 bytes"):
            check_declared_length(length, 2048)


@FUZZ_SETTINGS
@given(
    message=st.one_of(st.binary(max_size=64), mutated_blocks().map(lambda case: case[1])), n_values=st.integers(1, 8)
)
def test_fuzz_read_block_asks_for_at_most_one_blocks_worth_and_agrees_with_parse_block(message, n_values):
    line = RecordingLine(message)
    try:
        values = read_block(line.read, n_values)
    except (ProtocolError, EOFError):
        values = None
    assert sum(line.requests) <= 2 + 9 + 4 * n_values + 1  # a header cannot make it read (or allocate) more
    consumed = message[: line.position]
    if values is not None:
        assert parse_block(consumed, n_values).tolist() == values.tolist()
        assert _is_well_formed(consumed, n_values, b"\n")
    elif _is_well_formed(message, n_values, b"\n"):
        pytest.fail("read_block refused a well-formed block")
