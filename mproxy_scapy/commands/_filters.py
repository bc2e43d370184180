"""The frame filters ``dissect`` and ``report`` share: ``--service``, ``--client``, ``--name``, ``--kind``,
``--problems-only``, as arguments and as one predicate on decoded frames."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..decoder import DecodedFrame
from ..spec import KINDS


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", metavar="NAME", help="only frames whose service (or servicename) is NAME")
    parser.add_argument("--client", metavar="ID",
                        help="only frames of this tunneled client: family,address,port or address:port")
    parser.add_argument("--name", metavar="HOST", help="only frames whose name (SNI / Host) is HOST")
    parser.add_argument("--kind", choices=sorted(KINDS), help="only frames of this kind")
    parser.add_argument("--problems-only", action="store_true",
                        help="only records with problems (including TCP, carrier and capture problems)")


def client_matcher(text: str) -> Any:
    """A predicate on client ids for ``family,address,port`` or ``address:port`` / ``[v6]:port``."""
    if "," in text:
        return lambda client_id: client_id == text
    address, _, port = text.rpartition(":")
    address = address.strip("[]")
    if not address or not port.isdigit():
        return lambda client_id: client_id == text
    suffix = f",{address},{int(port)}"
    return lambda client_id: bool(client_id) and client_id.endswith(suffix) and client_id.count(",") == 2


def frame_filter(args: argparse.Namespace) -> Callable[[DecodedFrame], bool] | None:
    """The predicate the filter arguments ask for; None when none is given (every frame is kept)."""
    client = client_matcher(args.client) if args.client else None
    service, name, kind, problems_only = args.service, args.name, args.kind, args.problems_only
    if not (client or service or name or kind or problems_only):
        return None

    def keep(record: DecodedFrame) -> bool:
        frame = record.frame
        if problems_only and not frame.problems:
            return False
        if kind and frame.kind != kind:
            return False
        if service and service not in (frame.service, frame.servicename):
            return False
        if name and frame.name != name:
            return False
        return not (client and not client(frame.client_id))

    return keep


def filter_text(args: argparse.Namespace) -> str:
    """The filters given, as they were typed (``--service https --kind data``); empty when none."""
    parts = [f"--{option} {value}" for option, value in (("service", args.service), ("client", args.client),
                                                          ("name", args.name), ("kind", args.kind)) if value]
    if args.problems_only:
        parts.append("--problems-only")
    return " ".join(parts)


def stage_events_shown(args: argparse.Namespace) -> bool:
    """Stage problems (TCP, carrier, capture) are shown unless a filter on frame fields narrows the output."""
    return args.problems_only or not (args.client or args.service or args.name or args.kind)
