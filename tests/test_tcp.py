"""The TCP reassembler: order, retransmissions, overlaps, gaps, wrap-around, reuse, limits."""

from __future__ import annotations

import itertools
import json
import socket
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mproxy_scapy.pcap import ACK, FIN, PSH, RST, SYN, Segment, open_capture
from mproxy_scapy.tcp import Closed, Data, Gap, Opened, TcpProblem, TcpReassembler

CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 3000)
MASK = 0xFFFFFFFF


class Flow:
    """Builds the segments of one connection, numbering frames as a capture would."""

    def __init__(self, client: tuple[str, int] = CLIENT, server: tuple[str, int] = SERVER, isn: int = 1000,
                 server_isn: int = 9000) -> None:
        self.client, self.server = client, server
        self.isn, self.server_isn = isn, server_isn
        self.frame = 0

    def seg(self, direction: int, offset: int, data: bytes = b"", flags: int = ACK | PSH, ack: int | None = None,
            raw_seq: int | None = None) -> Segment:
        self.frame += 1
        src, dst = (self.client, self.server) if direction == 0 else (self.server, self.client)
        base = self.isn if direction == 0 else self.server_isn
        peer = self.server_isn if direction == 0 else self.isn
        seq = raw_seq if raw_seq is not None else (base + 1 + offset) & MASK
        return Segment(self.frame, float(self.frame), src[0], dst[0], src[1], dst[1], seq,
                       (peer + 1) & MASK if ack is None else ack, flags, data, 4)

    def syn(self) -> Segment:
        return self.seg(0, -1, flags=SYN, ack=0)

    def synack(self) -> Segment:
        return self.seg(1, -1, flags=SYN | ACK)

    def handshake(self) -> list[Segment]:
        return [self.syn(), self.synack(), self.seg(0, 0, flags=ACK)]

    def ack_of(self, direction: int, offset: int) -> int:
        """The ACK number acknowledging ``direction``'s stream up to ``offset``."""
        base = self.isn if direction == 0 else self.server_isn
        return (base + 1 + offset) & MASK


def run(segments: list[Segment], reassembler: TcpReassembler | None = None) -> list:
    tcp = reassembler or TcpReassembler()
    events = []
    for segment in segments:
        events.extend(tcp.feed(segment))
    events.extend(tcp.close())
    return events


def stream_of(events: list, direction: int = 0, conn_id: int | None = None) -> tuple[bytes, list[tuple[int, int]]]:
    """The direction's delivered bytes and its gaps; asserts offsets are contiguous."""
    data, gaps, position = [], [], 0
    for event in events:
        if isinstance(event, Data | Gap) and event.direction == direction and (
                conn_id is None or event.conn.id == conn_id):
            assert event.offset == position, (event, position)
            if isinstance(event, Data):
                data.append(bytes(event.data))
                position += len(event.data)
            else:
                gaps.append((event.offset, event.length))
                position += event.length
    return b"".join(data), gaps


def kinds(events: list, cls: type) -> list:
    return [event for event in events if isinstance(event, cls)]


def test_in_order_stream_passes_payload_through_without_copy():
    flow = Flow()
    payloads = [b"hello ", b"world", b"!"]
    segments = flow.handshake()
    offset = 0
    for payload in payloads:
        segments.append(flow.seg(0, offset, payload))
        offset += len(payload)
    tcp = TcpReassembler()
    events = [event for segment in segments for event in tcp.feed(segment)]
    opened = kinds(events, Opened)
    assert len(opened) == 1 and opened[0].conn.syn_seen and opened[0].frame_no == 1
    data = kinds(events, Data)
    assert [(d.offset, d.frame_no) for d in data] == [(0, 4), (6, 5), (11, 6)]
    assert all(d.data is p for d, p in zip(data, payloads, strict=True))
    conn = opened[0].conn
    assert conn.client == CLIENT and conn.server == SERVER
    assert conn.endpoint(0) == "10.0.0.1:40000" and conn.endpoint(1) == "10.0.0.2:3000"


