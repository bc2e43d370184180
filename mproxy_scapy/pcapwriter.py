"""A small streaming pcap writer of TCP/IP packets, for ``mproxy detunnel`` and for test captures.

Packets are written as raw IP (link type 101), so IPv4 and IPv6 conversations
share one file, with correct IPv4 header and TCP checksums: Wireshark and
tshark then dissect the inner protocols without complaints. No Scapy here:
a de-tunnelled capture can hold millions of segments.
"""

from __future__ import annotations

import ipaddress
import struct
import sys
from typing import BinaryIO

LINKTYPE_RAW = 101
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
MAX_SEGMENT = 32768
"""Payload bytes per written segment: well under IPv4's 65535-byte total length."""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    value = ~total & 0xFFFF
    # the words were summed in native byte order; the result goes on the wire in network order
    return int.from_bytes(value.to_bytes(2, sys.byteorder), "big")


def tcp_packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
               payload: bytes = b"", window: int = 65535) -> bytes:
    """One IPv4 or IPv6 packet (chosen by the address text) holding one TCP segment."""
    src_ip = ipaddress.ip_address(src)
    dst_ip = ipaddress.ip_address(dst)
    tcp_len = 20 + len(payload)
    header = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, window, 0, 0)
    if src_ip.version == 4:
        pseudo = src_ip.packed + dst_ip.packed + struct.pack("!BBH", 0, 6, tcp_len)
    else:
        pseudo = src_ip.packed + dst_ip.packed + struct.pack("!IxxxB", tcp_len, 6)
    tcp_sum = _checksum(pseudo + header + payload)
    segment = header[:16] + struct.pack("!H", tcp_sum) + header[18:] + payload
    if src_ip.version == 4:
        ip = _IPV4.pack(0x45, 0, 20 + tcp_len, 0, 0x4000, 64, 6, 0, src_ip.packed, dst_ip.packed)
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return ip + segment
    return _IPV6.pack(6 << 28, tcp_len, 6, 64, src_ip.packed, dst_ip.packed) + segment


class PcapWriter:
    """``write(ts, packet)`` appends one record; microsecond timestamps, link type raw IP by default."""

    def __init__(self, stream: BinaryIO, linktype: int = LINKTYPE_RAW, snaplen: int = 262144) -> None:
        self._stream = stream
        stream.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        self.packets = 0

    def write(self, ts: float, packet: bytes) -> None:
        seconds = int(ts)
        micros = round((ts - seconds) * 1_000_000)
        if micros >= 1_000_000:
            seconds, micros = seconds + 1, micros - 1_000_000
        self._stream.write(_RECORD_HEADER.pack(seconds, micros, len(packet), len(packet)))
        self._stream.write(packet)
        self.packets += 1
