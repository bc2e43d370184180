"""How each side packs its frames: the project's codec (JS dialect) or a Go-dialect packer.

The relay and device ask for frames by meaning (connection, data, end, ...) and a style;
the packer decides the bytes. ``JsPacking`` uses ``mproxy_scapy.codec`` (byte-exact with
proxy-packer 2.0.4) and produces both padding styles: ``pack`` pads an empty body to one
space, ``pack_header`` + body writes datalen 0. ``GoPacking`` writes the Go dialect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mproxy_scapy.codec import pack, pack_header

from .links import Packed

PACK = "mproxy_scapy.codec.pack"
PACK_HEADER = "mproxy_scapy.codec.pack_header"
GO_PACK = "recorder.packers.go_pack"


def _split(frame: bytes, packer: str) -> Packed:
    cut = 2 + frame[1]
    return Packed(frame[:cut], frame[cut:], packer)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class JsPacking:
    """Frames as proxy-packer writes them. ``style`` is 'pack' (padding) or 'header' (datalen 0)."""

    dialect = "js"
    sends_connection = True

    def connection(self, tun: Mapping[str, Any]) -> Packed:
        return _split(pack(tun, None, "connection"), PACK)

    def data(self, tun: Mapping[str, Any], chunk: bytes, style: str) -> Packed:
        if style == "header":
            return Packed(pack_header(tun, chunk), chunk, PACK_HEADER)
        return _split(pack(tun, chunk), PACK)

    def end(self, tun: Mapping[str, Any], style: str) -> Packed:
        if style == "header":
            return Packed(pack_header(tun, None, "end"), b"", PACK_HEADER)
        return _split(pack(tun, None, "end"), PACK)

    def error(self, tun: Mapping[str, Any], message: str, code: str) -> Packed:
        return _split(pack(tun, {"message": message, "code": code}, "error"), PACK)

    def flow(self, tun: Mapping[str, Any], kind: str, count: int) -> Packed:
        """``pause`` / ``resume`` with the byte count as decimal text."""
        return _split(pack(tun, str(count).encode(), kind), PACK)

    def control(self, message: list[Any]) -> Packed:
        body = _json(message)
        return Packed(pack_header(None, body, "control"), body, PACK_HEADER)


def go_pack(tun: Mapping[str, Any], body: bytes, scheme: str) -> bytes:
    """The Go packer's frame: ``family,addr,port,len,scheme,relayport,servername,\\n``.

    The trailing comma and newline are part of the header and counted in hdrlen.
    """
    header = (
        f"{tun['family']},{tun['address']},{tun['port']},{len(body)},{scheme},"
        f"{tun.get('serviceport') or ''},{tun.get('name') or ''},\n"
    ).encode()
    if len(header) > 255:
        raise ValueError("go_pack: header longer than 255 bytes")
    return bytes((0xFE, len(header))) + header + body


class GoPacking:
    """The Go dialect: no connection or control frames (the first data opens a client), 0-length end/error."""

    dialect = "go"
    sends_connection = False

    def data(self, tun: Mapping[str, Any], chunk: bytes, style: str) -> Packed:
        return _split(go_pack(tun, chunk, tun.get("service") or "tcp"), GO_PACK)

    def end(self, tun: Mapping[str, Any], style: str) -> Packed:
        return _split(go_pack(tun, b"", "end"), GO_PACK)

    def error(self, tun: Mapping[str, Any], message: str, code: str) -> Packed:
        return _split(go_pack(tun, b"", "error"), GO_PACK)

    def flow(self, tun: Mapping[str, Any], kind: str, count: int) -> Packed:
        return _split(go_pack(tun, str(count).encode(), kind), GO_PACK)
