"""MProxySession and rdmproxy: the decoder's records as Scapy packets, through Scapy's own ``sniff()``."""

from __future__ import annotations

import hashlib
import json
import threading

import pytest
from cli_run import mproxy
from scapy.config import conf
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether, Loopback
from scapy.packet import Raw
from scapy.sendrecv import sniff
from scapy.sessions import TCPSession
from scapy.utils import rdpcap, wrpcap
from test_decoder_live import TO_DEVICE, TO_RELAY, listener_on_lo, require_root, run_tunnel

from mproxy_scapy.codec import pack
from mproxy_scapy.layer import MProxy, MProxyControl, bind, unbind
from mproxy_scapy.scapy_session import MProxySession, rdmproxy

from support import CAPTURES

MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
HEADER_KEYS = {"version": "version", "hdrlen": "hdrlen", "family": "family", "address": "address", "port": "port",
               "datalen": "datalen", "service": "service", "serviceport": "serviceport", "name": "hostname",
               "servicename": "servicename", "dialect": "dialect"}
NUMERIC = {"port", "datalen", "serviceport"}


@pytest.fixture(autouse=True)
def strict_dissection():
    conf.debug_dissector = True
    yield
    conf.debug_dissector = False


def keylog_of(name: str) -> str | None:
    keys = MANIFEST[name].get("keylog")
    return str(CAPTURES / keys) if keys else None


def dissect_json(name: str) -> list[dict]:
    args = ["dissect", "--json", str(CAPTURES / name)]
    if keylog_of(name):
        args += ["--tls-keylog", keylog_of(name)]
    result = mproxy(*args)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def header_value(key: str, value):
    if key in NUMERIC:
        return int(value) if isinstance(value, int) or (isinstance(value, str) and value.isdigit()) else None
    return value


def as_dissect_json(pkt) -> dict:
    """What ``mproxy dissect --json`` says of a record, read back from the Scapy packet alone."""
    out = {"pcap_frame": pkt.mproxy_frame, "ts": pytest.approx(float(pkt.time), abs=1e-6),
           "tunnel": pkt.mproxy_tunnel, "direction": pkt.mproxy_direction, "kind": pkt.mproxy_kind}
    if MProxy in pkt:
        layer = pkt[MProxy]
        out.update({key: header_value(key, layer.getfieldval(attr)) for key, attr in HEADER_KEYS.items()})
        body = bytes(layer.payload)
        declared = layer.declared_body_len
        out["body_sha256"] = hashlib.sha256(body).hexdigest() if declared == len(body) and not any(
            p.startswith("gap:") for p in pkt.mproxy_problems) else None
    problems = pkt.mproxy_problems
    out["problems"] = problems
    return out


def from_json(record: dict) -> dict:
    out = {key: record[key] for key in ("pcap_frame", "ts", "tunnel", "direction", "kind")}
    if record["kind"] not in ("garbage", "gap", "stage"):
        out.update({key: header_value(key, record[key]) for key in HEADER_KEYS})
        out["body_sha256"] = record["body_sha256"]
    out["problems"] = [f"{p['kind']}: {p['detail']}" for p in record["problems"]]
    return out


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_sniff_with_mproxy_session_gives_the_records_of_dissect_json(name):
    path = str(CAPTURES / name)
    keylog = keylog_of(name)
    session = MProxySession(tls_keylog=keylog) if keylog else MProxySession
    packets = sniff(offline=path, session=session, quiet=True)
    expected = [from_json(r) for r in dissect_json(name)]
    assert len(expected) >= MANIFEST[name]["frames"] > 0
    assert [as_dissect_json(p) for p in packets] == expected
    captured = rdpcap(path)
    for pkt in packets:
        assert pkt.time == pytest.approx(float(captured[pkt.mproxy_frame - 1].time), abs=1e-6)
        if MProxy in pkt:  # the link/IP/TCP layers are those of the packet that completed the record
            assert pkt[TCP].seq == captured[pkt.mproxy_frame - 1][TCP].seq