def test_ipv6_endpoint_text():
    flow = Flow(client=("::1", 5000), server=("fe80::1", 443))
    events = run([flow.syn()])
    assert kinds(events, Opened)[0].conn.endpoint(0) == "[::1]:5000"
    assert kinds(events, Opened)[0].conn.endpoint(1) == "[fe80::1]:443"


def test_both_directions_and_fin_close():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 0, b"request"), flow.seg(1, 0, b"response", ack=flow.ack_of(0, 7)),
                flow.seg(0, 7, flags=FIN | ACK), flow.seg(1, 8, flags=FIN | ACK, ack=flow.ack_of(0, 8)),
                flow.seg(0, 8, flags=ACK, ack=flow.ack_of(1, 9))]
    tcp = TcpReassembler()
    events = [event for segment in segments for event in tcp.feed(segment)]
    assert stream_of(events, 0) == (b"request", [])
    assert stream_of(events, 1) == (b"response", [])
    assert [(c.direction, c.reason, c.frame_no) for c in kinds(events, Closed)] == [(0, "fin", 6), (1, "fin", 7)]
    assert tcp.close() == []
    assert not kinds(events, Gap)


def test_out_of_order_is_buffered_then_delivered_by_the_filling_segment():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 5, b"world"), flow.seg(0, 0, b"hello")]
    events = run(segments)
    data = kinds(events, Data)
    assert [(d.offset, bytes(d.data), d.frame_no) for d in data] == [(0, b"hello", 5), (5, b"world", 5)]


def test_exact_retransmission_is_dropped_and_counted():
    flow = Flow()
    tcp = TcpReassembler()
    segments = [*flow.handshake(), flow.seg(0, 0, b"abc"), flow.seg(0, 0, b"abc"), flow.seg(0, 3, b"def")]
    events = run(segments, tcp)
    assert stream_of(events) == (b"abcdef", [])
    assert tcp.stats["retransmitted_segments"] == 1 and tcp.stats["retransmitted_bytes"] == 3
    assert not kinds(events, TcpProblem)


def test_conflicting_overlap_keeps_first_copy_and_reports_position_and_size():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 4, b"EFGH"), flow.seg(0, 6, b"XYZW"), flow.seg(0, 0, b"ABCD")]
    events = run(segments)
    assert stream_of(events) == (b"ABCDEFGHZW", [])
    problems = kinds(events, TcpProblem)
    assert [(p.kind, p.direction, p.frame_no) for p in problems] == [("overlap_conflict", 0, 5)]
    assert "2 overlapping bytes at stream offset 6" in problems[0].detail


def test_identical_overlap_is_not_a_problem():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 4, b"EFGH"), flow.seg(0, 2, b"CDEFGHIJ"), flow.seg(0, 0, b"AB")]
    events = run(segments)
    assert stream_of(events) == (b"ABCDEFGHIJ", [])
    assert not kinds(events, TcpProblem)


def test_late_copy_of_the_last_delivered_chunk_is_compared_and_older_bytes_are_not():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 0, b"abcd"), flow.seg(0, 4, b"efgh"),
                flow.seg(0, 5, b"fXh"),  # frame 6: differs from the last delivered chunk at offset 6
                flow.seg(0, 0, b"ABCDefgh"),  # frame 7: [0, 4) is older than the kept chunk, [4, 8) equal
                flow.seg(0, 6, b"ghij")]  # frame 8: equal where it overlaps, the rest is new
    events = run(segments)
    assert stream_of(events) == (b"abcdefghij", [])
    problems = kinds(events, TcpProblem)
    assert [(p.kind, p.frame_no) for p in problems] == [("overlap_conflict", 6)]
    assert "3 overlapping bytes at stream offset 5" in problems[0].detail


def test_late_copy_of_a_drained_piece_is_compared():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 4, b"EFGH"), flow.seg(0, 0, b"ABCD"), flow.seg(0, 2, b"CDEFxH")]
    events = run(segments)
    assert stream_of(events) == (b"ABCDEFGH", [])
    problems = kinds(events, TcpProblem)
    assert [(p.kind, p.frame_no) for p in problems] == [("overlap_conflict", 6)]
    assert "4 overlapping bytes at stream offset 4" in problems[0].detail


