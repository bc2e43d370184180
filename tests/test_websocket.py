"""The RFC 6455 unframer, fed bytes written by wsproto and websockets (independent implementations)."""

from __future__ import annotations

import itertools
import os
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate as WebsocketsDeflate
from websockets.frames import Opcode
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from mproxy_scapy.websocket import (
    RESYNC_HOLD,
    WS_PROBLEMS,
    DeflateParams,
    WebSocketUnframer,
    WsGap,
    WsPayload,
    WsProblem,
    WsSkipped,
    find_frame_start,
    parse_extensions,
    unmask,
)

from wsstreams import WsPair, chunks, mproxy_stream, raw_frame, websockets_frames


def run(unframer: WebSocketUnframer, pieces, close: bool = True) -> list:
    events = []
    for piece in pieces:
        events += unframer.feed(piece)
    if close:
        events += unframer.close()
    return events


def payload(events) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, WsPayload))


def problems(events) -> list[str]:
    return [e.kind for e in events if isinstance(e, WsProblem)]


def skipped(events, kind: str) -> list[int]:
    return [e.nbytes for e in events if isinstance(e, WsSkipped) and e.kind == kind]


def client() -> WebSocketUnframer:
    return WebSocketUnframer(from_client=True)


def server() -> WebSocketUnframer:
    return WebSocketUnframer(from_client=False)


# -- unmasking ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 16384, 65537])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 6])
def test_unmask_matches_the_rfc_definition(size, offset):
    data = os.urandom(size)
    mask = os.urandom(4)
    expected = bytes(b ^ mask[(i + offset) % 4] for i, b in enumerate(data))
    assert unmask(data, mask, offset) == expected
    assert unmask(memoryview(data), mask, offset) == expected


# -- plain messages ---------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_masked_client_and_unmasked_server_messages_of_every_length_encoding(size):
    pair = WsPair()
    data = os.urandom(size)
    pair.client_sends(BytesMessage(data=data))
    pair.server_sends(BytesMessage(data=data))
    c_events = run(client(), [pair.client_frames])
    s_events = run(server(), [pair.server_frames])
    assert payload(c_events) == data
    assert payload(s_events) == data
    assert problems(c_events) == problems(s_events) == []


def test_mproxy_frames_spanning_binary_messages_come_out_as_one_stream():
    stream = mproxy_stream(1)
    pair = WsPair()
    # The JS relay style: a frame cut over several messages, and messages holding several frames.
    for a, b in [(0, 2), (2, 40), (40, 41), (41, 5000), (5000, len(stream))]:
        pair.client_sends(BytesMessage(data=stream[a:b]))
    events = run(client(), [pair.client_frames])
    assert payload(events) == stream


def test_payload_is_emitted_as_it_arrives_not_after_the_whole_frame():
    pair = WsPair()
    data = os.urandom(100_000)
    pair.server_sends(BytesMessage(data=data))
    wire = pair.server_frames
    unframer = server()
    first = unframer.feed(wire[:1000])
    assert payload(first) == data[: 1000 - 10]  # 10 header bytes for a 64-bit length
    assert payload(unframer.feed(wire[1000:])) == data[990:]


def test_fragmented_messages_with_interleaved_ping_and_pong():
    pair = WsPair()
    stream = mproxy_stream(2)
    third = len(stream) // 3
    pair.client_sends(
        BytesMessage(data=stream[:third], message_finished=False),
        Ping(b"are you there"),
        BytesMessage(data=stream[third : 2 * third], message_finished=False),
        Pong(b"yes"),
        BytesMessage(data=stream[2 * third :], message_finished=True),
    )
    unframer = client()
    events = run(unframer, [pair.client_frames])
    assert payload(events) == stream
    assert problems(events) == []
    assert skipped(events, "ping") == [13]
    assert skipped(events, "pong") == [3]
    assert (unframer.pings, unframer.pongs, unframer.messages) == (1, 1, 1)


