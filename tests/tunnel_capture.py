"""Small pcaps of M-PROXY tunnels built in tests: the codec's frames in TCP segments we control.

The segments can be cut anywhere, reordered, duplicated or dropped, which a
recorded capture cannot do on demand. Written with ``mproxy_scapy.pcapwriter``
(raw IP link type, correct checksums).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mproxy_scapy.pcapwriter import ACK, FIN, PSH, RST, SYN, PcapWriter, tcp_packet

CLIENT = ("10.1.0.2", 51000)
SERVER = ("10.1.0.1", 7443)


@dataclass
class Packet:
    ts: float
    direction: int
    flags: int
    seq: int
    ack: int
    payload: bytes = b""


@dataclass
class Conversation:
    """One TCP connection: packets in the order they will be written."""

    client: tuple[str, int] = CLIENT
    server: tuple[str, int] = SERVER
    isn: tuple[int, int] = (1000, 900000)
    packets: list[Packet] = field(default_factory=list)
    start: float = 1700000000.0

    def handshake(self) -> None:
        c, s = self.isn
        self.packets += [Packet(self.start, 0, SYN, c, 0), Packet(self.start, 1, SYN | ACK, s, c + 1),
                         Packet(self.start, 0, ACK, c + 1, s + 1)]

    def segments(self, direction: int, stream: bytes, cuts: Iterable[int], ts: float) -> list[Packet]:
        """The segments of ``stream`` (one direction, from its start) cut at the given offsets."""
        base = self.isn[direction] + 1
        other = self.isn[1 - direction] + 1
        points = sorted({0, len(stream), *[c for c in cuts if 0 < c < len(stream)]})
        return [Packet(ts + i * 0.001, direction, PSH | ACK, base + a, other, stream[a:b])
                for i, (a, b) in enumerate(itertools.pairwise(points))]

    def close(self, lengths: tuple[int, int], ts: float, *, reset: bool = False) -> None:
        c = self.isn[0] + 1 + lengths[0]
        s = self.isn[1] + 1 + lengths[1]
        if reset:
            self.packets.append(Packet(ts, 0, RST | ACK, c, s))
            return
        self.packets += [Packet(ts, 0, FIN | ACK, c, s), Packet(ts, 1, FIN | ACK, s, c + 1),
                         Packet(ts, 0, ACK, c + 1, s + 1)]

    def raw_packets(self) -> list[tuple[float, bytes]]:
        out = []
        for p in self.packets:
            (src, sport), (dst, dport) = (self.client, self.server) if p.direction == 0 else (self.server, self.client)
            out.append((p.ts, tcp_packet(src, dst, sport, dport, p.seq, p.ack, p.flags, p.payload)))
        return out


def write_pcap(path: Path, *conversations: Conversation) -> Path:
    """All packets of the conversations, in the order each holds them, conversations one after another."""
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for conversation in conversations:
            for ts, packet in conversation.raw_packets():
                writer.write(ts, packet)
    return path


def simple_tunnel(path: Path, to_device: bytes, to_relay: bytes, *, chunk: int = 1000,
                  reset: bool = False) -> Path:
    """A complete raw-TCP tunnel: relay (server) -> device stream and the reply stream, cut every ``chunk``."""
    conversation = Conversation()
    conversation.handshake()
    start = conversation.start + 0.01
    conversation.packets += conversation.segments(1, to_device, range(chunk, len(to_device), chunk), start)
    conversation.packets += conversation.segments(0, to_relay, range(chunk, len(to_relay), chunk), start + 0.5)
    conversation.close((len(to_relay), len(to_device)), start + 1.0, reset=reset)
    return write_pcap(path, conversation)


JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZXZpY2UifQ.c2lnbmF0dXJlX2hlcmU"
HTTP_CLIENT = {"family": "IPv4", "address": "203.0.113.7", "port": 50123, "service": "http", "serviceport": 8080,
               "name": "app.example.test"}
TLS_CLIENT = {"family": "IPv6", "address": "2001:db8::42", "port": 40443, "service": "https", "serviceport": 8443,
              "name": "pokemap.hellabit.com"}
HTTP_REQUEST = (b"GET /hello?x=1 HTTP/1.1\r\nHost: app.example.test\r\nAuthorization: Bearer " + JWT.encode()
                + b"\r\n\r\n")
HTTP_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def sample_streams(client_hello: bytes) -> tuple[bytes, bytes]:
    """A telebit-like session: hello/auth, an HTTP client that ends, a TLS client that fails.

    Returns (relay -> device stream, device -> relay stream).
    """
    from mproxy_scapy.codec import pack, pack_header

    to_device = b"".join([
        pack(None, [1, "hello", 254, ["add_token", "delete_token"]], "control"),
        pack(HTTP_CLIENT, None, "connection"),
        pack(HTTP_CLIENT, HTTP_REQUEST),
        pack(TLS_CLIENT, None, "connection"),
        pack(TLS_CLIENT, client_hello),
        pack(None, [-2, None], "control"),
    ])
    to_relay = b"".join([
        pack(None, [-1, None], "control"),
        pack(None, [2, "auth", JWT], "control"),
        pack(HTTP_CLIENT, b"1024", "pause"),
        pack(HTTP_CLIENT, b"1024", "resume"),
        pack(HTTP_CLIENT, HTTP_RESPONSE),
        pack(HTTP_CLIENT, None, "end"),
        pack_header(TLS_CLIENT, b'{"message":"connection refused","code":"E_CONN"}', "error", True),
        pack(None, [3, "add_token", JWT], "control"),
    ])
    return to_device, to_relay
