"""The adversarial catalogue of issue 7: one named test per hostile input, in both decoders where it applies.

Each input must give a specific message (a ``problems`` entry, a stage event,
a one-line error, or a Wireshark expert info), never a traceback, a Lua
error or a hang, and decoding must go on after it. Python runs as a user
runs it (``mproxy dissect``); the Lua dissector under real tshark with an
empty profile. A raw tunnel whose first segment holds less than a whole
header is not claimed by the Lua heuristic, so those tests name the tunnel
port (``mproxy.tcp_ports``), as a user would.
"""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import pytest
from cli_run import assert_clean_error, mproxy
from hardening.adversarial import (
    AFTER,
    BEFORE,
    TUN,
    TUNNEL_PORT,
    dissect,
    dissect_text,
    header,
    lua_experts,
    lua_kinds,
    lua_records,
    packets_of,
    pcap_bytes,
    pcapng_block,
    pcapng_bytes,
    tshark,
    tunnel,
    ws_tunnel,
)
from tunnel_capture import Conversation, Packet, write_pcap
from wsproto.events import BytesMessage

from mproxy_scapy.codec import pack, pack_header
from mproxy_scapy.parser import FrameParser
from mproxy_scapy.pcapwriter import ACK, PSH, SYN, PcapWriter, tcp_packet

from wsstreams import WsPair, raw_frame

PORT_PREF = ("-o", f"mproxy.tcp_ports:{TUNNEL_PORT}")


def kinds_of(result) -> list[str]:
    return [f["kind"] for f in result.frames()]


# -- M-PROXY headers ---------------------------------------------------------------------------------

HUGE_DATALEN = header("IPv4,192.0.2.10,5000,999999999999999,http") + b"x" * 100


def test_datalen_999999999999999_is_truncated_at_stream_end(tmp_path):
    result = dissect(tunnel(tmp_path / "huge.pcap", BEFORE + HUGE_DATALEN))
    assert result.returncode == 0
    _before, huge = result.frames()
    assert huge["datalen"] == 999999999999999 and huge["body_len"] == 100
    assert huge["problems"] == [{"kind": "truncated",
                                 "detail": "stream ended 999999999999899 bytes before the frame's end"}]


def test_datalen_999999999999999_allocates_nothing_by_the_claim():
    parser = FrameParser()
    tracemalloc.start()
    try:
        parser.feed(HUGE_DATALEN[:60])
        for _ in range(64):
            parser.feed(b"y" * 65536)  # 4 MiB of body arrives
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (frame,) = parser.close()
    assert frame.datalen == 999999999999999 and frame.body_len == 60 - (2 + HUGE_DATALEN[1]) + 64 * 65536
    assert peak < 1 << 20, f"{peak} bytes traced: the body is held or the claim allocated"


@pytest.mark.tshark
def test_datalen_999999999999999_lua(tmp_path, home):
    experts = lua_experts(tunnel(tmp_path / "huge.pcap", BEFORE + HUGE_DATALEN), home)
    assert any("incomplete frame" in e for e in experts), experts


def test_hdrlen_0(tmp_path):
    result = dissect(tunnel(tmp_path / "h0.pcap", BEFORE + header(b"", hdrlen=0) + AFTER))
    _before, zero, after = result.frames()
    assert (zero["hdrlen"], zero["length"]) == (0, 2)
    assert zero["problems"] == [{"kind": "too_few_fields", "detail": "1 fields, at least 5 expected"}]
    assert after["body_len"] == 5 and after["problems"] == []


@pytest.mark.tshark
def test_hdrlen_0_lua(tmp_path, home):
    pcap = tunnel(tmp_path / "h0.pcap", BEFORE + header(b"", hdrlen=0) + AFTER)
    assert lua_kinds(pcap, home) == ["data", "data", "data"]
    assert "1 fields, at least 5 expected" in lua_experts(pcap, home)


