"""Reading captures through tshark with the generated dissector, for people who script Wireshark.

``file_capture`` is pyshark's ``FileCapture`` with two things set: the
dissector from this package loaded (``-X lua_script:``), and a private,
empty Wireshark configuration, so a user's profile (disabled protocols,
Decode As, preferences) cannot change what is decoded. pyshark starts tshark
with this process's environment, so the private profile is given to tshark
by a small wrapper script (pyshark's ``tshark_path``), never by changing the
caller's environment.
"""

from __future__ import annotations

import atexit
import os
import shlex
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


def isolated_tshark(tshark: str | None = None) -> Path:
    """An executable that runs ``tshark`` (or the given one) with the private profile."""
    real = tshark or shutil.which("tshark") or "tshark"
    wrapper = dissector_path().parent / "tshark"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in isolated_environment().items())
    wrapper.write_text(f"#!/bin/sh\nexec env {env} {shlex.quote(real)} \"$@\"\n", encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


def _ensure_event_loop() -> None:
    """pyshark runs tshark on the main thread's asyncio loop, which ``asyncio.run`` leaves unset."""
    import asyncio

    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def file_capture(path: str | os.PathLike[str], *, lua_script: Path | None = None, **pyshark_kwargs: Any) -> Any:
    """``pyshark.FileCapture(path, ...)`` whose packets carry an ``mproxy`` layer.

    Extra keyword arguments go to pyshark (``display_filter``, ``override_prefs``,
    ``decode_as``, ``use_ek``, ``custom_parameters``...); ``tshark_path`` names
    the tshark to wrap.
    """
    import pyshark

    _ensure_event_loop()
    if not Path(path).exists():
        raise FileNotFoundError(path)
    custom = list(pyshark_kwargs.pop("custom_parameters", None) or [])
    tshark = isolated_tshark(pyshark_kwargs.pop("tshark_path", None))
    return pyshark.FileCapture(str(path), custom_parameters=[*tshark_args(lua_script), *custom],
                               tshark_path=str(tshark), **pyshark_kwargs)
