"""The pipeline glue, first against small fakes of the TCP and carrier stages (their interfaces as
CONVENTIONS.md fixes them), so the routing, context and accounting are tested on their own."""

from __future__ import annotations

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import DecodedFrame, Decoder, StageEvent, frames_only

TUN = {"family": "IPv4", "address": "10.0.0.9", "port": 5555, "service": "http", "serviceport": 80,
       "name": "example.test"}


class Connection:
    def __init__(self, conn_id: int, syn_seen: bool = True) -> None:
        self.id = conn_id
        self.client = ("10.0.0.1", 40000 + conn_id)
        self.server = ("10.0.0.2", 443)
        self.syn_seen = syn_seen

    def endpoint(self, direction: int) -> str:
        ip, port = self.client if direction == 0 else self.server
        return f"{ip}:{port}"


class Opened:
    def __init__(self, conn, frame_no, ts):
        self.conn, self.frame_no, self.ts = conn, frame_no, ts


class Data:
    def __init__(self, conn, direction, offset, data, frame_no, ts):
        self.conn, self.direction, self.offset, self.data, self.frame_no, self.ts = (
            conn, direction, offset, data, frame_no, ts)


class Gap:
    def __init__(self, conn, direction, offset, length, frame_no, ts):
        self.conn, self.direction, self.offset, self.length, self.frame_no, self.ts = (
            conn, direction, offset, length, frame_no, ts)


class Closed:
    def __init__(self, conn, direction, reason, frame_no, ts):
        self.conn, self.direction, self.reason, self.frame_no, self.ts = conn, direction, reason, frame_no, ts


class TcpProblem:
    def __init__(self, conn, direction, kind, detail, frame_no, ts):
        self.conn, self.direction, self.kind, self.detail, self.frame_no, self.ts = (
            conn, direction, kind, detail, frame_no, ts)


class SourceProblem:
    def __init__(self, frame_no, ts, kind, detail):
        self.frame_no, self.ts, self.kind, self.detail = frame_no, ts, kind, detail


class Packet:
    """A capture item for the fake reassembler: it carries the TCP events the packet causes."""

    def __init__(self, frame_no, ts, *events):
        self.frame_no, self.ts, self.events = frame_no, ts, list(events)


class FakeReassembler:
    def feed(self, item):
        return item.events

    def close(self):
        return []


class MproxyBytes:
    def __init__(self, direction, data, frame_no, ts):
        self.direction, self.data, self.frame_no, self.ts = direction, data, frame_no, ts


class MproxyGap:
    def __init__(self, direction, length):
        self.direction, self.length = direction, length


class CarrierDetected:
    def __init__(self, kind, info):
        self.kind, self.info = kind, info


class Skipped:
    def __init__(self, direction, kind, nbytes):
        self.direction, self.kind, self.nbytes = direction, kind, nbytes


class FakeCarrier:
    """Raw M-PROXY on connections whose first byte is 0xFE; anything else skipped."""

    def __init__(self):
        self.kind = None

    def feed(self, direction, data, frame_no, ts):
        out = []
        if self.kind is None:
            self.kind = "tcp" if data[:1] == b"\xfe" else "none"
            if self.kind == "tcp":
                out.append(CarrierDetected("tcp", {}))
        if self.kind == "tcp":
            out.append(MproxyBytes(direction, bytes(data), frame_no, ts))
        else:
            out.append(Skipped(direction, "not_mproxy", len(data)))
        return out

    def gap(self, direction, length):
        return [MproxyGap(direction, length)] if self.kind == "tcp" else []

    def close(self):
        return []


def decode(items):
    decoder = Decoder(reassembler=FakeReassembler(), carrier_factory=FakeCarrier, keep_closed_tunnels=True)
    return decoder, list(decoder.decode(items))


