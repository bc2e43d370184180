"""The packet source: pcap/pcapng variants, link types, IP/TCP edge cases, damaged files, real captures."""

from __future__ import annotations

import gzip
import io
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wireshark import matrix

from mproxy_scapy.errors import UserError
from mproxy_scapy.pcap import ACK, FIN, PSH, SYN, Segment, SourceProblem, live_capture, open_capture
from mproxy_scapy.tcp import Closed, Data, TcpReassembler

from loopback_capture import both_fins_written, loopback_capture

# Packet builders (checksums are left zero: the source does not verify them, as offload makes them unreliable).


def tcp(payload: bytes = b"", sport: int = 40000, dport: int = 3000, seq: int = 1000, ack: int = 2000,
        flags: int = ACK | PSH, options: bytes = b"") -> bytes:
    assert len(options) % 4 == 0
    offset = (20 + len(options)) // 4
    return struct.pack("!HHIIHHHH", sport, dport, seq, ack, (offset << 12) | flags, 65535, 0, 0) + options + payload


def ipv4(segment: bytes, src: str = "10.0.0.1", dst: str = "10.0.0.2", proto: int = 6, options: bytes = b"",
         frag: int = 0, total: int | None = None) -> bytes:
    ihl = 5 + len(options) // 4
    length = ihl * 4 + len(segment) if total is None else total
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, frag, 64, proto, 0,
                         socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
    return header + options + segment


def ipv6(segment: bytes, src: str = "2001:db8::1", dst: str = "2001:db8::2", next_header: int = 6,
         extensions: bytes = b"") -> bytes:
    body = extensions + segment
    return struct.pack("!IHBB16s16s", 0x60000000, len(body), next_header, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst)) + body


def ext(next_header: int, size_units: int = 0) -> bytes:
    """An IPv6 hop-by-hop / routing / destination options header of (size_units + 1) * 8 bytes."""
    return struct.pack("!BB", next_header, size_units) + b"\x00" * (6 + 8 * size_units)


def ether(packet: bytes, ethertype: int = 0x0800, vlans: tuple[int, ...] = ()) -> bytes:
    header = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01"
    for tpid in vlans:
        header += struct.pack("!H", tpid) + struct.pack("!H", 42)
    return header + struct.pack("!H", ethertype) + packet


def sll(packet: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHH8sH", 0, 772, 6, b"\x00" * 8, protocol) + packet


def sll2(packet: bytes, protocol: int = 0x0800) -> bytes:
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 772, 0, 6, b"\x00" * 8) + packet


def pcap(packets: list[bytes | tuple[float, bytes]], linktype: int = 1, order: str = "<", nano: bool = False,
         snaplen: int = 262144, caplens: dict[int, int] | None = None) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)
    for index, item in enumerate(packets):
        ts, data = item if isinstance(item, tuple) else (1_700_000_000.5 + index, item)
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        caplen = (caplens or {}).get(index, len(data))
        out += struct.pack(order + "IIII", sec, frac, caplen, len(data)) + data
    return out


def block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def option(order: str, code: int, value: bytes) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def shb(order: str) -> bytes:
    return block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(order: str, linktype: int, tsresol: int | None = None, tsoffset: int | None = None,
        snaplen: int = 0) -> bytes:
    options = b""
    if tsresol is not None:
        options += option(order, 9, bytes([tsresol]))
    if tsoffset is not None:
        options += option(order, 14, struct.pack(order + "q", tsoffset))
    if options:
        options += struct.pack(order + "HH", 0, 0)
    return block(order, 1, struct.pack(order + "HHI", linktype, 0, snaplen) + options)


def epb(order: str, interface: int, units: int, data: bytes) -> bytes:
    return block(order, 6, struct.pack(order + "IIIII", interface, units >> 32, units & 0xFFFFFFFF, len(data),
                                       len(data)) + data)


def spb(order: str, data: bytes) -> bytes:
    return block(order, 3, struct.pack(order + "I", len(data)) + data)