def test_header_of_255_commas(tmp_path):
    result = dissect(tunnel(tmp_path / "commas.pcap", BEFORE + header(b"," * 255) + AFTER))
    _before, commas, after = result.frames()
    assert commas["hdrlen"] == 255 and commas["length"] == 257
    assert commas["problems"] == [{"kind": "datalen_not_numeric", "detail": "datalen ''"}]
    assert after["body_len"] == 5 and after["problems"] == []


@pytest.mark.tshark
def test_header_of_255_commas_lua(tmp_path, home):
    pcap = tunnel(tmp_path / "commas.pcap", BEFORE + header(b"," * 255) + AFTER)
    assert lua_kinds(pcap, home) == ["data", "data", "data"]
    assert "datalen ''" in lua_experts(pcap, home)


NOT_UTF8 = header(b"IPv4,192.0.\xff\x00.10,5000,3,http") + b"abc"


def test_non_utf8_and_nul_bytes_in_the_header(tmp_path):
    pcap = tunnel(tmp_path / "utf8.pcap", BEFORE + NOT_UTF8 + AFTER)
    result = dissect(pcap)
    _before, bad, after = result.frames()
    assert bad["problems"] == [{"kind": "header_not_utf8", "detail": "header bytes are not valid UTF-8"}]
    assert bad["datalen"] == 3 and after["problems"] == []
    line = dissect_text(pcap).stdout.splitlines()[1]
    assert "\x00" not in line and "IPv4,192.0.\ufffd\\x00.10,5000" in line


@pytest.mark.tshark
def test_non_utf8_and_nul_bytes_in_the_header_lua(tmp_path, home):
    pcap = tunnel(tmp_path / "utf8.pcap", BEFORE + NOT_UTF8 + AFTER)
    assert lua_kinds(pcap, home) == ["data", "data", "data"]
    assert "header bytes are not valid UTF-8" in lua_experts(pcap, home)


EVIL_NAME = "evil\x1b[31mRED\x1b[0m\nline2\r\x07"


def test_name_with_ansi_escapes_and_newlines_is_shown_escaped(tmp_path):
    pcap = tunnel(tmp_path / "ansi.pcap", pack({**TUN, "name": EVIL_NAME}, b"hi"))
    result = dissect_text(pcap)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "     4    0.010000 10.1.0.1:7443 → 10.1.0.2:51000 t1← data IPv4,192.0.2.10,5000 "
        "http/evil\\x1b[31mRED\\x1b[0m\\nline2\\r\\x07 datalen=2"
    ]
    assert dissect(pcap).frames()[0]["name"] == EVIL_NAME  # JSON keeps the value, escaped by JSON itself


@pytest.mark.tshark
def test_name_with_ansi_escapes_and_newlines_is_shown_escaped_lua(tmp_path, home):
    pcap = tunnel(tmp_path / "ansi.pcap", BEFORE + pack({**TUN, "name": EVIL_NAME}, b"hi") + AFTER)
    for args in ((), ("-V",)):
        result = tshark(pcap, home, *args)
        assert result.returncode == 0 and not result.lua_errors()
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
        assert "line2" not in "".join(line for line in result.stdout.splitlines() if line.startswith("line2"))


@pytest.mark.parametrize("version", [0x00, 0xFF], ids=["0x00", "0xff"])
def test_version_byte(tmp_path, version):
    bad = header("IPv4,192.0.2.10,5000,2,http", version=version) + b"hi"
    result = dissect(tunnel(tmp_path / "v.pcap", BEFORE + bad + AFTER))
    _before, frame, after = result.frames()
    assert frame["version"] == version and frame["body_len"] == 2
    assert frame["problems"] == [{"kind": "bad_version", "detail": f"version byte 0x{version:02x}, v1 is 0xfe"}]
    assert after["problems"] == []


