"""Fuzz targets: one input (bytes) in, the whole decoder exercised, nothing but ``UserError`` may escape.

Kept free of atheris so the regression tests can replay committed inputs
through exactly the code the fuzzer ran, without the fuzzer installed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from mproxy_scapy.decoder import DecodedFrame, Decoder
from mproxy_scapy.errors import UserError
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.pcapwriter import ACK, FIN, PSH, SYN, PcapWriter, tcp_packet
from mproxy_scapy.render import event_json, event_line, frame_json, frame_line, to_ndjson
from mproxy_scapy.sessions import SessionTracker
from mproxy_scapy.tcp import TcpReassembler
from mproxy_scapy.tls import KeyLog

_KEYS = Path(__file__).resolve().parent.parent / "captures" / "wss.keys"
KEYLOG = KeyLog.load(_KEYS) if _KEYS.is_file() else None
"""The wss capture's key log, so mutations of its seeds reach TLS decryption and the tunnel inside."""

FUZZ_MAX_FLOWS = 64
FUZZ_MAX_BUFFERED = 256 * 1024
FUZZ_MAX_BODY_HELD = 64 * 1024
"""Small bounds, so the fuzzer reaches eviction, buffer caps and streamed bodies with small inputs."""


def decode_capture_bytes(data: bytes) -> int:
    """Decode ``data`` as a pcap/pcapng file and render every record as text and JSON; the record count.

    A file the source refuses (not a capture, empty) is a ``UserError``,
    the documented outcome; any other exception is a bug.
    """
    try:
        items = open_capture(io.BytesIO(data))
    except UserError:
        return 0
    decoder = Decoder(reassembler=TcpReassembler(max_flows=FUZZ_MAX_FLOWS, max_buffered_per_flow=FUZZ_MAX_BUFFERED),
                      max_body_held=FUZZ_MAX_BODY_HELD, keylog=KEYLOG)
    tracker = SessionTracker()
    count = 0
    first_ts = 0.0
    for record in decoder.decode(items):
        count += 1
        if type(record) is DecodedFrame:
            tracker.add(record)
            json.loads(to_ndjson(frame_json(record)))
            line = frame_line(record, first_ts)
        else:
            json.loads(to_ndjson(event_json(record)))
            line = event_line(record, first_ts)
        if "\x1b" in line or "\n" in line or "\r" in line:
            raise AssertionError(f"raw control character in a text line: {line!r}")
    return count


_UPGRADE = (b"GET /?access_token=x&versions=v1 HTTP/1.1\r\nHost: relay.example\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
_ACCEPT = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n")
_DEFLATE = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def stream_capture(data: bytes) -> bytes:
    """A one-connection capture whose TCP payload is ``data``, so mutations land in the stream, not the file.

    ``data[0]`` picks the carrier (bit 0: WebSocket upgrade first, bit 1:
    with permessage-deflate, bit 2: no handshake, a capture begun
    mid-stream, bit 3: the stream goes client to server); ``data[1]`` the
    segment size; the rest is the stream.
    """
    mode = data[0] if data else 0
    size = 1 + (data[1] if len(data) > 1 else 255) * 8
    stream = data[2:]
    client, server = ("10.0.0.2", 40000), ("10.0.0.1", 443)
    isn = [1000, 500000]
    out = io.BytesIO()
    writer = PcapWriter(out)
    ts = 1700000000.0

    def send(direction: int, payload: bytes, flags: int = PSH | ACK) -> None:
        nonlocal ts
        (src, sport), (dst, dport) = (client, server) if direction == 0 else (server, client)
        writer.write(ts, tcp_packet(src, dst, sport, dport, isn[direction], isn[1 - direction], flags, payload))
        isn[direction] += len(payload) + (1 if flags & (SYN | FIN) else 0)
        ts += 0.001

    if not mode & 4:
        send(0, b"", SYN)
        send(1, b"", SYN | ACK)
    if mode & 1:
        extension = _DEFLATE if mode & 2 else b""
        send(0, _UPGRADE + extension + b"\r\n")
        send(1, _ACCEPT + extension + b"\r\n")
    direction = 0 if mode & 8 else 1
    for start in range(0, len(stream), size):
        send(direction, stream[start : start + size])
    send(0, b"", FIN | ACK)
    send(1, b"", FIN | ACK)
    return out.getvalue()


def decode_stream_bytes(data: bytes) -> int:
    """The stream target: ``data`` as one tunnel's bytes (see ``stream_capture``), decoded like a file."""
    return decode_capture_bytes(stream_capture(data))


TARGETS = {"capture": decode_capture_bytes, "stream": decode_stream_bytes}


def replay(path: str | Path, target: str = "capture") -> int:
    """One committed input through a target (the regression tests call this)."""
    return TARGETS[target](Path(path).read_bytes())
