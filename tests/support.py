"""Paths and small helpers the test modules share (importable: tests/ is on pythonpath)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "tests" / "data" / "reference"
CAPTURES = REPO / "captures"
HANDLER_NAMES = ("onmessage", "oncontrol", "onconnection", "onerror", "onend", "onpause", "onresume")


def recording_handlers(calls: list) -> dict:
    """Unpacker handlers that append ``(handler, tun)`` to ``calls``."""
    return {name: (lambda tun, name=name: calls.append((name, tun))) for name in HANDLER_NAMES}


def delivered_as_reference(calls: list) -> list[dict]:
    """Our Unpacker's calls in the shape vectors.json and the Node driver record them."""
    out = []
    for handler, tun in calls:
        fields = {k: v for k, v in tun.items() if k != "data" and v is not None}
        fields["data_hex"] = None if tun["data"] is None else tun["data"].hex()
        out.append({"handler": handler, "tun": fields})
    return out
