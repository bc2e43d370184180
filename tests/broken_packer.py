"""Deliberately broken packers for ``mproxy conform``'s tests: our codec with one classic mistake each.

Usage: python tests/broken_packer.py MODE  (speaks the line protocol of docs/CONFORMANCE.md)

- no-padding: ``pack`` writes an empty body as nothing (datalen 0) instead of one space;
- hdrlen-unwrapped: hdrlen is ``min(len(header), 255)`` instead of ``len & 0xff``;
- datalen-chars: datalen counts the body's characters (UTF-8 decoded), not its bytes;
- go-dialect: the header ends with the Go packer's ``,\\n``;
- hang: never answers a ``packHeader`` request;
- crash: exits (status 3, a message on stderr) on a control frame;
- garbage: answers unpack requests with a line that is not JSON.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "conform"))

import mproxy_codec

from mproxy_scapy.codec import pack_header


def rewrite(request: dict[str, Any], mode: str) -> bytes:
    """The reference's frame, then the mistake."""
    op, meta, service = request["op"], request["meta"], request.get("service")
    data = mproxy_codec.body(request)
    oldways = op == "pack" and mode != "no-padding"
    with_body = pack_header(meta, data, service, True, oldways=oldways)
    header = pack_header(meta, data, service, False, oldways=oldways)[2:]
    body = with_body[2 + len(header):]
    if mode == "datalen-chars":
        fields = header.split(b",")
        counted = body if op == "pack" else with_body[2 + len(header):]
        fields[3] = str(len(counted.decode("utf-8", errors="replace"))).encode()
        header = b",".join(fields)
    elif mode == "go-dialect":
        header += b",\n"
    hdrlen = min(len(header), 255) if mode == "hdrlen-unwrapped" else len(header) & 0xFF
    return bytes((0xFE, hdrlen)) + header + (body if op == "pack" else b"")


def answer(request: dict[str, Any], mode: str) -> dict[str, Any]:
    if mode == "hang" and request["op"] == "packHeader":
        time.sleep(3600)
    if mode == "crash" and request.get("service") == "control":
        print("broken_packer: cannot pack a control frame, giving up", file=sys.stderr, flush=True)
        sys.exit(3)
    if request["op"] == "unpack":
        if mode == "garbage":
            return {}
        return mproxy_codec.answer(request)
    return {"wire": base64.b64encode(rewrite(request, mode)).decode()}


def main() -> None:
    mode = sys.argv[1]
    for line in sys.stdin:
        request = json.loads(line)
        if mode == "garbage" and request["op"] == "unpack":
            sys.stdout.write("unpacked it, thanks\n")
        else:
            try:
                reply = answer(request, mode)
            except (TypeError, AttributeError) as exc:
                reply = {"error": str(exc)}
            sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
