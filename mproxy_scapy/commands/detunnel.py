"""``mproxy detunnel INPUT... -o OUT.pcap``: every tunneled connection as an ordinary TCP conversation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..detunnel import Detunneler
from ..errors import UserError
from ._source import Source, add_file_argument, check_source


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "detunnel",
        help="write the tunneled connections as a plain TCP pcap for Wireshark",
        description="Rewrite each tunneled client connection as a TCP conversation between the client's "
        "address:port and the relay's serviceport (handshake, sequence and ack numbers, FIN for end, RST "
        "for error, original timestamps), so Wireshark and tshark dissect the inner HTTP/TLS natively. "
        "Secrets in the inner bytes are overwritten with '*' (same length) unless --show-secrets.",
    )
    add_file_argument(parser, live=False)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.pcap",
                        help="pcap file to write (raw IP link type)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        stream = args.output.open("wb")
    except OSError as exc:
        raise UserError(f"{args.output}: cannot write: {exc.strerror}") from None
    source = Source(args)
    with stream:
        detunneler = Detunneler(stream, show_secrets=args.show_secrets)
        for record in source:
            detunneler.add(record)
    print(f"{detunneler.conversations} tunneled connections, {detunneler.writer.packets} packets "
          f"written to {args.output}", file=sys.stderr)
    if detunneler.bytes_missing:
        print(f"mproxy: {detunneler.bytes_missing} tunneled bytes were lost or not held: left as holes in the "
              "TCP sequence space", file=sys.stderr)
    check_source(source)
    return 0
