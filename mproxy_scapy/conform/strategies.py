"""Hypothesis strategies for ``mproxy conform``'s random cases: line-protocol requests (docs/CONFORMANCE.md).

Drawn to reach what packers get wrong: falsy and missing values, every
message kind, IPv4/IPv6 addresses, non-ASCII and long names (headers past 255
bytes), JSON and binary bodies, and for ``unpack`` short streams of frames cut
anywhere. Unpack streams avoid the inputs on which the reference's unpacker
throws (an error body that JSON-parses to a non-object).
"""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st

KINDS = ["connection", "control", "end", "error", "pause", "resume"]
SERVICES = ["https", "http", "ssh", "tls", "tcp", "udp", "xmpp-client", ""]
_NAME_TEXT = st.text(alphabet=st.sampled_from("abcz09.-éü日"), max_size=40)
_LONG_NAME = st.integers(200, 300).map(lambda n: ("a" * 62 + ".") * (n // 63) + "b" * (n % 63))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False, width=64) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def _meta(safe: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Meta objects; ``safe`` ones have no comma in a field (for unpack streams that must stay in step)."""
    text = st.text(alphabet=st.characters(blacklist_characters=",", blacklist_categories=("Cs",)), max_size=12) \
        if safe else st.text(max_size=12)
    return st.fixed_dictionaries({}, optional={
        "family": st.sampled_from(["IPv4", "IPv6", "", "tun"]) | text,
        "address": st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(str) | text,
        "port": st.integers(0, 65535) | st.integers(0, 65535).map(str),
        "service": st.sampled_from(SERVICES) | text,
        "serviceport": st.none() | st.integers(0, 65535),
        "name": st.none() | _NAME_TEXT | _LONG_NAME,
    })


def _body() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(...),
        st.none(),
        st.binary(max_size=300).map(lambda b: {"base64": base64.b64encode(b).decode()}),
        json_values.map(lambda v: {"json": v}),
    )


def _request(op: st.SearchStrategy[str], meta: st.SearchStrategy[Any], body: st.SearchStrategy[Any],
             service: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def build(parts: tuple[str, Any, Any, Any]) -> dict[str, Any]:
        op_name, meta_value, body_value, service_value = parts
        out: dict[str, Any] = {"op": op_name, "meta": meta_value}
        if body_value is not ...:
            out["body"] = body_value
        if service_value is not ...:
            out["service"] = service_value
        return out

    return st.tuples(op, meta, body, service).map(build)


def pack_requests() -> st.SearchStrategy[dict[str, Any]]:
    service = st.just(...) | st.none() | st.sampled_from(KINDS + SERVICES)
    meta = _meta(safe=False) | st.none()
    return _request(st.sampled_from(["pack", "packHeader"]), meta, _body(), service)


def _stream_frame() -> st.SearchStrategy[dict[str, Any]]:
    """A frame for an unpack stream: error bodies are JSON objects, none, or not JSON (0xFF first)."""
    plain = _request(st.sampled_from(["pack", "packHeader"]), _meta(safe=True), _body(),
                     st.just(...) | st.sampled_from(["connection", "end", "pause", "resume", "https"]))
    error_body = st.just(...) | st.fixed_dictionaries({"message": st.text(max_size=10), "code": st.text(max_size=6)}
                                                      ).map(lambda v: {"json": v}) \
        | st.binary(max_size=20).map(lambda b: {"base64": base64.b64encode(b"\xff" + b).decode()})
    error = _request(st.sampled_from(["pack", "packHeader"]), _meta(safe=True), error_body, st.just("error"))
    control = _request(st.sampled_from(["pack", "packHeader"]), st.none(),
                       st.lists(json_values, min_size=1, max_size=4).map(lambda v: {"json": v}), st.just("control"))
    return plain | error | control


def unpack_requests() -> st.SearchStrategy[dict[str, Any]]:
    return st.tuples(st.lists(_stream_frame(), min_size=1, max_size=4),
                     st.lists(st.integers(1, 400), max_size=8)).map(
        lambda parts: {"op": "unpack", "frames": parts[0], "cuts": sorted(set(parts[1]))})


def requests(*, unpack: bool) -> st.SearchStrategy[dict[str, Any]]:
    return pack_requests() | unpack_requests() if unpack else pack_requests()