def pb(order: str, interface: int, units: int, data: bytes) -> bytes:
    return block(order, 2, struct.pack(order + "HHIIII", interface, 0, units >> 32, units & 0xFFFFFFFF, len(data),
                                       len(data)) + data)


def items(data: bytes) -> list[Segment | SourceProblem]:
    return list(open_capture(io.BytesIO(data)))


def segments(data: bytes) -> list[Segment]:
    found = items(data)
    assert all(isinstance(item, Segment) for item in found), found
    return found  # type: ignore[return-value]


def problems(found: list) -> list[tuple[int, str]]:
    return [(item.frame_no, item.kind) for item in found if isinstance(item, SourceProblem)]


# Formats.

@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_both_byte_orders_and_resolutions(order, nano):
    frames = [(1_700_000_000.25, ether(ipv4(tcp(b"hello", flags=SYN | ACK, seq=7, ack=9)))),
              (1_700_000_001.000123, ether(ipv4(tcp(b"world!", seq=0xFFFFFFFF))))]
    first, second = segments(pcap(frames, order=order, nano=nano))
    assert (first.frame_no, first.src, first.dst, first.sport, first.dport) == (1, "10.0.0.1", "10.0.0.2", 40000, 3000)
    assert (first.seq, first.ack, first.flags, bytes(first.payload), first.ip_version) == (7, 9, SYN | ACK, b"hello", 4)
    assert first.ts == pytest.approx(1_700_000_000.25, abs=1e-9)
    assert second.ts == pytest.approx(1_700_000_001.000123, abs=1e-7)
    assert (second.frame_no, second.seq, bytes(second.payload)) == (2, 0xFFFFFFFF, b"world!")


def test_reader_takes_a_path_and_counts(tmp_path):
    path = tmp_path / "two.pcap"
    path.write_bytes(pcap([ether(ipv4(tcp(b"x" * 10))), ether(ipv4(b"udp!", proto=17)), ether(b"arp", 0x0806),
                           ether(ipv6(tcp(b"y" * 5)), 0x86DD)]))
    reader = open_capture(path)
    found = list(reader)
    assert [s.frame_no for s in found] == [1, 4]  # frames keep their record numbers
    assert found[1].ip_version == 6 and found[1].src == "2001:db8::1"
    stats = reader.stats
    assert (stats.packets, stats.tcp_segments, stats.non_tcp, stats.problems) == (4, 2, 2, 0)
    assert stats["bytes_read"] == path.stat().st_size
    assert reader.format == "pcap" and reader.linktype == 1


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_interfaces_resolutions_and_block_kinds(order):
    data = shb(order)
    data += idb(order, 1)  # microseconds by default
    data += idb(order, 101, tsresol=9)  # nanoseconds, raw IP
    data += idb(order, 113, tsresol=0x80 | 10, tsoffset=1000)  # 2^-10 s, offset 1000 s
    data += block(order, 4, b"\x00" * 4)  # name resolution: skipped silently
    data += epb(order, 0, 1_700_000_000_500_000, ether(ipv4(tcp(b"eth"))))
    data += epb(order, 1, 1_700_000_000_250_000_000, ipv6(tcp(b"raw6")))
    data += epb(order, 2, 1024 * 5 + 512, sll(ipv4(tcp(b"cooked"))))
    data += block(order, 0x0BADCAFE, b"????")
    data += spb(order, ether(ipv4(tcp(b"simple"))))
    data += block(order, 0x0BADCAFE, b"!!!!")
    data += pb(order, 1, 1_800_000_000_000_000_000, ipv4(tcp(b"obsolete")))
    data += block(order, 5, b"\x00" * 12)  # interface statistics: skipped silently
    found = items(data)
    assert problems(found) == [(3, "unknown_block")]
    got = [(s.frame_no, bytes(s.payload), s.ts) for s in found if isinstance(s, Segment)]
    assert got == [(1, b"eth", pytest.approx(1_700_000_000.5)), (2, b"raw6", pytest.approx(1_700_000_000.25)),
                   (3, b"cooked", pytest.approx(1005.5)), (4, b"simple", pytest.approx(1005.5)),
                   (5, b"obsolete", pytest.approx(1_800_000_000.0))]


