"""The seed corpus: the committed captures cut into small, valid captures.

libFuzzer mutates small inputs far faster than 200 KB ones, so each capture
becomes several files of at most ``max_len`` bytes: its first records (the
handshake, the upgrade, the first frames) and windows from the middle (a
capture picked up mid-stream). Committed regression inputs are seeds too.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CAPTURES = REPO / "captures"
REGRESSIONS = REPO / "tests" / "hardening" / "data"
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


def _pcap_records(data: bytes) -> tuple[bytes, list[bytes]]:
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    records, pos = [], 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(order + "I", data, pos + 8)[0]
        records.append(data[pos : pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], records


def _pcapng_blocks(data: bytes) -> tuple[bytes, list[bytes]]:
    """(section header + interface descriptions, the other blocks); little-endian files only."""
    head, blocks, pos = b"", [], 0
    while pos + 12 <= len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if blen < 12:
            break
        block = data[pos : pos + blen]
        if btype in (0x0A0D0D0A, 1):
            head += block
        else:
            blocks.append(block)
        pos += blen
    return head, blocks


def _windows(head: bytes, records: list[bytes], max_len: int) -> Iterator[bytes]:
    for start in sorted({0, len(records) // 3, len(records) // 2, (2 * len(records)) // 3}):
        out = head
        for record in records[start:]:
            if len(out) + len(record) > max_len:
                break
            out += record
        if len(out) > len(head):
            yield out


def seed_inputs(max_len: int) -> Iterator[bytes]:
    """Every seed: windows of each capture, then the committed regression inputs."""
    for path in sorted(CAPTURES.glob("*.pcap*")):
        if path.suffix not in (".pcap", ".pcapng"):
            continue
        data = path.read_bytes()
        split = _pcapng_blocks if data[:4] == _PCAPNG_SHB else _pcap_records
        yield from _windows(*split(data), max_len)
    for path in sorted(REGRESSIONS.glob("*")):
        if path.is_file() and path.stat().st_size <= max_len:
            yield path.read_bytes()


def stream_seed_inputs(max_len: int) -> Iterator[bytes]:
    """Seeds of the stream target: each captured connection's direction streams (reassembled), and the
    reference M-PROXY byte streams; prefixed with the mode and segment-size bytes ``stream_capture`` reads."""
    from mproxy_scapy.pcap import open_capture
    from mproxy_scapy.tcp import TcpReassembler

    for path in sorted(CAPTURES.glob("*.pcap*")):
        if path.suffix not in (".pcap", ".pcapng"):
            continue
        streams: dict[tuple[int, int], bytearray] = {}
        reassembler = TcpReassembler()
        with open_capture(str(path)) as items:
            for item in items:
                if type(item).__name__ != "Segment":
                    continue
                for event in reassembler.feed(item):
                    if type(event).__name__ == "Data":
                        held = streams.setdefault((event.conn.id, event.direction), bytearray())
                        if len(held) < max_len:
                            held += event.data
        for (_, direction), data in streams.items():
            yield bytes([0 if direction else 8, 180]) + bytes(data[: max_len - 2])
    for name in ("output.bin", "readme-example.bin"):
        data = (REPO / "tests" / "data" / "reference" / name).read_bytes()
        yield b"\x00\x10" + data[: max_len - 2]


def write_seeds(directory: Path, max_len: int, target: str = "capture") -> int:
    """Write the seeds of ``target`` into ``directory`` named by content hash (libFuzzer's naming); how many."""
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for data in seed_inputs(max_len) if target == "capture" else stream_seed_inputs(max_len):
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
        count += 1
    return count
