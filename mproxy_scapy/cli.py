"""The ``mproxy`` command: one sub-command per module in ``mproxy_scapy.commands``."""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

COMMAND_MODULES = (
    "pack",
    "unpack",
    "dissect",
    "stats",
    "report",
    "follow",
    "detunnel",
    "lua",
    "wireshark",
)
"""Each module under ``commands`` has ``register(subparsers)``, which sets ``func`` on its parser."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mproxy",
        description="Analyze M-PROXY tunnels (proxy-packer / telebit): pack and unpack frames, "
        "dissect captures, generate the Wireshark dissector.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"mproxy: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mproxy: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