def test_pcapng_several_sections_reset_interfaces_and_byte_order():
    data = shb("<") + idb("<", 1) + epb("<", 0, 1_000_000, ether(ipv4(tcp(b"first"))))
    data += shb(">") + idb(">", 228) + epb(">", 0, 2_000_000, ipv4(tcp(b"second")))
    data += epb(">", 1, 3_000_000, ipv4(tcp(b"nowhere")))
    reader = open_capture(io.BytesIO(data))
    found = list(reader)
    assert [(x.frame_no, bytes(x.payload)) for x in found if isinstance(x, Segment)] == [(1, b"first"), (2, b"second")]
    assert problems(found) == [(3, "bad_interface")]
    assert reader.format == "pcapng"


def test_pcapng_truncated_block_at_end():
    data = shb("<") + idb("<", 1) + epb("<", 0, 0, ether(ipv4(tcp(b"ok"))))
    data += epb("<", 0, 0, ether(ipv4(tcp(b"cut off"))))[:-10]
    found = items(data)
    assert bytes(found[0].payload) == b"ok"
    assert problems(found) == [(2, "truncated_record")]


def test_pcapng_impossible_block_length_stops():
    data = shb("<") + idb("<", 1) + struct.pack("<II", 6, 7) + b"\x00" * 40
    assert problems(items(data)) == [(1, "bad_record_length")]


# Link types.

PAYLOAD = b"payload " * 10  # long enough for the one-unpack fast paths
TCP_V4 = ipv4(tcp(PAYLOAD))
TCP_V6 = ipv6(tcp(PAYLOAD))
LINK_CASES = {
    "ethernet": (1, ether(TCP_V4)),
    "ethernet-ipv6": (1, ether(TCP_V6, 0x86DD)),
    "vlan": (1, ether(TCP_V4, vlans=(0x8100,))),
    "qinq-88a8": (1, ether(TCP_V6, 0x86DD, vlans=(0x88A8, 0x8100))),
    "qinq-9100": (1, ether(TCP_V4, vlans=(0x9100, 0x8100))),
    "linux-cooked-v1": (113, sll(TCP_V4)),
    "linux-cooked-v1-ipv6": (113, sll(TCP_V6, 0x86DD)),
    "linux-cooked-v2": (276, sll2(TCP_V4)),
    "linux-cooked-v2-ipv6": (276, sll2(TCP_V6, 0x86DD)),
    "null-little-endian": (0, struct.pack("<I", 2) + TCP_V4),
    "null-big-endian": (0, struct.pack(">I", 2) + TCP_V4),
    "null-ipv6-linux": (0, struct.pack("<I", 10) + TCP_V6),
    "null-ipv6-darwin": (0, struct.pack("<I", 30) + TCP_V6),
    "null-ipv6-freebsd-be": (0, struct.pack(">I", 28) + TCP_V6),
    "null-ipv6-netbsd": (0, struct.pack("<I", 24) + TCP_V6),
    "loop": (108, struct.pack(">I", 2) + TCP_V4),
    "loop-ipv6": (108, struct.pack(">I", 24) + TCP_V6),
    "raw-101-v4": (101, TCP_V4),
    "raw-101-v6": (101, TCP_V6),
    "raw-12": (12, TCP_V4),
    "raw-14": (14, TCP_V6),
    "ipv4-228": (228, TCP_V4),
    "ipv6-229": (229, TCP_V6),
}


@pytest.mark.parametrize("case", sorted(LINK_CASES))
def test_link_types(case):
    linktype, frame = LINK_CASES[case]
    (segment,) = segments(pcap([frame], linktype=linktype))
    assert bytes(segment.payload) == PAYLOAD
    assert (segment.sport, segment.dport, segment.seq) == (40000, 3000, 1000)
    assert segment.ip_version == (6 if "v6" in case or "ipv6" in case or case in ("raw-14", "qinq-88a8") else 4)