@pytest.mark.tshark
@pytest.mark.parametrize("version", [0x00, 0xFF], ids=["0x00", "0xff"])
def test_version_byte_lua(tmp_path, home, version):
    bad = header("IPv4,192.0.2.10,5000,2,http", version=version) + b"hi"
    pcap = tunnel(tmp_path / "v.pcap", BEFORE + bad + AFTER)
    assert lua_kinds(pcap, home) == ["data", "data", "data"]
    assert f"version byte 0x{version:02x}, v1 is 0xfe" in lua_experts(pcap, home)


# -- segmentation and TCP -----------------------------------------------------------------------------

SPLIT_FRAME = pack(TUN, b"0123456789")


def split_everywhere(path: Path) -> Path:
    """One tunnel per split point: the frame then AFTER, cut into two segments at byte k of the frame."""
    conversations = []
    stream = SPLIT_FRAME + AFTER
    for k in range(1, len(SPLIT_FRAME)):
        conversation = Conversation(client=("10.1.0.2", 20000 + k))
        conversation.handshake()
        conversation.packets += conversation.segments(1, stream, [k], conversation.start + 0.01)
        conversation.close((0, len(stream)), conversation.start + 1)
        conversations.append(conversation)
    return write_pcap(path, *conversations)


def test_a_frame_split_at_every_possible_byte(tmp_path):
    result = dissect(split_everywhere(tmp_path / "split.pcap"))
    frames = result.frames()
    assert len(frames) == 2 * (len(SPLIT_FRAME) - 1)
    assert [f["body_len"] for f in frames] == [10, 5] * (len(SPLIT_FRAME) - 1)
    assert result.problems() == []
    assert {f["pcap_frame"] % 8 for f in frames} == {5}  # completed by each tunnel's second segment


@pytest.mark.tshark
def test_a_frame_split_at_every_possible_byte_lua(tmp_path, home):
    pcap = split_everywhere(tmp_path / "split.pcap")
    rows, _ = lua_records(pcap, home, *PORT_PREF)
    assert [kind for _, kinds, _ in rows for kind in kinds] == ["data"] * (2 * (len(SPLIT_FRAME) - 1))
    assert not [e for _, _, experts in rows for e in experts if "M-PROXY" in e or "frame" in e]


def syn_flood_then_tunnel(path: Path, cuts: list[int]) -> Path:
    """20,000 SYNs from different sources, then one tunnel whose two frames are cut at ``cuts``."""
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for i in range(20_000):
            writer.write(1700000000 + i * 1e-5, tcp_packet(f"198.51.{i >> 8 & 255}.{i & 255}", "10.1.0.1",
                                                            1024 + i, TUNNEL_PORT, i * 7919, 0, SYN))
        conversation = Conversation(start=1700000001.0)
        conversation.handshake()
        conversation.packets += conversation.segments(1, BEFORE + AFTER, cuts, 1700000001.1)
        conversation.close((0, len(BEFORE + AFTER)), 1700000002)
        for ts, packet in conversation.raw_packets():
            writer.write(ts, packet)
    return path


def test_syn_flood_before_a_tunnel(tmp_path):
    result = dissect(syn_flood_then_tunnel(tmp_path / "synflood.pcap", [20]), "--max-flows", "1000")
    assert result.returncode == 0
    assert [f["body_len"] for f in result.frames()] == [6, 5]
    evicted = [d for k, d in result.problems() if k == "tcp.evicted"]
    assert len(evicted) == 20_001 - 1000  # every half-open connection pushed out is named, the tunnel is not
    assert "20008 TCP packets" in result.stderr


@pytest.mark.tshark
def test_syn_flood_before_a_tunnel_lua(tmp_path, home):
    assert lua_kinds(syn_flood_then_tunnel(tmp_path / "synflood.pcap", []), home) == ["data", "data"]