def test_frames_get_the_packet_that_completed_them_and_the_tunnel_context():
    conn = Connection(1)
    first = pack(TUN, b"GET / HTTP/1.1\r\n\r\n")
    second = pack(TUN, None, "end")
    items = [
        Packet(1, 100.0, Opened(conn, 1, 100.0)),
        Packet(4, 100.5, Data(conn, 1, 0, first[:10], 4, 100.5)),
        Packet(5, 100.75, Data(conn, 1, 10, first[10:] + second[:3], 5, 100.75)),
        Packet(6, 101.0, Data(conn, 1, len(first) + 3, second[3:], 6, 101.0),
               Closed(conn, 0, "fin", 6, 101.0), Closed(conn, 1, "fin", 6, 101.0)),
    ]
    decoder, records = decode(items)
    frames = list(frames_only(records))
    assert [(r.pcap_frame, r.ts, r.frame.kind) for r in frames] == [(5, 100.75, "data"), (6, 101.0, "end")]
    data = frames[0]
    assert (data.tunnel, data.direction, data.src, data.dst, data.carrier) == (
        1, 1, "10.0.0.2:443", "10.0.0.1:40001", "tcp")
    assert data.frame.body == b"GET / HTTP/1.1\r\n\r\n"
    assert decoder.tunnels[1].frames == [0, 2]
    assert decoder.tunnels[1].closed == "fin"
    assert decoder.first_ts == 100.0


def test_connection_picked_up_mid_stream_syncs_on_the_first_believable_frame():
    conn = Connection(2, syn_seen=False)
    stream = b"tail of an earlier body" + pack(TUN, b"x" * 5)
    _, records = decode([Packet(1, 1.0, Data(conn, 0, 0, b"\xfe" + stream, 1, 1.0))])
    kinds = [r.frame.kind for r in records if isinstance(r, DecodedFrame)]
    assert kinds == ["garbage", "data"]
    garbage = records[1].frame
    assert garbage.length == 1 + len(b"tail of an earlier body")


NAMELESS = {k: v for k, v in TUN.items() if k != "name"}


def test_tcp_gap_is_reported_and_the_parser_resynchronises():
    conn = Connection(3)
    one, two, three = pack(NAMELESS, b"a" * 10), pack(NAMELESS, b"b" * 10), pack(NAMELESS, b"c" * 10)
    items = [
        Packet(1, 1.0, Data(conn, 0, 0, one, 1, 1.0)),
        Packet(3, 3.0, Gap(conn, 0, len(one), len(two), 3, 3.0), Data(conn, 0, len(one) + len(two), three, 3, 3.0)),
    ]
    decoder, records = decode(items)
    stage = [r for r in records if isinstance(r, StageEvent)]
    assert [(s.stage, s.kind, s.nbytes, s.pcap_frame) for s in stage if s.is_problem] == [("tcp", "gap", len(two), 3)]
    parsed = [r.frame for r in records if isinstance(r, DecodedFrame)]
    assert [f.kind for f in parsed] == ["data", "gap", "data"]
    assert [f.body for f in parsed if f.kind == "data"] == [b"a" * 10, b"c" * 10]
    assert sum(f.length for f in parsed) == len(one) + len(two) + len(three)
    assert decoder.problem_counts == {"tcp.gap": 1, "gap": 1}


def test_a_complete_frame_just_before_a_gap_is_not_truncated():
    conn = Connection(3)
    one = pack(TUN, b"a" * 10)
    _, records = decode([Packet(1, 1.0, Data(conn, 0, 0, one, 1, 1.0), Gap(conn, 0, len(one), 30, 2, 2.0))])
    first = next(r.frame for r in records if isinstance(r, DecodedFrame))
    assert (first.kind, first.body, first.problems) == ("data", b"a" * 10, [])


def test_non_mproxy_connections_are_counted_not_framed():
    conn = Connection(4)
    decoder, records = decode([Packet(1, 1.0, Data(conn, 0, 0, b"GET / HTTP/1.1\r\n\r\n", 1, 1.0))])
    assert not decoder.tunnels
    assert decoder.skipped == {"not_mproxy": 18}
    assert [(r.kind, r.is_problem) for r in records] == [("not_mproxy", False)]


def test_source_and_tcp_problems_become_counted_records():
    conn = Connection(5)
    decoder, records = decode([
        SourceProblem(7, 2.0, "truncated", "capture ends inside packet 7"),
        Packet(8, 2.5, TcpProblem(conn, 0, "overlap_conflict", "bytes differ", 8, 2.5)),
    ])
    assert [(r.stage, r.kind, r.pcap_frame) for r in records] == [
        ("capture", "truncated", 7), ("tcp", "overlap_conflict", 8)]
    assert decoder.problem_counts == {"capture.truncated": 1, "tcp.overlap_conflict": 1}


