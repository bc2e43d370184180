"""Both decoders on one capture: ``mproxy dissect --json`` and tshark with the generated dissector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from wireshark.matrix import Version
from wireshark.tshark_records import tshark_records

COMPARED = ("pcap_frame", "src", "dst", "offset", "length", "version", "hdrlen", "family", "address", "port",
            "datalen", "service", "serviceport", "name", "servicename", "kind", "dialect", "client_id",
            "body_len", "body_sha256", "problems", "control", "reply_to")
"""Every key of the decoder's JSON contract that a Wireshark tree shows (not ts, carrier, tunnel, direction)."""


def python_records(pcap: Path, keylog: Path | None = None) -> list[dict[str, Any]]:
    """The decoder's records (frames, skipped garbage, lost bytes), stage events left out."""
    command = [sys.executable, "-m", "mproxy_scapy.cli", "dissect", str(pcap), "--json", "--show-secrets"]
    if keylog is not None:
        command += ["--tls-keylog", str(keylog)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    return [r for r in records if r.get("kind") != "stage"]


PASSES = {"one-pass": [], "two-pass": ["-2", "-R", "frame"], "two-pass-treeless": ["-2"]}
"""How tshark may run: in one pass (as most people run it), or in two (``-2``, as the GUI shows a capture).

The first of two passes builds a protocol tree only when something filters (``-R`` here): without one
(``two-pass-treeless``, and the GUI when it opens a capture with no display filter) field extractors are
empty, and the dissector reads the TCP headers from the frames' bytes.
"""


def lua_records(pcap: Path, home: Path, version: Version, keylog: Path | None = None, *, passes: str = "two-pass",
                ) -> tuple[list[dict[str, Any]], Any]:
    """tshark's records, run as ``PASSES[passes]`` says."""
    extra = list(PASSES[passes])
    if keylog is not None:
        extra += ["-o", f"tls.keylog_file:{keylog}"]
    return tshark_records(pcap, home, version, extra)


def in_packet_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decoder's records as Wireshark lists them: by packet, and in the decoder's order within a packet.

    Only records the end of the capture completes come out of the decoder after a later packet's.
    """
    return sorted(records, key=lambda r: r["pcap_frame"])


def placement(records: list[dict[str, Any]]) -> list[tuple[int, int, str, int]]:
    """(packet, position within the packet, kind, stream offset) of every record, in list order."""
    out = []
    position = 0
    for index, record in enumerate(records):
        same = index > 0 and records[index - 1]["pcap_frame"] == record["pcap_frame"]
        position = position + 1 if same else 0
        out.append((record["pcap_frame"], position, record["kind"], record["offset"]))
    return out


def differences(lua: list[dict[str, Any]], python: list[dict[str, Any]]) -> list[str]:
    """Every way tshark's records differ from the decoder's: placement first, then each field."""
    out = []
    if len(lua) != len(python):
        out.append(f"{len(lua)} records from tshark, {len(python)} from mproxy dissect")
    for index, (a, b) in enumerate(zip(placement(lua), placement(python), strict=False)):
        if a != b:
            out.append(f"record {index} placed at packet {a[0]} #{a[1]} ({a[2]} @{a[3]}) by tshark, "
                       f"packet {b[0]} #{b[1]} ({b[2]} @{b[3]}) by mproxy dissect")
    for index, (a, b) in enumerate(zip(lua, python, strict=False)):
        for key in COMPARED:
            if a.get(key) != b.get(key):
                out.append(f"record {index} (packet {b['pcap_frame']}) {key}: tshark {a.get(key)!r}, "
                           f"python {b.get(key)!r}")
    return out
