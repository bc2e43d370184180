"""The Scapy MProxy layers: every reference vector both ways, chains, truncation, dispatch, TCPSession."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from scapy.config import conf
from scapy.layers.http import HTTPRequest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.record import TLS
from scapy.packet import Packet, Padding, Raw
from scapy.sendrecv import sniff
from scapy.sessions import TCPSession
from scapy.utils import rdpcap, wrpcap

from mproxy_scapy.codec import pack, pack_header
from mproxy_scapy.layer import MProxy, MProxyControl, MProxyError, bind, unbind
from mproxy_scapy.parser import iter_frames
from mproxy_scapy.spec import REDACTED

from loopback_capture import both_fins_written, loopback_capture
from support import CAPTURES

ADDRESS = {"family": "IPv4", "address": "127.0.1.1", "port": 4321, "service": "https", "serviceport": 443,
           "name": "pokemap.hellabit.com"}


@pytest.fixture(autouse=True)
def debug_dissector() -> Iterator[None]:
    """Dissection errors raise instead of turning into Raw, so a broken layer cannot hide."""
    saved = conf.debug_dissector
    conf.debug_dissector = True
    yield
    conf.debug_dissector = saved


def wire_of(vector: dict) -> bytes:
    return bytes.fromhex(vector["wire_hex"])


def body_of(wire: bytes) -> bytes:
    return wire[2 + wire[1]:]


def fields_from_meta(vector: dict) -> dict:
    """The layer's keyword arguments for what the vector asked the reference packer to write."""
    kind = vector["service_arg"]
    if kind == "control":
        return {"service": "control"}
    meta = vector["meta"]
    kwargs = {"family": meta["family"], "address": meta["address"], "port": meta["port"],
              "serviceport": meta.get("serviceport"), "hostname": meta.get("name")}
    if kind == "connection":
        kwargs.update(service="connection", servicename=meta["service"])
    else:
        kwargs["service"] = kind or meta["service"]
    return kwargs


def alone(layer: MProxy) -> bytes:
    """One frame's bytes, without the frames chained after it."""
    whole = bytes(layer)
    following = layer.payload.getlayer(MProxy)
    return whole[: len(whole) - len(bytes(following))] if following is not None else whole


# -- every vector, both ways --------------------------------------------------------------------


def test_dissecting_each_vector_gives_the_fields_the_reference_delivered(vectors):
    for vector in vectors:
        pkt = MProxy(wire_of(vector))
        tun = vector["delivered"][0]["tun"]
        assert pkt.version == 0xFE
        assert pkt.hdrlen == wire_of(vector)[1]
        assert pkt.getfieldval("problems") == [], vector["name"]
        assert pkt.family == tun["family"], vector["name"]
        assert pkt.address == tun["address"]
        assert str(pkt.port) == tun["port"]
        if vector["delivered"][0]["handler"] == "onconnection":
            assert (pkt.service, pkt.servicename) == ("connection", tun["service"])
        else:
            assert pkt.service == tun["service"]
        if "serviceport" in tun:
            assert str(pkt.serviceport) == tun["serviceport"]
        if "name" in tun:
            assert pkt.hostname == tun["name"]
        body = bytes(pkt.payload)
        assert pkt.datalen == len(body)
        assert body.hex() == (tun["data_hex"] or ""), vector["name"]
        assert pkt.dialect == "js"
        assert bytes(pkt) == wire_of(vector)


def test_building_each_vector_from_its_fields_gives_the_reference_bytes(vectors):
    for vector in vectors:
        wire = wire_of(vector)
        pkt = MProxy(**fields_from_meta(vector))
        if body_of(wire):
            pkt = pkt / Raw(body_of(wire))
        assert bytes(pkt) == wire, vector["name"]


def test_numbers_display_as_numbers_although_they_travel_as_text(vectors):
    pkt = MProxy(wire_of(vectors[0]))
    assert (pkt.port, pkt.datalen, pkt.serviceport) == (4321, 199, 443)
    shown = pkt.show(dump=True)
    for line in ("version   = 0xfe", "hdrlen    = 54", "port      = 4321", "datalen   = 199", "serviceport= 443",
                 "hostname  = 'pokemap.hellabit.com'"):
        assert line in shown