def test_peer_ack_past_a_hole_declares_it_lost_at_once():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 0, b"aaaa"), flow.seg(0, 8, b"cccc"),
                flow.seg(1, 0, flags=ACK, ack=flow.ack_of(0, 12))]
    tcp = TcpReassembler()
    events = [event for segment in segments for event in tcp.feed(segment)]
    assert stream_of(events) == (b"aaaacccc", [(4, 4)])
    gap = kinds(events, Gap)[0]
    assert gap.frame_no == 6 and gap.conn.id == 1


def test_ack_past_data_never_captured_is_a_gap_even_with_nothing_buffered():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 0, b"aaaa"), flow.seg(1, 0, flags=ACK, ack=flow.ack_of(0, 10)),
                flow.seg(0, 10, b"bb")]
    tcp = TcpReassembler()
    events = [event for segment in segments for event in tcp.feed(segment)]
    assert stream_of(events) == (b"aaaabb", [(4, 6)])


def test_fin_waits_for_a_late_retransmission():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 0, b"aa"), flow.seg(0, 4, b"cc", flags=FIN | ACK),
                flow.seg(0, 2, b"bb")]
    tcp = TcpReassembler()
    events = [event for segment in segments for event in tcp.feed(segment)]
    assert stream_of(events) == (b"aabbcc", [])
    assert [(c.direction, c.reason, c.frame_no) for c in kinds(events, Closed)] == [(0, "fin", 6)]


def test_rst_gives_up_holes_and_closes_both_directions():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 0, b"aa"), flow.seg(0, 4, b"cc"), flow.seg(1, 0, flags=RST | ACK)]
    events = run(segments)
    assert stream_of(events) == (b"aacc", [(2, 2)])
    assert [(c.direction, c.reason) for c in kinds(events, Closed)] == [(0, "rst"), (1, "rst")]


def test_capture_end_gives_up_holes():
    flow = Flow()
    segments = [*flow.handshake(), flow.seg(0, 3, b"ddd")]
    events = run(segments)
    assert stream_of(events) == (b"ddd", [(0, 3)])
    assert [(c.direction, c.reason, c.frame_no) for c in kinds(events, Closed)] == [
        (0, "capture_end", 4), (1, "capture_end", 4)]


def test_sequence_wraparound():
    flow = Flow(isn=MASK - 5, server_isn=MASK)
    payload = bytes(range(40))
    segments = [*flow.handshake()]
    for offset in range(0, 40, 8):
        segments.append(flow.seg(0, offset, payload[offset:offset + 8]))
    segments.append(flow.seg(1, 0, b"reply across zero", ack=flow.ack_of(0, 40)))
    segments[4], segments[5] = segments[5], segments[4]
    events = run(segments)
    assert stream_of(events, 0) == (payload, [])
    assert stream_of(events, 1) == (b"reply across zero", [])
    assert max(d.offset for d in kinds(events, Data)) == 32


def test_stream_longer_than_4_gib_keeps_counting_offsets():
    flow = Flow(isn=100)
    chunk = b"x" * 65536
    tcp = TcpReassembler()
    for segment in flow.handshake():
        tcp.feed(segment)
    total = (1 << 32) + 3 * 65536
    last = None
    for offset in range(0, total, 65536):
        events = tcp.feed(flow.seg(0, offset, chunk))
        last = events[-1]
    assert isinstance(last, Data) and last.offset == total - 65536


def test_mid_stream_capture_starts_at_first_seen_sequence_number():
    flow = Flow()
    segments = [flow.seg(1, 500, b"late reply"), flow.seg(0, 70, b"more", ack=flow.ack_of(1, 510)),
                flow.seg(1, 510, b"!", ack=flow.ack_of(0, 74))]
    events = run(segments)
    conn = kinds(events, Opened)[0].conn
    assert not conn.syn_seen
    assert conn.client == SERVER and conn.server == CLIENT  # the first sender
    assert stream_of(events, 0) == (b"late reply!", [])
    assert stream_of(events, 1) == (b"more", [])