def test_link_type_field_with_fcs_bits():
    """The upper bits of the pcap link-type field announce a frame check sequence; the IP length bounds the payload."""
    frame = ether(ipv4(tcp(b"data"))) + b"\xde\xad\xbe\xef"
    reader = open_capture(io.BytesIO(pcap([frame], linktype=1 | 0x1 << 26 | 0x4 << 28)))
    (segment,) = list(reader)
    assert bytes(segment.payload) == b"data" and reader.linktype == 1


def test_unsupported_link_type_is_reported_once_and_counted():
    reader = open_capture(io.BytesIO(pcap([b"\x00" * 60] * 3, linktype=105)))
    found = list(reader)
    assert problems(found) == [(1, "unsupported_linktype")]
    assert "105" in found[0].detail
    assert reader.stats.unsupported == 3


def test_truncated_link_headers_are_problems():
    found = items(pcap([b"\x00" * 10, sll(b"")[:12], struct.pack("<I", 2)[:3]], linktype=1))
    assert problems(found) == [(1, "truncated_packet"), (2, "truncated_packet"), (3, "truncated_packet")]


# IP and TCP.

@pytest.mark.parametrize("size", [0, 1, 19, 20, 21, 100])
@pytest.mark.parametrize("version", [4, 6])
def test_payload_sizes_around_the_fast_path_limits(size, version):
    payload = bytes(range(size))
    options = b"\x01\x01\x01\x00" * (size % 3)
    packet = ipv4(tcp(payload, options=options)) if version == 4 else ipv6(tcp(payload, options=options))
    for linktype, frame in ((1, ether(packet, 0x0800 if version == 4 else 0x86DD)), (101, packet)):
        found = segments(pcap([frame, frame + b"\x00" * 7], linktype=linktype))  # the second one padded
        assert [(bytes(s.payload), s.ip_version, s.seq) for s in found] == [(payload, version, 1000)] * 2


def test_ipv4_options_use_the_header_length():
    (segment,) = segments(pcap([ether(ipv4(tcp(b"after options"), options=b"\x01\x01\x01\x00" * 2))]))
    assert bytes(segment.payload) == b"after options"


def test_ethernet_padding_is_not_payload():
    frame = ether(ipv4(tcp(b"ab"))) + b"\x00" * 4  # padded to the 60-byte minimum
    (segment,) = segments(pcap([frame]))
    assert bytes(segment.payload) == b"ab"


def test_zero_total_length_from_segmentation_offload_uses_the_captured_length():
    (segment,) = segments(pcap([ether(ipv4(tcp(b"big" * 1000), total=0))]))
    assert len(segment.payload) == 3000


def test_tcp_options_use_the_data_offset():
    (segment,) = segments(pcap([ether(ipv4(tcp(b"data", options=b"\x02\x04\x05\xb4\x01\x01\x04\x02")))]))
    assert bytes(segment.payload) == b"data"


def test_malformed_headers_are_problems():
    bad_offset = bytearray(tcp(b"x"))
    bad_offset[12] = 0x30
    found = items(pcap([ether(ipv4(bytes(bad_offset))), ether(ipv4(tcp(b"x"), total=10)),
                        ether(b"\x45" + b"\x00" * 10), ether(ipv4(b"\x00" * 8))]))
    assert problems(found) == [(1, "malformed_packet"), (2, "malformed_packet"), (3, "truncated_packet"),
                               (4, "malformed_packet")]


def test_ipv4_fragments_are_reported_not_decoded():
    reader = open_capture(io.BytesIO(pcap([
        ether(ipv4(tcp(b"first half"), frag=0x2000)),  # more fragments
        ether(ipv4(b"second half", frag=3)),  # offset 24
        ether(ipv4(b"udp part", proto=17, frag=0x2000)),
    ])))
    found = list(reader)
    assert problems(found) == [(1, "ip_fragment"), (2, "ip_fragment")]
    assert "10.0.0.1 > 10.0.0.2 at offset 24" in found[1].detail
    assert (reader.stats.ip_fragments, reader.stats.non_tcp, reader.stats.tcp_segments) == (2, 1, 0)