def test_build_reproduces_the_reference_test_output(reference_dir):
    hello = (reference_dir / "sni.hello.bin").read_bytes()
    pkt = MProxy(family="IPv4", address="127.0.1.1", port=4321, service="https", serviceport=443,
                 hostname="pokemap.hellabit.com") / Raw(hello)
    assert bytes(pkt) == (reference_dir / "output.bin").read_bytes()
    assert bytes(pkt) == pack_header(ADDRESS, hello) + hello


def test_readme_example_has_the_older_five_field_header(reference_dir):
    wire = (reference_dir / "readme-example.bin").read_bytes()
    pkt = MProxy(wire)
    assert (pkt.family, pkt.address, pkt.port, pkt.datalen, pkt.service) == ("IPv4", "127.0.1.1", 443, 199, "foo")
    assert pkt.serviceport is None and pkt.hostname is None
    assert bytes(pkt) == wire


def test_set_lengths_are_kept_so_a_wrong_frame_can_be_built():
    pkt = MProxy(family="IPv4", address="10.0.0.1", port=1, service="tcp", hdrlen=3, datalen=99) / Raw(b"abc")
    wire = bytes(pkt)
    assert wire[1] == 3
    assert b",99,tcp" in wire


# -- payload dispatch ----------------------------------------------------------------------------


def test_https_body_that_is_tls_dissects_as_scapy_tls(vectors):
    pkt = MProxy(wire_of(vectors[0]))
    assert isinstance(pkt.payload, TLS)
    assert pkt[TLSClientHello].ext[0].servernames[0].servername == b"pokemap.hellabit.com"


def test_https_body_that_is_not_tls_stays_raw():
    pkt = MProxy(bytes(MProxy(family="IPv4", address="a", port=1, service="https") / Raw(b"not tls")))
    assert type(pkt.payload) is Raw


def test_http_body_dissects_as_scapy_http(vectors):
    pkt = MProxy(wire_of(vectors[1]))
    assert pkt[HTTPRequest].Host == b"ex1.telebit.io"


def test_building_over_scapy_http_fills_datalen():
    request = HTTPRequest(Host="example.com", Path="/x")
    pkt = MProxy(family="IPv4", address="10.0.0.2", port=5, service="http", serviceport=80) / request
    wire = bytes(pkt)
    assert wire == pack_header({"family": "IPv4", "address": "10.0.0.2", "port": 5, "service": "http",
                                "serviceport": 80}, bytes(request)) + bytes(request)
    assert MProxy(wire)[HTTPRequest].Path == b"/x"


@pytest.mark.parametrize("name", ["pack control hello", "pack control ack", "pack control error",
                                  "pack control add_token"])
def test_control_vectors_dissect_and_build(vectors, name):
    vector = next(v for v in vectors if v["name"] == name)
    message = vector["data"]["json"]
    pkt = MProxy(wire_of(vector))
    control = pkt[MProxyControl]
    assert control.control_id == message[0]
    if message[0] > 0:
        assert control.control_command == message[1]
        assert control.args == message[2:]
    else:
        assert control.control_command is None
        assert control.args == message[1:]
    built = MProxy() / MProxyControl(control_id=control.control_id, control_command=control.control_command,
                                      args=control.args)
    assert bytes(built) == wire_of(vector)
    assert bytes(built) == pack(None, message, "control")


def test_control_tokens_are_redacted_in_show_unless_asked(vectors):
    vector = next(v for v in vectors if v["name"] == "pack control add_token")
    token = vector["data"]["json"][2]
    pkt = MProxy(wire_of(vector))
    shown = pkt.show(dump=True)
    assert REDACTED in shown and token not in shown
    pkt[MProxyControl].reveal_secrets = True
    assert token in pkt.show(dump=True)


def test_error_vector_dissects_and_builds(vectors):
    vector = next(v for v in vectors if v["name"] == "pack error JSON")
    pkt = MProxy(wire_of(vector))
    assert (pkt[MProxyError].message, pkt[MProxyError].code) == ("ECONNREFUSED", "E_CONN")
    built = MProxy(**fields_from_meta(vector)) / MProxyError(message="ECONNREFUSED", code="E_CONN")
    assert bytes(built) == wire_of(vector)


