"""Writing the report's files whole or not at all: a temporary file beside the target, renamed over it.

A report that died half-written (disk full, Ctrl-C, a capture error) must not
look like a finished one, and the output place is checked before the capture
is read so a typo in ``-o`` costs no decoding time.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UserError


def check_writable(path: Path) -> None:
    """Fail now, in one line, if ``path`` could not be written later."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give the report's file name")
    if not folder.is_dir():
        raise UserError(f"{path}: cannot write the report: no such directory {folder}")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"{path}: cannot write the report: permission denied")


def prepare_folder(folder: Path) -> None:
    """The PNG folder, made if missing; a clear line if it cannot be."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{folder}: cannot make the PNG folder: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{folder}: cannot write PNGs: permission denied")


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, or (on any failure) nothing new there and a UserError."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise UserError(f"{path}: cannot write the report: {exc.strerror or exc}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