def test_text_messages_are_skipped_and_counted():
    pair = WsPair()
    pair.client_sends(TextMessage(data="hello"), BytesMessage(data=b"\xfebin"), TextMessage(data="x" * 300))
    unframer = client()
    events = run(unframer, [pair.client_frames])
    assert payload(events) == b"\xfebin"
    assert sum(skipped(events, "text")) == 305
    assert unframer.text_messages == 2
    assert problems(events) == []


def test_close_stops_the_direction_and_later_bytes_are_counted():
    pair = WsPair()
    pair.server_sends(BytesMessage(data=b"before"), CloseConnection(code=1001, reason="going away"))
    after = b"\x82\x05after-close-bytes"
    unframer = server()
    events = run(unframer, [pair.server_frames + after])
    assert payload(events) == b"before"
    close = [e for e in events if isinstance(e, WsSkipped) and e.kind == "close"]
    assert close[0].detail == "code 1001 'going away'"
    assert skipped(events, "after_close") == [len(after)]
    assert (unframer.closed, unframer.close_code, unframer.close_reason) == (True, 1001, "going away")


def test_uncompressed_wire_bytes_are_all_accounted_for():
    pair = WsPair()
    pair.client_sends(
        BytesMessage(data=os.urandom(70_000), message_finished=False),
        Ping(b"p"),
        BytesMessage(data=os.urandom(300)),
        TextMessage(data="text"),
        CloseConnection(code=1000),
    )
    events = run(client(), [pair.client_frames])
    total = len(payload(events)) + sum(e.nbytes for e in events if isinstance(e, WsSkipped))
    assert total == len(pair.client_frames)


def test_websockets_library_frames_masked_and_unmasked():
    stream = mproxy_stream(3)
    messages = [
        (Opcode.BINARY, stream[:100], False),
        (Opcode.PING, b"x", True),
        (Opcode.CONT, stream[100:], True),
        (Opcode.TEXT, b"ignored", True),
    ]
    for mask, unframer in ((True, client()), (False, server())):
        events = run(unframer, [websockets_frames(messages, mask=mask)])
        assert payload(events) == stream
        assert problems(events) == []


# -- permessage-deflate -----------------------------------------------------------


@pytest.mark.parametrize(
    "deflate",
    [
        {},
        {"client_no_context_takeover": True, "server_no_context_takeover": True},
        {"server_max_window_bits": 10, "client_max_window_bits": 9},
    ],
    ids=["context-takeover", "no-context-takeover", "small-windows"],
)
def test_permessage_deflate_from_wsproto(deflate):
    pair = WsPair(deflate=deflate)
    stream = mproxy_stream(4, sizes=(5, 3000, 3000, 40_000, 5)) * 3
    cuts = [0, 1, 2, 500, 501, 9000, 30_000, len(stream)]
    for a, b in itertools.pairwise(cuts):
        pair.client_sends(BytesMessage(data=stream[a:b]))
        pair.server_sends(BytesMessage(data=stream[a:b]))
    params = DeflateParams(**{k: v for k, v in deflate.items()})
    for from_client, wire in ((True, pair.client_frames), (False, pair.server_frames)):
        unframer = WebSocketUnframer(from_client=from_client, deflate=params)
        events = run(unframer, chunks(wire, list(range(0, len(wire), 777))))
        assert payload(events) == stream
        assert problems(events) == []
    assert pair.client_frames[0] & 0x40 and pair.server_frames[0] & 0x40  # really compressed (RSV1)


def test_permessage_deflate_from_websockets_without_context_takeover_resets_per_message():
    # The sender resets its context per message, so each message inflates on its own:
    # decoding only the second message proves no context was carried over.
    sender = WebsocketsDeflate(False, True, 15, 15)
    stream = mproxy_stream(5, sizes=(4000, 4000))
    wire_one = websockets_frames([(Opcode.BINARY, stream, True)], mask=False, deflate=sender)
    wire_two = websockets_frames([(Opcode.BINARY, stream, True)], mask=False, deflate=sender)
    params = DeflateParams(server_no_context_takeover=True)
    assert payload(run(WebSocketUnframer(from_client=False, deflate=params), [wire_two])) == stream
    both = run(WebSocketUnframer(from_client=False, deflate=params), [wire_one + wire_two])
    assert payload(both) == stream + stream


