"""``mproxy dissect [FILE | -i IFACE]``: every M-PROXY frame of a capture, one line (or JSON object) each."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..decoder import DecodedFrame, StageEvent
from ..render import event_json, event_line, frame_line, frame_ndjson, to_ndjson
from ..secrets import redact_text
from ..sessions import SessionTracker
from ..textout import safe_text
from ._filters import add_filter_arguments, frame_filter, stage_events_shown
from ._source import add_file_argument, check_source, decode_records, make_decoder


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dissect",
        help="list the M-PROXY frames of a capture file or live interface",
        description="Decode M-PROXY tunnels (raw TCP or WebSocket) in a pcap/pcapng file or on a live "
        "interface: one line per frame with the packet number that completed it, the time since the "
        "first packet, tunnel endpoints and direction, kind, client id, service/name, datalen and any "
        "problems. Without FILE the bundled example capture is shown.",
        epilog="Tokens in control messages, access_token URLs and Authorization headers are redacted "
        "unless --show-secrets is given.",
    )
    add_file_argument(parser, live=True)
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per record (NDJSON), field names as in DESIGN.md")
    add_filter_arguments(parser)
    parser.add_argument("--scapy", action="store_true",
                        help="also show each frame as the Scapy MProxy layer (show()); for small selections")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    decoder = make_decoder(args)
    tracker = SessionTracker()
    keep = frame_filter(args)
    events_shown = stage_events_shown(args)
    show_secrets = args.show_secrets
    out = sys.stdout
    write = out.write
    frames = 0
    live = bool(getattr(args, "interface", None))
    as_json, scapy = args.json, args.scapy
    first_ts: float | None = None
    for record in decode_records(args, decoder):
        if first_ts is None:
            first_ts = decoder.first_ts or 0.0
        if type(record) is DecodedFrame:
            if record.frame.kind == "control":
                tracker.add(record)  # only control replies get something from the tracker here
            if keep is not None and not keep(record):
                continue
            frames += 1
            if as_json:
                write(frame_ndjson(record, show_secrets=show_secrets) + "\n")
            else:
                write(frame_line(record, first_ts, show_secrets=show_secrets) + "\n")
            if scapy and record.frame.is_frame:
                _show_scapy(record, show_secrets)
            if live:
                out.flush()
        elif isinstance(record, StageEvent) and record.is_problem and events_shown:
            if args.json:
                write(to_ndjson(event_json(record, show_secrets=show_secrets)) + "\n")
            else:
                write(event_line(record, first_ts, show_secrets=show_secrets) + "\n")
    out.flush()
    problems = sum(decoder.problem_counts.values())
    print(f"{frames} records shown, {decoder.tunnel_count} tunnels, {decoder.packets} TCP packets, "
          f"{problems} problems", file=sys.stderr)
    check_source(args, decoder)
    return 0


def _show_scapy(record: DecodedFrame, show_secrets: bool) -> None:
    text = record.frame.to_scapy().show(dump=True)
    if not show_secrets:
        text = redact_text(text)
    sys.stdout.write("".join(safe_text(line) + "\n" for line in text.splitlines()))