def overlapping(path: Path, first: bytes, second_offset: int, second: bytes, *, in_order: bool) -> Path:
    """BEFORE+AFTER where bytes are sent twice with different content: buffered both times, or delivered first."""
    conversation = Conversation()
    conversation.handshake()
    stream = BEFORE + AFTER
    base, other = conversation.isn[1] + 1, conversation.isn[0] + 1
    t = conversation.start + 0.01
    head = [Packet(t, 1, PSH | ACK, base, other, stream[:30])]
    copies = [Packet(t, 1, PSH | ACK, base + 30, other, first),
              Packet(t, 1, PSH | ACK, base + second_offset, other, second)]
    rest = Packet(t, 1, PSH | ACK, base + 30 + len(first), other, stream[30 + len(first):])
    conversation.packets += head + copies + [rest] if in_order else [*copies, rest, *head]
    conversation.close((0, len(stream)), t + 1)
    return write_pcap(path, conversation)


def test_overlapping_retransmission_with_different_bytes_is_reported(tmp_path):
    stream = BEFORE + AFTER
    pcap = overlapping(tmp_path / "overlap.pcap", stream[30:50], 40, b"X" * 10, in_order=False)
    result = dissect(pcap)
    assert [f["body_len"] for f in result.frames()] == [6, 5]  # the first copy is kept
    conflicts = [d for k, d in result.problems() if k == "tcp.overlap_conflict"]
    assert len(conflicts) == 1 and "10 overlapping bytes at stream offset 40" in conflicts[0]


def test_retransmission_of_delivered_bytes_with_different_bytes_is_reported(tmp_path):
    stream = BEFORE + AFTER
    pcap = overlapping(tmp_path / "overlap.pcap", stream[30:50], 40, b"X" * 10, in_order=True)
    result = dissect(pcap)
    assert [k for k, _ in result.problems()] == ["tcp.overlap_conflict"]


@pytest.mark.tshark
def test_overlapping_retransmission_with_different_bytes_lua(tmp_path, home):
    stream = BEFORE + AFTER
    for in_order in (False, True):
        pcap = overlapping(tmp_path / "overlap.pcap", stream[30:50], 40, b"X" * 10, in_order=in_order)
        result = tshark(pcap, home, *PORT_PREF, "-V")
        assert result.returncode == 0 and not result.lua_errors(), result.stderr


# -- 100,000 flows ------------------------------------------------------------------------------------

FLOWS = 100_000
LIVE = 1000


@pytest.fixture(scope="module")
def many_flows():
    """100,000 connections, each a SYN and the first 30 bytes of a frame, through the decoder API."""
    from mproxy_scapy.decoder import Decoder
    from mproxy_scapy.pcap import Segment
    from mproxy_scapy.tcp import TcpReassembler

    decoder = Decoder(reassembler=TcpReassembler(max_flows=LIVE))
    problems: dict[str, int] = {}
    live_max = 0
    tracemalloc.start()
    try:
        for i in range(FLOWS):
            src = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            for segment in (Segment(2 * i + 1, 1.0 + i * 1e-4, src, "10.255.0.1", 40000, TUNNEL_PORT, 1000, 0,
                                    SYN, b"", 4),
                            Segment(2 * i + 2, 1.0 + i * 1e-4, src, "10.255.0.1", 40000, TUNNEL_PORT, 1001, 0,
                                    PSH | ACK, BEFORE[:30], 4)):
                for record in decoder.feed(segment):
                    for problem in record.problems if hasattr(record, "frame") else ():
                        problems[problem.kind] = problems.get(problem.kind, 0) + 1
            if i == FLOWS // 10:
                gc.collect()  # connections and their halves refer to each other: count what is reachable
                memory_at_tenth = tracemalloc.get_traced_memory()[0]
            if i % 997 == 0:
                live_max = max(live_max, len(decoder._tcp._conns), len(decoder._conns))
        gc.collect()
        memory_at_end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return decoder, problems, live_max, memory_at_tenth, memory_at_end


