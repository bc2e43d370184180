"""What proxy-packer 2.0.4 answers to a conform request: our codec (byte-exact with it) as the oracle.

Requests are the line protocol's (docs/CONFORMANCE.md). Unpack cases are held
as the frames of a stream and the points where it is cut into chunks, so they
shrink as frames; ``wire_request`` turns them into the chunks sent.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import jscompat
from ..codec import Unpacker, pack, pack_header
from ..spec import HANDLER_BY_KIND

_HANDLERS = sorted(set(HANDLER_BY_KIND.values()))


@dataclass
class Case:
    """One request. ``request`` is what goes on the line, except for unpack cases, which hold
    ``frames`` (pack requests) and ``cuts`` (chunk boundaries) and are turned into chunks on the way."""

    name: str
    group: str
    request: dict[str, Any]


class Refused:
    """The reference throws on this input (or the packer answered ``{"error": ...}``)."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refused)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"error: {self.message}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def body_value(request: dict[str, Any]) -> Any:
    """The body as the reference is handed it (None for null and for a missing body: both falsy there)."""
    body = request.get("body")
    if body is None:
        return None
    if "base64" in body:
        return base64.b64decode(body["base64"])
    return body["json"]


def body_bytes_sent(request: dict[str, Any]) -> bytes:
    """What a relay writes after ``packHeader``'s header: the body bytes the header counted."""
    value = body_value(request)
    if not jscompat.is_truthy(value):
        return b""
    if isinstance(value, bytes):
        return value
    return jscompat.encode_utf8(jscompat.json_stringify(value))


def expected_wire(request: dict[str, Any]) -> bytes | Refused:
    """What proxy-packer's ``pack``/``packHeader`` returns for this request."""
    meta = request.get("meta")
    try:
        if request["op"] == "pack":
            return pack(meta, body_value(request), request.get("service"))
        return pack_header(meta, body_value(request), request.get("service"))
    except (TypeError, AttributeError) as exc:  # the reference reads a property of null: TypeError
        return Refused(str(exc))


def stream_of(frames: list[dict[str, Any]]) -> bytes:
    """The byte stream of these frames as a relay writes it (packHeader's body after its header)."""
    out = bytearray()
    for frame in frames:
        wire = expected_wire(frame)
        assert isinstance(wire, bytes), frame
        out += wire
        if frame["op"] == "packHeader":
            out += body_bytes_sent(frame)
    return bytes(out)


def chunks_of(request: dict[str, Any]) -> list[bytes]:
    data = stream_of(request["frames"])
    points = sorted({0, len(data), *(c for c in request.get("cuts", []) if 0 < c < len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def expected_events(chunks: list[bytes]) -> list[dict[str, Any]]:
    """The handler calls proxy-packer's unpacker makes for these chunks, as the line protocol writes them."""
    calls: list[dict[str, Any]] = []

    def recorder(name: str) -> Callable[[dict[str, Any]], None]:
        def record(tun: dict[str, Any]) -> None:
            fields = {k: v for k, v in tun.items() if k != "data" and v is not None}
            fields["data"] = None if tun.get("data") is None else b64(tun["data"])
            calls.append({"handler": name, "fields": fields})
        return record

    unpacker = Unpacker({name: recorder(name) for name in _HANDLERS})
    for chunk in chunks:
        unpacker.feed(chunk)
    return calls


def wire_request(case_request: dict[str, Any]) -> dict[str, Any]:
    """The line sent for a case (unpack cases become chunks)."""
    if case_request["op"] == "unpack":
        return {"op": "unpack", "chunks": [b64(c) for c in chunks_of(case_request)]}
    return case_request


