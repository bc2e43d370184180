"""TLS 1.3 decryption with a key log: an in-memory TLS session made with Python's ssl, and wss.pcapng."""

from __future__ import annotations

import contextlib
import datetime
import ssl
import subprocess
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tunnel_capture import Conversation, write_pcap

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import DecodedFrame, Decoder, StageEvent, decode_capture
from mproxy_scapy.parser import iter_frames
from mproxy_scapy.tls import KeyLog

from support import CAPTURES

TUN = {"family": "IPv4", "address": "198.51.100.9", "port": 41000, "service": "https", "serviceport": 443,
       "name": "tls.example.test"}


def certificate(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    return directory / "cert.pem", directory / "key.pem"


def tls_session(directory, to_server: bytes, to_client: bytes):
    """The wire bytes each way of a real TLS 1.3 session carrying the two plaintexts, and its key log."""
    cert, key = certificate(directory)
    keylog = directory / "session.keys"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = str(keylog)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="relay.test")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    wire = [bytearray(), bytearray()]

    def pump():
        data = c_out.read()
        wire[0] += data
        s_in.write(data)
        data = s_out.read()
        wire[1] += data
        c_in.write(data)

    for _ in range(10):
        for side in (client, server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        pump()
    for start in range(0, len(to_server), 5000):
        client.write(to_server[start:start + 5000])
        pump()
    server.write(to_client)
    pump()
    for side in (client, server):
        with contextlib.suppress(ssl.SSLWantReadError):
            side.read(1 << 20)
    pump()
    assert client.version() == "TLSv1.3"
    return bytes(wire[0]), bytes(wire[1]), keylog


def test_a_tls_tunnel_decodes_with_its_key_log(tmp_path):
    to_server = b"".join(pack(TUN, bytes([97 + i % 26]) * (100 + 3000 * i)) for i in range(5))
    to_client = pack(None, [1, "hello", 254, []], "control") + pack(TUN, b"reply", None)
    up, down, keylog = tls_session(tmp_path, to_server, to_client)
    conversation = Conversation()
    conversation.handshake()
    conversation.packets += conversation.segments(0, up, range(700, len(up), 700), conversation.start + 1)
    conversation.packets += conversation.segments(1, down, range(900, len(down), 900), conversation.start + 2)
    conversation.close((len(up), len(down)), conversation.start + 3)
    path = write_pcap(tmp_path / "tls.pcap", conversation)
    decoder = Decoder(keylog=KeyLog.load(keylog), keep_closed_tunnels=True)
    frames = [r for r in decoder.decode(__import__("mproxy_scapy.pcap", fromlist=["open_capture"]).open_capture(
        path)) if isinstance(r, DecodedFrame)]
    expected_up = [(f.kind, f.body) for f in iter_frames(to_server)]
    expected_down = [(f.kind, f.body) for f in iter_frames(to_client)]
    assert [(r.frame.kind, r.frame.body) for r in frames if r.direction == 0] == expected_up
    assert [(r.frame.kind, r.frame.body) for r in frames if r.direction == 1] == expected_down
    assert not decoder.problem_counts
    assert decoder.tunnels[1].carrier_info["tls"].startswith("TLS 1.3")

    unkeyed = Decoder()
    from mproxy_scapy.pcap import open_capture

    assert not [r for r in unkeyed.decode(open_capture(path)) if isinstance(r, DecodedFrame)]
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
