"""Installing the generated dissector where Wireshark looks for personal Lua plugins."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..errors import UserError
from .generator import generate_lua

PLUGIN_NAME = "mproxy.lua"
_FOLDER_KEY = "Personal Lua Plugins:"


def personal_plugin_dir(tshark: str = "tshark") -> Path:
    """The folder ``tshark -G folders`` names for personal Lua plugins (Wireshark knows best).

    Without tshark, Wireshark's documented default ``~/.local/lib/wireshark/plugins``.
    """
    if shutil.which(tshark) is not None:
        try:
            result = subprocess.run([tshark, "-G", "folders"], capture_output=True, text=True, timeout=60,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired):
            result = None
        if result is not None:
            for line in result.stdout.splitlines():
                if line.startswith(_FOLDER_KEY):
                    return Path(line[len(_FOLDER_KEY):].strip())
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local")
    return base / "lib" / "wireshark" / "plugins"


def install(folder: Path | None = None) -> Path:
    """Write the dissector (freshly generated from the spec) into the plugin folder; returns its path."""
    folder = folder or personal_plugin_dir()
    target = folder / PLUGIN_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        target.write_text(generate_lua(), encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {target}: {exc.strerror}") from None
    return target


def uninstall(folder: Path | None = None) -> Path | None:
    """Remove the installed dissector; returns the removed path, None when it was not there."""
    target = (folder or personal_plugin_dir()) / PLUGIN_NAME
    if not target.exists():
        return None
    try:
        target.unlink()
    except OSError as exc:
        raise UserError(f"cannot remove {target}: {exc.strerror}") from None
    return target
