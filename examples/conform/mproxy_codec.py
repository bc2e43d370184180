"""``mproxy conform`` adapter for this project's own codec (the line protocol of docs/CONFORMANCE.md).

Usage: mproxy conform --packer "python examples/conform/mproxy_codec.py"

A template for an adapter in Python: read one JSON request per line, answer one JSON line.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from mproxy_scapy.codec import Unpacker, pack, pack_header

HANDLERS = ("onmessage", "oncontrol", "onconnection", "onerror", "onend", "onpause", "onresume")


def body(request: dict[str, Any]) -> Any:
    value = request.get("body")
    if value is None:
        return None
    if "base64" in value:
        return base64.b64decode(value["base64"])
    return value["json"]


def unpack(chunks: list[str]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []

    def recorder(name: str) -> Any:
        def record(tun: dict[str, Any]) -> None:
            fields = {k: v for k, v in tun.items() if k != "data" and v is not None}
            fields["data"] = None if tun["data"] is None else base64.b64encode(tun["data"]).decode()
            events.append({"handler": name, "fields": fields})
        return record

    unpacker = Unpacker({name: recorder(name) for name in HANDLERS})
    for chunk in chunks:
        unpacker.feed(base64.b64decode(chunk))
    return events


def answer(request: dict[str, Any]) -> dict[str, Any]:
    op = request["op"]
    if op in ("pack", "packHeader"):
        make = pack if op == "pack" else pack_header
        return {"wire": base64.b64encode(make(request["meta"], body(request), request.get("service"))).decode()}
    if op == "unpack":
        return {"events": unpack(request["chunks"])}
    return {"error": f"unknown op {op!r}"}


def main() -> None:
    for line in sys.stdin:
        try:
            reply = answer(json.loads(line))
        except Exception as exc:  # the protocol's answer to an input this packer refuses
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
