"""The codec against the reference's own bytes and deliveries (vectors.json, output.bin)."""

from __future__ import annotations

import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mproxy_scapy import codec
from mproxy_scapy.codec import ClientPacker, Unpacker, addr_to_id, pack, pack_header, socket_to_addr, socket_to_id

from support import REFERENCE, delivered_as_reference, recording_handlers

HELLO = (REFERENCE / "sni.hello.bin").read_bytes()
ADDRESS = {
    "family": "IPv4", "address": "127.0.1.1", "port": 4321,
    "service": "https", "serviceport": 443, "name": "pokemap.hellabit.com",
}


def vector_data(vector):
    data = vector["data"]
    if data is None:
        return None
    return bytes.fromhex(data["hex"]) if "hex" in data else data["json"]


def vector_wire(vector) -> bytes:
    return bytes.fromhex(vector["wire_hex"])


def packed(vector) -> bytes:
    """What the vector's call produces, plus the body a relay writes after ``packHeader``."""
    data = vector_data(vector)
    if vector["call"] == "pack":
        return pack(vector["meta"], data, vector["service_arg"])
    header = pack_header(vector["meta"], data, vector["service_arg"])
    return header + data if isinstance(data, bytes) else header


def unpack(chunks) -> list[dict]:
    calls: list = []
    unpacker = Unpacker(recording_handlers(calls))
    for chunk in chunks:
        unpacker.feed(chunk)
    return delivered_as_reference(calls)


def test_every_vector_packs_to_its_wire_bytes(vectors):
    for vector in vectors:
        assert packed(vector).hex() == vector["wire_hex"], vector["name"]


def test_pack_reproduces_reference_output_bin():
    assert pack(ADDRESS, HELLO) == (REFERENCE / "output.bin").read_bytes()


def test_pack_header_without_body_is_header_only():
    header = pack_header(ADDRESS, HELLO)
    assert header == (REFERENCE / "output.bin").read_bytes()[: -len(HELLO)]
    assert pack_header(ADDRESS, HELLO, and_body=True) == header + HELLO


@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_every_vector_unpacks_as_the_reference_delivered(vectors, split):
    for vector in vectors:
        wire = vector_wire(vector)
        chunks = [wire] if split == "whole" else [wire[i : i + 1] for i in range(len(wire))]
        assert unpack(chunks) == vector["delivered"], vector["name"]


def test_every_two_way_split_of_all_vectors_delivers_the_same(vectors):
    stream = b"".join(vector_wire(v) for v in vectors)
    expected = [d for v in vectors for d in v["delivered"]]
    for cut in range(len(stream) + 1):
        assert unpack([stream[:cut], stream[cut:]]) == expected, cut


def test_reference_parse_js_sequence_and_overlapping_splits():
    """test/parse.js: connection, data, end packed by hand; whole, bytewise, and its eight odd slices."""
    addr = {**ADDRESS, "service": "foo-https", "name": "foo-pokemap.hellabit.com"}
    one = b"".join([
        pack_header(addr, None, "connection"), pack_header(addr, HELLO), HELLO, pack_header(addr, None, "end"),
    ])
    hand = (b"IPv4,127.0.1.1,4321,0,connection,443,foo-pokemap.hellabit.com,foo-https")
    assert one.startswith(bytes([254, len(hand)]) + hand)
    both = one + one
    slices = [(0, 7), (7, 14), (14, 21), (21, 28), (28, 217), (217, 224), (224, 238), (238, len(both))]
    for chunks in ([one], [one[i : i + 1] for i in range(len(one))], [both[a:b] for a, b in slices]):
        delivered = unpack(chunks)
        handlers = [d["handler"] for d in delivered]
        assert handlers == ["onconnection", "onmessage", "onend"] * (len(delivered) // 3)
        assert delivered[0]["tun"]["service"] == "foo-https"
        assert all(bytes.fromhex(d["tun"]["data_hex"]) == HELLO for d in delivered if d["handler"] == "onmessage")
    assert len(unpack([both[a:b] for a, b in slices])) == 6


def test_oldways_pack_pads_and_matches_parse_js_rewrite():
    """parse.js turns the old padded packing into the new one by six byte edits; so do we."""
    addr = {**ADDRESS, "service": "foo-https", "name": "foo-pokemap.hellabit.com"}
    old = pack(addr, None, "connection") + pack(addr, HELLO) + pack(addr, None, "end")
    new = pack_header(addr, None, "connection") + pack_header(addr, HELLO) + HELLO + pack_header(addr, None, "end")
    assert old.replace(b"4321,1,co", b"4321,0,co").replace(b"321,1,end", b"321,0,end").replace(
        b"https ", b"https"
    ).removesuffix(b" ") == new


@given(
    st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=6),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
)
def test_any_split_delivers_the_same(bodies, sizes):
    stream = b"".join(pack(ADDRESS, body) for body in bodies)
    chunks, at, i = [], 0, 0
    while at < len(stream):
        chunks.append(stream[at : at + sizes[i % len(sizes)]])
        at += sizes[i % len(sizes)]
        i += 1
    assert unpack(chunks) == unpack([stream])
    assert [bytes.fromhex(d["tun"]["data_hex"]) for d in unpack([stream])] == [b or b" " for b in bodies]


