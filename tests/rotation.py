"""Rotated capture sets for the many-inputs tests: a pcap cut into files as ``tcpdump -C`` would cut it.

Written with ``struct`` (the pcap format is 24 + 16 bytes of headers), so the
pieces are byte-for-byte the original's records and the test knows exactly
which packet of the original is which packet of which piece.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from pathlib import Path

_HEADER = 24
_RECORD = struct.Struct("<IIII")


def pcap_records(path: Path) -> tuple[bytes, list[bytes]]:
    """The global header and every record (record header + data) of a little-endian pcap file."""
    data = path.read_bytes()
    assert data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"), "a little-endian pcap is expected"
    records = []
    offset = _HEADER
    while offset < len(data):
        caplen = _RECORD.unpack_from(data, offset)[2]
        end = offset + 16 + caplen
        records.append(data[offset:end])
        offset = end
    return data[:_HEADER], records


def rotate(path: Path, directory: Path, cuts: Sequence[int], *, stem: str = "relay.pcap") -> list[Path]:
    """``path`` cut before each packet index in ``cuts`` into ``stem``, ``stem``1, ``stem``2, ... (tcpdump -C names)."""
    header, records = pcap_records(path)
    directory.mkdir(parents=True, exist_ok=True)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(records))), len(records)]
    pieces = []
    for number, (start, stop) in enumerate(itertools.pairwise(bounds)):
        piece = directory / (stem if number == 0 else f"{stem}{number}")
        piece.write_bytes(header + b"".join(records[start:stop]))
        pieces.append(piece)
    return pieces


def shifted(path: Path, out: Path, seconds: int) -> Path:
    """A copy of ``path`` with every packet ``seconds`` later (another relay's capture at an overlapping time)."""
    header, records = pcap_records(path)
    moved = []
    for record in records:
        sec, frac, caplen, length = _RECORD.unpack_from(record)
        moved.append(_RECORD.pack(sec + seconds, frac, caplen, length) + record[16:])
    out.write_bytes(header + b"".join(moved))
    return out


def as_raw_ip(path: Path, out: Path) -> Path:
    """``path`` (Ethernet) rewritten with link type 101, raw IP: each record loses its 14-byte Ethernet header."""
    header, records = pcap_records(path)
    header = header[:20] + struct.pack("<I", 101)
    moved = []
    for record in records:
        sec, frac, caplen, length = _RECORD.unpack_from(record)
        moved.append(_RECORD.pack(sec, frac, caplen - 14, length - 14) + record[30:])
    out.write_bytes(header + b"".join(moved))
    return out
