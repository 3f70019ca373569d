"""The superblock check that runs before HDF5 sees a trial file, and the writer-flag clearing of recovery."""

import struct
import sys
from pathlib import Path

import h5py
import pytest

from daq._superblock import SuperblockError, clear_writer_flags, lookup3, read_superblock

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))


def test_lookup3_matches_the_published_vectors():
    # the self-test values printed by Bob Jenkins' lookup3.c driver
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551
    assert lookup3(b"Four score and seven years ago", 1) == 0xCD628161


def test_a_file_hdf5_wrote_passes_and_reports_its_own_length(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver=("v110", "v110")) as handle:
        handle["x"] = list(range(1000))
    superblock = read_superblock(path)
    assert superblock.version == 3
    assert superblock.stored_eof == path.stat().st_size
    assert not superblock.writer_flags_set


def test_a_file_open_for_swmr_writing_says_so_and_clearing_lets_h5py_open_it_without_swmr(tmp_path):
    path = tmp_path / "f.h5"
    writer = h5py.File(path, "w", libver=("v110", "v110"))
    writer.create_dataset("x", shape=(0,), maxshape=(None,), chunks=(16,), dtype="f8")
    writer.swmr_mode = True
    writer.flush()
    copy = tmp_path / "killed.h5"  # the bytes a killed writer leaves
    copy.write_bytes(path.read_bytes())
    writer.close()
    assert read_superblock(copy).writer_flags_set
    with pytest.raises(OSError):
        h5py.File(copy, "r")
    before = clear_writer_flags(copy)
    assert before.writer_flags_set and not read_superblock(copy).writer_flags_set
    with h5py.File(copy, "r") as handle:
        assert handle["x"].shape == (0,)
    assert clear_writer_flags(copy) == read_superblock(copy)  # a second time: nothing to do


@pytest.mark.parametrize("position", range(0, 48))
def test_any_flipped_superblock_byte_is_refused(tmp_path, position):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver=("v110", "v110")) as handle:
        handle["x"] = [1.0, 2.0]
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SuperblockError, match="not an HDF5 file|damaged"):
        read_superblock(path)


def test_what_is_not_a_regular_hdf5_file_is_refused_without_opening_it(tmp_path):
    import os

    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    with pytest.raises(SuperblockError, match="not a regular file"):
        read_superblock(fifo)  # opening a FIFO for reading would block until a writer came
    with pytest.raises(SuperblockError, match="not a regular file"):
        read_superblock(tmp_path)
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(SuperblockError, match="not an HDF5 file"):
        read_superblock(empty)
    short = tmp_path / "short.h5"
    short.write_bytes(b"\x89HDF\r\n\x1a\n\x03")
    with pytest.raises(SuperblockError, match="ends inside its superblock"):
        read_superblock(short)
    with pytest.raises(FileNotFoundError):
        read_superblock(tmp_path / "missing.h5")


def test_a_superblock_after_a_user_block_is_found(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver=("v110", "v110"), userblock_size=512) as handle:
        handle["x"] = [1.0]
    superblock = read_superblock(path)
    assert superblock.offset == 512
    assert superblock.stored_eof == path.stat().st_size
    assert struct.unpack_from("<B", path.read_bytes(), 512 + 8)[0] == superblock.version
