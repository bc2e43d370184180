"""Every conformance rule: a capture that breaks it and one that does not (pcaps written here, decoded for real)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tunnel_capture import HTTP_CLIENT, JWT, TLS_CLIENT, Conversation, Packet, write_pcap

from mproxy_scapy.checker import Checker
from mproxy_scapy.codec import pack, pack_header
from mproxy_scapy.decoder import Decoder
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.pcapwriter import ACK, PSH
from mproxy_scapy.rules import RULES, RULES_BY_ID

from support import CAPTURES

A = HTTP_CLIENT
B = TLS_CLIENT
HELLO = pack(None, [1, "hello", 254, ["add_token", "delete_token"]], "control")
HELLO_REPLY = pack(None, [-1, None], "control")


def frame(header: str | bytes, body: bytes = b"", version: int = 0xFE) -> bytes:
    """A frame written by hand, for headers no packer of ours writes."""
    raw = header.encode() if isinstance(header, str) else header
    return bytes((version, len(raw) & 0xFF)) + raw + body


def header_of(client: dict, datalen: int | str, service: str) -> str:
    return f"{client['family']},{client['address']},{client['port']},{datalen},{service},{client['serviceport']}," \
           f"{client['name']}"


TO_DEVICE, TO_RELAY = 1, 0
"""Tunnel directions: the relay is the TCP server (direction 1 is server -> client), the device dials it."""


def tunnel_findings(tmp_path: Path, to_device: bytes, to_relay: bytes = b"", *, script: list | None = None,
                    handshake: bool = True, close: str | None = "fin") -> list:
    """Findings of ``mproxy check`` on a raw-TCP tunnel: the relay -> device stream first, then the reply.

    ``script`` instead: ``(direction, bytes)`` pieces written in this order, for exchanges that interleave.
    """
    conversation = Conversation()
    if handshake:
        conversation.handshake()
    pieces = script if script is not None else [(TO_DEVICE, to_device), (TO_RELAY, to_relay)]
    sent = [0, 0]
    ts = conversation.start + 0.01
    for direction, data in pieces:
        base, other = conversation.isn[direction] + 1 + sent[direction], conversation.isn[1 - direction] + 1
        for at in range(0, len(data), 700):
            conversation.packets.append(Packet(ts, direction, PSH | ACK, base + at, other + sent[1 - direction],
                                               data[at:at + 700]))
            ts += 0.001
        sent[direction] += len(data)
    if close:
        conversation.close((sent[0], sent[1]), ts + 1.0, reset=close == "rst")
    path = write_pcap(tmp_path / "tunnel.pcap", conversation)
    decoder = Decoder()
    decoder.report_closed = True
    return list(Checker(decoder.tunnels).check(decoder.decode(open_capture(str(path)))))


def life(client: dict, *, body: bytes = b"hi") -> tuple[bytes, bytes]:
    """One well-behaved client: announced, data both ways, ended both ways."""
    return (pack(client, None, "connection") + pack(client, body) + pack(client, None, "end"),
            pack(client, b"ok") + pack_header(client, None, "end"))


GOOD_A = life(A)


def good_with(to_device: bytes = b"", to_relay: bytes = b"") -> tuple[bytes, bytes]:
    return HELLO + GOOD_A[0] + to_device, HELLO_REPLY + GOOD_A[1] + to_relay


GOOD_SCRIPT = [(TO_DEVICE, good_with()[0]), (TO_RELAY, good_with()[1])]
AUTH = pack(None, [3, "auth", JWT], "control")
REPLY_3 = pack(None, [-3, None], "control")
CONN_A = pack(A, None, "connection")
END_A = pack(A, None, "end")
DEVICE_END_A = pack_header(A, None, "end")

# rule -> (breaking (to_device, to_relay), conforming (to_device, to_relay), tunnel_findings options)
CASES: dict[str, tuple[tuple[bytes, bytes], tuple[bytes, bytes], dict]] = {
    "MPX101": (good_with(frame(header_of(B, 2, "https"), b"hi", version=0xFD)), good_with(pack(B, b"hi")), {}),
    "MPX102": (good_with(pack({**B, "name": ".".join(["a" * 60] * 5)}, b"x" * 300)),
               good_with(pack({**B, "name": ".".join(["a" * 60] * 3)}, b"x" * 300)), {}),
    "MPX103": (good_with(frame(header_of(B, "01", "https"), b"h")),
               good_with(frame(header_of(B, "1", "https"), b"h")), {}),
    "MPX104": ((HELLO + CONN_A, HELLO_REPLY + pack(A, b"x" * 100)[:-10]),
               (HELLO + CONN_A, HELLO_REPLY + pack(A, b"x" * 100)), {}),
    "MPX105": ((HELLO + CONN_A, HELLO_REPLY + pack(A, b"x" * 100)[:-10]),
               (HELLO + CONN_A, HELLO_REPLY + pack(A, b"x" * 100)), {"close": None}),
    "MPX106": (good_with(frame(header_of(B, 2, "https") + ",\n", b"hi")), good_with(pack(B, b"hi")), {}),
    "MPX107": (good_with(pack({**B, "family": "IPv5"}, b"hi")), good_with(pack(B, b"hi")), {}),
    "MPX108": (good_with(pack({**A, "address": "999.1.2.3"}, b"hi")),
               good_with(pack({**A, "address": "9.1.2.3"}, b"hi")), {}),
    "MPX109": (good_with(pack({**B, "serviceport": 70000}, b"hi")), good_with(pack({**B, "serviceport": 7000}, b"hi")),
               {}),
    "MPX110": (good_with(b"not a frame at all" + pack(B, b"hi")), good_with(pack(B, b"hi")), {}),
    "MPX111": (good_with(frame("IPv4,10.0.0.1,5,1", b"x")), good_with(frame("IPv4,10.0.0.1,5,1,tcp", b"x")), {}),
    "MPX112": (good_with(frame(header_of(B, 1, "https").encode() + b"\xff", b"x")),
               good_with(frame(header_of(B, 1, "https") + "\u00e9", b"x")), {}),
    "MPX201": (good_with(pack(B, b"hi")), good_with(pack(B, None, "connection") + pack(B, b"hi")), {}),
    "MPX202": (good_with(pack(B, b"hi")), good_with(pack(B, None, "connection") + pack(B, b"hi")),
               {"handshake": False}),
    "MPX203": ((pack(A, b"hi"), pack(A, b"ok")), (CONN_A + pack(A, b"hi"), pack(A, b"ok")), {}),
    "MPX204": (good_with(pack(A, b"late")), good_with(CONN_A + pack(A, b"reused port")), {}),
    "MPX205": ((HELLO + CONN_A + CONN_A, HELLO_REPLY), (HELLO + CONN_A + END_A + CONN_A, HELLO_REPLY + DEVICE_END_A),
               {"close": None}),
    "MPX206": (good_with(b"", pack(B, None, "connection")), good_with(pack(B, None, "connection")), {}),
    "MPX207": (good_with(frame(header_of(B, 1, "connection"), b" ")),
               good_with(frame(header_of(B, 1, "connection") + ",https", b" ")), {}),
    "MPX208": ((HELLO + CONN_A + pack(A, b"10", "resume") + END_A, HELLO_REPLY + DEVICE_END_A),
               (HELLO + CONN_A + pack(A, b"10", "pause") + pack(A, b"10", "resume") + END_A,
                HELLO_REPLY + DEVICE_END_A), {}),
    "MPX209": ((HELLO + CONN_A + pack(A, b"10", "pause"), HELLO_REPLY),
               (HELLO + CONN_A + pack(A, b"10", "pause") + pack(A, b"10", "resume"), HELLO_REPLY), {}),
    "MPX210": ((HELLO + CONN_A, HELLO_REPLY + pack(A, b"ok")),
               (HELLO + CONN_A, HELLO_REPLY + pack(A, b"ok") + DEVICE_END_A), {}),
    "MPX301": (good_with(b"", pack_header(B, b"oops", "error", True)),
               good_with(pack(B, None, "connection") + pack(B, None, "error"),
                         pack_header(B, b'{"message":"refused","code":"E_CONN"}', "error", True)), {}),
    "MPX302": (good_with(pack(B, None, "connection") + pack(B, b"many", "pause")),
               good_with(pack(B, None, "connection") + pack(B, None, "pause") + pack(B, b"1024", "resume")), {}),
    "MPX303": (good_with(b"", pack(B, b"bye", "end")),
               good_with(pack(B, None, "connection") + pack(B, None, "end"), pack(B, None, "end")), {}),
    "MPX401": (good_with(pack(None, {"id": 1}, "control")), good_with(pack(None, [0, "out of band"], "control")), {}),
    "MPX402": (good_with(b"", pack(None, [-5, None], "control")),
               good_with(pack(None, [5, "grant", {}], "control"), pack(None, [-5, None], "control")), {}),
    "MPX403": (good_with(b"", AUTH * 2), good_with(), {"script": [*GOOD_SCRIPT, (TO_RELAY, AUTH), (TO_DEVICE, REPLY_3),
                                                                   (TO_RELAY, AUTH), (TO_DEVICE, REPLY_3)]}),
    "MPX404": (good_with(b"", AUTH), good_with(), {"script": [*GOOD_SCRIPT, (TO_RELAY, AUTH), (TO_DEVICE, REPLY_3)]}),
    "MPX405": ((HELLO, pack(None, [-1, {"ok": True}], "control")), (HELLO, HELLO_REPLY), {}),
    "MPX406": (good_with(b"", pack(None, [3, "frobnicate"], "control")), good_with(),
               {"script": [*GOOD_SCRIPT, (TO_RELAY, pack(None, [3, "add_token", JWT], "control")),
                           (TO_DEVICE, REPLY_3)]}),
}


def test_every_rule_has_a_case():
    assert sorted(CASES) == sorted(RULES_BY_ID)


@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_broken_and_kept(tmp_path, rule):
    (bad_device, bad_relay), (good_device, good_relay), options = CASES[rule]
    broken = tunnel_findings(tmp_path, bad_device, bad_relay, **{k: v for k, v in options.items() if k != "script"})
    assert rule in {f.rule for f in broken}, broken
    kept = tunnel_findings(tmp_path, good_device, good_relay, **options)
    assert rule not in {f.rule for f in kept}, kept


def test_a_well_behaved_tunnel_has_no_finding(tmp_path):
    to_device, to_relay = good_with(*(part for part in life(B, body=b"x" * 3000)))
    assert tunnel_findings(tmp_path, to_device, to_relay) == []


def test_findings_name_packet_tunnel_and_client(tmp_path):
    broken = tunnel_findings(tmp_path, *good_with(pack(A, b"late")))
    finding = next(f for f in broken if f.rule == "MPX204")
    assert finding.client == "IPv4,203.0.113.7,50123"
    assert (finding.tunnel, finding.direction, finding.src) == (1, 1, "10.1.0.1:7443")
    assert finding.pcap_frame is not None and finding.severity == "error"
    assert finding.to_json()["title"] == RULES_BY_ID["MPX204"].title


def test_rules_can_be_selected(tmp_path):
    to_device, to_relay = good_with(b"junk" + pack(A, b"late"))
    conversation_findings = tunnel_findings(tmp_path, to_device, to_relay)
    assert {"MPX110", "MPX204"} <= {f.rule for f in conversation_findings}
    decoder = Decoder()
    decoder.report_closed = True
    path = tmp_path / "tunnel.pcap"
    only = list(Checker(decoder.tunnels, ["MPX204"]).check(decoder.decode(open_capture(str(path)))))
    assert {f.rule for f in only} == {"MPX204"}


def test_rule_table_is_well_formed():
    assert len({r.id for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.severity in ("error", "warning", "info")
        assert rule.id[:3] == "MPX" and rule.id[3] in "1234" and len(rule.id) == 6
        assert rule.title and not rule.title.endswith(".") and len(rule.rationale) > 80


# the real proxy-packer and our recorder's relay/device: no error-severity finding in any bundled capture
BUNDLED = {
    "raw-tcp.pcap": {"MPX406": 1},
    "websocket.pcap": {"MPX405": 1, "MPX406": 1},
    "wss.pcapng": {"MPX405": 1, "MPX406": 1},
    "wss-tls12.pcapng": {"MPX405": 1, "MPX406": 1},
    "go-dialect.pcap": {"MPX203": 1},
    "reference-js.pcap": {"MPX405": 1, "MPX406": 1},
    "impaired.pcap": {"MPX406": 1},
    # scripted frames, no connection or end frames; impaired-ws and impaired-ack lose segments (the garbage after
    # them is not judged)
    "deflate.pcap": {"MPX203": 1, "MPX210": 13},
    "impaired-ws.pcap": {"MPX203": 1, "MPX210": 13},
    "impaired-ack.pcap": {"MPX203": 1, "MPX210": 5},
}
DELIBERATELY_BROKEN = {
    # bytes that are not M-PROXY between frames, written on purpose (captures/manifest.json lists them)
    "junk.pcap": {"MPX110": 4, "MPX203": 1, "MPX210": 11},
    "false-sync.pcap": {"MPX110": 4, "MPX111": 1, "MPX203": 1, "MPX210": 10},
}


def test_every_bundled_capture_has_its_expected_findings_listed():
    captures = sorted(p.name for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng"))
    assert captures == sorted({**BUNDLED, **DELIBERATELY_BROKEN})


def capture_findings(name: str) -> list:
    from mproxy_scapy.tls import KeyLog

    path = CAPTURES / name
    keys = path.with_suffix(".keys")
    decoder = Decoder(keylog=KeyLog.load(keys) if keys.is_file() else None)
    decoder.report_closed = True
    return list(Checker(decoder.tunnels).check(decoder.decode(open_capture(str(path)))))


@pytest.mark.parametrize("name", sorted(DELIBERATELY_BROKEN))
def test_captures_with_junk_written_on_purpose_fail_on_it(name):
    findings = capture_findings(name)
    assert Counter(f.rule for f in findings) == DELIBERATELY_BROKEN[name]
    assert {f.rule for f in findings if f.severity == "error"} <= {"MPX110", "MPX111"}


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_captures_pass(name):
    findings = capture_findings(name)
    assert not [f for f in findings if f.severity == "error"]
    assert Counter(f.rule for f in findings) == BUNDLED[name]


@pytest.mark.parametrize("datalen", ["01", "+1", " 1", "1 ", "-1", "", "1e0", "\u0661"])
def test_every_non_canonical_datalen_is_named(tmp_path, datalen):
    """Leading zeros, a sign, spaces, exponents, non-ASCII digits: JS parseInt reads most of them, Go does not."""
    findings = tunnel_findings(tmp_path, *good_with(frame(header_of(B, datalen, "https"), b"h")))
    details = [f.detail for f in findings if f.rule == "MPX103"]
    assert details == [f"datalen {datalen!r}"]


def test_junk_findings_are_the_junk_the_recorder_wrote():
    """MPX110 names exactly the stretches captures/manifest.json lists as junk (direction 1 is relay -> device)."""
    import json

    junk = json.loads((CAPTURES / "manifest.json").read_text())["junk.pcap"]["junk"]
    found = [f.detail for f in capture_findings("junk.pcap") if f.rule == "MPX110" and f.direction == TO_DEVICE]
    assert found == [f"{j['length']} bytes at stream offset {j['offset']}" for j in junk]
    assert {j["direction"] for j in junk} == {"relay->device"}