def test_synack_without_syn_knows_both_stream_starts():
    flow = Flow()
    segments = [flow.synack(), flow.seg(0, 2, b"cd"), flow.seg(0, 0, b"ab")]
    events = run(segments)
    conn = kinds(events, Opened)[0].conn
    assert conn.syn_seen and conn.client == CLIENT
    assert stream_of(events, 0) == (b"abcd", [])


def test_retransmitted_syn_is_the_same_connection():
    flow = Flow()
    tcp = TcpReassembler()
    events = run([flow.syn(), flow.syn(), flow.synack(), flow.seg(0, 0, b"x")], tcp)
    assert len(kinds(events, Opened)) == 1
    assert stream_of(events) == (b"x", [])


def test_reuse_of_a_four_tuple_after_fin_is_a_new_connection():
    first = Flow(isn=1000, server_isn=5000)
    segments = [*first.handshake(), first.seg(0, 0, b"one"), first.seg(0, 3, flags=FIN | ACK),
                first.seg(1, 0, flags=FIN | ACK, ack=first.ack_of(0, 4)), first.seg(0, 4, ack=first.ack_of(1, 1))]
    second = Flow(isn=777_000, server_isn=888_000)
    second.frame = first.frame
    segments += [*second.handshake(), second.seg(0, 0, b"two")]
    events = run(segments)
    opened = kinds(events, Opened)
    assert [o.conn.id for o in opened] == [1, 2]
    assert stream_of(events, 0, conn_id=1) == (b"one", [])
    assert stream_of(events, 0, conn_id=2) == (b"two", [])
    assert not kinds(events, TcpProblem)
    assert [(c.conn.id, c.reason) for c in kinds(events, Closed)] == [
        (1, "fin"), (1, "fin"), (2, "capture_end"), (2, "capture_end")]


def test_reuse_before_close_is_reported_and_closes_the_old_connection():
    first = Flow(isn=1000)
    segments = [*first.handshake(), first.seg(0, 0, b"one"), first.seg(0, 5, b"lost-before")]
    second = Flow(isn=50_000)
    second.frame = first.frame
    segments += [second.syn(), second.seg(0, 0, b"two")]
    events = run(segments)
    assert [o.conn.id for o in kinds(events, Opened)] == [1, 2]
    assert [p.kind for p in kinds(events, TcpProblem)] == ["port_reuse"]
    assert stream_of(events, 0, conn_id=1) == (b"onelost-before", [(3, 2)])
    assert [(c.conn.id, c.reason) for c in kinds(events, Closed)][:2] == [(1, "reused"), (1, "reused")]
    assert stream_of(events, 0, conn_id=2) == (b"two", [])


def test_rst_for_an_unknown_connection_is_ignored():
    flow = Flow()
    tcp = TcpReassembler()
    assert run([flow.seg(0, 0, flags=RST)], tcp) == []
    assert tcp.stats["ignored_unknown_rst"] == 1


def test_buffer_cap_declares_the_hole_lost():
    flow = Flow()
    tcp = TcpReassembler(max_buffered_per_flow=10)
    segments = [*flow.handshake(), flow.seg(0, 2, b"cccccc"), flow.seg(0, 8, b"dddddd"), flow.seg(0, 0, b"ab")]
    events = [event for segment in segments for event in tcp.feed(segment)]
    assert [p.kind for p in kinds(events, TcpProblem)] == ["buffer_limit"]
    assert stream_of(events) == (b"ccccccdddddd", [(0, 2)])
    assert tcp.stats["retransmitted_segments"] == 1  # the late "ab" is behind the stream position