def relinked(packets, link: str) -> list:
    """The same packets under another link layer: Linux cooked (SLL, SLL2) or BSD loopback (DLT_NULL)."""
    out = []
    for pkt in packets:
        network = pkt.payload.copy()
        proto = 0x86DD if IPv6 in pkt else 0x0800
        if link == "sll":
            new = CookedLinux(pkttype=0, lladdrtype=772, lladdrlen=6, src=bytes(8), proto=proto) / network
        elif link == "sll2":
            new = CookedLinuxV2(proto=proto, lladdrtype=772, lladdrlen=6, src=bytes(8)) / network
        else:
            new = Loopback(type=30 if proto == 0x86DD else 2) / network
        new.time = pkt.time
        out.append(new)
    return out


@pytest.mark.parametrize("link", ["sll", "sll2", "null"])
@pytest.mark.parametrize("name", ["raw-tcp.pcap", "go-dialect.pcap"])
def test_cooked_and_loopback_link_layers_give_the_same_records(tmp_path, name, link):
    ethernet = rdmproxy(CAPTURES / name)
    path = tmp_path / f"{link}.pcap"
    wrpcap(str(path), relinked(rdpcap(str(CAPTURES / name)), link))
    other = rdmproxy(path)
    def shape(p):
        return p.mproxy_frame, p.mproxy_kind, p[TCP].sport, p[TCP].dport, p[TCP].seq, bytes(p[TCP].payload)

    assert [shape(p) for p in other] == [shape(p) for p in ethernet]
    assert all(Ether not in p for p in other)


def test_rdmproxy_is_the_same_as_sniff_and_counts_like_rdpcap():
    path = CAPTURES / "websocket.pcap"
    everything = rdmproxy(path)
    sniffed = sniff(offline=str(path), session=MProxySession, quiet=True)
    assert [bytes(p) for p in everything] == [bytes(p) for p in sniffed]
    first = rdmproxy(path, count=5)
    assert [bytes(p) for p in first] == [bytes(p) for p in everything[:5]]
    hello = everything[0]
    assert hello[MProxyControl].control_command == "hello"
    assert hello.comment == f"mproxy: packet {hello.mproxy_frame} tunnel 1 direction 1 control".encode()


def test_a_packet_built_from_a_record_is_one_consistent_tcp_packet():
    pkt = rdmproxy(CAPTURES / "raw-tcp.pcap")[6]
    wire = IP(bytes(pkt[IP]))
    assert wire.len == len(bytes(pkt[IP]))
    assert bytes(wire[TCP].payload) == bytes(pkt[MProxy])


def test_a_source_that_ends_inside_a_frame_gives_it_truncated(tmp_path):
    packets = rdpcap(str(CAPTURES / "raw-tcp.pcap"))
    cut = next(i for i, p in enumerate(packets) if len(p[TCP].payload) == 1400)
    wrpcap(str(tmp_path / "cut.pcap"), packets[:cut + 1])
    records = sniff(offline=str(tmp_path / "cut.pcap"), session=MProxySession, quiet=True)
    last = records[-1]
    assert last.mproxy_frame == cut + 1
    assert last[MProxy].truncated
    assert any(p.startswith("truncated:") for p in last.mproxy_problems)
    # the same from a list of packets (Scapy's IterSocket ends with EOFError too)
    assert [bytes(p) for p in sniff(offline=packets[:cut + 1], session=MProxySession, quiet=True)] == [
        bytes(p) for p in records]


