"""``mproxy stats INPUT...``: what crossed each tunnel, per tunneled client, as tables."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from ..decoder import TCP_GAP_MEANING, Decoder
from ..secrets import redact_control, redact_value
from ..sessions import SessionTracker
from ..spec import PROBLEMS
from ..textout import safe_text
from ._shards import add_scheduler_argument, shard_runner, sharded_stats
from ._source import Source, add_file_argument, check_source

if TYPE_CHECKING:
    from rich.console import Console

    from ..parallel import Totals


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stats",
        help="tables per tunneled connection, per tunnel, problems and control round-trips",
        description="Summarise a capture: every tunneled client connection (service, name, frames and "
        "bytes each way, start, duration, how it ended), totals per tunnel and carrier, problems by kind, "
        "and control requests matched to their replies.",
    )
    add_file_argument(parser, live=False)
    add_scheduler_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the same numbers as one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.scheduler:
        source = Source(args, keep_closed_tunnels=True, jobs=1)
        source.totals, tracker = sharded_stats(shard_runner(args), source)
    else:
        source = Source(args, keep_closed_tunnels=True)
        tracker = SessionTracker()
        for record in source:
            tracker.add(record)
    summary = summarize(source.totals, tracker, show_secrets=args.show_secrets)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        from rich.console import Console  # rich costs every mproxy command 16 ms at start-up: only tables load it

        print_tables(summary, Console(highlight=False, width=None if sys.stdout.isatty() else 200))
    sys.stdout.flush()
    check_source(source)
    return 0


def _rel(ts: float | None, first: float) -> float | None:
    return None if ts is None else round(ts - first, 6)


def summarize(decoder: Decoder | Totals, tracker: SessionTracker, *, show_secrets: bool = False) -> dict[str, Any]:
    """All numbers of the report as plain data (times relative to the capture's first packet)."""
    first = decoder.first_ts or 0.0
    sessions = []
    for s in tracker.sessions:
        outbound = 1 - s.inbound
        sessions.append({
            "tunnel": s.tunnel, "client": s.client_id, "service": s.label, "name": s.name,
            "serviceport": s.serviceport, "frames_in": s.frames[s.inbound], "frames_out": s.frames[outbound],
            "bytes_in": s.data_bytes[s.inbound], "bytes_out": s.data_bytes[outbound],
            "start": _rel(s.first_ts, first), "duration": round(s.duration, 6), "ended_by": s.outcome,
            "error": s.end_detail, "pauses": s.pauses, "resumes": s.resumes,
        })
    tunnels = []
    for t in decoder.tunnels.values():
        info = t.carrier_info if show_secrets else redact_value(t.carrier_info)
        tunnels.append({
            "tunnel": t.id, "client": t.client, "server": t.server, "carrier": t.carrier,
            "carrier_info": {str(k): "" if v is None else str(v) for k, v in info.items()},
            "frames": list(t.frames), "stream_bytes": list(t.stream_bytes),
            "sessions": sum(1 for s in tracker.sessions if s.tunnel == t.id),
            "start": _rel(t.first_ts, first),
            "duration": round(t.last_ts - t.first_ts, 6) if t.first_ts is not None and t.last_ts else 0.0,
            "closed": t.closed or "open",
        })
    carriers: Counter[str] = Counter(t.carrier for t in decoder.tunnels.values())
    control = []
    for e in tracker.exchanges:
        request = e.request.frame.control
        entry = {
            "tunnel": e.tunnel, "id": e.id, "command": e.command,
            "request": request if show_secrets else redact_control(request),
            "request_frame": e.request.pcap_frame,
            "reply_frame": e.reply.pcap_frame if e.reply else None,
            "latency": round(e.latency, 6) if e.latency is not None else None,
            "outcome": e.outcome,
        }
        if e.request.pcap_file is not None:  # several inputs: which file each packet number is in
            entry["request_file"] = e.request.pcap_file
            entry["reply_file"] = e.reply.pcap_file if e.reply else None
        control.append(entry)
    return {
        "packets": decoder.packets, "connections": decoder.connections,
        "tunnels": tunnels, "carriers": dict(carriers), "sessions": sessions,
        "problems": dict(sorted(decoder.problem_counts.items())),
        "skipped": dict(decoder.skipped), "control": control,
        "unanswered": [c for c in control if c["reply_frame"] is None],
        "unmatched_replies": [r.pcap_frame for r in tracker.unmatched_replies],
    }


def problem_meaning(key: str) -> str:
    """What a problem kind means: ``kind`` from the parser, ``stage.kind`` from the stages before it."""
    from ..carrier import CARRIER_PROBLEMS
    from ..pcap import SOURCE_PROBLEMS
    from ..tcp import TCP_PROBLEMS
    from ..tls import TLS_PROBLEMS

    if key == "tcp.gap":
        return TCP_GAP_MEANING
    stage, _, kind = key.rpartition(".")
    table = {"": PROBLEMS, "capture": SOURCE_PROBLEMS, "tcp": TCP_PROBLEMS, "carrier": CARRIER_PROBLEMS,
             "tls": TLS_PROBLEMS}.get(stage, {})
    return table.get(kind, "")


def _t(value: Any) -> str:
    """Cell text from the capture: control characters escaped, and rich markup (``[...]``) shown literally."""
    from rich.markup import escape

    return "" if value is None else escape(safe_text(str(value)))


def print_tables(summary: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    sessions = Table(title="Tunneled connections", title_justify="left")
    for column in ("tunnel", "client", "service", "name", "port", "frames in/out", "bytes in/out",
                   "start", "duration", "pause/resume", "ended by"):
        sessions.add_column(column, justify="right" if column in ("tunnel", "port", "start", "duration") else "left")
    for s in summary["sessions"]:
        ended = s["ended_by"] + (f" ({s['error']})" if s["error"] else "")
        sessions.add_row(_t(s["tunnel"]), _t(s["client"]), _t(s["service"]), _t(s["name"]), _t(s["serviceport"]),
                         f"{s['frames_in']}/{s['frames_out']}", f"{s['bytes_in']}/{s['bytes_out']}",
                         f"{s['start']:.6f}", f"{s['duration']:.6f}", f"{s['pauses']}/{s['resumes']}", _t(ended))
    console.print(sessions)

    tunnels = Table(title="Tunnels", title_justify="left")
    for column in ("tunnel", "endpoints", "carrier", "sessions", "frames c→s/s→c", "bytes c→s/s→c", "start",
                   "duration", "closed"):
        tunnels.add_column(column)
    for t in summary["tunnels"]:
        carrier = t["carrier"] + "".join(f" {k}={v}" for k, v in t["carrier_info"].items() if k in ("path", "url"))
        tunnels.add_row(_t(t["tunnel"]), f"{t['client']} ↔ {t['server']}", _t(carrier), _t(t["sessions"]),
                        f"{t['frames'][0]}/{t['frames'][1]}", f"{t['stream_bytes'][0]}/{t['stream_bytes'][1]}",
                        f"{t['start']:.6f}" if t["start"] is not None else "", f"{t['duration']:.6f}",
                        _t(t["closed"]))
    console.print(tunnels)
    carriers = ", ".join(f"{k}: {v}" for k, v in sorted(summary["carriers"].items())) or "none"
    console.print(f"{summary['packets']} TCP packets, {summary['connections']} TCP connections, "
                  f"tunnels by carrier: {carriers}", markup=False)
    if summary["skipped"]:
        console.print("skipped (not M-PROXY): " + ", ".join(f"{k} {v} bytes" for k, v in summary["skipped"].items()),
                      markup=False)

    problems = Table(title="Problems", title_justify="left")
    problems.add_column("kind")
    problems.add_column("count", justify="right")
    problems.add_column("meaning")
    for kind, count in summary["problems"].items():
        problems.add_row(_t(kind), str(count), problem_meaning(kind))
    if summary["problems"]:
        console.print(problems)
    else:
        console.print("no problems", markup=False)

    control = Table(title="Control round-trips", title_justify="left")
    for column in ("tunnel", "id", "command", "request", "reply", "latency", "outcome"):
        control.add_column(column)
    for c in summary["control"]:
        latency = f"{c['latency']:.6f}" if c["latency"] is not None else ""
        control.add_row(_t(c["tunnel"]), _t(c["id"]), _t(c["command"]), f"#{c['request_frame']}",
                        f"#{c['reply_frame']}" if c["reply_frame"] else "", latency, _t(c["outcome"]))
    if summary["control"]:
        console.print(control)
    if summary["unanswered"]:
        console.print(f"{len(summary['unanswered'])} control requests unanswered: "
                      + ", ".join(f"#{c['request_frame']} {safe_text(c['command'])}" for c in summary["unanswered"]),
                      markup=False)
