"""One-line text renderings of frames, safe to print on a terminal.

Header text comes from the wire: control characters and escape sequences in
it are shown escaped so a hostile capture cannot drive the terminal.
"""

from __future__ import annotations

from .parser import Frame, Problem


def safe_text(value: str | None) -> str:
    """Printable text with every control character escaped as ``\\xNN`` (or ``\\n``, ``\\t``...)."""
    if value is None:
        return ""
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in value)


def frame_summary(frame: Frame) -> str:
    """``offset+length kind client service name datalen [problems]`` for a frame or a skipped span."""
    where = f"@{frame.offset}+{frame.length}"
    if not frame.is_frame:
        text = f"{where} {frame.kind} {frame.length} bytes"
    else:
        parts = [where, frame.kind]
        if frame.kind == "control":
            parts.append(safe_text(frame.body.decode("utf-8", "replace")) if frame.body else "")
        else:
            parts.append(safe_text(frame.client_id))
            parts.append(safe_text(frame.servicename if frame.kind == "connection" else frame.service))
            if frame.name:
                parts.append(safe_text(frame.name))
            parts.append(f"datalen={frame.datalen}")
        if frame.dialect == "go":
            parts.append("[go]")
        text = " ".join(p for p in parts if p)
    return text + problems_suffix(frame.problems)


def problems_suffix(problems: list[Problem]) -> str:
    """`` [kind: detail; ...]`` after a frame's line, or nothing when it has no problems."""
    return " [" + "; ".join(safe_text(str(p)) for p in problems) + "]" if problems else ""
