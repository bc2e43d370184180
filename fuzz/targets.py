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
from mproxy_scapy.render import event_json, event_line, frame_json, frame_line, to_ndjson
from mproxy_scapy.sessions import SessionTracker
from mproxy_scapy.tcp import TcpReassembler

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
                      max_body_held=FUZZ_MAX_BODY_HELD)
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


def replay(path: str | Path) -> int:
    """One committed input through the capture target (the regression tests call this)."""
    return decode_capture_bytes(Path(path).read_bytes())
