"""Asking the user's own tshark what it is, where it looks for Lua plugins, and whether it loads ours.

``mproxy wireshark install`` and ``status`` use this to prove the dissector loads rather than
hope so: they run the tshark on ``PATH`` as the user runs it (same user, same environment) and
read ``tshark -v``, ``-G folders`` and ``-G protocols``. When the protocol is missing, ``why_not``
turns what was seen into a reason a person can act on. The one that surprises people: Wireshark
4.2 and later, run as root, skip the personal Lua plugin folder and ``-X lua_script:`` without
a word (only the global folder still loads).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PROTOCOL_FILTER = "mproxy"
ROOT_SKIPS_PERSONAL_LUA = (4, 2)
"""From this Wireshark version on, Lua plugins in the personal folder are not loaded for root."""

_VERSION = re.compile(r"\(Wireshark\) (\d+)\.(\d+)\.(\d+)")
_LUA = re.compile(r"\bwith Lua (\d[\d.]*)")
_LOAD_ERROR = re.compile(r"Lua: Error|mproxy\.lua", re.I)


@dataclass
class Tshark:
    """What one tshark says about itself."""

    path: str
    version_text: str
    version: tuple[int, int, int] | None
    lua: str | None  # "5.2.4"; None when built without Lua
    folders: dict[str, Path] = field(default_factory=dict)  # -G folders: "Personal Lua Plugins" -> path

    @property
    def personal_lua(self) -> Path | None:
        return self.folders.get("Personal Lua Plugins")

    @property
    def global_lua(self) -> Path | None:
        return self.folders.get("Global Lua Plugins")


def run_tshark(path: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([path, *args], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess([path, *args], 1, "", str(exc))


def find_tshark(name: str = "tshark") -> Tshark | None:
    """The tshark on PATH and what it reports; None when there is none."""
    path = shutil.which(name)
    if path is None:
        return None
    about = run_tshark(path, "-v").stdout
    first = about.splitlines()[0] if about else "tshark (version unknown)"
    version = _VERSION.search(about)
    lua = _LUA.search(" ".join(about.split()))  # -v wraps its lines anywhere, "with Lua\n5.2.4" included
    folders: dict[str, Path] = {}
    for line in run_tshark(path, "-G", "folders").stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip() and key.strip() not in folders:
            folders[key.strip()] = Path(value.strip())
    return Tshark(path, first, tuple(int(g) for g in version.groups()) if version else None,  # type: ignore[arg-type]
                  lua.group(1) if lua else None, folders)


@dataclass
class LoadCheck:
    """The answer of ``tshark -G protocols``: is the protocol there, and what tshark said on the side."""

    loaded: bool
    description: str  # "M-PROXY tunnel protocol (mproxy)" when loaded
    messages: list[str]  # stderr lines about Lua or our file (load errors)


def listed_protocol(protocols: str) -> str | None:
    """Our protocol's line in ``tshark -G protocols`` output as "Name (filter)", or None."""
    for line in protocols.splitlines():
        columns = line.split("\t")  # name, short name, filter name (4.2 and later add three enabled flags)
        if len(columns) >= 3 and columns[2] == PROTOCOL_FILTER:
            return f"{columns[0]} ({columns[2]})"
    return None


def check_loads(tshark: Tshark) -> LoadCheck:
    result = run_tshark(tshark.path, "-G", "protocols")
    listed = listed_protocol(result.stdout)
    if listed:
        return LoadCheck(True, listed, [])
    messages = [line.strip() for line in result.stderr.splitlines() if _LOAD_ERROR.search(line)]
    return LoadCheck(False, "", messages)


def running_as_root() -> bool:
    return os.geteuid() == 0 or os.getuid() == 0


def version_text(version: tuple[int, int, int] | None) -> str:
    return ".".join(map(str, version)) if version else "(unknown version)"


def why_not(tshark: Tshark, folder: Path, check: LoadCheck, *, as_root: bool) -> str:
    """Why the protocol is missing although the file is in ``folder``, said so a person can act."""
    name = f"tshark {version_text(tshark.version)}"
    if tshark.lua is None:
        return (f"{name} was built without Lua, so it loads no Lua dissector: install a Wireshark with Lua "
                "(Debian's and Ubuntu's wireshark and tshark packages have it)")
    if check.messages:
        return f"{name} could not load it: {' '.join(check.messages)}"
    resolved = folder.resolve()
    personal = tshark.personal_lua.resolve() if tshark.personal_lua else None
    global_ = tshark.global_lua.resolve() if tshark.global_lua else None
    if resolved not in (personal, global_):
        looked = ", ".join(str(p) for p in (tshark.personal_lua, tshark.global_lua) if p)
        return f"{name} does not look for Lua plugins in {folder} (it looks in {looked}): install without --folder"
    newer = tshark.version is not None and tshark.version >= ROOT_SKIPS_PERSONAL_LUA
    if as_root and resolved == personal and newer:
        return (f"{name} runs as root here, and Wireshark 4.2 and later ignore Lua plugins in the personal folder "
                "(and -X lua_script:) for root. Run Wireshark as a normal user (and install as that user: "
                "mproxy wireshark install), or, for root, install into the global folder: "
                "mproxy wireshark install --global")
    return (f"{name} does not list it in `tshark -G protocols` and said nothing why; "
            f"`tshark -G plugins` shows what it loads")
