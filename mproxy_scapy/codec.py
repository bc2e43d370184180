"""Packing and unpacking M-PROXY exactly as proxy-packer 2.0.4 does.

``pack`` / ``pack_header`` produce the reference's bytes for any input the
reference accepts; ``Unpacker`` delivers the same handler calls with the same
fields for any split of the input. The analyzer's tolerant parser lives in
``parser`` and is re-exported here.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

from . import jscompat
from .header import ParsedHeader
from .parser import Frame, FrameParser, Problem, iter_frames
from .spec import HANDLER_BY_KIND, VERSION_1_BYTE

__all__ = [
    "ClientPacker",
    "Frame",
    "FrameParser",
    "Problem",
    "Unpacker",
    "addr_to_id",
    "iter_frames",
    "pack",
    "pack_header",
    "socket_to_addr",
    "socket_to_id",
]

_SPACE = b" "


def _body_bytes(data: Any, oldways: bool) -> bytes | None:
    """The body the reference computes: oldways padding, Buffers as is, anything else JSON."""
    if oldways and not jscompat.is_truthy(data):
        return _SPACE
    if jscompat.is_truthy(data) and not isinstance(data, jscompat.BYTES_LIKE):
        data = jscompat.encode_utf8(jscompat.json_stringify(data))
    if isinstance(data, jscompat.BYTES_LIKE):
        data = bytes(data)
        if oldways and not data:
            return _SPACE
        return data
    return None


def pack_header(
    tun: Mapping[str, Any] | None,
    data: Any = None,
    service: str | None = None,
    and_body: bool = False,
    *,
    oldways: bool = False,
) -> bytes:
    """``Packer.packHeader``: the version byte, hdrlen and header; the body too with ``and_body``.

    Unlike the reference, ``tun`` is not modified: the reference sets
    ``meta.service = service`` for message kinds, which callers then trip over.
    """
    body = _body_bytes(data, oldways)
    meta = dict(tun) if tun is not None else None
    if service and service not in ("control", "connection"):
        if meta is None:
            raise TypeError(f"pack_header: a {service!r} frame needs a tun address mapping")
        meta["service"] = service
    size = len(body) if body else 0
    if service == "control":
        fields: list[Any] = ["", "", "", size, service]
    else:
        if meta is None:
            raise TypeError("pack_header: tun must be a mapping with family, address and port")
        get = meta.get
        tail = [
            get("serviceport") if jscompat.is_truthy(get("serviceport")) else "",
            get("name") if jscompat.is_truthy(get("name")) else "",
        ]
        own_service = get("service") if jscompat.is_truthy(get("service")) else ""
        if service == "connection":
            fields = [get("family"), get("address"), get("port"), size, "connection", *tail, own_service]
        else:
            fields = [get("family"), get("address"), get("port"), size, own_service, *tail]
    header = jscompat.encode_utf8(",".join(jscompat.to_string(f) for f in fields))
    prefix = bytes((VERSION_1_BYTE, len(header) & 0xFF))
    if and_body and body:
        return prefix + header + body
    return prefix + header


def pack(tun: Mapping[str, Any] | None, data: Any = None, service: str | None = None) -> bytes:
    """``Packer.pack``: header and body, an empty body padded to one space ("oldways")."""
    return pack_header(tun, data, service, True, oldways=True)


def addr_to_id(address: Mapping[str, Any]) -> str:
    """``Packer.addrToId``: the tunneled client's identity ``family,address,port``."""
    parts = []
    for key in ("family", "address", "port"):
        parts.append(jscompat.concat_string(address[key]) if key in address else "undefined")
    return ",".join(parts)


_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


def socket_to_addr(sock: socket.socket) -> dict[str, Any]:
    """``Packer.socketToAddr`` for a Python socket: the peer as Node names it, local port as serviceport."""
    peer = sock.getpeername()
    return {
        "family": _FAMILY_NAMES.get(sock.family, str(sock.family)),
        "address": peer[0],
        "port": peer[1],
        "serviceport": sock.getsockname()[1],
    }


def socket_to_id(sock: socket.socket) -> str:
    return addr_to_id(socket_to_addr(sock))


