"""The analyzer's FrameParser: decoding, problems, resynchronisation, and byte accounting."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mproxy_scapy.codec import pack, pack_header
from mproxy_scapy.parser import FrameParser, iter_frames

ADDRESS = {"family": "IPv4", "address": "127.0.1.1", "port": 4321, "service": "https", "serviceport": 443,
           "name": "pokemap.hellabit.com"}


def kinds(records):
    return [r.kind for r in records]


def problem_kinds(record):
    return [p.kind for p in record.problems]


def assert_accounted(records, stream_len):
    offset = 0
    for record in records:
        assert record.offset == offset, record
        offset += record.length
    assert offset == stream_len


def test_every_vector_decodes_without_problems(vectors):
    for vector in vectors:
        wire = bytes.fromhex(vector["wire_hex"])
        records = iter_frames(wire)
        assert len(records) == 1, vector["name"]
        frame = records[0]
        assert frame.problems == [], vector["name"]
        delivered = vector["delivered"][0]["tun"]
        assert frame.family == delivered["family"]
        assert frame.address == delivered["address"]
        assert (frame.port is None and delivered["port"] == "") or str(frame.port) == delivered["port"]
        expected_body = delivered["data_hex"]
        assert (frame.body.hex() if frame.body else None) == (expected_body or None)
        assert frame.length == len(wire) and frame.dialect == "js"


def test_fields_numbers_and_kinds():
    frame, = iter_frames(pack(ADDRESS, None, "connection"))
    assert (frame.kind, frame.service, frame.servicename, frame.port, frame.serviceport, frame.datalen) == (
        "connection", "connection", "https", 4321, 443, 1)
    assert frame.client_id == "IPv4,127.0.1.1,4321"
    control, = iter_frames(pack(None, [1, "hello", 254, ["add_token", "delete_token"]], "control"))
    assert control.kind == "control" and control.control == [1, "hello", 254, ["add_token", "delete_token"]]
    assert control.client_id is None and control.port is None
    assert control.body_sha256 == hashlib.sha256(control.body).hexdigest()


def test_go_dialect_is_decoded_and_labelled_without_problems():
    header = b"IPv4,10.0.0.2,5555,0,end,443,example.test,\n"
    go_end, = iter_frames(bytes([0xFE, len(header)]) + header)
    assert (go_end.dialect, go_end.kind, go_end.name, go_end.servicename, go_end.problems) == (
        "go", "end", "example.test", None, [])


def test_bad_version_is_decoded_and_reported():
    wire = b"\xfd" + pack(ADDRESS, b"hello")[1:]
    frame, = iter_frames(wire)
    assert problem_kinds(frame) == ["bad_version"] and frame.body == b"hello"


@pytest.mark.parametrize(("datalen", "problem"), [(b"abc", "datalen_not_numeric"), (b"-5", "datalen_negative"),
                                                  (b"", "datalen_not_numeric")])
def test_unreadable_datalen_reports_and_resynchronises(datalen, problem):
    header = b"IPv4,1.2.3.4,5," + datalen + b",https,443,x"
    good = pack(ADDRESS, b"after")
    wire = bytes([0xFE, len(header)]) + header + b"lost body" + good
    records = iter_frames(wire)
    assert kinds(records) == ["data", "garbage", "data"]
    assert problem_kinds(records[0]) == [problem]
    assert problem_kinds(records[1]) == ["garbage_skipped"] and records[1].length == len(b"lost body")
    assert records[2].body == b"after"
    assert_accounted(records, len(wire))


def test_too_few_fields_with_a_length_is_still_decoded():
    header = b"IPv4,1.2.3.4,5,3"
    frame, = iter_frames(bytes([0xFE, len(header)]) + header + b"abc")
    assert problem_kinds(frame) == ["too_few_fields"] and frame.body == b"abc"


def test_garbage_between_frames_is_skipped_and_counted():
    first, second = pack(ADDRESS, b"one"), pack(ADDRESS, b"two")
    wire = first + b"\x00\xfe\x01junk\xfe" + second
    records = iter_frames(wire)
    assert kinds(records) == ["data", "garbage", "data"]
    assert records[1].length == 8 and records[2].body == b"two"
    assert_accounted(records, len(wire))


def test_stream_picked_up_mid_frame_syncs_on_the_first_believable_frame():
    wire = pack(ADDRESS, b"x" * 50)[20:] + pack(ADDRESS, b"whole")
    records = iter_frames(wire, synced=False)
    assert kinds(records) == ["garbage", "data"] and records[1].body == b"whole"
    assert "before the first frame" in records[0].problems[0].detail


def test_wrapped_header_whose_short_reading_parses_is_recognised_from_its_body():
    long_name = ".".join(["n" * 59] * 5) + ".example"
    body = b"\x16\x03" + bytes(range(256)) * 2
    wire = pack({**ADDRESS, "name": long_name}, body) + pack(ADDRESS, b"next")
    records = iter_frames(wire)
    assert kinds(records) == ["data", "data"]
    assert problem_kinds(records[0]) == ["hdrlen_wrapped"]
    assert records[0].name == long_name and records[0].body == body and records[1].body == b"next"
    assert_accounted(records, len(wire))


def test_wrapped_header_that_only_parses_at_hdrlen_plus_256():
    name = ".".join(["m" * 47] * 5)
    wire = pack({"family": "IPv6", "address": "2001:db8::" + "1" * 4, "port": 1, "service": "h" * 3,
                 "serviceport": 1, "name": name}, b"z")
    header_len = len(wire) - 3
    assert header_len - 256 < 20, "the short reading must stop before datalen"
    records = iter_frames(wire + pack(ADDRESS, b"next"))
    assert problem_kinds(records[0]) == ["hdrlen_wrapped"] and records[0].name == name
    assert records[1].body == b"next"


def test_wrapped_connection_header_is_not_recognised_but_resynchronises_and_reports():
    wire = pack({**ADDRESS, "name": ".".join(["q" * 60] * 5)}, None, "connection") + pack(ADDRESS, b"next")
    records = iter_frames(wire)
    assert records[0].kind == "connection" and records[0].name.startswith("q")
    assert "garbage_skipped" in [p for r in records for p in problem_kinds(r)]
    assert records[-1].body == b"next"
    assert_accounted(records, len(wire))


def test_frames_are_never_held_back_for_bytes_past_their_end():
    parser = FrameParser()
    for frame in (pack(ADDRESS, None, "connection"), pack(ADDRESS, b"1048576", "pause"),
                  pack_header(ADDRESS, None, "end"), pack(ADDRESS, b"A" * 600)):
        assert len(parser.feed(frame)) == 1


def test_text_body_after_a_short_header_is_not_mistaken_for_a_wrapped_header():
    body = b"A" * 600
    wire = pack(ADDRESS, body) + pack(ADDRESS, b"next")
    records = iter_frames(wire)
    assert [r.body for r in records] == [body, b"next"] and all(not r.problems for r in records)


def test_truncated_frame_at_stream_end():
    wire = pack(ADDRESS, b"0123456789")[:-4]
    frame, = iter_frames(wire)
    assert problem_kinds(frame) == ["truncated"] and frame.length == len(wire) and frame.body is None


def test_huge_datalen_claim_allocates_nothing_and_is_truncated_at_close():
    header = b"IPv4,1.2.3.4,5,999999999999999,https,443,x"
    parser = FrameParser()
    assert parser.feed(bytes([0xFE, len(header)]) + header) == []
    for _ in range(50):
        assert parser.feed(b"z" * 1_000_000) == []
    assert parser.buffered <= 1_000_000 + 2 + len(header)
    frame, = parser.close()
    assert problem_kinds(frame) == ["truncated"] and frame.body_len == 50_000_000


def test_body_larger_than_the_hold_limit_is_hashed_in_passing():
    body = bytes(range(256)) * 100
    parser = FrameParser(max_body_held=1000)
    wire = pack(ADDRESS, body)
    records = [r for i in range(0, len(wire), 777) for r in parser.feed(wire[i : i + 777])] + parser.close()
    frame, = records
    assert frame.body is None and frame.body_len == len(body)
    assert frame.body_sha256 == hashlib.sha256(body).hexdigest() and frame.problems == []


def test_gap_inside_a_body_keeps_sync():
    first, second = pack(ADDRESS, b"x" * 100), pack(ADDRESS, b"after")
    parser = FrameParser()
    records = parser.feed(first[:70]) + parser.gap(30) + parser.feed(first[100:] + second) + parser.close()
    assert kinds(records) == ["data", "data"]
    assert problem_kinds(records[0]) == ["gap"] and records[0].gap_bytes == 30 and records[0].body is None
    assert records[1].body == b"after" and records[1].problems == []
    assert_accounted(records, len(first) + len(second))


def test_gap_across_frames_resynchronises():
    frames = [pack(ADDRESS, bytes([65 + i]) * 40) for i in range(4)]
    wire = b"".join(frames)
    lost_from, lost_to = 30, len(frames[0]) + len(frames[1]) + 10
    parser = FrameParser()
    records = parser.feed(wire[:lost_from]) + parser.gap(lost_to - lost_from) + parser.feed(wire[lost_to:])
    records += parser.close()
    assert [r.body for r in records if r.kind == "data" and r.body] == [frames[3][-40:]]
    assert sum(r.gap_bytes for r in records) == lost_to - lost_from
    assert_accounted(records, len(wire))


frame_strategy = st.builds(
    lambda service, body, header_only: (pack_header(ADDRESS, body, service) + (body if header_only else b""))
    if header_only else pack(ADDRESS, body, service),
    st.sampled_from([None, "end", "pause", "connection", "error"]),
    st.binary(max_size=300),
    st.booleans(),
)


@settings(max_examples=200)
@given(st.lists(frame_strategy, min_size=1, max_size=8), st.data())
def test_any_split_gives_the_same_records(frames, data):
    wire = b"".join(frames)
    whole = [(r.offset, r.length, r.kind, r.body) for r in iter_frames(wire)]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    assert [(r.offset, r.length, r.kind, r.body) for r in iter_frames(chunks)] == whole
    assert len(whole) == len(frames)


@settings(max_examples=300)
@given(st.binary(max_size=2000), st.lists(st.integers(1, 300), max_size=20), st.booleans())
def test_arbitrary_bytes_never_raise_and_every_byte_is_accounted(blob, sizes, synced):
    parser = FrameParser(synced=synced)
    records, at = [], 0
    for size in sizes:
        records += parser.feed(blob[at : at + size])
        at += size
    records += parser.feed(blob[at:]) + parser.close()
    assert_accounted(records, len(blob))


@settings(max_examples=200)
@given(st.lists(frame_strategy, min_size=2, max_size=6), st.data())
def test_gaps_are_accounted_and_later_frames_recovered(frames, data):
    wire = b"".join(frames)
    start = data.draw(st.integers(0, len(wire) - 1))
    length = data.draw(st.integers(1, len(wire) - start))
    parser = FrameParser()
    records = parser.feed(wire[:start]) + parser.gap(length) + parser.feed(wire[start + length :]) + parser.close()
    assert_accounted(records, len(wire))
    assert sum(r.gap_bytes for r in records) == length
    frame_starts, offset = [], 0
    for frame in frames:
        frame_starts.append(offset)
        offset += len(frame)
    intact = {o for o in frame_starts if o >= start + length}
    frame_at = {o: len(f) for o, f in zip(frame_starts, frames, strict=True)}
    decoded = {r.offset for r in records if r.is_frame and r.gap_bytes == 0 and frame_at.get(r.offset) == r.length}
    assert intact <= decoded


# Each record comes out of the feed that completes it: no wait for bytes that cannot change it.

def feeds(chunks: list[bytes]) -> list[list[tuple[str, int]]]:
    """(kind, offset) of the records each feed returns, then those of close()."""
    parser = FrameParser()
    out = [[(r.kind, r.offset) for r in parser.feed(chunk)] for chunk in chunks]
    out.append([(r.kind, r.offset) for r in parser.close()])
    return out


FRAME = pack(ADDRESS, b"body")


@pytest.mark.parametrize("junk", [b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\xfe\x05ab\x01de" + b"x" * 30,
                                  b"\x00\x01binary\xff junk"], ids=["text", "false-sync", "binary"])
def test_junk_is_settled_by_the_first_byte_no_header_has(junk):
    """Junk between frames ends where the next frame starts: both come out with the chunk that holds that frame."""
    n = len(FRAME)
    assert feeds([FRAME, junk, FRAME, FRAME]) == [
        [("data", 0)], [], [("garbage", n), ("data", n + len(junk))], [("data", 2 * n + len(junk))], []]


def test_a_header_only_record_is_settled_when_the_next_frame_starts():
    """0xFE, a short header that is not one, text: it may still be a wrapped header until a 0xFE rules that out."""
    false_sync = b"\xfe\x05abcde"
    assert feeds([FRAME, false_sync, b"x" * 30, FRAME]) == [
        [("data", 0)], [], [], [("data", len(FRAME)), ("garbage", len(FRAME) + 7), ("data", len(FRAME) + 37)], []]


def test_a_stray_0xfe_in_junk_does_not_hold_back_the_frame_after_it():
    """A candidate whose header is cut short but already holds a control byte is passed over at once."""
    junk = b"junk\xfe\xf0\x01more"
    assert feeds([FRAME, junk + FRAME]) == [
        [("data", 0)], [("garbage", len(FRAME)), ("data", len(FRAME) + len(junk))], []]
