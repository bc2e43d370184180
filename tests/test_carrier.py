"""Carrier detection by content, the events it emits, secrets, gaps, and a real websockets exchange."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

from mproxy_scapy.carrier import (
    CARRIER_PROBLEMS,
    Carrier,
    CarrierDetected,
    CarrierProblem,
    MproxyBytes,
    MproxyGap,
    Skipped,
)
from mproxy_scapy.parser import FrameParser
from mproxy_scapy.spec import REDACTED

from support import REFERENCE
from wsstreams import WsPair, chunks, mproxy_stream, raw_frame


def feed_all(carrier: Carrier, items) -> list:
    """``items``: (direction, bytes) to feed, or (direction, int) for a capture gap."""
    events = []
    for frame_no, (direction, item) in enumerate(items, start=1):
        if isinstance(item, int):
            events += carrier.gap(direction, item)
        else:
            events += carrier.feed(direction, item, frame_no, float(frame_no))
    return events + carrier.close()


def stream_of(events, direction: int) -> bytes:
    return b"".join(bytes(e.data) for e in events if isinstance(e, MproxyBytes) and e.direction == direction)


def detected(events) -> list[CarrierDetected]:
    return [e for e in events if isinstance(e, CarrierDetected)]


def problem_kinds(events) -> list[str]:
    return [e.kind for e in events if isinstance(e, CarrierProblem)]


def interleave(c2s: bytes, s2c: bytes, size: int) -> list[tuple[int, bytes]]:
    """Client bytes first (the request), then both directions alternating in ``size`` pieces."""
    items = []
    for i in range(0, max(len(c2s), len(s2c)), size):
        if c2s[i : i + size]:
            items.append((0, c2s[i : i + size]))
        if s2c[i : i + size]:
            items.append((1, s2c[i : i + size]))
    return items


# -- raw M-PROXY ----------------------------------------------------------------------


def test_raw_stream_starting_with_0xfe_passes_through():
    up, down = mproxy_stream(1), mproxy_stream(2)
    events = feed_all(Carrier(), [(1, down[:5]), (0, up[:3000]), (0, up[3000:]), (1, down[5:])])
    [found] = detected(events)
    assert found.kind == "tcp"
    assert found.info["midstream"] is False
    assert stream_of(events, 0) == up and stream_of(events, 1) == down
    assert problem_kinds(events) == []
    frame_nos = [e.frame_no for e in events if isinstance(e, MproxyBytes)]
    assert frame_nos == [1, 2, 3, 4]


def test_raw_gap_is_passed_on():
    carrier = Carrier()
    events = carrier.feed(0, b"\xfe\x05a,b,c", 1, 0.0) + carrier.gap(0, 1000) + carrier.feed(0, b"xyz", 2, 0.0)
    assert [type(e).__name__ for e in events] == ["CarrierDetected", "MproxyBytes", "MproxyGap", "MproxyBytes"]
    assert events[2].length == 1000


def test_raw_picked_up_mid_stream():
    stream = mproxy_stream(3)
    events = feed_all(Carrier(), [(0, stream[30 + i : 30 + i + 1000]) for i in range(0, len(stream), 1000)])
    [found] = detected(events)
    assert found.kind == "tcp" and found.info["midstream"] is True
    assert "mid-stream" in found.info["assumed"]
    parsed = FrameParser(synced=False).feed(stream_of(events, 0))
    assert [f.port for f in parsed if f.is_frame][-3:] == [50002, 50003, 50004][-3:]


# -- not M-PROXY ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("items", "other"),
    [
        ([(0, (REFERENCE / "sni.hello.bin").read_bytes())], "tls"),
        ([(1, b"SSH-2.0-OpenSSH_9.2\r\n"), (0, b"SSH-2.0-client\r\n")], "ssh"),
        ([(0, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"), (1, b"HTTP/1.1 200 OK\r\n\r\nhi")], "http"),
        ([(0, os.urandom(200_000))], "unknown"),
        ([(0, b"hello"), (1, b"world")], "unknown"),
    ],
    ids=["tls", "ssh", "http", "random-big", "tiny"],
)
def test_other_protocols_are_skipped_never_errors(items, other):
    carrier = Carrier()
    events = feed_all(carrier, items)
    assert carrier.kind == "none" and carrier.other_protocol == other
    assert all(isinstance(e, Skipped) and e.kind == "not_mproxy" for e in events)
    assert sum(e.nbytes for e in events) == sum(len(data) for _, data in items)


def test_not_mproxy_is_decided_without_holding_everything():
    carrier = Carrier()
    assert carrier.feed(0, b"\x16\x03\x01\x00\x05hello", 1, 0.0)[0].kind == "not_mproxy"
    assert carrier.feed(1, b"more", 2, 0.0)[0].nbytes == 4


def test_refused_upgrade_is_reported_and_skipped():
    pair = WsPair()
    refusal = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"
    carrier = Carrier()
    events = feed_all(carrier, [(0, bytes(pair.c2s)), (1, refusal)])
    assert problem_kinds(events) == ["upgrade_refused"]
    assert carrier.kind == "none" and detected(events) == []


# -- WebSocket with a handshake ------------------------------------------------------------


def test_websocket_upgrade_info_and_both_streams():
    pair = WsPair(
        deflate={"server_no_context_takeover": True, "client_max_window_bits": 12},
        extra_headers=[(b"Authorization", b"Bearer SECRET.JWT.y")],
    )
    up, down = mproxy_stream(4), mproxy_stream(5)
    pair.client_sends(BytesMessage(data=up[:2]), BytesMessage(data=up[2:]), TextMessage(data="hi"))
    pair.server_sends(BytesMessage(data=down), Ping(b"x"), CloseConnection(code=1000))
    events = feed_all(Carrier(), interleave(bytes(pair.c2s), bytes(pair.s2c), 1000))
    [found] = detected(events)
    info = found.info
    assert found.kind == "websocket"
    assert (info["method"], info["status"], info["midstream"], info["assumed"]) == ("GET", 101, False, None)
    assert info["path"] == f"/?access_token={REDACTED}&versions=v1"
    assert info["access_token"] == REDACTED
    assert info["request_headers"]["Authorization"] == REDACTED
    assert "SECRET" not in repr(info)
    assert info["permessage_deflate"] == {
        "client_max_window_bits": 12,
        "client_no_context_takeover": False,
        "server_max_window_bits": 15,  # wsproto states its default
        "server_no_context_takeover": True,
    }
    assert stream_of(events, 0) == up and stream_of(events, 1) == down
    assert problem_kinds(events) == []
    kinds = {(e.direction, e.kind) for e in events if isinstance(e, Skipped)}
    assert {(0, "http_upgrade"), (1, "http_upgrade"), (0, "text"), (1, "ping"), (1, "close")} <= kinds


def test_show_secrets_gives_the_real_values():
    pair = WsPair(extra_headers=[(b"Authorization", b"Bearer SECRET.JWT.y")])
    events = feed_all(Carrier(show_secrets=True), [(0, bytes(pair.c2s)), (1, bytes(pair.s2c))])
    info = detected(events)[0].info
    assert info["path"] == "/?access_token=SECRET.JWT.x&versions=v1"
    assert info["access_token"] == "SECRET.JWT.x"
    assert info["request_headers"]["Authorization"] == "Bearer SECRET.JWT.y"


def test_handshake_fed_one_byte_at_a_time_with_frames_in_the_same_segments():
    pair = WsPair(deflate={})
    up = mproxy_stream(6, sizes=(10, 20))
    pair.client_sends(BytesMessage(data=up))
    pair.server_sends(BytesMessage(data=up))
    c2s, s2c = bytes(pair.c2s), bytes(pair.s2c)
    items = [(0, c2s[i : i + 1]) for i in range(len(c2s))] + [(1, s2c[i : i + 1]) for i in range(len(s2c))]
    events = feed_all(Carrier(), items)
    assert len(detected(events)) == 1
    assert stream_of(events, 0) == up and stream_of(events, 1) == up


def test_frames_spanning_messages_decode_through_the_frame_parser():
    stream = mproxy_stream(7, sizes=(0, 1, 500, 20_000))
    pair = WsPair()
    for i in range(0, len(stream), 37):
        pair.server_sends(BytesMessage(data=stream[i : i + 37]))
    events = feed_all(Carrier(), interleave(bytes(pair.c2s), bytes(pair.s2c), 1460))
    parser = FrameParser()
    frames = []
    for event in events:
        if isinstance(event, MproxyBytes) and event.direction == 1:
            frames += parser.feed(event.data)
    frames += parser.close()
    assert [f.body_len for f in frames] == [1, 1, 500, 20_000]
    assert all(not f.problems for f in frames)


def test_gaps_on_websocket_inside_payload_and_in_a_header():
    pair = WsPair()
    frames = [mproxy_stream(seed, sizes=(3000,)) for seed in range(4)]
    for frame in frames:
        pair.server_sends(BytesMessage(data=frame))
    s2c = bytes(pair.s2c)
    head = pair.response_len
    message = 4 + len(frames[0])
    items = [
        (0, bytes(pair.c2s)),
        (1, s2c[: head + 100]),
        (1, 500),  # inside the first payload
        (1, s2c[head + 600 : head + message + 1]),
        (1, 10),  # in the second message's header and payload
        (1, s2c[head + message + 11 :]),
    ]
    events = feed_all(Carrier(), items)
    gaps = [e.length for e in events if isinstance(e, MproxyGap)]
    assert gaps == [500, 10]
    assert problem_kinds(events) == ["ws_sync_lost", "ws_resynced"]
    assert stream_of(events, 1) == frames[0][:96] + frames[0][596:] + b"".join(frames[2:])


def test_gap_in_the_request_headers_falls_back_to_pickup():
    pair = WsPair()
    stream = mproxy_stream(8, sizes=(50, 60))
    pair.client_sends(BytesMessage(data=stream))
    c2s = bytes(pair.c2s)
    events = feed_all(Carrier(), [(0, c2s[:20]), (0, 30), (0, c2s[50:])])
    assert problem_kinds(events)[0] == "gap_in_http_header"
    [found] = detected(events)
    assert found.kind == "websocket" and found.info["midstream"] is True
    assert stream_of(events, 0) == stream


# -- mid-stream WebSocket ---------------------------------------------------------------------


@pytest.mark.parametrize("deflate", [None, {"client_no_context_takeover": True, "server_no_context_takeover": True}])
def test_websocket_picked_up_mid_stream(deflate):
    pair = WsPair(deflate=deflate)
    messages = [mproxy_stream(seed, sizes=(100, 2000)) for seed in range(10)]
    for message in messages:
        pair.client_sends(BytesMessage(data=message))
        pair.server_sends(BytesMessage(data=message))
    c2s, s2c = pair.client_frames, pair.server_frames
    events = feed_all(Carrier(), interleave(c2s[700:], s2c[900:], 1460))
    [found] = detected(events)
    assert found.kind == "websocket" and found.info["midstream"] is True
    assert "mid-stream" in found.info["assumed"]
    tail = b"".join(messages[2:])
    assert stream_of(events, 0).endswith(tail) and stream_of(events, 1).endswith(tail)


def test_every_problem_kind_is_declared():
    wire = raw_frame(0x82, b"\xfe", mask=b"abcd") + raw_frame(0x83, b"x") + b"\x82\x7f" + b"\xff" * 8
    pair = WsPair()
    events = feed_all(Carrier(), [(0, bytes(pair.c2s)), (1, bytes(pair.s2c) + wire)])
    assert problem_kinds(events)
    assert set(problem_kinds(events)) <= set(CARRIER_PROBLEMS)


# -- properties ---------------------------------------------------------------------------------

_PAIR = WsPair(deflate={})
_UP, _DOWN = mproxy_stream(20, sizes=(5, 300, 4000)), mproxy_stream(21, sizes=(7, 9000))
_PAIR.client_sends(BytesMessage(data=_UP[:100], message_finished=False), Ping(b"1"), BytesMessage(data=_UP[100:]))
_PAIR.server_sends(BytesMessage(data=_DOWN[:1]), BytesMessage(data=_DOWN[1:]), CloseConnection(code=1000))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=6000), max_size=20),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    st.lists(st.booleans(), max_size=40),
)
def test_any_segmentation_of_the_connection_gives_the_same_streams(cuts_up, cuts_down, order):
    c2s = bytes(_PAIR.c2s)
    request = [(0, piece) for piece in chunks(c2s[: _PAIR.request_len], cuts_up)]
    up = [(0, piece) for piece in chunks(c2s[_PAIR.request_len :], cuts_up)]
    down = [(1, piece) for piece in chunks(bytes(_PAIR.s2c), cuts_down)]
    # Capture order keeps the request before its answer; after that, any interleaving.
    items = request
    while up or down:
        take_up = (order.pop() if order else True) if up and down else bool(up)
        items.append(up.pop(0) if take_up else down.pop(0))
    events = feed_all(Carrier(), items)
    assert stream_of(events, 0) == _UP and stream_of(events, 1) == _DOWN
    assert problem_kinds(events) == []


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.one_of(st.binary(max_size=400), st.integers(min_value=1, max_value=300))),
        max_size=12,
    ),
    st.sampled_from([b"", b"\xfe", bytes(WsPair().c2s)]),
)
def test_arbitrary_bytes_never_raise(items, prefix):
    carrier = Carrier(max_detect=2048, max_message=4096)
    events = feed_all(carrier, [(0, prefix), *items] if prefix else items)
    assert set(problem_kinds(events)) <= set(CARRIER_PROBLEMS)


# -- a real websockets client and server, recorded through a TCP relay ------------------------------


async def _recorded_exchange(compression: str | None, up: bytes, down: bytes) -> list[tuple[int, bytes]]:
    """Run a websockets server and client on 127.0.0.1 with a relay between them that records the bytes."""
    record: list[tuple[int, bytes]] = []
    received = bytearray()

    async def handler(connection) -> None:
        async for message in connection:
            received.extend(message)
            if len(received) == len(up):
                for i in range(0, len(down), 3000):
                    await connection.send(down[i : i + 3000])
                await connection.close()

    async def relay(reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", ws_port)

        async def pump(src, dst, direction) -> None:
            while data := await src.read(65536):
                record.append((direction, data))
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pump(reader, up_writer, 0), pump(up_reader, writer, 1))

    async with serve(handler, "127.0.0.1", 0, compression=compression) as ws_server:
        ws_port = ws_server.sockets[0].getsockname()[1]
        relay_server = await asyncio.start_server(relay, "127.0.0.1", 0)
        relay_port = relay_server.sockets[0].getsockname()[1]
        async with relay_server:
            url = f"ws://127.0.0.1:{relay_port}/?access_token=REAL.TOKEN&versions=v1"
            async with connect(url, compression=compression, additional_headers={"Authorization": "Bearer T"}) as ws:
                await ws.send(up[:2])
                await ws.send(up[2:50])
                await ws.send([up[50:1000], up[1000:]])  # one fragmented message
                async for _ in ws:
                    pass
            await asyncio.sleep(0.05)
    assert bytes(received) == up
    return record


@pytest.mark.parametrize("compression", ["deflate", None])
def test_real_websockets_exchange_through_a_recording_relay(compression):
    up, down = mproxy_stream(30), mproxy_stream(31, sizes=(1, 100, 50_000))
    record = asyncio.run(asyncio.wait_for(_recorded_exchange(compression, up, down), 30))
    carrier = Carrier()
    events = feed_all(carrier, record)
    [found] = detected(events)
    assert found.kind == "websocket"
    assert found.info["path"] == f"/?access_token={REDACTED}&versions=v1"
    assert (found.info["permessage_deflate"] is not None) == (compression == "deflate")
    assert stream_of(events, 0) == up and stream_of(events, 1) == down
    assert problem_kinds(events) == []
    assert carrier.unframers[1].closed and carrier.unframers[0].closed


def test_unanswered_upgrade_with_nothing_after_it_is_not_a_tunnel():
    carrier = Carrier()
    events = feed_all(carrier, [(0, bytes(WsPair().c2s))])
    assert carrier.kind == "none" and detected(events) == []


def test_uncompressed_connection_bytes_are_all_accounted_for():
    pair = WsPair()
    up = mproxy_stream(40)
    pair.client_sends(BytesMessage(data=up[:7], message_finished=False), Ping(b"x"), BytesMessage(data=up[7:]))
    pair.client_sends(TextMessage(data="t"), CloseConnection(code=1000))
    pair.server_sends(BytesMessage(data=up), CloseConnection(code=1000))
    c2s, s2c = bytes(pair.c2s) + b"late", bytes(pair.s2c)
    events = feed_all(Carrier(), interleave(c2s, s2c, 1000))
    for direction, wire in ((0, c2s), (1, s2c)):
        skipped = sum(e.nbytes for e in events if isinstance(e, Skipped) and e.direction == direction)
        assert len(stream_of(events, direction)) + skipped == len(wire)


def test_held_bytes_stay_bounded_while_undecided():
    carrier = Carrier(max_detect=4096)
    for i in range(100):
        carrier.feed(i % 2, os.urandom(1000), i, 0.0)
        assert max(carrier._held_bytes) <= 4096 + 1000
    assert carrier.kind == "none"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=8),
    st.lists(st.integers(0, 20_000), max_size=6),
    st.lists(st.tuples(st.integers(0, 20_000), st.integers(1, 3000)), max_size=3),
)
def test_mutated_connections_never_raise(flips, cuts, gaps):
    wire = bytearray(_PAIR.s2c)
    for position, value in flips:
        wire[position % len(wire)] = value
    items = [(0, bytes(_PAIR.c2s))]
    for piece in chunks(bytes(wire), cuts + [g for g, _ in gaps]):
        items.append((1, piece))
    for position, length in gaps:
        items.insert(1 + position % len(items), (1, length))
    events = feed_all(Carrier(max_message=4096), items)
    assert set(problem_kinds(events)) <= set(CARRIER_PROBLEMS)


# -- the WebSocket capture from captures/, through the real packet source and reassembler ---------------


def _capture_streams(path, first_frame: int = 1) -> tuple[dict[str, list], list[CarrierDetected]]:
    """M-PROXY frames per sending endpoint, decoding only the packets from ``first_frame`` on."""
    from mproxy_scapy.pcap import Segment, open_capture
    from mproxy_scapy.tcp import Closed, Data, Gap, TcpReassembler

    reassembler = TcpReassembler()
    carriers: dict[int, Carrier] = {}
    parsers: dict[str, FrameParser] = {}
    frames: dict[str, list] = {}
    found: list[CarrierDetected] = []

    def handle(conn, events) -> None:
        for event in events:
            if isinstance(event, CarrierDetected):
                found.append(event)
            elif isinstance(event, MproxyBytes | MproxyGap):
                src = conn.endpoint(event.direction)
                parser = parsers.setdefault(src, FrameParser(synced=first_frame == 1))
                got = parser.feed(event.data) if isinstance(event, MproxyBytes) else parser.gap(event.length)
                frames.setdefault(src, []).extend(got)

    for item in open_capture(path):
        if not isinstance(item, Segment) or item.frame_no < first_frame:
            continue
        for event in reassembler.feed(item):
            carrier = carriers.setdefault(event.conn.id, Carrier())
            if isinstance(event, Data):
                handle(event.conn, carrier.feed(event.direction, event.data, event.frame_no, event.ts))
            elif isinstance(event, Gap):
                handle(event.conn, carrier.gap(event.direction, event.length))
            elif isinstance(event, Closed) and event.direction == 1:
                handle(event.conn, carrier.close())
    for event in reassembler.close():
        if isinstance(event, Closed) and event.direction == 1:
            handle(event.conn, carriers[event.conn.id].close())
    for src, parser in parsers.items():
        frames[src].extend(parser.close())
    return frames, found


def _truth(path) -> dict[str, list[tuple[str, str]]]:
    import json

    out: dict[str, list[tuple[str, str]]] = {}
    with open(f"{path}.truth.ndjson") as lines:
        for line in lines:
            record = json.loads(line)
            out.setdefault(record["src"], []).append((record["header"], record["body_sha256"]))
    return out


def _decoded(frame) -> tuple[str, str]:
    """(header, body sha256) as the truth files write them."""
    return frame.header, frame.body_sha256


def test_websocket_capture_decodes_to_its_truth():
    from support import CAPTURES

    path = CAPTURES / "websocket.pcap"
    frames, found = _capture_streams(path)
    assert [f.kind for f in found] == ["websocket"] and found[0].info["midstream"] is False
    got = {src: [_decoded(f) for f in records if f.is_frame] for src, records in frames.items()}
    assert got == _truth(path)


def test_websocket_capture_picked_up_mid_stream_decodes_a_suffix_of_its_truth():
    from support import CAPTURES

    path = CAPTURES / "websocket.pcap"
    frames, found = _capture_streams(path, first_frame=20)
    assert [f.kind for f in found] == ["websocket"] and found[0].info["midstream"] is True
    truth = _truth(path)
    for src, records in frames.items():
        got = [_decoded(f) for f in records if f.is_frame and not f.problems]
        assert got and got == truth[src][-len(got) :]
        assert len(got) >= len(truth[src]) // 2