class ClientPacker:
    """``Packer.Transform.create``: every chunk one client sends becomes one ``pack`` frame.

    Defaults for service, serviceport and name fill in only what the address
    lacks, as the reference's transform does.
    """

    def __init__(
        self,
        address: Mapping[str, Any],
        service: str | None = None,
        serviceport: int | None = None,
        name: str | None = None,
    ) -> None:
        meta = dict(address)
        for key, default in (("service", service), ("serviceport", serviceport), ("name", name)):
            if not jscompat.is_truthy(meta.get(key)):
                meta[key] = default
        self.address = meta

    def pack(self, chunk: bytes) -> bytes:
        return pack(self.address, chunk)

    def iter_pack(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield pack(self.address, chunk)

    async def aiter_pack(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield pack(self.address, chunk)


Handler = Callable[[dict[str, Any]], Any]


def _resolve_handlers(handlers: Any) -> dict[str, Handler]:
    """Accept a dict or an object, and both casings, as ``Packer.create`` does."""
    found: dict[str, Handler] = {}
    for name in set(HANDLER_BY_KIND.values()):
        camel = "on" + name[2].upper() + name[3:]
        for candidate in (name, camel):
            fn = handlers.get(candidate) if isinstance(handlers, Mapping) else getattr(handlers, candidate, None)
            if callable(fn):
                found[name] = fn
                break
    if "onmessage" not in found:
        raise TypeError("Unpacker needs an onmessage handler (a callable under 'onmessage')")
    found.setdefault("onconnection", lambda tun: None)
    return found


class Unpacker:
    """``Packer.create(handlers)``: the reference's incremental state machine.

    Same handler, same fields, for any split of the input. Where the reference
    does something a Python caller cannot use it is documented here:
    - a wrong version byte is only logged by the reference; here it is
      counted in ``bad_version_bytes`` and parsing goes on as v1, the same way;
    - an error body that is JSON but not an object makes the reference throw
      out of ``addChunk``; here it is delivered with the ``E_UNKNOWN_ERR``
      fallback message;
    - a zero-length header at the very end of a chunk is delivered at once,
      where the reference waits for the next chunk.
    """

    def __init__(self, handlers: Any) -> None:
        self._handlers = _resolve_handlers(handlers)
        self._buf = bytearray()
        self._header: ParsedHeader | None = None
        self._body_len = 0
        self.bad_version_bytes = 0

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        while True:
            if self._header is None:
                if len(self._buf) < 2:
                    return
                hdrlen = self._buf[1]
                if len(self._buf) < 2 + hdrlen:
                    return
                if self._buf[0] != VERSION_1_BYTE:
                    self.bad_version_bytes += 1
                self._header = ParsedHeader(bytes(self._buf[2 : 2 + hdrlen]))
                self._body_len = jscompat.parse_int(self._header.values["datalen"]) or 0
                del self._buf[: 2 + hdrlen]
            if self._body_len > 0:
                if len(self._buf) < self._body_len:
                    return
                data: bytes | None = bytes(self._buf[: self._body_len])
                del self._buf[: self._body_len]
            else:
                data = b"" if self._body_len < 0 else None
            header, self._header = self._header, None
            self._deliver(header, data)

    def _deliver(self, header: ParsedHeader, data: bytes | None) -> None:
        values = header.values
        service = values["service"]
        msg: dict[str, Any] = {}
        if service == "error":
            msg = _error_message(data)
        msg.update(
            family=values["family"],
            address=values["address"],
            port=values["port"],
            service=values["servicename"] if service == "connection" else service,
            serviceport=values["serviceport"],
            name=values["name"],
            data=data,
        )
        handlers = self._handlers
        fn = (
            handlers.get(HANDLER_BY_KIND.get(service or "", ""))
            or handlers.get(HANDLER_BY_KIND.get(msg["service"] or "", ""))
            or handlers["onmessage"]
        )
        fn(msg)


def _error_message(data: bytes | None) -> dict[str, Any]:
    """The reference's ``onerror`` payload: the body's JSON object, or its fallback text."""
    if data is not None:
        try:
            parsed = jscompat.json_parse(data.decode("utf-8", errors="replace"))
        except (ValueError, RecursionError):  # nesting past Python's stack: V8 parses it, we fall back
            parsed = None
        else:
            if isinstance(parsed, dict):
                return dict(parsed)
            if isinstance(parsed, list):
                return {}
    described = "undefined" if data is None else jscompat.json_stringify(data)
    return {"message": "e:" + described, "code": "E_UNKNOWN_ERR"}
