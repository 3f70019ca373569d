"""Damaged copies of a good trial file, as a failing disk or an interrupted copy would leave them.

Each copy is named after its damage, so a failing test names it too:
truncated at several depths, a flipped byte in the superblock, flipped bytes in
the metadata that follows it (object headers, B-trees, heaps), and flipped bytes
in the raw data, which HDF5 cannot detect (raw chunks carry no checksum).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Damaged", "damaged_copies", "TRUNCATION_FRACTIONS", "table_digests"]

TRUNCATION_FRACTIONS = (0.005, 0.05, 0.3, 0.7, 0.99)


@dataclass(frozen=True)
class Damaged:
    """A damaged copy: its path, the kind of damage, and whether every reader must refuse it."""

    path: Path
    kind: str  # "truncated", "superblock", "metadata" or "raw-data"
    must_be_refused: bool  # truncated and superblock damage are always detectable
    source: Path  # the good file it is a copy of


def damaged_copies(
    make_good: Callable[[str], Path], folder: Path, *, seed: int = 7, metadata_flips: int = 8, raw_flips: int = 3
) -> list[Damaged]:
    """Damaged copies in ``folder``, each of its own good trial ``make_good(name)`` (so trial ids differ).

    Returns them with the good file each came from kept beside as ``Damaged.source``.
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []

    def write(name: str, damage: Callable[[bytearray], bytes], kind: str, must_be_refused: bool) -> None:
        source = make_good(name)
        path = folder / f"{name}.h5"
        path.write_bytes(damage(bytearray(source.read_bytes())))
        out.append(Damaged(path, kind, must_be_refused, source))

    def flip(positions: range | tuple[int, ...], mask: int) -> Callable[[bytearray], bytes]:
        def damage(data: bytearray) -> bytes:
            for position in positions:
                data[position] ^= mask
            return bytes(data)

        return damage

    for fraction in TRUNCATION_FRACTIONS:
        write(
            f"truncated-{fraction:g}",
            lambda data, f=fraction: bytes(data[: max(1, int(len(data) * f))]),
            "truncated",
            True,
        )
    for position in (9, 20, 30):  # size of offsets; the stored end of file; the root group address
        write(f"superblock-byte{position}", flip((position,), 0x10), "superblock", True)
    for _ in range(metadata_flips):
        position = rng.randrange(48, 2048)  # after the superblock: the first object headers
        write(f"metadata-byte{position}", flip((position,), 0xFF), "metadata", False)
    for _ in range(raw_flips):
        position = rng.randrange(100_000, 180_000)  # inside the spectra of a 600 s synthetic trial
        write(f"raw-byte{position}", flip(range(position, position + 16), 0x5A), "raw-data", False)
    return out


def table_digests(path: Path) -> dict[str, str]:
    """sha256 of every column of every table as rem-daq's reader returns it (what a user would see)."""
    import hashlib

    import numpy as np

    from daq import open_trial
    from daq.layout import TABLES

    digests = {}
    with open_trial(path) as trial:
        for spec in TABLES:
            for column, values in trial.read(spec.name).items():
                array = np.asarray(values)
                digests[f"{spec.name}/{column}"] = hashlib.sha256(
                    array.astype(str).tobytes() if array.dtype == object else array.tobytes()
                ).hexdigest()
    return digests
