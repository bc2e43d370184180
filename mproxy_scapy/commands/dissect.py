"""``mproxy dissect [INPUT... | -i IFACE]``: every M-PROXY frame of the captures, one line (or JSON object) each."""

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
from ._source import Source, add_file_argument, check_source


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "dissect",
        help="list the M-PROXY frames of a capture file or live interface",
        description="Decode M-PROXY tunnels (raw TCP or WebSocket) in a pcap/pcapng file or on a live "
        "interface: one line per frame with the packet number that completed it, the time since the "
        "first packet, tunnel endpoints and direction, kind, client id, service/name, datalen and any "
        "problems. Several inputs (files, directories, - for standard input) are read as one capture merged by "
        "packet time. Without INPUT the bundled example capture is shown.",
        epilog="Tokens in control messages, access_token URLs and Authorization headers are redacted "
        "unless --show-secrets is given.",
    )
    add_file_argument(parser, live=True)
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per record (NDJSON); every key, its type and when it is "
                        "there: docs/NDJSON.md in the mproxy-scapy repository")
    add_filter_arguments(parser)
    parser.add_argument("--scapy", action="store_true",
                        help="also show each frame as the Scapy MProxy layer (show()); for small selections")
    parser.set_defaults(func=run)


class Formatter:
    """One record as dissect prints it (a line, with ``--scapy`` the layer too), or None when filtered out.

    It runs where records are decoded: in each worker with ``--jobs``, so the
    parent only writes text. Control replies get their request from a session
    tracker first; a tunnel's frames all go to one worker, so a worker's own
    tracker matches them as one tracker over the whole capture would.
    ``totals`` counts the frames shown.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.keep = frame_filter(args)
        self.events_shown = stage_events_shown(args)
        self.show_secrets = args.show_secrets
        self.as_json = args.json
        self.scapy = args.scapy
        self.tracker = SessionTracker()
        self.first_ts: float | None = None
        self.totals = 0

    def __call__(self, record: Any, decoder: Any) -> str | None:
        if self.first_ts is None:
            self.first_ts = decoder.first_ts or 0.0
        show_secrets = self.show_secrets
        if type(record) is DecodedFrame:
            if record.frame.kind == "control":
                self.tracker.add(record)  # only control replies get something from the tracker here
            if self.keep is not None and not self.keep(record):
                return None
            self.totals += 1
            if self.as_json:
                text = frame_ndjson(record, show_secrets=show_secrets) + "\n"
            else:
                text = frame_line(record, self.first_ts, show_secrets=show_secrets) + "\n"
            if self.scapy and record.frame.is_frame:
                text += _scapy_text(record, show_secrets)
            return text
        if isinstance(record, StageEvent) and record.is_problem and self.events_shown:
            if self.as_json:
                return to_ndjson(event_json(record, show_secrets=show_secrets)) + "\n"
            return event_line(record, self.first_ts, show_secrets=show_secrets) + "\n"
        return None


def run(args: argparse.Namespace) -> int:
    source = Source(args, transform=Formatter(args))
    out = sys.stdout
    write = out.write
    if source.interactive:
        for text in source:
            write(text)
            out.flush()
    else:
        for text in source:
            write(text)
    out.flush()
    totals = source.totals
    frames = sum(source.extras)
    problems = sum(totals.problem_counts.values())
    print(f"{frames} records shown, {totals.tunnel_count} tunnels, {totals.packets} TCP packets, "
          f"{problems} problems", file=sys.stderr)
    check_source(source)
    return 0


def _scapy_text(record: DecodedFrame, show_secrets: bool) -> str:
    text = record.frame.to_scapy().show(dump=True)
    if not show_secrets:
        text = redact_text(text)
    return "".join(safe_text(line) + "\n" for line in text.splitlines())