def test_an_unfinished_frame_at_capture_end_is_reported_truncated():
    conn = Connection(6)
    frame = pack(TUN, b"z" * 100)
    _, records = decode([Packet(1, 1.0, Data(conn, 1, 0, frame[:60], 1, 1.0))])
    last = records[-1]
    assert isinstance(last, DecodedFrame) and last.frame.kind == "data"
    assert [p.kind for p in last.frame.problems] == ["truncated"]
    assert last.pcap_frame == 1


def test_connection_reuse_gets_a_fresh_parser():
    first, second = Connection(7), Connection(7, syn_seen=True)
    frame = pack(TUN, b"q")
    _, records = decode([
        Packet(1, 1.0, Data(first, 0, 0, frame[:5], 1, 1.0), Closed(first, 0, "rst", 1, 1.0)),
        Packet(2, 2.0, Opened(second, 2, 2.0), Data(second, 0, 0, frame, 2, 2.0)),
    ])
    parsed = [r.frame for r in records if isinstance(r, DecodedFrame)]
    assert [(f.kind, [p.kind for p in f.problems]) for f in parsed] == [("garbage", ["truncated"]), ("data", [])]


def test_pcap_frame_is_the_packet_with_the_last_byte_of_a_frame():
    conn = Connection(8)
    named, following = pack(TUN, b"body"), pack(TUN, None, "end")
    _, records = decode([
        Packet(4, 4.0, Data(conn, 1, 0, named, 4, 4.0)),
        Packet(5, 5.0, Data(conn, 1, len(named), following, 5, 5.0)),
    ])
    frames = list(frames_only(records))
    assert [(r.frame.kind, r.pcap_frame, r.ts) for r in frames] == [("data", 4, 4.0), ("end", 5, 5.0)]


def test_a_huge_body_streams_past_and_its_frame_goes_to_the_packet_that_completes_it():
    conn = Connection(9)
    header = pack(NAMELESS, b"x" * 200_000)[:-200_000]
    decoder = Decoder(reassembler=FakeReassembler(), carrier_factory=FakeCarrier, max_body_held=1000)
    records = decoder.feed(Packet(1, 1.0, Data(conn, 1, 0, header, 1, 1.0)))
    for i in range(200):
        records += decoder.feed(Packet(2 + i, 2.0 + i, Data(conn, 1, len(header) + i * 1000, b"x" * 1000,
                                                            2 + i, 2.0 + i)))
    (record,) = [r for r in records if isinstance(r, DecodedFrame)]
    assert (record.frame.kind, record.frame.body_len, record.pcap_frame, record.frame.body) == (
        "data", 200_000, 201, None)
    assert record.frame.body_sha256 == __import__("hashlib").sha256(b"x" * 200_000).hexdigest()


def test_records_go_to_the_packet_that_completes_them():
    """Garbage ends where the next frame starts, so both are shown in that frame's packet; a frame the
    capture's end completes (cut short) goes to the last packet that carried bytes of its direction."""
    conn = Connection(10)
    first, second = pack(TUN, b"one"), pack(TUN, b"two")
    junk = b"plain text, not M-PROXY\r\n"
    cut = pack(TUN, b"cut short")[:-3]
    _, records = decode([
        Packet(1, 1.0, Data(conn, 1, 0, first, 1, 1.0)),
        Packet(2, 2.0, Data(conn, 1, len(first), junk, 2, 2.0)),
        Packet(3, 3.0, Data(conn, 1, len(first) + len(junk), second, 3, 3.0)),
        Packet(4, 4.0, Data(conn, 0, 0, cut, 4, 4.0)),
        Packet(5, 5.0, Data(conn, 1, len(first) + len(junk) + len(second), cut, 5, 5.0)),
        Packet(6, 6.0, Closed(conn, 1, "fin", 6, 6.0)),
    ])
    placed = [(r.frame.kind, r.direction, r.pcap_frame) for r in records if isinstance(r, DecodedFrame)]
    assert placed == [("data", 1, 1), ("garbage", 1, 3), ("data", 1, 3), ("data", 0, 4), ("data", 1, 5)]
