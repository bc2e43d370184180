"""The four memory bounds (docs/HARDENING.md), each set from the ``mproxy dissect`` flag and hit by a capture.

Past each bound the decoder reports a problem and goes on: nothing is held
beyond it, nothing is lost without a word.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from cli_run import mproxy
from hardening.adversarial import AFTER, BEFORE, TUN, dissect, tunnel, ws_tunnel
from tunnel_capture import CLIENT, Conversation, write_pcap
from wsproto.events import BytesMessage

from mproxy_scapy.carrier import DEFAULT_MAX_MESSAGE
from mproxy_scapy.codec import pack
from mproxy_scapy.parser import DEFAULT_MAX_BODY_HELD, FrameParser
from mproxy_scapy.pcapwriter import PcapWriter
from mproxy_scapy.tcp import DEFAULT_MAX_BUFFERED, DEFAULT_MAX_FLOWS

from wsstreams import WsPair

FLAGS = {
    "--max-flows": DEFAULT_MAX_FLOWS,
    "--max-buffered": DEFAULT_MAX_BUFFERED,
    "--max-frame-held": DEFAULT_MAX_BODY_HELD,
    "--max-message": DEFAULT_MAX_MESSAGE,
}


@pytest.mark.parametrize("command", ["dissect", "stats", "follow", "detunnel"])
def test_every_bound_is_a_flag_with_its_default_in_help(command):
    result = mproxy(command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "resource bounds:" in text
    for flag, default in FLAGS.items():
        assert flag in text and f"(default {default})" in text, flag


def test_defaults_are_the_documented_ones():
    assert (DEFAULT_MAX_FLOWS, DEFAULT_MAX_BUFFERED, DEFAULT_MAX_BODY_HELD, DEFAULT_MAX_MESSAGE) == (
        10_000, 4 << 20, 16 << 20, 64 << 20)


@pytest.mark.parametrize("value", ["0", "-5", "lots", "12Q"])
def test_a_bound_must_be_positive(value):
    result = mproxy("dissect", "--max-buffered", value)
    assert result.returncode == 2 and "--max-buffered" in result.stderr and "Traceback" not in result.stderr


def test_max_flows(tmp_path):
    """Five tunnels open at once with room for two: three are evicted, each named, the rest decoded."""
    conversations = []
    for n in range(5):
        conversation = Conversation(client=(CLIENT[0], CLIENT[1] + n), start=1700000000.0 + n)
        conversation.handshake()
        conversations.append(conversation)
    for n, conversation in enumerate(conversations):  # all five open before any sends
        conversation.packets += conversation.segments(1, BEFORE, [], 1700000010.0 + n)
    for n, conversation in enumerate(conversations):
        conversation.close((0, len(BEFORE)), 1700000020.0 + n)
    packets = [p for c in conversations for p in c.raw_packets()]
    packets.sort(key=lambda item: item[0])
    path = tmp_path / "flows.pcap"
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        for ts, packet in packets:
            writer.write(ts, packet)
    bounded = dissect(path, "--max-flows", "2")
    evicted = [detail for kind, detail in bounded.problems() if kind == "tcp.evicted"]
    assert evicted and all("within 2 tracked connections" in d for d in evicted)
    assert not [k for k, _ in dissect(path).problems() if k == "tcp.evicted"]


def test_max_buffered(tmp_path):
    """A lost first segment, then 64 KiB waiting behind it: past 16 KiB the hole is declared lost."""
    stream = pack(TUN, os.urandom(100)) + b"".join(pack(TUN, os.urandom(1000)) for _ in range(64))
    conversation = Conversation()
    conversation.handshake()
    segments = conversation.segments(1, stream, range(0, len(stream), 1000), conversation.start + 0.01)
    conversation.packets += segments[1:]  # the first segment never made it into the capture
    conversation.close((0, len(stream)), conversation.start + 1)
    path = write_pcap(tmp_path / "hole.pcap", conversation)
    bounded = dissect(path, "--max-buffered", "16K")
    kinds = [k for k, _ in bounded.problems()]
    assert "tcp.buffer_limit" in kinds and "tcp.gap" in kinds
    assert len(bounded.frames()) >= 60  # decoding resumed after the hole, long before the stream ended
    default = [k for k, _ in dissect(path).problems()]
    assert "tcp.buffer_limit" not in default


def test_max_frame_held(tmp_path):
    """A 1 MiB body with a 64 KiB hold limit: streamed through and hashed, never held whole."""
    body = os.urandom(1 << 20)
    path = tunnel(tmp_path / "big.pcap", BEFORE + pack(TUN, body) + AFTER, chunk=1400)
    result = dissect(path, "--max-frame-held", "64K")
    sizes = [(f["body_len"], f["body_sha256"]) for f in result.frames()]
    assert sizes[1] == (len(body), hashlib.sha256(body).hexdigest()) and len(sizes) == 3
    assert result.problems() == []
    parser = FrameParser(max_body_held=64 * 1024)
    wire = pack(TUN, body)
    held = 0
    for start in range(0, len(wire), 1400):
        parser.feed(wire[start : start + 1400])
        held = max(held, parser.buffered)
    assert held <= 1400 + 64


def test_max_message(tmp_path):
    """A 200 KB compressed message with a 64 KiB limit: capped and reported."""
    pair = WsPair(deflate={})
    pair.server_sends(BytesMessage(data=BEFORE + pack(TUN, bytes(200_000))))
    path = ws_tunnel(tmp_path / "deflate.pcap", bytes(pair.c2s), bytes(pair.s2c), pair.request_len,
                     pair.response_len)
    bounded = dissect(path, "--max-message", "64K")
    assert ("carrier.decompression_capped", "message inflated past 65536 bytes") in bounded.problems()
    assert sum(f["body_len"] for f in bounded.frames()) <= 64 * 1024
    assert [f["body_len"] for f in dissect(path).frames()] == [6, 200_000]