def test_garbage_and_gaps_are_raw_with_their_problems():
    records = rdmproxy(CAPTURES / "impaired.pcap")
    lost = [p for p in records if p.mproxy_problems]
    assert [(p.mproxy_kind, p.mproxy_problems) for p in lost] == [
        ("stage", ["tcp.gap: 1400 bytes lost at stream offset 69203"]),
        ("data", ["gap: 1400 body bytes lost in the capture"]),
    ]
    assert all(p.mproxy_frame == 125 for p in lost)
    session = MProxySession()
    hello = pack(None, [1, "hello", 254, []], "control")
    stream = hello + b"\x00not a frame" + hello
    pkt = IP(src="192.0.2.1", dst="192.0.2.2") / TCP(sport=40000, dport=7000, flags="PA", seq=1) / Raw(stream)
    pkt.time = 1.0
    out = session.feed(pkt) + list(session.flush())
    assert [(type(p[TCP].payload), p.mproxy_kind) for p in out] == [(MProxy, "control"), (Raw, "garbage"),
                                                                      (MProxy, "control")]
    assert out[1].mproxy_problems == [f"garbage_skipped: 12 bytes that are not M-PROXY at stream offset {len(hello)}"]
    assert out[1][IP].src == "192.0.2.1" and out[1].mproxy_frame == 1 and out[1].time == 1.0


def tcpsession_frames(path: str) -> list:
    """The README's old way: bind the relay port, reassemble with Scapy's TCPSession, collect MProxy layers."""
    port = rdpcap(path)[0][TCP].dport
    bind(port)
    try:
        packets = sniff(offline=path, session=TCPSession, quiet=True)
    finally:
        unbind(port)
    return [m for p in packets if MProxy in p for m in MProxy.frames_in(p)]


def truth_count(frames, truth: list[dict]) -> tuple[int, int, int]:
    """(right, wrong, missing) against the truth: a frame is right when its header and body hash match one."""
    wanted: dict[tuple[str, str], int] = {}
    for record in truth:
        key = (record["header"], record["body_sha256"])
        wanted[key] = wanted.get(key, 0) + 1
    right = wrong = 0
    for header, body in frames:
        key = (header, hashlib.sha256(body).hexdigest())
        if wanted.get(key):
            wanted[key] -= 1
            right += 1
        else:
            wrong += 1
    return right, wrong, sum(wanted.values())


def test_on_the_impaired_capture_tcpsession_corrupts_frames_silently_and_mproxy_session_does_not():
    path = str(CAPTURES / "impaired.pcap")
    truth = [json.loads(line) for line in (CAPTURES / "impaired.pcap.truth.ndjson").read_text().splitlines()]
    intact = [t for t in truth if not t["lost"]]
    old = [(bytes(m)[2:2 + m.hdrlen].decode(), bytes(m)[2 + m.hdrlen:2 + m.hdrlen + m.declared_body_len])
           for m in tcpsession_frames(path)]
    assert len(old) == len(truth) == 56
    assert truth_count(old, truth) == (54, 2, 2)  # one intact frame corrupted, the lost one zero-filled
    assert all(not m.problems for m in tcpsession_frames(path))  # and nothing says so

    records = [p for p in rdmproxy(path) if MProxy in p]
    whole = [(p.mproxy_record.frame.header, bytes(p[MProxy].payload)) for p in records if not p.mproxy_problems]
    assert truth_count(whole, intact) == (55, 0, 0)
    marked = [p for p in records if p.mproxy_problems]
    assert [p.mproxy_problems for p in marked] == [["gap: 1400 body bytes lost in the capture"]]


@pytest.mark.live
def test_live_sniff_on_loopback_during_a_real_tunnel():
    require_root()
    listener = listener_on_lo()
    port = listener.getsockname()[1]
    seen: list = []
    started = threading.Event()
    expected = len(TO_DEVICE) + len(TO_RELAY)
    result: dict = {}

    def capture() -> None:
        result["packets"] = sniff(iface="lo", filter=f"tcp port {port}", session=MProxySession,
                                  prn=lambda p: seen.append(p.summary()), started_callback=started.set,
                                  stop_filter=lambda p: len(seen) >= expected, timeout=30)

    thread = threading.Thread(target=capture)
    thread.start()
    assert started.wait(30)
    with listener:
        run_tunnel(listener)
    thread.join(60)
    packets = result["packets"]
    kinds = sorted(p.mproxy_kind for p in packets)
    assert kinds == sorted(["control", "connection", "data", "control", "data", "end"])
    assert all(MProxy in p and not p.mproxy_problems and p.mproxy_frame >= 1 for p in packets)
    request = next(p for p in packets if p.mproxy_kind == "data" and p[TCP].sport == port)
    assert bytes(request[MProxy].payload) == b"GET / HTTP/1.1\r\nHost: live.example.test\r\n\r\n"
    assert len(seen) == expected and all("MProxy" in line or "M-PROXY" in line for line in seen)


