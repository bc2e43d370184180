"""``mproxy lua``: write the Wireshark dissector generated from the spec, or check the checked-in one."""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..wireshark.generator import DEFAULT_OUTPUT, generate_lua


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lua",
        help="generate the Wireshark Lua dissector (dissectors/mproxy.lua) from the field spec",
        description="Render the Wireshark dissector from mproxy_scapy/spec.py and its template. "
        "With --check, compare instead and exit 1 when the file differs.",
    )
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="PATH",
                        help=f"file to write ('-' for stdout; default {DEFAULT_OUTPUT})")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 (and show a diff) when PATH differs from what the generator makes")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    text = generate_lua()
    target = args.output or DEFAULT_OUTPUT
    if args.check:
        try:
            current = target.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{target}: {exc.strerror}") from None
        if current == text:
            print(f"{target} is up to date")
            return 0
        diff = difflib.unified_diff(current.splitlines(True), text.splitlines(True),
                                    f"{target} (checked in)", f"{target} (generated)")
        sys.stdout.writelines(list(diff)[:200])
        print(f"{target} differs from the generator's output: run `mproxy lua -o {target}`", file=sys.stderr)
        return 1
    if str(target) == "-":
        sys.stdout.write(text)
        return 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{target}: {exc.strerror}") from None
    print(f"wrote {target}")
    return 0
