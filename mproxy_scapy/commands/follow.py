"""``mproxy follow INPUT... --client ID``: one tunneled connection's bytes each way, like ``tshark -z follow``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, BinaryIO

from ..decoder import DecodedFrame
from ..errors import UserError
from ..secrets import mask_bytes
from ..sessions import Session, SessionTracker
from ..textout import safe_text
from ._filters import client_matcher
from ._source import Source, add_file_argument, check_source

_RULE = "=" * 69
_ASCII_VIEW = bytes(b if 32 <= b < 127 or b in (9, 10) else 46 for b in range(256))


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "follow",
        help="show one tunneled client's bytes each way (ascii, hex or raw), or save them to files",
        description="Follow the inner connection of one tunneled client: the bytes it sent (Node 0) and "
        "the bytes it got back (Node 1, indented), in the format of tshark -z follow. With -o DIR each "
        "session's two directions are written to files instead.",
    )
    add_file_argument(parser, live=False)
    parser.add_argument("--client", required=True, metavar="ID",
                        help="the tunneled client: family,address,port (as dissect shows) or address:port")
    parser.add_argument("--format", choices=("ascii", "hex", "raw"), default="ascii",
                        help="how bytes are shown on stdout (default ascii)")
    parser.add_argument("-o", "--output-dir", type=Path, metavar="DIR",
                        help="write <tunnel>-<client>-<n>.{in,out}.bin files here instead of printing")
    parser.set_defaults(func=run)


def _printable(data: bytes) -> str:
    """tshark's ascii view, terminal-safe: printable ASCII, tabs and line ends as they are, else '.'."""
    return data.replace(b"\r\n", b"\n").translate(_ASCII_VIEW).decode("ascii")


def _hexdump(data: bytes, offset: int, indent: str) -> str:
    lines = []
    for at in range(0, len(data), 16):
        chunk = data[at:at + 16]
        hex_part = " ".join(f"{b:02x}" for b in chunk[:8]) + "  " + " ".join(f"{b:02x}" for b in chunk[8:])
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{indent}{offset + at:08X}  {hex_part:<49} {text}")
    return "\n".join(lines)


class _Files:
    """Two files per session in DIR, opened on the session's first bytes."""

    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{directory}: cannot create: {exc.strerror}") from None
        self.directory = directory
        self.open: dict[int, tuple[BinaryIO, BinaryIO]] = {}
        self.paths: list[Path] = []

    def write(self, session: Session, number: int, inbound: bool, data: bytes) -> None:
        pair = self.open.get(id(session))
        if pair is None:
            stem = f"t{session.tunnel}-{session.client_id.replace(',', '_').replace(':', '-')}-{number}"
            stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)
            paths = (self.directory / f"{stem}.in.bin", self.directory / f"{stem}.out.bin")
            try:
                pair = (paths[0].open("wb"), paths[1].open("wb"))
            except OSError as exc:
                raise UserError(f"{self.directory}: cannot write: {exc.strerror}") from None
            self.open[id(session)] = pair
            self.paths.extend(paths)
        pair[0 if inbound else 1].write(data)

    def close(self) -> None:
        for pair in self.open.values():
            for stream in pair:
                stream.close()


def run(args: argparse.Namespace) -> int:
    matches = client_matcher(args.client)
    source = Source(args)
    tracker = SessionTracker()
    files = _Files(args.output_dir) if args.output_dir else None
    numbers: dict[int, int] = {}
    sizes: dict[int, int] = {}
    missing = 0
    offsets: dict[int, list[int]] = {}
    out = sys.stdout
    try:
        for record in source:
            session = tracker.add(record)
            if session is None or not matches(session.client_id):
                continue
            assert isinstance(record, DecodedFrame)
            if id(session) not in numbers:
                numbers[id(session)] = len(numbers) + 1
                offsets[id(session)] = [0, 0]
                if files is None:
                    _print_banner(out, session, args.format)
            frame = record.frame
            if frame.kind == "data" and not frame.body and frame.datalen:
                missing += frame.datalen
            if frame.kind != "data" or not frame.body:
                continue
            body = frame.body if args.show_secrets else mask_bytes(frame.body)
            inbound = record.direction == session.inbound
            sizes[id(session)] = sizes.get(id(session), 0) + len(body)
            if files is not None:
                files.write(session, numbers[id(session)], inbound, body)
            else:
                _print_chunk(out, body, inbound, args.format, offsets[id(session)])
    finally:
        if files is not None:
            files.close()
    check_source(source)
    if not numbers:
        raise UserError(f"no tunneled client {args.client!r} in the capture (see `mproxy stats`)")
    if files is None:
        out.write(_RULE + "\n")
    else:
        for path in files.paths:
            print(path, file=sys.stderr)
    print(f"{len(numbers)} sessions, {sum(sizes.values())} bytes", file=sys.stderr)
    if missing:
        print(f"mproxy: {missing} bytes of this client were lost in the capture or not held "
              "(see --max-frame-held) and are not shown", file=sys.stderr)
    return 0


def _print_banner(out: Any, session: Session, fmt: str) -> None:
    out.write(f"{_RULE}\nFollow: mproxy,{fmt}\nFilter: tunnel {session.tunnel} client "
              f"{safe_text(session.client_id)}\nNode 0: {safe_text(session.address)}:{session.port}\n"
              f"Node 1: {safe_text(session.relay)} (service {safe_text(session.label)} "
              f"{safe_text(session.name)} port {session.serviceport})\n")


def _print_chunk(out: Any, data: bytes, inbound: bool, fmt: str, offsets: list[int]) -> None:
    indent = "" if inbound else "\t"
    side = 0 if inbound else 1
    if fmt == "ascii":
        text = _printable(data)
        out.write(f"{indent}{len(data)}\n{text}\n")
    elif fmt == "hex":
        out.write(_hexdump(data, offsets[side], indent) + "\n")
    else:
        out.write(f"{indent}{data.hex()}\n")
    offsets[side] += len(data)