@pytest.mark.slow
def test_100000_concurrent_flows_are_evicted_and_reported(many_flows):
    decoder, problems, live_max, _, _ = many_flows
    assert live_max <= LIVE
    assert decoder._tcp.stats["evicted"] == FLOWS - LIVE
    assert decoder.problem_counts["tcp.evicted"] == FLOWS - LIVE
    assert problems == {"truncated": FLOWS - LIVE}  # each evicted flow's partial frame, named


@pytest.mark.slow
def test_100000_concurrent_flows_memory_stays_bounded(many_flows):
    _, _, _, memory_at_tenth, memory_at_end = many_flows
    assert memory_at_end < memory_at_tenth * 1.5, (memory_at_tenth, memory_at_end)


# -- WebSocket ---------------------------------------------------------------------------------------


def ws_2_63(path: Path) -> Path:
    pair = WsPair()
    pair.client_sends(BytesMessage(data=BEFORE))
    pair.c2s += raw_frame(0x82, b"", mask=b"abcd", length=1 << 63) + bytes(50)
    pair.client_sends(BytesMessage(data=AFTER))
    return ws_tunnel(path, bytes(pair.c2s), bytes(pair.s2c), pair.request_len, pair.response_len)


def test_websocket_frame_claiming_2_63_bytes(tmp_path):
    result = dissect(ws_2_63(tmp_path / "ws63.pcap"))
    assert [f["body_len"] for f in result.frames()] == [6, 5]
    assert result.problems() == [
        ("carrier.length_too_large", "frame claims 9223372036854775808 payload bytes"),
        ("carrier.ws_resynced", "framing found again after 50 skipped bytes"),
    ]


@pytest.mark.tshark
def test_websocket_frame_claiming_2_63_bytes_lua(tmp_path, home):
    rows, _ = lua_records(ws_2_63(tmp_path / "ws63.pcap"), home)
    kinds = [kind for _, k, _ in rows for kind in k]
    assert kinds[0] == "data" and [e for _, _, experts in rows for e in experts]


def masked_server(path: Path) -> Path:
    pair = WsPair()
    pair.server_sends(BytesMessage(data=BEFORE))
    pair.s2c += raw_frame(0x82, AFTER, mask=b"\x01\x02\x03\x04")
    pair.server_sends(BytesMessage(data=AFTER))
    return ws_tunnel(path, bytes(pair.c2s), bytes(pair.s2c), pair.request_len, pair.response_len)


def test_masked_server_frames(tmp_path):
    result = dissect(masked_server(tmp_path / "masked.pcap"))
    assert [f["body_len"] for f in result.frames()] == [6, 5, 5]
    assert result.problems() == [("carrier.server_frame_masked", "opcode 2, 47 bytes")]


@pytest.mark.tshark
def test_masked_server_frames_lua(tmp_path, home):
    pcap = masked_server(tmp_path / "masked.pcap")
    rows, _ = lua_records(pcap, home)
    assert [kind for _, k, _ in rows for kind in k] == ["data", "data", "data"]
    assert [e for _, _, experts in rows for e in experts if "mask" in e.lower()]


BOMB_BODY = 8 * 1024 * 1024


def deflate_bomb(path: Path) -> Path:
    """An 8 MiB frame body of zeros in one compressed message (about 8 KB on the wire), then a small message."""
    pair = WsPair(deflate={})
    pair.server_sends(BytesMessage(data=BEFORE + pack(TUN, bytes(BOMB_BODY))), BytesMessage(data=AFTER))
    return ws_tunnel(path, bytes(pair.c2s), bytes(pair.s2c), pair.request_len, pair.response_len)


def test_permessage_deflate_bomb_is_capped_and_reported(tmp_path):
    pcap = deflate_bomb(tmp_path / "bomb.pcap")
    assert pcap.stat().st_size < 20_000
    result = dissect(pcap, "--max-message", "1M")
    assert result.returncode == 0
    assert result.frames()[0]["body_len"] == 6
    assert ("carrier.decompression_capped", "message inflated past 1048576 bytes") in result.problems()
    assert sum(f["body_len"] for f in result.frames()) <= 1 << 20