def test_pack_does_not_modify_the_callers_address():
    addr = dict(ADDRESS)
    pack(addr, None, "end")
    assert addr == ADDRESS


def test_non_buffer_data_is_json_stringified_like_javascript():
    assert pack(ADDRESS, "abc").endswith(b'"abc"')
    assert pack(None, [1, 2.0, 0.5, 1e21, None, True], "control").endswith(b"[1,2,0.5,1e+21,null,true]")
    assert pack(None, {"é": "\n"}, "control").endswith('{"é":"\\n"}'.encode())
    assert pack(ADDRESS, 0).endswith(b"pokemap.hellabit.com ")
    assert pack_header(ADDRESS, "").split(b",")[3] == b"0"


def test_header_longer_than_255_bytes_wraps_like_the_reference():
    frame = pack({**ADDRESS, "name": "a" * 300}, b"x")
    header_len = len(frame) - 3
    assert frame[1] == header_len & 0xFF != header_len


def test_unpacker_error_fallbacks_match_reference():
    calls: list = []
    unpacker = Unpacker(recording_handlers(calls))
    unpacker.feed(pack(ADDRESS, b"not json", "error"))
    unpacker.feed(pack_header(ADDRESS, None, "error"))
    messages = [(tun["message"], tun["code"]) for _, tun in calls]
    assert messages == [
        ('e:{"type":"Buffer","data":[110,111,116,32,106,115,111,110]}', "E_UNKNOWN_ERR"),
        ("e:undefined", "E_UNKNOWN_ERR"),
    ]


def test_missing_handlers_fall_back_to_onmessage_and_camel_case_is_accepted():
    seen: list = []

    class Device:
        def onMessage(self, tun):
            seen.append(tun["service"])

    unpacker = Unpacker(Device())
    unpacker.feed(pack(ADDRESS, None, "end") + pack(ADDRESS, b"x") + pack(ADDRESS, None, "connection"))
    assert seen == ["end", "https"]
    with pytest.raises(TypeError, match="onmessage"):
        Unpacker({})


def test_wrong_version_byte_is_counted_and_parsed_as_v1():
    calls: list = []
    unpacker = Unpacker(recording_handlers(calls))
    unpacker.feed(b"\xfd" + pack(ADDRESS, b"hi")[1:])
    assert unpacker.bad_version_bytes == 1
    assert calls[0][1]["data"] == b"hi"


def test_addr_to_id_and_sockets():
    assert addr_to_id(ADDRESS) == "IPv4,127.0.1.1,4321"
    assert addr_to_id({"family": "IPv6", "address": None}) == "IPv6,null,undefined"
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as server:
            server.bind((host, 0))
            server.listen()
            with socket.create_connection((host, server.getsockname()[1])) as client:
                accepted, _ = server.accept()
                with accepted:
                    addr = socket_to_addr(accepted)
                    assert addr == {
                        "family": "IPv4" if family == socket.AF_INET else "IPv6",
                        "address": host, "port": client.getsockname()[1], "serviceport": server.getsockname()[1],
                    }
                    assert socket_to_id(accepted) == f"{addr['family']},{host},{addr['port']}"


def test_client_packer_fills_defaults_like_transform_create():
    client = ClientPacker({"family": "IPv4", "address": "10.0.0.1", "port": 5}, service="http", serviceport=80,
                          name="example.test")
    assert list(client.iter_pack([b"a", b"bc"])) == [
        pack({"family": "IPv4", "address": "10.0.0.1", "port": 5, "service": "http", "serviceport": 80,
              "name": "example.test"}, body) for body in (b"a", b"bc")
    ]


async def _chunks():
    for chunk in (b"one", b"two"):
        yield chunk


def test_client_packer_async():
    import asyncio

    async def collect():
        return [frame async for frame in ClientPacker(ADDRESS).aiter_pack(_chunks())]

    assert asyncio.run(collect()) == [pack(ADDRESS, b"one"), pack(ADDRESS, b"two")]


def test_codec_reexports_the_analyzer_parser():
    assert codec.FrameParser.__module__ == "mproxy_scapy.parser"
