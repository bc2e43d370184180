"""Real TLS sessions made in memory with Python's ssl (OpenSSL through MemoryBIO), and their decoding.

The TLS 1.2 and 1.3 tests need the same thing: the exact wire bytes each way of
a session that carried known plaintexts, the key log OpenSSL wrote for it, and
those bytes as a TCP conversation in a capture.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from tunnel_capture import Conversation, write_pcap

from mproxy_scapy.decoder import Decoder
from mproxy_scapy.pcap import open_capture
from mproxy_scapy.tls import KeyLog

SSL_OP_NO_EXTENDED_MASTER_SECRET = 1
"""OpenSSL 3's option bit (Python's ssl module has no name for it): the server then refuses RFC 7627."""


def certificate(directory: Path, *, rsa_key: bool = False) -> tuple[Path, Path]:
    """A self-signed certificate for relay.test and its key, written to ``directory``."""
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
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


def tls_session(directory: Path, to_server: bytes, to_client: bytes, *, ciphers: str | None = None,
                tls12: bool = False, ems: bool = True) -> tuple[bytes, bytes, Path, ssl.SSLObject]:
    """The wire bytes each way of a real session carrying the two plaintexts, its key log, and the client end.

    ``tls12`` caps the server at TLS 1.2 (``ciphers`` then picks the suite, and
    an RSA certificate unless the suite is ECDSA); ``ems=False`` makes the
    server refuse the extended master secret.
    """
    cert, key = certificate(directory, rsa_key=bool(ciphers) and "ECDSA" not in (ciphers or ""))
    keylog = directory / "session.keys"
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = str(keylog)
    if tls12:
        server_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        server_ctx.set_ciphers(ciphers)
        client_ctx.set_ciphers(ciphers)
    if not ems:
        server_ctx.options |= SSL_OP_NO_EXTENDED_MASTER_SECRET
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="relay.test")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    wire = [bytearray(), bytearray()]

    def pump() -> None:
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
    return bytes(wire[0]), bytes(wire[1]), keylog, client


def session_capture(path: Path, up: bytes, down: bytes) -> Path:
    """``up`` and ``down`` as one TCP conversation (700- and 900-byte segments) written to ``path``."""
    conversation = Conversation()
    conversation.handshake()
    conversation.packets += conversation.segments(0, up, range(700, len(up), 700), conversation.start + 1)
    conversation.packets += conversation.segments(1, down, range(900, len(down), 900), conversation.start + 2)
    conversation.close((len(up), len(down)), conversation.start + 3)
    return write_pcap(path, conversation)


def decode_session(path: Path, keylog: KeyLog | None) -> tuple[Decoder, list]:
    """The decoder (with its totals) and every record of the capture at ``path``."""
    decoder = Decoder(keylog=keylog, keep_closed_tunnels=True)
    return decoder, list(decoder.decode(open_capture(path)))
