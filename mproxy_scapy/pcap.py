"""Packet source: TCP segments out of pcap / pcapng files and live interfaces.

This is the hot path of the decoder, so it works the dpkt way: every header
layout is a ``struct.Struct`` compiled once, a packet's headers are read with
one or a few ``unpack_from`` calls at offsets into its record, and the only copy
made per packet besides the record itself is the TCP payload slice. No Scapy
object is built.

Files are read record by record from a buffered file object (never whole), so
memory stays bounded whatever the capture size; gzip-compressed captures
(``.pcap.gz``, as Wireshark reads them) are decompressed as they stream. Items come out in capture order:
``Segment`` for each TCP segment, ``SourceProblem`` for anything the source
could not decode (see ``SOURCE_PROBLEMS``); packets that are not TCP are only
counted in ``stats``.

A file that is not a capture at all (or cannot be opened) raises
``UserError`` from ``open_capture``; damage inside a capture (a truncated last
record, an impossible length) becomes a ``SourceProblem`` and, when the rest
of the file cannot be trusted, the end of the items.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import os
import socket
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .errors import UserError

READ_BUFFER = 1 << 20
"""Buffer size of the files this module opens: records are read one by one from it."""

MAX_RECORD = 16 * 1024 * 1024
"""A record longer than this is corrupt: no supported link type carries such packets."""

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
"""TCP flag bits as found in ``Segment.flags``."""

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
_DLT_RAW_ALIASES = (12, 14)

LINKTYPE_NAMES: dict[int, str] = {
    LINKTYPE_NULL: "NULL (BSD loopback)",
    LINKTYPE_ETHERNET: "Ethernet",
    12: "raw IP (DLT_RAW)",
    14: "raw IP (DLT_RAW, OpenBSD)",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "LOOP (OpenBSD loopback)",
    LINKTYPE_LINUX_SLL: "Linux cooked v1",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2",
}
"""The link types this source decodes."""

SOURCE_PROBLEMS: dict[str, str] = {
    "truncated_record": "The capture file ends (or cannot be read further) inside a record; the rest is lost",
    "bad_record_length": "A record length is impossible; the rest of the file cannot be read",
    "caplen_exceeds_snaplen": "Records are longer than the file's snapshot length (first one reported)",
    "snapped_packet": "Packets were cut by the snapshot length: TCP payload bytes are missing (first one reported)",
    "unsupported_linktype": "Packets of a link type this decoder does not read (first one per interface reported)",
    "unknown_block": "A pcapng block type this decoder does not know was skipped (first one per type reported)",
    "bad_block": "A pcapng block is malformed and was skipped",
    "bad_interface": "A pcapng packet names an interface that was not described",
    "ip_fragment": "A fragment of a TCP-carrying IP datagram: fragments are not reassembled",
    "malformed_packet": "A link, IP or TCP header is malformed",
    "truncated_packet": "A packet ends inside its link, IP or TCP header",
    "not_a_capture": "One of several inputs is not a pcap or pcapng file (or cannot be read); it was skipped",
}
"""Every kind of ``SourceProblem``, with what it means."""

_VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200))
_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
# Address family numbers of IPv4 and IPv6 in NULL/LOOP headers (Linux, BSDs, Darwin, Windows).
_AF_INET = 2
_AF_INET6 = frozenset((10, 23, 24, 28, 30))
_IPV6_EXT_HEADERS = frozenset((0, 43, 60, 135, 139, 140))
_IPV6_FRAGMENT, _IPV6_AH = 44, 51
_IPV6_BEFORE_TRANSPORT = _IPV6_EXT_HEADERS | {_IPV6_FRAGMENT, _IPV6_AH}

_U16 = struct.Struct("!H")
_U32_LE = struct.Struct("<I")
_U32_BE = struct.Struct("!I")
_IPV4 = struct.Struct("!BxH2xHxB2x4s4s")  # version/ihl, total length, flags/fragment, protocol, src, dst
_IPV6 = struct.Struct("!4xHB1x16s16s")  # payload length, next header, src, dst
_IPV6_FRAG = struct.Struct("!BxH")  # next header, fragment offset/flags
_TCP = struct.Struct("!HHIIH")  # sport, dport, seq, ack, data offset/flags
_unpack_u16 = _U16.unpack_from
_unpack_ether_ipv4_tcp = struct.Struct("!12xHBxH2xHxB2x8sHHIIH").unpack_from
_unpack_ipv4_tcp = struct.Struct("!BxH2xHxB2x8sHHIIH").unpack_from
_unpack_ipv6_tcp = struct.Struct("!B3xHBx32sHHIIH").unpack_from


_ADDRESS_CACHE_LIMIT = 65536
"""Entries per address-text cache; a capture with more distinct addresses starts it again."""


class Segment:
    """One TCP segment as captured: endpoints, sequence numbers, flags and payload."""

    __slots__ = ("ack", "dport", "dst", "flags", "frame_no", "ip_version", "payload", "seq", "sport", "src", "ts")

    def __init__(self, frame_no: int, ts: float, src: str, dst: str, sport: int, dport: int, seq: int, ack: int,
                 flags: int, payload: bytes | memoryview, ip_version: int) -> None:
        self.frame_no = frame_no
        self.ts = ts
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.payload = payload
        self.ip_version = ip_version

    def __repr__(self) -> str:
        names = "".join(name for bit, name in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."))
                        if self.flags & bit)
        return (f"<Segment #{self.frame_no} {self.src}:{self.sport} > {self.dst}:{self.dport} [{names}] "
                f"seq={self.seq} ack={self.ack} len={len(self.payload)}>")


class SourceProblem:
    """Something in the capture the source could not decode; ``kind`` is a key of ``SOURCE_PROBLEMS``."""

    __slots__ = ("detail", "frame_no", "kind", "ts")

    def __init__(self, frame_no: int, ts: float | None, kind: str, detail: str) -> None:
        self.frame_no = frame_no
        self.ts = ts
        self.kind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return f"<SourceProblem #{self.frame_no} {self.kind}: {self.detail}>"


class CaptureStats:
    """Counters of one capture source; read as attributes or ``stats["name"]``."""

    __slots__ = ("bytes_read", "ip_fragments", "kernel_drops", "malformed", "non_tcp", "packets", "problems",
                 "snapped", "tcp_segments", "unsupported")

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def __getitem__(self, name: str) -> int:
        return getattr(self, name)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return f"CaptureStats({self.as_dict()})"


class PacketDecoder:
    """Link layer -> IPv4/IPv6 -> TCP for one packet held in ``buf[start:end]``.

    ``decode`` returns a ``Segment``, a ``SourceProblem`` or None (not TCP:
    counted only). Problems reported once per capture are remembered here.
    """

    def __init__(self, stats: CaptureStats) -> None:
        self.stats = stats
        self._texts: dict[bytes, str] = {}
        self._pairs: dict[bytes, tuple[str, str]] = {}
        self._reported: set[object] = set()
        self.skipper: Any = None
        """A ``tcp.QuietSkipper`` (``CaptureReader.skip_quiet``): packets it takes are dropped by ``decode``
        (Ethernet/IPv4/TCP without options only: the common case it reads in one unpack)."""
        self.pending: list[Segment] = []
        """Segments held back while the problem about them is returned first."""
        self._links: dict[int, Callable[[bytes, int, int], tuple[int, int]]] = {
            LINKTYPE_NULL: self._null,
            LINKTYPE_LOOP: self._loop,
            LINKTYPE_LINUX_SLL: self._sll,
            LINKTYPE_LINUX_SLL2: self._sll2,
            LINKTYPE_RAW: self._raw,
            12: self._raw,
            14: self._raw,
            LINKTYPE_IPV4: self._ipv4_only,
            LINKTYPE_IPV6: self._ipv6_only,
        }

    def supports(self, linktype: int) -> bool:
        return linktype == LINKTYPE_ETHERNET or linktype in self._links

    def once(self, key: object, frame_no: int, ts: float | None, kind: str, detail: str) -> SourceProblem | None:
        """A problem the first time ``key`` is seen, None after."""
        if key in self._reported:
            return None
        self._reported.add(key)
        return self.problem(frame_no, ts, kind, detail)

    def problem(self, frame_no: int, ts: float | None, kind: str, detail: str) -> SourceProblem:
        self.stats.problems += 1
        return SourceProblem(frame_no, ts, kind, detail)

    def decode(self, linktype: int, buf: bytes, start: int, end: int, frame_no: int,
               ts: float) -> Segment | SourceProblem | None:
        if linktype == LINKTYPE_ETHERNET:
            if end - start >= 54:
                # The common case in one unpack: Ethernet, IPv4 without options, not fragmented, TCP.
                ethertype, vihl, total, frag, proto, addresses, sport, dport, seq, ack, offflags = \
                    _unpack_ether_ipv4_tcp(buf, start)
                ip_end = start + 14 + total
                data = start + 34 + ((offflags >> 10) & 0x3C)
                if (ethertype == _ETH_IPV4 and vihl == 0x45 and proto == 6 and not frag & 0x3FFF
                        and offflags >= 0x5000 and data <= ip_end <= end):
                    self.stats.tcp_segments += 1
                    skipper = self.skipper
                    if skipper is not None:  # a shard's reader: a quiet connection's packet costs one lookup
                        half = skipper.index.get(buf[start + 26:start + 38])
                        if half is not None and skipper.skip(half, offflags & 0x1FF, seq, ack, ip_end - data,
                                                             frame_no, ts):
                            return None
                    pair = self._pairs.get(addresses) or self._pair(addresses)
                    return Segment(frame_no, ts, pair[0], pair[1], sport, dport, seq, ack, offflags & 0x1FF,
                                   buf[data:ip_end], 4)
            if end - start < 14:
                return self._short(frame_no, ts, "Ethernet header")
            ethertype = _unpack_u16(buf, start + 12)[0]
            off = start + 14
            while ethertype in _VLAN_TYPES:
                if end - off < 4:
                    return self._short(frame_no, ts, "VLAN tag")
                ethertype = _unpack_u16(buf, off + 2)[0]
                off += 4
        else:
            link = self._links.get(linktype)
            if link is None:
                self.stats.unsupported += 1
                name = LINKTYPE_NAMES.get(linktype, "")
                return self.once(("linktype", linktype), frame_no, ts, "unsupported_linktype",
                                 f"link type {linktype}{' ' + name if name else ''} is not decoded")
            off, ethertype = link(buf, start, end)
            if off < 0:
                return self._short(frame_no, ts, f"{LINKTYPE_NAMES[linktype]} header")
        if ethertype == _ETH_IPV4:
            if end - off >= 40:  # the same common case behind VLAN tags and other link layers
                vihl, total, frag, proto, addresses, sport, dport, seq, ack, offflags = _unpack_ipv4_tcp(buf, off)
                ip_end = off + total
                data = off + 20 + ((offflags >> 10) & 0x3C)
                if (vihl == 0x45 and proto == 6 and not frag & 0x3FFF and offflags >= 0x5000
                        and data <= ip_end <= end):
                    self.stats.tcp_segments += 1
                    pair = self._pairs.get(addresses) or self._pair(addresses)
                    return Segment(frame_no, ts, pair[0], pair[1], sport, dport, seq, ack, offflags & 0x1FF,
                                   buf[data:ip_end], 4)
            return self._ipv4(buf, off, end, frame_no, ts)
        if ethertype == _ETH_IPV6:
            if end - off >= 60:  # the common case: no extension headers, TCP, fully captured
                vtc, length, proto, addresses, sport, dport, seq, ack, offflags = _unpack_ipv6_tcp(buf, off)
                ip_end = off + 40 + length
                data = off + 40 + ((offflags >> 10) & 0x3C)
                if vtc >> 4 == 6 and proto == 6 and length and offflags >= 0x5000 and data <= ip_end <= end:
                    self.stats.tcp_segments += 1
                    pair = self._pairs.get(addresses) or self._pair(addresses)
                    return Segment(frame_no, ts, pair[0], pair[1], sport, dport, seq, ack, offflags & 0x1FF,
                                   buf[data:ip_end], 6)
            return self._ipv6(buf, off, end, frame_no, ts)
        self.stats.non_tcp += 1
        return None

    # Link layers other than Ethernet: (offset of the network header, ethertype), offset -1 if too short.

    @staticmethod
    def _null(buf: bytes, start: int, end: int) -> tuple[int, int]:
        if end - start < 4:
            return -1, 0
        family = _U32_LE.unpack_from(buf, start)[0]
        if family > 0xFFFF:  # written by a big-endian host
            family = _U32_BE.unpack_from(buf, start)[0]
        return start + 4, _family_ethertype(family)

    @staticmethod
    def _loop(buf: bytes, start: int, end: int) -> tuple[int, int]:
        if end - start < 4:
            return -1, 0
        return start + 4, _family_ethertype(_U32_BE.unpack_from(buf, start)[0])

    @staticmethod
    def _sll(buf: bytes, start: int, end: int) -> tuple[int, int]:
        if end - start < 16:
            return -1, 0
        off, ethertype = start + 16, _U16.unpack_from(buf, start + 14)[0]
        while ethertype in _VLAN_TYPES and end - off >= 4:
            ethertype = _U16.unpack_from(buf, off + 2)[0]
            off += 4
        return off, ethertype

    @staticmethod
    def _sll2(buf: bytes, start: int, end: int) -> tuple[int, int]:
        if end - start < 20:
            return -1, 0
        off, ethertype = start + 20, _U16.unpack_from(buf, start)[0]
        while ethertype in _VLAN_TYPES and end - off >= 4:
            ethertype = _U16.unpack_from(buf, off + 2)[0]
            off += 4
        return off, ethertype

    @staticmethod
    def _raw(buf: bytes, start: int, end: int) -> tuple[int, int]:
        if end <= start:
            return -1, 0
        version = buf[start] >> 4
        return start, _ETH_IPV4 if version == 4 else _ETH_IPV6 if version == 6 else 0

    @staticmethod
    def _ipv4_only(buf: bytes, start: int, end: int) -> tuple[int, int]:
        return start, _ETH_IPV4

    @staticmethod
    def _ipv6_only(buf: bytes, start: int, end: int) -> tuple[int, int]:
        return start, _ETH_IPV6

    # Network and transport layers.

    def _short(self, frame_no: int, ts: float, what: str) -> SourceProblem:
        self.stats.malformed += 1
        return self.problem(frame_no, ts, "truncated_packet", f"packet ends inside its {what}")

    def _malformed(self, frame_no: int, ts: float, detail: str) -> SourceProblem:
        self.stats.malformed += 1
        return self.problem(frame_no, ts, "malformed_packet", detail)

    def _ipv4(self, buf: bytes, off: int, end: int, frame_no: int, ts: float) -> Segment | SourceProblem | None:
        if end - off < 20:
            return self._short(frame_no, ts, "IPv4 header")
        vihl, total, frag, proto, src, dst = _IPV4.unpack_from(buf, off)
        ihl = (vihl & 15) << 2
        if vihl >> 4 != 4 or ihl < 20:
            return self._malformed(frame_no, ts, f"IPv4 header: version {vihl >> 4}, header length {ihl}")
        if frag & 0x3FFF:
            if proto != 6:
                self.stats.non_tcp += 1
                return None
            self.stats.ip_fragments += 1
            text = self._addr(src), self._addr(dst)
            return self.problem(frame_no, ts, "ip_fragment",
                                f"IPv4 fragment {text[0]} > {text[1]} at offset {(frag & 0x1FFF) * 8}"
                                f"{' (more follow)' if frag & 0x2000 else ''}: not reassembled")
        if proto != 6:
            self.stats.non_tcp += 1
            return None
        if total == 0:  # segmentation offload: the capture holds the whole super-packet
            ip_end = end
        elif total < ihl:
            return self._malformed(frame_no, ts, f"IPv4 total length {total} < header length {ihl}")
        else:
            ip_end = off + total
        return self._tcp(buf, off + ihl, ip_end, end, frame_no, ts, self._addr(src), self._addr(dst), 4)

    def _ipv6(self, buf: bytes, off: int, end: int, frame_no: int, ts: float) -> Segment | SourceProblem | None:
        if end - off < 40:
            return self._short(frame_no, ts, "IPv6 header")
        if buf[off] >> 4 != 6:
            return self._malformed(frame_no, ts, f"IPv6 header: version {buf[off] >> 4}")
        length, proto, src, dst = _IPV6.unpack_from(buf, off)
        ip_end = off + 40 + length if length else end  # 0: jumbogram or offload
        p = off + 40
        limit = min(ip_end, end)
        while proto in _IPV6_BEFORE_TRANSPORT:
            if limit - p < 8:
                return self._short(frame_no, ts, "IPv6 extension headers")
            if proto == _IPV6_FRAGMENT:
                following, frag = _IPV6_FRAG.unpack_from(buf, p)
                if frag & 0xFFF9:  # an offset or "more fragments": a real fragment
                    if following != 6:
                        self.stats.non_tcp += 1
                        return None
                    self.stats.ip_fragments += 1
                    return self.problem(frame_no, ts, "ip_fragment",
                                        f"IPv6 fragment {self._addr(src)} > {self._addr(dst)} at offset "
                                        f"{frag & 0xFFF8}{' (more follow)' if frag & 1 else ''}: not reassembled")
                proto, p = following, p + 8  # an atomic fragment holds the whole datagram
            elif proto == _IPV6_AH:
                proto, p = buf[p], p + (buf[p + 1] + 2) * 4
            else:
                proto, p = buf[p], p + (buf[p + 1] + 1) * 8
        if proto != 6:
            self.stats.non_tcp += 1
            return None
        return self._tcp(buf, p, ip_end, end, frame_no, ts, self._addr(src), self._addr(dst), 6)

    def _tcp(self, buf: bytes, off: int, ip_end: int, end: int, frame_no: int, ts: float, src: str, dst: str,
             version: int) -> Segment | SourceProblem:
        snapped = ip_end > end
        if snapped:
            ip_end = end
        if ip_end - off < 20:
            return self._short(frame_no, ts, "TCP header") if snapped else self._malformed(
                frame_no, ts, f"IP payload of {ip_end - off} bytes is too short for a TCP header")
        sport, dport, seq, ack, offflags = _TCP.unpack_from(buf, off)
        hlen = (offflags >> 10) & 0x3C
        if hlen < 20:
            return self._malformed(frame_no, ts, f"TCP data offset {hlen} < 20")
        if off + hlen > ip_end:
            return self._short(frame_no, ts, "TCP options") if snapped else self._malformed(
                frame_no, ts, f"TCP header length {hlen} goes past the IP payload")
        stats = self.stats
        payload = buf[off + hlen:ip_end]
        stats.tcp_segments += 1
        segment = Segment(frame_no, ts, src, dst, sport, dport, seq, ack, offflags & 0x1FF, payload, version)
        if snapped:
            stats.snapped += 1
            problem = self.once("snapped", frame_no, ts, "snapped_packet",
                                "packet cut by the snapshot length: TCP payload bytes are missing")
            if problem is not None:
                self.pending.append(segment)
                return problem
        return segment

    def _pair(self, raw: bytes) -> tuple[str, str]:
        """Source and destination text of the 8 (IPv4) or 32 (IPv6) address bytes, cached."""
        if len(self._pairs) > _ADDRESS_CACHE_LIMIT:
            self._pairs.clear()
        half = len(raw) // 2
        pair = self._pairs[raw] = (self._addr(raw[:half]), self._addr(raw[half:]))
        return pair

    def _addr(self, raw: bytes) -> str:
        """The text of 4 (IPv4) or 16 (IPv6) address bytes, cached."""
        text = self._texts.get(raw)
        if text is None:
            if len(self._texts) > _ADDRESS_CACHE_LIMIT:
                self._texts.clear()
            family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
            text = self._texts[raw] = socket.inet_ntop(family, raw)
        return text


def _family_ethertype(family: int) -> int:
    if family == _AF_INET:
        return _ETH_IPV4
    if family in _AF_INET6:
        return _ETH_IPV6
    return 0


# File formats.

_PCAP_MAGICS: dict[bytes, tuple[str, float]] = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_GZIP_MAGIC = b"\x1f\x8b"
_BYTE_ORDER_MAGIC = 0x1A2B3C4D

_BLOCK_IDB, _BLOCK_PB, _BLOCK_SPB, _BLOCK_EPB = 1, 2, 3, 6
_BLOCK_SHB = 0x0A0D0D0A
# Blocks that carry nothing for a TCP decoder: name resolution, interface statistics,
# systemd journal, decryption secrets, custom blocks.
_QUIET_BLOCKS = frozenset((4, 5, 9, 10, 0x00000BAD, 0x40000BAD))
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14


class _Interface:
    """A pcapng interface: its link type, snapshot length and timestamp scale."""

    __slots__ = ("divisor", "linktype", "offset", "snaplen")

    def __init__(self, linktype: int, snaplen: int, divisor: float, offset: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.divisor = divisor
        self.offset = offset


class CaptureReader:
    """The items of one pcap or pcapng file, streamed in capture order.

    Iterate it for ``Segment`` and ``SourceProblem`` items; ``stats`` counts
    as it goes. ``format`` is ``"pcap"`` or ``"pcapng"``.
    """

    def __init__(self, path: str | os.PathLike[str] | BinaryIO) -> None:
        self.stats = CaptureStats()
        self.read_error: str | None = None
        """Why reading stopped early (an I/O or decompression error), if it did."""
        self.compressed = False
        if hasattr(path, "read"):
            self.name = str(getattr(path, "name", "<capture>"))
            self._raw: BinaryIO = path  # type: ignore[assignment]
        else:
            self.name = os.fspath(path)
            try:
                self._raw = open(path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 - closed when the items end
            except OSError as exc:
                raise UserError(f"cannot open capture {self.name}: {exc.strerror or exc}") from None
        self._file: BinaryIO = self._raw
        head = self._head()
        if head[:2] == _GZIP_MAGIC:
            self._open_gzip()
            head = self._head()
        magic = head[:4]
        self._decoder = PacketDecoder(self.stats)
        if magic in _PCAP_MAGICS:
            self.format = "pcap"
            self._items = self._pcap_items(head)
        elif magic == _PCAPNG_SHB:
            self.format = "pcapng"
            self._items = self._pcapng_items(head)
        else:
            self._close_files()
            if not head:
                raise UserError(f"{self.name} is empty: not a pcap or pcapng file")
            raise UserError(f"{self.name}: not a pcap or pcapng file (magic 0x{magic.hex()})")

    def _head(self) -> bytes:
        try:
            return self._file.read(24)
        except (OSError, EOFError, zlib.error) as exc:
            self._close_files()
            raise UserError(f"cannot read capture {self.name}: {getattr(exc, 'strerror', None) or exc}") from None

    def _open_gzip(self) -> None:
        """A gzip-compressed capture (as Wireshark reads them) is decompressed as it streams."""
        try:
            self._raw.seek(0)
        except (OSError, ValueError) as exc:
            self._close_files()
            raise UserError(f"cannot rewind compressed capture {self.name}: {exc}") from None
        self._file = gzip.GzipFile(fileobj=self._raw, mode="rb")  # type: ignore[assignment]
        self.compressed = True

    def _close_files(self) -> None:
        self._file.close()
        self._raw.close()

    def __iter__(self) -> Iterator[Segment | SourceProblem]:
        return self._items

    def __next__(self) -> Segment | SourceProblem:
        return next(self._items)

    def close(self) -> None:
        self._items.close()
        self._close_files()

    def skip_quiet(self, skipper: Any) -> None:
        """Before iterating: drop the packets ``skipper`` (``tcp.QuietSkipper``) takes instead of yielding them.

        For a decoder shard that reads this file alone, in order: the skipper
        then sees the packets in the order the reassembler would.
        """
        self._decoder.skipper = skipper

    @property
    def position(self) -> int:
        """Bytes of the file as stored (compressed, if it is) read so far; 0 when the stream cannot tell."""
        try:
            return self._raw.tell()
        except (AttributeError, OSError, ValueError):
            return 0

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pcap_items(self, head: bytes) -> Iterator[Segment | SourceProblem]:
        if len(head) < 24:
            self._close_files()
            raise UserError(f"{self.name}: truncated pcap file header ({len(head)} of 24 bytes)")
        order, scale = _PCAP_MAGICS[head[:4]]
        snaplen, network = struct.unpack_from(order + "II", head, 16)
        self.linktype = network & 0xFFFF  # the upper bits describe a frame check sequence
        return self._walk_pcap(order, scale, snaplen, self.linktype)

    def _walk_pcap(self, order: str, scale: float, snaplen: int, linktype: int) -> Iterator[Segment | SourceProblem]:
        """The records of a pcap file, read one by one (``stats`` advance every 1024 records, exact at the end)."""
        unpack_record = struct.Struct(order + "IIII").unpack
        read = self._file.read
        stats = self.stats
        decoder = self._decoder
        decode = decoder.decode
        pending = decoder.pending
        suspicious = min(snaplen or MAX_RECORD, MAX_RECORD)
        frame_no, ts, consumed = 0, 0.0, 24
        try:
            while True:
                header = read(16)
                if len(header) < 16:
                    if header:
                        consumed += len(header)
                        yield decoder.problem(frame_no + 1, ts, "truncated_record",
                                              f"file ends inside record header {frame_no + 1} "
                                              f"({len(header)} of 16 bytes)")
                    return
                sec, frac, caplen, _ = unpack_record(header)
                number = frame_no + 1  # frame_no counts complete records only
                consumed += 16
                ts = sec + frac / scale
                if caplen > suspicious:
                    if caplen > MAX_RECORD:
                        yield decoder.problem(number, ts, "bad_record_length",
                                              f"record {number} claims {caplen} bytes: the file is corrupt here")
                        return
                    problem = decoder.once("caplen", number, ts, "caplen_exceeds_snaplen",
                                           f"record of {caplen} bytes in a file with snapshot length {snaplen}")
                    if problem is not None:
                        yield problem
                packet = read(caplen)
                consumed += len(packet)
                if len(packet) < caplen:
                    yield decoder.problem(number, ts, "truncated_record",
                                          f"file ends inside record {number} ({len(packet)} of {caplen} bytes)")
                    return
                frame_no = number
                if not frame_no & 1023:
                    stats.packets, stats.bytes_read = frame_no, consumed
                item = decode(linktype, packet, 0, caplen, frame_no, ts)
                if item is not None:
                    yield item
                    if pending:
                        yield pending.pop()
        except (OSError, EOFError, zlib.error) as exc:
            self.read_error = f"{getattr(exc, 'strerror', None) or exc}"
            yield decoder.problem(frame_no + 1, ts, "truncated_record",
                                  f"cannot read past record {frame_no}: {self.read_error}")
        finally:
            stats.packets, stats.bytes_read = frame_no, consumed
            self._close_files()

    def _pcapng_items(self, head: bytes) -> Iterator[Segment | SourceProblem]:
        if len(head) < 12:
            self._close_files()
            raise UserError(f"{self.name}: truncated pcapng section header")
        magic = head[8:12]
        if magic not in (b"\x1a\x2b\x3c\x4d", b"\x4d\x3c\x2b\x1a"):
            self._close_files()
            raise UserError(f"{self.name}: not a pcap or pcapng file (pcapng byte-order magic 0x{magic.hex()})")
        return self._walk_pcapng(head)

    def _walk_pcapng(self, head: bytes) -> Iterator[Segment | SourceProblem]:
        """The blocks of a pcapng file, read one by one: the 8-byte block header, then the body."""
        read = self._file.read
        stats = self.stats
        decoder = self._decoder
        decode = decoder.decode
        pending = decoder.pending
        once = decoder.once
        frame_no, ts = 0, 0.0
        order = "<"
        block_head = struct.Struct("<II")
        epb = struct.Struct("<IIIII")
        interfaces: list[_Interface] = []
        self.interfaces = interfaces
        unread = head  # bytes read before the walk started
        try:
            while True:
                if unread:
                    header, unread = unread[:8], unread[8:]
                else:
                    header = read(8)
                if len(header) < 8:
                    if header:
                        stats.bytes_read += len(header)
                        yield decoder.problem(frame_no + 1, ts, "truncated_record",
                                              f"file ends inside a block header ({len(header)} bytes left)")
                    return
                if header[:4] == _PCAPNG_SHB:
                    if len(unread) < 4:
                        unread += read(4 - len(unread))
                    bom = unread[:4]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        order = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        order = ">"
                    else:
                        yield decoder.problem(frame_no + 1, ts, "bad_record_length",
                                              f"section header with byte-order magic 0x{bom.hex()}: "
                                              "the file is corrupt here")
                        return
                    block_head = struct.Struct(order + "II")
                    epb = struct.Struct(order + "IIIII")
                    interfaces = []
                    self.interfaces = interfaces
                btype, blen = block_head.unpack(header)
                if blen < 12 or blen & 3 or blen > MAX_RECORD:
                    yield decoder.problem(frame_no + 1, ts, "bad_record_length",
                                          f"block of type 0x{btype:08x} claims length {blen}: "
                                          "the file is corrupt here")
                    return
                body = unread + read(blen - 8 - len(unread)) if unread else read(blen - 8)
                unread = b""
                stats.bytes_read += 8 + len(body)
                if len(body) < blen - 8:
                    is_packet = btype in (_BLOCK_EPB, _BLOCK_SPB, _BLOCK_PB)
                    yield decoder.problem(frame_no + 1 if is_packet else frame_no, ts, "truncated_record",
                                          f"file ends inside a block of type 0x{btype:08x} "
                                          f"({8 + len(body)} of {blen} bytes)")
                    return
                # Offsets below are into ``body``: the block without its 8-byte header.
                if btype == _BLOCK_EPB:
                    frame_no += 1
                    stats.packets += 1
                    if blen < 32:
                        yield decoder.problem(frame_no, ts, "bad_block", f"enhanced packet block of {blen} bytes")
                        continue
                    ifid, hi, lo, caplen, _ = epb.unpack_from(body)
                    if ifid >= len(interfaces):
                        yield decoder.problem(frame_no, ts, "bad_interface",
                                              f"packet on interface {ifid}, but only {len(interfaces)} described")
                        continue
                    iface = interfaces[ifid]
                    ts = ((hi << 32) | lo) / iface.divisor + iface.offset
                    if caplen > blen - 32:
                        yield decoder.problem(frame_no, ts, "bad_block",
                                              f"captured length {caplen} exceeds the block ({blen} bytes)")
                        continue
                    item = decode(iface.linktype, body, 20, 20 + caplen, frame_no, ts)
                elif btype == _BLOCK_SPB:
                    frame_no += 1
                    stats.packets += 1
                    if not interfaces:
                        yield decoder.problem(frame_no, ts, "bad_interface",
                                              "simple packet block before any interface description")
                        continue
                    iface = interfaces[0]
                    caplen = min(_u32(order).unpack_from(body)[0], blen - 16)
                    if iface.snaplen:
                        caplen = min(caplen, iface.snaplen)
                    # A simple packet block has no timestamp: it keeps the previous packet's.
                    item = decode(iface.linktype, body, 4, 4 + caplen, frame_no, ts)
                elif btype == _BLOCK_PB:
                    frame_no += 1
                    stats.packets += 1
                    if blen < 32:
                        yield decoder.problem(frame_no, ts, "bad_block", f"packet block of {blen} bytes")
                        continue
                    ifid, hi, lo, caplen, _ = struct.unpack_from(order + "H2xIIII", body)
                    if ifid >= len(interfaces):
                        yield decoder.problem(frame_no, ts, "bad_interface",
                                              f"packet on interface {ifid}, but only {len(interfaces)} described")
                        continue
                    iface = interfaces[ifid]
                    ts = ((hi << 32) | lo) / iface.divisor + iface.offset
                    caplen = min(caplen, blen - 32)
                    item = decode(iface.linktype, body, 20, 20 + caplen, frame_no, ts)
                elif btype == _BLOCK_IDB:
                    if blen < 20:
                        yield decoder.problem(frame_no, ts, "bad_block", f"interface description of {blen} bytes")
                        interfaces.append(_Interface(-1, 0, 1e6, 0))
                        continue
                    interfaces.append(_parse_idb(order, body))
                    continue
                elif btype == _BLOCK_SHB or btype in _QUIET_BLOCKS:
                    continue
                else:
                    problem = once(("block", btype), frame_no, ts, "unknown_block",
                                   f"pcapng block type 0x{btype:08x} skipped")
                    if problem is not None:
                        yield problem
                    continue
                if item is not None:
                    yield item
                    if pending:
                        yield pending.pop()
        except (OSError, EOFError, zlib.error) as exc:
            self.read_error = f"{getattr(exc, 'strerror', None) or exc}"
            yield decoder.problem(frame_no + 1, ts, "truncated_record",
                                  f"cannot read past packet {frame_no}: {self.read_error}")
        finally:
            self._close_files()


def _u32(order: str) -> struct.Struct:
    return _U32_LE if order == "<" else _U32_BE


def _parse_idb(order: str, body: bytes) -> _Interface:
    """An interface description block (after its 8-byte header): link type, snapshot length, time options."""
    linktype, snaplen = struct.unpack_from(order + "H2xI", body)
    divisor, offset = 1e6, 0
    option = struct.Struct(order + "HH")
    p, limit = 8, len(body) - 4
    while p + 4 <= limit:
        code, length = option.unpack_from(body, p)
        if code == 0:
            break
        value = p + 4
        if value + length > limit:
            break
        if code == _OPT_TSRESOL and length >= 1:
            resol = body[value]
            divisor = float(2 ** (resol & 0x7F)) if resol & 0x80 else float(10 ** resol)
        elif code == _OPT_TSOFFSET and length >= 8:
            offset = struct.unpack_from(order + "q", body, value)[0]
        p = value + ((length + 3) & ~3)
    return _Interface(linktype, snaplen, divisor, offset)


def open_capture(path: str | os.PathLike[str] | BinaryIO) -> CaptureReader:
    """Open a pcap or pcapng file (or a binary file object) for streaming.

    Raises ``UserError`` at once when the file cannot be opened or is not a
    capture; everything found later is an item.
    """
    return CaptureReader(path)


# Live capture.

_ETH_P_ALL = 0x0003
_SOL_PACKET = 263
_PACKET_OUTGOING = 4
_PACKET_STATISTICS = 6
_SO_TIMESTAMPNS = 35
_SO_ATTACH_FILTER = 26
_ARPHRD_ETHERNET_LIKE = frozenset((1, 772))  # Ethernet; loopback (fake Ethernet header on Linux)
_ARPHRD_LOOPBACK = 772
_ARPHRD_NO_HEADER = frozenset((512, 519, 768, 769, 776, 65534))  # PPP, raw IP, IP tunnels, tun: bare IP
_TIMESPEC = struct.Struct("qq")
_SO_RCVBUFFORCE = 33
_RECEIVE_BUFFER = 32 << 20
STOP_LATENCY = 0.25
"""Longest wait of a live capture between looks at ``stop()`` and its timeout."""
ANY_INTERFACE = "any"
"""The interface name that captures on every interface (cooked, like ``tcpdump -i any``)."""
_MAX_PACKET = 262144


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


class LiveCapture:
    """TCP segments from a network interface, through an AF_PACKET socket (Linux).

    Iterate it like a ``CaptureReader``. It runs until ``timeout`` seconds have
    passed (None: forever), ``count`` packets were received, or ``stop()`` is
    called. Ctrl-C, by default, raises ``KeyboardInterrupt`` out of the
    iteration (the receive is interrupted), the socket is closed on the way
    out, and the caller catches it and prints its summary. Since a
    KeyboardInterrupt can land anywhere in the caller's code too, a caller
    may instead install a SIGINT handler that calls ``stop()``: the
    iteration then simply ends.

    On loopback each packet passes the socket twice (sent and received); like
    libpcap, only the received copy is kept. ``iface`` "any" captures on every
    interface at once, as network-layer packets (``linktype`` raw IP).
    """

    def __init__(self, iface: str, bpf: str | None = None, *, timeout: float | None = None,
                 count: int | None = None) -> None:
        self.stats = CaptureStats()
        self.iface = iface
        self.timeout = timeout
        self.count = count
        names = [name for _, name in socket.if_nameindex()]
        if iface != ANY_INTERFACE and iface not in names:
            raise UserError(f"no such network interface: {iface} (available: {', '.join([*names, ANY_INTERFACE])})")
        # Every interface at once: a cooked socket (network-layer packets, whatever the link type).
        cooked = iface == ANY_INTERFACE
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM if cooked else socket.SOCK_RAW,
                                 socket.htons(_ETH_P_ALL) if cooked else 0)
        except PermissionError:
            raise UserError(f"live capture on {iface} needs root or the CAP_NET_RAW capability "
                            "(permission denied)") from None
        try:
            hatype = 0 if cooked else _interface_type(iface)
            if cooked or hatype in _ARPHRD_NO_HEADER:
                self.linktype = LINKTYPE_RAW
            elif hatype in _ARPHRD_ETHERNET_LIKE:
                self.linktype = LINKTYPE_ETHERNET
            else:
                raise UserError(f"interface {iface} has hardware type {hatype}: live capture reads Ethernet, "
                                "loopback and raw IP interfaces (or 'any')")
            if bpf:
                _attach_filter(sock, bpf, 12 if self.linktype == LINKTYPE_RAW else self.linktype)
            try:  # room for bursts of 64 KiB loopback packets; root may exceed net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, _RECEIVE_BUFFER)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
            if cooked:
                _drain(sock)  # what arrived before the filter was attached
            else:
                sock.bind((iface, _ETH_P_ALL))
        except OSError as exc:
            sock.close()
            raise UserError(f"cannot capture on {iface}: {exc.strerror or exc}") from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._stopped = False
        self._items = self._receive()

    def stop(self) -> None:
        """End the iteration normally, at the next packet or within ``STOP_LATENCY`` seconds.

        Safe from a signal handler or another thread: a caller that wants
        Ctrl-C to end the capture without an exception installs a SIGINT
        handler that calls this.
        """
        self._stopped = True

    def __iter__(self) -> Iterator[Segment | SourceProblem]:
        return self._items

    def __next__(self) -> Segment | SourceProblem:
        return next(self._items)

    def close(self) -> None:
        self._items.close()
        self._sock.close()

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self) -> Iterator[Segment | SourceProblem]:
        sock, stats, linktype = self._sock, self.stats, self.linktype
        decoder = PacketDecoder(stats)
        decode = decoder.decode
        pending = decoder.pending
        ancillary = socket.CMSG_SPACE(_TIMESPEC.size)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        frame_no = 0
        try:
            while (self.count is None or frame_no < self.count) and not self._stopped:
                wait = STOP_LATENCY
                if deadline is not None:
                    wait = min(wait, deadline - time.monotonic())
                    if wait <= 0:
                        return
                sock.settimeout(wait)
                try:
                    data, cmsgs, _, address = sock.recvmsg(_MAX_PACKET, ancillary)
                except TimeoutError:
                    continue
                if address[2] == _PACKET_OUTGOING and address[3] == _ARPHRD_LOOPBACK:
                    continue
                ts = time.time()
                for level, kind, value in cmsgs:
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                        sec, nsec = _TIMESPEC.unpack_from(value)
                        ts = sec + nsec / 1e9
                frame_no += 1
                stats.packets += 1
                stats.bytes_read += len(data)
                item = decode(linktype, data, 0, len(data), frame_no, ts)
                if item is not None:
                    yield item
                    if pending:
                        yield pending.pop()
        finally:
            self._read_kernel_drops()
            sock.close()

    def _read_kernel_drops(self) -> None:
        try:
            raw = self._sock.getsockopt(_SOL_PACKET, _PACKET_STATISTICS, 8)
        except OSError:
            return
        self.stats.kernel_drops += struct.unpack("II", raw)[1]


def _drain(sock: socket.socket) -> None:
    """Discard the packets already queued on a socket."""
    sock.setblocking(False)
    try:
        while True:
            sock.recv(1)
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def _interface_type(iface: str) -> int:
    """The ARPHRD hardware type of an interface, as the kernel reports it."""
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            return int(f.read().strip())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the type of interface {iface}: {exc}") from None


def _attach_filter(sock: socket.socket, expression: str, linktype: int) -> None:
    """Compile a BPF expression with libpcap (through Scapy's bindings) and attach it to the socket.

    Compiled for a snapshot length of ``_MAX_PACKET``, not Scapy's 65535: loopback packets
    can be 65550 bytes long, and the filter's return value truncates what the socket gets.
    """
    try:
        from scapy.libs.structures import bpf_program
        from scapy.libs.winpcapy import pcap_close, pcap_compile, pcap_freecode, pcap_geterr, pcap_open_dead
    except (ImportError, OSError) as exc:
        raise UserError(f"a capture filter needs libpcap (apt-get install libpcap0.8): {exc}") from None
    handle = pcap_open_dead(linktype, _MAX_PACKET)
    program = bpf_program()
    try:
        if pcap_compile(handle, ctypes.byref(program), expression.encode(), 1, 0xFFFFFFFF) == -1:
            message = pcap_geterr(handle)
            message = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
            raise UserError(f"bad capture filter {expression!r}: {message}")
        try:
            fprog = _SockFprog(program.bf_len, ctypes.cast(program.bf_insns, ctypes.c_void_p))
            sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, bytes(fprog))
        except OSError as exc:
            raise UserError(f"cannot attach capture filter {expression!r}: "
                            f"{os.strerror(exc.errno or errno.EINVAL)}") from None
        finally:
            pcap_freecode(ctypes.byref(program))
    finally:
        pcap_close(handle)


def live_capture(iface: str, bpf: str | None = None, *, timeout: float | None = None,
                 count: int | None = None) -> LiveCapture:
    """Capture TCP segments live on ``iface`` (optionally through a BPF filter); see ``LiveCapture``.

    Raises ``UserError`` for an interface that does not exist, a missing
    permission (needs root or CAP_NET_RAW) or a filter libpcap rejects.
    """
    return LiveCapture(iface, bpf, timeout=timeout, count=count)