def test_permessage_deflate_bomb_frames_after_the_capped_message_decode(tmp_path):
    result = dissect(deflate_bomb(tmp_path / "bomb.pcap"), "--max-message", "1M")
    assert [f["body_len"] for f in result.frames()][-1] == 5


@pytest.mark.tshark
@pytest.mark.parametrize("passes", [(), ("-2",)], ids=["one-pass", "two-pass"])
def test_permessage_deflate_bomb_lua(tmp_path, home, passes):
    """The Lua unframer inflates (context takeover: with the direction's earlier messages), under a 64 MiB cap.

    The first frame is whole after the message's first segment, and shown there (as ``mproxy dissect`` places it).
    """
    pcap = deflate_bomb(tmp_path / "bomb.pcap")
    result = tshark(pcap, home, *passes, "-Y", "mproxy", "-T", "fields", "-e", "mproxy.kind", "-e", "mproxy.body_len")
    assert result.returncode == 0 and not result.lua_errors(), result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines() if line.strip()]
    assert rows == [["data", "6"], ["data,data", f"{BOMB_BODY},5"]]


@pytest.mark.tshark
def test_permessage_deflate_message_that_does_not_inflate_lua(tmp_path, home):
    pair = WsPair(deflate={})
    pair.server_sends(BytesMessage(data=BEFORE))
    pair.s2c += raw_frame(0xC2, b"\xff" * 20)
    pcap = ws_tunnel(tmp_path / "badz.pcap", bytes(pair.c2s), bytes(pair.s2c), pair.request_len, pair.response_len)
    rows, _ = lua_records(pcap, home)
    assert [kind for _, k, _ in rows for kind in k] == ["data"]
    assert [e for _, _, experts in rows for e in experts] == [
        "A compressed WebSocket message could not be inflated; its rest was dropped: "
        "20 compressed bytes not inflated (after 50 bytes of this direction's compressed stream)"]


# -- the capture file ---------------------------------------------------------------------------------


def base_packets(tmp_path: Path) -> list[bytes]:
    return packets_of(tunnel(tmp_path / "base.pcap", BEFORE + AFTER, chunk=20))


def test_record_caplen_larger_than_the_file(tmp_path):
    packets = base_packets(tmp_path)
    path = tmp_path / "caplen.pcap"
    path.write_bytes(pcap_bytes(packets, caplens={len(packets) - 1: 5000}))
    result = dissect(path)
    assert [f["body_len"] for f in result.frames()] == [6, 5]
    assert ("capture.truncated_record", "file ends inside record 11 (40 of 5000 bytes)") in result.problems()
    assert_clean_error(mproxy("dissect", str(path)), "truncated or damaged capture at packet 11")


def test_record_caplen_larger_than_any_record_can_be(tmp_path):
    packets = base_packets(tmp_path)
    path = tmp_path / "caplen.pcap"
    path.write_bytes(pcap_bytes(packets, caplens={5: 0x7FFFFFFF}))
    result = dissect(path)
    assert ("capture.bad_record_length", "record 6 claims 2147483647 bytes: the file is corrupt here") \
        in result.problems()
    assert_clean_error(mproxy("dissect", str(path)), "record 6 claims 2147483647 bytes")


def test_record_caplen_larger_than_the_snaplen(tmp_path):
    packets = base_packets(tmp_path)
    path = tmp_path / "snaplen.pcap"
    path.write_bytes(pcap_bytes(packets, snaplen=48))
    result = dissect(path)
    assert result.returncode == 0
    assert [f["body_len"] for f in result.frames()] == [6, 5]
    assert [k for k, _ in result.problems()] == ["capture.caplen_exceeds_snaplen"]


