"""Reading captures through tshark with the generated dissector, for people who script Wireshark.

``file_capture`` is pyshark's ``FileCapture`` with two things set: the
dissector from this package loaded (``-X lua_script:``), and a private,
empty Wireshark configuration, so a user's profile (disabled protocols,
Decode As, preferences) cannot change what is decoded.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .generator import generate_lua

_generated: Path | None = None


def dissector_path() -> Path:
    """A file holding the dissector generated from the installed spec (written once per process)."""
    global _generated
    if _generated is None or not _generated.exists():
        folder = Path(tempfile.mkdtemp(prefix="mproxy-wireshark-"))
        atexit.register(shutil.rmtree, folder, True)
        (folder / "config").mkdir()
        path = folder / "mproxy.lua"
        path.write_text(generate_lua(), encoding="utf-8")
        _generated = path
    return _generated


def isolated_environment() -> dict[str, str]:
    """Environment variables that give tshark an empty profile of its own."""
    folder = dissector_path().parent
    return {"WIRESHARK_CONFIG_DIR": str(folder / "config"), "HOME": str(folder)}


def tshark_args(lua_script: Path | None = None) -> list[str]:
    return ["-X", f"lua_script:{lua_script or dissector_path()}"]


def file_capture(path: str | os.PathLike[str], *, lua_script: Path | None = None, **pyshark_kwargs: Any) -> Any:
    """``pyshark.FileCapture(path, ...)`` whose packets carry an ``mproxy`` layer.

    Extra keyword arguments go to pyshark (``display_filter``, ``override_prefs``,
    ``decode_as``, ``use_ek``...). pyshark starts tshark with the environment of
    this process, so the isolated profile is set through ``WIRESHARK_CONFIG_DIR``
    for the lifetime of the capture object's tshark runs.
    """
    import pyshark

    if not Path(path).exists():
        raise FileNotFoundError(path)
    custom = list(pyshark_kwargs.pop("custom_parameters", None) or [])
    os.environ.update(isolated_environment())
    return pyshark.FileCapture(str(path), custom_parameters=[*tshark_args(lua_script), *custom], **pyshark_kwargs)
