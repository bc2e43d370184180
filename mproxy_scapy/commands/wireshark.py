"""``mproxy wireshark install | uninstall | status``: the Lua dissector in a Wireshark plugin folder, proven to load.

Copying a file is not the job; Wireshark loading it is. After installing, the user's own
tshark is asked (``tshark -G protocols``) whether the protocol is there, and when it is not
the reason is said (``wireshark.probe.why_not``), with exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..wireshark.generator import generate_lua
from ..wireshark.install import PLUGIN_NAME, install, personal_plugin_dir, uninstall
from ..wireshark.probe import Tshark, check_loads, find_tshark, running_as_root, version_text, why_not

_RELOAD = ("Wireshark loads it at start; in a running Wireshark: Analyze > Reload Lua Plugins (Ctrl+Shift+L). "
           "Help > About Wireshark > Plugins lists mproxy.lua.")
_NO_TSHARK = ("tshark is not installed, so whether Wireshark loads it was not checked: install tshark "
              "(apt-get install tshark), then run mproxy wireshark status")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "wireshark",
        help="install, remove or check the M-PROXY dissector in a Wireshark plugin folder",
        description="install: write the generated M-PROXY Lua dissector into the personal Lua plugins folder "
        "that `tshark -G folders` reports (or the global one), then check that tshark loads it. "
        "uninstall: remove it. status: the Wireshark and Lua versions, which plugin folder holds the "
        "dissector, and whether tshark loads it. Exit status 1 when tshark does not load it.",
        epilog="Wireshark 4.2 and later, run as root, ignore Lua plugins in the personal folder: run Wireshark "
        "as a normal user, or install for root with --global.",
    )
    parser.add_argument("action", choices=["install", "uninstall", "status"])
    parser.add_argument("--uninstall", action="store_true", help="with install: remove it instead (as uninstall)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--global", dest="global_", action="store_true",
                       help="the global Lua plugins folder (for every user, root included; needs root to write)")
    where.add_argument("--folder", type=Path, default=None,
                       help="plugin folder to use instead of the one tshark reports")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "status":
        return status()
    tshark = find_tshark()
    folder = target_folder(args, tshark)
    if args.uninstall or args.action == "uninstall":
        removed = uninstall(folder)
        print(f"removed {removed}" if removed else f"nothing to remove: {folder / PLUGIN_NAME} does not exist")
        if removed:
            print("Restart Wireshark or use Analyze > Reload Lua Plugins (Ctrl+Shift+L) to unload it.")
        return 0
    if args.global_ and not _writable(folder):
        raise UserError(f"cannot write {folder / PLUGIN_NAME}: the global folder needs root: "
                        f"sudo {sys.argv[0]} wireshark install --global")
    target = install(folder)
    print(f"installed {target}")
    if tshark is None:
        print(_NO_TSHARK)
        return 0
    check = check_loads(tshark)
    if not check.loaded:
        print(f"mproxy: error: {why_not(tshark, folder, check, as_root=running_as_root())}", file=sys.stderr)
        return 1
    print(f"tshark {version_text(tshark.version)} loads it: `tshark -G protocols` lists {check.description}")
    print(_RELOAD)
    return 0


def target_folder(args: argparse.Namespace, tshark: Tshark | None) -> Path:
    if args.folder is not None:
        return args.folder
    if not args.global_:
        return tshark.personal_lua if tshark and tshark.personal_lua else personal_plugin_dir()
    if tshark is None or tshark.global_lua is None:
        raise UserError("--global needs tshark to say where its global Lua plugins folder is: install tshark "
                        "(apt-get install tshark), or give the folder with --folder")
    return tshark.global_lua


def status() -> int:
    """What a bug report about the dissector needs: versions, where our file is, whether it loads."""
    tshark = find_tshark()
    if tshark is None:
        print("Wireshark: tshark is not installed (apt-get install tshark); nothing to check")
        return 1
    print(f"Wireshark: {tshark.version_text.rstrip('.')} ({tshark.path})")
    print(f"Lua:       {tshark.lua or 'none (built without Lua: no Lua dissector can load)'}")
    current = generate_lua()
    found = []
    for label, folder in (("personal", tshark.personal_lua), ("global", tshark.global_lua)):
        if folder is None:
            continue
        path = folder / PLUGIN_NAME
        if path.exists():
            found.append(folder)
            same = _read(path) == current
            print(f"plugin:    {path} ({label} Lua plugins folder; "
                  f"{'as this mproxy generates it' if same else 'differs from this mproxy: reinstall'})")
        else:
            print(f"plugin:    not in {folder} ({label} Lua plugins folder)")
    check = check_loads(tshark)
    if check.loaded:
        print(f"loads:     yes, `tshark -G protocols` lists {check.description}")
        if len(found) > 1:
            print("note:      it is in both folders: Wireshark loads the first and reports a Lua error for the "
                  "second; remove one (mproxy wireshark uninstall, or uninstall --global)")
        return 0
    if not found:
        print("loads:     no, it is not installed: mproxy wireshark install")
    else:
        print(f"loads:     no: {why_not(tshark, found[0], check, as_root=running_as_root())}")
    return 1


def _writable(folder: Path) -> bool:
    """The folder, or the first part of it that exists, can be written by this user."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    return os.access(existing, os.W_OK)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
