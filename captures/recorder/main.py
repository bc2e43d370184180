"""The recorder's command line: record each capture, derive the impaired one, write the manifest."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from .capture import capture_counts, missing_tools
from .scenarios import Plan, record_tunnel
from .truth import TruthLog

HERE = Path(__file__).resolve().parent.parent


def _summary(path: Path, truth_path: Path, truth: TruthLog, **extra: Any) -> dict[str, Any]:
    counts = capture_counts(path)
    directions = Counter(r["direction"] for r in truth.records)
    kinds = Counter(r["kind"] for r in truth.records)
    return {
        "file": path.name,
        "truth": truth_path.name,
        "bytes": path.stat().st_size,
        **counts,
        "frames": len(truth.records),
        "frames_by_direction": dict(sorted(directions.items())),
        "frames_by_kind": dict(sorted(kinds.items())),
        **extra,
    }


def _record(out: Path, work: Path, name: str, **kwargs: Any) -> dict[str, Any]:
    path = out / name
    truth = record_tunnel(path, work, **kwargs)
    truth_path = out / f"{name}.truth.ndjson"
    truth.write(truth_path)
    return _summary(path, truth_path, truth, carrier=kwargs["carrier"])


CAPTURES = ("raw-tcp.pcap", "websocket.pcap")


def main(parser: argparse.ArgumentParser) -> int:
    parser.add_argument("--out", type=Path, default=HERE, help="directory for captures (default: captures/)")
    parser.add_argument("--only", nargs="*", choices=CAPTURES, help="record only these captures")
    args = parser.parse_args()
    missing = missing_tools()
    if missing:
        parser.error("missing tools, install them first:\n  " + "\n  ".join(missing))
    if os.geteuid() != 0:
        print("note: not root; tcpdump needs CAP_NET_RAW on the loopback interface")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    wanted = set(args.only or CAPTURES)
    with tempfile.TemporaryDirectory(prefix="mproxy-record-") as tmp:
        work = Path(tmp)
        if "raw-tcp.pcap" in wanted:
            manifest["raw-tcp.pcap"] = _record(
                out, work, "raw-tcp.pcap", carrier="tcp", host="127.0.0.1", plan=Plan(big_size=200_000))
        if "websocket.pcap" in wanted:
            manifest["websocket.pcap"] = _record(
                out, work, "websocket.pcap", carrier="ws", host="127.0.0.1", plan=Plan(big_size=200_000))
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name, entry in sorted(manifest.items()):
        print(f"{name}: {entry['packets']} packets, {len(entry['tcp_conversations'])} TCP conversations, "
              f"{entry['frames']} frames, {entry['bytes']} bytes")
    return 0