def test_ipv6_extension_headers_are_walked():
    chain = ext(43, 1) + ext(60) + ext(6)  # hop-by-hop -> routing (16 bytes) -> destination options -> TCP
    atomic = struct.pack("!BBHI", 6, 0, 0, 1)  # a fragment header that holds the whole datagram
    (first, second) = segments(pcap([ether(ipv6(tcp(b"ext"), next_header=0, extensions=chain), 0x86DD),
                                     ether(ipv6(tcp(b"atomic"), next_header=44, extensions=atomic), 0x86DD)]))
    assert bytes(first.payload) == b"ext" and bytes(second.payload) == b"atomic"


def test_ipv6_fragments_are_reported():
    fragment = struct.pack("!BBHI", 6, 0, 0x0001, 7)  # offset 0, more fragments
    found = items(pcap([ether(ipv6(tcp(b"part"), next_header=44, extensions=fragment), 0x86DD)]))
    assert problems(found) == [(1, "ip_fragment")]
    assert "2001:db8::1 > 2001:db8::2" in found[0].detail


def test_non_tcp_ipv6_is_counted():
    reader = open_capture(io.BytesIO(pcap([ether(ipv6(b"\x00" * 8, next_header=17), 0x86DD)])))
    assert list(reader) == []
    assert reader.stats.non_tcp == 1


def test_snapped_packet_keeps_what_was_captured_and_reports_once():
    frames = [ether(ipv4(tcp(b"A" * 100))), ether(ipv4(tcp(b"B" * 100)))]
    shorter = len(frames[0]) - 60
    reader = open_capture(io.BytesIO(pcap([f[:shorter] for f in frames], snaplen=shorter)))
    found = list(reader)
    assert problems(found) == [(1, "snapped_packet")]
    assert [len(s.payload) for s in found if isinstance(s, Segment)] == [40, 40]
    assert reader.stats.snapped == 2


# Damaged and foreign files.

def test_truncated_last_record_keeps_what_came_before():
    data = pcap([ether(ipv4(tcp(b"whole"))), ether(ipv4(tcp(b"cut")))])
    found = items(data[:-5])
    assert bytes(found[0].payload) == b"whole"
    assert problems(found) == [(2, "truncated_record")]
    assert "record 2" in found[1].detail


def test_truncated_record_header():
    data = pcap([ether(ipv4(tcp(b"whole")))]) + b"\x00" * 10
    assert problems(items(data)) == [(2, "truncated_record")]


def test_caplen_beyond_file_end():
    data = pcap([ether(ipv4(tcp(b"x")))], caplens={0: 5000})
    assert problems(items(data)) == [(1, "truncated_record")]


def test_caplen_over_snaplen_is_reported_once_and_decoded():
    frames = [ether(ipv4(tcp(b"x" * 200)))] * 3
    found = items(pcap(frames, snaplen=100))
    assert problems(found) == [(1, "caplen_exceeds_snaplen")]
    assert sum(isinstance(item, Segment) for item in found) == 3


def test_impossible_record_length_stops():
    data = pcap([ether(ipv4(tcp(b"x")))], caplens={0: 0x7FFFFFFF})
    assert problems(items(data)) == [(1, "bad_record_length")]


def test_not_a_capture(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"GET / HTTP/1.1\r\n\r\n")
    with pytest.raises(UserError, match=r"not a pcap or pcapng file \(magic 0x47455420\)"):
        open_capture(text)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="is empty"):
        open_capture(empty)
    with pytest.raises(UserError, match=r"cannot open capture .*missing.pcap: No such file"):
        open_capture(tmp_path / "missing.pcap")
    with pytest.raises(UserError, match="cannot open capture"):
        open_capture(tmp_path)
    with pytest.raises(UserError, match="truncated pcap file header"):
        open_capture(io.BytesIO(pcap([])[:20]))


def test_gzip_compressed_captures_stream(tmp_path):
    frames = [ether(ipv4(tcp(os.urandom(1000), seq=n * 1000))) for n in range(300)]
    path = tmp_path / "big.pcap.gz"
    path.write_bytes(gzip.compress(pcap(frames)))
    reader = open_capture(path)
    assert [s.seq for s in reader] == [n * 1000 for n in range(300)]
    assert reader.compressed and reader.stats.packets == 300
    ng = tmp_path / "small.pcapng.gz"
    ng.write_bytes(gzip.compress(shb(">") + idb(">", 1) + epb(">", 0, 5, frames[0])))
    assert [s.seq for s in open_capture(ng)] == [0]