def test_permessage_deflate_fragmented_compressed_message():
    sender = WebsocketsDeflate(False, False, 15, 15)
    stream = mproxy_stream(6)
    compressed = sender.encode(__import__("websockets").frames.Frame(Opcode.BINARY, stream)).data
    parts = [compressed[:10], compressed[10:500], compressed[500:]]
    wire = (
        raw_frame(0x42, parts[0], mask=b"abcd")
        + raw_frame(0x00, parts[1], mask=b"efgh")
        + raw_frame(0x89, b"ping", mask=b"ijkl")
        + raw_frame(0x80, parts[2], mask=b"mnop")
    )
    events = run(WebSocketUnframer(from_client=True, deflate=DeflateParams()), [wire])
    assert payload(events) == stream
    assert problems(events) == []


def test_decompression_is_capped_per_message_and_the_rest_dropped():
    pair = WsPair(deflate={"server_no_context_takeover": True})
    bomb = b"\xfe" + b"\x00" * 2_000_000
    pair.server_sends(BytesMessage(data=bomb), BytesMessage(data=b"\xfeafter"))
    unframer = WebSocketUnframer(
        from_client=False, deflate=DeflateParams(server_no_context_takeover=True), max_message=100_000
    )
    events = run(unframer, chunks(pair.server_frames, list(range(0, len(pair.server_frames), 64))))
    assert problems(events) == ["decompression_capped"]
    assert payload(events) == bomb[:100_000] + b"\xfeafter"
    assert sum(skipped(events, "message_dropped")) > 0


def test_rsv1_without_negotiation_is_reported_and_inflated():
    body = zlib.compressobj(wbits=-15)
    data = body.compress(b"\xfehello") + body.flush(zlib.Z_SYNC_FLUSH)
    wire = raw_frame(0xC2, data[:-4])
    events = run(server(), [wire])
    assert problems(events) == ["rsv1_without_deflate"]
    assert payload(events) == b"\xfehello"


def test_garbage_in_a_compressed_message_is_an_inflate_error_not_an_exception():
    wire = raw_frame(0xC2, b"\xff" * 40) + raw_frame(0x82, b"\xfeok")
    events = run(WebSocketUnframer(from_client=False, deflate=DeflateParams()), [wire])
    assert problems(events) == ["inflate_error"]
    assert payload(events) == b"\xfeok"


# -- protocol violations -----------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "from_client", "kind"),
    [
        (raw_frame(0x82, b"\xfe", mask=b"abcd"), False, "server_frame_masked"),
        (raw_frame(0x82, b"\xfe"), True, "client_frame_unmasked"),
        (raw_frame(0x83, b"xyz"), False, "reserved_opcode"),
        (raw_frame(0x8B, b"xyz"), False, "reserved_opcode"),
        (raw_frame(0x89, b"p" * 126), False, "control_frame_too_long"),
        (raw_frame(0x09, b"p"), False, "control_frame_fragmented"),
        (raw_frame(0x80, b"orphan"), False, "unexpected_continuation"),
        (raw_frame(0xA2, b"\xfe"), False, "reserved_bits_set"),
        (b"\x82\x7e\x00\x05" + b"\xfe" * 5, False, "length_not_minimal"),
    ],
)
def test_violations_are_named_and_decoding_goes_on(wire, from_client, kind):
    after = raw_frame(0x82, b"\xfenext", mask=b"wxyz" if from_client else None)
    events = run(WebSocketUnframer(from_client=from_client), [wire + after])
    assert problems(events) == [kind]
    assert payload(events).endswith(b"\xfenext")


def test_message_interrupted_by_a_new_data_frame():
    wire = raw_frame(0x02, b"\xfeone") + raw_frame(0x82, b"\xfetwo")
    events = run(server(), [wire])
    assert problems(events) == ["message_interrupted"]
    assert payload(events) == b"\xfeone\xfetwo"


