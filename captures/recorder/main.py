"""The recorder's command line: record each capture, derive the impaired one, write the manifest."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from . import adversity
from .capture import capture_counts, missing_tools
from .impair import impair
from .packers import GoPacking
from .scenarios import Plan, record_tunnel
from .truth import TruthLog

HERE = Path(__file__).resolve().parent.parent


def _summary(path: Path, truth_path: Path, truth: TruthLog, **extra: Any) -> dict[str, Any]:
    counts = capture_counts(path)
    directions = Counter(r["direction"] for r in truth.records)
    kinds = Counter(r["kind"] for r in truth.records)
    writes: dict[str, int] = {}
    for r in truth.records:
        writes[r["direction"]] = max(writes.get(r["direction"], 0), r["write_index"] + r["writes"])
    return {
        "file": path.name,
        "truth": truth_path.name,
        "bytes": path.stat().st_size,
        **counts,
        "frames": len(truth.records),
        "frames_by_direction": dict(sorted(directions.items())),
        "frames_by_kind": dict(sorted(kinds.items())),
        "writes_by_direction": dict(sorted(writes.items())),
        **extra,
    }


def _describe(carrier: str, host: str, dialect: str = "js") -> dict[str, Any]:
    """How a capture's tunnel was made, in the decoder's words (carrier 'tcp' or 'websocket')."""
    return {
        "carrier": "websocket" if carrier in ("ws", "wss") else "tcp",
        "tls": carrier == "wss",
        "tunnel_family": "IPv6" if ":" in host else "IPv4",
        "dialect": dialect,
        "relay": "proxy-packer@2.0.4 under Node.js" if carrier == "reference-js" else "python",
        "impaired": False,
    }


def _record(out: Path, work: Path, name: str, **kwargs: Any) -> dict[str, Any]:
    path = out / name
    truth = record_tunnel(path, work, **kwargs)
    truth_path = out / f"{name}.truth.ndjson"
    truth.write(truth_path)
    dialect = "go" if isinstance(kwargs.get("packing"), GoPacking) else "js"
    return _summary(path, truth_path, truth, **_describe(kwargs["carrier"], kwargs["host"], dialect))


CAPTURES = ("raw-tcp.pcap", "websocket.pcap", "wss.pcapng", "wss-tls12.pcapng", "go-dialect.pcap",
            "reference-js.pcap", "impaired.pcap", "junk.pcap", "false-sync.pcap", "deflate.pcap", "impaired-ws.pcap",
            "impaired-ack.pcap")
FULL = Plan(big_size=200_000)


def _record_wss(out: Path, work: Path, name: str = "wss.pcapng", host: str = "::1", big_size: int = 100_000,
                tls_maximum: ssl.TLSVersion | None = None) -> dict[str, Any]:
    """wss:// over ``host``; tcpdump writes pcap, editcap makes pcapng with the TLS secrets inside.

    The device's TLS client writes the key log (``SSLContext.keylog_filename``) beside the capture.
    """
    keys = out / Path(name).with_suffix(".keys").name
    keys.unlink(missing_ok=True)
    raw = work / Path(name).with_suffix(".pcap").name
    truth = record_tunnel(raw, work, carrier="wss", host=host, plan=Plan(big_size=big_size), keylog=keys,
                          tls_maximum=tls_maximum)
    subprocess.run(["editcap", "-F", "pcapng", "--inject-secrets", f"tls,{keys}", str(raw), str(out / name)],
                   check=True, capture_output=True)
    truth_path = out / f"{name}.truth.ndjson"
    truth.write(truth_path)
    extra = {"tls_maximum": "TLSv1_2"} if tls_maximum is ssl.TLSVersion.TLSv1_2 else {}
    return _summary(out / name, truth_path, truth, **_describe("wss", host), keylog=keys.name, **extra)


def _impaired(out: Path) -> dict[str, Any]:
    name = "impaired.pcap"
    if not (out / "raw-tcp.pcap.truth.ndjson").exists():
        raise SystemExit(f"impaired.pcap is made from raw-tcp.pcap: record that into {out} first")
    truth_path = out / f"{name}.truth.ndjson"
    details = impair(out / "raw-tcp.pcap", out / "raw-tcp.pcap.truth.ndjson", out / name, truth_path)
    truth = TruthLog()
    with truth_path.open(encoding="utf-8") as lines:
        for line in lines:
            truth.add(json.loads(line))
    return _summary(out / name, truth_path, truth, **{**_describe("tcp", "127.0.0.1"), "impaired": True},
                    impairments=details)


def _adversity_summary(out: Path, name: str, truth: TruthLog, carrier: str, *, impaired: bool = False,
                       **extra: Any) -> dict[str, Any]:
    """The manifest entry of a capture of ``adversity``: junk (stream stretches that are not M-PROXY) listed."""
    truth_path = out / f"{name}.truth.ndjson"
    truth.write(truth_path)
    return _summary(out / name, truth_path, truth, **{**_describe(carrier, "127.0.0.1"), "impaired": impaired},
                    **extra)


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
            manifest["raw-tcp.pcap"] = _record(out, work, "raw-tcp.pcap", carrier="tcp", host="127.0.0.1", plan=FULL)
        if "websocket.pcap" in wanted:
            manifest["websocket.pcap"] = _record(out, work, "websocket.pcap", carrier="ws", host="127.0.0.1", plan=FULL)
        if "wss.pcapng" in wanted:
            manifest["wss.pcapng"] = _record_wss(out, work)
        if "wss-tls12.pcapng" in wanted:
            manifest["wss-tls12.pcapng"] = _record_wss(out, work, "wss-tls12.pcapng", host="127.0.0.1",
                                                       big_size=50_000, tls_maximum=ssl.TLSVersion.TLSv1_2)
        if "go-dialect.pcap" in wanted:
            manifest["go-dialect.pcap"] = _record(
                out, work, "go-dialect.pcap", carrier="tcp", host="::1", packing=GoPacking(),
                plan=Plan(big_size=20_000, tls=False))
        if "reference-js.pcap" in wanted:
            manifest["reference-js.pcap"] = _record(
                out, work, "reference-js.pcap", carrier="reference-js", host="127.0.0.1",
                plan=Plan(big_size=30_000, tls=False))
        if "impaired.pcap" in wanted:
            manifest["impaired.pcap"] = _impaired(out)
        for name, record in (("junk.pcap", adversity.record_junk), ("false-sync.pcap", adversity.record_false_sync)):
            if name in wanted:
                truth, junk = record(out / name)
                manifest[name] = _adversity_summary(out, name, truth, "tcp", junk=junk)
        if "deflate.pcap" in wanted:
            truth = adversity.record_deflate(out / "deflate.pcap")
            manifest["deflate.pcap"] = _adversity_summary(out, "deflate.pcap", truth, "ws", deflate=True)
        if "impaired-ws.pcap" in wanted:
            truth, details = adversity.record_impaired_ws(out / "impaired-ws.pcap", work)
            manifest["impaired-ws.pcap"] = _adversity_summary(out, "impaired-ws.pcap", truth, "ws", impaired=True,
                                                              impairments=details)
        if "impaired-ack.pcap" in wanted:
            truth, details = adversity.record_impaired_ack(out / "impaired-ack.pcap", work)
            manifest["impaired-ack.pcap"] = _adversity_summary(out, "impaired-ack.pcap", truth, "tcp", impaired=True,
                                                               impairments=details)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name, entry in sorted(manifest.items()):
        directions = entry["frames_by_direction"]
        print(f"{name}: {entry['packets']} packets, {len(entry['tcp_conversations'])} TCP conversations, "
              f"{directions['relay->device']} + {directions['device->relay']} frames "
              f"(relay->device + device->relay), {entry['bytes']} bytes")
    return 0