def test_truncated_gzip_keeps_what_was_readable(tmp_path):
    frames = [ether(ipv4(tcp(os.urandom(1000), seq=n * 1000))) for n in range(300)]
    packed = gzip.compress(pcap(frames))
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[:len(packed) // 2])
    found = list(open_capture(path))
    segments_ = [s for s in found if isinstance(s, Segment)]
    assert 100 < len(segments_) < 300
    assert [s.seq for s in segments_] == [n * 1000 for n in range(len(segments_))]
    assert problems(found) == [(len(segments_) + 1, "truncated_record")]
    assert "Compressed file ended" in found[-1].detail
    garbage = tmp_path / "text.gz"
    garbage.write_bytes(gzip.compress(b"hello, not a capture"))
    with pytest.raises(UserError, match=r"not a pcap or pcapng file \(magic 0x68656c6c\)"):
        open_capture(garbage)


@pytest.mark.parametrize("kind", ["pcap", "pcapng"])
def test_reading_is_streamed_record_by_record(kind):
    """The file is read in record-sized pieces, never whole."""
    frames = [ether(ipv4(tcp(bytes([n]) * (30 + 7 * n), seq=n))) for n in range(40)]
    data = pcap(frames) if kind == "pcap" else shb("<") + idb("<", 1) + b"".join(epb("<", 0, n, f)
                                                                              for n, f in enumerate(frames))
    reads = []

    class Spy(io.BytesIO):
        def read(self, size=-1):
            reads.append(size)
            return super().read(size)

    found = list(open_capture(Spy(data)))
    assert [bytes(s.payload) for s in found] == [bytes([n]) * (30 + 7 * n) for n in range(40)]
    assert -1 not in reads and max(reads) <= max(len(f) for f in frames) + 32


def _sample_captures() -> list[bytes]:
    frames = [ether(ipv4(tcp(b"a" * 30, seq=1))), ether(ipv6(tcp(b"b" * 20), next_header=0, extensions=ext(6)),
                                                         0x86DD),
              ether(ipv4(tcp(b"c"), options=b"\x01" * 4), vlans=(0x8100,)), ether(ipv4(b"udp", proto=17)),
              ether(ipv4(tcp(PAYLOAD))), ether(ipv6(tcp(PAYLOAD)), 0x86DD)]
    classic = pcap(frames)
    ng = shb("<") + idb("<", 1, tsresol=9) + idb("<", 276)
    ng += b"".join(epb("<", n % 2, n, frame if n % 2 == 0 else sll2(frame[14:], 0x0800)) for n, frame in
                   enumerate(frames))
    ng += spb("<", frames[0]) + pb("<", 0, 5, frames[1])
    return [classic, ng]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_captures_never_raise(data):
    """Any byte flips and cuts past the file header give items and problems, never an exception."""
    original = bytearray(data.draw(st.sampled_from(_sample_captures())))
    for _ in range(data.draw(st.integers(0, 8))):
        original[data.draw(st.integers(24, len(original) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(24, len(original)))
    reader = open_capture(io.BytesIO(bytes(original[:cut])))
    found = list(reader)
    assert all(isinstance(item, Segment | SourceProblem) for item in found)
    assert reader.stats.problems == sum(isinstance(item, SourceProblem) for item in found)
    tcp_ = TcpReassembler()
    for item in found:
        if isinstance(item, Segment):
            tcp_.feed(item)
    tcp_.close()


@pytest.mark.tshark
def test_tshark_reads_the_hand_built_files_the_same_way(tmp_path):
    """The hand-made test files are real captures: tshark sees the same frames, ports and payload lengths."""
    data = shb("<") + idb("<", 1) + idb("<", 276, tsresol=9) + idb("<", 0)
    data += epb("<", 0, 1_000_000, ether(ipv4(tcp(b"one", sport=1111)), vlans=(0x8100,)))
    data += epb("<", 1, 2_000_000_000, sll2(ipv6(tcp(b"second", sport=2222), next_header=0, extensions=ext(6)),
                                            0x86DD))
    data += epb("<", 2, 3_000_000, struct.pack("<I", 2) + ipv4(tcp(b"third!", sport=3333),
                                                               options=b"\x01" * 4))
    for n, packet in enumerate((ipv4(tcp(PAYLOAD, sport=4444)), ipv6(tcp(PAYLOAD * 3, sport=5555)))):
        data += epb("<", 0, 4_000_000 + n, ether(packet, 0x0800 if n == 0 else 0x86DD) + b"\x00" * 5)
        data += epb("<", 1, 5_000_000_000 + n, sll2(packet, 0x0800 if n == 0 else 0x86DD))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(data)
    result = matrix.reference(["-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.srcport",
                               "-e", "tcp.len", "-e", "frame.time_epoch"])
    theirs = [line.split("\t") for line in result.stdout.splitlines()]
    ours = segments(data)
    assert len(ours) == 7
    assert [(int(n), int(p), int(length)) for n, p, length, _ in theirs] == [
        (s.frame_no, s.sport, len(s.payload)) for s in ours]
    assert [float(t) for *_, t in theirs] == [pytest.approx(s.ts) for s in ours]


# Real captures of real sockets.

class Server:
    """A listening socket on ``host`` that answers one connection with the reversed request."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.socket.bind((host, 0))
        self.socket.listen()
        self.port = self.socket.getsockname()[1]

    def exchange(self, request: bytes) -> bytes:
        """Connect, send ``request``, half-close, and read the reply to the end."""
        def serve() -> None:
            conn, _ = self.socket.accept()
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            conn.sendall(received[::-1])
            conn.close()

        thread = threading.Thread(target=serve)
        thread.start()
        client = socket.create_connection((self.host, self.port))
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := client.recv(65536):
            reply += chunk
        client.close()
        thread.join(10)
        self.socket.close()
        return reply


def _streams(source, port: int) -> dict[int, bytes]:
    """Both directions of the connection to ``port``, reassembled."""
    tcp_ = TcpReassembler()
    parts: dict[int, list[bytes]] = {0: [], 1: []}
    events = []
    for item in source:
        if isinstance(item, Segment) and port in (item.sport, item.dport):
            events.extend(tcp_.feed(item))
    events.extend(tcp_.close())
    for event in events:
        if isinstance(event, Data):
            parts[event.direction].append(bytes(event.data))
    return {direction: b"".join(chunks) for direction, chunks in parts.items()}


@pytest.mark.live
@pytest.mark.parametrize(("host", "iface", "options", "tool", "linktype"), [
    ("127.0.0.1", "lo", (), "tcpdump", 1),
    ("::1", "lo", (), "tcpdump", 1),
    ("127.0.0.1", "lo", ("--time-stamp-precision=nano",), "tcpdump", 1),
    ("127.0.0.1", "any", (), "tcpdump", 276),
    ("::1", "lo", (), "dumpcap", 1),
], ids=["tcpdump-ipv4", "tcpdump-ipv6", "tcpdump-nano", "tcpdump-any-cooked-v2", "dumpcap-pcapng"])
def test_real_capture_of_real_sockets(tmp_path, host, iface, options, tool, linktype):
    request = os.urandom(300_000)
    server = Server(host)
    with loopback_capture(tmp_path / "real.cap", f"tcp port {server.port}", interface=iface, tool=tool,
                          options=options, written=both_fins_written):
        reply = server.exchange(request)
    assert reply == request[::-1]
    reader = open_capture(tmp_path / "real.cap")
    streams = _streams(reader, server.port)
    assert streams == {0: request, 1: reply}
    assert reader.format == ("pcapng" if tool == "dumpcap" else "pcap")
    if reader.format == "pcap":
        assert reader.linktype == linktype
    else:
        assert [i.linktype for i in reader.interfaces] == [linktype]


@pytest.mark.live
@pytest.mark.parametrize(("iface", "host"), [("lo", "127.0.0.1"), ("lo", "::1"), ("any", "127.0.0.1"),
                                             ("any", "::1")])
def test_live_capture_on_loopback(iface, host):
    request = os.urandom(2_000_000)
    server = Server(host)
    capture = live_capture(iface, f"tcp port {server.port}", timeout=30)
    assert capture.linktype == (1 if iface == "lo" else 101)
    replies = []
    thread = threading.Thread(target=lambda: (time.sleep(0.2), replies.append(server.exchange(request))))
    thread.start()
    tcp_ = TcpReassembler()
    parts: dict[int, list[bytes]] = {0: [], 1: []}
    closed = 0
    for item in capture:
        for event in tcp_.feed(item):
            if isinstance(event, Data):
                parts[event.direction].append(bytes(event.data))
            elif isinstance(event, Closed):
                closed += 1
        if closed == 2:
            break
    capture.close()
    thread.join(10)
    assert closed == 2
    assert b"".join(parts[0]) == request
    assert b"".join(parts[1]) == replies[0] == request[::-1]
    assert capture.stats.packets == capture.stats.tcp_segments > 0 and capture.stats.problems == 0


@pytest.mark.live
def test_live_capture_segments_carry_flags_and_kernel_timestamps():
    server = Server("127.0.0.1")
    capture = live_capture("lo", f"tcp port {server.port}", timeout=10)
    thread = threading.Thread(target=lambda: (time.sleep(0.2), server.exchange(b"x")))
    before = time.time()
    thread.start()
    seen = []
    for item in capture:
        seen.append(item)
        if sum(bool(s.flags & FIN) for s in seen) == 2:
            break
    capture.close()
    thread.join(10)
    assert all(isinstance(s, Segment) for s in seen)
    assert seen[0].flags == SYN and seen[0].dport == server.port
    assert all(before <= s.ts <= time.time() for s in seen)
    assert [s.frame_no for s in seen] == list(range(1, len(seen) + 1))


def test_live_capture_errors():
    with pytest.raises(UserError, match="no such network interface: nosuch0"):
        live_capture("nosuch0")
    with pytest.raises(UserError, match="bad capture filter 'tcp and and'"):
        live_capture("lo", "tcp and and")


def test_live_capture_without_permission_is_a_clear_error():
    """Without CAP_NET_RAW (dropped from the bounding set when run as root) the message says what is missing."""
    code = ("from mproxy_scapy.pcap import live_capture\ntry:\n    live_capture('lo')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.stdout.strip() == ("UserError live capture on lo needs root or the CAP_NET_RAW capability "
                                     "(permission denied)"), result.stderr


def _interrupt_when_ready(code: str) -> tuple[int, str, str]:
    """Run ``code`` in a child Python, send it SIGINT once it prints "ready": its exit status, stdout, stderr."""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=10)
    return process.returncode, out, err


@pytest.mark.live
def test_ctrl_c_ends_a_live_capture_cleanly():
    """The documented way to stop: SIGINT raises KeyboardInterrupt out of the loop; the socket is closed."""
    code = ("from mproxy_scapy.pcap import live_capture\n"
            "capture = live_capture('lo', 'tcp port 9')\n"
            "print('ready', flush=True)\n"
            "try:\n"
            "    for item in capture:\n"
            "        pass\n"
            "except KeyboardInterrupt:\n"
            "    capture.close()\n"
            "    print('interrupted after', capture.stats.packets, 'packets', flush=True)\n")
    assert _interrupt_when_ready(code) == (0, "interrupted after 0 packets\n", "")


@pytest.mark.live
def test_stop_from_a_sigint_handler_ends_the_iteration_normally():
    code = ("import signal\n"
            "from mproxy_scapy.pcap import live_capture\n"
            "capture = live_capture('lo', 'tcp port 9')\n"
            "signal.signal(signal.SIGINT, lambda *_: capture.stop())\n"
            "print('ready', flush=True)\n"
            "items = list(capture)\n"
            "print('ended with', len(items), 'items', flush=True)\n")
    assert _interrupt_when_ready(code) == (0, "ended with 0 items\n", "")
