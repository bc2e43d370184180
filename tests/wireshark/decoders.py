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


def lua_records(pcap: Path, home: Path, version: Version, keylog: Path | None = None, *, two_pass: bool = True,
                ) -> tuple[list[dict[str, Any]], Any]:
    """tshark's records, by default in two passes (-2; -R keeps the first pass's tree so TCP fields are there)."""
    extra = ["-2", "-R", "frame"] if two_pass else []
    if keylog is not None:
        extra += ["-o", f"tls.keylog_file:{keylog}"]
    return tshark_records(pcap, home, version, extra)


def in_packet_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decoder lists a record when it is decided, Wireshark under the packet holding its last byte."""
    return sorted(records, key=lambda r: r["pcap_frame"])


def differences(lua: list[dict[str, Any]], python: list[dict[str, Any]]) -> list[str]:
    out = []
    if len(lua) != len(python):
        out.append(f"{len(lua)} records from tshark, {len(python)} from mproxy dissect")
    for index, (a, b) in enumerate(zip(lua, python, strict=False)):
        for key in COMPARED:
            if a.get(key) != b.get(key):
                out.append(f"record {index} (packet {b['pcap_frame']}) {key}: tshark {a.get(key)!r}, "
                           f"python {b.get(key)!r}")
    return out