@pytest.mark.parametrize("service, body, layer", [("control", b"{not json", MProxyControl),
                                                  ("control", b'{"a":1}', MProxyControl),
                                                  ("error", b" ", MProxyError)])
def test_bad_json_bodies_are_named_not_raised(service, body, layer):
    wire = pack(ADDRESS if service == "error" else None, body, service)
    pkt = MProxy(wire)
    assert pkt[layer].getfieldval("problems")[0].startswith("bad_body:")
    assert bytes(pkt) == wire


def test_other_services_and_message_kinds_stay_raw(vectors):
    for vector in vectors:
        if vector["delivered"][0]["handler"] in ("onpause", "onresume", "onend", "onconnection") or \
                vector["name"] == "pack data ssh no name":
            pkt = MProxy(wire_of(vector))
            assert not pkt.payload or type(pkt.payload) is Raw, vector["name"]


# -- several frames, truncation, dialects, records ---------------------------------------------------


def test_a_buffer_of_frames_dissects_as_a_chain(vectors):
    wires = [wire_of(v) for v in vectors]
    pkt = MProxy(b"".join(wires))
    layers = MProxy.frames_in(pkt)
    assert [alone(layer) for layer in layers] == wires
    assert bytes(pkt) == b"".join(wires)


def test_dissect_all_returns_one_packet_per_record_and_resynchronises(vectors):
    wires = [wire_of(v) for v in vectors[:3]]
    garbage = b"\x00\x00 not a frame"
    packets = MProxy.dissect_all(wires[0] + garbage + wires[1] + wires[2])
    assert [type(p) for p in packets] == [MProxy, Raw, MProxy, MProxy]
    assert [bytes(p) for p in packets] == [wires[0], garbage, wires[1], wires[2]]
    assert all(MProxy.frames_in(p) == [p] for p in packets if isinstance(p, MProxy))


def test_every_prefix_dissects_what_it_has_and_says_truncated(vectors):
    for vector in (vectors[0], vectors[10]):
        wire = wire_of(vector)
        for end in range(1, len(wire)):
            pkt = MProxy(wire[:end])
            assert pkt.truncated, end
            assert any(p.startswith("truncated:") for p in pkt.getfieldval("problems"))
            assert bytes(pkt) == wire[:end]
            assert not pkt.payload or type(pkt.payload) is Raw
        assert not MProxy(wire).truncated


def test_a_truncated_header_shows_only_complete_fields(vectors):
    wire = wire_of(vectors[0])
    pkt = MProxy(wire[:30])  # ... "IPv4,127.0.1.1,4321,199,ht"
    assert (pkt.family, pkt.port, pkt.datalen, pkt.service) == ("IPv4", 4321, 199, None)


def test_go_dialect_round_trips():
    header = b"IPv4,10.0.0.1,5555,5,https,443,ex.com,\n"
    wire = bytes((0xFE, len(header))) + header + b"hello"
    pkt = MProxy(wire)
    assert (pkt.dialect, pkt.hostname, pkt.datalen, pkt.getfieldval("problems")) == ("go", "ex.com", 5, [])
    built = MProxy(family="IPv4", address="10.0.0.1", port=5555, service="https", serviceport=443,
                   hostname="ex.com", dialect="go") / Raw(b"hello")
    assert bytes(built) == wire


def test_bad_version_and_bad_datalen_are_named():
    pkt = MProxy(b"\xfd\x11IPv4,a,1,xx,https")
    problems = pkt.getfieldval("problems")
    assert [p.split(":")[0] for p in problems] == ["bad_version", "datalen_not_numeric"]
    assert pkt.datalen == "xx"


def test_from_frame_rebuilds_each_vector(vectors):
    wires = [wire_of(v) for v in vectors]
    for frame, wire in zip(iter_frames(b"".join(wires)), wires, strict=True):
        pkt = frame.to_scapy()
        assert isinstance(pkt, MProxy)
        assert bytes(pkt) == wire