def test_flow_cap_evicts_the_least_recently_active_connection():
    tcp = TcpReassembler(max_flows=2)
    flows = [Flow(client=("10.0.0.1", 1000 + n)) for n in range(3)]
    frame = 0
    events = []

    def feed(flow: Flow, segment_of) -> None:
        nonlocal frame
        flow.frame = frame
        segment = segment_of(flow)
        frame = flow.frame
        events.extend(tcp.feed(segment))

    feed(flows[0], lambda f: f.syn())
    feed(flows[1], lambda f: f.syn())
    feed(flows[0], lambda f: f.seg(0, 0, b"zero"))
    feed(flows[1], lambda f: f.seg(0, 0, b"one"))
    feed(flows[0], lambda f: f.seg(0, 4, b"again"))
    feed(flows[2], lambda f: f.syn())
    closed = kinds(events, Closed)
    assert [(c.conn.client[1], c.reason, c.frame_no) for c in closed] == [(1001, "evicted", 6), (1001, "evicted", 6)]
    assert tcp.stats["evicted"] == 1
    feed(flows[1], lambda f: f.seg(0, 3, b"after"))
    assert kinds(events, Opened)[-1].conn.id == 4  # the evicted flow comes back as a new, mid-stream connection
    assert not kinds(events, Opened)[-1].conn.syn_seen


def test_finished_connections_make_room_silently():
    tcp = TcpReassembler(max_flows=1)
    first = Flow(client=("10.0.0.1", 1))
    events = run([*first.handshake(), first.seg(0, 0, flags=RST)], tcp)
    second = Flow(client=("10.0.0.1", 2))
    second.frame = first.frame
    events = [event for segment in second.handshake() for event in tcp.feed(segment)]
    assert [type(e).__name__ for e in events] == ["Opened"]
    assert tcp.stats["evicted"] == 0


def test_impaired_capture_loses_exactly_the_dropped_segment():
    """captures/impaired.pcap is raw-tcp.pcap with segments reordered, retransmitted, overlapped and one dropped."""
    captures = Path(__file__).resolve().parent.parent / "captures"
    lost = json.loads((captures / "manifest.json").read_text())
    lost = next(entry for entry in (lost.values() if isinstance(lost, dict) else lost)
                if isinstance(entry, dict) and entry.get("file") == "impaired.pcap")["impairments"]["lost_segment"]

    def streams(name: str) -> tuple[dict[str, tuple[bytes, list]], TcpReassembler]:
        tcp = TcpReassembler()
        events = run([item for item in open_capture(captures / name) if isinstance(item, Segment)], tcp)
        conn = kinds(events, Opened)[0].conn
        assert len(kinds(events, Opened)) == 1 and conn.syn_seen
        return {conn.endpoint(d): stream_of(events, d) for d in (0, 1)}, tcp

    clean, _ = streams("raw-tcp.pcap")
    impaired, tcp = streams("impaired.pcap")
    assert clean.keys() == impaired.keys()
    damaged = [sender for sender in clean if impaired[sender] != clean[sender]]
    assert len(damaged) == 1
    sender = damaged[0]
    start, length = lost["stream_offset"], lost["length"]
    whole = clean[sender][0]
    assert impaired[sender] == (whole[:start] + whole[start + length:], [(start, length)])
    assert tcp.stats["retransmitted_segments"] >= 4 and tcp.stats["overlap_conflicts"] == 0


# Properties.

