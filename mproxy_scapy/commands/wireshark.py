"""``mproxy wireshark install``: put the dissector where Wireshark loads personal Lua plugins."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..wireshark.install import install, personal_plugin_dir, uninstall

_RELOAD = ("Wireshark loads it at start. In a running Wireshark: Analyze > Reload Lua Plugins "
           "(Ctrl+Shift+L). Check: Help > About Wireshark > Plugins lists mproxy.lua; "
           "tshark -G protocols | grep mproxy")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "wireshark",
        help="install or remove the M-PROXY dissector in your personal Wireshark plugins folder",
        description="Copy the generated M-PROXY Lua dissector into the personal Lua plugins folder "
        "that `tshark -G folders` reports (or remove it).",
    )
    parser.add_argument("action", choices=["install"], help="install (or, with --uninstall, remove)")
    parser.add_argument("--uninstall", action="store_true", help="remove the installed dissector")
    parser.add_argument("--folder", type=Path, default=None,
                        help="plugin folder to use instead of the one tshark reports")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = args.folder or personal_plugin_dir()
    if args.uninstall:
        removed = uninstall(folder)
        print(f"removed {removed}" if removed else f"nothing to remove: {folder / 'mproxy.lua'} does not exist")
        if removed:
            print("Restart Wireshark or use Analyze > Reload Lua Plugins (Ctrl+Shift+L) to unload it.")
        return 0
    target = install(folder)
    print(f"installed {target}")
    print(_RELOAD)
    return 0
