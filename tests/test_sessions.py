"""Sessions per tunneled client and control request/reply matching."""

from __future__ import annotations

from mproxy_scapy.codec import pack, pack_header
from mproxy_scapy.decoder import DecodedFrame
from mproxy_scapy.parser import iter_frames
from mproxy_scapy.sessions import OPEN, SessionTracker

A = {"family": "IPv4", "address": "203.0.113.5", "port": 50000, "service": "https", "serviceport": 443,
     "name": "app.example.test"}
B = {"family": "IPv6", "address": "2001:db8::7", "port": 40000, "service": "http", "serviceport": 80,
     "name": "www.example.test"}


def record(data: bytes, direction: int, ts: float, number: int, tunnel: int = 1) -> DecodedFrame:
    (frame,) = iter_frames(data)
    ends = ("10.0.0.1:443", "10.0.0.2:60000")
    src, dst = ends if direction == 0 else ends[::-1]
    return DecodedFrame(frame, number, ts, "websocket", tunnel, direction, src, dst)


RELAY, DEVICE = 0, 1


def run(records):
    tracker = SessionTracker()
    for r in records:
        tracker.add(r)
    return tracker


def test_a_session_from_connection_to_end_with_bytes_each_way():
    tracker = run([
        record(pack(A, None, "connection"), RELAY, 10.0, 1),
        record(pack(A, b"hello" * 10), RELAY, 10.1, 2),
        record(pack(B, b"GET / HTTP/1.1\r\n\r\n"), RELAY, 10.2, 3),
        record(pack(A, b"x" * 7), DEVICE, 10.3, 4),
        record(pack(A, b"1024", "pause"), DEVICE, 10.35, 5),
        record(pack(A, b"1024", "resume"), DEVICE, 10.36, 6),
        record(pack(A, None, "end"), DEVICE, 10.5, 7),
    ])
    first, second = tracker.sessions
    assert (first.client_id, first.label, first.name, first.serviceport) == (
        "IPv4,203.0.113.5,50000", "https", "app.example.test", 443)
    assert first.inbound == RELAY and first.saw_connection
    assert first.frames == [2, 4] and first.data_bytes == [50, 7]
    assert (first.pauses, first.resumes, first.outcome) == (1, 1, "end")
    assert (first.first_ts, first.duration, first.first_frame, first.last_frame) == (10.0, 0.5, 1, 7)
    assert (second.client_id, second.outcome, second.label) == ("IPv6,2001:db8::7,40000", OPEN, "http")


def test_error_ends_a_session_and_the_same_client_later_starts_a_new_one():
    error = pack_header(A, b'{"message":"refused","code":"E_CONN"}', "error", True)
    tracker = run([
        record(pack(A, b"a"), RELAY, 1.0, 1),
        record(error, DEVICE, 1.5, 2),
        record(pack(A, None, "connection"), RELAY, 5.0, 3),
        record(pack(A, b"b"), RELAY, 5.1, 4),
    ])
    assert [(s.outcome, s.end_detail, s.first_frame) for s in tracker.sessions] == [
        ("error", "refused", 1), (OPEN, "", 3)]


def test_sessions_are_per_tunnel():
    tracker = run([record(pack(A, b"a"), RELAY, 1.0, 1, tunnel=1), record(pack(A, b"a"), RELAY, 1.0, 2, tunnel=2)])
    assert [s.tunnel for s in tracker.sessions] == [1, 2]


def test_control_requests_match_replies_the_other_way_with_latency():
    tracker = run([
        record(pack(None, [1, "hello", 254, ["add_token", "delete_token"]], "control"), RELAY, 1.0, 1),
        record(pack(None, [1, "auth", "secret"], "control"), DEVICE, 1.1, 2),
        record(pack(None, [-1, None], "control"), DEVICE, 1.25, 3),
        record(pack(None, [2, "add_token", "t"], "control"), DEVICE, 1.3, 4),
        record(pack(None, [-1, {"message": "bad", "code": "E_UNKNOWN_COMMAND"}], "control"), RELAY, 1.4, 5),
        record(pack(None, [-9, None], "control"), RELAY, 1.5, 6),
        record(pack(None, [0, "oops"], "control"), RELAY, 1.6, 7),
    ])
    hello, auth, add = tracker.exchanges
    assert (hello.command, hello.reply.pcap_frame, round(hello.latency, 6), hello.outcome) == ("hello", 3, 0.25, "ok")
    assert (auth.reply.pcap_frame, auth.outcome) == (5, "E_UNKNOWN_COMMAND")
    assert auth.reply.reply_to == 2 and round(auth.reply.reply_time, 6) == 0.3
    assert tracker.unanswered() == [add] and add.outcome == "unanswered"
    assert [r.pcap_frame for r in tracker.unmatched_replies] == [6]
    assert [r.pcap_frame for r in tracker.out_of_band] == [7]
    assert tracker.sessions == []


def test_garbage_and_non_json_control_are_ignored():
    (garbage,) = iter_frames(b"\x01\x02\x03", synced=False)
    tracker = run([DecodedFrame(garbage, 1, 1.0, "tcp", 1, 0, "a:1", "b:2"),
                   record(pack_header(None, b"not json", "control", True), RELAY, 1.0, 2)])
    assert tracker.sessions == [] and tracker.exchanges == []


def test_bytes_in_flight_after_an_error_stay_with_the_ended_session():
    error = pack_header(A, b'{"message":"refused","code":"E_CONN"}', "error", True)
    tracker = run([
        record(pack(A, None, "connection"), RELAY, 1.0, 1),
        record(error, DEVICE, 1.1, 2),
        record(pack(A, b"late"), RELAY, 1.2, 3),
        record(pack(A, None, "end"), RELAY, 1.3, 4),
    ])
    (session,) = tracker.sessions
    assert (session.outcome, session.frames, session.data_bytes) == ("error", [3, 1], [4, 0])


def test_without_connection_frames_data_after_end_is_a_new_session():
    tracker = run([record(pack(A, b"a"), RELAY, 1.0, 1), record(pack(A, None, "end"), DEVICE, 1.1, 2),
                   record(pack(A, b"b"), RELAY, 2.0, 3)])
    assert [s.outcome for s in tracker.sessions] == ["end", OPEN]


def test_a_frame_long_after_the_end_starts_a_new_session_and_the_ended_one_is_given_up():
    tracker = run([
        record(pack(A, None, "connection"), RELAY, 100.0, 1),
        record(pack(A, None, "end"), RELAY, 101.0, 2),
        record(pack(A, b"in flight"), DEVICE, 101.5, 3),
        record(pack(B, b"x"), RELAY, 160.0, 4),
    ])
    assert [s.frames for s in tracker.sessions] == [[2, 1], [1, 0]]
    assert tracker.take_finished(lambda tunnel: True)[0] == []
    tracker.add(record(pack(B, b"y"), RELAY, 161.5, 5))
    (ended,), _ = tracker.take_finished(lambda tunnel: True)
    assert (ended.client_id, ended.data_bytes) == ("IPv4,203.0.113.5,50000", [0, 9])
    tracker.add(record(pack(A, b"late"), DEVICE, 200.0, 6))
    assert [(s.client_id, s.frames) for s in tracker.sessions] == [
        ("IPv6,2001:db8::7,40000", [2, 0]), ("IPv4,203.0.113.5,50000", [0, 1])]
    finished, _ = tracker.take_finished(lambda tunnel: False)
    assert len(finished) == 2 and tracker.sessions == []