@st.composite
def segmented_stream(draw, max_size: int = 2000):
    """A stream, the ISN (often near wrap-around), and its cut into segments (offset, bytes)."""
    stream = draw(st.binary(min_size=1, max_size=max_size))
    isn = draw(st.one_of(st.integers(0, MASK), st.integers(MASK - 3000, MASK)))
    cuts = sorted(draw(st.sets(st.integers(1, len(stream) - 1), max_size=40))) if len(stream) > 1 else []
    bounds = [0, *cuts, len(stream)]
    pieces = [(a, stream[a:b]) for a, b in itertools.pairwise(bounds)]
    return stream, isn, pieces


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), case=segmented_stream())
def test_any_segmentation_order_and_duplication_gives_the_stream(data, case):
    stream, isn, pieces = case
    extra = data.draw(st.lists(st.sampled_from(pieces), max_size=10))
    # Overlapping retransmissions that re-cut the stream differently (same bytes).
    spans = data.draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(1, 200)), max_size=5))
    recut = [(a, stream[a:a + n]) for a, n in spans]
    fin = ("fin", len(stream))
    order = data.draw(st.permutations([*pieces, *extra, *recut, fin]))
    flow = Flow(isn=isn)
    segments = [flow.syn()]
    for offset, payload in order:
        if offset == "fin":
            segments.append(flow.seg(0, payload, flags=FIN | ACK))
        else:
            segments.append(flow.seg(0, offset, payload))
    events = run(segments)
    assert stream_of(events) == (stream, [])
    assert not kinds(events, TcpProblem)
    assert [(c.direction, c.reason) for c in kinds(events, Closed)] == [(0, "fin"), (1, "capture_end")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), case=segmented_stream())
def test_dropped_segments_give_gaps_that_add_up(data, case):
    stream, isn, pieces = case
    kept = [piece for piece in pieces if data.draw(st.booleans())]
    extra = data.draw(st.lists(st.sampled_from(kept), max_size=5)) if kept else []
    order = data.draw(st.permutations([*kept, *extra]))
    with_ack = data.draw(st.booleans())
    flow = Flow(isn=isn)
    segments = [flow.syn()] + [flow.seg(0, offset, payload) for offset, payload in order]
    segments.append(flow.seg(0, len(stream), flags=FIN | ACK))
    if with_ack:  # the receiver acknowledges everything: every hole is lost at once
        segments.append(flow.seg(1, 0, flags=ACK, ack=flow.ack_of(0, len(stream) + 1)))
    events = run(segments)
    delivered, gaps = stream_of(events)
    assert len(delivered) + sum(length for _, length in gaps) == len(stream)
    covered = bytearray(len(stream))
    for offset, payload in kept:
        covered[offset:offset + len(payload)] = b"\x01" * len(payload)
    expected_gaps, expected = [], []
    position = 0
    while position < len(stream):
        end = position
        while end < len(stream) and covered[end] == covered[position]:
            end += 1
        if covered[position]:
            expected.append(stream[position:end])
        else:
            expected_gaps.append((position, end - position))
        position = end
    assert delivered == b"".join(expected)
    assert gaps == expected_gaps
    assert next((c.direction, c.reason) for c in kinds(events, Closed)) == (0, "fin")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), case=segmented_stream())
def test_receiver_acks_declare_lost_bytes_as_soon_as_they_are_known(data, case):
    """ACKs of bytes the capture lacks give gaps at once; no captured byte is ever lost."""
    stream, isn, pieces = case
    dropped = [data.draw(st.booleans()) for _ in pieces]
    captured = [index for index, drop in enumerate(dropped) if not drop]
    order = data.draw(st.permutations(captured))
    flow = Flow(isn=isn)
    segments = [flow.syn(), flow.synack()]
    seen: set[int] = set()
    for index in order:
        segments.append(flow.seg(0, pieces[index][0], pieces[index][1]))
        seen.add(index)
        if data.draw(st.booleans()):
            # The receiver has every byte before the first segment that is neither lost nor captured yet.
            prefix = 0
            while prefix < len(pieces) and (dropped[prefix] or prefix in seen):
                prefix += 1
            acked = pieces[prefix][0] if prefix < len(pieces) else len(stream)
            segments.append(flow.seg(1, 0, flags=ACK, ack=flow.ack_of(0, acked)))
    segments.append(flow.seg(1, 0, flags=ACK, ack=flow.ack_of(0, len(stream))))  # the receiver got it all
    tcp = TcpReassembler()
    events = [event for segment in segments for event in tcp.feed(segment)]  # no close(): the ACKs suffice
    delivered, gaps = stream_of(events)
    expected_data = b"".join(payload for (_, payload), drop in zip(pieces, dropped, strict=True) if not drop)
    assert delivered == expected_data
    lost = [(offset, len(payload)) for (offset, payload), drop in zip(pieces, dropped, strict=True) if drop]
    merged: list[list[int]] = []
    for offset, length in lost:
        if merged and merged[-1][0] + merged[-1][1] == offset:
            merged[-1][1] += length
        else:
            merged.append([offset, length])
    assert gaps == [tuple(gap) for gap in merged]
    assert len(delivered) + sum(length for _, length in gaps) == len(stream)