def test_a_length_of_2_63_loses_the_framing_and_resyncs():
    frame = mproxy_stream(10, sizes=(20,))
    wire = b"\x82\x7f" + (1 << 63).to_bytes(8, "big") + b"junk" + raw_frame(0x82, frame) + raw_frame(0x82, b"more")
    events = run(server(), [wire])
    assert problems(events) == ["length_too_large", "ws_resynced"]
    assert payload(events) == frame + b"more"


# -- gaps -----------------------------------------------------------------------------


def test_gap_inside_a_binary_payload_keeps_the_framing():
    pair = WsPair()
    data = os.urandom(10_000)
    pair.client_sends(BytesMessage(data=data), BytesMessage(data=b"\xfesecond"))
    wire = pair.client_frames
    unframer = client()
    header = 4 + 4  # 16-bit length + mask key
    events = unframer.feed(wire[: header + 1000])
    events += unframer.gap(3000)
    events += unframer.feed(wire[header + 4000 :])
    events += unframer.close()
    gaps = [e.length for e in events if isinstance(e, WsGap)]
    assert gaps == [3000]
    assert payload(events) == data[:1000] + data[4000:] + b"\xfesecond"
    assert problems(events) == []


def test_gap_in_a_frame_header_resyncs_on_the_next_message_holding_an_mproxy_header():
    pair = WsPair()
    frames = [mproxy_stream(seed, sizes=(100,)) for seed in range(8)]  # 139 bytes each
    for frame in frames:
        pair.server_sends(BytesMessage(data=frame[:60]), BytesMessage(data=frame[60:]))
    wire = pair.server_frames
    message_pair = 2 + 60 + 2 + 79
    unframer = server()
    events = unframer.feed(wire[: message_pair * 3 + 1])  # one byte into the 4th frame's first header
    events += unframer.gap(70)  # the rest of that message and one byte into the next header
    events += unframer.feed(wire[message_pair * 3 + 71 :])
    events += unframer.close()
    assert problems(events) == ["ws_sync_lost", "ws_resynced"]
    assert [e.length for e in events if isinstance(e, WsGap)] == [70]
    assert payload(events) == b"".join(frames[:3]) + b"".join(frames[4:])
    assert skipped(events, "resync") == [message_pair - 71]


# -- helpers and properties -----------------------------------------------------------


def test_extension_header_parsing():
    value = 'permessage-deflate; client_max_window_bits=10; server_no_context_takeover, x-other; a="1"'
    assert parse_extensions(value) == [
        ("permessage-deflate", {"client_max_window_bits": "10", "server_no_context_takeover": None}),
        ("x-other", {"a": '"1"'}),
    ]
    params = DeflateParams.from_extensions(value)
    assert params.as_dict() == {
        "client_max_window_bits": 10,
        "client_no_context_takeover": False,
        "server_max_window_bits": None,
        "server_no_context_takeover": True,
    }
    assert DeflateParams.from_extensions("x-other") is None


def test_strict_frame_start_needs_mproxy_inside():
    framed = raw_frame(0x82, mproxy_stream(8, sizes=(10,)), mask=b"abcd")
    assert find_frame_start(b"junk" + framed, masked=None, deflate=None, final=True)[0] == 4
    assert find_frame_start(b"junk" + framed[:30], masked=None, deflate=None, final=False) == (None, 4)
    plain = b"junk" + raw_frame(0x82, b"plain")
    assert find_frame_start(plain, masked=None, deflate=None, final=True) == (None, len(plain))


_PAIR_FOR_SPLITS = WsPair(deflate={})
_STREAM_FOR_SPLITS = mproxy_stream(9, sizes=(3, 400, 5000))
for _a, _b in [(0, 1), (1, 3000), (3000, 3001), (3001, len(_STREAM_FOR_SPLITS))]:
    _PAIR_FOR_SPLITS.client_sends(BytesMessage(data=_STREAM_FOR_SPLITS[_a:_b], message_finished=_b % 2 == 1))
    _PAIR_FOR_SPLITS.client_sends(Ping(b"p"))
