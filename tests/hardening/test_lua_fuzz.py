"""The Lua dissector under tshark on mutated and random captures: never a Lua error, never a hang.

Every test runs on each Wireshark version of the matrix (tests/wireshark/matrix.py);
the two slow seed sweeps deal their seeds out over the versions instead of
repeating each one, which keeps the run count of one version while every
version sees every capture and rate. Extends tests/wireshark/test_fuzz.py
(editcap -E over every capture, found by the heuristic, 3 rate/seed pairs) with what it does not cover: the same
mutations decoded through the port preference (``mproxy.tcp_ports``, the
Decode As path, which skips the heuristic's checks) at other seeds; random
TCP conversations on the tunnel port in the spirit of ``randpkt``, but
shaped like M-PROXY (0xFE, plausible hdrlen, digit/comma headers, lying
lengths, cuts, reordering, loss) so they reach the dissector's parser; and
randpkt's own garbage with every TCP port decoded as M-PROXY. Every run is
``tshark -2 -V`` (both passes, the whole tree), its stderr and tree
searched for "Lua Error"; a hang is a timeout, a failure.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from hardening.adversarial import TUNNEL_PORT, Tshark, tshark
from tunnel_capture import Conversation, write_pcap
from wireshark import matrix

from mproxy_scapy.codec import pack

from support import CAPTURES

PORT_PREF = ("-o", f"mproxy.tcp_ports:{TUNNEL_PORT}")
CAPTURE_FILES = sorted(p for p in CAPTURES.glob("*.pcap*") if p.suffix in (".pcap", ".pcapng"))
RATES = ("0.002", "0.02", "0.1")
HANG = 300
"""Seconds a tshark run may take before it counts as a hang (the biggest capture takes a few)."""


def mutated(source: Path, rate: str, seed: int, directory: Path) -> Path:
    """``editcap -E rate --seed seed``. editcap 4.0 cannot write a pcapng holding a decryption secrets
    block (wss.pcapng), so such a file is first rewritten by tshark, which keeps the packets."""
    target = directory / f"{source.stem}-{rate}-{seed}{source.suffix}"
    command = ["editcap", "-E", rate, "--seed", str(seed), str(source), str(target)]
    if subprocess.run(command, capture_output=True, timeout=60, check=False).returncode != 0:
        plain = directory / f"{source.stem}-rewritten{source.suffix}"
        matrix.reference(["-r", str(source), "-F", "pcapng", "-w", str(plain)], timeout=60)
        subprocess.run([*command[:-2], str(plain), str(target)], check=True, capture_output=True, timeout=60)
    return target


def assert_no_lua_error(result: Tshark, what: str) -> None:
    assert not result.lua_errors(), (what, result.lua_errors()[:5], result.stderr[-2000:])
    assert "Lua Error" not in result.stdout and "Lua Error" not in result.stderr, what


def test_captures_are_found():
    assert len(CAPTURE_FILES) >= 5, CAPTURE_FILES


@pytest.mark.tshark
@pytest.mark.parametrize("rate", RATES)
def test_editcap_mutations_through_the_port_preference(tmp_path, home, rate):
    """The CI slice: one seed per rate on a raw and a WebSocket capture, decoded as M-PROXY by port."""
    for name in ("raw-tcp.pcap", "websocket.pcap"):
        path = mutated(CAPTURES / name, rate, 7, tmp_path)
        assert_no_lua_error(tshark(path, home, "-V", *PORT_PREF, timeout=HANG), path.name)


@pytest.mark.tshark
@pytest.mark.slow
@pytest.mark.parametrize("capture", CAPTURE_FILES, ids=lambda p: p.name)
def test_editcap_mutations_of_every_capture_through_the_port_preference(tmp_path, home, capture):
    """Every rate, one seed per Wireshark version (1, 2, 3 down the matrix): 3 seeds in all, as many runs
    as one version with every seed, and each version still sees every capture and rate."""
    seed = 1 + matrix.MATRIX.index(home.version)
    for rate in RATES:
        path = mutated(capture, rate, seed, tmp_path)
        assert_no_lua_error(tshark(path, home, "-V", *PORT_PREF, timeout=HANG), path.name)


def random_header(rng: random.Random) -> bytes:
    """A header that is often almost right: fields of digits, names, empties, sometimes junk bytes."""
    fields = []
    for _ in range(rng.choice((0, 1, 3, 4, 5, 6, 7, 7, 7, 9))):
        pick = rng.random()
        if pick < 0.3:
            fields.append(str(rng.choice((0, 1, 80, 443, 65535, 10**15, -1, rng.randrange(10**6)))).encode())
        elif pick < 0.6:
            fields.append(rng.choice((b"IPv4", b"IPv6", b"127.0.0.1", b"::1", b"http", b"https", b"control",
                                      b"connection", b"end", b"error", b"pause", b"resume", b"a.example")))
        elif pick < 0.8:
            fields.append(b"")
        else:
            fields.append(rng.randbytes(rng.randrange(1, 20)))
    return b",".join(fields)


def random_stream(rng: random.Random) -> bytes:
    """Frames good, bad and cut: real codec frames, hand-made headers with lying lengths, garbage."""
    parts = []
    for _ in range(rng.randrange(1, 12)):
        pick = rng.random()
        if pick < 0.3:
            tun = {"family": "IPv4", "address": "192.0.2.1", "port": rng.randrange(1, 65536), "service": "http",
                   "serviceport": 80, "name": "a.example"}
            parts.append(pack(tun, rng.randbytes(rng.randrange(0, 3000)) or None))
        elif pick < 0.8:
            head = random_header(rng)
            hdrlen = len(head) & 0xFF if rng.random() < 0.8 else rng.randrange(256)
            version = 0xFE if rng.random() < 0.85 else rng.randrange(256)
            parts.append(bytes([version, hdrlen]) + head + rng.randbytes(rng.randrange(0, 400)))
        else:
            parts.append(rng.randbytes(rng.randrange(1, 600)))
    return b"".join(parts)


def random_capture(path: Path, seed: int, conversations: int = 12) -> Path:
    """Conversations on the tunnel port: random streams both ways, random cuts, sometimes reordered or lost."""
    rng = random.Random(seed)
    out = []
    for n in range(conversations):
        conversation = Conversation(client=("10.1.0.2", 30000 + n), start=1700000000.0 + n)
        if rng.random() < 0.8:
            conversation.handshake()
        for direction in (1, 0):
            stream = random_stream(rng)
            cuts = [rng.randrange(len(stream) + 1) for _ in range(rng.randrange(0, 30))]
            segments = conversation.segments(direction, stream, cuts, conversation.start + 0.1)
            if rng.random() < 0.3 and len(segments) > 2:
                rng.shuffle(segments)
            if rng.random() < 0.2 and len(segments) > 2:
                del segments[rng.randrange(len(segments))]
            conversation.packets += segments
        if rng.random() < 0.7:
            conversation.close((rng.randrange(10**6), rng.randrange(10**6)), conversation.start + 1,
                               reset=rng.random() < 0.3)
        out.append(conversation)
    return write_pcap(path, *out)


@pytest.mark.tshark
@pytest.mark.parametrize("seed", range(4))
def test_random_mproxy_shaped_traffic_on_the_tunnel_port(tmp_path, home, seed):
    path = random_capture(tmp_path / f"random-{seed}.pcap", seed)
    for args in (("-V",), ("-V", *PORT_PREF)):
        result = tshark(path, home, *args, timeout=HANG)
        assert result.returncode == 0, result.stderr
        assert_no_lua_error(result, f"seed {seed} {args}")


@pytest.mark.tshark
@pytest.mark.slow
@pytest.mark.parametrize(("home", "seed"), [pytest.param(v, s, id=f"{v.id}-seed{s}") for s in range(4, 40)
                                             for v in [matrix.MATRIX[s % len(matrix.MATRIX)]]], indirect=["home"])
def test_random_mproxy_shaped_traffic_on_the_tunnel_port_more_seeds(tmp_path, home, seed):
    """Seeds 4-39 dealt out over the matrix (seed modulo the number of versions): 12 per version."""
    path = random_capture(tmp_path / f"random-{seed}.pcap", seed)
    result = tshark(path, home, "-V", *PORT_PREF, timeout=HANG)
    assert_no_lua_error(result, f"seed {seed}")


@pytest.mark.tshark
def test_randpkt_garbage_decoded_as_mproxy(tmp_path, home):
    """randpkt's random TCP packets, every TCP port decoded as M-PROXY (Decode As)."""
    path = tmp_path / "randpkt.pcap"
    subprocess.run(["randpkt", "-b", "1500", "-c", "3000", "-t", "tcp", str(path)], check=True,
                   capture_output=True, timeout=60)
    result = tshark(path, home, "-V", "-d", "tcp.port==1-65535,mproxy", timeout=HANG)
    assert_no_lua_error(result, "randpkt")
