"""``mproxy pack INPUT.json OUTPUT.bin``: the reference's test/pack.js, byte for byte."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from ..codec import pack
from ..errors import UserError
from ..sni import client_hello_sni

_HOST_HEADER = re.compile(r"(?:^|[\r\n])Host: ([^\r\n]+)[\r\n]*", re.IGNORECASE | re.MULTILINE)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="pack a body file into one M-PROXY frame (the reference's test/pack.js input format)",
        description="Read INPUT.json ({'address': {family, address, port, service, serviceport}, "
        "'filepath': body file relative to INPUT.json}) and write the frame Packer.pack() makes. "
        "The name field comes from the body's TLS SNI, else its HTTP Host header, as the reference does.",
    )
    parser.add_argument("input", type=Path, metavar="INPUT.json")
    parser.add_argument("output", type=Path, metavar="OUTPUT.bin")
    parser.set_defaults(func=run)


def routed_name(data: bytes) -> str:
    """What test/pack.js puts in ``name``: the SNI servername, else the Host header without port."""
    servername = client_hello_sni(data)
    if servername:
        return servername
    match = _HOST_HEADER.search(data.decode("utf-8", errors="replace"))
    return match.group(1).lower().split(":")[0] if match else ""


def _load_input(path: Path) -> tuple[dict[str, Any], bytes]:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(spec, dict):
        raise UserError(f"{path}: expected a JSON object with 'address' and 'filepath'")
    missing = [key for key in ("address", "filepath") if key not in spec]
    if missing:
        raise UserError(f"{path}: missing key(s) {', '.join(repr(k) for k in missing)}")
    address = spec["address"]
    if not isinstance(address, dict):
        raise UserError(f"{path}: 'address' must be an object with family, address, port, service, serviceport")
    if not isinstance(spec["filepath"], str):
        raise UserError(f"{path}: 'filepath' must be a string")
    body_path = path.parent / spec["filepath"]
    try:
        data = body_path.read_bytes()
    except OSError as exc:
        raise UserError(f"{body_path}: cannot read the body file named by 'filepath': {exc.strerror}") from None
    return address, data


def run(args: argparse.Namespace) -> int:
    address, data = _load_input(args.input)
    address = {**address, "name": routed_name(data)}
    frame = pack(address, data)
    try:
        args.output.write_bytes(frame)
    except OSError as exc:
        raise UserError(f"{args.output}: cannot write: {exc.strerror}") from None
    print(f"wrote {len(frame)} bytes to '{args.output}'")
    return 0