_PAIR_FOR_SPLITS.client_sends(BytesMessage(data=b"", message_finished=True), CloseConnection(code=1000))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20_000), max_size=30))
def test_any_split_gives_the_same_binary_stream(cuts):
    wire = _PAIR_FOR_SPLITS.client_frames
    events = run(WebSocketUnframer(from_client=True, deflate=DeflateParams()), chunks(wire, cuts))
    assert payload(events) == _STREAM_FOR_SPLITS
    assert problems(events) == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=300), st.integers(min_value=1, max_value=500)), max_size=12),
    st.sampled_from([True, False, None]),
    st.booleans(),
    st.booleans(),
)
def test_arbitrary_bytes_and_gaps_never_raise(items, from_client, deflate, synced):
    unframer = WebSocketUnframer(
        from_client=from_client, deflate=DeflateParams() if deflate else None, synced=synced, max_message=1000
    )
    events = []
    for item in items:
        events += unframer.gap(item) if isinstance(item, int) else unframer.feed(item)
    events += unframer.close()
    assert set(problems(events)) <= set(WS_PROBLEMS)


def test_after_a_capped_message_with_context_takeover_later_messages_still_inflate():
    """The capped rest is inflated into a count: the window stays right and the loss is an exact gap."""
    pair = WsPair(deflate={})
    bomb = b"\xfe" + bytes(range(256)) * 2000
    follow = bytes(range(256)) * 10  # compressed against the dropped message's window
    pair.server_sends(BytesMessage(data=bomb), BytesMessage(data=follow))
    events = run(
        WebSocketUnframer(from_client=False, deflate=DeflateParams(), max_message=10_000), [pair.server_frames]
    )
    assert problems(events) == ["decompression_capped"]
    assert payload(events) == bomb[:10_000] + follow
    assert sum(e.length for e in events if isinstance(e, WsGap)) == len(bomb) - 10_000


def test_resync_holds_at_most_one_candidate_and_its_payload_start():
    unframer = WebSocketUnframer(from_client=None, synced=False)
    # Candidate headers everywhere: binary frames whose payload starts 0xFE with a long hdrlen.
    wire = (b"\x82\x7e\xff\xff\xfe\xf0" + b"A" * 300) * 20
    for i in range(len(wire)):
        unframer.feed(wire[i : i + 1])
        assert len(unframer._rbuf) <= RESYNC_HOLD
    assert payload(unframer.close()) == b""


_MUTABLE = WsPair(deflate={})
_MUTABLE.client_sends(
    BytesMessage(data=mproxy_stream(11, sizes=(10, 300)), message_finished=False),
    Ping(b"x"),
    BytesMessage(data=mproxy_stream(12, sizes=(5000,))),
    TextMessage(data="t" * 200),
    CloseConnection(code=1000),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6),
    st.lists(st.integers(0, 10_000), max_size=6),
    st.lists(st.tuples(st.integers(0, 20), st.integers(1, 2000)), max_size=2),
)
def test_mutated_streams_never_raise(flips, cuts, gaps):
    wire = bytearray(_MUTABLE.client_frames)
    for position, value in flips:
        wire[position % len(wire)] = value
    unframer = WebSocketUnframer(from_client=True, deflate=DeflateParams(), max_message=2000)
    pieces = chunks(bytes(wire), cuts)
    events = []
    for i, piece in enumerate(pieces):
        for where, length in gaps:
            if where == i:
                events += unframer.gap(length)
        events += unframer.feed(piece)
    events += unframer.close()
    assert set(problems(events)) <= set(WS_PROBLEMS)


def test_messages_ending_with_a_final_deflate_block_each_start_afresh():
    wire = b""
    for text in (b"\xfefirst", b"\xfesecond"):
        compressor = zlib.compressobj(wbits=-15)
        wire += raw_frame(0xC2, compressor.compress(text) + compressor.flush(zlib.Z_FINISH))
    events = run(WebSocketUnframer(from_client=False, deflate=DeflateParams()), [wire])
    assert payload(events) == b"\xfefirst\xfesecond"
    assert problems(events) == []