def test_pcapng_with_an_unknown_block_type(tmp_path):
    path = tmp_path / "unknown.pcapng"
    path.write_bytes(pcapng_bytes(base_packets(tmp_path), extra_blocks={4: pcapng_block(0x0BADBEEF, b"hello")}))
    result = dissect(path)
    assert result.returncode == 0
    assert [f["body_len"] for f in result.frames()] == [6, 5]
    assert result.problems() == [("capture.unknown_block", "pcapng block type 0x0badbeef skipped")]


def test_truncated_last_record(tmp_path):
    path = tmp_path / "cut.pcap"
    path.write_bytes(pcap_bytes(base_packets(tmp_path))[:-7])
    result = dissect(path)
    assert [f["body_len"] for f in result.frames()] == [6, 5]
    assert ("capture.truncated_record", "file ends inside record 11 (33 of 40 bytes)") in result.problems()
    assert_clean_error(mproxy("dissect", str(path)), "truncated or damaged capture at packet 11")


def test_capture_of_0_bytes(tmp_path):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    assert_clean_error(mproxy("dissect", str(path)), "empty.pcap is empty: not a pcap or pcapng file")


@pytest.mark.tshark
def test_damaged_capture_files_lua(tmp_path, home):
    """tshark names the damage itself; our dissector must still decode what came before, with no Lua error."""
    packets = base_packets(tmp_path)
    files = {
        "caplen.pcap": (pcap_bytes(packets, caplens={len(packets) - 1: 5000}), "cut short"),
        "huge.pcap": (pcap_bytes(packets, caplens={5: 0x7FFFFFFF}), "damaged or corrupt"),
        "snaplen.pcap": (pcap_bytes(packets, snaplen=48), None),
        "unknown.pcapng": (pcapng_bytes(packets, extra_blocks={4: pcapng_block(0x0BADBEEF, b"hello")}), None),
        "cut.pcap": (pcap_bytes(packets)[:-7], "cut short"),
        "empty.pcap": (b"", None),
    }
    for name, (data, message) in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        result = tshark(path, home, *PORT_PREF)
        assert not result.lua_errors(), (name, result.stderr)
        if message:
            assert result.returncode != 0 and message in result.stderr, (name, result.stderr)
        else:
            assert result.returncode == 0, (name, result.stderr)


def test_live_capture_on_an_interface_that_does_not_exist():
    result = mproxy("dissect", "-i", "nosuchif0", "-a", "1")
    assert_clean_error(result, "no such network interface: nosuchif0")


# -- terminal and file-system safety of the other outputs ---------------------------------------------

EVIL = {**TUN, "name": "[bold red]RICH[/] \x1b[31mX\x1b[0m\n../../tmp/pwn", "address": "../../etc",
        "service": "[link=file:///etc/passwd]s[/link]"}


def evil_tunnel(path: Path) -> Path:
    return tunnel(path, BEFORE + pack(EVIL, b"x" * 10) + pack(EVIL, None, "end") + AFTER)


def test_stats_shows_markup_and_escapes_literally(tmp_path):
    result = mproxy("stats", str(evil_tunnel(tmp_path / "evil.pcap")))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "\x1b" not in result.stdout
    assert "[bold red]RICH[/]" in result.stdout and "\\x1b[31mX" in result.stdout  # rich markup not interpreted


def test_follow_files_stay_inside_the_output_directory(tmp_path):
    out = tmp_path / "out"
    result = mproxy("follow", str(evil_tunnel(tmp_path / "evil.pcap")), "--client", "IPv4,../../etc,5000",
                    "-o", str(out))
    assert result.returncode == 0, result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".bin"]
    assert written and all(p.parent == out for p in written)
    assert sum(p.stat().st_size for p in written) == 10


# -- hostile control bodies ---------------------------------------------------------------------------

