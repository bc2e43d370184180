"""Property tests of the whole pipeline (pcap -> TCP -> carrier -> parser), on generated tunnels.

Whatever the network did to the segments (cut anywhere, reordered, repeated)
the frames must be those of the in-order stream; a lost segment must be
reported as a gap of its size, and decoding must pick up again at the next
frame.
"""

from __future__ import annotations

import io
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tunnel_capture import Conversation, Packet

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import DecodedFrame, Decoder
from mproxy_scapy.parser import iter_frames
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.pcapwriter import PcapWriter

SERVICES = ("http", "https", "ssh", "tcp")


@st.composite
def streams(draw):
    """An M-PROXY stream of 1..12 frames (bodies of letters: no stray 0xFE to resync on)."""
    frames = []
    for _ in range(draw(st.integers(1, 12))):
        tun = {"family": "IPv4", "address": f"198.51.100.{draw(st.integers(1, 254))}",
               "port": draw(st.integers(1024, 65535)), "service": draw(st.sampled_from(SERVICES)),
               "serviceport": draw(st.integers(1, 65535))}
        if draw(st.booleans()):
            tun["name"] = draw(st.from_regex(r"[a-z]{1,20}\.test", fullmatch=True))
        kind = draw(st.sampled_from(("data", "data", "end", "control")))
        if kind == "control":
            frames.append(pack(None, [draw(st.integers(1, 99)), "hello"], "control"))
        elif kind == "end":
            frames.append(pack(tun, None, "end"))
        else:
            frames.append(pack(tun, draw(st.binary(min_size=1, max_size=3000)).translate(_LETTERS)))
    return b"".join(frames)


_LETTERS = bytes(97 + b % 26 for b in range(256))


def cuts(stream_length: int):
    return st.lists(st.integers(1, max(1, stream_length - 1)), max_size=40)


def decode_packets(conversation: Conversation) -> tuple[Decoder, list[DecodedFrame]]:
    buffer = io.BytesIO()
    writer = PcapWriter(buffer)
    for ts, packet in conversation.raw_packets():
        writer.write(ts, packet)
    buffer.seek(0)
    decoder = Decoder()
    records = [r for r in decoder.decode(open_capture(buffer)) if isinstance(r, DecodedFrame)]
    return decoder, records


def essentials(frames) -> list[tuple]:
    return [(f.offset, f.length, f.kind, f.header, f.body, [p.kind for p in f.problems]) for f in frames]


def tunnel(stream: bytes, data_packets: list[Packet]) -> Conversation:
    conversation = Conversation()
    conversation.handshake()
    conversation.packets += data_packets
    conversation.close((0, len(stream)), conversation.start + 10)
    return conversation


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_segmentation_reordering_and_duplication_gives_the_in_order_frames(data):
    stream = data.draw(streams())
    conversation = Conversation()
    segments = conversation.segments(1, stream, data.draw(cuts(len(stream))), conversation.start + 1)
    order = data.draw(st.permutations(range(len(segments))))
    window = data.draw(st.integers(1, 4))
    # reorder within small windows (a real network reorders locally), then repeat some segments
    shuffled = []
    for start in range(0, len(segments), window):
        block = sorted(range(start, min(start + window, len(segments))), key=order.index)
        shuffled += [segments[i] for i in block]
    repeats = data.draw(st.lists(st.integers(0, len(shuffled) - 1), max_size=5))
    for index in sorted(repeats, reverse=True):
        shuffled.insert(index + 1, shuffled[index])
    decoder, records = decode_packets(tunnel(stream, shuffled))
    assert essentials(r.frame for r in records) == essentials(iter_frames(stream))
    assert not decoder.problem_counts.get("tcp.gap")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_lost_segment_is_a_reported_gap_and_decoding_resumes(data):
    stream = data.draw(streams())
    conversation = Conversation()
    segments = conversation.segments(1, stream, data.draw(cuts(len(stream))), conversation.start + 1)
    if len(segments) < 3:
        return
    lost_index = data.draw(st.integers(1, len(segments) - 2))
    lost = segments.pop(lost_index)
    lost_start = lost.seq - (conversation.isn[1] + 1)
    lost_end = lost_start + len(lost.payload)
    decoder, records = decode_packets(tunnel(stream, segments))
    assert decoder.problem_counts["tcp.gap"] == 1
    gap_events = [r.frame for r in records if r.frame.kind == "gap"] + [
        r.frame for r in records if r.frame.gap_bytes and r.frame.kind != "gap"]
    assert sum(f.gap_bytes for f in gap_events) == len(lost.payload)
    frames = [r.frame for r in records]
    assert sum(f.length for f in frames) == len(stream)
    expected = iter_frames(stream)
    before = [f for f in expected if f.offset + f.length <= lost_start]
    after = [f for f in expected if f.offset >= lost_end]
    clean = [f for f in frames if not f.problems]
    assert essentials(f for f in clean if f.offset + f.length <= lost_start) == essentials(before)
    assert essentials(f for f in clean if f.offset >= lost_end) == essentials(after)
    # everything reported as damaged lies between the frame hit by the loss and the next whole frame
    region_start = max([f.offset for f in expected if f.offset <= lost_start], default=0)
    region_end = min([f.offset for f in expected if f.offset >= lost_end], default=len(stream))
    assert all(region_start <= f.offset and f.offset + f.length <= region_end for f in frames if f.problems)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_websocket_tunnels_give_the_same_frames_however_messages_and_segments_are_cut(data):
    from wsproto.events import BytesMessage

    from wsstreams import WsPair

    deflate = data.draw(st.sampled_from([None, {}]))
    pair = WsPair(deflate=deflate)
    streams_each_way = (data.draw(streams()), data.draw(streams()))
    for direction, stream in enumerate(streams_each_way):
        cuts_at = sorted({0, len(stream), *data.draw(cuts(len(stream)))})
        for a, b in itertools.pairwise(cuts_at):
            message = BytesMessage(data=stream[a:b])
            (pair.client_sends if direction == 0 else pair.server_sends)(message)
    conversation = Conversation()
    conversation.handshake()
    wire = (bytes(pair.c2s), bytes(pair.s2c))
    handshake_len = (pair.request_len, pair.response_len)
    segments = []
    for direction in (0, 1):
        points = [handshake_len[direction], *data.draw(cuts(len(wire[direction])))]
        segments.append(conversation.segments(direction, wire[direction], points, conversation.start + 1))
    first = [segments[0].pop(0), segments[1].pop(0)]  # the upgrade request, then the 101 answer
    rest = []
    for direction in (0, 1):
        tail = segments[direction]
        swaps = data.draw(st.lists(st.integers(0, max(0, len(tail) - 2)), max_size=4))
        for i in swaps:
            if i + 1 < len(tail):
                tail[i], tail[i + 1] = tail[i + 1], tail[i]
        rest.append(tail)
    conversation.packets += first + [p for pair_ in itertools.zip_longest(*rest) for p in pair_ if p]
    conversation.close((len(wire[0]), len(wire[1])), conversation.start + 5)
    decoder, records = decode_packets(conversation)
    for direction, stream in enumerate(streams_each_way):
        got = [r.frame for r in records if r.direction == direction]
        assert essentials(got) == essentials(iter_frames(stream)), direction
    assert {r.carrier for r in records} == {"websocket"}
    assert not decoder.problem_counts