def test_many_short_connections_keep_the_tables_bounded():
    tcp = TcpReassembler(max_flows=50)
    frame = 0
    for n in range(5000):
        flow = Flow(client=("10.0.0.1", 1024 + n % 3000), isn=n * 7919)
        flow.frame = frame
        for segment in [*flow.handshake(), flow.seg(0, 0, b"hi"), flow.seg(0, 2, flags=FIN | ACK),
                        flow.seg(1, 0, flags=FIN | ACK, ack=flow.ack_of(0, 3))]:
            tcp.feed(segment)
        frame = flow.frame
    assert tcp.stats["connections"] == 5000 and tcp.stats["evicted"] == 0
    assert len(tcp._conns) <= 50 and len(tcp._halves) <= 100
    assert len(tcp._idle) <= 2 * 50 + 1025 and len(tcp._finished) <= 2 * 50 + 1025


def _state(tcp: TcpReassembler) -> list:
    """Everything of a reassembler's connections that later segments or the capture end depend on."""
    return [(conn.id, conn.closed, conn.last_frame, conn.last_ts,
             [(h.base, h.isn, h.next_off, h.next_seq, h.fin_off, h.closed, h.open, h.fast, h.buffered,
               list(h.piece_off)) for h in conn._halves])
            for conn in tcp._conns.values()]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), case=segmented_stream())
def test_a_quiet_skipper_drops_only_what_feed_takes_without_an_event(data, case):
    """A decoder shard's reader drops a quiet connection's packets with ``QuietSkipper.skip`` instead of feeding
    them: whatever the order, loss and repetition, it drops only segments ``feed`` takes without an event, and
    leaves the reassembler as ``feed`` leaves it (so every later event, numbers and closes are the same)."""
    stream, isn, pieces = case
    kept = [piece for piece in pieces if data.draw(st.booleans())] or pieces[:1]
    extra = data.draw(st.lists(st.sampled_from(kept), max_size=5))
    order = data.draw(st.permutations([*kept, *extra]))
    flow = Flow(isn=isn)
    segments = [*flow.handshake()]
    for offset, payload in order:
        segments.append(flow.seg(0, offset, payload))
        if data.draw(st.integers(0, 4)) == 0:  # the server acknowledges, sometimes past a hole
            segments.append(flow.seg(1, 0, flags=ACK, ack=flow.ack_of(0, data.draw(st.integers(0, len(stream))))))
    if data.draw(st.booleans()):
        segments.append(flow.seg(0, len(stream), flags=FIN | ACK))
    fed, skipping = TcpReassembler(), TcpReassembler()
    skipper = skipping.skipper()
    dropped = 0
    for segment in segments:
        expected = fed.feed(segment)
        half = skipper.index.get(socket.inet_aton(segment.src) + socket.inet_aton(segment.dst)
                                 + segment.sport.to_bytes(2, "big") + segment.dport.to_bytes(2, "big"))
        if half is not None and skipper.skip(half, segment.flags, segment.seq, segment.ack, len(segment.payload),
                                             segment.frame_no, segment.ts):
            assert expected == [], segment
            dropped += 1
        else:
            assert repr(skipping.feed(segment)) == repr(expected), segment
        for tcp, events in ((fed, expected), (skipping, expected)):
            for event in events:
                if isinstance(event, Opened):
                    tcp.hush(tcp._conns[event.conn.id])
        assert _state(skipping) == _state(fed)
    assert skipper.count == dropped
    assert repr(skipping.close()) == repr(fed.close())
