"""The ``mproxy`` command: one sub-command per module in ``mproxy_scapy.commands``."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import sys

from . import __version__
from .errors import UserError

COMMAND_MODULES = (
    "pack",
    "unpack",
    "dissect",
    "stats",
    "report",
    "follow",
    "detunnel",
    "export",
    "check",
    "conform",
    "lua",
    "wireshark",
)
"""Each module under ``commands`` has ``register(subparsers)``, which sets ``func`` on its parser."""


def version_text() -> str:
    """What ``mproxy --version`` prints: ours, and the Python and Scapy a bug report needs."""
    try:
        scapy = importlib.metadata.version("scapy")
    except importlib.metadata.PackageNotFoundError:
        scapy = "not installed"
    return f"mproxy {__version__} (Python {platform.python_version()}, Scapy {scapy})"


class _VersionAction(argparse.Action):
    """``--version``: the text is made only when asked, so other commands pay nothing for it."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version of mproxy, Python and Scapy, then exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mproxy",
        description="Analyze M-PROXY tunnels (proxy-packer / telebit): pack and unpack frames, "
        "dissect captures, generate the Wireshark dissector.",
    )
    parser.add_argument("--version", action=_VersionAction)
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
