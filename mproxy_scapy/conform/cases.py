"""The named cases of ``mproxy conform``: the reference vectors, edge cases, unpack chunkings."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..codec import pack_header
from ..sni import client_hello_sni
from .oracle import Case, b64, body_bytes_sent, expected_wire, stream_of

REFERENCE_DATA = Path(__file__).resolve().parent.parent / "data" / "reference"


BASE_META = {"family": "IPv4", "address": "127.0.1.1", "port": 4321, "service": "https", "serviceport": 443,
             "name": "pokemap.hellabit.com"}
IPV6_META = {"family": "IPv6", "address": "2001:db8::42", "port": 40443, "service": "https", "serviceport": 8443,
             "name": "ipv6.example.test"}


def _req(op: str, meta: Any, body: Any = ..., service: Any = ...) -> dict[str, Any]:
    out: dict[str, Any] = {"op": op, "meta": meta}
    if body is not ...:
        out["body"] = body
    if service is not ...:
        out["service"] = service
    return out


def _bin(data: bytes) -> dict[str, str]:
    return {"base64": b64(data)}


def _json(value: Any) -> dict[str, Any]:
    return {"json": value}


def reference_cases() -> list[Case]:
    """proxy-packer's own vectors (vectors.json) and test/pack.js's input.json / output.bin."""
    vectors = json.loads((REFERENCE_DATA / "vectors.json").read_text(encoding="utf-8"))
    cases = []
    for vector in vectors:
        data = vector["data"]
        body = None if data is None else (_bin(bytes.fromhex(data["hex"])) if "hex" in data else _json(data["json"]))
        request = _req(vector["call"], vector["meta"], body, vector["service_arg"])
        cases.append(Case(f"vector: {vector['name']}", "vectors", request))
    spec = json.loads((REFERENCE_DATA / "input.json").read_text(encoding="utf-8"))
    hello = (REFERENCE_DATA / "sni.hello.bin").read_bytes()
    meta = {**spec["address"], "name": client_hello_sni(hello)}
    cases.append(Case("vector: test/pack.js input.json -> output.bin", "vectors", _req("pack", meta, _bin(hello))))
    frames = [c.request for c in cases]
    cases.append(Case("vector: unpack the vectors' stream whole", "vectors", {"op": "unpack", "frames": frames}))
    return cases


def name_for_header(length: int, meta: dict[str, Any], datalen: int) -> str:
    """A host name (labels of at most 63 letters) that makes the ``pack`` header of ``meta`` ``length`` bytes."""
    base = len(pack_header({**meta, "name": ""}, b"x" * datalen, None)) - 2
    name = ("a" * 63 + ".") * (length // 64 + 1)
    name = name[: length - base]
    return name[:-1] + "a" if name.endswith(".") else name


def edge_cases(*, large: bool = True) -> list[Case]:
    m, v6 = BASE_META, IPV6_META
    rng = random.Random(12)
    cases = [
        ("pack: body missing (padded to one space)", _req("pack", m)),
        ("pack: body null", _req("pack", m, None)),
        ("pack: empty Buffer body", _req("pack", m, _bin(b""))),
        ("pack: empty string body", _req("pack", m, _json(""))),
        ("pack: body 0 (a falsy number)", _req("pack", m, _json(0))),
        ("pack: body false", _req("pack", m, _json(False))),
        ("pack: one-space body", _req("pack", m, _bin(b" "))),
        ("packHeader: no body (datalen 0)", _req("packHeader", m)),
        ("packHeader: empty Buffer body (datalen 0)", _req("packHeader", m, _bin(b""))),
        ("packHeader: 100-byte body, header only", _req("packHeader", m, _bin(bytes(range(100))))),
        ("packHeader: end (datalen 0)", _req("packHeader", m, None, "end")),
        ("pack: connection (8 fields)", _req("pack", m, None, "connection")),
        ("pack: connection, meta without service", _req("pack", {k: m[k] for k in m if k != "service"}, None,
                                                         "connection")),
        ("pack: end", _req("pack", m, None, "end")),
        ("pack: error with {message, code}", _req("pack", m, _json({"message": "connect ECONNREFUSED",
                                                                      "code": "E_CONN"}), "error")),
        ("pack: error without body", _req("pack", m, None, "error")),
        ("pack: pause 1024", _req("pack", m, _json(1024), "pause")),
        ("pack: resume with a text count", _req("pack", m, _bin(b"2048"), "resume")),
        ("pack: IPv6 client", _req("pack", v6, _bin(b"GET / HTTP/1.1\r\n\r\n"))),
        ("pack: IPv4-mapped IPv6 client", _req("pack", {**v6, "address": "::ffff:192.0.2.7"}, _bin(b"x"))),
        ("pack: IPv6 connection", _req("pack", v6, None, "connection")),
        ("pack: non-ASCII name", _req("pack", {**m, "name": "bücher.例え.test"}, _bin(b"hi"))),
        ("pack: non-ASCII JSON string body", _req("pack", m, _json("ünïcødé ✓"))),
        ("pack: non-ASCII text as Buffer", _req("pack", m, _bin("日本語のテキスト".encode()))),
        ("pack: header of 255 bytes (no wrap)", _req("pack", {**m, "name": name_for_header(255, m, 1)}, _bin(b"x"))),
        ("pack: name pushing the header to 256 bytes (hdrlen wraps to 0)",
         _req("pack", {**m, "name": name_for_header(256, m, 1)}, _bin(b"x"))),
        ("pack: name pushing the header to 300 bytes", _req("pack", {**m, "name": name_for_header(300, m, 1)},
                                                             _bin(b"x" * 300))),
        ("pack: non-ASCII name pushing the header past 255 bytes",
         _req("pack", {**m, "name": "ü" * 130}, _bin(b"x"))),
        ("pack: control hello", _req("pack", None, _json([1, "hello", 254, ["add_token", "delete_token"]]),
                                     "control")),
        ("pack: control reply [-1, null]", _req("pack", None, _json([-1, None]), "control")),
        ("pack: control error reply", _req("pack", None, _json([-2, {"message": "unknown command 'x'",
                                                                      "code": "E_UNKNOWN_COMMAND"}]), "control")),
        ("pack: control out-of-band [0, text]", _req("pack", None, _json([0, "[Error] out-of-band"]), "control")),
        ("pack: control with meta (ignored)", _req("pack", m, _json([3, "add_token", "eyJ.x.y"]), "control")),
        ("packHeader: control", _req("packHeader", None, _json([4, "auth", {"nested": [1, 2.5, None]}]),
                                     "control")),
        ("pack: JSON object body", _req("pack", m, _json({"a": 1, "b": [True, None, "x"], "c": {"d": -1.5}}))),
        ("pack: JSON array body", _req("pack", m, _json([1, "two", 3.25]))),
        ("pack: JSON string body (quoted)", _req("pack", m, _json("abc"))),
        ("pack: JSON number body", _req("pack", m, _json(12345.678))),
        ("pack: JSON true body", _req("pack", m, _json(True))),
        ("pack: 1-byte body", _req("pack", m, _bin(b"\x00"))),
        ("pack: 64 KiB body", _req("pack", m, _bin(rng.randbytes(64 * 1024)))),
        ("pack: meta {} (every field undefined)", _req("pack", {}, _bin(b"x"))),
        ("pack: port and serviceport as text", _req("pack", {**m, "port": "4321", "serviceport": "443"}, _bin(b"x"))),
        ("pack: serviceport 0 and name null (falsy: empty)", _req("pack", {**m, "serviceport": 0, "name": None},
                                                                   _bin(b"x"))),
        ("pack: null meta for a data frame (the reference throws)", _req("pack", None, _bin(b"x"))),
    ]
    if large:
        cases.append(("pack: 16 MiB body", _req("pack", m, _bin(rng.randbytes(16 * 1024 * 1024)))))
    out = [Case(name, "edge", request) for name, request in cases]
    return out + unpack_cases()


def unpack_cases() -> list[Case]:
    frames = [c.request for c in reference_cases()[:-2]]
    size = len(stream_of(frames))
    rng = random.Random(7)
    header_cuts: list[int] = []
    at = 0
    for frame in frames:
        wire = expected_wire(frame)
        assert isinstance(wire, bytes)
        header_cuts += [at + 2 + wire[1], at + len(wire) + len(body_bytes_sent(frame) if frame["op"] ==
                                                                  "packHeader" else b"")]
        at = header_cuts[-1]
    m = BASE_META
    specs = [
        ("unpack: the vectors one byte at a time", frames, list(range(1, size))),
        ("unpack: the vectors in 7-byte chunks", frames, list(range(7, size, 7))),
        ("unpack: the vectors in 100-byte chunks", frames, list(range(100, size, 100))),
        ("unpack: header and body as separate chunks (the relay's way)", frames, header_cuts),
        ("unpack: random chunkings of the vectors", frames, sorted(rng.sample(range(1, size), 40))),
        ("unpack: packHeader end (datalen 0) closing a chunk",
         [_req("pack", m, _bin(b"hello")), _req("packHeader", m, None, "end"), _req("pack", m, _bin(b"x"))],
         [len(stream_of([_req("pack", m, _bin(b"hello")), _req("packHeader", m, None, "end")]))]),
        ("unpack: error bodies (JSON object, none, not JSON)",
         [_req("pack", m, _json({"message": "m", "code": "E"}), "error"), _req("pack", m, None, "error"),
          _req("packHeader", m, None, "error"), _req("pack", m, _bin(b"\xffnot json"), "error")], [3, 50]),
        ("unpack: connection frames, IPv6 and non-ASCII names",
         [_req("pack", IPV6_META, None, "connection"), _req("pack", {**m, "name": "bücher.test"}, _bin(b"x"))], []),
        ("unpack: a 64 KiB body in 1000-byte chunks", [_req("pack", m, _bin(rng.randbytes(65536)))],
         list(range(1000, 66000, 1000))),
    ]
    return [Case(name, "unpack", {"op": "unpack", "frames": f, "cuts": cuts}) for name, f, cuts in specs]


def named_cases(*, large: bool = True) -> list[Case]:
    return reference_cases() + edge_cases(large=large)