def test_from_frame_keeps_a_wrapped_hdrlen():
    meta = dict(ADDRESS, name=".".join(["n" * 50] * 5) + ".example.com")
    body = b"\x16\x03\x01 body" * 40
    wire = pack(meta, body)
    assert len(wire) - 2 - len(body) > 255
    (frame,) = iter_frames(wire)
    pkt = MProxy.from_frame(frame)
    assert pkt.hostname == meta["name"]
    assert any(p.startswith("hdrlen_wrapped") for p in pkt.getfieldval("problems"))
    assert bytes(pkt) == wire
    (again,) = MProxy.dissect_all(wire)
    assert again.hostname == meta["name"]


def test_from_frame_refuses_records_that_are_not_frames():
    (garbage,) = iter_frames(b"no frame here")
    with pytest.raises(ValueError, match="garbage"):
        MProxy.from_frame(garbage)


# -- hypothesis: build == pack_header, dissect round-trips -------------------------------------------

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=",\n"), max_size=24)
_SERVICE = st.one_of(st.sampled_from(["https", "http", "ssh", "tls", "tcp", "end", "error", "pause", "resume"]),
                     _TEXT.filter(lambda s: s not in ("control", "connection")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(family=st.one_of(st.sampled_from(["IPv4", "IPv6"]), _TEXT), address=_TEXT,
       port=st.integers(0, 65535), service=_SERVICE, serviceport=st.one_of(st.none(), st.integers(1, 65535)),
       name=_TEXT, body=st.binary(max_size=64))
def test_random_fields_build_like_pack_header_and_dissect_back(family, address, port, service, serviceport,
                                                               name, body):
    tun = {"family": family, "address": address, "port": port, "service": service, "serviceport": serviceport,
           "name": name}
    expected = pack_header(tun, body, None, True)
    assume(expected[1] == len(expected) - 2 - len(body))  # a header over 255 bytes wraps: not this test
    pkt = MProxy(family=family, address=address, port=port, service=service, serviceport=serviceport,
                 hostname=name)
    if body:
        pkt = pkt / Raw(body)
    assert bytes(pkt) == expected
    back = MProxy(expected)
    assert (back.family, back.address, back.port, back.datalen, back.service) == \
        (family, address, port, len(body), service)
    assert back.serviceport == (serviceport if serviceport is not None else "")
    assert back.hostname == name
    assert bytes(back.payload) == body
    assert bytes(back) == expected


# -- TCP binding and TCPSession --------------------------------------------------------------------


def test_bind_makes_tcp_payload_dissect_as_mproxy_and_unbind_undoes_it(vectors):
    wire = wire_of(vectors[10])
    raw = bytes(IP() / TCP(sport=40000, dport=7443) / Raw(wire))
    bind(7443)
    try:
        assert IP(raw)[MProxyControl].control_command == "hello"
        assert bytes(IP() / TCP(sport=40000) / MProxy() / MProxyControl(control_command="hello", args=[]))
    finally:
        unbind(7443)
    assert MProxy not in IP(raw)


def test_tcp_reassemble_returns_every_whole_frame_and_passes_the_rest_back(vectors):
    first, second = wire_of(vectors[0]), wire_of(vectors[10])
    stream = first + second
    for end in range(len(first)):
        assert MProxy.tcp_reassemble(stream[:end], {}, {}) is None
    pkt = MProxy.tcp_reassemble(stream[: len(first) + 5], {}, {})
    assert isinstance(pkt, MProxy) and bytes(pkt[Padding]) == second[:5]
    pkt = MProxy.tcp_reassemble(stream + second[:5], {}, {})
    assert bytes(pkt[Padding]) == second[:5]
    del pkt[Padding].underlayer.payload  # as TCPSession does before it feeds the rest back
    assert [alone(layer) for layer in MProxy.frames_in(pkt)] == [first, second]
    assert MProxy.tcp_reassemble(first[:100], {"tcp_end": True}, {}).truncated


def test_tcp_reassemble_returns_garbage_as_raw_up_to_the_next_frame(vectors):
    wire = wire_of(vectors[10])
    pkt = MProxy.tcp_reassemble(b"junk junk" + wire, {}, {})
    assert type(pkt) is Raw and pkt.load == b"junk junk"
    assert alone(pkt[MProxy]) == wire and Padding not in pkt
    pkt = MProxy.tcp_reassemble(b"junk junk" + wire[:-1], {}, {})
    assert type(pkt) is Raw and MProxy not in pkt and bytes(pkt[Padding]) == wire[:-1]
    assert type(MProxy.tcp_reassemble(b"junk", {}, {})) is Raw


def _segmented_capture(path, stream: bytes, segment_size: int, port: int) -> None:
    """One client->server stream cut into ``segment_size`` segments (correct seq numbers, a FIN at the end)."""
    client, server, isn = ("10.1.0.2", 40000), ("10.1.0.1", port), 1000

    def segment(seq: int, flags: str, payload: bytes = b"") -> Packet:
        return Ether() / IP(src=client[0], dst=server[0]) / TCP(sport=client[1], dport=server[1], seq=seq,
                                                                flags=flags) / payload

    packets = [segment(isn, "S")]
    packets += [segment(isn + 1 + start, "PA", stream[start:start + segment_size])
                for start in range(0, len(stream), segment_size)]
    packets.append(segment(isn + 1 + len(stream), "FA"))
    wrpcap(str(path), packets)


@pytest.mark.parametrize("segment_size", [97, 200, 331])
def test_tcpsession_counts_each_frame_once_when_segments_carry_several(tmp_path, segment_size):
    """Segments that finish one frame, carry whole ones and start another: Scapy sees exactly the parser's frames.

    This is the shape that made ``scapy_path.py`` count 5018 frames on a
    capture of 4960: when one segment held several frames, Scapy's TCPSession
    (2.8) fed the rest back to ``tcp_reassemble`` more than once and then
    placed the next segment too far on, after zero bytes that dissected as
    bogus frames (and hid real ones).
    """
    frames = [pack(dict(ADDRESS, port=4000 + i), bytes([i]) * size)
              for i, size in enumerate([0, 3, 17, 120, 1, 64, 9, 2] * 4)]
    stream = b"".join(frames)
    want = [stream[r.offset:r.offset + r.length] for r in iter_frames(stream) if r.is_frame]
    assert want == frames
    pcap = tmp_path / "shared.pcap"
    _segmented_capture(pcap, stream, segment_size, 7443)
    bind(7443)
    try:
        packets = sniff(offline=str(pcap), session=TCPSession)
    finally:
        unbind(7443)
    got = [alone(layer) for p in packets if MProxy in p for layer in MProxy.frames_in(p)]
    assert got == want
    assert any(len(MProxy.frames_in(p)) > 1 for p in packets), "some segment should have carried two frames"


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "peer closed early"
        data += chunk
    return data


@pytest.mark.live
def test_tcpsession_reassembles_frames_split_across_real_segments(tmp_path, reference_dir):
    """A real loopback connection captured by tcpdump: frames cut mid-header and mid-body, two in one segment."""
    hello = (reference_dir / "sni.hello.bin").read_bytes()
    request = b"GET / HTTP/1.1\r\nHost: ex1.telebit.io\r\n\r\n"
    frames = [
        pack(None, [1, "hello", 254, ["add_token", "delete_token"]], "control"),
        pack(ADDRESS, None, "connection"),
        pack(ADDRESS, hello),
        pack(dict(ADDRESS, service="http", name="ex1.telebit.io"), request),
        pack(ADDRESS, None, "end"),
    ]
    stream = b"".join(frames)
    cuts = [1, 9, len(frames[0]) + 20, len(frames[0]) + len(frames[1]) + 100,
            sum(map(len, frames[:4])) - 3, len(stream)]
    pieces = [stream[a:b] for a, b in zip([0, *cuts[:-1]], cuts, strict=True)]
    acks = [pack(None, [-(i + 1), None], "control") for i in range(len(pieces))]

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    pcap = tmp_path / "split.pcap"
    try:
        with loopback_capture(pcap, f"tcp port {port}", written=both_fins_written), \
                socket.create_connection(("127.0.0.1", port)) as client:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn, _ = server.accept()
            with conn:
                for piece, ack in zip(pieces, acks, strict=True):
                    client.sendall(piece)
                    assert _recv_exactly(conn, len(piece)) == piece
                    conn.sendall(ack)
                    assert _recv_exactly(client, len(ack)) == ack
    finally:
        server.close()

    bind(port)
    try:
        packets = sniff(offline=str(pcap), session=TCPSession)
    finally:
        unbind(port)
    to_server = [layer for p in packets if MProxy in p and p[TCP].dport == port for layer in MProxy.frames_in(p)]
    to_client = [layer for p in packets if MProxy in p and p[TCP].sport == port for layer in MProxy.frames_in(p)]
    assert [alone(layer) for layer in to_server] == frames
    assert [alone(layer) for layer in to_client] == acks
    assert [layer.service for layer in to_server] == ["control", "connection", "https", "http", "end"]
    assert to_server[2][TLSClientHello].ext[0].servernames[0].servername == b"pokemap.hellabit.com"
    assert to_server[3][HTTPRequest].Host == b"ex1.telebit.io"
    assert any(len(MProxy.frames_in(p)) > 1 for p in packets), "some segment should have carried two frames"
    assert not any(layer.truncated for layer in to_server + to_client)
    assert json.loads(bytes(to_client[0].payload)) == [-1, None]


def test_tcpsession_over_the_recorded_raw_tcp_captures_matches_their_truth():
    """The recorded captures (real relay and device) on raw TCP: every frame, in order, per direction.

    ``impaired.pcap`` is left to our own reassembler: Scapy's TCPSession does
    not notice a lost segment, so it cannot match that capture's truth.
    ``junk.pcap`` and ``false-sync.pcap`` (junk written on purpose) are left
    to the decoder too: the layer's ``tcp_reassemble`` hands junk back as
    ``Raw`` and resynchronises by its own simpler rule, so its packets do not
    line up one to one with the sender's frames there.
    """
    manifest = json.loads((CAPTURES / "manifest.json").read_text())
    tcp_captures = [entry for entry in manifest.values() if entry["carrier"] == "tcp" and not entry.get("impairments")
                    and not entry.get("junk")]
    assert tcp_captures, "captures/manifest.json lists no raw TCP capture"
    for entry in tcp_captures:
        pcap = CAPTURES / entry["file"]
        syn = next(p for p in rdpcap(str(pcap)) if TCP in p and p[TCP].flags.S and not p[TCP].flags.A)
        server = (syn[TCP].underlayer.dst, syn[TCP].dport)
        bind(server[1])
        try:
            packets = sniff(offline=str(pcap), session=TCPSession)
        finally:
            unbind(server[1])
        truth = [json.loads(line) for line in (CAPTURES / entry["truth"]).read_text().splitlines() if line]
        for to_server in (True, False):
            got = [layer for p in packets if MProxy in p and (p[TCP].dport == server[1]) == to_server
                   for layer in MProxy.frames_in(p)]
            want = [r for r in truth if r["dst"].endswith(f":{server[1]}") == to_server]
            assert [(m.service, m.datalen, m.hostname) for m in got] == \
                [(r["service"], r["datalen"], r["name"]) for r in want], entry["file"]
            assert not any(m.getfieldval("problems") for m in got)


@settings(max_examples=150, deadline=None)
@given(family=_TEXT, address=_TEXT, port=st.integers(0, 65535), service=_SERVICE,
       serviceport=st.integers(0, 65535), name=_TEXT, body=st.binary(max_size=32))
def test_random_go_dialect_frames_round_trip(family, address, port, service, serviceport, name, body):
    assume(family.strip() == family and name.strip() == name)  # the Go parser trims the header's ends
    pkt = MProxy(family=family, address=address, port=port, service=service, serviceport=serviceport,
                 hostname=name, dialect="go") / Raw(body)
    wire = bytes(pkt)
    assume(wire[1] == len(wire) - 2 - len(body))
    assert wire[2 + wire[1] - 2: 2 + wire[1]] == b",\n"
    back = MProxy(wire)
    assert (back.dialect, back.family, back.port, back.service, back.serviceport, back.hostname) == \
        ("go", family, port, service, serviceport, name)
    assert bytes(back.payload) == body
    fresh = MProxy(family=back.family, address=back.address, port=back.port, service=back.service,
                   serviceport=back.serviceport, hostname=back.hostname, dialect=back.dialect) / Raw(body)
    assert bytes(fresh) == wire
