"""Ground truth, written by the side that sends each frame, at the moment it sends it.

Each record describes the frame from what the sender itself wrote (its header text and
body), never from a decoder, so decoders can be checked against it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

HEADER_KEYS = ("family", "address", "port", "datalen", "service", "serviceport", "name", "servicename")
_NUMERIC = frozenset({"port", "datalen", "serviceport"})
_MESSAGE_KINDS = frozenset({"control", "connection", "end", "error", "pause", "resume"})


def endpoint(addr: tuple[Any, ...]) -> str:
    """``ip:port``, IPv6 as ``[ip]:port``: the team's endpoint text."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isascii() and text.isdigit() else None


def describe(frame: bytes, body_len: int) -> dict[str, Any]:
    """Every header field of a frame the caller just packed: ``frame`` is its bytes."""
    hdrlen = frame[1]
    header = frame[2 : 2 + hdrlen].decode("utf-8")
    dialect = "go" if header.endswith("\n") else "js"
    fields = header.strip().split(",") if dialect == "go" else header.split(",")
    if dialect == "go" and fields and fields[-1] == "":
        fields.pop()
    record: dict[str, Any] = {"version": frame[0], "hdrlen": hdrlen, "header": header}
    for index, key in enumerate(HEADER_KEYS):
        text = fields[index] if index < len(fields) else None
        record[key] = _number(text) if key in _NUMERIC else text
    record["kind"] = record["service"] if record["service"] in _MESSAGE_KINDS else "data"
    record["dialect"] = dialect
    body = frame[2 + hdrlen :]
    assert len(body) == body_len, "describe() needs the whole frame"
    record["body_len"] = body_len
    record["body_sha256"] = hashlib.sha256(body).hexdigest()
    return record


class TruthLog:
    """All frames of one capture, both directions, in the order they were written."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: list[dict[str, Any]] = []
        self._seq: dict[tuple[str, str, str], int] = {}

    def record(
        self,
        *,
        direction: str,
        src: str,
        dst: str,
        carrier: str,
        offset: int,
        frame: bytes,
        packer: str,
        **extra: Any,
    ) -> None:
        """Log one frame; ``frame`` is header and body as written to the stream."""
        desc = describe(frame, len(frame) - 2 - frame[1])
        with self._lock:
            key = (src, dst, direction)
            seq = self._seq.get(key, 0)
            self._seq[key] = seq + 1
            self.records.append(
                {
                    "src": src,
                    "dst": dst,
                    "direction": direction,
                    "seq": seq,
                    "carrier": carrier,
                    "offset": offset,
                    "length": len(frame),
                    **desc,
                    "packer": packer,
                    "ts": round(time.time(), 6),
                    **extra,
                }
            )

    def add(self, record: dict[str, Any]) -> None:
        """A record written by another process (the Node.js reference relay)."""
        with self._lock:
            self.records.append(record)

    def write(self, path: Path) -> int:
        records = sorted(self.records, key=lambda r: r["ts"])
        with path.open("w", encoding="utf-8") as out:
            for rec in records:
                out.write(json.dumps(rec, sort_keys=False) + "\n")
        return len(records)
