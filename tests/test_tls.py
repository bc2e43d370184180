"""TLS 1.3 decryption with a key log: an in-memory TLS session made with Python's ssl, and wss.pcapng."""

from __future__ import annotations

import subprocess
import sys

from tls_session import decode_session, session_capture, tls_session

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import DecodedFrame, StageEvent, decode_capture
from mproxy_scapy.parser import iter_frames
from mproxy_scapy.tls import KeyLog

from support import CAPTURES

TUN = {"family": "IPv4", "address": "198.51.100.9", "port": 41000, "service": "https", "serviceport": 443,
       "name": "tls.example.test"}


def tls13_session(directory, to_server: bytes, to_client: bytes):
    """The wire bytes each way of a real TLS 1.3 session carrying the two plaintexts, and its key log."""
    up, down, keylog, client = tls_session(directory, to_server, to_client)
    assert client.version() == "TLSv1.3"
    return up, down, keylog


def test_a_tls_tunnel_decodes_with_its_key_log(tmp_path):
    to_server = b"".join(pack(TUN, bytes([97 + i % 26]) * (100 + 3000 * i)) for i in range(5))
    to_client = pack(None, [1, "hello", 254, []], "control") + pack(TUN, b"reply", None)
    up, down, keylog = tls13_session(tmp_path, to_server, to_client)
    path = session_capture(tmp_path / "tls.pcap", up, down)
    decoder, records = decode_session(path, KeyLog.load(keylog))
    frames = [r for r in records if isinstance(r, DecodedFrame)]
    expected_up = [(f.kind, f.body) for f in iter_frames(to_server)]
    expected_down = [(f.kind, f.body) for f in iter_frames(to_client)]
    assert [(r.frame.kind, r.frame.body) for r in frames if r.direction == 0] == expected_up
    assert [(r.frame.kind, r.frame.body) for r in frames if r.direction == 1] == expected_down
    assert not decoder.problem_counts
    assert decoder.tunnels[1].carrier_info["tls"].startswith("TLS 1.3")

    unkeyed, records = decode_session(path, None)
    assert not [r for r in records if isinstance(r, DecodedFrame)]
    assert unkeyed.tls_not_decrypted == 1


def test_a_key_log_without_this_session_reports_it(tmp_path):
    (tmp_path / "other.keys").write_text("CLIENT_TRAFFIC_SECRET_0 " + "00" * 32 + " " + "11" * 32 + "\n")
    records = list(decode_capture(CAPTURES / "wss.pcapng", tls_keylog=tmp_path / "other.keys"))
    kinds = {(r.stage, r.kind) for r in records if isinstance(r, StageEvent) and r.is_problem}
    assert kinds == {("tls", "tls_no_key")}
    assert not [r for r in records if isinstance(r, DecodedFrame)]


def test_cli_finds_the_key_log_next_to_the_capture_or_says_what_is_missing(tmp_path):
    run = [sys.executable, "-m", "mproxy_scapy.cli", "dissect", "--json"]
    found = subprocess.run([*run, str(CAPTURES / "wss.pcapng")], capture_output=True, text=True, timeout=60,
                           check=False, env={"PATH": "/usr/bin:/bin"})
    assert found.returncode == 0, found.stderr
    assert len(found.stdout.splitlines()) >= 50
    copy = tmp_path / "alone.pcapng"
    copy.write_bytes((CAPTURES / "wss.pcapng").read_bytes())
    alone = subprocess.run([*run, str(copy)], capture_output=True, text=True, timeout=60, check=False,
                           env={"PATH": "/usr/bin:/bin"})
    assert alone.returncode == 0 and alone.stdout == ""
    assert "1 TLS connections were not decrypted" in alone.stderr