CONTROL_BODIES = {
    "nested_100000_deep": b"[" * 100_000 + b"]" * 100_000,
    "object_nested_50000_deep": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "nan_and_infinity": b"[1,NaN,Infinity,-Infinity]",
    "5000_digit_number": b'[1,"hello",' + b"9" * 5000 + b"]",
}


def strict_json(line: str) -> dict:
    """RFC 8259 JSON only: NaN and Infinity (Python's extensions) are errors, as in jq or JavaScript."""
    def reject(name: str) -> None:
        raise ValueError(f"{name} in NDJSON output")

    return json.loads(line, parse_constant=reject)


@pytest.mark.parametrize("name", sorted(CONTROL_BODIES))
def test_hostile_control_body(tmp_path, name):
    """Bodies no JSON.parse takes: a bad_body problem, valid NDJSON, and the frame after still decoded."""
    pcap = tunnel(tmp_path / "control.pcap", BEFORE + pack_header(None, CONTROL_BODIES[name], "control", True)
                  + AFTER)
    result = mproxy("dissect", "--json", str(pcap))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-1500:]
    records = [strict_json(line) for line in result.stdout.splitlines()]
    control = [r for r in records if r["kind"] == "control"]
    assert control and control[0]["problems"] == [{"kind": "bad_body", "detail": "control body is not a JSON array"}]
    assert records[-1]["body_len"] == 5
    text = dissect_text(pcap)
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 3


def test_control_body_with_an_overflowing_number_gives_valid_ndjson(tmp_path):
    pcap = tunnel(tmp_path / "control.pcap", BEFORE + pack_header(None, b"[1e999999,1]", "control", True) + AFTER)
    result = mproxy("dissect", "--json", str(pcap))
    for line in result.stdout.splitlines():
        strict_json(line)


@pytest.mark.tshark
@pytest.mark.parametrize("name", sorted(CONTROL_BODIES))
def test_hostile_control_body_lua(tmp_path, home, name):
    pcap = tunnel(tmp_path / "control.pcap", BEFORE + pack_header(None, CONTROL_BODIES[name], "control", True)
                  + AFTER)
    result = tshark(pcap, home, "-V", timeout=120)
    assert result.returncode == 0 and not result.lua_errors(), result.stderr[-1500:]
    assert lua_kinds(pcap, home) == ["data", "control", "data"]


@pytest.mark.parametrize("name", sorted(CONTROL_BODIES))
def test_hostile_control_body_scapy_layer(name):
    """The Scapy layer dissects the body with conf.debug_dissector on: a bad_body problem, never an exception."""
    from scapy.config import conf

    from mproxy_scapy.layer import MProxy

    old, conf.debug_dissector = conf.debug_dissector, True
    try:
        packet = MProxy(pack_header(None, CONTROL_BODIES[name], "control", True))
    finally:
        conf.debug_dissector = old
    assert packet.payload.problems and packet.payload.problems[0].startswith("bad_body")


@pytest.mark.parametrize("depth", [150, 500, 990])
@pytest.mark.parametrize("shape", ["list", "dict"])
def test_control_body_nested_deep_but_parseable(tmp_path, depth, shape):
    """Valid JSON nested under Python's parse limit once crashed the readers of the value (redaction recursed
    twice per level): up to jscompat.MAX_JSON_DEPTH it is shown, deeper it is a bad_body, never a traceback."""
    inner = (b"[" * depth + b"]" * depth) if shape == "list" else (b'{"a":' * depth + b"1" + b"}" * depth)
    pcap = tunnel(tmp_path / "deep.pcap", BEFORE + pack_header(None, b'[1,"x",' + inner + b"]", "control", True)
                  + AFTER)
    for command in (("dissect",), ("dissect", "--json"), ("stats",), ("stats", "--json"), ("dissect", "--scapy")):
        result = mproxy(*command, str(pcap))
        assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr[-800:])
    control = json.loads(mproxy("dissect", "--json", str(pcap)).stdout.splitlines()[1])
    assert (control["problems"] == []) == (depth < 200)