def test_load_contrib_and_the_star_import_give_the_session_and_rdmproxy(tmp_path):
    from test_scapy_shell import run_scapy_shell

    result = run_scapy_shell([
        'conf.exts.load("mproxy-scapy")',
        'load_contrib("mproxy")',
        f'print("RESULT", len(sniff(offline="{CAPTURES / "raw-tcp.pcap"}", session=MProxySession)), '
        f'len(rdmproxy("{CAPTURES / "go-dialect.pcap"}")))',
    ], tmp_path)
    assert "RESULT 56 25" in result.stdout, result.stdout + result.stderr
    namespace: dict = {}
    exec("from mproxy_scapy import *", namespace)
    assert namespace["MProxySession"] is MProxySession and namespace["rdmproxy"] is rdmproxy


def test_a_key_log_line_that_cannot_be_used_is_logged_and_the_rest_decrypts(tmp_path, caplog):
    keys = tmp_path / "keys.log"
    keys.write_text("CLIENT_RANDOM 1234\n" + (CAPTURES / "wss.keys").read_text())
    with caplog.at_level("WARNING", logger="scapy.runtime"):
        session = MProxySession(tls_keylog=keys)
    assert f"mproxy: {keys}:1: expected 'LABEL CLIENT_RANDOM SECRET', found 2 fields" in caplog.text
    assert len(sniff(offline=str(CAPTURES / "wss.pcapng"), session=session, quiet=True)) == 51


def test_a_damaged_capture_gives_the_records_and_problems_of_dissect_json(tmp_path):
    packets = list(rdpcap(str(CAPTURES / "raw-tcp.pcap")))
    at = next(i for i, p in enumerate(packets) if len(p[TCP].payload) == 1400)
    snapped = Ether(bytes(packets[at])[:200])
    snapped.time, snapped.wirelen = packets[at].time, len(packets[at])
    broken = Ether(bytes(packets[at + 2])[:14] + b"\x99" + bytes(packets[at + 2])[15:])  # IPv4 version 9
    broken.time = packets[at + 2].time
    path = tmp_path / "damaged.pcap"
    wrpcap(str(path), [*packets[:at], snapped, packets[at + 1], broken, *packets[at + 3:]])
    result = mproxy("dissect", "--json", str(path))
    assert result.returncode == 0, result.stderr
    expected = [from_json(json.loads(line)) for line in result.stdout.splitlines()]
    records = sniff(offline=str(path), session=MProxySession, quiet=True)
    assert [as_dissect_json(p) for p in records] == expected
    problems = {p.mproxy_problems[0].split(":")[0]: p for p in records if p.mproxy_kind == "stage"}
    assert set(problems) == {"capture.snapped_packet", "capture.malformed_packet", "tcp.gap"}
    assert bytes(problems["capture.malformed_packet"])[14] == 0x99  # the damaged packet itself
    assert problems["capture.snapped_packet"][TCP].seq == packets[at][TCP].seq


def test_tokens_are_redacted_unless_the_session_shows_secrets():
    def add_token(session):
        packets = sniff(offline=str(CAPTURES / "raw-tcp.pcap"), session=session, quiet=True)
        return next(p for p in packets if MProxyControl in p and p[MProxyControl].control_command == "add_token")

    assert "<redacted>" in add_token(MProxySession).show(dump=True)
    shown = add_token(MProxySession(show_secrets=True)).show(dump=True)
    assert "<redacted>" not in shown and "eyJ" in shown
