"""``mproxy unpack FILE.bin``: the frames of a raw M-PROXY byte stream, one line each."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..parser import FrameParser
from ..textout import frame_summary

_CHUNK = 1 << 16


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "unpack",
        help="list the frames of a raw M-PROXY stream file (e.g. from `mproxy pack`)",
        description="Decode a file holding one direction of an M-PROXY stream, frame by frame, "
        "with byte offsets and any problems found.",
    )
    parser.add_argument("file", type=Path, metavar="FILE.bin", help="raw M-PROXY stream ('-' for stdin)")
    parser.add_argument("--unsynced", action="store_true",
                        help="the file starts mid-stream: skip to the first believable frame")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    parser = FrameParser(synced=not args.unsynced)
    try:
        stream = sys.stdin.buffer if str(args.file) == "-" else args.file.open("rb")
    except OSError as exc:
        raise UserError(f"{args.file}: {exc.strerror}") from None
    count = 0
    with stream:
        while chunk := stream.read(_CHUNK):
            for frame in parser.feed(chunk):
                count += 1
                print(frame_summary(frame))
        for frame in parser.close():
            count += 1
            print(frame_summary(frame))
    print(f"{count} records, {parser.bytes_seen} bytes", file=sys.stderr)
    return 0
